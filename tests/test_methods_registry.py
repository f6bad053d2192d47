"""Methods are a registry: a method registered here, in the test, trains end to end through
`edgekd.train.main` without touching train.py, and `config.METHODS` lists it."""

import copy
import csv
import json
import subprocess
import sys

import pytest
import torch

from edgekd import config, train
from edgekd.errors import EdgeKDError
from edgekd.methods import Method, Networks, get_method, list_methods, register_method
from edgekd.methods.base import predict_targets
from tests.test_train_e2e import REPO, TINY_VIT, tiny  # noqa: F401  (module fixture)

BUILT_IN = ["ours", "ours-swap", "ours-cskd", "ours-tfkd", "cm1", "cm2", "cm3", "cm4", "kd", "pretrained"]


@register_method("toy-frozen-twin")
class FrozenTwin(Method):
    """S learns from a frozen copy of its own initialization; every hook records that it ran."""

    calls: list[str] = []

    def build(self, num_classes: int) -> Networks:
        s = self.new_student(num_classes)
        twin = copy.deepcopy(s).eval().requires_grad_(False)
        return Networks(s, aux=twin, selection={"toy": True})

    def on_epoch_start(self, nets: Networks, epoch: int) -> None:
        self.calls.append(f"epoch {epoch}")

    def targets(self, nets: Networks, batch: tuple, accelerator) -> torch.Tensor:
        return predict_targets(nets.aux, batch[0], accelerator)

    def after_step(self, nets: Networks) -> None:
        self.calls.append("step")

    def warning(self, nets: Networks, total_steps: int) -> str:
        return f"toy: {total_steps} steps ahead"


def test_a_method_registered_in_a_test_trains_end_to_end(tiny, tmp_path, capsys):
    assert "toy-frozen-twin" in config.METHODS and "toy-frozen-twin" in list_methods()
    assert config.load_config(None, ["method=toy-frozen-twin"]).method.name == "toy-frozen-twin"
    FrozenTwin.calls.clear()
    run_dir = tmp_path / "r"
    assert train.main([*TINY_VIT, f"data.root={tiny}", f"run_dir={run_dir}", "method=toy-frozen-twin",
                       "optim.epochs=2"]) == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert res["method"] == "toy-frozen-twin" and res["selection"] == {"toy": True} and res["aux_bn"] == "running"
    assert FrozenTwin.calls == ["epoch 0", *["step"] * 4, "epoch 1", *["step"] * 4] and res["steps"] == 8
    assert "toy: 8 steps ahead" in capsys.readouterr().out
    with open(run_dir / "metrics.csv") as f:
        assert all(float(r["train_kd"]) > 1e-4 for r in csv.DictReader(f))  # the toy's targets reached the loss
    aux = json.loads((run_dir / "aux.json").read_text())  # the base class saves S' with its card
    assert aux["role"] == "aux" and aux["method"] == "toy-frozen-twin" and aux["architecture"] == "vit_tiny_patch16_224"


def test_config_methods_are_the_registry():
    assert list(config.METHODS)[: len(BUILT_IN)] == BUILT_IN
    assert list(config.METHODS) == list(list_methods())
    with pytest.raises(EdgeKDError, match="unknown method 'magic'; fix: choose one of ours, ours-swap"):
        get_method("magic")
    with pytest.raises(ValueError, match="registered twice"):
        register_method("ours")(type("Again", (Method,), {}))
    assert get_method("ours").name == "ours" and get_method("cm1").teacher_donates_weights


def test_the_registry_and_config_import_without_torch():
    code = "import sys, edgekd.config as c; assert 'ours' in c.METHODS; print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_py_names_no_method():
    import re

    text = (REPO / "edgekd" / "train.py").read_text()
    assert not re.findall(r'"(ours|cm1|cm2|cm3|cm4|kd|ours-[a-z]+|pretrained)"', text)
