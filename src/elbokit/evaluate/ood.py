"""Out-of-distribution detection by a model's own scores (Nalisnick et al. 2019, "Do Deep
Generative Models Know What They Don't Know?"): each score is a per-example number, higher for
examples the model finds more typical of its data (a log-likelihood, an ELBO), and the detector
calls an example out of distribution when its score is low. Reported, with the out-of-distribution
examples as the positive class and the negated score as the detector's output (scikit-learn's
metrics):

    auroc          the area under the ROC curve: below 0.5 when the model gives the other data
                   *higher* scores than its own test set (the failure Nalisnick et al. found)
    auprc          the average precision
    fpr_at_80_tpr  the fraction of in-distribution examples flagged when 80% of the others are

``typicality`` turns a log-likelihood into the distance from the training set's mean
log-likelihood (Nalisnick et al. 2019b, one example per test): atypically high likelihoods
count as out of distribution too.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["detection_metrics", "ood_table", "typicality"]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64).ravel()


def detection_metrics(score_in, score_out) -> dict[str, float]:
    """AUROC, AUPRC and FPR at 80% TPR of telling ``score_out`` (positives) from ``score_in``,
    where a higher score means more in-distribution.

    Raises:
        ValueError: either set empty or holding NaN.
    """
    try:
        from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
    except ImportError:
        raise ImportError("out-of-distribution metrics need scikit-learn: pip install "
                          "'elbokit[data]'") from None  # fmt: skip
    a, b = _numpy(score_in), _numpy(score_out)
    if not len(a) or not len(b):
        raise ValueError(f"{len(a)} in-distribution and {len(b)} other examples; expected both")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a score is NaN; expected numbers for every example")
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    detector = -np.r_[a, b]  # low scores are flagged
    fpr, tpr, _ = roc_curve(labels, detector)
    return {
        "auroc": float(roc_auc_score(labels, detector)),
        "auprc": float(average_precision_score(labels, detector)),
        "fpr_at_80_tpr": float(fpr[np.searchsorted(tpr, 0.8, side="left")]),
    }


def typicality(log_likelihood, train_mean: float) -> torch.Tensor:
    """The score -|log p(x) - mean training log p| per example (higher: more typical)."""
    return -(torch.as_tensor(log_likelihood, dtype=torch.float64) - train_mean).abs()


def ood_table(scores: dict, data: str) -> tuple[dict, list[str]]:
    """Every score's metrics and values as an evaluation stores them (``eval.json``'s "ood")
    and the lines it prints: ``scores`` = {name: (in-distribution values, ``data``'s values)},
    higher meaning more in-distribution."""
    (a0, b0), *_ = scores.values()
    out = {"data": data, "in_examples": len(a0), "out_examples": len(b0),
           "metrics": {}, "values": {}}  # fmt: skip
    lines = [f"  out of distribution: {data}, {len(b0)} images against {len(a0)} test images "
             "(AUROC: below 0.5 when the other data score higher than the model's own)"]  # fmt: skip
    for name, (a, b) in scores.items():
        m = detection_metrics(a, b)
        out["metrics"][name] = m
        out["values"][name] = {"in": [round(float(v), 4) for v in _numpy(a)],
                               "out": [round(float(v), 4) for v in _numpy(b)]}  # fmt: skip
        lines.append(f"    {name:>15}: AUROC {m['auroc']:.3f}, AUPRC {m['auprc']:.3f}, FPR at "
                     f"80% TPR {m['fpr_at_80_tpr']:.3f}; mean in {_numpy(a).mean():.2f}, "
                     f"other {_numpy(b).mean():.2f}")  # fmt: skip
    return out, lines
