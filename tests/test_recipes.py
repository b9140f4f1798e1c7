"""Kinds of run through the recipe registry, without the CLI: the linear-Gaussian kind's identity,
exact resume of every kind of state (a stream with a growing buffer, several optimizers, none),
and precision chosen by measurement."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from elbokit import recipes
from elbokit.config import ConfigError
from elbokit.data.stream import StepStream
from elbokit.train import Evaluation, Learner, TrainConfig, Trainer
from elbokit.train import settings as run_settings
from elbokit.train.settings import PrecisionError, resolve_precision
from references import assert_same, build, weights

QUIET = lambda *a: None  # noqa: E731
LG = recipes.get_recipe("linear-gaussian")


def _lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "data",
    [{}, {"source": "digits", "project": 10}],
    ids=["drawn-from-a-known-model", "digits-projected"],
)
def test_linear_gaussian_identity_holds_at_every_logged_step(tmp_path, data):
    cfg = LG.preset("debug", {"data": data, "train": {"progress": False, "log_every": 1}})
    run = recipes.train(LG, cfg, out=tmp_path / "run", say=QUIET)
    lines = _lines(run)
    checked = 0
    for line in lines:
        for split in ("train", "test"):
            if f"{split}/exact/log_px" in line:
                log_px, elbo = line[f"{split}/exact/log_px"], line[f"{split}/exact/elbo"]
                kl = line[f"{split}/exact/kl_posterior"]
                assert abs(elbo + kl - log_px) <= 1e-6 * abs(log_px), line
                assert kl >= -1e-9 and elbo <= log_px + 1e-9  # the gap is a KL, >= 0
                checked += 1
    assert checked == len(lines) and checked > 10
    result = json.loads((run / "eval.json").read_text())
    assert result["identity_max_relative_residual"] <= 1e-6
    # importance sampling (the VAE kind's estimator) agrees with the exact value, biased low
    assert abs(result["is_log_px"] - result["log_px"]) <= 4 * result["is_stderr"] + 1e-3
    for png in ("identity.png", "importance_sampling.png", "curves.png"):
        assert (run / "report" / png).stat().st_size > 10_000


def test_linear_gaussian_learns_towards_the_maximum_likelihood_fit(tmp_path):
    """The ELBO trains the model's own log p(x) up towards the closed-form maximum-likelihood
    fit (Tipping & Bishop), which no fit of this shape can exceed on its training data."""
    cfg = LG.preset("debug", {"train": {"progress": False, "epochs": 30},
                              "evaluate": {"eval_k": 0}})  # fmt: skip
    built = build(LG, cfg, tmp_path)
    model, x = built.learner.model, built.data.train
    with torch.no_grad():
        start = model.log_marginal(x).mean().item()
    Trainer(built.config.train, tmp_path / "run").fit(built.learner, built.data)
    from elbokit.recipes.linear_gaussian import _with_params

    with torch.no_grad():
        fitted = model.log_marginal(x).mean().item()
        ml_model = _with_params(model, *model.maximum_likelihood(x))
        ml = ml_model.log_marginal(x).mean().item()
    assert start < fitted <= ml + 1e-9
    assert ml - fitted < 0.2 * (ml - start)  # most of the way there
    # the closed form is a stationary point of log p(x): its gradient vanishes there
    ml_model.requires_grad_(True)
    ml_model.log_marginal(x).mean().backward()
    for name in ("W", "b", "log_sigma"):
        assert getattr(ml_model, name).grad.abs().max() < 1e-8, name


def test_linear_gaussian_resumes_exactly(tmp_path):
    cfg = LG.preset("debug", {"train": {"progress": False, "checkpoint_every": 4},
                              "evaluate": {"eval_k": 0}})  # fmt: skip
    a = recipes.train(LG, cfg, out=tmp_path / "a", say=QUIET)
    b = recipes.train(LG, cfg, out=tmp_path / "b", stop_at=10, say=QUIET)
    recipes.train(LG, resume=b, say=QUIET)
    assert_same(weights(recipes.open_run(a).learner()[0].model),
                weights(recipes.open_run(b).learner()[0].model))  # fmt: skip


# --- the learner seam: what the next kinds need --------------------------------------------


class StreamLearner(Learner):
    """A learner of the shape skill discovery has: it steps its own "environment" (a seeded
    generator), appends to a replay buffer that grows, and trains two modules with two
    optimizers on minibatches drawn from the buffer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.modules = {"actor": nn.Linear(2, 1), "critic": nn.Linear(3, 1)}
        self.env = torch.Generator().manual_seed(123)
        self.buffer = torch.zeros(0, 3)

    def setup(self, ctx):
        super().setup(ctx)
        self.optimizers = {
            f"{name}_optim": torch.optim.Adam(m.parameters(), lr=0.1)
            for name, m in self.modules.items()
        }

    def train_step(self, batch, step):
        s = torch.randn(1, 2, generator=self.env)  # the environment's step
        r = s @ torch.tensor([[2.0], [-1.0]]) + 0.1 * torch.randn(1, 1, generator=self.env)
        self.buffer = torch.cat([self.buffer, torch.cat([s, r], 1)])
        idx = torch.randint(len(self.buffer), (8,))  # torch's generator, seeded per step
        rows = self.buffer[idx]
        actor_loss = (self.modules["actor"](rows[:, :2]) - rows[:, 2:]).pow(2).mean()
        terms = self.update("actor_optim", actor_loss, {"actor": actor_loss.detach()}, step,
                            self.modules["actor"].named_parameters())  # fmt: skip
        critic_loss = (self.modules["critic"](rows).squeeze(-1) - rows[:, 2]).pow(2).mean()
        terms |= self.update("critic_optim", critic_loss, {"critic": critic_loss.detach()}, step,
                             self.modules["critic"].named_parameters())  # fmt: skip
        return terms | {"buffer": float(len(self.buffer))}

    def evaluate(self, data, step, *, seed):
        x = torch.randn(64, 2, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            err = (self.modules["actor"](x).squeeze(-1) - (2 * x[:, 0] - x[:, 1])).pow(2).mean()
        return Evaluation({"mse": err.item()})

    def extra_state(self):
        return {"buffer": self.buffer, "env": self.env.get_state()}, {"size": len(self.buffer)}

    def load_extra_state(self, tensors, meta):
        assert meta["size"] == len(tensors["buffer"])
        self.buffer = tensors["buffer"].clone()
        self.env.set_state(tensors["env"])


def test_a_stream_learner_with_a_growing_buffer_and_two_optimizers_resumes_exactly(tmp_path):
    data = StepStream(steps_per_epoch=10)
    cfg = TrainConfig(epochs=4, checkpoint_every=7, log_every=5, progress=False, grad_clip=1.0)
    a = StreamLearner()
    Trainer(cfg, tmp_path / "a").fit(a, data)
    b = StreamLearner()
    Trainer(cfg, tmp_path / "b").fit(b, data, stop_at=17)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 14
    b = StreamLearner()  # a fresh process
    Trainer(cfg, tmp_path / "b").fit(b, data, resume=True)
    assert len(a.buffer) == len(b.buffer) == 40 and torch.equal(a.buffer, b.buffer)
    for name in ("actor", "critic"):
        assert_same(weights(a.modules[name]), weights(b.modules[name]))
        oa, ob = a.optimizers[f"{name}_optim"], b.optimizers[f"{name}_optim"]
        for pa, pb in zip(oa.param_groups[0]["params"], ob.param_groups[0]["params"], strict=True):
            assert_same(oa.state[pa], ob.state[pb])  # Adam's moments and step count
    files = {p.name for p in next((tmp_path / "b" / "checkpoints").iterdir()).iterdir()}
    assert files == {"actor.safetensors", "critic.safetensors", "actor_optim.safetensors",
                     "critic_optim.safetensors", "actor_optim.json", "critic_optim.json",
                     "extra.safetensors", "extra.json"}  # fmt: skip
    lines = _lines(tmp_path / "a")
    mse = [line["test/mse"] for line in lines if "test/mse" in line]
    assert len(mse) == 4 and mse[-1] < mse[0] / 4  # it learned


class RunningMean(Learner):
    """No optimizer at all: state updated in closed form (as CAVI updates a mixture)."""

    def __init__(self):
        super().__init__()
        self.total, self.n = torch.zeros(3, dtype=torch.float64), 0

    def train_step(self, batch, step):
        self.total += batch.sum(0)
        self.n += len(batch)
        return {"mean0": (self.total[0] / self.n).item()}

    def eval_terms(self, batch, step):
        return {"error": ((batch - self.total / self.n) ** 2).mean()}

    def extra_state(self):
        return {"total": self.total}, {"n": self.n}

    def load_extra_state(self, tensors, meta):
        self.total, self.n = tensors["total"].clone(), meta["n"]


def test_a_learner_without_optimizers_trains_and_resumes(tmp_path):
    from elbokit.data.vectors import load_vectors

    data = load_vectors("synthetic", dim=3, true_latent_dim=1, examples=200)
    cfg = TrainConfig(epochs=3, batch_size=16, checkpoint_every=5, progress=False)
    a = RunningMean()
    Trainer(cfg, tmp_path / "a").fit(a, data)
    b = RunningMean()
    Trainer(cfg, tmp_path / "b").fit(b, data, stop_at=12)
    b = RunningMean()
    Trainer(cfg, tmp_path / "b").fit(b, data, resume=True)
    assert a.n == b.n == 3 * len(data.train) and torch.equal(a.total, b.total)
    # the closed-form answer: the running mean of three passes is the training mean
    torch.testing.assert_close(a.total / a.n, data.train.mean(0))


# --- precision chosen by measurement -------------------------------------------------------


def test_bf16_is_refused_before_anything_is_written_where_it_is_emulated(
    tmp_path, monkeypatch, capsys
):
    from elbokit.cli import main

    # the AVX2-only EPYC: no bf16 instructions, its measured rates: bf16 400x slower than fp32
    monkeypatch.setattr(run_settings, "cpu_info",
                        lambda: run_settings.CpuInfo("an AVX2 EPYC", "AVX2", (), 2))  # fmt: skip
    monkeypatch.setattr(run_settings, "matmul_rates", lambda *a, **k: {"fp32": 127.0, "bf16": 0.33})
    vae = recipes.get_recipe("vae")
    with pytest.raises(PrecisionError, match=r"bf16 matmul 0.3 GFLOP/s against fp32 127.0"):
        recipes.train(
            vae, vae.preset("debug", {"train": {"precision": "bf16"}}), out=tmp_path / "x"
        )
    assert not (tmp_path / "x").exists()
    assert main(["train", "vae", "--preset", "debug", "--precision", "bf16",
                 "--out", str(tmp_path / "y")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "does not run bf16 natively" in err and "an AVX2 EPYC" in err
    assert not (tmp_path / "y").exists()
    assert resolve_precision("auto")[0] == "fp32"
    monkeypatch.setattr(
        run_settings, "matmul_rates", lambda *a, **k: {"fp32": 100.0, "bf16": 350.0}
    )
    assert resolve_precision("auto")[0] == "bf16" and resolve_precision("bf16")[0] == "bf16"
    monkeypatch.setattr(
        run_settings, "matmul_rates", lambda *a, **k: {"fp32": 100.0, "bf16": 110.0}
    )
    assert resolve_precision("auto")[0] == "fp32"  # not clearly faster: not worth its error


def test_precision_auto_is_decided_per_kind_from_its_measured_bf16_step(
    tmp_path, monkeypatch, capsys
):
    from elbokit.cli import main
    from elbokit.recipes.agent import AgentLearner
    from elbokit.recipes.vae import BF16_SPEEDUP
    from elbokit.train.settings import CpuInfo, resolve_kind_precision, resolve_settings

    def machine(flags, bf16_rate):
        monkeypatch.setattr(run_settings, "cpu_info", lambda: CpuInfo("a CPU", "AVX512", flags, 2))
        monkeypatch.setattr(run_settings, "matmul_rates",
                            lambda *a, **k: {"fp32": 100.0, "bf16": bf16_rate})  # fmt: skip
        return resolve_settings("cpu", "auto", 1)

    zen = machine(("avx512_bf16",), 0.5)  # bf16 instructions: native, whatever a probe says
    assert zen.precision == "bf16" and "avx512_bf16 instructions" in zen.why
    vae = resolve_kind_precision("auto", zen, BF16_SPEEDUP)
    assert vae.precision == "bf16" and "1.27x" in vae.why and "avx512_bf16" in vae.why
    agent = resolve_kind_precision("auto", zen, AgentLearner.bf16_speedup)  # measured 0.91x
    assert agent.precision == "fp32" and "0.91x" in agent.why and "under the 1.1x" in agent.why
    assert "no bf16 path" in resolve_kind_precision("auto", zen, None).why
    unmeasured = resolve_kind_precision("auto", zen, {})
    assert unmeasured.precision == "fp32" and "not yet checked on avx512_bf16" in unmeasured.why
    bf16_zen = resolve_settings("cpu", "bf16", 1)
    assert resolve_kind_precision("bf16", bf16_zen, {}) == bf16_zen  # asked for: not second-guessed
    with pytest.raises(PrecisionError, match="the skills kind's step has no bf16 path"):
        resolve_kind_precision("bf16", bf16_zen, None, "skills")
    amx = machine(("amx_bf16", "avx512_bf16"), 350.0)
    assert resolve_kind_precision("auto", amx, BF16_SPEEDUP).precision == "fp32"  # 1.07x there
    emulated = machine((), 0.33)
    assert resolve_kind_precision("auto", emulated, BF16_SPEEDUP) == emulated  # fp32 already
    # a run: the banner says why, config.json records what was chosen
    machine(("avx512_bf16",), 280.0)
    out = tmp_path / "lg"
    assert main(["train", "linear-gaussian", "--preset", "debug", "--precision", "auto",
                 "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert (
        "precision fp32 (auto: bf16 training of this kind is not yet checked on avx512_bf16" in said
    )
    assert json.loads((out / "config.json").read_text())["config"]["train"]["precision"] == "fp32"
    # bf16 asked of a kind that has no bf16 path: one line, no folder
    assert main(["train", "bnn", "--preset", "debug", "--precision", "bf16", "--no-progress",
                 "--out", str(tmp_path / "bnn")]) == 2  # fmt: skip
    assert "the bnn kind's step has no bf16 path" in capsys.readouterr().err
    assert not (tmp_path / "bnn").exists()


def test_the_matmul_probe_is_quick_and_measures_both_dtypes():
    rates = run_settings.matmul_rates(budget=0.005)
    assert rates["fp32"] > 0 and rates["bf16"] > 0
    choice, why = resolve_precision("auto")
    assert choice in ("fp32", "bf16")
    # bf16 instructions decide without a timing; a CPU without them is measured
    assert ("instructions" in why) if run_settings.bf16_class() else ("GFLOP/s" in why)


def test_a_device_this_machine_lacks_is_named_before_anything_is_written(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    vae = recipes.get_recipe("vae")
    with pytest.raises(ConfigError, match="this machine has no CUDA GPU"):
        recipes.train(vae, vae.preset("debug", {"train": {"device": "cuda"}}), out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="device = 'gpu'"):
        vae.preset("debug", {"train": {"device": "gpu"}})


def test_recipes_train_evaluate_and_report_without_the_cli(tmp_path):
    code = (
        "import sys; from elbokit import recipes; r = recipes.get_recipe('vae');"
        f"run = recipes.train(r, r.preset('debug', {{'train': {{'progress': False}}}}), out={str(tmp_path / 'run')!r});"
        "recipes.evaluate(run, {'k': 20}); recipes.report(run);"
        "assert not any(m.startswith('elbokit.cli') for m in sys.modules), 'cli imported'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "eval-n180-k20.json").read_text())["k"] == 20


def test_no_kind_branches_in_the_cli():
    root = Path(__file__).resolve().parents[1] / "src" / "elbokit" / "cli"
    for path in root.glob("*.py"):
        text = path.read_text()
        assert "kind ==" not in text and "world-model" not in text, path
        assert "linear-gaussian" not in text, path
