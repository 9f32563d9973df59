"""One iteration of the daemon: sense, decide, act.

Ported from the original's main ``while true`` loop.  The collaborators are
handed in (composition root: cli.py); nothing here knows the OS paths.  The
parts, one job each: OnceLog (once.py), Dom0Link (link.py: dom0's keys and
the watch), Sensor (sensor.py), Effective (effective.py: the settings in
force), decide() (policy.py), PolicyLine (policyline.py: the policy logged
when it changes), Publisher and Outbox (publisher.py, outbox.py).
"""
from __future__ import annotations

import logging
import time

from ..contract.keys import MODE_DIRECTED, MODE_SELF
from .balloon import BalloonError
from .effective import merge
from .link import Dom0Link
from .once import OnceLog
from .outbox import Outbox
from ..contract.overrides import Overrides
from .policy import KIB, MIB, decide
from .policyline import PolicyLine
from .publisher import PRIMARY, Publisher
from .sensor import Sensor

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable

    from .balloon import Balloon
    from .settings import Config
    from .maxmem import MaxmemFile
    from .policy import Decision, Wake
    from .sensor import ProcFiles, Sensed
    from ..xenstore.interface import Xenstore

# The condition this module logs once while it lasts (OnceLog).
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
        self.publisher = Publisher(Outbox(config, self.sensor, clock), self.once, log)
        self.policy_line = PolicyLine(log)
        self.settings = merge(config, Overrides())
        self.link.target_is_input = not self.settings.self_ballooning
        self.ticks = 0
        self.last_tgt_bytes: int | None = None  # the balloon target this daemon last wrote
        self.wake: Wake | None = None  # when the loop should tick early
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
        self.publisher.outbox.reconfigure(config)
        self._merge()

    def interval_s(self) -> int:
        """The interval in force: the mode's, unless dom0's memory/interval."""
        return self.settings.interval_s

    def self_ballooning(self) -> bool:
        """The mode in force: the config's, unless dom0's memory/selfballoon."""
        return self.settings.self_ballooning

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
            self.publisher.publish(self.link.xenstore, decision, sensed, self.link.memory_dir,
                                   self.ticks,
                                   MODE_SELF if self.settings.self_ballooning else MODE_DIRECTED)
            self.link.publishing_in_memory = self.publisher.state == PRIMARY
        return self.settings.interval_s

    def _refresh(self) -> bool:
        """dom0's keys again; True if they changed (then merged once)."""
        changed = self.link.refresh()
        if changed:
            self._merge()
        return changed

    def _merge(self) -> None:
        self.settings = merge(self.config, self.link.overrides or Overrides())
        self.link.target_is_input = not self.settings.self_ballooning

    def sign_off(self) -> None:
        """At a clean stop: the publisher's last word (Publisher.sign_off)."""
        self.publisher.sign_off(self.link.xenstore)

    def reassert(self) -> None:
        """Self-ballooning, dom0 wrote memory/target (its follower copying
        our selftarget there, a moment late, or anyone else): the kernel
        applies every write of it, so put back the target this daemon last
        set.  No new decision: a tick for each of those writes would step the
        hysteresis once more each time."""
        if self.last_tgt_bytes is None or not self.settings.self_ballooning:
            return
        self._set_target(self.last_tgt_bytes)

    def _act(self, s: Sensed, pressure: bool) -> Decision:
        """Decide with dom0's keys as last read, and write the balloon target."""
        st = self.settings
        decision = decide(
            st, cur_kb=s.cur_kb, committed_as_kb=s.committed_kb,
            kernel_reserved_kb=s.kernel_reserved_kb, maxmem_kb=s.maxmem_kb, boot_kb=s.boot_kb,
            committed_rise_kb=s.committed_rise_kb, run_need_kb=s.run_need_kb,
            mem_available_kb=s.mem_available_kb, pressure=pressure)
        self.wake = decision.wake
        self.policy_line.show(st, min_mb=decision.min_bytes // MIB, maxmem_kb=s.maxmem_kb,
                              boot_kb=s.boot_kb, balloon=self.balloon.name,
                              xenstore=("off" if self.xenstore is None
                                        else self.xenstore.backend))
        if decision.tgt_bytes is not None:
            self._set_target(decision.tgt_bytes)
            self.log.debug("cur %d kB, committed %d kB, target %d kB (min %d kB, %s%s)",
                           s.cur_kb, s.committed_kb, decision.tgt_bytes // KIB,
                           decision.min_bytes // KIB,
                           "self" if st.self_ballooning else "directed",
                           ", pressure" if pressure else "")
        return decision

    def _set_target(self, tgt_bytes: int) -> None:
        """Write the balloon target; a failure is logged once while it lasts."""
        try:
            self.balloon.set_target_bytes(tgt_bytes)
            self.last_tgt_bytes = tgt_bytes
            self.once.over(BALLOON_WRITE)
        except BalloonError as exc:
            self.once.say(BALLOON_WRITE, logging.ERROR, f"balloon: {exc}")
