#!/usr/bin/env python3
"""Issue 24: the 2008 minimum target against the adaptive one, on the simulator.

Runs ``xenballoon-sim -m self`` (every guest self-ballooning: the real daemon
in each) and ``-m directed`` (the simulator's dom0 sets every guest's target
as an administrator's script would, Committed_AS + 64 MiB + 1/8 + the rise
over 3 s, and the daemons floor it) once with ``--min-policy 2008`` and once with ``--min-policy
adaptive``, side by side so they share the machine's load, for each workload
and seed, and prints per workload the two policies' figures, summed over the
guests and averaged over the seeds:

  back end      memory given back at the end of the run, MiB (for idle: at idle)
  back avg      memory given back on average over the run, MiB
  lowest        the guests' smallest size in the run, MiB, mean over the guests
  below s       seconds a guest's MemTotal was under its Committed_AS
  swap pages    pages swapped out and in
  OOM           OOM kills

The workloads:

  idle    the base load alone (3-12% of memory= committed), 60 s: how far an
          idle guest shrinks (the down steps take ~45 s to get within 1%)
  random  each guest's own seeded jobs, 60 s
  turns   the guests take turns being busy (90-120% of memory= each turn), on
          a host of 3.5 GiB for 3 guests of 1 GiB (maxmem 2 GiB): the busy
          one grows only into what the idle ones gave back
  ramp    swapless (as many guests today): one program allocating 64 MiB/s up
          to 70% of maxmem from t=35 s, when the guest has shrunk to its
          floor; 2 guests, 65 s

The seeds are not the ones the daemon's and the balancer's rules were tuned
on (1-3).  There is no original to run beside it: the 2008 daemon's floor is
the ``2008`` column.

Usage: python3 bench/bench_minimum.py [-m self,directed] [-s 101,102]
                                      [-w idle,random,turns,ramp] [-j 2] [--xenstore native|cli]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
from _sandbox import command_line  # noqa: E402

POLICIES = ("2008", "adaptive")
# workload -> the simulator's arguments for it
RUNS = {
    "idle": ["-w", "idle", "-g", "3", "-d", "60"],
    "random": ["-w", "random", "-g", "3", "-d", "60"],
    "turns": ["-w", "turns", "-g", "3", "-d", "60", "--host-mb", "3584"],
    "ramp": ["-w", "ramp", "-g", "2", "-d", "65", "--swap-mb", "0", "--ramp-start-s", "35"],
}


def run(mode: str, workload: str, seed: int, policy: str, backend: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "xenballoond.sim.host", "-m", mode, *RUNS[workload],
            "-s", str(seed), "--min-policy", policy, "--xenstore", backend, "--json"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"xenballoon-sim failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def figures(s: dict) -> dict[str, float]:
    rows = s["per_guest"]
    return {
        "back_end": s["given_back_mib"], "back_avg": s["avg_given_back_mib"],
        "lowest": sum(r["min_kb"] for r in rows) / len(rows) / 1024,
        "below_s": s["below_committed_s"],
        "swap": s["swapped_out_pages"] + s["swapped_in_pages"], "oom": s["oom_kills"],
    }


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--modes", default="self,directed", help="comma-separated, of self, "
                   "directed")
    p.add_argument("-s", "--seeds", default="101,102", help="comma-separated seeds")
    p.add_argument("-w", "--workloads", default=",".join(RUNS),
                   help="comma-separated, of " + ", ".join(RUNS))
    p.add_argument("-j", "--jobs", type=int, default=2, help="simulator runs at once")
    p.add_argument("--xenstore", default="native", choices=("native", "cli"))
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    workloads = args.workloads.split(",")
    modes = args.modes.split(",")
    for m in modes:
        if m not in ("self", "directed"):
            p.error(f"unknown mode {m!r}")
    for w in workloads:
        if w not in RUNS:
            p.error(f"unknown workload {w!r}")
    print(command_line())
    print(f"xenballoon-sim -m {args.modes}, seeds {seeds}, daemons' xenstore {args.xenstore}, "
          f"{os.cpu_count()} CPUs; means over the seeds, sums over the guests")
    jobs = [(m, w, s, pol) for m in modes for w in workloads for s in seeds for pol in POLICIES]
    with concurrent.futures.ThreadPoolExecutor(max(args.jobs, 1)) as pool:
        done = dict(zip(jobs, pool.map(lambda j: run(*j, args.xenstore), jobs)))
    head = (f"{'mode':<8} {'workload':<8} {'policy':<9} {'back end':>8} {'back avg':>8} {'lowest':>7} "
            f"{'below s':>8} {'swap pages':>10} {'OOM':>4}   per seed: back end / below s / OOM")
    print(head)
    for m in modes:
        for w in workloads:
            for pol in POLICIES:
                row(m, w, pol, [figures(done[(m, w, s, pol)]) for s in seeds])
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"CPU: {cpu.ru_utime + cpu.ru_stime:.0f} s for {len(jobs)} runs "
          "(the simulators, the daemons and their clients)")
    return 0


def row(m: str, w: str, pol: str, f: list[dict[str, float]]) -> None:
    per_seed = ", ".join(f"{x['back_end']}/{x['below_s']:g}/{x['oom']}" for x in f)
    print(f"{m:<8} {w:<8} {pol:<9} {mean([x['back_end'] for x in f]):>8.0f} "
          f"{mean([x['back_avg'] for x in f]):>8.0f} {mean([x['lowest'] for x in f]):>7.0f} "
          f"{mean([x['below_s'] for x in f]):>8.2f} {mean([x['swap'] for x in f]):>10.0f} "
          f"{mean([x['oom'] for x in f]):>4.1f}   {per_seed}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
