"""report.html: one self-contained page (verdicts first, the per-class gate tables as HTML, images
inline) that a browser renders; and report.png's latency bars."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from edgekd.export.report import VERDICT_COLOURS, ReportRow, Verdict, latency_figure, write_report  # noqa: E402
from edgekd.shared.clinical.gate import GateConfig, Outcome, paired_gate  # noqa: E402

CLASSES = ["normal", "benign", "malignant"]
CHROMIUM = Path("/usr/bin/chromium")


def _planted_gate():
    """An artifact that misses 8 of 20 malignant cases the reference found: the gate fails 'malignant'."""
    y = np.repeat([0, 1, 2], [120, 60, 20])
    ref = np.full((len(y), 3), 0.05)
    ref[np.arange(len(y)), y] = 0.9
    art = ref.copy()
    missed = np.flatnonzero(y == 2)[:8]
    art[missed] = [0.9, 0.05, 0.05]
    paths = [f"/data/test/{CLASSES[c]}/{i:03d}.png" for i, c in enumerate(y)]
    return paired_gate(y, ref, art, CLASSES, GateConfig(n_boot=200)), paths


def _rows(gate_outcome: Outcome) -> list[ReportRow]:
    return [
        ReportRow("pytorch-eager", "pytorch", "fp32", accuracy=100.0, p50_ms=9.0, speedup_vs_torch=1.0),
        ReportRow("onnx-fp32", "ONNX", "fp32", accuracy=100.0, p50_ms=0.80, speedup_vs_torch=11.2, passed=True,
                  gate=Outcome.PASS),
        ReportRow("onnx-int8", "ONNX", "int8", accuracy=96.0, p50_ms=0.82, speedup_vs_torch=11.0, passed=False,
                  reasons=["per-class gate FAIL for 'malignant'"], gate=gate_outcome, int8_share=0.9),
        ReportRow("openvino-int8", "OpenVINO IR", "int8", accuracy=100.0, p50_ms=0.81, speedup_vs_torch=11.1,
                  passed=True, gate=Outcome.PASS, int8_share=0.0),
        ReportRow("openvino-fp16", "OpenVINO IR", "fp16", accuracy=100.0, p50_ms=0.83, speedup_vs_torch=10.8,
                  passed=True, gate=Outcome.INCONCLUSIVE),
        ReportRow("tensorrt-fp16", "TensorRT engine", "fp16", status="skipped", reasons=["no NVIDIA GPU"]),
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, Path]:
    gate, paths = _planted_gate()
    context = {"architecture": "tiny", "test_images": 200, "notes": ["a note"],
               "pick": {"name": "onnx-fp32"}, "pick_headline": "onnx-fp32: the fastest artifact that passed",
               "sections": [f"## onnx-int8: per-class gate vs PyTorch\n\n{gate.to_markdown(paths)}"]}
    return write_report(_rows(gate.outcome), tmp_path_factory.mktemp("report"), context)


def test_html_is_self_contained(report):
    page = report["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == report["png"].read_bytes()


def test_head_leads_with_the_pick_then_every_verdict(report):
    page = report["html"].read_text()
    head = page[page.index("<h1>"):page.index("<ul>")]  # the first plain list is report.md's provenance
    assert head.index("Deployment pick:</strong> onnx-fp32: the fastest") < head.index("<strong>onnx-fp32")
    for name, verdict in [("onnx-fp32", "pass"), ("onnx-int8", "fail"), ("openvino-int8", "float fallback"),
                          ("openvino-fp16", "gate inconclusive"), ("tensorrt-fp16", "skipped")]:
        assert re.search(rf'<span class="chip" style="background: {VERDICT_COLOURS[Verdict(verdict)]}">{verdict}</span>'
                         rf"<span><strong>{name}</strong>", head), name


def test_no_pick_says_why_and_no_headline_no_banner(tmp_path):
    why = "no deployment pick: no candidate passed verify"
    page = write_report(_rows(Outcome.PASS), tmp_path / "a", {"pick": None, "pick_headline": why})["html"].read_text()
    assert f'<p class="lead none">{why}</p>' in page
    page = write_report(_rows(Outcome.PASS), tmp_path / "b", {"architecture": "tiny"})["html"].read_text()
    assert 'class="lead' not in page and "<strong>onnx-fp32</strong>" in page


def test_gate_tables_render_as_html(report):
    page = report["html"].read_text()
    assert not re.search(r"^\s*\|", page, re.M)  # no markdown table left unrendered
    row = re.search(r"<tr>\s*<td>malignant</td>(.*?)</tr>", page, re.S)
    assert row and '<td class="fail">fail</td>' in row[1]
    assert "<li>/data/test/malignant/180.png</li>" in page  # the flipped images, by path
    assert "<th>max |diff|</th>" in page  # the main table's escaped pipe did not split the header


def test_latency_bars_coloured_by_verdict_with_speedup():
    rows = _rows(Outcome.FAIL)
    fig = latency_figure(rows)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"  # 9 ms eager vs 0.8 ms: linear would make the artifacts slivers
    timed = [r for r in rows if r.p50_ms is not None]
    colours = [p.get_facecolor() for p in ax.patches]
    from matplotlib.colors import to_rgba
    assert colours == [to_rgba(VERDICT_COLOURS[v]) for v in (Verdict.REFERENCE, Verdict.PASS, Verdict.FAIL,
                                                            Verdict.FLOAT_FALLBACK, Verdict.INCONCLUSIVE)]
    assert len(colours) == len(timed)
    texts = [t.get_text() for t in ax.texts]
    assert " 0.82 ms, 11.0x eager" in texts and any("skipped" in t for t in texts)
    assert [t.get_text() for t in ax.get_yticklabels()][2] == "onnx-int8  ·  acc 96.0 %"
    assert latency_figure(rows[1:]).axes[0].get_xscale() == "linear"  # artifacts alone span < 10x


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (scripts/setup.sh installs the Debian package)")
def test_chromium_renders_the_page(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", f"--screenshot={shot}",
                    report["html"].resolve().as_uri()], check=True, capture_output=True, timeout=180)
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    ink = (px < 235).any(axis=2).mean()
    assert 0.03 < ink < 0.8 and px.std() > 20, (ink, px.std())  # text, tables and the chart, not a blank page
    fail = np.array([int(VERDICT_COLOURS[Verdict.FAIL][i:i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(px - fail).sum(axis=2) < 30).sum() > 200  # the FAIL chip and bar: styles and inline image drawn
    print(f"screenshot: {shot}")  # for a person to look at (pytest -s)
