"""The bnn kind's methods for the UCI table, each against something independent: empirical Bayes
against a numerical minimum over the prior variance, DVI's moments against Monte Carlo over the
weights, Gal's log-likelihood against his formula in the target's units, the mixture's central
intervals against scipy's quantiles; and a run of every method on a folder of the benchmark's
layout, its grid chosen on the validation part, its report with the calibration figure."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

import elbokit
from elbokit.cli import main
from elbokit.config import ConfigError
from elbokit.data.labelled import load_labelled
from elbokit.evaluate.predictive import central_coverage, regression_metrics
from elbokit.models.bnn import BNNConfig, WeightPrior, kl_to_prior, network
from elbokit.models.bnn_methods import DVIPredictor, GalDropout, Members, relu_moments
from test_uci import _folder


def _kl_at(mu, sigma, v):
    """sum_j KL(N(mu_j, sigma_j^2) || N(0, v)), numpy."""
    return float(np.sum(0.5 * np.log(v / sigma**2) + (sigma**2 + mu**2) / (2 * v) - 0.5))


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 0.0), (1.0, 10.0), (3.0, 0.5)])
def test_empirical_bayes_kl_is_the_minimum_over_the_prior_variance(alpha, beta):
    torch.manual_seed(0)
    net = network(BNNConfig(hidden=(7,), init_sigma=0.3), (3,), 1, "bayes")
    prior = WeightPrior("gaussian", empirical=True, alpha=alpha, beta=beta)
    ours, method = kl_to_prior(net, prior)
    ours = ours.detach()
    assert method == "analytic"
    total = 0.0
    for layer in net:
        if not hasattr(layer, "moments"):
            continue
        for mu, sigma in layer.moments():
            mu, sigma = (
                mu.detach().double().numpy().ravel(),
                sigma.detach().double().numpy().ravel(),
            )

            def objective(log_v, mu=mu, sigma=sigma):
                v = math.exp(log_v)
                hyper = 0.0 if alpha == 0 else stats.invgamma.logpdf(v, alpha, scale=beta)
                return _kl_at(mu, sigma, v) - hyper

            best = optimize.minimize_scalar(objective, bounds=(-20, 10), method="bounded",
                                            options={"xatol": 1e-10})  # fmt: skip
            total += best.fun
    assert float(ours) == pytest.approx(total, rel=1e-6, abs=1e-6)


def test_relu_moments_against_quadrature():
    for m, v in [(0.3, 2.0), (-2.5, 0.4), (4.0, 1.0), (0.0, 1e-4)]:
        first = stats.norm.expect(lambda h: max(h, 0.0), loc=m, scale=math.sqrt(v))
        second = stats.norm.expect(lambda h: max(h, 0.0) ** 2, loc=m, scale=math.sqrt(v))
        e, var = relu_moments(
            torch.tensor(m, dtype=torch.float64), torch.tensor(v, dtype=torch.float64)
        )
        assert float(e) == pytest.approx(first, abs=1e-7)
        assert float(var) == pytest.approx(second - first**2, abs=1e-7)


def test_dvi_moments_and_expected_log_likelihood_against_monte_carlo_over_weights():
    torch.manual_seed(1)
    dvi = DVIPredictor(BNNConfig(hidden=(16,), init_sigma=0.2, sampling="weights"), (3,)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(4, dtype=torch.float64)
    with torch.no_grad():
        mean, var = dvi.moments(x)
        ell = dvi.expected_log_likelihood(x, y)
        draws = torch.stack([dvi(x) for _ in range(40_000)])  # one weight draw per forward pass
    n = draws.shape[0]
    # the first layer's pre-activations are exactly Gaussian; after one ReLU the outputs are
    # not, but their mean and variance are still the propagated ones (layer inputs independent
    # of the next layer's weights)
    mc_mean, mc_var = draws.mean(0), draws.var(0)
    se_mean = (mc_var / n).sqrt()
    assert ((mean - mc_mean).abs() < 4 * se_mean).all()
    se_var = (((draws - mc_mean) ** 2).var(0) / n).sqrt()
    assert ((var - mc_var).abs() < 4 * se_var + 1e-3 * mc_var).all()
    # E[log N(y; m, e^l)] with m and l drawn jointly: the closed form treats them as independent,
    # exact here up to their correlation, which a hidden layer of 16 keeps small
    lp = -0.5 * (
        math.log(2 * math.pi) + draws[..., 1] + (y - draws[..., 0]) ** 2 * (-draws[..., 1]).exp()
    )
    se = lp.std(0) / math.sqrt(n)
    assert ((ell - lp.mean(0)).abs() < 4 * se + 0.01 * lp.mean(0).abs()).all()


def test_members_are_independent_networks_batched():
    torch.manual_seed(2)
    members = Members(3, 4, (5,), 2)
    x = torch.randn(6, 4)
    out = members(x)
    for g in range(3):
        h = torch.relu(x @ members.weights[0][g] + members.biases[0][g])
        ref = h @ members.weights[1][g] + members.biases[1][g]
        assert torch.allclose(out[g], ref, atol=1e-6)
    out[1].sum().backward()  # member 1's output depends on member 1's weights only
    assert (
        members.weights[0].grad[[0, 2]].abs().max() == 0
        and members.weights[0].grad[1].abs().max() > 0
    )


def test_gals_log_likelihood_in_the_targets_units():
    """Gal's experiment code: ll = logsumexp(-tau/2 (y - yhat)^2) - log T - log(2 pi)/2 + log(tau)/2
    with yhat and y in the target's units; ours works in standardized units."""
    rng = np.random.default_rng(3)
    y_mean, y_std, tau, t = 5.0, 3.0, 0.4, 50
    y = rng.normal(y_mean, y_std, size=20)
    yhat = y + rng.normal(0, 2.0, size=(t, 20))
    gal = (np.log(np.exp(-0.5 * tau * (y - yhat) ** 2).sum(0)) - np.log(t)
           - 0.5 * np.log(2 * np.pi) + 0.5 * np.log(tau)).mean()  # fmt: skip
    means = torch.tensor((yhat - y_mean) / y_std)
    ours = regression_metrics(
        means, 1 / (math.sqrt(tau) * y_std), torch.tensor((y - y_mean) / y_std), y_std
    )
    assert ours["log_likelihood"] == pytest.approx(gal, rel=1e-10)
    assert ours["rmse"] == pytest.approx(np.sqrt(((yhat.mean(0) - y) ** 2).mean()), rel=1e-10)


