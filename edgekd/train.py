"""Train a small student with one of the registered methods (`edgekd.methods`, `method=NAME`).

    accelerate launch edgekd/train.py --config edgekd/configs/lite2_to_lite0_fmnist.yaml run_dir=runs/x
    edgekd train --config lite2_to_lite0_fmnist method=cm1 data.fraction=0.01
    python -m edgekd.train --config X --resume            # continue a killed run (same run_dir)
    python -m edgekd.train --config X --overwrite         # train again: the old run is moved to RUN.old-<time>/

Reads top to bottom like Accelerate's cv_example.py: config -> data -> networks (built by the
method) -> `accelerator.prepare` -> the loop (`train_one_epoch`; the method gives the targets, the
loss and what follows each optimizer step) -> evaluate S on the test split -> save the run
directory (`edgekd.rundir`, layout in DEVELOPERS.md). Which method runs is configuration: this
file names none.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, is_initialized
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from edgekd import losses
from edgekd.config import TrainConfig, load_config
from edgekd.data import Manifest, cap_per_class, make_split, prepare_data
from edgekd.data.cache import DecodedCache
from edgekd.data.torchdata import ImageDataset, eval_transform, train_transform
from edgekd.ema import checksum, freeze, unwrap
from edgekd.errors import CheckFailed, EdgeKDError, run_verb
from edgekd.evaluation import (Calibration, calibration_skipped, compute_metrics, evaluate_student, fit_calibration,
                               predict, predict_logits, save_figures, write_model_card)
from edgekd.memory import peak_rss, reset_peak_rss
from edgekd.methods import Method, Networks, get_method
from edgekd.optim import KDRampup, build_optimizer, cosine_with_warmup, teacher_optimizer
from edgekd.rundir import TEST_MANIFEST, RunDir
from edgekd.models import load_student, resolve_preprocess
from edgekd.shared.card import StudentCard, card_path
from edgekd.shared.preprocess import PreprocessConfig

# ---------------------------------------------------------------------------------------------
# config and accelerator


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, bool]:
    """The resolved config, and whether `--overwrite` was given (how to claim the run folder, not part of the run)."""
    p = argparse.ArgumentParser(
        prog="edgekd train",
        description="Train a student (EMA self-distillation and baselines). Overrides: key=value, "
        "e.g. method=cm1 optim.lr=1e-3 data.fraction=0.01 mixed_precision=bf16.",
    )
    p.add_argument("--config", help="YAML file or preset name (edgekd/configs/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints (same as resume=true)")
    p.add_argument("--overwrite", action="store_true",
                   help="run_dir holds a run: move it aside to RUN.old-<time>/ (never deleted) and start again")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    a = p.parse_intermixed_args(argv)  # flags anywhere: `edgekd train run_dir=X --resume optim.lr=1e-4`
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
    return cfg, a.overwrite


def make_accelerator(cfg: TrainConfig, run_dir: Path) -> Accelerator:
    """The run's Accelerator. Accelerate keeps one mixed precision per process (`AcceleratorState` is a
    process-wide singleton): runs in one process (in-process sweeps, tests) share theirs, and asking
    for another is refused here rather than deep inside accelerate."""
    if is_initialized() and AcceleratorState().mixed_precision != cfg.mixed_precision:
        raise EdgeKDError(
            f"mixed_precision={cfg.mixed_precision} in a process that already trained with "
            f"{AcceleratorState().mixed_precision} (accelerate fixes it once per process); fix: train in its own "
            "process (`python -m edgekd.train`, or `edgekd sweep --launcher subprocess`)")
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


def _trackers(cfg: TrainConfig) -> list[str]:
    names = [t.strip() for t in cfg.trackers.split(",") if t.strip() and t.strip() != "none"]
    if "tensorboard" in names:
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            names.remove("tensorboard")
    return names


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flat scalar dict for trackers (TensorBoard hparams accept only scalars/strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class Data:
    classes: list[str]
    preprocess: PreprocessConfig
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset | None
    test: torch.utils.data.Dataset
    train_labels: list[int]
    test_attributes: dict[str, list[str | None]]  # the test manifest's subgroup columns (site, scanner ...)


def build_data(cfg: TrainConfig, rundir: RunDir, accelerator: Accelerator) -> Data:
    """Split + subset + manifests (written once, reused on resume), then torch datasets.

    Validation (for best.*): up to `val_limit` images per class from the training split that
    are NOT in the training subset, so the subset stays exactly the paper's fraction and the
    test split is never used for model selection. With `data.cache_dir`, every part reads from
    a decoded-image cache (built once by the main process, then memory-mapped).
    """
    # without validation (val_limit null) nothing is held out of a fraction-1.0 subset
    data_cfg = cfg.data if cfg.val_limit else replace(cfg.data, val_size=0.0)
    with accelerator.main_process_first():
        prepared = prepare_data(data_cfg, rundir.path)
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
                rundir.write_manifest("val", parts["val"])

    def dataset(part: str, transform) -> ImageDataset:
        cache = None
        if cfg.data.cache_dir:
            with accelerator.main_process_first():  # one process decodes, the others open the file
                cache = DecodedCache.build(parts[part], pre, cfg.data.cache_dir,
                                           progress=accelerator.is_local_main_process and cfg.progress)
        return ImageDataset(parts[part], None, transform, cache)

    train = dataset("train", train_transform(pre, cfg.aug))
    val = dataset("val", eval_transform(pre)) if "val" in parts else None
    return Data(prepared.classes, pre, train, val, dataset("test", eval_transform(pre)), list(train.targets),
                parts["test"].attributes)


def nhwc_collate(batch: list) -> list:
    """default_collate, with every image batch (4-D tensor) in channels-last order."""
    out = torch.utils.data.default_collate(batch)
    return [t.contiguous(memory_format=torch.channels_last) if torch.is_tensor(t) and t.ndim == 4 else t for t in out]


def make_loaders(cfg: TrainConfig, method: Method, data: Data, world: int):
    """(train, val or None, test) loaders; the training one iterates what the method makes of the subset."""
    train_ds = method.train_dataset(data.train, data.train_labels)
    bs, collate = cfg.optim.batch_size, nhwc_collate if cfg.channels_last else None
    # drop a ragged last batch (BatchNorm fails on a batch of 1) unless the set is smaller than a batch
    train = torch.utils.data.DataLoader(train_ds, batch_size=bs, shuffle=True, drop_last=len(train_ds) >= bs * world,
                                        num_workers=cfg.num_workers, collate_fn=collate)

    def eval_loader(ds):
        return torch.utils.data.DataLoader(ds, batch_size=cfg.optim.eval_batch_size, shuffle=False,
                                           num_workers=cfg.num_workers, collate_fn=collate) if ds is not None else None

    return train, eval_loader(data.val), eval_loader(data.test)


# ---------------------------------------------------------------------------------------------
# networks and optimizer, prepared once: everything the loop needs


class Progress:
    """Epochs/steps done and the best validation score: checkpointed with the run (JSON)."""

    def __init__(self) -> None:
        self.epoch, self.step, self.best, self.best_epoch, self.teacher_done = 0, 0, -math.inf, -1, False

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


@dataclass
class Run:
    cfg: TrainConfig
    accelerator: Accelerator
    method: Method
    rundir: RunDir
    data: Data
    nets: Networks  # student and teacher prepared (possibly DDP-wrapped); S' on the device, not wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ramp: KDRampup
    progress: Progress
    train_loader: Any
    val_loader: Any
    test_loader: Any
    total_steps: int  # optimizer steps of the whole run
    resumed_from: Path | None = None

    @property
    def show(self) -> bool:
        return self.accelerator.is_local_main_process and self.cfg.progress


def prepare_run(cfg: TrainConfig, accelerator: Accelerator, method: Method, rundir: RunDir) -> Run:
    """Data, the method's networks, optimizer and schedule through `accelerator.prepare`, then resume if asked.

    config.yaml is written once the data is known to match a resumed run's manifests, so a refused
    resume leaves the folder as it was."""
    data = build_data(cfg, rundir, accelerator)
    if accelerator.is_main_process:
        rundir.write_config(cfg)
    train_loader, val_loader, test_loader = make_loaders(cfg, method, data, accelerator.num_processes)
    nets = method.build(len(data.classes))
    optimizer = build_optimizer(nets.student, cfg.optim)
    nets.student, optimizer, train_loader, test_loader = accelerator.prepare(nets.student, optimizer, train_loader,
                                                                             test_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    if nets.aux is not None:  # S' is not trained, so not DDP-wrapped: same weights on every rank by construction
        nets.aux.to(accelerator.device)
    if nets.teacher is not None:
        nets.teacher = accelerator.prepare(nets.teacher)
    updates = math.ceil(len(train_loader) / cfg.optim.grad_accum)
    scheduler = cosine_with_warmup(optimizer, cfg.optim, updates)
    run = Run(cfg, accelerator, method, rundir, data, nets, optimizer, scheduler,
              KDRampup.from_config(cfg.method, cfg.optim.epochs, updates), Progress(), train_loader, val_loader,
              test_loader, cfg.optim.epochs * updates)
    resume_or_start_fresh(run)
    method.on_train_start(nets, run.total_steps, run.progress.step)
    warning = method.warning(nets, run.total_steps)
    if warning:
        accelerator.print(warning)
    return run


def checkpoint_state(run: Run) -> dict[str, Any]:
    """What a checkpoint keeps beside accelerate's files, as JSON: progress and the LR schedule (LambdaLR's
    state is plain numbers; its lambda is rebuilt from the config). Accelerate would pickle them."""
    return {"progress": run.progress.state_dict(), "scheduler": run.scheduler.state_dict()}


def resume_or_start_fresh(run: Run) -> None:
    """Load the last complete checkpoint when resuming (the folder was claimed by `RunDir.writing`)."""
    accelerator, rundir = run.accelerator, run.rundir
    run.resumed_from = rundir.latest_checkpoint() if run.cfg.resume else None
    if run.resumed_from is not None:
        state = rundir.load_checkpoint(accelerator, run.resumed_from, run.nets.aux)
        run.progress.load_state_dict(state["progress"])
        run.scheduler.load_state_dict(state["scheduler"])
        accelerator.print(f"resumed from {run.resumed_from} (epoch {run.progress.epoch}, step {run.progress.step})")
    elif run.cfg.resume:
        accelerator.print(f"resume: no complete checkpoint under {rundir.path / 'checkpoints'} (stopped in its "
                          "first epoch); starting from epoch 0")


# ---------------------------------------------------------------------------------------------
# the loop


def fit_teacher(run: Run) -> None:
    """Fine-tune `nets.teacher` with CE as the method asks (`Method.teacher_fit`; once, checkpointed), then freeze it."""
    fit, teacher = run.method.teacher_fit(), run.nets.teacher
    if fit is not None and not run.progress.teacher_done:
        opt = run.accelerator.prepare(teacher_optimizer(teacher, fit.lr, run.cfg.optim.weight_decay))
        teacher.train()
        for e in range(fit.epochs):
            run.train_loader.set_epoch(10_000 + e)  # its own data order, distinct from the student's
            for batch in tqdm(run.train_loader, desc=f"teacher {e + 1}/{fit.epochs}", disable=not run.show, leave=False):
                loss = losses.ce_loss(teacher(batch[0]), batch[1], run.cfg.optim.label_smoothing)
                run.accelerator.backward(loss)
                opt.step()
                opt.zero_grad(set_to_none=True)
        run.progress.teacher_done = True
    freeze(unwrap(teacher))


def train_step(run: Run, batch) -> dict[str, float]:
    """The method's targets (no gradient), forward S, backward, optimizer step, then the method's after-step.

    Returns the loss and the terms the method names (ce, kd), as floats."""
    acc, nets = run.accelerator, run.nets
    with acc.accumulate(nets.student):
        targets = run.method.targets(nets, batch, acc)
        with acc.autocast():
            logits = nets.student(batch[0])
        loss, parts = run.method.loss(logits, targets, batch[1], run.ramp.weight(run.progress.step))
        acc.backward(loss)
        if acc.sync_gradients and run.cfg.optim.grad_clip:
            acc.clip_grad_norm_(nets.student.parameters(), run.cfg.optim.grad_clip)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
    if acc.sync_gradients:
        run.scheduler.step()
        run.progress.step += 1
        run.method.after_step(nets)
    return {"loss": loss.item(), **parts}


def train_one_epoch(run: Run, epoch: int, timing: dict[str, list[float]]) -> dict[str, Any]:
    """One pass over the subset, then the method's epoch end; returns the epoch's mean loss terms (train_loss,
    train_ce, ...) over all ranks and the columns the method adds."""
    run.train_loader.set_epoch(epoch)
    run.method.on_epoch_start(run.nets, epoch)
    run.nets.student.train()
    sums: dict[str, float] = {}
    bar = tqdm(total=len(run.train_loader), desc=f"epoch {epoch + 1}/{run.cfg.optim.epochs} [{run.cfg.method.name}]",
               disable=not run.show, leave=False)
    for i, batch in enumerate(run.train_loader):
        t_step, t_cpu = time.perf_counter(), time.process_time()
        terms = train_step(run, batch)
        if not all(map(math.isfinite, terms.values())):
            raise diverged(run, epoch, i, terms)
        sums = {k: sums.get(k, 0.0) + v for k, v in {**terms, "batches": 1.0}.items()}
        if i >= 2:  # skip warm-up iterations in the step-time figures
            timing["wall"].append(time.perf_counter() - t_step)
            timing["cpu"].append(time.process_time() - t_cpu)  # robust to other jobs on the machine
        bar.update(1)
        if i % max(1, run.cfg.log_every) == 0:
            bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")
    bar.close()
    total = run.accelerator.reduce(torch.tensor(list(sums.values()), dtype=torch.float64, device=run.accelerator.device),
                                   "sum").tolist()
    means = {f"train_{k}": v / max(1.0, total[-1]) for k, v in zip(sums, total[:-1])}
    return {"epoch": epoch + 1, "step": run.progress.step, "lr": run.scheduler.get_last_lr()[0], **means,
            **run.method.on_epoch_end(run.nets, epoch)}


def diverged(run: Run, epoch: int, batch: int, terms: dict[str, float]) -> CheckFailed:
    """A NaN/Inf loss: the run stops before this epoch's checkpoint or any network is written (exit 1)."""
    shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
    return CheckFailed(
        f"training diverged at epoch {epoch + 1}, batch {batch + 1} (optimizer step {run.progress.step}): the loss "
        f"is not finite ({shown}); nothing of this epoch was saved; fix: lower optim.lr "
        f"(now {run.cfg.optim.lr:g}) or set optim.grad_clip and rerun with --overwrite (or --resume from the last "
        "complete checkpoint), and check the data for broken images and the method.* settings")


