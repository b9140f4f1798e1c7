"""Variational Gaussian mixtures (elbokit.models.gmm) against independent references.

The ELBO is checked three ways that do not use the module's own formulas:
- exactly, on tiny data sets where log p(x) and log p(x, z) are sums of closed-form marginal
  likelihoods (Gaussian means integrated out; Normal-Wishart evidence by Chib's identity from
  torch.distributions log densities; Dirichlet-multinomial or uniform p(z)): for every assignment
  z the ELBO at q(z) = delta_z, q(theta) = p(theta | x, z) must equal log p(x, z), and for any q
  it must stay below log p(x);
- by seeded Monte Carlo, E_q[log p(x, z, theta) - log q(z, theta)] from torch.distributions
  samples, within 4 standard errors;
- against scikit-learn's BayesianGaussianMixture: same optimum, and its lower_bound_ equals our
  ELBO minus the constants it drops, derived below.
"""

import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import gammaln
from sklearn.metrics import adjusted_rand_score
from torch.distributions import Categorical, Dirichlet, MultivariateNormal, Normal, Wishart

from elbokit.data.clusters import four_gaussians
from elbokit.models.gmm import BayesianGMM, KnownVarianceGMM

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def t64(a):
    return torch.as_tensor(a, dtype=F64)


def onehot(z, k):
    return torch.nn.functional.one_hot(torch.as_tensor(z), k).to(F64)


