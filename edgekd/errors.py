"""Errors and exit codes: one table for every `edgekd` verb (docs/troubleshooting.md).

| code | meaning |
|---|---|
| 0 | done |
| 1 | a check on the model failed: verify / the clinical gate, a non-finite training loss, NaN outputs in predict |
| 2 | user error: bad input, one line naming the problem and the fix (`EdgeKDError`), or no space left on the disk |
| 3 | internal error: a bug in edgekd or a library; the traceback goes to a log file, not the screen |
"""

from __future__ import annotations

import errno
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

OK, CHECK_FAILED, USER_ERROR, INTERNAL_ERROR = 0, 1, 2, 3


class EdgeKDError(Exception):
    """Raised for input the user can correct; CLIs print it without a traceback (exit 2)."""


class CheckFailed(Exception):
    """A model failed a check it must pass (e.g. training diverged); CLIs print it and exit 1."""


def run_verb(verb: str, fn: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run one verb under the exit-code table: a message on stderr, never a traceback for a user."""
    try:
        return int(fn(argv) or 0)
    except EdgeKDError as e:
        print(f"edgekd {verb}: error: {e}", file=sys.stderr)
        return USER_ERROR
    except CheckFailed as e:
        print(f"edgekd {verb}: failed: {e}", file=sys.stderr)
        return CHECK_FAILED
    except OSError as e:
        if e.errno != errno.ENOSPC:
            return _internal(verb, e)
        print(f"edgekd {verb}: error: no space left on the device writing {e.filename or 'a file'}; "
              "fix: free disk space (or point run_dir / --out at a larger disk) and rerun with --resume", file=sys.stderr)
        return USER_ERROR
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - the boundary between edgekd and its user
        return _internal(verb, e)


def _internal(verb: str, e: BaseException) -> int:
    log = Path(tempfile.gettempdir()) / f"edgekd-{verb}-error.log"
    log.write_text("".join(traceback.format_exception(e)))
    print(f"edgekd {verb}: internal error: {type(e).__name__}: {e}\n  the traceback is in {log}; please report it "
          "with that file", file=sys.stderr)
    return INTERNAL_ERROR
