"""Train/test splits and training subsets: seeded, stratified, deterministic.

The paper uses one random, stratified 80/20 split per dataset and trains on 1/5/10% of the
training part, drawn five times. `group` mode keeps every patient on one side (lung CT);
`official` uses the dataset's own Training/Testing folders; `auto` (the default) is `group`
wherever the layout knows patient ids and `stratified` elsewhere, because slices of one patient
on both sides make test accuracy optimistic. Any split that still puts a patient on both sides
warns (`DataWarning`) and says so in its `SplitRecord`. sklearn (group mode) is imported lazily.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, replace

import numpy as np

from edgekd.data.index import DatasetIndex, DataWarning
from edgekd.shared.images import require
from edgekd.errors import EdgeKDError

SPLIT_MODES = ("auto", "stratified", "group", "official")


@dataclass(frozen=True)
class SplitRecord:
    """How a split was made and whether any patient (group) has images on both sides.

    Saved as `meta["split"]` of the train and test manifests; the model card and `data inspect`
    print `describe()`. `requested` is `data.split` as configured, `mode` the one used, `reason`
    why (auto's choice). Group counts are distinct patient ids among the images of each side.
    """

    requested: str
    mode: str
    reason: str
    groups_train: int = 0
    groups_test: int = 0
    groups_both: int = 0

    @property
    def groups(self) -> int:
        """Distinct patient ids over both sides."""
        return self.groups_train + self.groups_test - self.groups_both

    @property
    def mixed(self) -> bool:
        """True when some patient's images are in both train and test (the test set leaks)."""
        return self.groups_both > 0

    def measured(self, index: DatasetIndex, train: list[int], test: list[int]) -> "SplitRecord":
        """This record with the group counts of `train`/`test` (ids into `index.samples`)."""
        ids = [{index.samples[i].group for i in part} - {None} for part in (train, test)]
        return replace(self, groups_train=len(ids[0]), groups_test=len(ids[1]), groups_both=len(ids[0] & ids[1]))

    def describe(self) -> str:
        """One line, e.g. `group (auto: the dataset has patient ids); 18 patients, none on both sides`."""
        text = self.mode + (f" (auto: {self.reason})" if self.requested == "auto" else "")
        if self.mixed:
            return (f"{text}; WARNING: {self.groups_both} of {self.groups} patients have images in both train and "
                    "test, so test accuracy is optimistic")
        return f"{text}; {self.groups} patients, none on both sides" if self.groups else text

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict) -> "SplitRecord | None":
        """From a manifest's `meta` (None for manifests written before splits were recorded)."""
        return cls(**meta["split"]) if meta.get("split") else None


@dataclass(frozen=True)
class Split:
    """Sample indices (into `DatasetIndex.samples`), each list sorted, and how they were made."""

    train: list[int]
    test: list[int]
    record: SplitRecord


def _group_keys(index: DatasetIndex) -> list[str]:
    """Group per sample for the group split; samples without a group count as their own group."""
    return [s.group if s.group is not None else f"\0{i}" for i, s in enumerate(index.samples)]


def _n_folds(test_size: float) -> int:
    """The group split's test fraction is 1/k: 0.2 -> 5 folds, one of them test."""
    return max(2, round(1.0 / test_size))


def choose_mode(index: DatasetIndex, mode: str = "auto", test_size: float = 0.2) -> SplitRecord:
    """Resolve `auto`: group when the index has patient ids enough for the group split's folds, else stratified."""
    if mode not in SPLIT_MODES:
        raise EdgeKDError(f"unknown split mode {mode!r}; fix: use one of {', '.join(SPLIT_MODES)}")
    if mode != "auto":
        return SplitRecord(mode, mode, "set by data.split")
    if all(s.group is None for s in index.samples):
        return SplitRecord(mode, "stratified", "no patient ids, so the paper's image-level split")
    problem = _group_problem(index, test_size) if 0.0 < test_size < 1.0 else None  # bad sizes fail in make_split
    if problem:
        return SplitRecord(mode, "stratified", problem)
    return SplitRecord(mode, "group", "the dataset has patient ids")


