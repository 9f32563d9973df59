"""Balancing policies on the simulated host, same seeded workloads, same run.

    python3 bench/bench_balance.py [-d 60] [-g 3] [--host-mb 3584] [-s 1,2,3] [-j 4]
                                   [--plot FILE] [--no-cpu]

Runs ``xenballoon-sim -w turns`` (the guests take turns being busy, the busy
one needing more than its memory=) on a host with less memory than the sum
of the guests' maxmem, once per policy and seed:

* self 2008: every guest self-balloons, XENBALLOON_SELF_RESERVE_PCT=0;
* self ours: every guest self-balloons, the default reserve (10%);
* qmemman:   the real xenballoon-balancer as dom0 with qmemman's rules
             (bench/qmemman_ref.py through bench/_qmemman_balancer.py);
* ours:      the real xenballoon-balancer as dom0.

and prints, per policy, means over the seeds: seconds any guest spent with
MemTotal below Committed_AS (and each seed's), swap pages (out + in), host
memory free on average, target writes per guest per minute (dom0's xl
mem-set plus the daemons' balloon writes that moved the target), and the
time from a guest's demand rising above its balloon target to the target
covering it (spells per run, mean and worst).  Then the balancer's CPU per
second (one pass per second: stats parsing, the guest records with the rise
tracker, and the policy; not the simulator or the I/O) with 100 and 500
simulated guests.  The four policies of a seed run at the same time (-j), so
they share the machine's load; the simulator reports its step lag.

``--plot FILE`` draws the four policies of the first seed side by side
(xenballoon-sim --plot's panels, one column per policy, one scale per row).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, REPO)
sys.path.insert(0, BENCH)

import qmemman_ref  # noqa: E402
from xenballoond.dom0 import balance, guests  # noqa: E402
from xenballoond.dom0.stats import Published, make_row  # noqa: E402
from xenballoond.sim.plot import draw, series  # noqa: E402

MIB = 1024


POLICIES = ("self 2008", "self ours", "qmemman", "ours")


def sim_argv(policy: str, seed: int, opts: argparse.Namespace, qmemman_prog: str) -> list[str]:
    base = [sys.executable, "-m", "xenballoond.sim.host", "-w", "turns", "-g", str(opts.guests),
            "-d", str(opts.duration), "-s", str(seed), "--host-mb", str(opts.host_mb),
            "--tick", "0.1", "--json", "--xenstore", opts.xenstore]
    return base + {
        "self 2008": ["-m", "self", "--reserve-pct", "0"],
        "self ours": ["-m", "self"],
        "qmemman": ["-m", "balanced", "--balancer", qmemman_prog],
        "ours": ["-m", "balanced"],
    }[policy]


def run_policies(opts: argparse.Namespace) -> dict[tuple[str, int], dict]:
    """Every policy on every seed, ``opts.jobs`` runs at a time, seed by seed
    (so the policies of one seed share the machine's load)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    runs = [(p, seed) for seed in opts.seeds for p in POLICIES]
    results: dict[tuple[str, int], tuple[int, str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-balance-") as tmp:
        prog = os.path.join(tmp, "qmemman-balancer")
        with open(prog, "w") as f:
            f.write(f"#!/bin/sh\nexec {sys.executable} {BENCH}/_qmemman_balancer.py \"$@\"\n")
        os.chmod(prog, 0o755)
        for i in range(0, len(runs), opts.jobs):
            batch = runs[i:i + opts.jobs]
            procs = {run: subprocess.Popen(sim_argv(run[0], run[1], opts, prog), env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
                     for run in batch}
            for run, proc in procs.items():
                out, err = proc.communicate()
                results[run] = (proc.returncode, out, err)
    summaries = {}
    for (p, seed), (rc, out, err) in results.items():
        if rc != 0:
            raise SystemExit(f"{p} seed {seed}: xenballoon-sim exited {rc}: {err[-2000:]}")
        summaries[(p, seed)] = json.loads(out)
    return summaries


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def table(summaries: dict[tuple[str, int], dict], seeds: list[int]) -> str:
    """One row per policy: each figure's mean over the seeds, and the seconds
    below Committed_AS of each seed."""
    head = (f"{'policy':<10} {'below-CAS s':>11} {'(per seed)':<18} {'swap pages':>10} "
            f"{'free avg MiB':>12} {'writes/guest/min':>16} "
            f"{'demand>target: spells, mean/worst s':>36} {'lag s':>6}")
    lines = [head]
    for p in POLICIES:
        runs = [summaries[(p, seed)] for seed in seeds]
        below = [r["below_committed_s"] for r in runs]
        spells = [d for r in runs for g in r["per_guest"] for d in g["cover_delays_s"]]
        delay = (f"{len(spells) / len(runs):.1f}, {_mean(spells):.2f}/{max(spells):.2f}"
                 if spells else "0, -/-")
        lines.append(
            f"{p:<10} {_mean(below):>11.1f} {' '.join(f'{b:g}' for b in below):<18} "
            f"{_mean([r['swapped_out_pages'] + r['swapped_in_pages'] for r in runs]):>10.0f} "
            f"{_mean([r['host_free_avg_mib'] for r in runs]):>12.0f} "
            f"{_mean([r['target_writes_per_guest_min'] for r in runs]):>16.1f} "
            f"{delay:>36} {max(r['max_step_lag_s'] for r in runs):>6}")
    return "\n".join(lines) + "\n"


def plot(summaries: dict[tuple[str, int], dict], seed: int, opts: argparse.Namespace,
         path: str) -> None:
    """The policies of one seed side by side, into ``path``."""
    title = (f"bench_balance.py: xenballoon-sim -w turns -g {opts.guests} -d {opts.duration:g} "
             f"-s {seed} --host-mb {opts.host_mb} --tick 0.1, one column per policy")
    draw.draw(series.compare_figure([(p, summaries[(p, seed)]) for p in POLICIES], title), path)


def synthetic_host(n: int, t: int) -> list[tuple[guests.Domain, guests.Dom0Keys, Published]]:
    out = []
    for d in range(1, n + 1):
        commit_kb = (200 + (d * 37 + t * 13) % 900) * MIB
        meminfo = (f"MemTotal: {960 * MIB} kB\nMemFree: 1000 kB\nCommitted_AS: {commit_kb} kB\n"
                   + "".join(f"Field{i}: {i} kB\n" for i in range(40)))
        out.append((guests.Domain(d, f"guest{d}", 1024 * MIB),
                    guests.Dom0Keys(str(2048 * MIB), str(1024 * MIB), "0", "1"),
                    Published(d, selftarget=str(1000 * MIB), meminfo=meminfo,
                              vmstat="pswpin 0\npswpout 0\npgpgin 1\npgpgout 2\n",
                              uptime=f"{1000 + t}.00 {500 + t}.00", vcpus=2)))
    return out


def policy_cpu_per_pass(n: int, policy=balance.balance, passes: int = 20) -> float:
    """CPU seconds of one pass (stats parsing, records, policy) for n guests."""
    hosts = [synthetic_host(n, t) for t in range(passes)]
    history = guests.History(5, 10.0)
    start = time.process_time()
    for t, host in enumerate(hosts):  # one pass a second, as Balancer.look() makes them
        views = [history.view(domain, keys, make_row(pub), pub.uptime, float(t), listed=(),
                              marked_uncooperative=False)
                 for domain, keys, pub in host]
        policy([v.state for v in views], balance.HostState(64 * MIB * n, 64 * MIB))
    return (time.process_time() - start) / passes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--duration", type=float, default=60.0)
    ap.add_argument("-g", "--guests", type=int, default=3)
    ap.add_argument("--host-mb", type=int, default=3584,
                    help="host memory for guests (default 3584: 3 x 1024 + 512, maxmem 3 x 2048)")
    ap.add_argument("-s", "--seeds", default="1,2,3",
                    help="comma-separated seeds, each run with every policy (default 1,2,3)")
    ap.add_argument("-j", "--jobs", type=int, default=4,
                    help="simulations at a time (default 4: the four policies of one seed)")
    ap.add_argument("--xenstore", choices=("cli", "native"), default="native")
    ap.add_argument("--no-sim", action="store_true", help="only the CPU figures")
    ap.add_argument("--no-cpu", action="store_true", help="no CPU figures")
    ap.add_argument("--plot", metavar="FILE",
                    help="draw the policies of the first seed side by side into FILE (.svg or "
                         f".png; needs matplotlib: {draw.INSTALL_HINT})")
    opts = ap.parse_args(argv)
    opts.seeds = [int(x) for x in opts.seeds.split(",") if x.strip()]
    if opts.plot is not None:
        if opts.no_sim:
            ap.error("--plot draws the simulations: not with --no-sim")
        try:
            draw.file_format(opts.plot)
            draw.require_matplotlib()  # now, not after the runs
        except (ValueError, draw.PlotUnavailable) as exc:
            ap.error(f"--plot: {exc}")
    if not opts.no_sim:
        summaries = run_policies(opts)
        print(f"xenballoon-sim -w turns -g {opts.guests} -d {opts.duration:g} "
              f"-s {','.join(map(str, opts.seeds))} --host-mb {opts.host_mb} --tick 0.1 "
              f"(memory=1024 MiB, maxmem=2048 MiB); means over the seeds")
        sys.stdout.write(table(summaries, opts.seeds))
        if opts.plot is not None:
            plot(summaries, opts.seeds[0], opts, opts.plot)
            print(f"plotted seed {opts.seeds[0]} to {opts.plot}")
    if opts.no_cpu:
        return 0
    for n in (100, 500):
        for name, policy in (("ours", balance.balance), ("qmemman", qmemman_ref.balance)):
            cpu_s = policy_cpu_per_pass(n, policy)
            print(f"balancer CPU, {name:<7} policy + guest-state building, {n} guests: "
                  f"{cpu_s * 1000:.1f} ms per pass = {cpu_s * 100:.1f}% of a CPU at one pass "
                  "a second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
