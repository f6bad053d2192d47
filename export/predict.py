"""Classify images with an exported artifact alone: torch-free, edgekd-preprocessing only.

Why: this is the clinic-side path. Preprocessing comes from the metadata INSIDE the artifact
(input size, mean/std, interpolation), so it cannot drift from what the model was trained
with. `edgekd predict ARTIFACT IMAGE_OR_FOLDER_OR_GLOB...` takes what a clinic has (files,
folders searched recursively, globs, DICOM series: a folder of slices, with or without a
.dcm suffix), prints one JSON line per image or writes `--out results.csv|.json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgekd.errors import EdgeKDError
from edgekd.shared.inputs import expand_images
from edgekd.shared.preprocess import PreprocessConfig
from edgekd.shared.saliency import softmax
from edgekd.export.batches import load_batch
from edgekd.export.metadata import preprocess_dict, read_metadata
from edgekd.export.runtimes import Runner, RunnerConfig, open_runner

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

    def preprocess(self, paths: list[str]) -> np.ndarray:
        return load_batch(paths, self.preprocess_dict)

    def predict_paths(self, paths: list[str], batch_size: int = 16, top_k: int = 1,
                      progress: bool = False) -> list[dict[str, Any]]:
        out = []
        steps = range(0, len(paths), batch_size)
        for i in tqdm(steps, desc="predict", unit="batch", disable=not progress or len(steps) < 2, file=sys.stderr):
            chunk = paths[i : i + batch_size]
            for path, row in zip(chunk, softmax(self.runner.predict(self.preprocess(chunk)))):
                top = np.argsort(-row)[:top_k]
                out.append({"path": path, "class": self.classes[top[0]], "prob": float(row[top[0]]),
                            "top": [{"class": self.classes[j], "prob": float(row[j])} for j in top]})
        return out


def write_results(results: list[dict[str, Any]], out: Path) -> None:
    """`.json`: the list as is; `.csv`: path, class, prob, then class_k/prob_k per top-k rank."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps(results, indent=2) + "\n")
        return
    k = max(len(r["top"]) for r in results)
    header = ["path", "class", "prob"] + [f"{w}_{i + 1}" for i in range(k) for w in ("class", "prob")]
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in results:
            w.writerow([r["path"], r["class"], f"{r['prob']:.6f}"] +
                       [v for t in r["top"] for v in (t["class"], f"{t['prob']:.6f}")])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgekd predict", description=__doc__.splitlines()[0])
    ap.add_argument("artifact", help="an exported .onnx / .xml (/ .engine) with edgekd metadata")
    ap.add_argument("images", nargs="+", help="image files, folders (recursive), globs ('**' recursive), DICOM series")
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, help="write all results to FILE.csv or FILE.json instead of JSON lines")
    a = ap.parse_args(argv)
    if a.out is not None and a.out.suffix.lower() not in (".csv", ".json"):
        raise EdgeKDError(f"--out {a.out}: unknown format; fix: end the name in .csv or .json")
    paths = expand_images(a.images)
    clf = Classifier(a.artifact, RunnerConfig(threads=a.threads))
    results = clf.predict_paths(paths, batch_size=a.batch_size, top_k=a.top_k, progress=True)
    if a.out is None:
        for r in results:
            print(json.dumps(r))
    else:
        write_results(results, a.out)
        print(f"{len(results)} images -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
