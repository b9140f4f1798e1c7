"""The ``elbokit`` command.

    elbokit train KIND [--preset debug] [...]    train a run of a kind (elbokit train --help)
    elbokit train --resume RUN                   continue an interrupted run
    elbokit fit KIND [...]                       train, for the kinds that are fitted (exact models)
    elbokit eval RUN                             the kind's evaluation (RUN/eval.json)
    elbokit report RUN                           figures and a one-page report.html
    elbokit sweep beta --values 0.5 1 2 4        rate-distortion curve over beta (VAE)
    elbokit collect [--env CartPole-v1]          episodes with pixel observations from gymnasium
    elbokit kl "normal(0, 1)" "normal(1, 2)"     KL both ways, in nats and bits, and how
    elbokit kl plot [--out kl.png]               the Gaussian KL figure

Options are generated from the config sections of each command or kind (``--help`` lists
them); the kinds come from the recipe registry (``elbokit.recipes.RECIPES``). Errors in user input print one line (or
a spec with a caret) and exit with status 2; a run that diverges exits with 3.
"""

from __future__ import annotations

import functools
import sys

from elbokit.cli._args import Parser, UsageError, add_config_arguments, given, merged, parse
from elbokit.cli.spec import SpecError
from elbokit.config import ConfigError
from elbokit.data import DataError
from elbokit.train.checkpoint import CheckpointError
from elbokit.train.learner import TrainingDiverged


def _config_command(words: tuple[str, ...], cls, run, description: str, epilog=None):
    def command(argv: list[str]) -> int:
        parser = Parser(prog="elbokit " + " ".join(words), description=description, epilog=epilog)
        default = _default(cls)
        by_dest = add_config_arguments(parser, default)
        return run(merged(default, parse(parser, argv), by_dest, parser.prog))

    return command


def _default(cls):
    """A config with placeholder positionals, to generate options from (they must be given)."""
    import dataclasses

    fields = {f.name: "" for f in dataclasses.fields(cls) if f.metadata.get("positional")}
    return cls(**fields)


def _commands():
    from elbokit.cli.collect import run_collect
    from elbokit.cli.kl import SPEC_HELP, KLConfig, KLPlotConfig, run_kl, run_kl_plot
    from elbokit.cli.runs import eval_command, report_command, train_command
    from elbokit.cli.sweep import sweep_command
    from elbokit.data.collect import CollectConfig

    # (words, runner of the remaining argv, description); longest match first
    return (
        (("train",), train_command, "train a run of a kind: elbokit train --help lists the kinds"),
        (("fit",), functools.partial(train_command, verb="fit"),
         "train, for the kinds that are fitted (elbokit fit --help lists them)"),
        (("eval",), eval_command, "evaluate a trained run as its kind does (RUN/eval.json)"),
        (("report",), report_command, "figures and a one-page HTML report of a run"),
        (("sweep",), sweep_command, "sweep beta: one VAE per beta, then the rate-distortion curve"),
        (("collect",), _config_command(("collect",), CollectConfig, run_collect,
         "collect episodes with pixel observations from a gymnasium environment"),
         "collect episodes with pixel observations from a gymnasium environment"),
        (("kl", "plot"), _config_command(("kl", "plot"), KLPlotConfig, run_kl_plot,
         "draw KL(N(mu, sigma^2) || N(0, 1)) and its asymmetry"),
         "draw KL(N(mu, sigma^2) || N(0, 1)) and its asymmetry"),
        (("kl",), _config_command(("kl",), KLConfig, run_kl,
         "KL between two distributions, both directions, nats and bits", SPEC_HELP),
         "KL between two distributions, both directions, nats and bits"),
    )  # fmt: skip


def _usage() -> str:
    from elbokit.recipes import RECIPES

    commands = _commands()
    lines = ["usage: elbokit COMMAND [options]   (elbokit COMMAND --help for its options)", ""]
    width = max(len(" ".join(w)) for w, _, _ in commands)
    lines += [f"  elbokit {' '.join(w):<{width}}  {d}" for w, _, d in commands]
    lines += ["", "kinds of run: " + ", ".join(RECIPES)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from elbokit._version import __version__

        print(f"elbokit {__version__}")
        return 0
    try:
        for words, run, _ in _commands():
            if tuple(argv[: len(words)]) == words:
                return run(argv[len(words) :])
        from elbokit.config import closest

        names = sorted({w[0] for w, _, _ in _commands()})
        hint = closest(argv[0], names)
        raise UsageError(
            f"unknown command {argv[0]!r}" + (f"; did you mean {hint!r}?" if hint else "")
            + f"\n\n{_usage()}"
        )  # fmt: skip
    except (
        KeyboardInterrupt
    ):  # train says what it kept (cli/runs.py); elsewhere nothing is half-written
        print("\nelbokit: interrupted; nothing was written", file=sys.stderr)
        return 130
    except SpecError as e:
        print(f"elbokit: bad distribution spec: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"elbokit: training diverged: {e}", file=sys.stderr)
        return 3
    except (UsageError, ConfigError, ValueError, ImportError, NotImplementedError, DataError,
            CheckpointError, OSError) as e:  # fmt: skip
        text = str(e) if isinstance(e, OSError) is False else _os_error(e)
        print(text if text.startswith("elbokit") else f"elbokit: {text}", file=sys.stderr)
        return 2


def _os_error(e: OSError) -> str:
    """A file system error in one line: what failed, on which path."""
    path = e.filename or "a path"
    if isinstance(e, FileExistsError) or isinstance(e, NotADirectoryError):
        return f"cannot write under {path}: it is a file, not a folder"
    if isinstance(e, PermissionError):
        return f"cannot write {path}: permission denied"
    if isinstance(e, FileNotFoundError):
        return f"cannot create {path}: its parent folder does not exist or cannot hold it"
    return f"cannot use {path}: {e.strerror or e}"


__all__ = ["Parser", "add_config_arguments", "given", "main", "parse"]