def end_epoch(run: Run, row: dict[str, Any]) -> None:
    """Validation, best.* by validation accuracy (or training loss), metrics row, checkpoint."""
    acc, epoch = run.accelerator, row["epoch"]
    if run.val_loader is not None:
        vp, vt = predict(run.nets.student, run.val_loader, acc)
        vm = compute_metrics(vt, vp, run.data.classes)
        row.update(val_accuracy=vm["accuracy"], val_macro_f1=vm["macro_f1"])
        score = vm["accuracy"]
    else:  # no held-out pool (fraction 1.0 without limits): lowest training loss
        score = -row["train_loss"]
    run.progress.epoch = epoch
    if score > run.progress.best:
        run.progress.best, run.progress.best_epoch = score, epoch
        if acc.is_main_process:
            run.rundir.save_network(unwrap(run.nets.student), "best",
                                    student_card(run, epoch=epoch, selected_by=_selected_by(run)))
    if acc.is_main_process:
        run.rundir.write_metrics_row(row, keep_until=epoch - 1)
    acc.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
    acc.print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    run.rundir.save_checkpoint(acc, epoch, run.cfg.keep_checkpoints, checkpoint_state(run), run.nets.aux)


def _selected_by(run: Run) -> str:
    return "val_accuracy" if run.val_loader is not None else "train_loss"


