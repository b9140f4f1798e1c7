"""The trainer: exact resume (also after a real SIGKILL), divergence stops, corrupt checkpoints."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from elbokit.cli import main
from elbokit.cli.train import PRESETS, build_objective, load_run, model_config, train_config
from elbokit.data import load_data
from elbokit.models.vae import VAE
from elbokit.objectives import ELBO
from elbokit.train.checkpoint import CheckpointError
from elbokit.train.trainer import Trainer, TrainingDiverged
from references import train_debug

CFG = dataclasses.replace(PRESETS["debug"], epochs=3, checkpoint_every=7, progress=False, threads=1)


def _setup(cfg=CFG):
    data = load_data(cfg.data, binarize=cfg.binarize, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = VAE(model_config(cfg, data.shape))
    return data, model, build_objective(cfg, data.num_batches("train", cfg.batch_size))


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resumed_run_ends_with_exactly_the_same_weights(tmp_path):
    data, model, objective = _setup()
    Trainer(train_config(CFG), tmp_path / "a").fit(model, objective, data)
    reference = _weights(model)

    data, model, objective = _setup()
    Trainer(train_config(CFG), tmp_path / "b").fit(
        model, objective, data, stop_at=45
    )  # "crash" at 45
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["step"] == 42  # the last checkpoint before the crash
    data, model, objective = _setup()  # a fresh process would rebuild everything
    Trainer(train_config(CFG), tmp_path / "b").fit(model, objective, data, resume=True)
    for k, v in _weights(model).items():
        assert torch.equal(v, reference[k]), k


def test_two_runs_with_one_seed_are_identical_and_another_seed_differs(tmp_path):
    runs = []
    for seed, name in [(0, "a"), (0, "b"), (1, "c")]:
        cfg = dataclasses.replace(CFG, seed=seed, epochs=1)
        data, model, objective = _setup(cfg)
        Trainer(train_config(cfg), tmp_path / name).fit(model, objective, data)
        runs.append(_weights(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_sigkill_mid_run_then_resume_from_the_command_line(tmp_path):
    args = [
        "train",
        "vae",
        "--preset",
        "debug",
        "--epochs",
        "40",
        "--checkpoint-every",
        "25",
        "--threads",
        "1",
        "--no-progress",
    ]
    ref = tmp_path / "uninterrupted"
    assert main([*args, "--out", str(ref)]) == 0

    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "elbokit", *args, "--out", str(run)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        state = run / "state.json"
        if state.exists() and json.loads(state.read_text())["step"] >= 100:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((run / "state.json").read_text())["step"]
    assert 100 <= killed_at < 40 * 33, "the run must be killed mid-way"
    assert main(["train", "vae", "--resume", str(run)]) == 0  # the saved config has no progress bar
    a, _, sa = load_run(ref)
    b, _, sb = load_run(run)
    assert sa["step"] == sb["step"] == 40 * 33
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_nan_stops_with_step_and_term_and_keeps_the_last_checkpoint(tmp_path):
    data, model, _ = _setup()

    class Poisoned(ELBO):
        def __call__(self, model, x, step=0):
            out = super().__call__(model, x, step)
            if step == 30:
                out.terms["kl"] = out.terms["kl"] * float("nan")
            return out

    trainer = Trainer(train_config(CFG), tmp_path)
    with pytest.raises(
        TrainingDiverged,
        match=r"step 30: the 'kl' term is nan; the last good checkpoint \(step 28\)",
    ):
        trainer.fit(model, Poisoned(), data)
    fresh = VAE(model.config)
    from elbokit.train.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path, fresh)["step"] == 28


def test_non_finite_gradient_is_named(tmp_path):
    data, model, _ = _setup()

    class Exploding(ELBO):
        def __call__(self, model, x, step=0):
            out = super().__call__(model, x, step)
            if step == 3:
                out.loss = out.loss + 0.0 * model.encoder[0].weight.sum() * float("inf")
                out.loss = out.loss.nan_to_num(posinf=1.0)  # a finite loss with an inf gradient
            return out

    with pytest.raises(
        TrainingDiverged,
        match=r"step 3: the gradient of 'encoder.0.weight' is not finite; no checkpoint",
    ):
        Trainer(train_config(CFG), tmp_path).fit(model, Exploding(), data)


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_debug(run, "--epochs", "1") == 0
    state = json.loads((run / "state.json").read_text())
    weights = run / state["checkpoint"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert main(["train", "vae", "--resume", str(run)]) == 2
    assert "model.safetensors is corrupt or truncated" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_run(run)
    (run / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"state.json is not valid JSON"):
        load_run(run)
    data, model, objective = _setup()
    with pytest.raises(CheckpointError, match="has no checkpoint to resume from"):
        Trainer(train_config(CFG), tmp_path / "empty").fit(model, objective, data, resume=True)


def test_metrics_are_namespaced_and_the_model_learns(tmp_path):
    cfg = dataclasses.replace(CFG, epochs=6, checkpoint_every=1000)
    data, model, objective = _setup(cfg)
    Trainer(train_config(cfg), tmp_path).fit(model, objective, data)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    tests = [line["test/elbo"] for line in lines if "test/elbo" in line]
    assert len(tests) == 6 and tests[-1] > tests[0] + 1.0  # nats better than after one epoch
    train = [line for line in lines if "train/elbo" in line]
    assert {"train/recon", "train/kl", "time/steps_per_s"} <= set(train[0])


def test_tensorboard_holds_the_same_numbers_as_metrics_jsonl(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    cfg = dataclasses.replace(CFG, epochs=2)
    data, model, objective = _setup(cfg)
    tcfg = dataclasses.replace(train_config(cfg), log_every=5)
    Trainer(tcfg, tmp_path).fit(model, objective, data)
    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for key in ("train/elbo", "train/kl", "test/elbo", "time/steps_per_s"):
        want = [(line["step"], line[key]) for line in lines if key in line]
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert len(got) == len(want) > 0
        for (s1, v1), (s2, v2) in zip(got, want, strict=True):
            assert s1 == s2 and v1 == pytest.approx(v2, rel=1e-6)  # float32 in the event file


def test_denormal_flushing_lasts_only_for_the_run(tmp_path):
    cfg = dataclasses.replace(CFG, epochs=1)
    data, model, objective = _setup(cfg)
    Trainer(train_config(cfg), tmp_path).fit(model, objective, data)
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0  # denormals work again afterwards


def test_cli_errors_before_training(tmp_path, capsys):
    assert train_debug(tmp_path / "x", "--likelihood", "discretized-logistic") == 2
    assert "needs 8-bit grey values: use --binarize none" in capsys.readouterr().err
    assert main(["train", "vae", "--resume", str(tmp_path), "--latent-dim", "3"]) == 2
    assert "drop --latent-dim" in capsys.readouterr().err
    assert main(["train", "vae", "--data", "nowhere", "--out", str(tmp_path / "y")]) == 2
    assert "no data source 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "x" / "state.json").exists()
