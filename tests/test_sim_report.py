"""The simulator's table and summary, and its /proc CPU reading."""
from __future__ import annotations

import json

from xenballoond.sim import cpu, report

MIB = 1024


def row(domid: int, **kw) -> report.GuestRow:
    base = dict(domid=domid, name=f"guest{domid}", balloon="sysfs", policy="self",
                boot_kb=1024 * MIB, current_kb=600 * MIB, target_kb=600 * MIB,
                memtotal_kb=552 * MIB, committed_kb=500 * MIB, min_kb=550 * MIB,
                avg_kb=700 * MIB, below_committed_s=0.0, worst_deficit_kb=0,
                swapped_in_pages=0, swapped_out_pages=0, oom_kills=0, target_writes=9,
                daemon_restarts=0, daemon_pid=1234)
    base.update(kw)
    return report.GuestRow(**base)


def summarise(rows: list[report.GuestRow]) -> dict[str, object]:
    return report.summary(mode="mixed", seed=1, tick_s=0.25, simulated_s=60.0, wall_s=60.1,
                          interrupted=False, rows=rows,
                          dom0_actions={"mem-set": 3, "mem-max": 1, "selfballoon": 4},
                          max_lag_s=0.0, work_dir=None,
                          cpu_s={"host_cpu_s": 1.5, "xenstored_cpu_s": 0.2})


def test_summary_totals_worked_by_hand() -> None:
    s = summarise([row(1), row(2, current_kb=1000 * MIB, avg_kb=1024 * MIB,
                               below_committed_s=2.5, worst_deficit_kb=40 * MIB,
                               swapped_out_pages=10, daemon_restarts=1)])
    assert s["given_back_mib"] == 424 + 24
    assert s["avg_given_back_mib"] == 324 + 0
    assert s["below_committed_s"] == 2.5 and s["daemon_restarts"] == 1
    assert s["safe"] is False and s["host_cpu_s"] == 1.5
    assert json.loads(json.dumps(s)) == s  # plain JSON
    text = report.summary_text(s)
    assert "time below Committed_AS: 2.5 s (must be 0)" in text
    assert "dom2 guest2: 1024 -> 1000 MiB" in text and "restarts 1" in text
    assert text.rstrip().endswith(
        "verdict: NOT OK: 1 guest(s) had MemTotal below Committed_AS (worst 40 MiB short); "
        "daemons exited 1 time(s): see var/log/xenballoond.log in the guests (--keep)")


def test_target_writes_are_the_moves_of_the_target() -> None:
    """dom0's xl mem-set plus the daemons' writes that moved the driver's
    target, per guest per minute: (4 + 2) + (0 + 6) over 2 guests in 1 min."""
    s = summarise([row(1, target_writes=9, target_moves=4, dom0_target_sets=2),
                   row(2, target_writes=9, target_moves=0, dom0_target_sets=6)])
    assert s["target_writes_per_guest_min"] == 6.0
    assert s["dom0_target_sets"] == 8


def test_safe_run() -> None:
    s = summarise([row(1)])
    assert s["safe"] is True and s["problems"] == []
    assert report.summary_text(s).rstrip().endswith("verdict: OK")
    idle = summarise([row(1, target_writes=0)])
    assert idle["problems"] == ["no self-ballooning daemon ever set a balloon target"]
    # directed: the kernel took dom0's targets before the daemon's tick, nothing to write
    assert summarise([row(1, policy="directed", target_writes=0)])["problems"] == []


def test_table_has_one_line_per_guest() -> None:
    text = report.table(12.0, "mixed", 1, [row(1), row(2, memtotal_kb=480 * MIB)],
                        ["t=3.0s xl mem-set guest2 512m"])
    lines = text.splitlines()
    assert lines[0].startswith("xenballoon-sim  t=  12.0s  mode=mixed")
    assert "given back now: 848 MiB" in lines[0]
    assert lines[1].split()[:4] == ["dom", "name", "drv", "policy"]
    assert lines[2].split()[:8] == ["1", "guest1", "sysfs", "self", "600", "600", "552", "500"]
    assert lines[3].split()[9] == "20"  # deficit: Committed_AS 500 - MemTotal 480
    assert lines[4] == "  dom0: t=3.0s xl mem-set guest2 512m"


def test_stat_cpu_with_an_awkward_command_name() -> None:
    stat = ("4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
            f"{3 * cpu.CLK_TCK} {cpu.CLK_TCK // 2} 7 8 20 0 1 0 1 1 1")
    assert cpu.parse_stat_cpu_s(stat) == 3.5


def test_own_cpu_is_readable() -> None:
    assert cpu.cpu_s() is not None and cpu.cpu_s() >= 0
    assert cpu.thread_cpu_s("MainThread") is not None
    assert cpu.thread_cpu_s("no such thread") is None
