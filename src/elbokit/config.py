"""Typed, frozen, strict configs: one dataclass per concern, composed by the recipes.

A section is a frozen dataclass deriving from ``Section`` whose fields are declared with ``opt``:

    @dataclass(frozen=True)
    class AdamConfig(Section):
        lr: float = opt(1e-3, "Adam learning rate", gt=0)

``opt`` carries the help line (the CLI's ``--help`` is generated from it) and the checks that
``Section.__post_init__`` applies when the section is built, whatever built it (the command line,
a saved ``config.json``, a preset, a test): the type (ints are not floats, bools are not ints, a
float must be finite unless ``finite=False``), the range (``ge``/``gt``/``le``/``lt``) and the
choices (a tuple, or a registry dict read at check time, so a registered family is a valid
choice everywhere). A failed check raises ``ConfigError`` naming the field, the value and what was
expected.

Sections nest: a field whose type is a Section is a sub-section. ``from_dict`` rebuilds a config
from its JSON form and rejects an unknown key with the closest valid name; ``merge`` lays nested
overrides over a config (presets); ``leaves`` lists the leaf fields with their paths and flag
names (the CLI's options); ``to_dict`` is the JSON form.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "ConfigError",
    "Leaf",
    "Section",
    "closest",
    "from_dict",
    "leaves",
    "merge",
    "opt",
    "to_dict",
]

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A config value or key that is not valid; the message names it and what was expected.

    For a value that failed its check, ``field`` is its dotted path (``train.batch_size``),
    ``value`` the value and ``detail`` what was expected, so the CLI can name the flag instead.
    """

    def __init__(self, message: str, *, field: str | None = None, value=None, detail: str = ""):
        super().__init__(message)
        self.field, self.value, self.detail = field, value, detail


def _bad(name: str, value, detail: str) -> ConfigError:
    shown = value if isinstance(value, float) else repr(value)
    return ConfigError(f"{name} = {shown}: {detail}", field=name, value=value, detail=detail)


# what other libraries call our options: answered with ours (closest() cannot see these)
SYNONYMS = {
    "--learning-rate": "--lr", "--learning_rate": "--lr", "--lr-rate": "--lr",
    "--num-epochs": "--epochs", "--n-epochs": "--epochs", "--max-epochs": "--epochs",
    "--bs": "--batch-size", "--batch": "--batch-size", "--batchsize": "--batch-size",
    "--z-dim": "--latent-dim", "--zdim": "--latent-dim", "--latent-size": "--latent-dim",
    "--dataset": "--data", "--output": "--out", "--output-dir": "--out", "--outdir": "--out",
    "--random-seed": "--seed", "--num-threads": "--threads",
}  # fmt: skip


