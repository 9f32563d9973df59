"""What a test that ran past its time limit was waiting for, in the failure itself.

pytest.ini gives every test a limit (pytest-timeout, signal method).  When it trips, the
failure says where the test stood, e.g. ``waiting at tests/fifo.py:29 in _read: with
open(self.path) as f:  # blocks until a writer opens the FIFO``: the innermost line of this
repository's code, and the library call below it, if any, that was blocking.
"""
from __future__ import annotations

import linecache
import os
import signal
import sys
import threading
import traceback
from types import FrameType

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _line(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    name = path[len(REPO):] if path.startswith(REPO) else os.path.basename(path)
    text = linecache.getline(path, frame.f_lineno).strip()
    return f"{name}:{frame.f_lineno} in {frame.f_code.co_name}: {text}"


def waiting_at(frame: FrameType | None) -> str:
    """The innermost frame of our own code, and the innermost one of all where it differs."""
    inner, ours = frame, None
    while frame is not None:
        if ours is None and frame.f_code.co_filename.startswith(REPO):
            ours = frame
        frame = frame.f_back
    if inner is None:
        return "an unknown place"
    if ours is None or ours is inner:
        return _line(inner)
    return f"{_line(ours)} (blocked in {_line(inner)})"


def other_threads() -> str:
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        name = next((t.name for t in threading.enumerate() if t.ident == ident), "?")
        out.append(f"--- thread {name}, waiting at {waiting_at(frame)}\n"
                   + "".join(traceback.format_stack(frame)))
    return "\n".join(out)


def set_timer(item, settings) -> bool | None:  # type: ignore[no-untyped-def]
    """pytest-timeout's signal method with our message; None leaves other methods to it."""
    import pytest
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        threads = other_threads()
        if threads:
            sys.stderr.write(f"\n{item.nodeid}: the other threads at the time limit:\n{threads}\n")
        pytest.fail(f"Timeout: still running after {settings.timeout:g} s, the test's limit "
                    f"(pytest.ini, or its timeout mark), waiting at {waiting_at(frame)}")

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True
