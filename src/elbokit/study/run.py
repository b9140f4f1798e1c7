"""A study: many runs of one kind, their settings drawn by Optuna, in one or many processes that
share a relational database (SQLite on one machine, any SQLAlchemy URL such as PostgreSQL when
several machines join).

    study = Study.create("vae", params, base_config, folder="runs/sweep-vae", trials=16)
    study.work()                       # this process runs trials until the study has them all

Every trial is an ordinary run folder, FOLDER/trial-0003 (FOLDER/trial-0003/seed-1 with several
seeds), resumable with ``elbokit train --resume``. The study's own record is Optuna's: the spec
(kind, parameters, fixed config, seeds, objective) is stored in the study's user attributes, so
a worker on another machine needs only ``--storage URL --study NAME``.

Faults. A trial that fails (a NaN stop, a setting the kind refuses) is recorded as failed with its
one-line reason, and the study goes on. Workers send heartbeats; a worker killed mid-trial leaves
a trial that goes stale, Optuna fails it, ``RetryHeartbeatStaleTrialCallback`` queues a copy, and the
worker that takes the copy resumes the killed trial's folder from its last checkpoint (its lock
is stale and taken over). A worker starts no trial the study does not need: it waits while the
others run the last ones, so a killed trial is retried, not replaced.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from elbokit.config import ConfigError, Section, from_dict, merge, nest, to_dict
from elbokit.data import DataError
from elbokit.recipes.registry import get_recipe
from elbokit.recipes.run import train
from elbokit.seeding import mix
from elbokit.study.params import Param, parse_params
from elbokit.train.checkpoint import CheckpointError, read_state
from elbokit.train.learner import TrainingDiverged

__all__ = ["Study", "read_objective"]

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
# failures a trial may end in that leave the study going (anything else stops the worker)
TRIAL_ERRORS = (ConfigError, ValueError, TrainingDiverged, DataError, CheckpointError)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("studies run on Optuna: pip install 'elbokit[study]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and retries are marked experimental in Optuna; they are what we rely on
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def read_objective(run_dir: Path, metric: str) -> float:
    """The value of ``metric`` for a finished run: its last logged value (``test/elbo``), or a
    key of its eval.json (``log_likelihood``, ``bnn.rmse``).

    Raises:
        ConfigError: the run has no such metric (naming those it has).
    """
    if "/" in metric:
        last, seen = None, set()
        path = run_dir / "metrics.jsonl"
        for line in path.read_text().splitlines() if path.exists() else ():
            row = json.loads(line)
            seen |= {k for k in row if k.count("/") >= 1 and not k.startswith(("train/", "time/"))}
            if metric in row:
                last = row[metric]
        if last is None:
            raise ConfigError(
                f"--objective {metric}: this kind's runs log {', '.join(sorted(seen)) or 'no evaluations'}"
            )
        return float(last)
    result = (
        json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").exists() else {}
    )
    value = result
    for part in metric.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        keys = sorted(
            k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        raise ConfigError(
            f"--objective {metric}: not a number in its eval.json (numbers there: {', '.join(keys) or 'none'})"
        )
    return float(value)


class _Pruned(Exception):
    """Raised from the trainer's evaluation hook when Optuna's pruner stops a trial."""


@dataclass
class Study:
    """A study and what it varies (see the module docstring)."""

    study: object  # optuna.Study
    kind: str
    params: list[Param]
    base: Section
    folder: Path
    trials: int
    seeds: int
    metric: str
    maximize: bool
    _stop: str = ""

    # ------------------------------------------------------------------ creating and joining
    @staticmethod
    def storage(url: str, heartbeat: int = 10):
        """Optuna's RDB storage of ``url`` with heartbeats (a killed worker's trial goes stale
        after 3 of them) and a retry of each stale trial."""
        optuna = _optuna()
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        try:
            return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))  # fmt: skip
        except (ValueError, ImportError, optuna.exceptions.StorageInternalError) as err:
            raise ConfigError(f"--storage {url}: {err}") from None

    @classmethod
    def create(cls, kind: str, specs: list[str], base: Section, *, folder: Path, name: str,
               storage: str, trials: int, seeds: int = 1, objective: str = "",
               sampler: str = "tpe", pruner: str = "median", heartbeat: int = 10,
               worker: int = 0) -> Study:  # fmt: skip
        """A new study (or the one of that name in ``storage``, when its spec is the same).

        Raises:
            ConfigError: a bad parameter, objective, sampler or pruner; a study of that name
                that varies something else.
        """
        optuna = _optuna()
        recipe = get_recipe(kind)
        params = parse_params(specs, base)
        if not params:
            raise ConfigError("a study needs at least one --param NAME=RANGE")
        metric, maximize = _objective(objective or recipe.headline)
        if sampler not in SAMPLERS or pruner not in PRUNERS:
            raise ConfigError(
                f"--sampler {sampler} / --pruner {pruner}: expected one of {SAMPLERS} / {PRUNERS}"
            )
        if trials < 1 or seeds < 1:
            raise ConfigError(f"--trials {trials} --seeds {seeds}: expected at least 1 of each")
        if sampler == "grid":  # (it skips settings other workers have taken)
            size = math.prod(len(p.grid()) for p in params)
            if trials > size:
                raise ConfigError(f"--trials {trials}: the grid has {size} settings")
            chosen = optuna.samplers.GridSampler({p.name: p.grid() for p in params}, seed=0)
        # one process: the study's seed; each of several workers its own (the same seed in two
        # workers would draw the same settings twice)
        seed = base.train.seed if not worker else mix(base.train.seed, worker) % 2**31
        if sampler == "random":
            chosen = optuna.samplers.RandomSampler(seed=seed)
        elif sampler == "tpe":
            chosen = optuna.samplers.TPESampler(seed=seed)
        stopper = (
            optuna.pruners.MedianPruner(n_startup_trials=2)
            if pruner == "median"
            else optuna.pruners.NopPruner()
        )
        spec = {"kind": kind, "params": list(specs), "base": to_dict(base), "folder": str(folder),
                "trials": trials, "seeds": seeds, "metric": metric, "maximize": maximize,
                "sampler": sampler, "pruner": pruner}  # fmt: skip
        study = optuna.create_study(storage=cls.storage(storage, heartbeat), sampler=chosen,
                                    pruner=stopper, study_name=name, load_if_exists=True,
                                    direction="maximize" if maximize else "minimize")  # fmt: skip
        saved = study.user_attrs.get("elbokit")
        if saved is None:
            study.set_user_attr("elbokit", spec)
        elif {k: saved[k] for k in ("kind", "params", "metric")} != {
            k: spec[k] for k in ("kind", "params", "metric")
        }:
            raise ConfigError(f"--study {name} in {storage} is a study of {saved['kind']} over "
                              f"{', '.join(saved['params'])} by {saved['metric']}; name this one otherwise")  # fmt: skip
        return cls(study, kind, params, base, Path(folder), trials, seeds, metric, maximize)

    @classmethod
    def join(cls, storage: str, name: str, heartbeat: int = 10, worker: int = 0) -> Study:
        """The study ``name`` in ``storage``, as its creator described it (another worker).

        Raises:
            ConfigError: no such study, or one elbokit did not make.
        """
        optuna = _optuna()
        store = cls.storage(storage, heartbeat)
        try:
            loaded = optuna.load_study(study_name=name, storage=store)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(store)]
            raise ConfigError(
                f"--study {name}: {storage} holds {', '.join(names) or 'no study'}"
            ) from None
        spec = loaded.user_attrs.get("elbokit")
        if spec is None:
            raise ConfigError(f"--study {name} in {storage} was not made by elbokit sweep")
        recipe = get_recipe(spec["kind"])
        base = from_dict(recipe.config, spec["base"], base=recipe.default(), where=f"study {name}")
        # the creator's sampler and pruner (Optuna does not store them)
        made = cls.create(spec["kind"], spec["params"], base, folder=Path(spec["folder"]), name=name,
                          storage=storage, trials=spec["trials"], seeds=spec["seeds"],
                          objective=f"{spec['metric']}:{'max' if spec['maximize'] else 'min'}",
                          sampler=spec["sampler"], pruner=spec["pruner"], heartbeat=heartbeat,
                          worker=worker)  # fmt: skip
        return made

    # ------------------------------------------------------------------------------ working
    def counts(self) -> dict[str, int]:
        """Trials by state; a failed trial that was retried counts once, as its retry."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
        out = {"done": 0, "running": 0, "waiting": 0}
        for t in trials:
            if t.user_attrs.get("surplus"):
                continue  # started by a worker that lost a race for the last trial: not one
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                out["done"] += 1
            elif t.state == TrialState.FAIL and t.number not in retried:
                out["done"] += 1
            elif t.state == TrialState.RUNNING:
                out["running"] += 1
            elif t.state == TrialState.WAITING:
                out["waiting"] += 1
        return out

    def work(self, say=print, poll: float = 0.2, between=None) -> int:
        """Run trials in this process until the study has ``trials`` of them done (complete,
        pruned or failed), waiting while other workers run the last ones; ``between()`` is called
        between trials and while waiting (a supervisor's watch). Returns the number of trials this
        process ran."""
        from optuna.storages import fail_stale_trials

        ran = 0
        while True:
            if between is not None:
                between()
            fail_stale_trials(self.study)  # a killed worker's trial: failed, and queued again
            c = self.counts()
            if c["done"] >= self.trials:
                return ran
            if c["done"] + c["running"] >= self.trials and not c["waiting"]:
                time.sleep(poll)  # the last trials are running elsewhere (or going stale)
                continue
            self._stop = ""
            self.study.optimize(lambda t: self.trial(t, say), n_trials=1, catch=TRIAL_ERRORS,
                                gc_after_trial=False)  # fmt: skip
            ran += 1
            if self._stop:  # a misspelled objective: no trial can succeed
                raise ConfigError(self._stop)

    def folder_of(self, trial, seed: int) -> Path:
        # a retry (RetryHeartbeatStaleTrialCallback) names the killed trial: it continues that folder
        frozen = self.study._storage.get_trial(trial._trial_id)
        number = frozen.system_attrs.get("failed_trial", trial.number)
        name = self.folder / f"trial-{number:04d}"
        return name / f"seed-{seed}" if self.seeds > 1 else name

    def trial(self, trial, say=print) -> float:
        """One trial: its settings drawn, one run per seed (resumed where a killed worker left
        it), the objective their mean; seed 0's evaluations go to the pruner. A new trial the
        study no longer needs (two workers saw the same queued retry; one took it, Optuna gave the
        other a new trial) ends at once as a surplus, which no count includes."""
        frozen = self.study._storage.get_trial(trial._trial_id)
        if "failed_trial" not in frozen.system_attrs:  # not a retry: is it still needed?
            c = self.counts()  # this trial among the running
            if c["done"] + c["running"] - 1 + c["waiting"] >= self.trials:
                trial.set_user_attr("surplus", True)
                say(f"trial {trial.number}: not needed (the study's trials are done or taken)")
                raise _optuna().TrialPruned("surplus")
        values = {p.path: p.suggest(trial) for p in self.params}
        cfg = merge(self.base, nest({p.path: p.apply(values[p.path]) for p in self.params}),
                    where="the study's parameters")  # fmt: skip
        first_seed = self.base.train.seed
        results, folders, t0 = [], [], time.perf_counter()
        for k in range(self.seeds):
            seed = first_seed + k
            run_cfg = merge(cfg, {"train": {"seed": seed, "progress": False}})
            folder = self.folder_of(trial, seed)
            folders.append(str(folder))

            def report(step, metrics, k=k):
                if k or self.metric not in metrics:
                    return
                trial.report(float(metrics[self.metric]), step)
                if trial.should_prune():
                    raise _Pruned(f"at step {step}")

            try:
                if (folder / "state.json").exists() and read_state(folder).get("complete"):
                    pass  # finished before its worker was killed
                elif (folder / "state.json").exists():
                    say(f"trial {trial.number}: resuming {folder}")
                    train(get_recipe(self.kind), resume=folder, on_eval=report, say=lambda *a: None)
                else:
                    say(
                        f"trial {trial.number}: {_shown(values, self.params)} seed {seed} -> {folder}"
                    )
                    train(get_recipe(self.kind), run_cfg, out=folder, on_eval=report,
                          say=lambda *a: None)  # fmt: skip
            except _Pruned as p:
                say(f"trial {trial.number}: pruned {p} (its folder is kept)")
                trial.set_user_attr("runs", folders)
                trial.set_user_attr("pruned", str(p))
                raise _optuna().TrialPruned(str(p)) from None
            except TRIAL_ERRORS as err:
                trial.set_user_attr("runs", folders)
                trial.set_user_attr("error", str(err).splitlines()[0])
                raise
            try:
                results.append(read_objective(folder, self.metric))
            except ConfigError as err:  # a misspelled objective: the whole study stops, saying so
                self._stop = str(err)
                trial.set_user_attr("error", str(err))
                raise
        mean = sum(results) / len(results)
        se = (
            (sum((r - mean) ** 2 for r in results) / (len(results) - 1) / len(results)) ** 0.5
            if len(results) > 1
            else 0.0
        )
        for key, value in (("runs", folders), ("values", results), ("stderr", se),
                           ("seconds", time.perf_counter() - t0)):  # fmt: skip
            trial.set_user_attr(key, value)
        say(
            f"trial {trial.number}: {self.metric} {mean:.4g}"
            + (f" +- {se:.2g} over {len(results)} seeds" if len(results) > 1 else "")
        )
        return mean


def _objective(text: str) -> tuple[str, bool]:
    metric, _, direction = text.partition(":")
    if not metric or direction not in ("", "max", "min"):
        raise ConfigError(f"--objective {text}: expected METRIC:max or METRIC:min (test/elbo:max)")
    return metric, direction != "min"


def _shown(values: dict, params: list[Param]) -> str:
    return ", ".join(f"{p.name}={values[p.path]:.4g}" if isinstance(values[p.path], float)
                     else f"{p.name}={values[p.path]}" for p in params)  # fmt: skip


def worker_threads(workers: int) -> int:
    """Torch threads per worker so that ``workers`` processes do not oversubscribe the cores."""
    from elbokit.train.settings import cpu_info

    return max(1, cpu_info().cores // max(1, workers))
