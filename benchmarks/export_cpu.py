"""CPU export benchmark: PyTorch eager FP32 vs ORT FP32/INT8 vs OpenVINO FP32/BF16/INT8, side by side.

Batch 1, 2 threads, on this machine. Models: ViT-T and ConvNeXt-F at 224 px (timm init: their
ImageNet teachers for weight selection need the Hugging Face hub, which this offline box cannot
reach; ConvNeXt with layer-scale 1.0 so residual branches are on), trained end to end for
`--steps` steps (batch 16) at 224 px on Fashion-MNIST train images (the STAND-IN dataset; 28x28
grey resized to 224 RGB) so accuracy/agreement are measured on trained networks; and any trainer
run directory via `--runs NAME=RUN_DIR` (e.g. the quickstart's Lite0, trained AND served at 64 px).
INT8 artifacts come from the same accuracy-aware code as `edgekd export` (ORT keep-float search,
NNCF quantize_with_accuracy_control) on a validation slice of the TRAINING manifest; calibration:
class-stratified training images; accuracy/agreement: test images vs PyTorch on the same tensors.
OpenVINO rows come twice: f32 pinned (every non-INT8 op in FP32: the INT8 claim) and the device
default (BF16 for non-INT8 ops on AVX-512 BF16 / AMX CPUs: a BF16 claim). The CPU model and ISA
flags are recorded on every row.

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
    runs: list[str]
    test_limit: int


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
    ap.add_argument("--out", default="export_cpu", help="results/NAME.json + .md")
    a = ap.parse_args(argv)
    return Args([m for m in a.models.split(",") if m], a.threads, a.repeats, a.iters, a.probe_per_class, a.calib_size,
                a.test_per_class, a.work, a.out, a.steps, a.results_dir, a.train_size, a.runs, a.test_limit)


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
    emulated, it made a ViT-T step about 3x slower than FP32 on an AVX-512 CPU without it."""
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
    from edgekd.models import load_teacher, save_student
    from edgekd.shared.card import StudentCard
    from edgekd.models import resolve_preprocess

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


def build_artifacts(run: Path, calib_size: int, threads: int) -> tuple[dict[str, Path], dict]:
    """Same modules as `edgekd export`: ONNX (+b1), accuracy-aware ORT INT8 (CPU default form) and
    the same float nodes in the other forms, OpenVINO FP32 + accuracy-aware NNCF INT8."""
    from dataclasses import asdict, replace

    from edgekd.export import openvino_export as ovx
    from edgekd.export.int8_accuracy import AccuracyTarget, ValidationSet
    from edgekd.export.onnx_export import export_onnx
    from edgekd.export.ort_quant import (FUSION_MODES, OrtQuantConfig, arch_family, fusion_mode, quantize_accuracy_aware,
                                         quantize_onnx)
    from edgekd.export.source import TorchRunner, resolve_run
    from edgekd.export.verify import Thresholds

    src = resolve_run(run)
    out = run / "bench_export"
    arts = {"onnx": out / "onnx" / "model.onnx", "onnx_b1": out / "onnx" / "model.b1.onnx",
            "ort_int8": out / "onnx" / "model.int8.onnx", "ort_s8s8": out / "onnx" / "model.int8.s8s8.onnx",
            "ov_fp32": out / "openvino" / "model.fp32.xml", "ov_int8": out / "openvino" / "model.int8.xml"}
    vit = arch_family(src.architecture) == "vit"
    other_fusions = [m for m in FUSION_MODES if vit and m != fusion_mode(OrtQuantConfig())]
    if vit:
        arts.update({f"ort_fusions_{m}": out / "onnx" / f"model.int8.fusions-{m}.onnx" for m in other_fusions})
    if all(p.exists() for p in arts.values()) and (out / "build.json").exists():
        return arts, json.loads((out / "build.json").read_text())
    torch_runner = TorchRunner(src.weights, threads)
    export_onnx(torch_runner.model, src.meta, out / "onnx")
    calib, val = _calibration(src, calib_size, torch_runner)
    target = AccuracyTarget.from_thresholds(Thresholds(), len(val))
    cfg = OrtQuantConfig.for_cpu()
    info: dict = {"calib_images": len(calib), "validation_images": len(val), "target": str(target)}
    t = time.perf_counter()
    ort_int8 = quantize_accuracy_aware(arts["onnx"], arts["ort_int8"], calib, val, src.architecture, cfg, target, threads)
    info["ort_int8"] = asdict(ort_int8)
    info["ort_int8_s"] = time.perf_counter() - t
    same = replace(cfg, exclude_nodes=tuple(ort_int8.searched_float_nodes))
    info["ort_s8s8"] = asdict(quantize_onnx(arts["onnx"], arts["ort_s8s8"], calib, src.architecture,
                                            replace(same, quant_format="qdq_s8s8")))
    for m in other_fusions:
        info[f"ort_fusions_{m}"] = asdict(quantize_onnx(arts["onnx"], arts[f"ort_fusions_{m}"], calib, src.architecture,
                                                        replace(same, transformer_fusions=m)))
    ovm = ovx.convert(arts["onnx"])
    ovx.save_ir(ovm.clone(), arts["ov_fp32"], "fp32")
    t = time.perf_counter()
    q, ov_int8 = ovx.quantize_accuracy_aware(ovm.clone(), calib, val, src.architecture, target, threads=threads)
    info["ov_int8"] = asdict(ov_int8)
    ovx.save_ir(q, arts["ov_int8"], "int8")
    info["ov_int8_s"] = time.perf_counter() - t
    (out / "build.json").write_text(json.dumps(info, indent=1, default=str))
    return arts, info


