"""The ballooning policy, as pure functions on integers.

Ported from the 2008 ``xenballoond`` (minmb, selftarget, balloon_to_target),
keeping bash's integer arithmetic: 64-bit operands, division that truncates
toward zero.  Units are in every name.
"""
from __future__ import annotations

from ..record import frozen

KIB = 1024
MIB = 1024 * 1024


def bash_div(num: int, den: int) -> int:
    """Bash's ``$(( num / den ))``: truncates toward zero (Python's // floors)."""
    if den == 0:
        raise ZeroDivisionError("division by 0")
    quot = abs(num) // abs(den)
    return quot if (num >= 0) == (den >= 0) else -quot


def min_target_mb(maxmem_kb: int, min_mem_mb: int = 0) -> int:
    """minmb(): XENBALLOON_MINMEM if set, else the balloon driver's 2008
    minimum_target() heuristic on the memory high-water mark."""
    if min_mem_mb != 0:
        return min_mem_mb
    mb = bash_div(maxmem_kb, 1024)
    pages = bash_div(maxmem_kb, 4)
    if mb < 125:
        return 8 + (pages >> 9)
    if mb < 500:
        return 40 + (pages >> 10)
    if mb < 2000:
        return 104 + (pages >> 11)
    return 296 + (pages >> 13)


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
class Decision:
    """What one tick decided: the balloon target to write (None: leave it),
    and the minimum it was held to."""

    tgt_bytes: int | None
    min_bytes: int


def choose_interval_s(self_ballooning: bool, self_interval_s: int, directed_interval_s: int,
               override_s: int | None) -> int:
    """The main loop's sleep: XENBALLOON_SELF_INTERVAL or XENBALLOON_INTERVAL,
    unless dom0's memory/interval says otherwise."""
    if override_s is not None:
        return override_s
    return self_interval_s if self_ballooning else directed_interval_s


def headroom_kb(boot_kb: int, reserve_pct: int) -> int:
    """XENBALLOON_SELF_RESERVE_PCT of the memory the guest booted with (not of
    the high-water mark, which only rises: one temporary ``xl mem-set`` up to
    maxmem would keep a larger reserve until reboot).  The kernel's own
    selfballoon driver reserves 10% of the RAM it booted with, for the same
    reasons: the page cache and slab are not in Committed_AS, and the balloon
    cannot give memory back as fast as a workload can take it."""
    return max(boot_kb, 0) * reserve_pct // 100


def decide(*, self_ballooning: bool, directed_target_kb: int | None, cur_kb: int,
           committed_as_kb: int, kernel_reserved_kb: int, maxmem_kb: int, min_mem_mb: int,
           down_hysteresis: int, up_hysteresis: int, self_reserve_pct: int = 0,
           boot_kb: int = 0) -> Decision:
    """One tick of the original main loop, minus its I/O.

    The final target is never below the minimum: when the guest is already
    below it (dom0 squeezed it), it goes back to the minimum at once instead of
    by 1/n steps that would stay under it.
    """
    min_mb = min_target_mb(maxmem_kb, min_mem_mb)
    min_bytes = min_mb * MIB
    if self_ballooning:
        want_bytes = self_target_bytes(committed_as_kb, min_mb, kernel_reserved_kb,
                                       headroom_kb(boot_kb, self_reserve_pct))
    elif directed_target_kb is not None:
        want_bytes = directed_target_bytes(directed_target_kb, min_mb)
    else:
        return Decision(None, min_bytes)
    tgt_bytes = step_bytes(cur_kb * KIB, want_bytes, down_hysteresis, up_hysteresis)
    return Decision(max(tgt_bytes, min_bytes), min_bytes)
