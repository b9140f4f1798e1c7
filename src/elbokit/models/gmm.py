"""Gaussian mixtures fitted by coordinate-ascent variational inference (CAVI), with the full ELBO.

    log p(x) = ELBO(q) + KL(q(z, theta) || p(z, theta | x)),
    ELBO(q)  = E_q[log p(x, z, theta)] - E_q[log q(z, theta)]

Two models, each with a mean-field q(z, theta) = prod_i q(z_i) q(theta) whose factors are updated
in closed form (every update is the exact maximizer of the ELBO over its factor, so the ELBO never
falls; ``fit`` raises if it does):

- ``KnownVarianceGMM`` -- Blei, Kucukelbir & McAuliffe (2017), "Variational Inference: A Review
  for Statisticians", section 3: means mu_k ~ N(0, prior_var I), assignments c_i ~ Cat(pi),
  x_i ~ N(mu_{c_i}, noise_var I) with noise_var known; pi = 1/K (``weights="uniform"``, Blei's
  model) or pi ~ Dir(alpha0 1) (``weights="dirichlet"``).
- ``BayesianGMM`` -- Bishop (2006), Pattern Recognition and Machine Learning, section 10.2: pi ~
  Dir(alpha0 1), (mu_k, Lambda_k) ~ N(m0, (beta0 Lambda_k)^-1) W(W0, nu0), updates (10.46)-(10.63)
  and the ELBO (10.70)-(10.77) with every constant.

Both offer stochastic variational inference (Hoffman, Blei, Wang & Paisley 2013, ``fit_svi``).
The ELBO is in nats, SUMMED over the data set (not averaged), and includes every constant, so it
is a true lower bound on log p(x) for any q and comparable across runs, models and libraries.

Data x is an (n, D) floating-point torch.Tensor (computed in float64) with finite entries; fitting
needs n >= 2. Anything else raises before any work: TypeError for a non-tensor, ValueError naming
the shape, the dtype, or the first non-finite entry by row and column. Everything is float64;
randomness (initialization, minibatches) comes from a seeded ``torch.Generator``, never the
global one.
"""

from __future__ import annotations

import math

import torch

from elbokit.seeding import mix

__all__ = ["BayesianGMM", "KnownVarianceGMM"]

_LOG_2PI = math.log(2.0 * math.pi)
_INITS = ("kmeans", "random", "current")
_KMEANS_STEPS = 20


# ----------------------------------------------------------------------------------------------
# helpers


def _check_data(x, *, min_points: int = 1, name: str = "x") -> torch.Tensor:
    """x as a float64 (n, D) tensor, or a clear error naming what is wrong."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} is a {type(x).__name__}: expected a torch.Tensor of shape (n, D)")
    if x.dim() != 2:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: expected a 2-D tensor (n points, D dimensions)"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} has dtype {x.dtype}: expected a floating-point tensor")
    n, d = x.shape
    if n < min_points:
        raise ValueError(f"{name} has {n} point(s): expected at least {min_points}")
    if d < 1:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: expected at least 1 dimension")
    x = x.detach().to(torch.float64)
    bad = ~torch.isfinite(x)
    if bad.any():
        i, j = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"{name}[{i}, {j}] = {x[i, j].item()}: expected finite values "
            f"(first bad entry at row {i}, column {j})"
        )
    return x


def _positive(value, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} = {value!r}: expected a finite value > 0")
    return v


def _scalar(t: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


def _log_dirichlet_norm(alpha: torch.Tensor) -> torch.Tensor:
    """ln C(alpha) = ln Gamma(sum_k alpha_k) - sum_k ln Gamma(alpha_k)  (Bishop B.23)."""
    return torch.lgamma(alpha.sum()) - torch.lgamma(alpha).sum()


def _dirichlet_log_mean(alpha: torch.Tensor) -> torch.Tensor:
    """E[ln pi_k] = psi(alpha_k) - psi(sum_j alpha_j) under Dir(alpha)  (Bishop 10.66)."""
    return torch.digamma(alpha) - torch.digamma(alpha.sum())


def _chol(a: torch.Tensor, name: str) -> torch.Tensor:
    """Lower Cholesky factor(s) of symmetric positive-definite matrices, or a clear error."""
    c, info = torch.linalg.cholesky_ex(0.5 * (a + a.transpose(-1, -2)))
    if (info != 0).any():
        raise ValueError(f"{name} is not symmetric positive definite: {a.tolist()}")
    return c


def _check_responsibilities(r: torch.Tensor, n: int, k: int, name: str) -> torch.Tensor:
    if not isinstance(r, torch.Tensor):
        raise ValueError(f"{name} is a {type(r).__name__}: expected an ({n}, {k}) tensor")
    if tuple(r.shape) != (n, k):
        raise ValueError(f"{name} has shape {tuple(r.shape)}: expected ({n}, {k}) responsibilities")
    r = r.detach().to(torch.float64)
    if not torch.isfinite(r).all() or (r < 0).any():
        raise ValueError(f"{name} has negative or non-finite entries: expected probabilities")
    row = r.sum(1)
    worst = int((row - 1).abs().argmax())
    if abs(row[worst].item() - 1) > 1e-8:
        raise ValueError(f"{name}: row {worst} sums to {row[worst].item()!r}; expected 1")
    return r


def _kmeans_responsibilities(x: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """Hard (n, K) responsibilities from greedy k-means++ seeding (each new centre the best of
    2 + ln K candidates drawn by D^2, as Arthur & Vassilvitskii suggest and scikit-learn does;
    plain D^2 seeding put two seeds in one of four separated clusters often enough to matter)
    and a few Lloyd steps."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    centres = x[torch.randint(n, (1,), generator=g)]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        # D^2 seeding; where every point is already a centre, pick uniformly
        w = d2 if d2.sum() > 0 else torch.ones_like(d2)
        candidates = x[torch.multinomial(w, trials, replacement=True, generator=g)]  # (t, D)
        each = torch.minimum(d2[None], ((x[None] - candidates[:, None]) ** 2).sum(-1))  # (t, n)
        best = int(each.sum(1).argmin())
        centres = torch.cat([centres, candidates[best : best + 1]])
        d2 = each[best]
    labels = None
    for _ in range(_KMEANS_STEPS):
        new_labels = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        keep = counts == 0  # an emptied centre stays where it was
        centres = torch.where(keep[:, None], centres, sums / counts.clamp(min=1)[:, None])
    return torch.nn.functional.one_hot(labels, k).to(x.dtype)


