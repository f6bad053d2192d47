"""How much of an INT8 artifact's compute really runs in INT8 kernels, read from the runtime.

Why: the file does not say. An ORT QDQ file holds float Conv nodes that ONNX Runtime fuses
into QLinearConv, a QOperator file can keep its heaviest convs float, and an OpenVINO IR with
FakeQuantize ops runs a conv in f32 wherever the CPU plugin finds no INT8 kernel for it. Only
the runtime's own graph says which kernels run. Node counts mislead too (a 1x1 head weighs as
much as the widest conv), so the share is by multiply-accumulates of the Conv/MatMul/Gemm-like
ops (attention's two matmuls included) at batch 1. Below `FLOAT_FALLBACK_BELOW` the artifact
is labelled FLOAT FALLBACK: it may pass verify, but it is a float model in an INT8 file.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

FLOAT_FALLBACK_BELOW = 0.5

#: ONNX Runtime CPU kernels of Conv/MatMul/Gemm compute, integer vs float. QAttention's q/k/v
#: projection is integer; its softmax(QK^T)V core runs in float (as in Attention).
ORT_INT8_OPS = frozenset({"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QGemm",
                          "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention"})
ORT_FLOAT_OPS = frozenset({"Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "Attention"})
ORT_COMPUTE = ORT_INT8_OPS | ORT_FLOAT_OPS
#: which input holds a conv's weight [Cout, Cin/group, *kernel]
ORT_CONV_WEIGHT = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3}
#: precision-neutral layout rewrites, disabled so that shapes keep their logical channel counts
#: (NCHWc pads channels to the SIMD block; NHWC moves them last): neither changes a kernel's precision
ORT_LAYOUT_ONLY = ["NchwcTransformer", "NhwcTransformer"]

OV_COMPUTE = frozenset({"Convolution", "GroupConvolution", "MatMul", "ScaledDotProductAttention"})
OV_INT8 = frozenset({"u8", "i8"})  # runtimePrecision of a CPU kernel computing in 8-bit integers


@dataclass(frozen=True)
class Int8Share:
    """Conv/MatMul/Gemm MACs at batch 1, split by the precision of the kernel that runs them."""

    int8_macs: int
    float_macs: int
    runtime: str  # onnxruntime | openvino
    by_op: dict[str, int] = field(default_factory=dict)  # kernel run (ORT op type, OpenVINO "layerType precision") -> MACs

    @property
    def share(self) -> float:
        total = self.int8_macs + self.float_macs
        return self.int8_macs / total if total else 0.0

    @property
    def float_fallback(self) -> bool:
        return is_float_fallback(self.share)

    @property
    def label(self) -> str:
        return int8_label(self.share)

    def __str__(self) -> str:
        kernels = ", ".join(f"{k} {_mega(v)}" for k, v in sorted(self.by_op.items(), key=lambda kv: -kv[1]))
        return (f"INT8 kernels run {percent(self.share)} of the {_mega(self.int8_macs + self.float_macs)} "
                f"Conv/MatMul/Gemm MACs at batch 1 ({self.runtime}: {kernels or 'none'})")


def is_float_fallback(share: float) -> bool:
    """Less than half of the compute in INT8 kernels: the artifact is a float model in an INT8 file."""
    return share < FLOAT_FALLBACK_BELOW


def int8_label(share: float) -> str:
    """The report's precision column, e.g. "int8 (94 %)"."""
    return f"int8 ({percent(share)})"


def percent(share: float) -> str:
    """Rounded down: 99.6 % INT8 must not read as "100 %"."""
    return f"{math.floor(100 * share + 1e-9)} %"


def _mega(macs: int) -> str:
    return f"{macs / 1e6:.3g} M"


def _tally(runtime: str, kernels: Iterable[tuple[str, bool, int]]) -> Int8Share:
    """Sum (kernel, runs in int8, MACs) triples."""
    by_op: Counter[str] = Counter()
    split = [0, 0]
    for kernel, int8, macs in kernels:
        by_op[kernel] += macs
        split[int8] += macs
    return Int8Share(int8_macs=split[1], float_macs=split[0], runtime=runtime, by_op=dict(by_op))


