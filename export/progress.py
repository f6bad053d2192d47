"""`edgekd export` on the console: one line per stage with its wall time, one bar where a stage loops.

Why: an export runs for minutes, much of it inside libraries that are silent for long stretches
(the ONNX conversion, NNCF's accuracy-control search) and chatty elsewhere. Their logs go to
OUT/export.log (`edgekd.shared.logs.folded_logs`); the console says what runs now and what each
stage cost, the log file gets the same lines among the libraries' own:

    export: ONNX ... 3.1 s
    export: build openvino-int8 ...
    export:   try 1: nncf.quantize: search agreement 97.0 % (goal 98.9 %), certification 96.8 % ... 21.0 s
    export:   try 2: nncf.quantize_with_accuracy_control: ... 88.4 s
    export: build openvino-int8 ... 110.2 s
    export: verify ... 14.2 s        (a bar over the test batches while it runs)

Torch-free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from edgekd.shared.logs import CONSOLE

if TYPE_CHECKING:
    from edgekd.export.int8_accuracy import SearchTry

PREFIX = "export: "
log = logging.getLogger("edgekd.export")
_laps: list[float] = []  # per open stage, when it or its last step began: a step is timed from there


@contextmanager
def stage(name: str) -> Iterator[None]:
    """`export: NAME ...` now, its wall time when the block ends (or that it failed)."""
    text = f"{PREFIX}{name} ..."
    CONSOLE.begin(text)
    t0 = time.perf_counter()
    _laps.append(t0)
    outcome = "failed after "
    try:
        yield
        outcome = ""
    finally:
        _laps.pop()
        took = f" {outcome}{time.perf_counter() - t0:.1f} s"
        CONSOLE.end(text, took)
        log.info("%s%s", text, took)


def step(text: str) -> None:
    """An indented line inside the current stage, timed since the stage or its previous step began."""
    now = time.perf_counter()
    took = f" ... {now - _laps[-1]:.1f} s" if _laps else ""
    if _laps:
        _laps[-1] = now
    CONSOLE.line(f"{PREFIX}  {text}{took}")
    log.info("%s  %s%s", PREFIX, text, took)


def search_try(tries: list[SearchTry]) -> None:
    """The newest candidate of an INT8 accuracy search (the long part of an INT8 build) as a step."""
    t = tries[-1]
    step(f"try {len(tries)}: {t.candidate}: search agreement {t.search.agreement_pct:.1f} % (goal {t.goal_pct:.1f} %), "
         f"certification {t.certification.agreement_pct:.1f} %")


def bar(items: Iterable[Any], total: int, desc: str, unit: str) -> tqdm:
    """One tqdm bar over a stage's loop, drawn over the stage's line and cleared when done."""
    CONSOLE.yield_to_bar()
    return tqdm(items, total=total, desc=f"{PREFIX}{desc}", unit=unit, leave=False)
