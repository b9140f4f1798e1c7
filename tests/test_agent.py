"""The Dreamer agent: lambda-returns, the return scale, the reset mask, the stop-gradients, the
sequence replay, the environments' saved state, and the ``agent`` kind end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from elbokit.data.replay import SequenceReplay
from elbokit.models.dreamer import ActorCritic, ActorCriticConfig, ReturnNorm, lambda_returns
from elbokit.models.envs import GymBatch, make_env
from elbokit.models.world_model import WorldModel, WorldModelConfig, symexp, symlog
from references import assert_same_checkpoints

TINY = WorldModelConfig(obs_shape=(4,), action_dim=2, deter=16, hidden=16, groups=4, classes=4,
                        embed=16, head_hidden=(16,))  # fmt: skip


def test_lambda_returns_by_hand():
    # r_1..r_3, d_1..d_3, v_0..v_3, lambda = 0.5:
    # R_2 = 3 + 0 * 40 = 3
    # R_1 = 2 + 0.5 (0.5 * 30 + 0.5 * 3) = 10.25
    # R_0 = 1 + 0.9 (0.5 * 20 + 0.5 * 10.25) = 14.6125
    r = torch.tensor([1.0, 2.0, 3.0])
    d = torch.tensor([0.9, 0.5, 0.0])
    v = torch.tensor([10.0, 20.0, 30.0, 40.0])
    torch.testing.assert_close(lambda_returns(r, v, d, 0.5), torch.tensor([14.6125, 10.25, 3.0]))


def test_lambda_returns_span_td_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    h, n = 7, 5
    r, d = torch.randn(h, n, generator=g), torch.rand(h, n, generator=g)
    v = torch.randn(h + 1, n, generator=g)
    # lambda = 0: one-step targets r_{t+1} + d_{t+1} v_{t+1}
    torch.testing.assert_close(lambda_returns(r, v, d, 0.0), r + d * v[1:])
    # lambda = 1: the discounted sum of rewards to the horizon, bootstrapped with v_H
    mc = torch.zeros(h, n)
    for t in range(h):
        disc = torch.ones(n)
        for k in range(t, h):
            mc[t] += disc * r[k]
            disc = disc * d[k]
        mc[t] += disc * v[h]
    torch.testing.assert_close(lambda_returns(r, v, d, 1.0), mc)
    with pytest.raises(ValueError, match="H \\+ 1 values"):
        lambda_returns(r, v[:-1], d, 0.5)


def test_return_norm_tracks_the_percentiles_with_decay():
    norm = ReturnNorm(decay=0.9)
    rng = np.random.default_rng(0)
    low = high = 0.0
    for i in range(6):
        x = rng.normal(3.0 * i, 1.0 + i, size=301)
        norm.update(torch.tensor(x, dtype=torch.float32))
        low = 0.9 * low + 0.1 * np.percentile(x, 5)
        high = 0.9 * high + 0.1 * np.percentile(x, 95)
        assert float(norm.low) == pytest.approx(low, rel=1e-5, abs=1e-5)
        assert float(norm.high) == pytest.approx(high, rel=1e-5, abs=1e-5)
        assert float(norm.scale) == pytest.approx(max(1.0, high - low), rel=1e-5)
    small = ReturnNorm()
    small.update(torch.zeros(10))
    assert float(small.scale) == 1.0  # at least 1: small returns are not blown up


def test_reset_mask_equals_observing_the_two_episodes_separately():
    torch.manual_seed(0)
    model = WorldModel(TINY)
    rssm = model.rssm
    ea, eb = torch.randn(1, 5, 16), torch.randn(1, 4, 16)
    aa, ab = torch.randn(1, 5, 2), torch.randn(1, 4, 2)
    first = torch.zeros(1, 9, dtype=torch.bool)
    first[0, 0] = first[0, 5] = True
    g = torch.Generator().manual_seed(1)
    joined = rssm.observe(torch.cat([ea, eb], 1), torch.cat([aa, ab], 1), generator=g,
                          is_first=first)  # fmt: skip
    g = torch.Generator().manual_seed(1)  # the same draws, in the same order
    # observed alone, an episode starts from zeros with no action leading to its first step (the
    # replay stores a zero there); the mask must ignore whatever action the joined data holds
    a = rssm.observe(ea, torch.cat([torch.zeros(1, 1, 2), aa[:, 1:]], 1), generator=g)
    b = rssm.observe(eb, torch.cat([torch.zeros(1, 1, 2), ab[:, 1:]], 1), generator=g)
    for name in ("h", "z", "prior", "posterior"):
        torch.testing.assert_close(getattr(joined, name),
                                   torch.cat([getattr(a, name), getattr(b, name)], 1))  # fmt: skip
    # without the mask the second episode would see the first: it differs
    g = torch.Generator().manual_seed(1)
    unmasked = rssm.observe(torch.cat([ea, eb], 1), torch.cat([aa, ab], 1), generator=g)
    assert not torch.allclose(unmasked.h[:, 5:], b.h)
    # one step at a time (acting) gives the same states as the sequence
    g = torch.Generator().manual_seed(1)
    h, z = rssm.initial(1, ea)
    seq_e, seq_a = torch.cat([ea, eb], 1), torch.cat([aa, ab], 1)
    for t in range(9):
        h, z, _ = rssm.obs_step(h, z, seq_a[:, t], seq_e[:, t], first[:, t], generator=g)
        torch.testing.assert_close(h, joined.h[:, t])


def _ac(discrete: bool, **kw):
    torch.manual_seed(0)
    cfg = WorldModelConfig(**{**TINY.to_dict(), "obs_shape": (4,), "action_dim": 2})
    wm = WorldModel(cfg)
    ac = ActorCritic(ActorCriticConfig(hidden=(16,), horizon=4, **kw), 16 + 16, 2, discrete)
    h, z = (
        torch.randn(8, 16),
        torch.nn.functional.one_hot(torch.randint(4, (8, 4)), 4).flatten(1).float(),
    )
    return wm, ac, h, z


@pytest.mark.parametrize("discrete", [True, False])
def test_actor_and_critic_losses_leave_the_world_model_without_gradient(discrete):
    wm, ac, h, z = _ac(discrete)
    actor_loss, critic_loss, _ = ac.losses(wm, h, z, torch.ones(8))
    (actor_loss + critic_loss).backward()
    assert all(p.grad is None for p in wm.parameters())
    assert all(p.grad is None for p in ac.target.parameters())
    assert all(p.requires_grad for p in wm.parameters())  # unfrozen afterwards
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ac.actor.parameters())
    assert all(p.grad is not None for p in ac.critic.parameters())
    assert ac.reinforce == discrete
    # the critic's loss alone reaches only the critic; the actor's only the actor
    for p in [*ac.actor.parameters(), *ac.critic.parameters()]:
        p.grad = None
    _, critic_loss, _ = ac.losses(wm, h, z, torch.ones(8))
    critic_loss.backward()
    assert all(p.grad is None for p in ac.actor.parameters())


def test_continuous_actor_learns_through_the_model_and_a_terminal_start_weighs_nothing():
    wm, ac, h, z = _ac(False, entropy=0.0)
    # the actor's gradient depends on the reward head: it flows through the model's dynamics
    actor_loss, _, _ = ac.losses(wm, h, z, torch.ones(8))
    g1 = torch.autograd.grad(actor_loss, list(ac.actor.parameters()))
    with torch.no_grad():
        wm.reward_head[-1].weight.mul_(-3)
    torch.manual_seed(1)
    actor_loss, _, _ = ac.losses(wm, h, z, torch.ones(8))
    g2 = torch.autograd.grad(actor_loss, list(ac.actor.parameters()))
    assert not torch.allclose(g1[0], g2[0])
    # starts that ended their episode (cont 0) contribute nothing
    actor_loss, critic_loss, _ = ac.losses(wm, h, z, torch.zeros(8))
    assert float(actor_loss.detach()) == 0.0 and float(critic_loss.detach()) == 0.0


def test_sequence_replay_samples_contiguous_steps_uniformly_and_round_trips():
    buf = SequenceReplay(40, 2, {"t": (), "obs": (3,)})
    for i in range(33):  # env 0 wraps around (20 per ring), env 1 gets every third step
        buf.add_batch([0], t=torch.tensor([float(i)]), obs=torch.full((1, 3), i / 40))
        if i % 3 == 0:
            buf.add_batch([1], t=torch.tensor([1000.0 + i]), obs=torch.zeros(1, 3))
    assert buf.size == [20, 11] and len(buf) == 31
    torch.manual_seed(0)
    n, length = 20_000, 5
    s = buf.sample(n, length)
    t = s["t"]
    steps = torch.diff(t, dim=1)
    from_0 = t[:, 0] < 1000
    assert (steps[from_0] == 1).all() and (steps[~from_0] == 3).all()  # contiguous, no wrap
    assert t[from_0].min() >= 13 and t[from_0].max() <= 32  # only the 20 newest of env 0
    starts = torch.bincount(t[from_0, 0].long() - 13, minlength=16)
    # 16 starts in env 0, 7 in env 1, all equally likely: counts within 4 SE of n / 23
    p = 1 / 23
    assert (starts[:16] - n * p).abs().max() < 4 * (n * p * (1 - p)) ** 0.5
    assert abs(int((~from_0).sum()) - 7 * n * p) < 4 * (n * 7 * p * (1 - 7 * p)) ** 0.5
    torch.testing.assert_close(s["obs"][from_0, :, 0], t[from_0] / 40)
    tensors, meta = buf.state()
    other = SequenceReplay(40, 2, {"t": (), "obs": (3,)})
    other.load_state(tensors, json.loads(json.dumps(meta)))
    torch.manual_seed(3)
    a = buf.sample(50, 4)
    torch.manual_seed(3)
    b = other.sample(50, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="does not fit"):
        SequenceReplay(60, 2, {"t": (), "obs": (3,)}).load_state(tensors, meta)
    with pytest.raises(ValueError, match="no environment has 30 steps"):
        buf.sample(2, 30)
    pix = SequenceReplay(8, 1, {"obs": (3, 2, 2)}, uint8=("obs",))
    frame = torch.rand(1, 3, 2, 2)
    pix.add_batch([0], obs=frame)
    pix.add_batch([0], obs=frame)
    assert pix.data["obs"].dtype == torch.uint8
    assert (pix.sample(1, 2)["obs"][0, 0] - frame[0]).abs().max() <= 0.5 / 255 + 1e-7


def test_cartpole_batch_takes_one_hot_actions_and_resumes_its_episodes_exactly():
    def play(env, steps, g):
        out = []
        for _ in range(steps):
            a = torch.nn.functional.one_hot(torch.randint(2, (3,), generator=g), 2).float()
            tr = env.step(a)
            out.append((tr.obs, tr.next_obs, tr.reward, tr.terminated, tr.truncated))
        return out

    env = make_env("CartPole-v1", 3, seed=1, discrete=True, horizon=20)
    env.reset()
    g = torch.Generator().manual_seed(0)
    play(env, 30, g)
    tensors, meta = env.state()
    assert env.exact
    state = g.get_state()
    ahead = play(env, 60, g)
    assert sum(int(x[3].sum() + x[4].sum()) for x in ahead) > 3  # episodes ended and restarted
    again = make_env("CartPole-v1", 3, seed=1, discrete=True, horizon=20)
    again.load_state(tensors, json.loads(json.dumps(meta)))
    g.set_state(state)
    for x, y in zip(ahead, play(again, 60, g), strict=True):
        assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))
    with pytest.raises(ValueError, match="expected \\(3, 2\\)"):
        env.step(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="Box action space"):
        GymBatch("CartPole-v1", 1)
    pixels = make_env("CartPole-v1", 2, seed=1, discrete=True, pixels=32)
    obs = pixels.reset()
    assert obs.shape == (2, 3, 32, 32) and 0 <= float(obs.min()) < float(obs.max()) <= 1
    tr = pixels.step(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert tr.next_obs.shape == (2, 3, 32, 32)
    pixels.close()


def test_vector_observations_enter_as_symlog_and_decode_back():
    # symlog(x) = sign(x) ln(1 + |x|) (Hafner et al. 2023), by hand in numpy float64
    x = np.array([-1e4, -3.0, -0.1, 0.0, 0.2, 5.0, 1e5])
    ln = np.sign(x) * np.log1p(np.abs(x))
    assert ln[1] == pytest.approx(-math.log(4.0)) and ln[5] == pytest.approx(math.log(6.0))
    np.testing.assert_allclose(symlog(torch.tensor(x)).numpy(), ln, rtol=1e-12, atol=0)
    np.testing.assert_allclose(symexp(torch.tensor(ln)).numpy(), np.sign(ln) * np.expm1(np.abs(ln)),
                               rtol=1e-12, atol=0)  # fmt: skip
    np.testing.assert_allclose(symexp(torch.tensor(ln)).numpy(), x, rtol=1e-10, atol=0)
    model = WorldModel(TINY)
    obs = torch.randn(2, 3, 4, dtype=torch.float64) * 10
    expected = np.sign(obs.numpy()) * np.log1p(np.abs(obs.numpy()))
    np.testing.assert_allclose(model.target(obs).numpy(), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        model.decoded(torch.tensor(expected)).numpy(), obs.numpy(), rtol=1e-10
    )
    assert model.embed(obs.float()).shape == (2, 3, 16)
    images = WorldModel(WorldModelConfig(**{**TINY.to_dict(), "obs_shape": (1, 16, 16),
                                            "channels": (4, 8)}))  # fmt: skip
    px = torch.tensor([0.0, 0.25, 1.0]).reshape(1, 1, 3, 1, 1).expand(1, 1, 3, 16, 16)
    assert images.target(px)[0, 0, :, 0, 0].tolist() == [-0.5, -0.25, 0.5]  # centred x - 0.5
    # decoded means are clipped to the pixel range [0, 1]
    assert images.decoded(torch.tensor([-0.9, -0.5, 0.1, 0.7])).tolist() == pytest.approx(
        [0.0, 0.0, 0.6, 1.0]
    )


def _quiet(*a, **k):
    pass


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_train_agent_debug_resumes_exactly_evaluates_and_reports(tmp_path, env):
    from safetensors.torch import load_file

    from elbokit import recipes

    kind = recipes.get_recipe("agent")
    cfg = kind.preset("debug", {"env": {"name": env},
                                "train": {"progress": False, "checkpoint_every": 40},
                                "evaluate": {"eval_episodes": 0}})  # fmt: skip
    a = recipes.train(kind, cfg, out=tmp_path / "a", say=_quiet)
    b = recipes.train(kind, cfg, out=tmp_path / "b", stop_at=70, say=_quiet)
    recipes.train(kind, resume=b, say=_quiet)
    assert_same_checkpoints(a, b, ("world_model", "actor_critic", "extra", "actor_optim"))
    last_a = json.loads((a / "state.json").read_text())["checkpoint"]
    assert "replay.obs" in load_file(a / last_a / "extra.safetensors")
    lines = []
    result = recipes.evaluate(a, {"episodes": 3}, say=lines.append)
    assert len(result["returns"]) == 3 and result["env_steps"] == 600
    assert result["return_se"] == pytest.approx(
        np.std(result["returns"], ddof=1) / 3**0.5, rel=1e-5
    )
    assert any("critic on the real episodes" in line for line in lines)
    page = recipes.report(a, say=_quiet)
    folder = page.parent
    for png in ("returns.png", "open_loop.png", "world_model.png", "actor_critic.png"):
        assert (folder / png).stat().st_size > 1000
    assert (folder / "policy.gif").read_bytes()[:3] == b"GIF"
    metrics = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    assert any("train/return" in m and "train/env/steps" in m for m in metrics)
    assert sum("test/return" in m for m in metrics) == 3  # one evaluation per epoch


def test_agent_config_refuses_runs_that_cannot_learn():
    from elbokit import recipes
    from elbokit.config import ConfigError

    kind = recipes.get_recipe("agent")
    for over, match in (
        ({"env": {"envs": 1}}, "prefill = 200 random steps is the whole run \\(150"),
        ({"agent": {"stop_return": float("nan")}}, "stop_return = nan"),
        ({"env": {"name": "point"}}, "no reward"),
        ({"agent": {"buffer": 10}}, "sequences of 8 need"),
    ):
        with pytest.raises(ConfigError, match=match):
            kind.preset("debug", over)
