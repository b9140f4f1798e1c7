"""Command-line options generated from config sections (``elbokit.config``).

Each leaf field of a config becomes ``--flag`` (its name, or ``opt(flag=...)``), grouped under
its section in ``--help`` with its help line and its default; bools get ``--flag/--no-flag``,
tuples take one or more values, choices come from ``Literal`` types or the registries. An unknown
option is an error naming the closest valid one; a value that fails a check is named by the
config (``beta = nan: expected a finite number``).
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Mapping

from elbokit.config import SYNONYMS, ConfigError, Leaf, Section, closest, leaves, merge, nest

__all__ = ["Parser", "UsageError", "add_config_arguments", "as_flags", "given", "merged", "parse"]


class UsageError(ValueError):
    """A command line that cannot be parsed; the message names the option and the fix."""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting, and never takes
    abbreviations (``--lat`` is not ``--latent-dim``)."""

    def __init__(self, *args, what: str = "", **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.what = what  # what the options are for ("a KIND run"), named beside a bad one

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _option_kwargs(leaf: Leaf, show_default: bool) -> dict:
    meta, hint = leaf.field.metadata, leaf.hint
    kw: dict = {"help": meta["help"]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if show_default:
        value = leaf.value
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
        kw["help"] += f" (default: {shown if shown != '' else 'none'})"
    # argparse formats help with %: "80% TPR" must reach it as "80%% TPR"
    kw["help"] = kw["help"].replace("%", "%%")
    if hint is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif origin is typing.Literal:
        kw["choices"] = args
        kw["type"] = type(args[0])
    elif origin is tuple:
        kw["type"], kw["nargs"] = args[0], "+"
    elif hint in (str, int, float):
        kw["type"] = hint
        words = meta.get("words") or {}
        if words:  # a value by name (--threads auto) or by number
            kw["type"] = _word_or(hint, words)
    else:
        raise TypeError(f"config field {leaf.dotted!r} has unsupported type {hint!r}")
    choices = meta.get("choices")
    if choices is not None:
        kw["choices"] = list(choices)
    if "choices" in kw:
        kw["metavar"] = "{" + ",".join(map(str, kw["choices"])) + "}"
    elif "type" in kw:
        kw["metavar"] = {int: "N", float: "X"}.get(kw["type"], leaf.flag.upper().replace("-", "_"))
    if meta.get("words"):  # {auto,N}
        kw["metavar"] = (
            "{" + ",".join([*meta["words"], {int: "N", float: "X"}.get(hint, "VALUE")]) + "}"
        )
    return kw


def _word_or(hint, words: dict):
    def convert(text: str):
        if text in words:
            return words[text]
        try:
            return hint(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected {' or '.join(map(repr, words))} or {'an integer' if hint is int else 'a number'}"
            ) from None

    convert.__name__ = hint.__name__
    return convert


def add_config_arguments(
    parser: argparse.ArgumentParser, config: Section, *, only_given: bool = True
) -> dict[str, Leaf]:
    """One option per leaf of ``config`` (derived fields excepted), grouped by top-level section
    in --help, defaults taken from ``config``. With ``only_given``, options the user does not
    type are left out of the namespace, so ``given`` returns only what was typed.

    Returns the leaves by their namespace ``dest`` (the dotted path).
    """
    by_dest: dict[str, Leaf] = {}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for leaf in leaves(config):
        meta = leaf.field.metadata
        if meta.get("derived"):
            continue
        kw = _option_kwargs(leaf, show_default=not meta.get("positional"))
        target = parser
        if len(leaf.path) > 1:
            section = leaf.path[0]
            if section not in groups:
                sec_field = type(config).__dataclass_fields__[section]
                groups[section] = parser.add_argument_group(section, sec_field.metadata.get("help"))
            target = groups[section]
        if meta.get("positional"):
            kw["metavar"] = leaf.flag.upper()
            target.add_argument(leaf.dotted, **kw)
        else:
            if only_given:
                kw["default"] = argparse.SUPPRESS
            else:
                kw["default"] = leaf.value
            target.add_argument("--" + leaf.flag, dest=leaf.dotted, **kw)
        by_dest[leaf.dotted] = leaf
    return by_dest


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is a UsageError naming the closest valid option."""
    ns, extras = parser.parse_known_args(argv)
    if extras:
        bad = extras[0]
        if bad.startswith("-"):
            name = bad.split("=", 1)[0]
            options = [s for a in parser._actions for s in a.option_strings]
            hint = SYNONYMS.get(name) if SYNONYMS.get(name) in options else closest(name, options)
            raise UsageError(
                f"{parser.prog}: unknown option {name}"
                + (f" for {parser.what}" if getattr(parser, "what", "") else "")
                + (f"; did you mean {hint}?" if hint else "")
                + f" (see {parser.prog} --help)"
            )
        raise UsageError(f"{parser.prog}: unexpected argument {bad!r} (see {parser.prog} --help)")
    return ns


def given(ns: argparse.Namespace, by_dest: Mapping[str, Leaf]) -> dict:
    """The options present in the namespace as nested overrides ({"model": {"latent_dim": 4}})."""
    flat = {}
    for dest, leaf in by_dest.items():
        if hasattr(ns, dest):
            value = getattr(ns, dest)
            flat[leaf.path] = tuple(value) if isinstance(value, list) else value
    return nest(flat)


def as_flags(error: ConfigError, by_dest: Mapping[str, Leaf], prog: str) -> Exception:
    """A value that failed its check, told in the words the user typed: ``--batch-size 0:
    expected a value >= 1`` rather than the config path; other errors as they are."""
    if error.field is None:
        return error
    leaf = by_dest.get(error.field.split("[")[0])
    if leaf is None:
        return error
    value = error.value
    shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return UsageError(f"{prog}: --{leaf.flag} {shown}: {error.detail}")


def merged(config: Section, ns, by_dest: Mapping[str, Leaf], prog: str) -> Section:
    """``config`` with the options typed on the command line laid over it."""
    try:
        return merge(config, given(ns, by_dest), where=prog)
    except ConfigError as e:
        raise as_flags(e, by_dest, prog) from None
