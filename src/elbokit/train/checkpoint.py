"""Checkpoints of any named state that never unpickle code and are never half-written.

A checkpoint is a folder ``checkpoints/step-000123/`` holding, for each named group of a
learner's state, ``NAME.safetensors`` (tensors only) and/or ``NAME.json`` (everything else: an
optimizer's hyperparameters, a buffer's fill level, a generator's state). A learner with one
model and one Adam writes ``model.safetensors``, ``optimizer.safetensors`` and
``optimizer.json``; one with an actor, a critic, three optimizers and a replay buffer writes a
file per part. The folder is written under a temporary name and renamed into place, and only
then does ``state.json`` (itself replaced atomically) name it. A run killed at any moment leaves
``state.json`` pointing at a complete checkpoint; older checkpoints are deleted after the new
one is named.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from elbokit.files import atomic_write_text, file_mode, read_json

__all__ = [
    "CheckpointError",
    "Snapshot",
    "load_checkpoint",
    "optimizer_snapshot",
    "read_state",
    "restore_optimizer",
    "save_checkpoint",
]


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not fit the model (names the file)."""


@dataclass
class Snapshot:
    """A learner's state by group: ``tensors[group]`` (name -> tensor) and ``meta[group]`` (JSON)."""

    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    meta: dict[str, dict] = field(default_factory=dict)


def optimizer_snapshot(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state as tensors ("3.exp_avg") and JSON (param groups, other scalars)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    per_param: dict[int, dict] = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        idx, name = key.split(".", 1)
        per_param.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})


def save_checkpoint(run_dir: Path, step: int, snapshot: Snapshot, state: dict, *, keep: int = 1,
                    protect: str = "") -> Path:  # fmt: skip
    """Write the checkpoint of ``step`` and point state.json at it; returns its folder. The last
    ``keep`` checkpoints are kept (0: all), and the one named ``protect`` (the best so far)."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    tmp = root / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    mode = file_mode()  # the run's other files' mode: safetensors creates its files 0600
    for group, tensors in snapshot.tensors.items():
        flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(flat, str(tmp / f"{group}.safetensors"), metadata={"step": str(step)})
        os.chmod(tmp / f"{group}.safetensors", mode)
    for group, meta in snapshot.meta.items():
        atomic_write_text(tmp / f"{group}.json", json.dumps(meta))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(
        run_dir / "state.json",
        json.dumps({**state, "step": step, "checkpoint": f"checkpoints/{name}"}, indent=2),
    )
    steps = sorted(p.name for p in root.iterdir() if p.name.startswith("step-") and p.is_dir()
                   and not p.name.endswith(".tmp"))  # fmt: skip
    kept = set(steps[-keep:] if keep else steps) | {name, Path(protect).name}
    for old in root.iterdir():
        if old.name not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(run_dir: Path) -> dict:
    """state.json: the step, epoch, batch and the checkpoint folder it names."""
    path = Path(run_dir) / "state.json"
    state = read_json(path, f"{run_dir} has no checkpoint to resume from", CheckpointError)
    if not isinstance(state, dict) or not isinstance(state.get("checkpoint"), str):
        raise CheckpointError(f"{path} does not name a checkpoint: the run's state is corrupt")
    return state


def load_checkpoint(
    run_dir: Path,
    tensor_groups: Iterable[str],
    json_groups: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> tuple[Snapshot, dict]:
    """The named groups of the checkpoint that state.json names, and the state itself.
    ``optional`` groups (a learner's ``extra``) are read where their files exist.

    Raises:
        CheckpointError: state.json or a required group's file is missing, corrupt or truncated.
    """
    state = read_state(Path(run_dir))
    folder = Path(run_dir) / state["checkpoint"]
    snap = Snapshot()
    for group in optional:
        if (folder / f"{group}.safetensors").exists():
            snap.tensors[group] = _load(folder / f"{group}.safetensors")
        if (folder / f"{group}.json").exists():
            snap.meta[group] = _load_json(folder / f"{group}.json")
    for group in tensor_groups:
        snap.tensors[group] = _load(folder / f"{group}.safetensors")
    for group in json_groups:
        snap.meta[group] = _load_json(folder / f"{group}.json")
    return snap, state


def _load_json(path: Path) -> dict:
    return read_json(path, "the checkpoint is incomplete", CheckpointError)


def load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """``module.load_state_dict`` with a CheckpointError naming the file when it does not fit."""
    try:
        module.load_state_dict(tensors)
    except RuntimeError as e:
        raise CheckpointError(f"{where} does not fit the model: {e}") from None


def _load(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({e})") from None
