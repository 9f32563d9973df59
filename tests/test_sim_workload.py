"""The workload model: jobs as piecewise-linear commitments, worked by hand."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from xenballoond.sim.workload import (MAX_TOTAL_COMMITTED_PCT, Demand, Job, Workload, demand_at,
                                      make_workload)

# starts at 10 s, grows for 4 s, holds 2 s, shrinks for 2 s: gone at 18 s
RAMPED = Job(start_s=10.0, ramp_up_s=4.0, hold_s=2.0, ramp_down_s=2.0, committed_kb=100_000,
             touched_pct=50, io_kb_per_s=1000, cpu_pct=30)
# exits at once at 13 s
EXITS = Job(start_s=11.0, ramp_up_s=1.0, hold_s=1.0, ramp_down_s=0.0, committed_kb=40_000,
            touched_pct=75, io_kb_per_s=0, cpu_pct=80)


@pytest.mark.parametrize("t_s,share", [
    (0.0, 0.0), (9.99, 0.0), (10.0, 0.0), (11.0, 0.25), (12.0, 0.5), (14.0, 1.0), (15.9, 1.0),
    (16.0, 1.0), (17.0, 0.5), (17.5, 0.25), (18.0, 0.0), (100.0, 0.0),
])
def test_ramped_job(t_s: float, share: float) -> None:
    assert RAMPED.share(t_s) == pytest.approx(share)


@pytest.mark.parametrize("t_s,share", [(11.5, 0.5), (12.0, 1.0), (12.999, 1.0), (13.0, 0.0)])
def test_job_that_exits(t_s: float, share: float) -> None:
    assert EXITS.share(t_s) == pytest.approx(share)


WL = Workload(base_committed_kb=200_000, base_anon_kb=80_000, base_io_kb_per_s=16,
              base_cpu_pct=2, jobs=(RAMPED, EXITS))


@pytest.mark.parametrize("t_s,demand", [
    # base only
    (5.0, Demand(200_000, 80_000, 16, 2)),
    # RAMPED at 1/4: 25000 committed, half touched; EXITS not started
    (11.0, Demand(225_000, 92_500, 1016, 32)),
    # RAMPED at 1/2 (50000, 25000 touched); EXITS full (40000, 30000 touched)
    (12.0, Demand(290_000, 135_000, 1016, 100)),  # CPU capped at one vCPU
    # EXITS gone; RAMPED at 3/4
    (13.0, Demand(275_000, 117_500, 1016, 32)),
    (20.0, Demand(200_000, 80_000, 16, 2)),
])
def test_demand_worked_by_hand(t_s: float, demand: Demand) -> None:
    assert demand_at(WL, t_s) == demand


def test_seeded_and_repeatable() -> None:
    a = make_workload(7, 0, 1 << 20, 120)
    assert a == make_workload(7, 0, 1 << 20, 120)
    assert a != make_workload(8, 0, 1 << 20, 120)
    assert a != make_workload(7, 1, 1 << 20, 120)
    assert a.jobs and a.jobs[0].start_s < 3.0  # something happens early


def test_committed_rises_and_falls() -> None:
    wl = make_workload(1, 0, 1 << 20, 120)
    series = [demand_at(wl, t / 4).committed_kb for t in range(480)]
    rises = sum(1 for x, y in zip(series, series[1:]) if y > x)
    falls = sum(1 for x, y in zip(series, series[1:]) if y < x)
    assert rises > 20 and falls > 5


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**9), index=st.integers(0, 49), memory_mb=st.integers(256, 8192))
def test_bounds(seed: int, index: int, memory_mb: int) -> None:
    memory_kb = memory_mb * 1024
    wl = make_workload(seed, index, memory_kb, 60)
    for j in wl.jobs:
        assert j.start_s < 60 and j.ramp_up_s > 0 and j.committed_kb > 0
    for t in range(0, 70 * 2):
        d = demand_at(wl, t / 2)
        assert wl.base_committed_kb <= d.committed_kb <= memory_kb * MAX_TOTAL_COMMITTED_PCT // 100
        assert 0 < d.anon_kb <= d.committed_kb
        assert 0 <= d.cpu_pct <= 100


def test_ramp_workload_allocates_at_its_rate_then_holds() -> None:
    from xenballoond.sim.workload import make_ramp_workload
    w = make_ramp_workload(memory_kb=409600, rate_kb_per_s=65536, peak_kb=524288, start_s=3.0)
    base = 409600 * 3 // 100  # 12288 kB
    assert demand_at(w, 2.9).committed_kb == base
    assert demand_at(w, 4.0).committed_kb == base + 65536          # 1 s at 64 MiB/s
    assert demand_at(w, 5.0).anon_kb == base // 2 + 131072         # touched as it goes
    assert demand_at(w, 3.0 + 8.0).committed_kb == base + 524288   # 8 s to the peak
    assert demand_at(w, 100.0).committed_kb == base + 524288       # then held


def test_idle_workload_is_the_base_load_alone() -> None:
    """Issue 24's idle guest: no jobs, 3-12% of memory= committed, the same
    demand at every instant, and the same for a seed on every run."""
    from xenballoond.sim.workload import make_idle_workload
    memory_kb = 1048576
    for seed in range(1, 30):
        for index in range(3):
            w = make_idle_workload(seed, index, memory_kb)
            assert w.jobs == ()
            assert memory_kb * 3 // 100 <= w.base_committed_kb <= memory_kb * 12 // 100
            assert demand_at(w, 0.0) == demand_at(w, 59.0) == demand_at(w, 1e6)
            assert 0 < w.base_anon_kb <= w.base_committed_kb
            assert w == make_idle_workload(seed, index, memory_kb)
