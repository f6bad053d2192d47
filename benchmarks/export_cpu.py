"""CPU export benchmark: what to deploy on this box. PyTorch eager FP32 vs ONNX Runtime FP32/INT8 vs
OpenVINO FP32/INT8, side by side, each verified, and the product's deployment pick per model.

Batch 1, 2 threads, on this machine. Models: ViT-T and ConvNeXt-F at 224 px (timm init: their
ImageNet teachers for weight selection need the Hugging Face hub, which this offline box cannot
reach; ConvNeXt with layer-scale 1.0 so residual branches are on), trained end to end for
`--steps` steps (batch 16) at 224 px on Fashion-MNIST train images (the STAND-IN dataset; 28x28
grey resized to 224 RGB) so accuracy/agreement are measured on trained networks; and any trainer
run directory via `--runs NAME=RUN_DIR` (e.g. a Lite0 trained at 224, or the quickstart's at 64 px).
INT8 artifacts come from the same accuracy-aware code as `edgekd export` (ORT keep-float search,
NNCF quantize_with_accuracy_control) on a validation slice of the TRAINING manifest; calibration:
class-stratified training images. For ViTs, ONNX Runtime INT8 also comes in the forms that decide
its ViT default: static MatMul-only, and ORT's own recipe for transformers (its transformer
optimizer, then dynamic INT8 of the MatMuls). OpenVINO rows come twice: f32 pinned (every non-INT8
op in FP32: the INT8 claim) and the device default (BF16 for the non-INT8 ops where the CPU has
AVX-512-BF16 / AMX, f32 elsewhere); every row records the precision its runtime resolved (`runs`).

Each row is checked by the product's verify (`edgekd.export.verify`: default thresholds for the
precision that ran, plus the per-class gate) on test images vs PyTorch on the same tensors; INT8
rows carry the share of their MACs in INT8 kernels (`edgekd.export.int8_share`); the product's rule
(`edgekd.export.pick.choose`) names each model's pick. The CPU model and ISA flags are on every
row, and the record is named by the CPU (`export_cpu-<cpu>`), so each machine's sits beside the others.

Latency: every backend is timed in the same process, interleaved, `--repeats` rounds of `--iters`
calls after warm-up; each backend's p50 is the best (lowest) of its per-round medians, which
filters out other processes sharing the 2 cores.

    .venv/bin/python benchmarks/export_cpu.py [--models vit_tiny_patch16_224,convnext_femto] [--runs lite0=RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from results_io import write_results  # noqa: E402

if TYPE_CHECKING:
    from edgekd.export.calibration import CalibrationSet
    from edgekd.export.int8_accuracy import AccuracyTarget, QuantReport, ValidationSet
    from edgekd.export.int8_share import Int8Share
    from edgekd.export.openvino_export import OpenVINOQuantConfig
    from edgekd.export.ort_quant import OrtQuantConfig
    from edgekd.export.pick import Candidate, Pick
    from edgekd.export.runner import Predictor, Runner
    from edgekd.export.source import RunSource
    from edgekd.export.verify import VerifyResult

RESULTS = ROOT / "benchmarks" / "results"
#: the first CPU's record (AMD EPYC, AVX-512 VNNI + BF16); other CPUs' sit beside it as export_cpu-<cpu>
FIRST_RECORD = "export_cpu"
#: issue 18's done-when: each model's pick passes verify at >= this many times PyTorch eager (batch 1)
TARGET_X = 4.0
REFERENCE = "pytorch-eager"  # the PyTorch eager row's name: the speed-up baseline and verify's reference
MODELS = {
    "vit_tiny_patch16_224": {"kwargs": {}, "weights": None, "label": "ViT-T", "lr": 5e-4},
    "convnext_femto": {"kwargs": {"ls_init_value": 1.0}, "weights": None, "label": "ConvNeXt-F", "lr": 1e-3},
    "tf_efficientnet_lite0": {"kwargs": {}, "weights": "lite-package", "label": "Lite0", "lr": 1e-3},
}


@dataclass
class Args:
    models: list[str]
    threads: int
    repeats: int
    iters: int
    probe_per_class: int
    calib_size: int
    test_per_class: int
    work: Path
    out: str | None  # None: export_cpu-<cpu slug>
    steps: int
    results_dir: Path
    train_size: int
    runs: list[str]
    test_limit: int
    rebuild: tuple[str, ...]  # artifact keys built again though cached (and what depends on them)


def parse(argv: list[str]) -> Args:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vit_tiny_patch16_224,convnext_femto", help="trained here at --train-size ('' = none)")
    ap.add_argument("--runs", nargs="*", default=[], help="NAME=RUN_DIR: trainer runs benchmarked at their own resolution")
    ap.add_argument("--test-limit", type=int, default=1000, help="test images per model (verify)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--probe-per-class", type=int, default=100, help="fine-tuning images per class")
    ap.add_argument("--steps", type=int, default=150, help="fine-tuning steps (batch 16)")
    ap.add_argument("--train-size", type=int, default=224, help="training resolution of --models (served at 224)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--test-per-class", type=int, default=50)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekd_bench_export_cpu"))
    ap.add_argument("--rebuild", type=lambda v: tuple(x for x in v.split(",") if x), default=(),
                    help="comma list of artifact keys to build again though cached, after a default changed: KEY (every "
                         "model) or NAME:KEY (one model as named in --models/--runs), e.g. Lite0-224:ort_int8")
    ap.add_argument("--out", default=None, help="results/NAME.json + .md (default: export_cpu-<cpu model>)")
    a = ap.parse_args(argv)
    return Args([m for m in a.models.split(",") if m], a.threads, a.repeats, a.iters, a.probe_per_class, a.calib_size,
                a.test_per_class, a.work, a.out, a.steps, a.results_dir, a.train_size, a.runs, a.test_limit, a.rebuild)


def rebuild_keys(a: Args, name: str) -> tuple[str, ...]:
    """The --rebuild keys for model `name`: its NAME:KEY entries and the plain KEYs."""
    return tuple(k.rpartition(":")[2] for k in a.rebuild if k.rpartition(":")[0] in ("", name))


def cpu_slug(cpu_model: str) -> str:
    """`Intel(R) Xeon(R) Processor @ 2.60GHz` -> `intel-r-xeon-r-processor-2-60ghz`: one record name per CPU."""
    return re.sub(r"[^a-z0-9]+", "-", cpu_model.lower()).strip("-")


def fashion_manifests(work: Path, probe_per_class: int, calib_per_class: int, test_per_class: int) -> dict[str, Path]:
    from edgekd.data import Manifest, cap_per_class, discover, make_split

    index = discover("fashion-mnist")
    split = make_split(index, mode="official")
    probe = cap_per_class(index, split.train, probe_per_class, seed=1)
    calib = cap_per_class(index, split.train, calib_per_class, seed=2)
    test = cap_per_class(index, split.test, test_per_class, seed=3)
    out = {}
    for name, ids in (("probe", probe), ("train", calib), ("test", test)):
        out[name] = Manifest.from_index(index, ids).save(work / "data" / f"{name}.json")
    return out


def finetune(model, items: list, pp: dict, steps: int, lr: float, batch: int = 16, seed: int = 0) -> dict:
    """A short end-to-end fine-tune (AdamW, cosine) so the network is a trained one: a random-init
    backbone has nearly image-independent features, and quantization noise then flips predictions
    in a way no deployed (trained) model would show. bf16 autocast only where the CPU computes BF16:
    emulated (an AVX-512 CPU without AVX-512-BF16), it is slower than FP32."""
    import torch

    from edgekd.export.batches import iter_batches
    from edgekd.export.bench import cpu_info, runs_bf16

    bf16 = runs_bf16(cpu_info()["isa"])

    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    t0, correct, seen = time.perf_counter(), 0, 0
    for step in range(steps):
        chunk = [items[i] for i in rng.choice(len(items), batch, replace=False)]
        x, y = next(iter_batches(chunk, pp, batch))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= steps - 20:
            correct += int((logits.argmax(1).numpy() == y).sum())
            seen += len(y)
        if step % 50 == 0:
            print(f"    step {step}/{steps} loss {loss.item():.3f} {time.perf_counter() - t0:.0f}s", flush=True)
    model.eval()
    return {"steps": steps, "lr": lr, "batch": batch, "bf16_autocast": bf16, "seconds": round(time.perf_counter() - t0, 1),
            "train_acc_last20": round(100 * correct / max(seen, 1), 1)}


def make_student(name: str, work: Path, manifests: dict[str, Path], threads: int, steps: int, train_size: int) -> Path:
    """Backbone fine-tuned briefly on Fashion-MNIST (at `train_size` px, to fit a shared 2-core box),
    saved as a run dir per DEVELOPERS.md; served and benchmarked at 224."""
    import torch

    from edgekd.data import Manifest
    from edgekd.models import load_teacher, resolve_preprocess, save_student
    from edgekd.shared.card import StudentCard

    run = work / name
    if (run / "model.json").exists():
        return run
    torch.set_num_threads(threads)
    spec = MODELS[name]
    probe = Manifest.load(manifests["probe"])
    torch.manual_seed(0)
    ts = train_size
    vit_kw = {"img_size": ts} if name.startswith("vit") and ts != 224 else {}
    model = load_teacher(name, weights=spec["weights"], pretrained=False, num_classes=len(probe.classes),
                         **spec["kwargs"], **vit_kw)
    pp = resolve_preprocess(name, image_size=224).to_dict()
    fit = finetune(model, probe.items, {**pp, "input_size": [3, ts, ts]}, steps, spec["lr"])
    fit["train_size"] = ts
    if vit_kw:  # back to 224: same weights, position embedding resampled to the 14x14 grid (timm's loader)
        from timm.models.vision_transformer import checkpoint_filter_fn

        m224 = load_teacher(name, pretrained=False, num_classes=len(probe.classes), **spec["kwargs"])
        m224.load_state_dict(checkpoint_filter_fn(model.state_dict(), m224))
        model = m224.eval()
    print(f"  fine-tuned {name}: {fit}", flush=True)
    run.mkdir(parents=True, exist_ok=True)
    (run / "data").mkdir(exist_ok=True)
    # train.json = the images it was trained on (calibration and the INT8 validation slice are drawn from it)
    for k, m in (("train", "probe"), ("test", "test")):
        (run / "data" / f"{k}.json").write_text(manifests[m].read_text())
    note = ("benchmark student: " + ("package ImageNet weights" if spec["weights"] else "random-init")
            + f" + short fine-tune on Fashion-MNIST ({fit})")
    card = StudentCard(name, len(probe.classes), list(probe.classes), spec["kwargs"], pp,
                       test_manifest="data/test.json", extra={"note": note})
    save_student(model, run / "model.safetensors", card)
    return run


def artifact_paths(out: Path, architecture: str) -> dict[str, Path]:
    """Every artifact of one model by key; the ViT-only forms for ViTs only."""
    from edgekd.export.ort_quant import arch_family

    onnx, ov = out / "onnx", out / "openvino"
    arts = {"onnx": onnx / "model.onnx", "onnx_b1": onnx / "model.b1.onnx", "ort_int8": onnx / "model.int8.onnx",
            "ort_s8s8": onnx / "model.int8.s8s8.onnx", "ort_mean_minmax": onnx / "model.int8.mean-minmax.onnx",
            "ov_fp32": ov / "model.fp32.xml", "ov_int8": ov / "model.int8.xml"}
    if arch_family(architecture) == "vit":
        arts.update({f"ort_fusions_{m}": onnx / f"model.int8.fusions-{m}.onnx" for m in other_fusion_modes()})
        arts.update({"ort_static_matmul": onnx / "model.int8.static-matmul.onnx",
                     "ort_dynamic_matmul": onnx / "model.int8.dynamic-matmul.onnx",
                     "ort_int8_attention_float": onnx / "model.int8.attention-float.onnx",
                     "ov_int8_attention_float": ov / "model.int8.attention-float.xml"})
    if arch_family(architecture) == "efficientnet":  # where ORT's own quantizer fails within the float budget
        arts["ort_int8_ort_quantizer"] = onnx / "model.int8.ort-quantizer.onnx"
        arts["ort_int8_qat"] = onnx / "model.int8.qat.onnx"
    else:  # the other quantizer, to show why it is not these families' default
        arts["ort_int8_nncf"] = onnx / "model.int8.nncf.onnx"
    return arts


def other_fusion_modes() -> list[str]:
    """The transformer-fusion modes besides the one `edgekd export` quantizes after."""
    from edgekd.export.ort_quant import FUSION_MODES, OrtQuantConfig, fusion_mode

    return [m for m in FUSION_MODES if m != fusion_mode(OrtQuantConfig())]


class BuildInputs:
    """What one run's artifacts are built from, made on first use: a step whose files exist needs none of it."""

    def __init__(self, src: RunSource, calib_size: int, threads: int, arts: dict[str, Path]) -> None:
        self.src, self.calib_size, self.threads, self.arts = src, calib_size, threads, arts

    @cached_property
    def torch_runner(self) -> Predictor:
        from edgekd.export.source import TorchRunner

        return TorchRunner(self.src.weights, self.threads)

    @cached_property
    def sets(self) -> tuple[CalibrationSet, "ValidationSet"]:
        return _calibration(self.src, self.calib_size, self.torch_runner)

    @cached_property
    def target(self) -> "AccuracyTarget":
        from edgekd.export.int8_accuracy import AccuracyTarget
        from edgekd.export.verify import Thresholds

        return AccuracyTarget.from_thresholds(Thresholds(), len(self.sets[1]))

    @cached_property
    def ov_model(self) -> object:
        from edgekd.export import openvino_export as ovx

        return ovx.convert(self.arts["onnx"])

    def ort_accuracy_aware(self, key: str, cfg: OrtQuantConfig) -> dict:
        t = time.perf_counter()
        r = self.ort_search(self.arts["onnx"], key, cfg)
        return {key: asdict(r), f"{key}_s": time.perf_counter() - t}

    def ort_search(self, src: Path, key: str, cfg: OrtQuantConfig) -> QuantReport:
        """The accuracy-aware ORT quantizer of `edgekd export` on `src`, writing artifact `key`."""
        from edgekd.export.ort_quant import quantize_accuracy_aware

        return quantize_accuracy_aware(src, self.arts[key], *self.sets, self.src.architecture, cfg, self.target,
                                       self.threads)

    def ov_accuracy_aware(self, key: str, cfg: OpenVINOQuantConfig) -> dict:
        from edgekd.export import openvino_export as ovx

        t = time.perf_counter()
        q, r = ovx.quantize_accuracy_aware(self.ov_model.clone(), *self.sets, self.src.architecture, self.target,
                                           cfg, threads=self.threads)
        ovx.save_ir(q, self.arts[key], "int8")
        return {key: asdict(r), f"{key}_s": time.perf_counter() - t}


