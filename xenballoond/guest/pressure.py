"""Waking the loop when memory gets tight between two ticks.

A workload can take memory faster than a tick comes round (40 MB/s on the
real host against a 1 s interval, the guest at first 25 MB above
Committed_AS): the daemon must not wait for the clock.  Two signals, both
without a process or a xenstore request:

- the kernel's PSI trigger (Documentation/accounting/psi.rst): a line
  "some <stall us> <window us>" written to /proc/pressure/memory, then poll()
  reports POLLPRI when tasks stalled on memory that long within the window;
- a sample of /proc/meminfo every SAMPLE_S: MemAvailable below, or
  Committed_AS above, the thresholds the last tick left (policy.Wake).  About
  13 us of CPU a sample.

PSI is only used on the real /proc (root "/"): under a test or simulator
root, /proc/pressure/memory would be an ordinary file, always readable.
"""
from __future__ import annotations

import errno
import os
import select

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from .policy import Wake

SAMPLE_S = 0.25
# 100 ms of stall in any 1 s: well before the stalls of seconds that came before
# the OOM kill on the real host.  (An unprivileged process may only use windows
# that are multiples of 2 s; the daemon runs as root.)
PSI_TRIGGER = b"some 100000 1000000"


class PressureWatch:
    def __init__(self, meminfo_path: str, psi_path: str | None) -> None:
        self.meminfo_path = meminfo_path
        self.psi_path = psi_path
        self._psi_fd: int | None = None
        self.psi_error: str | None = None  # why there is no PSI trigger, once tried

    def open(self) -> None:
        """Set the PSI trigger, if this kernel has one (idempotent)."""
        if self.psi_path is None or self._psi_fd is not None:
            return
        try:
            fd = os.open(self.psi_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.psi_error, self.psi_path = exc.strerror or str(exc), None
            return
        try:
            os.write(fd, PSI_TRIGGER + b"\0")
        except OSError as exc:
            os.close(fd)
            self.psi_error, self.psi_path = exc.strerror or str(exc), None
            return
        self._psi_fd = fd

    def close(self) -> None:
        if self._psi_fd is not None:
            os.close(self._psi_fd)
            self._psi_fd = None

    def fds(self) -> list[int]:
        """For DaemonContext's files_preserve."""
        return [] if self._psi_fd is None else [self._psi_fd]

    def register(self, poller: select.poll) -> int | None:
        if self._psi_fd is not None:
            poller.register(self._psi_fd, select.POLLPRI)
        return self._psi_fd

    def tight(self, wake: Wake) -> bool:
        """A sample of /proc/meminfo against the last tick's thresholds."""
        available_kb, committed_kb = sample(self.meminfo_path)
        if available_kb is not None and available_kb < wake.available_below_kb:
            return True
        return committed_kb is not None and committed_kb > wake.committed_above_kb


def sample(path: str) -> tuple[int | None, int | None]:
    """MemAvailable and Committed_AS (kB) from /proc/meminfo, cheaply; None for
    one that is missing or not a number."""
    try:
        # os.open, not open(): no buffered file object, 3 system calls instead
        # of 6, several times a second
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 16384)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES):
            return None, None
        raise
    return _field(data, b"\nMemAvailable:"), _field(data, b"\nCommitted_AS:")


def _field(data: bytes, name: bytes) -> int | None:
    start = data.find(name)
    if start < 0:
        return None
    end = data.find(b"\n", start + 1)
    words = data[start + len(name):end if end >= 0 else len(data)].split()
    if not words or not words[0].isdigit() or len(words[0]) > 15:
        return None
    return int(words[0])
