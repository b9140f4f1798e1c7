"""Dispatch: our closed forms first, torch's where we add nothing, errors that name the way out."""

import warnings

import pytest
import torch
from torch.distributions import Beta, Distribution, Gamma, Normal, StudentT, constraints
from torch.distributions.kl import kl_divergence as torch_kl
from torch.distributions.kl import register_kl as torch_register_kl

from elbokit import NoClosedFormError, has_closed_form, kl, kl_quadrature, register_kl
from elbokit.divergence._registry import _dispatch, _dispatch_registered


def _point_type(name):
    """A fresh Distribution subclass with no closed form anywhere: a point mass at x."""

    class Point(Distribution):
        arg_constraints = {}
        support = constraints.real

        def __init__(self, x):
            self.x = torch.as_tensor(x)
            super().__init__(validate_args=False)

    Point.__name__ = Point.__qualname__ = name
    return Point


def test_torch_closed_forms_are_used_where_elbokit_adds_none():
    p, q = Beta(torch.tensor(2.0), torch.tensor(3.0)), Beta(torch.tensor(0.7), torch.tensor(1.5))
    assert torch.equal(kl(p, q), torch_kl(p, q))
    g = Gamma(torch.tensor(2.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64))
    h = Gamma(torch.tensor(1.5, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    # and the torch form itself agrees with the quadrature reference
    assert kl(g, h).item() == pytest.approx(kl_quadrature(g, h).value.item(), rel=1e-8)


def test_unsupported_pair_names_both_types_and_the_ways_out():
    with pytest.raises(NoClosedFormError) as err:
        kl(StudentT(3.0), Normal(0.0, 1.0))
    msg = str(err.value)
    for needle in (
        "KL(StudentT || Normal)",
        "estimate_kl",
        "method='mc'",
        "register_kl(StudentT, Normal)",
    ):
        assert needle in msg
    assert not has_closed_form(StudentT(3.0), Normal(0.0, 1.0))


def test_register_kl_most_specific_pair_wins_and_torch_is_untouched():
    class Wide(Normal):
        pass

    class Wider(Wide):
        pass

    @register_kl(Wide, Normal)
    def _general(p, q):
        return torch.tensor(1.0)

    @register_kl(Wider, Normal)
    def _specific(p, q):
        return torch.tensor(2.0)

    assert kl(Wide(0.0, 1.0), Normal(0.0, 1.0)).item() == 1.0
    assert kl(Wider(0.0, 1.0), Normal(0.0, 1.0)).item() == 2.0
    # torch's registry is read, never written: its dispatch for Wider is still its Normal pair.
    assert torch_kl(Wider(0.0, 1.0), Normal(0.0, 1.0)).item() == 0.0


def test_register_kl_rejects_non_distributions():
    with pytest.raises(TypeError, match="Distribution subclasses"):
        register_kl(int, Normal)


def test_a_distribution_of_ones_own_with_a_registered_form():
    Point = _point_type("Point")

    @register_kl(Point, Point)
    def _point(p, q):
        return torch.where(p.x == q.x, 0.0, torch.inf)

    assert kl(Point(1.0), Point(1.0)).item() == 0.0
    assert torch.isinf(kl(Point(1.0), Point(2.0)))


def test_non_distribution_arguments_are_a_type_error():
    with pytest.raises(TypeError, match="torch.distributions objects, got float and Normal"):
        kl(1.0, Normal(0.0, 1.0))


def test_a_registration_after_a_lookup_takes_effect():
    class Shifted(Normal):
        pass

    p, q = Shifted(0.0, 1.0), Normal(1.0, 1.0)
    # First lookup: the Normal pair applies, KL = (0 - 1)^2 / 2 for unit variances.
    assert kl(p, q).item() == pytest.approx(0.5)

    @register_kl(Shifted, Normal)
    def _shifted(p, q):
        return torch.tensor(7.0)

    assert kl(p, q).item() == 7.0  # the cached Normal pair was dropped

    # and a pair first found to have no closed form gets one once registered
    Lone = _point_type("Lone")
    assert not has_closed_form(Lone(0.0), Lone(0.0))

    @register_kl(Lone, Lone)
    def _lone(p, q):
        return torch.where(p.x == q.x, 0.0, torch.inf)

    assert has_closed_form(Lone(0.0), Lone(0.0))
    assert torch.isinf(kl(Lone(0.0), Lone(1.0)))


def test_torch_registrations_made_later_are_still_found():
    # Only elbokit's own lookup is cached: torch's registry is asked at call time.
    Late = _point_type("Late")
    assert not has_closed_form(Late(0.0), Late(0.0))

    @torch_register_kl(Late, Late)
    def _late(p, q):
        return (p.x - q.x).abs()

    assert has_closed_form(Late(0.0), Late(0.0))
    assert kl(Late(1.0), Late(3.5)).item() == 2.5


def test_an_ambiguous_pair_warns_once_and_the_exact_pair_resolves_it():
    class Left(Normal):
        pass

    class Right(Normal):
        pass

    class Both(Left, Right):  # MRO: Both, Left, Right, Normal, ...
        pass

    @register_kl(Left, Right)
    def _left_right(p, q):  # distance 1 + 2 from (Both, Both)
        return torch.tensor(1.0)

    @register_kl(Right, Left)
    def _right_left(p, q):  # distance 2 + 1: a tie
        return torch.tensor(2.0)

    p, q = Both(0.0, 1.0), Both(0.0, 1.0)
    with pytest.warns(RuntimeWarning) as record:  # records every warning ("always")
        first, second = kl(p, q), kl(p, q)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages  # memoized: the second lookup does not warn again
    for needle in ("ambiguous", "KL(Both || Both)", "(Left, Right)", "(Right, Left)"):
        assert needle in messages[0]
    assert "register_kl(Both, Both) resolves it" in messages[0]
    # the choice is deterministic: the earlier registration
    assert first.item() == second.item() == 1.0

    @register_kl(Both, Both)
    def _both(p, q):
        return torch.tensor(3.0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kl(p, q).item() == 3.0


def test_equally_near_pairs_holding_the_same_function_are_not_ambiguous():
    class Base(Normal):
        pass

    class Derived(Base):
        pass

    def _same(p, q):
        return torch.tensor(4.0)

    register_kl(Base, Derived)(_same)
    register_kl(Derived, Base)(_same)  # (Derived, Derived) is one step from each
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kl(Derived(0.0, 1.0), Derived(0.0, 1.0)).item() == 4.0


def test_repeated_lookups_return_the_same_function_without_warning():
    class Mine(Normal):
        pass

    @register_kl(Mine, Normal)
    def _mine(p, q):
        return torch.tensor(5.0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = _dispatch(Mine, Normal)
        hits = _dispatch_registered.cache_info().hits
        second = _dispatch(Mine, Normal)
        assert _dispatch_registered.cache_info().hits == hits + 1  # answered from the cache
        assert kl(Mine(0.0, 1.0), Normal(0.0, 1.0)).item() == 5.0
    assert first is second is _mine
