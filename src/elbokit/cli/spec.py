"""Distribution specs on the command line: ``normal(0, 1)``, ``categorical([0.2, 0.8])``,
``mixture([0.3, 0.7], normal(0, 1), normal(3, 0.5))``.

A small grammar, parsed by recursive descent (never ``eval``):

    spec   := NAME "(" [arg ("," arg)*] ")"
    arg    := [NAME "="] value
    value  := number | list | spec
    list   := "[" [value ("," value)*] "]"
    number := decimal or scientific literal, optionally signed; "inf" also

Arguments are those torch.distributions takes, in its order (``normal(loc, scale)``: scale is
the standard deviation). Values are float64. A malformed spec raises ``SpecError``, whose
message shows the spec with a caret under the offending token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.distributions as td

__all__ = ["FAMILIES", "SpecError", "parse_spec"]


class SpecError(ValueError):
    """A distribution spec that cannot be parsed or built; points at the bad token."""

    def __init__(self, message: str, text: str, pos: int):
        self.text, self.pos = text, pos
        super().__init__(f"{message}\n  {text}\n  {' ' * pos}^")


@dataclass(frozen=True)
class _Family:
    build: type | None  # the torch class, or None for the special-cased mixture
    params: tuple[str, ...]  # positional order
    defaults: tuple[tuple[str, float], ...] = ()
    alternatives: tuple[str, ...] = ()  # keyword-only alternatives (logits=, scale_tril=)
    doc: str = ""


FAMILIES: dict[str, _Family] = {
    "normal": _Family(td.Normal, ("loc", "scale"), doc="normal(loc, scale); scale = std dev"),
    "diagnormal": _Family(
        td.Normal, ("loc", "scale"), doc="diagnormal([locs], [scales]): independent normals"
    ),
    "mvn": _Family(
        td.MultivariateNormal,
        ("loc", "covariance_matrix"),
        alternatives=("scale_tril", "precision_matrix"),
        doc="mvn([loc], [[covariance]])",
    ),
    "lowrank": _Family(
        td.LowRankMultivariateNormal,
        ("loc", "cov_factor", "cov_diag"),
        doc="lowrank([loc], [[W]], [d]): covariance W W^T + diag(d)",
    ),
    "categorical": _Family(
        td.Categorical,
        ("probs",),
        alternatives=("logits",),
        doc="categorical([probs]) or (logits=[...])",
    ),
    "bernoulli": _Family(
        td.Bernoulli, ("probs",), alternatives=("logits",), doc="bernoulli(p) or (logits=x)"
    ),
    "beta": _Family(td.Beta, ("concentration1", "concentration0"), doc="beta(a, b)"),
    "gamma": _Family(td.Gamma, ("concentration", "rate"), doc="gamma(shape, rate)"),
    "laplace": _Family(td.Laplace, ("loc", "scale"), doc="laplace(loc, scale)"),
    "exponential": _Family(td.Exponential, ("rate",), doc="exponential(rate)"),
    "uniform": _Family(td.Uniform, ("low", "high"), doc="uniform(low, high)"),
    "studentt": _Family(
        td.StudentT,
        ("df", "loc", "scale"),
        (("loc", 0.0), ("scale", 1.0)),
        doc="studentt(df, loc=0, scale=1)",
    ),
    "cauchy": _Family(td.Cauchy, ("loc", "scale"), doc="cauchy(loc, scale)"),
    "lognormal": _Family(td.LogNormal, ("loc", "scale"), doc="lognormal(loc, scale) of log x"),
    "gumbel": _Family(td.Gumbel, ("loc", "scale"), doc="gumbel(loc, scale)"),
    "poisson": _Family(td.Poisson, ("rate",), doc="poisson(rate)"),
    "mixture": _Family(None, ("weights",), doc="mixture([weights], spec, spec, ...): one family"),
}

MAX_DEPTH = 50  # lists and mixtures nest a few levels; deeper is a mistake, not a spec

_TOKEN = re.compile(
    r"\s*(?:(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf\b)"
    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)|(?P<punct>[()\[\],=]))"
)


@dataclass(frozen=True)
class _Tok:
    token_type: str  # "num", "name", "punct", "end"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if m is None or m.end() == i:
            j = i + len(text[i:]) - len(text[i:].lstrip())
            raise SpecError(f"unexpected character {text[j]!r}", text, j)
        token_type = m.lastgroup
        toks.append(_Tok(token_type, m.group(token_type), m.start(token_type)))
        i = m.end()
    toks.append(_Tok("end", "", len(text)))
    return toks


@dataclass(frozen=True)
class _Call:
    name: str
    pos: int
    args: tuple  # of (keyword or None, value, value position, keyword position)


class _Parser:
    def __init__(self, text: str):
        self.text, self.toks, self.i = text, _tokenize(text), 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, token_type: str, text: str | None = None, what: str = "") -> _Tok:
        t = self.peek()
        if t.token_type != token_type or (text is not None and t.text != text):
            found = "end of spec" if t.token_type == "end" else repr(t.text)
            raise SpecError(f"expected {what or repr(text)}, found {found}", self.text, t.pos)
        self.i += 1
        return t

    def spec(self, depth: int = 0) -> _Call:
        name = self.take("name", what="a distribution name such as normal")
        if name.text.lower() not in FAMILIES:
            known = ", ".join(FAMILIES)
            raise SpecError(
                f"unknown distribution {name.text!r}; known: {known}", self.text, name.pos
            )
        self.take("punct", "(")
        args = []
        if not (self.peek().token_type == "punct" and self.peek().text == ")"):
            while True:
                key = None
                t = self.peek()
                nxt = self.toks[min(self.i + 1, len(self.toks) - 1)]  # "end" repeats at the end
                if t.token_type == "name" and nxt.token_type == "punct" and nxt.text == "=":
                    key = t.text
                    self.i += 2
                # (keyword, value, where the value starts, where the keyword starts)
                args.append((key, *self.located_value(depth), t.pos))
                if self.peek().token_type == "punct" and self.peek().text == ",":
                    self.i += 1
                    continue
                break
        self.take("punct", ")", what="',' or ')'")
        return _Call(name.text.lower(), name.pos, tuple(args))

    def located_value(self, depth: int = 0):
        pos = self.peek().pos
        return self.value(depth + 1), pos

    def value(self, depth: int = 0):
        t = self.peek()
        if depth > MAX_DEPTH:
            raise SpecError(f"nested more than {MAX_DEPTH} levels deep", self.text, t.pos)
        if t.token_type == "num":
            self.i += 1
            return float(t.text)
        if t.token_type == "punct" and t.text == "[":
            self.i += 1
            items = []
            if not (self.peek().token_type == "punct" and self.peek().text == "]"):
                while True:
                    items.append(self.value(depth + 1))
                    if self.peek().token_type == "punct" and self.peek().text == ",":
                        self.i += 1
                        continue
                    break
            self.take("punct", "]", what="',' or ']'")
            return items
        if t.token_type == "name":
            return self.spec(depth + 1)
        found = "end of spec" if t.token_type == "end" else repr(t.text)
        raise SpecError(
            f"expected a number, a [list] or a distribution, found {found}", self.text, t.pos
        )


def _tensor(value, text: str, pos: int) -> torch.Tensor:
    if isinstance(value, _Call):
        raise SpecError("expected a number or a list here, not a distribution", text, pos)
    try:
        t = torch.tensor(value, dtype=torch.float64)
    except (ValueError, TypeError):
        raise SpecError("a nested list must be rectangular", text, pos) from None
    if t.numel() == 0:
        raise SpecError("an empty list: expected at least one value", text, pos)
    return t


def _check_sums_to_one(name: str, probs: torch.Tensor, text: str, pos: int) -> None:
    s = probs.sum(-1)
    if (probs < 0).any() or not torch.allclose(s, torch.ones_like(s), atol=1e-9, rtol=0):
        raise SpecError(
            f"{name} must be non-negative and sum to 1, got {probs.tolist()} (sum {s.tolist()})",
            text,
            pos,
        )


def _build(call: _Call, text: str) -> td.Distribution:
    fam = FAMILIES[call.name]
    if call.name == "mixture":
        return _build_mixture(call, text)
    given: dict[str, torch.Tensor] = {}
    where: dict[str, int] = {}
    names = fam.params + fam.alternatives
    for k, (key, value, pos, key_pos) in enumerate(call.args):
        if key is None:
            if given and any(a[0] is not None for a in call.args[:k]):
                raise SpecError("a positional argument cannot follow a keyword one", text, pos)
            if k >= len(fam.params):
                raise SpecError(
                    f"{call.name} takes {len(fam.params)} positional argument(s): "
                    f"{', '.join(fam.params)}",
                    text,
                    pos,
                )
            key = fam.params[k]
        elif key not in names:
            raise SpecError(
                f"{call.name} has no argument {key!r}; it takes {', '.join(names)}", text, key_pos
            )
        if key in given:
            raise SpecError(f"{key} given twice", text, key_pos)
        given[key] = _tensor(value, text, pos)
        where[key] = pos
        # -inf is meaningful only as a logit (an excluded class); every other value is finite.
        bad = ~torch.isfinite(given[key])
        if key == "logits":
            bad &= given[key] != -torch.inf
        if bad.any():
            raise SpecError(f"{key} = {given[key].tolist()} must be finite", text, pos)
    for key, default in fam.defaults:
        given.setdefault(key, torch.tensor(default, dtype=torch.float64))
    if fam.alternatives and any(a in given for a in fam.alternatives):
        first = fam.params[0]
        if first in given and len(fam.params) == 1:
            raise SpecError(
                f"give {first} or {', '.join(fam.alternatives)}, not both", text, call.pos
            )
        if len(fam.params) > 1:  # mvn: loc plus exactly one matrix
            matrices = [m for m in (fam.params[1], *fam.alternatives) if m in given]
            if len(matrices) != 1:
                raise SpecError(
                    f"give exactly one of {fam.params[1]}, {', '.join(fam.alternatives)}",
                    text,
                    call.pos,
                )
    else:
        missing = [p for p in fam.params if p not in given]
        if missing:
            raise SpecError(
                f"{call.name} is missing {', '.join(missing)} ({fam.doc})", text, call.pos
            )
    if "probs" in given and call.name == "categorical":
        _check_sums_to_one("categorical probabilities", given["probs"], text, where["probs"])
    # Uniform's constraints depend on the instance (a property, not a dict): torch checks those.
    constraints = fam.build.arg_constraints
    for key, value in given.items() if isinstance(constraints, dict) else ():
        constraint = constraints.get(key)
        matrix = key in ("covariance_matrix", "scale_tril", "precision_matrix", "cov_factor")
        if matrix and value.dim() < 2:
            raise SpecError(
                f"{call.name}: {key} = {value.tolist()} is not a matrix; write it as a list of "
                f"rows, [[...]] ({fam.doc})", text, where.get(key, call.pos),
            )  # fmt: skip
        if constraint is not None and not bool(constraint.check(value).all()):
            raise SpecError(
                f"{call.name}: {key} = {value.tolist()} does not satisfy {constraint}",
                text,
                where.get(key, call.pos),
            )
    try:
        d = fam.build(**given, validate_args=True)
    except (ValueError, RuntimeError) as e:
        raise SpecError(f"{call.name}: {e}", text, call.pos) from None
    return td.Independent(d, 1) if call.name == "diagnormal" else d


def _build_mixture(call: _Call, text: str) -> td.Distribution:
    if len(call.args) < 2 or call.args[0][0] not in (None, "weights"):
        raise SpecError("mixture takes [weights] and then one spec per component", text, call.pos)
    _, wvalue, wpos, _ = call.args[0]
    weights = _tensor(wvalue, text, wpos)
    comps = call.args[1:]
    if weights.dim() != 1 or weights.numel() != len(comps):
        raise SpecError(
            f"mixture has {weights.numel()} weight(s) but {len(comps)} component(s)", text, wpos
        )
    _check_sums_to_one("mixture weights", weights, text, wpos)
    built = []
    for key, value, pos, _ in comps:
        if key is not None or not isinstance(value, _Call):
            raise SpecError("expected a component distribution such as normal(0, 1)", text, pos)
        if value.name in ("mixture", "categorical", "mvn", "lowrank", "diagnormal"):
            raise SpecError(f"mixture components must be univariate; got {value.name}", text, pos)
        component = _build(value, text)
        if component.batch_shape != torch.Size():
            raise SpecError("mixture components take single numbers, not lists", text, pos)
        built.append((value, component))
    first = built[0][0].name
    for c, _ in built:
        if c.name != first:
            raise SpecError(
                f"mixture components must share one family; {c.name} vs {first}", text, c.pos
            )
    params = type(built[0][1]).arg_constraints
    stacked = {
        k: torch.stack([d.__dict__[k] for _, d in built])
        for k in params
        if all(k in d.__dict__ for _, d in built)
    }
    try:
        component = type(built[0][1])(**stacked, validate_args=True)
        return td.MixtureSameFamily(td.Categorical(probs=weights), component, validate_args=True)
    except (ValueError, RuntimeError) as e:
        raise SpecError(f"mixture: {e}", text, call.pos) from None


def parse_spec(text: str) -> td.Distribution:
    """Build a ``torch.distributions`` object from a spec such as ``normal(0, 1)``.

    Raises:
        SpecError: malformed text, unknown family or argument, or invalid parameter values
            (probabilities not summing to 1, a negative scale, ...), pointing at the token.
    """
    parser = _Parser(text)
    call = parser.spec()
    end = parser.peek()
    if end.token_type != "end":
        raise SpecError(f"unexpected {end.text!r} after the distribution", text, end.pos)
    return _build(call, text)
