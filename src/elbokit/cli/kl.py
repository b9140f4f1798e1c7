"""``elbokit kl P Q`` and ``elbokit kl plot``."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from elbokit.cli.spec import FAMILIES, parse_spec
from elbokit.config import ConfigError, Section, opt
from elbokit.divergence import KLEstimate, estimate_kl, kl_quadrature


@dataclass(frozen=True)
class KLConfig(Section):
    """Options of ``elbokit kl P Q``."""

    p: str = opt(help='first distribution, e.g. "normal(0, 1)"', positional=True)
    q: str = opt(help='second distribution, e.g. "normal(1, 2)"', positional=True)
    method: Literal["auto", "closed", "mc", "quadrature"] = opt(
        "auto", "auto: closed form where one exists, else Monte Carlo (said which)"
    )
    samples: int = opt(100_000, "Monte Carlo sample count", ge=2)
    seed: int = opt(0, "Monte Carlo seed", ge=0)
    check: bool = opt(False, "also integrate numerically (univariate pairs) as a reference")
    json: bool = opt(False, "print one JSON object instead of text")


@dataclass(frozen=True)
class KLPlotConfig(Section):
    """Options of ``elbokit kl plot``."""

    out: str = opt("kl.png", "where to write the PNG")
    mus: tuple[float, ...] = opt((0.0, 0.5, 1.0, 2.0), "means to draw a curve for")
    sigma_min: float = opt(0.05, "smallest sigma on the axis")
    sigma_max: float = opt(5.0, "largest sigma on the axis")

    def validate(self):
        from elbokit.report.kl_figure import FORMATS

        if Path(self.out).suffix.lower() not in FORMATS:
            raise ConfigError(f"--out {self.out}: expected a file ending in {', '.join(FORMATS)}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ConfigError(
                f"need 0 < sigma_min < sigma_max, got {self.sigma_min} and {self.sigma_max}"
            )


SPEC_HELP = "distributions: " + "; ".join(f.doc for f in FAMILIES.values())


def _number(v: float):
    """A float for strict JSON: inf and nan (which JSON cannot hold) as the strings "inf",
    "-inf" and "nan", which float() reads back."""
    return v if math.isfinite(v) else str(v)


def _record(e: KLEstimate) -> dict:
    rec = {"nats": _number(e.value.item()), "bits": _number(e.bits.item()), "method": e.describe()}
    if e.method == "mc":
        rec["stderr_nats"] = _number(e.stderr.item())
    if e.method == "quadrature":
        rec["abserr_nats"] = _number(e.abserr.item())
    return rec


def run_kl(cfg: KLConfig) -> int:
    p, q = parse_spec(cfg.p), parse_spec(cfg.q)
    if p.batch_shape != torch.Size() or q.batch_shape != torch.Size():
        raise ValueError("elbokit kl compares single distributions; a spec gave a batch")
    kw = {"method": cfg.method, "num_samples": cfg.samples, "seed": cfg.seed}
    forward, reverse = estimate_kl(p, q, **kw), estimate_kl(q, p, **kw)
    checks = None
    if cfg.check:
        if p.event_shape != torch.Size() or p.support.is_discrete:
            raise ValueError("--check integrates univariate continuous pairs only")
        with warnings.catch_warnings(record=True) as caught:  # told in one line below
            warnings.simplefilter("always")
            checks = (kl_quadrature(p, q), kl_quadrature(q, p))
        unsure = any(issubclass(w.category, RuntimeWarning) for w in caught)
    if cfg.json:
        out = {"p": cfg.p, "q": cfg.q, "kl_pq": _record(forward), "kl_qp": _record(reverse)}
        if checks:
            out["quadrature_pq"], out["quadrature_qp"] = map(_record, checks)
        print(json.dumps(out, indent=2, allow_nan=False))
        return 0
    print(f"p = {cfg.p}\nq = {cfg.q}")
    same_support = p.support == q.support or str(p.support) == str(q.support)
    for name, e in (("KL(p || q)", forward), ("KL(q || p)", reverse)):
        print(f"{name} = {e}" + _overflow_note(e, same_support))
    for name, e in zip(("KL(p || q)", "KL(q || p)"), checks or (), strict=False):
        if math.isnan(e.value.item()):
            print(f"reference, {name}: the quadrature failed at these scales (its integrand "
                  "over- or underflows float64); no reference value")  # fmt: skip
        else:
            print(f"reference, {name} = {e}" + _overflow_note(e, same_support))
    if checks and unsure:
        print("(scipy's quadrature did not converge on every interval: the references may be off)")
    return 0


def _overflow_note(e: KLEstimate, same_support: bool) -> str:
    """An infinite KL between distributions on the same support is a value past float64's
    largest (1.8e308), not an infinite divergence: say so."""
    if math.isinf(e.value.item()) and same_support:
        return " (beyond float64's largest number, 1.8e308: finite, but too large to compute)"
    return ""


def run_kl_plot(cfg: KLPlotConfig) -> int:
    from elbokit.report import plot_gaussian_kl

    path = plot_gaussian_kl(cfg.out, mus=cfg.mus, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max)
    print(f"wrote {path}")
    return 0
