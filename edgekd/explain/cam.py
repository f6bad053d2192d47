"""Class activation maps for torch models through pytorch-grad-cam (`pip install grad-cam`).

Why a wrapper: the library needs a target layer and, for ViTs, a reshape of the token
sequence to the patch grid; both depend on the architecture. Here one rule picks them for
any timm model: ViT -> `blocks[-1].norm1` (the last block's output only reaches the classifier
through the class token, so its patch tokens get no gradient) with prefix tokens dropped;
CNN -> the module that produces `forward_features`' output (the last feature map).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import numpy as np
import torch
import tqdm
from pytorch_grad_cam import (EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, RandomCAM, ScoreCAM,
                              XGradCAM, score_cam)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from edgekd.errors import EdgeKDError
from edgekd.shared.explain_args import CAM_METHODS

#: `--method` name -> pytorch-grad-cam class, in the order of CAM_METHODS
METHODS: dict[str, type] = dict(zip(CAM_METHODS, (GradCAM, GradCAMPlusPlus, ScoreCAM, LayerCAM, XGradCAM, HiResCAM,
                                                  EigenCAM, RandomCAM), strict=True))


@dataclass
class CamConfig:
    method: str = "scorecam"  # the most faithful CAM measured (benchmarks/results/cam_faithfulness*.md)
    layer: str | None = None  # module name (`model.named_modules()`); None = the rule above
    scorecam_batch: int = 64  # masked copies per forward pass (Score-CAM runs one per channel)


@dataclass
class CamResult:
    maps: np.ndarray  # (B, H, W) in [0, 1], input resolution
    probs: np.ndarray  # (B, num_classes) softmax of the model's logits
    targets: list[int]  # the class each map explains
    layer: str  # the target layer used


def is_vit(model: nn.Module) -> bool:
    """timm VisionTransformer-like: a token sequence with prefix (class/register) tokens."""
    return all(hasattr(model, a) for a in ("num_prefix_tokens", "patch_embed", "blocks"))


def vit_reshape(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """(B, prefix + gh*gw, C) tokens -> (B, C, gh, gw) map, dropping class/register tokens."""
    prefix = int(model.num_prefix_tokens)
    gh, gw = (int(g) for g in model.patch_embed.grid_size)

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens[:, prefix:, :]
        if grid.shape[1] != gh * gw:
            raise ValueError(f"{grid.shape[1]} patch tokens do not fill the {gh}x{gw} grid")
        return grid.reshape(tokens.shape[0], gh, gw, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def _feature_module(model: nn.Module, x: torch.Tensor) -> str:
    """Name of the last module to finish inside `forward_features` (the outermost one that
    produces the final feature map, e.g. `bn2` for EfficientNet, `stages` for ConvNeXt)."""
    finished: list[str] = []
    hooks = [m.register_forward_hook(lambda *_, n=name: finished.append(n))
             for name, m in model.named_modules() if name and not isinstance(m, nn.Identity)]
    try:
        with torch.no_grad():
            model.eval().forward_features(x[:1])
    finally:
        for h in hooks:
            h.remove()
    if not finished:
        raise EdgeKDError(f"{type(model).__name__}.forward_features ran no module; fix: pass --layer NAME")
    return finished[-1]


def target_layer(model: nn.Module, x: torch.Tensor, name: str | None = None) -> str:
    """The layer the CAM is taken at (see the module docstring), or `name` if given."""
    if name is None:
        if is_vit(model):
            return f"blocks.{len(model.blocks) - 1}.norm1"
        if not hasattr(model, "forward_features"):
            raise EdgeKDError(f"cannot pick a CAM layer for {type(model).__name__}; fix: pass --layer NAME")
        return _feature_module(model, x)
    names = dict(model.named_modules())
    if name not in names:
        raise EdgeKDError(f"--layer {name!r} is not a module of {type(model).__name__}; fix: use a name from "
                          f"model.named_modules(), e.g. {', '.join(list(names)[-5:])}")
    return name


@contextmanager
def _no_library_bars() -> Iterator[None]:
    """ScoreCAM draws a tqdm bar per image over its batches of masked copies (`tqdm.tqdm` looked
    up in its module at call time) and has no switch for it; a disabled one in its place leaves
    the caller's bar over the images the only one."""
    module = score_cam.tqdm
    score_cam.tqdm = SimpleNamespace(tqdm=partial(tqdm.tqdm, disable=True))
    try:
        yield
    finally:
        score_cam.tqdm = module


def compute_cams(model: nn.Module, x: torch.Tensor, cfg: CamConfig, targets: list[int] | None = None) -> CamResult:
    """Maps for `targets` (default: each image's predicted class), one per image."""
    if cfg.method not in METHODS:
        raise EdgeKDError(f"unknown CAM method {cfg.method!r}; fix: use one of {', '.join(METHODS)}")
    model = model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(x).float(), dim=1).numpy()
    targets = [int(t) for t in (probs.argmax(1) if targets is None else targets)]
    layer = target_layer(model, x, cfg.layer)
    reshape = vit_reshape(model) if is_vit(model) and not layer.startswith("patch_embed") else None
    with METHODS[cfg.method](model=model, target_layers=[dict(model.named_modules())[layer]],
                             reshape_transform=reshape) as cam, _no_library_bars():
        cam.batch_size = cfg.scorecam_batch
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
    return CamResult(np.asarray(maps, np.float32), probs, targets, layer)
