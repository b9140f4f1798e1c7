"""The diffusion model's variational bound (elbokit.models.diffusion) against independent
references: the schedule's L_T by hand in float64, the posterior by direct Gaussian conditioning,
the epsilon form of L_(t-1) against its KL form, the discretized Gaussian against scipy's normal
CDF, the bound against the exact entropy of a small discrete distribution (with the Bayes-optimal
denoiser, computed in closed form, and with a trained one), and the bound over every t against
its Monte Carlo estimate over t. Then the ``diffusion`` kind of run end to end."""

import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from elbokit.config import ConfigError
from elbokit.data import toys2d
from elbokit.likelihoods import discretized_gaussian_log_prob
from elbokit.models.diffusion import Diffusion, DiffusionConfig, Schedule, make_betas
from elbokit.models.diffusion_toy import GRID, BayesOptimalDenoiser, H, P
from references import assert_same_checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")


def test_L_T_of_the_linear_schedule_is_below_1e_4_bits_per_dim_against_the_closed_form():
    betas = np.linspace(1e-4, 0.02, 1000)  # Ho et al.'s schedule, by hand
    abar = np.prod(1 - betas)
    x = np.linspace(-1, 1, 17)[None].repeat(3, 0)  # images in [-1, 1], the extremes included
    # KL(N(sqrt(abar) x, 1 - abar) || N(0, 1)) per pixel, float64
    by_hand = 0.5 * (abar * x**2 + (1 - abar) - 1 - np.log(1 - abar))
    model = Diffusion(DiffusionConfig(net="mlp", channels=8, data_shape=(17,)))
    got = model.prior_term(torch.tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(got, by_hand.sum(1), rtol=1e-6, atol=1e-12)
    bits_per_dim = by_hand.sum(1) / (17 * math.log(2))
    assert (bits_per_dim < 1e-4).all() and (bits_per_dim > 0).all()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_the_posterior_is_the_direct_conditioning_of_the_joint(schedule):
    sch = Schedule(make_betas(schedule, 200)).float64
    b = make_betas(schedule, 200)
    x0, xt = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-0.8, dtype=torch.float64)
    for t in (2, 3, 50, 137, 200):
        abar_prev = torch.prod(1 - b[: t - 1])  # by hand, not from the schedule
        alpha = 1 - b[t - 1]
        # (x_{t-1}, x_t) | x_0: x_{t-1} ~ N(sqrt(abar_prev) x0, 1 - abar_prev), x_t = sqrt(alpha)
        # x_{t-1} + sqrt(beta) e; condition x_{t-1} on x_t
        m1, v1 = abar_prev.sqrt() * x0, 1 - abar_prev
        m2, v2 = alpha.sqrt() * m1, alpha * v1 + b[t - 1]
        cov = alpha.sqrt() * v1
        mean = m1 + cov / v2 * (xt - m2)
        var = v1 - cov**2 / v2
        got_mean = sch["post_c0"][t - 1] * x0 + sch["post_ct"][t - 1] * xt
        assert got_mean.item() == pytest.approx(mean.item(), rel=1e-10, abs=1e-12)
        assert sch["post_var"][t - 1].item() == pytest.approx(var.item(), rel=1e-10)
        assert sch["log_post_var"][t - 1].exp().item() == pytest.approx(var.item(), rel=1e-10)
    assert sch["post_var"][0] == 0  # t = 1: x_0 is given


