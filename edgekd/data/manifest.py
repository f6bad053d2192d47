"""Manifests: the exact file list (+ labels) a run trained or was tested on, with a hash.

Saved in the run directory so a run can be resumed, re-evaluated or exported with the same
data; paths are stored relative to the dataset root so the dataset can move (pass `root=`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.data.index import DatasetIndex
from edgekd.shared.images import absolute_address, relative_address
from edgekd.errors import EdgeKDError


def items_sha256(items: list[tuple[str, int]] | list[list]) -> str:
    """Hash of the item list in a canonical JSON form (order matters: it is the dataset order)."""
    canon = json.dumps([[str(p), int(y)] for p, y in items], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


@dataclass
class Manifest:
    """`items` are [address, label] in label order `classes`, with addresses absolute in memory
    (ready for `load_image`); on disk they are relative to `root` and the hash covers that form,
    so a moved dataset (`load(..., root=NEW)`) keeps the same manifest identity."""

    root: str
    layout: str
    classes: list[str]
    items: list[tuple[str, int]]
    meta: dict = field(default_factory=dict)

    def relative_items(self) -> list[tuple[str, int]]:
        return [(relative_address(p, self.root), int(y)) for p, y in self.items]

    @property
    def sha256(self) -> str:
        return items_sha256(self.relative_items())

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        return [int(y) for _, y in self.items]

    def paths(self) -> list[str]:
        """Absolute addresses, ready for `load_image`."""
        return [p for p, _ in self.items]

    @classmethod
    def from_items(cls, root: str | os.PathLike, classes: list[str], items: list[tuple[str, int]],
                   layout: str = "folder", meta: dict | None = None) -> "Manifest":
        """From (address, label) pairs; relative addresses are taken relative to `root`."""
        root = os.path.abspath(os.fspath(root))
        return cls(root, layout, list(classes), [(absolute_address(str(p), root), int(y)) for p, y in items],
                   dict(meta or {}))

    @classmethod
    def from_index(cls, index: DatasetIndex, ids: list[int] | None = None, meta: dict | None = None) -> "Manifest":
        ids = list(range(len(index))) if ids is None else list(ids)
        items = [(index.samples[i].path, index.samples[i].label) for i in ids]
        return cls(index.root, index.layout, list(index.classes), items, dict(meta or {}))

    def to_dict(self) -> dict:
        rel = self.relative_items()
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": list(self.classes),
            "items": [[p, y] for p, y in rel],
            "sha256": items_sha256(rel),
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename) so a killed run never leaves half a manifest."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike | None = None) -> "Manifest":
        """Read and check the hash; `root` overrides the stored dataset root (dataset moved)."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise EdgeKDError(f"manifest {path} not found; fix: check the run directory") from e
        except (OSError, json.JSONDecodeError) as e:
            raise EdgeKDError(f"manifest {path} is not readable JSON ({e}); fix: delete it and re-run") from e
        missing = {"root", "layout", "classes", "items"} - set(d)
        if missing:
            raise EdgeKDError(f"manifest {path} lacks {sorted(missing)}; fix: delete it and re-run to rewrite it")
        stored = [(str(p), int(y)) for p, y in d["items"]]
        if "sha256" in d and d["sha256"] != items_sha256(stored):
            raise EdgeKDError(
                f"manifest {path}: items do not match the stored sha256 (edited by hand?); "
                "fix: delete it and re-run to rewrite it"
            )
        base = os.path.abspath(os.fspath(root) if root is not None else d["root"])
        items = [(absolute_address(p, base), y) for p, y in stored]
        return cls(base, d["layout"], list(d["classes"]), items, dict(d.get("meta") or {}))
