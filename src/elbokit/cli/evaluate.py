"""``elbokit eval RUN``: the importance-sampled log-likelihood and the collapse diagnostics of a
trained run, on its test split; printed and written to ``RUN/eval.json``."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from elbokit.cli._runs import read_run_config
from elbokit.cli.train import load_run, run_data
from elbokit.evaluate import diagnose, importance_log_likelihood
from elbokit.objectives import ELBO
from elbokit.train.checkpoint import atomic_write_text


@dataclass(frozen=True)
class EvalConfig:
    run: str = field(
        metadata={"positional": True, "help": "a run directory written by elbokit train"}
    )
    k: int = field(default=1000, metadata={"help": "importance samples per test image"})
    limit: int = field(
        default=0, metadata={"help": "evaluate only the first N test images (0: all)"}
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the importance samples and binarization"}
    )
    precision: Literal["fp32", "bf16"] = field(
        default="fp32", metadata={"help": "bf16: decoder under autocast"}
    )


def run_eval(cfg: EvalConfig) -> int:
    if read_run_config(cfg.run).get("kind") == "world-model":
        from elbokit.cli.world_model import evaluate_run

        evaluate_run(cfg.run, cfg.seed)  # open loop and latent usage; k does not apply
        return 0
    model, train_cfg, state = load_run(cfg.run)
    data = run_data(train_cfg)
    raw = data.test[: cfg.limit or None]
    # a fixed binarization of the test set, so every evaluation scores the same images
    x = data.as_float(raw, torch.Generator().manual_seed(cfg.seed))
    g = torch.Generator().manual_seed(cfg.seed + 1)
    t0 = time.perf_counter()
    ll = importance_log_likelihood(model, x, cfg.k, generator=g, precision=cfg.precision)
    seconds = time.perf_counter() - t0
    torch.manual_seed(cfg.seed + 2)
    with torch.no_grad():
        model.eval()
        elbo = ELBO()(model, x).terms["elbo"].item()
    diag = diagnose(model, x, generator=torch.Generator().manual_seed(cfg.seed + 3))
    dims = math.prod(data.shape)
    result = {
        "step": state["step"],
        "examples": len(x),
        "k": cfg.k,
        "log_likelihood": ll.mean,
        "log_likelihood_stderr": ll.mean_stderr,
        "elbo": elbo,
        "elbo_gap": ll.mean - elbo,
        **({"bits_per_dim": ll.bits_per_dim(dims)} if model.likelihood.discrete else {}),
        "seconds": seconds,
        **diag.as_dict(),
    }
    atomic_write_text(Path(cfg.run) / "eval.json", json.dumps(result, indent=2))
    print(f"{cfg.run} at step {state['step']}: {len(x)} test images, k = {cfg.k}")
    print(
        f"  log p(x) >= {ll.mean:.2f} +- {ll.mean_stderr:.2f} nats (importance sampled, {seconds:.1f} s)"
    )
    if model.likelihood.discrete:
        print(f"  {ll.bits_per_dim(dims):.3f} bits/dim")
    print(f"  ELBO {elbo:.2f} nats; gap log p(x) - ELBO = {ll.mean - elbo:.2f} nats")
    print(f"  KL {diag.kl:.2f} nats; I(x; z) ~ {diag.mutual_information:.2f} nats; "
          f"active units {diag.active_units} of {len(diag.kl_per_unit)}")  # fmt: skip
    print(f"wrote {Path(cfg.run) / 'eval.json'}")
    return 0
