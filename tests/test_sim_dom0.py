"""dom0's script and balancer, as data in and actions out."""
from __future__ import annotations

import pytest

from xenballoond.sim import dom0
from xenballoond.sim.dom0 import GuestView, MemMax, MemSet, ModeChange, SetSelfballoon

MIB = 1024


def view(domid: int = 1, *, current_kb: int = 1000 * MIB, memtotal_kb: int | None = 950 * MIB,
         committed_kb: int | None = 400 * MIB, target_kb: int = 1000 * MIB,
         cap_kb: int = 2048 * MIB) -> GuestView:
    return GuestView(domid=domid, current_kb=current_kb, static_max_kb=2048 * MIB,
                     target_kb=target_kb, cap_kb=cap_kb, memtotal_kb=memtotal_kb,
                     committed_kb=committed_kb)


@pytest.mark.parametrize("mode,expected", [
    ("self", (ModeChange(0.0, 1, True), ModeChange(0.0, 2, True))),
    ("directed", (ModeChange(0.0, 1, False), ModeChange(0.0, 2, False))),
])
def test_plan_all_one_way(mode: str, expected: tuple[ModeChange, ...]) -> None:
    assert dom0.plan(mode, 1, [1, 2], 60) == expected


def test_plan_mixed_is_seeded_and_switches() -> None:
    p = dom0.plan("mixed", 3, [1, 2, 3], 120)
    assert p == dom0.plan("mixed", 3, [1, 2, 3], 120)
    assert p != dom0.plan("mixed", 4, [1, 2, 3], 120)
    assert p[:3] == (ModeChange(0.0, 1, True), ModeChange(0.0, 2, False), ModeChange(0.0, 3, True))
    later = p[3:]
    assert later and all(8.0 <= c.t_s < 120 for c in later)
    assert all(b.t_s - a.t_s >= 8.0 for a, b in zip(later, later[1:]))
    state = {1: True, 2: False, 3: True}
    for c in later:  # every change is a real switch
        assert c.self_ballooning != state[c.domid]
        state[c.domid] = c.self_ballooning


def test_plan_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        dom0.plan("chaos", 1, [1], 10)


def test_balancer_target_worked_by_hand() -> None:
    v = view(current_kb=1_000_000, memtotal_kb=950_000, committed_kb=400_000)
    # 400000 + (1000000 - 950000) + 65536 + 400000 // 8 = 565536; + 3 s of 10000 kB/s
    assert dom0.balancer_target_kb(v, 0.0) == 565536
    assert dom0.balancer_target_kb(v, 10_000.0) == 595536
    assert dom0.balancer_target_kb(v, -5.0) == 565536
    assert dom0.balancer_target_kb(view(committed_kb=4000 * MIB), 0.0) == 2048 * MIB
    assert dom0.balancer_target_kb(view(committed_kb=None), 0.0) is None


@pytest.mark.parametrize("old,new,worth", [
    (500 * MIB, 501 * MIB, True),  # growing: always
    (500 * MIB, 480 * MIB, False),  # 20 MiB: churn
    (500 * MIB, 468 * MIB, True),  # 32 MiB
    (4000 * MIB, 3850 * MIB, False),  # under 5 %
    (4000 * MIB, 3800 * MIB, True),
])
def test_worth_setting(old: int, new: int, worth: bool) -> None:
    assert dom0.worth_setting(old, new) is worth


def test_dom0_shrinks_a_quarter_of_the_way_and_grows_at_once() -> None:
    assert dom0.shrink_step_kb(1000 * MIB, 600 * MIB) == 900 * MIB
    assert dom0.shrink_step_kb(1000 * MIB, 999 * MIB + 2) == 999 * MIB + 768  # kB, 4-aligned
    assert dom0.shrink_step_kb(600 * MIB, 1000 * MIB) == 1000 * MIB


def test_switch_to_self_lifts_the_cap_a_mem_set_left() -> None:
    d = dom0.Dom0([ModeChange(0.0, 1, False), ModeChange(10.0, 1, True)])
    actions = d.decide(0.0, [view(committed_kb=None)])
    assert actions == [SetSelfballoon(1, False)]
    capped = view(target_kb=600 * MIB, cap_kb=600 * MIB)
    actions = d.decide(10.0, [capped])
    assert actions == [SetSelfballoon(1, True), MemMax(1, 2048 * MIB)]
    assert d.decide(11.0, [capped]) == []  # self-ballooning guests get no mem-set


def test_directed_guest_gets_mem_set_and_growth_is_anticipated() -> None:
    d = dom0.Dom0([ModeChange(0.0, 1, False)])
    first = d.decide(0.0, [view(committed_kb=400 * MIB)])
    want = dom0.balancer_target_kb(view(committed_kb=400 * MIB), 0.0)
    # down from the 1 GiB it holds: a quarter of the way a pass
    assert first == [SetSelfballoon(1, False), MemSet(1, dom0.shrink_step_kb(view().target_kb, want))]
    # Committed_AS grew 50 MiB in a second: three more seconds of that on top
    second = d.decide(1.0, [view(committed_kb=450 * MIB, target_kb=want)])
    assert second == [MemSet(1, dom0.balancer_target_kb(view(committed_kb=450 * MIB),
                                                        50.0 * MIB))]
