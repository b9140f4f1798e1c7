"""Skill discovery: the environments, the replay, SAC against a soft-optimal policy known in closed
form, the skill dynamics against torch's mixture, planning with an exact model, and the kind of
run end to end (train, resume exactly, evaluate, report)."""

import json
import math

import numpy as np
import pytest
import torch

from elbokit.data.replay import Replay
from elbokit.evaluate.skills import collapse_findings, coverage, plan_to_goals
from elbokit.models.envs import GymBatch, PointBatch, make_env, point_env_class
from elbokit.models.sac import SAC, SACConfig
from elbokit.models.skills import DADS, DIAYN, RunningNorm, SkillConfig, SkillDynamics
from elbokit.train.learner import Learner, make_adam
from references import assert_same_checkpoints


def test_point_batch_matches_the_gymnasium_env_and_stays_in_the_box():
    env = PointBatch(3, horizon=12, step_size=0.25)
    single = [point_env_class()(horizon=12, step_size=0.25) for _ in range(3)]
    obs = env.reset()
    for e in single:
        e.reset(seed=0)
    g = torch.Generator().manual_seed(0)
    for t in range(12):
        a = 3 * torch.rand(3, 2, generator=g) - 1.5  # beyond [-1, 1]: clipped
        tr = env.step(a)
        for i, e in enumerate(single):
            o, r, term, trunc, _ = e.step(a[i].numpy())
            np.testing.assert_allclose(tr.next_obs[i].numpy(), o, atol=1e-6)
            assert trunc == bool(tr.truncated[i]) == (t == 11) and not term and r == 0
        assert tr.next_obs.abs().max() <= 1.0
    # the episode ended: the next observation is a fresh start at the origin
    assert torch.equal(tr.obs, torch.zeros(3, 2)) and env.episodes == 3
    assert obs.shape == (3, 2)
    with pytest.raises(ValueError, match=r"actions have shape \(2, 2\); expected \(3, 2\)"):
        env.step(torch.zeros(2, 2))


def test_gym_batch_scales_actions_and_rejects_what_it_cannot_drive():
    env = GymBatch("Pendulum-v1", 2, seed=1, horizon=5)
    obs = env.reset()
    assert obs.shape == (2, 3) and env.act_dim == 1
    env.step(torch.tensor([[1.0], [-0.5]]))  # [-1, 1] -> the space's [-2, 2] N m
    assert [float(e.unwrapped.last_u) for e in env.envs] == [2.0, -1.0]
    for _ in range(4):
        tr = env.step(torch.ones(2, 1))
    assert tr.truncated.all() and not tr.terminated.any()
    env.close()
    with pytest.raises(ValueError, match="Box action space"):
        GymBatch("CartPole-v1", 1)
    with pytest.raises(ValueError, match="did you mean 'Pendulum-v1'"):
        make_env("Pendulum-v9", 1)


def test_replay_wraps_around_and_round_trips_its_state():
    buf = Replay(5, {"obs": 2, "flag": 1})
    for i in range(3):
        buf.add(obs=torch.full((2, 2), float(i)), flag=torch.full((2,), float(i)))
    assert len(buf) == 5 and buf.ptr == 1
    assert buf.data["obs"][:, 0].tolist() == [2.0, 0.0, 1.0, 1.0, 2.0]  # row 0 overwritten
    tensors, meta = buf.state()
    other = Replay(5, {"obs": 2, "flag": 1})
    other.load_state(tensors, json.loads(json.dumps(meta)))
    assert torch.equal(other.data["obs"], buf.data["obs"]) and other.ptr == buf.ptr
    with pytest.raises(ValueError, match="does not fit"):
        Replay(6, {"obs": 2, "flag": 1}).load_state(tensors, meta)
    with pytest.raises(ValueError, match=r"obs has shape \(2, 3\); expected"):
        buf.add(obs=torch.zeros(2, 3), flag=torch.zeros(2))


def test_running_norm_matches_the_moments_of_everything_seen():
    norm = RunningNorm(3)
    chunks = [torch.randn(n, 3) * 2 + 1 for n in (5, 17, 1, 40)]
    for c in chunks:
        norm.observe(c)
    allx = torch.cat(chunks)
    torch.testing.assert_close(norm.mean, allx.mean(0))
    torch.testing.assert_close(norm.std, allx.std(0, unbiased=False))


