"""The real-Xen run, begun as soon as pytest has collected its tests, beside the unit tests.

Played after the unit tests, the run made `.ci/run` take 26.5 minutes on a slow day, over CI's
25.  QEMU's TCG used about 1.3 of this machine's 2 cores through the run (the first run of the
session on 13ff318: 38 s of CPU in 30 s), so the unit tests fit in what it leaves.  They run at
a lower CPU priority (UNIT_NICE) than QEMU: the emulated host's scenarios have budgets counted
in its own seconds (a ramp, a settle, the follower's passes), the unit tests none that a slower
machine breaks (no test asserts a time; their waits are 10 s or more).

On Linux the nice value belongs to a thread: os.nice() in pytest's main thread, after the
run's thread has started, lowers the unit tests and every process they start, not the run's
builds or QEMU.  The tests/e2e items run last (tests/conftest.py), so that the unit tests do
not wait for the run to end first.
"""
from __future__ import annotations

import os
import threading

from . import harness

UNIT_NICE = 10  # CFS weights 1024 : 110, so QEMU keeps about nine tenths of a contended core
STOP_WAIT_S = 30  # at the session's end: how long the thread has to stop QEMU and exit

_thread: threading.Thread | None = None
_stop = threading.Event()
_outcome: dict[str, object] = {}


def _play() -> None:
    try:
        _outcome["run"] = harness.run_suite(stop=_stop)
    except BaseException as exc:  # handed to the test that waits for the run
        _outcome["error"] = exc


def start(nice: int = UNIT_NICE) -> None:
    """Begin the run in a thread of its own, then lower this thread's priority."""
    global _thread
    if _thread is not None:
        return
    harness.log("the real-Xen run begins now, beside the unit tests (tests/e2e/early.py); "
                f"they run at nice {nice}")
    _thread = threading.Thread(target=_play, name="real-xen-run", daemon=True)
    _thread.start()
    if nice:
        os.nice(nice)


def started() -> bool:
    return _thread is not None


def result() -> harness.Run:
    """The run's outcome once it has ended (the test calling this carries the suite's limit)."""
    assert _thread is not None, "early.start() was not called"
    _thread.join()
    if "error" in _outcome:
        raise _outcome["error"]  # type: ignore[misc]
    return _outcome["run"]  # type: ignore[return-value]


def stop() -> None:
    """The session is ending: end QEMU if it still runs (pytest -x, Ctrl-C, a deselection)."""
    if _thread is not None and _thread.is_alive():
        _stop.set()
        _thread.join(STOP_WAIT_S)
