"""The minimum balloon target, the one rule the guest daemon and dom0's
balancer both apply (so they never fight): the guest floors every target at
it, and dom0 gives no guest less.

Two policies (XENBALLOON_MIN_POLICY, or dom0's memory/minpolicy):

* ``2008``: the 2008 balloon driver's minimum_target(), as the original
  daemon's minmb() ported it, in bash's integer arithmetic: a curve of the
  memory high-water mark, whatever the guest is doing.
* ``adaptive`` (the 2008 README's TODO: "more aggressive (optionally) memory
  minimum targets"): what the guest needs to run, the kernel's reservation
  plus Mapped plus twice min_free_kbytes, never below ``hard_min_mb`` of the
  high-water mark and never above the 2008 floor.  The 2008 floor stood in for
  guards the daemon has since gained (it wakes on pressure, never shrinks into
  rising demand, keeps the running need as headroom), so the floor can follow
  the guest instead.

XENBALLOON_MINMEM, when set, wins over either: the administrator's number.
Pure: numbers in, numbers out.
"""
from __future__ import annotations

MIN_POLICY_2008 = "2008"
MIN_POLICY_ADAPTIVE = "adaptive"
MIN_POLICIES = (MIN_POLICY_2008, MIN_POLICY_ADAPTIVE)

# The adaptive floor's lower bound, whatever the guest measures or claims: a
# fixed part for the kernel itself and a part that grows with the memory it
# may hold.  The real host's Linux 6.1 PV guest (memory=384, maxmem=768) kept
# 63116 kB out of MemTotal; less the 12288 kB of struct pages for 768 MiB
# (64 bytes per 4 KiB page, 1/64), its kernel image and early allocations are
# 50828 kB (49.6 MiB): 48 MiB fixed.  1/32 of the high-water mark: the struct
# pages (1/64) and as much again for what scales with memory (unreclaimable
# slab, page tables).  Against the 2008 curve: 60 of 136 MiB at 384 MiB, 80 of
# 232 at 1 GiB, 112 of 360 at 2 GiB, 176 of 424 at 4 GiB.
HARD_MIN_FIXED_MB = 48
HARD_MIN_SHARE_DIV = 32


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


def kernel_min_free_kb(memtotal_kb: int) -> int:
    """min_free_kbytes as the kernel sets it (mm/page_alloc.c,
    init_per_zone_wmark_min): sqrt(lowmem kB * 16), within [128, 262144]; for
    when /proc/sys/vm/min_free_kbytes cannot be read, and for dom0, which
    cannot read it."""
    return min(max(_isqrt(max(memtotal_kb, 0) * 16), 128), 262144)


def _isqrt(n: int) -> int:
    x = n
    y = (x + 1) // 2
    while y < x:
        x, y = y, (y + n // y) // 2
    return x


def run_kb(mapped_kb: int, min_free_kb: int) -> int:
    """What the guest needs beyond Committed_AS just to keep running: the file
    pages its programs execute from (Mapped: text, libraries, mapped files), and
    the kernel's watermarks (twice min_free_kbytes: kswapd keeps about that
    free).  Below this the programs' text is evicted and read back at disk
    speed, and everything stalls: on the real host a swapless guest stalled
    for 8 s a tick, the daemon with it, then the OOM killer came."""
    return max(mapped_kb, 0) + 2 * max(min_free_kb, 0)


def hard_min_mb(maxmem_kb: int) -> int:
    """The adaptive floor's lower bound for a high-water mark (dom0: the
    static-max), at most the 2008 floor (tiny guests)."""
    hard_mb = HARD_MIN_FIXED_MB + max(maxmem_kb, 0) // 1024 // HARD_MIN_SHARE_DIV
    return min(hard_mb, min_target_mb(maxmem_kb))


def adaptive_min_mb(maxmem_kb: int, need_kb: int) -> int:
    """The adaptive floor: ``need_kb`` (the kernel's reservation plus run_kb(),
    in whole MB rounded up), within [hard_min_mb, the 2008 floor]."""
    need_mb = -(-max(need_kb, 0) // 1024)
    return min(max(hard_min_mb(maxmem_kb), need_mb), min_target_mb(maxmem_kb))


def parse_min_policy(raw: str) -> str | None:
    """dom0's memory/minpolicy, hostile text: one of MIN_POLICIES, with the
    blanks around it that an integer key may have too (xenstore-write from a
    script), else None.  The guest daemon and the balancer read it alike."""
    word = raw.strip(" \t\r\n")
    return word if word in MIN_POLICIES else None


def policy_min_mb(policy: str, maxmem_kb: int, min_mem_mb: int = 0, need_kb: int = 0) -> int:
    """The minimum target in MB: XENBALLOON_MINMEM if set, else the policy's
    floor (any policy but ``adaptive`` is the 2008 one)."""
    if min_mem_mb != 0:
        return min_mem_mb
    if policy == MIN_POLICY_ADAPTIVE:
        return adaptive_min_mb(maxmem_kb, need_kb)
    return min_target_mb(maxmem_kb)
