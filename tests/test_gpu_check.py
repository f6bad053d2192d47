"""scripts/gpu_check.sh: skips cleanly without a GPU; the ratios and the table it writes from measured numbers."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    """benchmarks/gpu_check.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


def test_skips_without_a_gpu(gpu_check, tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)  # no GPU even on a GPU machine
    r = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == gpu_check.SKIP == "skipped: no CUDA GPU (torch.cuda.is_available() is False)"
    assert not (tmp_path / "out").exists()


def run(gpu_check, student: str, method: str, step_seconds: float, peak_mib: int):
    return gpu_check.Measurement(student, method, batch_size=64, steps=50, step_seconds=step_seconds,
                                 peak_gpu_bytes=peak_mib * 2**20, train_seconds=9.0)


def test_ratios_from_measured_numbers(gpu_check):
    report = gpu_check.compare(gpu_check.Report("bash scripts/gpu_check.sh", {}, [
        run(gpu_check, "vit_tiny_patch16_224", "cm1", 0.040, 1000),
        run(gpu_check, "vit_tiny_patch16_224", "ours", 0.050, 1150),
        run(gpu_check, "convnext_femto", "ours", 0.030, 900),  # its cm1 run failed: no ratio
    ]))
    [vit] = report.measured
    assert vit.label == "vit_tiny_patch16_224"
    assert vit.time == pytest.approx(1.25) and vit.memory == pytest.approx(1.15)
    assert report.measurements[0].images_per_second == pytest.approx(1600.0)


def test_paper_ratios_come_from_table8(gpu_check):
    paper = {x.label: x for x in gpu_check.compare(gpu_check.Report("", {}, [])).paper}
    # Table 8, "X-ray Ours 2,434 1,328" over "CM1 1,932 1,031"
    assert paper["X-ray"].time == pytest.approx(1328 / 1031) and paper["X-ray"].memory == pytest.approx(2434 / 1932)
    # the "1.26-1.37x time, 1.10-1.26x memory"
    assert gpu_check._span([x.time for x in paper.values()]) == "1.26-1.37x"
    assert gpu_check._span([x.memory for x in paper.values()]) == "1.10-1.26x"


def test_markdown_table(gpu_check):
    env = {"gpu": "NVIDIA H200", "torch": "2.11", "timm": "1.0", "accelerate": "1.15", "setup": "batch 64"}
    report = gpu_check.compare(gpu_check.Report("bash scripts/gpu_check.sh", env, [
        run(gpu_check, "convnext_femto", "cm1", 0.032, 800),
        run(gpu_check, "convnext_femto", "ours", 0.040, 1000),
    ], failures={"tf_efficientnet_lite0/ours": "Traceback ...\nRuntimeError: CUDA out of memory"}))
    md = gpu_check.to_markdown(report)
    assert "| convnext_femto | cm1 | 2000 | 0.0320 | 800 | 9.0 |" in md
    assert "| convnext_femto | 1.250x | 1.250x |" in md
    assert "| **paper Table 8 range** | **1.26-1.37x** | **1.10-1.26x** |" in md
    assert "FAILED tf_efficientnet_lite0/ours: `RuntimeError: CUDA out of memory`" in md
