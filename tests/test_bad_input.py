"""Bad input found by trying elbokit as a new user would (the seeded corpus beside the fuzzer):
each ends in one clean line naming the value and what was expected, or the right value, and
leaves nothing half-written."""

import json
import math

import numpy as np
import pytest
import torch

from elbokit import recipes
from elbokit.cli import main
from elbokit.data import DataError, load_data
from elbokit.objectives import ELBO
from elbokit.train import TrainingDiverged

QUIET = lambda *a: None  # noqa: E731


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "vae", "--batch-size", "0"], "--batch-size 0: expected a value >= 1"),
        (["train", "vae", "--beta", "nan"], "--beta nan: expected a finite number"),
        (["train", "vae", "--hidden", "64", "0"], "--hidden 0: expected a value >= 1"),
        (["train", "vae", "--seed", "-1"], "--seed -1: expected a value >= 0"),
        (["train", "vae", "--test-fraction", "1.5"], "--test-fraction 1.5: expected a value < 1"),
        (["train", "vae", "--device", "gpu"], "--device gpu: expected cpu, cuda or cuda:N"),
        (["train", "vae", "--laten-dim", "3"], "did you mean --latent-dim?"),
        (["train"], "kinds:"),
        (["eval"], "which run?"),
        (["sweep", "gamma"], "'gamma' is not a kind"),
        (["sweep", "beta", "--values", "1", "1"], "each beta once"),
        (["sweep", "beta", "--values", "1", "--beta", "2"], "--beta is what the sweep varies"),
        (["sweep", "beta", "--values", "nan"], "finite and >= 0"),
        (["kl", "plot", "--mus", "nan"], "--mus nan: expected a finite number"),
        (["kl", "plot", "--out", "k.txt"], "expected a file ending in .png, .svg, .pdf"),
        (["kl", "normal(0,", "normal(0, 1)"], "found end of spec"),
        (["kl", "categorical(logits=[])", "normal(0, 1)"], "an empty list"),
        (
            ["kl", "mixture([0.5, 0.5], normal(0, [1, 2]), normal(1, 1))", "normal(0, 1)"],
            "mixture components take single numbers",
        ),
        (["collect", "--env", "CartPole-v2", "--out", "x"], "did you mean 'CartPole-v1'"),
    ],
)
def test_mistakes_end_in_one_clean_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "collect":
        pytest.importorskip("gymnasium")
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err, err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_eval_names_a_device_that_does_not_exist(tmp_path, capsys):
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False}, "evaluate": {"eval_k": 0}})
    run_dir = recipes.train(vae, cfg, out=tmp_path / "run", say=QUIET)
    for device, message in (("gpu", "--device gpu: expected cpu, cuda or cuda:N"),
                            ("cuda:x", "--device cuda:x: expected cpu, cuda or cuda:N")):  # fmt: skip
        code, _, err = run(capsys, "eval", str(run_dir), "--device", device)
        assert code == 2 and message in err, err
    # an option of another kind's evaluation: the line says whose options these are
    code, _, err = run(capsys, "eval", str(run_dir), "--exact", "1")
    assert code == 2 and "unknown option --exact for a vae run" in err, err


def test_deep_nesting_is_refused_without_a_recursion_error(capsys):
    code, _, err = run(capsys, "kl", "mixture([1]," * 80 + "normal(0,1)" + ")" * 80, "normal(0,1)")
    assert code == 2 and "nested more than 50 levels deep" in err


def test_paths_that_cannot_be_written_are_named(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (
        ["kl", "plot", "--out", str(afile / "x.png")],
        ["train", "vae", "--preset", "debug", "--out", str(afile / "run")],
        ["train", "vae", "--preset", "debug", "--out", str(afile)],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "afile" in err and "Traceback" not in err, (argv, err)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, "train", "vae", "--preset", "debug", "--out", str(other))
    assert code == 2 and "already holds other files (notes.txt)" in err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_a_gradient_whose_norm_overflows_is_a_divergence_not_a_crash(tmp_path):
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"optim": {"lr": 1e5}, "train": {"progress": False}})
    with pytest.raises(TrainingDiverged, match=r"step \d+: the gradient"):
        recipes.train(vae, cfg, out=tmp_path / "run", say=QUIET)
    lg = recipes.get_recipe("linear-gaussian")
    cfg = lg.preset("debug", {"optim": {"lr": 1e6}, "train": {"progress": False}})
    with pytest.raises(TrainingDiverged, match=r"the 'exact/\w+' term is nan"):
        recipes.train(lg, cfg, out=tmp_path / "lg", say=QUIET)


