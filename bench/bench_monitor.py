"""One xenballoon-monitor refresh for 10..1000 guests: ours (CLI and native
backends) beside the original bash script, same machine, same run.

    python3 bench/bench_monitor.py [--guests 10,100,500,1000] [--original-max 500]

Every guest publishes what the daemon publishes under xl: data/xenballoon/
selftarget, meminfo (a real 1.4 KB /proc/meminfo), trimmed vmstat and uptime,
with two cpu/<n>/availability nodes.  xenstored is the simulated one (in this
process, on a thread), reached through Debian's real xenstore-* clients.  The
original runs from a temp copy with a fake `xm` (it needs `bc`); it reads
memory/, so its guests' keys are written there too (it finds data and the
same amount of work).  Figures: wall and CPU (user+sys of the monitor and its
children; the simulated xenstored's own CPU is not in it), processes per
refresh (connections xenstored accepted).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.xsfixtures import running_sim_xenstored  # noqa: E402

DATA = REPO / "tests" / "data"
MEMINFO = (DATA / "monitor_meminfo.txt").read_text().rstrip("\n")
VMSTAT = (DATA / "monitor_vmstat_trimmed.txt").read_text().rstrip("\n")
ORIGINAL = Path("/work/shared/seed/xenballoon-monitor")
if not ORIGINAL.exists():
    ORIGINAL = REPO / "tests" / "original" / "xenballoon-monitor"


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(argv: list[str], env: dict[str, str], server) -> tuple[float, float, int, str]:
    conns = server.connections_accepted
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    cpu = children_cpu_s() - cpu0
    if out.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {out.stderr[:500]}")
    return wall, cpu, server.connections_accepted - conns, out.stdout


def populate(server, guests: int, original_too: bool) -> None:
    for d in range(1, guests + 1):
        server.add_domain(d, f"guest{d}", 524288, 1048576)
        values = {"selftarget": str(400000 + d), "meminfo": MEMINFO, "vmstat": VMSTAT,
                  "uptime": f"{86400 + d}.25 {150000 + d}.10"}
        server.write_many({f"/local/domain/{d}/data/xenballoon/{k}": v for k, v in values.items()},
                          domid=d)
        server.write_many({f"/local/domain/{d}/cpu/{n}/availability": "online" for n in (0, 1)})
        if original_too:
            server.write_many({f"/local/domain/{d}/memory/{k}": v for k, v in values.items()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guests", default="10,100,500,1000")
    ap.add_argument("--original-max", type=int, default=500,
                    help="skip the original above this many guests (it takes minutes)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours; the median is shown")
    args = ap.parse_args()
    have_bc = shutil.which("bc") is not None
    work = Path(tempfile.mkdtemp(prefix="xbmon"))
    try:
        bindir = work / "bin"
        bindir.mkdir()
        for tool in ("xl", "xm"):
            info = DATA / f"monitor_{tool}_info.txt"
            (bindir / tool).write_text(f"#!/bin/sh\nexec /bin/cat '{info}'\n")
            (bindir / tool).chmod(0o755)
        original = work / "xenballoon-monitor"
        shutil.copy(ORIGINAL, original)
        confs = {}
        for backend in ("cli", "native"):
            confs[backend] = work / f"{backend}.conf"
            confs[backend].write_text(f"XENBALLOON_XENSTORE={backend}\n")

        print(f"{'guests':>6}  {'monitor':<18} {'wall s':>8} {'cpu s':>8} {'procs':>6}")
        for guests in (int(g) for g in args.guests.split(",")):
            run_original = have_bc and guests <= args.original_max
            with running_sim_xenstored(guests=0) as host:
                populate(host.server, guests, run_original)
                env = dict(host.env(0), PATH=f"{bindir}:/usr/bin:/bin",
                           PYTHONPATH=str(REPO))
                for backend in ("cli", "native"):
                    runs = [timed([sys.executable, "-m", "xenballoond.dom0.monitor", "-c",
                                   str(confs[backend])], env, host.server)
                            for _ in range(args.repeat)]
                    assert runs[0][3].count("\n") == guests + 2, runs[0][3][:300]
                    wall = statistics.median(r[0] for r in runs)
                    cpu = statistics.median(r[1] for r in runs)
                    procs = runs[0][2] + 1  # + xl (no xenstore connection)
                    print(f"{guests:>6}  {'ours, ' + backend:<18} {wall:>8.3f} {cpu:>8.3f} "
                          f"{procs:>6}", flush=True)
                if run_original:
                    wall, cpu, conns, _ = timed(["bash", str(original)], env, host.server)
                    print(f"{guests:>6}  {'original (bash)':<18} {wall:>8.3f} {cpu:>8.3f} "
                          f"{'>' + str(conns):>6}", flush=True)
                else:
                    why = "no bc" if not have_bc else f"skipped (> {args.original_max} guests)"
                    print(f"{guests:>6}  {'original (bash)':<18} {why}", flush=True)
        print("procs: processes per refresh (xenstore clients + xl); for the original only "
              "its xenstore clients are counted (bc, grep, sed, cut not included)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
