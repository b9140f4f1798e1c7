"""Checkpoints that never unpickle code and are never half-written.

A checkpoint is a folder ``checkpoints/step-000123/`` holding ``model.safetensors`` and
``optimizer.safetensors`` (tensors only; the optimizer's hyperparameters go to JSON). It is
written under a temporary name and renamed into place, and only then does ``state.json`` (itself
replaced atomically) name it. A run killed at any moment leaves ``state.json`` pointing at a
complete checkpoint; older checkpoints are deleted after the new one is named.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not fit the model (names the file)."""


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, optimizer, state: dict
) -> Path:
    """Write the checkpoint of ``step`` and point state.json at it; returns its folder."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    tmp = root / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"), metadata={"step": str(step)})
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"), metadata={"step": str(step)})
    atomic_write_text(tmp / "optimizer.json", json.dumps(opt_meta))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(
        run_dir / "state.json",
        json.dumps({**state, "step": step, "checkpoint": f"checkpoints/{name}"}, indent=2),
    )
    for old in root.iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: {run_dir} has no checkpoint to resume from")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}): the run's state is corrupt"
        ) from None


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer=None) -> dict:
    """Load the checkpoint state.json names into model (and optimizer); returns the state."""
    state = read_state(run_dir)
    folder = run_dir / state["checkpoint"]
    weights = _load(folder / "model.safetensors")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"{folder / 'model.safetensors'} does not fit the model: {e}"
        ) from None
    if optimizer is not None:
        tensors = _load(folder / "optimizer.safetensors")
        meta = json.loads((folder / "optimizer.json").read_text())
        per_param: dict[int, dict] = {}
        for key, v in [*tensors.items(), *meta["scalars"].items()]:
            idx, name = key.split(".", 1)
            per_param.setdefault(int(idx), {})[name] = v
        optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
    return state


def _load(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({e})") from None
