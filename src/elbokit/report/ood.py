"""Histograms of out-of-distribution scores: one panel per score, the model's own test set and
the other data overlaid, the AUROC in each title."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from elbokit.report._draw import save
from elbokit.report._mpl import pyplot

__all__ = ["ood_histograms", "ood_section"]


def _meaning(name: str) -> str:
    """What a score's axis holds where its name alone does not say (the table and eval.json use
    the names; llr>j is minus Havtorn et al.'s likelihood ratio LLR>j: higher, more its own)."""
    if name.startswith("llr>"):
        j = name[4:]
        return f" (= -LLR>{j} = L>{j} - L, nats)"
    return " (= -|log p(x) - train mean|)" if name == "typicality" else ""


def ood_histograms(ood: dict, path) -> Path:
    """``ood`` as the evaluation stores it: {"data", "metrics": {score: {...}}, "values":
    {score: {"in": [...], "out": [...]}}}."""
    plt = pyplot()
    names = list(ood["values"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        a, b = (np.asarray(ood["values"][name][k], dtype=float) for k in ("in", "out"))
        lo, hi = np.percentile(np.r_[a, b], [0.5, 99.5])
        bins = np.linspace(lo, hi, 50)
        ax.hist(a, bins=bins, alpha=0.55, density=True, color="tab:blue", label="test (own data)")
        ax.hist(b, bins=bins, alpha=0.55, density=True, color="tab:red", label=ood["data"])
        ax.set(title=f"{name}: AUROC {ood['metrics'][name]['auroc']:.3f}",
               xlabel=f"{name}{_meaning(name)}\n"
                      "(higher: more like its own data)")  # fmt: skip
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=8)
    return save(fig, path)


def ood_section(ood: dict, out: Path) -> tuple[tuple[Path, str], dict[str, str]]:
    """The report's histograms (a figure and its caption) and one line of numbers per score."""
    png = (ood_histograms(ood, Path(out) / "ood_histograms.png"),
           f"Each score on the {ood['in_examples']} test images and on {ood['out_examples']} of "
           f"{ood['data']} (out of distribution); AUROC in the titles.")  # fmt: skip
    numbers = {
        f"OOD {ood['data']}: {name}": f"AUROC {m['auroc']:.3f}, AUPRC {m['auprc']:.3f}, "
        f"FPR at 80% TPR {m['fpr_at_80_tpr']:.3f}"
        for name, m in ood["metrics"].items()
    }
    return png, numbers