def _onnx(b: BuildInputs, info: dict) -> dict:
    from edgekd.export.onnx_export import export_onnx

    export_onnx(b.torch_runner.model, b.src.meta, b.arts["onnx"].parent)
    return {}


def _same_float(info: dict) -> OrtQuantConfig:
    """ORT's quantizer with the accuracy-aware ORT INT8's float nodes: the forms that differ from it in one thing."""
    from edgekd.export.ort_quant import OrtQuantConfig

    return replace(OrtQuantConfig.for_cpu(quantizer="ort"), exclude_nodes=tuple(info["ort_int8"]["searched_float_nodes"]))


def _ort_other_forms(b: BuildInputs, info: dict) -> dict:
    from edgekd.export.ort_quant import quantize_onnx

    forms = {"ort_s8s8": {"quant_format": "qdq_s8s8"}, "ort_mean_minmax": {"calib_method": "mean-minmax"}}
    return {k: asdict(quantize_onnx(b.arts["onnx"], b.arts[k], b.sets[0], b.src.architecture,
                                    replace(_same_float(info), **kw))) for k, kw in forms.items()}


def _ort_nncf(b: BuildInputs, info: dict) -> dict:
    """NNCF's PTQ as ORT INT8 (`--quantizer nncf`) where ORT's quantizer is the default: one plain PTQ."""
    from edgekd.export.ort_quant import OrtQuantConfig, quantize_onnx

    cfg = OrtQuantConfig.for_cpu(quantizer="nncf")
    return {"ort_int8_nncf": asdict(quantize_onnx(b.arts["onnx"], b.arts["ort_int8_nncf"], b.sets[0], b.src.architecture,
                                                  cfg))}


