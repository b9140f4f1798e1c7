"""The trainer: the loop around a learner's step, with progress, metrics, checks, checkpoints and
exact resume.

It knows nothing about ELBOs, replay buffers or optimizers: it takes a ``Learner`` (see
``elbokit.train.learner``) and data with ``batches(split, batch_size, seed=, epoch=, start=)``
and ``num_batches`` -- a finite dataset in epochs (images, episodes, vectors), or a stream
counted in steps (``elbokit.data.StepStream``: its "batches" are step numbers, and the learner
steps its environment itself). Everything random is seeded from (seed, step): the data order and
binarization by the data, the learner's samples by seeding torch's generator before every step.
A run resumed from a checkpoint therefore draws exactly the numbers an uninterrupted run draws
and ends with the same weights, buffers and optimizer state.

Per run (restored afterwards, never at import): the thread count and the flushing of denormal
floats (``elbokit.train.settings``). Under torchrun the step is data-parallel over the processes
(``elbokit.train.distributed``) and rank 0 alone writes.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.files import atomic_write_text
from elbokit.seeding import mix
from elbokit.train.checkpoint import load_checkpoint, save_checkpoint
from elbokit.train.distributed import setup
from elbokit.train.learner import Evaluation, Learner, StepContext, TrainingDiverged, to_device
from elbokit.train.settings import (
    COMPILES,
    PRECISIONS,
    RunSettings,
    check_device_name,
    resolve_compile,
    resolve_kind_precision,
    resolve_settings,
    run_settings,
)
from elbokit.train.writers import RunWriter

__all__ = [
    "LoopConfig",
    "StreamTrainConfig",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "step_seed",
]


@dataclass(frozen=True)
class LoopConfig(Section):
    """What the trainer needs of every run beside its length. A kind's train section derives
    from it and gives the trainer ``epochs`` and ``batch_size`` (the batch size it hands the data
    and the held-out evaluation), as fields (``TrainConfig``, ``StreamTrainConfig``) or as
    properties over fields named for what they are in that kind (CAVI iterations)."""

    seed: int = opt(0, "seeds initialization, split, order and sampling", ge=0)
    checkpoint_every: int = opt(500, "steps between checkpoints (and at the end; a run shorter "
                                "than this also halfway, so it can be resumed)", ge=1)  # fmt: skip
    keep_checkpoints: int = opt(1, "the last N checkpoints kept (0: all)", ge=0, on_resume=True)
    keep_best: str = opt(
        "", "also keep the checkpoint of the best evaluation by this logged metric, "
        "METRIC[:max|:min] (test/elbo; max unless :min)", on_resume=True,
    )  # fmt: skip
    log_every: int = opt(50, "steps between metrics.jsonl lines", ge=1)
    eval_every: int = opt(1, "epochs between evaluations (and at the end)", ge=1)
    threads: int = opt(
        0,
        "torch threads: 0, one per core of this machine (the same count however busy it is, so "
        "the same numbers); auto (-1), one per core that other work leaves free at the start; "
        "N, that many. The count used is saved with the run and a resume uses it",
        ge=-1, words={"auto": -1},
    )  # fmt: skip
    flush_denormal: bool = opt(True, "flush denormal floats during the run")
    progress: bool = opt(True, "progress bar", on_resume=True)
    grad_clip: float = opt(0.0, "clip each update's gradient norm to this (0: off)", ge=0)
    device: str = opt("cpu", "cpu, cuda, cuda:1, ...")
    precision: str = opt(
        "fp32",
        "fp32; bf16 (autocast; refused where this CPU emulates bf16); auto (bf16 where the CPU "
        "runs it natively and this kind's step measured faster with it)",
        choices=PRECISIONS,
    )
    compile: str = opt(
        "off",
        "compile the step with torch.compile: off; on (eager, with one line, where it cannot); "
        "auto (on where this kind's compiled step measured faster, in runs long enough to pay "
        "the compile back). Saved as chosen; a resume uses it",
        choices=COMPILES,
    )  # fmt: skip

    def validate(self):
        check_device_name(self.device)
        if self.keep_best:
            metric, _, direction = self.keep_best.partition(":")
            if "/" not in metric or direction not in ("", "max", "min"):
                raise ConfigError(
                    f"keep_best = {self.keep_best!r}: expected a logged metric, METRIC, METRIC:max "
                    "or METRIC:min (test/elbo:max)", field="keep_best", value=self.keep_best,
                    detail="expected METRIC, METRIC:max or METRIC:min (test/elbo:max)",
                )  # fmt: skip

    def best_metric(self) -> tuple[str, bool]:
        """(the metric of keep_best, whether larger is better)."""
        metric, _, direction = self.keep_best.partition(":")
        return metric, direction != "min"


def checkpoint_interval(every: int, total: int) -> int:
    """Steps between checkpoints for a run of ``total`` steps: ``every``, or half the run where
    ``every`` would leave it no checkpoint before its end (a run that can never be resumed)."""
    return every if every < total or total < 2 else max(1, total // 2)


@dataclass(frozen=True)
class _Epochs(Section):
    epochs: int = opt(30, "passes over the training set (--resume RUN --epochs N continues a run "
                      "to N)", ge=1, extends=True)  # fmt: skip
    batch_size: int = opt(100, "examples per step", ge=1)


@dataclass(frozen=True)
class TrainConfig(LoopConfig, _Epochs):
    """A run over a data set: ``epochs`` passes in batches of ``batch_size`` examples (the
    length fields come first in --help and config.json)."""


@dataclass(frozen=True)
class _Blocks(Section):
    epochs: int = opt(
        100, "blocks of steps_per_epoch environment steps, an evaluation after every eval_every",
        ge=1, extends=True,
    )  # fmt: skip


@dataclass(frozen=True)
class StreamTrainConfig(LoopConfig, _Blocks):
    """A run that makes its own data (environments it steps): its epochs are blocks of steps
    (``elbokit.data.StepStream``); how much it replays per update is the kind's own setting."""

    batch_size: ClassVar[int] = 1  # a stream's batches are step numbers


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of torch's generator at a training step on a rank (step -1: evaluation)."""
    return mix(seed, 0x5EED, step) if rank == 0 else mix(seed, 0x5EED, step, rank)


