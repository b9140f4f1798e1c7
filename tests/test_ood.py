"""Out-of-distribution scores: the detection metrics against their definitions (the Mann-Whitney
statistic, precision at each positive's rank), and `elbokit eval RUN --ood DATA` on a VAE, whose
likelihood must flag inverted digits."""

import json

import numpy as np
import pytest
import torch
from scipy import stats

from elbokit.cli import main
from elbokit.data import load_data
from elbokit.evaluate.ood import detection_metrics, typicality


def test_detection_metrics_against_their_definitions():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 300)  # in distribution: higher scores
    b = np.r_[rng.normal(-1.0, 1.0, 200), a[:20]]  # ties across the sets included
    m = detection_metrics(a, b)
    # AUROC = P(detector(out) > detector(in)) + P(tie) / 2 = U / (n_in n_out), detector = -score
    u = stats.mannwhitneyu(-b, -a).statistic
    assert m["auroc"] == pytest.approx(u / (len(a) * len(b)), abs=1e-12)
    # FPR at 80% TPR: flag the lowest scores until 80% of the others are flagged
    thresholds = np.sort(np.unique(np.r_[a, b]))
    for t in thresholds:
        if (b <= t).mean() >= 0.8:
            break
    assert m["fpr_at_80_tpr"] == pytest.approx((a <= t).mean(), abs=1e-12)
    # average precision without ties: the mean over positives of the precision at their rank
    a2, b2 = rng.normal(0, 1, 100), rng.normal(-0.5, 1, 50)
    order = np.argsort(np.r_[a2, b2])  # flagged first: the lowest scores
    positive = np.r_[np.zeros(100), np.ones(50)][order]
    precision = np.cumsum(positive) / np.arange(1, 151)
    ap = float((precision * positive).sum() / 50)
    assert detection_metrics(a2, b2)["auprc"] == pytest.approx(ap, abs=1e-12)
    # the failure the metric is for: other data scored higher gives an AUROC below 0.5
    assert detection_metrics(a, a + 1.0)["auroc"] < 0.3
    assert typicality(torch.tensor([1.0, 5.0]), 3.0).tolist() == [-2.0, -2.0]
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics(a, np.r_[b, np.nan])


def test_eval_ood_flags_inverted_digits(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--preset", "debug", "--epochs", "4", "--eval-k", "0",
                 "--no-progress", "--out", str(run)]) == 0  # fmt: skip
    digits = load_data("digits", binarize="none")
    inverted = tmp_path / "inverted.npz"
    x = 1.0 - digits.as_float(digits.test).numpy()  # grey values in [0, 1], shape (N, 1, 8, 8)
    np.savez(inverted, x=x)
    capsys.readouterr()
    assert main(["eval", str(run), "--ood", str(inverted), "--k", "20", "--limit", "100"]) == 0
    said = capsys.readouterr().out
    assert "out of distribution" in said and "AUROC" in said
    r = json.loads((run / "eval.json").read_text())
    o = r["ood"]
    assert o["in_examples"] == 100 and o["out_examples"] == 100
    assert set(o["metrics"]) == {"elbo", "log_likelihood", "typicality"}
    assert o["metrics"]["log_likelihood"]["auroc"] > 0.95  # far from the digits it learned
    assert len(r["per_image"]["log_likelihood"]) == 100
    assert np.mean(r["per_image"]["log_likelihood"]) == pytest.approx(r["log_likelihood"], abs=1e-3)
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "ood_histograms.png").exists()
    bad = tmp_path / "wide.npz"
    np.savez(bad, x=np.zeros((10, 1, 28, 28)))
    assert main(["eval", str(run), "--ood", str(bad), "--k", "5", "--limit", "10"]) != 0
    assert "shape" in capsys.readouterr().err


def test_diffusion_ood_by_timestep_range(tmp_path, capsys):
    from elbokit.recipes.diffusion import timestep_ranges

    assert timestep_ranges(1000) == [(1, 1), (2, 10), (11, 100), (101, 1000)]
    assert timestep_ranges(50) == [(1, 1), (2, 10), (11, 50)]
    run = tmp_path / "ddpm"
    assert (
        main(["train", "diffusion", "--preset", "debug", "--no-progress", "--out", str(run)]) == 0
    )
    digits = load_data("digits", binarize="none")
    x = digits.as_float(digits.test).numpy()
    inverted = tmp_path / "inverted.npz"
    np.savez(inverted, x=(255 - np.round(255 * x)).astype(np.uint8))  # 8-bit, as the kind reads
    capsys.readouterr()
    assert main(["eval", str(run), "--ood", str(inverted), "--limit", "60"]) == 0
    r = json.loads((run / "eval.json").read_text())
    o = r["ood"]
    assert list(o["metrics"]) == ["-bits_per_dim", "t 1", "t 2-10", "t 11-50"]
    assert o["metrics"]["-bits_per_dim"]["auroc"] > 0.9  # inverted digits: far from its data
    # the ranges partition t: their parts and L_T add up to the whole bound of every image
    v = o["values"]
    parts = sum(np.asarray(v[name]["in"]) for name in ("t 1", "t 2-10", "t 11-50"))
    whole = np.asarray(v["-bits_per_dim"]["in"]) * r["dims"] * np.log(2)
    assert np.allclose(parts, whole, atol=0.05 + r["L_T"])
    per_image = r["per_image"]["bits_per_dim"]
    assert len(per_image) == 60 and np.mean(per_image) == pytest.approx(r["bits_per_dim"], abs=1e-4)
    assert main(["report", str(run)]) == 0 and (run / "report" / "ood_histograms.png").exists()
    assert main(["eval", str(run), "--ood", str(inverted), "--no-exact", "--mc", "4"]) == 2
    assert "needs --exact" in capsys.readouterr().err
