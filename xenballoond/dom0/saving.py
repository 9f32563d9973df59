"""Save, restore and migrate a guest that balloons.

libxl rebuilds a restored or migrated domain with at most its saved
``memory/target`` + 1 MiB (Xen said "Over-allocation for d2: 65793 > 65792"
and the guest was gone).  A directed guest is kept at its target by its
daemon; a self-ballooning one moves its balloon without telling the
toolstack, and may hold far more than its target.  So, before ``xl save`` or
``xl migrate``: ``prepare-save`` makes the target true (``xl mem-set`` to what
the guest holds, which also caps it there until the save); after ``xl
restore``: ``after-restore`` gives it its static-max back (``xl mem-max``), so
it can grow again.
"""
from __future__ import annotations

from typing import Callable, Optional

from .act import Xl, XlError
from .balance import MIB_KB
from .guests import Domain


def find_domain(domains: list[Domain], which: str) -> Optional[Domain]:
    """By name, else by domid; domain 0 is never one."""
    for d in domains:
        if d.name == which and d.domid != 0:
            return d
    if which.isdigit():
        for d in domains:
            if str(d.domid) == which and d.domid != 0:
                return d
    return None


def save_target_kb(cur_kb: int) -> int:
    """What ``memory/target`` must say before a save: xl list's MiB are
    rounded down, so one MiB more than it shows keeps every page the guest
    holds within the rebuilt domain."""
    return cur_kb + MIB_KB


def prepare_save(xl: Xl, which: str) -> tuple[bool, str]:
    try:
        d = find_domain(xl.list_domains(), which)
        if d is None:
            return False, f"no guest {which!r} in xl list"
        tgt_kb = save_target_kb(d.cur_kb)
        xl.mem_set(d.domid, tgt_kb)
    except XlError as exc:
        return False, str(exc)
    return True, (f"dom {d.domid} {d.name}: memory/target = {tgt_kb} kB, what it holds: "
                  f"xl save and xl migrate can now rebuild it")


def after_restore(xl: Xl, which: str, static_max_kb: Callable[[int], Optional[int]]
                  ) -> tuple[bool, str]:
    try:
        d = find_domain(xl.list_domains(), which)
        if d is None:
            return False, f"no guest {which!r} in xl list"
        max_kb = static_max_kb(d.domid)
        if max_kb is None:
            return False, f"dom {d.domid} {d.name}: no usable memory/static-max"
        xl.mem_max(d.domid, max_kb)
    except XlError as exc:
        return False, str(exc)
    return True, f"dom {d.domid} {d.name}: may grow to its static-max again ({max_kb} kB)"
