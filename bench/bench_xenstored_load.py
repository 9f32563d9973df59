#!/usr/bin/env python3
"""Issue 12: what N idle guests cost dom0's xenstored, before and after.

N real xenballoond processes (directed, intervals of 1 s, the native backend
unless --backend cli) run against ONE simulated xenstored, a process of its
own (python3 -m xenballoond.sim.xenstored: the same server for both runs), each
in its own guest tree (the 2008 /proc/xen/balloon driver, a static meminfo: an
idle guest).  After every daemon has published once and a settling time, the
window: the xenstored process's CPU (user+sys, /proc/<pid>/stat), the requests
it served and the bytes it received and sent, and the daemons' own CPU.

"before" is the code of another tree (default: `git archive main` into a
temporary directory), run with the same xenstored and the same guest trees;
"after" is this tree.  Both runs go one after the other, on the same machine,
in the same invocation.

Usage: python3 bench/bench_xenstored_load.py [--guests 100] [--duration 60]
           [--backend native|cli] [--before DIR | --before-rev REV] [--settle 5]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _sandbox as sb  # noqa: E402

SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """user+sys of a live process, and of its children it has reaped."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def export_rev(rev: str, dst: str) -> str:
    archive = subprocess.run(["git", "-C", sb.REPO, "archive", rev], check=True,
                             capture_output=True, timeout=120).stdout
    os.makedirs(dst, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", dst], input=archive, check=True, timeout=120)
    return dst


class Xenstored:
    """The simulated xenstored as a process; its traffic read with SIGUSR1."""

    def __init__(self, workdir: str, guests: int) -> None:
        self.dir = os.path.join(workdir, "xs")
        self.stats_path = os.path.join(workdir, "xs-stats.json")
        env = {"PATH": SYS_PATH, "PYTHONPATH": sb.REPO, "LC_ALL": "C"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xenballoond.sim.xenstored", "--dir", self.dir,
             "--domains", str(guests), "--memory-kb", str(sb.DIRECTED_TARGET_KB),
             "--maxmem-kb", str(sb.MAXMEM_KB), "--stats", self.stats_path],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        for _ in range(guests + 1):  # one line per domain when it listens
            if not self.proc.stdout.readline():
                raise RuntimeError("the simulated xenstored did not start")

    def socket(self, domid: int) -> str:
        return os.path.join(self.dir, f"d{domid}")

    def stats(self) -> dict:
        try:
            os.unlink(self.stats_path)
        except FileNotFoundError:
            pass
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(self.stats_path) as f:
                    return json.load(f)
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.01)
        raise RuntimeError("no stats from the simulated xenstored")

    def cpu_s(self) -> float:
        return cpu_s(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def published(xsd: Xenstored, domid: int) -> bool:
    from xenballoond.xenstore.native import NativeXenstore
    xs = NativeXenstore(socket_path=xsd.socket(0))
    try:
        return bool(xs.read_existing([f"/local/domain/{domid}/data/xenballoon/uptime"]))
    finally:
        xs.close()


def run(code: str, label: str, args: argparse.Namespace, workdir: str) -> dict:
    work = os.path.join(workdir, label)
    os.makedirs(work)
    xsd = Xenstored(work, args.guests)
    daemons: list[subprocess.Popen] = []
    try:
        for domid in range(1, args.guests + 1):
            root = os.path.join(work, f"guest{domid}")
            conf = sb.make_tree(root, self_mode=False, original=False, backend=args.backend)
            env = {"PATH": SYS_PATH, "LC_ALL": "C", "PYTHONPATH": code,
                   "XENSTORED_PATH": xsd.socket(domid)}
            daemons.append(subprocess.Popen(
                [sys.executable, "-m", "xenballoond.guest", "-f", "--root", root, "-c", conf],
                env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(root, "log"), "wb"), start_new_session=True))
        deadline = time.monotonic() + 60 + args.guests
        waiting = set(range(1, args.guests + 1))
        while waiting and time.monotonic() < deadline:
            waiting = {d for d in waiting if not published(xsd, d)}
            if waiting:
                time.sleep(0.5)
        if waiting:
            raise RuntimeError(f"{label}: {len(waiting)} guests never published")
        time.sleep(args.settle)
        load0 = os.getloadavg()[0]
        s0, c0, d0, t0 = xsd.stats(), xsd.cpu_s(), sum(cpu_s(p.pid) for p in daemons), \
            time.monotonic()
        time.sleep(args.duration)
        s1, c1, d1, t1 = xsd.stats(), xsd.cpu_s(), sum(cpu_s(p.pid) for p in daemons), \
            time.monotonic()
        alive = sum(p.poll() is None for p in daemons)
        guests = [str(d) for d in range(1, args.guests + 1)]
        return {
            "label": label, "code": code, "seconds": t1 - t0, "alive": alive,
            "xenstored_cpu_s": c1 - c0, "daemons_cpu_s": d1 - d0,
            "requests": s1["requests"] - s0["requests"],  # every connection's
            "guest_requests": sum(s1["by_domid"].get(g, [0, 0, 0])[0]
                                  - s0["by_domid"].get(g, [0, 0, 0])[0] for g in guests),
            "bytes_in": sum(s1["by_domid"].get(g, [0, 0, 0])[1]
                            - s0["by_domid"].get(g, [0, 0, 0])[1] for g in guests),
            "bytes_out": sum(s1["by_domid"].get(g, [0, 0, 0])[2]
                             - s0["by_domid"].get(g, [0, 0, 0])[2] for g in guests),
            "load": (load0, os.getloadavg()[0]),
        }
    finally:
        for p in daemons:
            if p.poll() is None:
                p.terminate()
        for p in daemons:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        xsd.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--guests", type=int, default=100)
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds (60)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds after every guest published once, before the window (5)")
    p.add_argument("--backend", choices=("native", "cli"), default="native")
    p.add_argument("--before", metavar="DIR", help="the tree of the code before")
    p.add_argument("--before-rev", default="main",
                   help="else `git archive` of this revision (main)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="xbload")
    try:
        before = args.before or export_rev(args.before_rev, os.path.join(workdir, "before-code"))
        results = [run(before, "before", args, workdir), run(sb.REPO, "after", args, workdir)]
    finally:
        sb.remove_workdir(workdir, args.keep)
    print(sb.command_line())
    print(f"{args.guests} idle directed guests, xenballoond {args.backend} backend, intervals 1 s, "
          f"one simulated xenstored (a process); window {args.duration:g} s after all published "
          f"and {args.settle:g} s more")
    print(f"before: {results[0]['code']} ({args.before or 'git archive ' + args.before_rev}); "
          f"after: {sb.REPO}")
    print()
    print(f"{'':8}{'xenstored CPU s':>16}{'requests':>10}{'req/s':>9}{'req/s/guest':>12}"
          f"{'KB in/s':>9}{'KB out/s':>9}{'daemons CPU s':>15}{'alive':>7}{'load':>12}")
    for r in results:
        s = r["seconds"]
        print(f"{r['label']:8}{r['xenstored_cpu_s']:>16.2f}{r['guest_requests']:>10}"
              f"{r['guest_requests'] / s:>9.1f}{r['guest_requests'] / s / args.guests:>12.2f}"
              f"{r['bytes_in'] / s / 1024:>9.1f}{r['bytes_out'] / s / 1024:>9.1f}"
              f"{r['daemons_cpu_s']:>15.2f}{r['alive']:>7}"
              f"{r['load'][0]:>6.1f}->{r['load'][1]:<4.1f}")
    b, a = results
    if a["xenstored_cpu_s"] > 0 and a["guest_requests"] > 0:
        print(f"\nafter/before: xenstored CPU "
              f"{b['xenstored_cpu_s'] / a['xenstored_cpu_s']:.1f}x less, "
              f"requests {b['guest_requests'] / a['guest_requests']:.1f}x fewer")
    print("\nnotes: requests and bytes are the guests' connections' (dom0's few reads of this "
          "benchmark left out); KB in = what the guests sent, out = replies and watch events.")
    print(f"  CPU from /proc/<pid>/stat (1/{CLK_TCK} s ticks); other load on the machine "
          f"inflates it ({os.cpu_count()} CPUs; 1-min load average shown).")
    print(f"  wall time of this benchmark: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
