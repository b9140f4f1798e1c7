"""A run directory's config.json: written once when a run starts, all that is needed to resume,
evaluate, report or rebuild it.

    {"format": 2, "kind": "vae", "elbokit": "0.2.0", "config": {the resolved, nested config}}

Runs saved before recipes existed (format 1: ``{"kind", "run": the flat options of the train
command, "model": the model's config}``) are read by moving each option to the section that now
holds its flag; one that no section holds is an error that says how to redo the run.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from elbokit._version import __version__
from elbokit.config import ConfigError, Section, from_dict, leaves, nest, to_dict
from elbokit.files import atomic_write_text, read_json
from elbokit.train.checkpoint import CheckpointError

FORMAT = 2
# what a run writes into its folder: another folder holding only these is one a run started in
RUN_FILES = frozenset({"config.json", "state.json", "metrics.jsonl", "eval.json", "checkpoints",
                       "report", "tensorboard", "episodes", ".lock"})  # fmt: skip
LOCK = ".lock"  # the pid and host of the process writing the run


def new_run_dir(out: str | Path) -> Path:
    """``out`` as the folder of a new run; an error if it already holds a run or other files."""
    run_dir = Path(out)
    if (run_dir / "state.json").exists():
        raise ValueError(
            f"{run_dir} already holds a run: --resume {run_dir} continues it, --out picks another folder"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file, not a folder")
    if run_dir.is_dir():
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_FILES)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ValueError(
                f"--out {run_dir} already holds other files ({shown}); a run writes into a new "
                "or empty folder (or one a run left before its first checkpoint)"
            )
    return run_dir


def claim_run_dir(out: str | Path, *, unique: bool) -> tuple[Path, bool]:
    """Make ``out`` this process's run folder and lock it (``lock_run``); returns (the folder,
    whether this call created it). ``unique`` (a default name, runs/KIND-DATA-TIME): the folder
    is created atomically, and a name another run took (two runs started in the same second, in
    one process or many) gets -2, -3, ... added. Otherwise ``out`` as given may already exist
    (empty, or left by a run before its first checkpoint; ``new_run_dir``).

    Raises:
        ValueError: ``out`` holds a run or other files, or another live run is writing it.
    """
    base = Path(out)
    if not unique:
        run_dir = new_run_dir(base)
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock_run(run_dir)
        except ValueError:
            if created:
                run_dir.rmdir()
            raise
        return run_dir, created
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        run_dir = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            run_dir.mkdir()  # atomic: exactly one process creates a given name
        except FileExistsError:
            continue
        lock_run(run_dir)
        return run_dir, True
    raise ValueError(f"{base}: 9,999 runs of that name already; pass --out")


def lock_run(run_dir: Path) -> None:
    """Claim ``run_dir`` for this process: RUN/.lock, created exclusively, holds our pid and
    host. A lock whose process has died (same host) is stale and taken over.

    Raises:
        ValueError: a live process is writing the run (naming it).
    """
    path = Path(run_dir) / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                return  # ours already (a resume inside the same process)
            if holder and holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                path.unlink(missing_ok=True)  # its writer died without cleaning up
                continue
            raise ValueError(
                f"{run_dir} is being written by another elbokit run (pid {holder.get('pid', '?')} "
                f"on {holder.get('host', '?')}); wait for it to end, or pick another folder "
                f"(remove {path} if that process is gone)"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise ValueError(f"{run_dir}: could not take its lock {path}")


def unlock_run(run_dir: Path) -> None:
    """Release RUN/.lock if this process holds it."""
    path = Path(run_dir) / LOCK
    if _read_lock(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _read_lock(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:  # a killed process its parent has not reaped yet (a zombie) writes nothing either
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_saved(run_dir: str | Path) -> dict:
    """A run's config.json as saved.

    Raises:
        CheckpointError: config.json is missing or not JSON (naming the file).
    """
    path = Path(run_dir) / "config.json"
    saved = read_json(path, f"{run_dir} is not an elbokit run", CheckpointError)
    if not isinstance(saved, dict) or not isinstance(saved.get("kind"), str):
        raise CheckpointError(f"{path} does not say which kind of run it is (no 'kind')")
    return saved


def write_config(run_dir: Path, kind: str, config: Section) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = {"format": FORMAT, "kind": kind, "elbokit": __version__, "config": to_dict(config)}
    atomic_write_text(run_dir / "config.json", json.dumps(saved, indent=2))


def config_of(saved: dict, recipe, where: str) -> Section:
    """The config of a saved run of ``recipe``'s kind (format 2, or format 1 moved into
    sections), with the fields the kind has renamed since (``recipe.renamed``) moved.

    Raises:
        ConfigError: an unknown or misspelled key (naming the closest valid one), a bad value,
            or a format-1 option that no section holds (saying how to redo the run).
    """
    default = recipe.default()
    if saved.get("format") == FORMAT:
        values = _renamed(saved.get("config", {}), recipe.renamed)
        return from_dict(recipe.config, values, base=default, where=where)
    if "run" not in saved:
        raise ConfigError(f"{where}: format {saved.get('format')!r} is not one this elbokit reads")
    values = _from_format_1(saved, recipe, where)
    return from_dict(recipe.config, values, base=default, where=where)


def _renamed(values: dict, renamed: dict[str, str | None]) -> dict:
    """Nested ``values`` with each dotted key of ``renamed`` moved to its new dotted key (a key
    or a whole section; None: a field that no longer exists, dropped), in the order given."""
    if not isinstance(values, dict) or not renamed:
        return values
    out = json.loads(json.dumps(values))  # a deep copy: the saved dict stays as read
    for old, new in renamed.items():
        *parents, last = old.split(".")
        holder = out
        for key in parents:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if not isinstance(holder, dict) or last not in holder:
            continue
        value = holder.pop(last)
        if new is None:
            continue
        *parents, last = new.split(".")
        target = out
        for key in parents:
            target = target.setdefault(key, {})
        if isinstance(value, dict) and isinstance(target.get(last), dict):
            target[last].update(value)
        else:
            target[last] = value
    return out


def _from_format_1(saved: dict, recipe, where: str) -> dict:
    default, renamed = recipe.default(), recipe.renamed
    by_flag = {}
    for leaf in leaves(default):
        by_flag[leaf.flag.replace("-", "_")] = leaf.path
        by_flag.setdefault(leaf.path[-1], leaf.path)
    for old, new in renamed.items():  # a field renamed since: its old name finds the new one
        if new is not None and tuple(new.split(".")) in by_flag.values():
            by_flag.setdefault(old.split(".")[-1], tuple(new.split(".")))
    flat = {}
    unknown = []
    for key, value in saved["run"].items():
        if key == "out":  # where the run went: not part of its config
            continue
        if key not in by_flag:
            unknown.append(key)
        else:
            flat[by_flag[key]] = value
    if unknown:
        try:  # the command of the options this version still has
            redo = recipe.redo_command(from_dict(recipe.config, nest(flat), base=default))
        except ConfigError:
            redo = recipe.redo_command()
        raise ConfigError(
            f"{where} was written by an earlier elbokit with an option {unknown[0]!r} that this "
            f"version does not have; train it again with: {redo}"
        )
    # the derived fields (shapes from the data) are in the saved model config
    derived = {leaf.path: leaf for leaf in leaves(default) if leaf.field.metadata.get("derived")}
    renamed_model = {new.split(".")[-1]: old.split(".")[-1] for old, new in renamed.items()
                     if new and new.startswith("model.") and old.startswith("model.")}  # fmt: skip
    for path in derived:
        if path[0] == "model":
            name = path[-1] if path[-1] in saved.get("model", {}) else renamed_model.get(path[-1])
            if name in saved.get("model", {}):
                flat[path] = saved["model"][name]
    return nest(flat)
