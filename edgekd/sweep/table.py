"""The sweep's table: test accuracy as mean ± sample std over draws, like the paper's Tables 2-7."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgekd.paper import paper_value
from edgekd.sweep.plan import Cell, _slug


def _mean_std(values: list[float]) -> tuple[float, float]:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def collect(cells: list[Cell], out: Path, metric: str = "accuracy") -> dict[str, Any]:
    """Finished cells -> {"cells": [...], "table": {dataset: {row: {fraction: stats}}}}."""
    rows: list[dict[str, Any]] = []
    table: dict[str, dict[str, dict[str, Any]]] = {}
    splits: dict[str, dict[str, None]] = {}  # dataset -> the distinct split lines of its cells
    for c in cells:
        f = c.run_dir(out) / "results.json"
        if not f.exists():
            continue
        res = json.loads(f.read_text())
        rows.append({**asdict(c), "accuracy": res["accuracy"], "macro_f1": res["macro_f1"],
                     "train_seconds": res.get("train_seconds"), "run_dir": str(c.run_dir(out)),
                     **_provenance(c.run_dir(out))})
    for r in rows:
        plabel = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in r["params"].items())
        label = r["method"] + (f" ({plabel})" if plabel else "")
        entry = table.setdefault(_slug(r["dataset"]), {}).setdefault(label, {}).setdefault(f"{r['fraction']:g}", {"values": []})
        entry["values"].append(r[metric])
        paper = None if r["params"] else paper_value(r["layout"], r["student"], r["method"], r["fraction"])
        if paper is not None:
            entry["paper"] = {"mean": paper.mean, "std": paper.std, "table": paper.table, "row": paper.row}
        if r["split"]:
            splits.setdefault(_slug(r["dataset"]), {})[r["split"]] = None
    for ds in table.values():
        for row in ds.values():
            for e in row.values():
                e["mean"], e["std"] = _mean_std(e["values"])
                e["n"] = len(e["values"])
    return {"metric": metric, "cells": rows, "table": table, "splits": {k: list(v) for k, v in splits.items()}}


def _provenance(run_dir: Path) -> dict[str, Any]:
    """The cell's dataset layout, student and split line: what the paper lookup and the split
    warning need (a paper preset on lung CT is comparable only with the paper's image-level split)."""
    import yaml

    from edgekd.data.split import SplitRecord

    meta = json.loads((run_dir / "data" / "test.json").read_text())
    rec = SplitRecord.from_meta(meta.get("meta", {}))
    student = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["student"]
    split = (rec.describe() + (" (**patients leak into the test set**)" if rec.mixed else "")) if rec else None
    return {"layout": meta.get("layout"), "student": student, "split": split}


def _format(e: dict[str, Any], n_max: int) -> str:
    s = f"{e['mean']:.3f} ± {e['std']:.3f}" + ("" if e["n"] == n_max else f" (n={e['n']})")
    if "paper" in e:  # the paper's Table 2-6 value for the same dataset, student, method and fraction
        p = e["paper"]
        s += f" [paper {p['mean']:.3f} ± {p['std']:.3f}, T{p['table']}; Δ {e['mean'] - p['mean']:+.3f}]"
    return s


def to_markdown(summary: dict[str, Any], fractions: list[float], title: str = "") -> str:
    """One table per dataset; the best mean per column in bold (as in the paper)."""
    cols = [f"{f:g}" for f in fractions]
    lines = [f"# {title}", ""] if title else []
    n_max = max((e["n"] for rows in summary["table"].values() for r in rows.values() for e in r.values()), default=0)
    for ds, rows in summary["table"].items():
        splits = summary.get("splits", {}).get(ds, [])
        lines += [f"## {ds} (test {summary['metric']}, mean ± std over draws)", "",
                  *[f"Split: {s}" for s in splits], *([""] if splits else []),
                  "| method | " + " | ".join(f"{float(c) * 100:g}%" for c in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        best = {c: max((r[c]["mean"] for r in rows.values() if c in r), default=None) for c in cols}
        for label, row in rows.items():
            cells = []
            for c in cols:
                if c not in row:
                    cells.append("–")
                    continue
                s = _format(row[c], n_max)
                cells.append(f"**{s}**" if row[c]["mean"] == best[c] else s)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if summary.get("failed"):  # a failed cell is missing from its mean: say so beside the table
        lines += [f"## failed cells ({len(summary['failed'])})", "", "| cell | error |", "|---|---|"]
        lines += [f"| {f['run_dir']} | {f['error'].replace('|', '/')} |" for f in summary["failed"]]
        lines.append("")
    return "\n".join(lines)


def write_table(cells: list[Cell], out: Path, fractions: list[float], extra: dict[str, Any] | None = None) -> dict:
    summary = collect(cells, out)
    summary.update(extra or {})
    (out / "table.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(to_markdown(summary, fractions))
    return summary
