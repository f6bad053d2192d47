"""benchmarks/int8_profile.py says, per artifact, what bounds it: its INT8 kernels or the float work around them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("int8_profile_under_test", REPO / "benchmarks" / "int8_profile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_profile_names_what_bounds_each_artifact():
    mod = _module()
    row = {"model": "ViT-T", "runtime": "openvino", "profiled_ms": 9.0, "int8_ms": 7.9, "float_ms": 1.1,
           "int8_share_pct": 87.7, "amdahl_bound_x": 8.1, "top_ops": [("FullyConnected [I8]", 2.0, 22.3)]}
    vnni = {"avx512_vnni": True, "amx_int8": False}
    md = mod.markdown([row, {**row, "runtime": "onnxruntime", "int8_share_pct": 35.8}], "cmd",
                      {"cpu_model": "Xeon", "isa": vnni})
    ov, ort = [line for line in md.splitlines() if line.startswith("- **ViT-T")]
    assert "Bound by its INT8 kernels" in ov and "AMX" in ov
    assert "Bound by the float ops and conversions" in ort
    assert "this CPU's AMX tiles" in mod.bound(row, {"amx_int8": True})
