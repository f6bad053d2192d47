"""What reaches the console: edgekd's own lines, and the libraries' warnings; their INFO goes to a file.

Why: the libraries an export or an explanation runs through talk at INFO on the console in their
own ways (NNCF through its own stdout handler, ONNX Runtime's quantizer and OpenVINO's converter
through the root logger, NNCF's algorithm steps as rich progress bars on the global console), so
an export printed hundreds of such lines between edgekd's. `folded_logs(OUT/export.log)` sends
all of it to the log file in the output folder and lets only WARNING and above through to the
console, each prefixed with the library it came from (`nncf: ...`). `CONSOLE` is the one writer
of edgekd's own progress lines (`edgekd.export.progress`), so a warning or a bar never lands in
the middle of one. Torch-free: export and explain both use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rich
from tqdm import tqdm

#: loggers that bring their own console handler (NNCF: stdout at INFO; torch: stderr) or none; folded into ours
LIBRARIES = ("nncf", "openvino", "onnxruntime", "pytorch_grad_cam", "torch")
_SITE_PACKAGE = re.compile(r"(?:site|dist)-packages[/\\]([^/\\]+)")


class Console:
    """stderr with at most one line left open: a stage's "name ..." waits there for its time,
    and anything written meanwhile (a sub-step, a warning) ends it first."""

    def __init__(self) -> None:
        self.open: str | None = None

    def begin(self, text: str) -> None:
        self._break()
        self._write(text)
        self.open = text

    def end(self, text: str, suffix: str) -> None:
        """Finish `text` with `suffix` on its own line if nothing came between, else repeat it."""
        if self.open == text:
            self._write(suffix + "\n")
        else:
            self._break()
            self._write(f"{text}{suffix}\n")
        self.open = None

    def line(self, text: str) -> None:
        self._break()
        tqdm.write(text, file=sys.stderr)  # above any bar being drawn

    def yield_to_bar(self) -> None:
        """A bar draws over the open line and clears it when done (`leave=False`); `end` then
        writes the line whole, so a stage with a bar still ends as one line."""
        if self.open is not None:
            self._write("\r")
        self.open = None

    def _break(self) -> None:
        if self.open is not None:
            self._write("\n")
        self.open = None

    @staticmethod
    def _write(s: str) -> None:
        sys.stderr.write(s)
        sys.stderr.flush()


CONSOLE = Console()


def library(record: logging.LogRecord) -> str:
    """The package a record came from: its logger's top name, or for the root logger (ONNX
    Runtime's quantizer logs there) the package of the file that logged it."""
    if record.name != "root":
        return record.name.split(".")[0]
    found = _SITE_PACKAGE.search(record.pathname)
    return found.group(1) if found else "warning"


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        CONSOLE.line(f"{library(record)}: {record.getMessage()}")


def _existing(name: str) -> logging.Logger | None:
    """The logger `name` if a library made it; never created here (NNCF makes its own class of logger)."""
    found = logging.Logger.manager.loggerDict.get(name)
    return found if isinstance(found, logging.Logger) else None


@contextmanager
def folded_logs(log_file: Path, preload: tuple[str, ...] = ()) -> Iterator[Path]:
    """Inside: every INFO record to `log_file` (rewritten), WARNING+ also to the console, the
    libraries' own handlers and rich's global console (NNCF's bars) parked; all restored after.
    `preload`: installed libraries to import first. NNCF adds its stdout handler when imported,
    so a first import inside would escape the fold."""
    for name in preload:
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file, mode="w", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_console = _ConsoleHandler(logging.WARNING)
    root, libs = logging.getLogger(), [lg for lg in map(_existing, LIBRARIES) if lg is not None]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in libs]
    root_level = root.level
    for lg in libs:
        lg.handlers, lg.propagate = [], True
    root.addHandler(to_file)
    root.addHandler(to_console)
    root.setLevel(min(root_level or logging.WARNING, logging.INFO))
    rich.reconfigure(file=to_file.stream, width=120)
    try:
        yield log_file
    finally:
        rich.reconfigure()
        root.setLevel(root_level)
        root.removeHandler(to_console)
        root.removeHandler(to_file)
        to_file.close()
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
