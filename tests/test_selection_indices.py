"""Element-selection index math, checked by hand on small shapes."""

import numpy as np
import pytest

from edgekd.errors import EdgeKDError
from edgekd.selection.indices import IndexBank, aux_indices, pick, uniform_indices


def L(a):
    return [int(v) for v in a]


@pytest.mark.parametrize(
    "t,s,want",
    [
        (8, 4, [0, 2, 4, 6]),  # divisible: i * T/S
        (9, 3, [0, 3, 6]),
        (384, 192, list(range(0, 384, 2))),
        (10, 4, [0, 3, 6, 9]),  # round(linspace(0, 9, 4)) = 0, 3, 6, 9
        (7, 4, [0, 2, 4, 6]),  # linspace(0, 6, 4) = 0, 2, 4, 6
        (11, 4, [0, 3, 7, 10]),  # linspace(0, 10, 4) = 0, 3.33, 6.67, 10
        (5, 5, [0, 1, 2, 3, 4]),
        (6, 1, [0]),
    ],
)
def test_uniform(t, s, want):
    assert L(uniform_indices(t, s)) == want
    assert L(pick(t, s, "uniform")) == want


def test_consecutive():
    assert L(pick(8, 3, "consecutive")) == [0, 1, 2]


def test_random_sorted_distinct_and_seeded():
    a = pick(20, 7, "random", np.random.default_rng(1))
    b = pick(20, 7, "random", np.random.default_rng(1))
    c = pick(20, 7, "random", np.random.default_rng(2))
    assert L(a) == L(b) and L(a) != L(c)
    assert L(a) == sorted(set(L(a))) and len(a) == 7 and 0 <= a.min() and a.max() < 20


@pytest.mark.parametrize(
    "t,s,strategy,want",
    [
        (8, 4, "uniform", [1, 3, 5, 7]),  # ratio 2: odd indices
        (9, 3, "uniform", [1, 4, 7]),  # ratio 3: offset 1
        (8, 3, "consecutive", [3, 4, 5]),  # the next block
        # complement too small (S > T/2): all of it plus the fewest main indices
        (5, 3, "consecutive", [0, 3, 4]),
        (5, 3, "uniform", [0, 1, 3]),  # main [0, 2, 4], complement [1, 3], + main[0]
        (4, 4, "uniform", [0, 1, 2, 3]),
    ],
)
def test_aux_is_complementary(t, s, strategy, want):
    main = pick(t, s, strategy)
    aux = aux_indices(t, s, main, strategy)
    assert L(aux) == want
    assert len(np.intersect1d(main, aux)) == max(0, 2 * s - t)  # the least overlap possible


def test_aux_random_disjoint_when_possible():
    rng = np.random.default_rng(0)
    main = pick(30, 10, "random", rng)
    aux = aux_indices(30, 10, main, "random", rng)
    assert len(np.intersect1d(main, aux)) == 0 and len(aux) == 10


def test_bank_consistent_per_size_pair():
    bank = IndexBank("random", seed=3)
    _, a = bank.get(40, 10, 0, "x.weight", 0)
    _, b = bank.get(40, 10, 0, "y.weight", 1)
    _, c = bank.get(40, 10, 1, "x.weight", 0)
    assert L(a) == L(b)  # same axis pair -> same set, whatever the tensor
    assert len(np.intersect1d(a, c)) == 0  # aux complementary
    _, d = IndexBank("random", seed=3).get(40, 10, 0)
    _, e = IndexBank("random", seed=4).get(40, 10, 0)
    assert L(a) == L(d) and L(a) != L(e)  # reproducible per seed


def test_bank_inconsistent_per_tensor():
    bank = IndexBank("random-inconsistent", seed=0)
    _, a = bank.get(40, 10, 0, "x.weight", 0)
    _, b = bank.get(40, 10, 0, "y.weight", 0)
    _, a2 = bank.get(40, 10, 0, "x.weight", 0)
    assert L(a) != L(b) and L(a) == L(a2)


@pytest.mark.parametrize(
    "strategy,main,aux",
    [
        ("uniform", [0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11]),
        # per part: first 2 of each 4 (NOT the first 6 rows: that would be all of q, half of k)
        ("consecutive", [0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]),
    ],
)
def test_fused_qkv_axis_selects_inside_each_part(strategy, main, aux):
    bank = IndexBank(strategy)
    _, m = bank.get_fused(12, 6, 3, 0, "attn.qkv.weight", 0)
    _, a = bank.get_fused(12, 6, 3, 1, "attn.qkv.weight", 0)
    assert L(m) == main and L(a) == aux
    # each part equals the embedding-axis set 4 -> 2
    _, emb = bank.get(4, 2, 0)
    assert L(m[:2]) == L(emb) and L(m[2:4] - 4) == L(emb) and L(m[4:] - 8) == L(emb)


def test_errors():
    with pytest.raises(EdgeKDError):
        pick(4, 5, "uniform")
    with pytest.raises(EdgeKDError, match="unknown selection strategy"):
        pick(4, 2, "magic")
