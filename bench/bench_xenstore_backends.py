#!/usr/bin/env python3
"""What one daemon tick costs in xenstore traffic, per backend, beside the original.

A tick here is what xenballoond does against xenstore each interval: one
snapshot of memory/ and one write_many of 4 outputs of ~1.5 KB each (an upper
bound: selftarget and uptime are really a few bytes).  It runs as guest domain 1
of a simulated xenstored (in this process) through:

  native  NativeXenstore: the wire protocol over one kept unix-socket connection
  cli     CliXenstore: Debian's xenstore-ls and xenstore-write (XENSTORED_PATH)
  bash    the original 2008 script's xenstore calls of one directed tick, copied
          from its main loop: 4 xenstore-exists, 1 xenstore-read, 4 xenstore-write
          (3 of them with "`cat /proc/...`"), memory/ keys handed to the guest

Each backend runs in its own worker process, which measures its own tick loop
(after warm-up): CPU = user+sys of itself and its children (resource.getrusage),
processes spawned, round trips, and its RSS.  The bash run is measured from here
as a child; its processes are counted with strace -f when strace is installed.
(The RSS of the short-lived xenstore-* processes is not shown: getrusage's
ru_maxrss for children counts the parent's pages they had before exec.)
Figures vary with the machine; nothing here is asserted.

    python3 bench/bench_xenstore_backends.py [--ticks N]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from xenballoond import commands  # noqa: E402
from xenballoond.sim.xenstored import SimXenstored  # noqa: E402

GUEST = 1
OUTPUT_BYTES = 1500
WARMUP_TICKS = 3


def _text(label: str, size: int) -> str:
    """A /proc-like text of about ``size`` bytes ("key value" lines)."""
    lines, n = [], 0
    while sum(len(x) + 1 for x in lines) < size:
        lines.append(f"{label}_{n:03d} {n * 7919 % 100000}")
        n += 1
    return "\n".join(lines)[:size]


OUTPUTS = {f"data/xenballoon/{k}": _text(k, OUTPUT_BYTES)
           for k in ("selftarget", "meminfo", "vmstat", "uptime")}

ORIGINAL_TICK = r"""
M=$1/meminfo; V=$1/vmstat; U=$1/uptime; N=$2; i=0
while [ $i -lt $N ]; do
  if xenstore-exists memory/selfballoon; then RETVAL=`xenstore-read memory/selfballoon`; fi
  if xenstore-exists memory/target ; then tgtkb=`xenstore-read memory/target`; fi
  if xenstore-exists memory/downhysteresis ; then RETVAL=`xenstore-read memory/downhysteresis`; fi
  xenstore-write memory/selftarget $tgtkb
  xenstore-write memory/meminfo "`cat $M`"
  xenstore-write memory/vmstat "`cat $V`"
  xenstore-write memory/uptime "`cat $U`"
  if xenstore-exists memory/interval ; then interval=`xenstore-read memory/interval`; fi
  i=$((i+1))
