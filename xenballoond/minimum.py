"""The minimum balloon target: the 2008 balloon driver's minimum_target(), as
the original daemon's minmb() ported it, in bash's integer arithmetic.  The
guest daemon floors every target at it, and dom0's balancer gives no guest
less (the same rule on both sides, so they never fight)."""
from __future__ import annotations


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
