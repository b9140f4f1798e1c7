"""The ``bnn`` kind: Bayes by backprop, judged by its predictions, beside the networks people use.

    elbokit train bnn                          1-D regression with a gap in the inputs (toy1d)
    elbokit train bnn --preset diabetes [--split 3]    one of 20 random 90/10 splits (UCI style)
    elbokit train bnn --preset digits / --preset mnist5k      classification
    elbokit train bnn --prior scale-mixture    Blundell et al.'s prior, KL by Monte Carlo
    elbokit train bnn --data FOLDER --split K   a UCI-benchmark folder (data.txt, index_*.txt)
        [--methods bnn dvi det dropout ensemble] [--prior-variance empirical-bayes]
        [--dropout-rates 0.005 0.01 --dropout-tau 0.25 0.5 --validation 0.2]   Gal's grid
    elbokit eval RUN [--samples 200]  /  elbokit report RUN

A mean-field Gaussian q(w) over every weight (``elbokit.models.bnn``) maximizes the ELBO over
weights, a minibatch at a time: the batch's mean log-likelihood minus KL(q || p) / N
(``ELBO.from_global_kl``), so the losses of an epoch average to -ELBO(D) / N. In the same steps,
on the same batches, two networks of the same architecture are trained beside it (unless
``--no-baselines``): a deterministic one (MAP with the Gaussian prior's weight decay) and an
MC-dropout one; ``--methods`` adds deterministic variational inference (``dvi``, moments in
closed form, heteroscedastic) and a deep ensemble, and MC dropout takes Gal's protocol (a batched
grid over rate and tau, chosen on the validation part) where ``--dropout-tau`` is given; see
``elbokit.models.bnn_methods``. Predictions average ``samples`` draws. Evaluation: test log-likelihood, RMSE and
95% coverage with the aleatoric and epistemic spread (regression); accuracy, NLL, expected
calibration error and an out-of-distribution ROC AUC from predictive entropy (classification);
KL(q || p) with its method and standard error; for regressions the coverage of central
intervals of levels 0.1 .. 0.9 (calibration). Report: the predictive band (1-D), predictions
against targets, calibration and residuals against the predicted sd (regression), the
reliability diagram, entropy in and out of distribution (classification), curves.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data.labelled import LabelledData, LabelledDataConfig
from elbokit.evaluate.predictive import (
    central_coverage,
    classification_metrics,
    entropy,
    regression_metrics,
    roc_auc,
)
from elbokit.models.bnn import (
    REGRESSION_ONLY,
    VARIATIONAL,
    BNNConfig,
    Predictor,
    kl_estimate,
    kl_to_prior,
)
from elbokit.models.bnn_methods import DVIPredictor, Ensemble, GalDropout
from elbokit.objectives import ELBO
from elbokit.objectives.schedules import KLSchedule
from elbokit.recipes.base import Built, Recipe, Run, derive
from elbokit.recipes.loaded import Loaded, as_batch, as_pixels
from elbokit.seeding import seeded
from elbokit.train.learner import AdamConfig, Learner, StepContext, make_adam
from elbokit.train.loop import TrainConfig

LABELS = {"bnn": "Bayes by backprop", "dvi": "DVI", "det": "deterministic (MAP)",
          "dropout": "MC dropout", "ensemble": "deep ensemble"}  # fmt: skip
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


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


# compiled step / eager step per device type (benchmarks/bayes_bench.py bnn): --compile auto
COMPILE_SPEEDUP = {"cpu": 1.22}


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
    each with its own Adam, stepped on the same batch.

    With ``--compile on`` each variational network's ELBO (its forward, the KL to the prior and
    the objective, with their backward) is one compiled graph; the baselines stay eager."""

    compilable = True
    compile_speedup = COMPILE_SPEEDUP

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
        y_std = d.y_std if data is None else data.y_std
        task, outs = ("classification", classes) if classes else ("regression", 1)
        if task == "classification" and set(m.trained_methods()) & set(REGRESSION_ONLY):
            bad = sorted(set(m.trained_methods()) & set(REGRESSION_ONLY))
            raise ConfigError(f"methods {', '.join(bad)} are for regression; the data are classes")
        self.modules = {}
        for name in m.trained_methods():
            if name == "bnn":
                self.modules[name] = Predictor(m, shape, outs, task, "bayes")
            elif name == "dvi":
                self.modules[name] = DVIPredictor(m, shape)
            elif name == "det":
                self.modules[name] = Predictor(m, shape, outs, task, "plain")
            elif name == "dropout" and m.dropout_tau:
                if task == "classification":
                    raise ConfigError("dropout_tau (Gal's protocol) is for regression")
                self.modules[name] = GalDropout(m, shape, m.gal_grid(), self.n, y_std)
            elif name == "dropout":
                self.modules[name] = Predictor(m, shape, outs, task, "dropout")
            else:
                self.modules[name] = Ensemble(m, shape)
        # MAP baselines: the Gaussian prior of sigma as weight decay, per example (/ N)
        self.decay = 1.0 / (2.0 * m.prior_sigma**2 * self.n)
        self.ensemble_steps = m.ensemble_epochs * -(-self.n // cfg.train.batch_size)
        self.lrs = {"ensemble": m.ensemble_lr} if m.ensemble_lr else {}

    def setup(self, ctx: StepContext) -> None:
        super().setup(ctx)
        self.optimizers = (
            {}
            if not ctx.training
            else {
                f"{k}_optim": make_adam(v.parameters(), self.lrs.get(k, self.lr))
                for k, v in self.modules.items()
            }
        )

        self.elbos = {
            name: ctx.compiled(functools.partial(self.elbo, name), f"the {name} network's ELBO")
            for name in self.modules
            if name in VARIATIONAL
        }

    def elbo(self, name: str, batch, step: int):
        """The objective's output for variational network ``name`` on ``batch``."""
        net = self.modules[name]
        if name == "dvi":
            ll = net.expected_log_likelihood(batch.x, batch.y)
        else:
            ll = net.log_likelihood(net(batch.x), batch.y)
        kl, method = kl_to_prior(net.net, self.prior)
        return self.objective.from_global_kl(ll, kl, self.n, step, kl_method=method)

    def train_step(self, batch, step: int) -> dict[str, float]:
        terms: dict = {}
        for name, net in self.modules.items():
            if name in VARIATIONAL:  # the ELBO over weights
                out = self.elbos[name](batch, step)
                prefix = "" if name == "bnn" else f"{name}/"
                named = {f"{prefix}{k}": v for k, v in out.terms.items()}
                terms.update(self.update(f"{name}_optim", out.loss, named, step,
                                         net.named_parameters()))  # fmt: skip
                terms.update(out.settings)
            elif isinstance(net, (GalDropout, Ensemble)):  # batched members, summed losses
                if isinstance(net, Ensemble) and 0 < self.ensemble_steps <= step:
                    continue  # its epochs are over
                loss, per = net.loss(batch.x, batch.y)
                what = "mse" if isinstance(net, GalDropout) else "nll"
                terms.update(self.update(f"{name}_optim", loss, {f"{name}/{what}": per.mean()},
                                         step, net.named_parameters()))  # fmt: skip
            else:  # MAP: the likelihood and the Gaussian prior's weight decay
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
            if isinstance(net, GalDropout) and int(net.chosen) < 0:
                continue  # a grid: chosen on the validation part after training
            prefix = "" if name == "bnn" else f"{name}/"
            terms.update({f"{prefix}{k}": torch.tensor(v) for k, v in
                          predict(net, batch.x, batch.y, 10).items() if k in ("nll", "rmse", "accuracy")})  # fmt: skip
        return terms


def predict(net, x, y, samples: int, y_std: float = 1.0) -> dict[str, float]:
    """The metrics of ``net``'s predictive (``samples`` draws averaged) on (x, y); "nll" is the
    negative test log-likelihood per example in both tasks."""
    if net.task == "regression":
        means, sds = net.predictive(x, samples)
        r = regression_metrics(means, sds, y, y_std)
        return {"nll": -r["log_likelihood"], **r}
    return classification_metrics(net.sample_outputs(x, samples).softmax(-1).mean(0), y)


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
    run). ``net="det"``, ``"dropout"``, ``"dvi"`` or ``"ensemble"`` asks the others trained beside
    it instead (``net=None``: the run's first method)."""

    def _net(self, net: str | None):
        net = next(iter(self.modules)) if net is None else net
        if net not in self.modules:
            raise ValueError(f"net = {net!r}; this run has {', '.join(self.modules)}")
        module = self.modules[net]
        if isinstance(module, GalDropout) and int(module.chosen) < 0:
            data = self.run.data()  # a grid: choose its member on the validation part
            if data.x_val is None:
                raise ValueError(f"{self.dir}: its MC-dropout grid needs its validation part")
            with seeded(0):
                module.select(data.x_val.to(self.device), data.y_val.to(self.device), 100)
        return module

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

    def predict(self, x, *, samples: int = 100, seed: int = 0, net: str | None = None):
        """Regression: a ``Prediction`` (mean, aleatoric and epistemic spread, targets'
        units). Classification: the most probable class (N,)."""
        module = self._net(net)
        if module.task == "classification":
            return self._outputs(x, samples, seed, net).softmax(-1).mean(0).argmax(-1)
        if samples < 1:
            raise ValueError(f"samples = {samples}; expected at least 1")
        with seeded(seed):
            means, sds = module.predictive(self._inputs(x), samples)
        d = self.config.data
        means, sds = means.double(), sds.double()
        aleatoric = sds.square().mean(0).sqrt()
        mean, spread = means.mean(0), means.std(0, correction=0)
        return Prediction(mean * d.y_std + d.y_mean, aleatoric * d.y_std, spread * d.y_std)

    def predict_proba(self, x, *, samples: int = 100, seed: int = 0, net: str | None = None):
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
        m = cfg.model
        val = "" if data.x_val is None else f" (+ {len(data.y_val)} validation)"
        lines = [f"data: {data.name} ({data.task}), {len(data.y_train)} train{val} / "
                 f"{len(data.y_test)} test, inputs {data.input_shape}"]  # fmt: skip
        for name, net in learner.modules.items():
            n_w = sum(p.numel() for n, p in net.named_parameters() if not n.endswith("_rho"))
            what = {
                "bnn": f"mean-field Gaussian q over {n_w:,} weights, sampling: {m.sampling}",
                "dvi": f"mean-field Gaussian q over {n_w:,} weights, moments in closed form, "
                       "heteroscedastic",
                "det": f"{n_w:,} weights",
                "dropout": f"{n_w:,} weights, dropout {m.dropout:g}",
                "ensemble": f"{m.ensemble_size} networks with a mean and a variance, {n_w:,} weights",
            }[name]  # fmt: skip
            if isinstance(net, GalDropout):
                what = (f"Gal's protocol, {len(net.grid)} networks (rate x tau: "
                        f"{sorted({p for p, _ in net.grid})} x {sorted({t for _, t in net.grid})}), "
                        f"{n_w:,} weights in all")  # fmt: skip
            lines.append(f"{LABELS[name]}: {m.arch} {list(m.hidden)}, {what}")
        if any(n in VARIATIONAL for n in learner.modules):
            lines.append(f"prior: {learner.prior.describe()}")
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
        variational = [n for n in learner.modules if n in VARIATIONAL]
        for name in variational:
            kl, method, se = kl_estimate(
                learner.modules[name].net, learner.prior, seed=options.seed
            )
            key = "kl" if name == variational[0] else f"{name}_kl"
            result[key] = {"value": kl, "method": method, "stderr": se}
        ood = data.ood_inputs() if data.task == "classification" else None
        for name, net in learner.modules.items():
            grid = None
            if isinstance(net, GalDropout) and len(net.grid) > 1:
                if data.x_val is None:
                    raise ConfigError(f"{run.dir}: its MC-dropout grid of {len(net.grid)} needs a "
                                      "validation part to choose from (--validation 0.2)")  # fmt: skip
                val = net.select(data.x_val, data.y_val, options.samples)
                grid = [{"rate": p, "tau": t, "val_log_likelihood": v - math.log(data.y_std)}
                        for (p, t), v in zip(net.grid, val, strict=True)]  # fmt: skip
            r = predict(net, data.x_test, data.y_test, options.samples, data.y_std)
            if data.task == "regression":
                means, sds = net.predictive(data.x_test, options.samples)
                r["calibration"] = central_coverage(means, sds, data.y_test, CALIBRATION_LEVELS)
            if isinstance(net, GalDropout):
                r["rate"], r["tau"] = net.grid[int(net.chosen)]
                if grid:
                    r["grid"] = grid
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
        for name in learner.modules:
            if "grid" in result[name]:
                r = result[name]
                lines.append(f"  {LABELS[name]}: rate {r['rate']:g}, tau {r['tau']:g} chosen of "
                             f"{len(r['grid'])} on the validation part")  # fmt: skip
        for name in variational:
            k = result["kl" if name == variational[0] else f"{name}_kl"]
            how = ("closed form" if k["method"] == "closed"
                   else f"Monte Carlo, standard error {k['stderr']:.3g}")  # fmt: skip
            lines.append(f"  KL(q || prior) of {LABELS[name]} = {k['value']:.2f} nats ({how})")
        return result, lines

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import bnn as figures
        from elbokit.report import curves

        samples = result["samples"]
        for name, net in learner.modules.items():  # a grid's member as chosen in measure
            if isinstance(net, GalDropout) and "rate" in result.get(name, {}):
                net.chosen.fill_(net.grid.index((result[name]["rate"], result[name]["tau"])))
        pngs = []
        if data.task == "regression":
            if data.input_shape == (1,):
                pngs.append((figures.band(learner.modules, data, samples, out / "band.png"),
                             "Predictive mean and 2-sd band (total, and epistemic alone) of each network, "
                             "with the training data; the inputs have a gap in the middle."))  # fmt: skip
            pngs.append((figures.predictions(learner.modules, data, samples, out / "predictions.png"),
                         "Test targets against predictions with 2-sd error bars."))  # fmt: skip
            pngs.append((figures.calibration(result, list(learner.modules), out / "calibration.png"),
                         "Calibration: the fraction of test targets inside each network's central "
                         "predictive interval against the interval's level (on the diagonal: "
                         "calibrated; below: overconfident)."))  # fmt: skip
            pngs.append((figures.residuals(learner.modules, data, samples, out / "residuals.png"),
                         "Test residuals against the predicted standard deviation, targets' units "
                         "(calibrated: about 95% of points inside the +-2 sd wedge)."))  # fmt: skip
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
            f"{LABELS[n]}: {k}": f"{v:.4g}"
            for n in learner.modules
            for k, v in result[n].items()
            if isinstance(v, (int, float))
        }
        if "kl" in result:
            numbers["KL(q || prior)"] = (
                f"{result['kl']['value']:.2f} nats ({result['kl']['method']})"
            )
        return f"elbokit bnn: {run.dir.name}", numbers, pngs
