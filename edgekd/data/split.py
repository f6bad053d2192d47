"""Train/test splits and training subsets: seeded, stratified, deterministic.

The paper uses one random, stratified 80/20 split per dataset and trains on 1/5/10% of the
training part, drawn five times. `group` mode keeps every patient on one side (lung CT);
`official` uses the dataset's own Training/Testing folders. sklearn (group mode) is imported lazily.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from edgekd.data.index import DatasetIndex
from edgekd.shared.images import require
from edgekd.errors import EdgeKDError

SPLIT_MODES = ("stratified", "group", "official")


@dataclass(frozen=True)
class Split:
    """Sample indices (into `DatasetIndex.samples`), each list sorted."""

    train: list[int]
    test: list[int]


def make_split(index: DatasetIndex, mode: str = "stratified", test_size: float = 0.2, seed: int = 0) -> Split:
    """Split `index` into train/test. Same inputs -> same split, on any machine."""
    if mode not in SPLIT_MODES:
        raise EdgeKDError(f"unknown split mode {mode!r}; fix: use one of {', '.join(SPLIT_MODES)}")
    if mode == "official":
        return _official(index)
    if not 0.0 < test_size < 1.0:
        raise EdgeKDError(f"test_size must be between 0 and 1, got {test_size}; fix: e.g. --test-size 0.2")
    return _group(index, test_size, seed) if mode == "group" else _stratified(index, test_size, seed)


def _stratified(index: DatasetIndex, test_size: float, seed: int) -> Split:
    """Per class: round(test_size * n) images to test, clamped to [1, n-1] so every class is on both
    sides even when tiny (sklearn's train_test_split refuses test sets smaller than the class count)."""
    small = [c for c, n in index.counts().items() if n < 2]
    if small:
        raise EdgeKDError(
            f"class(es) {small} have fewer than 2 images, so a stratified split cannot put one on each side; "
            "fix: add images to them or remove those class folders"
        )
    rng = np.random.default_rng(int(seed))
    test: list[int] = []
    for _, members in sorted(_by_class(index, list(range(len(index)))).items()):
        k = min(len(members) - 1, max(1, int(round(test_size * len(members)))))
        test += [members[j] for j in rng.permutation(len(members))[:k]]
    chosen = set(test)
    return Split([i for i in range(len(index)) if i not in chosen], sorted(test))


def _group(index: DatasetIndex, test_size: float, seed: int) -> Split:
    """Group-disjoint split, stratified as well as the groups allow (StratifiedGroupKFold, first fold).

    The test fraction is 1/k with k = round(1/test_size), so 0.2 -> 5 folds -> one fold is test.
    Samples without a group count as their own group.
    """
    StratifiedGroupKFold = require("sklearn.model_selection", "a group (patient-level) split").StratifiedGroupKFold

    if all(s.group is None for s in index.samples):
        raise EdgeKDError(
            f"layout {index.layout} has no patient/group ids, so a group split is impossible; "
            "fix: use --split stratified, or a CSV manifest with a group column"
        )
    groups = [s.group if s.group is not None else f"\0{i}" for i, s in enumerate(index.samples)]
    n_splits = max(2, round(1.0 / test_size))
    n_groups = len(set(groups))
    if n_groups < n_splits:
        raise EdgeKDError(
            f"only {n_groups} groups (patients) for a {n_splits}-fold group split; fix: use --split stratified "
            "or a larger --test-size"
        )
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train, test = next(cv.split(np.zeros(len(index)), index.labels, groups))
    return Split(sorted(map(int, train)), sorted(map(int, test)))


def _official(index: DatasetIndex) -> Split:
    """The dataset's own split: `test` is test; `train` and `val` are training data."""
    splits = [s.source_split for s in index.samples]
    if not any(splits):
        raise EdgeKDError(
            f"layout {index.layout} at {index.root} has no official train/test split; "
            "fix: use --split stratified (the paper's random 80/20 split)"
        )
    train = [i for i, s in enumerate(splits) if s in ("train", "val")]
    test = [i for i, s in enumerate(splits) if s == "test"]
    if not train or not test:
        raise EdgeKDError(
            f"the official split at {index.root} has {len(train)} training and {len(test)} test images; "
            "fix: use --split stratified"
        )
    return Split(train, test)


def _by_class(index: DatasetIndex, ids: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for i in sorted(ids):
        out[index.samples[i].label].append(i)
    return out


def draw_subset(index: DatasetIndex, train_ids: list[int], fraction: float, draw: int = 0, seed: int = 0) -> list[int]:
    """`fraction` of `train_ids` per class (rounded, at least 1 per class), the `draw`-th random draw.

    Draws are independent seeded samples ((seed, draw) seeds the generator), so draw 0..4
    reproduce the paper's five repetitions and differ from each other.
    """
    if not 0.0 < fraction <= 1.0:
        raise EdgeKDError(f"fraction must be in (0, 1], got {fraction}; fix: e.g. 0.01, 0.05, 0.1 or 1.0")
    per_class = _by_class(index, train_ids)
    empty = [c for k, c in enumerate(index.classes) if not per_class.get(k)]
    if empty:
        raise EdgeKDError(
            f"class(es) {empty} have no training images, so a subset cannot contain them; "
            "fix: use a different split (--split stratified) or add images to those classes"
        )
    if fraction >= 1.0:
        return sorted(train_ids)
    rng = np.random.default_rng([int(seed), int(draw)])
    chosen: list[int] = []
    for k in sorted(per_class):
        ids = per_class[k]
        n = min(len(ids), max(1, int(round(fraction * len(ids)))))
        chosen += [ids[j] for j in rng.choice(len(ids), size=n, replace=False)]
    return sorted(chosen)


def cap_per_class(index: DatasetIndex, ids: list[int], limit: int | None, seed: int = 0) -> list[int]:
    """At most `limit` ids per class (seeded random choice): quick CPU runs on a smaller, still stratified set."""
    if limit is None:
        return sorted(ids)
    if limit < 1:
        raise EdgeKDError(f"per-class limit must be >= 1, got {limit}")
    rng = np.random.default_rng([int(seed), 7919])
    out: list[int] = []
    for k, members in sorted(_by_class(index, ids).items()):
        if len(members) > limit:
            members = [members[j] for j in rng.choice(len(members), size=limit, replace=False)]
        out += members
    return sorted(out)
