"""The simulator's model of a daemon stalled by memory pressure, on real
processes: an unlocked one is stopped while its guest is under pressure, a
locked one (mlockall) keeps running."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from xenballoond.sim.stall import StallModel, locked_kb

LOCKER = ("import ctypes, sys, time\n"
          "ok = ctypes.CDLL(None, use_errno=True).mlockall(3) == 0\n"  # MCL_CURRENT|MCL_FUTURE
          "print('locked' if ok else 'refused', flush=True)\n"
          "time.sleep(60)\n")


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_state(pid: int, want: str) -> str:
    for _ in range(200):
        if state(pid) == want:
            break
        time.sleep(0.01)
    return state(pid)


def test_an_unlocked_daemon_stops_under_pressure_and_goes_on_after() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        model = StallModel()
        assert locked_kb(proc.pid) == 0
        model.step(proc.pid, under_pressure=True, dt_s=0.5)
        assert wait_state(proc.pid, "T") == "T"
        model.step(proc.pid, under_pressure=True, dt_s=0.5)
        model.step(proc.pid, under_pressure=False, dt_s=0.5)
        assert wait_state(proc.pid, "S") == "S"
        assert model.stalled_s == 1.0
    finally:
        proc.kill()
        proc.wait()


def test_a_locked_daemon_keeps_running() -> None:
    proc = subprocess.Popen([sys.executable, "-c", LOCKER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "locked":
            pytest.skip("mlockall refused here (RLIMIT_MEMLOCK for this user)")
        assert locked_kb(proc.pid) > 0
        model = StallModel()
        model.step(proc.pid, under_pressure=True, dt_s=0.5)
        assert wait_state(proc.pid, "S") == "S" and model.stalled_s == 0.0
    finally:
        proc.kill()
        proc.wait()


def test_a_gone_process_is_no_error() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    model = StallModel()
    model.step(proc.pid, under_pressure=True, dt_s=0.5)
    model.release()
    model.step(None, under_pressure=True, dt_s=0.5)
    assert locked_kb(proc.pid) == 0
