"""From what dom0 reads to the policy's records: ``xl list``, the keys dom0
writes in each guest's memory/, and what the guest published, in; one
balance.GuestState per guest and a status saying why it is held, out.

Who is balanced:

* opted in by the administrator: its name or domid in
  XENBALLOON_BALANCE_GUESTS, or ``memory/balance`` = 1, which only dom0 can
  write (memory/ is read-only for the guest under xl), so a guest cannot opt
  itself in;
* directed: ``memory/selfballoon`` is not 1, as the guest daemon reads it
  (contract/overrides.py).  The balancer writes 0 where the key is absent
  (tick.py), so the daemon follows memory/target whatever its own config
  says; an explicit 1 is the administrator's choice and wins;
* with our daemon running: it published meminfo with a Committed_AS, and its
  published uptime advanced within the last ``stale_polls`` looks;
* cooperative (Cooperation below, balance.uncooperative's verdict), with
  sane limits.

Guest text is hostile: only stats.make_row's bounded numbers are used, and
balance.need_kb caps whatever a guest claims at its static-max.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from ..contract.headroom import risen_kb
from ..contract.intparse import parse_bounded_int
from ..contract.keys import (BALANCE, MAX_KB, MINMEM, MINPOLICY, SELFBALLOON, SOFTMAXMEM,
                             STATIC_MAX, TARGET, memory_path)
from ..contract.minimum import (MIN_POLICY_2008, kernel_min_free_kb, parse_min_policy,
                                policy_min_mb, run_kb)
from ..contract.overrides import Overrides, parse_overrides
from .balance import MIB_KB, CooperationParams, GuestState, uncooperative
from .domainstate import Asked, Domains
from .stats import Row
from .status import Status


@dataclass(frozen=True)
class Domain:
    """One line of ``xl list``."""

    domid: int
    name: str
    cur_kb: int


@dataclass(frozen=True)
class Dom0Keys:
    """What dom0 wrote under the guest's memory/ (raw text; None: absent)."""

    static_max: Optional[str] = None
    target: Optional[str] = None
    selfballoon: Optional[str] = None
    balance: Optional[str] = None
    minmem: Optional[str] = None  # MB: dom0's floor for this guest (the guest daemon's too)
    softmaxmem: Optional[str] = None  # MB: dom0's ceiling for this guest
    minpolicy: Optional[str] = None  # the floor's rule for this guest (the guest daemon's too)


KEY_NAMES = (STATIC_MAX, TARGET, SELFBALLOON, BALANCE, MINMEM, SOFTMAXMEM, MINPOLICY)


def dom0_keys(values: Mapping[str, str], domid: int) -> Dom0Keys:
    """The keys of one guest from a {path: value} read."""
    return Dom0Keys(*(values.get(memory_path(domid, k)) for k in KEY_NAMES))


def as_guest_reads(keys: Dom0Keys) -> Overrides:
    """dom0's keys as the guest daemon reads them (contract/overrides.py): whether
    it self-balloons, and its bounds (a ceiling below the floor is ignored)."""
    raw = {SELFBALLOON: keys.selfballoon, MINMEM: keys.minmem, SOFTMAXMEM: keys.softmaxmem}
    return parse_overrides({k: v for k, v in raw.items() if v is not None})[0]


def self_ballooning(keys: Dom0Keys) -> bool:
    """memory/selfballoon says the guest sets its own target, as it reads it."""
    return as_guest_reads(keys).selfballoon is True


def kb(text: Optional[str]) -> Optional[int]:
    return None if text is None else parse_bounded_int(text, 0, MAX_KB)


def min_policy(text: Optional[str]) -> str:
    """memory/minpolicy as the guest daemon reads it (contract/overrides.py); absent or
    not a policy: the 2008 rule, as a guest whose conf dom0 cannot see may keep."""
    return (parse_min_policy(text) if text is not None else None) or MIN_POLICY_2008


