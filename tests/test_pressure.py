"""Never run out (issue 14): the self-ballooning policy against rising demand,
the loop woken by memory pressure between ticks, the balloon written before any
xenstore I/O, and the daemon kept runnable.  Expected values worked by hand."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from tests import daemonproc as dp
from tests.needs import CAP_IPC_LOCK, CAP_SYS_RESOURCE, has_capability
from tests.guestroot import balloon_target_bytes, make_guest, set_meminfo, write
from tests.policy_kw import decide
from xenballoond.contract.minimum import kernel_min_free_kb, run_kb
from xenballoond.guest.policy import (KIB, RISE_TOLERANCE_KB, rise_per_interval_kb,
                                      self_headroom_kb, tight, wake_thresholds)
from xenballoond.guest.pressure import PressureWatch, sample

# --- the pure rules ---------------------------------------------------------


def test_kernel_min_free_is_the_kernels_formula() -> None:
    # init_per_zone_wmark_min: sqrt(lowmem_kB * 16), clamped to [128, 262144]
    assert kernel_min_free_kb(380000) == 2465        # sqrt(6080000) = 2465.77
    assert kernel_min_free_kb(1048576) == 4096       # sqrt(16777216)
    assert kernel_min_free_kb(100) == 128
    assert kernel_min_free_kb(1 << 40) == 262144


def test_what_the_guest_needs_to_run() -> None:
    assert run_kb(mapped_kb=40208, min_free_kb=2465) == 45138
    assert run_kb(mapped_kb=-5, min_free_kb=-1) == 0


def test_rise_is_per_interval_at_the_last_rate() -> None:
    assert rise_per_interval_kb(None, 500000, 1.0, 1) == 0                 # first tick
    assert rise_per_interval_kb(100000, 100000 + RISE_TOLERANCE_KB, 1.0, 1) == 0  # wobble
    assert rise_per_interval_kb(100000, 165536, 1.0, 1) == 65536          # 64 MiB in 1 s
    assert rise_per_interval_kb(100000, 116384, 0.25, 1) == 65536         # 16 MiB in 0.25 s
    assert rise_per_interval_kb(100000, 165536, 2.0, 1) == 65536          # never scaled down
    assert rise_per_interval_kb(200000, 100000, 1.0, 1) == 0              # falling


def test_headroom_is_the_larger_of_reserve_and_run_need_plus_the_rise() -> None:
    assert self_headroom_kb(524288, 10, 45138, 0) == 52428
    assert self_headroom_kb(393216, 10, 45138, 0) == 45138
    assert self_headroom_kb(393216, 10, 45138, 65536) == 110674
    assert self_headroom_kb(393216, 0, 45138, 65536) == 0   # 0%: the 2008 target exactly


def self_decide(cur_kb: int, committed_kb: int, **kw: int | bool | None) -> int | None:
    args = dict(self_ballooning=True, directed_target_kb=None, cur_kb=cur_kb,
                committed_as_kb=committed_kb, kernel_reserved_kb=63116, maxmem_kb=524288,
                min_mem_mb=0, down_hysteresis=10, up_hysteresis=1, self_reserve_pct=10,
                boot_kb=524288, run_need_kb=45138)
    args.update(kw)
    return decide(**args).tgt_bytes  # type: ignore[arg-type]


def test_the_real_hosts_ramp_is_not_shrunk_into() -> None:
    # the table at 3.1 s: cur 385840 kB, Committed_AS 87972 kB, rising
    # 64 MB/s; target without the rise (87972 + 63116 + 52428) = 203516 kB < cur
    assert self_decide(385840, 87972) == 385840 * KIB - (385840 - 203516) * KIB // 10
    # with the rise: hold where it is, no down step
    assert self_decide(385840, 87972, committed_rise_kb=65536) == 385840 * KIB
    # at 9.2 s the old daemon still shrank (cur 341516, Committed_AS 219060): want
    # 219060 + 63116 + 52428 + 65536 = 400140 kB > cur: all of it at once
    assert self_decide(341516, 219060, committed_rise_kb=65536, up_hysteresis=4) == 400140 * KIB


def test_tight_memory_or_pressure_hold_and_grow_at_once() -> None:
    # want 200000 + 63116 + 52428 = 315544 kB
    assert self_decide(400000, 200000, mem_available_kb=20000) == 400000 * KIB   # hold
    assert self_decide(400000, 200000, pressure=True) == 400000 * KIB           # hold
    assert self_decide(300000, 200000, pressure=True, up_hysteresis=4) == 315544 * KIB
    assert self_decide(300000, 200000, up_hysteresis=4) == \
        300000 * KIB + (315544 - 300000) * KIB // 4                            # calm: 1/4
    assert not tight(26214, 52428) and tight(26213, 52428) and not tight(None, 52428)


def test_wake_thresholds_are_half_the_headroom_either_way() -> None:
    w = wake_thresholds(200000, 52428)
    assert (w.available_below_kb, w.committed_above_kb) == (26214, 226214)
    assert wake_thresholds(200000, 0).committed_above_kb == 200000 + RISE_TOLERANCE_KB


@given(st.integers(0, 1 << 30), st.integers(0, 1 << 30), st.integers(-(1 << 30), 1 << 30),
       st.one_of(st.none(), st.integers(0, 1 << 30)), st.booleans(), st.integers(0, 100),
       st.integers(0, 10**6), st.integers(0, 10**6))
def test_never_a_down_step_into_rising_demand(cur_kb, committed_kb, rise_kb, available_kb,
                                              pressure, pct, down, up) -> None:
    d = decide(self_ballooning=True, directed_target_kb=None, cur_kb=cur_kb,
               committed_as_kb=committed_kb, kernel_reserved_kb=0, maxmem_kb=max(cur_kb, 1),
               min_mem_mb=0, down_hysteresis=down, up_hysteresis=up, self_reserve_pct=pct,
               boot_kb=cur_kb, committed_rise_kb=rise_kb, run_need_kb=45138,
               mem_available_kb=available_kb, pressure=pressure)
    assert d.tgt_bytes is not None
    if pressure or rise_kb > 0:
        assert d.tgt_bytes >= cur_kb * KIB


# --- sampling /proc/meminfo -------------------------------------------------


def test_sample_reads_the_two_fields_and_refuses_garbage(tmp_path) -> None:
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:  1000 kB\nMemAvailable:    700 kB\nCommitted_AS:   300 kB\n")
    assert sample(str(path)) == (700, 300)
    path.write_text("MemTotal: 1 kB\nMemAvailable: -7 kB\nCommitted_AS: 1" + "0" * 30 + " kB\n")
    assert sample(str(path)) == (None, None)
    assert sample(str(tmp_path / "absent")) == (None, None)
    watch = PressureWatch(str(path), None)
    path.write_text("x\nMemAvailable: 100 kB\nCommitted_AS: 10 kB\n")
    assert watch.tight(wake_thresholds(10, 400))          # 100 < 200
    path.write_text("x\nMemAvailable: 900 kB\nCommitted_AS: 10 kB\n")
    assert not watch.tight(wake_thresholds(10, 400))


def test_a_psi_path_that_is_no_trigger_is_given_up(tmp_path) -> None:
    watch = PressureWatch(str(tmp_path / "meminfo"), str(tmp_path / "absent"))
    watch.open()
    assert watch.fds() == [] and watch.psi_error


# --- the daemon as a process --------------------------------------------------


@pytest.fixture
def guest(tmp_path):
    root = str(tmp_path / "guest")
    make_guest(root, memtotal_kb=380000, committed_kb=200000, current_kb=393216)
    return root


def test_rising_demand_wakes_the_daemon_before_its_interval(guest) -> None:
    write(os.path.join(guest, "etc/sysconfig/xenballoon.conf"),
          "XENBALLOON_SELF=true\nXENBALLOON_SELF_INTERVAL=3600\n")
    p = dp.start("--root", guest, "-f", "--debug")
    try:
        dp.wait_for_output(p, "policy:")
        first = balloon_target_bytes(guest)
        # a program takes 150 MB: Committed_AS beyond the wake threshold
        set_meminfo(guest, memtotal_kb=380000, committed_kb=350000)
        dp.wait_for_output(p, "memory pressure: ticking early")
        dp.wait_until(lambda: balloon_target_bytes(guest) > first, what="a larger target")
        assert p.poll() is None
    finally:
        p.terminate()
        p.wait(timeout=30)


@pytest.mark.skipif(not has_capability(CAP_IPC_LOCK),
                    reason="needs root (CAP_IPC_LOCK): mlockall of the whole daemon")
def test_the_daemon_locks_itself_in_memory_and_shuns_the_oom_killer(guest) -> None:
    write(os.path.join(guest, "etc/sysconfig/xenballoon.conf"), "XENBALLOON_SELF=true\n")
    p = dp.start("--root", guest, "-f")
    try:
        out = dp.wait_for_output(p, "policy:")
        with open(f"/proc/{p.pid}/status") as f:
            locked_kb = int(next(line for line in f if line.startswith("VmLck:")).split()[1])
        assert locked_kb > 1024
        with open(f"/proc/{p.pid}/oom_score_adj") as f:
            adj = f.read().strip()
        if has_capability(CAP_SYS_RESOURCE):
            assert adj == "-1000"
        else:  # this machine's root may not lower it (a container): said, not fatal
            assert adj == "0" and "cannot exempt the daemon from the OOM killer" in out
    finally:
        p.terminate()
        p.wait(timeout=30)