def _ort_attention_float(b: BuildInputs, info: dict) -> dict:
    """ViT: attention's activation MatMuls (q@k^T, attn@v) kept float, found by the same accuracy-aware search."""
    from edgekd.export.ort_quant import ACTIVATION_MATMUL, KEEP_FLOAT_BY_FAMILY, OrtQuantConfig

    keep = KEEP_FLOAT_BY_FAMILY["vit"] + (ACTIVATION_MATMUL,)
    return b.ort_accuracy_aware("ort_int8_attention_float", OrtQuantConfig.for_cpu(keep_float=keep))


def _ort_qat(b: BuildInputs, info: dict) -> dict:
    """`edgekd export --int8 qat --quantizer ort`: quantization-aware self-distillation, then ORT's accuracy-aware
    quantizer (what QAT was measured against before NNCF's ranges became the EfficientNet default)."""
    from edgekd.export.ort_quant import OrtQuantConfig
    from edgekd.export.qat import qat_then_quantize

    cfg = OrtQuantConfig.for_cpu(quantizer="ort")
    q, minutes = qat_then_quantize(b.src.weights, *b.sets, b.src.architecture,
                                   lambda trained: b.ort_search(trained, "ort_int8_qat", cfg))
    return {"ort_int8_qat": asdict(q), "ort_int8_qat_s": 60 * minutes}


def _ov_fp32(b: BuildInputs, info: dict) -> dict:
    from edgekd.export import openvino_export as ovx

    ovx.save_ir(b.ov_model.clone(), b.arts["ov_fp32"], "fp32")
    return {}


@dataclass(frozen=True)
class BuildStep:
    """Builds `keys` (artifact keys); reruns when one of them is missing or a step it `needs` was rebuilt."""

    keys: tuple[str, ...]
    make: Callable[[BuildInputs, dict], dict]  # (inputs, build info so far) -> info to record
    needs: tuple[str, ...] = ()