# ---------------------------------------------------------------------------------------------
# evaluate on the test split, save the run directory


def student_card(run: Run, **changes: Any) -> StudentCard:
    """The card of every network the run saves: S's architecture, the classes, the preprocessing; `changes` on top."""
    cfg, data = run.cfg, run.data
    card = StudentCard(cfg.model.student, len(data.classes), list(data.classes), dict(cfg.model.student_kwargs),
                       data.preprocess.to_dict(), method=cfg.method.name, test_manifest=TEST_MANIFEST)
    return replace(card, **changes)


def save_networks(run: Run, calibration: Calibration, best: Calibration) -> StudentCard:
    """S as model.*, then what the method keeps beside it (S' as aux.*, a teacher as teacher.*); S's card.
    The temperatures of S and of best.* go into their cards, where the exporter finds them."""
    card = run.rundir.save_network(unwrap(run.nets.student), "model", student_card(
        run, epoch=run.progress.epoch, calibration=calibration.card_entry()))
    best_card = card_path(run.rundir.path / "best.safetensors")  # written during training, before T was known
    replace(StudentCard.load(best_card), calibration=best.card_entry()).save(best_card)
    for net in run.method.saved_networks(run.nets):
        run.rundir.save_network(unwrap(net.model), net.stem, student_card(
            run, role=net.role, architecture=net.architecture, model_kwargs=net.model_kwargs))
    return card


