"""One simulated guest: its OS tree under a root, driven by the pure models.

Each step the guest
1. applies a new memory/target if dom0 wrote one (the kernel's xenbus watch),
2. picks up what the daemon wrote to the balloon files (polled: the daemon
   writes ``target``/``target_kb`` or /proc/xen/balloon; the kernel would get a
   write() call, here the file simply changes),
3. advances the balloon driver, the workload and the kernel's accounting,
4. rewrites /proc/meminfo, /proc/vmstat, /proc/uptime and the driver's files
   atomically (temp file + rename), so the daemon never reads half a file,
5. keeps the safety figures: time with MemTotal below Committed_AS, swap
   traffic, OOM kills.
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field, replace
from typing import Callable

from ..paths import (PROC_MEMINFO, PROC_UPTIME, PROC_VMSTAT, PROC_XEN_BALLOON,
                     SYSFS_BALLOON_DIR, Root)
from . import balloon_model as bm
from . import procfs, vm_model
from .workload import Demand, Workload, demand_at

_SCANF_ULL = re.compile(r"[ \t\n\r\f\v]*\+?([0-9]+)")
U64 = (1 << 64) - 1


def scanf_llu(text: str) -> int | None:
    """xenbus_scanf(..., "%llu"): leading blanks, digits, anything after is
    ignored; no digits means no match (the watch handler then does nothing)."""
    m = _SCANF_ULL.match(text)
    return int(m.group(1)) & U64 if m else None


def write_atomic(path: str, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.sim-tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


def _stamp(path: str) -> tuple[int, int] | None:
    """What tells a write in place (the daemon's) from none: inode and mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read(4096)
    except OSError:
        return None


@dataclass
class GuestStats:
    """The figures the summary reports for one guest."""

    boot_kb: int
    min_kb: int
    kb_seconds: float = 0.0  # integral of the reservation, for its average
    seconds: float = 0.0
    below_committed_s: float = 0.0
    worst_deficit_kb: int = 0  # largest Committed_AS - MemTotal seen
    target_writes: int = 0  # balloon target writes by the daemon
    target_moves: int = 0  # those that moved the driver's target
    dom0_target_sets: int = 0  # xl mem-set by dom0 (the simulator's or the balancer)
    uncovered_since_s: float | None = None  # the target has been below Committed_AS since
    cover_delays_s: list[float] = field(default_factory=list)  # each such spell, once over
    uncovered_spells_s: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    watch_targets: int = 0  # memory/target changes the kernel followed
    pswpin0: int = 0
    pswpout0: int = 0


class SimGuest:
    def __init__(self, *, root: str, domid: int, name: str, kind: str, memory_kb: int,
                 maxmem_kb: int, workload: Workload, swap_total_kb: int, uptime_s: float) -> None:
        self.root = Root(root)
        self.top = root
        self.domid = domid
        self.name = name
        self.kind = kind
        self.workload = workload
        self.driver = bm.boot(kind, memory_kb, maxmem_kb)
        self.demand = demand_at(workload, 0.0)
        self.vm = vm_model.boot(uptime_s=uptime_s, swap_total_kb=swap_total_kb,
                                anon_kb=self.demand.anon_kb)
        self.stats = GuestStats(boot_kb=self.driver.current_kb, min_kb=self.driver.current_kb)
        self._sysfs = self.root.path(SYSFS_BALLOON_DIR)
        self._proc_balloon = self.root.path(PROC_XEN_BALLOON)
        self._meminfo = self.root.path(PROC_MEMINFO)
        self._vmstat = self.root.path(PROC_VMSTAT)
        self._uptime = self.root.path(PROC_UPTIME)
        self._shown: dict[str, str] = {}  # path -> the text we last put there
        self._stamps: dict[str, tuple[int, int] | None] = {}  # the balloon files as we left them
        self._watch_fired = threading.Event()
        self.meminfo: dict[str, int] = {}

    # --- the tree --------------------------------------------------------

    def create(self) -> None:
        """Make the guest's tree and its first files."""
        for d in (os.path.dirname(self._meminfo), self.root.path("/var/run"),
                  self.root.path("/var/log"), self.root.path("/etc/sysconfig")):
            os.makedirs(d, exist_ok=True)
        if self.kind == bm.SYSFS:
            os.makedirs(os.path.join(self._sysfs, "info"), exist_ok=True)
        else:
            os.makedirs(os.path.dirname(self._proc_balloon), exist_ok=True)
        self._publish()
        self.stats.pswpin0 = self.vm.counters.pswpin
        self.stats.pswpout0 = self.vm.counters.pswpout

    def _put(self, path: str, text: str) -> None:
        if self._shown.get(path) != text:
            write_atomic(path, text)
            self._shown[path] = text

    def _put_unless_written(self, path: str, text: str, seen: str | None) -> None:
        """Refresh a file the daemon writes too, unless it wrote it since we
        looked (a rename now would lose that write)."""
        if self._shown.get(path) == text:
            return
        if _read(path) != seen:
            return  # picked up next step
        write_atomic(path, text)
        self._shown[path] = text
        self._stamps[path] = _stamp(path)

    def _publish(self, seen: dict[str, str | None] | None = None) -> None:
        seen = seen or {}
        d, vm = self.driver, self.vm
        self.meminfo = vm_model.meminfo_fields(vm, d.memtotal_kb, self.demand.committed_kb,
                                               d.static_max_kb)
        values = vm.counters.as_dict()
        values.update(vm_model.vmstat_gauges(vm, self.meminfo))
        self._put(self._meminfo, procfs.meminfo_text(self.meminfo))
        self._put(self._vmstat, procfs.vmstat_text(values))
        self._put(self._uptime, procfs.uptime_text(vm.uptime_s, vm.idle_s))
        if d.kind == bm.SYSFS:
            for rel, text in bm.sysfs_files(d).items():
                path = os.path.join(self._sysfs, rel)
                if rel in ("target", "target_kb"):
                    self._put_unless_written(path, text, seen.get(path, self._shown.get(path)))
                else:
                    self._put(path, text)
        else:
            self._put_unless_written(self._proc_balloon, bm.proc_balloon_text(d),
                                     seen.get(self._proc_balloon,
                                              self._shown.get(self._proc_balloon)))

    # --- inputs ----------------------------------------------------------

    def on_target_watch(self, _path: str = "") -> None:
        """The xenbus watch on memory/target fired (any thread)."""
        self._watch_fired.set()

    def _apply_watch(self, memory_target: str | None) -> None:
        if memory_target is None:
            return
        kb = scanf_llu(memory_target)
        if kb is None:
            return  # "This is ok (for domain0 at least) - so just return"
        # watch_target(): the value is in KiB; pages = kb >> (PAGE_SHIFT - 10)
        self.driver = bm.set_target_kb(self.driver, (kb >> 2) * 4)
        self.stats.watch_targets += 1

    def _poll_daemon_writes(self) -> dict[str, str | None]:
        """Apply what the daemon wrote since the last step; return what each
        file held, for the rewrite guard."""
        seen: dict[str, str | None] = {}
        if self.kind == bm.SYSFS:
            for rel, parse in (("target", bm.parse_sysfs_target),
                               ("target_kb", bm.parse_sysfs_target_kb)):
                path = os.path.join(self._sysfs, rel)
                stamp = _stamp(path)
                text = _read(path)
                seen[path] = text
                # A write() reaches the kernel's store whole; an empty file is the
                # daemon's open(O_TRUNC) caught before its write: no store yet.
                if not text:
                    continue
                if text != self._shown.get(path):
                    self._set_daemon_target(parse(text))
                    self._shown[path] = text
                elif stamp != self._stamps.get(path):
                    self.stats.target_writes += 1  # rewritten, the same target
                self._stamps[path] = stamp
        else:
            text = _read(self._proc_balloon)
            seen[self._proc_balloon] = text
            if text is not None and text != self._shown.get(self._proc_balloon):
                self._shown[self._proc_balloon] = text
                tgt_kb = bm.parse_proc_write(text)
                if tgt_kb is not None:
                    self._set_daemon_target(tgt_kb)
        return seen

    def _set_daemon_target(self, tgt_kb: int) -> None:
        """A target the daemon wrote.  It moves the target unless it is the one
        the kernel already took from memory/target (the daemon writes bytes,
        the kernel shows whole pages): only a move is churn."""
        self.stats.target_writes += 1
        if bm.page_floor_kb(tgt_kb) != self.driver.target_kb:
            self.stats.target_moves += 1
        self.driver = bm.set_target_kb(self.driver, tgt_kb)

    # --- one step --------------------------------------------------------

    def step(self, t_s: float, dt_s: float, read_memory_target: Callable[[], str | None],
             room_kb: int | None = None) -> None:
        """Advance to simulated time ``t_s``.  ``read_memory_target()`` reads
        this guest's memory/target from xenstore (None if absent); ``room_kb``
        is the host's free memory the balloon may grow into (None: unbounded)."""
        if self._watch_fired.is_set():
            self._watch_fired.clear()
            self._apply_watch(read_memory_target())
        seen = self._poll_daemon_writes()
        demand: Demand = demand_at(self.workload, t_s)
        self.demand = demand
        memtotal_before = self.driver.memtotal_kb
        floor_kb = vm_model.in_use_kb(self.vm, memtotal_before) + (
            self.driver.kernel_reserved_kb if self.kind == bm.SYSFS else 0)
        before_kb = self.driver.current_kb
        self.driver = bm.step(self.driver, dt_s, floor_kb)
        if room_kb is not None and self.driver.current_kb - before_kb > max(room_kb, 0):
            # Xen's populate_physmap fails when the host has no free pages
            self.driver = replace(self.driver, current_kb=before_kb + bm.page_floor_kb(room_kb))
        self.vm = vm_model.step(self.vm, dt_s, self.driver.memtotal_kb, demand)
        self._account(dt_s, t_s)
        self._publish(seen)

    def _account(self, dt_s: float, t_s: float) -> None:
        s, d = self.stats, self.driver
        # the MemTotal the balloon's target would give: does it cover the demand?
        target_memtotal_kb = d.target_kb - (d.current_kb - d.memtotal_kb)
        if target_memtotal_kb < self.demand.committed_kb:
            if s.uncovered_since_s is None:
                s.uncovered_since_s = t_s
        elif s.uncovered_since_s is not None:
            s.cover_delays_s.append(t_s - s.uncovered_since_s)
            s.uncovered_spells_s.append((s.uncovered_since_s, t_s))
            s.uncovered_since_s = None
        s.seconds += dt_s
        s.kb_seconds += d.current_kb * dt_s
        s.min_kb = min(s.min_kb, d.current_kb)
        deficit_kb = self.demand.committed_kb - d.memtotal_kb
        if deficit_kb > 0:
            s.below_committed_s += dt_s
            s.worst_deficit_kb = max(s.worst_deficit_kb, deficit_kb)

    # --- figures ---------------------------------------------------------

    def uncovered_spells_s(self, now_s: float) -> list[tuple[float, float]]:
        """Each spell of the target below Committed_AS, (start, end); one still
        open ends at ``now_s``."""
        s = self.stats
        open_spell = [] if s.uncovered_since_s is None else [(s.uncovered_since_s, now_s)]
        return s.uncovered_spells_s + open_spell

    @property
    def swapped_in_pages(self) -> int:
        return self.vm.counters.pswpin - self.stats.pswpin0

    @property
    def swapped_out_pages(self) -> int:
        return self.vm.counters.pswpout - self.stats.pswpout0

    def set_cap_kb(self, cap_kb: int) -> None:
        """The hypervisor's max_pages for this domain changed."""
        self.driver = bm.set_cap_kb(self.driver, cap_kb)
