"""The in-memory result of dataset discovery: what was found, in label order, and what was not usable.

Kept free of torch and of any layout knowledge so every other piece (splits, manifests,
the CLI, the export runtime) can share it.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


class DataWarning(UserWarning):
    """A counted, non-fatal data problem (e.g. a corrupt file that was skipped)."""


@dataclass(frozen=True)
class Sample:
    """One image. `path` is a file path or a `idx://FILE#N` / `npz://FILE#SPLIT#N` address.

    `group` (e.g. patient id) lets a split keep all of a patient's images on one side;
    `source_split` ("train"/"val"/"test") is the dataset's own split, for `mode="official"`;
    `attributes` (column -> value: a CSV's extra columns such as site or scanner, a DICOM header's
    Manufacturer and PatientSex) name the subgroups the reports break the metrics down by.
    """

    path: str
    label: int
    group: str | None = None
    source_split: str | None = None
    attributes: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Skipped:
    """A file that looked like an image but could not be used, and why."""

    path: str
    reason: str


@dataclass
class DatasetIndex:
    """Everything `discover` found. `classes[label]` is the class name (label order)."""

    root: str
    layout: str
    classes: list[str]
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    description: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def counts(self, ids: list[int] | None = None) -> dict[str, int]:
        """Usable images per class name (label order), optionally restricted to `ids`."""
        chosen = self.samples if ids is None else [self.samples[i] for i in ids]
        c = Counter(s.label for s in chosen)
        return {name: c.get(k, 0) for k, name in enumerate(self.classes)}

    @property
    def source_splits(self) -> dict[str, int]:
        """Images per dataset-provided split (empty when the layout has none)."""
        c = Counter(s.source_split for s in self.samples if s.source_split)
        return dict(sorted(c.items()))


MAX_NAMED_WARNINGS = 20


def warn_skipped(skipped: list[Skipped]) -> None:
    """One warning per skipped file (names it and the reason), then a summary past a cap."""
    for s in skipped[:MAX_NAMED_WARNINGS]:
        warnings.warn(
            f"skipped {s.path}: {s.reason} (fix: replace or delete the file; it is left out)",
            DataWarning,
            stacklevel=3,
        )
    if len(skipped) > MAX_NAMED_WARNINGS:
        warnings.warn(
            f"... and {len(skipped) - MAX_NAMED_WARNINGS} more files skipped; "
            "`edgekd data inspect PATH` lists them all",
            DataWarning,
            stacklevel=3,
        )
