"""Dual-model weight selection: one teacher -> main student S and auxiliary student S'.

Runs the paper's three steps (layers.py, mapping.py, indices.py) for two students at once.
Both are internally consistent (one index set per axis size pair, see `IndexBank`) and they
take complementary subsets of the teacher, so S and S' start in different regions of the
teacher's parameter space (paper section 3.1). Only the classifier (`get_classifier()`) is
left at its fresh init; final norms such as ConvNeXt's `head.norm` are selected.

The `SelectionReport` records, per tensor and in total, which share of the teacher's
elements S, S', both and neither received, plus every index set, so tests and users can
check `student == teacher[indices]` (pos_embed grids resampled for another image size are
flagged `resampled` instead). Shares count elements of the selected Cartesian products;
integer buffers (BN `num_batches_tracked`) are copied but not counted.

Typical use (the trainer, `edgekd select`):

    teacher = load_teacher("vit_small_patch16_224", weights=...)
    s, s_aux = create_student("vit_tiny_patch16_224", K), create_student("vit_tiny_patch16_224", K)
    report = select_dual(teacher, s, s_aux, "uniform", seed=0)
    print(report.summary_table()); report.save(run_dir / "selection_report.json")
"""

from __future__ import annotations

import copy
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.errors import EdgeKDError
from edgekd.selection.indices import IndexBank, check_strategy
from edgekd.selection.layers import map_layers
from edgekd.selection.mapping import ComponentPlan, MappingError, plan_component, resample_tokens, take

ROLES = ("main", "aux")


@dataclass
class TensorReport:
    """One student tensor: its teacher source, index sets per axis and element coverage."""

    student_key: str
    teacher_key: str
    teacher_shape: list[int]
    student_shape: list[int]
    reshaped: bool  # Linear <-> 1x1 conv
    sets: dict[str, list[str]]  # role -> index set id per axis
    teacher_elements: int
    used: dict[str, int]  # "main", "aux", "both", "neither" -> element counts
    resampled: bool = False  # pos_embed token grid interpolated, not indexed

    def share(self, what: str) -> float:
        return self.used[what] / self.teacher_elements if self.teacher_elements else 0.0


