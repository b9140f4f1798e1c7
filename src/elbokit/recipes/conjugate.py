"""The ``coin`` and ``normal-mean`` kinds: variational inference over a parameter whose posterior,
evidence and predictive are closed forms, so log p(D) = ELBO + KL(q || posterior) is checked
with every term known.

    elbokit fit coin --heads 7 --tosses 10 [--prior 1 1] [--family beta|logit-normal]
    elbokit fit normal-mean [--values 0.3 1.2 ...] [--sigma 1] [--m0 0 --s0 1]

(``elbokit fit`` is ``elbokit train`` by another name.) The variational parameters are fitted by
damped Newton steps on the exact ELBO (``elbokit.train.newton``). Evaluation prints the exact
posterior, the log evidence, the predictive, the fitted q with its ELBO, the gap log p(D) - ELBO
and, computed on its own, KL(q || posterior) (in closed form, or by adaptive quadrature for the
logit-normal q); the report draws prior, likelihood, posterior and q on one figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data.stream import StepStream
from elbokit.models.bayes import FAMILIES, CoinConfig, NormalMeanConfig
from elbokit.recipes.base import Built, Recipe, Run
from elbokit.recipes.loaded import Loaded
from elbokit.train.loop import LoopConfig
from elbokit.train.newton import NewtonLearner

IDENTITY_ATOL = 1e-9  # |log p(D) - ELBO - KL| after the fit, nats (float64 gets ~1e-14)


@dataclass(frozen=True)
class _Steps(Section):
    steps: int = opt(30, "damped Newton steps (30 are many more than it needs)", ge=1,
                     extends=True)  # fmt: skip


@dataclass(frozen=True)
class NewtonTrainConfig(LoopConfig, _Steps):
    """The loop of a Newton fit: one step per trainer epoch (there is no data to pass over);
    evaluations every ``eval_every`` steps, of the whole data (``full/``)."""

    batch_size: ClassVar[int] = 1

    @property
    def epochs(self) -> int:
        return self.steps


def _train_defaults() -> NewtonTrainConfig:
    return NewtonTrainConfig(log_every=1, checkpoint_every=10, eval_every=10)


@dataclass(frozen=True)
class FamilyConfig(Section):
    family: str = opt(
        "beta", "the variational family q of the bias", choices=("beta", "logit-normal")
    )


@dataclass(frozen=True)
class ReportConfig(Section):
    report: bool = opt(True, "then evaluate and write the report")


@dataclass(frozen=True)
class CoinRunConfig(Section):
    data: CoinConfig = opt(default_factory=CoinConfig, help="the tosses and the prior")
    objective: FamilyConfig = opt(default_factory=FamilyConfig, help="the variational family")
    train: NewtonTrainConfig = opt(default_factory=_train_defaults, help="the fit")
    evaluate: ReportConfig = opt(default_factory=ReportConfig, help="after the fit")


@dataclass(frozen=True)
class NormalMeanRunConfig(Section):
    data: NormalMeanConfig = opt(default_factory=NormalMeanConfig, help="observations and prior")
    train: NewtonTrainConfig = opt(default_factory=_train_defaults, help="the fit")
    evaluate: ReportConfig = opt(default_factory=ReportConfig, help="after the fit")


@dataclass(frozen=True)
class NoOptions(Section):
    """The evaluation of an exact model has no options."""


class LoadedConjugate(Loaded):
    """A fitted conjugate model (``elbokit.load``): the exact ``posterior()`` and
    ``log_evidence()`` beside the fitted variational ``q()`` and its ``elbo()``; their gap,
    log p(D) - ELBO, is KL(q || posterior) >= 0."""

    @property
    def model(self):
        """The Bayesian model with its data (``BetaBernoulli`` or ``NormalMean``)."""
        return self.run.recipe.model(self.config)

    def posterior(self) -> torch.distributions.Distribution:
        """The exact posterior p(theta | D)."""
        return self.model.posterior()

    def log_evidence(self) -> float:
        """The exact log p(D), nats."""
        return float(self.model.log_evidence())

    @torch.no_grad()
    def q(self) -> torch.distributions.Distribution:
        """The fitted q(theta) (a logit-normal q as a sigmoid-transformed Normal)."""
        module = self.modules["q"]
        if hasattr(module, "distribution"):
            return module.distribution()
        return torch.distributions.TransformedDistribution(
            module.gaussian(), torch.distributions.transforms.SigmoidTransform()
        )

    @torch.no_grad()
    def elbo(self) -> float:
        """The ELBO of the fitted q, nats (its gap to ``log_evidence`` is KL(q || posterior))."""
        return float(self.modules["q"].elbo(self.model))


class _Conjugate(Recipe):
    headline = "full/elbo:max"  # what a study optimizes by default
    eval_options = NoOptions
    verb = "fit"
    loaded = LoadedConjugate
    labels: ClassVar[dict[str, str]] = {
        "elbo": "ELBO of the fitted q (nats)",
        "gap": "log p(D) - ELBO (nats)",
        "kl_q_posterior": "KL(q || exact posterior) (nats)",
        "identity_residual": "log p(D) - ELBO - KL(q || posterior) (0 up to rounding)",
        "family": "variational family q",
        "q": "fitted q's parameters",
        "posterior_a": "exact posterior Beta(a, b): a",
        "posterior_b": "exact posterior Beta(a, b): b",
        "posterior_mean": "exact posterior mean",
        "posterior_sd": "exact posterior standard deviation",
        "log_evidence": "log evidence log p(D), exact (nats)",
        "log_evidence_sequence": "log p(D) of this sequence of tosses (nats)",
        "log_evidence_count": "log p(D) of the number of heads (nats)",
        "predictive_heads": "P(next toss is heads | D)",
        "predictive_mean": "posterior predictive mean",
        "predictive_sd": "posterior predictive standard deviation",
        "n": "observations",
    }
    renamed: ClassVar[dict[str, str | None]] = {
        "train.epochs": "train.steps",
        "train.batch_size": None,
    }
    parameter: ClassVar[str] = "theta"

    def model(self, cfg):
        raise NotImplementedError

    def family(self, cfg) -> str:
        raise NotImplementedError

    def data(self, cfg, run_dir=None):
        return StepStream(steps_per_epoch=1, name=self.name)

    def learner(self, cfg, data) -> NewtonLearner:
        model = self.model(cfg)
        q = FAMILIES[self.family(cfg)]()
        posterior, evidence = model.posterior(), model.log_evidence()

        def diagnostics():
            with torch.no_grad():
                elbo = q.elbo(model).item()
            closed = self.family(cfg) != "logit-normal"  # the quadrature KL is for the report
            return {"log_evidence": evidence, "gap": evidence - elbo,
                    **({"kl_posterior": q.kl_to(posterior)} if closed else {})}  # fmt: skip

        return NewtonLearner(q, lambda: q.elbo(model), diagnostics=diagnostics)

    def build(self, cfg, run_dir, *, world, say) -> Built:
        if world.size > 1:
            raise ConfigError(f"{self.name} fits a handful of numbers: run it in one process")
        data = self.data(cfg)
        learner = self.learner(cfg, data)
        return Built(cfg, data, learner, self.describe(cfg))

    def after_training(self, cfg):
        return NoOptions() if cfg.evaluate.report else None

    def measure(self, run: Run, options) -> tuple[dict, list[str]]:
        cfg = run.config
        model = self.model(cfg)
        learner, state = run.learner()
        q = learner.modules["q"]
        posterior = model.posterior()
        with torch.no_grad():
            elbo = q.elbo(model).item()
        evidence = model.log_evidence()
        kl_q = q.kl_to(posterior)
        result = {
            "step": state["step"],
            **self.exact(model),
            "family": self.family(cfg),
            "q": {k: v.detach().item() for k, v in self.q_params(q).items()},
            "elbo": elbo,
            "gap": evidence - elbo,
            "kl_q_posterior": kl_q,
            "identity_residual": evidence - elbo - kl_q,
        }
        holds = abs(result["identity_residual"]) <= IDENTITY_ATOL
        lines = [
            f"{run.dir} after {state['step']} Newton steps",
            *self.exact_lines(model),
            f"  q = {self.family(cfg)}({', '.join(f'{k} = {v:.6g}' for k, v in result['q'].items())}): "
            f"ELBO {elbo:.10f}",
            f"  log p(D) - ELBO = {evidence - elbo:.3e}; KL(q || posterior) = {kl_q:.3e} "
            f"({'closed form' if self.family(cfg) != 'logit-normal' else 'quadrature'}); "
            f"they differ by {abs(result['identity_residual']):.1e} "
            f"({'the identity holds' if holds else 'the identity FAILS'} to {IDENTITY_ATOL:g})",
        ]
        return result, lines

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import curves
        from elbokit.report.bayes import densities

        model = self.model(run.config)
        q = learner.modules["q"]
        pngs = [
            (densities(self.grid(model), model, q, out / "densities.png", self.parameter),
             f"Prior, likelihood (scaled to unit area), exact posterior and the fitted q ({result['family']}) of {self.parameter}."),
            (curves(run.dir / "metrics.jsonl", out / "curves.png",
                    (("elbo", "ELBO (nats)"), ("gap", "log p(D) - ELBO (nats)"))),
             "The ELBO over the Newton steps, and its gap to the exact log evidence."),
        ]  # fmt: skip
        numbers = {
            **{k: f"{v:.8g}" for k, v in result.items() if isinstance(v, float)},
            "q": ", ".join(f"{k} = {v:.6g}" for k, v in result["q"].items()),
        }
        return f"elbokit {self.name}: {run.dir.name}", numbers, pngs


class CoinRecipe(_Conjugate):
    name = "coin"
    help = "a coin's bias by VI (Beta or logit-normal q) against its exact Beta posterior"
    config = CoinRunConfig
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "7 heads in 10 tosses, uniform prior, Beta q",
        "debug": "the same, 10 Newton steps",
    }
    presets: ClassVar[dict[str, dict]] = {"default": {}, "debug": {"train": {"steps": 10}}}
    parameter = "theta"

    def default_out(self, cfg):
        return f"runs/coin-{cfg.data.heads}-of-{cfg.data.tosses}"

    def model(self, cfg):
        return cfg.data.build()

    def family(self, cfg):
        return cfg.objective.family

    def q_params(self, q):
        if q.name == "beta":
            return {"a": q.log_a.exp(), "b": q.log_b.exp()}
        return {"m": q.m, "s": q.log_s.exp()}

    def exact(self, model):
        post = model.posterior()
        return {
            "posterior_a": post.concentration1.item(),
            "posterior_b": post.concentration0.item(),
            "posterior_mean": post.mean.item(),
            "log_evidence_sequence": model.log_evidence("sequence"),
            "log_evidence_count": model.log_evidence("count"),
            "predictive_heads": model.predictive(),
        }

    def exact_lines(self, model):
        e = self.exact(model)
        return [
            f"  {model.heads} heads in {model.tosses} tosses, prior Beta({model.a:g}, {model.b:g}): "
            f"posterior Beta({e['posterior_a']:g}, {e['posterior_b']:g}), mean {e['posterior_mean']:.6f}",
            f"  log p(D) = {e['log_evidence_sequence']:.10f} (this sequence of tosses; of the count "
            f"of heads: {e['log_evidence_count']:.10f}); P(next is heads | D) = "
            f"{e['predictive_heads']:.6f}",
        ]  # fmt: skip

    def describe(self, cfg):
        d = cfg.data
        return [f"data: {d.heads} heads in {d.tosses} tosses; prior Beta({d.prior[0]:g}, {d.prior[1]:g}); "
                f"q: {cfg.objective.family}, fitted by Newton steps on the exact ELBO"]  # fmt: skip

    def grid(self, model):
        return torch.linspace(1e-4, 1 - 1e-4, 2000, dtype=torch.float64)


class NormalMeanRecipe(_Conjugate):
    name = "normal-mean"
    help = "the mean of Normal data with known noise by VI (Normal q) against its exact posterior"
    config = NormalMeanRunConfig
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "20 draws from Normal(1.5, 1), prior Normal(0, 1), Normal q",
        "debug": "the same, 10 Newton steps",
    }
    presets: ClassVar[dict[str, dict]] = {"default": {}, "debug": {"train": {"steps": 10}}}
    parameter = "mu"

    def default_out(self, cfg):
        return "runs/normal-mean"

    def model(self, cfg):
        return cfg.data.build(cfg.train.seed)

    def family(self, cfg):
        return "normal"

    def q_params(self, q):
        return {"m": q.m, "s": q.log_s.exp()}

    def exact(self, model):
        post, pred = model.posterior(), model.predictive()
        return {
            "n": len(model.x),
            "posterior_mean": post.loc.item(),
            "posterior_sd": post.scale.item(),
            "log_evidence": model.log_evidence(),
            "predictive_mean": pred.loc.item(),
            "predictive_sd": pred.scale.item(),
        }

    def exact_lines(self, model):
        e = self.exact(model)
        return [
            f"  {e['n']} observations, sigma {model.sigma:g}, prior Normal({model.m0:g}, {model.s0:g}^2): "
            f"posterior Normal({e['posterior_mean']:.6f}, {e['posterior_sd']:.6f}^2)",
            f"  log p(D) = {e['log_evidence']:.10f}; predictive Normal({e['predictive_mean']:.6f}, "
            f"{e['predictive_sd']:.6f}^2)",
        ]  # fmt: skip

    def describe(self, cfg):
        d = cfg.data
        what = (
            f"{len(d.values)} given values"
            if d.values
            else f"{d.n} draws from Normal({d.true_mean:g}, {d.sigma:g}^2)"
        )
        return [
            f"data: {what}; prior Normal({d.m0:g}, {d.s0:g}^2); q: Normal, fitted by Newton steps"
        ]

    def grid(self, model):
        post = model.posterior()
        lo = min(model.m0 - 4 * model.s0, post.loc.item() - 6 * post.scale.item())
        hi = max(model.m0 + 4 * model.s0, post.loc.item() + 6 * post.scale.item())
        return torch.linspace(lo, hi, 2000, dtype=torch.float64)
