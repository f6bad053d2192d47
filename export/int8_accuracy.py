"""What "good enough INT8" means during export, judged on TRAINING images only.

Why: verify grades every artifact on the test split against PyTorch (int8: agreement >= 98 %,
drop <= 1 pt). The accuracy-aware quantizers (ORT keep-float search, NNCF
`quantize_with_accuracy_control`) must aim at the same criterion without ever looking at the
test split, so they score candidates on a validation slice of the training manifest against
the PyTorch model's own predictions. The slice is a sample, so the target is statistical: the
agreement it must show is the lowest at which a one-sided 95 % Wilson lower bound still clears
the verify bar: a fixed margin over the bar on a few hundred images let an INT8 artifact through
the search that then failed verify on test (benchmarks/results/int8_target.md). Both quantizers
report what they did as one `QuantReport`. Torch-free.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgekd.export.calibration import CalibrationSet
from edgekd.export.verify import Thresholds, limits

if TYPE_CHECKING:
    from edgekd.export.int8_share import Int8Share

CONFIDENCE = 0.95

#: the most of its Conv/MatMul/Gemm MACs an INT8 artifact may keep float. A search that needs more
#: stops and says PTQ cannot pass: reverting everything "passes" by shipping the float model in an
#: INT8 file (benchmarks/results/quickstart_preset_export.md); quantization-aware training
#: (`edgekd.export.qat`) is the way on from there.
MAX_FLOAT_MACS = 0.10


def wilson_lower(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Wilson score lower bound of a binomial rate k/n (in [0, 1])."""
    if n <= 0:
        return 0.0
    z = NormalDist().inv_cdf(confidence)
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def required_agreement_pct(bar_pct: float, n: int, confidence: float = CONFIDENCE) -> float:
    """The lowest observed agreement on `n` images whose lower bound clears `bar_pct`: k/n for
    the smallest such k (100 % when even n/n does not, i.e. the slice is too small to tell)."""
    k = next((k for k in range(math.floor(bar_pct / 100 * n), n + 1) if wilson_lower(k, n, confidence) >= bar_pct / 100), n)
    return 100.0 * k / max(n, 1)


@dataclass(frozen=True)
class AccuracyTarget:
    """Agreement/drop an INT8 candidate must reach on the validation slice."""

    min_agreement_pct: float = 98.5
    max_drop_pt: float = 1.0
    verify_bar_pct: float = 98.0
    images: int = 0

    @classmethod
    def from_thresholds(cls, t: Thresholds, images: int, confidence: float = CONFIDENCE) -> "AccuracyTarget":
        """The verify bar for int8, agreement raised to what `images` validation images must show
        for its lower bound to clear the bar (2,000 images: 98.55 %; 500: 99.2 %). The drop keeps
        the verify bar: on a slice one flipped label moves it either way, so a tighter drop bar
        sends the search after noise (reverting most convs); agreement bounds it."""
        max_drop, bar = limits(t, "int8")
        return cls(required_agreement_pct(bar, images, confidence), max_drop, bar, images)

    def for_images(self, images: int) -> "AccuracyTarget":
        """The same verify bar, judged on a slice of `images` images."""
        return AccuracyTarget(required_agreement_pct(self.verify_bar_pct, images), self.max_drop_pt, self.verify_bar_pct, images)

    def raised(self, pct: float) -> "AccuracyTarget":
        """A stricter search goal, after a candidate that met this one failed certification."""
        return AccuracyTarget(min(100.0, self.min_agreement_pct + pct), self.max_drop_pt, self.verify_bar_pct, self.images)

    def __str__(self) -> str:
        why = (f" on {self.images} images (its one-sided {CONFIDENCE:.0%} lower bound clears the {self.verify_bar_pct:g} % "
               "verify bar)") if self.images else ""
        return f"agreement >= {self.min_agreement_pct:.2f} %{why}, drop <= {self.max_drop_pt:g} pt"


@dataclass
class ValidationSet:
    """Validation images with the PyTorch reference's logits on them (computed once)."""

    images: CalibrationSet
    ref_logits: np.ndarray

    @property
    def x(self) -> np.ndarray:
        return self.images.x

    @property
    def ref_pred(self) -> np.ndarray:
        return self.ref_logits.argmax(1)

    def __len__(self) -> int:
        return len(self.images)

    def halves(self) -> tuple["ValidationSet", "ValidationSet"]:
        """(search, check): every other image of each class, so both keep the class balance. The
        search chooses float nodes on the first; only the second, which the choice never saw,
        certifies it: the slice a choice was tuned on flatters it (benchmarks/results/int8_target.md)."""
        def take(idx: np.ndarray) -> ValidationSet:
            im = self.images
            return ValidationSet(CalibrationSet(im.x[idx], im.labels[idx], [im.paths[i] for i in idx]), self.ref_logits[idx])

        labels = self.images.labels
        per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        search, check = (np.sort(np.concatenate([i[start::2] for i in per_class])) for start in (0, 1))
        return take(search), take(check)


