"""One markdown + JSON report per export, a rich table on the console, an accuracy-vs-latency PNG.

Why: the person shipping a model needs one page that says, per artifact, how big, how
accurate (and how far from PyTorch), how fast, and whether it passed; the JSON is the same
content for CI and dashboards. An INT8 artifact's precision says how much of its compute its
runtime runs in INT8 kernels (`int8 (94 %)`, `edgekd.export.int8_share`); below half, its verdict
says FLOAT FALLBACK whether or not it passed. Its note (`quant_note`) says how it was quantized,
which nodes stayed float and what the accuracy-aware search did. matplotlib is imported lazily
(not in the runtime extra).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.export.int8_share import int8_label, is_float_fallback, percent

if TYPE_CHECKING:
    from edgekd.export.int8_accuracy import AccuracySearch, QuantReport


@dataclass
class ReportRow:
    name: str
    format: str
    precision: str
    status: str = "ok"  # ok | skipped | failed
    size_mb: float | None = None
    accuracy: float | None = None
    drop_pt: float | None = None
    agreement_pct: float | None = None
    max_abs_diff: float | None = None
    mean_kl: float | None = None
    map_rank_corr: float | None = None  # explanation drift: occlusion maps vs PyTorch (1 = same evidence)
    p50_ms: float | None = None
    speedup_vs_torch: float | None = None
    passed: bool | None = None
    reasons: list[str] = field(default_factory=list)
    path: str = ""
    int8_share: float | None = None  # int8 artifacts: share of Conv/MatMul/Gemm MACs in INT8 kernels (Int8Share.share)

    @property
    def float_fallback(self) -> bool:
        return self.int8_share is not None and is_float_fallback(self.int8_share)


COLUMNS = [("name", "artifact"), ("format", "format"), ("precision", "precision"), ("size_mb", "size MB"),
           ("accuracy", "acc %"), ("drop_pt", "drop pt"), ("agreement_pct", "agree %"), ("max_abs_diff", "max |diff|"),
           ("mean_kl", "mean KL"), ("map_rank_corr", "map rho"), ("p50_ms", "p50 ms"), ("speedup_vs_torch", "x torch"), ("verdict", "verdict")]


def _fmt(key: str, row: ReportRow) -> str:
    if key == "verdict":
        return _verdict(row)
    if key == "precision" and row.int8_share is not None:
        return int8_label(row.int8_share)
    v = getattr(row, key)
    if v is None:
        return "-"
    if isinstance(v, float):
        if key in ("max_abs_diff", "mean_kl"):
            return f"{v:.2e}"
        return f"{v:.2f}"
    return str(v)


def _verdict(row: ReportRow) -> str:
    if row.format == "pytorch":
        return "reference"
    if row.status != "ok":
        return f"{row.status.upper()}: {'; '.join(row.reasons)}"
    verdict = "not verified" if row.passed is None else "PASS" if row.passed else "FAIL: " + "; ".join(row.reasons)
    if row.float_fallback:
        return f"FLOAT FALLBACK ({verdict})"
    return verdict


def markdown_table(rows: list[ReportRow]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(_fmt(k, r) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def print_table(rows: list[ReportRow], title: str = "edgekd export") -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for _, h in COLUMNS:
        t.add_column(h, overflow="fold")
    for r in rows:
        ok = "yellow" if r.float_fallback else "green"  # passed, but a float model in an INT8 file
        style = ok if r.passed and r.status == "ok" else ("yellow" if r.status == "skipped" or r.passed is None else "red")
        t.add_row(*[_fmt(k, r) for k, _ in COLUMNS], style=style)
    import sys

    Console(width=None if sys.stdout.isatty() else 200).print(t)


def quant_note(q: QuantReport) -> str:
    """An INT8 artifact's report note, from its quantizer's report."""
    counted = f"; {q.float_compute_nodes} of {q.compute_nodes} Conv/MatMul/Gemm" if q.compute_nodes is not None else ""
    parts = [f"{q.scheme} on {q.calib_images} images", *([str(q.int8_share)] if q.int8_share is not None else [])]
    if q.fusions is not None:
        parts.append(f"fusions: {q.fusions or 'none'}")
    if q.float_op_types is not None:
        parts.append(f"float op types: {q.float_op_types}")
    parts.append(f"{q.float_nodes_label} ({len(q.float_nodes)}{counted}): {q.float_nodes}")
    return _float_fallback(q) + "; ".join(parts) + _search_note(q.search)


def _float_fallback(q: QuantReport) -> str:
    """A warning up front when its runtime runs most of the compute in float: "INT8" would then
    mislead. By MACs, not nodes: node counts weigh a 1x1 head like the widest conv."""
    s = q.int8_share
    if s is None or not s.float_fallback:
        return ""
    return (f"FLOAT FALLBACK: {s.runtime} runs only {percent(s.share)} of the Conv/MatMul/Gemm compute in INT8 "
            "kernels, so this artifact runs mostly in float; ")


def _search_note(s: AccuracySearch | None) -> str:
    """What the accuracy-aware search did and what its float nodes cost in batch-1 latency."""
    if s is None:
        return "; accuracy control off"
    a, b = s.latency_all_int8_ms, s.latency_ms
    verdict = "met" if s.target_met else "NOT met (no candidate reached it; see verify)"
    tries = [f"{t.search} / {t.certification}" for t in s.tries]
    return (f"; searched on {s.search_images} training images: {s.shipped.search}; certified on "
            f"{s.certification_images} other training images: {s.shipped.certification} (target {s.target}: "
            f"{verdict}); tries (search / certification): {tries}; batch-1 latency all-INT8 {a:.2f} ms -> {b:.2f} ms "
            f"shipped ({b - a:+.2f} ms for the float nodes)")


def accuracy_latency_figure(rows: list[ReportRow]) -> Any:
    """Accuracy vs batch-1 latency. Names go in a legend, not next to the points: artifacts of
    one model sit on top of each other (same accuracy, similar latency) and annotations overlapped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.accuracy is not None and r.p50_ms is not None]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for r in pts:
        ok = r.passed or r.passed is None
        ax.scatter(r.p50_ms, r.accuracy, marker="o" if ok else "x", s=40, label=r.name + ("" if ok else " (FAIL)"))
    ax.set_xlabel("batch-1 p50 latency (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs latency (x = failed verify)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_latency(rows: list[ReportRow], path: Path) -> Path | None:
    if not any(r.accuracy is not None and r.p50_ms is not None for r in rows):
        return None
    import matplotlib.pyplot as plt

    fig = accuracy_latency_figure(rows)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(rows: list[ReportRow], out_dir: Path, context: dict[str, Any], stem: str = "report") -> dict[str, Path]:
    """Write STEM.md, STEM.json and STEM.png (accuracy vs latency) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_accuracy_vs_latency(rows, out_dir / f"{stem}.png")
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps({**context, "artifacts": [asdict(r) for r in rows]}, indent=2, default=str))
    md = out_dir / f"{stem}.md"
    lines = [f"# edgekd export report: {context.get('architecture', '')}", ""]
    for k in ("source_weights", "weights_sha256", "test_data", "test_images", "calibration", "int8_validation", "command"):
        if k in context:
            lines.append(f"- **{k}**: `{context[k]}`")
    m = context.get("machine", {})
    if m:
        isa = ", ".join(k for k, v in m.get("isa", {}).items() if v)
        lines.append(f"- **machine**: {m.get('cpu_model')} ({m.get('logical_cores')} cores; {isa}); GPU: {m.get('gpu') or 'none'}")
        lines.append(f"- **runtimes**: {m.get('runtimes')}")
    if "reference" in context:
        lines.append(f"- **reference**: {context['reference']}")
    lines += ["", markdown_table(rows), ""]
    lines += [section + "\n" for section in context.get("sections", [])]
    notes = context.get("notes") or []
    if notes:
        lines += ["## Notes", *[f"- {n}" for n in notes], ""]
    if png:
        lines += [f"![accuracy vs latency]({png.name})", ""]
    md.write_text("\n".join(lines))
    return {"md": md, "json": js, **({"png": png} if png else {})}