# --- ONNX Runtime ---------------------------------------------------------------------------

def ort_int8_share(path: str | Path) -> Int8Share:
    """The share of the graph ONNX Runtime runs: the session the runner opens (CPU provider,
    ORT_ENABLE_ALL, batch fixed to 1), saved via `optimized_model_filepath` for each kernel's
    op type, attributes and weights, and profiled over one batch-1 run for the shapes each
    kernel saw. Why the profile: `onnx.shape_inference` cannot type the com.microsoft kernels
    the optimizer makes (QGemm, FusedConv, ...) nor anything after them."""
    import onnx

    with tempfile.TemporaryDirectory() as d:
        optimized, events = _ort_run_profiled(Path(path), Path(d))
        graph = onnx.load(str(optimized)).graph
    nodes = {n.name: n for n in graph.node}
    shapes = {i.name: list(i.dims) for i in graph.initializer}  # a weight may also be computed (a DequantizeLinear)
    for name, args in events:
        shapes.update(zip(nodes[name].output, map(_shape, args["output_type_shape"])))
    return _tally("onnxruntime", (part for name, args in events if args["op_name"] in ORT_COMPUTE
                                  for part in _ort_kernel_macs(nodes[name], args, shapes)))


def onnx_node_macs(model: Any) -> dict[str, int]:
    """Batch-1 MACs of each Conv/MatMul/Gemm node of a float `onnx.ModelProto` (standard ops, so
    ONNX shape inference types every tensor): what the INT8 search weighs a node it keeps float by."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    shapes = {i.name: list(i.dims) for i in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]

    def args(node: Any) -> dict[str, Any]:
        return {"op_name": node.op_type, "input_type_shape": [{"float": shapes[node.input[0]]}],
                "output_type_shape": [{"float": shapes[node.output[0]]}]}

    return {n.name: sum(m for _, _, m in _ort_kernel_macs(n, args(n), shapes))
            for n in g.node if n.op_type in ("Conv", "MatMul", "Gemm")}


def _ort_run_profiled(path: Path, workdir: Path) -> tuple[Path, list[tuple[str, dict[str, Any]]]]:
    """(optimized model, [(node name, profiler args)] of every kernel run) for one batch-1 run."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    batch = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # RunnerConfig.ort_opt_level "all"
    so.optimized_model_filepath = str(workdir / "optimized.onnx")
    so.enable_profiling = True
    so.profile_file_prefix = str(workdir / "profile")
    so.intra_op_num_threads = 1
    if batch.dim_param:
        so.add_free_dimension_override_by_name(batch.dim_param, 1)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], disabled_optimizers=ORT_LAYOUT_ONLY)
    inp = sess.get_inputs()[0]
    sess.run(None, {inp.name: np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)})
    events = json.loads(Path(sess.end_profiling()).read_text())
    suffix = "_kernel_time"
    return workdir / "optimized.onnx", [(e["name"][: -len(suffix)], e["args"]) for e in events
                                        if e.get("cat") == "Node" and e["name"].endswith(suffix)]


def _shape(entry: dict[str, list[int]]) -> list[int]:
    """A profiler shape entry: {"float": [1, 3, 224, 224]}."""
    return next(iter(entry.values()))


def _ort_kernel_macs(node: Any, args: dict[str, Any], shapes: dict[str, list[int]]) -> list[tuple[str, bool, int]]:
    """(kernel, int8, MACs) of one executed node. The profiler omits prepacked weights from its
    input shapes, so only input 0 (the activation) and output 0 are read from its event; weights
    are looked up by name in `shapes` (initializers, and what the profiled nodes output)."""
    from onnx import helper

    op = args["op_name"]
    x, out = _shape(args["input_type_shape"][0]), _shape(args["output_type_shape"][0])
    int8 = op in ORT_INT8_OPS
    if op in ORT_CONV_WEIGHT:  # each output element sums Cin/group x kernel products
        return [(op, int8, math.prod(out) * math.prod(shapes[node.input[ORT_CONV_WEIGHT[op]]][1:]))]
    if op in ("Attention", "QAttention"):  # x [B, S, hidden] @ W [hidden, 3 hidden], then QK^T and (softmax)V
        tokens = math.prod(x[:-1])
        core = 2 * tokens * x[1] * out[-1]
        return [(op, int8, tokens * math.prod(shapes[node.input[1]])), (f"{op} softmax(QK)V", False, core)]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k = (x[0] if attrs.get("transBatchA") else x[-2]) if attrs.get("transA") else x[-1]
    return [(op, int8, math.prod(out) * k)]


