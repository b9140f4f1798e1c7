"""The trainer: exact resume (also after a real SIGKILL), divergence stops, corrupt checkpoints,
the per-run settings. Runs are built through the recipes, not the CLI."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from elbokit import recipes
from elbokit.objectives import ELBO
from elbokit.train import CheckpointError, ObjectiveLearner, Trainer, TrainingDiverged
from references import build, train_debug, weights

VAE = recipes.get_recipe("vae")
CFG = VAE.preset(
    "debug", {"train": {"epochs": 3, "checkpoint_every": 7, "progress": False, "threads": 1}}
)


def _setup(tmp_path, cfg=CFG, objective=None):
    """Data and a fresh learner, as a new process would build them."""
    built = build(VAE, cfg, tmp_path)
    if objective is not None:
        built.learner = ObjectiveLearner(built.learner.model, objective, built.config.optim)
    return built.data, built.learner, built.config


def test_resumed_run_ends_with_exactly_the_same_weights(tmp_path):
    data, learner, cfg = _setup(tmp_path)
    Trainer(cfg.train, tmp_path / "a").fit(learner, data)
    reference = weights(learner.model)

    data, learner, cfg = _setup(tmp_path)
    Trainer(cfg.train, tmp_path / "b").fit(learner, data, stop_at=45)  # "crash" at 45
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["step"] == 42  # the last checkpoint before the crash
    data, learner, cfg = _setup(tmp_path)  # a fresh process would rebuild everything
    Trainer(cfg.train, tmp_path / "b").fit(learner, data, resume=True)
    for k, v in weights(learner.model).items():
        assert torch.equal(v, reference[k]), k
    # the optimizer's moments too: a resumed Adam is the uninterrupted one
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-0000099"]


def test_two_runs_with_one_seed_are_identical_and_another_seed_differs(tmp_path):
    runs = []
    for seed, name in [(0, "a"), (0, "b"), (1, "c")]:
        cfg = recipes.get_recipe("vae").preset(
            "debug", {"train": {"seed": seed, "epochs": 1, "progress": False, "threads": 1}}
        )
        data, learner, cfg = _setup(tmp_path, cfg)
        Trainer(cfg.train, tmp_path / name).fit(learner, data)
        runs.append(weights(learner.model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_sigkill_mid_run_then_resume_from_the_command_line(tmp_path):
    from elbokit.cli import main

    args = ["train", "vae", "--preset", "debug", "--epochs", "40", "--checkpoint-every", "25",
            "--threads", "1", "--no-progress"]  # fmt: skip
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
    # the kind comes from the run; the progress bar may change on resume, nothing else
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    (a, sa), (b, sb) = recipes.open_run(ref).learner(), recipes.open_run(run).learner()
    assert sa["step"] == sb["step"] == 40 * 33
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def test_nan_stops_with_step_and_term_and_keeps_the_last_checkpoint(tmp_path):
    class Poisoned(ELBO):
        def __call__(self, model, x, step=0):
            out = super().__call__(model, x, step)
            if step == 30:
                out.terms["kl"] = out.terms["kl"] * float("nan")
            return out

    data, learner, cfg = _setup(tmp_path, objective=Poisoned())
    trainer = Trainer(cfg.train, tmp_path / "run")
    with pytest.raises(
        TrainingDiverged,
        match=r"step 30: the 'kl' term is nan; the last good checkpoint \(step 28\)",
    ):
        trainer.fit(learner, data)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 28


def test_non_finite_gradient_is_named(tmp_path):
    class Exploding(ELBO):
        def __call__(self, model, x, step=0):
            out = super().__call__(model, x, step)
            if step == 3:
                out.loss = out.loss + 0.0 * model.encoder[0].weight.sum() * float("inf")
                out.loss = out.loss.nan_to_num(posinf=1.0)  # a finite loss with an inf gradient
            return out

    data, learner, cfg = _setup(tmp_path, objective=Exploding())
    with pytest.raises(
        TrainingDiverged,
        match=r"step 3: the gradient of 'encoder.0.weight' is not finite; no checkpoint",
    ):
        Trainer(cfg.train, tmp_path / "run").fit(learner, data)


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    from elbokit.cli import main

    run = tmp_path / "run"
    assert train_debug(run, "--epochs", "1") == 0
    state = json.loads((run / "state.json").read_text())
    weights_file = run / state["checkpoint"] / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:100])
    capsys.readouterr()
    assert main(["train", "vae", "--resume", str(run)]) == 2
    assert "model.safetensors is corrupt or truncated" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        recipes.open_run(run).learner()
    (run / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"state.json is not valid JSON"):
        recipes.open_run(run).learner()
    data, learner, cfg = _setup(tmp_path)
    with pytest.raises(CheckpointError, match="has no checkpoint to resume from"):
        Trainer(cfg.train, tmp_path / "empty").fit(learner, data, resume=True)


def test_metrics_are_namespaced_and_the_model_learns(tmp_path):
    cfg = recipes.get_recipe("vae").preset(
        "debug", {"train": {"epochs": 6, "checkpoint_every": 1000, "progress": False}}
    )
    data, learner, cfg = _setup(tmp_path, cfg)
    Trainer(cfg.train, tmp_path / "run").fit(learner, data)
    lines = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    tests = [line["test/elbo"] for line in lines if "test/elbo" in line]
    assert len(tests) == 6 and tests[-1] > tests[0] + 1.0  # nats better than after one epoch
    train = [line for line in lines if "train/elbo" in line]
    assert {"train/recon", "train/kl", "train/kl_weight", "time/steps_per_s"} <= set(train[0])
    # a setting of the loss is logged in training, not "measured" on test data
    assert not any("test/kl_weight" in line for line in lines)


def test_tensorboard_holds_the_same_numbers_as_metrics_jsonl(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    cfg = VAE.preset("debug", {"train": {"epochs": 2, "log_every": 5, "progress": False}})
    data, learner, cfg = _setup(tmp_path, cfg)
    Trainer(cfg.train, tmp_path / "run").fit(learner, data)
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    lines = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    for key in ("train/elbo", "train/kl", "test/elbo", "time/steps_per_s"):
        want = [(line["step"], line[key]) for line in lines if key in line]
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert len(got) == len(want) > 0
        for (s1, v1), (s2, v2) in zip(got, want, strict=True):
            assert s1 == s2 and v1 == pytest.approx(v2, rel=1e-6)  # float32 in the event file


@pytest.mark.parametrize("flush", [True, False])
def test_denormals_are_flushed_during_the_run_only(tmp_path, flush):
    seen = []

    class Probe(ELBO):
        def __call__(self, model, x, step=0):
            seen.append((torch.tensor([1e-40]) * 1.0).item() == 0.0)  # flushed to zero?
            return super().__call__(model, x, step)

    cfg = VAE.preset("debug", {"train": {"epochs": 1, "progress": False, "flush_denormal": flush}})
    data, learner, cfg = _setup(tmp_path, cfg, objective=Probe())
    Trainer(cfg.train, tmp_path / "run").fit(learner, data)
    assert seen and all(s == flush for s in seen)  # on in every step when asked, else never
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0  # and denormals work again afterwards


def test_thread_count_is_the_runs_and_restored(tmp_path):
    before = torch.get_num_threads()
    seen = []

    class Probe(ELBO):
        def __call__(self, model, x, step=0):
            seen.append(torch.get_num_threads())
            return super().__call__(model, x, step)

    cfg = VAE.preset("debug", {"train": {"epochs": 1, "progress": False, "threads": 1}})
    data, learner, cfg = _setup(tmp_path, cfg, objective=Probe())
    Trainer(cfg.train, tmp_path / "run").fit(learner, data)
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_cli_errors_before_training(tmp_path, capsys):
    from elbokit.cli import main

    assert train_debug(tmp_path / "x", "--likelihood", "discretized-logistic") == 2
    assert "needs 8-bit grey values: use --binarize none" in capsys.readouterr().err
    assert main(["train", "vae", "--resume", str(tmp_path), "--latent-dim", "3"]) == 2
    assert "drop --latent-dim" in capsys.readouterr().err
    assert main(["train", "vae", "--data", "nowhere", "--out", str(tmp_path / "y")]) == 2
    assert "no data source 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "x" / "state.json").exists()


def test_progress_bar_values_keep_small_terms_visible():
    from elbokit.train.writers import shown_value

    # a KL scale of 0.004 during warm-up was shown as 0.00, and tiny negatives as -0.00
    assert [shown_value(v) for v in (0.004, -1e-7, 0.0, 1.2345, -0.0049)] == [
        "0.004",
        "-1e-07",
        "0.00",
        "1.23",
        "-0.0049",
    ]
