"""Where the guest publishes: memory/, where dom0 reads first; else
data/xenballoon/ (xl's default leaves memory/ read-only to the guest); else
nowhere.  The states and every change between them are here."""
from __future__ import annotations

import logging

from ..contract.keys import FALLBACK_DIR, MODE, MODE_DIRECTED, MODE_SELF, PRIMARY_DIR
from ..xenstore import XenstoreError, XenstoreUnavailable, XenstoreWriteFailed

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from .once import OnceLog
    from .outbox import Outbox
    from .policy import Decision
    from .sensor import Sensed
    from ..xenstore.interface import Xenstore

PRIMARY = "primary"  # publishing under memory/
FALLBACK = "fallback"  # memory/ refused the write: publishing under data/xenballoon/
NOWHERE = "nowhere"  # data/xenballoon/ refused it too; tried again every tick
DIRECTORY = {PRIMARY: PRIMARY_DIR, FALLBACK: FALLBACK_DIR, NOWHERE: FALLBACK_DIR}

# After falling back, try memory/ again this often, in case dom0 handed the
# keys to the guest (xenstore-chmod) since.
REPROBE_TICKS = 60
# When our keys appear under memory/, dom0 is handing them over; its write and
# its chmod may be separate commands, so try again for a few ticks.
HANDOVER_RETRIES = 5

# The conditions this module logs once while they last (OnceLog).
XS_WRITE = "xenstore-write"
PUBLISH_NOWHERE = "publish-nowhere"
MEMORY_READONLY = "memory-readonly"


class Publisher:
    def __init__(self, outbox: Outbox, once: OnceLog, log: logging.Logger) -> None:
        self.outbox = outbox
        self.state = PRIMARY
        self._once = once
        self._log = log
        self._fallback_since_tick = 0  # 0: memory/ never refused since it last took a write
        self._fallback_seen: frozenset[str] = frozenset()  # our keys under memory/ then
        self._handover_retries = 0

    def publish(self, xs: Xenstore | None, decision: Decision, sensed: Sensed,
                memory_dir: dict[str, str] | None, tick: int, mode: str) -> None:
        """Publish what dom0 does not have yet; ``memory_dir``: memory/ as
        read this tick (None: xenstore was unreachable a moment ago, and a
        write would only wait for its timeout too); ``mode``: keys.MODE_*."""
        if xs is None or memory_dir is None:
            return
        if self.state != PRIMARY and self._should_reprobe(memory_dir, tick):
            self._change(PRIMARY)  # FALLBACK/NOWHERE -> PRIMARY: try memory/ again
        try:
            self._send(xs, decision, sensed, mode)
        except XenstoreWriteFailed:
            if self.state != PRIMARY:
                self._change(NOWHERE)  # FALLBACK/NOWHERE -> NOWHERE
                return
            self._change(FALLBACK, tick, memory_dir)  # PRIMARY -> FALLBACK
            try:
                self._send(xs, decision, sensed, mode)
            except XenstoreWriteFailed:
                self._change(NOWHERE)  # FALLBACK -> NOWHERE
            except XenstoreUnavailable as exc:
                self._once.say(XS_WRITE, logging.WARNING, f"xenstore: {exc}")
        except XenstoreUnavailable as exc:
            self._once.say(XS_WRITE, logging.WARNING, f"xenstore: {exc}")

    def sign_off(self, xs: Xenstore | None) -> None:
        """At a clean stop, after self-ballooning: mode "directed", so that dom0's
        follower stops copying a selftarget nobody keeps (the kernel alone
        follows memory/target now).  A daemon killed leaves "self"; dom0 then
        stops following once its uptime no longer advances."""
        if xs is None or self.outbox.mode_sent != MODE_SELF:
            return
        try:
            xs.write_many({f"{FALLBACK_DIR}/{MODE}": MODE_DIRECTED})
        except XenstoreError as exc:
            self._log.debug("xenstore: cannot sign off (%s)", exc)

    def _change(self, new_state: str, tick: int = 0,
                memory_dir: dict[str, str] | None = None) -> None:
        old_state, self.state = self.state, new_state
        if old_state == PRIMARY and new_state == FALLBACK and memory_dir is not None:
            self._fallback_since_tick = tick
            self._fallback_seen = self._seen_under(memory_dir)
            self._once.say(MEMORY_READONLY, logging.INFO,
                           f"xenstore: memory/ is read-only for this guest "
                           f"(xl's default); publishing under {FALLBACK_DIR}/")
        elif new_state == NOWHERE:
            self._once.say(PUBLISH_NOWHERE, logging.ERROR,
                           f"xenstore: cannot write {FALLBACK_DIR}/ either; not publishing")

    def _send(self, xs: Xenstore, decision: Decision, sensed: Sensed, mode: str) -> None:
        directory = DIRECTORY[self.state]
        parcel = self.outbox.compose(directory, decision, sensed, mode)
        if parcel.outputs:
            # mode always under data/xenballoon/, the guest's own: dom0 hands over
            # the 2008 keys in memory/, and a refused mode would cost them all
            xs.write_many({f"{FALLBACK_DIR if k == MODE else directory}/{k}": v
                           for k, v in parcel.outputs.items()})
            self._written()
            self._log.debug("published %s under %s/ (%s)", ", ".join(parcel.outputs),
                            directory, parcel.why or "selftarget changed")
        self.outbox.sent(parcel)

    def _written(self) -> None:
        self._once.over(XS_WRITE)
        self._once.over(PUBLISH_NOWHERE)
        if self.state == NOWHERE:
            self._change(FALLBACK)  # NOWHERE -> FALLBACK: data/xenballoon/ took a write
        elif self.state == PRIMARY and self._fallback_since_tick:
            self._fallback_since_tick = 0
            self._once.over(MEMORY_READONLY)
            self._log.info("xenstore: memory/ is writable again; publishing there")

    def _seen_under(self, memory_dir: dict[str, str]) -> frozenset[str]:
        """Which of the keys we publish are under memory/ (dom0 handing them over)."""
        return frozenset(k for k in self.outbox.keys_sent() if k in memory_dir)

    def _should_reprobe(self, memory_dir: dict[str, str], tick: int) -> bool:
        seen = self._seen_under(memory_dir)
        if seen != self._fallback_seen:
            self._fallback_seen = seen
            self._handover_retries = HANDOVER_RETRIES if seen else 0
        if self._handover_retries > 0:
            self._handover_retries -= 1
            return True
        return tick - self._fallback_since_tick >= REPROBE_TICKS
