"""The ``gmm`` kind: a Bayesian Gaussian mixture by coordinate-ascent VI, with its full ELBO.

    elbokit fit gmm                                the four-Gaussian example, 10 components
    elbokit fit gmm --data iris --components 10 --model full
    elbokit fit gmm --data digits-pca --project 4 / --data points.csv / --data points.npz
    elbokit fit gmm --model known-variance         Blei et al.'s model: unit noise, Gaussian means
    elbokit fit gmm --inference svi --batch-size 256    stochastic VI, a minibatch per step
    elbokit eval RUN / elbokit report RUN

(``fit`` is ``train`` by another name.) One trainer step is one CAVI iteration (the global
factors from q(z), then q(z) from them; ``elbokit.models.gmm``) or, with ``--inference svi``, one
natural-gradient step on a minibatch; the variational parameters are the learner's state, saved
with every checkpoint, so an interrupted fit resumes. CAVI stops changing once the ELBO's relative
change is below ``--tol`` (the remaining steps are free); the ELBO is checked never to fall.

Evaluation: the full ELBO with every term (nats, summed over the points), the effective number
of components (expected count >= max(1, 1% of the points)), the mixture weights, the adjusted
Rand index against the true labels where the data has them, and, for the full model,
scikit-learn's BayesianGaussianMixture fitted at the same priors on the same data, judged by OUR
full ELBO at ITS variational parameters (its ``lower_bound_`` drops constants and cannot be
compared), with its own ARI, components, iterations and time. Report: the points coloured by
responsibility with each component's 2-sigma ellipse (on the two leading principal axes where
D > 2), the ELBO per iteration, the weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from elbokit.config import ConfigError, Section, opt
from elbokit.data.clusters import Points, load_points
from elbokit.data.stream import StepStream
from elbokit.models.gmm import BayesianGMM, KnownVarianceGMM
from elbokit.recipes.base import Built, Recipe, Run, derive
from elbokit.recipes.loaded import Loaded, as_batch
from elbokit.seeding import mix
from elbokit.train.checkpoint import CheckpointError
from elbokit.train.learner import Evaluation, Learner, TrainingDiverged
from elbokit.train.loop import LoopConfig

MODELS = ("full", "known-variance")
SKLEARN_MAX_ITER = 5000  # its default, 100, stops short of convergence here


@dataclass(frozen=True)
class PointsConfig(Section):
    source: str = opt(
        "four-gaussians",
        "four-gaussians (drawn, with labels), iris, digits-pca, or a .csv / .npz of points",
        flag="data",
    )
    examples: int = opt(1000, "four-gaussians: points drawn", ge=2)
    project: int = opt(4, "digits-pca: principal axes kept", ge=1)
    dim: int = opt(0, "dimension of the points, from the data", derived=True, ge=0)

    def load(self, seed: int) -> Points:
        return load_points(self.source, examples=self.examples, project=self.project, seed=seed)


@dataclass(frozen=True)
class MixtureConfig(Section):
    model: str = opt("full", "Bishop's Dirichlet/Normal-Wishart mixture, or Blei et al.'s with "
                     "known isotropic noise", choices=MODELS)  # fmt: skip
    components: int = opt(10, "mixture components K (unused ones are pruned by the prior)", ge=1)
    alpha0: float = opt(
        0.0, "Dirichlet concentration of the weights (0: 1/K, as scikit-learn)", ge=0
    )
    beta0: float = opt(1.0, "full: precision scale of the means' prior", gt=0)
    nu0: float = opt(0.0, "full: Wishart degrees of freedom (0: D, as scikit-learn)", ge=0)
    noise_var: float = opt(1.0, "known-variance: the known noise variance", gt=0)
    prior_var: float = opt(10.0, "known-variance: prior variance of each mean (prior mean 0)", gt=0)
    weights: str = opt("dirichlet", "known-variance: Dirichlet weights, or fixed 1/K (Blei et al.)",
                       choices=("dirichlet", "uniform"))  # fmt: skip
    init: str = opt("kmeans", "initial q(z): seeded k-means++ then Lloyd steps, or random",
                    choices=("kmeans", "random"))  # fmt: skip

    def validate(self):
        if self.model == "known-variance" and self.weights == "uniform" and self.alpha0:
            raise ConfigError("alpha0 applies to Dirichlet weights, not --weights uniform")

    def build(self, dim: int):
        alpha0 = self.alpha0 or None
        if self.model == "known-variance":
            return KnownVarianceGMM(
                self.components, prior_var=self.prior_var, noise_var=self.noise_var,
                weights=self.weights, alpha0=None if self.weights == "uniform" else alpha0,
            )  # fmt: skip
        if self.nu0 and self.nu0 <= dim - 1:
            raise ConfigError(
                f"nu0 = {self.nu0:g}: a Wishart in {dim} dimensions needs nu0 > {dim - 1}"
            )
        return BayesianGMM(self.components, alpha0=alpha0, beta0=self.beta0, nu0=self.nu0 or None)


@dataclass(frozen=True)
class InferenceConfig(Section):
    method: str = opt("cavi", "coordinate ascent on all points, or stochastic VI on minibatches",
                      choices=("cavi", "svi"), flag="inference")  # fmt: skip
    tol: float = opt(1e-8, "cavi: stop once the ELBO's relative change is below this", ge=0)
    tau: float = opt(1.0, "svi: step size (t + tau)^-kappa", ge=0)
    kappa: float = opt(0.6, "svi: step size decay, in (0.5, 1]", gt=0.5, le=1)
    batch_size: int = opt(256, "svi: points per step", ge=1)


@dataclass(frozen=True)
class GMMAfterTraining(Section):
    report: bool = opt(
        True, "then evaluate (with the scikit-learn comparison) and write the report"
    )


@dataclass(frozen=True)
class GMMEvalOptions(Section):
    sklearn: bool = opt(True, "full model: also fit scikit-learn's BayesianGaussianMixture and "
                        "judge it by our full ELBO")  # fmt: skip


@dataclass(frozen=True)
class _Iterations(Section):
    # at most 2,000 (k-means splits the four clusters over ten components; merging them back
    # takes ~1,300 iterations); the run stops once converged
    iterations: int = opt(2000, "CAVI iterations, each a pass over all the points (at most: the "
                          "fit stops once converged); svi: passes in minibatches", ge=1, extends=True)  # fmt: skip


@dataclass(frozen=True)
class MixtureTrainConfig(LoopConfig, _Iterations):
    """The loop of a mixture fit: its length in iterations (the trainer's epochs: one step each
    for CAVI, ceil(N / batch_size) for SVI); evaluations every ``eval_every`` iterations."""

    batch_size: ClassVar[int] = 1  # the points are the learner's: it draws its own minibatches

    @property
    def epochs(self) -> int:
        return self.iterations


def _train_defaults() -> MixtureTrainConfig:
    return MixtureTrainConfig(log_every=1, checkpoint_every=200, eval_every=100)


@dataclass(frozen=True)
class GMMRunConfig(Section):
    data: PointsConfig = opt(default_factory=PointsConfig, help="the points")
    model: MixtureConfig = opt(default_factory=MixtureConfig, help="the mixture and its priors")
    inference: InferenceConfig = opt(default_factory=InferenceConfig, help="CAVI or SVI")
    train: MixtureTrainConfig = opt(default_factory=_train_defaults, help="the loop")
    evaluate: GMMAfterTraining = opt(default_factory=GMMAfterTraining, help="after the fit")


@dataclass(frozen=True)
class PointStream(StepStream):
    """A step counter that carries the points (the learner draws its own minibatches)."""

    points: Points | None = None


class MixtureLearner(Learner):
    """A learner with no optimizer: its state is the mixture's variational parameters (and, for
    SVI, the running sufficient statistics), saved as the checkpoint's extra state."""

    def __init__(self, cfg: GMMRunConfig, points: Points | None = None):
        super().__init__()
        # without the points (a saved run rebuilt to be used), the fit comes from the checkpoint
        self.cfg, self.x = cfg, None if points is None else points.x
        self.model = cfg.model.build(cfg.data.dim if points is None else points.dim)
        self.stats: dict[str, torch.Tensor] | None = None
        self.resp: torch.Tensor | None = None  # q(z), carried between CAVI iterations
        self.last: float | None = None  # the ELBO after the last iteration
        self.converged = False
        self.iterations = 0  # CAVI iterations that changed something (or SVI steps)

    @property
    def finished(self) -> bool:
        return self.converged  # CAVI only; an SVI run takes the steps it was given

    def train_step(self, batch, step: int) -> dict[str, float]:
        cfg, inf = self.cfg, self.cfg.inference
        if inf.method == "svi":
            return self._svi_step(step)
        if not self.model.fitted:  # the first iteration, from the initial q(z)
            self.model.fit(
                self.x, max_iter=1, tol=inf.tol, init=cfg.model.init, seed=cfg.train.seed
            )
            self.last, self.iterations = self.model.history[-1], 1
        elif not self.converged:
            before = self.model.elbo(self.x) if self.last is None else self.last  # (after a resume)
            self.resp, self.last = self.model.cavi_iteration(self.x, self.resp)
            if self.last < before - (1e-9 * abs(before) + 1e-9):
                raise TrainingDiverged(
                    f"step {step}: the ELBO fell in a CAVI iteration, {before!r} -> {self.last!r}; "
                    "an update is wrong"
                )
            self.iterations += 1
            self.converged = abs(self.last - before) <= inf.tol * abs(self.last)
        return {"elbo": self.last, **self._summary()}

    def _svi_step(self, step: int) -> dict[str, float]:
        inf, n = self.cfg.inference, len(self.x)
        if self.stats is None:
            self.stats = self.model.svi_begin(
                self.x, init=self.cfg.model.init, seed=self.cfg.train.seed
            )
        batch = min(self.cfg.inference.batch_size, n)
        per_epoch = -(-n // batch)
        epoch, b = divmod(step, per_epoch)
        order = torch.randperm(
            n, generator=torch.Generator().manual_seed(mix(self.cfg.train.seed, epoch))
        )
        rho = (step + 1 + inf.tau) ** -inf.kappa
        self.stats = self.model.svi_step(
            self.stats, self.x[order[b * batch : (b + 1) * batch]], n, rho
        )
        self.iterations = step + 1
        return {"rho": rho, **self._summary()}

    def _summary(self) -> dict[str, float]:
        return {"effective_components": float(self.model.effective_components()),
                "converged": float(self.converged)}  # fmt: skip

    @torch.no_grad()
    def evaluate(self, data, step: int, *, seed: int) -> Evaluation:
        """The full ELBO over all the points the mixture is fitted to (logged as ``full/``)."""
        return Evaluation({"elbo": self.model.elbo(self.x), **self._summary()}, split="full")

    def extra_state(self):
        if not self.model.fitted:
            return {}, {"fitted": False}
        tensors = dict(self.model.state())
        if self.stats is not None:
            tensors.update({f"svi_stats/{k}": v for k, v in self.stats.items()})
        return tensors, {"fitted": True, "converged": self.converged, "iterations": self.iterations}

    def load_extra_state(self, tensors, meta) -> None:
        if not meta.get("fitted", False):
            return
        try:
            state = {k: v for k, v in tensors.items() if not k.startswith("svi_stats/")}
            self.model = type(self.model).load_state(state)
        except ValueError as err:
            raise CheckpointError(f"the saved mixture does not fit this run: {err}") from None
        stats = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("svi_stats/")}
        self.stats = stats or None
        self.converged, self.iterations = bool(meta["converged"]), int(meta["iterations"])


