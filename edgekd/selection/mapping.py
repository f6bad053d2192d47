"""Component mapping: line up one student tensor with its teacher tensor, axis by axis.

The paper's step (2). After layer selection the names already match; what can differ is
the *form* of a component:

- Linear vs 1x1 conv: timm's `convnext_femto` has a conv MLP (fc1 weight [4C, C, 1, 1])
  while `convnext_tiny` has Linear layers ([4C, C]). Both are the same map, so the teacher
  tensor is viewed with the student's trailing singleton dims added or dropped.
- fused projections: attention `qkv` ([3*D, D], bias [3*D]), `kv` ([2*D, D]) and
  `in_proj_weight` (torch MultiheadAttention) concatenate equal parts along axis 0. That axis
  is marked as fused so element selection picks inside each part with the D-axis indices.

- absolute position embeddings (`pos_embed` [1, prefix + H*W, D]) of a student built for a
  smaller image: the token axis is a 2-D grid, so it is resampled (timm's bicubic
  `resample_abs_pos_embed`, prefix tokens such as cls kept) instead of subsampled. The
  embedding axis is still selected like every other D axis.

Everything else (depthwise [C, 1, k, k], SE reduce/expand, norms, layer scale, cls token,
equal-size position embeddings) needs no special case: each axis is selected by its own
size pair. Conv kernels of different spatial size (e.g. patch 16 -> 8) are subsampled with
the strategy like any axis.

Multi-head attention: ViT-S (6 heads x 64) -> ViT-T (3 heads x 64) with `uniform` keeps the
even embedding dims, so student head h gets the even dims of teacher heads 2h and 2h+1; its
q, k and v rows and the proj columns all use those same dims (fused axis above), so each
student head is a coherent slice and head_dim (hence the attention scale) is unchanged.
`consecutive` instead keeps whole teacher heads 0-2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# last module name (or parameter name) -> number of equal parts along axis 0
FUSED_COMPONENTS: dict[str, int] = {"qkv": 3, "kv": 2, "in_proj_weight": 3, "in_proj_bias": 3}


@dataclass(frozen=True)
class AxisPlan:
    """How one axis is selected: teacher size -> student size, in `blocks` equal parts.
    `resample_prefix` >= 0 marks a pos-embed token axis that is resampled as a 2-D grid
    after that many prefix tokens instead of being selected."""

    teacher: int
    student: int
    blocks: int = 1
    resample_prefix: int = -1

    @property
    def resampled(self) -> bool:
        return self.resample_prefix >= 0


@dataclass(frozen=True)
class ComponentPlan:
    """A student tensor's source: the teacher tensor reshaped to `teacher_view` (same ndim
    as the student), then selected per axis; `reshaped` marks a Linear <-> 1x1-conv match."""

    student_key: str
    teacher_key: str
    teacher_shape: tuple[int, ...]
    teacher_view: tuple[int, ...]
    student_shape: tuple[int, ...]
    axes: tuple[AxisPlan, ...]

    @property
    def reshaped(self) -> bool:
        return self.teacher_view != self.teacher_shape

    @property
    def resampled(self) -> bool:
        return any(a.resampled for a in self.axes)


class MappingError(ValueError):
    """A tensor pair that cannot be lined up; collected and reported together."""


def fused_parts(key: str) -> int:
    """Parts along axis 0 for fused projections, from the component name."""
    parts = key.split(".")
    for name in (parts[-1], parts[-2] if len(parts) > 1 else ""):
        if name in FUSED_COMPONENTS:
            return FUSED_COMPONENTS[name]
    return 1


def _view(t_shape: tuple[int, ...], s_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The teacher shape with trailing singleton dims added/removed to match the student's
    ndim (Linear [O, I] <-> 1x1 conv [O, I, 1, 1]); None if that is not possible."""
    if len(t_shape) == len(s_shape):
        return t_shape
    if len(t_shape) > len(s_shape):
        extra = t_shape[len(s_shape):]
        return t_shape[: len(s_shape)] if all(d == 1 for d in extra) else None
    extra = s_shape[len(t_shape):]
    return t_shape + (1,) * len(extra) if all(d == 1 for d in extra) else None


def plan_component(
    student_key: str, s_shape: tuple[int, ...], teacher_key: str, t_shape: tuple[int, ...]
) -> ComponentPlan:
    """Plan the selection of one tensor; raise MappingError if the student does not fit."""
    s_shape, t_shape = tuple(s_shape), tuple(t_shape)
    view = _view(t_shape, s_shape)
    if view is None:
        raise MappingError(
            f"{student_key}: student {list(s_shape)} vs teacher {teacher_key} {list(t_shape)} "
            "(different number of dims)"
        )
    if any(s == 0 for s in s_shape):
        raise MappingError(f"{student_key}: empty student tensor {list(s_shape)}")
    axes = []
    for i, (s, t) in enumerate(zip(s_shape, view)):
        blocks = fused_parts(student_key) if i == 0 and s != t else 1
        if blocks > 1 and (s % blocks or t % blocks):
            blocks = 1
        prefix = -1
        if i == 1 and s != t and len(s_shape) == 3 and student_key.split(".")[-1] == "pos_embed":
            prefix = grid_prefix(t, s)  # a grid may also be resampled up (larger student image)
        if s > t and prefix < 0:
            raise MappingError(
                f"{student_key}: student {list(s_shape)} larger than teacher {teacher_key} {list(t_shape)}"
            )
        axes.append(AxisPlan(t, s, blocks, prefix))
    return ComponentPlan(student_key, teacher_key, t_shape, view, s_shape, tuple(axes))


def grid_prefix(t: int, s: int, max_prefix: int = 8) -> int:
    """Number of prefix tokens (cls, registers) p such that both token counts minus p are
    square grids; -1 if there is none (then the axis is selected like any other)."""
    for p in range(max_prefix + 1):
        if all(n - p > 0 and math.isqrt(n - p) ** 2 == n - p for n in (t, s)):
            return p
    return -1


def resample_tokens(x: torch.Tensor, student_tokens: int, prefix: int) -> torch.Tensor:
    """pos_embed [1, prefix + H*W, D] -> [1, prefix + h*w, D] by bicubic grid resampling."""
    from timm.layers import resample_abs_pos_embed

    old = math.isqrt(x.shape[1] - prefix)
    new = math.isqrt(student_tokens - prefix)
    return resample_abs_pos_embed(x, [new, new], [old, old], num_prefix_tokens=prefix)


def take(teacher: torch.Tensor, view: tuple[int, ...], indices: list[torch.Tensor]) -> torch.Tensor:
    """teacher[ix_(indices...)] on the reshaped teacher tensor (a copy)."""
    out = teacher.reshape(view)
    for axis, idx in enumerate(indices):
        if idx.numel() != out.shape[axis]:
            out = out.index_select(axis, idx)
    return out.clone()