def test_elbo_rejects_a_nan_beta():
    with pytest.raises(ValueError, match="beta must be finite"):
        ELBO(beta=math.nan)
    with pytest.raises(ValueError, match="free_bits must be finite"):
        ELBO(free_bits=math.inf)


def test_an_npz_of_one_array_named_y_is_images_without_labels(tmp_path):
    np.savez(tmp_path / "y.npz", y=np.zeros((50, 1, 8, 8), np.float32))
    data = load_data(tmp_path / "y.npz", binarize="none")
    assert data.train_labels is None and data.shape == (1, 8, 8)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not an .npz file"):
        load_data(tmp_path / "text.npz")


def test_an_interrupt_says_what_was_kept(tmp_path, capsys):
    from elbokit.cli.runs import _interruptible

    def interrupted(claimed, folder=None):
        if folder is not None:
            claimed(folder)
        raise KeyboardInterrupt

    assert _interruptible(interrupted) == 130
    assert "nothing was written" in capsys.readouterr().err
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False, "checkpoint_every": 5},
                               "evaluate": {"eval_k": 0}})  # fmt: skip
    run_dir = recipes.train(vae, cfg, out=tmp_path / "run", stop_at=12, say=QUIET)
    assert _interruptible(lambda claimed: interrupted(claimed, run_dir)) == 130
    assert f"(step 10) is kept: continue with elbokit train --resume {run_dir}" in (
        capsys.readouterr().err
    )


def test_resume_keeps_one_metrics_line_per_step(tmp_path):
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False, "checkpoint_every": 20,
                                         "log_every": 5}, "evaluate": {"eval_k": 0}})  # fmt: skip
    run_dir = recipes.train(vae, cfg, out=tmp_path / "run", stop_at=37, say=QUIET)
    recipes.train(vae, resume=run_dir, say=QUIET)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [line["step"] for line in lines if "train/elbo" in line]
    assert train_steps == sorted(set(train_steps)) == list(range(5, 67, 5))


def test_a_quick_evaluation_does_not_replace_a_thorough_one(tmp_path):
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False}, "evaluate": {"eval_k": 40}})
    run_dir = recipes.train(vae, cfg, out=tmp_path / "run", say=QUIET)
    before = json.loads((run_dir / "eval.json").read_text())
    recipes.evaluate(run_dir, {"k": 10, "limit": 30}, say=QUIET)
    assert json.loads((run_dir / "eval.json").read_text()) == before
    side = json.loads((run_dir / "eval-n30-k10.json").read_text())
    assert side["k"] == 10 and side["examples"] == 30
    recipes.evaluate(run_dir, {"k": 80}, say=QUIET)  # more thorough: it replaces eval.json
    assert json.loads((run_dir / "eval.json").read_text())["k"] == 80


def test_a_checkpoint_of_nan_weights_is_refused_by_eval_and_writes_no_json(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False}, "evaluate": {"eval_k": 0}})
    run_dir = recipes.train(vae, cfg, out=tmp_path / "run", say=QUIET)
    state = json.loads((run_dir / "state.json").read_text())
    path = run_dir / state["checkpoint"] / "model.safetensors"
    save_file({k: torch.full_like(v, math.nan) for k, v in load_file(path).items()}, path)
    code, out, err = run(capsys, "eval", str(run_dir), "--k", "5")
    assert code == 2 and "is not finite" not in out and "eval.json was not written" in err
    assert not (run_dir / "eval.json").exists()


def test_mutual_information_outside_its_bounds_is_explained():
    from elbokit.evaluate.diagnostics import Diagnostics

    def diag(mi):
        return Diagnostics(torch.zeros(2), 1, torch.zeros(2), mi, 1.0, 100, 0.1)

    assert "above its bound log N = 4.61" in diag(5.0).mutual_information_note()
    assert "negative: estimator noise" in diag(-0.2).mutual_information_note()
    assert diag(2.0).mutual_information_note() == ""
