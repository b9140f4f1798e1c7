"""The ``elbokit`` command.

    elbokit kl "normal(0, 1)" "normal(1, 2)"     KL both ways, in nats and bits, and how
    elbokit kl plot [--out kl.png]               the Gaussian KL figure
    elbokit train vae [--preset debug] [...]     train a VAE (mnist5k by default)
    elbokit eval RUN [--k 1000]                  log p(x) by importance sampling, diagnostics
    elbokit report RUN                           figures and a one-page report.html
    elbokit sweep beta --values 0.5 1 2 4        rate-distortion curve over beta
    elbokit collect [--env CartPole-v1]          episodes with pixel observations from gymnasium
    elbokit train world-model [--preset debug]   a DreamerV2-style world model, open-loop report

Options are generated from the config dataclasses of each command (``--help`` lists them).
Errors in user input print one line (or a spec with a caret) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from elbokit.cli._args import add_config_arguments, config_from_args, given_options
from elbokit.cli.evaluate import EvalConfig, run_eval
from elbokit.cli.kl import SPEC_HELP, KLConfig, KLPlotConfig, run_kl, run_kl_plot
from elbokit.cli.report import ReportConfig, run_report
from elbokit.cli.spec import SpecError
from elbokit.cli.train import PRESETS, TrainVAEConfig, run_train_vae
from elbokit.cli.world_model import PRESETS as WM_PRESETS
from elbokit.cli.world_model import (
    CollectConfig,
    TrainWorldModelConfig,
    run_collect,
    run_train_world_model,
)
from elbokit.data import DataError
from elbokit.train.checkpoint import CheckpointError
from elbokit.train.trainer import TrainingDiverged


def _sweep_beta(ns: argparse.Namespace) -> int:
    from elbokit.cli.sweep import run_sweep_beta

    if ns.resume:
        raise ValueError(
            "sweep beta has no --resume; resume a single run with elbokit train vae --resume RUN"
        )
    return run_sweep_beta(
        config_from_args(TrainVAEConfig, ns, base=PRESETS[ns.preset]), tuple(ns.values)
    )


def _training_command(cls, presets, run):
    """A train command's runner: a preset with the typed options over it, or --resume RUN
    (which continues with the saved config, so other options are an error)."""

    def command(ns: argparse.Namespace) -> int:
        given = given_options(cls, ns)
        if ns.resume:
            if given:
                raise ValueError(
                    f"--resume continues {ns.resume} with its saved config; drop "
                    + ", ".join("--" + k.replace("_", "-") for k in given)
                )
            return run(presets["default"], resume=ns.resume)
        return run(config_from_args(cls, ns, base=presets[ns.preset]))

    return command


_train_vae = _training_command(TrainVAEConfig, PRESETS, run_train_vae)
_train_world_model = _training_command(TrainWorldModelConfig, WM_PRESETS, run_train_world_model)


# configs whose commands take --preset and --resume, with their presets
PRESET_TABLES = {TrainVAEConfig: PRESETS, TrainWorldModelConfig: WM_PRESETS}

# (words, config class, runner, one-line description); runners of configs with presets take
# the namespace (see _train_vae), the others the config.
COMMANDS = (
    (
        ("train", "world-model"),
        TrainWorldModelConfig,
        _train_world_model,
        "train a DreamerV2-style world model on episodes; --preset debug runs in seconds",
    ),
    (
        ("collect",),
        CollectConfig,
        run_collect,
        "collect episodes with pixel observations from a gymnasium environment",
    ),
    (("train", "vae"), TrainVAEConfig, _train_vae, "train a VAE; --preset debug runs in seconds"),
    (
        ("sweep", "beta"),
        TrainVAEConfig,
        _sweep_beta,
        "one VAE per beta, then the rate-distortion curve",
    ),
    (
        ("eval",),
        EvalConfig,
        run_eval,
        "importance-sampled log p(x) and collapse diagnostics (world models: open-loop errors)",
    ),
    (("report",), ReportConfig, run_report, "figures and a one-page HTML report of a run"),
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
    presets = PRESET_TABLES.get(cls)
    add_config_arguments(parser, cls, only_given=presets is not None)
    if words == ("sweep", "beta"):
        parser.add_argument(
            "--values",
            type=float,
            nargs="+",
            required=True,
            help="the betas to train, e.g. 0.5 1 2 4",
        )
    if presets is not None:
        parser.add_argument(
            "--preset",
            choices=sorted(presets),
            default="default",
            help="named settings the other options override (default: default)",
        )
        parser.add_argument(
            "--resume",
            default="",
            metavar="RUN",
            help="continue the interrupted run in RUN from its last checkpoint",
        )
    return parser


def _usage() -> str:
    lines = ["usage: elbokit COMMAND [options]   (elbokit COMMAND --help for its options)", ""]
    width = max(len(" ".join(w)) for w, _, _, _ in COMMANDS)
    lines += [f"  elbokit {' '.join(w):<{width}}  {d}" for w, _, _, d in sorted(COMMANDS)]
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
                return run(ns) if cls in PRESET_TABLES else run(config_from_args(cls, ns))
            except SpecError as e:
                print(f"elbokit: bad distribution spec: {e}", file=sys.stderr)
                return 2
            except TrainingDiverged as e:
                print(f"elbokit: training diverged: {e}", file=sys.stderr)
                return 3
            except (ValueError, ImportError, NotImplementedError, DataError, CheckpointError) as e:
                print(f"elbokit: {e}", file=sys.stderr)
                return 2
    print(f"elbokit: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
    return 2
