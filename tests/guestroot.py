"""A guest's OS tree for tests: /proc files and a balloon driver under a root."""
from __future__ import annotations

import os
import time

import re

from xenballoond.sim import procfs

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

def vmstat_text(pswpin: int = 0, pswpout: int = 0, pgpgin: int = 123456, pgpgout: int = 65432) -> str:
    """A Linux 6.1 /proc/vmstat (the simulator's renderer), with these counters."""
    return procfs.vmstat_text({"pswpin": pswpin, "pswpout": pswpout, "pgpgin": pgpgin,
                               "pgpgout": pgpgout})


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


_VMSTAT_LINE = re.compile(r"([a-z0-9_]+)[ \t]+([0-9]{1,20})[ \t]*")


def parse_vmstat(text: str) -> dict[str, int]:
    """Map each well-formed ``name value`` line of /proc/vmstat to its value (the
    daemon publishes vmstat's lines as they are: only the tests read them)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        m = _VMSTAT_LINE.fullmatch(line)
        if m and m.group(1) not in fields:
            fields[m.group(1)] = int(m.group(2))
    return fields
