"""`prepare_data`: config -> index, split, subset, manifests in the run directory (reused on resume).

The trainer calls only this, so every run records exactly which images it used.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgekd.data.config import DataConfig
from edgekd.data.index import DataWarning, DatasetIndex
from edgekd.shared.images import relative_address
from edgekd.data.layouts import discover
from edgekd.data.manifest import Manifest
from edgekd.data.split import cap_per_class, choose_mode, draw_subset, hold_out, make_split
from edgekd.errors import EdgeKDError


@dataclass
class PreparedData:
    """`train_ids`/`test_ids` index `index.samples`; `manifests` has "train" and "test"."""

    index: DatasetIndex
    classes: list[str]
    train_ids: list[int]
    test_ids: list[int]
    manifests: dict[str, Manifest]
    resumed: bool = False


def prepare_data(cfg: DataConfig, run_dir: str | Path | None = None) -> PreparedData:
    """Discover, split (cfg.split), draw the subset, cap, and save `run_dir/data/{train,test}.json`.

    If both manifests already exist in `run_dir`, they are reused (resume) after checking that
    they were made from the same dataset root with the same split settings, and that their items
    still match their sha256. The settings record the split mode USED, so an `auto` run and a
    `stratified` one over data without patient ids share their manifests.
    """
    index = discover(cfg.root, cfg.layout, verify=cfg.verify, num_classes=cfg.num_classes)
    key = cfg.split_key() | {"layout": index.layout, "split": choose_mode(index, cfg.split, cfg.test_size).mode}
    data_dir = Path(run_dir) / "data" if run_dir is not None else None
    if data_dir is not None and (data_dir / "train.json").exists() and (data_dir / "test.json").exists():
        return _resume(index, data_dir, key)

    split = make_split(index, cfg.split, cfg.test_size, cfg.seed)
    train = draw_subset(index, split.train, cfg.fraction, cfg.draw, cfg.seed)
    train = cap_per_class(index, train, cfg.train_limit, cfg.seed)
    if cfg.holds_out_validation:  # the trainer's validation pool is the training split minus the subset
        train, _ = hold_out(index, train, cfg.val_size, split.record.mode, cfg.seed + 1)
    test = cap_per_class(index, split.test, cfg.test_limit, cfg.seed)
    if split.record.mode == "group":
        _warn_missing_classes(index, test, "test")
    record = split.record.measured(index, train, test)  # the images actually trained and tested on
    if cfg.split == "auto":
        print(f"data: split {record.describe()}")
    manifests = {
        part: Manifest.from_index(index, ids, meta={"part": part, "data": key, "split": record.to_dict()})
        for part, ids in (("train", train), ("test", test))
    }
    if data_dir is not None:
        for name, m in manifests.items():
            m.save(data_dir / f"{name}.json")
    return PreparedData(index, list(index.classes), train, test, manifests)


def _resume(index: DatasetIndex, data_dir: Path, key: dict) -> PreparedData:
    manifests = {name: Manifest.load(data_dir / f"{name}.json") for name in ("train", "test")}  # checks sha256
    for name, m in manifests.items():
        if os.path.realpath(m.root) != os.path.realpath(index.root):
            raise EdgeKDError(
                f"{data_dir / (name + '.json')} lists images of {m.root}, but data.root is now {index.root}: the run "
                "would train or test on the old images; fix: train into a new run_dir (or --overwrite), or set "
                f"data.root={m.root}"
            )
        saved = m.meta.get("data")
        if saved is not None and saved != key:
            diff = {k: (saved.get(k), v) for k, v in key.items() if saved.get(k) != v}
            raise EdgeKDError(
                f"{data_dir / (name + '.json')} was made with different data settings {diff} (saved, now); "
                "fix: use a new run directory, or delete its data/ folder to re-split"
            )
        if m.classes != index.classes:
            raise EdgeKDError(
                f"{data_dir / (name + '.json')} has classes {m.classes} but the dataset now has {index.classes}; "
                "fix: use a new run directory"
            )
    where = {relative_address(s.path, index.root): i for i, s in enumerate(index.samples)}
    ids = {}
    for name, m in manifests.items():
        rel = [p for p, _ in m.relative_items()]
        lost = [p for p in rel if p not in where]
        if lost:
            raise EdgeKDError(
                f"{len(lost)} images of {data_dir / (name + '.json')} are no longer in {index.root} "
                f"(first: {lost[0]}); fix: restore them, or use a new run directory"
            )
        ids[name] = [where[p] for p in rel]
    return PreparedData(index, list(index.classes), ids["train"], ids["test"], manifests, resumed=True)


def _warn_missing_classes(index: DatasetIndex, ids: list[int], part: str) -> None:
    empty = [c for c, n in index.counts(ids).items() if n == 0]
    if empty:
        warnings.warn(f"the {part} set has no images of {empty} (group split with few groups)", DataWarning,
                      stacklevel=3)
