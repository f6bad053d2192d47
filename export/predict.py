"""Classify images with an exported artifact alone: torch-free, edgekd-preprocessing only.

Why: this is the clinic-side path. Preprocessing comes from the metadata INSIDE the artifact
(input size, mean/std, interpolation), so it cannot drift from what the model was trained
with. `edgekd predict ARTIFACT IMAGE_OR_FOLDER_OR_GLOB...` takes what a clinic has (files,
folders searched recursively, globs, DICOM series: a folder of slices, with or without a
.dcm suffix), prints one JSON line per image or writes `--out results.csv|.json`. An artifact
exported with `--positive-class` carries a threshold on that class; each result then also says
whether the image is called positive (`"call": "COVID: POSITIVE (p=0.93 >= threshold 0.41)"`),
which can differ from the top class: the threshold trades specificity for sensitivity.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgekd.errors import EdgeKDError
from edgekd.shared.clinical.operating_point import OperatingPoint, apply_threshold
from edgekd.shared.inputs import expand_images
from edgekd.shared.preprocess import PreprocessConfig
from edgekd.shared.probs import softmax
from edgekd.export.batches import load_batch
from edgekd.export.metadata import operating_point, preprocess_dict, read_metadata
from edgekd.export.publish import require_verified
from edgekd.export.runner import Runner, RunnerConfig
from edgekd.export.runtimes import open_runner

class Classifier:
    """Artifact + its own metadata -> class names and probabilities."""

    def __init__(self, artifact: str | Path, cfg: RunnerConfig | None = None):
        self.metadata = read_metadata(artifact)
        if not self.metadata:
            raise EdgeKDError(f"{artifact} has no edgekd metadata; fix: export it with `edgekd export`")
        self.runner: Runner = open_runner(artifact, cfg)
        self.classes: list[str] = list(self.metadata["classes"])
        self.preprocess_dict = preprocess_dict(self.metadata)
        self.pp = PreprocessConfig.from_dict(self.preprocess_dict)
        self.point: OperatingPoint | None = operating_point(self.metadata)

    def preprocess(self, paths: list[str]) -> np.ndarray:
        return load_batch(paths, self.preprocess_dict)

    def predict_paths(self, paths: list[str], batch_size: int = 16, top_k: int = 1,
                      progress: bool = False) -> Prediction:
        """Classify `paths`; an image that cannot be read, or whose output is not finite, is
        skipped with its reason instead of stopping the batch (training skips such files too)."""
        pred = Prediction([], [], [])
        steps = range(0, len(paths), batch_size)
        for i in tqdm(steps, desc="predict", unit="batch", disable=not progress or len(steps) < 2, file=sys.stderr):
            chunk, x = self._load(paths[i : i + batch_size], pred.unreadable)
            if not chunk:
                continue
            for path, row in zip(chunk, softmax(self.runner.predict(x))):
                if not np.isfinite(row).all():
                    pred.non_finite.append(path)
                    continue
                top = np.argsort(-row)[:top_k]
                pred.results.append({"path": path, "class": self.classes[top[0]], "prob": float(row[top[0]]),
                                     **(self.call(row) if self.point else {}),
                                     "top": [{"class": self.classes[j], "prob": float(row[j])} for j in top]})
        return pred

    def call(self, row: np.ndarray) -> dict[str, Any]:
        """The operating point's verdict on one image's probabilities."""
        op = self.point
        positive, p = bool(apply_threshold(row[None], op)[0]), float(row[op.index])
        text = (f"{op.positive_class}: POSITIVE (p={p:.3g} >= threshold {op.threshold:.3g})" if positive else
                f"{op.positive_class}: NEGATIVE (p={p:.3g} < threshold {op.threshold:.3g})")
        return {"positive": positive, "call": text}

    def _load(self, chunk: list[str], unreadable: list[tuple[str, str]]) -> tuple[list[str], np.ndarray | None]:
        """The batch, or on a decoding error the readable images of it (the rest go to `unreadable`)."""
        try:
            return chunk, self.preprocess(chunk)
        except EdgeKDError:
            pass
        good, arrays = [], []
        for path in chunk:
            try:
                arrays.append(self.preprocess([path]))
                good.append(path)
            except EdgeKDError as e:
                unreadable.append((path, str(e)))
        return good, np.concatenate(arrays) if arrays else None


@dataclass
class Prediction:
    results: list[dict[str, Any]]  # one per classified image: path, class, prob, top
    unreadable: list[tuple[str, str]]  # (path, decoder error): skipped
    non_finite: list[str]  # the artifact returned NaN/Inf for these: skipped, and the model is broken


def write_results(results: list[dict[str, Any]], out: Path) -> None:
    """`.json`: the list as is; `.csv`: path, class, prob, (positive, call with an operating point,) then
    class_k/prob_k per top-k rank."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps(results, indent=2) + "\n")
        return
    k = max(len(r["top"]) for r in results)
    called = [c for c in ("positive", "call") if c in results[0]]
    header = ["path", "class", "prob", *called] + [f"{w}_{i + 1}" for i in range(k) for w in ("class", "prob")]
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in results:
            w.writerow([r["path"], r["class"], f"{r['prob']:.6f}", *(r[c] for c in called)] +
                       [v for t in r["top"] for v in (t["class"], f"{t['prob']:.6f}")])


