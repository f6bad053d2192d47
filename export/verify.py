"""Check every artifact against the PyTorch model on the same preprocessed test tensors.

Why: an export that silently changes predictions is worse than none. Per artifact: accuracy,
its drop vs PyTorch (percentage points, positive = worse), top-1 agreement, max |logit diff|,
mean KL(p_torch || p_artifact) and mean cosine similarity of the logits (agreement alone is
uninformative when logits are tiny). Thresholds depend on precision and are configurable;
any breach is listed by artifact and reason, and the CLIs exit non-zero.

Overall agreement cannot see a loss confined to one small class, so every artifact also goes
through the paired per-class non-inferiority gate (`edgekd.shared.clinical.gate`): per class,
sensitivity and specificity of the artifact minus the reference on the same images, with a
paired interval and McNemar's exact test. FAIL fails the artifact; INCONCLUSIVE is reported
loudly and fails only with `strict`.

With an operating point (a threshold on one positive class, export/operating_point.py), verify also
reports the test sensitivity and specificity at that threshold, with intervals, for the reference and
each artifact: what a clinic running the artifact at that threshold gets. Reported, never a failure: the
per-class gate already judges the loss.

With subgroup columns in the test manifest (site, scanner, sex; `edgekd.shared.clinical.subgroups`),
verify reports each artifact's per-class metrics per subgroup and flags a subgroup whose sensitivity
trails the rest's by more than the gate's margin. Reported, not failed on: the flag describes the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgekd.export.runner import Predictor
from edgekd.shared.clinical.gate import GateConfig, GateResult, Outcome, paired_gate
from edgekd.shared.clinical.operating_point import OperatingPoint, OperatingPointMetrics, evaluate_operating_point
from edgekd.shared.clinical.subgroups import SubgroupReport, subgroup_metrics


@dataclass
class Thresholds:
    """Max accuracy drop (pt) and min top-1 agreement (%) per precision.

    BF16 sits just below FP16: it keeps FP32's exponent range (nothing overflows) but rounds to 8
    significant bits, about 8x FP16's rounding error, so it flips more near-tie top-1s without
    costing accuracy; a far looser bar would let through what only INT8 should need."""

    max_drop_pt: dict[str, float] = field(default_factory=lambda: {"fp32": 0.1, "fp16": 0.1, "bf16": 0.25,
                                                                   "int8": 1.0})
    min_agreement_pct: dict[str, float] = field(default_factory=lambda: {"fp32": 99.5, "fp16": 99.5, "bf16": 99.0,
                                                                         "int8": 98.0})
    min_map_rank_corr: float | None = None  # explanation drift: fail below this mean rank correlation of the maps
    gate: GateConfig | None = field(default_factory=GateConfig)  # None: no per-class gate
    strict: bool = False  # an INCONCLUSIVE gate fails the artifact too

    @classmethod
    def parse(cls, overrides: list[str] | None) -> "Thresholds":
        """`["int8.drop=2", "fp32.agreement=99"]` -> Thresholds."""
        t = cls()
        for o in overrides or []:
            try:
                key, value = o.split("=")
                prec, what = key.split(".")
                table = {"drop": t.max_drop_pt, "agreement": t.min_agreement_pct}[what]
                table[prec] = float(value)
            except (ValueError, KeyError):
                from edgekd.errors import EdgeKDError

                raise EdgeKDError(f"--threshold {o!r}: expected PRECISION.drop=PT or PRECISION.agreement=PCT, e.g. int8.drop=1.5") from None
        return t


@dataclass(frozen=True)
class PointCheck:
    """Test sensitivity/specificity at the operating point: the PyTorch reference's and the artifact's."""

    reference: OperatingPointMetrics
    artifact: OperatingPointMetrics

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference.to_dict(), "artifact": self.artifact.to_dict()}


@dataclass
class VerifyResult:
    name: str
    precision: str
    n: int
    accuracy: float  # %
    reference_accuracy: float  # %
    drop_pt: float
    agreement_pct: float
    max_abs_diff: float
    mean_kl: float
    mean_cosine: float
    nonfinite: int = 0  # test images whose logits contain NaN/Inf
    map_rank_corr: float | None = None  # occlusion maps vs PyTorch's (edgekd.export.explain_runtime), if measured
    map_top_iou: float | None = None
    gate: GateResult | None = None  # the per-class non-inferiority gate (None: not run)
    operating_point: PointCheck | None = None  # None: no operating point chosen
    subgroups: SubgroupReport | None = None  # None: the test manifest has no subgroup columns
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        typed = ("gate", "operating_point")  # their own to_dict: NaN -> null
        d = asdict(self, dict_factory=lambda kv: {k: v for k, v in kv if k not in (*typed, "subgroups")})
        return {**d, **{k: getattr(self, k).to_dict() if getattr(self, k) is not None else None for k in typed},
                **({"subgroups": self.subgroups.to_dict()} if self.subgroups is not None else {})}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class _Acc:
    """Running sums over the test batches. Rows with a NaN/Inf logit are counted as
    non-finite and never as correct or agreeing (argmax of a NaN row is 0, which could
    otherwise "agree" with class 0), and they make max |diff| infinite."""

    def __init__(self) -> None:
        self.n = self.correct = self.ref_correct = self.agree = self.nonfinite = 0
        self.max_diff = self.kl = self.cos = 0.0
        self.probs: list[np.ndarray] = []  # the artifact's class probabilities, for the per-class gate

    def add(self, ref: np.ndarray, out: np.ndarray, y: np.ndarray) -> None:
        if out.shape != ref.shape:
            raise ValueError(f"artifact returned {out.shape}, reference {ref.shape}")
        finite = np.isfinite(out).all(axis=1)
        self.n += len(y)
        self.nonfinite += int((~finite).sum())
        self.correct += int(((out.argmax(1) == y) & finite).sum())
        self.ref_correct += int((ref.argmax(1) == y).sum())
        self.agree += int(((out.argmax(1) == ref.argmax(1)) & finite).sum())
        diff = np.abs(out.astype(np.float64) - ref)
        self.max_diff = float(np.inf) if not finite.all() else max(self.max_diff, float(diff.max()))
        out = np.where(finite[:, None], out, ref)  # KL/cosine over the finite rows; the breach is reported above
        lp, lq = _log_softmax(ref), _log_softmax(out)
        self.probs.append(np.exp(lq))
        self.kl += float((np.exp(lp) * (lp - lq)).sum())
        num = (ref * out).sum(1)
        den = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1) + 1e-12
        self.cos += float((num / den).sum())

    def result(self, name: str, precision: str) -> "VerifyResult":
        """The tallies as a VerifyResult (before the gate, drift and thresholds are added)."""
        n = max(self.n, 1)
        return VerifyResult(
            name=name, precision=precision, n=self.n, accuracy=100 * self.correct / n,
            reference_accuracy=100 * self.ref_correct / n, drop_pt=100 * (self.ref_correct - self.correct) / n,
            agreement_pct=100 * self.agree / n, max_abs_diff=self.max_diff, mean_kl=self.kl / n,
            mean_cosine=self.cos / n, nonfinite=self.nonfinite,
        )


def verify(
    artifacts: dict[str, tuple[Predictor, str]],
    reference: Predictor,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    thresholds: Thresholds | None = None,
    drift_images: int = 0,
    classes: list[str] | None = None,
    operating_point: OperatingPoint | None = None,
    attributes: Mapping[str, Sequence[str | None]] | None = None,
) -> list[VerifyResult]:
    """Stream the test batches once through the reference and every artifact.

    `artifacts`: name -> (runner, precision). Each batch is fed as-is, so the last partial
    batch goes through the runner's own handling (dynamic batch, or padding it drops).
    `drift_images` > 0: also compare occlusion maps on the first that many test images.
    `classes` (the model's class names): run the per-class gate of `thresholds.gate`.
    `operating_point`: also evaluate the reference and every artifact at that threshold.
    `attributes` (the test manifest's subgroup columns, one value per image): per-subgroup metrics too.
    """
    from edgekd.export.explain_runtime import DriftProbe

    thresholds = thresholds or Thresholds()
    for name, (_, precision) in artifacts.items():
        limits(thresholds, precision, name)  # fail before streaming the test split
    acc = {name: _Acc() for name in artifacts}
    probe = DriftProbe(reference, drift_images) if drift_images > 0 else None
    ref_probs, labels = [], []
    for x, y in batches:
        if probe is not None:
            probe.take(x)
        ref = reference.predict(x).astype(np.float64)
        ref_probs.append(np.exp(_log_softmax(ref)))
        labels.append(np.asarray(y))
        for name, (runner, _) in artifacts.items():
            acc[name].add(ref, runner.predict(x), y)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    ref_probs = np.concatenate(ref_probs) if ref_probs else np.zeros((0, 0))
    ref_point = evaluate_operating_point(labels, ref_probs, operating_point) if operating_point and labels.size else None
    results = []
    for name, (runner, precision) in artifacts.items():
        a = acc[name]
        r = a.result(name, precision)
        if probe is not None and a.n:
            drift = probe.measure(runner)
            r.map_rank_corr, r.map_top_iou = drift.rank_corr, drift.top_iou
        if thresholds.gate is not None and classes is not None and a.n and not a.nonfinite:
            r.gate = paired_gate(labels, ref_probs, np.concatenate(a.probs), list(classes), thresholds.gate)
        if attributes and classes is not None and a.n and not a.nonfinite:
            r.subgroups = subgroup_metrics(labels, np.concatenate(a.probs), list(classes), attributes,
                                           thresholds.gate or GateConfig())
        if ref_point is not None and not a.nonfinite:
            r.operating_point = PointCheck(ref_point, evaluate_operating_point(labels, np.concatenate(a.probs),
                                                                               operating_point))
        check(r, thresholds)
        results.append(r)
    return results


def limits(t: Thresholds, precision: str, name: str = "") -> tuple[float, float]:
    """(max drop pt, min agreement %) for a precision; an unknown precision is an error, never a
    silent fallback to another precision's limits."""
    if precision not in t.max_drop_pt or precision not in t.min_agreement_pct:
        from edgekd.errors import EdgeKDError

        raise EdgeKDError(f"{name or 'artifact'}: no verify thresholds for precision {precision!r} (known: "
                          f"{', '.join(sorted(t.max_drop_pt))}); fix the artifact's metadata or pass "
                          f"--threshold {precision}.drop=PT --threshold {precision}.agreement=PCT")
    return t.max_drop_pt[precision], t.min_agreement_pct[precision]


def check(r: VerifyResult, t: Thresholds) -> VerifyResult:
    """Fill `passed`/`reasons` from the thresholds for r.precision."""
    max_drop, min_agree = limits(t, r.precision, r.name)
    r.reasons = []
    if r.n == 0:
        r.reasons.append("no test images")
    if r.nonfinite or not np.isfinite(r.max_abs_diff):
        r.reasons.append(f"non-finite logits (NaN/Inf) on {r.nonfinite} of {r.n} test images")
    if r.drop_pt > max_drop + 1e-9:
        r.reasons.append(f"accuracy drop {r.drop_pt:.2f} pt > {max_drop:g} pt allowed for {r.precision}")
    if r.agreement_pct < min_agree - 1e-9:
        r.reasons.append(f"top-1 agreement {r.agreement_pct:.2f}% < {min_agree:g}% required for {r.precision}")
    r.reasons += gate_reasons(r.gate, t.strict)
    if t.min_map_rank_corr is not None and r.map_rank_corr is not None and r.map_rank_corr < t.min_map_rank_corr:
        r.reasons.append(f"explanation drift: map rank correlation {r.map_rank_corr:.2f} < {t.min_map_rank_corr:g} "
                         "vs PyTorch (the evidence moved)")
    r.passed = not r.reasons
    return r


def gate_reasons(gate: GateResult | None, strict: bool) -> list[str]:
    """One reason per class the gate failed (and, with `strict`, per inconclusive class), naming
    the class, the paired difference and its interval; plus the calibration check."""
    if gate is None:
        return []
    bad = gate.with_outcome(Outcome.FAIL) + (gate.with_outcome(Outcome.INCONCLUSIVE) if strict else [])
    out = []
    for v in bad:
        worst = next(d for d in (v.sensitivity, v.specificity) if d.outcome is v.outcome)
        out.append(f"per-class gate {v.outcome.value.upper()} for {v.name!r}: {worst.metric} "
                   f"{worst.diff.format(signed=True)} vs PyTorch ({worst.reason}; {len(v.flipped)} images flipped)")
    if gate.calibration.outcome is Outcome.FAIL:
        c = gate.calibration
        out.append(f"calibration: ECE {c.artifact_ece:.3f} vs PyTorch's {c.reference_ece:.3f} (+{c.increase:.3f} > "
                   f"{c.max_increase:g} allowed)")
    return out


def operating_point_markdown(point: OperatingPoint, validation: str, results: list[VerifyResult]) -> str:
    """report.md's "Operating point" section: the threshold, where it was chosen, then the test
    sensitivity/specificity at it for PyTorch and each artifact."""
    lines = [f"## Operating point: {point.positive_class}", "",
             f"Positive when P({point.positive_class}) >= **{point.threshold:.4g}**, chosen for sensitivity >= "
             f"{point.target_sensitivity:g} on {validation}: there sensitivity {point.val_sensitivity:.3f}, "
             f"specificity {point.val_specificity:.3f}. Test split, 95 % intervals (stratified bootstrap):", ""]
    checked = [r for r in results if r.operating_point is not None]
    if not checked:
        return "\n".join(lines + ["(not evaluated: nothing was verified)"])
    first = checked[0].operating_point.reference
    lines += [f"| model | sensitivity (n={first.n_positive}) | specificity (n={first.n_negative}) |", "|---|---|---|"]
    rows = [("PyTorch (reference)", first)] + [(r.name, r.operating_point.artifact) for r in checked]
    lines += [f"| {name} | {m.sensitivity.format()} | {m.specificity.format()} |" for name, m in rows]
    return "\n".join(lines)
