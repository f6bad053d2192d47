"""GPU check: bf16 AMP training steps of ViT-T, ConvNeXt-F and Lite0 at 224 px, ours vs cm1 (paper Table 8).

    bash scripts/gpu_check.sh                       # one CUDA GPU, at most 8 minutes, nothing downloaded
    python benchmarks/gpu_check.py --steps 50 --out DIR

Without a CUDA GPU it prints one line, "skipped: no CUDA GPU (...)", writes nothing and exits 0.

Each (student, method) run is `accelerate launch` of this file's worker, which calls the real
trainer in-process (`edgekd.train.main`, one epoch, the student's paper preset with 224 px, bf16,
batch 64, otherwise the trainer's defaults) and then reads `torch.cuda.max_memory_allocated`: the trainer's results.json has the
step time (`step_seconds_mean`: forward and backward of S, the S' forward and the EMA update; data
loading and each epoch's first 2 steps excluded) but no GPU memory. Teachers are randomly
initialised (`model.teacher_pretrained=false`): nothing downloads, and a step costs the same
whatever the teacher's weights. Data: Fashion-MNIST where its Debian package is installed, else a
generated 10-class image folder; the trainer's transforms resize either to 224 px.
All runs share a time budget (--budget, 450 s), so the check ends within 8 minutes whatever happens.
Writes OUT/gpu_check.{json,md} (default benchmarks/results/); exit 1 if a run failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results"
SKIP = "skipped: no CUDA GPU (torch.cuda.is_available() is False)"
STUDENTS = {  # timm name -> the preset it trains with (teacher, tau, optimizer; edgekd/configs/)
    "vit_tiny_patch16_224": "vit_s_to_t",
    "convnext_femto": "convnext_t_to_f",
    "tf_efficientnet_lite0": "lite2_to_lite0_fmnist",
}
METHODS = ("cm1", "ours")
CLASSES = 10  # Fashion-MNIST's, and the generated folder's


@dataclass(frozen=True)
class Measurement:
    """One trainer run: what results.json and the CUDA allocator say about it."""

    student: str
    method: str
    batch_size: int
    steps: int
    step_seconds: float  # mean over timed optimizer steps
    peak_gpu_bytes: int  # torch.cuda.max_memory_allocated over the whole run
    train_seconds: float  # the epoch's wall clock, data loading included

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.step_seconds


@dataclass(frozen=True)
class Ratios:
    """ours / cm1 for one student (measured) or one dataset (paper Table 8)."""

    label: str
    time: float
    memory: float


@dataclass
class Report:
    command: str
    environment: dict[str, str]
    measurements: list[Measurement]
    failures: dict[str, str] = field(default_factory=dict)  # "student/method" -> the log's tail
    measured: list[Ratios] = field(default_factory=list)
    paper: list[Ratios] = field(default_factory=list)


def ours_over_cm1(cost: dict[tuple[str, str], tuple[float, float]]) -> list[Ratios]:
    """{(label, method): (time, memory)} -> the ours/cm1 ratios of every label that has both methods."""
    labels = dict.fromkeys(label for label, _ in cost)
    return [Ratios(k, cost[k, "ours"][0] / cost[k, "cm1"][0], cost[k, "ours"][1] / cost[k, "cm1"][1])
            for k in labels if (k, "ours") in cost and (k, "cm1") in cost]


def compare(report: Report) -> Report:
    """Fill in the measured ratios and the paper's (Table 8: whole 1% runs, ViT-S -> ViT-T)."""
    from edgekd.paper import paper_tables

    report.measured = ours_over_cm1({(m.student, m.method): (m.step_seconds, m.peak_gpu_bytes)
                                     for m in report.measurements})
    report.paper = ours_over_cm1({(c.row.split(" / ")[0], c.method): (c.time_s, c.memory_mib)
                                  for c in paper_tables().cost})
    return report


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}x" if values else "-"


