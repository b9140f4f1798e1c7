"""elbokit: KL divergences and evidence lower bounds on PyTorch.

    log p(x) = ELBO(q) + KL(q(z|x) || p(z|x))

The library part (``elbokit.divergence``) is usable from any training loop; its public names are
re-exported here. Trained runs are used from Python with two calls:

    m = elbokit.train("vae", preset="debug", out="runs/mine", epochs=5)   # a run, loaded
    m = elbokit.load("runs/mine")              # its kind's verbs: m.sample(16), m.log_prob(x)

(``elbokit.train`` is also the package of the training loop, ``elbokit.train.Trainer``; calling
it trains a run of a kind, as ``elbokit train KIND`` does.)
"""

import sys as _sys
import types as _types

from elbokit._version import __version__
from elbokit.divergence import *  # noqa: F403
from elbokit.divergence import __all__ as _divergence_all

__all__ = [*_divergence_all, "__version__", "load", "train"]  # noqa: F405 (train: __getattr__)


def load(run, device: str = "cpu"):
    """The trained run in folder ``run`` as an object with its kind's verbs (a VAE's
    ``sample``, ``encode``, ``log_prob``; a mixture's ``predict``; an agent's ``act``), the
    weights of its latest checkpoint on ``device``, without reading its training data.
    See ``elbokit.recipes.loaded``."""
    from elbokit.recipes.run import load as _load

    return _load(run, device)


class _TrainPackage(_types.ModuleType):
    """``elbokit.train``: the training loop's package, and callable as
    ``elbokit.train(KIND, out=..., preset=..., **options)`` (``elbokit.recipes.run.train_python``),
    which trains a run as ``elbokit train KIND`` does and returns it loaded."""

    def __call__(self, kind: str, **options):
        from elbokit.recipes.run import train_python

        return train_python(kind, **options)


class _Package(_types.ModuleType):
    # the import system sets elbokit.train when the subpackage is first imported: make it callable
    def __setattr__(self, name, value):
        if name == "train" and type(value) is _types.ModuleType:
            value.__class__ = _TrainPackage
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name == "train":  # imported on first use (it pulls in the training loop)
        import importlib

        return importlib.import_module("elbokit.train")
    raise AttributeError(f"module 'elbokit' has no attribute {name!r}")
