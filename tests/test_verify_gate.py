"""verify's per-class gate: a loss confined to one small class fails the artifact and names the
class, although overall agreement and accuracy pass the old thresholds; a healthy artifact passes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.export.verify import Thresholds, verify

K, SMALL = 10, 9  # class 9 is 10 % of the test split


class Logits:
    """The reference: the 'model' is the identity on precomputed logits (verify sees only outputs)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x


class OnnxBias:
    """The planted artifact: an ONNX graph adding a constant bias to the logits, run by ONNX Runtime."""

    def __init__(self, bias: np.ndarray):
        g = helper.make_graph([helper.make_node("Add", ["input", "bias"], ["logits"])], "planted",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", K])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", K])],
                              [numpy_helper.from_array(bias.astype(np.float32), "bias")])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        self.sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {"input": x.astype(np.float32)})[0]


def _test_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.repeat(np.arange(K - 1), 100), np.full(100, SMALL)])
    logits = rng.normal(0, 1, (len(y), K)) + 4.0 * np.eye(K)[y]
    return logits.astype(np.float32), y


def _planted_bias(logits: np.ndarray, y: np.ndarray, share: float = 0.10) -> np.ndarray:
    """A negative bias on the small class, sized so that `share` of its correct predictions move."""
    mine = logits[y == SMALL]
    margins = np.sort(mine[:, SMALL] - np.delete(mine, SMALL, axis=1).max(1))
    bias = np.zeros(K)
    bias[SMALL] = -(margins[int(share * len(margins))] + 1e-3)
    return bias


def _batches(logits, y, bs=64):
    return [(logits[i:i + bs], y[i:i + bs]) for i in range(0, len(y), bs)]


@pytest.fixture(scope="module")
def planted():
    logits, y = _test_split()
    return logits, y, OnnxBias(_planted_bias(logits, y))


def test_old_thresholds_pass_the_planted_artifact(planted):
    logits, y, art = planted
    (r,) = verify({"planted": (art, "int8")}, Logits(), _batches(logits, y), Thresholds(gate=None))
    assert r.agreement_pct >= 98.5 and r.drop_pt <= 1.0 and r.passed  # what verify saw before the gate


def test_the_gate_fails_the_planted_artifact_and_names_the_class(planted):
    logits, y, art = planted
    classes = [f"class_{k}" for k in range(K)]
    (r,) = verify({"planted": (art, "int8")}, Logits(), _batches(logits, y), Thresholds(), classes=classes)
    assert not r.passed
    gate_reasons = [x for x in r.reasons if x.startswith("per-class gate")]
    assert len(gate_reasons) == 1 and "'class_9'" in gate_reasons[0] and "sensitivity" in gate_reasons[0]
    (bad,) = [v for v in r.gate.classes if v.outcome.value == "fail"]
    assert bad.name == "class_9" and bad.sensitivity.diff.value == pytest.approx(-0.10, abs=0.011)
    assert all(y[i] == SMALL for i in bad.sensitivity.losses) and len(bad.sensitivity.losses) >= 9
    assert r.to_dict()["gate"]["per_class"]["class_9"]["outcome"] == "fail"


def test_a_healthy_artifact_passes_the_gate(planted):
    logits, y, _ = planted
    classes = [f"class_{k}" for k in range(K)]
    (r,) = verify({"same": (OnnxBias(np.zeros(K)), "fp32")}, Logits(), _batches(logits, y), Thresholds(),
                  classes=classes)
    assert r.passed and r.gate is not None and r.gate.outcome.value == "pass"
