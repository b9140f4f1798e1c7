"""The learner seam: what is trained owns its step; the trainer owns everything around it.

A ``Learner`` has named ``modules`` (saved as ``NAME.safetensors``), named ``optimizers`` (none,
one or several, built in ``setup`` once the modules are on their device), any extra state
(``extra_state``: a replay buffer, closed-form variational parameters, an environment's random
state) and

    train_step(batch, step) -> {name: float}     one step; the named terms to log
    evaluate(data, step, seed=) -> Evaluation    named metrics, the split they were computed on
                                                 (the trainer logs SPLIT/NAME) and whether the
                                                 learner is done (a target return reached)
    finished                                     True once further steps would change nothing
                                                 (a converged coordinate ascent)

``update(name, loss, terms, step, named_params)`` is how a learner takes an optimizer step
through the trainer's checks: the terms (and the loss) are averaged over processes and must be
finite, the gradient must be finite and is clipped to the configured norm, then the optimizer
steps. A learner with several optimizers calls it once per optimizer. Outside a trainer the
learner runs under ``StepContext()``: one process, no clipping, the same finite checks.

``ObjectiveLearner`` is the common case: one model, one objective (``objective(model, batch,
step)`` returning an ``ObjectiveOutput``) and one Adam.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from elbokit.config import Section, opt
from elbokit.train.checkpoint import (
    CheckpointError,
    Snapshot,
    load_module,
    optimizer_snapshot,
    restore_optimizer,
)
from elbokit.train.distributed import World

__all__ = [
    "AdamConfig",
    "Evaluation",
    "Learner",
    "ObjectiveLearner",
    "ObjectiveModule",
    "StepContext",
    "TrainingDiverged",
    "check_gradients",
    "make_adam",
]


class TrainingDiverged(RuntimeError):
    """A loss term or gradient became NaN or inf; names the step, the term and the checkpoint."""


@dataclass(frozen=True)
class AdamConfig(Section):
    lr: float = opt(1e-3, "Adam learning rate", gt=0)


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation found: ``metrics`` by name, the ``split`` they were computed on (the
    trainer logs them as ``SPLIT/NAME``: "test" for held-out data or fresh episodes, "full" for
    the whole data a model is fitted to), and ``finished``: the learner has reached what it was
    trained for (a target return) and the trainer stops after saving."""

    metrics: dict[str, float]
    split: str = "test"
    finished: bool = False

    def named(self) -> dict[str, float]:
        return {f"{self.split}/{k}": v for k, v in self.metrics.items()}


def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where torch has it (CPU and CUDA): a quarter of a VAE step on this machine was
    torch's per-parameter Adam loop; fused measured 6-12% faster per epoch, weights within 1e-5 of
    the loop version after 45 steps (benchmarks/vae_vs_peers.py)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def check_gradients(named_params: Iterable[tuple[str, nn.Parameter]], clip: float = 0.0):
    """The global gradient norm of the parameters that have a gradient, after scaling them so it
    is at most ``clip`` (``clip`` > 0); the norm is computed once for both. Returns
    (norm before clipping, what is wrong with the gradient in words, or None)."""
    named = [(n, p) for n, p in named_params if p.grad is not None]
    if not named:
        return 0.0, None
    grads = [p.grad for _, p in named]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if not torch.isfinite(norm):
        bad = next((n for n, p in named if not torch.isfinite(p.grad).all()), None)
        if bad is not None:
            return float(norm), f"the gradient of {bad!r} is not finite"
        # every element finite, their norm beyond the float range: diverged all the same
        largest = max(named, key=lambda item: float(item[1].grad.abs().max()))[0]
        return float(norm), (
            f"the gradient's norm overflows to inf (every element is finite; the largest are "
            f"in {largest!r})"
        )
    if clip > 0 and norm > clip:
        torch._foreach_mul_(grads, clip / float(norm))
    return float(norm), None


