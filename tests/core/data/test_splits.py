"""stratified_split: seeded, stratified, disjoint, every class keeps at least one."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data.splits import stratified_split
from core.errors import ConfigError


def test_partition_and_per_class_fraction():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 7 + [3] * 1)[torch.randperm(88, generator=torch.Generator().manual_seed(1))]
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert kept.dtype == held.dtype == torch.int64
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(88))
    assert set(kept.tolist()).isdisjoint(held.tolist())
    assert torch.equal(kept, kept.sort().values) and torch.equal(held, held.sort().values)
    for c, n in {0: 50, 1: 30, 2: 7, 3: 1}.items():
        n_held = int((labels[held] == c).sum())
        assert n_held == min(n - 1, math.floor(n * 0.2 + 0.5))
        assert int((labels[kept] == c).sum()) >= 1


def test_seeded():
    labels = torch.arange(200) % 5
    a = stratified_split(labels, 0.25, seed=7)
    b = stratified_split(labels, 0.25, seed=7)
    c = stratified_split(labels, 0.25, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_class_split_independent_of_other_classes():
    labels = torch.tensor([0] * 20 + [1] * 20)
    _, held_both = stratified_split(labels, 0.3, seed=0)
    _, held_zero = stratified_split(labels[:20], 0.3, seed=0)
    assert torch.equal(held_both[held_both < 20], held_zero)


def test_edges():
    kept, held = stratified_split(torch.tensor([4, 4, 9]), 0.0, seed=0)
    assert kept.tolist() == [0, 1, 2] and held.tolist() == []
    kept, held = stratified_split(torch.tensor([], dtype=torch.int64), 0.5, seed=0)
    assert len(kept) == len(held) == 0
    kept, held = stratified_split(torch.tensor([1, 1]), 0.9, seed=0)
    assert len(kept) == 1 and len(held) == 1
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ConfigError):
            stratified_split(torch.tensor([0, 1]), bad, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 6), min_size=0, max_size=120),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**31),
)
def test_properties(labels, fraction, seed):
    t = torch.tensor(labels, dtype=torch.int64)
    kept, held = stratified_split(t, fraction, seed)
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(labels)))
    for c in set(labels):
        n = labels.count(c)
        assert int((t[kept] == c).sum()) >= 1
        assert int((t[held] == c).sum()) == min(n - 1, math.floor(n * fraction + 0.5))
