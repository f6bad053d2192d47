"""One markdown + JSON report per export, a rich table on the console, a latency-per-artifact PNG and
the same report as one self-contained HTML page (`report_html`).

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
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.export.int8_share import is_float_fallback, percent
from edgekd.export.report_html import Headline, Lead, write_html
from edgekd.export.runtimes import precision_label
from edgekd.shared.clinical.gate import Outcome

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from edgekd.export.int8_accuracy import AccuracySearch, QuantReport

#: report.png switches to a log latency axis when the slowest timed row is this many times the fastest
LOG_SPAN = 10.0


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
    gate: Outcome | None = None  # the per-class non-inferiority gate's outcome (None: not run)
    runs: str | None = None  # the precision its runtime computed it in, when verified (fp16 IR -> fp32 on most CPUs)

    @property
    def float_fallback(self) -> bool:
        return self.int8_share is not None and is_float_fallback(self.int8_share)


COLUMNS = [("name", "artifact"), ("format", "format"), ("precision", "precision"), ("size_mb", "size MB"),
           ("accuracy", "acc %"), ("drop_pt", "drop pt"), ("agreement_pct", "agree %"), ("max_abs_diff", "max |diff|"),
           ("mean_kl", "mean KL"), ("map_rank_corr", "map rho"), ("p50_ms", "p50 ms"), ("speedup_vs_torch", "x torch"), ("verdict", "verdict")]


class Verdict(str, Enum):
    """What a row's verdict comes down to: the colour of its bar (report.png), chip (report.html) and console row."""

    REFERENCE = "reference"
    PASS = "pass"
    INCONCLUSIVE = "gate inconclusive"  # passed, but the per-class gate could not show some class non-inferior
    FLOAT_FALLBACK = "float fallback"  # passed, but a float model in an INT8 file
    FAIL = "fail"
    NOT_VERIFIED = "not verified"
    SKIPPED = "skipped"


VERDICT_COLOURS = {Verdict.REFERENCE: "#6b7a8f", Verdict.PASS: "#2e8b57", Verdict.INCONCLUSIVE: "#7e57c2",
                   Verdict.FLOAT_FALLBACK: "#e69f00", Verdict.FAIL: "#c0392b", Verdict.NOT_VERIFIED: "#b0b7c3",
                   Verdict.SKIPPED: "#a0a0a0"}
_CONSOLE_STYLES = {Verdict.REFERENCE: "", Verdict.PASS: "green", Verdict.INCONCLUSIVE: "magenta",
                   Verdict.FLOAT_FALLBACK: "yellow", Verdict.FAIL: "red", Verdict.NOT_VERIFIED: "yellow",
                   Verdict.SKIPPED: "yellow"}


def verdict_kind(row: ReportRow) -> Verdict:
    if row.format == "pytorch":
        return Verdict.REFERENCE
    if row.status == "skipped":
        return Verdict.SKIPPED
    if row.status != "ok" or row.passed is False:
        return Verdict.FAIL
    if row.passed is None:
        return Verdict.NOT_VERIFIED
    if row.gate is Outcome.INCONCLUSIVE:
        return Verdict.INCONCLUSIVE
    return Verdict.FLOAT_FALLBACK if row.float_fallback else Verdict.PASS


def _fmt(key: str, row: ReportRow) -> str:
    if key == "verdict":
        return _verdict(row)
    if key == "precision":
        return precision_label(row.precision, row.int8_share, row.runs)
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
    if row.passed and row.gate is Outcome.INCONCLUSIVE:
        verdict += ", per-class gate INCONCLUSIVE"  # not a failure without --strict, but never quiet
    if row.float_fallback:
        return f"FLOAT FALLBACK ({verdict})"
    return verdict


