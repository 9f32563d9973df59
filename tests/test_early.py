"""tests/e2e/early.py: the real-Xen run begun beside the unit tests, which run after it in
priority and before it in order (tests/conftest.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

from tests.e2e import early

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nice_of(tid: int, pid: int | str = "self") -> int:
    """A thread's nice value, from /proc/PID/task/TID/stat (the 19th field)."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        after_name = f.read().rsplit(")", 1)[1].split()
    return int(after_name[16])


PREMISE = r'''
import os, subprocess, threading
def nice_of(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])
go, seen = threading.Event(), {}
def other():  # started before os.nice(): the run's thread
    go.wait(30)
    child = subprocess.Popen(["sleep", "30"])
    seen["other"] = nice_of(os.getpid(), threading.get_native_id())
    seen["other's child"] = nice_of(child.pid, child.pid)
    child.kill()
t = threading.Thread(target=other)
t.start()
os.nice(7)
go.set()
t.join()
child = subprocess.Popen(["sleep", "30"])
print(nice_of(os.getpid(), threading.get_native_id()), seen["other"],
      nice_of(child.pid, child.pid), seen["other's child"])
child.kill()
'''


def test_a_nice_value_is_a_threads_and_its_childrens_on_linux():
    """What early.start() relies on: os.nice() in pytest's main thread, after the run's thread
    started, lowers that thread and the processes it starts, not the other thread's."""
    out = subprocess.run([sys.executable, "-c", PREMISE], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    base = os.nice(0)
    want = [min(base + 7, 19), base, min(base + 7, 19), base]  # main, other, their children
    assert [int(v) for v in out] == want, out


def test_the_real_xen_tests_are_collected_last_whatever_the_seed():
    for seed in (1, 2, 3):
        r = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", f"--randomly-seed={seed}",
                            "tests/e2e", "tests/test_early.py", "tests/test_fifo.py"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        ids = [line for line in r.stdout.splitlines() if "::" in line]
        real_xen = [i.startswith("tests/e2e/") for i in ids]
        assert any(real_xen) and not all(real_xen), ids
        first = real_xen.index(True)
        assert all(real_xen[first:]), ids


def test_when_the_run_began_beside_this_session_it_keeps_its_priority():
    """In a session that collected the real-Xen tests on a host that can play them: this thread
    (the unit tests) runs UNIT_NICE below the run's thread."""
    if not early.started():
        assert threading.current_thread() is threading.main_thread()
        return  # the run is not in this session: the premise above is what can be checked
    run_tid = early._thread.native_id  # type: ignore[union-attr]
    assert nice_of(threading.get_native_id()) == min(nice_of(run_tid) + early.UNIT_NICE, 19)