def build_steps() -> list[BuildStep]:
    """`edgekd export`'s modules: ONNX (+b1), accuracy-aware ORT INT8 (CPU default form) and the same float
    nodes in the other forms, OpenVINO FP32 + accuracy-aware NNCF INT8; for ViTs the forms that decide the
    ViT defaults (ORT's: `_build_vit_ort_forms`; attention's MatMuls the other way round in each runtime)."""
    from edgekd.export.openvino_export import OpenVINOQuantConfig
    from edgekd.export.ort_quant import OrtQuantConfig

    vit_forms = tuple(f"ort_fusions_{m}" for m in other_fusion_modes()) + ("ort_static_matmul", "ort_dynamic_matmul")
    return [
        BuildStep(("onnx", "onnx_b1"), _onnx),
        BuildStep(("ort_int8",), lambda b, i: b.ort_accuracy_aware("ort_int8", OrtQuantConfig.for_cpu()), ("onnx",)),
        BuildStep(("ort_int8_ort_quantizer",), lambda b, i: b.ort_accuracy_aware(
            "ort_int8_ort_quantizer", OrtQuantConfig.for_cpu(quantizer="ort")), ("onnx",)),
        BuildStep(("ort_int8_nncf",), _ort_nncf, ("onnx",)),
        BuildStep(("ort_s8s8", "ort_mean_minmax"), _ort_other_forms, ("ort_int8",)),
        BuildStep(vit_forms, lambda b, i: _build_vit_ort_forms(b.arts, b.sets[0], b.src.architecture, _same_float(i)),
                  ("ort_int8",)),
        BuildStep(("ort_int8_attention_float",), _ort_attention_float, ("onnx",)),
        BuildStep(("ort_int8_qat",), _ort_qat, ("onnx",)),
        BuildStep(("ov_fp32",), _ov_fp32, ("onnx",)),
        BuildStep(("ov_int8",), lambda b, i: b.ov_accuracy_aware("ov_int8", OpenVINOQuantConfig()), ("onnx",)),
        BuildStep(("ov_int8_attention_float",), lambda b, i: b.ov_accuracy_aware(
            "ov_int8_attention_float", OpenVINOQuantConfig(keep_activation_matmuls=True)), ("onnx",)),
    ]


def build_artifacts(run: Path, calib_size: int, threads: int, rebuild: tuple[str, ...] = ()) -> tuple[dict[str, Path], dict]:
    """Every artifact of one run, in RUN/bench_export/, each step once: a rerun builds only what is missing,
    what `rebuild` names (artifact keys) and what depends on those (the searches take minutes). The record
    of each step goes to build.json as soon as it is done, so an interrupted build resumes. Returns the
    paths and the record."""
    from edgekd.export.source import resolve_run

    out = run / "bench_export"
    src = resolve_run(run)
    arts = artifact_paths(out, src.architecture)
    record = out / "build.json"
    info: dict = json.loads(record.read_text()) if record.exists() else {}
    inputs, rebuilt = BuildInputs(src, calib_size, threads, arts), set()
    for step in build_steps():
        if not all(k in arts for k in step.keys):
            continue
        stale = set(step.keys) & set(rebuild) or set(step.needs) & rebuilt
        if stale or not all(arts[k].exists() for k in step.keys):
            print(f"build {', '.join(step.keys)}", flush=True)
            info.update(step.make(inputs, info))
            rebuilt.update(step.keys)
            out.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(info, indent=1, default=str))
    if "calib_images" not in info or rebuilt:
        info.update({"calib_images": len(inputs.sets[0]), "validation_images": len(inputs.sets[1]),
                     "target": str(inputs.target)})
        record.write_text(json.dumps(info, indent=1, default=str))
    return arts, json.loads(record.read_text())  # plain JSON, as a cached build returns it


def _build_vit_ort_forms(arts: dict[str, Path], calib: CalibrationSet, architecture: str,
                        same: OrtQuantConfig) -> dict[str, dict]:
    """The ORT INT8 forms weighed against today's for the ViT default (issue 18 point 4): the other
    transformer-fusion modes and static MatMul-only, each with the accuracy-aware form's float nodes
    (`same`), and ORT's dynamic recipe for transformers."""
    from edgekd.export.ort_quant import quantize_onnx

    static = {f"ort_fusions_{m}": replace(same, transformer_fusions=m) for m in other_fusion_modes()}
    static["ort_static_matmul"] = replace(same, op_types=("MatMul",))
    info = {k: asdict(quantize_onnx(arts["onnx"], arts[k], calib, architecture, c)) for k, c in static.items()}
    info["ort_dynamic_matmul"] = asdict(quantize_dynamic_matmul(arts["onnx"], arts["ort_dynamic_matmul"], architecture))
    return info


