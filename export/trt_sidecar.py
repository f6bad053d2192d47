"""The JSON beside every TensorRT `.engine`: what it was built on, and the refusal check.

Why: a serialized engine only runs on the GPU architecture and the exact TensorRT version
it was built with; loading it elsewhere fails with an opaque deserialization error, or
worse, on another GPU of the same compute capability, runs with tactics tuned for a
different chip. The sidecar records the build device, and `compare_fingerprints` spells out
every difference before anything is loaded. Pure Python: no tensorrt, no CUDA needed (tested
on CPU-only CI). The engine itself stays a plain `.engine` that trtexec and DeepStream load.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgeKDError

SIDECAR_SCHEMA = "edgekd.tensorrt-engine/1"


@dataclass(frozen=True)
class DeviceFingerprint:
    gpu_name: str  # the Jetson module from /proc/device-tree/model on Jetson (CUDA only says "Orin")
    compute_capability: str  # "8.7" (Jetson Orin), "8.9" (RTX 40xx) ...
    tensorrt_version: str
    cuda_version: str  # runtime version, e.g. "12.6"
    driver_version: str  # the NVIDIA driver (e.g. "570.86.10"; Jetson: "L4T R36.4.3"), not CUDA's API version

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def jetson_model(root: Path = Path("/")) -> str | None:
    """'NVIDIA Jetson AGX Orin Developer Kit' etc. from the device tree, None off Jetson.
    CUDA's device name on every Orin module is just 'Orin', but an Orin Nano and an AGX Orin
    tune tactics differently: the module is what an engine is bound to."""
    p = root / "proc" / "device-tree" / "model"
    try:
        model = p.read_bytes().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return None
    return model if "jetson" in model.lower() or (root / "etc" / "nv_tegra_release").exists() else None


def nvidia_driver_version(root: Path = Path("/")) -> str:
    """The NVIDIA driver version: the kernel module's (desktop/server) or the L4T release (Jetson).
    cudaDriverGetVersion() is the CUDA API level the driver supports (e.g. 12.8), not this."""
    proc = root / "proc" / "driver" / "nvidia" / "version"
    if proc.exists():
        m = re.search(r"Kernel Module(?: for \S+)?\s+([0-9][0-9.]+)", proc.read_text())
        if m:
            return m.group(1)
    tegra = root / "etc" / "nv_tegra_release"
    if tegra.exists():
        m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)", tegra.read_text())
        if m:
            return f"L4T R{m.group(1)}.{m.group(2)}"
    return "unknown"


#: fields whose mismatch makes the engine unusable (refuse) vs merely worth a warning
MUST_MATCH = ("compute_capability", "tensorrt_version", "gpu_name")
SHOULD_MATCH = ("cuda_version", "driver_version")


@dataclass
class ProfileShapes:
    """One optimization profile: min/opt/max input shapes (batch varies, C,H,W fixed)."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"input_name": self.input_name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def profile_shapes(input_name: str, chw: tuple[int, int, int] | list[int], min_batch: int = 1, opt_batch: int = 1,
                   max_batch: int = 32) -> ProfileShapes:
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise EdgeKDError(f"TensorRT profile needs 1 <= min <= opt <= max batch, got {min_batch}/{opt_batch}/{max_batch}")
    c, h, w = (int(v) for v in chw)
    return ProfileShapes(input_name, (min_batch, c, h, w), (opt_batch, c, h, w), (max_batch, c, h, w))


@dataclass
class EngineSidecar:
    engine_file: str
    precision: str
    device: DeviceFingerprint
    profile: ProfileShapes
    source_onnx: str
    source_onnx_sha256: str
    engine_sha256: str = ""
    builder: dict[str, Any] = field(default_factory=dict)  # workspace, opt level, timing cache
    metadata: dict[str, Any] = field(default_factory=dict)  # edgekd artifact metadata (classes, preprocessing)
    schema: str = SIDECAR_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = self.profile.to_dict()
        return d


def sidecar_path(engine: str | Path) -> Path:
    return Path(engine).with_suffix(".json")


def write_sidecar(sc: EngineSidecar, engine: str | Path) -> Path:
    p = sidecar_path(engine)
    p.write_text(json.dumps(sc.to_dict(), indent=2))
    return p


def read_sidecar(engine: str | Path) -> EngineSidecar:
    p = sidecar_path(engine)
    if not p.exists():
        raise EdgeKDError(f"{p} is missing: edgekd needs the sidecar written at build time to check the device; "
                          "rebuild with `edgekd export --build-on-device`")
    d = json.loads(p.read_text())
    if d.get("schema") != SIDECAR_SCHEMA:
        raise EdgeKDError(f"{p}: unknown sidecar schema {d.get('schema')!r} (expected {SIDECAR_SCHEMA})")
    pr = d["profile"]
    return EngineSidecar(
        engine_file=d["engine_file"], precision=d["precision"], device=DeviceFingerprint(**d["device"]),
        profile=ProfileShapes(pr["input_name"], tuple(pr["min"]), tuple(pr["opt"]), tuple(pr["max"])),
        source_onnx=d["source_onnx"], source_onnx_sha256=d["source_onnx_sha256"], engine_sha256=d.get("engine_sha256", ""),
        builder=d.get("builder", {}), metadata=d.get("metadata", {}), schema=d["schema"],
    )


def compare_fingerprints(built: DeviceFingerprint, here: DeviceFingerprint) -> tuple[list[str], list[str]]:
    """(blocking differences, warnings), each spelled out as 'field: built X, this device Y'."""
    def diff(keys: tuple[str, ...]) -> list[str]:
        return [f"{k}: engine built with {getattr(built, k)!r}, this device has {getattr(here, k)!r}"
                for k in keys if str(getattr(built, k)) != str(getattr(here, k))]

    return diff(MUST_MATCH), diff(SHOULD_MATCH)


def rebuild_hint(sc: EngineSidecar) -> str:
    return (f"rebuild on this device from the shipped ONNX: edgekd export --build-on-device "
            f"--onnx {Path(sc.source_onnx).name} --precision {sc.precision}")


def check_compatible(sc: EngineSidecar, here: DeviceFingerprint, engine: str | Path = "") -> list[str]:
    """Raise EdgeKDError naming every blocking difference; return the non-blocking ones."""
    blocking, warn = compare_fingerprints(sc.device, here)
    if blocking:
        name = Path(engine).name or sc.engine_file
        raise EdgeKDError(
            f"refusing to load {name}: it was built for another device/TensorRT.\n  - " + "\n  - ".join(blocking)
            + f"\n  fix: {rebuild_hint(sc)}"
        )
    return warn
