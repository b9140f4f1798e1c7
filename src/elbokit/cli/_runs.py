"""A run directory's config.json, shared by every ``elbokit train`` command.

    {"kind": "vae" | "world-model", "run": the command's config, "model": the model's config}

is written once when a run starts and is all that is needed to resume, evaluate or report it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from elbokit.train.checkpoint import CheckpointError, atomic_write_text


def read_run_config(run_dir: str | Path, kind: str | None = None) -> dict:
    """A run's config.json as saved; with ``kind``, the run must be of that kind.

    Raises:
        CheckpointError: config.json is missing. ValueError: the run is of another kind.
    """
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: {run_dir} is not an elbokit run")
    saved = json.loads(path.read_text())
    if kind is not None and saved.get("kind") != kind:
        raise ValueError(f"{run_dir} is a {saved.get('kind')!r} run, not a {kind!r} run")
    return saved


def new_run_dir(out: str, default: str) -> Path:
    """``out``, or ``default``-TIME; an error if it already holds a run."""
    run_dir = Path(out or f"{default}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (run_dir / "state.json").exists():
        raise ValueError(
            f"{run_dir} already holds a run: --resume {run_dir} continues it, --out picks another folder"
        )
    return run_dir


def write_run_config(run_dir: Path, kind: str, run_cfg, model_cfg) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = {"kind": kind, "run": dataclasses.asdict(run_cfg), "model": model_cfg.to_dict()}
    atomic_write_text(run_dir / "config.json", json.dumps(saved, indent=2))
