"""`DataConfig`: everything that decides which images a run trains and tests on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from edgekd.errors import EdgeKDError


@dataclass
class DataConfig:
    """Defaults: 80/20 split, full training set, seed 0. `split` auto keeps each patient on one side
    where the dataset has patient ids (lung CT, CSV group/patient column, DICOM PatientID) and is
    the paper's stratified image-level split elsewhere; `stratified` reproduces the paper on lung
    CT too, with a warning that patients are then on both sides.

    `fraction`/`draw`: the training subset (e.g. 0.01, draw 0..4). `test_limit`/`train_limit`:
    at most this many images per class (stratified caps for quick CPU runs). `cache_dir`: decoded-
    image cache (None = decode every epoch). `num_classes`: fail early if the dataset differs.
    `val_size`: when the subset is the whole training split (fraction 1.0, no train_limit), this
    share of it is held out as validation (best.* and temperature scaling), never the test split.
    """

    root: str = "fashion-mnist"
    layout: str = "auto"
    split: str = "auto"
    test_size: float = 0.2
    seed: int = 0
    fraction: float = 1.0
    draw: int = 0
    test_limit: int | None = None
    train_limit: int | None = None
    cache_dir: str | None = None
    verify: str = "quick"
    num_classes: int | None = None
    val_size: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise EdgeKDError(f"unknown data option(s) {sorted(unknown)}; fix: use {sorted(known)}")
        return cls(**d)

    def validate(self) -> DataConfig:
        """The shares are in range (nan fails too): checked when the config is read, so a sweep refuses a
        bad cell before any cell trains."""
        if not 0.0 < self.fraction <= 1.0:
            raise EdgeKDError(f"data.fraction={self.fraction} must be in (0, 1] (the share of the training split "
                              "to train on); fix: e.g. data.fraction=0.05 for 5 %, 1.0 for all of it")
        if not 0.0 < self.test_size < 1.0:
            raise EdgeKDError(f"data.test_size={self.test_size} must be in (0, 1) (the share held out for the "
                              "test); fix: e.g. data.test_size=0.2, the paper's 80/20 split")
        if not 0.0 <= self.val_size < 1.0:
            raise EdgeKDError(f"data.val_size={self.val_size} must be in [0, 1) (the share of the training split "
                              "held out for validation at fraction 1.0); fix: e.g. data.val_size=0.1, 0 for none")
        return self

    @property
    def holds_out_validation(self) -> bool:
        """The subset would use every training image, so validation must be carved out of it."""
        return self.fraction == 1.0 and self.train_limit is None and self.val_size > 0

    def split_key(self) -> dict:
        """The fields that define which images land in train/test (a resumed run must match them)."""
        keys = ("layout", "split", "test_size", "seed", "fraction", "draw", "test_limit", "train_limit")
        # val_size moves images out of the training subset only at fraction 1.0; elsewhere it changes
        # nothing, and leaving it out keeps older runs' manifests resumable
        keys += ("val_size",) if self.holds_out_validation else ()
        return {k: getattr(self, k) for k in keys}


@dataclass
class AugConfig:
    """Training augmentation (train config `aug.*`). hflip defaults to 0: laterality matters in chest images."""

    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.0
    rotation: float = 10.0
    brightness: float = 0.1
    contrast: float = 0.1

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AugConfig":
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise EdgeKDError(f"unknown augmentation option(s) {sorted(set(d) - known)}; fix: use {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
