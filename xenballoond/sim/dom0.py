"""dom0's part, as pure decisions: which guests self-balloon and when that
changes (a seeded script), and a small balancer that sets the directed guests'
targets the way an administrator would with ``xl mem-set``.

dom0 sees what a real dom0 sees: each domain's reservation (``xl list``), its
maxmem, and what the guest's xenballoond published (memory/meminfo or
data/xenballoon/meminfo).  Actions are data; the host applies them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence, Union

MODES = ("self", "directed", "mixed")
MIB_KB = 1024


@dataclass(frozen=True)
class MemSet:
    """``xl mem-set``: libxl caps the domain at target + 1 MiB, then writes
    memory/target (the guest's balloon driver watches it)."""

    domid: int
    target_kb: int


@dataclass(frozen=True)
class MemMax:
    """``xl mem-max``: the cap becomes maxmem + 1 MiB, memory/static-max maxmem."""

    domid: int
    maxmem_kb: int


@dataclass(frozen=True)
class SetSelfballoon:
    """memory/selfballoon = 1 or 0 (the daemon reads it every tick)."""

    domid: int
    on: bool


Action = Union[MemSet, MemMax, SetSelfballoon]


@dataclass(frozen=True)
class ModeChange:
    t_s: float
    domid: int
    self_ballooning: bool


def plan(mode: str, seed: int, domids: Sequence[int], duration_s: float) -> tuple[ModeChange, ...]:
    """When each guest self-balloons.  ``self``/``directed``: all guests, from
    the start.  ``mixed``: every other guest at first, then every 8-20 s a
    seeded choice of guest switches."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode != "mixed":
        return tuple(ModeChange(0.0, d, mode == "self") for d in domids)
    rng = random.Random(f"xenballoon-sim dom0 {seed}")
    changes = [ModeChange(0.0, d, i % 2 == 0) for i, d in enumerate(domids)]
    state = {c.domid: c.self_ballooning for c in changes}
    t_s = rng.uniform(8.0, 20.0)
    while t_s < duration_s and domids:
        domid = rng.choice(list(domids))
        state[domid] = not state[domid]
        changes.append(ModeChange(round(t_s, 3), domid, state[domid]))
        t_s += rng.uniform(8.0, 20.0)
    return tuple(changes)


@dataclass(frozen=True)
class GuestView:
    """One guest as dom0 sees it."""

    domid: int
    current_kb: int  # xl list
    static_max_kb: int
    target_kb: int  # memory/target, as dom0 last set it
    cap_kb: int  # the domain's max_pages in kB (xl list -l: max_memkb)
    memtotal_kb: int | None  # from the published meminfo, if any yet
    committed_kb: int | None


# The balancer's headroom above Committed_AS: a fixed part, a share, and room
# for the recent growth to go on for a few seconds (the guest publishes once a
# second, dom0 looks once a second, then the balloon has to grow).
HEADROOM_FIXED_KB = 64 * MIB_KB
HEADROOM_SHARE_DIV = 8
GROWTH_LOOKAHEAD_S = 3.0
SHRINK_MIN_KB = 32 * MIB_KB
# dom0 shrinks a guest a quarter of the way a pass: the guest takes a target at
# once (as its kernel does), so the smoothing is dom0's
SHRINK_STEP_DIV = 4


def balancer_target_kb(v: GuestView, rise_kb_per_s: float) -> int | None:
    """The reservation a directed guest should have: Committed_AS plus headroom,
    plus what its kernel keeps out of MemTotal; None if nothing published yet."""
    if v.committed_kb is None or v.memtotal_kb is None:
        return None
    kernel_kb = max(v.current_kb - v.memtotal_kb, 0)
    want_kb = (v.committed_kb + kernel_kb + HEADROOM_FIXED_KB + v.committed_kb // HEADROOM_SHARE_DIV
               + int(max(rise_kb_per_s, 0.0) * GROWTH_LOOKAHEAD_S))
    return min(want_kb, v.static_max_kb) // 4 * 4


def shrink_step_kb(old_kb: int, new_kb: int) -> int:
    """Grow at once; shrink a quarter of the way."""
    if new_kb >= old_kb:
        return new_kb
    return (old_kb - (old_kb - new_kb) // SHRINK_STEP_DIV) // 4 * 4


def worth_setting(old_kb: int, new_kb: int) -> bool:
    """Grow at once; shrink only by a worthwhile amount (no churn)."""
    if new_kb > old_kb:
        return True
    return old_kb - new_kb >= max(SHRINK_MIN_KB, old_kb // 20)


class Dom0:
    """The dom0 script and balancer.  Holds what it has decided before (the
    modes, the last Committed_AS seen); ``decide`` does no I/O."""

    def __init__(self, changes: Sequence[ModeChange]) -> None:
        self.changes = sorted(changes, key=lambda c: c.t_s)
        self.self_ballooning: dict[int, bool] = {}
        self._done = 0
        self._seen: dict[int, tuple[float, int]] = {}  # domid -> (t_s, committed_kb)
        self._rise: dict[int, float] = {}

    def decide(self, t_s: float, views: Sequence[GuestView]) -> list[Action]:
        by_domid = {v.domid: v for v in views}
        actions: list[Action] = []
        while self._done < len(self.changes) and self.changes[self._done].t_s <= t_s:
            change = self.changes[self._done]
            self._done += 1
            v = by_domid.get(change.domid)
            if v is None or self.self_ballooning.get(change.domid) == change.self_ballooning:
                continue
            self.self_ballooning[change.domid] = change.self_ballooning
            actions.append(SetSelfballoon(change.domid, change.self_ballooning))
            if change.self_ballooning and v.cap_kb < v.static_max_kb:
                # undo the cap an earlier xl mem-set left, or the guest cannot grow
                actions.append(MemMax(change.domid, v.static_max_kb))
        for v in views:
            self._observe(t_s, v)
            if self.self_ballooning.get(v.domid, False):
                continue
            want_kb = balancer_target_kb(v, self._rise.get(v.domid, 0.0))
            if want_kb is not None and worth_setting(v.target_kb, want_kb):
                actions.append(MemSet(v.domid, shrink_step_kb(v.target_kb, want_kb)))
        return actions

    def _observe(self, t_s: float, v: GuestView) -> None:
        """Track how fast Committed_AS grew lately (decaying, so a burst is
        remembered for a few seconds)."""
        if v.committed_kb is None:
            return
        prev = self._seen.get(v.domid)
        self._seen[v.domid] = (t_s, v.committed_kb)
        rise = self._rise.get(v.domid, 0.0) * 0.7
        if prev is not None and t_s > prev[0]:
            rise = max(rise, (v.committed_kb - prev[1]) / (t_s - prev[0]))
        self._rise[v.domid] = rise
