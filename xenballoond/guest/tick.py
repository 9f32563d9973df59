"""One iteration of the daemon: sense, decide, act.

Ported from the original's main ``while true`` loop.  The collaborators are
handed in (composition root: cli.py); nothing here knows the OS paths.  The
parts, one job each: OnceLog (once.py), Dom0Link (link.py: dom0's keys and
the watch), Sensor (sensor.py), Effective (effective.py: the settings in
force), decide() (policy.py).
"""
from __future__ import annotations

import logging
import os
import time

from .balloon import BalloonError
from ..keys import FALLBACK_DIR, PRIMARY_DIR, PUBLISHED
from .effective import describe, merge
from .link import Dom0Link
from .once import OnceLog
from .overrides import Overrides
from .policy import KIB, MIB, decide
from .publish import build_outputs, stats_due, watched_numbers, watched_vmstat
from .sensor import Sensor
from ..xenstore import XenstoreUnavailable, XenstoreWriteFailed

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable

    from .balloon import Balloon
    from ..config import Config
    from .maxmem import MaxmemFile
    from .policy import Decision, Wake
    from .sensor import ProcFiles, Sensed
    from ..xenstore.interface import Xenstore

# After falling back to data/xenballoon/, try memory/ again this often, in
# case dom0 handed the keys to the guest (xenstore-chmod) since.
REPROBE_TICKS = 60
# When our keys appear under memory/, dom0 is handing them over; its write and
# its chmod may be separate commands, so try again for a few ticks.
HANDOVER_RETRIES = 5

# The conditions this module logs once while they last (OnceLog).
XS_WRITE = "xenstore-write"
PUBLISH_NOWHERE = "publish-nowhere"
MEMORY_READONLY = "memory-readonly"
BALLOON_WRITE = "balloon-write"


