"""Fault injection: SIGKILL `edgekd train`, `export` and `sweep` at random points, rerun, judge what is left.

    .venv/bin/python benchmarks/faults.py                      # 20 trials per verb (see faults.md for the time)
    .venv/bin/python benchmarks/faults.py --quick --verbs train --results /tmp/faults   # 3 trials: a smoke run

Each trial starts the verb through the `edgekd` CLI in its own process group (a generated
4-class dataset of 96 PNGs, tiny ViT-S -> ViT-T at 32 px, 4 epochs, one torch thread), SIGKILLs
the whole group (a sweep's trainer children too) at a time drawn uniformly, seeded, over that
verb's measured uninterrupted duration, then reruns it the way a user would: train with the same
command plus `--resume`, export and sweep with the same command. The final state is
- complete_and_correct: train: the run folder's files (DEVELOPERS.md), model.json's sha256 equal
  to the weights', metrics.csv epochs 1..E each once, weights bit-identical to an uninterrupted
  run; export (`--target onnx`: FP32 and INT8 with the ORT accuracy-aware search, whose
  candidates are what could sit at a final path unverified): every artifact at a final path
  (directly in OUT/onnx, openvino, tensorrt) loads, carries this run's edgekd metadata and is
  listed as passed in report.json, and all the uninterrupted export verified is verified again;
  sweep (3 cells, `--launcher subprocess`): table.json lists every cell once and no failed cell,
  and every cell is a complete run folder bit-identical to the uninterrupted sweep's;
- refused_clearly: the rerun exited 2 with one `edgekd VERB: error: ...` line and no traceback,
  and left every file it found as it was;
- corrupt_or_lost: anything else, with what is wrong.
In every trial nothing earlier may be lost: the finished reference run (the export's source) and,
for sweep, every cell finished at the kill must still be there byte for byte after the rerun.
Export trials also record, right after the kill and before the rerun, every artifact at a final
path that no report.json lists as verified and that `edgekd predict` nevertheless runs (exit 0):
what a user who does not rerun would ship. Each command's TMPDIR is its trial folder, so an
internal error's traceback log stays with a kept (corrupt) trial.
Writes RESULTS/faults.{json,md} (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from edgekd.errors import USER_ERROR
from edgekd.export.artifacts import sha256_file

REPO = Path(__file__).resolve().parents[1]
EDGEKD = str(Path(sys.executable).with_name("edgekd"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}  # rich: unwrapped log lines
EPOCHS = 4
COMPLETE, REFUSED, CORRUPT = "complete_and_correct", "refused_clearly", "corrupt_or_lost"
CLASSES = (COMPLETE, REFUSED, CORRUPT)
VERBS = ("train", "export", "sweep")
RUN_FILES = ("config.yaml", "data/train.json", "data/test.json", "metrics.csv", "model.safetensors", "model.json",
             "results.json", "MODEL_CARD.md")
FINAL_DIRS = ("onnx", "openvino", "tensorrt")  # where report.json points and `predict` users look
ARTIFACT_SUFFIXES = (".onnx", ".xml", ".engine")
# 16 calibration images leave the rest of the 72 training images to the INT8 search's validation slice
EXPORT_FLAGS = ("--target", "onnx", "--calib-size", "16", "--threads", "1", "--drift-images", "0",
                "--bench-iters", "10")
SWEEP_FLAGS = ("--fractions", "1.0", "--methods", "ours", "cm1", "cm2", "--draws", "1", "--launcher", "subprocess")


# ---------------------------------------------------------------------------------------------
# judging a final state (pure functions of folders: tests/test_faults_quick.py)


def sha256s(root: Path) -> dict[str, str]:
    """Every file under root, relative path -> sha256: what must survive a rerun unchanged."""
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def changed(before: dict[str, str], root: Path) -> list[str]:
    """Files of `before` that are gone from root or differ now."""
    out = []
    for rel, digest in before.items():
        if not (root / rel).is_file():
            out.append(f"{rel} deleted")
        elif sha256_file(root / rel) != digest:
            out.append(f"{rel} changed")
    return out


def metrics_problems(path: Path, epochs: int) -> list[str]:
    """metrics.csv must hold epochs 1..E, each exactly once."""
    try:
        with open(path, newline="") as f:
            logged = Counter(int(row["epoch"]) for row in csv.DictReader(f))
    except (OSError, KeyError, TypeError, ValueError) as e:
        return [f"metrics.csv unreadable ({type(e).__name__}: {e})"]
    want = set(range(1, epochs + 1))
    problems = [f"metrics.csv logs epoch {e} {n} times" for e, n in sorted(logged.items()) if n > 1]
    problems += [f"metrics.csv misses epoch {e}" for e in sorted(want - set(logged))]
    problems += [f"metrics.csv logs epoch {e}, beyond {epochs}" for e in sorted(set(logged) - want)]
    return problems


def weight_problems(path: Path, reference: Path) -> list[str]:
    """Bit-identical to the uninterrupted run: same tensor names, dtypes, shapes and bytes."""
    from safetensors.numpy import load_file

    try:
        a, b = load_file(path), load_file(reference)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file is a finding, not a crash
        return [f"{path.name} unreadable ({type(e).__name__}: {e})"]
    if a.keys() != b.keys():
        return [f"{path.name}: tensor names differ from the uninterrupted run: {sorted(a.keys() ^ b.keys())[:4]}"]
    differ = [k for k in a if (a[k].dtype, a[k].shape, a[k].tobytes()) != (b[k].dtype, b[k].shape, b[k].tobytes())]
    if not differ:
        return []
    worst = max((float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in differ if a[k].shape == b[k].shape),
                default=float("nan"))
    return [f"{path.name}: {len(differ)} of {len(a)} tensors differ from the uninterrupted run (max |diff| {worst:.3g})"]


def run_problems(run_dir: Path, epochs: int, reference: Path | None) -> list[str]:
    """What keeps a run folder from being complete and correct ([] = nothing)."""
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        return [f"missing {', '.join(missing)}"]
    try:
        card = json.loads((run_dir / "model.json").read_text())
        results = json.loads((run_dir / "results.json").read_text())
    except ValueError as e:
        return [f"unreadable JSON ({e})"]
    problems = []
    if card.get("weights_sha256") != sha256_file(run_dir / "model.safetensors"):
        problems.append("model.json's weights_sha256 does not match model.safetensors")
    if results.get("epochs") != epochs:
        problems.append(f"results.json reports {results.get('epochs')} epochs, not {epochs}")
    problems += metrics_problems(run_dir / "metrics.csv", epochs)
    if reference is not None:
        problems += weight_problems(run_dir / "model.safetensors", reference / "model.safetensors")
    return problems


def final_artifacts(out: Path) -> list[Path]:
    """Artifact files at final paths: directly in OUT/onnx, openvino, tensorrt (not OUT/failed/, not staging)."""
    return sorted(p for d in FINAL_DIRS for p in (out / d).glob("*") if p.suffix in ARTIFACT_SUFFIXES and p.is_file())


def verified(report: dict, out: Path) -> dict[str, list[Path]]:
    """Artifacts report.json lists as passed -> their files (the model and its batch-1 latency variant)."""
    latency = {b.get("name"): b.get("latency_path") for b in report.get("build", [])}
    listed = {}
    for a in report.get("artifacts", []):
        if a.get("passed") is True and a.get("status", "ok") == "ok":
            files = [Path(f) for f in (a.get("path"), latency.get(a["name"])) if f]
            listed[a["name"]] = [f if f.is_absolute() else out / f for f in files]
    return listed


def artifact_problems(path: Path, weights_sha256: str) -> list[str]:
    """It loads in its runtime and carries the edgekd metadata of these weights."""
    from edgekd.export.metadata import read_metadata

    try:
        md = read_metadata(path)
    except Exception as e:  # noqa: BLE001 - any load failure is the finding
        return [f"does not load ({type(e).__name__}: {str(e)[:120]})"]
    if not md:
        return ["carries no edgekd metadata"]
    if md.get("weights_sha256") != weights_sha256:
        return [f"its metadata names weights {str(md.get('weights_sha256'))[:12]}, not this run's {weights_sha256[:12]}"]
    return []


def export_problems(out: Path, weights_sha256: str, expected: set[str]) -> list[str]:
    """Every artifact at a final path loads and is verified; everything verified before is verified again."""
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as e:
        return [f"report.json unreadable ({type(e).__name__})"]
    listed = verified(report, out)
    ok = {p.resolve() for paths in listed.values() for p in paths}
    problems = [f"report.json lists {name} as verified but {p} is missing"
                for name, paths in listed.items() for p in paths if not p.is_file()]
    for f in final_artifacts(out):
        rel = f.relative_to(out)
        if f.resolve() not in ok:
            problems.append(f"{rel} sits at a final path but report.json does not list it as verified")
        else:
            problems += [f"{rel} {p}" for p in artifact_problems(f, weights_sha256)]
    if expected - set(listed):
        gone = ", ".join(sorted(expected - set(listed)))
        problems.append(f"verified by the uninterrupted export, not after the rerun: {gone}")
    return problems


def _rel(path: str, out: Path) -> str:
    p = Path(path)
    return str(p.relative_to(out)) if p.is_absolute() and p.is_relative_to(out) else str(p)


def unverified_in_use(out: Path, image: Path, timeout: float) -> list[str]:
    """Right after the kill, before any rerun: artifacts at final paths that no report.json lists as
    verified, yet `edgekd predict` runs (exit 0). What a user who does not rerun would ship."""
    try:
        listed = verified(json.loads((out / "report.json").read_text()), out)
    except (OSError, ValueError):
        listed = {}
    ok = {p.resolve() for paths in listed.values() for p in paths}
    used = []
    for f in (f for f in final_artifacts(out) if f.resolve() not in ok):
        cmd = [EDGEKD, "predict", str(f), str(image), "--threads", "1", "--out", str(out.parent / "tmp" / "p.json")]
        if run_command(cmd, out.parent, None, timeout).rc == 0:
            used.append(str(f.relative_to(out)))
    return used


def sweep_problems(out: Path, cells: list[str], epochs: int, reference: Path | None) -> list[str]:
    """table.json lists every planned cell once and none failed; every cell is a complete run folder."""
    try:
        table = json.loads((out / "table.json").read_text())
    except (OSError, ValueError) as e:
        return [f"table.json unreadable ({type(e).__name__})"]
    listed = Counter(_rel(c.get("run_dir", ""), out) for c in table.get("cells", []))
    problems = [f"table.json lists {c} {listed[c]} times" for c in cells if listed[c] != 1]
    problems += [f"table.json lists {c}, which is not in the plan" for c in listed if c not in cells]
    problems += [f"failed cell {_rel(f.get('run_dir', ''), out)}: {f.get('error')}" for f in table.get("failed", [])]
    for c in cells:
        problems += [f"{c}: {p}" for p in run_problems(out / c, epochs, reference / c if reference else None)]
    return problems


def refusal_message(stderr: list[str]) -> str | None:
    """The one `edgekd VERB: error: ...` line of a clear refusal; None if not exactly one, or a traceback."""
    errors = [line for line in stderr if line.startswith("edgekd ") and ": error: " in line]
    if len(errors) != 1 or any("Traceback" in line for line in stderr):
        return None
    return errors[0]


def classify(rc: int | None, stderr: list[str], expected_rc: int, problems: list[str], touched: list[str],
             lost: list[str]) -> tuple[str, list[str]]:
    """(class, what is wrong). `touched`: files the rerun deleted or changed; `lost`: earlier results gone."""
    if lost:
        return CORRUPT, [*(f"earlier result lost: {x}" for x in lost), *problems]
    if rc is None:
        return CORRUPT, ["the rerun hung and was killed at the timeout"]
    if rc == USER_ERROR:
        why = [] if refusal_message(stderr) else [f"exit 2 without a one-line error: {' / '.join(stderr[-3:])[:300]}"]
        why += [f"refused, yet the rerun {x}" for x in touched]
        return (CORRUPT, why) if why else (REFUSED, [])
    if rc != expected_rc:
        problems = [f"the rerun exited {rc} (uninterrupted: {expected_rc}): {' / '.join(stderr[-2:])[:300]}", *problems]
    return (CORRUPT, problems) if problems else (COMPLETE, [])


# ---------------------------------------------------------------------------------------------
# what was on disk at the kill


def epochs_logged(path: Path) -> int:
    try:
        return max(0, len(path.read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


def train_phase(out: Path) -> str:
    if not out.is_dir():
        return "no run folder yet"
    if (out / "results.json").is_file():
        return "results.json written"
    if (out / "model.safetensors").is_file():
        return "finishing: model.safetensors written"
    n = epochs_logged(out / "metrics.csv")
    return f"after epoch {n} of {EPOCHS}" if n else "setup: no epoch logged"


def export_phase(out: Path) -> str:
    present = [str(p.relative_to(out)) for p in final_artifacts(out)] if out.is_dir() else []
    return (", ".join(present) or "no artifact") + (" + report.json" if (out / "report.json").is_file() else "")


def sweep_phase(out: Path, cells: list[str]) -> str:
    return f"{sum((out / c / 'results.json').is_file() for c in cells)} of {len(cells)} cells finished"


def finished_cells(out: Path, cells: list[str]) -> dict[str, str]:
    """The run files of cells finished at the kill: the rerun must keep them byte for byte."""
    return {f"{c}/{name}": sha256_file(out / c / name) for c in cells if (out / c / "results.json").is_file()
            for name in RUN_FILES if (out / c / name).is_file()}


# ---------------------------------------------------------------------------------------------
# running and killing


@dataclass
class Finished:
    rc: int | None  # None: SIGKILLed (by the trial, or at the timeout)
    seconds: float
    lines: list[tuple[float, str, str]]  # (seconds since start, "out" | "err", text)

    def stderr(self) -> list[str]:
        return [text for _, stream, text in self.lines if stream == "err" and text.strip()]

    def tail(self) -> str:
        texts = [text.strip() for _, _, text in self.lines if text.strip()]
        return texts[-1][:160] if texts else ""


def _collect(stream, name: str, t0: float, lines: list) -> None:
    for text in stream:
        lines.append((time.perf_counter() - t0, name, text.rstrip("\n")))


def running_in_group(pgid: int) -> int:
    """Processes of the group not yet dead (zombies waiting for a parent to reap them are dead)."""
    ps = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout
    return sum(1 for row in map(str.split, ps.splitlines()) if row[:1] == [str(pgid)] and not row[1].startswith("Z"))


def kill_group(p: subprocess.Popen) -> None:
    """SIGKILL the process group p leads (a sweep's trainer children with it) and wait until none runs."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    p.wait()
    deadline = time.monotonic() + 10
    while running_in_group(p.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def run_command(cmd: list[str], cwd: Path, kill_at: float | None, timeout: float) -> Finished:
    """Run cmd in its own process group; SIGKILL the whole group after `kill_at` s (or `timeout` s).

    Its temp folder is cwd/tmp, so an internal error's traceback log stays with the trial.
    """
    (cwd / "tmp").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env={**ENV, "TMPDIR": str(cwd / "tmp")}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    lines: list[tuple[float, str, str]] = []
    readers = [threading.Thread(target=_collect, args=(s, n, t0, lines), daemon=True)
               for s, n in ((p.stdout, "out"), (p.stderr, "err"))]
    for r in readers:
        r.start()
    try:
        rc: int | None = p.wait(timeout=timeout if kill_at is None else min(kill_at, timeout))
    except subprocess.TimeoutExpired:
        rc = None
    seconds = time.perf_counter() - t0
    kill_group(p)  # also strays of a command that exited by itself
    p.wait()
    for r in readers:
        r.join(timeout=10)
    return Finished(rc, seconds, lines)


# ---------------------------------------------------------------------------------------------
# the three verbs


@dataclass
class Verb:
    """How to start, continue and judge one verb; every callable takes the folder it writes (OUT)."""

    name: str
    first: Callable[[Path], list[str]]  # the run that is killed
    rerun: Callable[[Path], list[str]]  # how a user continues
    problems: Callable[[Path], list[str]]  # final state -> what is wrong ([] = complete and correct)
    phase: Callable[[Path], str]  # what the folder shows at the kill
    finished: Callable[[Path], dict[str, str]]  # at the kill: finished results that must survive the rerun
    in_use: Callable[[Path], list[str]]  # at the kill: unverified artifacts `predict` accepts
    reference: Finished  # the uninterrupted run
    reference_problems: list[str] = field(default_factory=list)

    @property
    def timeout(self) -> float:
        return max(120.0, 8 * self.reference.seconds)


@dataclass
class Setup:
    work: Path
    config: Path
    run: Path  # the finished reference training run: train's reference, export's source
    run_files: dict[str, str]  # its files' sha256, checked after every trial
    trained: Finished  # how that run went (its duration is train's)


def make_dataset(root: Path) -> Path:
    """4 class folders x 24 PNGs of 32 px; each class brightens one colour channel (learnable in 4 epochs)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["alpha", "beta", "gamma", "delta"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(24):
            arr = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            arr[:, :, k % 3] += 120 + 60 * (k // 3)
            Image.fromarray(arr).save(root / name / f"{name}_{i}.png")
    return root


def write_config(path: Path, data_root: Path) -> Path:
    """Tiny ViT-S (4 blocks) -> ViT-T (2 blocks) at 32 px, method ours (S' is in the checkpoint), one thread."""
    import yaml

    vit = {"img_size": 32, "patch_size": 8}
    cfg = {"seed": 0, "num_threads": 1, "trackers": "none", "progress": False, "val_limit": None,
           "data": {"root": str(data_root), "test_size": 0.25, "fraction": 1.0},
           "model": {"teacher": "vit_small_patch16_224", "teacher_pretrained": False, "teacher_weights": None,
                     "teacher_kwargs": {**vit, "depth": 4}, "student": "vit_tiny_patch16_224",
                     "student_kwargs": {**vit, "depth": 2}, "image_size": 32},
           "optim": {"epochs": EPOCHS, "batch_size": 8, "warmup_epochs": 0, "lr": 1e-3},
           "method": {"name": "ours"}}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def uninterrupted(cmd: list[str], work: Path) -> Finished:
    done = run_command(cmd, work, None, 1800)
    if done.rc is None:
        raise SystemExit(f"the uninterrupted run hung: {' '.join(cmd)}")
    print(f"reference {cmd[1]}: exit {done.rc} in {done.seconds:.1f} s", flush=True)
    return done


def make_setup(work: Path) -> Setup:
    config = write_config(work / "tiny.yaml", make_dataset(work / "data"))
    run = work / "reference" / "train"
    ref = uninterrupted([EDGEKD, "train", "--config", str(config), f"run_dir={run}"], work)
    if ref.rc != 0:
        raise SystemExit(f"the reference training failed ({ref.rc}): {ref.stderr()[-5:]}")
    return Setup(work, config, run, sha256s(run), ref)


def train_verb(s: Setup) -> Verb:
    def cmd(out: Path) -> list[str]:
        return [EDGEKD, "train", "--config", str(s.config), f"run_dir={out}"]

    problems = partial(run_problems, epochs=EPOCHS, reference=s.run)
    return Verb("train", cmd, lambda out: [*cmd(out), "--resume"], problems, train_phase, lambda out: {},
                lambda out: [], s.trained, problems(s.run))


def export_verb(s: Setup) -> Verb:
    def cmd(out: Path) -> list[str]:
        return [EDGEKD, "export", "--run", str(s.run), "--out", str(out), *EXPORT_FLAGS]

    out = s.work / "reference" / "export"
    ref = uninterrupted(cmd(out), s.work)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    sha = json.loads((s.run / "model.json").read_text())["weights_sha256"]
    problems = partial(export_problems, weights_sha256=sha, expected=set(verified(report, out)))
    image = next(iter(sorted((s.work / "data").rglob("*.png"))))
    in_use = partial(unverified_in_use, image=image, timeout=120)
    return Verb("export", cmd, cmd, problems, export_phase, lambda o: {}, in_use, ref, problems(out))


def sweep_verb(s: Setup) -> Verb:
    def cmd(out: Path) -> list[str]:
        return [EDGEKD, "sweep", "--config", str(s.config), "--out", str(out), *SWEEP_FLAGS]

    out = s.work / "reference" / "sweep"
    ref = uninterrupted(cmd(out), s.work)
    table = json.loads((out / "table.json").read_text()) if (out / "table.json").is_file() else {}
    cells = [_rel(c["run_dir"], out) for c in table.get("cells", []) + table.get("failed", [])]
    problems = partial(sweep_problems, cells=cells, epochs=EPOCHS, reference=out)
    return Verb("sweep", cmd, cmd, problems, partial(sweep_phase, cells=cells), partial(finished_cells, cells=cells),
                lambda out: [], ref, problems(out) if cells else ["the uninterrupted sweep wrote no table.json"])


# ---------------------------------------------------------------------------------------------
# trials


@dataclass
class Trial:
    index: int
    kill_at_s: float
    first_rc: int | None  # None: killed as planned; else it ended on its own before the kill time
    phase: str  # on disk right after the kill
    log_tail: str  # its last output line before the kill: what was running
    unverified_in_use: list[str]  # right after the kill: unverified artifacts at final paths that `predict` ran
    rerun_rc: int | None
    rerun_seconds: float
    verdict: str
    problems: list[str]
    refusal: str | None  # the one-line message of a refused rerun


def run_trial(verb: Verb, s: Setup, index: int, kill_at: float) -> Trial:
    """Start, SIGKILL at kill_at, rerun, judge; the trial folder stays only when the state is corrupt."""
    trial = s.work / verb.name / f"trial{index:02d}"
    trial.mkdir(parents=True)
    out = trial / "out"
    first = run_command(verb.first(out), trial, kill_at, verb.timeout)
    phase, finished, in_use = verb.phase(out), verb.finished(out), verb.in_use(out)
    before = sha256s(out)
    again = run_command(verb.rerun(out), trial, None, verb.timeout)
    lost = changed(s.run_files, s.run) + changed(finished, out)
    verdict, problems = classify(again.rc, again.stderr(), verb.reference.rc, verb.problems(out),
                                 changed(before, out), lost)
    refusal = refusal_message(again.stderr()) if verdict == REFUSED else None
    result = Trial(index, round(kill_at, 2), first.rc, phase, first.tail(), in_use, again.rc, round(again.seconds, 1),
                   verdict, problems, refusal)
    if verdict != CORRUPT:
        shutil.rmtree(trial)
    return result


def run_verb(verb: Verb, s: Setup, trials: int, seed: int) -> list[Trial]:
    rng = random.Random(f"{seed}:{verb.name}")  # a verb's kill times do not depend on the other verbs run
    results = []
    for i in range(trials):
        t = run_trial(verb, s, i, rng.uniform(0.0, verb.reference.seconds))
        print(f"{verb.name} trial {i:2d}: kill at {t.kill_at_s:5.1f} s ({t.phase}; {t.log_tail[:60]!r}) -> rerun "
              f"exit {t.rerun_rc}: {t.verdict} {'; '.join(t.problems)[:200]}", flush=True)
        results.append(t)
    return results


# ---------------------------------------------------------------------------------------------
# results


def machine() -> str:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} logical cores (load average {os.getloadavg()[0]:.1f} at the end), "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, torch {version('torch')}, "
            f"onnxruntime {version('onnxruntime')}")


def code_version() -> str:
    """The commit of the edgekd the CLI imports (PYTHONPATH may point it at another checkout than this file's)."""
    import edgekd

    root = Path(edgekd.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return f"edgekd from {root} (not a git checkout)"
    return head + (" + uncommitted changes" if git("status", "--porcelain") else "")


def shown(cmd: list[str], work: Path) -> str:
    return " ".join(cmd).replace(str(work), "WORK").replace(EDGEKD, "edgekd")


def conclusions(result: dict) -> list[str]:
    """Sentences computed from the counts: the headline, then every corrupt or lost state, then the refusals."""
    verbs = result["verbs"]
    total = sum(len(v["trials"]) for v in verbs.values())
    bad = [(name, t) for name, v in verbs.items() for t in v["trials"] if t["verdict"] == CORRUPT]
    per_verb = ", ".join(f"{name} {len(v['trials'])}" for name, v in verbs.items())
    lines = [f"**{len(bad)} corrupt or lost state{'s' * (len(bad) != 1)} in {total} trials** ({per_verb}); "
             + ", ".join(f"{sum(v['counts'][c] for v in verbs.values())} {c.replace('_', ' ')}" for c in CLASSES) + "."]
    lines += [f"- {name} trial {t['index']} (killed at {t['kill_at_s']} s, {t['phase']}; rerun exit {t['rerun_rc']}): "
              + "; ".join(t["problems"]) for name, t in bad]
    lost = sum(any(p.startswith("earlier result lost") for p in t["problems"]) for _, t in bad)
    lines.append("- Earlier results (the finished reference run; for sweep, the cells finished at the kill): "
                 + ("byte-identical after every trial." if not lost else f"lost or changed in {lost} trial(s)."))
    if "export" in verbs:
        trials = verbs["export"]["trials"]
        used = [f"trial {t['index']} ({', '.join(t['unverified_in_use'])})" for t in trials if t["unverified_in_use"]]
        lines.append(f"- Right after the kill, before any rerun, `edgekd predict` ran an artifact that no report.json "
                     f"lists as verified in {len(used)} of {len(trials)} export trials" + (f": {'; '.join(used)}." if used else "."))
    refusals = Counter(t["refusal"] for v in verbs.values() for t in v["trials"] if t["refusal"])
    lines += [f"- Refused {n}x: `{msg}`" for msg, n in refusals.items()]
    early = Counter(t["first_rc"] for v in verbs.values() for t in v["trials"] if t["first_rc"] is not None)
    lines += [f"- {n} trial(s) ended on their own with exit {rc} before their kill time." for rc, n in early.items()]
    lines += [f"- The uninterrupted {name} run itself: " + "; ".join(v["reference"]["problems"])
              for name, v in verbs.items() if v["reference"]["problems"]]
    return lines


def _ended(rc: int | None) -> str:
    return "" if rc is None else f" (ended first, exit {rc})"


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def write_results(result: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faults.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Fault injection: kill -9 during `edgekd train`, `export` and `sweep`, then rerun", "",
             f"Command: `{result['command']}` ({result['wall_minutes']} min)", "",
             f"Machine: {result['machine']}. Code: {result['code']}.", "",
             "Method (benchmarks/faults.py's docstring): each trial SIGKILLs the verb's whole process group at a time "
             f"drawn uniformly over its uninterrupted duration (seed {result['seed']}), reruns it as a user would, and "
             "judges the final state: complete and correct, refused clearly (exit 2, one line, nothing touched), or "
             "corrupt or lost.", "",
             "| verb | uninterrupted s | trials | " + " | ".join(c.replace("_", " ") for c in CLASSES) + " | command; rerun |",
             "|---|---|---|" + "---|" * len(CLASSES) + "---|"]
    for name, v in result["verbs"].items():
        lines.append(f"| {name} | {v['reference']['seconds']} | {len(v['trials'])} | "
                     + " | ".join(str(v["counts"][c]) for c in CLASSES) + f" | `{v['command']}`; `{v['rerun']}` |")
    lines += ["", "## Conclusions", "", *conclusions(result), ""]
    for name, v in result["verbs"].items():
        lines += [f"<details><summary>{name}: every trial ({len(v['trials'])})</summary>", "",
                  "| # | kill at s | on disk at the kill | last output line before the kill | unverified, yet predict ran it | "
                  "rerun exit | rerun s | class | what is wrong |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {t['index']} | {t['kill_at_s']}{_ended(t['first_rc'])} | {_cell(t['phase'])} | "
                  f"{_cell(t['log_tail'])} | {', '.join(t['unverified_in_use'])} | {t['rerun_rc']} | {t['rerun_seconds']} | "
                  f"{t['verdict']} | "
                  f"{_cell('; '.join(t['problems']) or t['refusal'] or '')} |" for t in v["trials"]]
        lines += ["", "</details>", ""]
    (folder / "faults.md").write_text("\n".join(lines))
    return folder / "faults.md"


def summary(verb: Verb, done: list[Trial], work: Path) -> dict:
    return {"command": shown(verb.first(work / "OUT"), work), "rerun": shown(verb.rerun(work / "OUT"), work),
            "reference": {"seconds": round(verb.reference.seconds, 1), "rc": verb.reference.rc,
                          "problems": verb.reference_problems},
            "counts": {c: sum(t.verdict == c for t in done) for c in CLASSES}, "trials": [asdict(t) for t in done]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="kill -9 trials per verb")
    p.add_argument("--quick", action="store_true", help="3 trials per verb (a smoke run)")
    p.add_argument("--verbs", nargs="+", choices=VERBS, default=list(VERBS))
    p.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results", help="where faults.{json,md} go")
    a = p.parse_args(argv)
    trials = 3 if a.quick else a.trials
    work = Path(a.work or tempfile.mkdtemp(prefix="edgekd_faults_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise SystemExit(f"--work {work}: not empty; give a new folder (trials would mix with old ones)")
    t0 = time.perf_counter()
    s = make_setup(work)
    verbs = {}
    for name in a.verbs:
        verb = {"train": train_verb, "export": export_verb, "sweep": sweep_verb}[name](s)
        verbs[name] = summary(verb, run_verb(verb, s, trials, a.seed), work)
    argv_shown = " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": f".venv/bin/python benchmarks/faults.py {argv_shown}".strip(), "machine": machine(),
              "code": code_version(), "seed": a.seed, "trials_per_verb": trials,
              "wall_minutes": round((time.perf_counter() - t0) / 60, 1), "verbs": verbs}
    md = write_results(result, a.results)
    corrupt = sum(v["counts"][CORRUPT] for v in verbs.values())
    print("\n".join(conclusions(result)) + f"\n-> {md}")
    if corrupt:
        print(f"corrupt trial folders kept under {work}")
    else:
        shutil.rmtree(work)
    return 1 if corrupt else 0


if __name__ == "__main__":
    raise SystemExit(main())
