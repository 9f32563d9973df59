"""What the guest publishes to dom0 (send_memory_stats() and the selftarget
write of balloon_to_target() in the original), fitted to xenstored's limits."""
from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Iterable, Mapping

from ..contract.keys import MEMINFO, MODE, SELFTARGET, UPTIME, VMSTAT
from ..xenstore import GUEST_NODE_MAX_BYTES

# The lines the monitor and a dom0 balancer read, kept when the whole text
# does not fit in one node (a modern /proc/vmstat is about 4 KB).
VMSTAT_KEEP = (
    "nr_free_pages", "nr_inactive_anon", "nr_active_anon", "nr_inactive_file",
    "nr_active_file", "nr_anon_pages", "nr_mapped", "nr_file_pages", "nr_dirty",
    "nr_writeback", "nr_shmem", "nr_slab_reclaimable", "nr_slab_unreclaimable",
    "nr_kernel_stack", "nr_page_table_pages", "nr_swapcached",
    "pswpin", "pswpout", "pgpgin", "pgpgout", "pgfault", "pgmajfault",
    "pgsteal_kswapd", "pgsteal_direct", "pgscan_kswapd", "pgscan_direct",
    "oom_kill", "workingset_refault_anon", "workingset_refault_file",
)
MEMINFO_KEEP = (
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached",
    "Active", "Inactive", "SwapTotal", "SwapFree", "Dirty", "Shmem", "Slab",
    "CommitLimit", "Committed_AS",
)


def _fits(text: str, max_bytes: int) -> bool:
    return len(text.encode("utf-8", "surrogateescape")) <= max_bytes


def fit_to_node(text: str, keep: Iterable[str], max_bytes: int = GUEST_NODE_MAX_BYTES) -> str:
    """The text as ``$(cat file)`` gives it (trailing newlines dropped), or, if
    it is over ``max_bytes``, only the lines whose first word is in ``keep``,
    in their order; cut at a line boundary if even that is too long."""
    text = text.rstrip("\n")
    if _fits(text, max_bytes):
        return text
    wanted = set(keep)
    lines = [ln for ln in text.split("\n")
             if ln.split(":", 1)[0].split(" ", 1)[0] in wanted]
    out: list[str] = []
    for line in lines:
        if not _fits("\n".join(out + [line]), max_bytes):
            break
        out.append(line)
    return "\n".join(out)


def build_outputs(*, selftarget_kb: int | None, meminfo_text: str | None,
                  vmstat_text: str | None, uptime_text: str | None,
                  mode: str | None = None) -> dict[str, str]:
    """The values to publish, by key name (relative to the chosen directory).
    A None argument means "do not send" (its XENBALLOON_SEND_* is 0, or it
    has not changed)."""
    out: dict[str, str] = {}
    if selftarget_kb is not None:
        out[SELFTARGET] = str(selftarget_kb)
    if mode is not None:
        out[MODE] = mode
    if meminfo_text is not None:
        out[MEMINFO] = fit_to_node(meminfo_text, MEMINFO_KEEP)
    if vmstat_text is not None:
        out[VMSTAT] = fit_to_node(vmstat_text, VMSTAT_KEEP)
    if uptime_text is not None:
        out[UPTIME] = fit_to_node(uptime_text, ())
    return out


# --- publish on change --------------------------------------------------
# The numbers dom0 reads from what the guest publishes (dom0/stats.py: the
# monitor's columns; dom0/guests.py: the balancer's Committed_AS and MemTotal),
# each in kB: a republication is due when one of them moved.
WATCHED_MEMINFO = ("MemTotal", "Committed_AS")
WATCHED_VMSTAT_KB = ("pgpgin", "pgpgout")  # the kernel counts these in kB
WATCHED_VMSTAT_PAGES = ("pswpin", "pswpout")  # and these in pages
# MemTotal moves only with the balloon, and the balancer takes the kernel's
# share from it (current - MemTotal): any change of it is published.
EXACT = ("MemTotal",)

FIRST, PERIOD, MOVED = "first", "period", "moved"


_VMSTAT_WATCHED = re.compile(
    r"^(%s)[ \t]+([0-9]{1,20})[ \t]*$" % "|".join(WATCHED_VMSTAT_KB + WATCHED_VMSTAT_PAGES),
    re.M | re.ASCII)


def watched_vmstat(text: str) -> dict[str, int]:
    """The lines of /proc/vmstat dom0 reads, the first of each name: one search
    instead of parsing its 170 lines every tick."""
    out: dict[str, int] = {}
    for m in _VMSTAT_WATCHED.finditer(text):
        out.setdefault(m.group(1), int(m.group(2)))
    return out


def watched_numbers(meminfo: Mapping[str, int] | None, vmstat: Mapping[str, int] | None,
                    page_kb: int) -> dict[str, int]:
    """The numbers dom0 reads, in kB, from the parsed texts about to be
    published (None: that text is not published)."""
    out: dict[str, int] = {}
    if meminfo is not None:
        out.update((k, meminfo[k]) for k in WATCHED_MEMINFO if k in meminfo)
    if vmstat is not None:
        out.update((k, vmstat[k]) for k in WATCHED_VMSTAT_KB if k in vmstat)
        out.update((k, vmstat[k] * page_kb) for k in WATCHED_VMSTAT_PAGES if k in vmstat)
    return out


def stats_due(last: Mapping[str, int] | None, last_at_s: float | None,
              now: Mapping[str, int], now_s: float, threshold_kb: int, max_age_s: float
              ) -> str | None:
    """Whether meminfo, vmstat and uptime should be published now, and why:
    FIRST (never yet), PERIOD (``max_age_s`` since the last time, so dom0 sees
    a live guest), MOVED (MemTotal changed, a number appeared or went, or
    another moved by more than ``threshold_kb`` since it was last published);
    None: dom0's numbers are still good enough."""
    if last is None or last_at_s is None:
        return FIRST
    if now_s - last_at_s >= max_age_s:
        return PERIOD
    if last.keys() != now.keys():
        return MOVED
    for key, value in now.items():
        moved_kb = abs(value - last[key])
        if moved_kb > threshold_kb or (key in EXACT and moved_kb):
            return MOVED
    return None
