"""``xenballoon-balancer free SIZE``: making room for a new guest, done by the
command itself, not by the daemon.  It sets the pause flag, takes the act lock
(pause.py), asks guests for memory with balance.free_plan(), and waits for the
host to have SIZE free above the reserve.  It leaves the balancer paused, so
``xl create`` finds the memory; ``resume`` removes the flag.  This works the
same with the daemon running or not, and needs no socket or protocol."""
from __future__ import annotations

import logging
import time
from typing import Callable

from . import BALANCER_PROG, act
from .balance import MIB_KB, free_plan, is_balanced, ref_kb
from .pause import act_lock
from .tick import Balancer, Look

FREE_POLL_S = 0.5

log = logging.getLogger(BALANCER_PROG)


def room_kb(snap: Look) -> int:
    """Free memory above the reserve, less what guests were promised."""
    return (snap.host.free_kb - snap.host.host_reserve_kb
            - act.promised_kb(snap.states, {}))


def make_room(b: Balancer, want_kb: int, timeout_s: float,
              wait: Callable[[float], bool]) -> tuple[bool, str]:
    """Ask guests for memory until ``want_kb`` is free above the reserve.
    (ok, what to tell the administrator)."""
    started = time.monotonic()
    with act_lock(b.root):
        snap = b.look(started)
        if room_kb(snap) >= want_kb:
            return True, f"{room_kb(snap) // MIB_KB} MiB free above the reserve already"
        moves, short_kb = free_plan(snap.states, snap.host, want_kb, b.params)
        if short_kb > 0:
            held = [f"{v.state.name} ({v.status.text})" for v in snap.views
                    if not is_balanced(v.state)]
            floors = [v.state.name for v in snap.views if is_balanced(v.state)]
            return False, (f"cannot free {want_kb // MIB_KB} MiB: {short_kb // MIB_KB} MiB "
                           "short with every balanced guest at its floor"
                           + (f" ({', '.join(floors)})" if floors else "")
                           + (f"; held, not asked: {', '.join(held)}" if held else ""))
        by_id = {v.state.domid: v.state for v in snap.views}
        for m in moves:
            try:
                b.xl.mem_set(m.domid, m.tgt_kb)
            except act.XlError as exc:
                return False, f"xl mem-set {by_id[m.domid].name} failed: {exc}"
            b.domains[m.domid].reason = m.reason
            log.info("dom %d %s: target %d -> %d kB (holds %d): %s", m.domid,
                     by_id[m.domid].name, ref_kb(by_id[m.domid]), m.tgt_kb,
                     by_id[m.domid].cur_kb, m.reason)
        asked = {m.domid: m.tgt_kb for m in moves}
        while True:
            snap = b.look(time.monotonic())
            if room_kb(snap) >= want_kb:
                b.write_state(snap, True)
                return True, (f"{room_kb(snap) // MIB_KB} MiB free above the reserve "
                              f"({len(moves)} guests asked)")
            if time.monotonic() - started >= timeout_s or wait(FREE_POLL_S):
                break
        b.write_state(snap, True)
        slow = [f"{v.state.name} (dom {v.state.domid}): asked {asked[v.state.domid] // MIB_KB}"
                f" MiB, holds {v.state.cur_kb // MIB_KB} MiB" for v in snap.views
                if v.state.domid in asked and v.state.cur_kb > asked[v.state.domid] + MIB_KB]
        return False, (f"only {max(room_kb(snap), 0) // MIB_KB} of {want_kb // MIB_KB} MiB free "
                       f"after {timeout_s:g} s; not yet given back: "
                       + ("; ".join(slow) if slow else "nothing outstanding (another "
                          "domain took the memory)"))
