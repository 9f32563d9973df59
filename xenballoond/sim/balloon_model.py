"""A Xen balloon driver and the hypervisor's cap on the domain, as pure functions.

Two flavours, as a guest sees them:

- ``sysfs``: Linux pvops (6.1): /sys/devices/system/xen_memory/xen_memory0/
  ``target`` (bytes) and ``target_kb`` written by root, ``info/current_kb``,
  ``info/low_kb`` (pages in the balloon, up to maxmem), ``info/high_kb`` (0 on
  64-bit).  MemTotal is the reservation minus a fixed amount the kernel keeps
  for itself (63116 kB on the 384 MiB/768 MiB guest of the e2e run, at every size).
- ``proc``: the 2008 xenlinux driver's /proc/xen/balloon: write a target in
  bytes, read a status text.  It set ``totalram_pages = current_pages``, so
  MemTotal is the reservation itself (drivers/xen/balloon/balloon.c).

Both move the reservation toward the target at a finite rate, never above the
domain's cap (``xl mem-set`` leaves it at target + 1 MiB), never above the
memory the guest booted with room for (maxmem), and never below what the guest
is using: the driver allocates pages with __GFP_NORETRY and retries later.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

PAGE_KB = 4
SYSFS = "sysfs"
PROC = "proc"
KINDS = (SYSFS, PROC)
# libxl's LIBXL_MAXMEM_CONSTANT: the slack libxl adds to every maxmem it sets.
LIBXL_MAXMEM_SLACK_KB = 1024


@dataclass(frozen=True)
class Driver:
    kind: str
    static_max_kb: int  # maxmem at boot: the balloon holds the pages above memory=
    current_kb: int  # the reservation (balloon_stats.current_pages)
    target_kb: int  # balloon_stats.target_pages, in kB
    cap_kb: int  # the hypervisor's max_pages for the domain
    kernel_reserved_kb: int  # pvops only: MemTotal = current - this
    down_kb_per_s: int
    up_kb_per_s: int
    hard_limit_kb: int | None = None  # legacy: set when Xen refused to populate
    blocked_s: float = 0.0  # time the target was out of reach (cap or in-use memory)

    @property
    def memtotal_kb(self) -> int:
        return self.current_kb - self.kernel_reserved_kb if self.kind == SYSFS else self.current_kb

    @property
    def balloon_kb(self) -> int:
        """Pages in the balloon (info/low_kb): up to maxmem."""
        return max(self.static_max_kb - self.current_kb, 0)


def page_floor_kb(kb: int) -> int:
    return max(kb, 0) // PAGE_KB * PAGE_KB


def kernel_reserved_kb_for(static_max_kb: int) -> int:
    """What a pvops kernel keeps out of MemTotal: mostly struct pages for all of
    maxmem (64 bytes per 4 KiB page) plus the kernel image and early
    allocations.  An approximation: the e2e guest lost 63116 kB, this gives
    12 MiB + 16 MiB there; the exact figure does not matter, its constancy does."""
    return page_floor_kb(static_max_kb // 64 + 16 * 1024)


def boot(kind: str, memory_kb: int, maxmem_kb: int, *, down_kb_per_s: int = 256 * 1024,
         up_kb_per_s: int = 128 * 1024) -> Driver:
    """The driver as a guest created with ``memory=``/``maxmem=`` starts it."""
    if kind not in KINDS:
        raise ValueError(f"balloon kind must be one of {KINDS}, not {kind!r}")
    memory_kb = page_floor_kb(memory_kb)
    maxmem_kb = max(page_floor_kb(maxmem_kb), memory_kb)
    return Driver(kind=kind, static_max_kb=maxmem_kb, current_kb=memory_kb,
                  target_kb=memory_kb, cap_kb=maxmem_kb + LIBXL_MAXMEM_SLACK_KB,
                  kernel_reserved_kb=kernel_reserved_kb_for(maxmem_kb) if kind == SYSFS else 0,
                  down_kb_per_s=down_kb_per_s, up_kb_per_s=up_kb_per_s)


def set_target_kb(d: Driver, tgt_kb: int) -> Driver:
    """balloon_set_new_target(): a new target (page-aligned down) resets the
    legacy driver's hard limit so it probes Xen again."""
    return replace(d, target_kb=page_floor_kb(tgt_kb), hard_limit_kb=None)


def set_cap_kb(d: Driver, cap_kb: int) -> Driver:
    """The hypervisor's max_pages changed (xl mem-set / mem-max)."""
    return replace(d, cap_kb=max(page_floor_kb(cap_kb), 0))