@dataclass
class SelectionReport:
    """What `select_dual` / `select_single` did; JSON-serializable via `to_json()`."""

    teacher: str
    student: str
    strategy: str
    seed: int
    roles: list[str]
    teacher_layout: str
    student_layout: str
    tensors: list[TensorReport]
    unused_teacher: dict[str, int]  # teacher key -> elements, tensors no student used
    classifier_keys: list[str]  # student keys left at their fresh init
    index_sets: dict[str, list[int]] = field(default_factory=dict)

    # ---- queries
    def tensor(self, student_key: str) -> TensorReport:
        for t in self.tensors:
            if t.student_key == student_key:
                return t
        raise KeyError(student_key)

    def indices(self, student_key: str, role: str = "main") -> list[np.ndarray]:
        """Per-axis teacher indices (on the teacher tensor viewed in the student's ndim)."""
        return [np.asarray(self.index_sets[s], dtype=np.int64) for s in self.tensor(student_key).sets[role]]

    def totals(self, mapped_only: bool = False) -> dict[str, float]:
        """Shares of teacher elements used by S, S', both, neither. By default over every
        floating-point teacher tensor (unused blocks and the teacher classifier count as
        'neither'); `mapped_only` restricts to tensors a student tensor maps to."""
        n = sum(t.teacher_elements for t in self.tensors)
        used = {k: sum(t.used[k] for t in self.tensors) for k in ("main", "aux", "both", "neither")}
        if not mapped_only:
            extra = sum(self.unused_teacher.values())
            n += extra
            used["neither"] += extra
        out = {"teacher_elements": float(n)}
        out.update({k: (v / n if n else 0.0) for k, v in used.items()})
        return out

    # ---- output
    def to_dict(self, include_indices: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["totals"] = self.totals()
        d["totals_mapped"] = self.totals(mapped_only=True)
        d["tensors_mapped"] = len(self.tensors)
        d["tensors_reshaped"] = sum(t.reshaped for t in self.tensors)
        if not include_indices:
            d.pop("index_sets")
        return d

    def to_json(self, include_indices: bool = True, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(include_indices), indent=indent)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    def rich_table(self, max_rows: int = 8) -> Any:
        """A short rich table: totals plus the largest tensors."""
        from rich.table import Table

        dual = "aux" in self.roles
        title = (
            f"{self.teacher} -> {self.student} ({self.strategy}, seed {self.seed}): "
            f"{len(self.tensors)} tensors mapped ({sum(t.reshaped for t in self.tensors)} "
            f"Linear<->1x1 conv), {len(self.classifier_keys)} classifier tensors fresh"
        )
        table = Table(title=title, title_justify="left")
        table.add_column("teacher tensor / total")
        table.add_column("elements", justify="right")
        cols = ["S", "S'", "both", "neither"] if dual else ["S", "neither"]
        keys = ["main", "aux", "both", "neither"] if dual else ["main", "neither"]
        for c in cols:
            table.add_column(c, justify="right")
        for label, tot in (("TOTAL (all teacher)", self.totals()), ("total (mapped)", self.totals(True))):
            table.add_row(label, f"{int(tot['teacher_elements']):,}", *[f"{tot[k]:.1%}" for k in keys])
        for t in sorted(self.tensors, key=lambda t: -t.teacher_elements)[:max_rows]:
            table.add_row(t.teacher_key, f"{t.teacher_elements:,}", *[f"{t.share(k):.1%}" for k in keys])
        return table

    def summary_table(self, max_rows: int = 8) -> str:
        """The rich table rendered as plain text (for logs)."""
        from rich.console import Console

        console = Console(file=io.StringIO(), width=110, record=True)
        console.print(self.rich_table(max_rows))
        return console.export_text()


# --------------------------------------------------------------------------- helpers


def _name(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def _state(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(model, nn.Module):
        return model.state_dict()
    return dict(model)


def _classifier_keys(model: nn.Module) -> set[str]:
    from edgekd.models import classifier_keys

    return classifier_keys(model)


def plan_selection(
    teacher_sd: Mapping[str, torch.Tensor],
    student_sd: Mapping[str, torch.Tensor],
    skip: Iterable[str] = (),
) -> tuple[list[ComponentPlan], Any]:
    """Layer selection + component mapping for every student tensor not in `skip`.
    Collects every tensor that cannot be mapped into one EdgeKDError."""
    lmap = map_layers(student_sd.keys(), teacher_sd.keys(), skip)
    plans, problems = [], []
    for s_key, t_key in lmap.mapping.items():
        try:
            plans.append(
                plan_component(s_key, tuple(student_sd[s_key].shape), t_key, tuple(teacher_sd[t_key].shape))
            )
        except MappingError as e:
            problems.append(str(e))
    if problems:
        raise EdgeKDError(
            f"the student does not fit inside the teacher at {len(problems)} tensors: "
            + "; ".join(problems[:8])
            + (" ..." if len(problems) > 8 else "")
            + "; fix: pick a student no wider than the teacher in every dimension (same family)"
        )
    return plans, lmap


def _axis_sets(bank: IndexBank, plan: ComponentPlan, role: int) -> list[tuple[str, np.ndarray]]:
    out = []
    for axis, ap in enumerate(plan.axes):
        if ap.resampled:  # every teacher token feeds the interpolation
            out.append(bank.get(ap.teacher, ap.teacher, role))
        elif ap.blocks > 1:
            out.append(bank.get_fused(ap.teacher, ap.student, ap.blocks, role, plan.student_key, axis))
        else:
            out.append(bank.get(ap.teacher, ap.student, role, plan.student_key, axis))
    return out


def _usage(t: torch.Tensor, picked: list[list[np.ndarray]]) -> tuple[int, dict[str, int]]:
    """How many of the teacher tensor's elements went to main, aux, both and neither student."""
    n = t.numel()
    counts = [math.prod(len(ix) for ix in p) for p in picked]
    used = {"main": counts[0]}
    if len(picked) > 1:
        both = math.prod(len(np.intersect1d(a, b)) for a, b in zip(picked[0], picked[1]))
        used.update(aux=counts[1], both=both, neither=n - counts[0] - counts[1] + both)
    else:
        used.update(aux=0, both=0, neither=n - counts[0])
    if not t.is_floating_point():  # e.g. num_batches_tracked: copied, not "knowledge"
        return 0, {k: 0 for k in used}
    return n, used


def _run(
    teacher: nn.Module | Mapping[str, torch.Tensor],
    students: list[nn.Module],
    roles: list[int],
    strategy: str,
    seed: int,
    skip_keys: Iterable[str] | None,
) -> SelectionReport:
    check_strategy(strategy)
    t_sd = _state(teacher)
    s_sds = [s.state_dict() for s in students]
    first = s_sds[0]
    for other in s_sds[1:]:
        if {k: tuple(v.shape) for k, v in other.items()} != {k: tuple(v.shape) for k, v in first.items()}:
            raise EdgeKDError("the main and auxiliary students must have the same architecture")
    skip = set(skip_keys) if skip_keys is not None else _classifier_keys(students[0])
    plans, lmap = plan_selection(t_sd, first, skip)
    bank = IndexBank(strategy, seed)
    reports = []
    new_sds = [dict(sd) for sd in s_sds]
    for plan in plans:
        t = t_sd[plan.teacher_key]
        sets = {}
        picked = []
        for r in roles:
            axes = _axis_sets(bank, plan, r)
            sets[ROLES[r]] = [sid for sid, _ in axes]
            idx = [torch.from_numpy(ix).to(t.device) for _, ix in axes]
            picked.append([ix for _, ix in axes])
            value = take(t, plan.teacher_view, idx)
            if plan.resampled:
                value = resample_tokens(value, plan.student_shape[1], plan.axes[1].resample_prefix)
            for sd in (new_sds[i] for i, rr in enumerate(roles) if rr == r):
                sd[plan.student_key] = value.reshape(plan.student_shape).to(sd[plan.student_key])
        n, used = _usage(t, picked)
        reports.append(
            TensorReport(
                plan.student_key, plan.teacher_key, list(plan.teacher_shape), list(plan.student_shape),
                plan.reshaped, sets, n, used, plan.resampled,
            )
        )
    for i, model in enumerate(students):  # strict: every key present, shapes checked
        model.load_state_dict(new_sds[i], strict=True)
    unused = {k: t_sd[k].numel() for k in lmap.unused_teacher_keys if t_sd[k].is_floating_point()}
    used_sets = {sid for r in reports for ids in r.sets.values() for sid in ids}
    return SelectionReport(
        teacher=_name(teacher),
        student=_name(students[0]),
        strategy=strategy,
        seed=seed,
        roles=[ROLES[r] for r in sorted(set(roles))],
        teacher_layout=lmap.teacher_layout.describe(),
        student_layout=lmap.student_layout.describe(),
        tensors=reports,
        unused_teacher=unused,
        classifier_keys=sorted(skip),
        index_sets={sid: bank.sets[sid].tolist() for sid in sorted(used_sets)},
    )


# --------------------------------------------------------------------------- API


@torch.no_grad()
def select_dual(
    teacher: nn.Module | Mapping[str, torch.Tensor],
    student_s: nn.Module,
    student_aux: nn.Module,
    strategy: str = "uniform",
    seed: int = 0,
    skip_keys: Iterable[str] | None = None,
) -> SelectionReport:
    """Initialize `student_s` (S) and `student_aux` (S') in place from complementary,
    internally consistent subsets of `teacher` (a module or a state dict).

    `skip_keys` are student keys left untouched; default: the classifier
    (`student.get_classifier()`), or nothing for models without one."""
    if student_s is student_aux:
        raise EdgeKDError("select_dual needs two separate student instances")
    return _run(teacher, [student_s, student_aux], [0, 1], strategy, seed, skip_keys)


@torch.no_grad()
def select_single(
    teacher: nn.Module | Mapping[str, torch.Tensor],
    student: nn.Module,
    strategy: str = "uniform",
    seed: int = 0,
    role: str = "main",
    skip_keys: Iterable[str] | None = None,
) -> SelectionReport:
    """Plain weight selection for one student (the paper's CM1 baseline). `role="aux"`
    reproduces the auxiliary student's subset of a `select_dual` with the same arguments."""
    if role not in ROLES:
        raise EdgeKDError(f"role must be 'main' or 'aux', got {role!r}")
    if role == "main":
        return _run(teacher, [student], [0], strategy, seed, skip_keys)
    # the aux sets are derived from the main ones: fill a throwaway copy as S
    return _run(teacher, [copy.deepcopy(student), student], [0, 1], strategy, seed, skip_keys)