class StepContext:
    """What a learner's step may use of the run around it: the device, the process group, the
    precision, the checks. This plain one is a single process with no clipping; the trainer's
    adds the processes, the clip and where the last checkpoint is."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        world: World | None = None,
        precision: str = "fp32",
        grad_clip: float = 0.0,
        batch_size: int = 100,
        training: bool = True,
        compile: bool = False,
        say=print,
    ):
        self.device = torch.device(device)
        # False for a learner rebuilt only to be used (a loaded run): no optimizers are built
        # (making the first one imports torch's compiler, a second on a laptop)
        self.training = training
        self.world = world or World()
        self.precision = precision
        self.grad_clip = grad_clip
        self.batch_size = batch_size  # of held-out batches in the default evaluation
        self.compile = compile  # compile the step (resolved: settings.resolve_compile)
        self.say = say  # one line to the person running it (beside the progress bar)

    def where(self) -> str:
        """Where the last good state is, for a divergence message."""
        return "no checkpoint was written yet"

    def autocast(self):
        """bf16 autocast of the forward pass when the run's precision is bf16."""
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16")

    def compiled(self, fn, what: str):
        """``fn(batch, step)`` compiled when the run compiles (``elbokit.train.compiled``),
        else ``fn`` itself."""
        if not self.compile:
            return fn
        from elbokit.train.compiled import CompiledStep

        return CompiledStep(fn, what, self.say)

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module DistributedDataParallel-wrapped when there are several processes."""
        if self.world.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index or 0] if self.device.type == "cuda" else None
        return DDP(module, device_ids=ids)

    def check_terms(self, step: int, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """The terms averaged over processes, as floats; TrainingDiverged naming the first that
        is not finite (every process sees the same averages, so all stop together)."""
        names = list(terms)
        parts = [torch.as_tensor(t).detach().reshape(()) for t in terms.values()]
        dtype = functools.reduce(torch.promote_types, (p.dtype for p in parts))
        stacked = torch.stack([p.to(dtype) for p in parts])
        values = self.world.mean(stacked).tolist()
        for name, v in zip(names, values, strict=True):
            if not math.isfinite(v):
                raise TrainingDiverged(f"step {step}: the {name!r} term is {v}; {self.where()}")
        return dict(zip(names, values, strict=True))

    def check_gradients(self, step: int, named_params) -> float:
        norm, problem = check_gradients(named_params, self.grad_clip)
        if problem is not None:
            raise TrainingDiverged(f"step {step}: {problem}; {self.where()}")
        return norm


class Learner:
    """Base of everything the trainer trains (see the module docstring)."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ctx: StepContext
    compilable = False  # whether setup compiles the step when ctx.compile (--compile on)
    # eager / compiled step time per device type, as measured (benchmarks/): --compile auto
    # compiles only where this is well above 1 (settings.resolve_compile)
    compile_speedup: dict[str, float] = {}  # noqa: RUF012 -- read only
    # whether the run may end before its planned steps (a bar it stops at): --compile auto then
    # cannot count on the planned length to pay a compile back
    stops_early = False
    # bf16 / fp32 step speed per bf16 class (settings.bf16_class), as measured by
    # benchmarks/precision_bench.py, for the classes where the kind's test metrics under bf16 were
    # also checked against fp32's: --precision auto takes bf16 where it pays. None: the step has no
    # bf16 path (no autocast); {}: it has one, not measured
    bf16_speedup: dict[str, float] | None = None

    def __init__(self):
        self.modules = {}
        self.optimizers = {}
        self.ctx = StepContext()

    # ---------------------------------------------------------------- what a learner implements
    def setup(self, ctx: StepContext) -> None:
        """Move the modules to ``ctx.device`` and build the optimizers (override to add yours,
        calling this first; none where ``ctx.training`` is False)."""
        self.ctx = ctx
        for module in self.modules.values():
            module.to(ctx.device)
            module.train()

    def train_step(self, batch, step: int) -> dict[str, float]:
        raise NotImplementedError

    def eval_terms(self, batch, step: int) -> dict[str, torch.Tensor]:
        """Terms of one held-out batch (batch means); used by the default ``evaluate``."""
        raise NotImplementedError

    @contextlib.contextmanager
    def eval_mode(self):
        """The modules in eval mode inside the block, back in train mode after it (as trained)."""
        for m in self.modules.values():
            m.eval()
        try:
            yield
        finally:
            for m in self.modules.values():
                m.train()

    @torch.no_grad()
    def evaluate(self, data, step: int, *, seed: int) -> Evaluation:
        """The learner judged at ``step`` (``data``: what it trains on; ``seed``: the run's).
        This default: means of ``eval_terms`` over the test split in batches of
        ``ctx.batch_size``, weighted by batch size. Learners that make their own data (fresh
        episodes) or fit all of it (a mixture) override it."""
        sums: dict[str, float] = {}
        n = 0
        with self.eval_mode():
            for x in data.batches("test", self.ctx.batch_size, seed=seed, epoch=-1, shuffle=False):
                terms = self.eval_terms(to_device(x, self.ctx.device), step)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(x)
                n += len(x)
        return Evaluation({k: v / n for k, v in sums.items()})

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """State beyond modules and optimizers: (tensors, JSON); saved as ``extra.*``."""
        return {}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if tensors or meta:
            raise CheckpointError(f"{type(self).__name__} keeps no extra state, but one was saved")

    @property
    def finished(self) -> bool:
        """True once further steps would change nothing (a converged coordinate ascent): the
        trainer then evaluates, saves and stops before its epochs run out. A state of the
        learner (saved with it), not a side effect of evaluating: a goal reached at an evaluation
        is ``Evaluation.finished``. Every process must agree; the default never finishes."""
        return False

    def close(self) -> None:
        """Drop what holds the process group (DDP wrappers) before it is destroyed."""

    # ----------------------------------------------------------------- what the base provides
    def update(
        self, name: str, loss: torch.Tensor, terms: dict, step: int, named_params
    ) -> dict[str, float]:
        """Check ``loss`` and ``terms``, backpropagate ``loss``, check and clip the gradient of
        ``named_params``, step optimizer ``name``. Returns the checked terms as floats."""
        values = self.ctx.check_terms(step, {"loss": loss, **terms})
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.ctx.check_gradients(step, named_params)
        optimizer.step()
        values.pop("loss")
        return values

    def tensor_groups(self, *, with_optimizers: bool = True) -> list[str]:
        groups = list(self.modules)
        if with_optimizers:
            groups += list(self.optimizers)
        return groups

    def snapshot(self) -> Snapshot:
        snap = Snapshot()
        for name, module in self.modules.items():
            snap.tensors[name] = {k: v.detach() for k, v in module.state_dict().items()}
        for name, optimizer in self.optimizers.items():
            snap.tensors[name], snap.meta[name] = optimizer_snapshot(optimizer)
        tensors, meta = self.extra_state()
        if tensors:
            snap.tensors["extra"] = tensors
        if meta:
            snap.meta["extra"] = meta
        return snap

    def check_names(self) -> None:
        """Modules, optimizers and ``extra`` are files of one checkpoint folder: their names
        must differ (called by the trainer once the optimizers exist)."""
        clash = (set(self.modules) & set(self.optimizers)) | (
            {"extra"} & (set(self.modules) | set(self.optimizers))
        )
        if clash:
            raise ValueError(
                f"{type(self).__name__}: {sorted(clash)} names both a module and an optimizer "
                "(or 'extra'); each is a file of the checkpoint, so name them apart "
                "(e.g. 'actor' and 'actor_optim')"
            )

    def restore(
        self, snap: Snapshot, where: str = "checkpoint", *, optimizers: bool = True
    ) -> None:
        """The modules, the optimizers (unless ``optimizers=False``: a model rebuilt to be used,
        not trained) and the extra state from a checkpoint."""
        for name, module in self.modules.items():
            load_module(module, snap.tensors[name], f"{where}/{name}.safetensors")
        for name, optimizer in self.optimizers.items() if optimizers else ():
            restore_optimizer(optimizer, snap.tensors[name], snap.meta[name])
        if "extra" in snap.tensors or "extra" in snap.meta:
            self.load_extra_state(snap.tensors.get("extra", {}), snap.meta.get("extra", {}))

    def progress_terms(self, terms: dict[str, float]) -> dict[str, float]:
        """The terms shown beside the progress bar: those without a '/' in their name."""
        return {k: v for k, v in terms.items() if "/" not in k}


