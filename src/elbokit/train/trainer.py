"""The trainer: optimizer steps, live progress, metrics, checkpoints, resume, divergence checks.

It knows nothing about VAEs: it takes a model (``nn.Module``), an objective called as
``objective(model, x, step)`` returning an ``ObjectiveOutput`` (loss and named terms), and data
with ``batches(split, batch_size, seed=, epoch=, start=)``. Everything random is seeded from
(seed, step): the data order and binarization by the data, the objective's samples by seeding
torch's generator at every step. A run resumed from a checkpoint therefore draws exactly the
numbers an uninterrupted run draws, and ends with the same weights.

``precision="bf16"`` runs the forward pass under autocast (matrix multiplies in bf16 on AMX /
tensor cores, weights and optimizer in fp32); evaluation stays fp32. On this project's 2-core
AMX CPU it measured faster than bf16 weights with an fp32 master copy (benchmarks/).

Per run (restored afterwards, never at import): the thread count, if set, and flushing of
denormal floats, which otherwise slow Adam's updates once its moment estimates decay into the
denormal range (measured: a quarter of the first moments, epochs 9 s -> 13 s on Fashion-MNIST).
"""

from __future__ import annotations

import gc
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from elbokit.seeding import mix
from elbokit.train.checkpoint import load_checkpoint, save_checkpoint
from elbokit.train.distributed import setup, wrap


class TrainingDiverged(RuntimeError):
    """A loss term or gradient became NaN or inf; names the step, the term and the checkpoint."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=30, metadata={"help": "passes over the training set"})
    batch_size: int = field(default=100, metadata={"help": "examples per optimizer step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "seeds initialization, data order, sampling"})
    checkpoint_every: int = field(
        default=500, metadata={"help": "steps between checkpoints (and at the end)"}
    )
    log_every: int = field(default=50, metadata={"help": "steps between metrics.jsonl lines"})
    eval_every: int = field(
        default=1, metadata={"help": "epochs between test evaluations (and at the end)"}
    )
    threads: int = field(default=0, metadata={"help": "torch threads for the run (0: leave as is)"})
    flush_denormal: bool = field(
        default=True, metadata={"help": "flush denormal floats during the run"}
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    grad_clip: float = field(
        default=0.0, metadata={"help": "clip the gradient's global norm to this (0: off)"}
    )
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1, ..."})
    precision: str = field(
        default="fp32",
        metadata={"help": "fp32, or bf16 (autocast: bf16 matmuls, fp32 weights and sums)"},
    )

    def __post_init__(self):
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; expected >= 1")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip={self.grad_clip}; expected >= 0 (0: off)")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}; expected > 0")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}; expected 'fp32' or 'bf16'")


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of torch's generator at a training step on a rank (step -1: evaluation)."""
    return mix(seed, 0x5EED, step) if rank == 0 else mix(seed, 0x5EED, step, rank)


