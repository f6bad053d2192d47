"""What an export plan may contain, checked before any work starts.

Why: a wrong combination (e.g. `--target onnx --precision fp16`) should fail in milliseconds
with the reason and the fix, not after a minute of exporting. Nothing here is written by
hand: the target table is the registry (`edgekd.export.targets.TARGETS`: each target's
precisions, defaults and why it refuses the others) and the option table is derived from the
options each registered target declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from edgekd.errors import EdgeKDError
from edgekd.export.targets import PRECISIONS, TARGETS, Option


@dataclass(frozen=True)
class OptionUse:
    """One row of the option table: a flag and the registered targets that read it."""

    option: Option
    targets: tuple[str, ...]


def option_table() -> dict[str, OptionUse]:
    """Option name -> who reads it, in registration order (the CLI lists the flags in this order)."""
    table: dict[str, OptionUse] = {}
    for target in TARGETS.values():
        for o in target.options:
            table[o.name] = OptionUse(o, (*table[o.name].targets, target.name) if o.name in table else (target.name,))
    return table


@dataclass(frozen=True)
class Job:
    """One artifact to build: (target, precision)."""

    target: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.target}-{self.precision}"


def plan_jobs(target: str, precision: str | None) -> list[Job]:
    """Expand `--target/--precision` into jobs, or raise EdgeKDError saying why not.

    `--target` is one target, a comma list (`onnx,openvino`) or `all`. `all` means every target
    with its default precisions (an explicit `--precision` then filters them); `--precision all`
    means every precision the target allows.
    """
    if precision is not None and precision != "all" and precision not in PRECISIONS:
        raise EdgeKDError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)} or all")
    names = [t.strip() for t in target.split(",") if t.strip()]
    for t in names:
        if t != "all" and t not in TARGETS:
            raise EdgeKDError(f"unknown --target {t!r}; choose one or a comma list of {', '.join(TARGETS)}, or all")
    if not names:
        raise EdgeKDError("--target is empty; choose one or a comma list of " + ", ".join(TARGETS) + ", or all")
    if "all" in names:
        jobs = [Job(t, p) for t, spec in TARGETS.items() for p in spec.planned_precisions()]
        return jobs if precision in (None, "all") else [j for j in jobs if j.precision == precision]
    return [j for t in TARGETS if t in names for j in _target_jobs(t, precision)]


def _target_jobs(target: str, precision: str | None) -> list[Job]:
    spec = TARGETS[target]
    if precision is None:
        return [Job(target, p) for p in spec.planned_precisions()]
    if precision == "all":
        return [Job(target, p) for p in spec.precisions]
    if precision not in spec.precisions:
        reason = spec.why_not.get(precision, "not supported")
        raise EdgeKDError(
            f"--target {target} --precision {precision} makes no sense: {reason}. "
            f"{target} accepts: {', '.join(spec.precisions)}"
        )
    return [Job(target, precision)]


def check_options(jobs: list[Job], given: Mapping[str, object]) -> None:
    """Refuse flags that no planned job would use (e.g. `--calib-size` with fp32 only) and values
    the flag or a planned target does not accept."""
    table = option_table()
    for name, value in given.items():
        if value is None or name not in table:
            continue
        o, targets = table[name].option, table[name].targets
        if not any(j.target in targets and j.precision in o.precisions for j in jobs):
            planned = ", ".join(j.name for j in jobs) or "nothing"
            raise EdgeKDError(
                f"{o.flag} has no effect here: it applies to target(s) {'/'.join(targets)} with "
                f"precision(s) {'/'.join(o.precisions)}, but the plan is: {planned}. Drop {o.flag} or "
                "change --target/--precision"
            )
        if o.choices is not None and value not in o.choices:
            raise EdgeKDError(f"{o.flag} must be one of {', '.join(o.choices)}")
        if o.minimum is not None and int(value) < o.minimum:  # type: ignore[call-overload]
            raise EdgeKDError(f"{o.flag} must be >= {o.minimum}")
    for target in dict.fromkeys(j.target for j in jobs):
        TARGETS[target].check_options(given)