def test_skill_dynamics_log_prob_is_the_mixture_density_of_the_raw_change():
    torch.manual_seed(0)
    dyn = SkillDynamics(obs_dim=2, skill_dim=3, hidden=(16,), components=3)
    dyn.obs_norm.observe(torch.randn(50, 2) * 3)
    dyn.delta_norm.observe(torch.randn(50, 2) * 0.1 + 0.05)
    s, z, sn = torch.randn(7, 2), torch.rand(7, 3) * 2 - 1, torch.randn(7, 2)
    logits, mean, log_std = dyn._params(s, z)
    m, sd = dyn.delta_norm.mean, dyn.delta_norm.std
    # the raw change d = m + sd * y: the same mixture with means and scales mapped
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits),
        torch.distributions.Independent(
            torch.distributions.Normal(mean * sd + m, log_std.exp() * sd), 1
        ),
    )
    torch.testing.assert_close(dyn.log_prob(s, z, sn), mix.log_prob(sn - s))
    torch.testing.assert_close(dyn.predict(s, z), s + mix.mean)


class _Bandit(Learner):
    def __init__(self, sac):
        super().__init__()
        self.sac = sac
        self.modules = sac.modules()
        self.optimizers = sac.optimizers(make_adam)


def test_sac_finds_the_soft_optimal_policy_of_a_bandit():
    # one step, reward r(a) = -5 (a - 0.3)^2, alpha = 0.1: the soft-optimal policy is
    # pi(a) ~ exp(r(a) / alpha) = N(0.3, 0.1^2) (inside (-1, 1), where tanh barely bends it)
    torch.manual_seed(0)
    sac = SAC(SACConfig(hidden=(64, 64), lr=3e-3, alpha=0.1), n_in=1, act_dim=1)
    learner = _Bandit(sac)
    for step in range(1500):
        a = 2 * torch.rand(256, 1) - 1
        batch = {"x": torch.zeros(256, 1), "next_x": torch.zeros(256, 1), "action": a,
                 "terminated": torch.ones(256, 1)}  # fmt: skip
        sac.update(batch, -5 * (a[:, 0] - 0.3) ** 2, step, learner.update)
    with torch.no_grad():
        draws, _ = sac.actor(torch.zeros(20_000, 1))
    assert float(draws.mean()) == pytest.approx(0.3, abs=0.03)
    assert float(draws.std()) == pytest.approx(0.1, abs=0.02)
    # the critic learned the reward; the target critic trails it
    with torch.no_grad():
        grid = torch.linspace(-0.5, 0.8, 9)[:, None]
        q = sac.critic(torch.cat([torch.zeros(9, 1), grid], -1))
    torch.testing.assert_close(q, (-5 * (grid[:, 0] - 0.3) ** 2).expand(2, 9), atol=0.05, rtol=0)


def test_sac_tunes_alpha_to_the_one_whose_soft_optimal_policy_has_the_target_entropy():
    # the bandit above: pi ~ N(0.3, alpha / 10) has entropy 0.5 log(2 pi e alpha / 10); for a
    # target of -1 nats that is alpha = 10 exp(-2) / (2 pi e) = 0.0792
    torch.manual_seed(0)
    sac = SAC(SACConfig(hidden=(64, 64), lr=3e-3, alpha=0.5, tune_alpha=True, target_entropy=-1.0),
              n_in=1, act_dim=1)  # fmt: skip
    learner = _Bandit(sac)
    for step in range(2000):
        a = 2 * torch.rand(256, 1) - 1
        batch = {"x": torch.zeros(256, 1), "next_x": torch.zeros(256, 1), "action": a,
                 "terminated": torch.ones(256, 1)}  # fmt: skip
        terms = sac.update(batch, -5 * (a[:, 0] - 0.3) ** 2, step, learner.update)
    expected = 10 * math.exp(-2) / (2 * math.pi * math.e)
    assert terms["sac/alpha"] == pytest.approx(expected, rel=0.25)
    assert terms["sac/entropy"] == pytest.approx(-1.0, abs=0.25)


def test_diayn_reward_is_recomputed_from_the_current_discriminator():
    diayn = DIAYN(SkillConfig(skills=4, hidden=(8,)), obs_dim=2)
    batch = {"obs": torch.randn(6, 2), "next_obs": torch.randn(6, 2),
             "skill": diayn.sample_skills(6)}  # fmt: skip
    before = diayn.reward(batch)
    with torch.no_grad():
        for p in diayn.disc.parameters():
            p.add_(1.0)
    assert not torch.allclose(before, diayn.reward(batch))
    # which state it scores: s_t+1 by default, s_t on request
    cur = DIAYN(SkillConfig(skills=4, hidden=(8,), score="current"), obs_dim=2)
    cur.disc.load_state_dict(diayn.disc.state_dict())
    z = batch["skill"].argmax(-1)
    torch.testing.assert_close(cur.reward(batch), torch.log_softmax(diayn.disc(batch["obs"]), -1)[torch.arange(6), z] + math.log(4))  # fmt: skip
    no_k = DIAYN(SkillConfig(skills=4, hidden=(8,), log_k_bonus=False), obs_dim=2)
    no_k.disc.load_state_dict(diayn.disc.state_dict())
    torch.testing.assert_close(no_k.reward(batch) + math.log(4), diayn.reward(batch))