def bgm_priors(d):
    """Explicit, non-default priors (so the exact references need not know the defaults)."""
    return dict(
        alpha0=0.8, beta0=0.7, m0=t64(np.linspace(-0.3, 0.4, d)), nu0=d + 0.5,
        w0_inv=t64(0.6 * np.eye(d) + 0.2 * np.ones((d, d))),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# exact references


def log_p_z(z, k, alpha0):
    """log p(z): uniform 1/K weights (alpha0 None) or the Dirichlet-multinomial B(a0 + n)/B(a0)."""
    n = len(z)
    if alpha0 is None:
        return -n * math.log(k)
    counts = np.bincount(z, minlength=k)
    return float(
        gammaln(k * alpha0) - gammaln(n + k * alpha0) + (gammaln(counts + alpha0) - gammaln(alpha0)).sum()
    )  # fmt: skip


def kv_log_evidence(xs, prior_var, noise_var):
    """log p(x_S) with mu ~ N(0, prior_var I) integrated out: each coordinate column of x_S is
    N(0, noise_var I + prior_var 1 1^T)."""
    n = xs.shape[0]
    if n == 0:
        return 0.0
    cov = noise_var * torch.eye(n, dtype=F64) + prior_var * torch.ones(n, n, dtype=F64)
    return float(MultivariateNormal(torch.zeros(n, dtype=F64), cov).log_prob(xs.T).sum())


def nw_log_evidence(xs, beta0, m0, nu0, w0_inv):
    """log p(x_S) under mu ~ N(m0, (beta0 Lambda)^-1), Lambda ~ W(W0, nu0), by Chib's identity
    log p(x) = log p(x | th) + log p(th) - log p(th | x), at two points th; they agree only if
    the conjugate posterior written here is right."""
    n, d = xs.shape
    if n == 0:
        return 0.0
    xbar = xs.mean(0)
    dev = xs - xbar
    bn, nun = beta0 + n, nu0 + n
    mn = (beta0 * m0 + n * xbar) / bn
    wn_inv = w0_inv + dev.T @ dev + beta0 * n / bn * torch.outer(xbar - m0, xbar - m0)
    w0, wn = torch.linalg.inv(w0_inv), torch.linalg.inv(wn_inv)
    values = []
    for lam, mu in [(nun * wn, mn), (0.5 * torch.eye(d, dtype=F64), mn + 0.3)]:
        values.append(
            float(
                MultivariateNormal(mu, precision_matrix=lam).log_prob(xs).sum()
                + MultivariateNormal(m0, precision_matrix=beta0 * lam).log_prob(mu)
                + Wishart(t64(nu0), covariance_matrix=w0).log_prob(lam)
                - MultivariateNormal(mn, precision_matrix=bn * lam).log_prob(mu)
                - Wishart(t64(nun), covariance_matrix=wn).log_prob(lam)
            )
        )
    assert values[0] == pytest.approx(values[1], abs=1e-9)
    return values[0]


def exact_log_joint(x, z, k, spec):
    """log p(x, z) with every continuous parameter integrated out exactly."""
    z = np.asarray(z)
    if spec["model"] == "kv":
        lp = log_p_z(z, k, spec.get("alpha0"))
        return lp + sum(
            kv_log_evidence(x[z == j], spec["prior_var"], spec["noise_var"]) for j in range(k)
        )
    p = spec["priors"]
    lp = log_p_z(z, k, p["alpha0"])
    return lp + sum(
        nw_log_evidence(x[z == j], p["beta0"], p["m0"], p["nu0"], p["w0_inv"]) for j in range(k)
    )


def make_model(spec, k):
    if spec["model"] == "kv":
        kw = dict(prior_var=spec["prior_var"], noise_var=spec["noise_var"])
        if spec.get("alpha0") is None:
            return KnownVarianceGMM(k, weights="uniform", **kw)
        return KnownVarianceGMM(k, weights="dirichlet", alpha0=spec["alpha0"], **kw)
    return BayesianGMM(k, **spec["priors"])


def random_state(model, k, d, g):
    """The priors of ``model`` with random variational parameters (any valid q)."""
    u = lambda *s: torch.rand(*s, generator=g, dtype=F64)  # noqa: E731
    if isinstance(model, KnownVarianceGMM):
        st = {"prior_var": t64(model.prior_var), "noise_var": t64(model.noise_var)}
        st |= {"m": 2 * torch.randn(k, d, generator=g, dtype=F64), "s2": 0.05 + 2 * u(k)}
        if model.alpha0 is not None:
            st |= {"alpha0": t64(model.alpha0), "alpha": 0.2 + 3 * u(k)}
        return st
    a = torch.randn(k, d, d, generator=g, dtype=F64)
    return {
        **{key: t64(v) for key, v in model.priors.items()},
        "alpha": 0.2 + 3 * u(k), "beta": 0.1 + 3 * u(k), "nu": d - 1 + 0.5 + 4 * u(k),
        "m": 2 * torch.randn(k, d, generator=g, dtype=F64),
        "w_inv": a @ a.transpose(1, 2) + 0.2 * torch.eye(d, dtype=F64),
    }  # fmt: skip


def perturbed_state(model, g):
    """A fitted model's state with every variational parameter moved at random: a q away from
    the optimum but not so far that Monte Carlo needs millions of draws."""
    state = model.state()
    k, d = state["m"].shape
    u = lambda *s: 0.5 + 1.5 * torch.rand(*s, generator=g, dtype=F64)  # noqa: E731  in [0.5, 2)
    state["m"] = state["m"] + 0.3 * torch.randn(k, d, generator=g, dtype=F64)
    if "alpha" in state:
        state["alpha"] = state["alpha"] * u(k)
    if "s2" in state:
        state["s2"] = state["s2"] * u(k)
    else:
        state["beta"] = state["beta"] * u(k)
        state["nu"] = d - 1 + (state["nu"] - d + 1) * u(k)
        a = torch.eye(d, dtype=F64) + 0.2 * torch.randn(k, d, d, generator=g, dtype=F64)
        state["w_inv"] = a @ state["w_inv"] @ a.transpose(1, 2)
    return state


# Tiny data: two tight pairs far apart, so two assignments (one up to relabelling) dominate.
TINY_X = t64([[-3.0, -2.8], [-3.4, -3.1], [3.2, 2.9], [2.7, 3.3]])
SPECS = {
    "kv-uniform": {"model": "kv", "prior_var": 9.0, "noise_var": 0.5, "alpha0": None},
    "kv-dirichlet": {"model": "kv", "prior_var": 9.0, "noise_var": 0.5, "alpha0": 0.7},
    "bayesian": {"model": "bayes", "priors": bgm_priors(2)},
}


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("name", list(SPECS))
def test_elbo_is_exact_at_each_assignments_conditional_posterior(name, k):
    # q(z) = delta_z and q(theta) = p(theta | x, z) (in the mean-field family given z) make the
    # bound tight for the joint: ELBO = log p(x, z) exactly. One CAVI update of the global
    # factors from a one-hot q(z) must produce that q(theta); the ELBO must then match.
    spec, x = SPECS[name], TINY_X
    for z in itertools.product(range(k), repeat=len(x)):
        r = onehot(z, k)
        model = make_model(spec, k).fit(x, init=r, max_iter=1)
        ours = model.elbo(x, resp=r)
        exact = exact_log_joint(x, z, k, spec)
        assert ours == pytest.approx(exact, abs=1e-9), f"{name}, K = {k}, z = {z}"


@pytest.mark.parametrize("name", list(SPECS))
def test_elbo_bounds_the_exact_evidence(name):
    spec, x, k = SPECS[name], TINY_X, 2
    joints = {z: exact_log_joint(x, z, k, spec) for z in itertools.product(range(k), repeat=4)}
    log_px = float(torch.logsumexp(t64(list(joints.values())), 0))
    # any q: random global factors and random q(z)
    g = torch.Generator().manual_seed(7)
    template = make_model(spec, k).fit(x, max_iter=1)
    for trial in range(100):
        model = type(template).load_state(random_state(template, k, 2, g))
        r = torch.rand(4, k, generator=g, dtype=F64) ** 3 + 1e-3
        r = r / r.sum(1, keepdim=True)
        for resp in (r, None):
            value = model.elbo(x, resp=resp)
            assert value < log_px, f"{name}, trial {trial}: ELBO {value} > log p(x) {log_px}"
    # CAVI from the best assignment: log p(x, z*) <= ELBO <= log p(x)
    best = max(joints, key=joints.get)
    model = make_model(spec, k).fit(x, init=onehot(best, k), tol=1e-14)
    value = model.history[-1]
    assert joints[best] - 1e-9 <= value <= log_px
    if spec["model"] == "kv":
        # The posterior is two mirror images (labels swapped) with almost all mass on one
        # assignment each; q can hold one of them exactly, so the gap is ln 2 (to 2e-15 here).
        # (Under the Normal-Wishart prior other assignments keep some mass: the gap is 1.33.)
        assert log_px - value == pytest.approx(math.log(2), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Monte Carlo


def mc_elbo_kv(model, x, r, samples):
    """Per-sample draws of each ELBO term (named as ``elbo_terms``), from draws of q (torch
    samplers): log p(x | z, mu), log p(z | pi), -log q(z), log p(mu), -log q(mu), log p(pi),
    -log q(pi). Their sum is log p(x, z, pi, mu) - log q(z, pi, mu)."""
    k, d = model.m.shape
    q_mu = Normal(model.m, model.s2.sqrt()[:, None].expand(k, d))
    mu = q_mu.sample((samples,))  # (S, K, D)
    q_z = Categorical(probs=r)
    z = q_z.sample((samples,))  # (S, n)
    terms = {}
    if model.alpha0 is None:
        log_pi = torch.full((samples, k), -math.log(k), dtype=F64)
    else:
        q_pi = Dirichlet(model.alpha)
        pi = q_pi.sample((samples,))
        log_pi = pi.log()
        terms["log_prior_weights"] = Dirichlet(torch.full((k,), model.alpha0, dtype=F64)).log_prob(
            pi
        )
        terms["entropy_weights"] = -q_pi.log_prob(pi)
    lik = Normal(mu[:, None], math.sqrt(model.noise_var)).log_prob(x[None, :, None]).sum(-1)
    terms["log_lik"] = lik.gather(2, z[..., None])[..., 0].sum(1)
    terms["log_prior_z"] = log_pi.gather(1, z).sum(1)
    terms["entropy_z"] = -q_z.log_prob(z).sum(1)
    terms["log_prior_components"] = Normal(0.0, math.sqrt(model.prior_var)).log_prob(mu).sum((1, 2))
    terms["entropy_components"] = -q_mu.log_prob(mu).sum((1, 2))
    return terms


def mc_elbo_bayes(model, x, r, samples):
    """Per-sample draws of each ELBO term, as ``mc_elbo_kv``, with precisions Lambda as well."""
    p = model.priors
    k, _ = model.m.shape
    q_lam = Wishart(model.nu, covariance_matrix=torch.linalg.inv(model.w_inv))  # scale W_k
    lam = q_lam.sample((samples,))  # (S, K, D, D)
    q_mu = MultivariateNormal(model.m, precision_matrix=model.beta[:, None, None] * lam)
    mu = q_mu.sample()  # (S, K, D)
    q_pi = Dirichlet(model.alpha)
    pi = q_pi.sample((samples,))
    q_z = Categorical(probs=r)
    z = q_z.sample((samples,))  # (S, n)
    lik = MultivariateNormal(mu[:, None], precision_matrix=lam[:, None]).log_prob(x[None, :, None])
    prior = MultivariateNormal(p["m0"], precision_matrix=p["beta0"] * lam).log_prob(mu)
    prior = prior + Wishart(
        t64(p["nu0"]), covariance_matrix=torch.linalg.inv(p["w0_inv"])
    ).log_prob(lam)
    return {
        "log_lik": lik.gather(2, z[..., None])[..., 0].sum(1),
        "log_prior_z": pi.log().gather(1, z).sum(1),
        "entropy_z": -q_z.log_prob(z).sum(1),
        "log_prior_components": prior.sum(1),
        "entropy_components": -(q_mu.log_prob(mu) + q_lam.log_prob(lam)).sum(1),
        "log_prior_weights": Dirichlet(torch.full((k,), p["alpha0"], dtype=F64)).log_prob(pi),
        "entropy_weights": -q_pi.log_prob(pi),
    }


def mc_data():
    g = torch.Generator().manual_seed(3)
    centres = t64([[-2.0, 0.0], [2.5, 1.0]])
    z = torch.arange(24) % 2
    return centres[z] + 0.8 * torch.randn(24, 2, generator=g, dtype=F64)


# torch's Wishart sampler warns at small df and retries singular draws
@pytest.mark.filterwarnings("ignore:Singular sample detected", "ignore:Low df values detected")
@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("which", ["fitted", "random"])
def test_elbo_matches_monte_carlo(name, which):
    spec, x, k = SPECS[name], mc_data(), 3
    model = make_model(spec, k).fit(x, seed=1)
    g = torch.Generator().manual_seed(11)
    r = model.responsibilities(x)
    if which == "random":
        model = type(model).load_state(perturbed_state(model, g))
        noise = torch.randn(len(x), k, generator=g, dtype=F64)
        r = torch.softmax(r.log() + 0.5 * noise, 1)
    sampler = mc_elbo_kv if spec["model"] == "kv" else mc_elbo_bayes
    with torch.random.fork_rng():  # torch's samplers draw from the global generator
        torch.manual_seed(12)
        draws = sum(sampler(model, x, r, 20_000).values())
    mc, se = draws.mean().item(), draws.std().item() / math.sqrt(len(draws))
    ours = model.elbo(x, resp=r)
    assert abs(ours - mc) < 4 * se + 1e-9, f"{name} ({which}): ours {ours}, MC {mc} +- {se}"
    assert se < 0.2  # the check has teeth: a dropped D/2 or ln 2 would be seen


# ---------------------------------------------------------------------------------------------
# CAVI never lowers the ELBO


def random_mixture_data(i):
    g = torch.Generator().manual_seed(100 + i)
    d = 1 + i % 4
    n = int(torch.randint(d + 3, 160, (1,), generator=g))
    k_true = int(torch.randint(1, 5, (1,), generator=g))
    scale = float(torch.exp(torch.randn(1, generator=g, dtype=F64)))
    centres = 4 * scale * torch.randn(k_true, d, generator=g, dtype=F64)
    z = torch.randint(k_true, (n,), generator=g)
    spreads = torch.exp(torch.randn(k_true, 1, generator=g, dtype=F64))
    x = centres[z] + scale * spreads[z] * torch.randn(n, d, generator=g, dtype=F64)
    k = int(torch.randint(1, 7, (1,), generator=g))
    return x, k


@pytest.mark.parametrize("i", range(24))
def test_cavi_never_lowers_the_elbo(i):
    x, k = random_mixture_data(i)
    models = {
        "bayesian": lambda: BayesianGMM(k),
        "known-variance": lambda: KnownVarianceGMM(
            k, noise_var=float(x.var()), weights="uniform" if i % 2 else "dirichlet"
        ),
    }
    for name, make in models.items():
        for init in ("kmeans", "random"):
            where = f"data set {i} (n = {len(x)}, D = {x.shape[1]}, K = {k}), {name}, {init}"
            try:
                model = make().fit(x, init=init, seed=i, max_iter=300, tol=1e-13)
            except RuntimeError as err:
                pytest.fail(f"{where}: {err}")
            h = model.history
            for it in range(1, len(h)):
                assert h[it] >= h[it - 1] - (1e-9 * abs(h[it - 1]) + 1e-9), (
                    f"{where}: ELBO fell at iteration {it + 1}: {h[it - 1]!r} -> {h[it]!r}"
                )
            assert model.elbo(x) == pytest.approx(h[-1], rel=1e-12)


def test_a_fall_of_the_elbo_is_an_error():
    # A wrong update (here: the Wishart scale doubled) must be caught at once, not reported as
    # convergence.
    x, _ = four_gaussians(200, seed=1)

    class Broken(BayesianGMM):
        def _set_w_inv(self, w_inv):
            super()._set_w_inv(2.0 * w_inv if len(self.history) == 3 else w_inv)

    with pytest.raises(RuntimeError, match=r"ELBO fell at CAVI iteration \d+: -?\d"):
        Broken(4).fit(x, init="random")


# ---------------------------------------------------------------------------------------------
# the textbook example, scikit-learn, SVI


def test_four_gaussians_data():
    x, y = four_gaussians(1000, seed=0)
    assert x.shape == (1000, 2) and x.dtype == F64 and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [400, 300, 200, 100]
    x2, y2 = four_gaussians(1000, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, four_gaussians(1000, seed=1)[0])
    for j, centre in enumerate([(4, 4), (-4, 4), (-4, -4), (4, -4)]):
        xs = x[y == j]
        se_mean, se_var = 1 / math.sqrt(len(xs)), math.sqrt(2 / (len(xs) - 1))
        assert torch.allclose(xs.mean(0), t64(centre), atol=4 * se_mean, rtol=0)
        assert torch.allclose(xs.var(0), t64([1.0, 1.0]), atol=4 * se_var, rtol=0)
    x3, _ = four_gaussians(1000, seed=0, spread=10.0, noise=0.5)
    assert torch.allclose(x3.abs().mean(0), t64([10.0, 10.0]), atol=0.1)


def test_four_gaussians_recovered_with_ten_components():
    x, y = four_gaussians(1000, seed=0)
    model = BayesianGMM(10).fit(x, tol=1e-12)
    assert model.converged
    assert adjusted_rand_score(y.numpy(), model.predict(x).numpy()) >= 0.95
    assert model.effective_components() == 4
    # Each cluster is one component; at convergence its q is Bishop's (10.51)-(10.63) for the
    # responsibilities, written out again here in their centred form with numpy and checked
    # against the point covariance W^-1/nu and the mean m.
    r = model.responsibilities(x).numpy()
    xn, m0, w0_inv = x.numpy(), x.numpy().mean(0), np.cov(x.numpy().T)
    labels = r.argmax(1)
    for j in range(4):
        comp = int(np.bincount(labels[y.numpy() == j]).argmax())
        w = r[:, comp]
        n = w.sum()
        assert abs(n - np.sum(y.numpy() == j)) < 3
        xbar = w @ xn / n
        s = (w[:, None] * (xn - xbar)).T @ (xn - xbar) / n
        w_inv = w0_inv + n * s + n / (1 + n) * np.outer(xbar - m0, xbar - m0)
        np.testing.assert_allclose(model.covariances()[comp], w_inv / (2 + n), atol=1e-6)
        np.testing.assert_allclose(model.means()[comp], (m0 + n * xbar) / (1 + n), atol=1e-6)
        assert float(model.weights()[comp]) == pytest.approx((0.1 + n) / (1 + len(x)), abs=1e-6)
    kv = KnownVarianceGMM(10).fit(x)
    assert adjusted_rand_score(y.numpy(), kv.predict(x).numpy()) >= 0.95
    assert kv.effective_components() == 4


def sklearn_fit(x, reg_covar):
    from sklearn.mixture import BayesianGaussianMixture

    bgm = BayesianGaussianMixture(
        n_components=10, weight_concentration_prior_type="dirichlet_distribution",
        covariance_type="full", tol=1e-10, max_iter=3000, random_state=0, reg_covar=reg_covar,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning would void the comparison
        return bgm.fit(x.numpy())


def test_against_sklearn_on_four_gaussians():
    x, _ = four_gaussians(1000, seed=0)
    ours = BayesianGMM(10).fit(x, tol=1e-12)
    bgm = sklearn_fit(x, reg_covar=1e-6)  # sklearn's default regularization
    theirs = BayesianGMM.from_sklearn(bgm, x)
    for key, v in theirs.priors.items():  # same priors: our defaults are sklearn's
        torch.testing.assert_close(t64(v), t64(ours.priors[key]), rtol=1e-12, atol=0)
    at_ours, at_theirs = ours.elbo(x), theirs.elbo(x)
    assert at_ours >= at_theirs - 1e-6 * abs(at_theirs)
    # Continuing CAVI from sklearn's fitted q: the ELBO does not fall (fit raises if it does)
    cont = BayesianGMM.from_sklearn(bgm, x).fit(x, init="current", tol=1e-12)
    assert cont.history[0] >= at_theirs - 1e-9 * abs(at_theirs)
    assert cont.history[-1] >= at_theirs - 1e-9 * abs(at_theirs)


def test_sklearn_lower_bound_is_our_elbo_less_its_dropped_constants():
    # At a global update (sklearn's lower_bound_ is computed right after its M-step), the
    # terms in E ln|Lambda_k|, the traces and D/beta_k cancel in Bishop's (10.70), leaving
    #   ELBO = -sum r ln r + ln C(alpha0) - ln C(alpha) + K ln B(W0, nu0) - sum_k ln B(W_k, nu_k)
    #          + K D/2 ln beta0 - D/2 sum_k ln beta_k - N D/2 ln(2 pi).
    # sklearn keeps -sum r ln r - ln C(alpha) - sum_k [ln B(W_k, nu_k) + D(D-1)/4 ln pi]
    # - D/2 sum_k ln beta_k (its _log_wishart_norm drops the ln pi term), so
    #   ours - lower_bound_ = ln C(alpha0) + K ln B(W0, nu0) + K D/2 ln beta0 - N D/2 ln(2 pi)
    #                         + K D(D-1)/4 ln pi,
    # exactly when reg_covar = 0 (sklearn adds reg_covar I to each S_k otherwise: with the default
    # 1e-6 the offset moved by ~1e-3 nats on four_gaussians) and sklearn has converged (its bound
    # uses q(z) from before the last M-step; ours the optimal one after it). Measured on
    # four_gaussians(1000, seed=0): offset -1825.3398043790 (ours) vs -1825.3398043791 predicted.
    x, _ = four_gaussians(1000, seed=0)
    bgm = sklearn_fit(x, reg_covar=0.0)
    n, d = x.shape
    k = 10
    a0, b0, nu0 = 1.0 / k, 1.0, float(d)
    w0_inv = np.cov(x.numpy().T)
    i = np.arange(1, d + 1)
    log_b0 = (
        nu0 / 2 * np.linalg.slogdet(w0_inv)[1] - nu0 * d / 2 * math.log(2)
        - d * (d - 1) / 4 * math.log(math.pi) - gammaln((nu0 + 1 - i) / 2).sum()
    )  # fmt: skip
    offset = (
        gammaln(k * a0) - k * gammaln(a0) + k * log_b0 + k * d / 2 * math.log(b0)
        - n * d / 2 * math.log(2 * math.pi) + k * d * (d - 1) / 4 * math.log(math.pi)
    )  # fmt: skip
    ours = BayesianGMM.from_sklearn(bgm, x).elbo(x)
    assert ours - bgm.lower_bound_ == pytest.approx(offset, abs=1e-6)


def test_svi_reaches_the_cavi_elbo():
    # K = 5 keeps the test quick: CAVI needs ~400 iterations here (k-means splits one cluster
    # between two components and Dirichlet(1/K) merges the halves slowly; with K = 10 it takes
    # ~1300) and ends with 4 components at -82356.78. SVI after 3 epochs of 500-point batches
    # has not emptied the fifth component yet: -82422.64, 0.08% below (K = 10: 0.41%).
    x, _ = four_gaussians(20_000, seed=2)
    cavi = BayesianGMM(5).fit(x, seed=0, max_iter=3000)
    assert cavi.converged and cavi.effective_components() == 4
    svi = BayesianGMM(5).fit_svi(x, batch_size=500, epochs=3, seed=0, eval_every=40)
    gap = (cavi.history[-1] - svi.history[-1]) / abs(cavi.history[-1])
    assert abs(gap) < 0.01, f"SVI {svi.history[-1]} vs CAVI {cavi.history[-1]}"
    assert svi.history_steps == [40, 80, 120]
    assert svi.history[-1] > svi.history[0]  # it still improves over the epochs
    # the running statistics are scaled to the full data set
    assert float(svi.counts().sum()) == pytest.approx(20_000, rel=1e-9)
    # SVI starts from the same q as CAVI's first iteration and improves on it
    start = BayesianGMM(5).fit(x, seed=0, max_iter=1).history[0]
    assert svi.history[0] > start


def test_svi_for_the_known_variance_model():
    x, _ = four_gaussians(5_000, seed=3)
    cavi = KnownVarianceGMM(6).fit(x)
    svi = KnownVarianceGMM(6).fit_svi(x, batch_size=250, epochs=2, seed=1)
    assert abs(cavi.history[-1] - svi.history[-1]) < 0.01 * abs(cavi.history[-1])


# ---------------------------------------------------------------------------------------------
# state, summaries and bad input


@pytest.mark.parametrize(
    "make",
    [lambda: BayesianGMM(5), lambda: KnownVarianceGMM(5), lambda: KnownVarianceGMM(5, weights="uniform")],
)  # fmt: skip
def test_state_round_trip(make, tmp_path):
    from safetensors.torch import load_file, save_file

    x, _ = four_gaussians(300, seed=4)
    model = make().fit(x)
    save_file(model.state(), tmp_path / "q.safetensors")
    again = type(model).load_state(load_file(tmp_path / "q.safetensors"))
    assert again.elbo(x) == pytest.approx(model.elbo(x), rel=1e-14)
    torch.testing.assert_close(again.responsibilities(x), model.responsibilities(x))
    assert again.effective_components() == model.effective_components()
    state = model.state()
    state["extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unknown keys \\['extra'\\]"):
        type(model).load_state(state)
    del state["extra"], state["m"]
    with pytest.raises(ValueError, match="missing keys \\['m'\\]"):
        type(model).load_state(state)


@pytest.mark.filterwarnings("ignore:Singular sample detected", "ignore:Low df values detected")
def test_each_elbo_term_matches_its_own_monte_carlo_estimate():
    # every named term against E_q of its own log-density, drawn with torch's samplers (a term
    # that is wrong but compensated by another would pass the total's check, not this one)
    x, _ = four_gaussians(200, seed=6)
    common = {"log_lik", "log_prior_z", "entropy_z", "log_prior_components", "entropy_components"}
    weights = {"log_prior_weights", "entropy_weights"}
    for model, keys, sampler in [
        (BayesianGMM(3), common | weights, mc_elbo_bayes),
        (KnownVarianceGMM(3), common | weights, mc_elbo_kv),
        (KnownVarianceGMM(3, weights="uniform"), common, mc_elbo_kv),
    ]:
        model.fit(x.double())
        terms = model.elbo_terms(x)
        assert set(terms) == keys
        with torch.random.fork_rng():
            torch.manual_seed(5)
            draws = sampler(model, x.double(), model.responsibilities(x), 4000)
        assert set(draws) == keys
        for key, d in draws.items():
            mc, se = d.mean().item(), d.std().item() / math.sqrt(len(d))
            assert abs(terms[key] - mc) < 4 * se + 1e-9 * abs(mc), (
                f"{type(model).__name__} {key}: {terms[key]} vs {mc} +- {se}"
            )
        assert terms["entropy_z"] >= 0 and terms["log_lik"] < 0
        if isinstance(model, KnownVarianceGMM) and model.alpha0 is None:
            assert terms["log_prior_z"] == pytest.approx(-len(x) * math.log(3), rel=1e-12)


def test_refit_keeps_loaded_priors_and_covariance_kinds():
    x, _ = four_gaussians(300, seed=4)
    model = BayesianGMM(3, alpha0=2.0, beta0=0.5).fit(x)
    again = BayesianGMM.load_state(model.state()).fit(x * 2)
    assert again.priors["alpha0"] == 2.0 and again.priors["beta0"] == 0.5
    torch.testing.assert_close(again.priors["m0"], model.priors["m0"])
    point, mean = model.covariances("point"), model.covariances("mean")
    d = x.shape[1]
    nu = model.nu[:, None, None]
    torch.testing.assert_close(mean, point * nu / (nu - d - 1))


def test_from_sklearn_rejects_other_covariance_types():
    from sklearn.mixture import BayesianGaussianMixture

    x, _ = four_gaussians(100, seed=0)
    bgm = BayesianGaussianMixture(n_components=2, covariance_type="diag", random_state=0)
    bgm.fit(x.numpy())
    with pytest.raises(ValueError, match="covariance_type = 'diag': only 'full'"):
        BayesianGMM.from_sklearn(bgm, x)
    bgm = BayesianGaussianMixture(n_components=2, random_state=0).fit(x.numpy())
    with pytest.raises(ValueError, match="'dirichlet_process'"):
        BayesianGMM.from_sklearn(bgm, x)


@pytest.mark.parametrize("cls", [BayesianGMM, KnownVarianceGMM])
def test_bad_input(cls):
    x, _ = four_gaussians(20, seed=0)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"x\[3, 1\] = nan.*row 3, column 1"):
        cls(2).fit(bad)
    bad[3, 1], bad[5, 0] = 1.0, float("inf")
    with pytest.raises(ValueError, match="row 5, column 0"):
        cls(2).fit(bad)
    with pytest.raises(ValueError, match="has 1 point\\(s\\): expected at least 2"):
        cls(2).fit(x[:1])
    with pytest.raises(ValueError, match=r"shape \(20,\): expected a 2-D tensor"):
        cls(2).fit(x[:, 0])
    with pytest.raises(ValueError, match="dtype torch.int64: expected a floating-point"):
        cls(2).fit(x.long())
    with pytest.raises(TypeError, match="ndarray: expected a torch.Tensor"):
        cls(2).fit(x.numpy())
    for k in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_components = .*: expected an integer >= 1"):
            cls(k)
    with pytest.raises(ValueError, match="init = 'kmeans\\+\\+': expected one of"):
        cls(2).fit(x, init="kmeans++")
    with pytest.raises(ValueError, match="init has shape \\(20, 3\\): expected \\(20, 2\\)"):
        cls(2).fit(x, init=torch.full((20, 3), 1 / 3, dtype=F64))
    with pytest.raises(RuntimeError, match="no variational parameters yet"):
        cls(2).predict(x)
    model = cls(2).fit(x)
    with pytest.raises(ValueError, match="x has 3 columns: expected D = 2"):
        model.elbo(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="steps = 3 and epochs = 1: give at most one"):
        cls(2).fit_svi(x, steps=3, epochs=1)
    with pytest.raises(ValueError, match="kappa = 0.5: expected 0.5 < kappa <= 1"):
        cls(2).fit_svi(x, kappa=0.5)


def test_bad_priors():
    x, _ = four_gaussians(20, seed=0)
    with pytest.raises(ValueError, match="nu0 = 0.5: expected a finite value > D - 1 = 1"):
        BayesianGMM(2, nu0=0.5).fit(x)
    with pytest.raises(ValueError, match="w0_inv .* not symmetric positive definite"):
        BayesianGMM(2, w0_inv=-torch.eye(2)).fit(x)
    with pytest.raises(ValueError, match="the default W0\\^-1, is singular"):
        BayesianGMM(2).fit(torch.stack([x[:, 0], x[:, 0]], 1))
    with pytest.raises(ValueError, match="noise_var = 0.0: expected a finite value > 0"):
        KnownVarianceGMM(2, noise_var=0.0)
    with pytest.raises(ValueError, match="weights = 'equal': expected 'uniform' or 'dirichlet'"):
        KnownVarianceGMM(2, weights="equal")


def test_seeded_and_independent_of_global_rng():
    x, _ = four_gaussians(200, seed=5)
    torch.manual_seed(1)
    a = BayesianGMM(4).fit(x, init="random", seed=3).history
    torch.manual_seed(2)
    b = BayesianGMM(4).fit(x, init="random", seed=3).history
    assert a == b
    state = torch.random.get_rng_state()
    BayesianGMM(4).fit_svi(x, batch_size=50, steps=10, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())


# ---------------------------------------------------------------------------------------------
# the ``gmm`` kind of run: elbokit fit gmm


def _gmm_cfg(**overrides):
    from elbokit import recipes

    base = {"train": {"progress": False}}
    for section, values in overrides.items():
        base.setdefault(section, {}).update(values)
    return recipes.get_recipe("gmm").preset("debug", base)


def test_fit_gmm_matches_the_library_fit_and_sklearn_and_resumes_exactly(tmp_path):
    from elbokit import recipes

    gmm, quiet = recipes.get_recipe("gmm"), lambda *a: None
    cfg = _gmm_cfg(train={"iterations": 300, "checkpoint_every": 7}, evaluate={"report": False})
    a = recipes.train(gmm, cfg, out=tmp_path / "a", say=quiet)
    b = recipes.train(gmm, cfg, out=tmp_path / "b", stop_at=20, say=quiet)
    recipes.train(gmm, resume=b, say=quiet)
    result = recipes.evaluate(a, say=quiet)
    assert recipes.evaluate(b, say=quiet)["elbo"] == result["elbo"]  # resumed: the same fit
    # one CAVI iteration per step gives the library's own fit, iteration for iteration
    x, labels = four_gaussians(200, seed=0)
    ref = BayesianGMM(10).fit(x, max_iter=300, tol=1e-8, init="kmeans", seed=0)
    assert result["iterations"] == ref.n_iter and result["converged"] == ref.converged
    # converged long before the 300 steps it was given: the trainer stopped there and saved
    assert ref.converged and ref.n_iter < 300
    assert json.loads((a / "state.json").read_text())["step"] == ref.n_iter
    assert result["elbo"] == pytest.approx(ref.elbo(x), rel=1e-12)
    assert result["ari"] == pytest.approx(adjusted_rand_score(labels, ref.predict(x)), abs=1e-12)
    assert result["elbo"] >= result["sklearn"]["elbo"] - 1e-6 * abs(result["elbo"])
    recipes.report(a, say=quiet)
    for png in ("clusters.png", "elbo.png", "weights.png"):
        assert (a / "report" / png).stat().st_size > 5_000


def test_fit_gmm_by_svi_and_the_known_variance_model_from_the_command_line(tmp_path):
    from elbokit.cli import main

    out = tmp_path / "svi"
    assert main(["fit", "gmm", "--inference", "svi", "--examples", "4000", "--components", "5",
                 "--iterations", "5", "--batch-size", "200", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    import json

    svi = json.loads((out / "eval.json").read_text())
    assert svi["inference"] == "svi" and svi["iterations"] == 5 * 20
    cavi = BayesianGMM(5).fit(*four_gaussians(4000, seed=0)[:1], max_iter=2000)
    assert svi["elbo"] >= cavi.elbo(four_gaussians(4000, seed=0)[0]) * 1.01  # within 1% (negative)
    kv = tmp_path / "kv"
    assert main(["fit", "gmm", "--model", "known-variance", "--weights", "uniform", "--components", "4",
                 "--preset", "debug", "--out", str(kv), "--no-progress"]) == 0  # fmt: skip
    r = json.loads((kv / "eval.json").read_text())
    assert r["model"] == "known-variance" and "sklearn" not in r and r["ari"] > 0.95


def test_points_from_files_and_bad_points_fail_before_fitting(tmp_path, capsys):
    from elbokit.cli import main
    from elbokit.data.clusters import load_points
    from elbokit.data.readers import DataError

    good = tmp_path / "good.csv"
    good.write_text(
        "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{'xy'[i % 2]}\n" for i in range(30))
    )
    p = load_points(good)
    assert p.x.shape == (30, 2) and p.labels.tolist()[:3] == [0, 1, 0]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(DataError, match=r"line 3, column 'b' is 'x'; expected a number"):
        load_points(bad)
    bad.write_text("a,b\n1,2\n3,4\n5, NaN\n")  # named by line and column, as a person finds it
    with pytest.raises(DataError, match=r"line 4, column 'b' is 'NaN'; expected a finite number"):
        load_points(bad)
    bad.write_text("a,b\n1,2\n3,x\n")
    npz = tmp_path / "nan.npz"
    x = np.ones((10, 3))
    x[6, 1] = np.nan
    np.savez(npz, x=x)
    with pytest.raises(DataError, match=r"row 6, column 1 is nan"):
        load_points(npz)
    np.savez(npz, x=np.ones((1, 3)))
    with pytest.raises(DataError, match="1 point; a mixture needs at least 2"):
        load_points(npz)
    np.savez(npz, x=np.ones((3, 5)))
    with pytest.raises(DataError, match="3 points in 5 dimensions"):
        load_points(npz)
    assert main(["fit", "gmm", "--data", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "line 3, column 'b'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    with pytest.raises(DataError, match=r"a header \(a, b\) and no rows of points"):
        load_points(empty)
    # more components than points: ours fits (the prior prunes); sklearn's k-means cannot start
    out = tmp_path / "many"
    args = [
        "fit",
        "gmm",
        "--data",
        str(good),
        "--components",
        "40",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "comparison skipped" in capsys.readouterr().out
    r = json.loads((out / "eval.json").read_text())
    assert "sklearn" not in r and 1 <= r["effective_components"] <= 30