def _calibration(src, calib_size: int, torch_runner) -> tuple:
    """Calibration + validation slice (training manifest only), as in `edgekd export`."""
    from edgekd.export.calibration import CalibrationConfig, build_calibration, build_validation
    from edgekd.export.int8_accuracy import ValidationSet

    pp = src.meta["preprocess"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calib = build_calibration(str(src.train_manifest), pp, CalibrationConfig(size=calib_size))
    images = build_validation(str(src.train_manifest), pp, 2000, calib.paths)
    ref = np.concatenate([torch_runner.predict(images.x[i : i + 32]) for i in range(0, len(images), 32)])
    return calib, ValidationSet(images, ref)


def backends(arts: dict[str, Path], threads: int) -> list[tuple[str, str, str, object, object]]:
    """(backend, precision, config, latency runner (static batch 1), verify runner (dynamic))."""
    from edgekd.export.runner import RunnerConfig
    from edgekd.export.runtimes import open_runner

    def pair(key: str, static_key: str | None = None, ovp: str | None = "f32") -> tuple[object, object]:
        mk = lambda k, b: open_runner(arts[k], RunnerConfig(threads=threads, static_batch=b, inference_precision=ovp))  # noqa: E731
        return mk(static_key or key, 1), mk(key, None)

    rows = [("onnxruntime", "fp32", "static b1 ONNX, ORT_ENABLE_ALL", *pair("onnx", "onnx_b1")),
            ("onnxruntime", "int8", "QOperator U8S8 (CPU default), accuracy-aware", *pair("ort_int8")),
            ("onnxruntime", "int8", "QDQ S8S8, same float nodes", *pair("ort_s8s8"))]
    for key in (k for k in arts if k.startswith("ort_fusions_")):
        rows.append(("onnxruntime", "int8", f"QOperator U8S8, transformer fusions: {key[12:]}, same float nodes", *pair(key)))
    return rows + [
        ("openvino", "fp32", "f32 pinned", *pair("ov_fp32")),
        ("openvino", "bf16-default", "device default (BF16 where the CPU has it)", *pair("ov_fp32", ovp=None)),
        ("openvino", "int8", "NNCF accuracy-aware, f32 pinned (INT8 + FP32 rest)", *pair("ov_int8")),
        ("openvino", "int8-default", "NNCF accuracy-aware, device default (INT8 + BF16 rest)", *pair("ov_int8", ovp=None)),
    ]


def bench_model(name: str, run: Path, a: Args, isa: str) -> list[dict]:
    from edgekd.export.batches import iter_batches, manifest_items
    from edgekd.export.bench import BenchConfig, time_calls
    from edgekd.export.source import TorchRunner, resolve_run
    from edgekd.export.verify import Thresholds, verify

    arts, info = build_artifacts(run, a.calib_size, a.threads)
    src = resolve_run(run)
    torch_runner = TorchRunner(src.weights, a.threads)
    rows = backends(arts, a.threads)
    items = manifest_items(src.test_manifest, src.meta["classes"])[: a.test_limit]
    results = verify({f"{b}|{p}|{n}": (vr, "int8" if p.startswith("int8") else "fp32") for b, p, n, _, vr in rows}, torch_runner,
                     iter_batches(items, src.meta["preprocess"], 32), Thresholds.parse(["fp32.agreement=0", "fp32.drop=100"]))
    vres = {r.name: r for r in results}
    x1 = next(iter_batches(items[:1], src.meta["preprocess"], 1))[0]
    timed = [("pytorch", "fp32", "eager, inference_mode", torch_runner)] + [(b, p, n, lr) for b, p, n, lr, _ in rows]
    cfg = BenchConfig(warmup=10, iters=a.iters, max_seconds=60)
    medians: dict[int, list[float]] = {i: [] for i in range(len(timed))}
    for _ in range(a.repeats):  # interleaved rounds: every backend sees the same background load
        for i, (_, _, _, r) in enumerate(timed):
            medians[i].append(float(np.median(time_calls(lambda: r.predict(x1), cfg))))
    best = {i: min(v) for i, v in medians.items()}
    size = src.meta["preprocess"]["input_size"][-1]
    out = []
    for i, (b, p, n, r) in enumerate(timed):
        v = vres.get(f"{b}|{p}|{n}")
        out.append({
            "model": name, "label": MODELS.get(name, {}).get("label", name), "input_px": size, "backend": b, "precision": p,
            "config": n, "isa": isa, "p50_ms": round(best[i], 3), "p50_ms_rounds": [round(m, 3) for m in medians[i]],
            "speedup_vs_torch": round(best[0] / best[i], 3),
            "accuracy": round(v.accuracy if v else results[0].reference_accuracy, 2),
            "accuracy_drop": round(v.drop_pt, 2) if v else 0.0, "agreement": round(v.agreement_pct, 2) if v else 100.0,
            "max_abs_diff": float(f"{v.max_abs_diff:.3g}") if v else 0.0, "cosine": round(v.mean_cosine, 5) if v else 1.0,
            "passes_verify": (v.passed if p.startswith("int8") else None) if v else None, "test_images": len(items),
            "size_mb": round(_size(r), 2), "training": src.meta.get("note", "trainer run " + str(run)),
        })
    out[0]["build"] = info
    print_rows(out)
    return out


def _size(r: object) -> float:
    from edgekd.export.artifacts import artifact_files

    p = Path(str(getattr(r, "path", "")))
    return sum(f.stat().st_size for f in artifact_files(p)) / 1e6 if p.is_file() else 0.0


COLS = ("label", "input_px", "backend", "precision", "p50_ms", "speedup_vs_torch", "accuracy", "accuracy_drop", "agreement",
        "passes_verify", "size_mb", "config", "isa")


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        print("  ".join(f"{r[c]}" for c in COLS), flush=True)


def _row(rows: list[dict], backend: str, precision: str, config_prefix: str = "") -> dict | None:
    return next((r for r in rows if r["backend"] == backend and r["precision"] == precision
                 and r["config"].startswith(config_prefix)), None)


def findings(rows: list[dict], label: str) -> list[str]:
    """Prose for one model, generated from its rows: which speed comes from INT8, which from BF16."""
    m = [r for r in rows if r["label"] == label]
    ov8, ov8d, bf16 = _row(m, "openvino", "int8"), _row(m, "openvino", "int8-default"), _row(m, "openvino", "bf16-default")
    ort = [r for r in m if r["backend"] == "onnxruntime" and r["precision"] == "int8"]
    fusions = m[0].get("build", {}).get("ort_int8", {}).get("fusions")
    best_ort = max((r for r in ort if r["passes_verify"]), key=lambda r: r["speedup_vs_torch"], default=None)
    ref = m[0]
    out = [f"**{label}** ({ref['input_px']} px, test accuracy {ref['accuracy']} %; {ref['training']})."]
    out.append(f"OpenVINO INT8 with every other op pinned to FP32: {ov8['speedup_vs_torch']}x eager "
               f"({'passes' if ov8['passes_verify'] else 'FAILS'} verify: agreement {ov8['agreement']} %, drop {ov8['accuracy_drop']} pt) "
               f"-> the INT8 claim vs the 3x target: {'met' if ov8['speedup_vs_torch'] >= 3 and ov8['passes_verify'] else 'not met'}. "
               f"With the device default (BF16 for the non-INT8 ops) {ov8d['speedup_vs_torch']}x; the BF16 default alone, "
               f"no INT8, gives {bf16['speedup_vs_torch']}x: that part of the speed is BF16, not INT8.")
    ov32, ort32 = _row(m, "openvino", "fp32"), _row(m, "onnxruntime", "fp32")
    out.append(f"INT8 against the same runtime in FP32 (the part of the speed-up INT8 itself brings): OpenVINO "
               f"{round(ov32['p50_ms'] / ov8['p50_ms'], 2)}x (f32 pinned both), ONNX Runtime "
               f"{round(ort32['p50_ms'] / ort[0]['p50_ms'], 2)}x (default INT8 form); the rest of the ratio vs eager is the "
               f"runtime's FP32 graph execution ({ov32['speedup_vs_torch']}x / {ort32['speedup_vs_torch']}x eager).")
    if fusions is not None:
        out.append(f"ORT INT8 as `edgekd export` builds it fuses {', '.join(fusions) or 'nothing'} first.")
    if best_ort:
        out.append(f"ONNX Runtime INT8, fastest form that passes verify: {best_ort['config']}, {best_ort['speedup_vs_torch']}x eager "
                   f"(2.5x target: {'met' if best_ort['speedup_vs_torch'] >= 2.5 else 'not met'}); all ORT INT8 forms: "
                   + ", ".join(f"{r['config']} {r['speedup_vs_torch']}x" for r in ort) + ".")
    else:
        out.append("No ONNX Runtime INT8 form passes verify here: " + ", ".join(f"{r['config']} agreement {r['agreement']} %" for r in ort) + ".")
    return out


def markdown(rows: list[dict], machine: dict, command: str, a: Args, load: tuple[float, float]) -> str:
    isa = ", ".join(k for k, v in machine["isa"].items() if v) or "none"
    lines = [
        "# CPU export benchmark (batch 1)", "", f"Command: `{command}`", "",
        f"Machine: {machine['cpu_model']}, {machine['affinity_cores']} cores ({isa}); threads={a.threads}; "
        f"runtimes {machine['runtimes']}. Load average at start/end: {load[0]:.1f} / {load[1]:.1f}"
        + (" -- the 2 cores were shared with other jobs, so absolute latencies are inflated; rows of one model were "
           "timed in interleaved rounds (best of the round medians), so their ratios are side by side." if max(load) > 1.5 else "."),
        "", f"p50 = best of {a.repeats} interleaved rounds' medians ({a.iters} calls each, after 10 warm-up). Verify: int8 "
        "passes at agreement >= 98 % and drop <= 1 pt vs PyTorch on the same test tensors.", "",
        "## Findings (generated from the rows below)", "",
    ]
    for label in dict.fromkeys(r["label"] for r in rows):
        lines += ["- " + " ".join(findings(rows, label))]
    lines += ["", "| " + " | ".join(COLS) + " |", "|" + "---|" * len(COLS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from edgekd.export.bench import machine_info

    torch.set_num_threads(a.threads)
    machine = machine_info()
    isa = f"{machine['cpu_model']}: " + (", ".join(k for k, v in machine["isa"].items() if v) or "none")
    load0 = os.getloadavg()[0]
    a.work.mkdir(parents=True, exist_ok=True)
    runs = dict(kv.split("=", 1) for kv in a.runs)
    if a.models:
        manifests = fashion_manifests(a.work, a.probe_per_class, max(1, a.calib_size // 10), a.test_per_class)
        runs = {**{m: str(make_student(m, a.work, manifests, a.threads, a.steps, a.train_size)) for m in a.models}, **runs}
    rows: list[dict] = []
    for name, run in runs.items():
        print(f"== {name} ({run})", flush=True)
        rows += bench_model(name, Path(run), a, isa)
    command = "python benchmarks/export_cpu.py " + " ".join(shlex.quote(x) for x in argv)
    load = (load0, os.getloadavg()[0])
    res = a.results_dir
    res.mkdir(parents=True, exist_ok=True)
    (res / f"{a.out}.json").write_text(json.dumps({"command": command, "machine": machine, "torch": torch.__version__,
                                                   "loadavg": load, "rows": rows}, indent=1, default=str))
    (res / f"{a.out}.md").write_text(markdown(rows, machine, command, a, load))
    print(f"wrote {res / a.out}.json/.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