def test_dads_reward_with_and_without_the_true_skill():
    torch.manual_seed(0)
    cfg = SkillConfig(method="dads", skill_dim=2, hidden=(16,), prior_samples=7)
    dads = DADS(cfg, obs_dim=2)
    batch = {
        "obs": torch.randn(5, 2),
        "next_obs": torch.randn(5, 2),
        "skill": dads.sample_skills(5),
    }
    assert float(dads.reward(batch).max()) <= math.log(8) + 1e-6


def test_collapse_is_named():
    conf = torch.eye(4)
    conf[1] = torch.tensor([0.0, 0.4, 0.6, 0.0])
    found = collapse_findings(confusion=conf, k=4, accuracy=0.85)
    assert found == ["skill 1 alike with skill 2: 60% of their states are taken for it"]
    found = collapse_findings(confusion=torch.full((4, 4), 0.25), k=4, accuracy=0.25)
    assert found[0].startswith("the discriminator is near chance: accuracy 0.250")
    finals = [[0.0, 0.0], [0.5, 0.5], [0.51, 0.5]]
    assert collapse_findings(finals=finals, scale=2.0) == [
        "skills 1 and 2 end in the same place (final states 0.01 apart)"
    ]
    assert (
        coverage(torch.tensor([[-1.0, -1.0], [0.99, 0.99], [0.98, 0.97]]), ([-1, -1], [1, 1]))
        == 2 / 400
    )


def test_planning_with_an_exact_skill_model_reaches_goals_random_skills_do_not():
    # a skill is an action: the point moves by 0.1 z per step, exactly what the model predicts
    class Exact:
        def predict(self, s, z):
            return (s + 0.1 * z).clamp(-1, 1)

    goals = (2 * torch.rand(40, 2, generator=torch.Generator().manual_seed(0)) - 1) * 0.8
    r = plan_to_goals(lambda n: PointBatch(n, horizon=30), lambda obs, z: z, Exact(), goals,
                      skill_dim=2, horizon=30, plan_every=10, candidates=512,
                      generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert r["planned"]["success_rate"] >= 0.9
    assert r["random"]["success_rate"] < 0.3
    assert r["planned"]["mean_final_distance"] < r["random"]["mean_final_distance"] / 3


@pytest.mark.parametrize("method", ["diayn", "dads"])
def test_train_skills_debug_resumes_exactly_and_reports(tmp_path, method):
    from safetensors.torch import load_file

    from elbokit import recipes

    kind = recipes.get_recipe("skills")
    quiet = lambda *a: None  # noqa: E731
    cfg = kind.preset("debug", {"skill": {"method": method, "prior_samples": 10},
                                "train": {"progress": False, "checkpoint_every": 40},
                                "evaluate": {"eval_episodes": 0}})  # fmt: skip
    a = recipes.train(kind, cfg, out=tmp_path / "a", say=quiet)
    b = recipes.train(kind, cfg, out=tmp_path / "b", stop_at=70, say=quiet)
    recipes.train(kind, resume=b, say=quiet)
    last_a = json.loads((a / "state.json").read_text())["checkpoint"]
    last_b = json.loads((b / "state.json").read_text())["checkpoint"]
    assert last_a == last_b
    names = ("actor", "critic", "critic_target", "extra",
             "discriminator" if method == "diayn" else "dynamics")  # fmt: skip
    assert_same_checkpoints(a, b, names)
    assert "replay.obs" in load_file(a / last_a / "extra.safetensors")
    lines = []
    result = recipes.evaluate(a, say=lines.append)
    keys = ("mi_bound", "accuracy", "accuracy_final", "effective_skills", "coverage") if method == "diayn" \
        else ("dynamics_ll", "forward_mi_bound", "coverage", "planning")  # fmt: skip
    assert all(k in result for k in keys)
    assert any(("MI bound" in line) or ("forward MI" in line) for line in lines)
    page = recipes.report(a, say=quiet)
    out = page.parent
    assert (out / "trajectories.png").stat().st_size > 1000
    assert (out / "skills.gif").read_bytes()[:6] == b"GIF89a"
    if method == "dads":
        assert (out / "planning.png").exists()
