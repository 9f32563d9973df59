"""One iteration of the daemon: sense, decide, act.

Ported from the original's main ``while true`` loop.  The collaborators are
handed in (composition root: cli.py); nothing here knows the OS paths.
"""
from __future__ import annotations

import logging
import os
import time

from .effective import describe, merge
from .balloon import BalloonError
from ..config import Config
from .maxmem import MaxmemFile
from .once import OnceLog
from .overrides import KEYS, Overrides, parse_overrides
from .policy import KIB, MIB, Decision, Wake, decide
from ..keys import FALLBACK_DIR, PRIMARY_DIR, PUBLISHED
from .publish import build_outputs, stats_due, watched_numbers, watched_vmstat
from .sensor import Sensor
from ..xenstore import XenstoreError, XenstoreUnavailable, XenstoreWriteFailed

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable

    from .balloon import Balloon
    from .sensor import ProcFiles, Sensed
    from ..xenstore.interface import Xenstore

# After falling back to data/xenballoon/, try memory/ again this often, in
# case dom0 handed the keys to the guest (xenstore-chmod) since.
REPROBE_TICKS = 60
# When our keys appear under memory/, dom0 is handing them over; its write and
# its chmod may be separate commands, so try again for a few ticks.
HANDOVER_RETRIES = 5

# The conditions logged once while they last (OnceLog).
XS_READ = "xenstore-read"
XS_WRITE = "xenstore-write"
PUBLISH_NOWHERE = "publish-nowhere"
MEMORY_READONLY = "memory-readonly"
BALLOON_WRITE = "balloon-write"
OVERRIDE = "override:"  # + the memory/ key
WATCH = "xenstore-watch"

# The token of our watch on memory/ (native backend): dom0's keys are read when
# it fires, not every tick.
WATCH_TOKEN = "xenballoond"
_OWN_KEYS = frozenset(f"{PRIMARY_DIR}/{k}" for k in PUBLISHED)


