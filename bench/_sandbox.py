"""Helpers for the benchmarks: the sandboxed original, guest trees, tick
counting through the simulated xenstored, process inspection, strace parsing,
the work directory and the command line of a report."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.guestroot import make_guest  # noqa: E402

ORIGINAL = os.path.join(REPO, "tests", "original", "xenballoond")
ORIGINAL_CONF = os.path.join(REPO, "tests", "original", "xenballoon.conf")

# The path literals of the 2008 script that must point into the sandbox.  The
# /usr/bin/xenstore-* checks are left alone: Debian's real clients are there.
ORIGINAL_PATHS = ("/proc/meminfo", "/proc/vmstat", "/proc/uptime", "/proc/xen/balloon",
                  "/etc/sysconfig/xenballoon.conf")
# What the guest writes under memory/ (dom0 hands these keys over, see hand_over).
PUBLISHED = ("selftarget", "meminfo", "vmstat", "uptime")

MEMTOTAL_KB = 380000
COMMITTED_KB = 200000
DIRECTED_TARGET_KB = 300000
MAXMEM_KB = 786432


def sandboxed_original(dst_dir: str, root: str) -> str:
    """Copy the 2008 script with only its path literals pointed under ``root``
    and the trailing ``done &`` made ``done`` (the loop stays the process we
    started and reap, so its CPU and RSS are measurable).  Returns the copy."""
    with open(ORIGINAL, encoding="utf-8") as f:
        text = f.read()
    for literal in ORIGINAL_PATHS:
        text = text.replace(literal, os.path.join(root, literal.lstrip("/")))
    loop_end = "\ndone &\n"
    if text.count(loop_end) != 1 or text.split(loop_end, 1)[1].strip():
        raise RuntimeError(f"{ORIGINAL}: expected the script to end with 'done &'")
    text = text.replace(loop_end, "\ndone\n")
    path = os.path.join(dst_dir, "xenballoond")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def conf_text(*, self_mode: bool, maxmem_file: str, backend: str | None = None) -> str:
    """The original's own xenballoon.conf (intervals 1 s, send everything),
    with XENBALLOON_SELF and the maxmem file set."""
    with open(ORIGINAL_CONF, encoding="utf-8") as f:
        text = f.read()
    text = text.replace("XENBALLOON_SELF=false",
                        f"XENBALLOON_SELF={'true' if self_mode else 'false'}")
    text = text.replace("XENBALLOON_MAXMEMFILE=/var/run/xenballoon-maxmem",
                        f"XENBALLOON_MAXMEMFILE={maxmem_file}")
    if backend is not None:
        text += f"\nXENBALLOON_XENSTORE={backend}\n"
    return text


def make_tree(root: str, *, self_mode: bool, original: bool, backend: str | None) -> str:
    """A guest tree with the 2008 /proc/xen/balloon driver; returns its conf path.
    The original sources the conf, so its maxmem path is absolute in the
    sandbox; ours resolves the default /var/run path under --root."""
    maxmem = os.path.join(root, "var/run/xenballoon-maxmem") if original \
        else "/var/run/xenballoon-maxmem"
    make_guest(root, memtotal_kb=MEMTOTAL_KB, committed_kb=COMMITTED_KB, balloon="proc",
               conf=conf_text(self_mode=self_mode, maxmem_file=maxmem, backend=backend))
    return os.path.join(root, "etc/sysconfig/xenballoon.conf")


def remove_workdir(workdir: str, keep: bool = False) -> None:
    """A bench's work directory at its end: removed, or kept (--keep) and named."""
    if keep:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def command_line() -> str:
    """The first line of a report: how to run the bench again."""
    return f"command: python3 {shlex.join(sys.argv)}"


def hand_over(sim, domid: int) -> None:
    """dom0 gives the guest its memory/ output keys (xenstore-write + chmod), so
    that ours and the original (which only knows memory/) do the same work."""
    for key in PUBLISHED:
        path = f"/local/domain/{domid}/memory/{key}"
        sim.write(path, "0")
        sim.set_perms(path, [f"n{domid}"])


