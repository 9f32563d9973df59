"""One root for every OS path.

Every path the daemon, the monitor or the simulator touches (/proc, /sys, /etc,
/var/run) is an absolute OS path resolved under a configurable root, so tests and
the simulator run the real code against a real directory tree.
"""
from __future__ import annotations

import os
from .record import frozen


@frozen
class Root:
    """Resolves absolute OS paths under ``top`` ("/" on a real guest)."""

    top: str = "/"

    def path(self, os_path: str) -> str:
        """Map an absolute OS path such as ``/proc/meminfo`` under this root."""
        if not os_path.startswith("/"):
            raise ValueError(f"not an absolute OS path: {os_path!r}")
        if self.top in ("", "/"):
            return os_path
        return os.path.join(self.top, os_path.lstrip("/"))


PROC_MEMINFO = "/proc/meminfo"
PROC_VMSTAT = "/proc/vmstat"
PROC_UPTIME = "/proc/uptime"
PROC_MIN_FREE_KBYTES = "/proc/sys/vm/min_free_kbytes"
PROC_PRESSURE_MEMORY = "/proc/pressure/memory"
PROC_XEN_BALLOON = "/proc/xen/balloon"
PROC_XEN_CAPABILITIES = "/proc/xen/capabilities"
SYS_HYPERVISOR_FEATURES = "/sys/hypervisor/properties/features"
XENFEAT_DOM0 = 11  # xen/include/public/features.h
SYSFS_BALLOON_DIR = "/sys/devices/system/xen_memory/xen_memory0"
DEFAULT_PIDFILE = "/var/run/xenballoond.pid"
