"""Layer selection: which teacher block initializes each student block.

The paper's step (1). Isotropic nets (ViT, Mixer: `blocks.j`) take the teacher's first N
blocks; hierarchical nets (ConvNeXt `stages.s.blocks.j`, Swin `layers.s.blocks.j`,
EfficientNet/MobileNet `blocks.s.j`, ResNet `layerS.j`) take the first N blocks of each
stage. The structure is read from state-dict key patterns, not from model names, so any
timm family with these layouts works.

With "first N", student block (s, j) maps to teacher block (s, j): the key names are equal,
and what this module adds is the detection, the check that the teacher has every block the
student needs (with an error naming them), and the list of teacher blocks left unused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgekd.errors import EdgeKDError

_BLOCK = r"(?P<block>\d+)\.(?P<rest>.+)$"  # block index, then the component inside the block
_PRE = r"^(?P<pre>(?:.*\.)?"  # path up to the block/stage container

# (kind, pattern); first match wins.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    # ConvNeXt `stages.1.blocks.0.`, Swin `layers.2.blocks.3.`, `levels.s.blocks.j.`
    ("hierarchical", re.compile(_PRE + r"(?:stages|layers|levels))\.(?P<stage>\d+)\.blocks\." + _BLOCK)),
    # EfficientNet / MobileNet `blocks.3.1.`
    ("hierarchical", re.compile(_PRE + r"blocks)\.(?P<stage>\d+)\." + _BLOCK)),
    # ResNet `layer3.1.`
    ("hierarchical", re.compile(_PRE + r"layer)(?P<stage>\d+)\." + _BLOCK)),
    # RegNet/CSP-style `stages.2.1.` (a stage container holding blocks directly)
    ("hierarchical", re.compile(_PRE + r"stages)\.(?P<stage>\d+)\." + _BLOCK)),
    # ViT / DeiT / Mixer `blocks.7.`
    ("isotropic", re.compile(_PRE + r"(?:blocks|layers))\." + _BLOCK)),
]


@dataclass(frozen=True)
class BlockAddress:
    """Where a key sits: its block (stage None for isotropic nets) and component path."""

    kind: str  # "hierarchical" | "isotropic"
    pre: str
    stage: int | None
    block: int
    rest: str


def parse_key(key: str) -> BlockAddress | None:
    """The block address of a state-dict key, or None for keys outside any block
    (stem, patch embedding, pos embedding, downsample between stages, final norm)."""
    for kind, pat in _PATTERNS:
        m = pat.match(key)
        if m:
            stage = int(m["stage"]) if kind == "hierarchical" else None
            return BlockAddress(kind, m["pre"], stage, int(m["block"]), m["rest"])
    return None


@dataclass
class Layout:
    """Blocks per stage (isotropic nets have one stage, keyed None)."""

    kind: str  # "hierarchical" | "isotropic" | "flat"
    depths: dict[str | None, int] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "flat":
            return "no blocks"
        if self.kind == "isotropic":
            return f"isotropic, depth {sum(self.depths.values())}"
        return "hierarchical, depths " + "/".join(str(d) for d in self.depths.values())


def _stage_key(a: BlockAddress) -> str:
    return f"{a.pre}.{a.stage}" if a.stage is not None else a.pre


def detect_layout(keys: Iterable[str]) -> Layout:
    """Isotropic or hierarchical, with the number of blocks in each stage."""
    depths: dict[str | None, int] = {}
    addrs = [a for a in map(parse_key, keys) if a is not None]
    # Swin's `layers.1.downsample.*` also matches the isotropic pattern: when a container is
    # hierarchical (`layers.s.blocks.j`), its other numbered children are stages, not blocks
    hier_pre = {a.pre for a in addrs if a.kind == "hierarchical"}
    kinds = set()
    for a in addrs:
        if a.kind == "isotropic" and a.pre in hier_pre:
            continue
        kinds.add(a.kind)
        sk = _stage_key(a)
        depths[sk] = max(depths.get(sk, 0), a.block + 1)
    if not kinds:
        return Layout("flat")
    kind = "hierarchical" if "hierarchical" in kinds else "isotropic"
    return Layout(kind, dict(sorted(depths.items(), key=lambda kv: _natural(kv[0]))))


def _natural(text: str | None) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text or "")]


@dataclass
class LayerMap:
    """Student key -> teacher key, plus what was left out of the teacher."""

    mapping: dict[str, str]
    student_layout: Layout
    teacher_layout: Layout
    unused_teacher_keys: list[str]


def map_layers(
    student_keys: Iterable[str], teacher_keys: Iterable[str], skip: Iterable[str] = ()
) -> LayerMap:
    """First-N layer selection (per stage for hierarchical nets).

    Raises EdgeKDError naming every student key the teacher cannot provide (more blocks or
    stages than the teacher, or a component the teacher lacks)."""
    s_keys = [k for k in student_keys if k not in set(skip)]
    t_keys = list(teacher_keys)
    t_set = set(t_keys)
    s_layout, t_layout = detect_layout(s_keys), detect_layout(t_keys)
    mapping: dict[str, str] = {}
    missing_blocks: dict[str, str] = {}  # one line per missing block, not per tensor
    problems: list[str] = []
    for k in s_keys:
        # student block j of a stage takes teacher block j of the same stage: same key
        if k in t_set:
            mapping[k] = k
            continue
        a = parse_key(k)
        if a is not None:
            have = t_layout.depths.get(_stage_key(a), 0)
            if a.block >= have:
                where = f"of stage {a.stage} " if a.stage is not None else ""
                prefix = k[: len(k) - len(a.rest)]
                missing_blocks.setdefault(
                    prefix, f"student block {a.block} {where}({prefix}*): teacher has {have} blocks there"
                )
                continue
        problems.append(f"{k}: no teacher tensor with this name")
    problems = list(missing_blocks.values()) + problems
    if problems:
        raise EdgeKDError(
            f"cannot map the student to the teacher ({len(problems)} problems): "
            + "; ".join(problems[:8])
            + (" ..." if len(problems) > 8 else "")
            + f" [student {s_layout.describe()}; teacher {t_layout.describe()}]; fix: pick a "
            "teacher of the same family that is at least as deep in every stage"
        )
    used = set(mapping.values())
    return LayerMap(mapping, s_layout, t_layout, [k for k in t_keys if k not in used])
