"""Acting on the host: ``xl list``, ``xl info`` and ``xl mem-set``, through
proc.run, and the order moves are applied in.

``xl mem-set <domid> <kb>k`` is what the toolstack expects: libxl sets the
domain's maxmem to the target + 1 MiB (LIBXL_MAXMEM_CONSTANT), then writes
memory/target, which the guest's kernel applies itself (pvops) and its
xenballoond follows in directed mode.  Writing memory/target alone would
leave the old maxmem in place (a guest could not grow past it) and libxl's
own idea of the target stale.

Decreases are written first; increases only out of memory that is free now,
above the host reserve and above what guests were promised and have not
taken yet.  When the decreases have not freed enough yet, the balancer waits
a little (squeezed's two phases), then grants what there is and leaves the
rest for the next tick.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from .. import proc
from ..contract.keys import MAX_KB
from .balance import MIB_KB, GuestState, Move, ref_kb
from .guests import Domain
from .hostinfo import parse_free_memory_mb
from .reader import parse_domid

# "Name  ID  Mem VCPUs  State  Time(s)": the name may be anything xl accepts,
# so the numbers are taken from the right.
_LIST_LINE = re.compile(r"(\S.*?)\s+([0-9]{1,5})\s+([0-9]{1,12})\s+([0-9]{1,5})\s+(\S+)\s+"
                        r"([0-9.]+)\s*", re.ASCII)


def parse_xl_list(text: str) -> list[Domain]:
    """The domains of ``xl list`` (Mem is in MiB); lines that do not parse
    are skipped."""
    domains = []
    for line in text.splitlines()[1:]:
        m = _LIST_LINE.fullmatch(line)
        if m is None:
            continue
        domid = parse_domid(m.group(2))
        mem_kb = int(m.group(3)) * MIB_KB
        if domid is None or mem_kb > MAX_KB:
            continue
        domains.append(Domain(domid, m.group(1), mem_kb))
    return domains


def moved_kb(before: Sequence[Domain], after: Sequence[Domain]) -> int:
    """What the domains' sizes changed by between two listings (a domain in
    one only counts whole): how far free memory read between them may be off
    from the sizes."""
    was = {d.domid: d.cur_kb for d in before}
    now = {d.domid: d.cur_kb for d in after}
    return sum(abs(now.get(domid, 0) - was.get(domid, 0)) for domid in was.keys() | now.keys())


class XlError(Exception):
    pass


class Xl:
    """The ``xl`` commands the balancer runs.  ``xl`` is a name on PATH or a
    path (XENBALLOON_BALANCER_XL)."""

    def __init__(self, xl: str, timeout_s: float, env: Optional[Mapping[str, str]] = None
                 ) -> None:
        self.xl, self.timeout_s, self.env = xl, timeout_s, env
        self.processes_spawned = 0

    def _run(self, *args: str) -> str:
        self.processes_spawned += 1
        try:
            return proc.run([self.xl, *args], self.timeout_s, env=self.env).stdout
        except proc.CommandError as exc:
            raise XlError(str(exc)) from exc

    def list_domains(self) -> list[Domain]:
        return parse_xl_list(self._run("list"))

    def free_kb(self) -> int:
        mb = parse_free_memory_mb(self._run("info"))
        if mb is None:
            raise XlError(f"{self.xl} info: no free_memory line")
        return mb * MIB_KB

    def mem_set(self, domid: int, tgt_kb: int) -> None:
        self._run("mem-set", str(domid), f"{tgt_kb}k")

    def mem_max(self, domid: int, max_kb: int) -> None:
        self._run("mem-max", str(domid), f"{max_kb}k")

    def unpause(self, domid: int) -> None:
        self._run("unpause", str(domid))


def promised_kb(guests: Sequence[GuestState], targets: Mapping[int, int]) -> int:
    """What guests may still balloon up to: each target above what it holds."""
    return sum(max(targets.get(g.domid, ref_kb(g)) - g.cur_kb, 0) for g in guests)


@dataclass(frozen=True)
class Applied:
    written: list[Move]
    deferred: list[tuple[Move, str]]
    failed: list[tuple[Move, str]]


SETTLE_POLL_S = 0.5


def apply_moves(moves: Sequence[Move], guests: Sequence[GuestState], xl: Xl, reserve_kb: int,
                settle_s: float, wait: Callable[[float], bool]) -> Applied:
    """Write ``moves`` (decreases first, as balance() orders them).  ``wait(s)``
    sleeps up to s seconds and returns True when the daemon must stop.

    An urgent increase (a guest below its need) takes what is free at once,
    before the decreases have freed anything: the guest's balloon starts
    growing now, and the rest follows once the decreases have freed it.  Other
    increases wait for the decreases (up to ``settle_s``) and are written once.
    """
    by_id = {g.domid: g for g in guests}
    targets: dict[int, int] = {}
    written: list[Move] = []
    deferred: list[tuple[Move, str]] = []
    failed: list[tuple[Move, str]] = []

    def write(move: Move, tgt_kb: int, reason: str) -> None:
        try:
            xl.mem_set(move.domid, tgt_kb)
        except XlError as exc:
            failed.append((move, str(exc)))
            return
        targets[move.domid] = tgt_kb
        written.append(Move(move.domid, tgt_kb, reason, move.urgent))

    ups = []
    for move in moves:
        g = by_id[move.domid]
        if move.tgt_kb < ref_kb(g):
            write(move, move.tgt_kb, move.reason)
        else:
            ups.append(move)
    if not ups:
        return Applied(written, deferred, failed)
    decreases = bool(written)

    def base_kb(move: Move) -> int:
        g = by_id[move.domid]
        return max(g.cur_kb, targets.get(move.domid, ref_kb(g)))

    def extra_kb(move: Move) -> int:
        return max(move.tgt_kb - base_kb(move), 0)

    def budget_kb() -> int:
        return xl.free_kb() - reserve_kb - promised_kb(guests, targets)

    def grant(move: Move, budget: int, final: bool) -> int:
        """Write what the budget allows of ``move``; the budget left."""
        base, extra = base_kb(move), extra_kb(move)
        grant_kb = min(extra, max(budget, 0))
        if move.tgt_kb <= base:
            if targets.get(move.domid) != move.tgt_kb:
                write(move, move.tgt_kb, move.reason)  # a raise of a guest still below its target
        elif grant_kb <= 0:
            if final:
                deferred.append((move, f"waiting for free memory ({max(budget, 0)} kB above "
                                       "the reserve)"))
        elif grant_kb < extra:
            write(move, base + grant_kb,
                  f"{move.reason}; {base + grant_kb} of {move.tgt_kb} for now "
                  "(waiting for free memory)")
            budget -= grant_kb
        else:
            write(move, move.tgt_kb, move.reason)
            budget -= grant_kb
        return budget

    try:
        budget = budget_kb()
        if decreases and budget < sum(extra_kb(m) for m in ups):
            for move in [m for m in ups if m.urgent and budget > 0]:
                budget = grant(move, budget, final=False)
                if move.domid in targets:  # what was free: the rest next pass
                    ups.remove(move)
                    if targets[move.domid] < move.tgt_kb:
                        deferred.append((move, "the rest once the decreases have freed it"))
            waited_s = 0.0
            while (budget < sum(extra_kb(m) for m in ups) and waited_s < settle_s
                   and not wait(SETTLE_POLL_S)):
                waited_s += SETTLE_POLL_S
                budget = budget_kb()
    except XlError as exc:
        return Applied(written, deferred + [(m, f"free memory unknown: {exc}") for m in ups
                                            if m.domid not in targets], failed)
    for move in ups:
        budget = grant(move, budget, final=True)
    return Applied(written, deferred, failed)
