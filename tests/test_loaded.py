"""Trained runs used from Python (``elbokit.load``, ``elbokit.train``): every kind's verbs, each
checked against an independent reference (a Monte Carlo estimate from the prior or from q with
its standard error, a closed form written out with scipy/numpy, a second environment), and the
model loads without its training data."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import elbokit
from elbokit.config import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"say": lambda *a: None}


def _images_npz(path: Path, n: int = 600) -> Path:
    """scikit-learn's 8x8 digits as 8-bit images in an .npz of our own (a folder we may move)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(d.images[:n] * 16, 0, 255).astype(np.uint8)[:, None]
    np.savez(path, x=x, y=d.target[:n])
    return path


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    """A debug VAE trained from Python on images in a folder that is then renamed."""
    root = tmp_path_factory.mktemp("vae")
    (root / "data").mkdir()
    npz = _images_npz(root / "data" / "imgs.npz")
    m = elbokit.train("vae", preset="debug", out=root / "run", data=str(npz), epochs=3,
                      eval_k=0, progress=False, **QUIET)  # fmt: skip
    x = torch.from_numpy(np.load(npz)["x"][:8])
    (root / "data").rename(root / "moved")
    return m, x, root


def test_a_vae_loads_and_scores_after_its_data_moved(vae):
    _, x, root = vae
    m = elbokit.load(root / "run")  # config.json and the checkpoint alone
    assert m.kind == "vae" and m.step > 0 and repr(m).startswith("<elbokit vae run")
    s = m.sample(16, seed=1)
    assert s.shape == (16, 1, 8, 8) and 0 <= s.min() and s.max() <= 1
    assert torch.equal(s, m.sample(16, seed=1)) and not torch.equal(s, m.sample(16, seed=2))
    q = m.encode(x)
    assert isinstance(q, torch.distributions.Distribution) and q.batch_shape == (8,)
    assert m.reconstruct(x).shape == (8, 1, 8, 8) and m.decode(q.mean).shape == (8, 1, 8, 8)
    ll = m.log_prob(x, k=500)
    assert ll.value.shape == (8,) and bool((ll.stderr > 0).all())


def test_log_prob_agrees_with_sampling_the_prior(vae):
    """log p(x) by importance sampling against the plain Monte Carlo average of p(x | z) over
    200,000 draws from the prior: two estimators, one answer (4-D latent, so the prior's
    estimate is precise enough)."""
    m, x, _ = vae
    x = m.prepare(x[:4])
    ll = m.log_prob(x, k=2000)
    g = torch.Generator().manual_seed(7)
    z = torch.randn(200_000, m.model.latent.z_size, generator=g)
    with torch.no_grad():
        logits = m.model.decode(z)  # (S, 1, 8, 8)
        lp = torch.distributions.Bernoulli(logits=logits[:, None]).log_prob(x).sum((-1, -2, -3))
    w = (lp - lp.max(0).values).double().exp()  # (S, 4)
    prior = lp.max(0).values.double() + w.mean(0).log()
    prior_se = w.std(0) / w.mean(0) / math.sqrt(len(w))
    se = (prior_se.square() + ll.stderr.double().square()).sqrt()
    assert ((ll.value.double() - prior).abs() <= 5 * se + 0.02).all(), (ll.value, prior, se)


def test_elbo_agrees_with_torch_distributions(vae):
    """The one-sample ELBO averaged over 4,000 draws against E_q[log p(x|z) + log p(z) -
    log q(z|x)] with torch's own Normal and Bernoulli densities and the encode() posterior."""
    m, x, _ = vae
    x = m.prepare(x[:2])
    s = 4000
    ours = m.elbo(x.repeat(s, 1, 1, 1), seed=3).reshape(s, 2).double()
    q = m.encode(x)
    z = q.rsample(torch.Size([s]))  # (S, 2, dim)
    with torch.no_grad():
        lx = torch.distributions.Bernoulli(logits=m.model.decode(z)).log_prob(x).sum((-1, -2, -3))
        pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        theirs = (lx + pz - q.log_prob(z)).double()
    se = (ours.var(0) / s + theirs.var(0) / s).sqrt()
    assert ((ours.mean(0) - theirs.mean(0)).abs() <= 4 * se).all()


