"""The ``elbokit`` command.

    elbokit kl "normal(0, 1)" "normal(1, 2)"     KL both ways, in nats and bits, and how
    elbokit kl plot [--out kl.png]               the Gaussian KL figure

Options are generated from the config dataclasses of each command (``--help`` lists them).
Errors in user input print one line (or a spec with a caret) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from elbokit.cli._args import add_config_arguments, config_from_args
from elbokit.cli.kl import SPEC_HELP, KLConfig, KLPlotConfig, run_kl, run_kl_plot
from elbokit.cli.spec import SpecError

# (words, config class, runner, one-line description)
COMMANDS = (
    (
        ("kl", "plot"),
        KLPlotConfig,
        run_kl_plot,
        "draw KL(N(mu, sigma^2) || N(0, 1)) and its asymmetry",
    ),
    (("kl",), KLConfig, run_kl, "KL between two distributions, both directions, nats and bits"),
)


def _parser(words, cls, description) -> argparse.ArgumentParser:
    epilog = SPEC_HELP if cls is KLConfig else None
    parser = argparse.ArgumentParser(
        prog="elbokit " + " ".join(words), description=description, epilog=epilog
    )
    add_config_arguments(parser, cls)
    return parser


def _usage() -> str:
    lines = ["usage: elbokit COMMAND [options]   (elbokit COMMAND --help for its options)", ""]
    lines += [f"  elbokit {' '.join(w):<12} {d}" for w, _, _, d in sorted(COMMANDS)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    for words, cls, run, description in COMMANDS:  # longest command first
        if tuple(argv[: len(words)]) == words:
            ns = _parser(words, cls, description).parse_args(argv[len(words) :])
            try:
                return run(config_from_args(cls, ns))
            except SpecError as e:
                print(f"elbokit: bad distribution spec: {e}", file=sys.stderr)
                return 2
            except (ValueError, ImportError, NotImplementedError) as e:
                print(f"elbokit: {e}", file=sys.stderr)
                return 2
    print(f"elbokit: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
    return 2
