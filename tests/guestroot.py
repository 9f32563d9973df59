"""A guest's OS tree for tests: /proc files and a balloon driver under a root."""
from __future__ import annotations

import os
import time

# /proc/meminfo of a Linux 6.1 PV guest (values substituted), ~1.4 KB.
MEMINFO = """MemTotal:       {memtotal} kB
MemFree:          201800 kB
MemAvailable:     262120 kB
Buffers:            8400 kB
Cached:            79000 kB
SwapCached:            0 kB
Active:            52232 kB
Inactive:          58716 kB
Active(anon):        780 kB
Inactive(anon):    29348 kB
Active(file):      51452 kB
Inactive(file):    29368 kB
Unevictable:           0 kB
Mlocked:               0 kB
SwapTotal:        524284 kB
SwapFree:         524284 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:                 4 kB
Writeback:             0 kB
AnonPages:         30556 kB
Mapped:            40208 kB
Shmem:              1456 kB
KReclaimable:      10256 kB
Slab:              24836 kB
SReclaimable:      10256 kB
SUnreclaim:        14580 kB
KernelStack:        1824 kB
PageTables:          912 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:      694288 kB
Committed_AS:   {committed} kB
VmallocTotal:   34359738367 kB
VmallocUsed:        8124 kB
VmallocChunk:          0 kB
Percpu:              480 kB
HardwareCorrupted:     0 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:         0 kB
FilePmdMapped:         0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:      409600 kB
DirectMap2M:           0 kB
"""

VMSTAT_KEYS = """nr_free_pages nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file
nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_bounce nr_zspages
nr_free_cma numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other
nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable
nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file
workingset_nodes workingset_refault_anon workingset_refault_file workingset_activate_anon
workingset_activate_file workingset_restore_anon workingset_restore_file workingset_nodereclaim
nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback nr_writeback_temp nr_shmem
nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages nr_file_pmdmapped nr_anon_transparent_hugepages
nr_vmscan_write nr_vmscan_immediate_reclaim nr_dirtied nr_written nr_throttled_written
nr_kernel_misc_reclaimable nr_foll_pin_acquired nr_foll_pin_released nr_kernel_stack
nr_page_table_pages nr_sec_page_table_pages nr_swapcached pgpromote_success pgpromote_candidate
nr_dirty_threshold nr_dirty_background_threshold pgpgin pgpgout pswpin pswpout pgalloc_dma
pgalloc_dma32 pgalloc_normal pgalloc_movable allocstall_dma allocstall_dma32 allocstall_normal
allocstall_movable pgskip_dma pgskip_dma32 pgskip_normal pgskip_movable pgfree pgactivate
pgdeactivate pglazyfree pgfault pgmajfault pglazyfreed pgrefill pgreuse pgsteal_kswapd
pgsteal_direct pgsteal_khugepaged pgdemote_kswapd pgdemote_direct pgdemote_khugepaged
pgscan_kswapd pgscan_direct pgscan_khugepaged pgscan_direct_throttle pgscan_anon pgscan_file
pgsteal_anon pgsteal_file zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal
kswapd_low_wmark_hit_quickly kswapd_high_wmark_hit_quickly pageoutrun pgrotated drop_pagecache
drop_slab oom_kill numa_pte_updates numa_huge_pte_updates numa_hint_faults numa_hint_faults_local
numa_pages_migrated pgmigrate_success pgmigrate_fail thp_migration_success thp_migration_fail
thp_migration_split compact_migrate_scanned compact_free_scanned compact_isolated compact_stall
compact_fail compact_success compact_daemon_wake compact_daemon_migrate_scanned
compact_daemon_free_scanned htlb_buddy_alloc_success htlb_buddy_alloc_fail unevictable_pgs_culled
unevictable_pgs_scanned unevictable_pgs_rescued unevictable_pgs_mlocked unevictable_pgs_munlocked
unevictable_pgs_cleared unevictable_pgs_stranded thp_fault_alloc thp_fault_fallback
thp_fault_fallback_charge thp_collapse_alloc thp_collapse_alloc_failed thp_file_alloc
thp_file_fallback thp_file_fallback_charge thp_file_mapped thp_split_page thp_split_page_failed
thp_deferred_split_page thp_split_pmd thp_scan_exceed_none_pte thp_scan_exceed_swap_pte
thp_scan_exceed_share_pte thp_split_pud thp_zero_page_alloc thp_zero_page_alloc_failed
thp_swpout thp_swpout_fallback balloon_inflate balloon_deflate balloon_migrate swap_ra swap_ra_hit
ksm_swpin_copy cow_ksm zswpin zswpout direct_map_level2_splits direct_map_level3_splits
nr_unstable""".split()


def vmstat_text(pswpin: int = 0, pswpout: int = 0, pgpgin: int = 123456, pgpgout: int = 65432) -> str:
    special = {"pswpin": pswpin, "pswpout": pswpout, "pgpgin": pgpgin, "pgpgout": pgpgout}
    return "".join(f"{k} {special.get(k, 1000 + i * 37)}\n" for i, k in enumerate(VMSTAT_KEYS))


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


SYSFS = "sys/devices/system/xen_memory/xen_memory0"


def make_guest(root: str, *, memtotal_kb: int, committed_kb: int, current_kb: int | None = None,
               balloon: str = "sysfs", conf: str | None = None, uptime: str = "1234.56 1100.20") -> None:
    """Write a guest tree under ``root``.  ``balloon`` is "sysfs", "proc" or "none"."""
    set_meminfo(root, memtotal_kb=memtotal_kb, committed_kb=committed_kb)
    write(os.path.join(root, "proc/vmstat"), vmstat_text())
    write(os.path.join(root, "proc/uptime"), uptime + "\n")
    os.makedirs(os.path.join(root, "var/run"), exist_ok=True)
    if balloon == "sysfs":
        cur = current_kb if current_kb is not None else memtotal_kb
        write(os.path.join(root, SYSFS, "target"), f"{cur * 1024}\n")
        write(os.path.join(root, SYSFS, "target_kb"), f"{cur}\n")
        write(os.path.join(root, SYSFS, "info/current_kb"), f"{cur}\n")
    elif balloon == "proc":
        write(os.path.join(root, "proc/xen/balloon"), "Current allocation:  0 kB\n")
    if conf is not None:
        write(os.path.join(root, "etc/sysconfig/xenballoon.conf"), conf)


def set_meminfo(root: str, *, memtotal_kb: int, committed_kb: int) -> None:
    write(os.path.join(root, "proc/meminfo"),
          MEMINFO.format(memtotal=f"{memtotal_kb:>8}", committed=f"{committed_kb:>8}"))


def set_current_kb(root: str, current_kb: int) -> None:
    write(os.path.join(root, SYSFS, "info/current_kb"), f"{current_kb}\n")


def balloon_target_bytes(root: str, balloon: str = "sysfs") -> int:
    path = os.path.join(root, SYSFS, "target") if balloon == "sysfs" else \
        os.path.join(root, "proc/xen/balloon")
    # the daemon writes in place, as sysfs needs: a read may catch it truncated
    for _ in range(100):
        with open(path) as f:
            text = f.read().strip()
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} stays empty")
