"""The one-pass value checks answer exactly what the elementwise constraint checks answer."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import constraints

from pyro_vae._util.value_checks import all_finite, all_whole, in_support
from pyro_vae.likelihoods.base import open_unit_interval

SUPPORTS = [
    constraints.real,
    constraints.boolean,
    constraints.unit_interval,
    constraints.positive,
    constraints.nonnegative,
    constraints.nonnegative_integer,
    constraints.positive_integer,
    constraints.integer_interval(0, 255),
    constraints.interval(-2.0, 3.0),
    constraints.half_open_interval(0.0, 1.0),
    constraints.greater_than(-1.5),
    constraints.greater_than_eq(2.0),
    constraints.less_than(0.5),
    constraints.independent(constraints.real, 1),
    open_unit_interval,
    constraints.simplex,  # no fast path: the elementwise check, block by block
]

EDGES = torch.tensor([0.0, -0.0, 1.0, 0.5, -1.5, 2.0, 3.0, -2.0, 255.0, 256.0, 1e-30, 1 - 1e-7, 0.9999999, 7.0])


def _cases(generator):
    """Tensors on which each support says yes and no: edges, whole numbers, uniform draws."""
    yield torch.randint(0, 2, (40, 7), generator=generator).float()
    yield torch.randint(0, 256, (40, 7), generator=generator).float()
    yield torch.rand(40, 7, generator=generator)
    yield torch.rand(40, 7, generator=generator) * 6 - 2
    yield torch.softmax(torch.randn(40, 7, generator=generator), -1)
    for value in EDGES:
        base = torch.randint(0, 2, (30, 5), generator=generator).float()
        base[7, 3] = value
        yield base
        yield torch.full((3, 4), float(value))


@pytest.mark.parametrize("support", SUPPORTS, ids=repr)
def test_in_support_agrees_with_the_elementwise_check(support):
    generator = torch.Generator().manual_seed(0)
    answers = set()
    for x in _cases(generator):
        expected = bool(support.check(x).all())
        assert in_support(x, support) == expected, (support, x.unique())
        answers.add(expected)
    if support is not constraints.real and not isinstance(support, constraints._IndependentConstraint):
        assert answers == {True, False}  # the cases reach both answers


def test_all_finite_finds_one_bad_value_anywhere():
    for bad in (float("nan"), float("inf"), float("-inf")):
        for position in (0, 1234, 49_999):
            x = torch.zeros(50_000)
            x[position] = bad
            assert not all_finite(x)
            assert not all_finite(x.double().reshape(100, 500))
    assert all_finite(torch.zeros(50_000)) and all_finite(torch.empty(0))
    assert all_finite(torch.arange(10)) and all_finite(torch.tensor([True, False]))
    assert all_finite(torch.tensor([torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max]))


def test_all_whole_finds_one_fraction_in_a_large_tensor():
    x = torch.randint(0, 10, (300_000,)).float()
    assert all_whole(x)
    x[299_999] = 3.5
    assert not all_whole(x)
    x[299_999] = -3.0
    assert all_whole(x) and all_whole(-x)
    assert all_whole(torch.arange(5))


def test_integer_and_boolean_tensors():
    assert in_support(torch.tensor([True, False]), constraints.boolean)
    assert in_support(torch.tensor([0, 3, 9]), constraints.nonnegative_integer)
    assert not in_support(torch.tensor([0, -3, 9]), constraints.nonnegative_integer)
    assert not in_support(torch.tensor([0, 2]), constraints.boolean)