def test_evaluate_on_other_data_writes_beside_the_runs_own(vae, tmp_path):
    m, _, root = vae
    npz = _images_npz(tmp_path / "other.npz", n=300)
    result = m.evaluate(str(npz), k=5, limit=20)
    saved = json.loads((root / "run" / "eval-data-other.json").read_text())
    assert saved["data"] == str(npz) and saved["log_likelihood"] == result["log_likelihood"]
    assert result == saved  # the dict eval-data-other.json holds; shown with long lists cut short
    assert "'log_likelihood': [" in repr(result) and "... (20 values)]" in repr(result)
    assert len(repr(result)) < len(json.dumps(saved))
    assert not (root / "run" / "eval.json").exists()  # the run's own evaluation is not replaced
    with pytest.raises(ConfigError, match="did you mean k"):
        m.evaluate(str(npz), kk=5)


def test_train_from_python_checks_options_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="latent_dim"):
        elbokit.train("vae", preset="debug", out=tmp_path / "x", latnet_dim=3, **QUIET)
    with pytest.raises(ConfigError, match="beta"):
        elbokit.train("vae", preset="debug", out=tmp_path / "x", beta=-1.0, **QUIET)
    assert not (tmp_path / "x").exists()


def test_linear_gaussian_exact_posterior_and_evidence(tmp_path):
    """posterior(x) and log_evidence(x) against the closed forms written out with scipy:
    p(x) = N(b, W W^T + s^2 I), p(z | x) = N(M^-1 W^T (x - b), s^2 M^-1), M = W^T W + s^2 I;
    the importance-sampled log p(x) against the exact one."""
    from scipy.stats import multivariate_normal

    m = elbokit.train("linear-gaussian", preset="debug", out=tmp_path / "lg", eval_k=0,
                      progress=False, **QUIET)  # fmt: skip
    mod = m.model
    w, b, s = (t.detach().double().numpy() for t in (mod.W, mod.b, mod.sigma))
    x = np.random.default_rng(0).normal(size=(5, w.shape[0]))
    cov = w @ w.T + s**2 * np.eye(w.shape[0])
    exact = multivariate_normal(b, cov).logpdf(x)
    assert np.allclose(m.log_evidence(x).double().numpy(), exact, rtol=1e-4, atol=1e-4)
    mm = w.T @ w + s**2 * np.eye(w.shape[1])
    post = m.posterior(x)
    assert np.allclose(
        post.mean.double().numpy(), np.linalg.solve(mm, w.T @ (x - b).T).T, atol=1e-4
    )
    assert np.allclose(
        post.covariance_matrix[0].double().numpy(), s**2 * np.linalg.inv(mm), atol=1e-5
    )
    ll = m.log_prob(x, k=3000)
    assert (
        np.abs(ll.value.double().numpy() - exact) <= 5 * ll.stderr.double().numpy() + 1e-3
    ).all()


