"""/proc/meminfo, /proc/vmstat and /proc/uptime text, formatted as Linux 6.1
formats them (fs/proc/meminfo.c, mm/vmstat.c, fs/proc/uptime.c)."""
from __future__ import annotations

from typing import Mapping

# The lines of meminfo that have no " kB" unit.
_COUNT_LINES = frozenset({"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp"})


def _meminfo_line(name: str) -> str:
    """show_val_kb(): the name, colon, padded to 16 columns, the value in 8,
    then " kB"; the HugePages_ counts without the unit."""
    label = f"{name}:"
    if name in _COUNT_LINES:
        return f"{label:<16}%8d\n"
    if name == "HardwareCorrupted":  # its own format: "%5lu kB"
        return f"{label} %5d kB\n"
    return f"{label:<16}%8d kB\n"


_TEMPLATES: dict[tuple[str, ...], str] = {}


def meminfo_text(fields: Mapping[str, int]) -> str:
    """The lines of ``fields``, in their order, as fs/proc/meminfo.c prints them."""
    names = tuple(fields)
    template = _TEMPLATES.get(names)
    if template is None:
        template = _TEMPLATES[names] = "".join(_meminfo_line(n) for n in names)
    return template % tuple(fields.values())


# vmstat_text[] of Linux 6.1 (x86-64, NUMA, THP, compaction, balloon compaction,
# swap, zswap), in order.
VMSTAT_KEYS: tuple[str, ...] = tuple("""
nr_free_pages nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file
nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_bounce nr_zspages
nr_free_cma numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other
nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable
nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file workingset_nodes
workingset_refault_anon workingset_refault_file workingset_activate_anon
workingset_activate_file workingset_restore_anon workingset_restore_file
workingset_nodereclaim nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback
nr_writeback_temp nr_shmem nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages
nr_file_pmdmapped nr_anon_transparent_hugepages nr_vmscan_write nr_vmscan_immediate_reclaim
nr_dirtied nr_written nr_throttled_written nr_kernel_misc_reclaimable nr_foll_pin_acquired
nr_foll_pin_released nr_kernel_stack nr_page_table_pages nr_sec_page_table_pages
nr_swapcached pgpromote_success pgpromote_candidate nr_dirty_threshold
nr_dirty_background_threshold pgpgin pgpgout pswpin pswpout pgalloc_dma pgalloc_dma32
pgalloc_normal pgalloc_movable allocstall_dma allocstall_dma32 allocstall_normal
allocstall_movable pgskip_dma pgskip_dma32 pgskip_normal pgskip_movable pgfree pgactivate
pgdeactivate pglazyfree pgfault pgmajfault pglazyfreed pgrefill pgreuse pgsteal_kswapd
pgsteal_direct pgsteal_khugepaged pgdemote_kswapd pgdemote_direct pgdemote_khugepaged
pgscan_kswapd pgscan_direct pgscan_khugepaged pgscan_direct_throttle pgscan_anon pgscan_file
pgsteal_anon pgsteal_file zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal
kswapd_low_wmark_hit_quickly kswapd_high_wmark_hit_quickly pageoutrun pgrotated
drop_pagecache drop_slab oom_kill numa_pte_updates numa_huge_pte_updates numa_hint_faults
numa_hint_faults_local numa_pages_migrated pgmigrate_success pgmigrate_fail
thp_migration_success thp_migration_fail thp_migration_split compact_migrate_scanned
compact_free_scanned compact_isolated compact_stall compact_fail compact_success
compact_daemon_wake compact_daemon_migrate_scanned compact_daemon_free_scanned
htlb_buddy_alloc_success htlb_buddy_alloc_fail cma_alloc_success cma_alloc_fail
unevictable_pgs_culled unevictable_pgs_scanned
unevictable_pgs_rescued unevictable_pgs_mlocked unevictable_pgs_munlocked
unevictable_pgs_cleared unevictable_pgs_stranded thp_fault_alloc thp_fault_fallback
thp_fault_fallback_charge thp_collapse_alloc thp_collapse_alloc_failed thp_file_alloc
thp_file_fallback thp_file_fallback_charge thp_file_mapped thp_split_page
thp_split_page_failed thp_deferred_split_page thp_split_pmd thp_scan_exceed_none_pte
thp_scan_exceed_swap_pte thp_scan_exceed_share_pte thp_split_pud thp_zero_page_alloc
thp_zero_page_alloc_failed thp_swpout thp_swpout_fallback balloon_inflate balloon_deflate
balloon_migrate swap_ra swap_ra_hit ksm_swpin_copy cow_ksm zswpin zswpout
direct_map_level2_splits direct_map_level3_splits nr_unstable
""".split())

# Counters a quiet guest has moved since boot and the model does not: small,
# fixed, so the text has realistic widths.
_STATIC = {
    "nr_zone_unevictable": 0, "nr_mlock": 0, "nr_written": 0, "nr_dirtied": 0,
    "pgalloc_dma": 0, "pgalloc_dma32": 48213, "pgreuse": 10442, "slabs_scanned": 1408,
    "pgrotated": 12, "compact_daemon_wake": 1, "thp_fault_alloc": 0,
    "direct_map_level2_splits": 92, "unevictable_pgs_culled": 3,
}


_VMSTAT_TEMPLATE = "".join(f"{k} %d\n" for k in VMSTAT_KEYS)


def vmstat_text(values: Mapping[str, int]) -> str:
    """Every key of VMSTAT_KEYS, "name value\\n", 0 where ``values`` has none."""
    get, static = values.get, _STATIC.get
    return _VMSTAT_TEMPLATE % tuple([get(k, static(k, 0)) for k in VMSTAT_KEYS])


def uptime_text(uptime_s: float, idle_s: float) -> str:
    """fs/proc/uptime.c: two numbers with two decimals."""
    return f"{uptime_s:.2f} {idle_s:.2f}\n"
