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


def _preset_named(argv: list[str], recipe) -> str:
    """The preset ``argv`` asks for (so --help shows its values), or default."""
    for i, word in enumerate(argv):
        name = argv[i + 1] if word == "--preset" and i + 1 < len(argv) else (
            word.split("=", 1)[1] if word.startswith("--preset=") else None)  # fmt: skip
        if name is not None:
            return name if name in recipe.presets else "default"  # a bad name: the parser says so
    return "default"


def _train_parser(recipe, verb: str = "train", preset: str = "default") -> tuple[Parser, dict]:
    """The parser of ``elbokit train KIND``; its --help shows the values of ``preset``."""
    shown = recipe.preset(preset)
    parser = Parser(
        prog=f"elbokit {verb} {recipe.name}",
        description=recipe.help + ("" if preset == "default" else
                                   f" (defaults shown: --preset {preset})"),
        usage=f"elbokit {verb} {recipe.name} [--preset NAME] [options] [--out DIR] | --resume RUN",
    )  # fmt: skip
    by_dest = add_config_arguments(parser, shown)
    run = parser.add_argument_group("run")
    notes = "; ".join(f"{k}: {v}" for k, v in recipe.preset_notes.items())
    run.add_argument(
        "--preset", choices=list(recipe.presets), default="default",
        help=f"named settings the other options override (default: default){'. ' + notes if notes else ''}",
    )  # fmt: skip
    run.add_argument("--out", default="", metavar="DIR",
                     help=f"run directory (default: {recipe.default_out(shown)}-TIME, with -2, -3, "
                          "... where another run took that name)")  # fmt: skip
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
    parser, by_dest = _train_parser(recipe, verb, _preset_named(argv[1:], recipe))
    ns = parse(parser, argv[1:])
    if ns.resume:
        allowed = [leaf for leaf in by_dest.values()
                   if leaf.field.metadata.get("on_resume") or leaf.field.metadata.get("extends")]  # fmt: skip
        fixed = [f"--{leaf.flag}" for dest, leaf in by_dest.items()
                 if hasattr(ns, dest) and leaf not in allowed]  # fmt: skip
        fixed += ["--out"] if ns.out else []
        fixed += ["--preset"] if ns.preset != "default" else []
        if fixed:
            raise UsageError(
                f"--resume continues {ns.resume} with its saved config; drop {', '.join(fixed)} "
                f"(only {', '.join(('--[no-]' if leaf.hint is bool else '--') + leaf.flag for leaf in allowed)} "
                "may change)"
            )
        return _interruptible(
            lambda claimed: recipes.train(recipe, resume=ns.resume, claimed=claimed,
                                          resume_changes=given(ns, by_dest)),
        )  # fmt: skip
    config = merged(recipe.preset(ns.preset), ns, by_dest, parser.prog)
    return _interruptible(
        lambda claimed: recipes.train(recipe, config, out=ns.out, claimed=claimed)
    )


def _interruptible(fn) -> int:
    """Run ``fn(claimed)``; on Ctrl-C, one line saying what was kept and how to go on (of the
    folder the run claimed), exit status 130."""
    folders: list[Path] = []
    try:
        fn(folders.append)
    except KeyboardInterrupt:
        if not folders:
            print("\nelbokit: interrupted; nothing was written", file=sys.stderr)
            return 130
        run_dir = folders[0]
        run = str(run_dir)
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
        usage=f"elbokit {command} RUN [options]", what=f"a {run.recipe.name} run",
    )  # fmt: skip
    parser.add_argument("run", metavar="RUN", help="a run directory written by elbokit train")
    by_dest = add_config_arguments(parser, run.recipe.eval_options())
    parser.add_argument(
        "--threads", default="0", metavar="N|auto",
        help="torch threads: 0, one per core of this machine (the default, as training's); auto, "
             "one per core other work leaves free; N, that many (the count can move the last digits)",
    )  # fmt: skip
    if command == "eval" and hasattr(getattr(run.config, "data", None), "source"):
        parser.add_argument(
            "--data", default="", metavar="DATA",
            help="evaluate on this data's test split instead of the run's own (any source the "
                 "kind reads); writes RUN/eval-data-NAME.json beside eval.json",
        )  # fmt: skip
    return run, parser, by_dest


def _flags(section) -> list[str]:
    return [leaf.flag for leaf in leaves(section)]


def _threads(value: str, prog: str) -> int:
    """The thread count of --threads VALUE, refused in one line before anything runs."""
    from elbokit.train.settings import choose_threads

    n = -1 if value == "auto" else (int(value) if value.isdigit() else None)
    if n is None:
        raise UsageError(f"{prog}: --threads {value!r}: expected a count (0: one per core) or auto")
    count, why = choose_threads(n)
    print(f"threads: {why}")
    return count


def eval_command(argv: list[str]) -> int:
    run, parser, by_dest = _run_parser("eval", argv, "evaluate a trained run; writes RUN/eval.json")
    if run is None:
        return 0
    ns = parse(parser, argv)
    options = merged(run.recipe.eval_options(), ns, by_dest, parser.prog)
    from elbokit.train.settings import run_settings

    with run_settings(_threads(ns.threads, parser.prog), flush_denormal=False):
        run.recipe.evaluate(run.on(ns.data) if getattr(ns, "data", "") else run, options)
    return 0


def report_command(argv: list[str]) -> int:
    run, parser, by_dest = _run_parser(
        "report", argv, "figures and a one-page report.html in RUN/report (evaluates first if "
        "RUN/eval.json is missing, with these options)",
    )  # fmt: skip
    if run is None:
        return 0
    ns = parse(parser, argv)
    options = merged(run.recipe.eval_options(), ns, by_dest, parser.prog)
    from elbokit.train.settings import run_settings

    with run_settings(_threads(ns.threads, parser.prog), flush_denormal=False):
        run.recipe.report(run, options)
    return 0


__all__ = ["eval_command", "kinds_usage", "report_command", "train_command"]