def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where torch has it (CPU and CUDA): a quarter of a VAE step on this machine was
    torch's per-parameter Adam loop; fused measured 6-12% faster per epoch, weights within 1e-5 of
    the loop version after 45 steps (benchmarks/vae_vs_peers.py)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def _seed_step(device: torch.device, seed: int) -> None:
    """Seed the generator the objective draws from: 1 us for the CPU's, against torch.manual_seed's
    86 us (it visits every device type), which was 1% of a VAE step on this machine."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


@contextmanager
def _run_settings(config: TrainConfig):
    threads = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    flushed = config.flush_denormal and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


class _Progress:
    """tqdm when available and wanted, else nothing; shows the live loss terms."""

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

    def update(self, terms: dict[str, float]):
        if self.bar is not None:
            self.bar.update(1)
            shown = {k: f"{v:.2f}" for k, v in terms.items() if "/" not in k and k != "kl_weight"}
            self.bar.set_postfix(shown, refresh=False)

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


class _Writer:
    """Progress bar, metrics.jsonl and TensorBoard, on the main process only."""

    def __init__(self, run_dir: Path, main: bool, progress: bool, total: int, initial: int):
        self.main = main
        self.file = open(run_dir / "metrics.jsonl", "a") if main else None
        self.tensorboard = _TensorBoard(run_dir) if main else None
        self.bar = _Progress(progress and main, total, initial, run_dir.name)

    def progress(self, terms):
        self.bar.update(terms)

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


class Trainer:
    """Fits a model to data by an objective, writing everything to ``run_dir``.

    Run directory: ``state.json`` (step, epoch, batch, the checkpoint it names),
    ``checkpoints/step-N/{model,optimizer}.safetensors``, ``metrics.jsonl`` (one JSON object per
    line, namespaced keys: ``train/elbo``, ``test/elbo``, ``time/steps_per_s``), and
    ``tensorboard/`` when tensorboard is installed. ``config.json`` is the caller's. Under
    torchrun the step is data-parallel over the processes and rank 0 alone writes (see
    ``elbokit.train.distributed``).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path):
        self.config = config
        self.run_dir = Path(run_dir)

    def fit(
        self,
        model: torch.nn.Module,
        objective,
        data,
        *,
        resume: bool = False,
        stop_at: int | None = None,
    ) -> dict:
        """Train; returns the last test metrics. ``stop_at`` ends early after that step (tests).

        Raises:
            TrainingDiverged: NaN or inf in a loss term or the gradient; the last good
                checkpoint is kept and named.
            CheckpointError: resume=True and the checkpoint is missing, corrupt or does not fit.
        """
        cfg = self.config
        world = setup(cfg.device)
        device = torch.device(cfg.device)
        if world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        model.to(device)
        optimizer = make_adam(model.parameters(), cfg.lr)
        step, epoch, start = 0, 0, 0
        if resume:
            state = load_checkpoint(self.run_dir, model, optimizer)
            step, epoch, start = state["step"], state["epoch"], state["batch"]
        module = wrap(model, objective, world, device)
        per_epoch = data.num_batches("train", cfg.batch_size)
        total = cfg.epochs * per_epoch
        writer = _Writer(self.run_dir, world.main, cfg.progress, total, step)
        last_saved = step if resume else None
        window: dict[str, float] = {}
        window_n, t0 = 0, time.perf_counter()
        test_metrics: dict[str, float] = {}
        try:
            with _run_settings(cfg):
                while epoch < cfg.epochs:
                    model.train()
                    for x in data.batches(
                        "train", cfg.batch_size, seed=cfg.seed, epoch=epoch, start=start
                    ):
                        if len(x) < world.size:
                            # fewer rows than processes would leave a rank an empty shard (a NaN
                            # mean); every rank sees the same global batch, so all skip it
                            start += 1
                            continue
                        _seed_step(device, step_seed(cfg.seed, step, world.rank))
                        with torch.autocast(
                            device.type, torch.bfloat16, enabled=cfg.precision == "bf16"
                        ):
                            loss, out = module(world.shard(x).to(device), step)
                        names = ["loss", *out.terms]
                        values = world.mean(
                            torch.stack([loss.detach(), *(t.detach() for t in out.terms.values())])
                        )
                        self._check_finite(
                            step, dict(zip(names, values.tolist(), strict=True)), last_saved
                        )
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        self._check_gradients(step, model, last_saved, cfg.grad_clip)
                        optimizer.step()
                        step, start = step + 1, start + 1
                        terms = dict(zip(names[1:], values.tolist()[1:], strict=True))
                        for k, v in terms.items():
                            window[k] = window.get(k, 0.0) + v
                        window_n += 1
                        writer.progress(terms)
                        if step % cfg.log_every == 0:
                            rate = window_n / (time.perf_counter() - t0)
                            line = {f"train/{k}": v / window_n for k, v in window.items()}
                            writer.log(step, epoch, {**line, "time/steps_per_s": rate})
                            window, window_n, t0 = {}, 0, time.perf_counter()
                        if step % cfg.checkpoint_every == 0:
                            if world.main:
                                self._save(step, epoch, start, model, optimizer)
                            last_saved = step
                        if stop_at is not None and step >= stop_at:
                            return test_metrics
                    epoch, start = epoch + 1, 0
                    if world.main and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                        test_metrics = self.evaluate(model, objective, data, step)
                        writer.log(step, epoch, test_metrics)
                if last_saved != step and world.main:
                    self._save(step, epoch, start, model, optimizer)
        finally:
            writer.close()
            if world.size > 1:
                # DDP's reducer sits in a reference cycle; left to the interpreter's exit it is
                # destroyed after the process group and aborts the process ("terminate called
                # without an active exception", 2 of 25 launches). Free it here.
                del module
                gc.collect()
        return test_metrics

    @torch.no_grad()
    def evaluate(self, model, objective, data, step: int) -> dict[str, float]:
        """Mean terms over the test split, with a fixed seed (the same samples every epoch)."""
        model.eval()
        cfg = self.config
        sums: dict[str, float] = {}
        n = 0
        _seed_step(torch.device(cfg.device), step_seed(cfg.seed, -1))
        for x in data.batches("test", cfg.batch_size, seed=cfg.seed, epoch=-1, shuffle=False):
            out = objective(model, x.to(cfg.device), step)
            for k, v in out.terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(x)
            n += len(x)
        model.train()
        return {f"test/{k}": v / n for k, v in sums.items() if k != "kl_weight"}

    def _save(self, step, epoch, batch, model, optimizer):
        state = {"epoch": epoch, "batch": batch, "seed": self.config.seed}
        save_checkpoint(self.run_dir, step, model, optimizer, state)

    def _where(self, last_saved) -> str:
        if last_saved is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {last_saved}) is kept in {self.run_dir}"

    def _check_finite(self, step, values: dict[str, float], last_saved):
        for name, v in values.items():
            if not math.isfinite(v):
                raise TrainingDiverged(
                    f"step {step}: the {name!r} term is {v}; {self._where(last_saved)}"
                )

    def _check_gradients(self, step, model, last_saved, clip: float = 0.0):
        """Raise on a non-finite gradient; then, with ``clip`` > 0, scale the gradients so their
        global norm is at most ``clip`` (the norm is computed once for both)."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if clip > 0 and torch.isfinite(norm) and norm > clip:
            torch._foreach_mul_(grads, clip / float(norm))
        if not torch.isfinite(norm):
            name = next(
                n
                for n, p in model.named_parameters()
                if p.grad is not None and not torch.isfinite(p.grad).all()
            )
            raise TrainingDiverged(
                f"step {step}: the gradient of {name!r} is not finite; {self._where(last_saved)}"
            )
