"""The coin and the Normal mean: every closed form against numerical integration or scipy, and
VI on each: a family that contains the posterior recovers it (ELBO -> log evidence), one that
does not stops below it by exactly KL(q || posterior), computed here on its own by quadrature."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from elbokit import recipes
from elbokit.cli import main
from elbokit.models.bayes import BetaBernoulli, NormalMean
from references import assert_same, weights

QUIET = lambda *a: None  # noqa: E731
COINS = [(7, 10, 1.0, 1.0), (0, 5, 2.0, 3.0), (20, 20, 0.5, 0.5), (3, 40, 5.0, 1.5)]


@pytest.mark.parametrize(("h", "n", "a", "b"), COINS)
def test_the_coin_against_numerical_integration(h, n, a, b):
    model = BetaBernoulli(h, n, a, b)

    def joint(t):  # p(D | theta) p(theta) of the sequence
        return t**h * (1 - t) ** (n - h) * stats.beta.pdf(t, a, b)

    evidence, _ = integrate.quad(joint, 0, 1, epsabs=0, epsrel=1e-12, limit=200)
    assert model.log_evidence("sequence") == pytest.approx(math.log(evidence), abs=1e-8)
    assert model.log_evidence("count") == pytest.approx(
        stats.betabinom.logpmf(h, n, a, b), abs=1e-10
    )
    mean, _ = integrate.quad(lambda t: t * joint(t) / evidence, 0, 1, epsrel=1e-12)
    assert model.predictive() == pytest.approx(mean, abs=1e-9)  # P(heads) = E[theta | D]
    post = model.posterior()
    for t in (0.1, 0.5, 0.93):
        assert post.log_prob(torch.tensor(t, dtype=torch.float64)).exp().item() == pytest.approx(
            joint(t) / evidence, rel=1e-8
        )


def test_the_normal_mean_against_scipy():
    x = (0.3, 1.2, -0.5, 2.0, 1.1)
    model = NormalMean(x, sigma=0.8, m0=0.5, s0=1.7)
    n = len(x)
    cov = 0.8**2 * np.eye(n) + 1.7**2 * np.ones((n, n))
    assert model.log_evidence() == pytest.approx(
        stats.multivariate_normal(np.full(n, 0.5), cov).logpdf(np.array(x)), abs=1e-10
    )

    def joint(mu):
        return np.prod(stats.norm.pdf(x, mu, 0.8)) * stats.norm.pdf(mu, 0.5, 1.7)

    z, _ = integrate.quad(joint, -20, 20, epsrel=1e-12)
    post, pred = model.posterior(), model.predictive()
    m, _ = integrate.quad(lambda u: u * joint(u) / z, -20, 20, epsrel=1e-12)
    v, _ = integrate.quad(lambda u: (u - m) ** 2 * joint(u) / z, -20, 20, epsrel=1e-12)
    assert post.loc.item() == pytest.approx(
        m, abs=1e-9
    ) and post.scale.item() ** 2 == pytest.approx(v, rel=1e-8)
    assert pred.loc.item() == pytest.approx(m) and pred.scale.item() ** 2 == pytest.approx(
        v + 0.8**2
    )


def _fit(kind, overrides, tmp_path):
    recipe = recipes.get_recipe(kind)
    cfg = recipe.preset("default", {"train": {"progress": False}, **overrides})
    run = recipes.train(recipe, cfg, out=tmp_path / kind, say=QUIET)
    return json.loads((run / "eval.json").read_text()), run


@pytest.mark.parametrize(("h", "n", "a", "b"), COINS[:3])
def test_a_beta_q_recovers_the_coins_posterior(tmp_path, h, n, a, b):
    result, _ = _fit("coin", {"data": {"heads": h, "tosses": n, "prior": (a, b)}}, tmp_path)
    assert result["elbo"] == pytest.approx(result["log_evidence_sequence"], abs=1e-6)
    assert abs(result["kl_q_posterior"]) < 1e-9
    assert result["q"]["a"] == pytest.approx(a + h, rel=1e-6)
    assert result["q"]["b"] == pytest.approx(b + n - h, rel=1e-6)


def test_a_logit_normal_q_stops_below_the_evidence_by_the_kl_to_the_posterior(tmp_path):
    result, _ = _fit("coin", {"objective": {"family": "logit-normal"}}, tmp_path)
    gap = result["log_evidence_sequence"] - result["elbo"]
    assert gap > 1e-4  # a Beta(8, 4) is no logit-normal
    # KL(q || Beta(8, 4)) on its own: adaptive quadrature over theta (elbokit integrates over
    # logit theta, and its ELBO uses Gauss-Hermite nodes)
    m, s = result["q"]["m"], result["q"]["s"]

    def integrand(t):
        z = math.log(t / (1 - t))
        log_q = stats.norm.logpdf(z, m, s) - math.log(t) - math.log1p(-t)
        log_p = stats.beta.logpdf(t, 8, 4)
        return math.exp(log_q) * (log_q - log_p)

    kl, _ = integrate.quad(integrand, 1e-12, 1 - 1e-12, epsabs=1e-13, epsrel=1e-11, limit=400)
    assert gap == pytest.approx(kl, abs=1e-5)
    assert abs(result["identity_residual"]) < 1e-9


def test_a_normal_q_recovers_the_normal_means_posterior(tmp_path):
    result, run = _fit(
        "normal-mean", {"data": {"values": (0.3, 1.2, -0.5, 2.0), "s0": 2.0}}, tmp_path
    )
    assert result["elbo"] == pytest.approx(result["log_evidence"], abs=1e-6)
    assert result["q"]["m"] == pytest.approx(result["posterior_mean"], abs=1e-8)
    assert result["q"]["s"] == pytest.approx(result["posterior_sd"], abs=1e-8)
    assert (run / "report" / "densities.png").stat().st_size > 10_000


def test_fit_coin_from_the_command_line_resumes_and_names_bad_counts(tmp_path, capsys):
    out = tmp_path / "coin"
    assert main(["fit", "coin", "--heads", "7", "--tosses", "10", "--family", "logit-normal",
                 "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "posterior Beta(8, 4)" in text and "the identity holds" in text
    assert "P(next is heads | D) = 0.666667" in text
    coin = recipes.get_recipe("coin")
    cfg = coin.preset("default", {"objective": {"family": "logit-normal"},
                                  "train": {"progress": False, "checkpoint_every": 3}})  # fmt: skip
    b = recipes.train(coin, cfg, out=tmp_path / "b", stop_at=4, say=QUIET)
    recipes.train(coin, resume=b, say=QUIET)
    assert_same(weights(recipes.open_run(out).learner()[0].modules["q"]),
                weights(recipes.open_run(b).learner()[0].modules["q"]))  # fmt: skip
    assert (
        main(["fit", "coin", "--heads", "11", "--tosses", "10", "--out", str(tmp_path / "x")]) == 2
    )
    assert "--heads 11: expected at most --tosses 10" in capsys.readouterr().err
    assert main(["fit", "normal-mean", "--values", "1", "nan", "--out", str(tmp_path / "y")]) == 2
    assert "expected a finite number" in capsys.readouterr().err


def test_the_betabinomial_count_evidence_is_the_sequence_one_plus_log_n_choose_h():
    m = BetaBernoulli(4, 9, 2.0, 2.0)
    assert m.log_evidence("count") - m.log_evidence("sequence") == pytest.approx(
        math.log(special.comb(9, 4)), abs=1e-12
    )
