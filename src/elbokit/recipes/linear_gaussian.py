"""The ``linear-gaussian`` kind: probabilistic PCA fitted by its ELBO, where every term is known.

    elbokit train linear-gaussian                       data drawn from a known model (20-D)
    elbokit train linear-gaussian --data digits --latent-dim 8
    elbokit train linear-gaussian --preset debug        seconds

The model p(z) = N(0, I), p(x|z) = N(W z + b, sigma^2 I) with a linear Gaussian encoder q(z|x)
is trained like a VAE (reparameterized ELBO, or its closed form), but its evidence log p(x), its
posterior p(z|x) and hence KL(q(z|x) || p(z|x)) are exact. Every logged step carries the three
exact quantities, computed each on its own:

    exact/elbo + exact/kl_posterior = exact/log_px

Its evaluation checks the identity per test example, compares the importance-sampled estimate
of log p(x) (the estimator the VAE kind is judged by) with the exact value, and places the fit
against the maximum-likelihood solution (Tipping & Bishop) and, for synthetic data, the model
that drew the data. Its report draws the identity over training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data.vectors import VectorDataConfig
from elbokit.evaluate import importance_log_likelihood
from elbokit.models.linear_gaussian import LinearGaussianConfig
from elbokit.objectives import ObjectiveConfig
from elbokit.recipes.base import Built, Recipe, Run, derive
from elbokit.recipes.loaded import LatentLoaded, as_batch
from elbokit.train.learner import AdamConfig, ObjectiveLearner
from elbokit.train.loop import TrainConfig

IDENTITY_RTOL = 1e-6  # what "holds" means, relative to |log p(x)|; float64 gets ~1e-15


@dataclass(frozen=True)
class LinearGaussianObjectiveConfig(ObjectiveConfig):
    reconstruction: Literal["sampled", "closed"] = opt(
        "sampled",
        "E_q[log p(x|z)] by one reparameterized sample (as a VAE) or in closed form (exact ELBO)",
    )

    def validate(self):
        super().validate()
        if self.reconstruction == "closed" and self.name != "elbo":
            raise ConfigError("reconstruction = 'closed' applies to the elbo objective only")

    def build(self, total_steps: int):
        objective = super().build(total_steps)
        if self.name == "elbo":
            objective = dataclasses.replace(objective, reconstruction=self.reconstruction)
        return objective


@dataclass(frozen=True)
class LinearGaussianAfterTraining(Section):
    eval_k: int = opt(
        1000,
        "then evaluate (exact values and an importance-sampled check with this many samples) "
        "and write the report (0: neither)",
        ge=0,
    )


def _train_defaults() -> TrainConfig:
    return TrainConfig(epochs=40, batch_size=100, log_every=10, checkpoint_every=500)


@dataclass(frozen=True)
class LinearGaussianRunConfig(Section):
    data: VectorDataConfig = opt(default_factory=VectorDataConfig, help="the vectors")
    model: LinearGaussianConfig = opt(default_factory=LinearGaussianConfig, help="the model")
    objective: LinearGaussianObjectiveConfig = opt(
        default_factory=LinearGaussianObjectiveConfig, help="what it maximizes"
    )
    optim: AdamConfig = opt(default_factory=lambda: AdamConfig(lr=3e-2), help="the optimizer")
    train: TrainConfig = opt(default_factory=_train_defaults, help="the training loop")
    evaluate: LinearGaussianAfterTraining = opt(
        default_factory=LinearGaussianAfterTraining, help="after training"
    )


@dataclass(frozen=True)
class LinearGaussianEvalOptions(Section):
    k: int = opt(1000, "importance samples per test example for the check", ge=1)
    seed: int = opt(0, "seed of the importance samples", ge=0)


def _exact(model, x):
    return model.exact_terms(x)


class LoadedLinearGaussian(LatentLoaded):
    """A fitted linear-Gaussian model (``elbokit.load``): the verbs of ``LatentLoaded`` on
    vectors (B, D), and its exact answers: ``posterior(x)`` = p(z | x) and ``log_evidence(x)``
    = log p(x), against which the encoder's q(z | x) and the ELBO can be judged."""

    def prepare(self, x, what: str = "x") -> torch.Tensor:
        x = as_batch(x, what, device=self.device)
        d = self.config.model.data_dim
        if x.dim() != 2 or x.shape[1] != d:
            raise ValueError(f"{what} has shape {tuple(x.shape)}; this model takes (B, {d})")
        return x

    @torch.no_grad()
    def posterior(self, x) -> torch.distributions.MultivariateNormal:
        """The exact posterior p(z | x) of each example (batch shape (B,))."""
        return self.model.posterior(self.prepare(x))

    @torch.no_grad()
    def log_evidence(self, x) -> torch.Tensor:
        """The exact log p(x) of each example, (B,) nats."""
        return self.model.log_marginal(self.prepare(x))


