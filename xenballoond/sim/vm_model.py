"""The guest kernel's memory accounting, as pure functions: where MemTotal goes
(kernel, resident anonymous memory, page cache, free), and what happens when
the workload wants more than fits: reclaim the page cache, then swap, then OOM.

The figures are plausible for a small Linux 6.1 guest, not exact; what matters
to the simulation is the direction and the counters a balancer watches:
pswpin, pswpout, pgmajfault, oom_kill, and Committed_AS against MemTotal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from .workload import Demand

PAGE_KB = 4
MIN_FILE_KB = 12 * 1024  # hot text and libraries: never reclaimed
SHMEM_KB = 1536
SLAB_UNRECLAIM_BASE_KB = 12 * 1024
SLAB_RECLAIM_BASE_KB = 6 * 1024
KERNEL_STACK_KB = 1824
PERCPU_KB = 480
SWAP_IN_FRACTION_PER_S = 0.25  # of the swapped-out memory, once there is room
SWAP_IN_MIN_KB_PER_S = 4 * 1024


@dataclass(frozen=True)
class Counters:
    """/proc/vmstat event counters the model moves (pages, pgpgin/out in kB)."""

    pgpgin: int = 0
    pgpgout: int = 0
    pswpin: int = 0
    pswpout: int = 0
    pgalloc_normal: int = 0
    pgfree: int = 0
    pgactivate: int = 0
    pgdeactivate: int = 0
    pgfault: int = 0
    pgmajfault: int = 0
    pgrefill: int = 0
    pgsteal_kswapd: int = 0
    pgsteal_direct: int = 0
    pgscan_kswapd: int = 0
    pgscan_direct: int = 0
    allocstall_normal: int = 0
    pageoutrun: int = 0
    oom_kill: int = 0
    workingset_refault_anon: int = 0
    workingset_refault_file: int = 0
    numa_hit: int = 0
    numa_local: int = 0

    def add(self, **deltas: int) -> "Counters":
        return replace(self, **{k: getattr(self, k) + max(v, 0) for k, v in deltas.items()})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class VmState:
    uptime_s: float
    idle_s: float
    cache_kb: int  # page cache (file pages), excluding shmem
    anon_kb: int  # anonymous memory the workload wants, resident or not
    swap_used_kb: int
    swap_total_kb: int
    in_oom: bool = False
    counters: Counters = Counters()


# What a freshly booted small guest has counted already (a Debian 12 PV guest a
# minute after boot has about these magnitudes).
BOOT_COUNTERS = Counters(
    pgpgin=291844, pgpgout=40216, pgalloc_normal=1893312, pgfree=2204711, pgactivate=41920,
    pgdeactivate=0, pgfault=1672009, pgmajfault=2871, pgrefill=0, numa_hit=1921840,
    numa_local=1921840)


def boot(*, uptime_s: float, swap_total_kb: int, anon_kb: int = 0,
         cache_kb: int = 48 * 1024) -> VmState:
    return VmState(uptime_s=uptime_s, idle_s=uptime_s * 0.9, cache_kb=cache_kb, anon_kb=anon_kb,
                   swap_used_kb=0, swap_total_kb=swap_total_kb, counters=BOOT_COUNTERS)


def under_pressure(s: VmState, memtotal_kb: int) -> bool:
    """The page cache is down to the hot set (text, libraries) or anonymous
    memory is being pushed out: everything that faults on a file stalls."""
    return s.in_oom or s.cache_kb <= MIN_FILE_KB + MIN_FILE_KB // 4


def free_floor_kb(memtotal_kb: int) -> int:
    """Twice min_free_kbytes (sqrt(lowmem_kB * 16), mm/page_alloc.c): about the
    high watermark kswapd keeps free."""
    return 2 * int(math.sqrt(max(memtotal_kb, 0) * 16))


def slab_reclaimable_kb(cache_kb: int) -> int:
    return SLAB_RECLAIM_BASE_KB + cache_kb // 40


def slab_unreclaimable_kb(memtotal_kb: int) -> int:
    return SLAB_UNRECLAIM_BASE_KB + memtotal_kb // 100


def page_tables_kb(anon_kb: int) -> int:
    return 512 + anon_kb // 256


def kernel_kb(memtotal_kb: int, anon_kb: int) -> int:
    """Kernel memory that reclaim cannot free."""
    return (slab_unreclaimable_kb(memtotal_kb) + KERNEL_STACK_KB + PERCPU_KB
            + page_tables_kb(anon_kb))


def resident_anon_kb(s: VmState) -> int:
    return s.anon_kb - s.swap_used_kb


def in_use_kb(s: VmState, memtotal_kb: int) -> int:
    """The part of MemTotal a balloon driver cannot take (its allocations do not
    retry hard enough to push anonymous memory to swap)."""
    return (kernel_kb(memtotal_kb, s.anon_kb) + SLAB_RECLAIM_BASE_KB + resident_anon_kb(s)
            + SHMEM_KB + MIN_FILE_KB + free_floor_kb(memtotal_kb))


def _pages_kb(kb: int) -> int:
    """Whole pages: swap moves pages."""
    return max(kb, 0) // PAGE_KB * PAGE_KB


def _kb(kb_per_s: float, dt_s: float) -> int:
    return int(kb_per_s * dt_s)


def step(s: VmState, dt_s: float, memtotal_kb: int, demand: Demand) -> VmState:
    """Advance ``dt_s`` seconds with ``memtotal_kb`` of memory and the
    workload's ``demand`` at the end of the step."""
    c = s.counters
    anon_kb = max(demand.anon_kb, 0)
    grown_kb = max(anon_kb - s.anon_kb, 0)
    freed_kb = max(s.anon_kb - anon_kb, 0)
    # swapped pages of exiting or shrinking processes are freed with them
    swap_kb = min(s.swap_used_kb, _pages_kb(anon_kb))
    resident_kb = anon_kb - swap_kb
    floor_kb = free_floor_kb(memtotal_kb)
    room_kb = max(memtotal_kb - kernel_kb(memtotal_kb, anon_kb) - SLAB_RECLAIM_BASE_KB
                  - SHMEM_KB - MIN_FILE_KB - floor_kb, 0)
    swapped_out_kb = swapped_in_kb = 0
    if resident_kb > room_kb:
        swapped_out_kb = min(_pages_kb(resident_kb - room_kb + PAGE_KB - 1), resident_kb)
        swap_kb += swapped_out_kb
        resident_kb -= swapped_out_kb
    elif swap_kb > 0:
        rate_kb = max(_kb(swap_kb * SWAP_IN_FRACTION_PER_S, dt_s),
                      _kb(SWAP_IN_MIN_KB_PER_S, dt_s), PAGE_KB)
        swapped_in_kb = _pages_kb(min(swap_kb, room_kb - resident_kb, rate_kb))
        swap_kb -= swapped_in_kb
        resident_kb += swapped_in_kb
    oom_kill = 0
    in_oom = swap_kb > s.swap_total_kb
    if in_oom:
        # the OOM killer frees the excess; the workload model does not know
        # which process died, so its demand stays: counted once per episode
        oom_kill = 0 if s.in_oom else 1
        swapped_out_kb = max(min(swapped_out_kb, s.swap_total_kb - s.swap_used_kb), 0)
        swap_kb = min(s.swap_total_kb, anon_kb)

    # page cache: file reads fill it, reclaim empties it down to the hot set
    read_kb = _kb(demand.io_kb_per_s, dt_s)
    written_kb = read_kb // 4
    max_cache_kb = max(memtotal_kb - kernel_kb(memtotal_kb, anon_kb) - resident_kb - SHMEM_KB
                       - slab_reclaimable_kb(s.cache_kb) - floor_kb, MIN_FILE_KB)
    cache_kb = s.cache_kb + read_kb
    reclaimed_kb = max(cache_kb - max_cache_kb, 0)
    cache_kb -= reclaimed_kb
    direct = swapped_out_kb > 0  # reclaim could not keep up: allocations stalled

    busy = demand.cpu_pct / 100.0
    faults = grown_kb // PAGE_KB + int(2000 * busy * dt_s) + 20
    c = c.add(
        pgpgin=read_kb + swapped_in_kb, pgpgout=written_kb + swapped_out_kb,
        pswpin=swapped_in_kb // PAGE_KB, pswpout=swapped_out_kb // PAGE_KB,
        pgalloc_normal=faults + read_kb // PAGE_KB, pgfree=faults + freed_kb // PAGE_KB
        + reclaimed_kb // PAGE_KB, pgactivate=faults // 8, pgdeactivate=reclaimed_kb // 16,
        pgfault=faults, pgmajfault=swapped_in_kb // PAGE_KB + read_kb // 64,
        pgrefill=reclaimed_kb // 8,
        pgsteal_kswapd=0 if direct else reclaimed_kb // PAGE_KB,
        pgsteal_direct=(reclaimed_kb + swapped_out_kb) // PAGE_KB if direct else 0,
        pgscan_kswapd=0 if direct else reclaimed_kb * 5 // 16,
        pgscan_direct=(reclaimed_kb + swapped_out_kb) * 5 // 16 if direct else 0,
        allocstall_normal=1 if direct else 0, pageoutrun=1 if reclaimed_kb else 0,
        oom_kill=oom_kill, workingset_refault_anon=swapped_in_kb // PAGE_KB,
        workingset_refault_file=reclaimed_kb // 64,
        numa_hit=faults + read_kb // PAGE_KB, numa_local=faults + read_kb // PAGE_KB)
    return replace(s, uptime_s=s.uptime_s + dt_s, idle_s=s.idle_s + dt_s * (1.0 - busy),
                   cache_kb=cache_kb, anon_kb=anon_kb, swap_used_kb=swap_kb, in_oom=in_oom,
                   counters=c)


def meminfo_fields(s: VmState, memtotal_kb: int, committed_kb: int,
                   static_max_kb: int) -> dict[str, int]:
    """Every /proc/meminfo line of a Linux 6.1 x86-64 guest, in order (kB,
    except the HugePages_ counts)."""
    resident_kb = resident_anon_kb(s)
    sreclaim_kb = slab_reclaimable_kb(s.cache_kb)
    sunreclaim_kb = slab_unreclaimable_kb(memtotal_kb)
    buffers_kb = s.cache_kb // 24
    file_kb = s.cache_kb - buffers_kb
    used_kb = (kernel_kb(memtotal_kb, s.anon_kb) + sreclaim_kb + resident_kb + s.cache_kb
               + SHMEM_KB)
    free_kb = max(memtotal_kb - used_kb, 0)
    low_wmark_kb = free_floor_kb(memtotal_kb) * 5 // 8
    available_kb = max(free_kb - low_wmark_kb + s.cache_kb - min(s.cache_kb // 2, low_wmark_kb)
                       + sreclaim_kb // 2, 0)
    active_anon_kb = resident_kb * 2 // 3
    active_file_kb = s.cache_kb * 3 // 5
    swap_cached_kb = min(s.swap_used_kb, 64 * PAGE_KB) if s.swap_used_kb else 0
    return {
        "MemTotal": memtotal_kb,
        "MemFree": free_kb,
        "MemAvailable": available_kb,
        "Buffers": buffers_kb,
        "Cached": file_kb + SHMEM_KB,
        "SwapCached": swap_cached_kb,
        "Active": active_anon_kb + active_file_kb,
        "Inactive": (resident_kb - active_anon_kb) + (s.cache_kb - active_file_kb) + SHMEM_KB,
        "Active(anon)": active_anon_kb,
        "Inactive(anon)": resident_kb - active_anon_kb + SHMEM_KB,
        "Active(file)": active_file_kb,
        "Inactive(file)": s.cache_kb - active_file_kb,
        "Unevictable": 0,
        "Mlocked": 0,
        "SwapTotal": s.swap_total_kb,
        "SwapFree": s.swap_total_kb - s.swap_used_kb,
        "Zswap": 0,
        "Zswapped": 0,
        "Dirty": min(s.cache_kb // 200, 4096),
        "Writeback": 0,
        "AnonPages": resident_kb,
        "Mapped": file_kb // 3,
        "Shmem": SHMEM_KB,
        "KReclaimable": sreclaim_kb,
        "Slab": sreclaim_kb + sunreclaim_kb,
        "SReclaimable": sreclaim_kb,
        "SUnreclaim": sunreclaim_kb,
        "KernelStack": KERNEL_STACK_KB,
        "PageTables": page_tables_kb(s.anon_kb),
        "SecPageTables": 0,
        "NFS_Unstable": 0,
        "Bounce": 0,
        "WritebackTmp": 0,
        "CommitLimit": s.swap_total_kb + memtotal_kb // 2,
        "Committed_AS": committed_kb,
        "VmallocTotal": 34359738367,
        "VmallocUsed": 8124,
        "VmallocChunk": 0,
        "Percpu": PERCPU_KB,
        "HardwareCorrupted": 0,
        "AnonHugePages": 0,
        "ShmemHugePages": 0,
        "ShmemPmdMapped": 0,
        "FileHugePages": 0,
        "FilePmdMapped": 0,
        "HugePages_Total": 0,
        "HugePages_Free": 0,
        "HugePages_Rsvd": 0,
        "HugePages_Surp": 0,
        "Hugepagesize": 2048,
        "Hugetlb": 0,
        "DirectMap4k": static_max_kb + 16384,
        "DirectMap2M": 0,
    }


def vmstat_gauges(s: VmState, meminfo: dict[str, int]) -> dict[str, int]:
    """The nr_* lines of /proc/vmstat (pages), consistent with ``meminfo``."""
    def pages(name: str) -> int:
        return meminfo[name] // PAGE_KB
    free = pages("MemFree")
    return {
        "nr_free_pages": free,
        "nr_zone_inactive_anon": pages("Inactive(anon)"),
        "nr_zone_active_anon": pages("Active(anon)"),
        "nr_zone_inactive_file": pages("Inactive(file)"),
        "nr_zone_active_file": pages("Active(file)"),
        "nr_zone_write_pending": pages("Dirty"),
        "nr_inactive_anon": pages("Inactive(anon)"),
        "nr_active_anon": pages("Active(anon)"),
        "nr_inactive_file": pages("Inactive(file)"),
        "nr_active_file": pages("Active(file)"),
        "nr_slab_reclaimable": pages("SReclaimable"),
        "nr_slab_unreclaimable": pages("SUnreclaim"),
        "nr_anon_pages": pages("AnonPages"),
        "nr_mapped": pages("Mapped"),
        "nr_file_pages": pages("Cached") + pages("Buffers") + pages("SwapCached"),
        "nr_dirty": pages("Dirty"),
        "nr_shmem": pages("Shmem"),
        "nr_kernel_stack": meminfo["KernelStack"],  # this one is in kB
        "nr_page_table_pages": pages("PageTables"),
        "nr_swapcached": pages("SwapCached"),
        "nr_dirty_threshold": (free + pages("Cached")) * 20 // 100,
        "nr_dirty_background_threshold": (free + pages("Cached")) * 10 // 100,
        "workingset_nodes": pages("Cached") // 64,
    }