def test_gal_dropout_weight_decay_is_his_formula():
    cfg = BNNConfig(hidden=(8,), dropout_rates=(0.01, 0.1), dropout_tau=(0.5, 2.0))
    net = GalDropout(cfg, (3,), cfg.gal_grid(), n_train=100, y_std=2.0)
    for (p, tau), decay, sd in zip(net.grid, net.decay, net.sds, strict=True):
        assert float(decay) == pytest.approx(1e-4 * (1 - p) / (2 * 100 * tau), rel=1e-6)
        assert float(sd) == pytest.approx(1 / (math.sqrt(tau) * 2.0), rel=1e-6)


def test_central_intervals_of_a_mixture_against_scipy():
    rng = np.random.default_rng(4)
    means = torch.tensor(rng.normal(size=(1, 4000)))
    sds = torch.tensor(rng.uniform(0.5, 2.0, size=(1, 4000)))
    y = means[0] + sds[0] * torch.tensor(rng.normal(size=4000))
    levels = (0.2, 0.5, 0.9)
    ours = central_coverage(means, sds, y, levels)
    for (_, cover), c in zip(ours, levels, strict=True):
        z = stats.norm.ppf(0.5 + c / 2)
        direct = float(((y - means[0]).abs() <= z * sds[0]).double().mean())
        assert cover == pytest.approx(direct, abs=1e-12)
        assert abs(cover - c) < 4 * math.sqrt(c * (1 - c) / 4000)  # calibrated by construction
    # a two-component mixture: the interval of the mixture, not of either component
    m2, s2 = torch.tensor([[-3.0], [3.0]]), torch.tensor([[1.0], [1.0]])
    mix = stats.norm(-3, 1), stats.norm(3, 1)
    for yv in (0.0, 2.0, 4.5):
        cdf = 0.5 * (mix[0].cdf(yv) + mix[1].cdf(yv))
        ((_, inside),) = central_coverage(m2, s2, torch.tensor([yv]), (0.5,))
        assert inside == float(abs(cdf - 0.5) <= 0.25)