class Ballooner:
    def __init__(self, *, config: Config, balloon: Balloon, files: ProcFiles,
                 maxmem: MaxmemFile, xenstore: Xenstore | None,
                 log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.balloon = balloon
        self.log = log
        self.once = OnceLog(log)
        self.link = Dom0Link(xenstore, self.once)
        self.sensor = Sensor(files, balloon, maxmem, self.once, clock)
        self._publish_dir = PRIMARY_DIR
        self._fallback_since_tick = 0
        self._fallback_seen: frozenset[str] = frozenset()
        self._handover_retries = 0
        # what was last published (publish on change)
        self._stats_numbers: dict[str, int] | None = None
        self._stats_at_s: float | None = None
        self._stats_dir: str | None = None
        self._selftarget_kb: int | None = None
        self._page_kb = max(os.sysconf("SC_PAGE_SIZE") // KIB, 1)
        self.settings = merge(config, Overrides())
        self.ticks = 0
        self.wake: Wake | None = None  # when the loop should tick early
        self._policy = ""  # the policy line last logged
        self._xenstore_at_s = float("-inf")  # monotonic time of the last xenstore exchange
        self._clock = clock

    @property
    def xenstore(self) -> Xenstore | None:
        return self.link.xenstore

    @property
    def maxmem(self) -> MaxmemFile:
        return self.sensor.maxmem

    def reconfigure(self, config: Config, maxmem: MaxmemFile, xenstore: Xenstore | None) -> None:
        """Swap in a reloaded config and the adapters built from it."""
        self.link.replace(xenstore)
        self.config = config
        self.sensor.maxmem = maxmem
        self._stats_at_s = None  # what is sent may have changed: everything again
        self._merge()

    def interval_s(self) -> int:
        """The interval in force: the mode's, unless dom0's memory/interval."""
        return self.settings.interval_s

    def summary(self) -> str:
        return (f"{self.balloon.name} balloon, self-ballooning "
                f"{'on' if self.config.self_ballooning else 'off'}, xenstore "
                f"{'on' if self.xenstore is not None else 'off'}")

    def tick(self, pressure: bool = False) -> int:
        """Run one iteration; return the seconds to wait before the next.

        Self-ballooning, the balloon comes first: /proc/meminfo is read and the
        target written with dom0's keys as last read, before any xenstore I/O,
        so a slow or hung xenstored never delays it; then dom0's keys are read
        again, and if they changed, the target is decided again and written at
        once.  Directed, dom0's keys are read first: its target is the input.
        ``pressure``: the kernel reported memory pressure since the last tick.
        """
        self.ticks += 1
        now_s = self._clock()
        # ticks under pressure come every SAMPLE_S: xenstore once an interval
        xenstore_due = not (pressure and now_s - self._xenstore_at_s < self.settings.interval_s)
        if xenstore_due:
            self.link.keep_watch()
        self.link.take_events()
        # Directed, dom0's memory/target is the input: read it first, or the
        # tick after an xl mem-set would write the old target once, against the
        # kernel that already applies the new one.  (And the first tick learns
        # dom0's keys before it decides anything.)
        read_first = xenstore_due and (self.link.overrides is None
                                       or not self.settings.self_ballooning)
        if read_first:
            self._refresh()
            self._xenstore_at_s = now_s
        sensed = self.sensor.sense(self.settings.interval_s)
        decision = self._act(sensed, pressure) if sensed is not None else None
        if sensed is not None:
            self.sensor.remember(sensed)
        if not xenstore_due:
            return self.settings.interval_s
        if not read_first:
            self._xenstore_at_s = now_s
            if self._refresh() and sensed is not None:
                decision = self._act(sensed, pressure)
        if sensed is not None and decision is not None:
            self._publish(decision, sensed, self.link.memory_dir)
            self.link.publishing_in_memory = self._publish_dir == PRIMARY_DIR
        return self.settings.interval_s

    def _refresh(self) -> bool:
        """dom0's keys again; True if they changed (then merged once)."""
        changed = self.link.refresh()
        if changed:
            self._merge()
        return changed

    def _merge(self) -> None:
        self.settings = merge(self.config, self.link.overrides or Overrides())

    def _act(self, s: Sensed, pressure: bool) -> Decision:
        """Decide with dom0's keys as last read, and write the balloon target."""
        st = self.settings
        decision = decide(
            st, cur_kb=s.cur_kb, committed_as_kb=s.committed_kb,
            kernel_reserved_kb=s.kernel_reserved_kb, maxmem_kb=s.maxmem_kb, boot_kb=s.boot_kb,
            committed_rise_kb=s.committed_rise_kb, run_need_kb=s.run_need_kb,
            mem_available_kb=s.mem_available_kb, pressure=pressure)
        self.wake = decision.wake
        self._log_policy(decision.min_bytes // MIB, s)
        if decision.tgt_bytes is not None:
            try:
                self.balloon.set_target_bytes(decision.tgt_bytes)
                self.once.over(BALLOON_WRITE)
            except BalloonError as exc:
                self.once.say(BALLOON_WRITE, logging.ERROR, f"balloon: {exc}")
            self.log.debug("cur %d kB, committed %d kB, target %d kB (min %d kB, %s%s)",
                           s.cur_kb, s.committed_kb, decision.tgt_bytes // KIB,
                           decision.min_bytes // KIB,
                           "self" if st.self_ballooning else "directed",
                           ", pressure" if pressure else "")
        return decision

    def _log_policy(self, min_mb: int, s: Sensed) -> None:
        """The policy in force, at start and whenever it changes (a reload,
        dom0's overrides, a new high-water mark)."""
        policy = describe(self.settings, min_mb=min_mb, maxmem_kb=s.maxmem_kb, boot_kb=s.boot_kb,
                          xenstore="off" if self.xenstore is None else self.config.xenstore_backend,
                          balloon=self.balloon.name)
        if policy != self._policy:
            self._policy = policy
            self.log.info("%s", policy)

    def _publish(self, decision: Decision, sensed: Sensed,
                 memory_dir: dict[str, str] | None) -> None:
        if self.xenstore is None or memory_dir is None:
            # unreachable a moment ago: a write would only wait for its timeout too
            return
        if self._publish_dir == FALLBACK_DIR and self._should_reprobe(memory_dir):
            self._publish_dir = PRIMARY_DIR
        try:
            self._send(self._publish_dir, decision, sensed)
        except XenstoreWriteFailed:
            if self._publish_dir == FALLBACK_DIR:
                self._publish_nowhere()
                return
            self._publish_dir = FALLBACK_DIR
            self._fallback_since_tick = self.ticks
            self._fallback_seen = self._seen_under(memory_dir)
            self.once.say(MEMORY_READONLY, logging.INFO,
                          f"xenstore: memory/ is read-only for this guest "
                          f"(xl's default); publishing under {FALLBACK_DIR}/")
            try:
                self._send(FALLBACK_DIR, decision, sensed)
            except XenstoreWriteFailed:
                self._publish_nowhere()
            except XenstoreUnavailable as exc:
                self.once.say(XS_WRITE, logging.WARNING, f"xenstore: {exc}")
        except XenstoreUnavailable as exc:
            self.once.say(XS_WRITE, logging.WARNING, f"xenstore: {exc}")

    def _send(self, directory: str, decision: Decision, sensed: Sensed) -> None:
        """Publish under ``directory`` what dom0 does not have yet: selftarget
        when it changed; meminfo, vmstat and uptime when a number dom0 reads
        from them moved (publish.stats_due), or every XENBALLOON_PUBLISH_MAX_S."""
        cfg = self.config
        now_s = self._clock()
        vmstat_text = self.sensor.optional_text(cfg.send_vmstat, self.sensor.files.vmstat)
        numbers = watched_numbers(
            sensed.meminfo_fields if cfg.send_meminfo else None,
            None if vmstat_text is None else watched_vmstat(vmstat_text), self._page_kb)
        new_dir = directory != self._stats_dir
        why = stats_due(None if new_dir else self._stats_numbers, self._stats_at_s, numbers,
                        now_s, cfg.publish_threshold_mb * 1024, cfg.publish_max_s)
        tgt_kb = None if decision.tgt_bytes is None else decision.tgt_bytes // KIB
        send_tgt = tgt_kb is not None and (why is not None or tgt_kb != self._selftarget_kb)
        outputs = build_outputs(
            selftarget_kb=tgt_kb if send_tgt else None,
            meminfo_text=sensed.meminfo_text if why and cfg.send_meminfo else None,
            vmstat_text=vmstat_text if why else None,
            uptime_text=self.sensor.optional_text(cfg.send_uptime, self.sensor.files.uptime)
            if why else None)
        if outputs:
            self._write(directory, outputs)
            self.log.debug("published %s under %s/ (%s)", ", ".join(outputs), directory,
                           why or "selftarget changed")
        if send_tgt:
            self._selftarget_kb = tgt_kb
        if why is not None:
            self._stats_numbers, self._stats_at_s, self._stats_dir = numbers, now_s, directory

    def _seen_under(self, memory_dir: dict[str, str]) -> frozenset[str]:
        """Which of the keys we publish are under memory/ (dom0 handing them over)."""
        cfg = self.config
        sent = {"selftarget": True, "meminfo": cfg.send_meminfo, "vmstat": cfg.send_vmstat,
                "uptime": cfg.send_uptime}
        return frozenset(k for k in PUBLISHED if sent[k] and k in memory_dir)

    def _publish_nowhere(self) -> None:
        self.once.say(PUBLISH_NOWHERE, logging.ERROR,
                      f"xenstore: cannot write {FALLBACK_DIR}/ either; not publishing")

    def _should_reprobe(self, memory_dir: dict[str, str]) -> bool:
        seen = self._seen_under(memory_dir)
        if seen != self._fallback_seen:
            self._fallback_seen = seen
            self._handover_retries = HANDOVER_RETRIES if seen else 0
        if self._handover_retries > 0:
            self._handover_retries -= 1
            return True
        return self.ticks - self._fallback_since_tick >= REPROBE_TICKS

    def _write(self, directory: str, outputs: dict[str, str]) -> None:
        assert self.xenstore is not None
        self.xenstore.write_many({f"{directory}/{k}": v for k, v in outputs.items()})
        self.once.over(XS_WRITE)
        self.once.over(PUBLISH_NOWHERE)
        if directory == PRIMARY_DIR and self._fallback_since_tick:
            self._fallback_since_tick = 0
            self.once.over(MEMORY_READONLY)
            self.log.info("xenstore: memory/ is writable again; publishing there")
