"""Files that are never half-written: every writer in elbokit goes through these.

``atomic_path(path)`` yields a temporary name in the same folder for any writer (savefig,
np.savez, safetensors) and renames it into place only when the block ends without an error; a
run killed at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "file_mode", "read_json"]


def file_mode() -> int:
    """The mode a new file gets here (0o666 less the umask), for writers that create theirs
    private (safetensors writes 0600): a run's files are then all readable alike."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (atomically, on
    the same file system), on an error it is removed. The temporary name ends with ``suffix``
    (default: ``path``'s own suffix), so writers that choose a format by extension still do."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp{out.suffix if suffix is None else suffix}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | os.PathLike, missing: str, error: type[Exception] = ValueError):
    """The JSON in ``path``; ``error`` naming the file when it is missing (``missing`` says what
    that means) or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist: {missing}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON ({e})") from None