def floor_kb(policy: str, cap_kb: int, reserved_kb: int, row: Optional[Row]) -> int:
    """The guest's floor (contract/minimum.py), worked out in dom0.  The 2008 rule is
    of static-max, which dom0 sets; the adaptive one also of what the guest
    published (Mapped; min_free_kbytes from its MemTotal, the kernel's formula)
    and of the reservation dom0 measured.  A guest's claim moves only its own
    floor, and only between the hard bound and the 2008 floor of static-max:
    a lie can cost it memory, never another guest theirs, never below the hard
    bound.  The guest's own floor is of its high-water mark (at most
    static-max) and of the same quantities read live, so dom0's matches it
    within what Mapped moved since the guest last published (at most 10 s)."""
    mapped_kb = min(row.mapped_kb or 0, cap_kb) if row is not None else 0
    memtotal_kb = min(row.mem_kb or 0, cap_kb) if row is not None else 0
    need_kb = reserved_kb + run_kb(mapped_kb, kernel_min_free_kb(memtotal_kb) if memtotal_kb else 0)
    return policy_min_mb(policy, cap_kb, 0, need_kb) * MIB_KB


@dataclass(frozen=True)
class GuestView:
    """A guest for the balancer: the policy's record, and why it is held."""

    state: GuestState
    status: Status
    opted_in: bool
    wants_directed: bool  # opted in and memory/selfballoon absent: write 0
    fresh: bool = True  # its published uptime advances: its daemon runs


class Freshness:
    """A guest's stats are fresh while its published uptime advances: the
    same value ``stale_polls`` looks in a row, and for longer than
    ``stale_after_s`` seconds, means its daemon stopped (or froze its keys),
    and its Committed_AS is no longer believed.  The time matters since the
    daemon publishes on change: an idle guest's uptime advances only every
    XENBALLOON_PUBLISH_MAX_S seconds (10), however often dom0 looks.
    What it saw is in each domain's record (``domains``)."""

    def __init__(self, stale_polls: int, stale_after_s: float = 0.0,
                 domains: Optional[Domains] = None) -> None:
        self.stale_polls = stale_polls
        self.stale_after_s = stale_after_s
        self.domains = Domains() if domains is None else domains

    def observe(self, domid: int, active_or_uptime_cs: Optional[int], now_s: float) -> bool:
        d = self.domains[domid]
        if d.same_since_s is None:
            d.same_since_s = now_s  # first sight
        if active_or_uptime_cs is not None and active_or_uptime_cs == d.uptime_cs:
            d.same_looks += 1
        else:
            d.same_looks, d.same_since_s = 0, now_s
        d.uptime_cs = active_or_uptime_cs
        return active_or_uptime_cs is not None and (
            d.same_looks < self.stale_polls or now_s - d.same_since_s <= self.stale_after_s)

    def forget_all_but(self, domids: Iterable[int]) -> None:
        self.domains.prune(domids)