def _ari(labels, guess) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(labels.numpy(), guess.numpy()))


class LoadedGMM(Loaded):
    """A fitted mixture (``elbokit.load``) with scikit-learn's verbs, on points (n, D) in the
    space it was fitted in: ``predict`` (the most responsible component), ``predict_proba``
    (q(z = k | x), as sklearn's BayesianGaussianMixture computes them: from E_q[ln pi_k] and
    E_q[ln p(x | theta_k)]), ``score_samples`` (the log posterior predictive density log p(x |
    D), exact under q: a mixture of Student's t for the full model, Bishop 10.81), ``score``
    (its mean); ``weights_``, ``means_``, ``covariances_`` as sklearn names them."""

    @property
    def model(self):
        return self.learner.model

    def _x(self, x) -> torch.Tensor:
        return as_batch(x, "x", dtype=torch.float64)

    def predict(self, x) -> torch.Tensor:
        """(n,) int64: the component of largest responsibility."""
        return self.model.predict(self._x(x))

    def predict_proba(self, x) -> torch.Tensor:
        """(n, K) responsibilities q(z = k | x)."""
        return self.model.responsibilities(self._x(x))

    def score_samples(self, x) -> torch.Tensor:
        """(n,) log p(x | D), the posterior predictive density, nats."""
        return self.model.predictive_log_prob(self._x(x))

    def score(self, x) -> float:
        """The mean of ``score_samples`` (sklearn's ``score``)."""
        return float(self.score_samples(x).mean())

    @property
    def weights_(self) -> torch.Tensor:
        return self.model.weights()

    @property
    def means_(self) -> torch.Tensor:
        return self.model.means()

    @property
    def covariances_(self) -> torch.Tensor:
        return self.model.covariances()