def opt(
    default: Any = _MISSING,
    help: str = "",
    *,
    default_factory: Any = _MISSING,
    choices: tuple | Mapping | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    finite: bool = True,
    flag: str | None = None,
    derived: bool = False,
    positional: bool = False,
    on_resume: bool = False,
    nonempty: bool = True,
    words: Mapping[str, Any] | None = None,
    extends: bool = False,
) -> Any:
    """A config field with its help line and checks.

    Args:
        choices: allowed values; a dict (a registry) is read when checked, so its keys at that
            time are the choices.
        ge, gt, le, lt: bounds (applied to each element of a tuple).
        finite: floats must be finite (NaN and inf rejected) unless False.
        flag: the command-line name when it differs from the field's (``--data`` for
            ``source``).
        derived: filled in by the recipe from the data (an image shape): no flag, but saved.
        positional: a positional command-line argument.
        on_resume: may be given again with ``--resume`` (it does not change the result, like
            ``--no-progress``).
        nonempty: a tuple needs at least one value (unless False).
        words: values the command line also takes by name ({"auto": -1}).
        extends: a run's length: ``--resume`` may raise it, to continue a run past its end.
    """
    if not help:
        raise TypeError("every config field needs a help line")
    meta = {
        "help": help,
        "choices": choices,
        "bounds": (ge, gt, le, lt),
        "finite": finite,
        "flag": flag,
        "derived": derived,
        "positional": positional,
        "on_resume": on_resume,
        "nonempty": nonempty,
        "words": dict(words or {}),
        "extends": extends,
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section_type(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, Section)


def _describe(hint) -> str:
    if hint is float:
        return "a number"
    if hint is int:
        return "an integer"
    if hint is bool:
        return "true or false"
    if hint is str:
        return "a string"
    return str(hint)


def _check_scalar(name: str, value, hint, meta: Mapping) -> Any:
    """The value converted to the field's type (an int for a float field becomes a float), or a
    ConfigError naming the field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise _bad(name, value, f"expected one of {', '.join(map(repr, args))}"
                       + _suggest(value, args))  # fmt: skip
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _bad(name, value, "expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, value, "expected an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(name, value, "expected a number")
        value = float(value)
        if meta.get("finite", True) and not math.isfinite(value):
            raise _bad(name, value, "expected a finite number")
    elif hint is str:
        if not isinstance(value, str):
            raise _bad(name, value, "expected a string")
    else:
        raise TypeError(f"config field {name!r} has unsupported type {hint!r}")
    ge, gt, le, lt = meta.get("bounds", (None,) * 4)
    for bound, ok, word in (
        (ge, lambda v, b: v >= b, ">="),
        (gt, lambda v, b: v > b, ">"),
        (le, lambda v, b: v <= b, "<="),
        (lt, lambda v, b: v < b, "<"),
    ):
        if bound is not None and not (isinstance(value, (int, float)) and ok(value, bound)):
            raise _bad(name, value, f"expected a value {word} {bound:g}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        names = list(choices)
        raise _bad(name, value, f"expected one of {', '.join(map(str, names))}"
                   + _suggest(value, names))  # fmt: skip
    return value


def _check_value(name: str, value, hint, meta: Mapping) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        raise TypeError(f"config field {name!r}: unions are not supported ({hint!r})")
    if origin is tuple:
        if isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, tuple):
            raise _bad(name, value, "expected a list of values")
        if len(args) == 2 and args[1] is Ellipsis:
            elem = [args[0]] * len(value)
            if not value and meta.get("nonempty", True):
                raise ConfigError(
                    f"{name} is empty: expected at least one value", field=name, value=value,
                    detail="expected at least one value",
                )  # fmt: skip
        else:
            if len(value) != len(args):
                raise _bad(name, list(value), f"expected {len(args)} values")
            elem = list(args)
        return tuple(
            _check_scalar(f"{name}[{i}]", v, h, meta)
            for i, (v, h) in enumerate(zip(value, elem, strict=True))
        )
    return _check_scalar(name, value, hint, meta)


class Section:
    """Base of every config section: checks its fields when built (see the module docstring).

    A subclass that needs a check across fields defines ``validate(self)`` and raises ConfigError;
    it runs after the per-field checks.
    """

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            hint = hints[f.name]
            value = getattr(self, f.name)
            if _is_section_type(hint):
                if not isinstance(value, hint):
                    raise ConfigError(
                        f"{f.name}: expected a {hint.__name__} section, got {type(value).__name__}"
                    )
                continue
            checked = _check_value(f.name, value, hint, f.metadata)
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        self.validate()

    def validate(self) -> None:
        """Checks across fields; raise ConfigError."""


def _suggest(word, candidates) -> str:
    match = closest(str(word), [str(c) for c in candidates])
    return f"; did you mean {match!r}?" if match else ""


def closest(word: str, candidates, cutoff: float = 0.6) -> str | None:
    """The candidate closest to ``word``: one it begins with or that begins with it (the
    longest), else the nearest by difflib above ``cutoff``, else None."""
    candidates = [str(c) for c in candidates]
    w = word.lstrip("-")
    prefixed = [c for c in candidates if len(c.lstrip("-")) >= 2 and
                (w.startswith(c.lstrip("-")) or c.lstrip("-").startswith(w))]  # fmt: skip
    if prefixed and len(w) >= 2:
        return max(prefixed, key=len)
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return found[0] if found else None


@dataclasses.dataclass(frozen=True)
class Leaf:
    """A leaf field of a nested config: its path (("model", "latent_dim")), the field, its type,
    its command-line flag name (``latent-dim``) and its value in the config it was read from."""

    path: tuple[str, ...]
    field: dataclasses.Field
    hint: Any
    flag: str
    value: Any

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def leaves(config: Section) -> list[Leaf]:
    """Every leaf field of a config instance, depth first, in declaration order.

    Raises:
        TypeError: two leaves would have the same flag (a programming error in a recipe).
    """
    out: list[Leaf] = []

    def walk(obj, path):
        hints = _hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if _is_section_type(hints[f.name]):
                walk(value, (*path, f.name))
            else:
                flag = (f.metadata.get("flag") or f.name).replace("_", "-")
                out.append(Leaf((*path, f.name), f, hints[f.name], flag, value))

    walk(config, ())
    seen: dict[str, Leaf] = {}
    for leaf in out:
        if leaf.field.metadata.get("derived"):
            continue
        if leaf.flag in seen:
            raise TypeError(
                f"{type(config).__name__}: {seen[leaf.flag].dotted} and {leaf.dotted} would both "
                f"be --{leaf.flag}; give one a flag= name"
            )
        seen[leaf.flag] = leaf
    return out


def to_dict(config: Section) -> dict:
    """The JSON form of a config (nested dicts; tuples become lists when dumped)."""
    return dataclasses.asdict(config)


def from_dict(cls: type, values: Mapping, *, base: Section | None = None, where: str = "config"):
    """A ``cls`` config from its JSON form, over ``base`` (default: ``cls()``) for keys not given.

    Raises:
        ConfigError: an unknown key (naming the closest valid one, also when the key belongs to
            another section), a section given as a value, or a value that fails its check.
    """
    base = cls() if base is None else base
    return _from_dict(cls, values, base, where, "", base)


def _from_dict(cls, values, base, where, prefix, root):
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"{where}: {prefix.rstrip('.') or 'the config'} must be an object of keys, got {values!r}"
        )
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    changes = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(_unknown_key(key, prefix, list(fields), where, root))
        hint = hints[key]
        if _is_section_type(hint):
            changes[key] = _from_dict(
                hint, value, getattr(base, key), where, f"{prefix}{key}.", root
            )
        else:
            changes[key] = value
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError as e:
        raise ConfigError(
            f"{where}: {prefix}{e}", field=e.field and f"{prefix}{e.field}", value=e.value,
            detail=e.detail,
        ) from None  # fmt: skip


def _unknown_key(key, prefix, names, where, root: Section) -> str:
    """The message for an unknown key: the closest name in its section, else the section that
    holds a field of that name, else the closest name anywhere (``root``: the whole config)."""
    paths = {leaf.path[-1]: leaf.dotted for leaf in leaves(root)}
    here = closest(str(key), names, cutoff=0.5)
    msg = f"{where}: unknown key {prefix}{key}"
    if here:
        return f"{msg}; did you mean {prefix}{here}?"
    elsewhere = paths.get(str(key))
    if elsewhere:
        return f"{msg}; {key} belongs in {elsewhere}"
    anywhere = closest(str(key), list(paths))
    if anywhere:
        return f"{msg}; did you mean {paths[anywhere]}?"
    return f"{msg}; expected one of {', '.join(names)}"


def merge(config: Section, overrides: Mapping, *, where: str = "overrides") -> Section:
    """``config`` with nested ``overrides`` ({"model": {"latent_dim": 4}}) laid over it."""
    return from_dict(type(config), overrides, base=config, where=where)


def nest(flat: Mapping[tuple[str, ...], Any]) -> dict:
    """{("model", "latent_dim"): 4} -> {"model": {"latent_dim": 4}}."""
    out: dict = {}
    for path, value in flat.items():
        d = out
        for key in path[:-1]:
            d = d.setdefault(key, {})
        d[path[-1]] = value
    return out
