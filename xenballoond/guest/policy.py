"""The ballooning policy, as pure functions on integers.

Ported from the 2008 ``xenballoond`` (minmb, selftarget, balloon_to_target),
keeping bash's integer arithmetic: 64-bit operands, division that truncates
toward zero.  Units are in every name.
"""
from __future__ import annotations

from ..contract.headroom import RISE_TOLERANCE_KB, headroom_kb, risen_kb
from ..contract.minimum import bash_div, policy_min_mb
from ..record import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from .effective import Effective

KIB = 1024
MIB = 1024 * 1024


def self_target_bytes(committed_as_kb: int, min_mb: int, kernel_reserved_kb: int = 0,
                      headroom_kb: int = 0) -> int:
    """selftarget(): Committed_AS, never below the minimum.

    ``kernel_reserved_kb`` is the balloon reservation the kernel keeps out of MemTotal
    (current_kb - MemTotal on pvops kernels; 0 with the 2008 driver), added as the
    kernel's own selfballoon code does, or the guest would shrink every tick.
    ``headroom_kb`` is room over Committed_AS for the page cache and for
    growth between two ticks (0 in the 2008 script).
    """
    tgt_bytes = (committed_as_kb + max(kernel_reserved_kb, 0) + max(headroom_kb, 0)) * KIB
    return max(tgt_bytes, min_mb * MIB)


def directed_target_bytes(target_kb: int, min_mb: int) -> int:
    """A target from dom0 (memory/target, kB), floored at the minimum as the
    2008 balloon driver did.  A target of 1 kB is an ordinary target here; the
    original took it for "self-balloon" because of its calling convention."""
    return max(target_kb * KIB, min_mb * MIB)


def step_bytes(cur_bytes: int, tgt_bytes: int, down_hysteresis: int, up_hysteresis: int) -> int:
    """balloon_to_target(): move 1/n of the way toward the target.

    Down: n = down_hysteresis, 0 means at once (as the original).  Up: the
    original divides by up_hysteresis unguarded, so 0 killed the daemon; here
    0 means at once (the caller logs it).
    """
    if cur_bytes > tgt_bytes:
        if down_hysteresis != 0:
            return cur_bytes - bash_div(cur_bytes - tgt_bytes, down_hysteresis)
        return tgt_bytes
    if cur_bytes < tgt_bytes:
        n = up_hysteresis if up_hysteresis != 0 else 1
        return cur_bytes + bash_div(tgt_bytes - cur_bytes, n)
    return tgt_bytes


@frozen
class Wake:
    """When the loop should not wait for the next tick: MemAvailable below
    ``available_below_kb`` or Committed_AS above ``committed_above_kb``."""

    available_below_kb: int
    committed_above_kb: int


@frozen
class Decision:
    """What one tick decided: the balloon target to write (None: leave it),
    and the minimum it was held to."""

    tgt_bytes: int | None
    min_bytes: int
    wake: Wake | None = None  # self-ballooning with headroom: when to tick early


def self_headroom_kb(boot_kb: int, reserve_pct: int, run_need_kb: int, rise_kb: int) -> int:
    """Room kept over Committed_AS when self-ballooning: the larger of
    XENBALLOON_SELF_RESERVE_PCT of the boot memory and what the guest needs to
    run, plus the last interval's rise of Committed_AS (a workload that grew
    that much in one interval may grow as much again before the next tick).
    A reserve of 0% is the 2008 target: Committed_AS exactly.

    Of the boot memory, not of the high-water mark, which only rises: one
    temporary ``xl mem-set`` up to maxmem would keep a larger reserve until
    reboot.  The kernel's own selfballoon driver reserves 10% of the RAM it
    booted with, for the same reasons: the page cache and slab are not in
    Committed_AS, and the balloon cannot give memory back as fast as a
    workload can take it."""
    if reserve_pct == 0:
        return 0
    return max(headroom_kb(boot_kb, reserve_pct), run_need_kb) + max(rise_kb, 0)


def rise_per_interval_kb(prev_committed_as_kb: int | None, committed_as_kb: int,
                         elapsed_s: float, interval_s: int) -> int:
    """How much Committed_AS grows in one interval at the rate it grew since
    the last reading (0: unknown, steady, or by no more than an idle guest's
    wobble).  Projected onto the whole interval: on the real host, the rise
    alone (a pressure tick reads it 0.25 s after the last) left a swapless
    guest under a 64 MB/s ramp OOM-killed after 22 of 36 chunks; projected, it
    finished.  The price is an overshoot while the ramp lasts (602 MB for a
    128 MB burst), given back by the down steps once it stops."""
    if prev_committed_as_kb is None or elapsed_s <= 0:
        return 0
    grown_kb = risen_kb(prev_committed_as_kb, committed_as_kb)
    return int(grown_kb * max(interval_s / elapsed_s, 1.0)) if grown_kb else 0