def _random_responsibilities(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    r = torch.rand(n, k, generator=g, dtype=torch.float64)
    return r / r.sum(1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# the shared machinery: CAVI, SVI, responsibilities, ELBO assembly


class _MixtureVI:
    """Mean-field q(z) q(theta) for a mixture whose global updates are affine in the statistics.

    A subclass supplies:
      _setup(x)                      resolve priors that depend on the data (at a fresh fit)
      _stats(x, r)                   expected sufficient statistics, sums over the rows of x
      _update(stats)                 the optimal global factors given those statistics
      _expected_log_lik(x)           (n, K) E_q[ln p(x_i | theta_k)]
      _expected_log_weights()        (K,) E_q[ln pi_k]
      _global_terms()                ELBO terms of the global factors (priors and entropies)
      counts()                       (K,) expected counts N_k behind the current global factors
      state() / _from_state(state)
    """

    #: keys of the global variational parameters in ``state()`` (set by subclasses)
    _GLOBALS: tuple[str, ...] = ()

    def __init__(self, n_components: int):
        if isinstance(n_components, bool) or not isinstance(n_components, int):
            raise ValueError(f"n_components = {n_components!r}: expected an integer >= 1")
        if n_components < 1:
            raise ValueError(f"n_components = {n_components}: expected an integer >= 1")
        self.n_components = n_components
        self.dim: int | None = None
        self.history: list[float] = []
        self.history_steps: list[int] = []
        self.n_iter = 0
        self.converged = False

    # -- checks ---------------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return all(hasattr(self, key) for key in self._GLOBALS)

    def _require_fitted(self):
        if not self.fitted:
            raise RuntimeError(
                f"{type(self).__name__} has no variational parameters yet: call fit, fit_svi "
                "or load_state first"
            )

    def _data(self, x, *, min_points: int = 1) -> torch.Tensor:
        """x checked against the fitted model: float64 (n, D) with the model's D."""
        x = _check_data(x, min_points=min_points)
        self._require_fitted()
        if x.shape[1] != self.dim:
            raise ValueError(f"x has {x.shape[1]} columns: expected D = {self.dim}, as fitted")
        return x

    # -- the local step -------------------------------------------------------------------------

    def _log_responsibilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log r, E ln p(x | theta)) with ln r_ik = ln rho_ik - logsumexp_j ln rho_ij and
        ln rho_ik = E[ln pi_k] + E[ln p(x_i | theta_k)] (Bishop 10.46, 10.49; Blei et al. eq 17).
        """
        log_lik = self._expected_log_lik(x)
        log_rho = log_lik + self._expected_log_weights()
        return log_rho - torch.logsumexp(log_rho, 1, keepdim=True), log_lik

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """(n, K) optimal q(z_i = k) given the global factors: softmax_k of ln rho_ik."""
        return self._log_responsibilities(self._data(x))[0].exp()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) int64: argmax_k of the responsibilities."""
        return self._log_responsibilities(self._data(x))[0].argmax(1)

    # -- the ELBO -------------------------------------------------------------------------------

    def _terms(
        self,
        r: torch.Tensor,
        log_lik: torch.Tensor,
        log_r: torch.Tensor | None = None,
    ) -> dict[str, float]:
        ent = -(r * log_r).sum() if log_r is not None else -torch.special.xlogy(r, r).sum()
        terms = {
            "log_lik": (r * log_lik).sum(),
            "log_prior_z": (r * self._expected_log_weights()).sum(),
            "entropy_z": ent,
            **self._global_terms(),
        }
        return {key: float(v) for key, v in terms.items()}

    def elbo_terms(self, x: torch.Tensor, resp: torch.Tensor | None = None) -> dict[str, float]:
        """The ELBO's named terms, each in nats summed over the rows of x; they sum to ``elbo``.

            log_lik              sum_i sum_k r_ik E_q[ln p(x_i | theta_k)]
            log_prior_z          sum_i sum_k r_ik E_q[ln pi_k]
            entropy_z            -sum_i sum_k r_ik ln r_ik
            log_prior_components E_q[ln p(theta_1..K)]      (means, and precisions for Bishop's)
            entropy_components   -E_q[ln q(theta_1..K)]
            log_prior_weights    E_q[ln p(pi)]              (absent for uniform weights)
            entropy_weights      -E_q[ln q(pi)]             (absent for uniform weights)

        ``resp`` is q(z) as an (n, K) tensor of probabilities; by default the optimal one given
        the global factors (``responsibilities(x)``), which maximizes the ELBO over q(z).
        """
        x = self._data(x)
        if resp is None:
            log_r, log_lik = self._log_responsibilities(x)
            return self._terms(log_r.exp(), log_lik, log_r)
        r = _check_responsibilities(resp, x.shape[0], self.n_components, "resp")
        return self._terms(r, self._expected_log_lik(x))

    def elbo(self, x: torch.Tensor, resp: torch.Tensor | None = None) -> float:
        """ELBO(q) = E_q[ln p(x, z, theta)] - E_q[ln q(z, theta)] in nats, summed over the rows of
        x, with every constant: a lower bound on ln p(x) for any q. See ``elbo_terms``."""
        return math.fsum(self.elbo_terms(x, resp).values())

    # -- fitting --------------------------------------------------------------------------------

    def _initial_responsibilities(self, x: torch.Tensor, init, seed: int) -> torch.Tensor:
        n, k = x.shape[0], self.n_components
        if isinstance(init, torch.Tensor):
            return _check_responsibilities(init, n, k, "init")
        if init not in _INITS:
            raise ValueError(
                f"init = {init!r}: expected one of {', '.join(_INITS)} or an (n, K) tensor"
            )
        if init == "current":
            return self.responsibilities(x)
        g = torch.Generator().manual_seed(seed)
        if init == "kmeans":
            return _kmeans_responsibilities(x, k, g)
        return _random_responsibilities(n, k, g)

    def _start(self, x, init, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked data and the initial responsibilities; priors set from x at a fresh start."""
        if isinstance(init, str) and init == "current":
            x = self._data(x, min_points=2)
        else:
            x = _check_data(x, min_points=2)
            self._setup(x)
        return x, self._initial_responsibilities(x, init, seed)

    def fit(
        self,
        x: torch.Tensor,
        *,
        max_iter: int = 1000,
        tol: float = 1e-8,
        init="kmeans",
        seed: int = 0,
    ):
        """Coordinate-ascent VI from an initial q(z), until the ELBO's relative change < tol.

        One iteration updates the global factors given q(z) (``_update``), then q(z) given them
        (the responsibilities); its ELBO, with the new q(z), is appended to ``history``. Each
        update maximizes the ELBO over its factor, so the ELBO cannot fall: a fall larger than
        1e-9 |ELBO| + 1e-9 (float rounding) raises RuntimeError naming the iteration and values.

        Args:
            init: "kmeans" (hard responsibilities from seeded k-means++ and a few Lloyd steps),
                "random" (seeded uniform draws, normalized per row), "current" (the optimal q(z)
                given the current global factors; priors are kept and the run continues from the
                current ELBO) or an (n, K) tensor of responsibilities.
            seed: seeds the initialization's own generator.

        Priors that depend on the data (``BayesianGMM``'s defaults) are set from x, except with
        init="current". Returns self; sets ``history``, ``n_iter`` and ``converged``.

        Raises:
            ValueError: bad x (see module docstring), max_iter < 1, tol < 0, an unknown init.
            RuntimeError: the ELBO fell (a wrong update; should never happen).
        """
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter = {max_iter!r}: expected an integer >= 1")
        if not (tol >= 0):
            raise ValueError(f"tol = {tol!r}: expected a value >= 0")
        continuing = isinstance(init, str) and init == "current"
        x, r = self._start(x, init, seed)
        prev = self.elbo(x) if continuing else None
        self.history, self.history_steps = [], []
        self.converged = False
        for it in range(1, max_iter + 1):
            r, value = self._iterate(x, r)
            self.history.append(value)
            self.history_steps.append(it)
            self.n_iter = it
            if prev is not None:
                if value < prev - (1e-9 * abs(prev) + 1e-9):
                    raise RuntimeError(
                        f"ELBO fell at CAVI iteration {it}: {prev!r} -> {value!r} "
                        f"(by {prev - value:.3e} nats); an update is wrong"
                    )
                if abs(value - prev) <= tol * abs(value):
                    self.converged = True
                    break
            prev = value
        return self

    def fit_svi(
        self,
        x: torch.Tensor,
        *,
        batch_size: int = 256,
        steps: int | None = None,
        epochs: float | None = None,
        tau: float = 1.0,
        kappa: float = 0.6,
        seed: int = 0,
        init="kmeans",
        eval_every: int | None = None,
    ):
        """Stochastic variational inference (Hoffman, Blei, Wang & Paisley 2013).

        The global factors' natural parameters are affine in the expected sufficient statistics
        s (sums over the data set; see ``_stats``), so a natural-gradient step of size rho_t is

            s <- (1 - rho_t) s + rho_t (N / B) s_batch,   rho_t = (t + tau)^(-kappa), t = 1, 2, ..

        where s_batch holds the statistics of a minibatch of B points under their optimal local
        responsibilities given the current global factors; the global factors are then set from
        s exactly as in CAVI. Minibatches walk seeded random permutations of the data, one per
        epoch. The full-data ELBO is recorded in ``history`` every ``eval_every`` steps (at step
        numbers ``history_steps``) and after the last step; it is noisy, not monotone, so no
        fall is checked here.

        Args:
            steps / epochs: how long to run (give at most one; default 10 epochs).
            tau >= 0, kappa in (0.5, 1]: the step-size schedule (Robbins-Monro conditions).
            init: as for ``fit``, on the full data ("kmeans", "random", "current" or a tensor).

        Returns self.
        """
        if steps is not None and epochs is not None:
            raise ValueError(f"steps = {steps} and epochs = {epochs}: give at most one")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size = {batch_size!r}: expected an integer >= 1")
        if not (math.isfinite(tau) and tau >= 0):
            raise ValueError(f"tau = {tau!r}: expected a finite value >= 0")
        if not (0.5 < kappa <= 1):
            raise ValueError(f"kappa = {kappa!r}: expected 0.5 < kappa <= 1")
        if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
            raise ValueError(f"eval_every = {eval_every!r}: expected an integer >= 1 or None")
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise ValueError(f"steps = {steps!r}: expected an integer >= 1")
        epochs = 10 if steps is None and epochs is None else epochs
        if epochs is not None and not (math.isfinite(epochs) and epochs > 0):
            raise ValueError(f"epochs = {epochs!r}: expected a finite value > 0")
        x, r = self._start(x, init, seed)
        n = x.shape[0]
        batch = min(batch_size, n)
        per_epoch = -(-n // batch)
        if steps is None:
            steps = max(1, math.ceil(epochs * per_epoch))
        stats = self._svi_begin(x, r)
        g = torch.Generator().manual_seed(mix(seed, 1))  # a stream apart from the init's
        self.history, self.history_steps = [], []
        order = torch.empty(0, dtype=torch.long)
        for t in range(1, steps + 1):
            b = (t - 1) % per_epoch
            if b == 0:
                order = torch.randperm(n, generator=g)
            idx = order[b * batch : (b + 1) * batch]
            stats = self._svi_step(stats, x[idx], n, (t + tau) ** -kappa)
            if t == steps or (eval_every is not None and t % eval_every == 0):
                self.history.append(self.elbo(x))
                self.history_steps.append(t)
        self.n_iter, self.converged = steps, False
        return self

    def cavi_iteration(
        self, x: torch.Tensor, resp: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]:
        """One CAVI iteration, for running CAVI a step at a time: the global factors from q(z) =
        ``resp`` (default: the optimal q(z) given the current global factors), then the optimal
        q(z) given them. Returns (the new q(z) (n, K), the ELBO after the iteration); pass that
        q(z) back as ``resp`` next time to save recomputing it."""
        x = self._data(x, min_points=2)
        r = self.responsibilities(x) if resp is None else resp
        return self._iterate(x, _check_responsibilities(r, x.shape[0], self.n_components, "resp"))

    def _iterate(self, x, r):
        self._update(self._stats(x, r))
        log_r, log_lik = self._log_responsibilities(x)
        r = log_r.exp()
        return r, math.fsum(self._terms(r, log_lik, log_r).values())

    def svi_begin(
        self, x: torch.Tensor, *, init="kmeans", seed: int = 0
    ) -> dict[str, torch.Tensor]:
        """The statistics s an SVI run starts from (those of the initial q(z) on all of x; the
        global factors are set from them); for running SVI a step at a time with ``svi_step``."""
        x, r = self._start(x, init, seed)
        return self._svi_begin(x, r)

    def svi_step(
        self, stats: dict[str, torch.Tensor], batch: torch.Tensor, n: int, rho: float
    ) -> dict[str, torch.Tensor]:
        """One natural-gradient step (see ``fit_svi``) on a minibatch of a data set of n points,
        of size 0 < rho <= 1; returns the new statistics (the global factors are set from them)."""
        if not 0 < rho <= 1:
            raise ValueError(f"rho = {rho!r}: expected 0 < rho <= 1")
        return self._svi_step(stats, self._data(batch), n, rho)

    def _svi_begin(self, x, r):
        stats = self._stats(x, r)
        self._update(stats)
        return stats

    def _svi_step(self, stats, xb, n, rho):
        rb = self._log_responsibilities(xb)[0].exp()
        batch_stats = self._stats(xb, rb)
        scale = rho * n / len(xb)
        stats = {key: (1 - rho) * s + scale * batch_stats[key] for key, s in stats.items()}
        self._update(stats)
        return stats

    # -- summaries ------------------------------------------------------------------------------

    def effective_components(self, threshold: float | None = None) -> int:
        """The number of components with expected count N_k >= threshold.

        N_k = sum_i r_ik is read off the global factors (``counts``). By default the threshold
        is max(1, 0.01 N) with N = sum_k N_k: a component explains at least one point and at
        least 1% of the data.
        """
        self._require_fitted()
        counts = self.counts()
        if threshold is None:
            threshold = max(1.0, 0.01 * float(counts.sum()))
        return int((counts >= threshold).sum())

    # -- state ----------------------------------------------------------------------------------

    @classmethod
    def load_state(cls, state: dict[str, torch.Tensor]):
        """A model rebuilt from ``state()``: same priors and variational parameters, so the same
        ELBO on the same data. Raises ValueError on missing or unknown keys or bad values."""
        if not isinstance(state, dict):
            raise ValueError(f"state is a {type(state).__name__}: expected a dict of tensors")
        return cls._from_state({key: _scalar(v) for key, v in state.items()})

    @staticmethod
    def _check_keys(state: dict, required: set[str], optional: set[str] = frozenset()):
        missing = sorted(required - set(state))
        unknown = sorted(set(state) - required - optional)
        if missing or unknown:
            raise ValueError(
                f"state has missing keys {missing} and unknown keys {unknown}; expected "
                f"{sorted(required)}" + (f" and optionally {sorted(optional)}" if optional else "")
            )


# ----------------------------------------------------------------------------------------------
# (a) Blei, Kucukelbir & McAuliffe (2017), section 3


class KnownVarianceGMM(_MixtureVI):
    """Gaussian mixture with known isotropic noise: Blei, Kucukelbir & McAuliffe (2017), sec. 3.

    Model, for x_i in R^D, i = 1..n, k = 1..K:

        mu_k ~ N(0, prior_var I),   c_i ~ Cat(pi),   x_i | c_i, mu ~ N(mu_{c_i}, noise_var I),

    with pi = (1/K, ..., 1/K) for ``weights="uniform"`` (Blei's model) or pi ~ Dir(alpha0 1) for
    ``weights="dirichlet"`` (default alpha0 = 1/K: a sparse prior, so unused components empty
    out). The prior mean is 0: centre the data, or the prior pulls the means toward the origin.

    Mean-field q = prod_k N(mu_k | m_k, s2_k I) prod_i Cat(c_i | phi_i) [Dir(pi | alpha)], with
    the CAVI updates (Blei et al. eqs 17-21, for general D and noise_var), N_k = sum_i phi_ik:

        ln phi_ik = E[ln pi_k] - (||x_i - m_k||^2 + D s2_k) / (2 noise_var) + const
        s2_k = 1 / (1/prior_var + N_k/noise_var),   m_k = s2_k sum_i phi_ik x_i / noise_var
        alpha_k = alpha0 + N_k

    with E[ln pi_k] = -ln K (uniform) or psi(alpha_k) - psi(sum_j alpha_j) (Dirichlet).

    ELBO terms (see ``elbo_terms``), all with their constants:
        log_lik = sum_ik phi_ik [-D/2 ln(2 pi noise_var) - (||x_i - m_k||^2 + D s2_k)/(2 noise_var)]
        log_prior_components = sum_k [-D/2 ln(2 pi prior_var) - (||m_k||^2 + D s2_k)/(2 prior_var)]
        entropy_components = sum_k D/2 (1 + ln(2 pi s2_k))
        log_prior_weights = ln C(alpha0 1) + (alpha0 - 1) sum_k E[ln pi_k]
        entropy_weights = -ln C(alpha) - sum_k (alpha_k - 1) E[ln pi_k]
    """

    _GLOBALS = ("m", "s2")

    def __init__(
        self,
        n_components: int,
        *,
        prior_var: float = 10.0,
        noise_var: float = 1.0,
        weights: str = "dirichlet",
        alpha0: float | None = None,
    ):
        super().__init__(n_components)
        self.prior_var = _positive(prior_var, "prior_var")
        self.noise_var = _positive(noise_var, "noise_var")
        if weights not in ("uniform", "dirichlet"):
            raise ValueError(f"weights = {weights!r}: expected 'uniform' or 'dirichlet'")
        self.weights_prior = weights
        if weights == "uniform" and alpha0 is not None:
            raise ValueError(f"alpha0 = {alpha0!r} given with weights='uniform': expected None")
        self.alpha0 = (
            None
            if weights == "uniform"
            else _positive(1.0 / n_components if alpha0 is None else alpha0, "alpha0")
        )

    def _setup(self, x):
        self.dim = x.shape[1]

    def _stats(self, x, r):
        """N_k = sum_i r_ik (K,) and s_k = sum_i r_ik x_i (K, D)."""
        return {"n": r.sum(0), "sx": r.T @ x}

    def _update(self, stats):
        self.s2 = 1.0 / (1.0 / self.prior_var + stats["n"] / self.noise_var)
        self.m = stats["sx"] * (self.s2 / self.noise_var)[:, None]
        if self.alpha0 is not None:
            self.alpha = self.alpha0 + stats["n"]

    def _expected_log_lik(self, x):
        d = x.shape[1]
        diff = x.T.contiguous()[None] - self.m[:, :, None]  # (K, D, n), points last for speed
        sq = diff.square().sum(1).T  # (n, K) ||x_i - m_k||^2
        return -0.5 * d * (_LOG_2PI + math.log(self.noise_var)) - (sq + d * self.s2) / (
            2 * self.noise_var
        )

    def _expected_log_weights(self):
        if self.alpha0 is None:
            return torch.full_like(self.s2, -math.log(self.n_components))
        return _dirichlet_log_mean(self.alpha)

    def _global_terms(self):
        d, k = self.dim, self.n_components
        terms = {
            "log_prior_components": (
                -0.5 * d * k * (_LOG_2PI + math.log(self.prior_var))
                - ((self.m**2).sum() + d * self.s2.sum()) / (2 * self.prior_var)
            ),
            "entropy_components": 0.5 * d * (1 + _LOG_2PI + torch.log(self.s2)).sum(),
        }
        if self.alpha0 is not None:
            elog = _dirichlet_log_mean(self.alpha)
            a0 = torch.full_like(self.alpha, self.alpha0)
            terms["log_prior_weights"] = _log_dirichlet_norm(a0) + (self.alpha0 - 1) * elog.sum()
            terms["entropy_weights"] = (
                -_log_dirichlet_norm(self.alpha) - ((self.alpha - 1) * elog).sum()
            )
        return terms

    def counts(self) -> torch.Tensor:
        """(K,) expected counts N_k = noise_var (1/s2_k - 1/prior_var), read off q(mu_k)."""
        self._require_fitted()
        return self.noise_var * (1.0 / self.s2 - 1.0 / self.prior_var)

    def weights(self) -> torch.Tensor:
        """(K,) E_q[pi_k]: alpha_k / sum_j alpha_j, or 1/K for uniform weights."""
        self._require_fitted()
        if self.alpha0 is None:
            return torch.full_like(self.s2, 1.0 / self.n_components)
        return self.alpha / self.alpha.sum()

    def means(self) -> torch.Tensor:
        """(K, D) E_q[mu_k] = m_k."""
        self._require_fitted()
        return self.m.clone()

    def covariances(self) -> torch.Tensor:
        """(K, D, D) each component's covariance: noise_var I (known, so no uncertainty)."""
        self._require_fitted()
        eye = torch.eye(self.dim, dtype=torch.float64, device=self.m.device)
        return (self.noise_var * eye).expand(self.n_components, -1, -1).clone()

    def predictive_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) log p(x | D) under q, exactly: pi and the means are independent under q, so
        E_q[sum_k pi_k N(x | mu_k, noise_var I)] = sum_k E_q[pi_k] N(x | m_k, (noise_var + s2_k) I)."""
        x = self._data(x)
        var = self.noise_var + self.s2  # (K,)
        d = self.dim
        sq = (x[:, None, :] - self.m[None]).square().sum(-1)  # (n, K)
        log_n = -0.5 * (d * torch.log(2 * math.pi * var) + sq / var)
        return torch.logsumexp(log_n + self.weights().log(), 1)

    def state(self) -> dict[str, torch.Tensor]:
        """Priors and variational parameters as float64 tensors: prior_var, noise_var, m (K, D),
        s2 (K,), and for Dirichlet weights alpha0 and alpha (K,) (their absence means uniform)."""
        self._require_fitted()
        out = {
            "prior_var": torch.tensor(self.prior_var, dtype=torch.float64),
            "noise_var": torch.tensor(self.noise_var, dtype=torch.float64),
            "m": self.m.clone(),
            "s2": self.s2.clone(),
        }
        if self.alpha0 is not None:
            out["alpha0"] = torch.tensor(self.alpha0, dtype=torch.float64)
            out["alpha"] = self.alpha.clone()
        return out

    @classmethod
    def _from_state(cls, state):
        cls._check_keys(state, {"prior_var", "noise_var", "m", "s2"}, {"alpha0", "alpha"})
        if ("alpha0" in state) != ("alpha" in state):
            raise ValueError("state has one of alpha0 and alpha: expected both or neither")
        m, s2 = state["m"], state["s2"]
        if m.dim() != 2 or tuple(s2.shape) != (m.shape[0],):
            raise ValueError(
                f"state m has shape {tuple(m.shape)} and s2 {tuple(s2.shape)}: "
                "expected (K, D) and (K,)"
            )
        if not (torch.isfinite(s2).all() and (s2 > 0).all() and torch.isfinite(m).all()):
            raise ValueError(f"state s2 = {s2.tolist()}: expected finite values > 0 (m finite)")
        dirichlet = "alpha" in state
        model = cls(
            m.shape[0],
            prior_var=float(state["prior_var"]),
            noise_var=float(state["noise_var"]),
            weights="dirichlet" if dirichlet else "uniform",
            alpha0=float(state["alpha0"]) if dirichlet else None,
        )
        if dirichlet:
            alpha = state["alpha"]
            if tuple(alpha.shape) != (m.shape[0],) or not (alpha > 0).all():
                raise ValueError(
                    f"state alpha = {alpha.tolist()}: expected {m.shape[0]} values > 0"
                )
            model.alpha = alpha.clone()
        model.dim, model.m, model.s2 = m.shape[1], m.clone(), s2.clone()
        return model


# ----------------------------------------------------------------------------------------------
# (b) Bishop (2006), section 10.2


class BayesianGMM(_MixtureVI):
    """Bayesian Gaussian mixture with Normal-Wishart components: Bishop (2006), PRML sec. 10.2.

    Model, for x_n in R^D, n = 1..N, k = 1..K (Bishop 10.37-10.40):

        pi ~ Dir(alpha0 1),   Lambda_k ~ W(W0, nu0),   mu_k | Lambda_k ~ N(m0, (beta0 Lambda_k)^-1)
        z_n ~ Cat(pi),        x_n | z_n = k ~ N(mu_k, Lambda_k^-1)

    Priors not given are set from the data passed to ``fit`` as scikit-learn's
    ``BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_distribution",
    covariance_type="full")`` sets them (``sklearn/mixture/_bayesian_mixture.py``, _check_*):
    alpha0 = 1/K, beta0 = 1, m0 = the data mean, nu0 = D, and W0^-1 = the data covariance
    np.cov(X.T) (unbiased, ddof = 1). ``w0_inv`` is W0^-1 (sklearn's ``covariance_prior``).

    q(Z) q(pi) prod_k q(mu_k, Lambda_k) with q(pi) = Dir(alpha), q(mu_k, Lambda_k) =
    N(mu_k | m_k, (beta_k Lambda_k)^-1) W(Lambda_k | W_k, nu_k), and the CAVI updates

        ln rho_nk = E[ln pi_k] + 1/2 E[ln|Lambda_k|] - D/2 ln(2 pi)
                    - 1/2 (D / beta_k + nu_k (x_n - m_k)^T W_k (x_n - m_k))          (10.46, 10.64)
        E[ln|Lambda_k|] = sum_{i=1..D} psi((nu_k + 1 - i)/2) + D ln 2 + ln|W_k|         (10.65)
        E[ln pi_k] = psi(alpha_k) - psi(sum_j alpha_j)                                   (10.66)
        r_nk = rho_nk / sum_j rho_nj                                                     (10.49)
        alpha_k = alpha0 + N_k, beta_k = beta0 + N_k, nu_k = nu0 + N_k     (10.58, 10.60, 10.63)
        m_k = (beta0 m0 + N_k xbar_k) / beta_k                                           (10.61)
        W_k^-1 = W0^-1 + N_k S_k + beta0 N_k / (beta0 + N_k) (xbar_k - m0)(xbar_k - m0)^T (10.62)

    with N_k, xbar_k, S_k from (10.51)-(10.53). The updates are computed from statistics about
    the prior mean, t_k = sum_n r_nk (x_n - m0) and T_k = sum_n r_nk (x_n - m0)(x_n - m0)^T, in
    which (10.61)-(10.62) read m_k = m0 + t_k / beta_k and W_k^-1 = W0^-1 + T_k - t_k t_k^T /
    beta_k: the same numbers, defined for N_k -> 0, and affine in the statistics (for SVI).
    W_k is held through the Cholesky factor of W_k^-1 (no explicit inverse).

    The ELBO is (10.70)-(10.77) with every constant (see ``elbo_terms``):

        log_lik = 1/2 sum_k N_k {E ln|Lambda_k| - D/beta_k - nu_k Tr(S_k W_k)
                  - nu_k (xbar_k - m_k)^T W_k (xbar_k - m_k) - D ln(2 pi)}               (10.71)
        log_prior_z = sum_nk r_nk E[ln pi_k]                                             (10.72)
        log_prior_weights = ln C(alpha0 1) + (alpha0 - 1) sum_k E[ln pi_k]               (10.73)
        log_prior_components = 1/2 sum_k {D ln(beta0 / 2 pi) + E ln|Lambda_k| - D beta0/beta_k
                  - beta0 nu_k (m_k - m0)^T W_k (m_k - m0)} + K ln B(W0, nu0)
                  + (nu0 - D - 1)/2 sum_k E ln|Lambda_k| - 1/2 sum_k nu_k Tr(W0^-1 W_k)   (10.74)
        entropy_z = -sum_nk r_nk ln r_nk                                                 (10.75)
        entropy_weights = -ln C(alpha) - sum_k (alpha_k - 1) E[ln pi_k]                  (10.76)
        entropy_components = -sum_k {1/2 E ln|Lambda_k| + D/2 ln(beta_k / 2 pi) - D/2
                  - H[q(Lambda_k)]}                                                      (10.77)

    with ln B(W, nu) = -nu/2 ln|W| - nu D/2 ln 2 - D(D-1)/4 ln pi - sum_i ln Gamma((nu+1-i)/2)
    (B.79) and H[W(W, nu)] = -ln B(W, nu) - (nu - D - 1)/2 E ln|Lambda| + nu D/2 (B.82).
    """

    _GLOBALS = ("alpha", "beta", "m", "nu", "w_inv")
    _PRIORS = ("alpha0", "beta0", "m0", "nu0", "w0_inv")

    def __init__(
        self,
        n_components: int,
        *,
        alpha0: float | None = None,
        beta0: float = 1.0,
        m0: torch.Tensor | None = None,
        nu0: float | None = None,
        w0_inv: torch.Tensor | None = None,
    ):
        super().__init__(n_components)
        self._given = {
            "alpha0": None if alpha0 is None else _positive(alpha0, "alpha0"),
            "beta0": _positive(beta0, "beta0"),
            "m0": None if m0 is None else _scalar(m0).clone(),
            "nu0": None if nu0 is None else float(nu0),
            "w0_inv": None if w0_inv is None else _scalar(w0_inv).clone(),
        }
        self.priors: dict[str, float | torch.Tensor] = {}  # resolved at fit or load_state

    # -- priors ---------------------------------------------------------------------------------

    def _setup(self, x):
        """Resolve the priors for data x (sklearn's defaults where not given) and check them."""
        d = x.shape[1]
        g = self._given
        m0 = x.mean(0) if g["m0"] is None else g["m0"].to(x.device)
        w0_inv = torch.cov(x.T).reshape(d, d) if g["w0_inv"] is None else g["w0_inv"].to(x.device)
        priors = {
            "alpha0": 1.0 / self.n_components if g["alpha0"] is None else g["alpha0"],
            "beta0": g["beta0"],
            "m0": m0,
            "nu0": float(d) if g["nu0"] is None else g["nu0"],
            "w0_inv": w0_inv,
        }
        self._set_priors(priors, d, default_w0=g["w0_inv"] is None)

    def _set_priors(self, priors, d: int, *, default_w0: bool = False):
        alpha0 = _positive(priors["alpha0"], "alpha0")
        beta0 = _positive(priors["beta0"], "beta0")
        nu0 = float(priors["nu0"])
        if not (math.isfinite(nu0) and nu0 > d - 1):
            raise ValueError(f"nu0 = {nu0!r}: expected a finite value > D - 1 = {d - 1}")
        m0 = _scalar(priors["m0"])
        if tuple(m0.shape) != (d,) or not torch.isfinite(m0).all():
            raise ValueError(f"m0 = {m0.tolist()}: expected {d} finite values (D = {d})")
        w0_inv = _scalar(priors["w0_inv"])
        if tuple(w0_inv.shape) != (d, d) or not torch.isfinite(w0_inv).all():
            raise ValueError(
                f"w0_inv has shape {tuple(w0_inv.shape)}: expected a finite ({d}, {d}) matrix"
            )
        if not torch.allclose(w0_inv, w0_inv.T, rtol=1e-10, atol=1e-12):
            raise ValueError(f"w0_inv = {w0_inv.tolist()}: expected a symmetric matrix")
        try:
            self._w0_chol = _chol(w0_inv, "w0_inv (W0^-1)")
        except ValueError:
            if default_w0:
                raise ValueError(
                    f"the data covariance {w0_inv.tolist()}, the default W0^-1, is singular "
                    "(too few points or a constant direction): pass w0_inv"
                ) from None
            raise
        self.priors = {"alpha0": alpha0, "beta0": beta0, "m0": m0, "nu0": nu0, "w0_inv": w0_inv}
        self.dim = d

    # -- the updates ----------------------------------------------------------------------------

    def _stats(self, x, r):
        """N_k (K,), t_k = sum_n r_nk (x_n - m0) (K, D), T_k = sum_n r_nk (x_n - m0)(..)^T."""
        y = x - self.priors["m0"]
        ry = r[:, :, None] * y[:, None, :]  # (n, K, D)
        return {"n": r.sum(0), "t": r.T @ y, "tt": torch.einsum("nkd,ne->kde", ry, y)}

    def _update(self, stats):
        p = self.priors
        n, t = stats["n"], stats["t"]
        self.alpha = p["alpha0"] + n
        self.beta = p["beta0"] + n
        self.nu = p["nu0"] + n
        self.m = p["m0"] + t / self.beta[:, None]
        w_inv = p["w0_inv"] + stats["tt"] - t[:, :, None] * t[:, None, :] / self.beta[:, None, None]
        self._set_w_inv(w_inv)

    def _set_w_inv(self, w_inv):
        self.w_inv = 0.5 * (w_inv + w_inv.transpose(1, 2))
        c, info = torch.linalg.cholesky_ex(self.w_inv)
        if (info != 0).any():
            k = int((info != 0).nonzero()[0])
            raise RuntimeError(f"W_{k}^-1 = {self.w_inv[k].tolist()} is not positive definite")
        self._w_chol = c  # W_k^-1 = C_k C_k^T, so W_k = C_k^-T C_k^-1
        # C_k^-1 by triangular solves (as sklearn's precisions_cholesky_): the quadratic forms
        # ||C_k^-1 v||^2 over all points are then one batched product instead of K solves
        eye = torch.eye(c.shape[-1], dtype=c.dtype, device=c.device).expand_as(c)
        self._w_chol_inv = torch.linalg.solve_triangular(c, eye, upper=False)

    # -- expectations ---------------------------------------------------------------------------

    def _log_det_w(self):
        """(K,) ln|W_k| = -2 sum ln diag C_k."""
        return -2.0 * torch.log(torch.diagonal(self._w_chol, dim1=1, dim2=2)).sum(1)

    def _expected_log_det(self):
        """(K,) E[ln|Lambda_k|] (10.65)."""
        d = self.dim
        i = torch.arange(1, d + 1, dtype=torch.float64, device=self.nu.device)
        psi = torch.digamma((self.nu[:, None] + 1 - i) / 2).sum(1)
        return psi + d * math.log(2.0) + self._log_det_w()

    def _maha(self, x):
        """(n, K) (x_n - m_k)^T W_k (x_n - m_k) = ||C_k^-1 x_n - C_k^-1 m_k||^2 for x (n, D)."""
        p = self._w_chol_inv
        z = p @ x.T - p @ self.m[:, :, None]  # (K, D, n): points last, so sums over D are fast
        return z.square().sum(1).T

    @staticmethod
    def _log_wishart_norm(log_det_w, nu, d: int):
        """ln B(W, nu) (B.79) from ln|W|."""
        i = torch.arange(1, d + 1, dtype=torch.float64, device=nu.device)
        return (
            -0.5 * nu * log_det_w
            - 0.5 * nu * d * math.log(2.0)
            - 0.25 * d * (d - 1) * math.log(math.pi)
            - torch.lgamma((nu[..., None] + 1 - i) / 2).sum(-1)
        )

    def _expected_log_lik(self, x):
        d = self.dim
        maha = self._maha(x)  # (n, K)
        return 0.5 * (self._expected_log_det() - d * _LOG_2PI - d / self.beta - self.nu * maha)

    def _expected_log_weights(self):
        return _dirichlet_log_mean(self.alpha)

    def _global_terms(self):
        p, d, k = self.priors, self.dim, self.n_components
        beta0, nu0 = p["beta0"], p["nu0"]
        elog_pi = _dirichlet_log_mean(self.alpha)
        elog_det = self._expected_log_det()
        log_det_w = self._log_det_w()
        a0 = torch.full_like(self.alpha, p["alpha0"])
        # Tr(W0^-1 W_k) = ||C_k^-1 C0||_F^2 with W0^-1 = C0 C0^T
        trace = ((self._w_chol_inv @ self._w0_chol) ** 2).sum((1, 2))
        dm = torch.einsum("kde,ke->kd", self._w_chol_inv, self.m - p["m0"])
        maha0 = (dm**2).sum(1)  # (K,) (m_k - m0)^T W_k (m_k - m0)
        log_det_w0 = -2.0 * torch.log(torch.diagonal(self._w0_chol)).sum()
        log_b0 = self._log_wishart_norm(log_det_w0, self.nu.new_tensor(nu0), d)
        log_b = self._log_wishart_norm(log_det_w, self.nu, d)
        entropy_wishart = -log_b - 0.5 * (self.nu - d - 1) * elog_det + 0.5 * self.nu * d
        return {
            "log_prior_weights": _log_dirichlet_norm(a0) + (p["alpha0"] - 1) * elog_pi.sum(),
            "entropy_weights": -_log_dirichlet_norm(self.alpha)
            - ((self.alpha - 1) * elog_pi).sum(),
            "log_prior_components": 0.5
            * (
                d * math.log(beta0) - d * _LOG_2PI + elog_det - d * beta0 / self.beta
                - beta0 * self.nu * maha0
            ).sum()
            + k * log_b0
            + 0.5 * (nu0 - d - 1) * elog_det.sum()
            - 0.5 * (self.nu * trace).sum(),
            "entropy_components": -(
                0.5 * elog_det + 0.5 * d * (torch.log(self.beta) - _LOG_2PI) - 0.5 * d
                - entropy_wishart
            ).sum(),
        }  # fmt: skip

    # -- summaries ------------------------------------------------------------------------------

    def counts(self) -> torch.Tensor:
        """(K,) expected counts N_k = beta_k - beta0 (= sum_n r_nk at the last update)."""
        self._require_fitted()
        return self.beta - self.priors["beta0"]

    def weights(self) -> torch.Tensor:
        """(K,) E_q[pi_k] = alpha_k / sum_j alpha_j."""
        self._require_fitted()
        return self.alpha / self.alpha.sum()

    def means(self) -> torch.Tensor:
        """(K, D) E_q[mu_k] = m_k."""
        self._require_fitted()
        return self.m.clone()

    def covariances(self, kind: str = "point") -> torch.Tensor:
        """(K, D, D) component covariances under q.

        kind="point": (E_q[Lambda_k])^-1 = W_k^-1 / nu_k -- what scikit-learn stores as
        ``covariances_``, defined for every component; kind="mean": E_q[Lambda_k^-1] =
        W_k^-1 / (nu_k - D - 1), the inverse-Wishart mean, +inf where nu_k <= D + 1.
        """
        self._require_fitted()
        if kind == "point":
            return self.w_inv / self.nu[:, None, None]
        if kind == "mean":
            denom = self.nu - self.dim - 1
            out = self.w_inv / denom.clamp(min=1e-300)[:, None, None]
            return torch.where((denom > 0)[:, None, None], out, torch.inf)
        raise ValueError(f"kind = {kind!r}: expected 'point' or 'mean'")

    # -- state ----------------------------------------------------------------------------------

    def predictive_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) log p(x | D) under q: a mixture of Student's t (Bishop 10.81),

        p(x | D) = sum_k (alpha_k / sum_j alpha_j) St(x | m_k, L_k, nu_k + 1 - D),
        L_k = (nu_k + 1 - D) beta_k / (1 + beta_k) W_k   (a precision matrix)."""
        x = self._data(x)
        d = self.dim
        dof = self.nu + 1 - d  # (K,)
        # L_k^-1 = (1 + beta_k) / (dof_k beta_k) W_k^-1: its Cholesky factor gives the quadratic
        scale = self.w_inv * ((1 + self.beta) / (dof * self.beta))[:, None, None]  # (K, D, D)
        chol = torch.linalg.cholesky(scale)
        diff = (x[None] - self.m[:, None]).transpose(1, 2)  # (K, D, n)
        sol = torch.linalg.solve_triangular(chol, diff, upper=False)
        maha = sol.square().sum(1)  # (K, n)
        half_logdet = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # log|L^-1| / 2
        log_t = (torch.lgamma((dof + d) / 2) - torch.lgamma(dof / 2) - d / 2 * torch.log(dof * math.pi)
                 - half_logdet)[:, None] - ((dof + d) / 2)[:, None] * torch.log1p(maha / dof[:, None])  # fmt: skip
        return torch.logsumexp(log_t + self.weights().log()[:, None], 0)

    def state(self) -> dict[str, torch.Tensor]:
        """Priors and variational parameters as float64 tensors: alpha0, beta0, nu0 (scalars),
        m0 (D,), w0_inv (D, D), alpha, beta, nu (K,), m (K, D), w_inv (K, D, D) = W_k^-1."""
        self._require_fitted()
        p = self.priors
        return {
            "alpha0": torch.tensor(p["alpha0"], dtype=torch.float64),
            "beta0": torch.tensor(p["beta0"], dtype=torch.float64),
            "nu0": torch.tensor(p["nu0"], dtype=torch.float64),
            "m0": p["m0"].clone(),
            "w0_inv": p["w0_inv"].clone(),
            **{key: getattr(self, key).clone() for key in self._GLOBALS},
        }

    @classmethod
    def _from_state(cls, state):
        cls._check_keys(state, set(cls._PRIORS) | set(cls._GLOBALS))
        m = state["m"]
        if m.dim() != 2:
            raise ValueError(f"state m has shape {tuple(m.shape)}: expected (K, D)")
        k, d = m.shape
        model = cls(k)
        model._set_priors({key: state[key] for key in cls._PRIORS}, d)
        model._given = dict(model.priors)  # a later fresh fit keeps these priors
        shapes = {"alpha": (k,), "beta": (k,), "nu": (k,), "w_inv": (k, d, d)}
        for key, shape in shapes.items():
            if tuple(state[key].shape) != shape or not torch.isfinite(state[key]).all():
                raise ValueError(
                    f"state {key} has shape {tuple(state[key].shape)}: expected finite {shape}"
                )
        if not torch.isfinite(m).all():
            raise ValueError("state m has non-finite entries")
        if not ((state["alpha"] > 0).all() and (state["beta"] > 0).all()):
            raise ValueError(
                f"state alpha = {state['alpha'].tolist()}, beta = {state['beta'].tolist()}: "
                "expected values > 0"
            )
        if not (state["nu"] > d - 1).all():
            raise ValueError(
                f"state nu = {state['nu'].tolist()}: expected values > D - 1 = {d - 1}"
            )
        model.alpha, model.beta, model.nu = (state[key].clone() for key in ("alpha", "beta", "nu"))
        model.m = m.clone()
        try:
            model._set_w_inv(state["w_inv"].clone())
        except RuntimeError as err:
            raise ValueError(f"state w_inv: {err}") from None
        return model

    @classmethod
    def from_sklearn(cls, bgm, x: torch.Tensor) -> BayesianGMM:
        """Our model with q set to a fitted ``sklearn.mixture.BayesianGaussianMixture``'s.

        Priors: alpha0 = weight_concentration_prior_, beta0 = mean_precision_prior_, m0 =
        mean_prior_, nu0 = degrees_of_freedom_prior_, W0^-1 = covariance_prior_. Factors:
        alpha = weight_concentration_, beta = mean_precision_, m = means_, nu =
        degrees_of_freedom_, and W_k^-1 = nu_k covariances_[k]: sklearn divides Bishop's
        W_k^-1 (10.62) by nu_k before storing it ("we normalize the covariances",
        ``_estimate_wishart_full``), so its precisions_ are nu_k W_k = E_q[Lambda_k]. q(Z) is the
        optimal one given these (what ``elbo(x)`` uses); ``history`` holds that ELBO on x.

        Only weight_concentration_prior_type="dirichlet_distribution" and covariance_type="full"
        are supported (ValueError otherwise). Note sklearn adds ``reg_covar`` (default 1e-6) to
        the diagonal of each S_k, so its factors are Bishop's updates for slightly changed data
        statistics; they are still a valid q, scored here with the exact ELBO.
        """
        from sklearn.mixture import BayesianGaussianMixture

        if not isinstance(bgm, BayesianGaussianMixture):
            raise ValueError(f"bgm is a {type(bgm).__name__}: expected a BayesianGaussianMixture")
        if bgm.covariance_type != "full":
            raise ValueError(f"covariance_type = {bgm.covariance_type!r}: only 'full' is supported")
        if bgm.weight_concentration_prior_type != "dirichlet_distribution":
            raise ValueError(
                f"weight_concentration_prior_type = {bgm.weight_concentration_prior_type!r}: "
                "only 'dirichlet_distribution' is supported"
            )
        if not hasattr(bgm, "weight_concentration_"):
            raise ValueError("bgm is not fitted: call its fit first")
        t = lambda a: torch.as_tensor(a, dtype=torch.float64).clone()  # noqa: E731
        nu = t(bgm.degrees_of_freedom_)
        state = {
            "alpha0": t(bgm.weight_concentration_prior_),
            "beta0": t(bgm.mean_precision_prior_),
            "m0": t(bgm.mean_prior_),
            "nu0": t(bgm.degrees_of_freedom_prior_),
            "w0_inv": t(bgm.covariance_prior_),
            "alpha": t(bgm.weight_concentration_),
            "beta": t(bgm.mean_precision_),
            "m": t(bgm.means_),
            "nu": nu,
            "w_inv": t(bgm.covariances_) * nu[:, None, None],
        }
        model = cls.load_state(state)
        model.history = [model.elbo(x)]
        model.history_steps = [0]
        return model
