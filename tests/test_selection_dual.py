"""Dual selection on small nets: consistency, complementarity, exact values, and functional
recovery of known small nets hidden inside a teacher.

The functional checks build the teacher from two small nets A and B with TEST-SIDE index
math (uniform ratio 2: A at even, B at odd indices; consecutive: A first half, B second;
qkv rows per q/k/v part) and fill everything else with noise. Selection must then give back
students that compute exactly A and B, which fails if layer selection, component mapping
(qkv, Linear <-> 1x1 conv, head.norm) or cross-tensor index consistency is wrong.
"""

import numpy as np
import pytest
import timm
import torch
from torch import nn

from edgekd.errors import EdgeKDError
from edgekd.selection import select_dual, select_single

torch.set_num_threads(2)


# --------------------------------------------------------------------------- helpers


def teacher_view(t: torch.Tensor, s_shape) -> torch.Tensor:
    """Teacher tensor in the student's ndim (Linear [O, I] <-> 1x1 conv [O, I, 1, 1])."""
    if t.dim() > len(s_shape):
        return t.reshape(t.shape[: len(s_shape)])
    if t.dim() < len(s_shape):
        return t.reshape(tuple(t.shape) + (1,) * (len(s_shape) - t.dim()))
    return t


def expected_1d(t: int, s: int, role: int, strategy: str) -> torch.Tensor:
    if t == s:
        return torch.arange(t)
    if strategy == "uniform":
        assert t == 2 * s, "helper only knows ratio 2"
        return torch.arange(s) * 2 + role
    assert strategy == "consecutive" and 2 * s <= t
    return torch.arange(s) + role * s


