"""Bayes by backprop: the minibatch ELBO against the full-data ELBO computed on its own, the local
reparameterization against the moments it must have, the KL to each prior against torch's
closed form and quadrature, the predictive metrics against scipy and scikit-learn, and the
``bnn`` kind end to end."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Normal, kl_divergence

from elbokit import recipes
from elbokit.cli import main
from elbokit.config import ConfigError
from elbokit.data.labelled import load_labelled
from elbokit.data.readers import DataError
from elbokit.evaluate.predictive import (
    classification_metrics,
    regression_metrics,
    reliability,
    roc_auc,
)
from elbokit.models.bnn import (
    BayesConv2d,
    BayesLinear,
    BNNConfig,
    Predictor,
    WeightPrior,
    kl_estimate,
    kl_to_prior,
)
from elbokit.objectives import ELBO
from references import assert_same, weights

QUIET = lambda *a: None  # noqa: E731


def _regressor(sampling="local", seed=0, hidden=(8,)):
    torch.manual_seed(seed)
    cfg = BNNConfig(hidden=hidden, sampling=sampling, init_sigma=0.1)
    return Predictor(cfg, (3,), 1, "regression", "bayes")


def _pairs(n=60, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x.sum(1).sin() + 0.1 * torch.randn(n, generator=g)


def _full_elbo_of_means(net, x, y, prior_sigma=1.0):
    """sum_i log N(y_i; f(x_i), s^2) - sum over parameters of KL(q || N(0, prior_sigma^2)),
    with torch's own Normal KL, for a net that predicts with the posterior means."""
    f = net(x)
    ll = Normal(f, net.noise()).log_prob(y).sum()
    kl = 0.0
    for name, mu in net.net.named_parameters():
        if name.endswith("_mu"):
            rho = dict(net.net.named_parameters())[name[:-3] + "_rho"]
            q = Normal(mu, torch.nn.functional.softplus(rho) + 1e-8)
            kl = kl + kl_divergence(q, Normal(0.0, prior_sigma)).sum()
    return float((ll - kl).detach())


def test_an_epoch_of_minibatch_elbos_is_the_full_data_elbo():
    """With the weights at their means, the minibatch ELBOs (times N) of a partition average to
    the full-data ELBO exactly; peers' default of dividing the KL by the batch size does not."""
    net = _regressor("mean")
    x, y = _pairs(60)
    objective, prior = ELBO(), WeightPrior("gaussian", 1.0)
    full = _full_elbo_of_means(net, x, y)
    parts, peers = [], []
    for idx in torch.arange(60).split(15):  # four batches of 15
        ll = net.log_likelihood(net(x[idx]), y[idx])
        kl, method = kl_to_prior(net.net, prior)
        assert method == "analytic"
        out = objective.from_global_kl(ll, kl, 60)
        parts.append(float(out.terms["elbo"]) * 60)
        peers.append(float((ll.mean() - kl / 15).detach()) * 60)  # the KL "per batch"
    assert np.mean(parts) == pytest.approx(full, rel=1e-6)
    assert abs(np.mean(peers) - full) > 0.5 * abs(
        full - float(net.log_likelihood(net(x), y).sum().detach())
    )


def test_random_minibatches_and_weight_noise_estimate_the_full_elbo_without_bias():
    """E over random minibatches and local-reparameterization noise of N * (batch ELBO) equals
    a Monte Carlo estimate of the full-data ELBO from whole-function weight draws."""
    torch.manual_seed(3)
    net = _regressor("local")
    x, y = _pairs(40)
    objective, prior = ELBO(), WeightPrior("gaussian", 1.0)
    kl = float(kl_to_prior(net.net, prior)[0].detach())
    with torch.no_grad():
        ours = []
        for _ in range(4000):
            idx = torch.randperm(40)[:8]
            ll = net.log_likelihood(net(x[idx]), y[idx])
            ours.append(
                float(objective.from_global_kl(ll, torch.tensor(kl), 40).terms["elbo"]) * 40
            )
        for layer in net.net:
            if isinstance(layer, BayesLinear):
                layer.sampling = "weights"
        whole = [float(net.log_likelihood(net(x), y).sum()) - kl for _ in range(4000)]
    se = math.sqrt(np.var(ours) / len(ours) + np.var(whole) / len(whole))
    assert abs(np.mean(ours) - np.mean(whole)) < 4 * se


