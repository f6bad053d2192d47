"""Clinic path: bench + predict on ONNX and OpenVINO artifacts with torch/timm unimportable,
and the bench JSON schema."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("timm")
from tests.export_fixtures import cached_export_all  # noqa: E402

BLOCKER = textwrap.dedent('''
    import sys
    class _Blocker:
        """Meta-path finder that makes torch/timm/torchvision unimportable, like a clinic box."""
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "timm", "torchvision"):
                raise ImportError(f"{name} is blocked: runtime-only test")
            return None
    sys.meta_path.insert(0, _Blocker())
''')


def _run_blocked(code: str) -> subprocess.CompletedProcess:
    script = BLOCKER + textwrap.dedent(code) + textwrap.dedent('''
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "torchvision"))
        assert not leaked, leaked
        print("NO_TORCH_OK")
    ''')
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run, out, rc = cached_export_all(tmp_path_factory.getbasetemp() / "edgekd_export_cache", "vit")
    return run, out


def test_blocker_really_blocks():
    r = _run_blocked("""
        try:
            import torch
            raise SystemExit("torch imported")
        except ImportError:
            pass
    """)
    assert r.returncode == 0 and "NO_TORCH_OK" in r.stdout, r.stderr


def test_bench_without_torch_and_schema(exported, tmp_path):
    run, out = exported
    js = tmp_path / "bench.json"
    r = _run_blocked(f"""
        from edgekd.cli import main
        rc = main(["bench", {str(out / "onnx" / "model.int8.onnx")!r}, {str(out / "openvino" / "model.int8.xml")!r},
                   "--iters", "5", "--warmup", "2", "--throughput-batch", "4", "--throughput-seconds", "0.5", "--data", {str(run / "data" / "test.json")!r},
                   "--json", {str(js)!r}])
        assert rc == 0, rc
    """)
    assert r.returncode == 0 and "NO_TORCH_OK" in r.stdout, r.stderr[-3000:]
    d = json.loads(js.read_text())
    m = d["machine"]
    assert m["cpu_model"] and m["logical_cores"] >= 1
    assert set(m["isa"]) >= {"avx2", "avx512_vnni", "amx_int8"} and all(isinstance(v, bool) for v in m["isa"].values())
    assert m["runtimes"]["onnxruntime"] and m["runtimes"]["openvino"] and "gpu" in m
    assert [x["runtime"] for x in d["results"]] == ["onnxruntime", "openvino"]
    for x in d["results"]:
        assert x["batch"] == 1 and x["iters"] >= 5 and x["precision"] == "int8"
        assert 0 < x["p50_ms"] <= x["p90_ms"] <= x["p99_ms"]
        assert x["load_seconds"] > 0 and x["size_mb"] > 0 and x["threads"] == 2
        assert x["throughput_batch"] == 4 and x["throughput_ips"] > 0
        assert x["throughput"]["batch"] == 4 and x["throughput"]["iterations"] >= 3 and x["throughput"]["requests"] >= 1


def test_predict_without_torch(exported):
    run, out = exported
    r = _run_blocked(f"""
        import json
        from edgekd.data import Manifest
        from edgekd.export.predict import Classifier
        items = Manifest.load({str(run / "data" / "test.json")!r}).items
        for art in ({str(out / "onnx" / "model.onnx")!r}, {str(out / "openvino" / "model.fp16.xml")!r}):
            res = Classifier(art).predict_paths([p for p, _ in items], batch_size=16).results
            acc = sum(r["class"] == f"class_{{y}}" for r, (_, y) in zip(res, items)) / len(items)
            print(art, acc)
            assert acc > 0.6, acc
    """)
    assert r.returncode == 0 and "NO_TORCH_OK" in r.stdout, r.stderr[-3000:]
