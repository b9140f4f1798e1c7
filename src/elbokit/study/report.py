"""``elbokit sweep report STUDY``: a study's trials as a table, its best setting, and its figures
(the objective against each parameter, the optimization history, the parameters' importances,
and the kind's own study figure where it has one) in FOLDER/report/report.html."""

from __future__ import annotations

import math
from pathlib import Path

from elbokit.recipes.registry import get_recipe
from elbokit.report.metrics import last_with, read_metrics
from elbokit.study.run import Study

__all__ = ["study_rows", "write_report"]


def study_rows(study: Study) -> list[dict]:
    """One dict per trial: number, state, parameter values, objective (mean over seeds) and its
    standard error, seconds, runs, and the reason of a failure or a prune."""
    rows = []
    for t in study.study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue  # a trial the study did not need, ended before it ran
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "params": dict(t.params),
            "value": t.value if t.value is not None and math.isfinite(t.value) else None,
            "stderr": t.user_attrs.get("stderr"),
            "values": t.user_attrs.get("values", []),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start else None,
            "runs": t.user_attrs.get("runs", []),
            "why": t.user_attrs.get("error") or t.user_attrs.get("pruned") or "",
            "retry_of": t.system_attrs.get("failed_trial"),
        })  # fmt: skip
    return rows


def _importances(study: Study) -> dict[str, float]:
    import optuna

    done = [t for t in study.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2 or len(study.params) < 2:  # one parameter explains all there is
        return {}
    try:
        return optuna.importance.get_param_importances(
            study.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (RuntimeError, ValueError, ImportError):  # a parameter that never varied, sklearn absent
        return {}


def write_report(study: Study, say=print) -> Path:
    """The table, the best setting and the figures of ``study`` (see the module docstring)."""
    from elbokit.report import write_html
    from elbokit.report.study import history, importances, objective_by_param

    rows = study_rows(study)
    out = study.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    metric, names = study.metric, [p.name for p in study.params]
    pngs = [
        (objective_by_param(rows, names, metric, out / "objective.png",
                            {p.name: p.log for p in study.params}),
         f"{metric} of each trial (mean over its seeds, +- its standard error; small dots: each seed's) against each parameter; hollow: pruned."),
        (history(rows, metric, study.maximize, out / "history.png"),
         "The objective of each finished trial in the order they ran, and the best so far."),
    ]  # fmt: skip
    imp = _importances(study)
    if imp:
        pngs.append((importances(imp, out / "importances.png"),
                     "How much of the objective's variation each parameter explains (Optuna's fANOVA)."))  # fmt: skip
    pngs += _kind_figure(study, rows, out)
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    numbers = {
        "kind": study.kind,
        "objective": f"{metric} ({'max' if study.maximize else 'min'}imized), mean over {study.seeds} seed(s)",
        "trials": ", ".join(f"{n} {s.lower()}" for s, n in _states(rows).items()) + f" (of {study.trials} asked)",
    }  # fmt: skip
    if done:
        best = (max if study.maximize else min)(done, key=lambda r: r["value"])
        se = f" +- {best['stderr']:.3g}" if best["stderr"] else ""
        numbers["best"] = (f"trial {best['number']}: {metric} {best['value']:.5g}{se} with "
                           + ", ".join(f"{k} = {_fmt(v)}" for k, v in best["params"].items()))  # fmt: skip
    numbers.update(_paired(study, done))
    for r in rows:
        value = (
            ""
            if r["value"] is None
            else f"{r['value']:.5g}" + (f" +- {r['stderr']:.2g}" if r["stderr"] else "")
        )
        if len(r["values"] or ()) > 1:  # each seed's own value, in seed order
            value += " (seeds: " + ", ".join(f"{v:.4g}" for v in r["values"]) + ")"
        secs = f"{r['seconds']:.1f} s" if r["seconds"] is not None else ""
        params = ", ".join(f"{k} = {_fmt(v)}" for k, v in r["params"].items())
        retry = f" (retry of trial {r['retry_of']})" if r["retry_of"] is not None else ""
        numbers[f"trial {r['number']}{retry}"] = "; ".join(
            x for x in (params, value, r["state"].lower() + (f": {r['why']}" if r["why"] else ""), secs) if x
        )  # fmt: skip
    page = write_html(out / "report.html", f"elbokit study: {study.study.study_name}", numbers, pngs,
                      study.study.user_attrs.get("elbokit", {}))  # fmt: skip
    say(f"wrote {page} and {len(pngs)} figures in {out}")
    return page


def _run_folder(study: Study, path: str) -> Path:
    """A trial's run folder as recorded, or found under the study's folder where the study was
    run from another directory (the path from its trial-NNNN folder on)."""
    p = Path(path)
    if p.exists():
        return p
    parts = p.parts
    tail = next((i for i, part in enumerate(parts) if part.startswith("trial-")), len(parts) - 1)
    return study.folder.joinpath(*parts[tail:])


def _paired(study: Study, done: list[dict]) -> dict[str, str]:
    """Each finished trial against the best, paired per test image within each seed and
    reported over seeds (``elbokit.evaluate.paired``), where the runs stored per-image values."""
    if study.seeds < 2 or len(done) < 2:
        return {}
    from elbokit.evaluate.paired import paired_difference
    from elbokit.files import read_json

    best = (max if study.maximize else min)(done, key=lambda r: r["value"])
    try:
        evals = {r["number"]: [read_json(_run_folder(study, f) / "eval.json", "")
                               for f in r["runs"]] for r in done}  # fmt: skip
        key = next(iter(evals[best["number"]][0]["per_image"]))
    except (ValueError, KeyError, StopIteration, OSError):
        return {}  # a kind or an evaluation without per-image values
    out = {}
    for r in done:
        if r is best:
            continue
        try:
            d = paired_difference(evals[r["number"]], evals[best["number"]], key)
        except ValueError as err:
            out[f"trial {r['number']} - best (paired)"] = str(err)
            continue
        out[f"trial {r['number']} - best (paired)"] = (
            f"{key}: {d['mean']:+.4g} +- {d['stderr']:.2g} over {d['seeds']} seeds, each the mean "
            f"of {d['images']} per-image differences"
        )
    return out


def _states(rows) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return out


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _kind_figure(study: Study, rows: list[dict], out: Path) -> list[tuple[Path, str]]:
    """The kind's own figure of a named sweep (the VAE's rate-distortion curve over beta) when
    the study varies that option."""
    recipe = get_recipe(study.kind)
    for name, dotted in recipe.sweeps.items():
        if not any(".".join(p.path) == dotted for p in study.params):
            continue
        points = []
        for r in rows:
            if r["state"] != "COMPLETE":
                continue
            for run in r["runs"]:
                try:
                    last = last_with(read_metrics(Path(run) / "metrics.jsonl"), "test/elbo")
                    points.append({name: r["params"][next(p.name for p in study.params if '.'.join(p.path) == dotted)],
                                   "rate": last["test/kl"], "distortion": last["test/recon"],
                                   "elbo": last["test/elbo"], "run": run})  # fmt: skip
                except (OSError, KeyError, StopIteration, ValueError):
                    continue
        if points:
            points.sort(key=lambda p: p[name])
            return [
                (
                    recipe.sweep_figure(name, points, out),
                    f"The {recipe.name}'s own figure of a {name} study.",
                )
            ]
    return []