@pytest.mark.parametrize("layer", ["linear", "conv"])
@pytest.mark.parametrize("sampling", ["local", "weights"])
def test_sampled_pre_activations_have_the_moments_of_the_weight_posterior(layer, sampling):
    """Mean x mu^T + b_mu and variance x^2 sigma^2 + sigma_b^2 per unit, either way of sampling."""
    torch.manual_seed(0)
    if layer == "linear":
        m = BayesLinear(5, 3, init_sigma=0.3, sampling=sampling)
        x = torch.randn(1, 5)
    else:
        m = BayesConv2d(2, 3, 3, init_sigma=0.3, sampling=sampling)
        x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        m.weight_mu.normal_()
        qw, qb = m.posteriors()
        mean = m._map(x, qw.loc, qb.loc)
        var = m._map(x * x, qw.scale**2, qb.scale**2)
        if sampling == "local":  # independent draws per example
            draws = m(x.expand(4000, *x.shape[1:]))
        else:  # one draw per call
            draws = torch.cat([m(x) for _ in range(1500 if layer == "linear" else 500)])
    n = len(draws)
    se_mean = (var / n).sqrt()
    assert ((draws.mean(0) - mean[0]).abs() <= 4.5 * se_mean[0]).all()
    se_var = var * math.sqrt(2 / (n - 1))  # of a Gaussian sample variance
    assert ((draws.var(0) - var[0]).abs() <= 4.5 * se_var[0]).all()


def test_the_gaussian_prior_kl_is_torchs_closed_form_summed_over_every_parameter():
    net = _regressor()
    kl, method = kl_to_prior(net.net, WeightPrior("gaussian", 0.7))
    params = dict(net.net.named_parameters())
    expected = sum(
        float(kl_divergence(Normal(mu, torch.nn.functional.softplus(params[n[:-3] + "_rho"])), Normal(0.0, 0.7)).sum().detach())
        for n, mu in params.items() if n.endswith("_mu")
    )  # fmt: skip
    assert method == "analytic"
    kl = float(kl.detach())
    assert kl == pytest.approx(expected, rel=1e-5)
    value, how, se = kl_estimate(net.net, WeightPrior("gaussian", 0.7))
    assert (how, se) == ("closed", 0.0) and value == pytest.approx(kl, rel=1e-6)


def test_the_scale_mixture_kl_is_estimated_without_bias_and_says_so():
    """Per weight, KL(N(m, s^2) || pi N(0, s1^2) + (1 - pi) N(0, s2^2)) by quadrature; the
    one-sample training estimate averages to it and the evaluation estimate carries its SE."""
    torch.manual_seed(0)
    layer = torch.nn.Sequential(BayesLinear(2, 2, init_sigma=0.2))
    with torch.no_grad():
        layer[0].weight_mu.copy_(torch.tensor([[0.5, -1.0], [0.01, 2.0]]))
        layer[0].bias_mu.copy_(torch.tensor([0.0, 0.3]))
    prior = WeightPrior("scale-mixture", 1.0, 0.3, 0.05)
    exact = 0.0
    for q in layer[0].posteriors():
        for m, s in zip(
            q.loc.detach().flatten().tolist(), q.scale.detach().flatten().tolist(), strict=True
        ):

            def integrand(w, m=m, s=s):
                log_q = stats.norm.logpdf(w, m, s)
                log_p = np.logaddexp(np.log(0.3) + stats.norm.logpdf(w, 0, 1.0),
                                     np.log(0.7) + stats.norm.logpdf(w, 0, 0.05))  # fmt: skip
                return np.exp(log_q) * (log_q - log_p)

            exact += integrate.quad(integrand, m - 12 * s, m + 12 * s, epsabs=1e-12, limit=200)[0]
    draws = torch.stack([kl_to_prior(layer, prior)[0].detach() for _ in range(5000)]).double()
    assert kl_to_prior(layer, prior)[1] == "sampled"
    se = float(draws.std() / math.sqrt(len(draws)))
    assert abs(float(draws.mean()) - exact) < 4 * se
    value, how, stderr = kl_estimate(layer, prior, samples=20000)
    assert how == "mc" and stderr > 0
    assert abs(value - exact) < 4 * stderr + 1e-9


def test_regression_metrics_against_scipy():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(7, 50, generator=g, dtype=torch.float64)
    y = torch.randn(50, generator=g, dtype=torch.float64)
    r = regression_metrics(means, 0.8, y, y_std=2.0)
    dens = np.mean([stats.norm.pdf(y.numpy(), m, 0.8) for m in means.numpy()], axis=0)
    assert r["log_likelihood"] == pytest.approx(np.log(dens).mean() - math.log(2.0), rel=1e-10)
    assert r["rmse"] == pytest.approx(
        2.0 * np.sqrt(((means.numpy().mean(0) - y.numpy()) ** 2).mean()), rel=1e-10
    )
    # a predictive that is the truth covers 95% of draws from it (binomial standard error)
    big = torch.zeros(1, 20000, dtype=torch.float64)
    cover = regression_metrics(big, 1.0, torch.randn(20000, generator=g, dtype=torch.float64))[
        "coverage_95"
    ]
    assert abs(cover - 0.95) < 4 * math.sqrt(0.95 * 0.05 / 20000)
    with pytest.raises(ValueError, match=r"means must be \(M, N\)"):
        regression_metrics(means, 0.8, y[:10])


