"""Train a small student: dual weight selection + EMA self-distillation, its variants and baselines.

    accelerate launch edgekd/train.py --config edgekd/configs/lite2_to_lite0_fmnist.yaml run_dir=runs/x
    edgekd train --config lite2_to_lite0_fmnist method=cm1 data.fraction=0.01
    python edgekd/train.py --config X --resume            # continue a killed run (same run_dir)

Reads top to bottom like Accelerate's examples: parse config -> build data -> build students
for the method -> `accelerator.prepare` -> train loop (S' forward without grad, EMA after every
optimizer step) -> evaluate S on the test split -> save the run directory (DEVELOPERS.md).

Methods (paper section 4): ours, ours-swap (S and S' subsets exchanged), ours-cskd, ours-tfkd,
cm1 (single weight selection), cm2/cm3/cm4 (timm default / Xavier / Kaiming init), kd (classic
distillation from the teacher fine-tuned on the same data), pretrained (reference: the
student's own ImageNet weights, CE only).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as a script (`accelerate launch edgekd/train.py`): import the package, not the sibling
    # files (edgekd/evaluate.py would shadow the `evaluate` library for accelerate's probes).
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import argparse
import csv
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config import TrainConfig, load_config, save_config
from edgekd.ema import freeze, unwrap
from edgekd.errors import EdgeKDError

SELF_DISTILL = ("ours", "ours-swap", "ours-cskd", "ours-tfkd")
METRIC_FIELDS = ["epoch", "step", "lr", "train_loss", "train_ce", "train_kd", "val_accuracy", "val_macro_f1",
                 "epoch_seconds"]


# ---------------------------------------------------------------------------------------------
# config


def parse_args(argv: list[str] | None) -> TrainConfig:
    p = argparse.ArgumentParser(
        prog="edgekd train",
        description="Train a student (EMA self-distillation and baselines). Overrides: key=value, "
        "e.g. method=cm1 optim.lr=1e-3 data.fraction=0.01 mixed_precision=bf16.",
    )
    p.add_argument("--config", help="YAML file or preset name (edgekd/configs/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints (same as resume=true)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    a = p.parse_args(argv)
    overrides = list(a.overrides) + (["resume=true"] if a.resume else [])
    config = a.config
    if config is None:  # `--resume run_dir=X` alone re-reads the run's own config
        run_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("run_dir=")), None)
        if run_dir and (Path(run_dir) / "config.yaml").is_file():
            config = str(Path(run_dir) / "config.yaml")
    cfg = load_config(config, overrides)
    if a.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        raise SystemExit(0)
    return cfg


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class Data:
    classes: list[str]
    preprocess: Any  # PreprocessConfig
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset | None
    test: torch.utils.data.Dataset
    train_labels: list[int]


def build_data(cfg: TrainConfig, run_dir: Path, accelerator) -> Data:
    """Split + subset + manifests (written once, reused on resume), then torch datasets.

    Validation (for best.*): up to `val_limit` images per class from the training split that
    are NOT in the training subset, so the subset stays exactly the paper's fraction and the
    test split is never used for model selection. With `data.cache_dir`, every part reads from
    a decoded-image cache (built once by the main process, then memory-mapped).
    """
    from edgekd.data import Manifest, cap_per_class, make_split, prepare_data
    from edgekd.data.cache import DecodedCache
    from edgekd.data.torchdata import ImageDataset, eval_transform, train_transform
    from edgekd.shared.preprocess import resolve_preprocess

    with accelerator.main_process_first():
        prepared = prepare_data(cfg.data, run_dir)
    pre = resolve_preprocess(cfg.model.student, image_size=cfg.model.image_size, **cfg.model.student_kwargs)
    index = prepared.index
    parts = {"train": prepared.manifests["train"], "test": prepared.manifests["test"]}
    if cfg.val_limit:
        split = make_split(index, cfg.data.split, cfg.data.test_size, cfg.data.seed)
        pool = sorted(set(split.train) - set(prepared.train_ids))
        val_ids = cap_per_class(index, pool, cfg.val_limit, cfg.data.seed + 1)
        if val_ids:
            parts["val"] = Manifest.from_index(index, val_ids, meta={"part": "val"})
            if accelerator.is_main_process:
                parts["val"].save(run_dir / "data" / "val.json")

    def dataset(part: str, transform) -> ImageDataset:
        cache = None
        if cfg.data.cache_dir:
            with accelerator.main_process_first():  # one process decodes, the others open the file
                cache = DecodedCache.build(parts[part], pre, cfg.data.cache_dir,
                                           progress=accelerator.is_local_main_process and cfg.progress)
        return ImageDataset(parts[part], None, transform, cache)

    train = dataset("train", train_transform(pre, cfg.aug))
    val = dataset("val", eval_transform(pre)) if "val" in parts else None
    return Data(prepared.classes, pre, train, val, dataset("test", eval_transform(pre)), list(train.targets))


# ---------------------------------------------------------------------------------------------
# models


@dataclass
class Students:
    student: nn.Module  # S: trained, evaluated, saved
    aux: nn.Module | None  # S': EMA / snapshot target, never trained
    teacher: nn.Module | None  # kd only: the teacher to fine-tune then distil from
    selection: dict[str, Any] | None  # weight-selection summary for results.json


def build_students(cfg: TrainConfig, num_classes: int) -> Students:
    """Initialize S (and S' / the kd teacher) the way `method` prescribes."""
    from edgekd.models import create_student, load_teacher
    from edgekd.selection import select_dual, select_single

    m, name = cfg.model, cfg.method.name
    kw = dict(m.student_kwargs)

    def teacher(**extra) -> nn.Module:
        return load_teacher(m.teacher, weights=m.teacher_weights, pretrained=m.teacher_pretrained,
                            **m.teacher_kwargs, **extra)

    def summary(rep) -> dict[str, Any]:
        return {"strategy": rep.strategy, "seed": rep.seed, "roles": rep.roles, "teacher": rep.teacher,
                "tensors": len(rep.tensors), "classifier_keys": rep.classifier_keys}

    if name in SELF_DISTILL:
        t = teacher()
        s, s_aux = create_student(m.student, num_classes, "timm", **kw), create_student(m.student, num_classes, "timm", **kw)
        rep = select_dual(t, s, s_aux, m.strategy, cfg.seed)
        del t
        if name == "ours-swap":  # paper 4.3: the auxiliary subset trains, the main subset teaches
            s, s_aux = s_aux, s
        if name == "ours-tfkd" and cfg.method.tfkd_mode == "self":  # stage 1 trains S' with CE
            return Students(s, None, s_aux.train(), summary(rep))
        if (name == "ours-tfkd" and cfg.method.tfkd_mode == "reg") or (
                name == "ours-cskd" and cfg.method.cskd_teacher == "self"):
            s_aux = None  # the virtual teacher / S itself needs no second network
        return Students(s, freeze(s_aux) if s_aux is not None else None, None, summary(rep))
    if name == "cm1":
        t = teacher()
        s = create_student(m.student, num_classes, "timm", **kw)
        rep = select_single(t, s, m.strategy, cfg.seed)
        return Students(s, None, None, summary(rep))
    if name in ("cm2", "cm3", "cm4"):
        init = {"cm2": "timm", "cm3": "xavier", "cm4": "kaiming"}[name]
        return Students(create_student(m.student, num_classes, init, **kw), None, None, None)
    if name == "pretrained":
        weights = m.teacher_weights if m.teacher_weights == "lite-package" else None
        s = load_teacher(m.student, weights=weights, pretrained=True, num_classes=num_classes, **kw).train()
        return Students(s, None, None, None)
    if name == "kd":
        t = teacher()
        s = create_student(m.student, num_classes, "timm", **kw)
        rep = select_single(t, s, m.strategy, cfg.seed) if cfg.method.kd_student_init == "select" else None
        t.reset_classifier(num_classes)
        return Students(s, None, t.train(), summary(rep) if rep else None)
    raise EdgeKDError(f"unknown method {name!r}")


# ---------------------------------------------------------------------------------------------
# optimization


def build_optimizer(model: nn.Module, lr: float, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norm/scale vectors (timm's filter_bias_and_bn)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.optim.betas))


def cosine_with_warmup(optimizer, cfg: TrainConfig, updates_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from warmup_lr, then cosine to min_lr, stepped once per optimizer update.

    Not passed to `accelerator.prepare` (which would step it once per process); registered for
    checkpointing instead, so it resumes exactly.
    """
    o = cfg.optim
    total = max(1, o.epochs * updates_per_epoch)
    warm = min(total - 1, int(round(o.warmup_epochs * updates_per_epoch)))

    def factor(step: int) -> float:
        if step < warm:
            lr = o.warmup_lr + (o.lr - o.warmup_lr) * step / max(1, warm)
        else:
            t = (step - warm) / max(1, total - warm)
            lr = o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))
        return lr / o.lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Progress:
    """Epochs/steps done and the best validation score: checkpointed with the run."""

    def __init__(self) -> None:
        self.epoch, self.step, self.best, self.best_epoch, self.teacher_done = 0, 0, -math.inf, -1, False

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


# ---------------------------------------------------------------------------------------------
# checkpoints and outputs


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Newest `checkpoints/epoch_NNNN` with its COMPLETE marker (a run killed mid-save is skipped)."""
    done = sorted(p.parent for p in (run_dir / "checkpoints").glob("epoch_*/COMPLETE"))
    return done[-1] if done else None


def save_checkpoint(accelerator, run_dir: Path, epoch: int, keep: int) -> None:
    path = run_dir / "checkpoints" / f"epoch_{epoch:04d}"
    if accelerator.is_main_process:
        (path / "COMPLETE").unlink(missing_ok=True)  # never trust a half-overwritten checkpoint
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (path / "COMPLETE").write_text(f"{epoch}\n")
        done = sorted(p.parent for p in (run_dir / "checkpoints").glob("epoch_*/COMPLETE"))
        for old in done[: max(0, len(done) - max(1, keep))]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def write_metrics_row(path: Path, row: dict[str, Any], keep_until: int | None = None) -> None:
    """Append one epoch; `keep_until` first drops rows past a resumed epoch (no duplicates)."""
    rows = []
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if keep_until is None or int(r["epoch"]) <= keep_until]
    rows.append({k: row.get(k, "") for k in METRIC_FIELDS})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        w.writeheader()
        w.writerows(rows)


def sidecar(cfg: TrainConfig, data: Data, **extra: Any) -> dict[str, Any]:
    return {
        "architecture": cfg.model.student,
        "model_kwargs": dict(cfg.model.student_kwargs),
        "num_classes": len(data.classes),
        "classes": list(data.classes),
        "preprocess": data.preprocess.to_dict(),
        "test_manifest": "data/test.json",
        "method": cfg.method.name,
        **extra,
    }


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flat scalar dict for trackers (TensorBoard hparams accept only scalars/strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def reset_peak_rss() -> int | None:
    """Start a fresh peak-RSS window (Linux: clear_refs 5 resets VmHWM); returns the current RSS in bytes.

    Freed heap (e.g. the teacher after selection) is first returned to the OS so the training
    peak is not hidden behind the selection peak. Why: results.json reports training memory.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _proc_status_bytes("VmRSS")


def _proc_status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _trackers(cfg: TrainConfig) -> list[str]:
    names = [t.strip() for t in cfg.trackers.split(",") if t.strip() and t.strip() != "none"]
    if "tensorboard" in names:
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            names.remove("tensorboard")
    return names


# ---------------------------------------------------------------------------------------------
# the run: everything the loop needs, built once


@dataclass
class Run:
    cfg: TrainConfig
    accelerator: Any
    data: Data
    built: Students
    student: nn.Module  # S, prepared (possibly DDP-wrapped)
    aux: nn.Module | None  # S'
    teacher: nn.Module | None  # kd teacher / Tf-KD_self stage-1 network, prepared
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    progress: Progress
    train_ds: torch.utils.data.Dataset
    train_loader: Any
    val_loader: Any
    test_loader: Any
    aux_bn: str  # "batch" or "running", resolved from method.aux_bn
    ramp_steps: int  # optimizer steps of the KD ramp-up (0 = none)
    total_steps: int  # optimizer steps of the whole run
    resumed_from: Path | None = None

    @property
    def method(self) -> str:
        return self.cfg.method.name

    @property
    def show(self) -> bool:
        return self.accelerator.is_local_main_process and self.cfg.progress


def make_accelerator(cfg: TrainConfig, run_dir: Path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    # in-process sweeps and tests call main() repeatedly: let each run choose its mixed precision
    # (resets accelerate's per-run singleton only; the process group, if any, is kept)
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.optim.grad_accum,
        log_with=_trackers(cfg) or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
        # data order = f(seed, epoch): identical on every rank and after a resume
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        step_scheduler_with_optimizer=False,
    )
    if cfg.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        accelerator.print("warning: Accelerate runs fp16 on CPU as plain fp32; use mixed_precision=bf16 on CPU")
    return accelerator


def resolve_aux_bn(cfg: TrainConfig, aux: nn.Module | None) -> str:
    """`method.aux_bn=auto`: batch statistics for BatchNorm students, eval mode otherwise."""
    from edgekd.ema import has_batchnorm

    if cfg.method.aux_bn != "auto":
        return cfg.method.aux_bn
    return "batch" if aux is not None and has_batchnorm(aux) else "running"


def make_loaders(cfg: TrainConfig, data: Data, world: int):
    from edgekd import losses

    train_ds = losses.ClassPairDataset(data.train, data.train_labels, cfg.seed) \
        if cfg.method.name == "ours-cskd" else data.train
    bs = cfg.optim.batch_size
    # drop a ragged last batch (BatchNorm fails on a batch of 1) unless the set is smaller than a batch
    train = torch.utils.data.DataLoader(train_ds, batch_size=bs, shuffle=True, drop_last=len(train_ds) >= bs * world,
                                        num_workers=cfg.num_workers)

    def eval_loader(ds):
        return torch.utils.data.DataLoader(ds, batch_size=cfg.optim.eval_batch_size, shuffle=False,
                                           num_workers=cfg.num_workers) if ds is not None else None

    return train_ds, train, eval_loader(data.val), eval_loader(data.test)


def prepare_run(cfg: TrainConfig, accelerator, run_dir: Path) -> Run:
    """Data, students, optimizer and schedule through `accelerator.prepare`, then resume if asked."""
    from edgekd.config import rampup_steps

    data = build_data(cfg, run_dir, accelerator)
    train_ds, train_loader, val_loader, test_loader = make_loaders(cfg, data, accelerator.num_processes)
    built = build_students(cfg, len(data.classes))
    optimizer = build_optimizer(built.student, cfg.optim.lr, cfg)
    student, optimizer, train_loader, test_loader = accelerator.prepare(built.student, optimizer, train_loader,
                                                                        test_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    aux, teacher = built.aux, built.teacher
    if aux is not None:  # S' is not trained, so not DDP-wrapped: same weights on every rank by construction
        aux.to(accelerator.device)
        accelerator.register_for_checkpointing(aux)
    if teacher is not None:
        teacher = accelerator.prepare(teacher)
    updates = math.ceil(len(train_loader) / cfg.optim.grad_accum)
    scheduler = cosine_with_warmup(optimizer, cfg, updates)
    run = Run(cfg, accelerator, data, built, student, aux, teacher, optimizer, scheduler, Progress(), train_ds,
              train_loader, val_loader, test_loader, resolve_aux_bn(cfg, aux),
              rampup_steps(cfg.method.kd_rampup, cfg.optim.epochs, updates), cfg.optim.epochs * updates)
    accelerator.register_for_checkpointing(scheduler)
    accelerator.register_for_checkpointing(run.progress)
    resume_or_start_fresh(run, run_dir)
    warn_if_budget_is_short(run)
    return run


def warn_if_budget_is_short(run: Run) -> None:
    """Say so when the run is short next to the EMA horizon 1/(1 - beta), where S' lags far behind S.

    benchmarks/results/short_budget.md measures what that costs against cm1 (~25 steps).
    """
    horizon = 1.0 / max(1e-9, 1.0 - run.cfg.method.beta)
    if run.aux is not None and run.method in ("ours", "ours-swap", "ours-cskd") and run.total_steps < 10 * horizon:
        run.accelerator.print(
            f"warning: {run.total_steps} optimizer steps is short for EMA self-distillation: S' averages the last "
            f"~{horizon:.0f} steps of S, so its targets lag far behind; on a 24-step budget ours trailed cm1 "
            "(benchmarks/results/short_budget.md). Train longer, or compare with method=cm1.")


def resume_or_start_fresh(run: Run, run_dir: Path) -> None:
    accelerator = run.accelerator
    run.resumed_from = latest_checkpoint(run_dir) if run.cfg.resume else None
    if run.resumed_from is not None:
        accelerator.load_state(str(run.resumed_from))
        accelerator.print(f"resumed from {run.resumed_from} (epoch {run.progress.epoch}, step {run.progress.step})")
    elif run.cfg.resume:
        accelerator.print(f"resume: no complete checkpoint under {run_dir / 'checkpoints'}; starting fresh")
    if accelerator.is_main_process and run.resumed_from is None:  # fresh run: no stale epochs or checkpoints
        (run_dir / "metrics.csv").unlink(missing_ok=True)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------------------
# one step, one epoch


def train_teacher(run: Run) -> None:
    """kd: fine-tune the teacher on the subset; Tf-KD_self stage 1: train S' normally. CE, constant lr.

    Done once (checkpointed with the run), then the network is frozen as S's teacher.
    """
    from tqdm.auto import tqdm

    from edgekd import losses
    from edgekd.ema import freeze

    mc = run.cfg.method
    epochs, lr = (mc.kd_teacher_epochs, mc.kd_teacher_lr) if run.method == "kd" else \
        (mc.tfkd_teacher_epochs or run.cfg.optim.epochs, run.cfg.optim.lr)
    if not run.progress.teacher_done:
        t_opt = run.accelerator.prepare(torch.optim.AdamW(run.teacher.parameters(), lr=lr,
                                                          weight_decay=run.cfg.optim.weight_decay))
        run.teacher.train()
        for e in range(epochs):
            run.train_loader.set_epoch(10_000 + e)  # its own data order, distinct from the student's
            for batch in tqdm(run.train_loader, desc=f"teacher {e + 1}/{epochs}", disable=not run.show, leave=False):
                loss = losses.ce_loss(run.teacher(batch[0]), batch[1], run.cfg.optim.label_smoothing)
                run.accelerator.backward(loss)
                t_opt.step()
                t_opt.zero_grad(set_to_none=True)
        run.progress.teacher_done = True
    freeze(unwrap(run.teacher))


def distill_targets(run: Run, batch) -> torch.Tensor | None:
    """Logits of the network S learns from, computed without gradient; None for CE-only methods."""
    from contextlib import nullcontext

    from edgekd.ema import batch_statistics

    x = batch[0]
    if run.method == "ours-cskd":  # the partner images, predicted by S' or by S itself
        net, x = (run.aux if run.aux is not None else unwrap(run.student)), batch[2]
    elif run.teacher is not None:
        net = run.teacher
    elif run.aux is not None:
        net = run.aux
    else:
        return None
    norm = batch_statistics(net) if net is run.aux and run.aux_bn == "batch" else nullcontext()
    with torch.no_grad(), run.accelerator.autocast(), norm:
        return net(x)


def step_loss(run: Run, logits: torch.Tensor, targets: torch.Tensor | None, y: torch.Tensor):
    """Eq. 5 (with the KD ramp-up weight), Tf-KD_reg, or plain CE; returns (loss, parts)."""
    from edgekd import losses

    mc, ls = run.cfg.method, run.cfg.optim.label_smoothing
    w = losses.rampup_weight(run.progress.step, run.ramp_steps, mc.kd_rampup_shape)
    if targets is not None:
        return losses.skd_loss(logits, targets, y, mc.alpha, mc.tau, ls, kd_weight=w)
    if run.method == "ours-tfkd":  # reg: virtual teacher
        return losses.tfkd_reg_loss(logits, y, mc.alpha, mc.tau, mc.tfkd_correct_prob, ls, kd_weight=w)
    ce = losses.ce_loss(logits, y, ls)
    return ce, {"ce": ce.item(), "kd": 0.0}


def train_step(run: Run, batch) -> dict[str, float]:
    """Forward S (and the target network), backward, optimizer step, then the EMA of S into S' (eq. 7)."""
    from edgekd.ema import ema_update

    acc = run.accelerator
    with acc.accumulate(run.student):
        targets = distill_targets(run, batch)
        with acc.autocast():
            logits = run.student(batch[0])
        loss, parts = step_loss(run, logits, targets, batch[1])
        acc.backward(loss)
        if acc.sync_gradients and run.cfg.optim.grad_clip:
            acc.clip_grad_norm_(run.student.parameters(), run.cfg.optim.grad_clip)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    if acc.sync_gradients:
        run.scheduler.step()
        run.progress.step += 1
        if run.aux is not None and run.method in ("ours", "ours-swap", "ours-cskd"):
            ema_update(run.aux, run.student, run.cfg.method.beta)  # eq. 7, after every optimizer step
    return {"loss": loss.item(), **parts}


def train_epoch(run: Run, epoch: int, timing: dict[str, list[float]]) -> dict[str, Any]:
    """One pass over the subset; returns the epoch's mean loss terms over all ranks' batches."""
    from tqdm.auto import tqdm

    from edgekd import losses
    from edgekd.ema import copy_weights

    run.train_loader.set_epoch(epoch)
    if isinstance(run.train_ds, losses.ClassPairDataset):
        run.train_ds.set_epoch(epoch)
    if run.method == "ours-tfkd" and run.aux is not None and epoch > 0:
        copy_weights(run.aux, run.student)  # TF-KD snapshot: last epoch's S is this epoch's teacher
    run.student.train()
    sums = torch.zeros(4, dtype=torch.float64)
    bar = tqdm(total=len(run.train_loader), desc=f"epoch {epoch + 1}/{run.cfg.optim.epochs} [{run.method}]",
               disable=not run.show, leave=False)
    for i, batch in enumerate(run.train_loader):
        t_step, t_cpu = time.perf_counter(), time.process_time()
        parts = train_step(run, batch)
        sums += torch.tensor([parts["loss"], parts["ce"], parts["kd"], 1.0], dtype=torch.float64)
        if i >= 2:  # skip warm-up iterations in the step-time figures
            timing["wall"].append(time.perf_counter() - t_step)
            timing["cpu"].append(time.process_time() - t_cpu)  # robust to other jobs on the machine
        bar.update(1)
        if i % max(1, run.cfg.log_every) == 0:
            bar.set_postfix(loss=f"{parts['loss']:.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    bar.close()
    total = run.accelerator.reduce(sums.to(run.accelerator.device), "sum")
    n = max(1.0, float(total[3]))
    return {"epoch": epoch + 1, "step": run.progress.step, "lr": run.scheduler.get_last_lr()[0],
            "train_loss": float(total[0]) / n, "train_ce": float(total[1]) / n, "train_kd": float(total[2]) / n}


def end_epoch(run: Run, run_dir: Path, row: dict[str, Any]) -> None:
    """Validation, best.* by validation accuracy (or training loss), metrics row, checkpoint."""
    from edgekd.evaluate import compute_metrics, predict
    from edgekd.models import save_student

    acc, epoch = run.accelerator, row["epoch"]
    if run.val_loader is not None:
        vp, vt = predict(run.student, run.val_loader, acc)
        vm = compute_metrics(vt, vp, run.data.classes)
        row.update(val_accuracy=vm["accuracy"], val_macro_f1=vm["macro_f1"])
        score = vm["accuracy"]
    else:  # no held-out pool (fraction 1.0 without limits): lowest training loss
        score = -row["train_loss"]
    run.progress.epoch = epoch
    if score > run.progress.best:
        run.progress.best, run.progress.best_epoch = score, epoch
        if acc.is_main_process:
            save_student(unwrap(run.student), run_dir / "best.safetensors",
                         sidecar(run.cfg, run.data, epoch=epoch, selected_by=_selected_by(run)))
    if acc.is_main_process:
        write_metrics_row(run_dir / "metrics.csv", row, keep_until=epoch - 1)
    acc.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
    acc.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    save_checkpoint(acc, run_dir, epoch, run.cfg.keep_checkpoints)


def _selected_by(run: Run) -> str:
    return "val_accuracy" if run.val_loader is not None else "train_loss"


# ---------------------------------------------------------------------------------------------
# the end: test split, run directory


def save_networks(run: Run, run_dir: Path) -> dict[str, Any]:
    """S (model.*), and beside it S' (aux.*) and the teacher (teacher.*) for side-by-side explanations."""
    from edgekd.models import save_student

    cfg, data = run.cfg, run.data
    save_student(unwrap(run.student), run_dir / "model.safetensors", sidecar(cfg, data, epoch=run.progress.epoch))
    if run.aux is not None:
        save_student(run.aux, run_dir / "aux.safetensors", sidecar(cfg, data, role="aux"))
    if run.teacher is not None:
        arch = (cfg.model.student, cfg.model.student_kwargs) if run.method == "ours-tfkd" else \
            (cfg.model.teacher, cfg.model.teacher_kwargs)
        save_student(unwrap(run.teacher), run_dir / "teacher.safetensors", sidecar(
            cfg, data, role="teacher", architecture=arch[0], model_kwargs=dict(arch[1])))
    return json.loads((run_dir / "model.json").read_text())


def finish(run: Run, run_dir: Path, stats: dict[str, Any]) -> None:
    """Evaluate S on the test split (all ranks), then write results, plots and the model card."""
    from edgekd.ema import checksum
    from edgekd.evaluate import compute_metrics, predict, save_confusion_matrix, write_model_card

    acc = run.accelerator
    y_pred, y_true = predict(run.student, run.test_loader, acc)
    test = compute_metrics(y_true, y_pred, run.data.classes)

    def gathered(model: nn.Module | None) -> list[float]:
        value = checksum(model) if model is not None else 0.0
        return acc.gather(torch.tensor([value], dtype=torch.float64, device=acc.device)).tolist()

    sums_aux, sums_s = gathered(run.aux), gathered(unwrap(run.student))
    if not acc.is_main_process:
        return
    meta = save_networks(run, run_dir)
    p = run.progress
    results = {
        "method": run.method, "test": test, "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
        "best": {"epoch": p.best_epoch, "selected_by": _selected_by(run), "score": p.best},
        "n_train": len(run.data.train), "n_val": len(run.data.val) if run.data.val is not None else 0,
        "n_test": len(run.data.test), "world_size": acc.num_processes, "device": str(acc.device),
        "distributed_type": str(acc.distributed_type), "mixed_precision": run.cfg.mixed_precision,
        "aux_bn": run.aux_bn if run.aux is not None else None, "kd_rampup_steps": run.ramp_steps,
        "aux_checksums": sums_aux, "student_checksums": sums_s,
        "num_params": sum(q.numel() for q in unwrap(run.student).parameters()),
        "epochs": p.epoch, "steps": p.step, **stats,
        "resumed_from": str(run.resumed_from) if run.resumed_from else None,
        "selection": run.built.selection, "classes": run.data.classes,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    save_confusion_matrix(test["confusion_matrix"], run.data.classes, run_dir / "confusion_matrix.png",
                          title=f"{run.cfg.model.student} [{run.method}] acc {test['accuracy']:.3f}")
    write_model_card(run_dir, run.cfg.to_dict(), results, meta)
    acc.print(f"test accuracy {test['accuracy']:.4f} macro-F1 {test['macro_f1']:.4f} -> {run_dir}")


# ---------------------------------------------------------------------------------------------
# the script


def main(argv: list[str] | None = None) -> int:
    from accelerate.utils import set_seed

    # 1. config and accelerator ------------------------------------------------------------------
    cfg = parse_args(argv)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run_dir = Path(cfg.run_dir)
    accelerator = make_accelerator(cfg, run_dir)
    set_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()

    # 2. data, students, optimizer (resumed from the last complete checkpoint if asked) -----------
    run = prepare_run(cfg, accelerator, run_dir)
    accelerator.init_trackers("edgekd", config=_flat(cfg.to_dict()))

    # 3. kd / Tf-KD_self: train the teacher first, then freeze it ---------------------------------
    if run.teacher is not None:
        train_teacher(run)

    # 4. train S ----------------------------------------------------------------------------------
    rss_train_start = reset_peak_rss()
    t_start, timing = time.perf_counter(), {"wall": [], "cpu": []}
    first_epoch = run.progress.epoch
    for epoch in range(first_epoch, cfg.optim.epochs):
        if cfg.stop_after is not None and epoch - first_epoch >= cfg.stop_after:
            accelerator.print(f"stop_after={cfg.stop_after}: stopping after epoch {epoch} as if killed")
            accelerator.end_training()
            return 0
        t_epoch = time.perf_counter()
        row = train_epoch(run, epoch, timing)
        row["epoch_seconds"] = time.perf_counter() - t_epoch
        end_epoch(run, run_dir, row)

    # 5. evaluate S on the test split and save the run directory -----------------------------------
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    finish(run, run_dir, {
        "train_seconds": time.perf_counter() - t_start, "step_seconds_mean": mean(timing["wall"]),
        "step_cpu_seconds_mean": mean(timing["cpu"]), "rss_train_start_bytes": rss_train_start,  # main process
        "peak_rss_train_bytes": _proc_status_bytes("VmHWM"),
    })
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except EdgeKDError as e:  # same contract as the `edgekd` CLI: message, no traceback, exit 2
        print(f"edgekd train: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
