"""Sensing: what the guest's memory is now, from /proc and the balloon driver."""
from __future__ import annotations

import logging
import os

from . import meminfo as meminfo_mod
from ..contract.intparse import parse_bounded_int
from ..contract.minimum import kernel_min_free_kb, run_kb
from .policy import rise_per_interval_kb
from ..record import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable

    from .balloon import Balloon
    from .maxmem import MaxmemFile
    from .once import OnceLog

# The conditions this module logs once while they last (OnceLog).
MEMINFO = "meminfo"
MAXMEM = "maxmem-file"
NOT_PUBLISHING = "not-publishing:"  # + the file


@frozen
class ProcFiles:
    """Absolute paths (already under the root) of the files a tick reads."""

    meminfo: str
    vmstat: str
    uptime: str
    min_free_kbytes: str


@frozen
class Sensed:
    """What one tick read of the guest's memory."""

    meminfo_text: str
    meminfo_fields: dict[str, int]
    cur_kb: int
    committed_kb: int
    at_s: float  # monotonic
    committed_rise_kb: int  # in one interval, at the rate since the last reading
    kernel_reserved_kb: int
    maxmem_kb: int
    boot_kb: int  # the memory the guest booted with (MaxmemFile.boot_kb)
    mem_available_kb: int | None
    run_need_kb: int


def read_text(path: str, limit: int = 1 << 20) -> str:
    # os.open, not open(): no buffered text file object, 4 system calls
    # instead of 7, a few times a tick
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while limit > 0:
            chunk = os.read(fd, min(limit, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            limit -= len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


class Sensor:
    """Reads the guest's memory state; remembers the last Committed_AS, for
    its rate of rise."""

    def __init__(self, files: ProcFiles, balloon: Balloon, maxmem: MaxmemFile, once: OnceLog,
                 clock: Callable[[], float]) -> None:
        self.files = files
        self.balloon = balloon
        self.maxmem = maxmem  # swapped on reload
        self._once = once
        self._clock = clock
        self._prev_committed: tuple[int, float] | None = None  # kB, and when (monotonic s)

    def sense(self, interval_s: int) -> Sensed | None:
        """The guest's memory now; None (logged once) if it cannot be read.
        ``interval_s``: the interval the rise of Committed_AS is projected over."""
        once = self._once
        try:
            meminfo_text = read_text(self.files.meminfo)
            fields = meminfo_mod.parse_meminfo(meminfo_text)
            memtotal_kb = meminfo_mod.require(fields, "MemTotal")
            committed_kb = meminfo_mod.require(fields, "Committed_AS")
            cur_kb = self.balloon.current_kb(fields)
        except (OSError, meminfo_mod.MeminfoError) as exc:
            once.say(MEMINFO, logging.ERROR, f"cannot read the guest's memory state: {exc}")
            return None
        once.over(MEMINFO)
        maxmem_kb, maxmem_error = self.maxmem.update(cur_kb)
        if maxmem_error is None:
            once.over(MAXMEM)
        else:
            once.say(MAXMEM, logging.WARNING,
                     f"cannot keep the memory high-water mark in {self.maxmem.path} "
                     f"({maxmem_error}); using {maxmem_kb} kB, held in memory")
        min_free_kb = self._min_free_kb(memtotal_kb)
        at_s = self._clock()
        prev_kb, prev_at_s = self._prev_committed or (None, at_s)
        return Sensed(meminfo_text=meminfo_text, meminfo_fields=fields, cur_kb=cur_kb,
                      committed_kb=committed_kb, at_s=at_s, committed_rise_kb=rise_per_interval_kb(
                          prev_kb, committed_kb, at_s - prev_at_s, interval_s),
                      kernel_reserved_kb=self.balloon.kernel_reserved_kb(fields, cur_kb),
                      maxmem_kb=maxmem_kb, boot_kb=self.maxmem.boot_kb(maxmem_kb),
                      mem_available_kb=fields.get("MemAvailable"),
                      run_need_kb=run_kb(fields.get("Mapped", 0), min_free_kb))

    def remember(self, sensed: Sensed) -> None:
        """This reading is the one the next rise is measured from."""
        self._prev_committed = (sensed.committed_kb, sensed.at_s)

    def _min_free_kb(self, memtotal_kb: int) -> int:
        try:
            text = read_text(self.files.min_free_kbytes, 64)
        except OSError:
            text = ""
        value = parse_bounded_int(text, 0, meminfo_mod.MAX_KB)
        return kernel_min_free_kb(memtotal_kb) if value is None else value

    def optional_text(self, enabled: bool, path: str) -> str | None:
        """A file published when enabled; None (logged once) if it cannot be read."""
        if not enabled:
            return None
        try:
            text = read_text(path)
        except OSError as exc:
            self._once.say(NOT_PUBLISHING + path, logging.WARNING,
                           f"not publishing {path}: {exc}")
            return None
        self._once.over(NOT_PUBLISHING + path)
        return text