def test_classification_metrics_against_a_direct_computation_and_sklearn():
    from sklearn.metrics import log_loss, roc_auc_score

    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(2 * torch.randn(300, 4, generator=g, dtype=torch.float64), -1)
    y = torch.multinomial(probs, 1, generator=g)[:, 0]
    r = classification_metrics(probs, y)
    assert r["nll"] == pytest.approx(log_loss(y.numpy(), probs.numpy(), labels=range(4)), rel=1e-8)
    conf, guess = probs.max(-1)
    ece = 0.0
    for lo in np.linspace(0, 1, 16)[:-1]:  # bins (lo, lo + 1/15]
        inside = (conf.numpy() > lo) & (conf.numpy() <= lo + 1 / 15 + 1e-12)
        if inside.any():
            ece += inside.mean() * abs(
                (guess == y).numpy()[inside].mean() - conf.numpy()[inside].mean()
            )
    assert r["ece"] == pytest.approx(ece, abs=1e-10)
    # labels drawn from the probabilities themselves: calibrated, ECE within sampling noise
    assert r["ece"] < 0.1
    counts, *_ = reliability(conf, guess == y)
    assert counts.sum() == 300
    s_out, s_in = torch.randn(40, generator=g).round(), torch.randn(70, generator=g).round() - 0.5
    truth = roc_auc_score(np.r_[np.ones(40), np.zeros(70)], np.r_[s_out.numpy(), s_in.numpy()])
    assert roc_auc(s_out, s_in) == pytest.approx(truth, abs=1e-12)  # ties included
    with pytest.raises(ValueError, match="sums to"):
        classification_metrics(probs * 1.1, y)


def test_bnn_kind_resumes_exactly_evaluates_and_reports(tmp_path):
    bnn = recipes.get_recipe("bnn")
    cfg = bnn.preset("debug", {"train": {"epochs": 6, "progress": False, "checkpoint_every": 7},
                               "evaluate": {"eval_samples": 0}})  # fmt: skip
    a = recipes.train(bnn, cfg, out=tmp_path / "a", say=QUIET)
    b = recipes.train(bnn, cfg, out=tmp_path / "b", stop_at=25, say=QUIET)
    recipes.train(bnn, resume=b, say=QUIET)
    la, lb = recipes.open_run(a).learner()[0], recipes.open_run(b).learner()[0]
    assert set(la.modules) == {"bnn", "det", "dropout"}
    for name in la.modules:  # three networks, three Adams, the sampling noise: all resumed
        assert_same(weights(la.modules[name]), weights(lb.modules[name]))
    result = recipes.evaluate(a, {"samples": 20}, say=QUIET)
    assert result["step"] == 6 * 10  # 500 points, batches of 50
    for name in ("bnn", "det", "dropout"):
        assert 0 <= result[name]["coverage_95"] <= 1 and math.isfinite(
            result[name]["log_likelihood"]
        )
    assert result["det"]["sd_epistemic"] == 0 and result["bnn"]["sd_epistemic"] > 0
    assert result["kl"]["method"] == "closed"
    recipes.report(a, say=QUIET)
    assert (a / "report" / "band.png").stat().st_size > 10_000
    assert json.loads((a / "eval.json").read_text())["samples"] == 20


def test_bnn_classifies_digits_with_an_ood_check(tmp_path):
    out = tmp_path / "digits"
    assert main(["train", "bnn", "--preset", "digits", "--no-progress", "--out", str(out), "--epochs", "3",
                 "--prior", "scale-mixture", "--sampling", "weights", "--eval-samples", "10"]) == 0  # fmt: skip
    result = json.loads((out / "eval.json").read_text())
    assert result["bnn"]["accuracy"] > 0.5  # ten classes: chance is 0.1
    assert 0 <= result["bnn"]["ece"] <= 1 and 0 <= result["bnn"]["ood_auc"] <= 1
    assert result["kl"]["method"] == "mc" and result["kl"]["stderr"] > 0
    assert (out / "report" / "reliability.png").exists() and (
        out / "report" / "entropy.png"
    ).exists()


def test_bad_bnn_input_fails_before_training(tmp_path, capsys):
    assert main(["train", "bnn", "--arch", "conv", "--out", str(tmp_path / "a")]) == 2
    assert "conv needs images" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    x = np.ones((20, 3))
    x[4, 2] = np.nan
    np.savez(bad, x=x, y=np.arange(20.0))
    with pytest.raises(DataError, match=r"x\[4, 2\] is nan"):
        load_labelled(bad)
    np.savez(bad, x=np.ones((20, 3)), y=np.arange(19.0))
    with pytest.raises(DataError, match=r"y \(N,\) with N = 20"):
        load_labelled(bad)
    with pytest.raises(ConfigError, match="narrower"):
        BNNConfig(prior="scale-mixture", prior_sigma=0.01, prior_sigma2=0.1)
    assert not (tmp_path / "a").exists()


def test_an_npz_with_integer_labels_is_a_classification(tmp_path):
    path = tmp_path / "pairs.npz"
    g = np.random.default_rng(0)
    np.savez(path, x=g.normal(size=(100, 4)), y=g.integers(0, 3, 100))
    data = load_labelled(path)
    assert (data.task, data.classes, data.input_shape) == ("classification", 3, (4,))
    assert len(data.y_train) + len(data.y_test) == 100