def quantize_dynamic_matmul(src: Path, dst: Path, architecture: str) -> QuantReport:
    """ORT's recipe for transformers: its transformer optimizer (SkipLayerNormalization, BiasGelu and
    Attention fused), then `quantize_dynamic` of the MatMuls with constant weights (activations are
    quantized per call from their own range: no calibration). The fused Attention node holds the
    q/k/v MatMuls, so it is quantized too (QAttention): MatMul alone would leave that quarter of the
    linear MACs float. S8 weights per output channel: the per-column scales cost nothing in the
    integer kernels and keep the columns with large weights from setting everyone's scale. The
    edgekd metadata is stamped from the float ONNX as `quantize_onnx` does, so the runners and verify
    open it like any INT8 artifact."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgekd.export.int8_accuracy import AccuracyTarget, QuantReport, ValidationSet
    from edgekd.export.ort_quant import OrtQuantConfig, prepare_float, stamp_int8_metadata

    pre = dst.with_name(dst.stem + ".pre.onnx")
    fusions = prepare_float(src, pre, architecture, OrtQuantConfig(transformer_fusions="all"))
    reduce_range = OrtQuantConfig.for_cpu().reduce_range  # the CPU artifact's rule (7-bit weights without VNNI)
    quantize_dynamic(str(pre), str(dst), op_types_to_quantize=["MatMul", "Attention"], per_channel=True,
                     reduce_range=reduce_range, weight_type=QuantType.QInt8)
    pre.unlink()
    stamp_int8_metadata(src, dst)
    return QuantReport(scheme=f"ORT dynamic MatMul + Attention u8/s8 per-channel{', reduce_range' if reduce_range else ''} "
                              "after ORT's transformer optimizer", calib_images=0, float_nodes=[], fusions=fusions)


def _calibration(src: RunSource, calib_size: int, torch_runner: Predictor) -> tuple:
    """Calibration + validation slice (training manifest only), as in `edgekd export`."""
    from edgekd.export.calibration import DEFAULT_VAL_SIZE, CalibrationConfig, build_calibration, build_validation
    from edgekd.export.int8_accuracy import ValidationSet

    pp = src.meta.preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calib = build_calibration(str(src.train_manifest), pp, CalibrationConfig(size=calib_size))
    images = build_validation(str(src.train_manifest), pp, DEFAULT_VAL_SIZE, calib.paths)
    ref = np.concatenate([torch_runner.predict(images.x[i : i + 32]) for i in range(0, len(images), 32)])
    return calib, ValidationSet(images, ref)


@dataclass(frozen=True)
class RowSpec:
    """One candidate to verify and time: which artifact, how it is opened, how it was built."""

    name: str  # unique per model: the pick's candidate name
    backend: str  # onnxruntime | openvino
    precision: str  # what the file holds: fp32 | int8
    art: str  # key of `artifact_paths`: the file verified, measured and picked
    config: str
    hint: str | None = "f32"  # OpenVINO INFERENCE_PRECISION_HINT; None = the device's default
    timed_art: str | None = None  # time this file instead (ORT FP32: the static batch-1 export)
    # an alternative to a default (another format, calibration, fusion, float set): measured beside it, not
    # a candidate, since `edgekd export` with its defaults builds only the others and the pick is theirs
    alternative: bool = False


def row_specs(arts: dict[str, Path]) -> list[RowSpec]:
    """Every candidate of one model. Each backend's f32-pinned FP32 row comes first: it is what
    `vs_runtime_fp32` divides by."""
    ort, ov = "onnxruntime", "openvino"
    nncf_default = "ort_int8_ort_quantizer" in arts  # the families whose ORT INT8 NNCF's PTQ makes
    specs = [RowSpec("ort-fp32", ort, "fp32", "onnx", "static b1 ONNX, ORT_ENABLE_ALL", timed_art="onnx_b1"),
             RowSpec("ort-int8", ort, "int8", "ort_int8", "NNCF PTQ as QDQ U8S8 (CPU default), accuracy-aware"
                     if nncf_default else "QOperator U8S8 (CPU default), accuracy-aware"),
             RowSpec("ort-int8-s8s8", ort, "int8", "ort_s8s8", "QDQ S8S8, same float nodes", alternative=True),
             RowSpec("ort-int8-mean-minmax", ort, "int8", "ort_mean_minmax",
                     "QOperator U8S8, mean-minmax calibration, same float nodes", alternative=True)]
    vit_forms = {f"ort_fusions_{m}": (f"ort-int8-fusions-{m}", f"QOperator U8S8, transformer fusions: {m}, same float nodes")
                 for m in other_fusion_modes()}
    vit_forms["ort_static_matmul"] = ("ort-int8-static-matmul", "QOperator U8S8, MatMul only, same float nodes")
    vit_forms["ort_dynamic_matmul"] = ("ort-int8-dynamic-matmul", "dynamic MatMul + Attention S8 per-channel after ORT's "
                                                                   "transformer optimizer (ORT's transformer recipe)")
    vit_forms["ort_int8_attention_float"] = ("ort-int8-attention-float",
                                             "QOperator U8S8, attention MatMuls float, accuracy-aware")
    forms = {**vit_forms,
             "ort_int8_nncf": ("ort-int8-nncf", "NNCF PTQ as QDQ U8S8 (`--quantizer nncf`), plain PTQ"),
             "ort_int8_ort_quantizer": ("ort-int8-ort-quantizer", "QOperator U8S8 by ORT's quantizer, accuracy-aware "
                                                                  "(`--quantizer ort`)"),
             "ort_int8_qat": ("ort-int8-qat", "QAT by self-distillation, then QOperator U8S8 by ORT's quantizer, "
                                              "accuracy-aware (`edgekd export --int8 qat --quantizer ort`)")}
    specs += [RowSpec(name, ort, "int8", key, config, alternative=True) for key, (name, config) in forms.items()
              if key in arts]
    return specs + [
        RowSpec("ov-fp32", ov, "fp32", "ov_fp32", "f32 pinned"),
        RowSpec("ov-fp32-default", ov, "fp32", "ov_fp32", "device default hint (BF16 where the CPU has it)", hint=None),
        RowSpec("ov-int8", ov, "int8", "ov_int8", "NNCF accuracy-aware, rest f32 pinned"),
        RowSpec("ov-int8-default", ov, "int8", "ov_int8", "NNCF accuracy-aware, rest at the device default", hint=None),
    ] + ([RowSpec("ov-int8-attention-float", ov, "int8", "ov_int8_attention_float",
                  "NNCF accuracy-aware, attention MatMuls float, rest f32 pinned", alternative=True)]
       if "ov_int8_attention_float" in arts else [])


@dataclass
class Opened:
    """A RowSpec's runners: static batch 1 for latency, dynamic batch for verify."""

    spec: RowSpec
    path: Path  # the verified artifact
    latency: Runner
    verify: Runner
    verified_as: str  # the precision verify holds it to: the one its runtime runs (`runtimes.ran_as`)

    @property
    def runs(self) -> str:
        """The float precision the runtime computes in: OpenVINO's resolved hint; ORT runs the file's
        (FP32, for an INT8 file's float remainder too)."""
        return self.verify.compute_precision or "fp32"


def open_spec(spec: RowSpec, arts: dict[str, Path], threads: int) -> Opened:
    from edgekd.export.runner import RunnerConfig
    from edgekd.export.runtimes import open_runner, open_to_verify

    def cfg(batch: int | None) -> RunnerConfig:
        return RunnerConfig(threads=threads, static_batch=batch, inference_precision=spec.hint)

    runner, verified_as = open_to_verify(arts[spec.art], spec.precision, cfg(None))
    return Opened(spec, arts[spec.art], open_runner(arts[spec.timed_art or spec.art], cfg(1)), runner, verified_as)


def measure_int8_share(path: Path) -> Int8Share:
    """Read from the runtime at the f32 hint; the device-default INT8 row runs the same INT8 kernels
    (the hint sets the precision of the float remainder only)."""
    from edgekd.export.int8_share import openvino_int8_share, ort_int8_share

    return ort_int8_share(path) if path.suffix == ".onnx" else openvino_int8_share(path)


def time_interleaved(runners: list[Predictor], x1: np.ndarray, a: Args) -> list[list[float]]:
    """Per runner, its median latency (ms) in each of `a.repeats` rounds; each round times every
    runner in turn, so all of them see the same background load."""
    from edgekd.export.bench import BenchConfig, time_calls

    cfg = BenchConfig(warmup=10, iters=a.iters, max_seconds=60)
    medians: list[list[float]] = [[] for _ in runners]
    for _ in range(a.repeats):
        for m, r in zip(medians, runners):
            m.append(float(np.median(time_calls(partial(r.predict, x1), cfg))))
    return medians


