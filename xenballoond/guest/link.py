"""dom0's side of xenstore: its keys under memory/ (the overrides), read every
tick, or watched and read when the watch fires (a backend with a descriptor
to poll: native)."""
from __future__ import annotations

import logging

from ..contract.keys import DOMAIN_ROOT, PRIMARY_DIR, PUBLISHED, TARGET
from ..contract.overrides import KEYS, Overrides, parse_overrides
from ..xenstore import XenstoreError, XenstoreUnavailable

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from .once import OnceLog
    from ..xenstore.interface import Xenstore

# The conditions this module logs once while they last (OnceLog).
XS_READ = "xenstore-read"
OVERRIDE = "override:"  # + the memory/ key
WATCH = "xenstore-watch"

# The token of our watch on memory/: dom0's keys are read when it fires, not
# every tick.
WATCH_TOKEN = "xenballoond"
_OWN_KEYS = frozenset(f"{PRIMARY_DIR}/{k}" for k in PUBLISHED)
_TARGET_KEY = f"{PRIMARY_DIR}/{TARGET}"


class Dom0Link:
    """The xenstore handle (None: xenstore off), the watch on memory/, and
    dom0's keys as last read."""

    def __init__(self, xenstore: Xenstore | None, once: OnceLog) -> None:
        self.xenstore = xenstore
        self._once = once
        self.overrides: Overrides | None = None  # None: never read yet
        self.memory_dir: dict[str, str] | None = None  # None: xenstore unreachable
        # Set by the run loop: a tick alone (--once) has no use for a watch.
        self.watch_wanted = False
        # Set after each publication: our own writes under memory/ are no change.
        self.publishing_in_memory = True
        # Set by the ticker: False while self-ballooning, when memory/target is
        # no input; a write of it then only sets target_touched.
        self.target_is_input = True
        self.target_touched = False
        self._watching = False
        self._registered = False  # the watch's first event is still to come
        self._changed = True  # memory/ may differ from what was last read

    def replace(self, xenstore: Xenstore | None) -> None:
        """A reload's handle (maybe the same one): memory/ is read again."""
        if self.xenstore is not None and xenstore is not self.xenstore:
            self.xenstore.close()
            self._watching = False
        self.xenstore = xenstore
        self._changed = True

    def keep_watch(self) -> None:
        """Watch memory/ if wanted and not yet done.  A backend without
        watches (CLI: no descriptor), or a watch xenstored refuses, leaves
        memory/ to be read every tick."""
        if not self.watch_wanted or self._watching or self.xenstore is None:
            return
        try:
            self.xenstore.watch(PRIMARY_DIR, WATCH_TOKEN)
        except XenstoreError as exc:
            self._once.say(WATCH, logging.WARNING,
                           f"xenstore: cannot watch {PRIMARY_DIR}/ ({exc}); reading it every tick")
            return
        self._once.over(WATCH)
        self._watching = True
        # xenstored fires a new watch once, with the watched path: this tick
        # reads memory/ after setting it, so that event says nothing new
        self._changed = self._registered = True

    def fileno(self) -> int | None:
        """The connection to poll for dom0's changes between ticks; None when
        there is no live watch (memory/ is read every tick then)."""
        if not self._watching or self.xenstore is None:
            return None
        return self.xenstore.fileno()

    def take_events(self) -> bool:
        """Take the watch events xenstored sent; True if one may be a change
        of dom0's keys (any event but our own writes under memory/: the
        path is xenstored's text, anything unexpected in it is a change).
        A broken connection is closed by the backend: the next read
        reconnects and sets the watch again, which fires it.
        memory/target, while it is no input (self-ballooning), is no change
        either: it sets target_touched (take_target_touch)."""
        if not self._watching or self.xenstore is None:
            return False
        changed = False
        for path, token in self.xenstore.events():
            if token != WATCH_TOKEN:
                continue
            if self._registered and path == PRIMARY_DIR:
                self._registered = False
                continue
            relative = path.split("/", 4)[-1] if path.startswith(DOMAIN_ROOT + "/") else path
            ours = self.publishing_in_memory and relative in _OWN_KEYS
            if relative == _TARGET_KEY and not self.target_is_input:
                self.target_touched = True
            elif not ours:
                changed = True
        if changed:
            self._changed = True
        return changed

    def take_target_touch(self) -> bool:
        """Whether memory/target was written, while no input, since the last call."""
        touched, self.target_touched = self.target_touched, False
        return touched

    def refresh(self) -> bool:
        """Read dom0's keys again, unless the watch on memory/ is live and has
        not fired since they were last read.  True if the overrides changed."""
        if self.overrides is not None and not self._changed and self.fileno() is not None:
            return False
        self._changed = False  # an event during the read sets it again
        before = self.overrides
        self.overrides, self.memory_dir = self._read()
        return self.overrides != before

    def _read(self) -> tuple[Overrides, dict[str, str] | None]:
        """dom0's overrides and the memory/ directory; None for the directory
        when xenstore is unreachable (down, or hung until the timeout)."""
        if self.xenstore is None:
            return Overrides(), None
        once = self._once
        try:
            memory_dir = self.xenstore.snapshot(PRIMARY_DIR)
        except XenstoreError as exc:
            self._changed = True  # read again next time
            once.say(XS_READ, logging.WARNING, f"xenstore: cannot read memory/ ({exc}); "
                                               "ballooning goes on with the config values")
            return Overrides(), None if isinstance(exc, XenstoreUnavailable) else {}
        once.over(XS_READ)
        overrides, problems = parse_overrides(memory_dir)
        for key in KEYS:
            if key in problems:
                once.say(OVERRIDE + key, logging.WARNING, problems[key])
            else:
                once.over(OVERRIDE + key)
        return overrides, memory_dir
