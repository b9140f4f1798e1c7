"""The hierarchical VAE against exact answers: each layer's KL against torch.distributions, and on
a linear-Gaussian hierarchy (z_2 -> z_1 -> x all linear with fixed variances, whose marginal p(x)
is Gaussian) the importance-sampled log p(x), Havtorn's L^{>1} weights and the ELBO against the
exact log-density, for both inference paths."""

import json
import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from elbokit.cli import main
from elbokit.evaluate import importance_log_likelihood
from elbokit.models.hvae import HierarchicalVAE, gaussian_kl
from elbokit.models.vae import VAEConfig
from elbokit.objectives import ELBO


def test_layer_kl_is_torchs_closed_form():
    g = torch.Generator().manual_seed(0)
    mq, mp = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    vq, vp = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    ours = gaussian_kl(mq, vq, mp, vp)
    ref = kl_divergence(Normal(mq, (0.5 * vq).exp()), Normal(mp, (0.5 * vp).exp()))
    assert torch.allclose(ours, ref, atol=1e-6)


def _linear_hierarchy(inference: str):
    """x (1, 2, 2) | z_1 (3) | z_2 (2), the generative path linear with constant variances."""
    torch.manual_seed(1)
    cfg = VAEConfig(data_shape=(1, 2, 2), likelihood="gaussian", hidden=(16,), layers=2,
                    latent_dims=(3, 2), inference=inference)  # fmt: skip
    model = HierarchicalVAE(cfg).double()
    a = nn.Linear(2, 6).double()  # p(z_1 | z_2): mean A z_2 + a, log variance constant
    with torch.no_grad():
        a.weight[3:] = 0
        a.bias[3:] = torch.tensor([-1.0, -0.5, 0.3])
    model.priors[0] = a
    model.decoder = nn.Linear(3, 4).double()
    A, ab, lv = a.weight[:3].detach(), a.bias[:3].detach(), a.bias[3:].detach()
    B, b = model.decoder.weight.detach(), model.decoder.bias.detach()
    cov = B @ (A @ A.T + torch.diag(lv.exp())) @ B.T + torch.eye(4, dtype=torch.float64)
    exact = MultivariateNormal(b + B @ ab, cov)
    return model, exact


@pytest.mark.parametrize("inference", ["top-down", "bottom-up"])
def test_hierarchical_bounds_against_the_exact_marginal(inference):
    model, exact = _linear_hierarchy(inference)
    x = exact.sample((6,)).reshape(6, 1, 2, 2)
    truth = exact.log_prob(x.reshape(6, 4))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        ll = importance_log_likelihood(model, x, 4000, generator=g)
        err = (ll.value.double() - truth).abs()
        assert (err < 5 * ll.stderr.double() + 0.02).all(), (ll.value, truth)
        # Havtorn's L^{>1}: z_1 from p(z_1 | z_2) is a valid proposal too, so its weights
        # average to p(x) as well (more slowly)
        lw = model.log_weights(x, 20000, g, prior_below=1)
        high = torch.logsumexp(lw, 0) - math.log(20000)
        assert ((high - truth).abs() < 0.05).all(), (high, truth)
        # the ELBO, averaged over draws, is below log p(x) for every image
        torch.manual_seed(3)
        elbo = torch.stack([ELBO()(model, x).per_example["elbo"] for _ in range(400)]).mean(0)
        assert (elbo < truth + 0.01).all()


def test_conv_hierarchy_importance_sampling_agrees_with_the_prior_alone():
    """A convolutional hierarchy (feature maps 1x4x4 and 1x2x2 below a 2-d vector, on 8x8
    digits), trained briefly with free nats per layer so that every layer is used: log p(x) by
    importance sampling from its top-down q against plain Monte Carlo over the prior, z_3 -> z_2
    -> z_1 -> x (200,000 draws), which never touches q; the ELBO lies below both."""
    from elbokit.data import load_data

    torch.manual_seed(0)
    digits = load_data("digits")
    g0 = torch.Generator().manual_seed(0)
    train, x = digits.as_float(digits.train, g0), digits.as_float(digits.test[:6], g0)
    cfg = VAEConfig(data_shape=(1, 8, 8), layers=3, arch="conv", channels=(8, 8),
                    latent_dims=(1, 1, 2), hidden=(16,))  # fmt: skip
    model = HierarchicalVAE(cfg)
    assert model.shapes == [(1, 4, 4), (1, 2, 2), (2,)] and model.dims == (16, 4, 2)
    with pytest.raises(ValueError, match="28x28 cannot be halved 3 times exactly"):
        HierarchicalVAE(VAEConfig(data_shape=(1, 28, 28), layers=4, arch="conv"))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    objective = ELBO(free_bits=2.0, free_bits_mode="per_layer")
    for _ in range(150):
        out = objective(model, train[torch.randint(0, len(train), (100,))])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert min(out.terms[f"kl/layer_{i}"] for i in (1, 2, 3)) > 0.3  # every layer in use
    model, x = model.double(), x.double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ll = importance_log_likelihood(model, x, 5000, generator=g)
        lw = torch.cat([model.log_weights(x, 20000, g, prior_below=3) for _ in range(10)])
        prior_mc = torch.logsumexp(lw, 0) - math.log(len(lw))
        elbo = torch.stack([ELBO()(model, x).per_example["elbo"] for _ in range(200)]).mean(0)
    assert ((ll.value - prior_mc).abs() < 5 * ll.stderr + 0.15).all(), (ll.value, prior_mc)
    assert (elbo < prior_mc).all() and (prior_mc - elbo).mean() > 0.5  # a real gap, q != p


