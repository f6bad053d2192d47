"""Coverage of the teacher by the two students of dual weight selection, for the three pairs.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/selection_coverage.py

Share of teacher elements used by S, by S', by both and by neither (uniform strategy). ViT and
ConvNeXt teachers are randomly initialised (coverage depends on shapes only; the hub is not
reachable here); the Lite2 teacher carries the package's ImageNet weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgekd.models import create_student, load_teacher
from edgekd.selection import select_dual

PAIRS = [
    ("vit_small_patch16_224", "vit_tiny_patch16_224", None),
    ("convnext_tiny", "convnext_femto", None),
    ("tf_efficientnet_lite2", "tf_efficientnet_lite0", "lite-package"),
]


def main() -> int:
    rows = []
    for teacher_name, student_name, weights in PAIRS:
        teacher = load_teacher(teacher_name, weights=weights, pretrained=weights is not None)
        s, s_aux = create_student(student_name, 4), create_student(student_name, 4)
        rep = select_dual(teacher, s, s_aux, "uniform", 0)
        for scope, mapped in (("all teacher tensors", False), ("mapped tensors", True)):
            t = rep.totals(mapped_only=mapped)
            rows.append({"teacher": teacher_name, "student": student_name, "scope": scope,
                         "tensors_mapped": len(rep.tensors),
                         **{k: round(t[k], 4) for k in ("main", "aux", "both", "neither")}})
    out = Path(__file__).parent / "results"
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/selection_coverage.py"
    (out / "selection_coverage.json").write_text(json.dumps({"command": cmd, "strategy": "uniform", "rows": rows}, indent=1))
    lines = ["# Dual weight selection: share of teacher elements used (uniform)", "", f"`{cmd}`", "",
             "| teacher -> student | scope | tensors | S | S' | both | neither |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['teacher']} -> {r['student']} | {r['scope']} | {r['tensors_mapped']} | {r['main']:.1%} | "
              f"{r['aux']:.1%} | {r['both']:.1%} | {r['neither']:.1%} |" for r in rows]
    (out / "selection_coverage.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
