"""dom0 keeps a self-ballooning guest's ``memory/target`` true (issue 20).

libxl saves, restores and migrates a domain with ``memory/target`` as its
size: the rebuilt domain may hold at most that + 1 MiB (LIBXL_MAXMEM_CONSTANT),
and a guest that held more is lost ("Over-allocation").  A self-ballooning
guest sets its own balloon target, and the guest may not write
``memory/target`` (xl keeps memory/ read-only to it), so dom0 copies the
target the guest publishes (``selftarget``, while its ``mode`` is "self")
into ``memory/target``:

* up at once: the guest is growing to its selftarget, and the rebuilt domain
  must have room for every page it may hold by then;
* down only once the guest holds no more than its new selftarget (``xl
  list``), so that ``memory/target`` + 1 MiB covers what it holds throughout;
* never below what the guest holds (``xl list``): a selftarget below it is
  one the guest has already left behind (it grew on since it published it),
  and the kernel, applying it, would take pages back from a guest that needs
  them; and a target below it is raised to it, whatever the selftarget.
  After a live migration the new domain may hold more than its balloon
  counts (the branch's run 4: 407 MiB in ``xl list``, the guest's balloon
  392 MiB, memory/target left at 348 MiB): the next save would rebuild it
  too small;
* never above its static-max (libxl refuses a target above it);
* while the selftarget rises, ahead of it by its last rise (ahead_kb): a
  copy of a selftarget the balloon has already passed would pull the
  kernel's balloon back.

The kernel's balloon driver applies every write of ``memory/target``; the
guest's daemon, told by its watch, puts its own target back at once
(guest/runloop.py, TARGET), so a copy that arrives late costs a moment, not
a step.  A plain xenstore write, as ``libxl_set_memory_target(enforce=0)``:
the hypervisor's limit for the domain stays where the administrator set it.

Everything here is pure: numbers in, numbers out.  Guest text is hostile:
only bounded integers and the exact word "self" are taken.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..contract.intparse import parse_bounded_int
from ..contract.keys import (BALANCE, DOWN_HYSTERESIS, INTERVAL, MAX_KB, MINMEM, MINPOLICY,
                             MODE_SELF, SELFBALLOON, SOFTMAXMEM, UP_HYSTERESIS)

# xl migrate-receive builds the incoming domain under this suffix (xl_vmcontrol.c)
INCOMING = "--incoming"
LIBXL_MAXMEM_KB = 1024  # LIBXL_MAXMEM_CONSTANT: libxl's limit is the target + this
# dom0's keys in a guest's memory/ that libxl does not carry across a migration (it
# writes only target, static-max and videoram): the balancer copies them from the sender
CARRIED_KEYS = (SELFBALLOON, BALANCE, MINMEM, SOFTMAXMEM, MINPOLICY, INTERVAL, DOWN_HYSTERESIS,
                UP_HYSTERESIS)
AHEAD_MAX_S = 10.0  # a rise measured over a longer gap between looks says nothing of now


@dataclass(frozen=True)
class Follow:
    """One write of a guest's memory/target: from ``old_kb`` to ``new_kb``."""

    domid: int
    name: str
    old_kb: Optional[int]
    new_kb: int


def is_self(mode: Optional[str]) -> bool:
    """The guest says it sets its own target (keys.MODE_SELF, exactly)."""
    return mode is not None and mode.strip() == MODE_SELF


def self_target_kb(text: Optional[str]) -> Optional[int]:
    """The guest's published selftarget (kB), or None if absent or not a sane number."""
    return None if text is None else parse_bounded_int(text, 1, MAX_KB)


def follow_kb(selftarget_kb: int, target_kb: Optional[int], cur_kb: int,
              static_max_kb: Optional[int]) -> Optional[int]:
    """What memory/target should become, or None to leave it.

    ``cur_kb``: what the domain holds (``xl list``, whole MiB, so at most
    1023 kB below the truth): a lower target is written only when the guest
    holds no more than it, then target + 1 MiB covers every page it holds.
    A domain without memory/target or static-max is being built or torn
    down (libxl writes both first): a write would leave a stray node."""
    if target_kb is None or static_max_kb is None:
        return None
    hold_kb = min(max(selftarget_kb, cur_kb), static_max_kb)
    if hold_kb > target_kb and cur_kb <= static_max_kb:
        return hold_kb  # up at once, to what it wants or holds, whichever is more
    want_kb = min(selftarget_kb, static_max_kb)
    if want_kb < target_kb and cur_kb <= want_kb:
        return want_kb
    return None


def ahead_kb(selftarget_kb: int, prev: Optional[tuple[float, int]], now_s: float) -> int:
    """How far above the guest's selftarget to write memory/target: what it rose
    since dom0's last look (``prev``: when, and the selftarget then), if that
    look was at most AHEAD_MAX_S ago, else nothing.

    A selftarget read by dom0 is already behind the guest's balloon while the
    guest grows (published a tick ago), and the kernel applies every write of
    memory/target: a copy below the balloon's target takes pages back from a
    guest that needs them until the daemon puts its own target back (a tick
    with the cli backend).  On the real host a 64 MB/s ramp was OOM-killed so.
    One more pass of the same rise keeps the write at or above the balloon,
    and covers what the guest may hold until the next write, which is what
    a save between two passes needs."""
    if prev is None:
        return 0
    then_s, then_kb = prev
    if not 0 < now_s - then_s <= AHEAD_MAX_S:
        return 0
    return max(selftarget_kb - then_kb, 0)


def incoming_max_kb(name: str, max_kb: int, cur_kb: int, free_kb: int) -> Optional[int]:
    """The hypervisor limit for a domain ``xl migrate-receive`` is building, or None.

    libxl builds it with the target read when the migration began + 1 MiB
    (``max_kb``), while the guest runs on at the sender for the whole
    pre-copy: a self-ballooning guest that grows meanwhile would be refused
    its pages here ("Over-allocation").  Neither its static-max nor its
    target is in xenstore yet (libxl writes them after the stream), so the
    limit is what this host could give it: what it holds and all the free
    memory.  Only the stream fills the domain while it is built, and the
    sender's own limit bounds the stream; never lower than libxl's."""
    if not name.endswith(INCOMING):
        return None
    want_kb = cur_kb + max(free_kb, 0)
    return want_kb if want_kb > max_kb else None


def built_max_kb(saved_max_kb: int, cur_kb: int, self_max_kb: Optional[int] = None) -> int:
    """The limit of a domain raised while it came in, once built: libxl's
    again, or what the domain holds + 1 MiB if it grew past that during the
    pre-copy (``cur_kb``: xl list, whole MiB, so at most 1023 kB short).

    ``self_max_kb``: the static-max of a guest whose sender self-ballooned,
    given at once.  The guest runs on from where the pre-copy left it, still
    growing, and its daemon publishes its mode under the new domid only a tick
    or more later: a limit at what it holds stalled the guest in reclaim, its
    daemon with it, and the publish that would have lifted the limit never
    came (real host, run 45: the guest silent for 187 s)."""
    return max(saved_max_kb, cur_kb + LIBXL_MAXMEM_KB, self_max_kb or 0)
