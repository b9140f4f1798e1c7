"""Evaluation against the linear-Gaussian model's exact log p(x), I(x; z) and active units."""

import itertools

import pytest
import torch

from elbokit.evaluate import diagnose, importance_log_likelihood
from elbokit.models import LinearGaussian


def _model(seed=0, **kw):
    return LinearGaussian(6, 3, 0.5, generator=torch.Generator().manual_seed(seed), **kw)


def test_is_estimate_within_three_standard_errors_of_the_exact_log_px():
    model = _model()
    model.set_encoder_to_posterior()
    x = model.sample(40, generator=torch.Generator().manual_seed(1))
    exact = model.log_marginal(x).detach()
    est = importance_log_likelihood(model, x, k=2000, generator=torch.Generator().manual_seed(2))
    assert abs(est.mean - exact.mean().item()) <= 3 * est.mean_stderr
    # per example, a miss beyond 3 standard errors is a 0.3% event: allow 5% of 40
    beyond = ((est.value.double() - exact).abs() > 3 * est.stderr.double()).float().mean().item()
    assert beyond <= 0.05


def test_error_shrinks_as_k_grows_with_a_poor_proposal():
    model = _model(3)  # the encoder is left at its random initialization: a poor proposal
    x = model.sample(100, generator=torch.Generator().manual_seed(4))
    exact = model.log_marginal(x).mean().item()
    gaps = []
    for k in (1, 10, 100, 1000):
        est = importance_log_likelihood(model, x, k=k, generator=torch.Generator().manual_seed(5))
        gaps.append(exact - est.mean)
    assert all(g > 0 for g in gaps[:2])  # biased low, as Jensen says
    assert all(a > b for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[-1] < 0.1 * gaps[0]


def test_chunking_does_not_change_the_estimate():
    model = _model(6)
    model.set_encoder_to_posterior()
    x = model.sample(7, generator=torch.Generator().manual_seed(13))
    a = importance_log_likelihood(model, x, k=300, generator=torch.Generator().manual_seed(7))
    b = importance_log_likelihood(
        model,
        x,
        k=300,
        batch_size=3,
        max_elements=12 * 7,
        generator=torch.Generator().manual_seed(8),
    )  # chunks of 6 samples for 3 examples at a time: different draws, the same estimator
    assert a.value.shape == b.value.shape == (7,)
    se = torch.sqrt(a.stderr**2 + b.stderr**2)
    assert ((a.value - b.value).abs() <= 4 * se).all()


def test_mutual_information_against_the_closed_form_of_the_encoder():
    # With a linear Gaussian encoder q(z|x) = N(A(x - b) + c, S) and x ~ N(b, C), the aggregate
    # posterior is N(c, A C A^T + S): I_q(x; z) = 0.5 log det(A C A^T + S) - 0.5 log det(S).
    model = _model(8)
    model.set_encoder_to_posterior()
    x = model.sample(4000, generator=torch.Generator().manual_seed(9))
    d = diagnose(model, x, generator=torch.Generator().manual_seed(10))
    A, S = model.enc_A.detach(), torch.diag(model.enc_s.detach().exp())
    C = model.marginal().covariance_matrix.detach()
    exact = 0.5 * (torch.logdet(A @ C @ A.T + S) - torch.logdet(S)).item()
    assert d.mutual_information == pytest.approx(exact, abs=0.1)
    assert d.mutual_information <= d.kl + 1e-9  # I_q(x; z) is the informative part of the KL


def test_active_units_exactly_right_when_dims_are_ignored():
    model = LinearGaussian(6, 5, 0.5, ignored_dims=2, generator=torch.Generator().manual_seed(11))
    model.set_encoder_to_posterior()  # ignored dims: posterior = prior, mean 0 whatever x is
    x = model.sample(2000, generator=torch.Generator().manual_seed(12))
    d = diagnose(model, x)
    assert d.active_units == 3
    assert (d.unit_activity[3:] == 0).all() and (d.unit_activity[:3] > 0.01).all()
    assert (d.kl_per_unit[3:].abs() < 1e-6).all()  # their KL to the prior is 0: collapsed


def test_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="k=0"):
        importance_log_likelihood(model, model.sample(2), k=0)
    with pytest.raises(ValueError, match="precision='fp16'"):
        importance_log_likelihood(model, model.sample(2), precision="fp16")


def test_eval_command_on_a_trained_run(tmp_path, capsys):
    import json

    from elbokit.cli import main
    from references import train_debug

    run = tmp_path / "run"
    assert train_debug(run) == 0
    assert main(["eval", str(run), "--k", "50", "--limit", "60"]) == 0
    out = capsys.readouterr().out
    assert "log p(x) >=" in out and "active units" in out
    # a quicker look than training's evaluation (all 180 images) goes beside eval.json
    result = json.loads((run / "eval-n60-k50.json").read_text())
    assert result["examples"] == 60 and result["k"] == 50
    # the IS estimate of log p(x) is at least the ELBO, up to its Monte Carlo error
    assert result["log_likelihood"] >= result["elbo"] - 3 * result["log_likelihood_stderr"] - 0.5
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    # --threads as training takes it: the count says itself, is restored after, and a bad one
    # is one line before anything is evaluated
    import torch

    before = torch.get_num_threads()
    assert main(["eval", str(run), "--k", "5", "--limit", "10", "--threads", "1"]) == 0
    assert "threads: 1 (--threads)" in capsys.readouterr().out
    assert torch.get_num_threads() == before and result["precision"] == "fp32"
    assert main(["eval", str(run), "--threads", "two"]) == 2
    err = capsys.readouterr().err
    assert "--threads 'two': expected a count" in err and len(err.strip().splitlines()) == 1


def test_categorical_vae_trains_evaluates_and_reports(tmp_path):
    import json

    from references import train_debug

    run = tmp_path / "cat"
    assert (
        train_debug(
            run,
            "--latent",
            "categorical",
            "--latent-dim",
            "4",
            "--latent-classes",
            "5",
            "--epochs",
            "4",
        )
        == 0
    )
    result = json.loads((run / "eval.json").read_text())
    assert len(result["kl_per_unit"]) == 4  # a unit is a group
    # importance sampling with a discrete proposal: at least the ELBO, up to its errors
    assert result["log_likelihood"] >= result["elbo"] - 3 * result["log_likelihood_stderr"] - 0.5
    assert 0 <= result["mutual_information"] <= result["kl"] + 1e-6
    assert (run / "report" / "traversals.png").exists()
