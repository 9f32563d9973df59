#!/usr/bin/env python3
"""Issues 2 and 12: per-tick cost of xenballoond next to the original 2008 bash script.

Both run on this machine in the same run, as real processes, against the
simulated xenstored through Debian's real xenstore-* clients (XENSTORED_PATH),
on guest trees with the 2008 /proc/xen/balloon driver, with intervals of 1 s
(the fastest the original allows), in self mode and in directed mode, on an
idle guest (its /proc files do not change) and a busy one (every 0.5 s
Committed_AS swings by 90 MB and pgpgin grows by 50 MB).  Ours with the cli and
the native backend, and, unless --no-before, the same for the code before
(`git archive main`, or --before DIR).

A window of N seconds (--ticks N; one tick a second) starts 1.5 s after the
daemon's first publication; every figure is over that window, divided by N:

  processes/tick  successful execve()s, from `strace -f` (all cases at once)
  forks/tick      process-creating clone/fork/vfork, same run
  CPU ms/tick     user+sys of the daemon and every process it starts, without
                  strace, one case at a time: exactly, from cpu.stat of a cgroup v2
                  made for the run; or, with no writable cgroup v2 (--cpu wait4),
                  from wait4(): (run through the window - median of 3 runs
                  stopped at its start) / N
  xs req/tick     requests the simulated xenstored served the guest, and the
  xs KB/tick      bytes of them and of the replies and watch events it sent back
  RSS / HWM       VmRSS / VmHWM of the long-running process at the window's end

Usage: python3 bench/bench_daemon.py [--ticks N] [--cpu auto|cgroup|wait4]
                                     [--no-venv] [--no-imports] [--no-before] [--keep]
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _sandbox as sb  # noqa: E402

from tests.guestroot import set_meminfo, vmstat_text  # noqa: E402
from tests.guestroot import write as guest_write  # noqa: E402
from xenballoond.sim.xenstored import SimXenstored  # noqa: E402

BASH = shutil.which("bash") or "/bin/bash"
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STRACE_EVENTS = "trace=execve,clone,clone3,fork,vfork"
ISSUE = ("issue 2's figures for the original: 25 / 22 processes, 36.5 / 26.5 ms CPU per tick "
         "(self / directed), RSS 2.1 MB")
AIM = ("aim for ours (issue 12): native >= 30x less CPU/tick than the original in both modes, "
       "<= 1 xenstore request/s for an idle guest; RSS <= 12 MiB")
SETTLE_S = 1.5
BUSY_STEP_S = 0.5
BUSY_COMMITTED_KB = (sb.COMMITTED_KB, sb.COMMITTED_KB + 90 * 1024)
BUSY_PGPGIN_STEP_KB = 50 * 1024
BEFORE_CODE = ""  # set by main(): the tree of the code before


@dataclass(frozen=True)
class Case:
    impl: str  # "original", "cli", "native", "cli-before" or "native-before"
    mode: str  # "self" or "directed"
    load: str = "idle"  # or "busy"

    @property
    def label(self) -> str:
        who = "original (bash)" if self.impl == "original" else f"ours {self.impl}"
        return f"{who} {self.mode} {self.load}"

    @property
    def bash(self) -> bool:
        return self.impl == "original"

    @property
    def backend(self) -> str:
        return self.impl.split("-")[0]

    @property
    def code(self) -> str:
        return BEFORE_CODE if self.impl.endswith("-before") else sb.REPO


class Busy(threading.Thread):
    """A busy guest: Committed_AS swings and the paging counters grow."""

    def __init__(self, root: str) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.wait(BUSY_STEP_S):
            n += 1
            set_meminfo(self.root, memtotal_kb=sb.MEMTOTAL_KB,
                        committed_kb=BUSY_COMMITTED_KB[n % 2])
            guest_write(os.path.join(self.root, "proc/vmstat"),
                        vmstat_text(pgpgin=123456 + n * BUSY_PGPGIN_STEP_KB))


class Bench:
    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.sim = SimXenstored(os.path.join(workdir, "xs"))
        self.sim.start()
        self._domid = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.sim.stop()

    def _new_domain(self, case: Case) -> int:
        with self._lock:
            self._domid += 1
            domid = self._domid
        target_kb = sb.DIRECTED_TARGET_KB if case.mode == "directed" else sb.MEMTOTAL_KB
        self.sim.add_domain(domid, f"guest{domid}", memory_kb=target_kb, maxmem_kb=sb.MAXMEM_KB)
        sb.hand_over(self.sim, domid)
        return domid

    def start(self, case: Case, tag: str, python: str = sys.executable,
              strace_out: str | None = None) -> "Run":
        domid = self._new_domain(case)
        d = os.path.join(self.workdir, f"{tag}-{case.impl}-{case.mode}-{domid}")
        root = os.path.join(d, "root")
        os.makedirs(root)
        conf = sb.make_tree(root, self_mode=case.mode == "self", original=case.bash,
                            backend=None if case.bash else case.backend)
        if case.bash:
            argv = [BASH, sb.sandboxed_original(d, root)]
        else:
            argv = [python, "-m", "xenballoond.guest", "-f", "--root", root, "-c", conf]
        if strace_out:
            argv = ["strace", "-f", "-qq", "-ttt", "-s", "48", "-e", STRACE_EVENTS,
                    "-o", strace_out, "--", *argv]
        env = {"PATH": SYS_PATH, "LC_ALL": "C", "XENSTORED_PATH": self.sim.socket_path(domid),
               "PYTHONPATH": case.code}
        counter = sb.TickCounter(self.sim, domid)
        log_path = os.path.join(d, "log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        busy = Busy(root) if case.load == "busy" else None
        if busy is not None:
            busy.start()
        return Run(case, proc, counter, log_path, domid, busy, self.sim)


class RunFailed(Exception):
    pass


class Run:
    def __init__(self, case: Case, proc: subprocess.Popen, counter: sb.TickCounter,
                 log_path: str, domid: int, busy: Busy | None, sim: SimXenstored) -> None:
        self.case, self.proc, self.counter, self.log_path = case, proc, counter, log_path
        self.domid, self.busy, self.sim = domid, busy, sim

    def traffic(self) -> tuple[int, int]:
        """(requests, bytes in and out) the simulated xenstored has served this guest."""
        with self.sim._lock:
            req, rx, tx = self.sim.traffic.get(self.domid, [0, 0, 0])
        return req, rx + tx

    def window(self, seconds: float, at_start=None) -> tuple[float, float, object, object]:
        """Wait for the first publication and SETTLE_S; then ``seconds``.
        (wall time at start, at end, at_start() at start and at end)."""
        self.wait_ticks(1)
        time.sleep(SETTLE_S)
        t0, a0 = time.time(), at_start() if at_start else None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._exited():
                raise RunFailed(f"{self.case.label}: exited; log:\n{self._log_tail()}")
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
        return t0, time.time(), a0, at_start() if at_start else None

    def _stop_busy(self) -> None:
        if self.busy is not None:
            self.busy.stop.set()

    def _exited(self) -> bool:
        return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def _log_tail(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-8:])

    def wait_ticks(self, n: int) -> None:
        deadline = time.monotonic() + 15 + 3 * n
        while not self.counter.wait_for(n, 0.2):
            if self._exited() or time.monotonic() > deadline:
                self.kill()
                raise RunFailed(f"{self.case.label}: {len(self.counter.times)} of {n} ticks; "
                                f"log:\n{self._log_tail()}")

    def kill(self) -> None:
        self._stop_busy()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.counter.close()

    def stop_and_reap(self) -> float:
        """SIGTERM to the process group; the CPU ms of the daemon and its reaped children."""
        self._stop_busy()
        os.killpg(self.proc.pid, signal.SIGTERM)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.counter.close()
        return (usage.ru_utime + usage.ru_stime) * 1000.0


# --- measurements --------------------------------------------------------------

@dataclass
class Counts:
    execs: float
    forks: float
    programs: dict[str, float]


def count_processes(bench: Bench, case: Case, seconds: int) -> Counts:
    """Run under strace; count what starts in the window."""
    out = os.path.join(bench.workdir, f"strace-{case.impl}-{case.mode}-{case.load}.txt")
    run = bench.start(case, "strace", strace_out=out)
    try:
        lo, hi, _, _ = run.window(seconds)
        daemon = _traced_child(run.proc.pid)
        for pid in [daemon, *sb.children(daemon)]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        run._stop_busy()
        try:
            run.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            run.kill()
    finally:
        if run.proc.returncode is None:
            run.kill()
        run.counter.close()
    with open(out, errors="replace") as f:
        trace = sb.parse_strace(f.read())
    progs = [p for t, p in trace.execs if lo < t <= hi]
    forks = [t for t in trace.forks if lo < t <= hi]
    by_prog = {p: n / seconds for p, n in collections.Counter(progs).most_common()}
    return Counts(len(progs) / seconds, len(forks) / seconds, by_prog)


def _traced_child(strace_pid: int) -> int:
    for _ in range(500):
        kids = sb.children(strace_pid)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise RunFailed("strace started no child")


@dataclass
class Cost:
    cpu_ms_per_tick: float
    xs_requests: float  # per tick
    xs_kb: float  # per tick, in and out
    rss_kb: int
    hwm_kb: int


def measure_cost(bench: Bench, case: Case, seconds: int, cgroup_base: str | None) -> Cost:
    """With a cgroup v2: one run, the CPU of the daemon's process tree in the
    window.  Else wait4(): (run through the window - median of three runs
    stopped at its start) / N."""
    if cgroup_base is None:
        start = sorted(_wait4_run(bench, case, 0)[0] for _ in range(3))[1]
        full, status, xs_req, xs_bytes = _wait4_run(bench, case, seconds)
        return Cost((full - start) / seconds, xs_req / seconds, xs_bytes / 1024 / seconds,
                    status["VmRSS"], status["VmHWM"])
    cg = sb.Cgroup(cgroup_base, f"xbbench-{os.getpid()}-{case.impl}-{case.mode}-{case.load}")
    try:
        run = bench.start(case, "cpu")
        try:
            cg.add(run.proc.pid)
            _, _, a, b = run.window(seconds, lambda: (cg.usage_us(), *run.traffic()))
            status = sb.status_kb(run.proc.pid)
            run.stop_and_reap()
        finally:
            if run.proc.returncode is None:
                run.kill()
    finally:
        cg.remove()
    (u0, r0, b0), (u1, r1, b1) = a, b  # type: ignore[misc]
    return Cost((u1 - u0) / 1000.0 / seconds, (r1 - r0) / seconds, (b1 - b0) / 1024 / seconds,
                status["VmRSS"], status["VmHWM"])


def _wait4_run(bench: Bench, case: Case, seconds: int
               ) -> tuple[float, dict[str, int], int, int]:
    run = bench.start(case, f"cpu{seconds}")
    try:
        _, _, a, b = run.window(seconds, run.traffic)
        status = sb.status_kb(run.proc.pid)
        return run.stop_and_reap(), status, b[0] - a[0], b[1] - a[1]  # type: ignore[index]
    finally:
        if run.proc.returncode is None:
            run.kill()


def rss_only(bench: Bench, case: Case, python: str, seconds: int = 2) -> tuple[int, int]:
    run = bench.start(case, "rss", python=python)
    try:
        run.window(seconds)
        status = sb.status_kb(run.proc.pid)
        run.stop_and_reap()
    finally:
        if run.proc.returncode is None:
            run.kill()
    return status["VmRSS"], status["VmHWM"]


def make_venv(path: str) -> str:
    """python3 -m venv with only python-daemon and lockfile (ours via PYTHONPATH)."""
    py = os.path.join(path, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", path], check=True, capture_output=True,
                       timeout=120)
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "python-daemon", "lockfile"], check=True, capture_output=True, timeout=300)
    return py


def bare_rss_kb(python: str) -> tuple[int, int]:
    """VmRSS, VmHWM of an interpreter that does nothing but read them.  (Not
    wait4's ru_maxrss: that includes the forking parent's pages before exec.)"""
    out = subprocess.run([python, "-c", "print(open('/proc/self/status').read())"],
                         env={"PATH": SYS_PATH, "LC_ALL": "C"}, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    kb = {k: int(v.split()[0]) for k, _, v in (l.partition(":") for l in out.splitlines())
          if k in ("VmRSS", "VmHWM")}
    return kb["VmRSS"], kb["VmHWM"]


# --- imports -------------------------------------------------------------------

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


TOP_MODULES = ("xenballoond.guest.cli", "xenballoond.xenstore.cli", "xenballoond.xenstore.native")


def import_costs(python: str, top: int = 10) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """-X importtime of the CLI and both backends: each one's cumulative us, and
    the heaviest modules that our modules import directly (parent, module, us)."""
    env = {"PATH": SYS_PATH, "PYTHONPATH": sb.REPO, "LC_ALL": "C"}
    out = subprocess.run([python, "-X", "importtime", "-c", "import " + ", ".join(TOP_MODULES)],
                         env=env,
                         capture_output=True, text=True, timeout=60).stderr
    stack: list[tuple[int, str, int]] = []
    edges: list[tuple[str, str, int]] = []
    total: dict[str, int] = {}
    for line in out.splitlines():
        m = _IMPORTTIME.match(line)
        if not m:
            continue
        cum, depth, name = int(m.group(2)), len(m.group(3)), m.group(4)
        kids = []
        while stack and stack[-1][0] > depth:
            kids.append(stack.pop())
        if name.startswith("xenballoond"):
            edges += [(name, k[1], k[2]) for k in kids
                      if k[0] == depth + 2 and not k[1].startswith("xenballoond")]
        if name in TOP_MODULES:
            total[name] = cum
        stack.append((depth, name, cum))
    edges = [e for e in edges if e[2] >= 300]
    edges.sort(key=lambda e: -e[2])
    return total, edges[:top]


RSS_PROBE = ("import sys\n"
             "def rss():\n"
             "    for l in open('/proc/self/status'):\n"
             "        if l.startswith('VmRSS:'): return int(l.split()[1])\n"
             "a = rss()\n"
             "import importlib; importlib.import_module(sys.argv[1])\n"
             "print(rss() - a, len(sys.modules))\n")


def import_rss_kb(python: str, module: str) -> int:
    env = {"PATH": SYS_PATH, "PYTHONPATH": sb.REPO, "LC_ALL": "C"}
    out = subprocess.run([python, "-c", RSS_PROBE, module], env=env, capture_output=True,
                         text=True, timeout=60)
    return int(out.stdout.split()[0]) if out.returncode == 0 else -1


# What the daemon avoids importing, and what it would cost over what it loads anyway
# (the figures written beside record.frozen and the TYPE_CHECKING = False lines).
AVOIDED = ("typing", "dataclasses", "logging.handlers", "shutil",
           # issue 12: loaded only when needed, or their C part used directly
           "argparse", "ctypes", "socket", "struct", "traceback",
           # detached only (python-daemon), not in this foreground run
           "daemon")
MARGINAL_PROBE = ("import sys\n"
                  "def rss():\n"
                  "    for l in open('/proc/self/status'):\n"
                  "        if l.startswith('VmRSS:'): return int(l.split()[1])\n"
                  "import importlib\n"
                  "for m in sys.argv[2:]: importlib.import_module(m)\n"
                  "a = rss()\n"
                  "importlib.import_module(sys.argv[1])\n"
                  "print(rss() - a)\n")
DAEMON_MODULES = ("xenballoond.guest.cli", "xenballoond.guest.runloop",
                  "xenballoond.xenstore.native")


# The daemon's imports, in the order it makes them (guest/cli.py first imports
# the guest package, which sets the stand-in traceback, then logging, ...).
STEP_MODULES = ("xenballoond.guest", "re", "logging", "select", "signal", "fcntl",
                "xenballoond.record", "xenballoond.paths", "xenballoond.shellconf",
                "xenballoond.service", "xenballoond.service.logsetup",
                "xenballoond.service.pidlock", "xenballoond.service.runner",
                "xenballoond.xenstore", "xenballoond.xenstore.wire", "xenballoond.guest.meminfo",
                "xenballoond.guest.policy", "xenballoond.contract.overrides",
                "xenballoond.guest.publish", "xenballoond.guest.balloon",
                "xenballoond.guest.maxmem", "xenballoond.guest.once", "xenballoond.guest.sensor",
                "xenballoond.guest.effective", "xenballoond.guest.link",
                "xenballoond.guest.outbox", "xenballoond.guest.policyline",
                "xenballoond.guest.publisher",
                "xenballoond.guest.tick", "xenballoond.guest.pressure",
                "xenballoond.guest.resident", "xenballoond.guest.runloop",
                "xenballoond.guest.domain", "xenballoond.guest.cli", "xenballoond.xenstore.native",
                "_socket", "_ctypes")
STEP_PROBE = ("import sys, importlib\n"
              "def rss():\n"
              "    for l in open('/proc/self/status'):\n"
              "        if l.startswith('VmRSS:'): return int(l.split()[1])\n"
              "print('start', rss(), len(sys.modules))\n"
              "for m in sys.argv[1:]:\n"
              "    a, n = rss(), len(sys.modules)\n"
              "    importlib.import_module(m)\n"
              "    print(m, rss() - a, len(sys.modules) - n)\n")


def import_steps(python: str) -> list[tuple[str, int, int]]:
    """(module, kB of RSS its import added, modules it loaded) in the daemon's order."""
    env = {"PATH": SYS_PATH, "PYTHONPATH": sb.REPO, "LC_ALL": "C"}
    out = subprocess.run([python, "-c", STEP_PROBE, *STEP_MODULES], env=env,
                         capture_output=True, text=True, timeout=60).stdout
    return [(m, int(kb), int(n)) for m, kb, n in (line.split() for line in out.splitlines())]


