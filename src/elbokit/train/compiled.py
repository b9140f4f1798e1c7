"""A learner's step compiled with torch.compile, and eager where compiling fails.

``CompiledStep(fn, what, say)`` calls ``fn(batch, step)`` through Inductor: one graph per batch
shape (the last, shorter batch of an epoch gets its own), the step number a symbolic integer
(a KL warm-up reads it without a recompile at every step), random numbers drawn by torch's
generator exactly as eager mode draws them (``fallback_random``), so the trainer's per-step
seeding makes a compiled run reproducible and resumable bit for bit, and its draws the same as
an eager run's. If compiling fails (no C++ compiler, an operation Inductor cannot lower), the
run says so in one line and goes on eager from that step: the failed call changed nothing. The
backward graph is compiled with the forward, so its failures are caught there too.
"""

from __future__ import annotations

import types

import torch

__all__ = ["CompiledInference", "CompiledStep"]

_OPTIONS = {"fallback_random": True}


def _compile_error(e: BaseException) -> bool:
    """Whether ``e`` came from torch's compiler rather than from the code it compiles (whose
    own errors eager mode raises again)."""
    return type(e).__module__.startswith(("torch._dynamo", "torch._inductor", "torch._functorch"))


class CompiledStep:
    """``fn(batch, step)`` compiled by ``backend`` (Inductor; "aot_eager" to debug a graph
    without building kernels); ``eager`` is True once compiling has failed."""

    def __init__(self, fn, what: str, say=print, backend="inductor"):
        self.fn = fn
        self.what = what
        self.say = say
        self.eager = False

        def step_fn(batch, step):  # "step": the name marked dynamic below
            return fn(batch, step)

        # a code object of this step's own: Dynamo keeps compiled graphs, and counts recompiles
        # against its limit (8), per code object, so the steps of several runs in one process (a
        # study's trials) sharing one would each recompile it, and after 8 run eager
        code = step_fn.__code__.replace(co_name=f"step_{id(self):x}")
        step_fn = types.FunctionType(code, step_fn.__globals__, code.co_name, None,
                                     step_fn.__closure__)  # fmt: skip
        options = _OPTIONS if backend == "inductor" else None
        self._compiled = torch.compile(step_fn, backend=backend, options=options)

    def __call__(self, batch, step: int):
        if self.eager:
            return self.fn(batch, step)
        try:
            with (
                torch._dynamo.config.patch(automatic_dynamic_shapes=False),
                torch.compiler.config.patch(dynamic_sources="L['step']"),
                # the backward graph compiled with the forward, here, not lazily at the first
                # loss.backward() (torch's default), where its failure would escape this catch
                torch._functorch.config.patch(force_non_lazy_backward_lowering=True),
            ):
                return self._compiled(batch, step)
        except Exception as e:
            if not _compile_error(e):
                raise
            # an error of the step itself reaches the compiler too: eager mode raises it as it is
            out = self.fn(batch, step)
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()][:2]
            why = " ".join(lines)[:240] or type(e).__name__
            self.say(f"compiling {self.what} failed ({type(e).__name__}: {why}); "
                     "the run goes on eager")  # fmt: skip
            self.eager = True
            return out


class CompiledInference:
    """``fn(*rows)`` (tensors batched along dim 0, no gradients) compiled for inference, with the
    module weights it reads frozen into the graph as constants (Inductor's ``freezing``: convolution
    weights packed once, not at every call) and one graph for batches of ``rows`` rows: a shorter
    batch (the last chunk) is padded to it with copies of its first row and the answer cut back,
    so it does not compile a second graph. Weights changed after the first call are not seen: for
    evaluating a trained model. Eager where compiling fails (one line, as ``CompiledStep``)."""

    def __init__(self, fn, what: str, rows: int, say=print, backend="inductor"):
        self.fn = fn
        self.what = what
        self.rows = rows
        self.say = say
        self.eager = False

        def infer(*args):
            return fn(*args)

        code = infer.__code__.replace(co_name=f"infer_{id(self):x}")  # a cache of its own
        infer = types.FunctionType(code, infer.__globals__, code.co_name, None, infer.__closure__)
        options = _OPTIONS if backend == "inductor" else None
        self._compiled = torch.compile(infer, backend=backend, dynamic=False, options=options)

    def __call__(self, *args):
        if self.eager:
            return self.fn(*args)
        n = len(args[0])
        if n > self.rows:
            raise ValueError(f"{n} rows; this compiled {self.what} takes at most {self.rows}")
        if n < self.rows:
            pad = [0] * (self.rows - n)
            args = tuple(torch.cat([a, a[pad]]) for a in args)
        from torch._inductor import config as inductor

        try:
            with inductor.patch(freezing=True), torch.no_grad():
                out = self._compiled(*args)
        except Exception as e:
            if not _compile_error(e):
                raise
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()][:2]
            why = " ".join(lines)[:240] or type(e).__name__
            self.say(f"compiling {self.what} failed ({type(e).__name__}: {why}); it runs eager")
            self.eager = True
            return self.fn(*(a[:n] for a in args))
        return out[:n]