def search_and_check(val: ValidationSet,
                     target: AccuracyTarget) -> tuple[ValidationSet, AccuracyTarget, ValidationSet, AccuracyTarget]:
    """(search half, its goal, certification half, the target it must meet): both quantizers
    tune on the first and ship only what the second certifies."""
    search, check = val.halves()
    return search, target.for_images(len(search)), check, target.for_images(len(check))


@dataclass
class Score:
    agreement_pct: float
    drop_pt: float

    def meets(self, target: AccuracyTarget) -> bool:
        return self.agreement_pct >= target.min_agreement_pct - 1e-9 and self.drop_pt <= target.max_drop_pt + 1e-9

    def __str__(self) -> str:
        return f"agreement {self.agreement_pct:.2f}%, drop {self.drop_pt:.2f} pt"


def score_logits(logits: np.ndarray, val: ValidationSet) -> Score:
    """Agreement with the reference and accuracy drop; a non-finite row never agrees."""
    finite = np.isfinite(logits).all(axis=1)
    pred = logits.argmax(1)
    y = val.images.labels
    n = max(len(y), 1)
    agree = ((pred == val.ref_pred) & finite).sum()
    drop = ((val.ref_pred == y).sum() - ((pred == y) & finite).sum()) / n
    return Score(100.0 * agree / n, 100.0 * drop)


def score_predict(predict: Callable[[np.ndarray], np.ndarray], val: ValidationSet, batch: int = 32) -> Score:
    """Run `predict` over the validation images in batches and score it."""
    return score_logits(np.concatenate([predict(val.x[i : i + batch]) for i in range(0, len(val), batch)]), val)


def paired_batch1_ms(a: Callable[[np.ndarray], Any], b: Callable[[np.ndarray], Any], x1: np.ndarray,
                     iters: int = 30, rounds: int = 3) -> tuple[float, float]:
    """Batch-1 latency of two candidates (all-INT8 vs shipped), timed in alternating rounds;
    each is the best of its round medians, so load from other processes hits both alike.
    This is what the report's "cost of the float nodes" is computed from."""
    def median_ms(fn: Callable[[np.ndarray], Any]) -> float:
        t = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn(x1)
            t.append(time.perf_counter() - t0)
        return float(np.median(t)) * 1e3

    for fn in (a, b):
        for _ in range(5):
            fn(x1)
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        best = [min(best[0], median_ms(a)), min(best[1], median_ms(b))]
    return best[0], best[1]


@dataclass
class SearchTry:
    """One candidate of an accuracy-aware search, scored on both halves of the validation slice."""

    candidate: str  # what this try changed, e.g. "4 most sensitive nodes float"
    goal_pct: float  # the agreement it aimed at on the search half
    search: Score
    certification: Score


@dataclass
class AccuracySearch:
    """What an accuracy-aware search did; its last try is the candidate that ships."""

    tries: list[SearchTry]
    search_images: int
    certification_images: int
    target: AccuracyTarget  # what the certification half had to show
    latency_all_int8_ms: float  # batch-1 latency of the first candidate and of the shipped one
    latency_ms: float  # (`paired_batch1_ms`): what the float nodes cost
    over_budget: str | None = None  # why the search stopped before the target: its next try keeps > MAX_FLOAT_MACS float

    @property
    def shipped(self) -> SearchTry:
        return self.tries[-1]

    @property
    def target_met(self) -> bool:
        return self.shipped.certification.meets(self.target)


@dataclass
class QuantReport:
    """What one INT8 quantizer did, ONNX Runtime or NNCF alike; `report.quant_note` renders it."""

    scheme: str  # how it quantized, e.g. "ORT static qoperator u8/s8 per-channel, minmax"
    calib_images: int
    float_nodes: list[str]  # compute nodes left in float, by name
    float_nodes_label: str = "float nodes"  # what `float_nodes` holds, as the report names it
    compute_nodes: int | None = None  # Conv/MatMul/Gemm nodes in the graph; None where not counted
    float_compute_nodes: int | None = None  # how many of them stay float
    float_op_types: list[str] | None = None  # op types kept float by rule (ORT: per family or --keep-float)
    fusions: list[str] | None = None  # ORT: transformer fusions run before quantizing
    searched_float_nodes: list[str] = field(default_factory=list)  # what the search reverted (replayable)
    search: AccuracySearch | None = None  # None: accuracy control off
    int8_share: Int8Share | None = None  # of the saved artifact, as its runtime runs it; None until measured