def step(d: Driver, dt_s: float, in_use_kb: int) -> Driver:
    """Advance the driver ``dt_s`` seconds.  ``in_use_kb``: the reservation the
    guest cannot give up now (kernel, resident anonymous memory, minimum free)."""
    want_kb = min(d.target_kb, d.static_max_kb)
    cur_kb = d.current_kb
    hard_limit_kb = d.hard_limit_kb
    blocked = False
    if cur_kb < want_kb:
        goal_kb = min(want_kb, d.cap_kb)
        if cur_kb < goal_kb:
            cur_kb += min(goal_kb - cur_kb, page_floor_kb(int(d.up_kb_per_s * dt_s)))
        if cur_kb >= d.cap_kb:
            blocked = True
            if d.kind == PROC:  # increase_reservation(): Xen populated fewer pages
                hard_limit_kb = d.cap_kb
    elif cur_kb > want_kb:
        floor_kb = max(want_kb, page_floor_kb(in_use_kb + PAGE_KB - 1))  # whole pages in use
        if cur_kb > floor_kb:
            cur_kb -= min(cur_kb - floor_kb, page_floor_kb(int(d.down_kb_per_s * dt_s)))
        blocked = cur_kb <= floor_kb and floor_kb > want_kb
    return replace(d, current_kb=cur_kb, hard_limit_kb=hard_limit_kb,
                   blocked_s=d.blocked_s + (dt_s if blocked else 0.0))


# --- what the guest reads and writes --------------------------------------------------

_SUFFIX_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
U64 = (1 << 64) - 1


def simple_strtoull(text: str) -> tuple[int, str]:
    """The kernel's simple_strtoull(s, &end, 0): base from the prefix (0x hex,
    0 octal, else decimal), no whitespace skipped, no digits -> 0; wraps at
    64 bits.  Returns the value and the rest of the text."""
    s = text
    base = 10
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        base, s = 16, s[2:]
    elif s[:1] == "0":
        base = 8
    digits = "0123456789abcdef"[:base]
    i = 0
    value = 0
    while i < len(s) and s[i].lower() in digits:
        value = (value * base + digits.index(s[i].lower())) & U64
        i += 1
    return value, s[i:]


def memparse(text: str) -> int:
    """lib/cmdline.c memparse(): a number with an optional K/M/G/T/P/E suffix.
    Garbage parses as 0, as in the kernel (which then balloons toward 0)."""
    value, rest = simple_strtoull(text)
    shift = _SUFFIX_SHIFT.get(rest[:1].lower(), 0)
    return (value << shift) & U64


def parse_sysfs_target(text: str) -> int:
    """target_store(): bytes via memparse, in kB (page-aligned down)."""
    return page_floor_kb((memparse(text) >> 12) * PAGE_KB)


def parse_sysfs_target_kb(text: str) -> int:
    """target_kb_store(): simple_strtoull(buf) * 1024 bytes, in kB."""
    value, _ = simple_strtoull(text)
    return page_floor_kb((((value * 1024) & U64) >> 12) * PAGE_KB)


PROC_WRITE_MAX = 64  # balloon_write(): char memstring[64]


def parse_proc_write(text: str) -> int | None:
    """balloon_write() of the 2008 driver: a runt (<= 1 byte, -EBADMSG) or an
    over-long write (> 64 bytes, -EFBIG) is refused (None); else memparse."""
    n = len(text.encode("utf-8", "surrogateescape"))
    if n <= 1 or n > PROC_WRITE_MAX:
        return None
    return page_floor_kb((memparse(text) >> 12) * PAGE_KB)


def sysfs_files(d: Driver) -> dict[str, str]:
    """The files under xen_memory0/, relative, as the kernel formats them."""
    return {
        "target": f"{(d.target_kb // PAGE_KB) << 12}\n",
        "target_kb": f"{d.target_kb}\n",
        "info/current_kb": f"{d.current_kb}\n",
        "info/low_kb": f"{d.balloon_kb}\n",
        "info/high_kb": "0\n",
    }


def proc_balloon_text(d: Driver) -> str:
    """balloon_read() of the 2008 xenlinux driver (drivers/xen/balloon/balloon.c)."""
    text = (f"Current allocation: {d.current_kb:8d} kB\n"
            f"Requested target:   {d.target_kb:8d} kB\n"
            f"Low-mem balloon:    {d.balloon_kb:8d} kB\n"
            f"High-mem balloon:   {0:8d} kB\n"
            f"Driver pages:       {0:8d} kB\n"
            "Xen hard limit:     ")
    if d.hard_limit_kb is not None:
        return text + f"{d.hard_limit_kb:8d} kB\n"
    return text + "     ??? kB\n"