class GMMRecipe(Recipe):
    headline = "full/elbo:max"  # what a study optimizes by default
    name = "gmm"
    help = "a Bayesian Gaussian mixture by CAVI (or SVI) with its full ELBO, beside scikit-learn's"
    config = GMMRunConfig
    eval_options = GMMEvalOptions
    verb = "fit"
    loaded = LoadedGMM
    labels: ClassVar[dict[str, str]] = {
        "elbo": "full ELBO, every term (nats, summed over the points)",
        "ari": "adjusted Rand index against the true labels",
        "lower_bound_": "its own lower_bound_ (drops constants: not comparable)",
        "effective_components": "effective components (expected count >= 1% of the points)",
        "iterations": "iterations",
        "seconds": "time (s)",
        "points": "points",
        "inference": "inference",
    }
    renamed: ClassVar[dict[str, str | None]] = {
        "train.epochs": "train.iterations",
        "train.batch_size": "inference.batch_size",
    }
    preset_notes: ClassVar[dict[str, str]] = {
        "default": "1,000 points from four Gaussians, 10 components, full model: seconds",
        "debug": "200 points, 50 iterations",
    }
    presets: ClassVar[dict[str, dict]] = {
        "default": {},
        "debug": {"data": {"examples": 200}, "train": {"iterations": 50, "checkpoint_every": 20, "eval_every": 10}},
    }  # fmt: skip

    def default_out(self, cfg):
        return f"runs/gmm-{cfg.data.source.rsplit('/', 1)[-1]}"

    def data(self, cfg, run_dir=None) -> PointStream:
        points = cfg.data.load(cfg.train.seed)
        if cfg.inference.method == "svi":
            steps = -(-len(points.x) // min(cfg.inference.batch_size, len(points.x)))
        else:
            steps = 1
        return PointStream(steps, points.name, points=points)

    def learner(self, cfg, data) -> MixtureLearner:
        return MixtureLearner(cfg, None if data is None else data.points)

    def build(self, cfg, run_dir, *, world, say) -> Built:
        if world.size > 1:
            raise ConfigError("gmm fits on one process: run it without torchrun")
        data = self.data(cfg)
        p, m = data.points, cfg.model
        cfg = derive(cfg, data={"dim": p.dim})
        learner = self.learner(cfg, data)
        how = ("CAVI, one iteration per step" if cfg.inference.method == "cavi" else
               f"SVI, minibatches of {cfg.inference.batch_size}, step (t + {cfg.inference.tau:g})^-{cfg.inference.kappa:g}")  # fmt: skip
        lines = [
            f"data: {p.name}, {len(p.x)} points in {p.dim} dimensions"
            + ("" if p.labels is None else f", {len(p.labels.unique())} true classes"),
            f"model: {m.model}, {m.components} components; {how}",
        ]
        return Built(cfg, data, learner, lines)

    def after_training(self, cfg):
        return GMMEvalOptions() if cfg.evaluate.report else None

    def measure(self, run: Run, options) -> tuple[dict, list[str]]:
        data = run.data()
        p = data.points
        learner, state = run.learner(data)
        model = learner.model
        if not model.fitted:
            raise ValueError(
                f"{run.dir}: no fitted mixture in the last checkpoint; train it further"
            )
        terms = model.elbo_terms(p.x)
        result = {
            "step": state["step"],
            "model": run.config.model.model,
            "inference": run.config.inference.method,
            "points": len(p.x),
            "elbo": math.fsum(terms.values()),
            "elbo_terms": terms,
            "iterations": learner.iterations,
            "converged": learner.converged,
            "effective_components": model.effective_components(),
            "weights": model.weights().tolist(),
        }
        if p.labels is not None:
            result["ari"] = _ari(p.labels, model.predict(p.x))
        lines = [
            f"{run.dir}: {p.name}, {len(p.x)} points, {run.config.model.model} model, "
            f"{run.config.inference.method} ({learner.iterations} "
            f"{'iterations' if run.config.inference.method == 'cavi' else 'steps'}"
            f"{', converged' if learner.converged else ''})",
            f"  full ELBO {result['elbo']:.6f} nats (every constant; summed over the points)",
            f"  effective components {result['effective_components']} of {run.config.model.components}"
            + (f"; adjusted Rand index against the true labels {result['ari']:.4f}" if "ari" in result else ""),
        ]  # fmt: skip
        k = run.config.model.components
        if options.sklearn and isinstance(model, BayesianGMM) and k > len(p.x):
            lines.append(f"  scikit-learn's comparison skipped: its k-means start needs at least "
                         f"{k} points for {k} components, and there are {len(p.x)}")  # fmt: skip
        elif options.sklearn and isinstance(model, BayesianGMM):
            result["sklearn"] = self._sklearn(run.config, model, p, result["elbo"])
            s = result["sklearn"]
            lines.append(
                f"  scikit-learn BayesianGaussianMixture, same priors: our full ELBO at its fit "
                f"{s['elbo']:.6f} ({s['elbo'] - result['elbo']:+.3g} against ours), "
                f"{s['effective_components']} components"
                + (f", ARI {s['ari']:.4f}" if "ari" in s else "")
                + f", {s['iterations']} iterations, {s['seconds']:.2f} s (its lower_bound_ "
                f"{s['lower_bound_']:.4f} drops constants)"
            )  # fmt: skip
        return result, lines

    def _sklearn(self, cfg, model: BayesianGMM, p: Points, elbo: float) -> dict:
        """scikit-learn's fit at our priors, to our tolerance (its tol is an absolute change of
        its bound: ours is relative, so tol * |ELBO|), judged by our full ELBO."""
        try:
            from sklearn.mixture import BayesianGaussianMixture
        except ImportError:
            raise ConfigError("the comparison needs scikit-learn (pip install 'elbokit[data]'); "
                              "or --no-sklearn") from None  # fmt: skip
        pri = model.priors
        bgm = BayesianGaussianMixture(
            n_components=cfg.model.components, covariance_type="full",
            weight_concentration_prior_type="dirichlet_distribution",
            weight_concentration_prior=float(pri["alpha0"]), mean_precision_prior=float(pri["beta0"]),
            mean_prior=pri["m0"].numpy(), degrees_of_freedom_prior=float(pri["nu0"]),
            covariance_prior=pri["w0_inv"].numpy(), tol=cfg.inference.tol * abs(elbo), max_iter=SKLEARN_MAX_ITER,
            random_state=cfg.train.seed, reg_covar=0.0, init_params="kmeans",
        )  # fmt: skip
        t = time.perf_counter()
        bgm.fit(p.x.numpy())
        seconds = time.perf_counter() - t
        theirs = BayesianGMM.from_sklearn(bgm, p.x)
        out = {
            "elbo": theirs.elbo(p.x),
            "lower_bound_": float(bgm.lower_bound_),
            "effective_components": theirs.effective_components(),
            "iterations": int(bgm.n_iter_),
            "converged": bool(bgm.converged_),
            "seconds": seconds,
        }
        if p.labels is not None:
            out["ari"] = _ari(p.labels, theirs.predict(p.x))
        return out

    def draw(self, run, result, data, learner, state, out, options):
        from elbokit.report import gmm as figures

        p = data.points
        pngs = [
            (figures.clusters(learner.model, p, out / "clusters.png"),
             "The points coloured by responsibility, with each used component's 2-sigma ellipse"
             + (" (on the data's two leading principal axes)" if p.dim > 2 else "") + "."),
            (figures.elbo_curve(run.dir / "metrics.jsonl", out / "elbo.png"),
             "The full ELBO per iteration (it never falls under CAVI)."),
            (figures.weights(learner.model, out / "weights.png"),
             "Expected mixture weights E[pi_k]; the dashed line is the effective-component threshold."),
        ]  # fmt: skip
        numbers = {k: (f"{v:.6f}" if isinstance(v, float) else str(v)) for k, v in result.items()
                   if k not in ("elbo_terms", "weights", "sklearn")}  # fmt: skip
        for k, v in result.get("sklearn", {}).items():
            numbers[f"scikit-learn: {k}"] = f"{v:.6f}" if isinstance(v, float) else str(v)
        return f"elbokit gmm: {run.dir.name}", numbers, pngs
