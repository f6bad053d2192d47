"""The student card: the JSON written beside every saved network (`model.json` next to
`model.safetensors`), read by the exporter, `edgekd predict` and `edgekd explain`.

One schema for train, select, export and predict, versioned so a card from an older run is
either read (version 1 had no `card_version` field) or refused with a message naming the fix.
Torch-free: the deployment side reads it without the training stack.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgekd.errors import EdgeKDError
from edgekd.shared.jsonio import parse_object

CARD_VERSION = 2  # 1 = the unversioned sidecar of edgekd <= 0.1.0 (same fields, no version)
ROLES = ("student", "aux", "teacher", "selection")


#: fields whose type the rest of the code relies on (a hand-edited card fails here, not in timm)
_TYPES: dict[str, tuple[type, ...]] = {
    "architecture": (str,), "num_classes": (int, type(None)), "classes": (list,), "model_kwargs": (dict,),
    "preprocess": (dict, type(None)), "calibration": (dict, type(None)),
}


@dataclass
class StudentCard:
    """What a saved network is and how to feed it.

    `role`: student = S (the deliverable); aux = S'; teacher = the kd teacher or Tf-KD_self's
    stage-1 network (its own architecture); selection = a network written by `edgekd select`.
    """

    architecture: str
    num_classes: int | None
    classes: list[str] = field(default_factory=list)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] | None = None  # PreprocessConfig.to_dict()
    role: str = "student"
    method: str | None = None
    epoch: int | None = None
    selected_by: str | None = None  # best.*: the score that chose the epoch
    test_manifest: str | None = None  # relative to the run directory
    selection: dict[str, Any] | None = None  # `edgekd select`: teacher, its weights, strategy, seed, main/aux
    weights_sha256: str = ""
    edgekd_version: str = ""
    calibration: dict[str, Any] | None = None  # CalibrationReport.to_dict() of temperature scaling; None = uncalibrated
    extra: dict[str, Any] = field(default_factory=dict)  # written by newer versions, kept verbatim
    card_version: int = CARD_VERSION

    def __post_init__(self) -> None:
        if not self.architecture:
            raise EdgeKDError("student card needs an architecture (the timm model name)")
        if self.role not in ROLES:
            raise EdgeKDError(f"student card role {self.role!r} is not one of {ROLES}; fix: re-save the model with edgekd")
        for name, types in _TYPES.items():
            if not isinstance(getattr(self, name), types):
                raise EdgeKDError(f"student card field {name!r} is {getattr(self, name)!r}, not "
                                  f"{' or '.join(t.__name__ for t in types)}; fix: re-save the model with edgekd")
        t = self.calibration.get("temperature") if self.calibration is not None else 1.0
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
            raise EdgeKDError(f"student card calibration temperature {t!r} is not a positive number; "
                              "fix: re-train, or remove the card's \"calibration\" entry")

    @property
    def temperature(self) -> float:
        """T of temperature scaling: logits / T are the calibrated logits. 1.0 for an uncalibrated card
        (calibration=none, no held-out images, or a run older than calibration)."""
        return float(self.calibration["temperature"]) if self.calibration is not None else 1.0

    def to_json(self) -> str:
        d = asdict(self)
        d.update(d.pop("extra"))
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "card") -> "StudentCard":
        d = parse_object(text, source, "re-save the model with edgekd")
        version = d.pop("card_version", 1)
        if not isinstance(version, int) or version > CARD_VERSION:
            raise EdgeKDError(f"{source} has card_version {version!r}, newer than this edgekd reads "
                              f"({CARD_VERSION}); fix: upgrade edgekd")
        for key in ("architecture", "num_classes"):
            if key not in d:
                raise EdgeKDError(f"{source} lacks {key!r}; fix: re-save the model with edgekd")
        known = {f.name for f in fields(cls)} - {"extra", "card_version"}
        extra = {k: d.pop(k) for k in list(d) if k not in known}
        try:
            return cls(**d, extra=extra, card_version=CARD_VERSION)
        except EdgeKDError as e:
            raise EdgeKDError(f"{source}: {e}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "StudentCard":
        path = Path(path)
        if not path.is_file():
            raise EdgeKDError(f"no student card at {str(path)!r}; fix: point at a file written by edgekd "
                              "(RUN/model.safetensors with RUN/model.json beside it)")
        return cls.from_json(path.read_text(), source=repr(str(path)))


def card_path(weights: str | Path) -> Path:
    """The card of `RUN/model.safetensors` is `RUN/model.json`."""
    return Path(weights).with_suffix(".json")
