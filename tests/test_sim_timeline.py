"""What the simulator records step by step (sim/timeline.py) for its summary's
"timeline", and the spells of a guest's balloon target below its Committed_AS."""
from __future__ import annotations

import os

import pytest

from xenballoond.sim import balloon_model as bm
from xenballoond.sim.guest import SimGuest
from xenballoond.sim.timeline import GuestSample, Timeline
from xenballoond.sim.workload import Job, Workload

MIB = 1024
SYSFS = "sys/devices/system/xen_memory/xen_memory0"


def sample(domid: int, current_kb: int, **kw: int | None) -> GuestSample:
    fields = dict(target_kb=current_kb, committed_kb=300 * MIB, dom0_target_kb=None,
                  swapped_out_pages=0, swapped_in_pages=0, oom_kills=0)
    fields.update(kw)
    return GuestSample(domid=domid, name=f"guest{domid}", current_kb=current_kb,
                       **fields)  # type: ignore[arg-type]


def test_timeline_is_one_column_per_quantity() -> None:
    tl = Timeline()
    tl.record(0.0, 512 * MIB, [sample(1, 1024 * MIB, dom0_target_kb=1024 * MIB),
                               sample(2, 1024 * MIB)])
    tl.record(0.2500001, 600 * MIB, [sample(1, 1000 * MIB, swapped_out_pages=7),
                                     sample(2, 960 * MIB, target_kb=900 * MIB, oom_kills=1)])
    assert tl.as_json({2: [(0.25, 0.5)]}) == {
        "t_s": [0.0, 0.25], "host_free_kb": [512 * MIB, 600 * MIB],
        "guests": [
            {"domid": 1, "name": "guest1", "current_kb": [1024 * MIB, 1000 * MIB],
             "target_kb": [1024 * MIB, 1000 * MIB], "committed_kb": [300 * MIB, 300 * MIB],
             "dom0_target_kb": [1024 * MIB, None], "swapped_out_pages": [0, 7],
             "swapped_in_pages": [0, 0], "oom_kills": [0, 0], "uncovered_s": []},
            {"domid": 2, "name": "guest2", "current_kb": [1024 * MIB, 960 * MIB],
             "target_kb": [1024 * MIB, 900 * MIB], "committed_kb": [300 * MIB, 300 * MIB],
             "dom0_target_kb": [None, None], "swapped_out_pages": [0, 0],
             "swapped_in_pages": [0, 0], "oom_kills": [0, 1], "uncovered_s": [[0.25, 0.5]]},
        ]}


def test_the_guests_of_a_timeline_do_not_change() -> None:
    tl = Timeline()
    tl.record(0.0, 0, [sample(1, 1024), sample(2, 1024)])
    with pytest.raises(ValueError):
        tl.record(0.25, 0, [sample(2, 1024), sample(1, 1024)])


def test_a_spell_below_committed_runs_from_the_rise_to_the_target_that_covers_it(
        tmp_path) -> None:
    # 300 MiB, then a job committing 900 MiB more over t = 1..2 s: above the boot target
    ramp = Workload(base_committed_kb=300 * MIB, base_anon_kb=150 * MIB, base_io_kb_per_s=0,
                    base_cpu_pct=1, jobs=(Job(start_s=1.0, ramp_up_s=1.0, hold_s=100.0,
                                              ramp_down_s=0.0, committed_kb=900 * MIB,
                                              touched_pct=10, io_kb_per_s=0, cpu_pct=0),))
    g = SimGuest(root=str(tmp_path), domid=1, name="g1", kind=bm.SYSFS, memory_kb=1024 * MIB,
                 maxmem_kb=2048 * MIB, workload=ramp, swap_total_kb=512 * MIB, uptime_s=30.0)
    g.create()
    t_s = 0.0
    for _ in range(16):  # to t = 4 s
        t_s += 0.25
        g.step(t_s, 0.25, lambda: None)
    [(start_s, end_s)] = g.uncovered_spells_s(t_s)
    assert 1.0 < start_s <= 2.0 and end_s == 4.0  # still open: it ends now
    with open(os.path.join(tmp_path, SYSFS, "target"), "w") as f:
        f.write(f"{1536 * MIB * 1024}\n")  # the daemon's write: 1.5 GiB covers 1.2
    t_s += 0.25
    g.step(t_s, 0.25, lambda: None)
    assert g.uncovered_spells_s(10.0) == [(start_s, 4.25)]
    assert g.stats.cover_delays_s == [4.25 - start_s]