class Ballooner:
    def __init__(self, *, config: Config, balloon: Balloon, files: ProcFiles,
                 maxmem: MaxmemFile, xenstore: Xenstore | None,
                 log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.settings = merge(config, Overrides())  # again whenever either changes
        self.balloon = balloon
        self.xenstore = xenstore
        self.log = log
        self.ticks = 0
        self.once = OnceLog(log)
        self.sensor = Sensor(files, balloon, maxmem, self.once, clock)
        self._publish_dir = PRIMARY_DIR
        self._fallback_since_tick = 0
        self._fallback_seen: frozenset[str] = frozenset()
        self._handover_retries = 0
        self._policy = ""
        self._overrides: Overrides | None = None  # dom0's keys as last read
        self._memory_dir: dict[str, str] | None = None
        self.wake: Wake | None = None  # when the loop should tick early
        self._xenstore_at_s = float("-inf")  # monotonic time of the last xenstore exchange
        self._clock = clock
        # dom0's keys: read every tick, or (native backend, from the run loop)
        # watched and read when the watch fires
        self.watch_wanted = False
        self._watching = False
        self._registered = False  # the watch's first event is still to come
        self._memory_changed = True
        # what was last published (publish on change)
        self._stats_numbers: dict[str, int] | None = None
        self._stats_at_s: float | None = None
        self._stats_dir: str | None = None
        self._selftarget_kb: int | None = None
        self._page_kb = max(os.sysconf("SC_PAGE_SIZE") // KIB, 1)

    @property
    def maxmem(self) -> MaxmemFile:
        return self.sensor.maxmem

    def reconfigure(self, config: Config, maxmem: MaxmemFile, xenstore: Xenstore | None) -> None:
        """Swap in a reloaded config and the adapters built from it."""
        if self.xenstore is not None and xenstore is not self.xenstore:
            self.xenstore.close()
            self._watching = False
        self.config, self.xenstore = config, xenstore
        self.sensor.maxmem = maxmem
        self._memory_changed = True
        self._stats_at_s = None  # what is sent may have changed: everything again
        self.settings = merge(config, self._overrides or Overrides())

    def _log_policy(self, min_mb: int, s: Sensed) -> None:
        """The policy in force, at start and whenever it changes (a reload,
        dom0's overrides, a new high-water mark)."""
        policy = describe(self.settings, min_mb=min_mb, maxmem_kb=s.maxmem_kb, boot_kb=s.boot_kb,
                          xenstore="off" if self.xenstore is None else self.config.xenstore_backend,
                          balloon=self.balloon.name)
        if policy != self._policy:
            self._policy = policy
            self.log.info("%s", policy)

    def _read_overrides(self) -> tuple[Overrides, dict[str, str] | None]:
        """dom0's overrides and the memory/ directory; None for the directory
        when xenstore is unreachable (down, or hung until the timeout)."""
        if self.xenstore is None:
            return Overrides(), None
        try:
            memory_dir = self.xenstore.snapshot(PRIMARY_DIR)
        except XenstoreError as exc:
            self._memory_changed = True  # read again next time
            self.once.say(XS_READ, logging.WARNING, f"xenstore: cannot read memory/ ({exc}); "
                                                    "ballooning goes on with the config values")
            return Overrides(), None if isinstance(exc, XenstoreUnavailable) else {}
        self.once.over(XS_READ)
        overrides, problems = parse_overrides(memory_dir)
        for key in KEYS:
            if key in problems:
                self.once.say(OVERRIDE + key, logging.WARNING, problems[key])
            else:
                self.once.over(OVERRIDE + key)
        return overrides, memory_dir

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
        xenstore_due = not (pressure and now_s - self._xenstore_at_s < self.interval_s())
        # Directed, dom0's memory/target is the input: read it first, or the
        # tick after an xl mem-set would write the old target once, against the
        # kernel that already applies the new one.  (And the first tick learns
        # dom0's keys before it decides anything.)
        if xenstore_due and self.watch_wanted and not self._watching:
            self._set_watch()
        self.take_watch_events()
        read_first = xenstore_due and (self._overrides is None
                                       or not self.settings.self_ballooning)
        if read_first:
            self._refresh_overrides()
            self._xenstore_at_s = now_s
        sensed = self.sensor.sense(self.settings.interval_s)
        decision = self._act(sensed, pressure) if sensed is not None else None
        if sensed is not None:
            self.sensor.remember(sensed)
        if not xenstore_due:
            return self.interval_s()
        if not read_first:
            self._xenstore_at_s = now_s
            before = self._overrides
            self._refresh_overrides()
            if sensed is not None and self._overrides != before:
                decision = self._act(sensed, pressure)
        if sensed is not None and decision is not None:
            self._publish(decision, sensed, self._memory_dir)
        return self.interval_s()

    def interval_s(self) -> int:
        """The interval in force: the mode's, unless dom0's memory/interval."""
        return self.settings.interval_s

    def _refresh_overrides(self) -> None:
        """dom0's keys: read again, unless the watch on memory/ is live and has
        not fired since they were last read."""
        if self._overrides is not None and not self._memory_changed and self._watch_live():
            return
        self._memory_changed = False  # an event during the read sets it again
        before = self._overrides
        self._overrides, self._memory_dir = self._read_overrides()
        if self._overrides != before:
            self.settings = merge(self.config, self._overrides)

    # --- the watch on memory/ (native backend) ---------------------------

    def _watch_live(self) -> bool:
        return self._watching and self.xenstore is not None and self.xenstore.fileno() is not None

    def _set_watch(self) -> None:
        """Watch memory/ where the backend can (native); the CLI backend, or a
        watch xenstored refuses, keeps reading memory/ every tick."""
        if self.xenstore is None:
            return
        try:
            self.xenstore.watch(PRIMARY_DIR, WATCH_TOKEN)
        except XenstoreError as exc:
            self.once.say(WATCH, logging.WARNING, f"xenstore: cannot watch {PRIMARY_DIR}/ ({exc}); "
                                                  "reading it every tick")
            return
        self.once.over(WATCH)
        self._watching = True
        # xenstored fires a new watch once, with the watched path: this tick
        # reads memory/ after setting it, so that event says nothing new
        self._memory_changed = self._registered = True

    def watch_fd(self) -> int | None:
        """The connection to poll for dom0's changes between ticks; None when
        there is no live watch (memory/ is read every tick then)."""
        if not self._watching or self.xenstore is None:
            return None
        return self.xenstore.fileno()

    def take_watch_events(self) -> bool:
        """Take the watch events xenstored sent; True if one may be a change
        of dom0's keys (any event but our own writes under memory/: the
        path is xenstored's text, anything unexpected in it is a change).
        A broken connection is closed by the backend: the next read
        reconnects and sets the watch again, which fires it."""
        if not self._watching or self.xenstore is None:
            return False
        changed = False
        for path, token in self.xenstore.events():
            if token != WATCH_TOKEN:
                continue
            if self._registered and path == PRIMARY_DIR:
                self._registered = False
                continue
            relative = path.split("/", 4)[-1] if path.startswith("/local/domain/") else path
            ours = self._publish_dir == PRIMARY_DIR and relative in _OWN_KEYS
            if not ours:
                changed = True
        if changed:
            self._memory_changed = True
        return changed

    def _act(self, s: Sensed, pressure: bool) -> Decision:
        """Decide with dom0's keys as last read, and write the balloon target."""
        st = self.settings
        decision = decide(
            st, cur_kb=s.cur_kb, committed_as_kb=s.committed_kb,
            kernel_reserved_kb=s.kernel_reserved_kb, maxmem_kb=s.maxmem_kb,
            boot_kb=s.boot_kb, committed_rise_kb=s.committed_rise_kb,
            run_need_kb=s.run_need_kb, mem_available_kb=s.mem_available_kb, pressure=pressure)
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
