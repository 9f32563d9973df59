#!/usr/bin/env python3
"""Issue 3: what the simulated host itself costs, for 3 and for 50 guests.

Runs ``xenballoon-sim`` as a real process (real daemons, real xenstore clients)
and reports, from its --json summary, the CPU time of the simulator's own
process (user+sys from /proc/self/stat, the simulated xenstored's thread
included, the daemons and their clients excluded), per simulated second.
The xenstored thread's share is shown apart (/proc/self/task/<tid>/stat).

  host CPU s/sim s   the simulator process (models, /proc rewrites, dom0,
                     monitor table off, xenstored thread included)
  xenstored s/sim s  the xenstored thread alone: it answers every daemon
  max lag s          how far the step loop ever fell behind wall-clock time
                     (0: it kept up; the machine is shared with the daemons)

There is no original to compare with: the 2008 tools had no simulator.

Usage: python3 bench/bench_sim.py [--guests 3,50] [--duration 30] [--tick 0.25]
                                  [--xenstore cli,native]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(guests: int, duration_s: float, tick_s: float, backend: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "xenballoond.sim.host", "--guests", str(guests),
            "--duration", str(duration_s), "--tick", str(tick_s), "--mode", "mixed",
            "--xenstore", backend, "--json"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=duration_s * 4 + 120)
    if proc.returncode != 0:
        raise SystemExit(f"xenballoon-sim failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--guests", default="3,50", help="comma-separated guest counts")
    p.add_argument("--duration", type=float, default=30.0, help="simulated seconds per run")
    p.add_argument("--tick", type=float, default=0.25)
    p.add_argument("--xenstore", default="native,cli",
                   help="the daemons' backends to try, comma-separated")
    args = p.parse_args()
    print(f"xenballoon-sim host cost, {args.duration:g} simulated s per run, tick "
          f"{args.tick:g} s, mode mixed, {os.cpu_count()} CPUs")
    print(f"{'guests':>6} {'daemons use':>11} {'host CPU s/sim s':>17} "
          f"{'xenstored s/sim s':>18} {'max lag s':>9} {'given back MiB':>14} {'below s':>8}")
    for backend in args.xenstore.split(","):
        for guests in (int(g) for g in args.guests.split(",")):
            s = run(guests, args.duration, args.tick, backend)
            sim_s = s["simulated_s"] or 1.0
            print(f"{guests:>6} {backend:>11} {s['host_cpu_s'] / sim_s:>17.4f} "
                  f"{s['xenstored_cpu_s'] / sim_s:>18.4f} {s['max_step_lag_s']:>9.3f} "
                  f"{s['given_back_mib']:>14} {s['below_committed_s']:>8}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
