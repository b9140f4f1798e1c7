"""``elbokit train KIND``, ``elbokit eval RUN`` and ``elbokit report RUN`` for every kind in the
recipe registry: options generated from the kind's config, nothing here knows a kind."""

from __future__ import annotations

import sys
from pathlib import Path

from elbokit import recipes
from elbokit.cli._args import (
    Parser,
    UsageError,
    add_config_arguments,
    given,
    merged,
    parse,
)
from elbokit.config import leaves
from elbokit.recipes._runs import read_saved
from elbokit.recipes.run import default_run_dir
from elbokit.train.checkpoint import read_state


def kinds_usage(verb: str = "train") -> str:
    kinds = {n: r for n, r in recipes.RECIPES.items() if verb == "train" or r.verb == verb}
    width = max(map(len, kinds))
    lines = [f"usage: elbokit {verb} KIND [options]   (elbokit {verb} KIND --help for its options)",
             f"       elbokit {verb} --resume RUN", "", "kinds:"]  # fmt: skip
    lines += [f"  {name:<{width}}  {r.help}" for name, r in kinds.items()]
    if verb != "train":
        lines += [
            "",
            f"({verb} is train by another name for these; every kind is elbokit train KIND)",
        ]
    return "\n".join(lines)


def _train_parser(recipe, verb: str = "train") -> tuple[Parser, dict]:
    parser = Parser(
        prog=f"elbokit {verb} {recipe.name}", description=recipe.help,
        usage=f"elbokit {verb} {recipe.name} [--preset NAME] [options] [--out DIR] | --resume RUN",
    )  # fmt: skip
    by_dest = add_config_arguments(parser, recipe.default())
    run = parser.add_argument_group("run")
    notes = "; ".join(f"{k}: {v}" for k, v in recipe.preset_notes.items())
    run.add_argument(
        "--preset", choices=list(recipe.presets), default="default",
        help=f"named settings the other options override (default: default){'. ' + notes if notes else ''}",
    )  # fmt: skip
    run.add_argument("--out", default="", metavar="DIR",
                     help=f"run directory (default: {recipe.default_out(recipe.default())}-TIME)")  # fmt: skip
    run.add_argument("--resume", default="", metavar="RUN",
                     help="continue the interrupted run in RUN from its last checkpoint")  # fmt: skip
    return parser, by_dest


def train_command(argv: list[str], verb: str = "train") -> int:
    if not argv:
        raise UsageError(f"elbokit {verb}: which kind of run?\n\n{kinds_usage(verb)}")
    if argv[0] in ("-h", "--help"):
        print(kinds_usage(verb))
        return 0
    if argv[0].startswith("-"):
        if argv[0] == "--resume" and len(argv) > 1:  # the kind is the run's
            argv = [read_saved(argv[1])["kind"], *argv]
        else:
            raise UsageError(
                f"elbokit {verb}: expected a kind first, got {argv[0]}\n\n{kinds_usage(verb)}"
            )
    recipe = recipes.get_recipe(argv[0])
    if verb != "train" and recipe.verb != verb:
        raise UsageError(
            f"elbokit {verb} is for the kinds that are fitted "
            f"({', '.join(n for n, r in recipes.RECIPES.items() if r.verb == verb)}); "
            f"a {recipe.name} run is trained: elbokit train {recipe.name}"
        )
    parser, by_dest = _train_parser(recipe, verb)
    ns = parse(parser, argv[1:])
    if ns.resume:
        allowed = [leaf for leaf in by_dest.values() if leaf.field.metadata.get("on_resume")]
        fixed = [f"--{leaf.flag}" for dest, leaf in by_dest.items()
                 if hasattr(ns, dest) and leaf not in allowed]  # fmt: skip
        fixed += ["--out"] if ns.out else []
        fixed += ["--preset"] if ns.preset != "default" else []
        if fixed:
            raise UsageError(
                f"--resume continues {ns.resume} with its saved config; drop {', '.join(fixed)} "
                f"(only {', '.join('--[no-]' + leaf.flag for leaf in allowed)} may change)"
            )
        return _interruptible(
            lambda: recipes.train(recipe, resume=ns.resume, resume_changes=given(ns, by_dest)),
            ns.resume,
        )
    config = merged(recipe.preset(ns.preset), ns, by_dest, parser.prog)
    out = str(ns.out or default_run_dir(recipe, config))
    return _interruptible(lambda: recipes.train(recipe, config, out=out), out)


def _interruptible(fn, run: str) -> int:
    """Run ``fn``; on Ctrl-C, one line saying what was kept and how to go on, exit status 130."""
    try:
        fn()
    except KeyboardInterrupt:
        run_dir = Path(run)
        if (run_dir / "state.json").exists():
            step = read_state(run_dir).get("step")
            what = (f"the last checkpoint (step {step}) is kept: continue with elbokit train "
                    f"--resume {run}")  # fmt: skip
        elif (run_dir / "config.json").exists():
            what = (f"no checkpoint was written yet: elbokit train --resume {run} starts it "
                    "again from step 0")  # fmt: skip
        else:
            what = "nothing was written"
        print(f"\nelbokit: interrupted; {what}", file=sys.stderr)
        return 130
    return 0


def _run_parser(command: str, argv: list[str], description: str):
    """The parser of ``elbokit eval|report RUN``, with the options of RUN's kind."""
    run_dir = next((a for a in argv if not a.startswith("-")), None)
    if run_dir is None:
        lines = [f"usage: elbokit {command} RUN [options of RUN's kind]", "", description, ""]
        for name, r in recipes.RECIPES.items():
            opts = " ".join(f"[--{leaf_flag}]" for leaf_flag in _flags(r.eval_options()))
            lines.append(f"  {name}: {opts or '(no options)'}")
        text = "\n".join(lines)
        if any(a in ("-h", "--help") for a in argv):
            print(text)
            return None, None, None
        raise UsageError(f"elbokit {command}: which run? \n\n{text}")
    run = recipes.open_run(run_dir)
    parser = Parser(
        prog=f"elbokit {command} RUN", description=f"{description} ({run.recipe.name} run)",
        usage=f"elbokit {command} RUN [options]",
    )  # fmt: skip
    parser.add_argument("run", metavar="RUN", help="a run directory written by elbokit train")
    by_dest = add_config_arguments(parser, run.recipe.eval_options())
    return run, parser, by_dest


def _flags(section) -> list[str]:
    return [leaf.flag for leaf in leaves(section)]


def eval_command(argv: list[str]) -> int:
    run, parser, by_dest = _run_parser("eval", argv, "evaluate a trained run; writes RUN/eval.json")
    if run is None:
        return 0
    options = merged(run.recipe.eval_options(), parse(parser, argv), by_dest, parser.prog)
    run.recipe.evaluate(run, options)
    return 0


def report_command(argv: list[str]) -> int:
    run, parser, by_dest = _run_parser(
        "report", argv, "figures and a one-page report.html in RUN/report (evaluates first if "
        "RUN/eval.json is missing, with these options)",
    )  # fmt: skip
    if run is None:
        return 0
    options = merged(run.recipe.eval_options(), parse(parser, argv), by_dest, parser.prog)
    run.recipe.report(run, options)
    return 0


__all__ = ["eval_command", "kinds_usage", "report_command", "train_command"]