class TickCounter:
    """Counts ticks as writes of memory/uptime, the last output of a tick in
    both implementations; keeps each one's wall-clock time."""

    def __init__(self, sim, domid: int) -> None:
        self.times: list[float] = []
        self._cond = threading.Condition()
        self._sim = sim
        self._handle = sim.watch(f"/local/domain/{domid}/memory/uptime", self._on_write)

    def _on_write(self, path: str) -> None:
        with self._cond:
            self.times.append(time.time())
            self._cond.notify_all()

    def wait_for(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.times) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self._sim.unwatch(self._handle)


# --- processes ---------------------------------------------------------------

def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of a live process, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if rest.strip().endswith(" kB"):
                out[key] = int(rest.split()[0])
    return out


def wait_idle(pid: int, bash: bool, timeout_s: float = 5.0, settle_s: float = 0.05) -> None:
    """Until the daemon is between ticks: bash waiting on its `sleep`, ours
    with no child (its xenstore-write reaped), and then ``settle_s`` more for
    the rest of the tick (a tick takes milliseconds; the interval is 1 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = children(pid)
        if (bash and any(comm(k) == "sleep" for k in kids)) or (not bash and not kids):
            break
        time.sleep(0.01)
    time.sleep(settle_s)


# --- strace -f -ttt output ---------------------------------------------------

_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")


@dataclass
class Trace:
    execs: list[tuple[float, str]] = field(default_factory=list)  # (time, program)
    forks: list[float] = field(default_factory=list)


def parse_strace(text: str) -> Trace:
    """Successful execve()s and process-creating clone/fork/vfork calls
    (threads excluded) with their times, from ``strace -f -ttt`` output."""
    trace = Trace()
    pending: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        pid, ts, rest = m.group(1), float(m.group(2)), m.group(3)
        if rest.startswith(("+++", "---")):
            continue
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[:-len("<unfinished ...>")]
            continue
        r = _RESUMED.match(rest)
        if r:
            rest = pending.pop(pid, r.group(1) + "(") + r.group(2)
        call = rest.split("(", 1)[0]
        result = rest.rsplit(" = ", 1)[-1].split()[0] if " = " in rest else ""
        if call == "execve" and result == "0":
            prog = re.search(r'execve\("([^"]*)"', rest)
            trace.execs.append((ts, os.path.basename(prog.group(1)) if prog else "?"))
        elif call in ("clone", "clone3", "fork", "vfork") and result.isdigit() \
                and "CLONE_THREAD" not in rest:
            trace.forks.append(ts)
    return trace


# --- exact CPU of a process tree over a window: a cgroup v2 of its own --------

def cgroup2_base() -> str | None:
    """Our own cgroup directory in a writable cgroup v2 hierarchy, or None."""
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[2:3] == ["cgroup2"]]
        with open("/proc/self/cgroup") as f:
            own = next((line.strip()[3:] for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    if not mounts or own is None:
        return None
    base = os.path.normpath(os.path.join(mounts[0], own.lstrip("/")))
    probe = os.path.join(base, f"xbbench-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        ok = os.path.exists(os.path.join(probe, "cpu.stat"))
        os.rmdir(probe)
    except OSError:
        return None
    return base if ok else None


class Cgroup:
    """A leaf cgroup for one daemon and everything it starts; cpu.stat's
    usage_usec is their exact CPU time (user + sys), readable at any moment."""

    def __init__(self, base: str, name: str) -> None:
        self.path = os.path.join(base, name)
        os.mkdir(self.path)

    def add(self, pid: int) -> None:
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def usage_us(self) -> int:
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                key, value = line.split()
                if key == "usage_usec":
                    return int(value)
        raise RuntimeError(f"{self.path}/cpu.stat: no usage_usec")

    def remove(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                os.rmdir(self.path)
                return
            except OSError:  # EBUSY until the last process (an orphaned sleep) exits
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
