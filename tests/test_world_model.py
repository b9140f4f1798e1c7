"""The world model: episode files, sequence windows, the RSSM's recurrence and information flow,
open-loop evaluation indices, latent usage, and the commands end to end."""

import json
import math

import numpy as np
import pytest
import torch

from elbokit import recipes
from elbokit.cli import main
from elbokit.data import DataError
from elbokit.data.episode_files import save_episode
from elbokit.data.episodes import SequenceBatch, load_episodes
from elbokit.evaluate.world_model import latent_usage, open_loop
from elbokit.models.world_model import WorldModel, WorldModelConfig
from elbokit.objectives import WorldModelLoss, WorldModelObjective
from elbokit.train import Trainer
from elbokit.train.learner import check_gradients
from references import build, weights

SMALL = WorldModelConfig(
    obs_shape=(1, 16, 16), action_dim=3, deter=24, hidden=20, groups=3, classes=5,
    channels=(4, 8), embed=12, head_hidden=(16,),
)  # fmt: skip


def _episode(rng, t: int, size: int = 16, actions: int = 3) -> dict:
    """A bright square moving left or right by its action: a tiny, learnable environment."""
    pos = int(rng.integers(2, size - 4))
    image = np.zeros((t, 1, size, size), np.uint8)
    action = np.zeros((t, actions), np.float32)
    for i in range(t):
        if i:
            a = int(rng.integers(actions))
            action[i, a] = 1
            pos = int(np.clip(pos + a - 1, 0, size - 3))
        image[i, 0, 6:9, pos : pos + 3] = 255
    reward = np.r_[0, rng.normal(size=t - 1)].astype(np.float32)
    discount = np.ones(t, np.float32)
    discount[-1] = 0
    return {"image": image, "action": action, "reward": reward, "discount": discount}


def _folder(tmp_path, lengths=(20, 30, 12, 25, 40, 9, 33, 21), seed=0):
    rng = np.random.default_rng(seed)
    for i, t in enumerate(lengths):
        save_episode(tmp_path / f"episode-{i:06d}.npz", _episode(rng, t))
    return tmp_path


# --- episode files -----------------------------------------------------------------------------


def test_episode_files_round_trip_and_split_by_episode(tmp_path):
    data = load_episodes(_folder(tmp_path), seq_len=10, test_fraction=0.25, seed=0)
    assert len(data.train) + len(data.test) == 8 and len(data.test) == 2
    assert data.image_shape == (1, 16, 16) and data.action_dim == 3
    raw = np.load(tmp_path / "episode-000001.npz")
    lengths = {len(e["image"]) for e in data.train + data.test}
    assert lengths == {20, 30, 12, 25, 40, 9, 33, 21}
    ep = next(e for e in data.train + data.test if len(e["image"]) == 30)
    assert torch.equal(ep["image"], torch.from_numpy(raw["image"]))
    splits = {
        tuple(
            len(e["image"])
            for e in load_episodes(tmp_path, seq_len=10, test_fraction=0.25, seed=s).test
        )
        for s in range(6)
    }
    assert len(splits) > 1  # the seed chooses the held-out episodes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("reward"), "missing reward"),
        (lambda e: e.__setitem__("image", e["image"].astype(np.float32)), "expected uint8"),
        (lambda e: e["reward"].__setitem__(3, np.nan), r"reward\[3\] is nan"),
        (lambda e: e["discount"].__setitem__(4, 1.5), r"discount\[4\] is 1.5"),
        (lambda e: e.__setitem__("action", e["action"][:-1]), "action has shape"),
        (lambda e: e.__setitem__("image", e["image"][:1]), "at least 2"),
    ],
)
def test_bad_episodes_are_named_with_the_problem(tmp_path, change, message):
    ep = _episode(np.random.default_rng(0), 12)
    change(ep)
    with pytest.raises(DataError, match=message):
        save_episode(tmp_path / "episode-000000.npz", ep)
    np.savez(tmp_path / "episode-000000.npz", **ep)  # written by someone else: caught on load
    with pytest.raises(DataError, match="episode-000000.npz.*" + message):
        load_episodes(tmp_path, seq_len=4)