def markdown_table(rows: list[ReportRow]) -> str:
    head = "| " + " | ".join(_cell(h) for _, h in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(_cell(_fmt(k, r)) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare pipe ("max |diff|") would split the cell


def print_table(rows: list[ReportRow], title: str = "edgekd export") -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for _, h in COLUMNS:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*[_fmt(k, r) for k, _ in COLUMNS], style=_CONSOLE_STYLES[verdict_kind(r)])
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


def latency_figure(rows: list[ReportRow]) -> Figure:
    """Batch-1 p50 latency, one horizontal bar per artifact, coloured by verdict, the speed-up vs PyTorch
    eager at the bar's end. Bars, not accuracy-vs-latency points: artifacts of one model share their
    accuracy and nearly their latency, and points and labels landed on top of each other. Log x once the
    latencies span more than LOG_SPAN (eager vs an INT8 engine): the fast bars would be slivers."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import ScalarFormatter

    fig = Figure(figsize=(8, 1.2 + 0.42 * len(rows)), dpi=110)
    ax = fig.subplots()
    timed = [r.p50_ms for r in rows if r.p50_ms is not None]
    log = bool(timed) and max(timed) > LOG_SPAN * min(timed)
    left = min(timed) / 2 if log else 0.0  # a log axis has no zero to start the bars at
    for y, r in enumerate(rows):
        kind = verdict_kind(r)
        if r.p50_ms is None:
            ax.text(left, y, f" {kind.value}, not timed", va="center", fontsize=8, color=VERDICT_COLOURS[kind])
            continue
        ax.barh(y, r.p50_ms - left, left=left, height=0.6, color=VERDICT_COLOURS[kind])
        ax.text(r.p50_ms, y, f" {r.p50_ms:.2f} ms, " + ("reference" if kind is Verdict.REFERENCE else
                                                     f"{r.speedup_vs_torch:.1f}x eager" if r.speedup_vs_torch else "-"),
                va="center", fontsize=8)
    labels = [r.name + ("" if r.accuracy is None else f"  ·  acc {r.accuracy:.1f} %") for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the report table's order, top to bottom, untimed rows included
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 0.5, 1, 10 ms rather than 10^0
    ax.set_xlim(left=left, right=max(timed, default=1.0) * (2.5 if log else 1.3))  # room for the end labels
    ax.set_xlabel("batch-1 p50 latency (ms" + (", log scale)" if log else ")"))
    ax.grid(axis="x", alpha=0.3)
    kinds = list(dict.fromkeys(verdict_kind(r) for r in rows))
    ax.legend([Patch(color=VERDICT_COLOURS[k]) for k in kinds], [k.value for k in kinds], fontsize=8,
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(kinds), frameon=False)
    fig.tight_layout()
    return fig


def plot_latency(rows: list[ReportRow], path: Path) -> Path | None:
    if not any(r.p50_ms is not None for r in rows):
        return None
    latency_figure(rows).savefig(path, bbox_inches="tight")
    return path


def write_report(rows: list[ReportRow], out_dir: Path, context: dict[str, Any], stem: str = "report") -> dict[str, Path]:
    """Write STEM.md, STEM.json, STEM.png (latency per artifact) and STEM.html (all of it on one
    self-contained page) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_latency(rows, out_dir / f"{stem}.png")
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps({**context, "artifacts": [asdict(r) for r in rows]}, indent=2, default=str))
    title = f"edgekd export report: {context.get('architecture', '')}"
    body = _markdown_body(rows, context, png)
    md = out_dir / f"{stem}.md"
    md.write_text(f"# {title}\n\n{_pick_line(context)}{body}")
    lead = Lead(context["pick_headline"], context.get("pick") is not None) if context.get("pick_headline") else None
    headlines = [_headline(r) for r in rows if r.format != "pytorch"]
    page = write_html(out_dir / f"{stem}.html", title, body, headlines, lead)
    return {"md": md, "json": js, "html": page, **({"png": png} if png else {})}


def _pick_line(context: dict[str, Any]) -> str:
    """report.md leads with the deployment pick and why (`edgekd.export.pick`), or why there is none."""
    headline = context.get("pick_headline")
    return f"**Deployment pick**: {headline}\n\n" if headline else ""


def _headline(r: ReportRow) -> Headline:
    kind = verdict_kind(r)
    detail = "; ".join(r.reasons)
    if kind is Verdict.FLOAT_FALLBACK:
        detail = f"{precision_label(r.precision, r.int8_share, r.runs)}: its runtime runs most of the compute in float"
    elif kind is Verdict.INCONCLUSIVE:
        detail = "the per-class gate could not show every class non-inferior; see its section below"
    return Headline(r.name, kind.value, VERDICT_COLOURS[kind], detail)


def _markdown_body(rows: list[ReportRow], context: dict[str, Any], png: Path | None) -> str:
    """Everything below the title: provenance, the table, the latency chart, the per-class gate
    sections, the notes (long: node lists) last."""
    lines = _provenance(context) + ["", markdown_table(rows), ""]
    if png:
        lines += [f"![batch-1 latency per artifact]({png.name})", ""]
    lines += [section + "\n" for section in context.get("sections", [])]
    notes = context.get("notes") or []
    if notes:
        lines += ["## Notes", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def _provenance(context: dict[str, Any]) -> list[str]:
    lines = [f"- **{k}**: `{context[k]}`" for k in ("source_weights", "weights_sha256", "test_data", "test_images",
                                                    "calibration", "int8_validation", "command") if k in context]
    m = context.get("machine", {})
    if m:
        isa = ", ".join(k for k, v in m.get("isa", {}).items() if v)
        lines.append(f"- **machine**: {m.get('cpu_model')} ({m.get('logical_cores')} cores; {isa}); GPU: {m.get('gpu') or 'none'}")
        lines.append(f"- **runtimes**: {m.get('runtimes')}")
    if "reference" in context:
        lines.append(f"- **reference**: {context['reference']}")
    return lines