class LinearGaussianRecipe(Recipe):
    headline = "test/exact/log_px:max"  # what a study optimizes by default
    name = "linear-gaussian"
    help = "probabilistic PCA by its ELBO, with log p(x) and the KL to the posterior exact"
    config = LinearGaussianRunConfig
    loaded = LoadedLinearGaussian
    eval_options = LinearGaussianEvalOptions
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "2,000 vectors in 20-D from a 4-latent model, 40 epochs: seconds",
        "debug": "400 vectors in 8-D from a 2-latent model, 3 epochs",
    }
    presets: ClassVar[dict[str, dict]] = {
        "default": {},
        "debug": {
            "data": {"dim": 8, "true_latent_dim": 2, "examples": 400},
            "model": {"latent_dim": 2},
            "train": {"epochs": 3, "batch_size": 50, "log_every": 2, "checkpoint_every": 10},
            "evaluate": {"eval_k": 100},
        },
    }

    def default_out(self, cfg):
        return f"runs/lg-{Path(cfg.data.source).name}"

    def data(self, cfg, run_dir=None):
        return cfg.data.load(cfg.train.seed)

    def learner(self, cfg, data) -> ObjectiveLearner:
        # the annealing schedules run over the steps of training; a saved run rebuilt
        # without its data (data None) is only evaluated, where they do not apply
        per_epoch = 1 if data is None else data.num_batches("train", cfg.train.batch_size)
        total = cfg.train.epochs * per_epoch
        model = cfg.model.build()
        return ObjectiveLearner(model, cfg.objective.build(total), cfg.optim, diagnostics=_exact)

    def build(self, cfg, run_dir, *, world, say) -> Built:
        data = self.data(cfg)
        cfg = derive(cfg, model={"data_dim": data.dim})
        torch.manual_seed(cfg.train.seed)  # initialization
        learner = self.learner(cfg, data)
        truth = "" if data.truth is None else (
            f" drawn from a linear-Gaussian model with {data.truth.W.shape[1]} latent dims and "
            f"sigma {float(data.truth.sigma):g}"
        )  # fmt: skip
        lines = [
            f"data: {data.name}, {len(data.train)} train / {len(data.test)} test vectors of "
            f"dimension {data.dim}{truth}",
            f"model: linear Gaussian, {cfg.model.latent_dim} latent dims, sigma "
            f"{'learned from ' if cfg.model.learn_sigma else 'fixed at '}{cfg.model.sigma:g}; "
            f"ELBO with {cfg.objective.reconstruction} reconstruction term",
        ]
        return Built(cfg, data, learner, lines)

    def after_training(self, cfg):
        k = cfg.evaluate.eval_k
        return LinearGaussianEvalOptions(k=k) if k else None

    def measure(self, run: Run, options: LinearGaussianEvalOptions) -> tuple[dict, list[str]]:
        data = run.data()
        learner, state = run.learner(data)
        model = learner.model
        x = data.test
        with torch.no_grad():
            log_px = model.log_marginal(x)
            elbo = model.expected_log_likelihood(x) - model.latent.kl(model.encode(x))
            kl_post = model.posterior_kl(x)
            residual = ((elbo + kl_post - log_px).abs() / log_px.abs()).max().item()
            w, b, s = model.maximum_likelihood(data.train)
            ml = _with_params(model, w, b, s).log_marginal(x).mean().item()
            truth = None if data.truth is None else data.truth.log_marginal(x).mean().item()
        ll = importance_log_likelihood(
            model, x, options.k, generator=torch.Generator().manual_seed(options.seed)
        )
        z = (ll.mean - log_px.mean().item()) / max(ll.mean_stderr, 1e-300)
        result = {
            "step": state["step"],
            "examples": len(x),
            "log_px": log_px.mean().item(),
            "elbo": elbo.mean().item(),
            "kl_posterior": kl_post.mean().item(),
            "identity_max_relative_residual": residual,
            "is_k": options.k,
            "is_log_px": ll.mean,
            "is_stderr": ll.mean_stderr,
            "is_minus_exact_in_stderr": z,
            "ml_log_px": ml,
            "truth_log_px": truth,
            "sigma": model.sigma.item(),
            "ml_sigma": s,
        }
        lines = [
            f"{run.dir} at step {state['step']}: {len(x)} test vectors (nats per example)",
            f"  exact log p(x) {result['log_px']:.4f} = ELBO {result['elbo']:.4f} + "
            f"KL(q || p(z|x)) {result['kl_posterior']:.4f}; largest relative residual over "
            f"examples {residual:.1e} ({'holds' if residual <= IDENTITY_RTOL else 'FAILS'} to "
            f"{IDENTITY_RTOL:g})",
            f"  importance sampled (k = {options.k}): {ll.mean:.4f} +- {ll.mean_stderr:.4f}, "
            f"{z:+.1f} standard errors from exact (biased low for finite k)",
            f"  maximum-likelihood fit of this shape: {ml:.4f}"
            + ("" if truth is None else f"; the model that drew the data: {truth:.4f}")
            + f"; sigma {model.sigma.item():.4f} (maximum likelihood {s:.4f})",
        ]
        return result, lines

    def thoroughness(self, result):
        return {"n": result["examples"], "k": result["is_k"]}

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import curves
        from elbokit.report import linear_gaussian as figures

        metrics = run.dir / "metrics.jsonl"
        terms = (("exact/log_px", "exact log p(x) (nats)"), ("exact/elbo", "exact ELBO (nats)"),
                 ("exact/kl_posterior", "exact KL(q(z|x) || p(z|x)) (nats)"))  # fmt: skip
        pngs = [
            (figures.identity(metrics, out / "identity.png", IDENTITY_RTOL),
             "The identity over training, on the training batches: ELBO + KL(q || p(z|x)) against the exact log p(x), and the relative residual at every logged step."),
            (figures.importance_sampling(learner.model, data.test, out / "importance_sampling.png", seed=options.seed),
             "The importance-sampled estimate of log p(x) (the VAE kind's evaluation) against the exact value, as the number of samples k grows."),
            (curves(metrics, out / "curves.png", terms),
             "Exact terms over training (train: running means; test: per evaluation)."),
        ]  # fmt: skip
        cfg = run.config
        numbers = {
            "data": f"{data.name}: {len(data.train)} train / {len(data.test)} test vectors of dimension {data.dim}",
            "model": f"linear Gaussian, {cfg.model.latent_dim} latent dims, sigma {result['sigma']:.4f}",
            "trained": f"{state['step']} steps",
            "test log p(x), exact": f"{result['log_px']:.4f} nats",
            "test ELBO, exact": f"{result['elbo']:.4f} nats",
            "test KL(q(z|x) || p(z|x)), exact": f"{result['kl_posterior']:.4f} nats",
            "largest relative residual of the identity": f"{result['identity_max_relative_residual']:.1e}",
            f"importance-sampled log p(x), k = {result['is_k']}": f"{result['is_log_px']:.4f} +- {result['is_stderr']:.4f} nats ({result['is_minus_exact_in_stderr']:+.1f} standard errors from exact)",
            "maximum-likelihood fit of this shape": f"{result['ml_log_px']:.4f} nats (sigma {result['ml_sigma']:.4f})",
            **({"the model that drew the data": f"{result['truth_log_px']:.4f} nats"} if result["truth_log_px"] is not None else {}),
        }  # fmt: skip
        return f"elbokit linear-Gaussian: {run.dir.name}", numbers, pngs


def _with_params(model, w, b, sigma: float):
    """A copy of ``model`` with W, b, sigma set (the encoder set to the exact posterior's)."""
    import copy

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.W.copy_(w)
        other.b.copy_(b)
        other.log_sigma.fill_(math.log(sigma))
    other.set_encoder_to_posterior()
    return other
