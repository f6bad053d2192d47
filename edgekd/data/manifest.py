"""Manifests: the exact file list (+ labels) a run trained or was tested on, with a hash.

Saved in the run directory so a run can be resumed, re-evaluated or exported with the same
data; paths are stored relative to the dataset root so the dataset can move (pass `root=`).
Optional per-image attribute columns (site, scanner, sex ...) ride along for the subgroup reports;
the hash leaves them out, because it is the identity of what a model saw (resume and the decoded-image
cache key on it) and adding a site column to a finished run's test manifest must not change that.
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


Attributes = dict[str, list[str | None]]  # column -> one value per item (None: not known for that image)


@dataclass
class Manifest:
    """`items` are [address, label] in label order `classes`, with addresses absolute in memory
    (ready for `load_image`); on disk they are relative to `root` and the hash covers that form,
    so a moved dataset (`load(..., root=NEW)`) keeps the same manifest identity. `attributes` holds
    the subgroup columns, aligned with `items`; a manifest without them is saved exactly as before."""

    root: str
    layout: str
    classes: list[str]
    items: list[tuple[str, int]]
    meta: dict = field(default_factory=dict)
    attributes: Attributes = field(default_factory=dict)

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
        chosen = [index.samples[i] for i in ids]
        items = [(s.path, s.label) for s in chosen]
        columns = dict.fromkeys(k for s in chosen for k in (s.attributes or {}))  # first-seen order
        attributes = {k: [(s.attributes or {}).get(k) for s in chosen] for k in columns}
        return cls(index.root, index.layout, list(index.classes), items, dict(meta or {}), attributes)

    def to_dict(self) -> dict:
        rel = self.relative_items()
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": list(self.classes),
            "items": [[p, y] for p, y in rel],
            "sha256": items_sha256(rel),
            "meta": self.meta,
            **({"attributes": self.attributes} if self.attributes else {}),
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
        attributes = _checked_attributes(path, d.get("attributes") or {}, len(items))
        return cls(base, d["layout"], list(d["classes"]), items, dict(d.get("meta") or {}), attributes)


def _checked_attributes(path: Path, columns: object, n: int) -> Attributes:
    """The stored attribute columns, each a list of one string (or null) per item; a hand edit that
    broke that alignment would pin every later value on the wrong image, so it is refused."""
    ok = isinstance(columns, dict) and all(
        isinstance(v, list) and len(v) == n and all(x is None or isinstance(x, str) for x in v)
        for v in columns.values())
    if not ok:
        raise EdgeKDError(f"manifest {path}: \"attributes\" must map each column to {n} strings or nulls, one per "
                          "item; fix: correct or remove the attributes entry")
    return {str(k): list(v) for k, v in columns.items()}
