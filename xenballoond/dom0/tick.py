"""One balancing pass (``Balancer.tick``), orchestration only.

``look``: ``xl list``, ``xl info`` and ``xl list`` again (act.Xl; what the
sizes moved in between is how unsure free + sizes is), every guest's published
stats and the keys dom0 keeps in its memory/ (reader.py, three or four
batched passes), guests.py turns them into balance.GuestState records; then
balance.balance() decides, act.apply_moves() writes the targets with
``xl mem-set``, and the decisions go to the log and to the state file the
monitor shows (statefile.py).  Beside that, paused or not: self-ballooning
guests' memory/target follows their selftarget (follow.py), and domains
migrating in get their hypervisor limit (xenctrl.py).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

from ..contract.keys import SELFBALLOON, STATIC_MAX, TARGET, memory_dir, memory_path
from ..paths import Root
from ..xenstore import XenstoreError
from ..xenstore.interface import Xenstore
from . import BALANCER_PROG, act, follow, guests as guests_mod, settings
from .balance import (MIB_KB, BalanceParams, CooperationParams, GuestState, HostState, Move,
                      balance, is_balanced, need_kb, ref_kb)
from .domainstate import Domains
from .pause import act_lock, is_paused
from .reader import list_domids, list_guests, published, read_values
from .stats import Published, make_row
from .statefile import write_state

# How long a tick waits for decreases to free memory before it grants increases.
MAX_SETTLE_S = 5.0

log = logging.getLogger(BALANCER_PROG)


class Limits(Protocol):
    """Each domain's memory limit in the hypervisor (xenctrl.XenCtrl on a real host);
    its methods raise xenctrl.XenCtrlError."""

    def max_kb(self, domid: int) -> int: ...

    def set_max_kb(self, domid: int, max_kb: int) -> None: ...


def open_xenctrl() -> Limits:
    from .xenctrl import XenCtrl  # ctypes: only when a migration comes in
    return XenCtrl()


# The guests' default XENBALLOON_INTERVAL: how old their published stats may be.
GUEST_INTERVAL_S = 1


def params_of(config: settings.BalancerConfig) -> BalanceParams:
    return BalanceParams(headroom_pct=config.headroom_pct,
                         min_guest_move_kb=config.min_guest_move_mb * MIB_KB,
                         min_total_move_kb=config.min_total_move_mb * MIB_KB,
                         pool_kb=config.pool_mb * MIB_KB,
                         rise_horizon_s=config.interval_s + GUEST_INTERVAL_S)


@dataclass
class Arrival:
    """A domain ``xl migrate-receive`` is building, as dom0 first saw it."""

    saved_max_kb: Optional[int]  # the limit libxl gave it, once raised (None: not raised)
    sender_self: bool  # its sender balloons itself
    keys: dict[str, str]  # dom0's keys for its sender (follow.CARRIED_KEYS), by name


@dataclass
class Look:
    """One look at the host: the records, with why each guest is held."""

    views: list[guests_mod.GuestView]
    host: HostState
    directed_missing: list[int] = field(default_factory=list)
    follows: list[follow.Follow] = field(default_factory=list)  # memory/target to write
    # domains xl migrate-receive is building, each with what it brings from its sender,
    # and the ones it has built, each with its static-max (kB)
    incoming: list[tuple[guests_mod.Domain, Arrival]] = field(default_factory=list)
    built: list[tuple[guests_mod.Domain, int]] = field(default_factory=list)
    # self-ballooning guests not yet given their static-max as hypervisor limit: (domid, name, kB)
    limits: list[tuple[int, str, int]] = field(default_factory=list)

    @property
    def states(self) -> list[GuestState]:
        return [v.state for v in self.views]


class Balancer:
    """Holds what the balancer remembers between ticks: a record per domain
    (``domains``: freshness, rise, reservation, cooperation, status, reason,
    selftarget), and the migrations under way; ``look``/``tick`` do the I/O
    through the adapters it is handed."""

    def __init__(self, config: settings.BalancerConfig, root: Root, xl: act.Xl,
                 xs: Xenstore, xenctrl: Callable[[], Limits] = open_xenctrl) -> None:
        self.root = root
        self.xl, self.xs = xl, xs
        self.open_xenctrl = xenctrl
        self.domains = Domains()
        # incoming domains seen, by domid, with what they bring from their sender
        self.arrivals: dict[int, Arrival] = {}
        self.limited: set[int] = set()  # self-ballooning domains given their static-max
        self._xc: Optional[Limits] = None
        self._xc_error = ""
        self.reconfigure(config)

    def static_max_kb(self, domid: int) -> Optional[int]:
        """The guest's memory/static-max, bounded; None if absent or not a number."""
        try:
            return guests_mod.kb(self.xs.read(memory_path(domid, STATIC_MAX)))
        except XenstoreError:
            return None

    def reconfigure(self, config: settings.BalancerConfig) -> None:
        """The parameters of ``config`` in force; every domain's record is kept."""
        self.config = config
        self.params = params_of(config)
        self.history = guests_mod.History(config.stale_intervals, config.stale_after_s,
                                          self.domains)
        self.cooperation = guests_mod.Cooperation(
            CooperationParams(timeout_s=float(config.uncooperative_s)), self.domains)

    @property
    def reserve_kb(self) -> int:
        return self.config.host_reserve_mb * MIB_KB

    def paused(self) -> bool:
        return is_paused(self.root)

    def look(self, now_s: float) -> Look:
        """Read the host and build every guest's record.  Raises act.XlError
        or XenstoreError when dom0 cannot see the host."""
        # The sizes are read before and after the free memory: a balloon that
        # moves in between would make free + sizes wrong by what it moved.
        before = self.xl.list_domains()
        free_kb = self.xl.free_kb()
        listed = self.xl.list_domains()
        unsure_kb = act.moved_kb(before, listed)
        domains = [d for d in listed if d.domid != 0]
        listings, _ = list_guests(self.xs, list_domids(self.xs))
        values = read_values(self.xs, listings)
        values.update(self.xs.read_existing([
            memory_path(ls.domid, k) for ls in listings for k in guests_mod.KEY_NAMES
            if ls.memory is not None and k in ls.memory]))
        pubs = {ls.domid: published(ls, values) for ls in listings}
        views = []
        follows = []
        incoming, built, limits = [], [], []
        for d in domains if self.config.follow else ():
            if d.name.endswith(follow.INCOMING):
                if d.domid not in self.arrivals:
                    name = d.name[:-len(follow.INCOMING)]
                    sender = next((s for s in domains if s.name == name), None)
                    incoming.append((d, self._arrival(d, sender, pubs)))
            elif d.domid in self.arrivals:
                smax_kb = guests_mod.kb(guests_mod.dom0_keys(values, d.domid).static_max)
                if smax_kb:
                    built.append((d, smax_kb))  # libxl wrote memory/ after the stream: built
        for d in domains:
            pub = pubs.get(d.domid)
            if pub is None:
                continue  # being created or destroyed: not in xenstore
            keys = guests_mod.dom0_keys(values, d.domid)
            watched = (guests_mod.opted_in(d, keys, self.config.guests)
                       and not guests_mod.self_ballooning(keys))
            change = self.cooperation.observe(
                d.domid, guests_mod.kb(keys.target) if watched else None, d.cur_kb, now_s)
            if change is not None:
                (log.warning if change[0] else log.info)(
                    "dom %d %s: %s: %s", d.domid, d.name,
                    "uncooperative" if change[0] else "cooperative", change[1])
            view = self.history.view(
                d, keys, make_row(pub), pub.uptime, now_s, listed=self.config.guests,
                marked_uncooperative=self.cooperation.is_marked(d.domid))
            views.append(view)
            # a daemon that stopped publishing (killed: its mode stays "self") is not
            # followed, or dom0's own xl mem-set would be undone with its old selftarget
            if self.config.follow and view.fresh:
                f = self._follow(d, keys, pub, now_s)
                if f is not None:
                    follows.append(f)
                smax_kb = guests_mod.kb(keys.static_max)
                if (follow.is_self(pub.mode) and smax_kb and d.domid not in self.limited
                        and d.domid not in self.arrivals):
                    limits.append((d.domid, d.name, smax_kb))
        present = [v.state.domid for v in views]
        self.domains.prune(present)
        alive = {d.domid for d in domains}
        self.arrivals = {k: v for k, v in self.arrivals.items() if k in alive}
        self.limited &= alive
        return Look(views, HostState(free_kb, self.reserve_kb, unsure_kb),
                    [v.state.domid for v in views if v.wants_directed], follows,
                    incoming, built, limits)

    def _xenctrl(self) -> Limits:
        if self._xc is None:
            self._xc = self.open_xenctrl()
        return self._xc

    def _xc_failed(self, d: guests_mod.Domain, what: str, exc: Exception) -> None:
        if str(exc) != self._xc_error:  # said once, not every pass
            self._xc_error = str(exc)
            log.error("dom %d %s: cannot %s: %s", d.domid, d.name, what, exc)

    def _arrival(self, d: guests_mod.Domain, sender: Optional[guests_mod.Domain],
                 pubs: dict[int, Published]) -> Arrival:
        """What an incoming domain brings from its sender: whether it balloons itself
        (its daemon says so, or dom0 gave it its static-max for that), and dom0's keys
        for it, read now: the sender is gone once the domain is built."""
        if sender is None:
            return Arrival(None, False, {})
        pub = pubs.get(sender.domid)
        is_self = sender.domid in self.limited or (pub is not None and follow.is_self(pub.mode))
        home = memory_dir(sender.domid) + "/"
        try:
            found = self.xs.read_existing([home + k for k in follow.CARRIED_KEYS])
        except XenstoreError as exc:
            log.error("dom %d %s: cannot read its sender's keys: %s", d.domid, d.name, exc)
            found = {}
        return Arrival(None, is_self, {p[len(home):]: v for p, v in found.items()})

    def raise_incoming(self, snap: Look) -> None:
        """Each domain xl migrate-receive is building gets what this host could give
        it as its limit (follow.incoming_max_kb), through libxenctrl: libxl cannot
        touch it yet.  Once built, it gets libxl's limit back, or its static-max if
        it balloons itself (follow.built_max_kb), and the keys dom0 had written for
        its sender (follow.CARRIED_KEYS): libxl carries only its target and
        static-max, and a guest opted in with memory/balance would be balanced no
        more."""
        from .xenctrl import XenCtrlError
        for d, arrival in snap.incoming:
            self.arrivals[d.domid] = arrival
            try:
                xc = self._xenctrl()
                saved_kb = xc.max_kb(d.domid)
                max_kb = follow.incoming_max_kb(d.name, saved_kb, d.cur_kb, snap.host.free_kb)
                if max_kb is not None:
                    xc.set_max_kb(d.domid, max_kb)
            except XenCtrlError as exc:
                self._xc_failed(d, "raise its limit for the migration", exc)
                continue
            arrival.saved_max_kb = saved_kb
            if max_kb is None:
                log.info("dom %d %s: incoming: limit left at %d kB (the host has no more to "
                         "give it)", d.domid, d.name, saved_kb)
            else:
                log.info("dom %d %s: incoming: limit raised %d -> %d kB (what this host could "
                         "give it), so that a guest growing during the pre-copy fits",
                         d.domid, d.name, saved_kb, max_kb)
        for d, smax_kb in snap.built:
            arrival = self.arrivals.pop(d.domid)
            self._carry_keys(d, arrival.keys)
            if arrival.saved_max_kb is not None:
                self._set_built_limit(d, arrival, smax_kb)

    def _carry_keys(self, d: guests_mod.Domain, keys: dict[str, str]) -> None:
        home = memory_dir(d.domid) + "/"
        try:
            there = self.xs.read_existing([home + k for k in keys])
            todo = {home + k: v for k, v in keys.items() if home + k not in there}
            if todo:
                self.xs.write_many(todo)
        except XenstoreError as exc:
            log.error("dom %d %s: cannot carry dom0's keys from its sender: %s",
                      d.domid, d.name, exc)
            return
        if todo:
            log.info("dom %d %s: migrated in: dom0's keys carried from its sender: %s",
                     d.domid, d.name, ", ".join(f"{k[len(home):]}={v!r}"
                                                for k, v in sorted(todo.items())))

    def _set_built_limit(self, d: guests_mod.Domain, arrival: Arrival, smax_kb: int) -> None:
        from .xenctrl import XenCtrlError
        assert arrival.saved_max_kb is not None
        max_kb = follow.built_max_kb(arrival.saved_max_kb, d.cur_kb,
                                     smax_kb if arrival.sender_self else None)
        try:
            self._xenctrl().set_max_kb(d.domid, max_kb)
        except XenCtrlError as exc:
            self._xc_failed(d, "set its limit back after the migration", exc)
            return
        if arrival.sender_self:
            self.limited.add(d.domid)  # give_limits' job, done
            log.info("dom %d %s: migrated in: limit %d kB (self-ballooning: its "
                     "static-max at once, as it grows on before its daemon publishes "
                     "again)", d.domid, d.name, max_kb)
        else:
            log.info("dom %d %s: migrated in: limit %d kB (libxl's, or what it holds "
                     "+ 1 MiB)", d.domid, d.name, max_kb)

    def give_limits(self, snap: Look) -> None:
        """Once per domain, a self-ballooning guest's hypervisor limit becomes its
        static-max (``xl mem-max``): xl create, restore and migrate build a domain
        with its target + 1 MiB as limit, and a self-ballooning guest's room to grow
        is its maxmem (2008's xm gave it that).  Once: an administrator's later
        ``xl mem-set`` or ``mem-max`` stands."""
        for domid, name, smax_kb in snap.limits:
            self.limited.add(domid)
            try:
                self.xl.mem_max(domid, smax_kb)
            except act.XlError as exc:
                log.error("dom %d %s: xl mem-max %d kB failed: %s", domid, name, smax_kb, exc)
                continue
            log.info("dom %d %s: self-ballooning: its limit is its static-max (%d kB): "
                     "room to grow after xl create, restore or migrate", domid, name, smax_kb)

    def _follow(self, d: guests_mod.Domain, keys: guests_mod.Dom0Keys,
                pub: Published, now_s: float) -> Optional[follow.Follow]:
        """The write that makes a self-ballooning guest's memory/target true, if any."""
        if not follow.is_self(pub.mode):
            self.domains[d.domid].selftarget = None
            return None
        self_kb = follow.self_target_kb(pub.selftarget)
        if self_kb is None:
            return None
        record = self.domains[d.domid]
        ahead_kb = follow.ahead_kb(self_kb, record.selftarget, now_s)
        record.selftarget = (now_s, self_kb)
        old_kb = guests_mod.kb(keys.target)
        new_kb = follow.follow_kb(self_kb + ahead_kb, old_kb, d.cur_kb,
                                  guests_mod.kb(keys.static_max) or None)
        return None if new_kb is None else follow.Follow(d.domid, d.name, old_kb, new_kb)

    def write_follows(self, snap: Look) -> None:
        """memory/target := each self-ballooning guest's selftarget (follow.py)."""
        if not snap.follows:
            return
        try:
            self.xs.write_many({memory_path(f.domid, TARGET): str(f.new_kb)
                                for f in snap.follows})
        except XenstoreError as exc:
            log.error("cannot write memory/target of self-ballooning guests: %s", exc)
            return
        for f in snap.follows:
            record = self.domains[f.domid]
            if not record.following:
                record.following = True
                log.info("dom %d %s: self-ballooning: memory/target follows its selftarget "
                         "(%s -> %d kB), so xl save, restore and migrate rebuild it whole",
                         f.domid, f.name, f.old_kb, f.new_kb)
            else:
                log.debug("dom %d %s: memory/target %s -> %d kB (its selftarget)",
                          f.domid, f.name, f.old_kb, f.new_kb)

    def _log_statuses(self, snap: Look) -> None:
        for v in snap.views:
            record = self.domains[v.state.domid]
            if record.status != v.status:
                record.status = v.status
                log.info("dom %d %s: %s", v.state.domid, v.state.name, v.status.text)

    def make_directed(self, snap: Look) -> None:
        """memory/selfballoon = 0 for opted-in guests without the key: their
        xenballoond then follows memory/target whatever its own config says."""
        if not snap.directed_missing:
            return
        try:
            self.xs.write_many({memory_path(d, SELFBALLOON): "0"
                                for d in snap.directed_missing})
        except XenstoreError as exc:
            log.error("cannot write memory/selfballoon: %s", exc)
            return
        for d in snap.directed_missing:
            log.info("dom %d: memory/selfballoon = 0 (directed by the balancer)", d)

    def tick(self, now_s: float, wait: Callable[[float], bool]) -> None:
        try:
            snap = self.look(now_s)
        except (act.XlError, XenstoreError) as exc:
            log.error("cannot read the host, no change: %s", exc)
            return
        self._log_statuses(snap)
        # paused or not: a stale memory/target loses the guest at the next xl save
        self.write_follows(snap)
        self.raise_incoming(snap)
        self.give_limits(snap)
        paused = self.paused()
        written: dict[int, int] = {}
        if not paused:
            with act_lock(self.root):
                if self.paused():  # ``free`` took the lock first
                    paused = True
                else:
                    self.make_directed(snap)
                    moves = balance(snap.states, snap.host, self.params)
                    applied = self._apply(snap, moves, wait)
                    written = {m.domid: m.tgt_kb for m in applied.written}
        self.write_state(snap, paused, written)

    def _apply(self, snap: Look, moves: Sequence[Move], wait: Callable[[float], bool]
               ) -> act.Applied:
        by_id = {v.state.domid: v.state for v in snap.views}
        applied = act.apply_moves(moves, snap.states, self.xl, self.reserve_kb,
                                  min(float(self.config.interval_s), MAX_SETTLE_S), wait)
        for m in applied.written:
            g = by_id[m.domid]
            self.domains[m.domid].reason = m.reason
            log.info("dom %d %s: target %d -> %d kB (holds %d): %s", m.domid, g.name,
                     ref_kb(g), m.tgt_kb, g.cur_kb, m.reason)
        for m, why in applied.deferred:
            self.domains[m.domid].reason = f"{m.reason}; deferred: {why}"
            log.info("dom %d %s: target %d kB deferred: %s", m.domid, by_id[m.domid].name,
                     m.tgt_kb, why)
        for m, why in applied.failed:
            log.error("dom %d %s: xl mem-set %d kB failed: %s", m.domid, by_id[m.domid].name,
                      m.tgt_kb, why)
        return applied

    def write_state(self, snap: Look, paused: bool,
                    written: Optional[dict[int, int]] = None) -> None:
        """What the monitor shows: dom0-only, under the root's /var/run."""
        doc = {
            "written_at": time.time(), "pid": os.getpid(), "paused": paused,
            "free_kb": snap.host.free_kb, "host_reserve_kb": snap.host.host_reserve_kb,
            "unsure_kb": snap.host.unsure_kb, "interval_s": self.config.interval_s,
            "guests": [{
                "domid": v.state.domid, "name": v.state.name, "status": v.status.text,
                "status_code": v.status.name,
                "cur_kb": v.state.cur_kb, "static_max_kb": v.state.static_max_kb,
                "min_kb": v.state.min_kb,
                "need_kb": need_kb(v.state, self.params.headroom_pct, self.params.rise_horizon_s)
                if is_balanced(v.state) else None,
                "target_kb": (written or {}).get(v.state.domid, v.state.last_target_kb),
                "reason": self.domains[v.state.domid].reason,
            } for v in snap.views],
        }
        write_state(self.root, doc)