def marginal_rss_kb(python: str, module: str) -> int:
    """RSS that importing ``module`` adds to a process that has the daemon's modules."""
    env = {"PATH": SYS_PATH, "PYTHONPATH": sb.REPO, "LC_ALL": "C"}
    out = subprocess.run([python, "-c", MARGINAL_PROBE, module, *DAEMON_MODULES], env=env,
                         capture_output=True, text=True, timeout=60)
    return int(out.stdout.split()[0]) if out.returncode == 0 else -1


# --- output --------------------------------------------------------------------

def mib(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ticks", type=int, default=20,
                   help="seconds (ticks of 1 s) measured per run (default 20)")
    p.add_argument("--no-before", action="store_true",
                   help="leave out the code before (git archive --before-rev)")
    p.add_argument("--before", metavar="DIR", help="the tree of the code before")
    p.add_argument("--before-rev", default="main", help="else git archive of this (main)")
    p.add_argument("--no-venv", action="store_true",
                   help="skip the RSS run in a clean venv (needs PyPI)")
    p.add_argument("--no-imports", action="store_true", help="skip the import-cost section")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--cpu", choices=("auto", "cgroup", "wait4"), default="auto",
                   help="CPU method: a cgroup v2 per run (exact window; auto uses it if "
                        "writable) or wait4() differences of runs")
    args = p.parse_args(argv)
    if args.ticks < 1:
        p.error("--ticks must be >= 1")
    if shutil.which("strace") is None:
        print("bench_daemon: strace not found (apt-get install strace)", file=sys.stderr)
        return 2
    for tool in ("xenstore-ls", "xenstore-write", "xenstore-exists", "xenstore-read"):
        if not os.path.exists(f"/usr/bin/{tool}"):
            print(f"bench_daemon: /usr/bin/{tool} missing (apt-get install xenstore-utils)",
                  file=sys.stderr)
            return 2
    impls = ["original", "cli", "native"] + ([] if args.no_before else ["cli-before",
                                                                         "native-before"])
    cases = [Case(i, m, load) for m in ("self", "directed") for load in ("idle", "busy")
             for i in impls]

    cgroup_base = sb.cgroup2_base() if args.cpu != "wait4" else None
    if args.cpu == "cgroup" and cgroup_base is None:
        print("bench_daemon: no writable cgroup v2 hierarchy (try --cpu wait4)", file=sys.stderr)
        return 2

    started = time.monotonic()
    # guest trees on tmpfs, as /proc and /sys are in memory (a disk file system makes
    # every O_TRUNC write of the balloon file cost journalling, ours and the original's)
    workdir = tempfile.mkdtemp(prefix="xbb", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    global BEFORE_CODE
    if not args.no_before:
        from bench_xenstored_load import export_rev
        BEFORE_CODE = args.before or export_rev(args.before_rev, os.path.join(workdir, "before"))
    bench = Bench(workdir)
    try:
        # 1. process counts under strace: all cases at once (counts don't depend
        #    on load), the clean venv built and measured alongside.
        counts: dict[Case, Counts] = {}
        venv: dict[str, object] = {}

        errors: list[str] = []

        def count(case: Case) -> None:
            try:
                counts[case] = count_processes(bench, case, args.ticks)
            except Exception as exc:  # reported below, after every case has run
                errors.append(f"{case.label}: {type(exc).__name__}: {exc}")

        def venv_job() -> None:
            try:
                py = make_venv(os.path.join(workdir, "venv"))
                venv["python"] = py
                venv["rss"] = rss_only(bench, Case("native", "self"), py)
            except (subprocess.SubprocessError, OSError, RunFailed) as exc:
                venv["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

        jobs = [threading.Thread(target=count, args=(c,)) for c in cases]
        if not args.no_venv:
            jobs.append(threading.Thread(target=venv_job))
        for j in jobs:
            j.start()
        for j in jobs:
            j.join()
        if errors:
            print("bench_daemon: strace runs failed:\n" + "\n".join(errors), file=sys.stderr)
            return 1

        # 2. CPU and RSS without strace, one case at a time.
        load_before = os.getloadavg()[0]
        costs = {c: measure_cost(bench, c, args.ticks, cgroup_base) for c in cases}
        load = (load_before, os.getloadavg()[0])

        bare = bare_rss_kb(sys.executable)
        bare_venv = bare_rss_kb(str(venv["python"])) if "python" in venv else (0, 0)
        imports = None
        if not args.no_imports:
            py = str(venv.get("python", sys.executable))
            total_us, heavy = import_costs(py)
            mods = list(TOP_MODULES) + list(dict.fromkeys(m for _, m, _ in heavy))
            import_steps(py)  # once to compile the .pyc files: the compiler's memory is not ours
            imports = (py, total_us, heavy, {m: import_rss_kb(py, m) for m in mods},
                       {m: marginal_rss_kb(py, m) for m in AVOIDED}, import_steps(py))
    finally:
        bench.close()
        sb.remove_workdir(workdir, args.keep)

    # --- report -----------------------------------------------------------------
    print(sb.command_line())
    print(f"{args.ticks} s (ticks) measured per run; XENBALLOON_SELF_INTERVAL=1, "
          f"XENBALLOON_INTERVAL=1; python {sys.executable} ({sys.version.split()[0]}), {BASH}")
    if BEFORE_CODE:
        print(f"'-before': the code of {args.before or 'git archive ' + args.before_rev} "
              f"({BEFORE_CODE}), same guests, same run")
    print()
    head = (f"{'':34}{'processes':>10}{'forks':>7}{'CPU ms':>8}{'CPU vs':>11}"
            f"{'xs req':>8}{'xs KB':>8}{'RSS MiB':>9}{'HWM MiB':>9}")
    print(head)
    print(f"{'(per tick)':34}{'':>10}{'':>7}{'':>8}{'original':>11}")
    for c in cases:
        orig = costs[Case("original", c.mode, c.load)].cpu_ms_per_tick
        ours = costs[c].cpu_ms_per_tick
        ratio = "" if c.bash else (f"{orig / ours:.0f}x less" if ours > 0 else "n/a")
        print(f"{c.label:34}{counts[c].execs:>10.1f}{counts[c].forks:>7.1f}{ours:>8.2f}"
              f"{ratio:>11}{costs[c].xs_requests:>8.2f}{costs[c].xs_kb:>8.2f}"
              f"{mib(costs[c].rss_kb):>9}{mib(costs[c].hwm_kb):>9}")
    print()
    print(ISSUE)
    print(AIM)
    print()
    print("RSS context:")
    print(f"  {'bare interpreter (python3 -c <read status>), this python':58} "
          f"VmRSS {mib(bare[0]):>5} MiB, VmHWM {mib(bare[1]):>5} MiB "
          "(its site-packages .pth files run at every start)")
    if "rss" in venv:
        rss, hwm = venv["rss"]  # type: ignore[misc]
        print(f"  {'bare interpreter, clean venv':58} "
              f"VmRSS {mib(bare_venv[0]):>5} MiB, VmHWM {mib(bare_venv[1]):>5} MiB")
        print(f"  {'xenballoond native self, clean venv (after 2 ticks)':58} "
              f"VmRSS {mib(rss):>5} MiB, VmHWM {mib(hwm):>5} MiB")
        print("  (venv: python3 -m venv + pip install python-daemon lockfile; "
              "our package from this tree on PYTHONPATH)")
    elif "error" in venv:
        print(f"  clean venv skipped: {venv['error']}")
    if imports:
        py, total_us, heavy, rss_by, avoided, steps = imports
        print()
        print(f"imports ({py} -X importtime; RSS of each imported alone in a fresh interpreter):")
        for mod, us in total_us.items():
            print(f"  import {mod:47} {us / 1000:6.1f} ms  +{mib(rss_by[mod])} MiB")
        for parent, mod, us in heavy:
            print(f"  {parent:28} imports {mod:24} {us / 1000:6.1f} ms  +{mib(rss_by[mod])} MiB")
        print("  what the daemon does not import, and would add over what it loads anyway:")
        for mod, kb in avoided.items():
            print(f"    {mod:24} +{kb / 1024:.2f} MiB")
        print("  each import of the daemon, in its order (RSS it added; modules it loaded):")
        for mod, kb, n in steps:
            if mod == "start":
                print(f"    {'(the interpreter)':34} {kb / 1024:6.2f} MiB, {n} modules")
            else:
                print(f"    {mod:34} +{kb / 1024:5.2f} MiB  +{n}")
    print()
    print("exec'd programs per tick:")
    for c in cases:
        progs = ", ".join(f"{p} {n:g}" for p, n in counts[c].programs.items()) or "none"
        print(f"  {c.label:34} {progs}")
    print()
    print("notes:")
    print("  - the original is tests/original/xenballoond copied with only its path literals "
          "(/proc/meminfo, /proc/vmstat, /proc/uptime, /proc/xen/balloon,")
    print("    /etc/sysconfig/xenballoon.conf) pointed into a sandbox tree and its trailing "
          "'done &' made 'done', so the loop is the bash we start and reap;")
    print("    the /usr/bin/xenstore-* checks are unchanged (Debian's real clients are there).")
    print("  - both talk to the simulated xenstored through the real xenstore-* clients; dom0 "
          "hands memory/{selftarget,meminfo,vmstat,uptime} to the guest")
    print("    (write + chmod n<domid>) so both publish the same keys under memory/; the "
          "original's whole-/proc/vmstat write (3.8 KB) is refused (E2BIG),")
    print("    ours sends the trimmed vmstat.  Guest: /proc/xen/balloon, MemTotal 380000 kB, "
          "Committed_AS 200000 kB; directed target 300000 kB.")
    print(f"  - the window starts {SETTLE_S:g} s after the first write of memory/uptime (the end "
          f"of tick 1 in every implementation) and lasts {args.ticks} s; per tick = per second.")
    print("    Processes/forks under strace -f (all cases at once).  xs req / xs KB: what the "
          "simulated xenstored served that guest's connections (requests; bytes in and out,")
    print("    watch events included).  A busy guest: every "
          f"{BUSY_STEP_S:g} s Committed_AS swings by "
          f"{(BUSY_COMMITTED_KB[1] - BUSY_COMMITTED_KB[0]) // 1024} MB "
          f"and pgpgin grows by {BUSY_PGPGIN_STEP_KB // 1024} MB (over our 30 MB threshold).")
    if cgroup_base:
        print("    CPU = usage_usec of a cgroup v2 holding the daemon and all it starts, read "
              "at the window's ends, no strace, one case at a time")
        print(f"    ({cgroup_base}/xbbench-*, removed after).")
    else:
        print("    CPU = wait4() user+sys of the daemon and its reaped children: (run through "
              "the window - median of 3 runs stopped at its start) / N, one case at a time.")
        print("    Python's start-up varies by ~10 ms from run to run, so this is noisy for "
              "small N or a loaded machine: use --ticks 30 or more.")
    print("    The simulated xenstored's own CPU (dom0's side) is not counted "
          "(bench_xenstored_load.py measures it). "
          f"1-min load average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} CPUs "
          "during the CPU runs (other load inflates CPU time).")
    print(f"  - wall time of this benchmark: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