@pytest.mark.parametrize("model", ["full", "known-variance"])
def test_gmm_predictive_density_against_monte_carlo_over_q(tmp_path, model):
    """score_samples(x) = log E_q[sum_k pi_k N(x | mu_k, Sigma_k)] (Student's t mixture for the
    full model, Bishop 10.81) against 40,000 draws of (pi, mu, Lambda) from q."""
    m = elbokit.train("gmm", out=tmp_path / "g", model=model, report=False, progress=False, **QUIET)
    g = m.model
    x = torch.tensor([[0.0, 0.0], [2.0, -1.0], [-3.0, 3.0]], dtype=torch.float64)
    torch.manual_seed(0)
    s = 40_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's Wishart warns of near-singular unused components
        if model == "full":
            pi = torch.distributions.Dirichlet(g.alpha).sample((s,))
            lam = torch.distributions.Wishart(
                df=g.nu, covariance_matrix=torch.linalg.inv(g.w_inv)
            ).sample((s,))
            mu = torch.distributions.MultivariateNormal(
                g.m, precision_matrix=g.beta[:, None, None] * lam
            ).sample()
            comp = torch.distributions.MultivariateNormal(
                mu[:, :, None], precision_matrix=lam[:, :, None]
            )
        else:
            pi = torch.distributions.Dirichlet(g.alpha).sample((s,))
            mu = g.m + g.s2.sqrt()[:, None] * torch.randn(s, *g.m.shape, dtype=torch.float64)
            comp = torch.distributions.Normal(mu[:, :, None], math.sqrt(g.noise_var))
    lp = comp.log_prob(x[None, None]) if model == "full" else comp.log_prob(x[None, None]).sum(-1)
    w = torch.logsumexp(lp + pi.log()[:, :, None], 1).exp()  # (S, n) p(x | theta)
    est, se = w.mean(0).log(), w.std(0) / w.mean(0) / math.sqrt(s)
    assert ((m.score_samples(x) - est).abs() <= 4 * se + 1e-3).all(), (m.score_samples(x), est, se)
    proba = m.predict_proba(x)
    assert torch.allclose(proba.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.equal(m.predict(x), proba.argmax(1))
    assert m.score(x) == pytest.approx(float(m.score_samples(x).mean()))


def test_bnn_predicts_in_the_targets_units(tmp_path):
    """Predictions from raw diabetes inputs (standardized with the statistics saved with the
    run) score the same test RMSE as the run's own evaluation, which works in standardized units."""
    from sklearn.datasets import load_diabetes

    from elbokit.data.labelled import load_labelled

    m = elbokit.train("bnn", preset="diabetes", out=tmp_path / "b", epochs=30, eval_samples=0,
                      progress=False, **QUIET)  # fmt: skip
    data = load_labelled("diabetes", seed=0)
    raw = load_diabetes()
    d = m.config.data
    x = data.x_test.double() * torch.tensor(d.x_std) + torch.tensor(d.x_mean)
    assert torch.allclose(x, _rows(raw.data, x), atol=1e-6)  # the saved statistics undo the split's
    p = m.predict(x, samples=200)
    y = data.y_test.double() * data.y_std + data.y_mean
    rmse = float((p.mean - y).square().mean().sqrt())
    result = m.evaluate(samples=200)
    assert rmse == pytest.approx(result["bnn"]["rmse"], rel=0.03)
    assert bool((p.epistemic > 0).all()) and bool((p.std > p.aleatoric).all())
    with pytest.raises(ValueError, match="classification"):
        m.predict_proba(x)


def _rows(raw: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """The rows of ``raw`` nearest to each row of x (which raw row each standardized one was)."""
    r = torch.from_numpy(raw)
    return r[torch.cdist(x, r).argmin(1)]


def test_bnn_classifier_predict_proba(tmp_path):
    m = elbokit.train("bnn", preset="digits", out=tmp_path / "c", epochs=3, eval_samples=0,
                      progress=False, **QUIET)  # fmt: skip
    from elbokit.data.labelled import load_labelled

    data = load_labelled("digits", seed=0)
    proba = m.predict_proba(data.x_test, samples=50)
    assert proba.shape == (len(data.x_test), 10)
    assert torch.allclose(proba.sum(1), torch.ones(len(proba)), atol=1e-5)
    accuracy = float((m.predict(data.x_test, samples=50) == data.y_test).double().mean())
    assert accuracy == pytest.approx(m.evaluate(samples=50)["bnn"]["accuracy"], abs=0.02)


def test_coin_exact_posterior_and_evidence(tmp_path):
    """The coin's posterior Beta(a + h, b + t) and evidence B(a + h, b + t) / B(a, b) written out
    with scipy; the ELBO's gap to it is KL(q || posterior) (torch's Beta KL)."""
    from scipy.special import betaln

    m = elbokit.train("coin", out=tmp_path / "coin", report=False, progress=False, **QUIET)
    model = m.model
    h, n = model.heads, model.tosses
    a, b = model.prior().concentration1.item(), model.prior().concentration0.item()
    post = m.posterior()
    assert post.concentration1.item() == pytest.approx(a + h)
    assert post.concentration0.item() == pytest.approx(b + n - h)
    assert m.log_evidence() == pytest.approx(betaln(a + h, b + n - h) - betaln(a, b), rel=1e-9)
    gap = m.log_evidence() - m.elbo()
    kl = torch.distributions.kl_divergence(m.q(), post).item()
    assert gap == pytest.approx(kl, abs=1e-6) and gap >= -1e-9


def test_diffusion_bound_term_by_term(tmp_path):
    """bound(x): every t's term; its total against the unbiased Monte Carlo estimate over t
    (bound_estimate, 200 draws of t per image), within their standard errors."""
    m = elbokit.train("diffusion", preset="debug", out=tmp_path / "d", eval_images=-1, progress=False,
                      **QUIET)  # fmt: skip
    s = m.sample(4, seed=0)
    assert s.shape == (4, 1, 8, 8) and 0 <= s.min() and s.max() <= 1
    x = (s * 255).round().to(torch.uint8)
    b = m.bound(x)
    assert b["L_t"].shape == (4, m.model.steps) and b["total"].shape == (4,)
    est, _ = m.model.bound_estimate(m.prepare(x), 200, generator=torch.Generator().manual_seed(1))
    per_t = b["L_t"].double()
    exact_se = per_t.std(1) * m.model.steps / math.sqrt(200)  # the estimate's own spread over t
    assert ((est.double() - b["total"]).abs() <= 5 * exact_se + 1e-3).all()
    assert b["bits_per_dim"].shape == (4,) and bool((b["bits_per_dim"] > 0).all())
    with pytest.raises(NotImplementedError, match="bound"):
        m.log_prob(x)


def test_world_model_imagines_what_open_loop_predicts(tmp_path):
    """imagine() after observe() against the evaluation's open_loop on the same recorded episode
    (most likely latents, so no draws): the same predicted frames."""
    from elbokit.data.episodes import load_episodes

    m = elbokit.train("world-model", preset="debug", out=tmp_path / "w", report=False,
                      progress=False, **QUIET)  # fmt: skip
    data = load_episodes(tmp_path / "w" / "episodes", seq_len=12)
    batch = next(data.batches("train", 2, seed=0))
    out = m.imagine(batch.image[:, :4], batch.action[:, :4], batch.action[:, 4:], sample=False)
    ref = m.model.open_loop(batch, 4, torch.Generator().manual_seed(0), sample=False)
    assert out["obs"].shape == (2, 8, *m.model.obs_shape)
    assert torch.allclose(out["obs"], ref["obs"], atol=1e-5)
    st = m.observe(batch.image, batch.action)
    assert st.h.shape[:2] == (2, 12)
    with pytest.raises(ValueError, match="actions"):
        m.observe(batch.image, batch.action[:, :, :1])


def test_agent_acts_like_sb3_predict_on_a_gymnasium_env(tmp_path):
    gym = pytest.importorskip("gymnasium")
    m = elbokit.train("agent", preset="debug", out=tmp_path / "a", eval_episodes=0,
                      progress=False, **QUIET)  # fmt: skip
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    action, _ = m.act(obs, seed=1)
    assert env.action_space.contains(int(action))
    again, _ = m.act(obs, seed=1)
    assert again == action
    assert m.act(np.stack([obs, obs]), seed=1)[0].shape == (2,)
    r = m.play(env, episodes=3, seed=0)
    assert r["returns"] == [float(n) for n in r["lengths"]]  # CartPole pays 1 per step
    assert r == m.play(env, episodes=3, seed=0)  # seeded resets, a deterministic policy
    with pytest.raises(ValueError, match="observes"):
        m.play(gym.make("Pendulum-v1"), 1)


def test_skills_play_the_same_in_our_point_env_and_gymnasiums(tmp_path):
    """A skill's deterministic policy from the origin reaches the same point in the run's own
    vectorized point task and in its gymnasium version (actions scaled the same way)."""
    pytest.importorskip("gymnasium")
    from elbokit.models.envs import point_env_class

    m = elbokit.train("skills", preset="debug", out=tmp_path / "s", eval_episodes=0,
                      progress=False, **QUIET)  # fmt: skip
    for k in (0, 5):
        own = m.play(k, episodes=1)
        theirs = m.play(k, point_env_class()(), episodes=1)
        assert own["lengths"] == theirs["lengths"] == [30]
        obs = np.zeros(2, np.float32)
        env = point_env_class()()
        env.reset(seed=0)
        policy = m.skill_policy(k)
        for _ in range(30):
            obs, *_ = env.step(policy(obs))
        assert np.allclose(obs, own["final_states"][0], atol=1e-6)
    with pytest.raises(ValueError, match="0..7"):
        m.act(np.zeros(2), 8)


def test_inputs_outside_the_models_range_are_refused_by_name(vae, tmp_path):
    m, x, _ = vae
    with pytest.raises(ValueError, match=r"x\[0, 0, 0, 2\] is -0.3137"):
        m.log_prob(-(x.float() / 255), k=10)
    with pytest.raises(ValueError, match="integers from 0 to 381"):
        m.elbo(torch.arange(128).reshape(2, 1, 8, 8) * 3)  # up to 381
    nan = torch.zeros(2, 1, 8, 8)
    nan[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"x\[1, 0, 3, 3\] is nan"):
        m.encode(nan)
    as_ints = m.log_prob(x.long(), k=50).value  # integers 0..255 are 8-bit pixels too
    assert torch.equal(as_ints, m.log_prob(x, k=50).value)
    # grey images with or without their channel, or flattened: the same images, the same values
    for same in (x[:, 0], x.flatten(1)):
        assert torch.equal(m.log_prob(same, k=50).value, m.log_prob(x, k=50).value)
    with pytest.raises(ValueError, match=r"shape \(3, 8, 7\); this model takes images of shape "
                                         r"\(B, 1, 8, 8\)"):  # fmt: skip
        m.elbo(x[:3, 0, :, :7])
    with pytest.raises(ValueError, match="at least 1"):
        m.sample(0)
    with pytest.raises(ValueError, match="standard error"):
        m.log_prob(x, k=1)


def test_a_linear_gaussian_samples_in_its_own_precision(tmp_path):
    m = elbokit.train("linear-gaussian", preset="debug", out=tmp_path / "lg", eval_k=0,
                      progress=False, **QUIET)  # fmt: skip
    s = m.sample(5)
    assert s.shape == (5, m.config.model.data_dim) and s.dtype == m.model.W.dtype


def test_a_resumed_runs_evaluation_replaces_the_earlier_steps(tmp_path):
    """A thorough eval.json of step 66 is replaced by a quicker one of step 132 (later weights):
    the report must not show the old step's numbers; the same step's quicker look goes beside."""
    from elbokit.cli import main

    out = tmp_path / "v"
    assert main(["train", "vae", "--preset", "debug", "--eval-k", "0", "--no-progress", "--threads",
                 "1", "--out", str(out)]) == 0  # fmt: skip
    assert main(["eval", str(out), "--k", "40"]) == 0
    assert main(["eval", str(out), "--k", "10"]) == 0  # same step, quicker: beside it
    assert json.loads((out / "eval.json").read_text())["k"] == 40
    assert main(["train", "--resume", str(out), "--epochs", "4", "--no-progress"]) == 0
    assert main(["eval", str(out), "--k", "10"]) == 0
    now = json.loads((out / "eval.json").read_text())
    assert now["step"] == 132 and now["k"] == 10