@dataclass
class Row:
    """One line of the table and of the JSON record."""

    model: str
    label: str
    input_px: int
    name: str  # candidate name, unique per model
    backend: str  # pytorch | onnxruntime | openvino
    precision: str  # what the file holds: fp32 | int8
    precision_label: str  # the precision column: int8 (94 %), fp32 (runs bf16), ...
    runs: str  # the float precision the runtime computed in (OpenVINO: its resolved hint)
    verified_as: str | None  # the precision verify held it to; None = the reference
    device_default: bool  # OpenVINO compiled without a precision hint: `runs` is what the device chose
    alternative: bool  # RowSpec.alternative: measured beside the default form, not a candidate for the pick
    config: str
    isa: str
    p50_ms: float
    p50_ms_rounds: list[float]
    speedup_vs_torch: float
    vs_runtime_fp32: float  # that backend's FP32 row p50 / this row's
    verdict: str  # reference | PASS | FAIL: reasons | FLOAT FALLBACK
    passes_verify: bool | None  # verify's own answer (overall thresholds + per-class gate)
    gate: str | None  # the per-class gate's outcome
    int8_share: float | None  # INT8 rows: share of the Conv/MatMul/Gemm MACs run by INT8 kernels
    int8_kernels: dict[str, int] | None  # INT8 rows: MACs by executed kernel
    accuracy: float
    accuracy_drop: float
    agreement: float
    max_abs_diff: float
    cosine: float
    size_mb: float
    path: str
    test_images: int
    training: str


@dataclass
class Timings:
    """One model's interleaved latencies, and the ratios every row reports from them."""

    rounds: dict[str, list[float]]  # candidate name -> per-round medians (ms)
    fp32: dict[str, str]  # backend -> the name of its FP32 row

    def p50(self, name: str) -> float:
        return min(self.rounds[name])

    def fields(self, name: str, backend: str) -> dict:
        p50 = self.p50(name)
        return {"p50_ms": round(p50, 3), "p50_ms_rounds": [round(m, 3) for m in self.rounds[name]],
                "speedup_vs_torch": round(self.p50(REFERENCE) / p50, 3),
                "vs_runtime_fp32": round(self.p50(self.fp32[backend]) / p50, 3)}



def verdict(v: VerifyResult, share: Int8Share | None) -> str:
    """FLOAT FALLBACK first: such an INT8 file is never the pick, whatever verify says of it."""
    from edgekd.export.int8_share import is_float_fallback

    if share is not None and is_float_fallback(share.share):
        return "FLOAT FALLBACK"
    return "PASS" if v.passed else "FAIL: " + "; ".join(v.reasons)


def artifact_row(common: dict, o: Opened, v: VerifyResult, share: Int8Share | None, t: Timings) -> Row:
    from edgekd.export.runtimes import precision_label

    s = o.spec
    return Row(**common, name=s.name, backend=s.backend, precision=s.precision,
               precision_label=precision_label(s.precision, share.share if share else None, o.runs), runs=o.runs,
               verified_as=o.verified_as, device_default=s.hint is None, alternative=s.alternative, config=s.config, **t.fields(s.name, s.backend), verdict=verdict(v, share),
               passes_verify=v.passed, gate=v.gate.outcome.value if v.gate else None,
               int8_share=round(share.share, 4) if share else None, int8_kernels=share.by_op if share else None,
               accuracy=round(v.accuracy, 2), accuracy_drop=round(v.drop_pt, 2), agreement=round(v.agreement_pct, 2),
               max_abs_diff=float(f"{v.max_abs_diff:.3g}"), cosine=round(v.mean_cosine, 5), size_mb=_size(o.path),
               path=str(o.path))


def reference_row(common: dict, weights: Path, accuracy: float, t: Timings) -> Row:
    return Row(**common, name=REFERENCE, backend="pytorch", precision="fp32", precision_label="fp32", runs="fp32",
               verified_as=None, device_default=False, alternative=False, config="eager, inference_mode", **t.fields(REFERENCE, "pytorch"), verdict="reference",
               passes_verify=None, gate=None, int8_share=None, int8_kernels=None, accuracy=round(accuracy, 2),
               accuracy_drop=0.0, agreement=100.0, max_abs_diff=0.0, cosine=1.0, size_mb=_size(weights),
               path=str(weights))


def _size(path: Path) -> float:
    from edgekd.export.artifacts import artifact_files

    return round(sum(f.stat().st_size for f in artifact_files(path)) / 1e6, 2)


@dataclass
class ModelResult:
    name: str
    label: str
    rows: list[Row]  # the PyTorch reference first
    build: dict  # what build_artifacts recorded (quantizer reports, search seconds)
    pick: Pick | None
    headline: str  # the pick's `why`, or why there is none

    @property
    def target(self) -> str:
        """Issue 18's done-when for this model: its pick passes verify at >= TARGET_X eager."""
        return "met" if self.pick and (self.pick.speedup_vs_eager or 0) >= TARGET_X else "not met"

    def to_dict(self) -> dict:
        return {"label": self.label, "build": self.build, "pick": self.pick.to_dict() if self.pick else None,
                "headline": self.headline, f"pick_at_{TARGET_X:g}x_eager": self.target}


def candidates(rows: list[Row], alternatives: bool = False) -> list[Candidate]:
    """The artifact rows as the product's pick sees them (verdict pass/fail from verify): what `edgekd export`
    builds with its defaults, and with `alternatives` the other forms too. A device-default row whose float
    part ran fp32 is left out: it is its f32-pinned twin run again (as `edgekd export` builds no BF16
    candidate on a CPU without BF16), and timing noise alone would rank the two."""
    from edgekd.export.pick import Candidate

    return [Candidate(r.name, r.path, r.backend, r.precision, r.p50_ms, "pass" if r.passes_verify else "fail",
                      gated=r.gate is not None, int8_share=r.int8_share, runs=r.runs)
            for r in rows if r.backend != "pytorch" and not (r.device_default and r.runs == "fp32")
            and (alternatives or not r.alternative)]


def bench_model(name: str, run: Path, a: Args, isa: str, cpu: str) -> ModelResult:
    from edgekd.export.batches import iter_batches, manifest_items
    from edgekd.export.pick import choose, no_pick
    from edgekd.export.source import TorchRunner, resolve_run
    from edgekd.export.verify import Thresholds, verify

    arts, build = build_artifacts(run, a.calib_size, a.threads, rebuild_keys(a, name))
    src = resolve_run(run)
    reference = TorchRunner(src.weights, a.threads)
    opened = [open_spec(s, arts, a.threads) for s in row_specs(arts)]
    pp, classes = src.meta.preprocess, src.meta.classes
    items = manifest_items(src.test_manifest, classes)[: a.test_limit]
    checked = {r.name: r for r in verify({o.spec.name: (o.verify, o.verified_as) for o in opened}, reference,
                                         iter_batches(items, pp, 32), thresholds=Thresholds(), classes=classes)}
    x1 = next(iter_batches(items[:1], pp, 1))[0]
    medians = time_interleaved([reference, *(o.latency for o in opened)], x1, a)
    fp32 = {"pytorch": REFERENCE}
    for o in opened:
        if o.spec.precision == "fp32":
            fp32.setdefault(o.spec.backend, o.spec.name)
    t = Timings(dict(zip([REFERENCE, *(o.spec.name for o in opened)], medians)), fp32)
    shares = {p: measure_int8_share(p) for p in dict.fromkeys(o.path for o in opened if o.spec.precision == "int8")}
    label = MODELS.get(name, {}).get("label", name)
    common = {"model": name, "label": label, "input_px": pp["input_size"][-1], "isa": isa, "test_images": len(items),
              "training": src.meta.extra.get("note", f"trainer run {run}")}
    rows = [reference_row(common, src.weights, next(iter(checked.values())).reference_accuracy, t)]
    rows += [artifact_row(common, o, checked[o.spec.name], shares.get(o.path), t) for o in opened]
    print_rows(rows)
    cands = candidates(rows)
    pick = choose(cands, cpu, t.p50(REFERENCE))
    return ModelResult(name, label, rows, build, pick, pick.why if pick else no_pick(cands))