def calibrate_networks(run: Run, test: tuple[Any, Any]) -> tuple[Calibration, Calibration]:
    """Temperature scaling of S and of best.* (all ranks), each fitted on the validation images and
    scored on the test split (`test`: S's test logits and labels)."""
    skipped = calibration_skipped(run.cfg, run.val_loader is not None)
    if skipped:
        return Calibration(None, skipped), Calibration(None, skipped)
    acc = run.accelerator
    final = fit_calibration(run.nets.student, run.val_loader, test, acc)
    if run.progress.best_epoch == run.progress.epoch:  # best.* holds the final weights
        return final, final
    best, _ = load_student(run.rundir.path / "best.safetensors")
    best.to(acc.device)
    return final, fit_calibration(best, run.val_loader, predict_logits(best, run.test_loader, acc), acc)


def finish(run: Run, stats: dict[str, Any]) -> None:
    """Evaluate and calibrate S on the test split (all ranks), then write the networks, results, figures
    and the model card."""
    acc = run.accelerator
    logits, y_true = predict_logits(run.nets.student, run.test_loader, acc)
    test = compute_metrics(y_true, logits.argmax(1), run.data.classes)
    calibration, best_calibration = calibrate_networks(run, (logits, y_true))

    def gathered(model: torch.nn.Module | None) -> list[float]:
        value = checksum(model) if model is not None else 0.0
        return acc.gather(torch.tensor([value], dtype=torch.float64, device=acc.device)).tolist()

    checksums = {"aux_checksums": gathered(run.nets.aux), "student_checksums": gathered(unwrap(run.nets.student))}
    if not acc.is_main_process:
        return
    card = save_networks(run, calibration, best_calibration)
    ev = evaluate_student(y_true, logits, run.data.classes, calibration, run.data.test_attributes)
    res = {**results(run, test, checksums, stats), "clinical": ev.clinical.to_dict(),
           "calibration": calibration.to_dict()}
    if ev.subgroups is not None:
        res["subgroups"] = ev.subgroups.to_dict()
    save_figures(run.rundir.path, ev, run.data.classes, f"{run.cfg.model.student} [{run.cfg.method.name}]")
    write_model_card(run.rundir.path, run.cfg, res, card, ev)
    run.rundir.write_results(res)  # last: results.json marks the run complete (a sweep skips such a cell)
    acc.print(f"test accuracy {test['accuracy']:.4f} macro-F1 {test['macro_f1']:.4f}; calibration "
              f"{calibration.summary()} -> {run.rundir.path}")


