"""What an export produced: one `Artifact` per file a runtime loads.

Why: export, verify, bench and report all talk about the same things (path, format,
precision, size, or why it was skipped); one small record keeps them in step. Torch-free.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekd.export.int8_share import Int8Share


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def artifact_files(path: Path) -> list[Path]:
    """The files that make up an artifact (IR = .xml + .bin; ONNX may have .data)."""
    files = [path]
    for extra in (path.with_suffix(".bin"), Path(str(path) + ".data"), path.with_suffix(".json")):
        if extra.exists() and (path.suffix in (".xml", ".onnx") and extra.suffix != ".json" or path.suffix == ".engine"):
            files.append(extra)
    return files


@dataclass
class Artifact:
    name: str  # e.g. "openvino-int8"
    target: str  # the registered target that built it (edgekd.export.targets)
    precision: str  # fp32 | fp16 | int8
    path: str = ""  # what a runtime loads (dynamic batch)
    latency_path: str = ""  # static batch-1 variant where one exists
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    build_seconds: float = 0.0
    runtime: str = ""  # what loads it, as its target declares
    shipped: list[str] = field(default_factory=list)  # inputs for a build on the device (TensorRT's ONNX), published too
    int8_share: Int8Share | None = None  # int8 artifacts: compute share in INT8 kernels, measured in their runtime

    @property
    def size_mb(self) -> float:
        if not self.path or not Path(self.path).exists():
            return 0.0
        return sum(f.stat().st_size for f in artifact_files(Path(self.path))) / 1e6

    def to_dict(self) -> dict:
        return {**asdict(self), "size_mb": round(self.size_mb, 3)}