# --- OpenVINO -------------------------------------------------------------------------------

def openvino_int8_share(path: str | Path) -> Int8Share:
    """The share of what OpenVINO's CPU plugin runs: the IR compiled at batch 1 with the
    runner's f32 hint. MACs come from the IR's own compute ops (standard opset, static shapes
    after the reshape); the precision from the executed node that fused each of them, found
    by name in its `originalLayersNames` (`runtimePrecision` u8/i8 = INT8 kernel). Why not MACs
    from the runtime graph alone: attention runs there as a fused Subgraph whose ports do not
    say it holds two matmuls. An op no executed node names counts as float."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    shape = list(model.inputs[0].get_partial_shape().get_min_shape())
    shape[0] = 1
    model.reshape({model.inputs[0].get_any_name(): shape})
    ops = [(_ov_names(op), _ov_macs(op)) for op in model.get_ordered_ops() if op.get_type_name() in OV_COMPUTE]
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    kernels = _ov_kernels(compiled.get_runtime_model())
    executed = [(_ov_kernel(kernels, names), macs) for names, macs in ops]
    return _tally("openvino", ((f"{layer} {prec}", prec in OV_INT8, macs) for (layer, prec), macs in executed))


def _ov_names(op: Any) -> list[str]:
    """The names an executed node may list for `op`: its own, then its consumers' (a node that
    fuses a bias Add or an activation into a MatMul may keep only the name of the op it ends in)."""
    return [op.get_friendly_name(), *(t.get_node().get_friendly_name() for t in op.output(0).get_target_inputs())]


def _ov_macs(op: Any) -> int:
    """MACs of one IR compute op from its static port shapes."""
    t = op.get_type_name()
    ins = [list(op.get_input_shape(i)) for i in range(op.get_input_size())]
    out = math.prod(op.get_output_shape(0))
    if t == "Convolution":  # weights [Cout, Cin, *kernel]
        return out * math.prod(ins[1][1:])
    if t == "GroupConvolution":  # weights [groups, Cout/groups, Cin/groups, *kernel]
        return out * math.prod(ins[1][2:])
    if t == "ScaledDotProductAttention":  # q [..., L, E], k [..., S, E], v [..., S, Ev]: QK^T then (softmax)V
        q, k, v = ins[:3]
        return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])
    a = ins[0]  # MatMul
    return out * (a[-2] if op.get_attributes().get("transpose_a") and len(a) > 1 else a[-1])


def _ov_kernel(kernels: dict[str, tuple[str, str]], names: list[str]) -> tuple[str, str]:
    """(layerType, runtimePrecision) of the first of `names` an executed node lists, exactly or
    as "<name>/..." (low-precision transformations rename an op they rewrite "<name>/DequantizationMultiply")."""
    for name in names:
        hit = kernels.get(name) or next((k for n, k in kernels.items() if n.startswith(name + "/")), None)
        if hit:
            return hit
    return "not named in the runtime graph,", "counted float"


def _ov_kernels(runtime_model: Any) -> dict[str, tuple[str, str]]:
    """IR op name -> (layerType, runtimePrecision) of the executed node that runs it."""
    kernels: dict[str, tuple[str, str]] = {}
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()
        kind = (info["layerType"].astype(str), info["runtimePrecision"].astype(str))
        for name in info["originalLayersNames"].astype(str).split(","):
            kernels.setdefault(name, kind)
    return kernels