class _Fixed(nn.Module):
    """A 'network' whose output is given (for comparing two forms of one term)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, t):
        return self.out


@pytest.mark.parametrize("variance", ["fixed-large", "fixed-small"])
def test_the_epsilon_form_of_L_t_equals_the_kl_form(variance):
    torch.manual_seed(0)
    cfg = DiffusionConfig(net="mlp", channels=8, data_shape=(5,), variance=variance, steps=100)
    model = Diffusion(cfg).double()
    sch = model.schedule.float64
    x0 = torch.rand(6, 5, dtype=torch.float64) * 2 - 1
    noise = torch.randn(6, 5, dtype=torch.float64)
    eps_hat = torch.randn(6, 5, dtype=torch.float64)
    model.net = _Fixed(eps_hat)
    for ts in (2, 7, 50, 100):
        t = torch.full((6,), ts)
        kl_form = model.terms(x0, t, noise)["vlb"]
        beta, abar = sch["betas"][ts - 1], sch["abar"][ts - 1]
        var_p = beta if variance == "fixed-large" else sch["post_var"][ts - 1]
        ratio = sch["post_var"][ts - 1] / var_p
        eps_form = (
            beta**2 / (2 * var_p * (1 - beta) * (1 - abar)) * (noise - eps_hat).square().sum(1)
        )
        eps_form = eps_form + 5 * 0.5 * (ratio - 1 - ratio.log())
        torch.testing.assert_close(kl_form, eps_form, rtol=1e-9, atol=1e-9)


def test_the_compiled_bound_takes_the_decoder_term_where_t_is_1_as_eager_does():
    # a compiled step computes L_0 for every image and keeps it where t = 1 (no branch on the
    # data); traced by Dynamo without building kernels, it must give eager's terms and gradient
    torch.manual_seed(0)
    cfg = DiffusionConfig(net="mlp", channels=8, data_shape=(5,), steps=100, discrete=True)
    model = Diffusion(cfg)
    x0 = torch.randint(0, 256, (8, 5)).float() / 127.5 - 1
    t = torch.tensor([1, 2, 1, 50, 100, 1, 7, 1])
    noise = torch.randn(8, 5)
    traced = torch.compile(lambda x: model.terms(x, t, noise)["vlb"], backend="aot_eager")
    x_eager, x_traced = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    eager = model.terms(x_eager, t, noise)["vlb"]
    compiled = traced(x_traced)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-6)
    shifted = model.terms(x0, torch.where(t == 1, 2, t), noise)["vlb"]
    assert not torch.allclose(eager[t == 1], shifted[t == 1])  # L_0 is not L_1
    eager.sum().backward()
    compiled.sum().backward()
    torch.testing.assert_close(x_traced.grad, x_eager.grad, rtol=1e-5, atol=1e-6)


def test_the_discretized_gaussian_against_scipy_and_summing_to_one():
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    for mean, log_scale in ((0.13, -3.0), (-0.99, -6.0), (0.5, 0.5), (3.0, -2.0), (-1.0, -9.0)):
        lp = discretized_gaussian_log_prob(levels, torch.tensor(mean, dtype=torch.float64),
                                           torch.tensor(log_scale, dtype=torch.float64))  # fmt: skip
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
        s, v = math.exp(log_scale), levels.numpy()
        hi = np.where(v > 1 - 1 / 255, np.inf, v + 1 / 255)
        lo = np.where(v < -1 + 1 / 255, -np.inf, v - 1 / 255)
        # right of the mean, through the survival function (no cancellation of two near-1 CDFs)
        mass = np.where(lo > mean, norm.sf(lo, mean, s) - norm.sf(hi, mean, s),
                        norm.cdf(hi, mean, s) - norm.cdf(lo, mean, s))  # fmt: skip
        ok = mass > 1e-300
        np.testing.assert_allclose(lp.numpy()[ok], np.log(mass[ok]), rtol=1e-7, atol=1e-10)
    # far in a tail, where the difference of CDFs underflows, the log mass stays finite
    far = discretized_gaussian_log_prob(torch.tensor([0.0]), torch.tensor(0.9), torch.tensor(-7.0))
    assert torch.isfinite(far).all() and far.item() < -1e4


def _expected_bound(model, reps=10):
    """E_data[L(x)] over the 16 points with their probabilities, and its standard error over
    ``reps`` independent evaluations (the noise x_t ~ q is drawn anew each time)."""
    g = torch.Generator().manual_seed(1)
    totals = []
    for _ in range(reps):
        prior, per_t = model.bound(GRID.float(), generator=g, batch=100_000)
        totals.append((P * (prior.double() + per_t.double().sum(1))).sum())
    totals = torch.stack(totals)
    return totals.mean().item(), (totals.std() / math.sqrt(reps)).item()


def _toy(steps, variance="fixed-small", **kw):
    cfg = DiffusionConfig(net="mlp", channels=64, blocks=2, data_shape=(2,), levels=4,
                          steps=steps, variance=variance, **kw)  # fmt: skip
    return Diffusion(cfg)


def test_with_the_bayes_optimal_denoiser_the_bound_approaches_the_entropy_from_above():
    gaps = {}
    for steps in (100, 1000):
        model = _toy(steps)
        model.net = BayesOptimalDenoiser(model.schedule)
        bound, se = _expected_bound(model)
        assert bound >= H - 3 * se  # an upper bound on the entropy, in expectation
        gaps[steps] = bound - H
    assert gaps[1000] < 0.15 < gaps[100]  # nats; measured 0.043 +- 0.025 and 0.47 +- 0.14


def test_a_trained_denoiser_gives_a_bound_above_the_entropy_that_falls_with_training():
    torch.manual_seed(0)
    model = _toy(100, variance="learned", loss="hybrid")
    before, _ = _expected_bound(model, reps=4)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        idx = torch.multinomial(P, 256, replacement=True, generator=g)
        loss, _ = model.loss(GRID[idx].float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, se = _expected_bound(model, reps=4)
    assert after >= H - 3 * se
    assert after < H + 0.5 * (before - H)  # more than half the gap closed in 400 steps


class _MixtureOptimal(nn.Module):
    """For eight-gaussians, an equal mixture of N(mu_k, s^2 I): eps_hat(x_t, t) from E[x_0 | x_t]
    in closed form (x_t | k ~ N(a mu_k, (a^2 s^2 + b^2) I), E[x_0 | x_t, k] = mu_k +
    a s^2 (x_t - a mu_k) / (a^2 s^2 + b^2)), and v = 1: sigma_t^2 = beta_t at every t."""

    def __init__(self, schedule: Schedule):
        super().__init__()
        self.sch = schedule.float64
        self.mu = toys2d._eight_centres()

    def forward(self, x, t):
        a, b = self.sch["sqrt_abar"][t - 1][:, None], self.sch["sqrt_1m_abar"][t - 1][:, None]
        x, s2 = x.double(), toys2d.EIGHT_SD**2
        var = a**2 * s2 + b**2
        diff = x[:, None] - a[:, None] * self.mu[None]  # (B, 8, 2)
        r = torch.softmax(-diff.square().sum(-1) / (2 * var), -1)
        x0 = (r[..., None] * (self.mu[None] + (a * s2 / var)[:, None] * diff)).sum(1)
        eps = (x - a * x0) / b
        return torch.cat([eps, torch.ones_like(eps)], 1).float()


def test_eight_gaussians_density_integrates_to_one_and_the_optimal_bound_meets_it_from_above():
    # the exact density of the toy, against numerical integration over a grid
    h = 0.01
    g = torch.arange(-3.5, 3.5, h, dtype=torch.float64) + h / 2
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    mass = toys2d.toy_log_prob("eight-gaussians", grid).exp().sum().item() * h * h
    assert mass == pytest.approx(1.0, abs=1e-6)
    data = toys2d.load_toy("eight-gaussians", seed=0)
    assert toys2d.load_toy("eight-gaussians", seed=0).test.equal(data.test)
    # the bound of the Bayes-optimal mean, a continuous L_0: above -log p(x) on average, and close
    model = Diffusion(DiffusionConfig(net="mlp", channels=8, blocks=1, data_shape=(2,), steps=1000,
                                      discrete=False, variance="learned", loss="vlb"))  # fmt: skip
    model.net = _MixtureOptimal(model.schedule)
    x = data.test
    prior, per_t = model.bound(x, generator=torch.Generator().manual_seed(0), batch=4096)
    gap = prior.double() + per_t.double().sum(1) + toys2d.toy_log_prob("eight-gaussians", x)
    se = gap.std().item() / math.sqrt(len(gap))
    assert -3 * se <= gap.mean().item() < 0.2, (gap.mean(), se)  # measured 0.083 +- 0.031 nats


def test_the_bound_over_every_t_is_the_mean_of_its_monte_carlo_estimate():
    torch.manual_seed(0)
    model = _toy(20, variance="fixed-large")  # an untrained net: every term is large
    x = GRID[[0, 5, 10, 15]].float()
    g = torch.Generator().manual_seed(3)
    exact = torch.stack([sum(m.double() if m.dim() == 1 else m.double().sum(1)
                             for m in model.bound(x, generator=g)) for _ in range(30)])  # fmt: skip
    exact_mean, exact_se = exact.mean(0), exact.std(0) / math.sqrt(30)
    est, se = model.bound_estimate(x, 4000, generator=g)
    z = (est.double() - exact_mean) / (se.double().square() + exact_se.square()).sqrt()
    assert z.abs().max() < 4, z


def test_clipping_the_predicted_x0_never_raises_a_term_of_the_bound():
    # each L_(t-1), t >= 2, is sum_d post_c0^2 (x0 - x0_hat)^2 / (2 sigma^2) plus terms free of
    # x0_hat; clipping x0_hat to [-1, 1] moves it toward any x0 in [-1, 1], coordinate by
    # coordinate, so no term can rise; L_0 (t = 1) is left as it was
    torch.manual_seed(0)
    model = _toy(100, variance="learned", loss="vlb")
    x0 = GRID[torch.randint(0, 16, (400,))].float()
    t = torch.arange(400) % 100 + 1
    noise = torch.randn_like(x0)
    with torch.no_grad():
        free = model.terms(x0, t, noise)["vlb"]
        model.cfg = dataclasses.replace(model.cfg, clip_x0=True)
        clipped = model.terms(x0, t, noise)["vlb"]
    assert torch.equal(clipped[t == 1], free[t == 1])
    assert (clipped[t > 1] <= free[t > 1] + 1e-5).all()
    assert (clipped[t > 1] < free[t > 1] - 1e-3).any()  # an untrained net's x0_hat goes outside


def test_config_errors_name_the_bad_choice():
    with pytest.raises(ConfigError, match="learned with loss = simple"):
        DiffusionConfig(variance="learned", loss="simple")
    with pytest.raises(ConfigError, match="at least 2"):
        make_betas("linear", 1)
    with pytest.raises(ConfigError, match="needs images"):
        Diffusion(DiffusionConfig(net="unet", data_shape=(5,)))


# ----------------------------------------------------------------------- the diffusion kind


def test_train_diffusion_debug_evaluates_the_bound_and_reports(tmp_path, capsys):
    from elbokit import recipes
    from elbokit.cli import main

    out = tmp_path / "run"
    assert (
        main(["train", "diffusion", "--preset", "debug", "--no-progress", "--out", str(out)]) == 0
    )
    # the training loss's estimate of the bound is printed in its unit when the run ends
    assert re.search(r"done in .*test/bound \S+ bits/dim", capsys.readouterr().out)
    r = json.loads((out / "eval.json").read_text())
    assert r["steps"] == 50 and r["examples"] == 20 and r["clip_x0"] is False
    total = r["L_T"] + r["L_0"] + r["L_middle"]
    assert total == pytest.approx(r["bound_nats"], rel=1e-9)
    assert r["bits_per_dim"] == pytest.approx(r["bound_nats"] / (64 * math.log(2)), rel=1e-12)
    assert 0 < r["bits_per_dim"] < 8.5  # above zero (discrete data) and near or below uniform
    for png in ("samples.png", "chain.png", "curves.png", "bound_by_t.png"):
        assert (out / "report" / png).stat().st_size > 3_000
    # the Monte Carlo estimate over t agrees with the bound over every t within its error
    run = recipes.open_run(out)
    mc = recipes.get_recipe("diffusion").eval_options(limit=20, mc=400, exact=True)
    res = run.recipe.evaluate(run, mc, say=lambda *a: None)
    z = (res["mc_bits_per_dim"] - res["bits_per_dim"]) / math.hypot(
        res["mc_bits_per_dim_stderr"], res["bits_per_dim_stderr"])  # fmt: skip
    assert abs(z) < 4
    # the same noise with x_0 clipped at t >= 2: no larger, and recorded; the report samples so
    clip = recipes.get_recipe("diffusion").eval_options(limit=20, clip_x0="on")
    res_clip = run.recipe.evaluate(run, clip, say=lambda *a: None)
    assert res_clip["clip_x0"] is True and res_clip["L_0"] == pytest.approx(res["L_0"], rel=1e-6)
    assert res_clip["bound_nats"] <= res["bound_nats"] + 1e-6
    # the U-Net compiled for the bound (20 images x 50 t in chunks of 256: the last one padded)
    # gives eager's terms to float rounding; auto leaves it eager (measured no faster on a CPU),
    # and says why
    lines = []
    on = recipes.get_recipe("diffusion").eval_options(limit=20, compile="on")
    res_on = run.recipe.evaluate(run, on, say=lines.append)
    assert res_on["compile"] == "on" and res["compile"] == "off"
    assert "the compiled bound measured 0.95x eager's speed on cpu, under the 1.1x" in " ".join(
        run.recipe.measure(run, recipes.get_recipe("diffusion").eval_options(limit=20))[1]
    )
    np.testing.assert_allclose(res_on["per_image"]["bits_per_dim"],
                               res["per_image"]["bits_per_dim"], rtol=0, atol=2e-5)  # fmt: skip
    # and through the Python API: the same bound, compiled or not, for the same seed
    import elbokit

    m = elbokit.load(out)
    x = m.run.data().test[:7]  # 7 x 50 rows: one chunk of 256 and a padded one
    eager_b, compiled_b = m.bound(x, seed=3), m.bound(x, seed=3, compile=True)
    torch.testing.assert_close(compiled_b["L_t"], eager_b["L_t"], rtol=1e-4, atol=1e-4)


def test_train_diffusion_refuses_binarized_images_and_resumes_exactly(tmp_path):
    from elbokit import recipes

    kind = recipes.get_recipe("diffusion")
    quiet = lambda *a: None  # noqa: E731
    with pytest.raises(ConfigError, match="binarized"):
        recipes.train(kind, kind.preset("debug", {"data": {"binarize": "static"}}),
                      out=tmp_path / "bad", say=quiet)  # fmt: skip
    cfg = kind.preset("debug", {"train": {"progress": False, "checkpoint_every": 7},
                                "evaluate": {"limit": -1}})  # fmt: skip
    a = recipes.train(kind, cfg, out=tmp_path / "a", say=quiet)
    b = recipes.train(kind, cfg, out=tmp_path / "b", stop_at=15, say=quiet)
    recipes.train(kind, resume=b, say=quiet)
    assert_same_checkpoints(a, b, ("model",))


def test_train_diffusion_on_2d_points_reports_nats_and_the_exact_nll(tmp_path, capsys):
    from elbokit import recipes
    from elbokit.cli import main

    kind = recipes.get_recipe("diffusion")
    quiet = lambda *a: None  # noqa: E731
    with pytest.raises(ConfigError, match="--preset toy"):  # points need the MLP and a density
        recipes.train(kind, kind.preset("default", {"data": {"source": "moons"}}),
                      out=tmp_path / "bad", say=quiet)  # fmt: skip
    with pytest.raises(ConfigError, match="discrete = true for images"):
        recipes.train(kind, kind.preset("debug", {"model": {"discrete": False}}),
                      out=tmp_path / "bad2", say=quiet)  # fmt: skip
    out = tmp_path / "toy"
    args = ["train", "diffusion", "--preset", "toy", "--data", "eight-gaussians", "--epochs", "3",
            "--eval-images", "300", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert re.search(r"done in .*test/bound \S+ nats/point", capsys.readouterr().out)
    r = json.loads((out / "eval.json").read_text())
    assert r["unit"] == "nats/point" and "bits_per_dim" not in r and r["examples"] == 300
    assert r["L_T"] + r["L_0"] + r["L_middle"] == pytest.approx(r["nats_per_point"], rel=1e-9)
    data = toys2d.load_toy("eight-gaussians", seed=0)
    nll = -toys2d.toy_log_prob("eight-gaussians", data.test[:300])
    assert r["true_nll_nats"] == pytest.approx(nll.mean().item(), rel=1e-9)
    assert r["gap_nats"] == pytest.approx(r["nats_per_point"] - r["true_nll_nats"], rel=1e-6)
    assert r["gap_nats"] > -3 * r["gap_nats_stderr"]  # a bound, above the exact NLL on average
    for png in ("samples.png", "chain.png", "curves.png", "bound_by_t.png"):
        assert (out / "report" / png).stat().st_size > 3_000
    run = recipes.open_run(out)
    with pytest.raises(ConfigError, match="2-D points"):
        run.recipe.evaluate(run, kind.eval_options(vae=str(out)), say=quiet)
