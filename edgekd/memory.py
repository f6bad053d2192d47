"""Resident memory of this process (Linux /proc), for the training-memory figures in results.json."""

from __future__ import annotations

import ctypes
import gc


def reset_peak_rss() -> int | None:
    """Start a fresh peak-RSS window (Linux: clear_refs 5 resets VmHWM); returns the current RSS in bytes.

    Freed heap (e.g. the teacher after selection) is first returned to the OS so the training
    peak is not hidden behind the selection peak.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _proc_status_bytes("VmRSS")


def peak_rss() -> int | None:
    """The peak RSS since the last `reset_peak_rss` (VmHWM), in bytes; None off Linux."""
    return _proc_status_bytes("VmHWM")


def _proc_status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
