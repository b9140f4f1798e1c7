"""The ``bnn`` kind: Bayes by backprop, judged by its predictions, beside the networks people use.

    elbokit train bnn                          1-D regression with a gap in the inputs (toy1d)
    elbokit train bnn --preset diabetes [--split 3]    one of 20 random 90/10 splits (UCI style)
    elbokit train bnn --preset digits / --preset mnist5k      classification
    elbokit train bnn --prior scale-mixture    Blundell et al.'s prior, KL by Monte Carlo
    elbokit eval RUN [--samples 200]  /  elbokit report RUN

A mean-field Gaussian q(w) over every weight (``elbokit.models.bnn``) maximizes the ELBO over
weights, a minibatch at a time: the batch's mean log-likelihood minus KL(q || p) / N
(``ELBO.from_global_kl``), so the losses of an epoch average to -ELBO(D) / N. In the same steps,
on the same batches, two networks of the same architecture are trained beside it (unless
``--no-baselines``): a deterministic one (MAP with the Gaussian prior's weight decay) and an
MC-dropout one. Predictions average ``samples`` draws. Evaluation: test log-likelihood, RMSE and
95% coverage with the aleatoric and epistemic spread (regression); accuracy, NLL, expected
calibration error and an out-of-distribution ROC AUC from predictive entropy (classification);
KL(q || p) with its method and standard error. Report: the predictive band (1-D), predictions
against targets, the reliability diagram, entropy in and out of distribution, curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data.labelled import LabelledData, LabelledDataConfig
from elbokit.evaluate.predictive import (
    classification_metrics,
    entropy,
    regression_metrics,
    roc_auc,
)
from elbokit.models.bnn import BNNConfig, Predictor, kl_estimate, kl_to_prior
from elbokit.objectives import ELBO
from elbokit.objectives.schedules import KLSchedule
from elbokit.recipes.base import Built, Recipe, Run, derive
from elbokit.recipes.loaded import Loaded, as_batch, as_pixels
from elbokit.seeding import seeded
from elbokit.train.learner import AdamConfig, Learner, StepContext, make_adam
from elbokit.train.loop import TrainConfig

BASELINES = ("det", "dropout")
LABELS = {"bnn": "Bayes by backprop", "det": "deterministic (MAP)", "dropout": "MC dropout"}


@dataclass(frozen=True)
class BNNObjectiveConfig(Section):
    beta: float = opt(1.0, "weight of KL(q || p) (1: the ELBO itself)", ge=0)
    kl_warmup: int = opt(0, "steps of linear KL warm-up from 0 to beta (0: none)", ge=0)

    def build(self) -> ELBO:
        schedule = KLSchedule("linear", self.kl_warmup) if self.kl_warmup else KLSchedule()
        return ELBO(beta=self.beta, schedule=schedule)


@dataclass(frozen=True)
class BNNAfterTraining(Section):
    eval_samples: int = opt(
        100, "then evaluate with this many weight draws per prediction and write the report "
        "(0: neither)", ge=0,
    )  # fmt: skip


@dataclass(frozen=True)
class BNNEvalOptions(Section):
    samples: int = opt(100, "weight draws (dropout masks) averaged per prediction", ge=2)
    seed: int = opt(0, "seed of the draws", ge=0)


def _train_defaults() -> TrainConfig:
    return TrainConfig(
        epochs=800, batch_size=50, log_every=50, checkpoint_every=1000, eval_every=50
    )


@dataclass(frozen=True)
class BNNRunConfig(Section):
    data: LabelledDataConfig = opt(default_factory=LabelledDataConfig, help="the pairs (x, y)")
    model: BNNConfig = opt(default_factory=BNNConfig, help="the networks and the prior")
    objective: BNNObjectiveConfig = opt(
        default_factory=BNNObjectiveConfig, help="the ELBO over weights"
    )
    optim: AdamConfig = opt(
        default_factory=lambda: AdamConfig(lr=1e-2),
        help="the optimizer (each network its own Adam)",
    )
    train: TrainConfig = opt(default_factory=_train_defaults, help="the training loop")
    evaluate: BNNAfterTraining = opt(default_factory=BNNAfterTraining, help="after training")

    def validate(self):
        if self.model.arch == "conv" and self.data.source in ("toy1d", "diabetes"):
            raise ConfigError(f"arch = conv needs images; {self.data.source} has vectors")


class BNNLearner(Learner):
    """The Bayesian network (module ``bnn``) and, with ``baselines``, ``det`` and ``dropout``,
    each with its own Adam, stepped on the same batch."""

    def __init__(self, cfg: BNNRunConfig, data: LabelledData | None = None):
        super().__init__()
        m = cfg.model
        self.prior = m.weight_prior()
        self.objective = cfg.objective.build()
        self.lr = cfg.optim.lr
        d = cfg.data  # without the data: its shapes as saved with the run
        self.n = d.train_size if data is None else len(data.y_train)
        shape = d.input_shape if data is None else data.input_shape
        classes = d.classes if data is None else data.classes
        task, outs = ("classification", classes) if classes else ("regression", 1)
        self.modules = {"bnn": Predictor(m, shape, outs, task, "bayes")}
        if m.baselines:
            self.modules["det"] = Predictor(m, shape, outs, task, "plain")
            self.modules["dropout"] = Predictor(m, shape, outs, task, "dropout")
        # MAP baselines: the Gaussian prior of sigma as weight decay, per example (/ N)
        self.decay = 1.0 / (2.0 * m.prior_sigma**2 * self.n)

    def setup(self, ctx: StepContext) -> None:
        super().setup(ctx)
        self.optimizers = (
            {}
            if not ctx.training
            else {f"{k}_optim": make_adam(v.parameters(), self.lr) for k, v in self.modules.items()}
        )

    def kl(self) -> tuple[torch.Tensor, str]:
        return kl_to_prior(self.modules["bnn"].net, self.prior)

    def train_step(self, batch, step: int) -> dict[str, float]:
        bnn = self.modules["bnn"]
        ll = bnn.log_likelihood(bnn(batch.x), batch.y)
        kl, method = self.kl()
        out = self.objective.from_global_kl(ll, kl, self.n, step, kl_method=method)
        terms = self.update("bnn_optim", out.loss, out.terms, step, bnn.named_parameters())
        terms.update(out.settings)
        for name in BASELINES:
            if name in self.modules:
                net = self.modules[name]
                nll = -net.log_likelihood(net(batch.x), batch.y).mean()
                l2 = sum(
                    p.square().sum() for n, p in net.net.named_parameters() if n.endswith("weight")
                )
                loss = nll + self.decay * l2
                terms.update(self.update(f"{name}_optim", loss, {f"{name}/nll": nll.detach()},
                                         step, net.named_parameters()))  # fmt: skip
        return terms

    def eval_terms(self, batch, step: int) -> dict[str, torch.Tensor]:
        terms = {}
        for name, net in self.modules.items():
            prefix = "" if name == "bnn" else f"{name}/"
            terms.update({f"{prefix}{k}": torch.tensor(v) for k, v in
                          predict(net, batch.x, batch.y, 10).items() if k in ("nll", "rmse", "accuracy")})  # fmt: skip
        return terms


def predict(net: Predictor, x, y, samples: int, y_std: float = 1.0) -> dict[str, float]:
    """The metrics of ``net``'s predictive (``samples`` draws averaged) on (x, y); "nll" is the
    negative test log-likelihood per example in both tasks."""
    outs = net.sample_outputs(x, samples)
    if net.task == "regression":
        r = regression_metrics(outs, net.noise().detach(), y, y_std)
        return {"nll": -r["log_likelihood"], **r}
    return classification_metrics(outs.softmax(-1).mean(0), y)


@dataclass(frozen=True)
class Prediction:
    """A regression's predictive distribution per input, in the targets' units: ``mean`` (N,),
    ``aleatoric`` (N,) the noise's standard deviation, ``epistemic`` (N,) the standard
    deviation of the mean over weight draws; ``std`` = sqrt(aleatoric^2 + epistemic^2)."""

    mean: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return (self.aleatoric.square() + self.epistemic.square()).sqrt()


class LoadedBNN(Loaded):
    """A trained Bayesian network (``elbokit.load``): ``predict(x)`` and, for classification,
    ``predict_proba(x)``, averaging ``samples`` weight draws (seeded), on inputs in the data's
    own units (standardized as in training, with the training split's statistics saved with the
    run). ``net="det"`` or ``"dropout"`` asks the baselines trained beside it instead."""

    def _net(self, net: str) -> Predictor:
        if net not in self.modules:
            raise ValueError(f"net = {net!r}; this run has {', '.join(self.modules)}")
        return self.modules[net]

    def _inputs(self, x) -> torch.Tensor:
        d = self.config.data
        shape = tuple(d.input_shape)  # () for a run saved before its shapes were
        images = len(shape) == 3  # pixels in [0, 1] (or 8-bit), as in training
        x = as_pixels(x, "x", self.device) if images else as_batch(x, "x", device=self.device)
        if x.dim() == 1 and shape == (1,):
            x = x[:, None]
        if x.dim() == 2 and len(shape) > 1 and x.shape[1] == math.prod(shape):
            x = x.reshape(len(x), *shape)
        if shape and tuple(x.shape[1:]) != shape:
            raise ValueError(f"x has shape {tuple(x.shape)}; this network takes "
                             f"(N, {', '.join(map(str, shape))})")  # fmt: skip
        if d.x_mean:
            mean = torch.tensor(d.x_mean, dtype=torch.float64, device=x.device)
            std = torch.tensor(d.x_std, dtype=torch.float64, device=x.device)
            x = ((x.double() - mean) / std).float()
        return x

    def _outputs(self, x, samples: int, seed: int, net: str) -> torch.Tensor:
        if samples < 1:
            raise ValueError(f"samples = {samples}; expected at least 1")
        with seeded(seed):
            return self._net(net).sample_outputs(self._inputs(x), samples)

    def predict(self, x, *, samples: int = 100, seed: int = 0, net: str = "bnn"):
        """Regression: a ``Prediction`` (mean, aleatoric and epistemic spread, targets'
        units). Classification: the most probable class (N,)."""
        outs = self._outputs(x, samples, seed, net)
        if self._net(net).task == "classification":
            return outs.softmax(-1).mean(0).argmax(-1)
        d = self.config.data
        noise = self._net(net).noise().detach()
        mean, spread = outs.double().mean(0), outs.double().std(0, correction=0)
        return Prediction(mean * d.y_std + d.y_mean, (noise * d.y_std).double().expand_as(mean),
                          spread * d.y_std)  # fmt: skip

    def predict_proba(self, x, *, samples: int = 100, seed: int = 0, net: str = "bnn"):
        """Classification: (N, classes) predictive probabilities, the mean over weight draws of
        the softmax."""
        if self._net(net).task != "classification":
            raise ValueError("predict_proba is for classification; this network is a regression "
                             "(predict gives its mean and spread)")  # fmt: skip
        return self._outputs(x, samples, seed, net).softmax(-1).mean(0)


class BNNRecipe(Recipe):
    headline = "test/nll:min"  # what a study optimizes by default
    name = "bnn"
    help = (
        "Bayes by backprop (mean-field Gaussian weights) beside a deterministic net and MC dropout"
    )
    config = BNNRunConfig
    loaded = LoadedBNN
    labels: ClassVar[dict[str, str]] = {
        "nll": "test NLL per example (nats)",
        "log_likelihood": "test log-likelihood per example (nats)",
        "rmse": "test RMSE",
        "coverage_95": "test targets inside the 95% interval",
        "sd_aleatoric": "aleatoric sd (the noise)",
        "sd_epistemic": "epistemic sd (over weights)",
        "accuracy": "test accuracy",
        "ece": "expected calibration error",
        "ood_auroc": "out-of-distribution ROC AUC (entropy)",
    }
    eval_options = BNNEvalOptions
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "toy1d: 500 points with a gap, MLP 1-50-1, 800 epochs: ~30 s",
        "diabetes": "scikit-learn's diabetes, split --split of 20 (90/10), MLP 10-50-1, 500 epochs: ~25 s",
        "digits": "scikit-learn's 8x8 digits, MLP 64-100-10, 300 epochs: ~20 s",
        "mnist5k": "5,000 MNIST digits, MLP 784-200-10, initial sigma 0.01 (1e-3 learns slower here), 50 epochs",
        "debug": "toy1d, 20 epochs: seconds",
    }
    presets: ClassVar[dict[str, dict]] = {
        "default": {},
        "diabetes": {"data": {"source": "diabetes"},
                     "train": {"epochs": 500, "batch_size": 32, "eval_every": 50}},
        "digits": {"data": {"source": "digits"}, "model": {"hidden": (100,)}, "optim": {"lr": 3e-3},
                   "train": {"epochs": 300, "batch_size": 100, "eval_every": 25}},
        "mnist5k": {"data": {"source": "mnist5k"}, "model": {"hidden": (200,), "init_sigma": 0.01}, "optim": {"lr": 1e-3},
                    "train": {"epochs": 50, "batch_size": 100, "eval_every": 5}},
        "debug": {"train": {"epochs": 20, "log_every": 5, "eval_every": 10}, "evaluate": {"eval_samples": 20}},
    }  # fmt: skip

    def default_out(self, cfg):
        folder = Path(cfg.data.source).is_dir()  # a UCI-layout folder: its splits are numbered
        split = f"-split{cfg.data.split}" if cfg.data.source == "diabetes" or folder else ""
        return f"runs/bnn-{Path(cfg.data.source.rstrip('/')).name}{split}"

    def data(self, cfg, run_dir=None) -> LabelledData:
        return cfg.data.load(cfg.train.seed)

    def learner(self, cfg, data) -> BNNLearner:
        if data is None and not cfg.data.train_size:  # saved before its shapes were: read them
            data = self.data(cfg)
        return BNNLearner(cfg, data)

    def build(self, cfg, run_dir, *, world, say) -> Built:
        if world.size > 1:  # its three networks step unwrapped, on batches of pairs
            raise ConfigError("bnn trains in one process: run it without torchrun")
        data = self.data(cfg)
        if cfg.model.arch == "conv" and len(data.input_shape) != 3:
            raise ConfigError(
                f"arch = conv needs images; {data.name} has inputs of shape {data.input_shape}"
            )
        cfg = derive(cfg, data=cfg.data.derived(data))
        torch.manual_seed(cfg.train.seed)  # initialization
        learner = self.learner(cfg, data)
        n_w = sum(
            p.numel() for n, p in learner.modules["bnn"].named_parameters() if n.endswith("_mu")
        )
        m = cfg.model
        lines = [
            f"data: {data.name} ({data.task}), {len(data.y_train)} train / {len(data.y_test)} test, "
            f"inputs {data.input_shape}",
            f"model: {m.arch} {list(m.hidden)}, {n_w:,} weights with a mean-field Gaussian q, "
            f"sampling: {m.sampling}; prior {learner.prior.describe()}",
            "beside it: " + (", ".join(LABELS[b] for b in BASELINES) + " (same size)" if m.baselines else "nothing"),
        ]  # fmt: skip
        return Built(cfg, data, learner, lines)

    def after_training(self, cfg):
        k = cfg.evaluate.eval_samples
        return BNNEvalOptions(samples=k) if k else None

    def thoroughness(self, result):
        return {"k": result["samples"]}

    def measure(self, run: Run, options) -> tuple[dict, list[str]]:
        data = run.data()
        learner, state = run.learner(data)
        torch.manual_seed(options.seed)
        result: dict = {"step": state["step"], "task": data.task, "samples": options.samples,
                        "test_examples": len(data.y_test)}  # fmt: skip
        kl, method, se = kl_estimate(learner.modules["bnn"].net, learner.prior, seed=options.seed)
        result["kl"] = {"value": kl, "method": method, "stderr": se}
        ood = data.ood_inputs() if data.task == "classification" else None
        for name, net in learner.modules.items():
            r = predict(net, data.x_test, data.y_test, options.samples, data.y_std)
            if ood is not None:
                h_in = entropy(net.sample_outputs(data.x_test, options.samples).softmax(-1).mean(0))
                h_out = entropy(net.sample_outputs(ood[0], options.samples).softmax(-1).mean(0))
                r["ood_auc"] = roc_auc(h_out, h_in)
            result[name] = r
        if ood is not None:
            result["ood_inputs"] = ood[1]
        lines = [f"{run.dir} at step {state['step']}: {data.name}, {len(data.y_test)} test examples, "
                 f"{options.samples} draws per prediction"]  # fmt: skip
        for name in learner.modules:
            r = result[name]
            if data.task == "regression":
                lines.append(
                    f"  {LABELS[name]:>20}: test log-lik {r['log_likelihood']:.4f}, RMSE {r['rmse']:.4g}, "
                    f"95% coverage {r['coverage_95']:.3f} (sd aleatoric {r['sd_aleatoric']:.3g}, "
                    f"epistemic {r['sd_epistemic']:.3g})"
                )  # fmt: skip
            else:
                lines.append(
                    f"  {LABELS[name]:>20}: accuracy {r['accuracy']:.4f}, NLL {r['nll']:.4f}, "
                    f"ECE {r['ece']:.4f}, OOD AUC {r['ood_auc']:.3f}"
                )
        if ood is not None:
            lines.append(
                f"  out of distribution: {ood[1]} (AUC of telling them apart by predictive entropy)"
            )
        how = "closed form" if method == "closed" else f"Monte Carlo, standard error {se:.3g}"
        lines.append(f"  KL(q || prior) = {kl:.2f} nats ({how})")
        return result, lines

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import bnn as figures
        from elbokit.report import curves

        samples = result["samples"]
        pngs = []
        if data.task == "regression":
            if data.input_shape == (1,):
                pngs.append((figures.band(learner.modules, data, samples, out / "band.png"),
                             "Predictive mean and 2-sd band (total, and epistemic alone) of each network, "
                             "with the training data; the inputs have a gap in the middle."))  # fmt: skip
            pngs.append((figures.predictions(learner.modules, data, samples, out / "predictions.png"),
                         "Test targets against predictions with 2-sd error bars."))  # fmt: skip
        else:
            ood, what = data.ood_inputs()
            pngs.append((figures.reliability_diagram(learner.modules, data, samples, out / "reliability.png"),
                         "Reliability: accuracy against confidence in 15 equal-width bins."))  # fmt: skip
            pngs.append((figures.entropy_histograms(learner.modules, data, ood, samples, out / "entropy.png"),
                         f"Predictive entropy on test digits and on {what}."))  # fmt: skip
        keys = (
            ("elbo", "ELBO / N (nats)"),
            ("kl", "KL(q || prior) (nats)"),
            ("nll", "test NLL per example"),
        )
        pngs.append(
            (curves(run.dir / "metrics.jsonl", out / "curves.png", keys), "Training curves.")
        )
        numbers = {
            f"{LABELS[n]}: {k}": f"{v:.4g}" for n in learner.modules for k, v in result[n].items()
        }
        numbers["KL(q || prior)"] = f"{result['kl']['value']:.2f} nats ({result['kl']['method']})"
        return f"elbokit bnn: {run.dir.name}", numbers, pngs
