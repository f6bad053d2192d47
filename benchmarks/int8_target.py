"""Is the INT8 accuracy target strong enough that an artifact which meets it passes verify on test?

Why: `edgekd export` judges INT8 candidates on a validation slice of the training split and
`edgekd verify` grades them on the test split (agreement >= 98 %). Both are samples. This
measures each INT8 artifact's agreement with PyTorch on a large pool of training-split images
the run never used (neither trained on nor in any manifest), the best estimate of its true
agreement, beside the figure its export was judged on and the test figure verify reported,
and says whether the export's target rule would have accepted the artifact. Exports made by
older code (a fixed +0.5-pt margin on 500 images) and by the current rule (95 % Wilson lower
bound on 2,000 images) can be compared in one run.

    .venv/bin/python benchmarks/int8_target.py --run RUN/train --exports old=DIR1 new=DIR2 [--pool 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
INT8 = {"onnx-int8": ("onnx/model.int8.onnx", None), "openvino-int8": ("openvino/model.int8.xml", "f32")}


def unseen_pool(run: Path, size: int, classes: list[str]) -> list[tuple[str, int]]:
    """Training-split images the run did not use, re-split with the run's own data settings."""
    from edgekd.data import Manifest, discover, make_split
    from edgekd.export.batches import manifest_items

    data = run / "data"
    key = json.loads((data / "train.json").read_text())["meta"]["data"]
    index = discover(json.loads((data / "train.json").read_text())["root"], key["layout"])
    split = make_split(index, key["split"], key["test_size"], key["seed"])
    used = {p for part in data.glob("*.json") for p, _ in manifest_items(part, classes)}
    with tempfile.TemporaryDirectory() as d:
        pool_manifest = Manifest.from_index(index, split.train).save(Path(d) / "pool.json")
        free = [it for it in manifest_items(pool_manifest, classes) if it[0] not in used]
    pick = np.random.default_rng(0).choice(len(free), min(size, len(free)), replace=False)
    return [free[i] for i in sorted(pick)]


def predictions(runner, items: list[tuple[str, int]], pp: dict) -> np.ndarray:
    from edgekd.export.batches import iter_batches

    return np.concatenate([runner.predict(x).argmax(1) for x, _ in iter_batches(items, pp, 64)])


def measure(run: Path, exports: dict[str, Path], pool: int) -> list[dict]:
    from edgekd.export.int8_accuracy import AccuracyTarget, wilson_lower
    from edgekd.export.runner import RunnerConfig
    from edgekd.export.runtimes import open_runner
    from edgekd.export.source import TorchRunner, resolve_run
    from edgekd.export.verify import Thresholds

    src = resolve_run(run)
    pp, classes = src.meta["preprocess"], src.meta["classes"]
    items = unseen_pool(run, pool, classes)
    ref = predictions(TorchRunner(src.weights, 2), items, pp)
    bar = AccuracyTarget.from_thresholds(Thresholds(), 2000).verify_bar_pct
    rows = []
    for label, out in exports.items():
        report = json.loads((out / "report.json").read_text())
        verify = {v["name"]: v for v in report["verify"]}
        for name, (rel, hint) in INT8.items():
            if name not in verify:
                continue
            note = next((n for n in report["notes"] if n.startswith(name + ":")), "")
            key = next((k for k in ("certified on ", "validation on ") if k in note), None)  # current, older reports
            judged = note.split(key)[1].split(" (target")[0] if key else "n/a"
            k = int((predictions(open_runner(out / rel, RunnerConfig(threads=2, inference_precision=hint)), items, pp) == ref).sum())
            p, n_test = k / len(items), verify[name]["n"]
            need = np.ceil(bar / 100 * n_test)  # verify passes with >= need agreeing test images
            rows.append({
                "export": label, "artifact": name, "judged_on": judged,
                "test_agreement_pct": round(verify[name]["agreement_pct"], 2), "test_images": n_test,
                "passed_verify": verify[name]["passed"], "unseen_agreement_pct": round(100 * p, 2), "unseen_images": len(items),
                "unseen_lower95_pct": round(100 * wilson_lower(k, len(items)), 2),
                "p_pass_test": round(float(_binom_sf(need - 1, n_test, p)), 3),
            })
            print(rows[-1], flush=True)
    return rows


def _binom_sf(k: float, n: int, p: float) -> float:
    """P(X > k) for X ~ Binomial(n, p): the chance a fresh test split of n images passes verify."""
    from scipy.stats import binom

    return float(binom.sf(k, n, p))


def markdown(rows: list[dict], command: str) -> str:
    cols = ("export", "artifact", "judged_on", "test_agreement_pct", "passed_verify", "unseen_agreement_pct",
            "unseen_lower95_pct", "p_pass_test")
    lines = ["# INT8 accuracy target: validation slice vs test vs a large unseen pool", "", f"Command: `{command}`", "",
             f"Unseen pool: {rows[0]['unseen_images']} training-split images the run never used (not trained on, not in "
             "any manifest); agreement with PyTorch on it estimates each artifact's true agreement. p_pass_test = the "
             f"chance that a fresh {rows[0]['test_images']}-image test split passes the 98 % verify bar, given that estimate.",
             "", "## Findings (generated from the rows below)", ""]
    for r in rows:
        lines.append(f"- {r['export']} {r['artifact']}: judged on {r['judged_on']}; true agreement about "
                     f"{r['unseen_agreement_pct']} % (95 % lower bound {r['unseen_lower95_pct']} %), so verify on test passes "
                     f"with probability {r['p_pass_test']:.2f}; this test split gave {r['test_agreement_pct']} % "
                     f"({'pass' if r['passed_verify'] else 'FAIL'}).")
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="trainer run directory (data/*.json, model.safetensors)")
    ap.add_argument("--exports", nargs="+", required=True, help="LABEL=EXPORT_DIR (an `edgekd export` output folder)")
    ap.add_argument("--pool", type=int, default=4000, help="unseen training-split images")
    ap.add_argument("--out", default="int8_target", help="results/NAME.json + .md")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    exports = {k: Path(v) for k, v in (e.split("=", 1) for e in a.exports)}
    rows = measure(a.run, exports, a.pool)
    command = "python benchmarks/int8_target.py " + shlex.join(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    (RESULTS / f"{a.out}.md").write_text(markdown(rows, command))
    print(f"wrote {RESULTS / a.out}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
