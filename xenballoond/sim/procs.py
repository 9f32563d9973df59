"""Long-running children of the simulator (one xenballoond per guest).

``proc.run`` waits for its command; a daemon needs starting, watching and
stopping instead.  The same hygiene applies: an argument list, never a shell,
LC_ALL=C, close_fds.  Each child leads its own process group, so stopping it
also stops the ``xenstore-*`` clients it may have running at that moment, and a
Ctrl-C in the terminal reaches only the simulator, which then stops them in order
(a new session: Python 3.9 has no ``process_group=``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Mapping, Sequence

STOP_GRACE_S = 5.0


class Child:
    """One supervised process; restarted by the caller if it dies."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: str) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.env["LC_ALL"] = "C"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[int] = []  # exit statuses of unexpected ends

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                close_fds=True, start_new_session=True)
        self.starts += 1

    def exited(self) -> int | None:
        """The exit status if the process has ended (it is then reaped)."""
        if self.proc is None:
            return None
        return self.proc.poll()

    def signal_group(self, signum: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def await_logged(children: Sequence[Child], marker: bytes, timeout_s: float,
                 poll_s: float = 0.05) -> list[Child]:
    """Wait until each child's log holds ``marker`` (its "started:" line) or the
    child has ended.  Returns those that did neither within ``timeout_s``."""
    waiting = list(children)
    deadline = time.monotonic() + timeout_s
    while waiting:
        still = []
        for c in waiting:
            try:
                with open(c.log_path, "rb") as f:
                    logged = marker in f.read()
            except OSError:
                logged = False
            if not logged and c.exited() is None:
                still.append(c)
        waiting = still
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    return waiting


def stop_all(children: Sequence[Child], grace_s: float = STOP_GRACE_S) -> list[Child]:
    """SIGTERM every child's process group, wait up to ``grace_s`` for all of
    them, then SIGKILL the groups of those still there.  Returns the children
    that needed SIGKILL."""
    live = [(c, c.proc) for c in children if c.proc is not None]
    for c, p in live:
        if p.poll() is None:
            c.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    killed: list[tuple[Child, subprocess.Popen[bytes]]] = []
    for c, p in live:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            killed.append((c, p))
    for c, p in killed:
        # the leader is still there, so the group id is still its own
        c.signal_group(signal.SIGKILL)
        p.wait()
    return [c for c, _ in killed]