def _drop_lines_after(path: Path, step: int) -> None:
    """Keep the metrics.jsonl lines up to the checkpoint a run resumes from: the steps after it
    are trained again, and their lines would otherwise appear twice (and a torn last line)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:  # a line torn by the interrupt
            continue
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _seed_step(device: torch.device, seed: int) -> None:
    """Seed the generator the learner draws from: 1 us for the CPU's, against torch.manual_seed's
    86 us (it visits every device type), which was 1% of a VAE step on this machine."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


class _TrainerContext(StepContext):
    def __init__(self, trainer: Trainer, **kw):
        super().__init__(**kw)
        self.trainer = trainer

    def where(self) -> str:
        last = self.trainer.last_saved
        if last is None:
            return (f"no checkpoint was written yet: {self.trainer.run_dir} keeps its config and "
                    "metrics, and no weights to evaluate; a new run with other settings (a lower "
                    "--lr, --grad-clip) is the way on")  # fmt: skip
        return f"the last good checkpoint (step {last}) is kept in {self.trainer.run_dir}"


class Trainer:
    """Trains a learner on data, writing everything to ``run_dir``.

    Run directory: ``state.json`` (step, epoch, batch, the checkpoint it names),
    ``checkpoints/step-N/*`` (see ``elbokit.train.checkpoint``), ``metrics.jsonl`` and
    ``tensorboard/`` when tensorboard is installed. ``config.json`` is the recipe's.
    """

    def __init__(self, config: LoopConfig, run_dir: str | Path):
        self.config = config
        self.run_dir = Path(run_dir)
        self.last_saved: int | None = None
        self.best: dict | None = None  # the best evaluation by keep_best, and its checkpoint
        self.total = 0  # the run's steps (its epochs' batches)
        self.writer: RunWriter | None = None

    def fit(
        self,
        learner: Learner,
        data,
        *,
        resume: bool = False,
        stop_at: int | None = None,
        settings: RunSettings | None = None,
        on_eval=None,
    ) -> dict:
        """Train; returns the last evaluation's metrics. ``stop_at`` ends early after that step
        (tests). ``settings``: the device, precision and threads already resolved by whoever
        started the run (``resolve_settings``; resolved here when not given). ``on_eval(step,
        metrics)`` hears every evaluation (a study's pruner); if it raises, a checkpoint of this
        step is written first, so the run can be resumed.

        Raises:
            TrainingDiverged: NaN or inf in a term or a gradient; the last good checkpoint is
                kept and named.
            CheckpointError: resume=True and the checkpoint is missing, corrupt or does not fit.
        """
        cfg = self.config
        if settings is None:
            settings = resolve_settings(cfg.device, cfg.precision, cfg.threads)
            settings = resolve_kind_precision(cfg.precision, settings, learner.bf16_speedup)
        world = setup(cfg.device)
        device = settings.device
        if world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        per_epoch = data.num_batches("train", cfg.batch_size)
        self.total = cfg.epochs * per_epoch
        compiled, _ = resolve_compile(cfg.compile, device, self.total, learner.compilable,
                                      learner.compile_speedup, learner.stops_early)  # fmt: skip
        ctx = _TrainerContext(
            self, device=device, world=world, precision=settings.precision,
            grad_clip=cfg.grad_clip, batch_size=cfg.batch_size, compile=compiled == "on",
            say=self._say,
        )  # fmt: skip
        learner.setup(ctx)
        learner.check_names()
        step, epoch, start = 0, 0, 0
        self.last_saved, self.best = None, None
        if resume:
            snap, state = load_checkpoint(
                self.run_dir, learner.tensor_groups(), list(learner.optimizers), ("extra",)
            )
            learner.restore(snap, str(self.run_dir / state["checkpoint"]))
            step, epoch, start = state["step"], state["epoch"], state["batch"]
            self.last_saved = step
            self.best = state.get("best")
            if world.main:
                _drop_lines_after(self.run_dir / "metrics.jsonl", step)
        every = checkpoint_interval(cfg.checkpoint_every, self.total)
        writer = self.writer = RunWriter(self.run_dir, world.main, cfg.progress, self.total, step)
        window: dict[str, float] = {}
        counts: dict[str, int] = {}
        window_n, t0 = 0, time.perf_counter()
        test_metrics: dict[str, float] = {}
        try:
            with run_settings(settings.threads, cfg.flush_denormal):
                while epoch < cfg.epochs:
                    for x in data.batches(
                        "train", cfg.batch_size, seed=cfg.seed, epoch=epoch, start=start
                    ):
                        if world.size > 1:
                            if len(x) < world.size:
                                # fewer rows than processes would leave a rank an empty shard (a
                                # NaN mean); every rank sees the same global batch: all skip it
                                start += 1
                                continue
                            x = world.shard(x)
                        _seed_step(device, step_seed(cfg.seed, step, world.rank))
                        terms = learner.train_step(to_device(x, device), step)
                        step, start = step + 1, start + 1
                        for k, v in terms.items():  # a term logged on some steps only
                            window[k] = window.get(k, 0.0) + v  # is averaged over those
                            counts[k] = counts.get(k, 0) + 1
                        window_n += 1
                        writer.progress(learner.progress_terms(terms))
                        if step % cfg.log_every == 0:
                            rate = window_n / (time.perf_counter() - t0)
                            line = {f"train/{k}": v / counts[k] for k, v in window.items()}
                            writer.log(step, epoch, {**line, "time/steps_per_s": rate})
                            window, counts, window_n, t0 = {}, {}, 0, time.perf_counter()
                        if step % every == 0:
                            self._save(world, learner, step, epoch, start)
                        if stop_at is not None and step >= stop_at:
                            return test_metrics
                        if learner.finished:
                            break
                    if learner.finished:  # converged: evaluate where it stands, save, stop
                        if world.main:
                            test_metrics = self.evaluate(learner, data, step).named()
                            writer.log(step, epoch, test_metrics)
                            self._keep_best(test_metrics, world, learner, step, epoch, start)
                        break
                    epoch, start = epoch + 1, 0
                    if world.main and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                        result = self.evaluate(learner, data, step)
                        test_metrics = result.named()
                        writer.log(step, epoch, test_metrics)
                        self._keep_best(test_metrics, world, learner, step, epoch, start)
                        if on_eval is not None:
                            try:
                                on_eval(step, test_metrics)
                            except BaseException:  # stopped from outside: resumable from here
                                self._save(world, learner, step, epoch, start)
                                raise
                        if result.finished:  # a goal reached (a target return): save, stop
                            break  # here rather than after one more step and a second evaluation
                # the end (the last epoch, a goal reached, converged): a checkpoint that says so
                self._save(world, learner, step, epoch, start, complete=True)
        finally:
            writer.close()
            learner.close()
            if world.size > 1:
                gc.collect()
        return test_metrics

    def _say(self, line: str) -> None:
        """A line from the learner to the person running it, beside the progress bar."""
        if self.writer is not None:
            self.writer.say(line)
        else:
            print(line, flush=True)

    def evaluate(self, learner: Learner, data, step: int) -> Evaluation:
        """The learner's evaluation with a fixed seed (the same samples at every evaluation);
        ``.named()`` gives its metrics as logged (``test/elbo``)."""
        cfg = self.config
        _seed_step(learner.ctx.device, step_seed(cfg.seed, -1))
        return learner.evaluate(data, step, seed=cfg.seed)

    def _save(self, world, learner: Learner, step: int, epoch: int, batch: int,
              complete: bool = False) -> None:  # fmt: skip
        if world.main:
            cfg = self.config
            state = {"epoch": epoch, "batch": batch, "seed": cfg.seed, "total": self.total,
                     "complete": complete}  # fmt: skip
            if self.best:
                state["best"] = self.best
            save_checkpoint(self.run_dir, step, learner.snapshot(), state,
                            keep=cfg.keep_checkpoints, protect=(self.best or {}).get("checkpoint", ""))  # fmt: skip
        self.last_saved = step

    def _keep_best(self, metrics: dict, world, learner: Learner, step, epoch, batch) -> None:
        """With ``keep_best``: a checkpoint of this step kept while it is the best evaluation."""
        if not self.config.keep_best:
            return
        metric, larger = self.config.best_metric()
        if metric not in metrics:
            raise ConfigError(
                f"--keep-best {self.config.keep_best}: this run's evaluation logs "
                f"{', '.join(sorted(metrics))}, not {metric}; the checkpoints so far are kept "
                f"(--resume continues with --keep-best one of those)"
            )
        value = float(metrics[metric])
        best = self.best
        if best is None or (value > best["value"] if larger else value < best["value"]):
            self.best = {"metric": metric, "value": value, "step": step,
                         "checkpoint": f"checkpoints/step-{step:07d}"}  # fmt: skip
            self._save(world, learner, step, epoch, batch)