def to_device(batch, device: torch.device):
    """A batch moved to the device when it can be (tensors, SequenceBatch); others as they are."""
    return batch.to(device) if hasattr(batch, "to") else batch


class ObjectiveModule(nn.Module):
    """model + objective as one module whose forward is the loss, for DDP to synchronize.

    DDP averages gradients only through its wrapped module's forward; objectives call the
    model's encode/decode directly, so the objective itself runs inside this forward.
    """

    def __init__(self, model: nn.Module, objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x, step: int):
        out = self.objective(self.model, x, step)
        return out.loss, out


class ObjectiveLearner(Learner):
    """One model trained by one objective with one Adam (the VAE, the world model, ...).

    ``diagnostics(model, batch) -> {name: tensor}``, if given, adds terms computed without
    gradient at the same parameters as the step's loss (exact quantities of a model whose
    answers are known, say).

    With ``--compile on`` the model and objective's forward is compiled, and with it their
    backward (one graph per batch shape); the checks, the clipping and the fused Adam stay as
    they are (measured: compiling those gained nothing, docs/benchmarks.md).
    """

    compilable = True

    def __init__(
        self, model: nn.Module, objective, optim: AdamConfig, diagnostics=None,
        compile_speedup: dict[str, float] | None = None,
        bf16_speedup: dict[str, float] | None = None,
    ):  # fmt: skip
        super().__init__()
        self.compile_speedup = compile_speedup or {}
        self.bf16_speedup = {} if bf16_speedup is None else bf16_speedup
        self.model = model
        self.objective = objective
        self.optim = optim
        self.diagnostics = diagnostics
        self.modules = {"model": model}
        self.module: nn.Module | None = None
        self.forward = None  # the module, or its compiled step (setup)

    def setup(self, ctx: StepContext) -> None:
        super().setup(ctx)
        if ctx.training:
            self.optimizers = {"optimizer": make_adam(self.model.parameters(), self.optim.lr)}
        self.module = ctx.wrap(ObjectiveModule(self.model, self.objective))
        self.forward = ctx.compiled(self.module, "the model's step")

    def train_step(self, batch, step: int) -> dict[str, float]:
        with self.ctx.autocast():
            loss, out = self.forward(batch, step)
        terms = dict(out.terms)
        if self.diagnostics is not None:
            with torch.no_grad():
                terms.update(self.diagnostics(self.model, batch))
        values = self.update("optimizer", loss, terms, step, self.model.named_parameters())
        values.update(out.settings)
        return values

    def eval_terms(self, batch, step: int) -> dict[str, torch.Tensor]:
        out = self.objective(self.model, batch, step)
        terms = dict(out.terms)
        if self.diagnostics is not None:
            terms.update(self.diagnostics(self.model, batch))
        return terms

    def close(self) -> None:
        if self.module is not None and self.ctx.world.size > 1:
            # DDP's reducer sits in a reference cycle; left to the interpreter's exit it is
            # destroyed after the process group and aborts the process ("terminate called
            # without an active exception", 2 of 25 launches). Free it here.
            self.module = self.forward = None
            gc.collect()