class Rise:
    """How fast each guest's Committed_AS is rising, in kB per second of the
    guest's own uptime, between its last two publications.  A publication
    seen again (the same uptime) keeps the rate; an uptime that went back (a
    reboot, a restore) starts over.  Guest data: a claim of a steep rise only
    raises that guest's need, which balance.need_kb caps at its static-max.
    What it saw is in each domain's record (``domains``)."""

    def __init__(self, domains: Optional[Domains] = None) -> None:
        self.domains = Domains() if domains is None else domains

    def observe(self, domid: int, uptime_cs: Optional[int], committed_kb: Optional[int]) -> int:
        d = self.domains[domid]
        if uptime_cs is None or committed_kb is None:
            d.rise_from, d.rise_kb_per_s = None, 0
            return 0
        last = d.rise_from
        if last is not None and last[0] == uptime_cs:
            return d.rise_kb_per_s
        rate = 0
        if last is not None and uptime_cs > last[0]:
            grown_kb = risen_kb(last[1], committed_kb)
            if grown_kb:
                rate = min(grown_kb * 100 // (uptime_cs - last[0]), MAX_KB)
        d.rise_from, d.rise_kb_per_s = (uptime_cs, committed_kb), rate
        return rate

    def forget_all_but(self, domids: Iterable[int]) -> None:
        self.domains.prune(domids)


def opted_in(domain: Domain, keys: Dom0Keys, listed: Iterable[str]) -> bool:
    names = set(listed)
    return (domain.name in names or str(domain.domid) in names
            or (keys.balance is not None and keys.balance.strip() == "1"))


def guest_view(domain: Domain, keys: Dom0Keys, row: Optional[Row], *, listed: Iterable[str],
               fresh: bool, marked_uncooperative: bool, rise_kb_per_s: int = 0,
               reserved_kb: Optional[int] = None) -> GuestView:
    """One guest's record and status.  Pure.  ``reserved_kb``: the kernel's
    reservation as Reservations measured it; None: ``xl list`` minus the
    published MemTotal, as they are now."""
    is_opted_in = opted_in(domain, keys, listed)
    read = as_guest_reads(keys)
    self_on = read.selfballoon is True  # self_ballooning(keys), read once with the bounds
    static_max_kb = kb(keys.static_max) or None  # 0 kB is no usable static-max
    target_kb = kb(keys.target)
    cur_kb = min(max(domain.cur_kb, 0), MAX_KB)
    cap_kb = static_max_kb if static_max_kb is not None else cur_kb
    # the bounds the guest daemon honours too (memory/minmem, memory/softmaxmem): the
    # ceiling lowers static-max, the floor raises the minimum
    floor_mb, ceiling_mb = read.min_mb, read.max_mb
    if ceiling_mb is not None:
        cap_kb = min(cap_kb, ceiling_mb * MIB_KB)
    committed_kb = row.commit_kb if row is not None else None
    mem_kb = row.mem_kb if row is not None else None
    if committed_kb is not None:
        committed_kb = min(committed_kb, cap_kb)
    if reserved_kb is None:
        reserved_kb = 0 if mem_kb is None else min(max(cur_kb - mem_kb, 0), cur_kb)
    reserved_kb = min(max(reserved_kb, 0), cur_kb)
    min_kb = min(max(floor_kb(min_policy(keys.minpolicy), cap_kb, reserved_kb, row),
                     (floor_mb or 0) * MIB_KB), cap_kb)

    if not is_opted_in:
        status = Status.NOT_OPTED_IN
    elif self_on:
        status = Status.SELF_BALLOONING
    elif static_max_kb is None:
        status = Status.NO_STATIC_MAX
    elif committed_kb is None:
        status = Status.NO_DAEMON
    elif not fresh:
        status = Status.STALE
    elif marked_uncooperative:
        status = Status.UNCOOPERATIVE
    else:
        status = Status.BALANCED
    state = GuestState(
        domid=domain.domid, name=domain.name, cur_kb=cur_kb, static_max_kb=cap_kb,
        min_kb=min_kb, committed_as_kb=committed_kb if status in (Status.BALANCED, Status.UNCOOPERATIVE)
        else None,
        participating=status in (Status.BALANCED, Status.UNCOOPERATIVE), uncooperative=marked_uncooperative,
        last_target_kb=target_kb, reserved_kb=reserved_kb,
        rise_kb_per_s=min(max(rise_kb_per_s, 0), MAX_KB) if status == Status.BALANCED else 0)
    return GuestView(state, status, is_opted_in,
                     wants_directed=is_opted_in and keys.selfballoon is None, fresh=fresh)


class Reservations:
    """The kernel's reservation of each guest (what the domain holds that its
    MemTotal does not show: ``xl list`` minus MemTotal), measured only while
    the guest holds still.

    The size comes from ``xl list`` now, MemTotal from what the guest's daemon
    published up to an interval ago: while the balloon moves, the two differ by
    however far it moved.  On the real host a guest growing from 384 to 970 MiB
    showed a "reservation" of 664 MiB; its need rose by as much, the balancer
    gave it 350 MiB of the other guest's memory and took it back 4 s later.
    A pvops kernel's reservation is fixed for its life (63116 kB for a 384 MiB
    guest), so a measurement is taken when the size was the same on the last
    three looks and the stats were published anew since the previous one (so
    MemTotal was read while the size held, the daemon's tick being shorter
    than an interval), and kept until the next.  The first look of a guest is
    taken as it is: there is nothing better yet.  What it saw is in each
    domain's record (``domains``)."""

    def __init__(self, domains: Optional[Domains] = None) -> None:
        self.domains = Domains() if domains is None else domains

    def observe(self, domid: int, cur_kb: int, mem_kb: Optional[int],
                published_cs: Optional[int]) -> Optional[int]:
        """The reservation to use now (kB), or None while there is none."""
        d = self.domains[domid]
        last_cs, kept = d.reservation_cs, d.reserved_kb
        sizes = (d.sizes_kb + (cur_kb,))[-3:]
        if mem_kb is not None:
            now_kb = min(max(cur_kb - mem_kb, 0), cur_kb)
            steady = (len(sizes) == 3 and len(set(sizes)) == 1 and published_cs is not None
                      and last_cs is not None and published_cs != last_cs)
            if steady or kept is None:
                kept = now_kb
        d.sizes_kb, d.reservation_cs, d.reserved_kb = sizes, published_cs, kept
        return kept

    def forget_all_but(self, domids: Iterable[int]) -> None:
        self.domains.prune(domids)


class History:
    """What dom0 remembers of each guest from one pass to the next, for its
    record: whether its stats are fresh, how fast its Committed_AS rises, its
    kernel's reservation.  What it remembers is in each domain's record
    (``domains``, shared with Cooperation and the balancer); it holds only the
    parameters."""

    def __init__(self, stale_polls: int, stale_after_s: float,
                 domains: Optional[Domains] = None) -> None:
        self.domains = Domains() if domains is None else domains
        self.freshness = Freshness(stale_polls, stale_after_s, self.domains)
        self.rise = Rise(self.domains)
        self.reservations = Reservations(self.domains)

    def view(self, domain: Domain, keys: Dom0Keys, row: Row, published_uptime: Optional[str],
             now_s: float, *, listed: Iterable[str], marked_uncooperative: bool) -> GuestView:
        """The guest's record from this pass's look, with what earlier ones saw."""
        up_cs = uptime_cs(published_uptime)
        return guest_view(
            domain, keys, row, listed=listed,
            fresh=self.freshness.observe(domain.domid, up_cs, now_s),
            marked_uncooperative=marked_uncooperative,
            rise_kb_per_s=self.rise.observe(domain.domid, up_cs, row.commit_kb),
            reserved_kb=self.reservations.observe(domain.domid, domain.cur_kb, row.mem_kb,
                                                  up_cs))

    def forget_all_but(self, domids: Iterable[int]) -> None:
        self.domains.prune(domids)


def uptime_cs(text: Optional[str]) -> Optional[int]:
    """The first number of a published /proc/uptime, in centiseconds, or None."""
    if text is None:
        return None
    first = text.split(None, 1)[0] if text.strip() else ""
    whole, _, frac = first.partition(".")
    if not (whole.isascii() and whole.isdigit() and len(whole) <= 12
            and (frac == "" or (frac.isascii() and frac.isdigit() and len(frac) <= 9))):
        return None
    return int(whole) * 100 + int((frac + "00")[:2])


class Cooperation:
    """Who is failing to shrink to the target dom0 set (balance.uncooperative).

    It watches memory/target whoever writes it (this daemon, ``free``, an
    administrator's ``xl mem-set``): a new value starts a new window.  The
    window and the mark are in each domain's record (``domains``)."""

    def __init__(self, params: CooperationParams, domains: Optional[Domains] = None) -> None:
        self.params = params
        self.domains = Domains() if domains is None else domains

    def observe(self, domid: int, tgt_kb: Optional[int], cur_kb: int, now_s: float
                ) -> Optional[tuple[bool, str]]:
        """Judge the guest on this look (``tgt_kb`` None: it is not watched, and
        its window is dropped).  When the verdict changed, (uncooperative now,
        why: the verdict's reason or "cooperative again"); else None."""
        d = self.domains[domid]
        if tgt_kb is None:
            d.asked = None
            return self._set(domid, None)
        asked = d.asked
        if asked is None or asked.tgt_kb != tgt_kb:
            asked = d.asked = Asked(tgt_kb, cur_kb, now_s)
        verdict = uncooperative(asked.tgt_kb, asked.cur_at_set_kb, asked.set_at_s, cur_kb,
                                now_s, self.params)
        return self._set(domid, verdict.reason if verdict.uncooperative else None)

    def _set(self, domid: int, reason: Optional[str]) -> Optional[tuple[bool, str]]:
        d = self.domains[domid]
        was = d.uncooperative is not None
        d.uncooperative = reason
        if reason is None:
            return (False, "cooperative again") if was else None
        return None if was else (True, reason)

    def is_marked(self, domid: int) -> bool:
        d = self.domains.get(domid)
        return d is not None and d.uncooperative is not None

    def forget_all_but(self, domids: Iterable[int]) -> None:
        self.domains.prune(domids)
