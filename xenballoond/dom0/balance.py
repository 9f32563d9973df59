"""dom0's balancing policy: what dom0 knows of each guest in, balloon targets out.

Pure functions on integers (kB); the balancer daemon reads xenstore and ``xl``,
calls these, and writes the targets.  Every decision carries a short reason for
the log.

Who takes part
--------------
A guest is *balanced* when it is participating, not marked uncooperative, its
stats are fresh (``committed_as_kb`` is not None) and its limits make sense
(``0 < min_kb <= static_max_kb``, ``cur_kb >= 0``).  Every other guest is
*held*: it gets no target, keeps what it has, and if dom0 last gave it a target
above what it holds, that difference is kept free for it (it may still balloon
up to it at any time).

Need
----
``need_kb`` = Committed_AS + the kernel's reservation + headroom, the guest
daemon's self-ballooning target seen from dom0, with the headroom its rule
(contract/headroom.py), a percentage of static-max (the guest daemon takes it
of the memory it booted with: both are fixed for the guest's life, so the
need does not chase its own target).
To that the rise is added: how much Committed_AS grew per second between
the guest's last two publications (by its own uptime), times
``rise_horizon_s``, the time until a target set now can be corrected (the
stats are up to one guest interval old, the next pass is one balancer
interval away).  The guest daemon projects its own rise the same way
(guest/policy.py rise_per_interval_kb): a workload that grew that fast may
grow as fast again before dom0 looks next, and the balloon grows at a finite
rate.  It is clamped to [min_kb, static_max_kb]: whatever a guest claims, it
never needs more than its static-max.

balance()
---------
``avail_kb`` = host free + what the balanced guests hold - host reserve - what
held guests may still balloon up to.  Three cases:

1. The floors do not fit (sum of min_kb >= avail_kb): every guest goes to its
   floor; never lower.
2. The needs do not fit: each guest gets its floor plus a share of what is
   left, in proportion to its static range (static_max - min), at most up to
   its need; what a guest does not need goes to the others, by the same rule.
   The weights are set by the administrator, not claimed by the guest, so a
   guest that lies about Committed_AS cannot take another guest's share: every
   guest keeps at least the smaller of its need and its fair share.  (qmemman
   squeezes toward a need it scales from the guest's claim; squeezed divides by
   the static range but ignores need.  This is squeezed's rule with need as
   the ceiling.)
3. The needs fit: each guest gets its need; of the surplus, up to
   ``pool_kb`` stays free on the host, and the rest raises the guests with
   the least room first: every guest gets the larger of its need and the same
   level, a fraction of its static-max (a multiple of ``level_step_kb`` of
   the largest static-max, scaled to its own), at most static-max, the
   highest level that fits.  Why not qmemman's share in proportion to need:
   that hands most of the surplus to the busy guest, which already has its
   need, rise included, and leaves the idle ones low; whichever of them gets
   busy next then outruns its balloon (simulated turns, seeds 1-3, no pool:
   5.6-8.0 s a minute below Committed_AS by need, 2.3-6.0 s by level).  The pool serves the next
   guest whose demand rises at once, without waiting for another guest to
   shrink first, and is memory a new guest can be started in.  The level
   step keeps small changes of one guest's need from moving every other
   guest's target.

Shares are rounded down, so the targets never add up to more than avail_kb
(the few kB of rounding stay free).

Hysteresis, after qmemman's (systemstate.py): a target that moves less than
``min_guest_move_kb`` from the guest's last target is left alone, unless the
guest is outside its [min, static-max]; a surplus move (one that leaves the
guest at or above its need, before and after) is left alone below
``min_total_move_kb``: need rises are acted on at once, surplus only when
it is worth a write.  The whole plan is dropped when all its moves add up
to less than ``min_total_move_kb``, unless it raises a guest below its need
by ``min_guest_move_kb`` or more, or fixes a guest outside its limits, or
the guests' present targets no longer fit.  A small decrease left alone
would keep memory a larger increase counts on: when the targets left in
place would no longer fit, the small decreases are made after all.

A host read while balloons moved (``HostState.unsure_kb``): free memory and
the sizes were sampled at different moments, so avail_kb is known only within
that much.  A guest's target then moves only as far as every reading in the
range agrees: up to the lowest reading's target, down to the highest's, and
not at all when its target in place lies between them.

Moves come decreases first, then increases (squeezed's two phases): the daemon
should write the increases only once the decreases have freed the memory.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..contract.headroom import headroom_kb

MIB_KB = 1024


@dataclass(frozen=True)
class GuestState:
    """One guest as dom0 sees it.

    ``cur_kb``: what the domain holds (``xl list``).  ``min_kb``: the floor
    (the guest's minmb(), published by its daemon or worked out in dom0).
    ``reserved_kb``: what the domain holds that its MemTotal does not show
    (cur - MemTotal on pvops kernels), added to the need as the guest daemon
    does.  ``last_target_kb``: the target dom0 last set (None: never).
    """

    domid: int
    name: str
    cur_kb: int
    static_max_kb: int
    min_kb: int
    committed_as_kb: int | None
    participating: bool = True
    uncooperative: bool = False
    last_target_kb: int | None = None
    reserved_kb: int = 0
    rise_kb_per_s: int = 0


@dataclass(frozen=True)
class HostState:
    """``free_kb``: free host memory (``xl info free_memory``).
    ``host_reserve_kb``: what the balancer must always leave free (Xen's own
    allocations, memory promised to a guest being built).
    ``unsure_kb``: how far ``free_kb`` plus what the guests hold may be off,
    because balloons moved while dom0 read them: what the domains' sizes
    changed by between the ``xl list`` before and the one after ``xl info``
    (the free memory and the sizes were sampled at different moments)."""

    free_kb: int
    host_reserve_kb: int
    unsure_kb: int = 0


@dataclass(frozen=True)
class BalanceParams:
    """The tunables.  The hysteresis defaults are qmemman's
    MIN_MEM_CHANGE_WHEN_UNDER_PREF (15 MiB) and MIN_TOTAL_MEMORY_TRANSFER
    (150 MiB); the headroom default is the guest daemon's
    XENBALLOON_SELF_RESERVE_PCT default (10).  ``rise_horizon_s``: how far
    ahead a rising Committed_AS is projected (the daemon sets it to its
    interval plus the guests' default interval, 1 s).  ``pool_kb``: surplus
    kept free on the host, about what a guest's balloon takes in the two
    seconds a decrease elsewhere needs to land (~128 MiB/s on the simulated
    host).  ``level_step_kb``: the grain of the surplus level."""

    headroom_pct: int = 10
    min_guest_move_kb: int = 15 * MIB_KB
    min_total_move_kb: int = 150 * MIB_KB
    rise_horizon_s: int = 2
    pool_kb: int = 256 * MIB_KB
    level_step_kb: int = 64 * MIB_KB


class Move(NamedTuple):
    """A target to write.  ``urgent``: it raises a guest below its need (the
    daemon grants it what is free at once, before the decreases land)."""

    domid: int
    tgt_kb: int
    reason: str
    urgent: bool = False


class Verdict(NamedTuple):
    uncooperative: bool
    reason: str


DEFAULT_PARAMS = BalanceParams()


def _clamp(value: int, lo_kb: int, hi_kb: int) -> int:
    return max(lo_kb, min(value, hi_kb))


def _limits_ok(guest: GuestState) -> bool:
    return 0 < guest.min_kb <= guest.static_max_kb and guest.cur_kb >= 0


def is_balanced(guest: GuestState) -> bool:
    """Whether balance() and free_plan() may set this guest's target."""
    return (guest.participating and not guest.uncooperative
            and guest.committed_as_kb is not None and _limits_ok(guest))


def ref_kb(guest: GuestState) -> int:
    """The target in place: the last one set, else what the guest holds.  A
    target of 0 or less is taken for none (qmemman's "never set" is 0)."""
    last_kb = guest.last_target_kb
    return guest.cur_kb if last_kb is None or last_kb <= 0 else last_kb


def _pending_kb(guest: GuestState) -> int:
    """What a guest may still balloon up to: its last target above what it holds."""
    return max(ref_kb(guest) - guest.cur_kb, 0)


def need_kb(guest: GuestState, headroom_pct: int, rise_horizon_s: int = 0) -> int:
    """Committed_AS + reservation + headroom + the rise projected over
    ``rise_horizon_s``, within [min_kb, static_max_kb].

    A guest without fresh stats needs what it holds: dom0 cannot tell whether
    it is busy, so it neither grows nor is squeezed (balance() leaves it alone).
    """
    floor_kb = max(guest.min_kb, 0)
    cap_kb = max(guest.static_max_kb, floor_kb)
    if guest.committed_as_kb is None:
        return _clamp(guest.cur_kb, floor_kb, cap_kb)
    want_kb = (max(guest.committed_as_kb, 0) + max(guest.reserved_kb, 0)
               + headroom_kb(guest.static_max_kb, headroom_pct)
               + max(guest.rise_kb_per_s, 0) * max(rise_horizon_s, 0))
    return _clamp(want_kb, floor_kb, cap_kb)


def _share_out(pool_kb: int, weights: Sequence[int], rooms_kb: Sequence[int]) -> list[int]:
    """Divide pool_kb in proportion to weights, each part at most its room;
    what a full part cannot take is divided again among the others.  Every
    entry with room must have a positive weight.  Rounds down."""
    gains_kb = [0] * len(weights)
    open_ix = [i for i, room in enumerate(rooms_kb) if room > 0]
    while pool_kb > 0 and open_ix:
        total_weight = sum(weights[i] for i in open_ix)
        shares_kb = {i: pool_kb * weights[i] // total_weight for i in open_ix}
        full = [i for i in open_ix if shares_kb[i] >= rooms_kb[i] - gains_kb[i]]
        if not full:
            for i in open_ix:
                gains_kb[i] += shares_kb[i]
            break
        for i in full:
            pool_kb -= rooms_kb[i] - gains_kb[i]
            gains_kb[i] = rooms_kb[i]
        open_ix = [i for i in open_ix if i not in full]
    return gains_kb


def _check_unique(guests: Sequence[GuestState]) -> None:
    domids = [g.domid for g in guests]
    if len(set(domids)) != len(domids):
        raise ValueError(f"a domid appears twice in {sorted(domids)}")


def available_kb(guests: Sequence[GuestState], host: HostState) -> int:
    """What the balanced guests' targets may add up to."""
    return (host.free_kb + sum(g.cur_kb for g in guests if is_balanced(g))
            - max(host.host_reserve_kb, 0)
            - sum(_pending_kb(g) for g in guests if not is_balanced(g)))


def ideal_targets(guests: Sequence[GuestState], host: HostState,
                  params: BalanceParams = DEFAULT_PARAMS) -> dict[int, tuple[int, str]]:
    """domid -> (target, reason) for every balanced guest, before hysteresis."""
    _check_unique(guests)
    bal = [g for g in guests if is_balanced(g)]
    avail = available_kb(guests, host)
    floors = [g.min_kb for g in bal]
    needs = [need_kb(g, params.headroom_pct, params.rise_horizon_s) for g in bal]
    caps = [g.static_max_kb for g in bal]
    out: dict[int, tuple[int, str]] = {}
    if avail <= sum(floors):
        short_kb = sum(floors) - avail
        for g, floor_kb, need in zip(bal, floors, needs):
            out[g.domid] = (floor_kb, f"floor: host short by {short_kb} kB (need {need})")
    elif avail <= sum(needs):
        gains = _share_out(avail - sum(floors), [c - f for c, f in zip(caps, floors)],
                           [n - f for n, f in zip(needs, floors)])
        for g, floor_kb, need, gain in zip(bal, floors, needs, gains):
            tgt = floor_kb + gain
            out[g.domid] = (tgt, f"squeezed: {tgt} of need {need}" if tgt < need
                            else f"need {need} (squeeze spares it)")
    else:
        pool_kb = min(max(params.pool_kb, 0), avail - sum(needs))
        tgts = _level_up(avail - pool_kb, needs, caps, params.level_step_kb)
        for g, need, cap, tgt in zip(bal, needs, caps, tgts):
            out[g.domid] = (tgt, f"need {need} + level {tgt - need}"
                            + (" (static-max)" if tgt == cap else ""))
    return out


def _level_up(total_kb: int, needs: Sequence[int], caps: Sequence[int],
              step_kb: int) -> list[int]:
    """Targets adding up to at most total_kb (>= sum(needs)): each the larger of
    its need and the same share x / top of its cap (top: the largest cap), at
    most its cap, with x the largest multiple of step_kb that fits."""
    top = max(caps, default=0)
    step_kb = max(step_kb, 1)
    if top <= 0:
        return list(needs)

    def at(steps: int) -> list[int]:
        return [min(max(n, steps * step_kb * c // top), c) for n, c in zip(needs, caps)]

    lo, hi = 0, -(-top // step_kb)  # the top step reaches every cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(at(mid)) <= total_kb:
            lo = mid
        else:
            hi = mid - 1
    return at(lo)


def balance(guests: Sequence[GuestState], host: HostState,
            params: BalanceParams = DEFAULT_PARAMS) -> list[Move]:
    """The targets to write now: decreases first, then increases.

    A guest not in the list keeps the target it has; held guests are never in
    it.  See the module docstring for the rules.
    """
    ideal = (ideal_targets(guests, host, params) if host.unsure_kb <= 0
             else _agreed_targets(guests, host, params))
    if not ideal:
        return []
    bal = [g for g in guests if g.domid in ideal]
    avail = available_kb(guests, host) + max(host.unsure_kb, 0)
    limit_kb = max(avail, sum(g.min_kb for g in bal))
    refs = {g.domid: ref_kb(g) for g in bal}
    needs = {g.domid: need_kb(g, params.headroom_pct, params.rise_horizon_s) for g in bal}

    def out_of_limits(g: GuestState) -> bool:
        return not g.min_kb <= refs[g.domid] <= g.static_max_kb

    kept: dict[int, int] = {}
    small_decreases: list[int] = []
    for g in bal:
        tgt, _ = ideal[g.domid]
        delta_kb = tgt - refs[g.domid]
        if delta_kb == 0:
            continue
        surplus_only = min(tgt, refs[g.domid]) >= needs[g.domid]
        small_kb = params.min_total_move_kb if surplus_only else params.min_guest_move_kb
        if abs(delta_kb) < small_kb and not out_of_limits(g):
            if delta_kb < 0:
                small_decreases.append(g.domid)
            continue
        kept[g.domid] = tgt
    if sum(kept.get(d, refs[d]) for d in refs) > limit_kb:
        for domid in small_decreases:
            kept[domid] = ideal[domid][0]

    urgent = sum(refs.values()) > limit_kb or any(
        out_of_limits(g)
        or (refs[g.domid] < needs[g.domid]
            and kept[g.domid] - refs[g.domid] >= params.min_guest_move_kb)
        for g in bal if g.domid in kept)
    total_move_kb = sum(abs(tgt - refs[d]) for d, tgt in kept.items())
    if not urgent and total_move_kb < params.min_total_move_kb:
        return []
    order = sorted(kept, key=lambda d: (kept[d] > refs[d], d))
    return [Move(d, kept[d], ideal[d][1], refs[d] < min(needs[d], kept[d]))
            for d in order]


def _agreed_targets(guests: Sequence[GuestState], host: HostState,
                    params: BalanceParams) -> dict[int, tuple[int, str]]:
    """ideal_targets() for a host whose reading is unsure by ``unsure_kb``:
    a guest's target moves only as far as every reading in that range agrees
    (up to the lowest ideal, down to the highest); in between it stays.  A
    balloon still growing when ``xl list`` ran and grown by the time ``xl
    info`` ran makes the host look that much poorer: the guests would be
    lowered, and raised again once the balloons held still."""
    lo = ideal_targets(guests, HostState(host.free_kb - host.unsure_kb, host.host_reserve_kb),
                       params)
    hi = ideal_targets(guests, HostState(host.free_kb + host.unsure_kb, host.host_reserve_kb),
                       params)
    out: dict[int, tuple[int, str]] = {}
    for g in guests:
        if g.domid not in lo:
            continue
        in_place_kb = ref_kb(g)
        (lo_kb, lo_why), (hi_kb, hi_why) = sorted([lo[g.domid], hi[g.domid]])
        out[g.domid] = ((lo_kb, lo_why) if in_place_kb < lo_kb
                        else (hi_kb, hi_why) if in_place_kb > hi_kb
                        else (in_place_kb, f"kept: the host read unsure by {host.unsure_kb} kB"))
    return out


def _take_proportionally(want_kb: int, gives_kb: Sequence[int]) -> list[int]:
    """Take want_kb from gives_kb in proportion to each (rounded up, so at
    least want_kb in all), or all of it when that is not enough."""
    total_kb = sum(gives_kb)
    if want_kb >= total_kb:
        return list(gives_kb)
    return [-(-want_kb * give // total_kb) for give in gives_kb]


def free_plan(guests: Sequence[GuestState], host: HostState, want_free_kb: int,
              params: BalanceParams = DEFAULT_PARAMS) -> tuple[list[Move], int]:
    """Targets that leave ``want_free_kb`` free above the host reserve (room for
    a new guest), and the shortfall (0: the targets are enough).

    Memory a guest was promised but has not taken yet counts as taken.  The
    balanced guests above their need give first, each in proportion to what
    it holds above its need; then, if that is not enough, everyone from need
    down toward min_kb, in proportion to that range.  Held guests give
    nothing.  With a shortfall the targets are the most that can be freed: the
    caller decides whether freeing part is worth it.  No hysteresis: the
    caller asked.  Targets are whole MiB (rounded down, never below min_kb),
    as ``xl list`` and ``xl info`` count.
    """
    _check_unique(guests)
    bal = [g for g in guests if is_balanced(g)]
    effective_free_kb = host.free_kb - sum(_pending_kb(g) for g in guests)
    to_free_kb = max(want_free_kb, 0) + max(host.host_reserve_kb, 0) - effective_free_kb
    if to_free_kb <= 0:
        return [], 0
    holds = [max(g.cur_kb, ref_kb(g)) for g in bal]
    needs = [need_kb(g, params.headroom_pct, params.rise_horizon_s) for g in bal]
    above = [max(h - n, 0) for h, n in zip(holds, needs)]
    below = [max(min(h, n) - g.min_kb, 0) for g, h, n in zip(bal, holds, needs)]
    take_above = _take_proportionally(to_free_kb, above)
    left_kb = to_free_kb - sum(take_above)
    take_below = _take_proportionally(left_kb, below) if left_kb > 0 else [0] * len(bal)
    shortfall_kb = max(left_kb - sum(below), 0)
    moves = []
    for g, hold, need, t_above, t_below in zip(bal, holds, needs, take_above, take_below):
        if t_above + t_below == 0:
            continue
        tgt = min(hold - t_above - t_below, g.static_max_kb)
        # whole MiB, taking the few kB more: `xl list` and `xl info` count MiB, and a target
        # between two of them made the room look 1 MiB short until the timeout (real host)
        tgt = max(tgt - tgt % MIB_KB, min(g.min_kb, tgt))
        reason = (f"free {to_free_kb} kB: down to need {need}" if t_below == 0 and tgt == need
                  else f"free {to_free_kb} kB: above need {need}" if t_below == 0
                  else f"free {to_free_kb} kB: below need {need}, floor {g.min_kb}")
        moves.append(Move(g.domid, tgt, reason))
    return moves, shortfall_kb


@dataclass(frozen=True)
class CooperationParams:
    """squeezed declares a guest uncooperative after 20 s without progress;
    xl leaves maxmem 1 MiB above the target, hence the tolerance."""

    timeout_s: float = 20.0
    min_progress_pct: int = 50
    tolerance_kb: int = 1024


DEFAULT_COOPERATION = CooperationParams()


def uncooperative(tgt_kb: int, cur_at_set_kb: int, set_at_s: float, cur_now_kb: int,
                  now_s: float, params: CooperationParams = DEFAULT_COOPERATION) -> Verdict:
    """Whether a guest asked at ``set_at_s`` to go from ``cur_at_set_kb`` down to
    ``tgt_kb`` is failing to: ``timeout_s`` later it is still above the target
    and has covered less than ``min_progress_pct`` of the way.

    Only a guest that must shrink is judged: one below its target may be
    waiting for free memory that another guest has not given back yet.  The
    window runs from when the target was set, not from the last page freed,
    so freeing a page now and then does not pass (squeezed's doc lists both
    loopholes).  To clear the mark, call again with the time it was set: the
    guest is cooperative again once it reaches the target or covers the
    required part of the way.
    """
    over_kb = cur_now_kb - tgt_kb
    if over_kb <= params.tolerance_kb:
        return Verdict(False, "at or below target")
    elapsed_s = now_s - set_at_s
    if elapsed_s < params.timeout_s:
        return Verdict(False, f"shrinking, judged in {params.timeout_s - elapsed_s:.0f} s")
    way_kb = max(cur_at_set_kb - tgt_kb, 0)
    required_kb = max(way_kb * params.min_progress_pct // 100, 1)
    done_kb = cur_at_set_kb - cur_now_kb
    if done_kb >= required_kb:
        return Verdict(False, f"freed {done_kb} of {way_kb} kB in {elapsed_s:.0f} s")
    return Verdict(True, f"freed {done_kb} of {way_kb} kB in {elapsed_s:.0f} s "
                         f"(needs {required_kb}); still {over_kb} kB over target")
