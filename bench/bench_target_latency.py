#!/usr/bin/env python3
"""Issue 12: time from dom0 writing memory/target to the balloon target changing.

The real xenballoond (directed, XENBALLOON_INTERVAL=1) runs as a process against
the simulated xenstored (in this process) on a guest tree with the sysfs
balloon (.../xen_memory0/target).  dom0 writes a new memory/target at a random
moment (0.3 to 1.3 s after the last one, so every phase of the 1 s tick is
met); a thread reads the target file every 0.5 ms and notes when it first holds
the new value.  "before" is the code of another tree (default: `git archive
main`), which reads memory/ once a tick (polling); "after" is this tree, whose
native backend watches memory/.  Both backends, before and after, in one run.

Usage: python3 bench/bench_target_latency.py [--writes 20] [--before DIR | --before-rev REV]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _sandbox as sb  # noqa: E402
from bench_xenstored_load import SYS_PATH, export_rev  # noqa: E402

from tests.guestroot import make_guest  # noqa: E402
from xenballoond.sim.xenstored import SimXenstored  # noqa: E402

POLL_S = 0.0005
TARGETS_KB = (300000, 290000)


class TargetWatcher(threading.Thread):
    """Reads the balloon's target file every POLL_S; remembers each new value's time."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.seen: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        last = None
        while not self.stop.is_set():
            try:
                with open(self.path) as f:
                    text = f.read().strip()
            except OSError:
                text = ""
            if text.isdigit() and int(text) != last:  # "" while the daemon rewrites it
                last = int(text)
                self.seen.append((time.monotonic(), last))
            time.sleep(POLL_S)

    def first_at(self, value: int, after_s: float) -> float | None:
        for at_s, v in list(self.seen):
            if at_s >= after_s and v == value:
                return at_s
        return None


def measure(sim: SimXenstored, domid: int, code: str, backend: str, writes: int,
            workdir: str, rng: random.Random) -> list[float]:
    root = os.path.join(workdir, f"{backend}-{domid}")
    conf = ("XENBALLOON_SELF=false\nXENBALLOON_INTERVAL=1\n"
            f"XENBALLOON_XENSTORE={backend}\n")
    make_guest(root, memtotal_kb=sb.MEMTOTAL_KB, committed_kb=sb.COMMITTED_KB,
               balloon="sysfs", conf=conf, current_kb=393216)
    sim.add_domain(domid, f"guest{domid}", memory_kb=TARGETS_KB[0], maxmem_kb=sb.MAXMEM_KB)
    target = os.path.join(root, "sys/devices/system/xen_memory/xen_memory0/target")
    watcher = TargetWatcher(target)
    watcher.start()
    env = {"PATH": SYS_PATH, "LC_ALL": "C", "PYTHONPATH": code,
           "XENSTORED_PATH": sim.socket_path(domid)}
    proc = subprocess.Popen([sys.executable, "-m", "xenballoond.guest", "-f", "--root", root,
                             "-c", os.path.join(root, "etc/sysconfig/xenballoon.conf")],
                            env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    latencies = []
    try:
        deadline = time.monotonic() + 30
        while watcher.first_at(TARGETS_KB[0] * 1024, 0) is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{code} {backend}: the daemon never set the first target")
            time.sleep(0.05)
        for n in range(writes):
            time.sleep(rng.uniform(0.3, 1.3))
            kb = TARGETS_KB[(n + 1) % 2]
            at_s = time.monotonic()
            sim.write(f"/local/domain/{domid}/memory/target", str(kb))  # xl mem-set
            while True:
                seen = watcher.first_at(kb * 1024, at_s)
                if seen is not None:
                    latencies.append((seen - at_s) * 1000)
                    break
                if time.monotonic() - at_s > 10:
                    raise RuntimeError(f"{code} {backend}: target {kb} kB not set in 10 s")
                time.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        watcher.stop.set()
        watcher.join()
    return latencies


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writes", type=int, default=20, help="memory/target writes per case (20)")
    p.add_argument("--before", metavar="DIR", help="the tree of the code before")
    p.add_argument("--before-rev", default="main")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    have_cli = shutil.which("xenstore-ls") is not None
    workdir = tempfile.mkdtemp(prefix="xblat")
    sim = SimXenstored(os.path.join(workdir, "xs")).start()
    rows = []
    try:
        before = args.before or export_rev(args.before_rev, os.path.join(workdir, "before-code"))
        domid = 0
        for label, code in (("before", before), ("after", sb.REPO)):
            for backend in (("cli", "native") if have_cli else ("native",)):
                domid += 1
                lat = measure(sim, domid, code, backend, args.writes, workdir,
                              random.Random(args.seed))
                rows.append((label, backend, lat))
    finally:
        sim.stop()
        sb.remove_workdir(workdir)
    print(sb.command_line())
    print(f"{args.writes} memory/target writes per case, XENBALLOON_INTERVAL=1, directed, sysfs "
          f"balloon; target file read every {POLL_S * 1000:g} ms; before: "
          f"{args.before or 'git archive ' + args.before_rev}, after: this tree")
    print()
    print(f"{'':18}{'median ms':>10}{'mean ms':>9}{'min ms':>8}{'max ms':>8}")
    for label, backend, lat in rows:
        print(f"{label + ' ' + backend:18}{statistics.median(lat):>10.1f}"
              f"{statistics.mean(lat):>9.1f}{min(lat):>8.1f}{max(lat):>8.1f}")
    print(f"\n1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; the original "
          "2008 script polls once an interval too (like 'before'), with 22 processes a tick.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