def results(run: Run, test: dict[str, Any], checksums: dict[str, list[float]], stats: dict[str, Any]
            ) -> dict[str, Any]:
    """results.json: the test metrics, how S was chosen and what the run was."""
    acc, p, data = run.accelerator, run.progress, run.data
    return {
        "method": run.cfg.method.name, "test": test, "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
        "best": {"epoch": p.best_epoch, "selected_by": _selected_by(run), "score": p.best},
        "n_train": len(data.train), "n_val": len(data.val) if data.val is not None else 0,
        "n_test": len(data.test), "world_size": acc.num_processes, "device": str(acc.device),
        "distributed_type": str(acc.distributed_type), "mixed_precision": run.cfg.mixed_precision,
        "aux_bn": run.method.aux_bn(run.nets), "kd_rampup_steps": run.ramp.steps, **run.method.summary(run.nets),
        **checksums,
        "num_params": sum(q.numel() for q in unwrap(run.nets.student).parameters()),
        "epochs": p.epoch, "steps": p.step, **stats,
        "resumed_from": str(run.resumed_from) if run.resumed_from else None,
        "selection": run.nets.selection, "classes": data.classes,
    }


# ---------------------------------------------------------------------------------------------
# the script


def main(argv: list[str] | None = None) -> int:
    # 1. config, accelerator, the run folder (a folder holding another run is refused; locked while we write)
    cfg, overwrite = parse_args(argv)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    rundir = RunDir(Path(cfg.run_dir))
    accelerator = make_accelerator(cfg, rundir.path)
    with rundir.writing(accelerator, cfg.resume, overwrite):
        return run_training(cfg, accelerator, rundir)