def tight(mem_available_kb: int | None, headroom: int) -> bool:
    """Memory is tight: less than half the headroom is still available."""
    return mem_available_kb is not None and mem_available_kb < headroom // 2


def wake_thresholds(committed_as_kb: int, headroom: int) -> Wake:
    """Half the headroom gone, either way: what the next tick would grow for."""
    return Wake(headroom // 2, committed_as_kb + max(headroom // 2, RISE_TOLERANCE_KB))


def bounded(tgt_bytes: int, min_bytes: int, cap_bytes: int | None) -> int:
    """The target within dom0's ceiling, and never below the minimum (which
    wins where the two disagree: the floor is the safe one)."""
    if cap_bytes is not None:
        tgt_bytes = min(tgt_bytes, cap_bytes)
    return max(tgt_bytes, min_bytes)


def decide(settings: Effective, *, cur_kb: int, committed_as_kb: int, kernel_reserved_kb: int,
           maxmem_kb: int, boot_kb: int = 0, committed_rise_kb: int = 0, run_need_kb: int = 0,
           mem_available_kb: int | None = None, pressure: bool = False) -> Decision:
    """One tick of the original main loop, minus its I/O.

    The final target is never below the minimum: when the guest is already
    below it (dom0 squeezed it), it goes back to the minimum at once instead of
    by 1/n steps that would stay under it.

    Directed targets (dom0's memory/target) are taken at once, floored at the
    minimum: the hysteresis is self-ballooning's.

    Self-ballooning never takes a down step into rising demand (Committed_AS
    is growing: ``committed_rise_kb`` an interval, memory is tight, or the kernel
    reported memory pressure): it holds the balloon where it is; and then it
    grows to the target at once, whatever the up hysteresis.  Without the
    rise, MemAvailable and pressure (and with a reserve of 0%), this is the
    2008 decision.

    The minimum is XENBALLOON_MIN_POLICY's (memory/minpolicy): the 2008
    curve of the high-water mark, or the adaptive floor of what the guest
    needs to run (the kernel's reservation plus ``run_need_kb``), contract/minimum.py.

    dom0's per-guest bounds (memory/minmem, memory/softmaxmem; MB) hold in
    both modes: ``floor_mb`` raises the minimum, ``ceiling_mb`` caps every
    target, and where the two disagree with the minimum, the minimum wins.
    ``settings``: the config with dom0's overrides merged (effective.py).
    """
    s = settings
    # the adaptive floor's need: what the kernel keeps and what the guest runs on
    need_kb = max(kernel_reserved_kb, 0) + max(run_need_kb, 0)
    min_mb = max(policy_min_mb(s.min_policy, maxmem_kb, s.min_mem_mb, need_kb), s.floor_mb or 0)
    min_bytes = min_mb * MIB
    cap_bytes = s.ceiling_mb * MIB if s.ceiling_mb is not None else None
    cur_bytes = cur_kb * KIB
    if s.self_ballooning:
        rise_kb = max(committed_rise_kb, 0)
        headroom = self_headroom_kb(boot_kb, s.self_reserve_pct, run_need_kb, rise_kb)
        want_bytes = self_target_bytes(committed_as_kb, min_mb, kernel_reserved_kb, headroom)
        demand_up = pressure or rise_kb > 0 or tight(mem_available_kb, headroom)
        if demand_up and want_bytes < cur_bytes:
            tgt_bytes = cur_bytes  # never shrink into rising demand
        elif demand_up and want_bytes > cur_bytes:
            tgt_bytes = want_bytes  # all the way at once
        else:
            tgt_bytes = step_bytes(cur_bytes, want_bytes, s.down_hysteresis, s.up_hysteresis)
        return Decision(bounded(tgt_bytes, min_bytes, cap_bytes), min_bytes,
                        wake_thresholds(committed_as_kb, headroom) if headroom else None)
    if s.directed_target_kb is None:
        return Decision(None, min_bytes)
    # dom0's target at once, no 1/n steps: the kernel applies memory/target by
    # itself, and a step written while it moves holds the guest above the
    # toolstack's target (xl mem-set took 55 s instead of 1.3 s on the real
    # host, and xl restore then failed: libxl rebuilds the domain at the target)
    return Decision(bounded(directed_target_bytes(s.directed_target_kb, min_mb), min_bytes,
                            cap_bytes), min_bytes)
