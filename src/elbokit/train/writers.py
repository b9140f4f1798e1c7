"""Where a run's numbers go while it trains: the progress bar, metrics.jsonl, TensorBoard.

``metrics.jsonl`` holds one JSON object per line: ``step``, ``epoch`` and namespaced keys
(``train/elbo``, ``test/elbo``, ``time/steps_per_s``); ``elbokit.report.metrics`` reads it.
Only the main process writes.
"""

from __future__ import annotations

import json
from pathlib import Path


def shown_value(v: float) -> str:
    """A term for the progress bar: two decimals, or two significant digits when that would
    round a small nonzero value (a KL scale of 0.004) to 0.00; never "-0.00"."""
    if v != 0 and abs(v) < 0.005:
        return f"{v:.2g}"
    text = f"{v:.2f}"
    return "0.00" if text == "-0.00" else text


class _Progress:
    """tqdm when available and wanted, else nothing; shows the live terms."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=total,
                    initial=initial,
                    desc=desc,
                    unit="step",
                    mininterval=0.5,
                    dynamic_ncols=True,
                )
            except ImportError:
                pass

    def update(self, shown: dict[str, float]):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: shown_value(v) for k, v in shown.items()}, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _TensorBoard:
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            self.writer = None

    def log(self, step: int, metrics: dict[str, float]):
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


class RunWriter:
    """Progress bar, metrics.jsonl and TensorBoard, on the main process only."""

    def __init__(self, run_dir: Path, main: bool, progress: bool, total: int, initial: int):
        self.main = main
        self.file = open(run_dir / "metrics.jsonl", "a") if main else None
        self.tensorboard = _TensorBoard(run_dir) if main else None
        self.bar = _Progress(progress and main, total, initial, run_dir.name)

    def progress(self, shown: dict[str, float]):
        self.bar.update(shown)

    def say(self, line: str) -> None:
        """A line for the person running it (main process), above the progress bar."""
        if not self.main:
            return
        if self.bar.bar is not None:
            self.bar.bar.write(line)
        else:
            print(line, flush=True)

    def log(self, step: int, epoch: int, metrics: dict[str, float]):
        if self.main:
            self.file.write(json.dumps({"step": step, "epoch": epoch, **metrics}) + "\n")
            self.file.flush()
            self.tensorboard.log(step, metrics)

    def close(self):
        self.bar.close()
        if self.main:
            self.file.close()
            self.tensorboard.close()
