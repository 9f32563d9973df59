"""Qubes' qmemman balancing policy, re-stated on our records, to compare against
``xenballoond.dom0.balance`` on the same simulated workloads.

Written from the behaviour of qubes-core-admin's ``qubes/qmemman/algo.py`` and
``systemstate.py`` (balance, balance_when_enough_mem, balance_when_low_on_mem,
balloon, is_balance_req_significant, get_free_xen_mem), not copied from them.
Same inputs and outputs as ours: ``GuestState``/``HostState`` in, ``Move``s
out, in kB.  Where the two differ in kind, qmemman's choice is kept:

* The preferred size is ``used * 1.3``, within [200 MiB, static-max]
  (``used`` is Committed_AS here; Qubes' meminfo-writer reports MemTotal minus
  free, buffers and cache, plus swap in use).  No per-guest floor: ``min_kb``
  is ignored.  No dom0 boost: every domain is treated as a domU.
* A guest is in play when it has stats and is not marked as stuck
  (``uncooperative``); ``participating`` stands for "qmemman knows it".
* ``mem_actual`` = max(what it holds, last target; 0 when never set).  Free
  memory is the host's free memory less what guests may still balloon up to.
* ``host_reserve_kb`` plays XEN_FREE_MEM_LEFT (50 MiB in Qubes).
* Floats with qmemman's ``int(0.999 * x)`` guards, computed in kB instead of
  bytes (the results differ from Qubes' by a few kB: preferred sizes are
  rounded to the kB first).
* Enough memory: every guest gets its preferred size plus a share of what is
  left over, in proportion to that size; what static-max cuts off is split
  evenly among the rest, again and again.  Every guest in play is in the list,
  moved or not.
* Short of memory: donors 10 MiB or more above their preferred size go down
  to it; the acceptors share, in proportion to preferred size, the free
  memory less what the donors give (qmemman subtracts it).  That is negative
  whenever the donors give more than is free, and then the acceptors get
  nothing this round: they wait for the next (Qubes' own test shows only
  donors in its low-memory result).
* Hysteresis: the whole plan or nothing.  It goes ahead when free memory is
  more than 15 MiB below the reserve, or a guest whose last target is below
  its preferred size would get more than 15 MiB, or the moves plus the distance
  of free memory from the reserve add up to more than 150 MiB.
* Making room (``free_plan``): only guests above their preferred size give,
  in proportion to their excess, 5% extra as a safety net; if they cannot
  give it all, nothing is asked of anyone.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xenballoond.dom0.balance import GuestState, HostState, Move


@dataclass(frozen=True)
class QmemmanParams:
    cache_factor: float = 1.3
    min_prefmem_kb: int = 200 * 1024
    min_total_transfer_kb: int = 150 * 1024
    min_change_under_pref_kb: int = 15 * 1024
    donor_min_surplus_kb: int = 10 * 1024
    safety_net_factor: float = 1.05


DEFAULT_QMEMMAN = QmemmanParams()


def _in_play(g: GuestState) -> bool:
    return g.participating and not g.uncooperative and g.committed_as_kb is not None


def _last_target_kb(g: GuestState) -> int:
    return g.last_target_kb if g.last_target_kb is not None and g.last_target_kb > 0 else 0


def mem_actual_kb(g: GuestState) -> int:
    return max(g.cur_kb, _last_target_kb(g))


def pref_kb(g: GuestState, p: QmemmanParams = DEFAULT_QMEMMAN) -> int:
    assert g.committed_as_kb is not None
    return int(max(min(g.committed_as_kb * p.cache_factor, g.static_max_kb), p.min_prefmem_kb))


def xen_free_kb(guests: Sequence[GuestState], host: HostState) -> int:
    """Free memory less what guests were promised and have not taken yet."""
    return host.free_kb - sum(max(_last_target_kb(g) - g.cur_kb, 0) for g in guests)


def _enough(dom: list[GuestState], total_pref: float, avail_kb: float,
            p: QmemmanParams) -> dict[int, int]:
    tgt: dict[int, int] = {}
    left_kb = 0
    acceptors = 0
    for g in dom:
        t = int(0.999 * (pref_kb(g, p) + pref_kb(g, p) / total_pref * avail_kb))
        if t > g.static_max_kb:
            left_kb += t - g.static_max_kb
            t = g.static_max_kb
        else:
            acceptors += 1
        tgt[g.domid] = t
    while left_kb > 0 and acceptors > 0:
        new_left, new_acceptors = 0, acceptors
        for g in dom:
            t = tgt[g.domid]
            if t < g.static_max_kb:
                bonus = int(0.999 * (left_kb / acceptors))
                if t + bonus >= g.static_max_kb:
                    new_left += t + bonus - g.static_max_kb
                    t = g.static_max_kb
                    new_acceptors -= 1
                else:
                    t += bonus
            tgt[g.domid] = t
        left_kb, acceptors = new_left, new_acceptors
    return tgt


def _low(dom: list[GuestState], free_for_guests_kb: int, donors: list[GuestState],
         acceptors: list[GuestState], total_pref_acceptors: float,
         p: QmemmanParams) -> dict[int, int]:
    tgt: dict[int, int] = {}
    squeezed_kb = free_for_guests_kb
    for g in donors:
        surplus_kb = mem_actual_kb(g) - pref_kb(g, p)
        if surplus_kb < p.donor_min_surplus_kb:
            continue
        squeezed_kb -= surplus_kb
        tgt[g.domid] = pref_kb(g, p)
    if squeezed_kb < 0:
        return tgt
    for g in acceptors:
        share = pref_kb(g, p) / total_pref_acceptors * squeezed_kb
        tgt[g.domid] = min(int(0.999 * (mem_actual_kb(g) + share)), g.static_max_kb)
    return tgt


def ideal_targets(guests: Sequence[GuestState], host: HostState,
                  p: QmemmanParams = DEFAULT_QMEMMAN) -> list[tuple[int, int]]:
    """qmemman's balance(): (domid, target) for the guests it would write,
    donors first, before the significance check."""
    dom = [g for g in guests if _in_play(g)]
    free_for_guests_kb = xen_free_kb(guests, host) - host.host_reserve_kb
    donors = [g for g in dom
              if pref_kb(g, p) < mem_actual_kb(g) or mem_actual_kb(g) >= g.static_max_kb]
    acceptors = [g for g in dom if g not in donors]
    total_needed_kb = sum(pref_kb(g, p) - mem_actual_kb(g) for g in dom)
    total_pref = float(sum(pref_kb(g, p) for g in dom))
    avail_kb = free_for_guests_kb - total_needed_kb
    if avail_kb > 0:
        tgt = _enough(dom, total_pref, avail_kb, p)
    else:
        tgt = _low(dom, free_for_guests_kb, donors, acceptors,
                   float(sum(pref_kb(g, p) for g in acceptors)), p)
    by_id = {g.domid: g for g in dom}
    order = sorted(tgt, key=lambda d: tgt[d] >= mem_actual_kb(by_id[d]))
    return [(d, tgt[d]) for d in order]


def significant(guests: Sequence[GuestState], host: HostState, reqs: list[tuple[int, int]],
                p: QmemmanParams = DEFAULT_QMEMMAN) -> bool:
    free_kb = xen_free_kb(guests, host)
    if host.host_reserve_kb - free_kb > p.min_change_under_pref_kb:
        return True
    by_id = {g.domid: g for g in guests}
    total_kb = 0
    for domid, t in reqs:
        g = by_id[domid]
        last_kb = _last_target_kb(g)
        total_kb += abs(t - last_kb)
        if 0 < last_kb < pref_kb(g, p) and t - last_kb > p.min_change_under_pref_kb:
            return True
    return total_kb + abs(free_kb - host.host_reserve_kb) > p.min_total_transfer_kb


def balance(guests: Sequence[GuestState], host: HostState,
            p: QmemmanParams = DEFAULT_QMEMMAN) -> list[Move]:
    reqs = ideal_targets(guests, host, p)
    if not significant(guests, host, reqs, p):
        return []
    return [Move(d, t, "qmemman") for d, t in reqs]


def free_plan(guests: Sequence[GuestState], host: HostState, want_free_kb: int,
              p: QmemmanParams = DEFAULT_QMEMMAN) -> tuple[list[Move], int]:
    """qmemman's balloon() for one round: (targets, shortfall)."""
    request_kb = want_free_kb + host.host_reserve_kb - xen_free_kb(guests, host)
    if request_kb <= 0:
        return [], 0
    donors = [(g, mem_actual_kb(g) - pref_kb(g, p)) for g in guests
              if _in_play(g) and pref_kb(g, p) < mem_actual_kb(g)]
    avail_kb = sum(give for _, give in donors)
    if avail_kb < request_kb:
        return [], request_kb - avail_kb
    scale = request_kb / avail_kb
    return [Move(g.domid, int(mem_actual_kb(g) - give * scale * p.safety_net_factor),
                 "qmemman: make room")
            for g, give in donors], 0