def test_corrupt_missing_and_mismatched_episode_folders(tmp_path):
    with pytest.raises(DataError, match="no such folder.*elbokit collect"):
        load_episodes(tmp_path / "nothing", seq_len=4)
    with pytest.raises(DataError, match="no episode-"):
        load_episodes(tmp_path, seq_len=4)
    _folder(tmp_path, lengths=(20, 20))
    (tmp_path / "episode-000002.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="episode-000002.npz: not a readable episode"):
        load_episodes(tmp_path, seq_len=4)
    ep = _episode(np.random.default_rng(1), 20, size=8)
    np.savez(tmp_path / "episode-000002.npz", **ep)
    with pytest.raises(DataError, match="episode-000002.npz: image shape"):
        load_episodes(tmp_path, seq_len=4)
    (tmp_path / "episode-000002.npz").unlink()
    with pytest.raises(DataError, match="seq_len=50"):
        load_episodes(tmp_path, seq_len=50)


def test_windows_cover_every_step_and_always_the_last(tmp_path):
    data = load_episodes(_folder(tmp_path), seq_len=10, seed=0)
    for which in ("train", "test"):
        wins = data.windows(which)
        for e, ep in enumerate(data.split(which)):
            t = len(ep["image"])
            starts = [s for i, s in wins if i == e]
            if t < 10:
                assert starts == []  # too short: left out
                continue
            assert len(starts) == math.ceil(t / 10)
            covered = set().union(*(range(s, s + 10) for s in starts))
            assert covered == set(range(t))  # every step, the terminal one included


def test_batches_are_seeded_and_resume_mid_epoch(tmp_path):
    data = load_episodes(_folder(tmp_path), seq_len=8, seed=0)
    full = list(data.batches("train", 3, seed=5, epoch=2))
    again = list(data.batches("train", 3, seed=5, epoch=2, start=2))
    assert len(full) == data.num_batches("train", 3) and len(again) == len(full) - 2
    for a, b in zip(full[2:], again, strict=True):
        assert torch.equal(a.image, b.image) and torch.equal(a.action, b.action)
    other = next(data.batches("train", 3, seed=5, epoch=3))
    assert not torch.equal(other.image, full[0].image)
    b = full[0]
    assert b.image.shape == (3, 8, 1, 16, 16) and b.image.dtype == torch.float32
    assert 0 <= b.image.min() and b.image.max() <= 1
    halves = b.tensor_split(2)
    assert [len(h) for h in halves] == [2, 1]
    assert torch.equal(torch.cat([h.reward for h in halves]), b.reward)


# --- the RSSM ----------------------------------------------------------------------------------


def _batch(b=4, t=7, seed=0) -> SequenceBatch:
    rng = np.random.default_rng(seed)
    eps = [_episode(rng, t) for _ in range(b)]
    return SequenceBatch(
        torch.from_numpy(np.stack([e["image"] for e in eps])).float() / 255,
        torch.from_numpy(np.stack([e["action"] for e in eps])),
        torch.from_numpy(np.stack([e["reward"] for e in eps])),
        torch.from_numpy(np.stack([e["discount"] for e in eps])),
    )


def _gru(x, h, cell: torch.nn.GRUCell):
    """The GRU equations (Cho et al. 2014, PyTorch's gate order r, z, n), written out."""
    wi, wh, bi, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    gi, gh = x @ wi.T + bi, h @ wh.T + bh
    (ir, iz, inn), (hr, hz, hn) = gi.chunk(3, -1), gh.chunk(3, -1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(inn + r * hn)
    return (1 - z) * n + z * h


def test_observe_follows_the_rssm_equations():
    torch.manual_seed(0)
    model = WorldModel(SMALL).double()
    batch = _batch()
    batch = SequenceBatch(
        *(getattr(batch, k).double() for k in ("image", "action", "reward", "discount"))
    )
    r = model.rssm
    embed = model.embed(batch.image)
    state = r.observe(embed, batch.action, generator=torch.Generator().manual_seed(3))
    # replay with the drawn z's: h_t = GRU(h_{t-1}, elu(W_z z_{t-1} + W_a a_t + b)), h_{-1} = z_{-1} = 0
    h = torch.zeros(4, SMALL.deter, dtype=torch.float64)
    z = torch.zeros(4, r.latent.z_size, dtype=torch.float64)
    for t in range(batch.image.shape[1]):
        x = torch.nn.functional.elu(
            z @ r.in_z.weight.T + batch.action[:, t] @ r.in_a.weight.T + r.in_a.bias
        )
        h = _gru(x, h, r.gru)
        torch.testing.assert_close(state.h[:, t], h)
        # prior from h alone; posterior from h and the image embedding
        prior = torch.log_softmax(r.prior_net(h).unflatten(-1, (3, 5)), -1)
        mixed = torch.log(0.99 * prior.exp() + 0.01 / 5)
        torch.testing.assert_close(state.prior[:, t], mixed)
        hid = torch.nn.functional.elu(
            h @ r.post_h.weight.T + embed[:, t] @ r.post_e.weight.T + r.post_e.bias
        )
        post = torch.log_softmax(
            (hid @ r.post_out.weight.T + r.post_out.bias).unflatten(-1, (3, 5)), -1
        )
        torch.testing.assert_close(state.posterior[:, t], torch.log(0.99 * post.exp() + 0.01 / 5))
        z = state.z[:, t]
        assert torch.equal(z.unflatten(-1, (3, 5)).sum(-1), torch.ones(4, 3, dtype=z.dtype))


def test_the_prior_never_sees_the_current_image_and_the_posterior_does():
    torch.manual_seed(0)
    model = WorldModel(SMALL)
    batch = _batch()
    changed = SequenceBatch(batch.image.clone(), batch.action, batch.reward, batch.discount)
    changed.image[:, 4] = 1 - changed.image[:, 4]
    outs = [model.rssm.observe(model.embed(b.image), b.action, generator=torch.Generator().manual_seed(0))
            for b in (batch, changed)]  # fmt: skip
    torch.testing.assert_close(outs[0].prior[:, :5], outs[1].prior[:, :5])  # steps 0..4: same
    assert not torch.allclose(outs[0].posterior[:, 4], outs[1].posterior[:, 4])
    assert not torch.allclose(outs[0].prior[:, 5], outs[1].prior[:, 5])  # seen through z_4


def test_every_part_learns_from_the_loss_through_the_straight_through_sample():
    torch.manual_seed(0)
    model = WorldModel(SMALL)
    batch = _batch()
    out = model(batch)
    terms = WorldModelObjective()(model, batch).terms
    assert set(terms) >= {"obs", "reward", "discount", "kl", "obs_mse"}
    # the image term alone reaches the encoder only through the straight-through z
    image_nll = (0.5 * (out["obs"] - out["obs_mean"]).pow(2)).sum()
    image_nll.backward()
    assert model.encoder.head.weight.grad.abs().sum() > 0
    assert model.rssm.post_out.weight.grad.abs().sum() > 0
    assert model.rssm.prior_net[0].weight.grad is None  # the prior is trained by the KL only


def test_objective_is_the_loss_of_the_models_outputs_with_soft_discount_targets():
    # The reference: DreamerV2's world-model loss (Hafner et al. 2021, eq. 2) written out from the
    # model's outputs with torch.distributions, for the documented defaults and for other settings.
    from torch.distributions import Independent, Normal, OneHotCategorical
    from torch.distributions.kl import kl_divergence
    from torch.nn.functional import logsigmoid

    from elbokit.objectives import KLBalance

    def by_hand(o, batch, scales, alpha, free, gamma):
        def cat(log_probs):  # (B, T, G, K) -> a distribution over the G one-hot groups
            return Independent(OneHotCategorical(logits=log_probs), 1)

        image = -Normal(o["obs_mean"], 1.0).log_prob(batch.image - 0.5).sum((-3, -2, -1))
        reward = -Normal(o["reward_mean"], 1.0).log_prob(batch.reward)
        g = gamma * batch.discount  # soft targets: gamma (1 - terminal), 0.99 on most steps
        logit = o["discount_logits"]
        discount = -(g * logsigmoid(logit) + (1 - g) * logsigmoid(-logit))
        post, prior = o["posterior"], o["prior"]
        dyn = kl_divergence(cat(post.detach()), cat(prior)).mean().clamp_min(free)  # trains prior
        rep = kl_divergence(cat(post), cat(prior.detach())).mean().clamp_min(free)  # posterior
        parts = {"obs": image.mean(), "reward": reward.mean(), "discount": discount.mean(),
                 "kl": alpha * dyn + (1 - alpha) * rep}  # fmt: skip
        terms = {**{k: v.detach() for k, v in parts.items() if k != "kl"},
                 "kl": kl_divergence(cat(post), cat(prior)).mean().detach(),
                 "kl/balanced": parts["kl"].detach(), "kl/dyn": dyn.detach(), "kl/rep": rep.detach(),
                 "obs_mse": ((batch.image - 0.5) - o["obs_mean"]).pow(2).mean().detach()}  # fmt: skip
        return sum(scales[k] * v for k, v in parts.items()), terms

    torch.manual_seed(0)
    model = WorldModel(SMALL)
    params = list(model.parameters())
    batch = _batch()
    ones = dict.fromkeys(("obs", "reward", "discount", "kl"), 1.0)
    other = {"obs": 0.5, "reward": 2.0, "discount": 3.0, "kl": 0.7}
    cases = [
        # the documented defaults: every scale 1, alpha 0.8, 1 free nat on the mean, gamma 0.99
        (WorldModelObjective(), (ones, 0.8, 1.0, 0.99)),
        # free nats below this model's KL (about 0.05 nats), so the KL's gradient routing counts
        (WorldModelObjective(WorldModelLoss(other, KLBalance(0.8, free_nats=0.01)), gamma=0.97),
         (other, 0.8, 0.01, 0.97)),
    ]  # fmt: skip
    for objective, setting in cases:
        torch.manual_seed(1)  # the same straight-through samples in both forward passes
        got = objective(model, batch)
        torch.manual_seed(1)
        want_loss, want_terms = by_hand(model(batch), batch, *setting)
        torch.testing.assert_close(got.loss, want_loss)
        assert got.terms.keys() == want_terms.keys()
        for k, v in want_terms.items():
            torch.testing.assert_close(got.terms[k], v, msg=lambda m, k=k: f"{k}: {m}")
        got_grads = torch.autograd.grad(got.loss, params, allow_unused=True)
        want_grads = torch.autograd.grad(want_loss, params, allow_unused=True)
        for p, a, b in zip(params, got_grads, want_grads, strict=True):
            a, b = (torch.zeros_like(p) if t is None else t for t in (a, b))
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the logged kl is the true KL, not the clipped value the loss weighs (here 1 free nat)
    torch.manual_seed(1)
    default = WorldModelObjective()(model, batch).terms
    assert default["kl/balanced"].item() == 1.0 and 0 < default["kl"].item() < 0.5
    with pytest.raises(ValueError, match="gamma"):
        WorldModelObjective(gamma=0.0)
    with pytest.raises(ValueError, match=r"observations of shape \(1, 8, 8\)"):
        model(
            SequenceBatch(
                torch.zeros(2, 3, 1, 8, 8),
                batch.action[:2, :3],
                batch.reward[:2, :3],
                batch.discount[:2, :3],
            )
        )


# --- evaluation --------------------------------------------------------------------------------


class _Oracle(torch.nn.Module):
    """Imagines the true future (or repeats the last context frame): checks the indexing."""

    def __init__(self, data, repeat_last=False):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.repeat_last = repeat_last
        self.truth = None

    def open_loop(self, batch, context, generator=None, sample=True):
        future = batch.image[:, context:]
        if self.repeat_last:
            future = batch.image[:, context - 1 : context].expand_as(future)
        return {"obs": future, "reward": batch.reward[:, context:], "discount": batch.discount[:, context:],
                "prior": None}  # fmt: skip


def test_open_loop_errors_against_an_oracle_and_the_copy_last_baseline(tmp_path):
    data = load_episodes(_folder(tmp_path), seq_len=10, seed=0)
    perfect, _ = open_loop(_Oracle(data), data, context=3, horizon=6, sequences=100)
    assert perfect.image_mse == [0.0] * 6 and perfect.reward_mae == [0.0] * 6
    assert perfect.discount_mae == [0.0] * 6
    copy, kept = open_loop(_Oracle(data, repeat_last=True), data, context=3, horizon=6, keep=2)
    assert copy.image_mse == pytest.approx(copy.copy_last_mse, abs=0)
    # the baseline by hand on the same windows
    wins = data.windows("test", 9)
    by_hand = [
        np.mean([((data.test[e]["image"][s + 3 + k].float() - data.test[e]["image"][s + 2].float()) / 255).pow(2).mean().item()
                 for e, s in wins])
        for k in range(6)
    ]  # fmt: skip
    assert copy.copy_last_mse == pytest.approx(by_hand, rel=1e-5)
    assert copy.copy_last_mse[-1] > 0  # the square moves
    assert kept["truth"].shape == (2, 9, 1, 16, 16) and kept["imagined"].shape == (2, 6, 1, 16, 16)
    with pytest.raises(ValueError, match="context \\+ horizon = 99"):
        open_loop(_Oracle(data), data, context=50, horizon=49)


class _FixedPosterior(torch.nn.Module):
    """Posteriors known in advance: group 0 always class 2, group 1 uniform over classes 0-3."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    @property
    def rssm(self):
        return self

    def embed(self, image):
        return image

    def observe(self, embed, action, generator=None):
        b, t = embed.shape[:2]
        logp = torch.full((b, t, 2, 5), -1e9)
        logp[:, :, 0, 2] = 0
        logp[:, :, 1, :4] = math.log(0.25)
        idx = torch.arange(b * t).reshape(b, t) % 4  # argmax of group 1 forced to cycle
        logp[:, :, 1].scatter_(-1, idx[..., None], math.log(0.25) + 1e-6)
        return type("S", (), {"posterior": logp})()


def test_latent_usage_of_known_posteriors(tmp_path):
    data = load_episodes(_folder(tmp_path), seq_len=10, seed=0)
    usage = latent_usage(_FixedPosterior(), data)
    assert usage["perplexity"] == pytest.approx([1.0, 4.0], rel=1e-4)
    assert usage["used"] == [1, 4] and usage["classes"] == 5


# --- the trainer and the commands --------------------------------------------------------------


def test_a_resumed_world_model_run_ends_with_the_same_weights(tmp_path):
    _folder(tmp_path / "eps")
    wm = recipes.get_recipe("world-model")
    cfg = wm.preset("debug", {
        "data": {"source": str(tmp_path / "eps"), "seq_len": 8},
        "train": {"epochs": 2, "checkpoint_every": 3, "progress": False, "threads": 1,
                  "grad_clip": 1.0},
    })  # fmt: skip

    def fresh():
        built = build(wm, cfg, tmp_path)
        return built.data, built.learner

    data, a = fresh()
    Trainer(cfg.train, tmp_path / "a").fit(a, data)
    data, b = fresh()
    Trainer(cfg.train, tmp_path / "b").fit(b, data, stop_at=4)
    data, b = fresh()
    Trainer(cfg.train, tmp_path / "b").fit(b, data, resume=True)
    wa, wb = weights(a.model), weights(b.model)
    for k, va in wa.items():
        assert torch.equal(va, wb[k]), k


def test_gradient_clipping_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = WorldModel(SMALL)
    WorldModelObjective()(model, _batch()).loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    check_gradients(model.named_parameters(), clip=0.5)
    mine = [p.grad for p in model.parameters() if p.grad is not None]
    ref = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for r, g in zip(ref, grads, strict=True):
        r.grad = g
    total = torch.nn.utils.clip_grad_norm_(ref, 0.5)
    assert total > 0.5  # the clip did something
    for m, r in zip(mine, ref, strict=True):
        torch.testing.assert_close(m, r.grad)


def test_train_world_model_debug_end_to_end_with_report(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    out = tmp_path / "run"
    (out / "episodes").mkdir(parents=True)  # a collection that was interrupted: no meta.json
    (out / "episodes" / "episode-000099.npz").write_bytes(b"half written")
    assert main(["train", "world-model", "--preset", "debug", "--out", str(out), "--no-progress",
                 "--threads", "1"]) == 0  # fmt: skip
    assert not (out / "episodes" / "episode-000099.npz").exists()  # collected afresh
    saved = json.loads((out / "config.json").read_text())
    assert saved["kind"] == "world-model" and saved["config"]["model"]["groups"] == 4
    result = json.loads((out / "eval.json").read_text())
    ol = result["open_loop"]
    assert len(ol["image_mse"]) == 6 and all(v >= 0 for v in ol["copy_last_mse"])
    assert len(result["latent_usage"]["perplexity"]) == 4
    for name in ("open_loop.png", "open_loop.gif", "open_loop_errors.png", "curves.png", "kl_balance.png",
                 "latent_usage.png", "report.html"):  # fmt: skip
        assert (out / "report" / name).stat().st_size > 0
    from PIL import Image

    with Image.open(out / "report" / "open_loop.gif") as gif:
        assert gif.n_frames == 6
    assert "image/gif" in (out / "report" / "report.html").read_text()
    # eval and report dispatch on the run's kind
    assert main(["eval", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert "copy-last-frame" in capsys.readouterr().out
    assert main(["train", "world-model", "--resume", str(out), "--lr", "0.1"]) == 2
    assert "--resume continues" in capsys.readouterr().err
    other = tmp_path / "other"
    args = ["train", "world-model", "--preset", "debug", "--data", str(out / "episodes"),
            "--horizon", "500", "--out", str(other)]  # fmt: skip
    assert main(args) == 2
    assert "--context + --horizon = 503" in capsys.readouterr().err
    assert not (other / "state.json").exists()  # nothing trained


def test_collect_writes_valid_episodes_from_gymnasium(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    out = tmp_path / "eps"
    assert main(["collect", "--episodes", "2", "--policy", "random", "--image-size", "16",
                 "--max-steps", "30", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    meta = json.loads((out / "meta.json").read_text())
    assert meta["env"] == "CartPole-v1" and meta["episodes"] == 2
    for f in sorted(out.glob("episode-*.npz")):
        ep = np.load(f)
        t = len(ep["image"])
        assert ep["image"].shape == (t, 3, 16, 16) and ep["image"].dtype == np.uint8
        assert (ep["action"][0] == 0).all() and (ep["action"][1:].sum(1) == 1).all()  # one-hot
        assert ep["reward"][0] == 0 and (ep["reward"][1:] == 1).all()  # CartPole: +1 per step
        # terminal only at the end, and only if the pole fell before the time limit
        assert (ep["discount"][:-1] == 1).all()
        if t < 31:  # ended before the time limit: the pole fell
            assert ep["discount"][-1] == 0
    assert main(["collect", "--episodes", "1", "--out", str(out), "--no-progress"]) == 2
    assert "already holds 2 episode files" in capsys.readouterr().err
    assert len(list(out.glob("episode-*.npz"))) == 2  # nothing overwritten
    assert main(["collect", "--env", "Pendulum-v1", "--out", str(tmp_path / "p")]) == 2
    assert "no scripted policy for Pendulum-v1" in capsys.readouterr().err
    assert (
        main(
            ["collect", "--env", "NoSuchEnv-v0", "--policy", "random", "--out", str(tmp_path / "q")]
        )
        == 2
    )
    assert "NoSuchEnv" in capsys.readouterr().err
