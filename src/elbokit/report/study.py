"""Figures of a study (``elbokit sweep report``): the objective against each parameter, the
optimization history, and the parameters' importances. Plain numbers in, PNG out."""

from __future__ import annotations

from pathlib import Path

from elbokit.report._draw import panels, save
from elbokit.report._mpl import pyplot

__all__ = ["history", "importances", "objective_by_param"]


def objective_by_param(rows: list[dict], params: list[str], metric: str, path,
                       logs: dict[str, bool]) -> Path:  # fmt: skip
    """One panel per parameter: each finished trial's objective (with its standard error over
    seeds where it has one, and each seed's value as a small dot) against the parameter's value;
    pruned trials hollow. A parameter of words (a choice) gets one place per word."""
    fig, axes = panels(len(params))
    for ax, name in zip(axes, params, strict=True):
        values = [r["params"][name] for r in rows if name in r["params"]]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)
        words = [] if numeric else sorted({str(x) for x in values})
        place = {} if numeric else {w: i for i, w in enumerate(words)}
        for state, style in (("COMPLETE", {"color": "tab:blue"}),
                             ("PRUNED", {"color": "tab:gray", "mfc": "none"})):  # fmt: skip
            pts = [r for r in rows if r["state"] == state and r["value"] is not None]
            if not pts:
                continue
            xs = [place[str(r["params"][name])] if place
                  else r["params"][name] for r in pts]  # fmt: skip
            ax.errorbar(xs, [r["value"] for r in pts], yerr=[r["stderr"] or 0 for r in pts],
                        fmt="o", capsize=3, label=state.lower(), **style)  # fmt: skip
            seeds = [(x, v) for x, r in zip(xs, pts, strict=True)
                     if len(r.get("values") or ()) > 1 for v in r["values"]]  # fmt: skip
            if seeds:
                ax.plot(*zip(*seeds, strict=True), ".", color=style["color"], alpha=0.4, ms=4,
                        label=f"{state.lower()}: each seed")  # fmt: skip
        if words:
            ax.set_xticks(range(len(words)), words)
            ax.set_xlim(-0.5, len(words) - 0.5)
        if logs.get(name):
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labels at the decades only: legible
        ax.set(xlabel=name, ylabel=metric, title=f"{metric} against {name}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def history(rows: list[dict], metric: str, maximize: bool, path) -> Path:
    """The objective of each finished trial by trial number, and the best so far."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    done = sorted((r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None),
                  key=lambda r: r["number"])  # fmt: skip
    if done:
        ax.plot([r["number"] for r in done], [r["value"] for r in done], "o", label="trial")
        best, line = None, []
        for r in done:
            v = r["value"]
            best = v if best is None or (v > best if maximize else v < best) else best
            line.append(best)
        ax.step(
            [r["number"] for r in done], line, where="post", color="tab:red", label="best so far"
        )
    ax.set(
        xlabel="trial",
        ylabel=metric,
        title=f"optimization history ({'max' if maximize else 'min'}imized)",
    )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are numbered
    if done and done[-1]["number"] - done[0]["number"] < 2:  # one or two trials: whole numbers
        ax.set_xticks(range(done[0]["number"], done[-1]["number"] + 1))
        ax.set_xlim(done[0]["number"] - 0.5, done[-1]["number"] + 0.5)
    ax.legend()
    fig.tight_layout()
    return save(fig, path)


def importances(values: dict[str, float], path) -> Path:
    """Each parameter's share of the objective's variance (fANOVA, as Optuna computes it)."""
    plt = pyplot()
    names = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.5 * len(names)))
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (share of the objective's variance, fANOVA)", xlim=(0, 1))
    fig.tight_layout()
    return save(fig, path)