done
"""


def _cpu_ms(who: int) -> float:
    r = resource.getrusage(who)
    return (r.ru_utime + r.ru_stime) * 1000


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def worker(kind: str, sock: str, ticks: int) -> dict[str, float]:
    """Run in a fresh process: ``ticks`` daemon-like ticks, measured."""
    rss_before = _rss_kb()
    if kind == "native":
        from xenballoond.xenstore.native import NativeXenstore
        xs = NativeXenstore(socket_path=sock)
    else:
        from xenballoond.xenstore.cli import CliXenstore
        xs = CliXenstore(env={**os.environ, "XENSTORED_PATH": sock})
    for _ in range(WARMUP_TICKS):
        xs.snapshot("memory")
        xs.write_many(OUTPUTS)
    procs0, reqs0 = xs.processes_spawned, xs.requests
    self0, kids0 = _cpu_ms(resource.RUSAGE_SELF), _cpu_ms(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    for _ in range(ticks):
        snap = xs.snapshot("memory")
        xs.write_many(OUTPUTS)
    wall = time.perf_counter() - wall0
    assert snap, "snapshot came back empty"
    return {
        "procs": (xs.processes_spawned - procs0) / ticks,
        "requests": (xs.requests - reqs0) / ticks,
        "cpu_self_ms": (_cpu_ms(resource.RUSAGE_SELF) - self0) / ticks,
        "cpu_children_ms": (_cpu_ms(resource.RUSAGE_CHILDREN) - kids0) / ticks,
        "wall_ms": wall * 1000 / ticks,
        "rss_kb": _rss_kb(),
        "rss_backend_kb": _rss_kb() - rss_before,
    }


def _run_worker(kind: str, sock: str, ticks: int) -> dict[str, float]:
    out = commands.run([sys.executable, os.path.abspath(__file__), "--worker", kind,
                        "--socket", sock, "--ticks", str(ticks)], timeout_s=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_bash(sock: str, files: str, ticks: int) -> dict[str, float]:
    env = {**os.environ, "XENSTORED_PATH": sock}
    argv = ["bash", "-c", ORIGINAL_TICK, "bench", files]
    commands.run(argv + [str(WARMUP_TICKS)], timeout_s=600, env=env)
    kids0 = _cpu_ms(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    commands.run(argv + [str(ticks)], timeout_s=600, env=env)
    wall = time.perf_counter() - wall0
    cpu = _cpu_ms(resource.RUSAGE_CHILDREN) - kids0
    result = {"procs": float("nan"), "requests": float("nan"), "cpu_self_ms": 0.0,
              "cpu_children_ms": cpu / ticks, "wall_ms": wall * 1000 / ticks}
    strace = shutil.which("strace")
    if strace:
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
            commands.run([strace, "-f", "-qq", "-e", "trace=execve", "-o", log.name,
                          *argv, "2"], timeout_s=600, env=env)
            execs = sum(1 for line in log if "execve(" in line and "= 0" in line)
        result["procs"] = (execs - 1) / 2  # minus bash itself
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--worker", choices=("native", "cli"), help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.socket, args.ticks)))
        return 0
    for tool in ("xenstore-ls", "xenstore-write", "xenstore-exists", "bash"):
        if shutil.which(tool) is None:
            print(f"needs {tool} (Debian: xenstore-utils)", file=sys.stderr)
            return 1
    sock_dir = tempfile.mkdtemp(prefix="xsb", dir="/tmp")
    server = SimXenstored(sock_dir)
    server.add_domain(GUEST, "bench", 524288, 1048576)
    # the original writes under memory/: hand it those keys, as dom0 can
    for key in ("selftarget", "meminfo", "vmstat", "uptime"):
        server.write(f"/local/domain/{GUEST}/memory/{key}", "0")
        server.set_perms(f"/local/domain/{GUEST}/memory/{key}", [f"n{GUEST}"])
    for key in ("meminfo", "vmstat", "uptime"):
        with open(os.path.join(sock_dir, key), "w") as f:
            f.write(_text(key, OUTPUT_BYTES))
    sock = server.socket_path(GUEST)
    server.start()
    try:
        results = {
            "native": _run_worker("native", sock, args.ticks),
            "cli": _run_worker("cli", sock, args.ticks),
            "original bash": _run_bash(sock, sock_dir, args.ticks),
        }
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
    print(f"One tick = snapshot(memory/) + write_many(4 x {OUTPUT_BYTES} B); "
          f"{args.ticks} ticks each, guest socket of a simulated xenstored.")
    print(f"{'backend':<14}{'procs/tick':>11}{'round trips':>12}{'CPU ms/tick':>12}"
          f"{'(self':>8}{'+ children)':>12}{'wall ms':>9}{'client RSS':>12}")
    for name, r in results.items():
        cpu = r["cpu_self_ms"] + r["cpu_children_ms"]
        rss = f"{r['rss_kb'] / 1024:.1f} MiB" if "rss_kb" in r else "-"
        procs = "?" if r["procs"] != r["procs"] else f"{r['procs']:g}"
        reqs = "-" if r["requests"] != r["requests"] else f"{r['requests']:g}"
        print(f"{name:<14}{procs:>11}{reqs:>12}{cpu:>12.2f}{r['cpu_self_ms']:>8.2f}"
              f"{r['cpu_children_ms']:>12.2f}{r['wall_ms']:>9.2f}{rss:>12}")
    native = results["native"]
    print(f"native backend's own memory: +{native['rss_backend_kb']:.0f} KiB RSS after import "
          f"and {args.ticks + WARMUP_TICKS} ticks.")
    print("CPU of the simulated xenstored is not counted (it runs in the parent).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