COLS = ("label", "input_px", "name", "precision_label", "runs", "p50_ms", "speedup_vs_torch", "vs_runtime_fp32", "accuracy",
        "accuracy_drop", "agreement", "gate", "verdict", "size_mb", "config", "isa")


def print_rows(rows: list[Row]) -> None:
    for r in rows:
        print("  ".join(f"{getattr(r, c)}" for c in COLS), flush=True)


PROFILE_RECORD = "int8_profile"  # benchmarks/int8_profile.py's record of where each artifact's time goes


def what_bounds(m: ModelResult, profile: dict | None) -> str:
    """What bounds a pick under the target, read from int8_profile's record for this CPU (the same artifacts)."""
    from int8_profile import bound

    row = next((r for r in (profile or {}).get("rows", []) if m.pick and r["model"] == m.label
                and r["runtime"] == m.pick.runtime), None)
    if row is None:
        return (f"what bounds it: no {PROFILE_RECORD} record of this CPU has this artifact; "
                "`benchmarks/int8_profile.py` on the same bench_export folders profiles it.")
    return (f"what bounds it, from its per-op profile ({PROFILE_RECORD} record of this CPU): {row['int8_share_pct']} % "
            f"of its time in INT8 kernels. {bound(row, profile['machine']['isa'])}")


def findings(m: ModelResult, profile: dict | None = None) -> list[str]:
    """Prose for one model, generated from its rows: the pick, what INT8 buys over the same
    runtime's FP32, what OpenVINO's device default ran, and for ViTs the ORT INT8 forms."""
    ref = m.rows[0]
    out = [f"**{m.label}** ({ref.input_px} px, test accuracy {ref.accuracy} %; {ref.training}).",
           f"Pick on this CPU: {m.headline}. Pick >= {TARGET_X:g}x PyTorch eager (issue 18's done-when): {m.target}"
           + ("." if m.target == "met" else f"; {what_bounds(m, profile)}")]
    out += _int8_findings(m.rows) + _device_default_findings(m.rows)
    if any(r.name == "ort-int8-dynamic-matmul" for r in m.rows):
        out += _vit_ort_findings(m.rows)
    if "ov-int8-attention-float" in {r.name for r in m.rows}:
        out += _attention_findings(m.rows)
    if "ort-int8-qat" in {r.name for r in m.rows}:
        out += _qat_findings(m.rows, m.build)
    return out


def _qat_findings(rows: list[Row], build: dict) -> list[str]:
    """ONNX Runtime INT8 by PTQ and by QAT side by side: share, latency, agreement, verdict, build minutes."""
    by = {r.name: r for r in rows}

    def side(r: Row, key: str) -> str:
        minutes = f", built in {build[key + '_s'] / 60:.1f} min" if key + "_s" in build else ""
        return f"{r.name} {r.precision_label} {r.p50_ms} ms ({_short(r)}{minutes})"

    ptq = [side(by[n], k) for n, k in (("ort-int8", "ort_int8"), ("ort-int8-ort-quantizer", "ort_int8_ort_quantizer"))
           if n in by]
    return ["ONNX Runtime INT8, PTQ vs QAT: " + " and ".join(ptq) + " vs " + side(by["ort-int8-qat"], "ort_int8_qat") + "."]


def _attention_findings(rows: list[Row]) -> list[str]:
    """ViT: attention's activation MatMuls (the last 15 % of its MACs) INT8 (both runtimes' default) or float."""
    by = {r.name: r for r in rows}

    def pair(int8: Row, flt: Row) -> str:
        return (f"{int8.name} {int8.precision_label} {int8.p50_ms} ms ({_short(int8)}) vs {flt.name} {flt.precision_label} "
                f"{flt.p50_ms} ms ({_short(flt)}): attention INT8 is {round(flt.p50_ms / int8.p50_ms, 3)}x the speed")

    return ["Attention MatMuls INT8 or float: " + pair(by["ort-int8"], by["ort-int8-attention-float"]) + "; "
            + pair(by["ov-int8"], by["ov-int8-attention-float"]) + "."]


def _int8_findings(rows: list[Row]) -> list[str]:
    from edgekd.export.pick import slower_int8

    int8 = [r for r in rows if r.precision == "int8"]
    out = ["INT8 against the same runtime's FP32 (what INT8 itself buys): " + ", ".join(
        f"{r.name} [{r.precision_label}] {r.vs_runtime_fp32}x ({_short(r)})" for r in int8) + "."]
    slow = slower_int8(candidates(rows, alternatives=True))
    if slow:
        out.append("Slower than FP32: " + "; ".join(f"{k} is {v}" for k, v in slow.items()) + ".")
    return out


def _device_default_findings(rows: list[Row]) -> list[str]:
    by = {r.name: r for r in rows}
    f32, dflt, i8, i8d = by["ov-fp32"], by["ov-fp32-default"], by["ov-int8"], by["ov-int8-default"]
    if dflt.runs == "fp32":  # as in `candidates`: the device chose f32, the pinned rows again
        return [f"OpenVINO's device default ran {dflt.runs} on this CPU (no hardware BF16): the `-default` rows are "
                f"{dflt.runs} rows, not BF16, and not candidates for the pick ({dflt.speedup_vs_torch}x / "
                f"{i8d.speedup_vs_torch}x eager vs {f32.speedup_vs_torch}x / {i8.speedup_vs_torch}x pinned: the same "
                "precision, so the gap is timing noise)."]
    return [f"OpenVINO's device default ran {dflt.runs}: {dflt.speedup_vs_torch}x eager ({_short(dflt)}) vs "
            f"{f32.speedup_vs_torch}x f32 pinned, that part of the speed is {dflt.runs}; INT8 with the rest at "
            f"{dflt.runs} {i8d.speedup_vs_torch}x ({_short(i8d)}) vs {i8.speedup_vs_torch}x with the rest f32."]