def to_markdown(r: Report) -> str:
    env = r.environment
    lines = ["# GPU check: ours vs cm1 training steps (paper Table 8)", "", f"`{r.command}`", "",
             f"{env['gpu']}; torch {env['torch']}, timm {env['timm']}, accelerate {env['accelerate']}; bf16 AMP, "
             f"224x224, {env['setup']}", "",
             "| student | method | images/s | s/step | peak GPU memory (MiB) | epoch wall clock (s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m.student} | {m.method} | {m.images_per_second:.0f} | {m.step_seconds:.4f} | "
              f"{m.peak_gpu_bytes / 2**20:.0f} | {m.train_seconds:.1f} |" for m in r.measurements]
    lines += ["", "| ours / cm1 | time | memory |", "|---|---|---|"]
    lines += [f"| {x.label} | {x.time:.3f}x | {x.memory:.3f}x |" for x in r.measured]
    lines += [f"| paper Table 8, {x.label} (ViT-T, whole 1% run) | {x.time:.3f}x | {x.memory:.3f}x |" for x in r.paper]
    lines += [f"| **paper Table 8 range** | **{_span([x.time for x in r.paper])}** | "
              f"**{_span([x.memory for x in r.paper])}** |", "",
              "Measured: optimizer-step time and `torch.cuda.max_memory_allocated` (tensors only). The paper's "
              "time is a whole run's wall clock (evaluation and data loading included) and its MiB were read "
              "on an RTX A6000 by a method it does not name (nvidia-smi would add the CUDA context and the "
              "allocator's cache), so its ratios are diluted by costs both methods share."]
    lines += [f"- FAILED {k}: `{v.splitlines()[-1] if v else ''}` (full tail in gpu_check.json)"
              for k, v in r.failures.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# running: the orchestrator (one fresh accelerate-launched process per run) and its worker


def make_images(root: Path, per_class: int, size: int = 32, seed: int = 0) -> Path:
    """A class-per-folder PNG tree standing in for Fashion-MNIST where it is not installed (speed only)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(CLASSES):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (size, size), dtype=np.uint8) // 2 + 12 * k  # class k is brighter
            Image.fromarray(img).save(root / f"class{k}" / f"{i:04d}.png")
    return root


def dataset(tmp: Path, per_class: int) -> tuple[str, str]:
    """(data.root, what it is): Fashion-MNIST if installed, else a generated folder big enough for the run."""
    from edgekd.data.layouts import resolve_root
    from edgekd.errors import EdgeKDError

    try:
        return str(resolve_root("fashion-mnist")), "Fashion-MNIST (stand-in)"
    except EdgeKDError:  # its Debian package is absent (the GPU machine): the pixels do not matter for speed
        return str(make_images(tmp / "images", math.ceil(per_class / 0.8) + 2)), "a generated 10-class folder"


def trainer_argv(student: str, method: str, run_dir: Path, data: str, per_class: int, batch: int) -> list[str]:
    return [
        "--config", STUDENTS[student], f"run_dir={run_dir}", f"method={method}", f"model.student={student}",
        "model.image_size=224", "model.teacher_weights=null", "model.teacher_pretrained=false",
        "mixed_precision=bf16", f"data.root={data}", "data.fraction=1.0",
        f"data.train_limit={per_class}", "data.test_limit=2", "val_limit=null", "optim.epochs=1",
        # loader workers keep the epoch's wall clock down; the step time excludes data loading either way
        f"optim.batch_size={batch}", "trackers=none", "progress=false", "num_workers=4", "keep_checkpoints=1",
    ]


def worker(a: argparse.Namespace) -> None:
    """In the accelerate-launched process: train, then print the run's Measurement as a JSON line."""
    import torch

    from edgekd import train

    torch.cuda.reset_peak_memory_stats()
    run_dir = Path(a.run_dir)
    if train.main(trainer_argv(a.student, a.method, run_dir, a.data, a.per_class, a.batch)) != 0:
        raise SystemExit("the trainer returned non-zero")
    res = json.loads((run_dir / "results.json").read_text())
    if not res["device"].startswith("cuda"):
        raise SystemExit(f"the trainer ran on {res['device']}, not the GPU")
    m = Measurement(a.student, a.method, a.batch, res["steps"], res["step_seconds_mean"],
                    torch.cuda.max_memory_allocated(), res["train_seconds"])
    print("RESULT " + json.dumps(asdict(m)), flush=True)


def measure(student: str, method: str, a: argparse.Namespace, data: str, tmp: Path, timeout: float) -> Measurement:
    """One run in a fresh process, so each peak and each allocator starts clean; raises with the log's tail."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "bf16", "--dynamo_backend", "no", "--quiet"]
    cmd = [*launch, __file__, "--worker", "--student", student, "--method", method, "--data", data,
           "--run-dir", str(tmp / f"{student}_{method}"), "--per-class", str(a.per_class), "--batch", str(a.batch)]
    # its own process group: on a timeout the launcher, the trainer it started and its loader workers all stop
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                          start_new_session=True) as proc:
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RuntimeError(f"timed out after {timeout:.0f} s (what was left of --budget)") from None
    line = next((ln for ln in log.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(log[-3000:])
    return Measurement(**json.loads(line[len("RESULT "):]))


def environment(setup: str) -> dict[str, str]:
    import accelerate
    import timm
    import torch

    return {"gpu": torch.cuda.get_device_name(0), "cuda": str(torch.version.cuda), "torch": torch.__version__,
            "timm": timm.__version__, "accelerate": accelerate.__version__, "python": platform.python_version(),
            "setup": setup}


def write(report: Report, out: Path, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {**asdict(report), "seconds": round(seconds, 1),
            "measurements": [{**asdict(m), "images_per_second": m.images_per_second} for m in report.measurements]}
    (out / "gpu_check.json").write_text(json.dumps(data, indent=2) + "\n")
    md = to_markdown(report)
    (out / "gpu_check.md").write_text(md)
    print(md)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=50, help="optimizer steps per run (the first 2 are not timed)")
    p.add_argument("--batch", type=int, default=64, help="per-step batch (the paper presets' 64)")
    p.add_argument("--budget", type=int, default=450, help="seconds for all runs together (a run past it is stopped)")
    p.add_argument("--out", default=str(OUT), help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--student", "--method", "--data", "--run-dir"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--per-class", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_all(a: argparse.Namespace, data: str, tmp: Path, report: Report, deadline: float) -> None:
    """Every student with cm1 and ours, in alternating order (so drift hits both), within the shared budget."""
    for k, student in enumerate(STUDENTS):
        for method in METHODS if k % 2 == 0 else METHODS[::-1]:
            left = deadline - time.time()
            try:
                if left < 20:
                    raise RuntimeError(f"not run: the --budget of {a.budget} s was spent")
                m = measure(student, method, a, data, tmp, left)
            except RuntimeError as e:
                report.failures[f"{student}/{method}"] = str(e)
                print(f"{student} {method}: FAILED\n{str(e)[-1500:]}", flush=True)
                continue
            report.measurements.append(m)
            print(f"{student} {method}: {m.images_per_second:.0f} images/s, {m.peak_gpu_bytes / 2**20:.0f} MiB peak",
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.worker:
        worker(a)
        return 0
    import torch

    if not torch.cuda.is_available():
        print(SKIP)
        return 0
    t0 = time.time()
    a.per_class = math.ceil(a.steps * a.batch / CLASSES)
    with tempfile.TemporaryDirectory(prefix="edgekd_gpu_check_") as tmp:
        data, what = dataset(Path(tmp), a.per_class)
        setup = (f"batch {a.batch}, {CLASSES * a.per_class // a.batch} optimizer steps per run, one fresh process "
                 f"per run; data: {what}; teachers randomly initialised (speed only)")
        command = shlex.join(["bash", "scripts/gpu_check.sh", *(sys.argv[1:] if argv is None else argv)])
        report = Report(command, environment(setup), [])
        run_all(a, data, Path(tmp), report, t0 + a.budget)
    write(compare(report), Path(a.out), time.time() - t0)
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
