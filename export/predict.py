"""Classify images with an exported artifact alone: torch-free, edgekd-preprocessing only.

Why: this is the clinic-side path. Preprocessing comes from the metadata INSIDE the artifact
(input size, mean/std, interpolation), so it cannot drift from what the model was trained
with. `python -m edgekd.export.predict ARTIFACT IMAGE...` prints one JSON line per image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.export import contract
from edgekd.export.metadata import preprocess_dict, read_metadata
from edgekd.export.runtimes import Runner, RunnerConfig, open_runner


class Classifier:
    """Artifact + its own metadata -> class names and probabilities."""

    def __init__(self, artifact: str | Path, cfg: RunnerConfig | None = None):
        self.metadata = read_metadata(artifact)
        if not self.metadata:
            raise ValueError(f"{artifact} has no edgekd metadata; export it with `edgekd export`")
        self.runner: Runner = open_runner(artifact, cfg)
        self.classes: list[str] = list(self.metadata["classes"])
        self._pp = contract.preprocess_config(preprocess_dict(self.metadata))

    def preprocess(self, paths: list[str]) -> np.ndarray:
        return np.stack([contract.preprocess_numpy(contract.load_image(p), self._pp) for p in paths]).astype(np.float32)

    def predict_paths(self, paths: list[str], batch_size: int = 16, top_k: int = 1) -> list[dict[str, Any]]:
        out = []
        for i in range(0, len(paths), batch_size):
            chunk = paths[i : i + batch_size]
            logits = self.runner.predict(self.preprocess(chunk)).astype(np.float64)
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            for path, row in zip(chunk, p):
                top = np.argsort(-row)[:top_k]
                out.append({"path": path, "class": self.classes[top[0]], "prob": float(row[top[0]]),
                            "top": [{"class": self.classes[j], "prob": float(row[j])} for j in top]})
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekd.export.predict", description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    clf = Classifier(a.artifact, RunnerConfig(threads=a.threads))
    for r in clf.predict_paths(a.images, top_k=a.top_k):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
