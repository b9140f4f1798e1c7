"""Command-line options generated from frozen config dataclasses.

Each field becomes an option with the help line from ``field(metadata={"help": ...})``;
``metadata={"positional": True}`` makes it positional. Supported types: str, int, float, bool
(``--flag`` / ``--no-flag``), ``Literal[...]`` (choices) and ``tuple[float, ...]`` /
``tuple[int, ...]`` (one or more values).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing


def _option_kwargs(f: dataclasses.Field, hint) -> dict:
    help_text = f.metadata.get("help")
    if help_text is None:
        raise TypeError(f"config field {f.name!r} has no help line")
    kw: dict = {"help": help_text}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if f.default is not dataclasses.MISSING:
        kw["default"] = f.default
        kw["help"] += f" (default: {f.default})"
    if hint is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif origin is typing.Literal:
        kw["choices"] = args
        kw["type"] = type(args[0])
    elif origin is tuple:
        kw["type"], kw["nargs"] = args[0], "+"
    elif hint in (str, int, float):
        kw["type"] = hint
    else:
        raise TypeError(f"config field {f.name!r} has unsupported type {hint!r}")
    return kw


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, *, only_given: bool = False
) -> None:
    """Add one option per field of the dataclass ``cls`` to ``parser``.

    With ``only_given``, options the user does not type are left out of the namespace (their
    defaults still show in --help), so ``config_from_args(..., base=preset)`` can layer what was
    typed over a preset.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:
            continue
        kw = _option_kwargs(f, hints[f.name])
        if only_given and not f.metadata.get("positional"):
            kw["default"] = argparse.SUPPRESS
        if f.metadata.get("positional"):
            kw.pop("default", None)
            parser.add_argument(f.name, **kw)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kw)


def given_options(cls: type, ns: argparse.Namespace) -> dict:
    """The fields of ``cls`` present in the namespace (tuples for multi-valued fields)."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(ns, f.name):
            v = getattr(ns, f.name)
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return values


def config_from_args(cls: type, ns: argparse.Namespace, base=None):
    """The config built from parsed arguments, over ``base`` (a preset) when given."""
    values = given_options(cls, ns)
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def saved_config(cls: type, values: dict):
    """A config dataclass from its JSON form (``dataclasses.asdict`` saved as JSON: lists back
    to tuples); unknown keys are an error, as in the constructor."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def config_of(cls: type, source, **overrides):
    """A ``cls`` config from the fields of ``source`` (a command's config) named like its own,
    with ``overrides`` (values that come from elsewhere, such as the data's shape)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {
        f.name: getattr(source, f.name) for f in dataclasses.fields(source) if f.name in names
    }
    return cls(**{**values, **overrides})