def expected_sets(key, t_shape, s_shape, role, strategy):
    out = []
    for axis, (t, s) in enumerate(zip(t_shape, s_shape)):
        if axis == 0 and t != s and key.endswith(("qkv.weight", "qkv.bias")):
            sub = expected_1d(t // 3, s // 3, role, strategy)
            out.append(torch.cat([p * (t // 3) + sub for p in range(3)]))
        else:
            out.append(expected_1d(t, s, role, strategy))
    return out


def embed(teacher: nn.Module, nets: list[nn.Module], strategy: str, skip=(), noise: float = 0.5) -> None:
    """Overwrite `teacher` with noise, then write nets[0] (S) and nets[1] (S') at the
    positions where the selection should find them."""
    sds = [n.state_dict() for n in nets]
    new = {}
    for k, tv in teacher.state_dict().items():
        base = torch.randn_like(tv) * noise if tv.is_floating_point() else tv.clone()
        if k in sds[0] and k not in skip and tv.dim() > 0:
            view = teacher_view(base, sds[0][k].shape)
            for role, sd in enumerate(sds):
                idx = expected_sets(k, view.shape, sd[k].shape, role, strategy)
                view[torch.meshgrid(*idx, indexing="ij")] = sd[k]
        new[k] = base
    teacher.load_state_dict(new)


def perturb(model: nn.Module, scale: float = 0.2) -> nn.Module:
    """Make every parameter matter (norm weights != 1, layer scales not ~0)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def share_full_tensors(teacher: nn.Module, a: nn.Module, b: nn.Module, skip=()) -> None:
    """Tensors not reduced along any axis are the same teacher elements for S and S':
    make B agree with A there so both can be recovered."""
    t_sd, a_sd, b_sd = teacher.state_dict(), a.state_dict(), b.state_dict()
    for k, v in a_sd.items():
        if k not in skip and teacher_view(t_sd[k], v.shape).shape == v.shape:
            b_sd[k] = v.clone()
    b.load_state_dict(b_sd)


def check_values(teacher: nn.Module, students: dict, report) -> None:
    """Every selected student tensor equals teacher[reported indices]."""
    t_sd = teacher.state_dict()
    for tr in report.tensors:
        if tr.resampled:  # interpolated pos_embed: checked in its own test
            continue
        for role, student in students.items():
            s = student.state_dict()[tr.student_key]
            idx = [torch.from_numpy(i) for i in report.indices(tr.student_key, role)]
            view = teacher_view(t_sd[tr.teacher_key], s.shape)
            got = view[torch.meshgrid(*idx, indexing="ij")] if idx else view
            assert torch.equal(got.to(s.dtype), s), (role, tr.student_key)


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


# --------------------------------------------------------------------------- small MLP/conv net


class Small(nn.Module):
    def __init__(self, c: int, h: int, n_out: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, 2 * c, 1)
        self.fc1 = nn.Linear(2 * c, h)
        self.fc2 = nn.Linear(h, n_out)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean((2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize("strategy", ["uniform", "consecutive"])
def test_small_net_teacher_is_sum_of_two_students(strategy):
    torch.manual_seed(0)
    a, b = Small(4, 6), Small(4, 6)
    with torch.no_grad():
        b.fc2.bias.copy_(a.fc2.bias)  # the output axis is not reduced: one shared bias
    teacher = Small(8, 12)
    embed(teacher, [a, b], strategy, noise=0.0)  # zeros elsewhere: a function-preserving teacher
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(teacher(x), a(x) + b(x) - a.fc2.bias, atol=1e-5)

    s, s_aux = Small(4, 6), Small(4, 6)
    report = select_dual(teacher, s, s_aux, strategy)
    with torch.no_grad():
        assert torch.allclose(s(x), a(x), atol=1e-6)
        assert torch.allclose(s_aux(x), b(x), atol=1e-6)
    check_values(teacher, {"main": s, "aux": s_aux}, report)

    # a scrambled selection does not recover A: the check can fail
    scrambled = Small(4, 6)
    select_single(teacher, scrambled, "random-inconsistent", seed=1)
    with torch.no_grad():
        assert not torch.allclose(scrambled(x), a(x), atol=1e-3)


# --------------------------------------------------------------------------- tiny timm configs


def tiny_vit(dim: int, depth: int, classes: int) -> nn.Module:
    name = "vit_tiny_patch16_224" if dim == 16 else "vit_small_patch16_224"
    return timm.create_model(
        name, img_size=32, patch_size=8, embed_dim=dim, depth=depth, num_heads=dim // 8, num_classes=classes
    )


def tiny_convnext(teacher: bool, classes: int) -> nn.Module:
    if teacher:  # Linear MLP, like convnext_tiny
        return timm.create_model("convnext_tiny", dims=(16, 32, 64, 128), depths=(2, 2, 3, 2),
                                 ls_init_value=1.0, num_classes=classes)
    # 1x1-conv MLP (femto's default conv_mlp=True), no conv_mlp passed
    return timm.create_model("convnext_femto", dims=(8, 16, 32, 64), depths=(1, 1, 2, 1),
                             ls_init_value=1.0, num_classes=classes)


@pytest.mark.parametrize("family", ["vit", "convnext"])
@pytest.mark.parametrize("strategy", ["uniform", "consecutive"])
def test_tiny_timm_students_recovered(family, strategy):
    torch.manual_seed(0)
    make = (lambda t: tiny_vit(32 if t else 16, 4 if t else 2, 7 if t else 5)) if family == "vit" else (
        lambda t: tiny_convnext(t, 7 if t else 5)
    )
    a, b, teacher = perturb(make(False)), perturb(make(False)), make(True).eval()
    if family == "convnext":
        assert teacher.stages[0].blocks[0].mlp.fc1.weight.dim() == 2
        assert a.stages[0].blocks[0].mlp.fc1.weight.dim() == 4
    skip = {"head.weight", "head.bias", "head.fc.weight", "head.fc.bias"}
    share_full_tensors(teacher, a, b, skip)
    embed(teacher, [a, b], strategy, skip=skip)

    s, s_aux = make(False), make(False)
    report = select_dual(teacher, s, s_aux, strategy)
    assert set(report.classifier_keys) <= skip and report.classifier_keys
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(features(s, x), features(a, x), atol=1e-5)
    assert torch.allclose(features(s_aux, x), features(b, x), atol=1e-5)
    assert not torch.allclose(features(s, x), features(b, x), atol=1e-3)
    check_values(teacher, {"main": s, "aux": s_aux}, report)
    # classifier untouched: still the fresh init the student came with
    ref = make(False)
    assert s.get_classifier().weight.shape == ref.get_classifier().weight.shape
    if family == "convnext":
        assert report.tensor("head.norm.weight")  # selected, not skipped
        assert report.to_dict()["tensors_reshaped"] == 2 * 5  # fc1, fc2 weights of 5 blocks


def test_pos_embed_resampled_for_other_image_size():
    """A student built for smaller (or larger) images: the token grid of pos_embed is
    interpolated (cls token kept), the embedding axis still selected."""
    from timm.layers import resample_abs_pos_embed

    teacher = perturb(tiny_vit(32, 4, 7))  # 32 px, patch 8: 1 + 4x4 tokens
    for size, grid in ((16, 2), (48, 6)):
        s, s_aux = (timm.create_model("vit_tiny_patch16_224", img_size=size, patch_size=8, embed_dim=16, depth=2,
                                      num_heads=2, num_classes=5) for _ in range(2))
        report = select_dual(teacher, s, s_aux, "uniform")
        assert report.tensor("pos_embed").resampled
        for model, offset in ((s, 0), (s_aux, 1)):
            want = resample_abs_pos_embed(teacher.pos_embed[:, :, offset::2].detach(), [grid, grid], [4, 4],
                                          num_prefix_tokens=1)
            assert torch.allclose(model.pos_embed, want)
            assert torch.equal(model.pos_embed[:, 0], teacher.pos_embed[:, 0, offset::2])


def test_classifier_left_untouched():
    torch.manual_seed(0)
    teacher, s, s_aux = tiny_vit(32, 4, 7), tiny_vit(16, 2, 5), tiny_vit(16, 2, 5)
    before = {k: v.clone() for k, v in s.get_classifier().state_dict().items()}
    select_dual(teacher, s, s_aux)
    after = s.get_classifier().state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# --------------------------------------------------------------------------- consistency


EMBED_AXES = [("cls_token", 2), ("pos_embed", 2), ("patch_embed.proj.weight", 0), ("patch_embed.proj.bias", 0),
              ("norm.weight", 0), ("norm.bias", 0)]
for j in range(2):
    EMBED_AXES += [(f"blocks.{j}.norm1.weight", 0), (f"blocks.{j}.attn.qkv.weight", 1),
                   (f"blocks.{j}.attn.proj.weight", 0), (f"blocks.{j}.attn.proj.weight", 1),
                   (f"blocks.{j}.norm2.bias", 0), (f"blocks.{j}.mlp.fc1.weight", 1),
                   (f"blocks.{j}.mlp.fc2.weight", 0), (f"blocks.{j}.mlp.fc2.bias", 0)]
HIDDEN_AXES = [(f"blocks.{j}.mlp.{n}", ax) for j in range(2)
               for n, ax in (("fc1.weight", 0), ("fc1.bias", 0), ("fc2.weight", 1))]


def _axis_sets(report, axes, role="main"):
    return [tuple(report.indices(k, role)[ax].tolist()) for k, ax in axes]


@pytest.mark.parametrize("strategy", ["uniform", "consecutive", "random"])
def test_same_axis_same_indices_everywhere(strategy):
    torch.manual_seed(0)
    teacher, s, s_aux = tiny_vit(32, 4, 7), tiny_vit(16, 2, 5), tiny_vit(16, 2, 5)
    report = select_dual(teacher, s, s_aux, strategy, seed=5)
    for role in ("main", "aux"):
        emb = _axis_sets(report, EMBED_AXES, role)
        assert len(set(emb)) == 1, f"embedding axis not consistent ({role})"
        hid = _axis_sets(report, HIDDEN_AXES, role)
        assert len(set(hid)) == 1
        e = np.array(emb[0])
        for j in range(2):  # q, k and v rows each use the embedding indices
            qkv = report.indices(f"blocks.{j}.attn.qkv.weight", role)[0]
            assert qkv.tolist() == np.concatenate([e, e + 32, e + 64]).tolist()
    main, aux = set(_axis_sets(report, EMBED_AXES)[0]), set(_axis_sets(report, EMBED_AXES, "aux")[0])
    assert main.isdisjoint(aux)  # ratio 2: S and S' take disjoint halves for every strategy


def test_random_inconsistent_differs_between_tensors():
    torch.manual_seed(0)
    teacher, s, s_aux = tiny_vit(32, 4, 7), tiny_vit(16, 2, 5), tiny_vit(16, 2, 5)
    report = select_dual(teacher, s, s_aux, "random-inconsistent", seed=5)
    assert len(set(_axis_sets(report, EMBED_AXES))) > len(EMBED_AXES) // 2
    check_values(teacher, {"main": s, "aux": s_aux}, report)


def test_uniform_ratio2_disjoint_and_students_differ():
    torch.manual_seed(0)
    teacher, s, s_aux = perturb(tiny_vit(32, 4, 7)), tiny_vit(16, 2, 5), tiny_vit(16, 2, 5)
    report = select_dual(teacher, s, s_aux, "uniform")
    for tr in report.tensors:
        assert tr.used["both"] == 0, tr.student_key
        assert tr.used["main"] == tr.used["aux"] == int(np.prod(tr.student_shape))
        assert not torch.equal(s.state_dict()[tr.student_key], s_aux.state_dict()[tr.student_key])
        for ax, (t, n) in enumerate(zip(teacher.state_dict()[tr.teacher_key].shape, tr.student_shape)):
            if t == 2 * n and not (ax == 0 and "qkv" in tr.student_key):  # S even, S' odd
                assert report.indices(tr.student_key, "main")[ax].tolist() == list(range(0, t, 2))
                assert report.indices(tr.student_key, "aux")[ax].tolist() == list(range(1, t, 2))
    tot = report.totals(mapped_only=True)
    assert tot["both"] == 0.0 and tot["main"] == tot["aux"] and 0.25 <= tot["main"] <= 0.5
    assert report.totals()["neither"] > tot["neither"]  # unused blocks 2, 3 count as neither


def test_select_single_aux_reproduces_dual():
    torch.manual_seed(0)
    teacher, s, s_aux, single = tiny_vit(32, 4, 7), tiny_vit(16, 2, 5), tiny_vit(16, 2, 5), tiny_vit(16, 2, 5)
    select_dual(teacher, s, s_aux, "random", seed=2)
    select_single(teacher, single, "random", seed=2, role="aux")
    for k in s_aux.state_dict():
        if not k.startswith("head."):
            assert torch.equal(single.state_dict()[k], s_aux.state_dict()[k]), k


def test_report_json_roundtrip():
    import json

    teacher, s, s_aux = tiny_vit(32, 4, 7), tiny_vit(16, 2, 5), tiny_vit(16, 2, 5)
    report = select_dual(teacher, s, s_aux, "uniform")
    d = json.loads(report.to_json())
    assert d["strategy"] == "uniform" and d["tensors_mapped"] == len(report.tensors)
    assert set(d["totals"]) == {"teacher_elements", "main", "aux", "both", "neither"}
    assert "TOTAL" in report.summary_table()


# --------------------------------------------------------------------------- errors


def test_wider_student_names_tensors_and_shapes():
    with pytest.raises(EdgeKDError, match=r"cls_token: student \[1, 1, 32\] larger than teacher cls_token \[1, 1, 16\]"):
        select_dual(tiny_vit(16, 4, 7), tiny_vit(32, 2, 5), tiny_vit(32, 2, 5))


def test_deeper_student_names_blocks():
    with pytest.raises(EdgeKDError, match=r"student block 2 \(blocks\.2\.\*\).*teacher has 2 blocks"):
        select_dual(tiny_vit(32, 2, 7), tiny_vit(16, 4, 5), tiny_vit(16, 4, 5))


def test_other_family_rejected():
    with pytest.raises(EdgeKDError, match="cannot map"):
        select_dual(tiny_convnext(True, 7), tiny_vit(16, 2, 5), tiny_vit(16, 2, 5))
