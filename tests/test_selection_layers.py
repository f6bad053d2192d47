"""Layer selection (key patterns) and component mapping (shapes, Linear <-> 1x1 conv, qkv)."""

import pytest

from edgekd.errors import EdgeKDError
from edgekd.selection.layers import detect_layout, map_layers, parse_key
from edgekd.selection.mapping import MappingError, plan_component


@pytest.mark.parametrize(
    "key,kind,stage,block,rest",
    [
        ("blocks.7.attn.qkv.weight", "isotropic", None, 7, "attn.qkv.weight"),  # ViT
        ("stages.2.blocks.5.mlp.fc1.weight", "hierarchical", 2, 5, "mlp.fc1.weight"),  # ConvNeXt
        ("layers.1.blocks.0.attn.qkv.weight", "hierarchical", 1, 0, "attn.qkv.weight"),  # Swin
        ("blocks.3.1.conv_pw.weight", "hierarchical", 3, 1, "conv_pw.weight"),  # EfficientNet
        ("layer3.1.conv2.weight", "hierarchical", 3, 1, "conv2.weight"),  # ResNet
        ("layer1.0.downsample.0.weight", "hierarchical", 1, 0, "downsample.0.weight"),
    ],
)
def test_parse_key(key, kind, stage, block, rest):
    a = parse_key(key)
    assert (a.kind, a.stage, a.block, a.rest) == (kind, stage, block, rest)


@pytest.mark.parametrize("key", ["stem.0.weight", "stages.1.downsample.1.weight", "pos_embed", "head.norm.weight"])
def test_keys_outside_blocks(key):
    assert parse_key(key) is None


def _convnext_keys(depths):
    keys = ["stem.0.weight"]
    for s, d in enumerate(depths):
        if s:
            keys.append(f"stages.{s}.downsample.1.weight")
        keys += [f"stages.{s}.blocks.{j}.conv_dw.weight" for j in range(d)]
    return keys + ["head.norm.weight", "head.fc.weight"]


def test_hierarchical_first_n_per_stage():
    t, s = _convnext_keys([3, 3, 9, 3]), _convnext_keys([2, 2, 6, 2])
    lm = map_layers(s, t, skip=["head.fc.weight"])
    assert lm.student_layout.kind == "hierarchical"
    assert list(lm.teacher_layout.depths.values()) == [3, 3, 9, 3]
    assert lm.mapping["stages.2.blocks.5.conv_dw.weight"] == "stages.2.blocks.5.conv_dw.weight"
    # the last blocks of every stage are the unused ones (first N per stage, not first N overall)
    unused = set(lm.unused_teacher_keys)
    assert {"stages.0.blocks.2.conv_dw.weight", "stages.2.blocks.6.conv_dw.weight",
            "stages.2.blocks.8.conv_dw.weight", "stages.3.blocks.2.conv_dw.weight"} <= unused
    assert "stages.1.blocks.1.conv_dw.weight" not in unused
    assert "head.norm.weight" in lm.mapping  # head.norm selected; only head.fc skipped
    assert "head.fc.weight" not in lm.mapping


def test_isotropic_first_n():
    t = [f"blocks.{j}.norm1.weight" for j in range(12)]
    lm = map_layers(t[:4], t)
    assert detect_layout(t).kind == "isotropic"
    assert lm.unused_teacher_keys == t[4:]


def test_student_deeper_than_teacher_names_blocks():
    with pytest.raises(EdgeKDError, match=r"student block 3 of stage 1 \(stages\.1\.blocks\.3\.\*\): teacher has 3 blocks"):
        map_layers(_convnext_keys([2, 4, 6, 2]), _convnext_keys([3, 3, 9, 3]))


def test_linear_and_1x1_conv_are_one_component():
    p = plan_component("mlp.fc1.weight", (192, 48, 1, 1), "mlp.fc1.weight", (384, 96))
    assert p.teacher_view == (384, 96, 1, 1) and p.reshaped
    p = plan_component("mlp.fc1.weight", (192, 48), "mlp.fc1.weight", (384, 96, 1, 1))
    assert p.teacher_view == (384, 96) and p.reshaped
    with pytest.raises(MappingError, match="different number of dims"):
        plan_component("conv.weight", (8, 4, 3, 3), "conv.weight", (16, 8))


def test_qkv_axis_is_fused_and_wider_student_rejected():
    p = plan_component("blocks.0.attn.qkv.weight", (576, 192), "blocks.0.attn.qkv.weight", (1152, 384))
    assert [(a.teacher, a.student, a.blocks) for a in p.axes] == [(1152, 576, 3), (384, 192, 1)]
    p = plan_component("blocks.0.attn.qkv.bias", (576,), "blocks.0.attn.qkv.bias", (1152,))
    assert p.axes[0].blocks == 3
    with pytest.raises(MappingError, match=r"larger than teacher"):
        plan_component("norm.weight", (32,), "norm.weight", (16,))


def test_swin_layout_stage_children_are_not_blocks():
    keys = []
    for s, d in enumerate([2, 2, 6, 2]):
        if s:
            keys.append(f"layers.{s}.downsample.reduction.weight")
        keys += [f"layers.{s}.blocks.{j}.attn.qkv.weight" for j in range(d)]
    lay = detect_layout(keys)
    assert lay.kind == "hierarchical" and list(lay.depths.values()) == [2, 2, 6, 2]