def run_training(cfg: TrainConfig, accelerator: Accelerator, rundir: RunDir) -> int:
    """Steps 2-5 in the run folder `main` claimed; the seed and the method first."""
    set_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    method: Method = get_method(cfg.method.name)(cfg)

    # 2. data, networks, optimizer (resumed from the last complete checkpoint if asked) -----------
    run = prepare_run(cfg, accelerator, method, rundir)
    accelerator.init_trackers("edgekd", config=_flat(cfg.to_dict()))

    # 3. a method's teacher trains first (kd, Tf-KD_self), then freezes ---------------------------
    if run.nets.teacher is not None:
        fit_teacher(run)

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
        row = train_one_epoch(run, epoch, timing)
        row["epoch_seconds"] = time.perf_counter() - t_epoch
        end_epoch(run, row)

    # 5. evaluate S on the test split and save the run directory -----------------------------------
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    finish(run, {
        "train_seconds": time.perf_counter() - t_start, "step_seconds_mean": mean(timing["wall"]),
        "step_cpu_seconds_mean": mean(timing["cpu"]), "rss_train_start_bytes": rss_train_start,  # main process
        "peak_rss_train_bytes": peak_rss(),
    })
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":  # `accelerate launch edgekd/train.py`: the same exit codes as `edgekd train`
    raise SystemExit(run_verb("train", main, sys.argv[1:]))
