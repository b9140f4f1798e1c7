"""ELBO, free bits, schedules and IWAE on tensors and on a model."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from elbokit.models import LinearGaussian
from elbokit.objectives import ELBO, IWAE, KLSchedule, make_objective


def test_elbo_from_terms_is_the_textbook_loss():
    recon_ll = torch.tensor([-10.0, -12.0])
    kl_units = torch.tensor([[1.0, 0.5], [2.0, 0.5]])
    out = ELBO(beta=2.0).from_terms(recon_ll, kl_units)
    assert out.loss.item() == pytest.approx(11.0 + 2.0 * 2.0)
    assert out.terms["elbo"].item() == pytest.approx(-11.0 - 2.0)
    assert out.terms["recon"].item() == pytest.approx(11.0) and out.terms[
        "kl"
    ].item() == pytest.approx(2.0)
    assert out.settings["kl_weight"] == 2.0 and "kl_weight" not in out.terms  # a setting


def test_free_bits_per_dim_and_on_the_mean_are_different_things():
    # batch-mean KL per unit: [0.1, 2.0]; lambda = 0.5
    kl_units = torch.tensor([[0.1, 2.0], [0.1, 2.0]], requires_grad=True)
    recon = torch.zeros(2)
    per_dim = ELBO(free_bits=0.5, free_bits_mode="per_dim").from_terms(recon, kl_units)
    mean = ELBO(free_bits=0.5, free_bits_mode="mean").from_terms(recon, kl_units)
    assert per_dim.loss.item() == pytest.approx(0.5 + 2.0)  # sum_i max(0.5, KL_i)
    assert mean.loss.item() == pytest.approx(2.1)  # max(0.5, sum_i KL_i)
    (g_dim,) = torch.autograd.grad(per_dim.loss, kl_units)
    (g_mean,) = torch.autograd.grad(mean.loss, kl_units)
    assert (
        g_dim[:, 0].abs().sum() == 0 and (g_dim[:, 1] > 0).all()
    )  # the collapsed unit is left alone
    assert (g_mean > 0).all()  # on the mean, every unit is still pushed down
    # the logged KL is the true one either way
    assert per_dim.terms["kl"].item() == pytest.approx(2.1) == mean.terms["kl"].item()


def test_free_bits_per_layer_leaves_a_collapsed_layer_alone_and_pushes_the_other():
    # two layers: units [0.1, 0.2] (layer 1: 0.3 nats) and [1.0, 2.0, 0.5] (layer 2: 3.5 nats)
    kl_units = torch.tensor([[0.1, 0.2, 1.0, 2.0, 0.5]] * 3, requires_grad=True)
    out = ELBO(free_bits=1.0, free_bits_mode="per_layer").from_terms(
        torch.zeros(3), kl_units, layers=(2, 3)
    )
    assert out.loss.item() == pytest.approx(1.0 + 3.5)  # sum_l max(1, KL_l)
    (g,) = torch.autograd.grad(out.loss, kl_units)
    assert g[:, :2].abs().sum() == 0 and (g[:, 2:] > 0).all()
    assert out.terms["kl/layer_1"].item() == pytest.approx(0.3)
    assert out.terms["kl/layer_2"].item() == pytest.approx(3.5)
    # one layer: the same as free nats on the total
    one = ELBO(free_bits=5.0, free_bits_mode="per_layer").from_terms(torch.zeros(3), kl_units)
    assert one.loss.item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"layers \[2, 2\] do not add up to the 5"):
        ELBO(free_bits=1.0, free_bits_mode="per_layer").from_terms(
            torch.zeros(3), kl_units, layers=(2, 2)
        )


def test_schedules():
    lin = KLSchedule("linear", warmup=100)
    assert [lin(s) for s in (0, 50, 100, 1000)] == [0.0, 0.5, 1.0, 1.0]
    cyc = KLSchedule("cyclical", total=400, cycles=4, ratio=0.5)  # period 100, rise over 50
    assert [cyc(s) for s in (0, 25, 50, 99, 100, 125)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    assert ELBO(beta=4.0, schedule=lin).kl_weight(25) == 1.0
    with pytest.raises(ValueError, match="warmup >= 1"):
        KLSchedule("linear")
    with pytest.raises(ValueError, match="expected constant, linear or cyclical"):
        KLSchedule("cosine")


def test_iwae_with_one_sample_averages_to_the_closed_form_elbo():
    # IWAE_1 = log p(x|z) + log p(z) - log q(z|x) at one z ~ q: its mean over many draws is the
    # ELBO, here in closed form (E_q log p(x|z) by the model's own formula, the KL analytic)
    model = LinearGaussian(6, 2, generator=torch.Generator().manual_seed(0))
    x = model.sample(8, generator=torch.Generator().manual_seed(1))
    n = 4000
    torch.manual_seed(2)
    with torch.no_grad():
        draws = IWAE(k=1)(model, x.repeat(n, 1)).per_example["iwae"].reshape(n, 8)
        exact = model.expected_log_likelihood(x) - model.latent.kl(model.encode(x))
    stderr = draws.std(0) / math.sqrt(n)
    assert ((draws.mean(0) - exact).abs() <= 4 * stderr).all()
    # and the k = 1 bound with its own sampled KL is the one-sample ELBO, example by example
    torch.manual_seed(3)
    iwae = IWAE(k=1)(model, x)
    torch.manual_seed(3)
    elbo = ELBO(kl_estimator="sampled")(model, x)
    assert elbo.kl_method == "sampled"
    torch.testing.assert_close(iwae.per_example["iwae"], elbo.per_example["elbo"])


def test_a_kl_over_weights_is_scaled_by_one_over_n_per_minibatch():
    # a Bayesian linear regression's ELBO(D) = sum_i E_q log p(y_i | x_i, w) - KL(q(w) || p(w));
    # the minibatch losses of an epoch must average to -ELBO(D) / N, and their gradients to
    # the full-data gradient of -ELBO(D) / N
    g = torch.Generator().manual_seed(0)
    n, d = 12, 3
    x, y = (
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(n, generator=g, dtype=torch.float64),
    )
    mu = torch.randn(d, generator=g, dtype=torch.float64, requires_grad=True)
    log_s = (0.1 * torch.randn(d, generator=g, dtype=torch.float64)).requires_grad_()

    def expected_ll(rows):  # E_q log N(y | x w, 1), closed form for q(w) = N(mu, diag s^2)
        xr, yr = x[rows], y[rows]
        return -0.5 * ((yr - xr @ mu) ** 2 + (xr**2) @ log_s.exp() ** 2) - 0.5 * math.log(
            2 * math.pi
        )

    def kl_w():
        return kl_divergence(Normal(mu, log_s.exp()), Normal(0.0, 1.0)).sum()

    elbo_d = expected_ll(slice(None)).sum() - kl_w()
    (g_full_mu, g_full_s) = torch.autograd.grad(-elbo_d / n, (mu, log_s))
    objective = ELBO()
    losses, grads = [], []
    for rows in torch.arange(n).split(4):
        out = objective.from_global_kl(expected_ll(rows), kl_w(), dataset_size=n)
        losses.append(out.loss)
        grads.append(torch.autograd.grad(out.loss, (mu, log_s)))
        assert out.terms["kl"].item() == pytest.approx(kl_w().item())  # the whole KL, unscaled
        assert out.settings["kl_scale"] == 1 / n
    assert torch.stack(losses).mean().item() == pytest.approx(-elbo_d.item() / n, rel=1e-12)
    torch.testing.assert_close(sum(g[0] for g in grads) / 3, g_full_mu)
    torch.testing.assert_close(sum(g[1] for g in grads) / 3, g_full_s)
    with pytest.raises(ValueError, match="kl a scalar or"):
        objective.from_global_kl(torch.zeros(4), torch.zeros(4, 2), dataset_size=n)


def test_per_unit_terms_and_analytic_method_are_reported():
    # each unit's term against torch's Normal KL of that unit's marginal q(z_i | x) =
    # N(mu_i(x), exp(logvar_i)), averaged over the batch; the linear encoder written out here
    model = LinearGaussian(6, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.enc_s.copy_(torch.tensor([-1.0, 0.3, 0.8], dtype=model.enc_s.dtype))
    x = model.sample(4)
    out = ELBO(per_unit=True)(model, x)
    assert out.kl_method == "analytic"
    with torch.no_grad():
        mu = (x - model.b) @ model.enc_A.T + model.enc_c  # (4, 3)
        std = (0.5 * model.enc_s).exp().expand_as(mu)
        ref = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).mean(0)
    for i in range(3):
        assert out.terms[f"kl/dim_{i}"].item() == pytest.approx(ref[i].item(), rel=1e-9)
    assert out.terms["kl"].item() == pytest.approx(ref.sum().item(), rel=1e-9)


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="beta must be finite and >= 0, got -1"):
        ELBO(beta=-1.0)
    with pytest.raises(ValueError, match="free_bits_mode='dims'"):
        ELBO(free_bits_mode="dims")
    with pytest.raises(
        ValueError,
        match=r"recon_ll must be \(B,\) and kl_units \(B, units\); got \(3,\) and \(4, 2\)",
    ):
        ELBO().from_terms(torch.zeros(3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="k >= 1"):
        IWAE(k=0)
    with pytest.raises(ValueError, match="unknown objective 'vi'"):
        make_objective("vi")
    assert math.isclose(make_objective("elbo", beta=0.5).beta, 0.5)