def _vit_ort_findings(rows: list[Row]) -> list[str]:
    """Issue 18 point 4: which ONNX Runtime INT8 form the ViT default should be."""
    ort = [r for r in rows if r.backend == "onnxruntime" and r.precision == "int8"]
    best = min((r for r in ort if r.verdict == "PASS"), key=lambda r: r.p50_ms, default=None)
    head = ("ViT on ONNX Runtime: no INT8 form passes verify." if best is None else
            f"ViT on ONNX Runtime, fastest INT8 form that passes: {best.name} ({best.config}): {best.precision_label}, "
            f"{best.p50_ms} ms, {best.speedup_vs_torch}x eager, {best.vs_runtime_fp32}x ORT FP32, agreement "
            f"{best.agreement} %, drop {best.accuracy_drop} pt.")
    return [head, "All ORT INT8 forms: " + "; ".join(
        f"{r.name} {r.precision_label} {r.p50_ms} ms {r.speedup_vs_torch}x eager ({_short(r)})" for r in ort) + "."]


def _short(r: Row) -> str:
    """The verdict without its reasons (the table has them), with the agreement."""
    return f"{r.verdict.split(':')[0]}, agreement {r.agreement} %"


def markdown(results: list[ModelResult], machine: dict, command: str, a: Args, out: str, load: tuple[float, float]) -> str:
    isa = ", ".join(k for k, v in machine["isa"].items() if v) or "none"
    lines = [
        f"# CPU export benchmark (batch 1): what to deploy on {machine['cpu_model']}", "", f"Command: `{command}`", "",
        f"Machine: {machine['cpu_model']}, {machine['affinity_cores']} cores ({isa}); threads={a.threads}; "
        f"runtimes {machine['runtimes']}. Load average at start/end: {load[0]:.1f} / {load[1]:.1f}"
        + (" -- the 2 cores were shared with other jobs, so absolute latencies are inflated; rows of one model were "
           "timed in interleaved rounds (best of the round medians), so their ratios are side by side." if max(load) > 1.5 else "."),
        *(["", f"This CPU's record sits beside [{FIRST_RECORD}.md]({FIRST_RECORD}.md) (AMD EPYC, AVX-512 VNNI + BF16)."]
          if out != FIRST_RECORD else []),
        "", f"p50 = best of {a.repeats} interleaved rounds' medians ({a.iters} calls each, after 10 warm-up); "
        "vs_runtime_fp32 = that backend's FP32 row p50 / the row's. " + verify_sentence(), "",
        "## Findings (generated from the rows below)", "",
    ]
    profile_path = a.results_dir / f"{PROFILE_RECORD}-{cpu_slug(machine['cpu_model'])}.json"
    profile = json.loads(profile_path.read_text()) if profile_path.exists() else None
    for m in results:
        lines += ["- " + " ".join(findings(m, profile))]
    lines += ["", "| " + " | ".join(COLS) + " |", "|" + "---|" * len(COLS)]
    lines += ["| " + " | ".join(str(getattr(r, c)) for c in COLS) + " |" for m in results for r in m.rows]
    return "\n".join(lines) + "\n"


def verify_sentence() -> str:
    """How the verdicts were reached, from the product's own defaults (so the text cannot drift from them)."""
    from edgekd.export.int8_share import FLOAT_FALLBACK_BELOW
    from edgekd.export.verify import Thresholds

    t = Thresholds()
    g = t.gate
    bars = "; ".join(f"{p}: drop <= {t.max_drop_pt[p]:g} pt, agreement >= {t.min_agreement_pct[p]:g} %"
                     for p in ("fp32", "bf16", "int8"))
    gate = (f"plus the paired per-class non-inferiority gate (per class, sensitivity and specificity within "
            f"{100 * g.sensitivity_margin:g} / {100 * g.specificity_margin:g} pt of PyTorch's, McNemar at {g.alpha:g}; "
            f"ECE up by <= {g.max_ece_increase:g}; INCONCLUSIVE is reported, not failed)" if g else "(no per-class gate)")
    return (f"Verify: the product's `edgekd.export.verify` vs PyTorch on the same test tensors, each row held to the "
            f"default thresholds of the precision it ran (`verified_as`: {bars}) {gate}. INT8 rows: the share of "
            f"their Conv/MatMul/Gemm MACs that runs in INT8 kernels, read from the runtime; under "
            f"{100 * FLOAT_FALLBACK_BELOW:g} % the verdict is FLOAT FALLBACK. The pick is `edgekd.export.pick.choose`'s: "
            "the fastest candidate that passes, never a FLOAT FALLBACK; the candidates are the rows `edgekd export` "
            "builds with its defaults; the other forms (another format, calibration, fusion or float set: "
            "`RowSpec.alternative`) are measured beside them, not picked.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from edgekd.export.bench import machine_info

    torch.set_num_threads(a.threads)
    machine = machine_info()
    out = a.out or f"{FIRST_RECORD}-{cpu_slug(machine['cpu_model'])}"
    isa = f"{machine['cpu_model']}: " + (", ".join(k for k, v in machine["isa"].items() if v) or "none")
    load0 = os.getloadavg()[0]
    a.work.mkdir(parents=True, exist_ok=True)
    runs = dict(kv.split("=", 1) for kv in a.runs)
    if a.models:
        manifests = fashion_manifests(a.work, a.probe_per_class, max(1, a.calib_size // 10), a.test_per_class)
        runs = {**{m: str(make_student(m, a.work, manifests, a.threads, a.steps, a.train_size)) for m in a.models}, **runs}
    results: list[ModelResult] = []
    for name, run in runs.items():
        print(f"== {name} ({run})", flush=True)
        results.append(bench_model(name, Path(run), a, isa, machine["cpu_model"]))
    command = "python benchmarks/export_cpu.py " + " ".join(shlex.quote(x) for x in argv)
    load = (load0, os.getloadavg()[0])
    record = {"command": command, "machine": machine, "torch": torch.__version__, "loadavg": load,
              "rows": [asdict(r) for m in results for r in m.rows], "models": {m.name: m.to_dict() for m in results}}
    write_results(a.results_dir, out, record, markdown(results, machine, command, a, out, load))
    print(f"wrote {a.results_dir / out}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
