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
from edgekd.ema import checksum, copy_weights, ema_update, freeze, unwrap
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
    test split is never used for model selection.
    """
    from edgekd.data import Manifest, cap_per_class, make_split, prepare_data
    from edgekd.data.torchdata import ImageDataset, eval_transform, train_transform
    from edgekd.preprocess import resolve_preprocess

    with accelerator.main_process_first():
        prepared = prepare_data(cfg.data, run_dir)
    pre = resolve_preprocess(cfg.model.student, image_size=cfg.model.image_size, **cfg.model.student_kwargs)
    index = prepared.index
    val_ids: list[int] = []
    if cfg.val_limit:
        split = make_split(index, cfg.data.split, cfg.data.test_size, cfg.data.seed)
        pool = sorted(set(split.train) - set(prepared.train_ids))
        val_ids = cap_per_class(index, pool, cfg.val_limit, cfg.data.seed + 1)
        if accelerator.is_main_process and val_ids:
            Manifest.from_index(index, val_ids, meta={"part": "val"}).save(run_dir / "data" / "val.json")
    train = ImageDataset(prepared.manifests["train"], None, train_transform(pre))
    test = ImageDataset(prepared.manifests["test"], None, eval_transform(pre))
    val = ImageDataset(index, val_ids, eval_transform(pre)) if val_ids else None
    return Data(prepared.classes, pre, train, val, test, list(train.targets))


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
        if name == "ours-tfkd" and cfg.method.tfkd_mode == "reg":
            s_aux = None  # the virtual teacher needs no network
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
# the script


def main(argv: list[str] | None = None) -> int:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from edgekd import losses
    from edgekd.evaluate import compute_metrics, predict, save_confusion_matrix, write_model_card
    from edgekd.models import save_student

    # 1. config -----------------------------------------------------------------------------
    cfg = parse_args(argv)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run_dir = Path(cfg.run_dir)
    method = cfg.method.name
    # in-process sweeps and tests call main() repeatedly: let each run choose its mixed precision
    # (resets accelerate's per-run singleton only; the process group, if any, is kept)
    from accelerate.state import AcceleratorState

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
    set_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()

    # 2. data ---------------------------------------------------------------------------------
    data = build_data(cfg, run_dir, accelerator)
    train_ds = losses.ClassPairDataset(data.train, data.train_labels, cfg.seed) if method == "ours-cskd" else data.train
    bs, world = cfg.optim.batch_size, accelerator.num_processes
    # drop a ragged last batch (BatchNorm fails on a batch of 1) unless the set is smaller than a batch
    drop_last = len(train_ds) >= bs * world
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=bs, shuffle=True, drop_last=drop_last,
                                               num_workers=cfg.num_workers)

    def eval_loader(ds):
        return torch.utils.data.DataLoader(ds, batch_size=cfg.optim.eval_batch_size, shuffle=False,
                                           num_workers=cfg.num_workers)

    test_loader = eval_loader(data.test)
    val_loader = eval_loader(data.val) if data.val is not None else None

    # 3. students -------------------------------------------------------------------------------
    built = build_students(cfg, len(data.classes))
    student, aux, teacher = built.student, built.aux, built.teacher
    optimizer = build_optimizer(student, cfg.optim.lr, cfg)
    student, optimizer, train_loader, test_loader = accelerator.prepare(student, optimizer, train_loader, test_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    if aux is not None:  # S' is not trained, so not DDP-wrapped: same weights on every rank by construction
        aux.to(accelerator.device)
    if teacher is not None:
        t_opt = torch.optim.AdamW(teacher.parameters(), lr=cfg.method.kd_teacher_lr, weight_decay=cfg.optim.weight_decay)
        teacher, t_opt = accelerator.prepare(teacher, t_opt)
    updates_per_epoch = math.ceil(len(train_loader) / cfg.optim.grad_accum)
    scheduler = cosine_with_warmup(optimizer, cfg, updates_per_epoch)
    progress = Progress()
    if aux is not None:
        accelerator.register_for_checkpointing(aux)
    accelerator.register_for_checkpointing(scheduler)
    accelerator.register_for_checkpointing(progress)

    resumed_from = latest_checkpoint(run_dir) if cfg.resume else None
    if resumed_from is not None:
        accelerator.load_state(str(resumed_from))
        accelerator.print(f"resumed from {resumed_from} (epoch {progress.epoch}, step {progress.step})")
    elif cfg.resume:
        accelerator.print(f"resume: no complete checkpoint under {run_dir / 'checkpoints'}; starting fresh")
    if accelerator.is_main_process and resumed_from is None:  # fresh run: no stale epochs or checkpoints
        (run_dir / "metrics.csv").unlink(missing_ok=True)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.init_trackers("edgekd", config=_flat(cfg.to_dict()))
    n_params = sum(p.numel() for p in unwrap(student).parameters())
    show = accelerator.is_local_main_process and cfg.progress

    # 3b. kd only: fine-tune the teacher on the same subset with CE, then freeze it ------------
    if teacher is not None and not progress.teacher_done:
        teacher.train()
        for e in range(cfg.method.kd_teacher_epochs):
            train_loader.set_epoch(10_000 + e)  # its own data order, distinct from the student's
            for batch in tqdm(train_loader, desc=f"teacher fine-tune {e + 1}/{cfg.method.kd_teacher_epochs}",
                              disable=not show, leave=False):
                loss = losses.ce_loss(teacher(batch[0]), batch[1], cfg.optim.label_smoothing)
                accelerator.backward(loss)
                t_opt.step()
                t_opt.zero_grad(set_to_none=True)
        progress.teacher_done = True
    if teacher is not None:
        freeze(unwrap(teacher))

    # 4. train ------------------------------------------------------------------------------------
    mc = cfg.method
    rss_train_start = reset_peak_rss()
    t_start, step_times, step_cpu = time.perf_counter(), [], []
    first_epoch = progress.epoch
    for epoch in range(first_epoch, cfg.optim.epochs):
        if cfg.stop_after is not None and epoch - first_epoch >= cfg.stop_after:
            accelerator.print(f"stop_after={cfg.stop_after}: stopping after epoch {epoch} as if killed")
            accelerator.end_training()
            return 0
        t_epoch = time.perf_counter()
        train_loader.set_epoch(epoch)
        if isinstance(train_ds, losses.ClassPairDataset):
            train_ds.set_epoch(epoch)
        if method == "ours-tfkd" and aux is not None and epoch > 0:
            copy_weights(aux, student)  # TF-KD self: last epoch's S is this epoch's teacher
        student.train()
        sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0}
        n_batches = 0
        bar = tqdm(total=len(train_loader), desc=f"epoch {epoch + 1}/{cfg.optim.epochs} [{method}]",
                   disable=not show, leave=False)
        for i, batch in enumerate(train_loader):
            t_step, t_cpu = time.perf_counter(), time.process_time()
            x, y = batch[0], batch[1]
            with accelerator.accumulate(student):
                # targets from networks that get no gradient
                target_logits = None
                with torch.no_grad(), accelerator.autocast():
                    if method in ("ours", "ours-swap") or (method == "ours-tfkd" and aux is not None):
                        target_logits = aux(x)
                    elif method == "ours-cskd":
                        partner_net = aux if mc.cskd_teacher == "aux" else unwrap(student)
                        target_logits = partner_net(batch[2])
                    elif method == "kd":
                        target_logits = teacher(x)
                logits = student(x)
                if target_logits is not None:
                    loss, parts = losses.skd_loss(logits, target_logits, y, mc.alpha, mc.tau, cfg.optim.label_smoothing)
                elif method == "ours-tfkd":  # reg: virtual teacher
                    loss, parts = losses.tfkd_reg_loss(logits, y, mc.alpha, mc.tau, mc.tfkd_correct_prob,
                                                       cfg.optim.label_smoothing)
                else:
                    loss = losses.ce_loss(logits, y, cfg.optim.label_smoothing)
                    parts = {"ce": loss.item(), "kd": 0.0}
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.optim.grad_clip:
                    accelerator.clip_grad_norm_(student.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                scheduler.step()
                progress.step += 1
                if aux is not None and method in ("ours", "ours-swap", "ours-cskd"):
                    ema_update(aux, student, mc.beta)  # eq. 7, after every optimizer step
            sums["loss"] += loss.item()
            sums["ce"] += parts["ce"]
            sums["kd"] += parts["kd"]
            n_batches += 1
            if i >= 2:  # skip warm-up iterations in the step-time figures
                step_times.append(time.perf_counter() - t_step)
                step_cpu.append(time.process_time() - t_cpu)  # robust to other jobs on the machine
            bar.update(1)
            if i % max(1, cfg.log_every) == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.close()

        # epoch metrics: mean over all ranks' batches; validation for best.*
        means = accelerator.reduce(torch.tensor([sums["loss"], sums["ce"], sums["kd"], n_batches],
                                                dtype=torch.float64, device=accelerator.device), "sum")
        n = max(1.0, float(means[3]))
        row: dict[str, Any] = {"epoch": epoch + 1, "step": progress.step, "lr": scheduler.get_last_lr()[0],
                               "train_loss": float(means[0]) / n, "train_ce": float(means[1]) / n,
                               "train_kd": float(means[2]) / n}
        if val_loader is not None:
            vp, vt = predict(student, val_loader, accelerator)
            vm = compute_metrics(vt, vp, data.classes)
            row.update(val_accuracy=vm["accuracy"], val_macro_f1=vm["macro_f1"])
            score = vm["accuracy"]
        else:  # no held-out pool (fraction 1.0 without limits): lowest training loss
            score = -row["train_loss"]
        row["epoch_seconds"] = time.perf_counter() - t_epoch
        progress.epoch = epoch + 1
        if score > progress.best:
            progress.best, progress.best_epoch = score, epoch + 1
            if accelerator.is_main_process:
                save_student(unwrap(student), run_dir / "best.safetensors",
                             sidecar(cfg, data, epoch=epoch + 1, selected_by="val_accuracy" if val_loader else "train_loss"))
        if accelerator.is_main_process:
            write_metrics_row(run_dir / "metrics.csv", row, keep_until=epoch)
        accelerator.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
        accelerator.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        save_checkpoint(accelerator, run_dir, epoch + 1, cfg.keep_checkpoints)
    train_seconds = time.perf_counter() - t_start
    peak_rss_train = _proc_status_bytes("VmHWM")

    # 5. evaluate S on the test split (gather_for_metrics: no padded duplicates) ---------------------
    y_pred, y_true = predict(student, test_loader, accelerator)
    test = compute_metrics(y_true, y_pred, data.classes)
    sums_aux = accelerator.gather(torch.tensor([checksum(aux) if aux is not None else 0.0], dtype=torch.float64,
                                               device=accelerator.device)).tolist()
    sums_s = accelerator.gather(torch.tensor([checksum(unwrap(student))], dtype=torch.float64,
                                             device=accelerator.device)).tolist()

    # 6. save -----------------------------------------------------------------------------------------
    if accelerator.is_main_process:
        meta = sidecar(cfg, data, epoch=progress.epoch)
        save_student(unwrap(student), run_dir / "model.safetensors", meta)
        if aux is not None:  # S' (and the kd teacher) beside S, so `edgekd explain` shows them side by side
            save_student(aux, run_dir / "aux.safetensors", sidecar(cfg, data, role="aux"))
        if teacher is not None:
            save_student(unwrap(teacher), run_dir / "teacher.safetensors", sidecar(
                cfg, data, role="teacher", architecture=cfg.model.teacher, model_kwargs=dict(cfg.model.teacher_kwargs)))
        meta = json.loads((run_dir / "model.json").read_text())
        best = {"epoch": progress.best_epoch, "selected_by": "val_accuracy" if val_loader else "train_loss",
                "score": progress.best}
        results = {
            "method": method,
            "test": test,
            "accuracy": test["accuracy"],
            "macro_f1": test["macro_f1"],
            "best": best,
            "n_train": len(data.train),
            "n_val": len(data.val) if data.val is not None else 0,
            "n_test": len(data.test),
            "world_size": accelerator.num_processes,
            "device": str(accelerator.device),
            "distributed_type": str(accelerator.distributed_type),
            "mixed_precision": cfg.mixed_precision,
            "aux_checksums": sums_aux,
            "student_checksums": sums_s,
            "num_params": n_params,
            "epochs": progress.epoch,
            "steps": progress.step,
            "train_seconds": train_seconds,
            "step_seconds_mean": sum(step_times) / len(step_times) if step_times else None,
            "step_cpu_seconds_mean": sum(step_cpu) / len(step_cpu) if step_cpu else None,
            "rss_train_start_bytes": rss_train_start,  # main process; Linux /proc
            "peak_rss_train_bytes": peak_rss_train,
            "resumed_from": str(resumed_from) if resumed_from else None,
            "selection": built.selection,
            "classes": data.classes,
        }
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        save_confusion_matrix(test["confusion_matrix"], data.classes, run_dir / "confusion_matrix.png",
                              title=f"{cfg.model.student} [{method}] acc {test['accuracy']:.3f}")
        write_model_card(run_dir, cfg.to_dict(), results, meta)
        accelerator.print(f"test accuracy {test['accuracy']:.4f} macro-F1 {test['macro_f1']:.4f} -> {run_dir}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except EdgeKDError as e:  # same contract as the `edgekd` CLI: message, no traceback, exit 2
        print(f"edgekd train: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
