"""``elbokit collect``: episodes with pixel observations from a gymnasium environment."""

from __future__ import annotations

import time

from elbokit.data.collect import CollectConfig, summary


def run_collect(cfg: CollectConfig) -> int:
    t0 = time.perf_counter()
    meta = cfg.collect.run(cfg.out, seed=cfg.seed, progress=cfg.progress)
    print(summary(meta, time.perf_counter() - t0, cfg.out))
    return 0
