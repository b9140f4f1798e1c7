"""Configs: nested sections defined once, strict about keys and values, the CLI generated from
them, saved runs of the earlier format read or refused with a way out."""

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from elbokit import recipes
from elbokit.cli import main
from elbokit.config import ConfigError, Section, from_dict, leaves, merge, opt, to_dict
from elbokit.likelihoods import LIKELIHOODS
from references import weights

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Inner(Section):
    width: int = opt(4, "a width", ge=1)
    rate: float = opt(0.5, "a rate", gt=0, le=1)
    family: str = opt("bernoulli", "a registered family", choices=LIKELIHOODS)


@dataclass(frozen=True)
class Outer(Section):
    inner: Inner = opt(default_factory=Inner, help="the inner section")
    sizes: tuple[int, ...] = opt((1, 2), "sizes")
    name: str = opt("x", "a name", flag="label")


def test_values_are_checked_whoever_builds_the_section():
    assert Inner(rate=1).rate == 1.0 and isinstance(Inner(rate=1).rate, float)  # int -> float
    for kwargs, message in [
        ({"width": 0}, "width = 0: expected a value >= 1"),
        ({"width": 2.5}, "width = 2.5: expected an integer"),
        ({"width": True}, "width = True: expected an integer"),
        ({"rate": float("nan")}, "rate = nan: expected a finite number"),
        ({"rate": 2.0}, "rate = 2.0: expected a value <= 1"),
        ({"family": "bernouli"}, "did you mean 'bernoulli'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Inner(**kwargs)
    # a family registered in the likelihood registry is a valid choice everywhere
    assert Inner(family="categorical").family == "categorical"


def test_from_dict_is_strict_and_names_the_closest_key():
    cfg = from_dict(Outer, {"inner": {"width": 8}, "sizes": [3]})
    assert cfg.inner.width == 8 and cfg.sizes == (3,) and cfg.inner.rate == 0.5
    assert from_dict(Outer, json.loads(json.dumps(to_dict(cfg)))) == cfg  # JSON round trip
    with pytest.raises(ConfigError, match="unknown key inner.widht; did you mean inner.width"):
        from_dict(Outer, {"inner": {"widht": 8}})
    with pytest.raises(ConfigError, match="unknown key width; width belongs in inner.width"):
        from_dict(Outer, {"width": 8})
    with pytest.raises(ConfigError, match="inner must be an object of keys"):
        from_dict(Outer, {"inner": 3})
    with pytest.raises(ConfigError, match=r"inner.rate = 0.0: expected a value > 0"):
        merge(Outer(), {"inner": {"rate": 0}})
    flags = [leaf.flag for leaf in leaves(Outer())]
    assert flags == ["width", "rate", "family", "sizes", "label"]


def test_every_kind_has_unique_flags_and_help_for_every_option():
    for recipe in recipes.RECIPES.values():
        for preset in recipe.presets:
            cfg = recipe.preset(preset)
            assert all(leaf.field.metadata["help"] for leaf in leaves(cfg))  # and no collision
        assert recipe.help and "default" in recipe.presets
        assert set(recipe.preset_notes) <= set(recipe.presets)


def test_the_cli_names_the_closest_option_and_rejects_bad_values_before_any_folder(
    tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(["train", "vae", "--lr-typo", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown option --lr-typo; did you mean --lr?" in err
    assert main(["train", "vae", "--beta", "nan", "--out", str(out)]) == 2
    assert "--beta nan: expected a finite number" in capsys.readouterr().err
    assert main(["train", "vae", "--batch-size", "0", "--out", str(out)]) == 2
    assert "--batch-size 0: expected a value >= 1" in capsys.readouterr().err
    assert main(["train", "vae", "--lat", "3", "--out", str(out)]) == 2  # no abbreviations
    assert "unknown option --lat" in capsys.readouterr().err
    assert main(["train", "vea"]) == 2
    err = capsys.readouterr().err
    assert "unknown kind of run 'vea'" in err and "did you mean 'vae'" in err
    assert not out.exists()


def test_train_help_lists_every_kind_and_a_kinds_help_its_sections(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for name, recipe in recipes.RECIPES.items():
        assert f"  {name}" in text and recipe.help in text
    with pytest.raises(SystemExit) as done:
        main(["train", "vae", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for section in ("data:", "model:", "objective:", "optim:", "train:", "evaluate:"):
        assert section in text
    assert "categorical" in text  # the registered categorical likelihood is a choice
    assert text.count("(default: runs/vae-mnist5k-TIME,") == 1


def test_a_misspelled_key_in_a_saved_config_names_the_closest(tmp_path):
    run = tmp_path / "run"
    vae = recipes.get_recipe("vae")
    recipes.train(vae, vae.preset("debug", {"train": {"progress": False}, "evaluate": {"eval_k": 0}}),
                  out=run, say=lambda *a: None)  # fmt: skip
    saved = json.loads((run / "config.json").read_text())
    saved["config"]["optim"]["lrate"] = saved["config"]["optim"].pop("lr")
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(
        ConfigError, match=r"config.json: unknown key optim.lrate; did you mean optim.lr\?"
    ):
        recipes.open_run(run)
    assert main(["eval", str(run)]) == 2


@pytest.mark.parametrize("kind", ["vae-debug", "wm-debug"])
def test_runs_saved_in_the_earlier_format_load_evaluate_and_resume(tmp_path, kind, capsys):
    """config.json as elbokit wrote it before recipes (flat options + the model's config) is read
    into the sections; a run resumed under it ends with the uninterrupted run's weights."""
    pytest.importorskip("gymnasium")
    old = json.loads((DATA / f"format1-{kind}.json").read_text())
    recipe = recipes.get_recipe(old["kind"])
    # the earlier format's threads = 0 meant torch's default, one per core, as it does now
    cfg = recipe.preset("debug", {"train": {"progress": False, "threads": 0}})
    quiet = lambda *a: None  # noqa: E731
    a = recipes.train(recipe, cfg, out=tmp_path / "a", say=quiet)
    b = tmp_path / "b"
    if kind == "wm-debug":  # the same episodes, so the two runs see the same data
        shutil.copytree(a / "episodes", b / "episodes")
    often = merge(cfg, {"train": {"checkpoint_every": 3}})
    recipes.train(recipe, often, out=b, stop_at=7, say=quiet)
    (b / "config.json").write_text(json.dumps(old))  # as an earlier elbokit saved it
    # (a run saves the thread count it resolved, 0 as one per core; the earlier format kept 0)
    ca = recipes.open_run(a).config
    assert recipes.open_run(b).config == replace(ca, train=replace(ca.train, threads=0))
    recipes.train(recipe, resume=b, say=quiet)
    (la, _), (lb, _) = recipes.open_run(a).learner(), recipes.open_run(b).learner()
    wa, wb = weights(la.model), weights(lb.model)
    assert all((wa[k] == wb[k]).all() for k in wa)
    # an option this version does not know: an error that says how to redo the run
    old["run"]["dropout"] = 0.1
    (b / "config.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match=f"option 'dropout'.*elbokit train {old['kind']}"):
        recipes.open_run(b)


def test_resume_takes_only_options_that_do_not_change_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False, "checkpoint_every": 3},
                               "evaluate": {"eval_k": 0}})  # fmt: skip
    recipes.train(vae, cfg, out=run, stop_at=5, say=lambda *a: None)
    assert main(["train", "vae", "--resume", str(run), "--beta", "2"]) == 2
    assert "drop --beta" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "state.json").read_text())["step"] == 66


def test_a_run_interrupted_before_its_first_checkpoint_starts_again(tmp_path, capsys):
    run = tmp_path / "run"
    vae = recipes.get_recipe("vae")
    cfg = vae.preset("debug", {"train": {"progress": False}, "evaluate": {"eval_k": 0}})
    recipes.train(vae, cfg, out=run, stop_at=5, say=lambda *a: None)  # before step 20's
    assert not (run / "state.json").exists() and (run / "config.json").exists()
    assert main(["train", "--resume", str(run)]) == 0
    assert "starting it again from step 0" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # one run's lines, not two runs' appended


def test_world_model_defaults_live_in_one_place():
    """The run's defaults are the sections' own: nothing re-declares them with other values."""
    from elbokit.models.world_model import WorldModelConfig
    from elbokit.objectives import WorldModelLoss, WorldModelObjectiveConfig

    cfg = recipes.get_recipe("world-model").default()
    assert cfg.model == WorldModelConfig() and cfg.objective == WorldModelObjectiveConfig()
    loss = WorldModelLoss()
    assert dict(loss.scales) == cfg.objective.scales() and loss.kl == cfg.objective.balance()


def test_the_thread_count_under_load(monkeypatch):
    """The default takes one thread per core whatever the load (the count changes the numbers)
    and says fewer would run faster; auto takes the cores other work leaves; a count is kept."""
    from elbokit.train import settings

    monkeypatch.setattr(settings, "_busy_cores", lambda interval=0.1: 1.0)
    two = replace(settings.cpu_info(), cores=2)
    monkeypatch.setattr(settings, "cpu_info", lambda: two)
    monkeypatch.setattr(settings.torch, "get_num_threads", lambda: 2)
    threads, why = settings.choose_threads(0)
    assert threads == 2 and "other work keeps 1.0 of 2 cores busy: --threads 1" in why
    assert "would likely run faster here" in why
    assert settings.choose_threads(-1) == (1, "1 (auto: 2 cores, 1.0 busy with other work)")
    threads, why = settings.choose_threads(3)
    assert threads == 3 and "more than this machine's 2 cores" in why
