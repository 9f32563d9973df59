#!/usr/bin/env python3
"""Issue 2: per-tick cost of xenballoond next to the original 2008 bash script.

Both run on this machine in the same run, as real processes, against the
simulated xenstored through Debian's real xenstore-* clients (XENSTORED_PATH),
on guest trees with the 2008 /proc/xen/balloon driver, with intervals of 1 s
(the fastest the original allows), in self mode and in directed mode.

  processes/tick  successful execve()s per tick, from `strace -f` (run 1)
  forks/tick      process-creating clone/fork/vfork per tick, same run
  CPU ms/tick     user+sys of the daemon and every process it starts, between the
                  end of tick 1 and the end of tick N+1 (start-up left out), without
                  strace, one case at a time: exactly, from cpu.stat of a cgroup v2
                  made for the run; or, with no writable cgroup v2 (--cpu wait4),
                  from wait4(): (run of N+1 ticks - median of 3 runs of 1 tick) / N
  startup ms      the CPU outside that window: start-up, tick 1, shutdown
  RSS / HWM       VmRSS / VmHWM of the long-running process after N+1 ticks

Usage: python3 bench/bench_daemon.py [--ticks N] [--cpu auto|cgroup|wait4]
                                     [--no-venv] [--no-imports] [--keep]
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _sandbox as sb  # noqa: E402

from xenballoond.sim.xenstored import SimXenstored  # noqa: E402

BASH = shutil.which("bash") or "/bin/bash"
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STRACE_EVENTS = "trace=execve,clone,clone3,fork,vfork"
ISSUE = ("issue 2's figures for the original: 25 / 22 processes, 36.5 / 26.5 ms CPU per tick "
         "(self / directed), RSS 2.1 MB")
AIM = "aim for ours: <= 2 processes/tick with the shim, >= 5x less CPU/tick, RSS <= 12 MiB"


@dataclass(frozen=True)
class Case:
    impl: str  # "original", "cli" or "native"
    mode: str  # "self" or "directed"

    @property
    def label(self) -> str:
        who = "original (bash)" if self.impl == "original" else f"xenballoond {self.impl}"
        return f"{who} {self.mode}"

    @property
    def bash(self) -> bool:
        return self.impl == "original"


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
                            backend=None if case.bash else case.impl)
        if case.bash:
            argv = [BASH, sb.sandboxed_original(d, root)]
        else:
            argv = [python, "-m", "xenballoond.guest", "-f", "--root", root, "-c", conf]
        if strace_out:
            argv = ["strace", "-f", "-qq", "-ttt", "-s", "48", "-e", STRACE_EVENTS,
                    "-o", strace_out, "--", *argv]
        env = {"PATH": SYS_PATH, "LC_ALL": "C", "XENSTORED_PATH": self.sim.socket_path(domid),
               "PYTHONPATH": sb.REPO}
        counter = sb.TickCounter(self.sim, domid)
        log_path = os.path.join(d, "log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        return Run(case, proc, counter, log_path)


class RunFailed(Exception):
    pass


class Run:
    def __init__(self, case: Case, proc: subprocess.Popen, counter: sb.TickCounter,
                 log_path: str) -> None:
        self.case, self.proc, self.counter, self.log_path = case, proc, counter, log_path

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
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.counter.close()

    def stop_and_reap(self) -> float:
        """SIGTERM to the process group; the CPU ms of the daemon and its reaped children."""
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


def count_processes(bench: Bench, case: Case, ticks: int) -> Counts:
    """Run under strace for ticks+1 ticks; count what starts between the end of
    the first tick and the end of the last (memory/uptime writes)."""
    out = os.path.join(bench.workdir, f"strace-{case.impl}-{case.mode}.txt")
    run = bench.start(case, "strace", strace_out=out)
    try:
        run.wait_ticks(ticks + 1)
        daemon = _traced_child(run.proc.pid)
        sb.wait_idle(daemon, case.bash)
        times = list(run.counter.times)
        for pid in [daemon, *sb.children(daemon)]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
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
    lo, hi = times[0], times[ticks]
    progs = [p for t, p in trace.execs if lo < t <= hi]
    forks = [t for t in trace.forks if lo < t <= hi]
    by_prog = {p: n / ticks for p, n in collections.Counter(progs).most_common()}
    return Counts(len(progs) / ticks, len(forks) / ticks, by_prog)


def _traced_child(strace_pid: int) -> int:
    for _ in range(500):
        kids = sb.children(strace_pid)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise RunFailed("strace started no child")


@dataclass
class Cost:
    cpu_ms_per_tick: float  # median over the ticks (cgroup) or the mean (wait4)
    cpu_ms_mean: float
    start_ms: float  # CPU outside the window: start-up, tick 1, shutdown
    rss_kb: int
    hwm_kb: int


def measure_cost(bench: Bench, case: Case, ticks: int, cgroup_base: str | None) -> Cost:
    """With a cgroup v2: one run; the CPU of the daemon's process tree in each
    tick from the end of tick 1 to the end of tick N+1.  Else wait4():
    (run of N+1 ticks - median of three runs of 1 tick) / N."""
    if cgroup_base is None:
        one = sorted(_wait4_run(bench, case, 1)[0] for _ in range(3))[1]
        full, status = _wait4_run(bench, case, ticks + 1)
        mean = (full - one) / ticks
        return Cost(mean, mean, one, status["VmRSS"], status["VmHWM"])
    cg = sb.Cgroup(cgroup_base, f"xbbench-{os.getpid()}-{case.impl}-{case.mode}")
    try:
        run = bench.start(case, "cpu")
        try:
            cg.add(run.proc.pid)
            usage_us = []
            for n in range(1, ticks + 2):
                run.wait_ticks(n)
                sb.wait_idle(run.proc.pid, case.bash)
                usage_us.append(cg.usage_us())
            status = sb.status_kb(run.proc.pid)
            total_ms = run.stop_and_reap()
        finally:
            if run.proc.returncode is None:
                run.kill()
    finally:
        cg.remove()
    per_tick_ms = [(b - a) / 1000.0 for a, b in zip(usage_us, usage_us[1:])]
    window_ms = sum(per_tick_ms)
    return Cost(statistics.median(per_tick_ms), window_ms / ticks, total_ms - window_ms,
                status["VmRSS"], status["VmHWM"])


def _wait4_run(bench: Bench, case: Case, ticks: int) -> tuple[float, dict[str, int]]:
    run = bench.start(case, f"cpu{ticks}")
    try:
        run.wait_ticks(ticks)
        sb.wait_idle(run.proc.pid, case.bash)
        status = sb.status_kb(run.proc.pid)
        return run.stop_and_reap(), status
    finally:
        if run.proc.returncode is None:
            run.kill()


def rss_only(bench: Bench, case: Case, python: str, ticks: int = 2) -> tuple[int, int]:
    run = bench.start(case, "rss", python=python)
    try:
        run.wait_ticks(ticks)
        sb.wait_idle(run.proc.pid, case.bash)
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
AVOIDED = ("typing", "dataclasses", "logging.handlers", "shutil")
MARGINAL_PROBE = ("import sys\n"
                  "def rss():\n"
                  "    for l in open('/proc/self/status'):\n"
                  "        if l.startswith('VmRSS:'): return int(l.split()[1])\n"
                  "import importlib\n"
                  "for m in sys.argv[2:]: importlib.import_module(m)\n"
                  "a = rss()\n"
                  "importlib.import_module(sys.argv[1])\n"
                  "print(rss() - a)\n")
DAEMON_MODULES = ("xenballoond.guest.cli", "xenballoond.guest.runloop", "xenballoond.xenstore.cli",
                  "xenballoond.xenstore.native", "daemon", "lockfile.pidlockfile")


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
    p.add_argument("--ticks", type=int, default=10, help="ticks measured per run (default 10)")
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
    have_native = os.path.exists(os.path.join(sb.REPO, "xenballoond", "xenstore_native.py"))
    impls = ["original", "cli"] + (["native"] if have_native else [])
    cases = [Case(i, m) for m in ("self", "directed") for i in impls]

    cgroup_base = sb.cgroup2_base() if args.cpu != "wait4" else None
    if args.cpu == "cgroup" and cgroup_base is None:
        print("bench_daemon: no writable cgroup v2 hierarchy (try --cpu wait4)", file=sys.stderr)
        return 2

    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="xbb")
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
                venv["rss"] = rss_only(bench, Case("cli", "self"), py)
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
            imports = (py, total_us, heavy, {m: import_rss_kb(py, m) for m in mods},
                       {m: marginal_rss_kb(py, m) for m in AVOIDED})
    finally:
        bench.close()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    # --- report -----------------------------------------------------------------
    print(f"command: python3 {shlex.join(sys.argv)}")
    print(f"{args.ticks} ticks measured per run; XENBALLOON_SELF_INTERVAL=1, "
          f"XENBALLOON_INTERVAL=1; python {sys.executable} ({sys.version.split()[0]}), {BASH}")
    print()
    head = (f"{'':28}{'processes/tick':>15}{'forks/tick':>12}{'CPU ms/tick':>13}"
            f"{'(mean)':>8}{'CPU vs orig':>13}{'startup ms':>12}{'RSS MiB':>9}{'HWM MiB':>9}")
    print(head)
    for c in cases:
        orig = costs[Case("original", c.mode)].cpu_ms_per_tick
        ours = costs[c].cpu_ms_per_tick
        ratio = "" if c.bash else (f"{orig / ours:.1f}x less" if ours > 0 else "n/a")
        print(f"{c.label:28}{counts[c].execs:>15.1f}{counts[c].forks:>12.1f}{ours:>13.2f}"
              f"{costs[c].cpu_ms_mean:>8.2f}"
              f"{ratio:>13}{costs[c].start_ms:>12.1f}{mib(costs[c].rss_kb):>9}"
              f"{mib(costs[c].hwm_kb):>9}")
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
        print(f"  {'xenballoond cli self, clean venv (after 2 ticks)':58} "
              f"VmRSS {mib(rss):>5} MiB, VmHWM {mib(hwm):>5} MiB")
        print("  (venv: python3 -m venv + pip install python-daemon lockfile; "
              "our package from this tree on PYTHONPATH)")
    elif "error" in venv:
        print(f"  clean venv skipped: {venv['error']}")
    if imports:
        py, total_us, heavy, rss_by, avoided = imports
        print()
        print(f"imports ({py} -X importtime; RSS of each imported alone in a fresh interpreter):")
        for mod, us in total_us.items():
            print(f"  import {mod:47} {us / 1000:6.1f} ms  +{mib(rss_by[mod])} MiB")
        for parent, mod, us in heavy:
            print(f"  {parent:28} imports {mod:24} {us / 1000:6.1f} ms  +{mib(rss_by[mod])} MiB")
        print("  what the daemon does not import, and would add over what it loads anyway:")
        for mod, kb in avoided.items():
            print(f"    {mod:24} +{kb / 1024:.2f} MiB")
    print()
    print("exec'd programs per tick:")
    for c in cases:
        progs = ", ".join(f"{p} {n:g}" for p, n in counts[c].programs.items()) or "none"
        print(f"  {c.label:28} {progs}")
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
    print("  - a tick ends at the write of memory/uptime; processes/forks counted between the "
          "ends of tick 1 and tick N+1 under strace -f (all cases at once);")
    if cgroup_base:
        print("    CPU = usage_usec of a cgroup v2 holding the daemon and all it starts, read "
              "at the end of every tick, no strace, one case at a time")
        print(f"    ({cgroup_base}/xbbench-*, removed after).  startup = wait4() user+sys of "
              "the whole run minus the window.")
    else:
        print("    CPU = wait4() user+sys of the daemon and its reaped children: (run of N+1 "
              "ticks - median of 3 runs of 1 tick) / N, no strace, one case at a time.")
        print("    Python's start-up varies by ~10 ms from run to run, so this is noisy for "
              "small N or a loaded machine: use --ticks 30 or more.")
    print("    Neither counts the simulated xenstored's own CPU (dom0's side).  CPU ms/tick "
          f"is the {'median over the ticks' if cgroup_base else 'mean'}; "
          f"1-min load average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} CPUs "
          "during the CPU runs (other load inflates CPU time).")
    print(f"  - wall time of this benchmark: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
