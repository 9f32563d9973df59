"""Run the real xenballoond as a process, for tests."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, Mapping

from tests.repo import python_env


def env(extra: Mapping[str, str] | None = None, xenstore: bool = False) -> dict[str, str]:
    e = python_env()
    if not xenstore:
        # no xenstore-* tools: directed ballooning and publishing are off
        e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + "/nonexistent"
    e.update(extra or {})
    return e


def argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "xenballoond.guest", *args]


def run(*args: str, extra_env: Mapping[str, str] | None = None, xenstore: bool = False,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(*args), env=env(extra_env, xenstore), capture_output=True,
                          text=True, timeout=timeout)


def start(*args: str, extra_env: Mapping[str, str] | None = None,
          xenstore: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(argv(*args), env=env(extra_env, xenstore), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_until(cond: Callable[[], object], timeout: float = 30, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes() -> list[tuple[int, int, list[str]]]:
    """(pid, ppid, argv) of every live process."""
    table = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if alive(int(name)):
            table.append((int(name), ppid, args))
    return table


def pids_with_cmdline(*parts: str) -> list[int]:
    """Live processes whose argv contains every one of ``parts``."""
    return [pid for pid, _, args in processes() if all(p in args for p in parts)]


def wait_for_output(proc: "subprocess.Popen[str]", text: str, timeout: float = 30) -> str:
    """Read the process's stderr up to the end of the first line containing
    ``text``; return what was read.  What came after it is kept for the next
    call (raw reads: a buffered readline could hold lines select never sees)."""
    import select
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen: str = getattr(proc, "_pending_stderr", "")
    deadline = time.monotonic() + timeout
    while text not in seen or "\n" not in seen[seen.index(text):]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {text!r}; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                if text in seen:
                    break
                raise AssertionError(f"process ended before {text!r}; got {seen!r}")
            seen += chunk.decode(errors="replace")
    end = seen.find("\n", seen.index(text)) + 1 or len(seen)
    proc._pending_stderr = seen[end:]  # type: ignore[attr-defined]
    return seen[:end]


def rest_of_stderr(proc: "subprocess.Popen[str]") -> str:
    """What is left on stderr after wait_for_output, once the process has ended."""
    assert proc.stderr is not None
    return getattr(proc, "_pending_stderr", "") + proc.stderr.read()