def test_hierarchical_vae_trains_evaluates_and_scores_ood(tmp_path, capsys):
    run = tmp_path / "hvae"
    assert main(["train", "vae", "--preset", "debug", "--layers", "2", "--epochs", "3",
                 "--eval-k", "0", "--no-progress", "--out", str(run)]) == 0  # fmt: skip
    assert main(["eval", str(run), "--k", "20", "--limit", "60", "--ood", "digits"]) == 0
    assert "each bound importance sampled with 20 draws" in capsys.readouterr().out
    r = json.loads((run / "eval.json").read_text())
    assert r["ood"]["llr_samples"] == 20
    assert len(r["kl_per_layer"]) == 2 and r["layer_dims"] == [4, 2]
    assert sum(r["kl_per_layer"]) == pytest.approx(r["kl"], rel=1e-6)
    assert "llr>1" in r["ood"]["metrics"]  # digits against digits: nothing to tell apart
    assert abs(r["ood"]["metrics"]["log_likelihood"]["auroc"] - 0.5) < 0.2
    # the same evaluation without --ood goes beside eval.json, which keeps its OOD table
    assert main(["eval", str(run), "--k", "20", "--limit", "60"]) == 0
    assert json.loads((run / "eval.json").read_text())["ood"]["metrics"]
    # --llr-samples 1: the one-sample ratio, L - L^{>1} from one draw each
    ood = ["eval", str(run), "--k", "20", "--limit", "60", "--ood", "digits"]
    assert main([*ood, "--llr-samples", "1"]) == 0
    assert "with 1 draws (--llr-samples)" in capsys.readouterr().out
    # fewer LLR draws than eval.json's: beside it, named by them, eval.json's 20 draws kept
    assert json.loads((run / "eval-n60-k20-ood60-llr1.json").read_text())["ood"]["llr_samples"] == 1
    assert json.loads((run / "eval.json").read_text())["ood"]["llr_samples"] == 20
    before = sorted(p.name for p in run.iterdir())
    assert main(["eval", str(run), "--k", "20", "--llr-samples", "5"]) == 2  # without --ood
    assert "--llr-samples 5: it sets the LLR>j scores of --ood DATA" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before
    # the kind's eval help (its text has a "%" that argparse would read as a format)
    with pytest.raises(SystemExit) as done:
        main(["eval", str(run), "--help"])
    assert done.value.code == 0 and "80% TPR" in " ".join(capsys.readouterr().out.split())
    assert "ood" not in json.loads((run / "eval-n60-k20.json").read_text())
    assert main(["train", "vae", "--preset", "debug", "--layers", "2", "--arch", "conv",
                 "--inference", "bottom-up", "--out", str(tmp_path / "bad")]) == 2  # fmt: skip
    assert "top-down inference only" in capsys.readouterr().err


def test_a_report_says_where_ood_scores_beside_eval_json_are(tmp_path, capsys):
    """An OOD evaluation smaller than eval.json goes beside it; the report, which shows
    eval.json, says so instead of leaving the OOD section out silently."""
    run = tmp_path / "vae"
    assert main(["train", "vae", "--preset", "debug", "--epochs", "1", "--eval-k", "20",
                 "--no-progress", "--out", str(run)]) == 0  # fmt: skip
    assert main(["eval", str(run), "--k", "10", "--limit", "30", "--ood", "digits"]) == 0
    side = [p.name for p in run.glob("eval-*.json")]
    assert len(side) == 1 and "ood" in json.loads((run / side[0]).read_text())
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert (
        f"the out-of-distribution scores in {side[0]} are not in this report"
        in capsys.readouterr().out
    )
