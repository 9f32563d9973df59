"""Which domain this is: domain 0 has a balloon driver too, but is not ours to
balloon.  The init script and the unit's ExecCondition make the same test
(tests/test_initscript.py holds all three to one table)."""
from __future__ import annotations

from ..paths import PROC_XEN_CAPABILITIES, SYS_HYPERVISOR_FEATURES, XENFEAT_DOM0, Root


def is_dom0(root: Root) -> bool:
    """The XENFEAT_dom0 bit of the hypervisor's features, or, for hypervisors
    older than that bit, the original's test: control_d in /proc/xen/capabilities."""
    try:
        with open(root.path(PROC_XEN_CAPABILITIES), encoding="ascii", errors="replace") as f:
            if "control_d" in f.read(4096):
                return True
    except OSError:
        pass
    try:
        with open(root.path(SYS_HYPERVISOR_FEATURES), encoding="ascii", errors="replace") as f:
            features = int(f.read(64).strip(), 16)
    except (OSError, ValueError):
        return False
    return bool(features & (1 << XENFEAT_DOM0))