ARTIFACT_SUFFIXES = (".onnx", ".xml", ".engine")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="edgekd predict", description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path, help="an exported .onnx / .xml (/ .engine) with edgekd metadata")
    ap.add_argument("images", nargs="+", help="image files, folders (recursive), globs ('**' recursive), DICOM series")
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, help="write all results to FILE.csv or FILE.json instead of JSON lines")
    ap.add_argument("--allow-unverified", action="store_true", help="use an artifact that did not pass verify")
    a = ap.parse_args(argv)
    if a.artifact.suffix.lower() not in ARTIFACT_SUFFIXES:
        hint = (" (it looks like an image: the artifact comes first)" if any(x.lower().endswith(ARTIFACT_SUFFIXES)
                                                                         for x in a.images) else "")
        raise EdgeKDError(f"{str(a.artifact)!r} is not an artifact{hint}; fix: edgekd predict MODEL"
                          f"{'|'.join(ARTIFACT_SUFFIXES)} IMAGES...")
    for flag, value in (("--top-k", a.top_k), ("--batch-size", a.batch_size), ("--threads", a.threads)):
        if value is not None and value < 1:
            raise EdgeKDError(f"{flag} {value}: must be at least 1")
    if a.out is not None and a.out.suffix.lower() not in (".csv", ".json"):
        raise EdgeKDError(f"--out {a.out}: unknown format; fix: end the name in .csv or .json")
    return a


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every image was classified or skipped as unreadable; 1 when the artifact gave
    a non-finite output for any image (a broken model: nothing it said is reported)."""
    a = parse(argv)
    paths = expand_images(a.images)
    verification = require_verified(a.artifact, a.allow_unverified)
    status = verification.verdict if verification is not None else "no marker"
    clf = Classifier(a.artifact, RunnerConfig(threads=a.threads))
    t = float(clf.metadata.get("temperature", 1.0))  # artifacts exported before calibration have no key
    probs = f"calibrated (T={t:.2f})" if t != 1.0 else "uncalibrated (T=1)"
    op = clf.point
    point = (f"; operating point {op.positive_class} >= {op.threshold:.3g} (sensitivity {op.val_sensitivity:.3f}, "
             f"specificity {op.val_specificity:.3f} on validation)" if op else "")
    print(f"{a.artifact.name}: verify {status.upper()}" + ("" if status == "pass" else " (--allow-unverified)")
          + f"; probabilities {probs}{point}", file=sys.stderr)
    pred = clf.predict_paths(paths, batch_size=a.batch_size, top_k=a.top_k, progress=True)
    if a.out is None:
        for r in pred.results:
            print(json.dumps(r))
    elif pred.results:
        write_results(pred.results, a.out)
        print(f"{len(pred.results)} images -> {a.out}", file=sys.stderr)
    for path, why in pred.unreadable:
        print(f"skipped {path}: {why}", file=sys.stderr)
    for path in pred.non_finite:
        print(f"skipped {path}: the artifact returned NaN/Inf", file=sys.stderr)
    if pred.unreadable or pred.non_finite:
        print(f"{len(pred.unreadable) + len(pred.non_finite)} of {len(paths)} images skipped (listed above)",
              file=sys.stderr)
    if pred.non_finite:
        print("error: the model is broken (non-finite outputs); fix: re-train (see the run's metrics.csv) and "
              "re-export", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
