"""The daemon's own stall under memory pressure.

With the page cache squeezed to the hot set, file-backed pages (the
interpreter's text, the daemon's modules) are evicted and read back at disk
speed: on the real host a swapless guest's daemon went 8 s between two ticks.
A daemon that locked its pages (mlockall: VmLck in /proc/PID/status) keeps
running.  The model is coarse: an unlocked daemon is stopped (SIGSTOP) for as
long as its guest is under pressure, and continued (SIGCONT) after.
"""
from __future__ import annotations

import os
import signal


def locked_kb(pid: int) -> int:
    """VmLck of a live process (kB); 0 if it locked nothing or is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmLck:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class StallModel:
    """Stops and continues one guest's daemon as its guest's pressure comes and goes."""

    def __init__(self) -> None:
        self.stopped_pid: int | None = None
        self.stalled_s = 0.0

    def step(self, pid: int | None, under_pressure: bool, dt_s: float) -> None:
        if pid is None:
            self.stopped_pid = None
            return
        stall = under_pressure and locked_kb(pid) == 0
        if stall:
            self.stalled_s += dt_s
        if stall and self.stopped_pid != pid:
            self._signal(pid, signal.SIGSTOP)
            self.stopped_pid = pid
        elif not stall and self.stopped_pid == pid:
            self._signal(pid, signal.SIGCONT)
            self.stopped_pid = None

    def release(self) -> None:
        if self.stopped_pid is not None:
            self._signal(self.stopped_pid, signal.SIGCONT)
            self.stopped_pid = None

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
