"""Element selection: which teacher indices along one axis a student keeps.

The paper's step (3). Every function here works on one axis (teacher size T -> student
size S) and returns sorted int64 indices, so the caller can apply them to any tensor along
that axis. Sorted order matters: it keeps the relative order of channels, tokens and kernel
taps, so e.g. the cls token (index 0) stays first.

Dual selection needs a second, complementary index set for the auxiliary student S'.
`aux_indices` takes it from the teacher indices the main student did NOT take (with the same
strategy applied to that complement), and only reuses main indices when the complement is
too small (S > T/2). So for `uniform` with T = 2S the main student gets the even and the
auxiliary one the odd indices; for T = rS it gets i*r + 1 (offset 1); for `consecutive` it
gets the next block S..2S-1.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgekd.errors import EdgeKDError

Strategy = Literal["uniform", "consecutive", "random", "random-inconsistent"]
STRATEGIES: tuple[str, ...] = ("uniform", "consecutive", "random", "random-inconsistent")


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise EdgeKDError(
            f"unknown selection strategy {strategy!r}; fix: use one of {', '.join(STRATEGIES)}"
        )


def uniform_indices(t: int, s: int) -> np.ndarray:
    """Evenly spaced: i*(T/S) when S divides T, else round(linspace(0, T-1, S)) (the
    weight-selection reference's rule; it spreads the choice over every head/group)."""
    _check_sizes(t, s)
    if t % s == 0:
        return np.arange(s, dtype=np.int64) * (t // s)
    return np.round(np.linspace(0, t - 1, s)).astype(np.int64)


def consecutive_indices(t: int, s: int) -> np.ndarray:
    """The first S indices (selects whole heads/groups and skips the rest)."""
    _check_sizes(t, s)
    return np.arange(s, dtype=np.int64)


def random_indices(t: int, s: int, rng: np.random.Generator) -> np.ndarray:
    """S distinct indices drawn uniformly, sorted."""
    _check_sizes(t, s)
    return np.sort(rng.choice(t, size=s, replace=False)).astype(np.int64)


def _check_sizes(t: int, s: int) -> None:
    if not 0 < s <= t:
        raise EdgeKDError(f"cannot select {s} of {t} elements along an axis (need 0 < S <= T)")


def pick(t: int, s: int, strategy: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Main-student indices for one axis."""
    check_strategy(strategy)
    if strategy == "uniform":
        return uniform_indices(t, s)
    if strategy == "consecutive":
        return consecutive_indices(t, s)
    if rng is None:
        raise ValueError("random strategies need an rng")
    return random_indices(t, s, rng)


def aux_indices(
    t: int, s: int, main: np.ndarray, strategy: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Auxiliary-student indices for one axis, overlapping `main` as little as possible:
    the strategy is applied to the complement of `main`; if the complement has fewer than S
    entries, all of it is taken and the rest is picked (same strategy) from `main`."""
    _check_sizes(t, s)
    if s == t:
        return np.arange(t, dtype=np.int64)
    comp = np.setdiff1d(np.arange(t, dtype=np.int64), main)
    if len(comp) >= s:
        return comp[pick(len(comp), s, strategy, rng)]
    extra = main[pick(len(main), s - len(comp), strategy, rng)]
    return np.sort(np.concatenate([comp, extra]))


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts])


def stable_hash(text: str) -> int:
    """A process-independent hash (Python's hash() is salted per run)."""
    return zlib.crc32(text.encode())


@dataclass
class IndexBank:
    """Hands out index sets so that consistency holds by construction.

    Consistent strategies key the set by the axis size pair (T, S): every tensor axis that
    maps T -> S gets the same indices, and a given semantic axis (e.g. ViT's embedding dim
    384 -> 192) always has the same size pair, so it sees the same indices in every tensor.
    Sharing one set between two *different* axes that happen to have equal sizes is harmless.
    `random-inconsistent` instead draws per (tensor, axis): the paper's ablation.

    `role` 0 is the main student S, 1 the auxiliary S'. S' sets are derived from S sets of
    the same key via `aux_indices`, so both students are internally consistent and
    complementary to each other.
    """

    strategy: str = "uniform"
    seed: int = 0
    sets: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_strategy(self.strategy)

    @property
    def consistent(self) -> bool:
        return self.strategy != "random-inconsistent"

    def set_id(self, t: int, s: int, role: int, tensor: str = "", axis: int = 0) -> str:
        """Name of the index set used for this axis; stored in reports."""
        who = "main" if role == 0 else "aux"
        if t == s:
            return f"all:{t}"
        if self.consistent:
            return f"{who}:{t}->{s}"
        return f"{who}:{tensor}#{axis}:{t}->{s}"

    def get(self, t: int, s: int, role: int, tensor: str = "", axis: int = 0) -> tuple[str, np.ndarray]:
        """(set id, indices) for an axis of size t -> s."""
        sid = self.set_id(t, s, role, tensor, axis)
        if sid not in self.sets:
            if t == s:
                self.sets[sid] = np.arange(t, dtype=np.int64)
            else:
                key = (t, s) if self.consistent else (stable_hash(tensor), axis, t, s)
                if role == 0:
                    self.sets[sid] = pick(t, s, self.strategy, _rng(self.seed, *key, 0))
                else:
                    _, main = self.get(t, s, 0, tensor, axis)
                    self.sets[sid] = aux_indices(t, s, main, self.strategy, _rng(self.seed, *key, 1))
        return sid, self.sets[sid]

    def get_fused(
        self, t: int, s: int, blocks: int, role: int, tensor: str = "", axis: int = 0
    ) -> tuple[str, np.ndarray]:
        """Indices for an axis that concatenates `blocks` equal parts (ViT qkv: [3*D, D]).

        Each part is selected with the D-axis set (t/blocks -> s/blocks), so the student's
        q, k and v rows line up with its embedding indices. Selecting the 3*D axis as a
        whole would be wrong for `consecutive` (it would take all of q and half of k) and
        for the random strategies."""
        if t % blocks or s % blocks:
            raise EdgeKDError(f"fused axis {tensor}#{axis}: {t} -> {s} is not {blocks} equal parts")
        part_id, part = self.get(t // blocks, s // blocks, role, tensor, axis)
        sid = f"{blocks}x[{part_id}]"
        if sid not in self.sets:
            self.sets[sid] = np.concatenate([b * (t // blocks) + part for b in range(blocks)])
        return sid, self.sets[sid]
