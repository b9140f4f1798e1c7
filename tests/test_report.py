"""The main job's end: evaluation and a self-contained report with every figure."""

import base64
import json
import re

import matplotlib.image

from elbokit.cli import main
from references import train_debug

FIGURES = ("samples", "reconstructions", "traversals", "latent_map", "curves", "kl_per_unit")


def test_training_ends_with_eval_and_a_self_contained_report(tmp_path):
    run = tmp_path / "run"
    assert train_debug(run) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["k"] == 50 and result["active_units"] <= 4
    for name in FIGURES:
        image = matplotlib.image.imread(run / "report" / f"{name}.png")
        assert image.shape[0] > 100 and image[..., :3].std() > 0.02, name  # drawn, not blank
    page = (run / "report" / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == len(FIGURES)
    assert all(base64.b64decode(e)[:8] == b"\x89PNG\r\n\x1a\n" for e in embedded)
    assert 'src="http' not in page and '<img src="report' not in page  # one file, nothing linked
    assert f"{result['log_likelihood']:.2f}" in page and "active units" in page
    assert "first two principal axes" in page  # 4-D latents: the projection, not the grid


def test_two_dimensional_latents_get_a_decoded_map(tmp_path):
    run = tmp_path / "run2d"
    assert train_debug(run, "--latent-dim", "2") == 0
    assert (
        "The 2-D latent space, decoded over a grid." in (run / "report" / "report.html").read_text()
    )
    assert matplotlib.image.imread(run / "report" / "latent_map.png").shape[0] > 300


def test_report_of_a_run_without_eval_evaluates_first(tmp_path):
    run = tmp_path / "run"
    assert train_debug(run, "--eval-k", "0") == 0
    assert not (run / "eval.json").exists()
    assert main(["report", str(run), "--k", "20"]) == 0
    assert (run / "eval.json").exists() and (run / "report" / "report.html").exists()


def test_beta_sweep_trades_rate_for_distortion(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "beta",
        "--preset",
        "debug",
        "--values",
        "0.25",
        "8",
        "--epochs",
        "3",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    points = {p["beta"]: p for p in json.loads((out / "sweep.json").read_text())}
    # a larger beta buys a smaller KL (rate) with a larger reconstruction NLL (distortion)
    assert points[0.25]["rate"] > points[8.0]["rate"]
    assert points[0.25]["distortion"] < points[8.0]["distortion"]
    assert matplotlib.image.imread(out / "rate_distortion.png").shape[0] > 300
    assert (out / "beta-0.25" / "state.json").exists()  # each point is an ordinary run
    assert main(["sweep", "beta", "--values", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "betas must be >= 0" in capsys.readouterr().err
