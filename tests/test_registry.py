"""Dispatch: our closed forms first, torch's where we add nothing, errors that name the way out."""

import pytest
import torch
from torch.distributions import Beta, Distribution, Gamma, Normal, StudentT, constraints
from torch.distributions.kl import kl_divergence as torch_kl

from elbokit import NoClosedFormError, has_closed_form, kl, kl_quadrature, register_kl


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
    class Point(Distribution):
        arg_constraints = {}
        support = constraints.real

        def __init__(self, x):
            self.x = torch.as_tensor(x)
            super().__init__(validate_args=False)

    @register_kl(Point, Point)
    def _point(p, q):
        return torch.where(p.x == q.x, 0.0, torch.inf)

    assert kl(Point(1.0), Point(1.0)).item() == 0.0
    assert torch.isinf(kl(Point(1.0), Point(2.0)))


def test_non_distribution_arguments_are_a_type_error():
    with pytest.raises(TypeError, match="torch.distributions objects, got float and Normal"):
        kl(1.0, Normal(0.0, 1.0))
