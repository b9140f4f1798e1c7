"""A progress bar for long evaluations: tqdm on stderr where stderr is a terminal, else nothing
(logs and tests stay clean)."""

from __future__ import annotations


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, what: str, unit: str, shown: bool = True):
    """A bar over ``total`` ``unit``s labelled ``what`` (``update(n)``, ``close()``), silent
    unless ``shown`` and stderr is a terminal (or tqdm is missing)."""
    if not shown:
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=what, unit=unit, disable=None, leave=False, mininterval=0.5)
