"""What a study varies: ``--param NAME=RANGE`` read against a kind's config.

    lr=log:1e-4:1e-2        a float drawn log-uniformly
    dropout=float:0:0.5     a float drawn uniformly
    hidden=int:32:512       an integer (int:log:32:512 log-uniformly)
    beta=0.25,0.5,1,2       one of these values (a grid sampler takes them all)

NAME is the option as the command line names it (``--latent-dim``: latent-dim or latent_dim) or
its dotted config path (model.latent_dim). Every range is checked against the option before
anything runs: an unknown option names the closest, a bound outside the option's own bounds or
choices is named with them, a value of the wrong type says which type.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass

from elbokit.config import ConfigError, Leaf, closest, leaves

__all__ = ["Param", "parse_param", "parse_params"]


@dataclass(frozen=True)
class Param:
    """One varied option: ``kind`` is "float", "int" or "choice"; ``low``/``high`` bound the
    first two (``log``: log-uniformly), ``choices`` the last."""

    name: str  # the option's flag name, as typed in a study's table
    path: tuple[str, ...]  # where it sits in the config
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()
    repeat: int = 0  # a tuple option (layer widths): the value n times (0: a single value)

    def apply(self, value):
        """The config value of a drawn value (widths: every layer that width)."""
        return (value,) * self.repeat if self.repeat else value

    def suggest(self, trial):
        """The value an Optuna trial draws for this parameter."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def grid(self) -> list:
        """The values a grid sampler visits: the choices (ranges have no grid)."""
        if self.kind != "choice":
            raise ConfigError(
                f"--param {self.name}: a grid takes lists of values (name=a,b,c); this is a range"
            )
        return list(self.choices)


def _by_name(config) -> dict[str, Leaf]:
    found = {}
    for leaf in leaves(config):
        if leaf.field.metadata.get("derived"):
            continue
        found[leaf.flag] = leaf
        found[leaf.flag.replace("-", "_")] = leaf
        found[leaf.dotted] = leaf
    return found


def _number(text: str, hint, spec: str):
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--param {spec}: {text!r} is not a number") from None
    if hint is int:
        if value != int(value):
            raise ConfigError(f"--param {spec}: {text!r} is not an integer, as this option is")
        return int(value)
    return value


def _check_bounds(leaf: Leaf, value, spec: str) -> None:
    ge, gt, le, lt = leaf.field.metadata.get("bounds", (None,) * 4)
    problems = [
        (ge is not None and value < ge, f">= {ge:g}" if ge is not None else ""),
        (gt is not None and value <= gt, f"> {gt:g}" if gt is not None else ""),
        (le is not None and value > le, f"<= {le:g}" if le is not None else ""),
        (lt is not None and value >= lt, f"< {lt:g}" if lt is not None else ""),
    ]
    for bad, what in problems:
        if bad:
            raise ConfigError(
                f"--param {spec}: {value!r} is outside --{leaf.flag}'s bounds: it must be {what}"
            )
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"--param {spec}: {value!r} is not a finite number")


def _value(leaf: Leaf, text: str, spec: str):
    hint = leaf.hint
    if typing.get_origin(hint) is typing.Literal:
        allowed = [str(a) for a in typing.get_args(hint)]
        if text not in allowed:
            raise ConfigError(
                f"--param {spec}: {text!r} is not one of --{leaf.flag}'s choices: {', '.join(allowed)}"
            )
        return text
    if hint is bool:
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"--param {spec}: {text!r}; --{leaf.flag} is true or false")
        return text.lower() == "true"
    if hint in (int, float):
        value = _number(text, hint, spec)
        _check_bounds(leaf, value, spec)
        return value
    if hint is str:
        choices = leaf.field.metadata.get("choices")
        if choices is not None and text not in choices:
            raise ConfigError(
                f"--param {spec}: {text!r} is not one of --{leaf.flag}'s choices: {', '.join(map(str, choices))}"
            )
        return text
    raise ConfigError(f"--param {spec}: --{leaf.flag} takes {hint}, which a study cannot vary")


class _Element:
    """A tuple option seen as one of its elements (its type, its bounds)."""

    def __init__(self, leaf: Leaf):
        self.flag, self.path, self.dotted, self.field = (
            leaf.flag,
            leaf.path,
            leaf.dotted,
            leaf.field,
        )
        self.hint = typing.get_args(leaf.hint)[0]
        self.value = leaf.value[0] if leaf.value else None


def parse_param(spec: str, config) -> Param:
    """One ``NAME=RANGE`` checked against ``config`` (a kind's config, presets applied).

    Raises:
        ConfigError: a malformed spec, an unknown option (naming the closest), a range or value
            the option does not allow.
    """
    name, eq, rng = spec.partition("=")
    if not eq or not name or not rng:
        raise ConfigError(
            f"--param {spec!r}: expected NAME=RANGE (lr=log:1e-4:1e-2, hidden=int:32:512, beta=0.5,1,2)"
        )
    by_name = _by_name(config)
    leaf = by_name.get(name.strip())
    if leaf is None:
        hint = closest(name, [n for n in by_name if "." not in n and "_" not in n])
        raise ConfigError(
            f"--param {spec}: no option {name!r}" + (f"; did you mean {hint}?" if hint else "")
        )
    repeat = 0
    if typing.get_origin(leaf.hint) is tuple:  # widths (--hidden 512 512): one width for all
        repeat = len(leaf.value)
        leaf = _Element(leaf)
    parts = rng.split(":")
    if parts[0] in ("log", "float", "int"):
        kind = "int" if parts[0] == "int" else "float"
        log = parts[0] == "log" or (len(parts) == 4 and parts[1] == "log")
        bounds = parts[2:] if len(parts) == 4 else parts[1:]
        if len(bounds) != 2:
            raise ConfigError(f"--param {spec}: expected {parts[0]}:LOW:HIGH")
        if leaf.hint not in (int, float) or (kind == "float" and leaf.hint is int):
            what = (
                "integers (int:LOW:HIGH)"
                if leaf.hint is int
                else f"{leaf.hint.__name__ if isinstance(leaf.hint, type) else leaf.hint} values: list them (a,b,c)"
            )
            raise ConfigError(f"--param {spec}: --{leaf.flag} takes {what}")
        low, high = (_value(leaf, b, spec) for b in bounds)
        if not low < high:
            raise ConfigError(f"--param {spec}: LOW {low} must be below HIGH {high}")
        if log and low <= 0:
            raise ConfigError(f"--param {spec}: a log range needs LOW > 0, got {low}")
        return Param(leaf.flag, leaf.path, kind, float(low), float(high), log, repeat=repeat)
    values = tuple(_value(leaf, v.strip(), spec) for v in rng.split(","))
    if len(set(values)) != len(values):
        raise ConfigError(f"--param {spec}: a value is listed twice")
    return Param(leaf.flag, leaf.path, "choice", choices=values, repeat=repeat)


def parse_params(specs: list[str], config) -> list[Param]:
    params = [parse_param(s, config) for s in specs]
    seen = set()
    for p in params:
        if p.path in seen:
            raise ConfigError(f"--param {p.name} is given twice")
        seen.add(p.path)
    return params
