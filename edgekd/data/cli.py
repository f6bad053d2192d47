"""`edgekd data inspect PATH`: what discovery found, before anyone trains on it."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter

from edgekd.data.index import DatasetIndex
from edgekd.shared.images import relative_address
from edgekd.data.layouts import LAYOUTS, discover
from edgekd.data.split import SPLIT_MODES, make_split
from edgekd.errors import EdgeKDError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgekd data", description="Inspect a dataset folder.")
    sub = p.add_subparsers(dest="cmd")
    i = sub.add_parser("inspect", help="layout, classes, counts, split sizes, skipped files")
    i.add_argument("path", help="dataset folder (or .csv/.npz file; `fashion-mnist` for the stand-in set)")
    i.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS])
    i.add_argument("--split", default="auto", choices=SPLIT_MODES,
                   help="auto (default): patient-level where the dataset has patient ids, else stratified")
    i.add_argument("--test-size", type=float, default=0.2)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--verify", default="quick", choices=["quick", "full", "none"],
                   help="quick: PNG/JPEG integrity without decoding; full: decode every image")
    i.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    return p


def summarize(index: DatasetIndex, split: str, test_size: float, seed: int) -> dict:
    """The inspect report as a JSON-able dict (classes in label order)."""
    report: dict = {
        "root": index.root,
        "layout": index.layout,
        "description": index.description,
        "classes": list(index.classes),
        "counts": index.counts(),
        "total": len(index),
        "source_splits": index.source_splits,
        "groups": len({s.group for s in index.samples if s.group is not None}),
        "subgroups": subgroup_columns(index),
        "skipped": [{"path": s.path, "reason": s.reason} for s in index.skipped],
    }
    try:
        sp = make_split(index, split, test_size, seed)
        report["split"] = sp.record.to_dict() | {
            "summary": sp.record.describe(), "test_size": test_size, "seed": seed,
            "train": len(sp.train), "test": len(sp.test),
            "train_counts": index.counts(sp.train), "test_counts": index.counts(sp.test),
        }
    except EdgeKDError as e:
        report["split"] = {"requested": split, "mode": split, "error": str(e)}
    return report


def subgroup_columns(index: DatasetIndex) -> dict[str, dict[str, int]]:
    """Per subgroup column (CSV extra columns, DICOM Manufacturer/PatientSex): images per value, so a
    user sees before training which subgroups verify and the model card will report."""
    cols: dict[str, Counter] = {}
    for s in index.samples:
        for k, v in (s.attributes or {}).items():
            cols.setdefault(k, Counter())[v] += 1
    return {k: dict(c.most_common()) for k, c in sorted(cols.items())}


def _print_tables(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{r['root']}[/bold]")
    con.print(f"layout: [cyan]{r['layout']}[/cyan] - {r['description']}")
    t = Table(title="classes (label order)")
    t.add_column("label", justify="right")
    t.add_column("class")
    t.add_column("images", justify="right")
    sp = r["split"]
    if "error" not in sp:
        t.add_column(f"train ({sp['mode']})", justify="right")
        t.add_column("test", justify="right")
    for k, name in enumerate(r["classes"]):
        row = [str(k), name, str(r["counts"][name])]
        if "error" not in sp:
            row += [str(sp["train_counts"][name]), str(sp["test_counts"][name])]
        t.add_row(*row)
    total = ["", "total", str(r["total"])] + ([str(sp["train"]), str(sp["test"])] if "error" not in sp else [])
    t.add_row(*total, style="bold")
    con.print(t)
    if r["source_splits"]:
        con.print("dataset's own split: " + ", ".join(f"{k} {v}" for k, v in r["source_splits"].items()))
    if r["groups"]:
        con.print(f"groups (patients): {r['groups']}")
    for col, values in r["subgroups"].items():
        con.print(f"subgroup column {col}: " + ", ".join(f"{v} {n}" for v, n in values.items()))
    if "error" in sp:
        con.print(f"[yellow]split ({sp['mode']}): {sp['error']}[/yellow]")
    elif sp["groups_both"]:
        con.print(f"[bold red]split: {sp['summary']}[/bold red]")
    else:
        con.print(f"split: {sp['summary']}")
    if r["skipped"]:
        s = Table(title=f"skipped files ({len(r['skipped'])}, paths relative to the root)")
        s.add_column("file", overflow="fold")
        s.add_column("why", overflow="fold")
        for item in r["skipped"]:
            s.add_row(relative_address(item["path"], r["root"]), item["reason"])
        con.print(s)
    else:
        con.print("skipped files: none")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd != "inspect":
        _parser().print_help()
        return 0 if args.cmd is None else 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped files are listed in the report instead
            index = discover(args.path, args.layout, verify=args.verify)
        report = summarize(index, args.split, args.test_size, args.seed)
    except EdgeKDError as e:
        print(f"edgekd data: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"edgekd data: error: cannot read {args.path}: {e}; fix: check permissions and the path", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print_tables(report)
    return 0
