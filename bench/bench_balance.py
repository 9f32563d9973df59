"""Balancing policies on the simulated host, same seeded workloads, same run.

    python3 bench/bench_balance.py [-d 60] [-g 3] [--host-mb 3584] [-s 1] [--serial]

Runs ``xenballoon-sim -w turns`` (the guests take turns being busy, the busy
one needing more than its memory=) on a host with less memory than the sum
of the guests' maxmem, once per policy:

* self 2008: every guest self-balloons, XENBALLOON_SELF_RESERVE_PCT=0;
* self ours: every guest self-balloons, the default reserve (10%);
* qmemman:   the real xenballoon-balancer as dom0 with qmemman's rules
             (bench/qmemman_ref.py through bench/_qmemman_balancer.py);
* ours:      the real xenballoon-balancer as dom0.

and prints, per policy: seconds any guest spent with MemTotal below
Committed_AS, swap pages (out + in), host memory free on average, target
writes per guest per minute (the daemons' balloon writes plus dom0's xl
mem-set), and how long a guest's demand stayed above its balloon target
(mean and worst).  Then the balancer's CPU per second (one pass per second:
the guest-state building and the policy, not the simulator or the I/O) with
100 and 500 simulated guests.  Runs in parallel by default (--serial: one
after the other; the simulator reports its step lag when the machine is slow).
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

from xenballoond.dom0 import balance, guests  # noqa: E402
from xenballoond.dom0.stats import Published, make_row  # noqa: E402

MIB = 1024


def sim_argv(policy: str, opts: argparse.Namespace, qmemman_prog: str) -> list[str]:
    base = [sys.executable, "-m", "xenballoond.sim.host", "-w", "turns", "-g", str(opts.guests),
            "-d", str(opts.duration), "-s", str(opts.seed), "--host-mb", str(opts.host_mb),
            "--tick", "0.1", "--json", "--xenstore", opts.xenstore]
    return base + {
        "self 2008": ["-m", "self", "--reserve-pct", "0"],
        "self ours": ["-m", "self"],
        "qmemman": ["-m", "balanced", "--balancer", qmemman_prog],
        "ours": ["-m", "balanced"],
    }[policy]


def run_policies(opts: argparse.Namespace) -> dict[str, dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="bench-balance-") as tmp:
        prog = os.path.join(tmp, "qmemman-balancer")
        with open(prog, "w") as f:
            f.write(f"#!/bin/sh\nexec {sys.executable} {BENCH}/_qmemman_balancer.py \"$@\"\n")
        os.chmod(prog, 0o755)
        policies = ["self 2008", "self ours", "qmemman", "ours"]
        procs = {}
        results = {}
        for p in policies:
            procs[p] = subprocess.Popen(sim_argv(p, opts, prog), env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
            if opts.serial:
                out, err = procs[p].communicate()
                results[p] = (procs[p].returncode, out, err)
        for p in policies:
            if p not in results:
                out, err = procs[p].communicate()
                results[p] = (procs[p].returncode, out, err)
    summaries = {}
    for p, (rc, out, err) in results.items():
        if rc != 0:
            raise SystemExit(f"{p}: xenballoon-sim exited {rc}: {err[-2000:]}")
        summaries[p] = json.loads(out)
    return summaries


def table(summaries: dict[str, dict]) -> str:
    head = (f"{'policy':<10} {'below-CAS s':>11} {'swap pages':>10} {'free avg MiB':>12} "
            f"{'writes/guest/min':>16} {'demand>target s (mean/worst)':>29} {'lag s':>6}")
    lines = [head]
    for p, s in summaries.items():
        delay = f"{s['cover_delay_mean_s']}/{s['cover_delay_max_s']}"
        lines.append(f"{p:<10} {s['below_committed_s']:>11} "
                     f"{s['swapped_out_pages'] + s['swapped_in_pages']:>10} "
                     f"{s['host_free_avg_mib']:>12} {s['target_writes_per_guest_min']:>16} "
                     f"{delay:>29} {s['max_step_lag_s']:>6}")
    return "\n".join(lines) + "\n"


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


def policy_cpu_per_pass(n: int, passes: int = 20) -> float:
    """CPU seconds of one pass (stats parsing, records, balance) for n guests."""
    hosts = [synthetic_host(n, t) for t in range(passes)]
    fresh = guests.Freshness(5)
    start = time.process_time()
    for t, host in enumerate(hosts):
        views = []
        for domain, keys, pub in host:
            ok = fresh.observe(domain.domid, guests.uptime_cs(pub.uptime))
            views.append(guests.guest_view(domain, keys, make_row(pub), listed=(), fresh=ok,
                                           marked_uncooperative=False))
        balance.balance([v.state for v in views], balance.HostState(64 * MIB * n, 64 * MIB))
    return (time.process_time() - start) / passes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--duration", type=float, default=60.0)
    ap.add_argument("-g", "--guests", type=int, default=3)
    ap.add_argument("--host-mb", type=int, default=3584,
                    help="host memory for guests (default 3584: 3 x 1024 + 512, maxmem 3 x 2048)")
    ap.add_argument("-s", "--seed", type=int, default=1)
    ap.add_argument("--xenstore", choices=("cli", "native"), default="native")
    ap.add_argument("--serial", action="store_true")
    ap.add_argument("--no-sim", action="store_true", help="only the CPU figures")
    opts = ap.parse_args()
    if not opts.no_sim:
        summaries = run_policies(opts)
        print(f"xenballoon-sim -w turns -g {opts.guests} -d {opts.duration:g} -s {opts.seed} "
              f"--host-mb {opts.host_mb} --tick 0.1 (memory=1024 MiB, maxmem=2048 MiB)")
        sys.stdout.write(table(summaries))
    for n in (100, 500):
        cpu_s = policy_cpu_per_pass(n)
        print(f"balancer policy + guest-state building, {n} guests: {cpu_s * 1000:.1f} ms CPU "
              f"per pass = {cpu_s * 100:.1f}% of a CPU at one pass a second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