def _group_problem(index: DatasetIndex, test_size: float) -> str | None:
    """Why the group split cannot be made (StratifiedGroupKFold needs k groups and a class of >= k images)."""
    if all(s.group is None for s in index.samples):
        return "no patient/group ids"
    k = _n_folds(test_size)
    n_groups = len(set(_group_keys(index)))
    if n_groups < k:
        return f"only {n_groups} patients, too few for a {k}-fold patient-level split"
    if max(index.counts().values()) < k:
        return f"every class has fewer than {k} images, too few for a {k}-fold patient-level split"
    return None


def make_split(index: DatasetIndex, mode: str = "auto", test_size: float = 0.2, seed: int = 0) -> Split:
    """Split `index` into train/test. Same inputs -> same split, on any machine."""
    record = choose_mode(index, mode, test_size)
    if record.mode == "official":
        train, test = _official(index)
    elif not 0.0 < test_size < 1.0:
        raise EdgeKDError(f"test_size must be between 0 and 1, got {test_size}; fix: e.g. --test-size 0.2")
    else:
        train, test = (_group if record.mode == "group" else _stratified)(index, test_size, seed)
    record = record.measured(index, train, test)
    if record.mixed:
        _warn_mixed(record)
    return Split(train, test, record)


def _warn_mixed(record: SplitRecord) -> None:
    """The loud warning for a split that puts patients on both sides (issued once per message and process:
    the trainer splits twice, for the test set and for the validation pool)."""
    fix = (f"a patient-level split is impossible here ({record.reason}): add patients or raise test_size"
           if record.requested == "auto"
           else "use data.split=auto (or group) for a patient-level split; keep "
                f"{record.mode} only to reproduce the paper's image-level 80/20 split")
    warnings.warn(
        f"split {record.mode}: {record.groups_both} of {record.groups} patients have images in BOTH train and "
        f"test, so test accuracy is optimistic (patients leak into the test set); fix: {fix}",
        DataWarning,
        stacklevel=2,
    )


def _stratified(index: DatasetIndex, test_size: float, seed: int) -> tuple[list[int], list[int]]:
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
    return [i for i in range(len(index)) if i not in chosen], sorted(test)


def _group(index: DatasetIndex, test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """Group-disjoint split, stratified as well as the groups allow (StratifiedGroupKFold, first fold).

    The test fraction is 1/k (`_n_folds`), so 0.2 -> 5 folds -> one fold is test.
    Samples without a group count as their own group.
    """
    StratifiedGroupKFold = require("sklearn.model_selection", "a group (patient-level) split").StratifiedGroupKFold

    problem = _group_problem(index, test_size)
    if problem:
        raise EdgeKDError(
            f"layout {index.layout}: {problem}, so a group split is impossible; fix: use --split auto (stratified "
            "where it must be), a larger --test-size, or a CSV manifest with a group or patient column"
        )
    cv = StratifiedGroupKFold(n_splits=_n_folds(test_size), shuffle=True, random_state=seed)
    train, test = next(cv.split(np.zeros(len(index)), index.labels, _group_keys(index)))
    return sorted(map(int, train)), sorted(map(int, test))


def _official(index: DatasetIndex) -> tuple[list[int], list[int]]:
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
    return train, test


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


def hold_out(index: DatasetIndex, ids: list[int], share: float, mode: str, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held): `share` of `ids` held out as validation, by patient when the test split was (so a
    patient's slices never sit on both sides of the temperature fit), else stratified. Too few images
    for either: nothing is held out, and the run says it has no validation images."""
    sub = replace(index, samples=[index.samples[i] for i in ids])
    if mode == "group" and _group_problem(sub, share) is None:
        kept, held = _group(sub, share, seed)
    elif min(sub.counts().values(), default=0) >= 2:
        kept, held = _stratified(sub, share, seed)
    else:
        return sorted(ids), []
    return sorted(ids[i] for i in kept), sorted(ids[i] for i in held)


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