def test_the_validation_part_is_the_training_splits_last_rows(tmp_path):
    folder = _folder(tmp_path / "toy", rows=60)
    full = load_labelled(str(folder), split=0)
    d = load_labelled(str(folder), split=0, validation=0.2)
    assert len(d.y_train) == 36 and len(d.y_val) == 9 and len(d.y_test) == len(full.y_test)
    raw_full = full.y_train.double() * full.y_std + full.y_mean
    raw_val = d.y_val.double() * d.y_std + d.y_mean
    assert torch.allclose(raw_val, raw_full[36:], atol=1e-4)
    assert d.y_train.double().mean().abs() < 1e-5  # standardized by the 80% part


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--methods", "bnn", "bnn"], "each method once"),
        (["--dropout-rates", "0.1"], "without dropout_tau"),
        (["--methods", "dvi", "--arch", "conv"], "dvi propagates moments"),
        (["--methods", "det", "--no-baselines"], "leaves no network"),
        (["--prior-variance", "empirical-bayes", "--eb-alpha", "0"], "both positive"),
    ],
)
def test_bad_method_settings_are_one_line_before_training(tmp_path, capsys, args, said):
    assert main(["train", "bnn", "--preset", "debug", "--out", str(tmp_path / "r"), *args]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_ensemble_refuses_classes(tmp_path):
    with pytest.raises(ConfigError, match="for regression"):
        from elbokit.recipes.bnn import BNNLearner, BNNRunConfig

        BNNLearner(BNNRunConfig(model=BNNConfig(methods=("bnn", "ensemble"))),
                   load_labelled("digits"))  # fmt: skip


def test_every_method_on_a_folder_with_gals_grid_chosen_on_validation(tmp_path):
    folder = _folder(tmp_path / "toy", rows=200, splits=1)
    out = tmp_path / "run"
    main(["train", "bnn", "--data", str(folder), "--methods", "bnn", "dvi", "dropout", "ensemble",
          "--dropout-rates", "0.01", "0.1", "--dropout-tau", "10", "100", "--validation", "0.2",
          "--epochs", "60", "--batch-size", "32", "--eval-every", "60", "--lr", "0.01",
          "--no-progress", "--out", str(out), "--eval-samples", "50"])  # fmt: skip
    r = json.loads((out / "eval.json").read_text())
    grid = r["dropout"]["grid"]
    best = max(grid, key=lambda g: g["val_log_likelihood"])
    assert (r["dropout"]["rate"], r["dropout"]["tau"]) == (best["rate"], best["tau"])
    for name in ("bnn", "dvi", "dropout", "ensemble"):
        assert r[name]["rmse"] < 1.0, name  # the targets' sd is about 5
        levels, cover = zip(*r[name]["calibration"], strict=True)
        assert levels[0] == 0.1 and levels[-1] == 0.9 and all(0 <= c <= 1 for c in cover)
    assert r["ensemble"]["log_likelihood"] > -0.5 * math.log(
        2 * math.pi * 5.0**2
    )  # beats a constant
    assert (out / "report" / "calibration.png").exists() and (
        out / "report" / "residuals.png"
    ).exists()
    loaded = elbokit.load(out)
    x = np.loadtxt(folder / "data.txt")[:5, :3]
    p = loaded.predict(x, net="dropout", samples=20)
    assert p.mean.shape == (5,) and (p.aleatoric > 0).all()
    assert float(p.aleatoric[0]) == pytest.approx(1 / math.sqrt(r["dropout"]["tau"]), rel=1e-6)


def test_the_ensemble_stops_after_its_epochs(tmp_path):
    """--ensemble-epochs 1 in a 3-epoch run leaves the ensemble as a 1-epoch run leaves it (its
    steps use no randomness; the batches of epoch 0 are the same)."""
    folder = _folder(tmp_path / "toy", rows=80, splits=1)
    common = ["train", "bnn", "--data", str(folder), "--methods", "bnn", "ensemble",
              "--batch-size", "16", "--eval-samples", "0", "--no-progress"]  # fmt: skip
    assert (
        main([*common, "--epochs", "3", "--ensemble-epochs", "1", "--out", str(tmp_path / "a")])
        == 0
    )
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    a = elbokit.load(tmp_path / "a").modules["ensemble"].state_dict()
    b = elbokit.load(tmp_path / "b").modules["ensemble"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = elbokit.load(tmp_path / "a").modules["bnn"].state_dict()
    d = elbokit.load(tmp_path / "b").modules["bnn"].state_dict()
    assert not all(torch.equal(c[k], d[k]) for k in c)  # the others went on


def test_empirical_bayes_without_a_hyperprior_collapses_the_digits_net_and_with_one_does_not(
    tmp_path,
):
    """The optimal prior variance follows the weights down (v = mean(mu^2 + sigma^2)): shrinking
    every weight shrinks v and strengthens the pull to zero, and the digits net ends a constant
    function at a KL near zero; DVI's IG(1, 10) hyperprior keeps v from following."""
    accuracy = {}
    for name, hyper in (("none", ["--eb-alpha", "0", "--eb-beta", "0"]), ("ig", [])):
        out = tmp_path / name
        assert main(["train", "bnn", "--preset", "digits", "--epochs", "40", "--no-baselines",
                     "--prior-variance", "empirical-bayes", *hyper, "--eval-samples", "20",
                     "--no-progress", "--out", str(out)]) == 0  # fmt: skip
        r = json.loads((out / "eval.json").read_text())
        accuracy[name] = (r["bnn"]["accuracy"], r["kl"]["value"])
    assert accuracy["none"][0] < 0.3 and accuracy["none"][1] < 50  # chance, KL ~ 0: collapsed
    assert accuracy["ig"][0] > 0.85
