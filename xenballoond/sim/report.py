"""What ``xenballoon-sim`` prints: the live table and the closing summary,
as pure functions of plain records."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

KIB_PER_MIB = 1024


@dataclass(frozen=True)
class GuestRow:
    """One guest at one instant, or at the end (then the totals matter)."""

    domid: int
    name: str
    balloon: str  # sysfs | proc
    policy: str  # self | directed
    boot_kb: int
    current_kb: int
    target_kb: int  # the driver's target
    memtotal_kb: int
    committed_kb: int
    min_kb: int
    avg_kb: int
    below_committed_s: float
    worst_deficit_kb: int
    swapped_in_pages: int
    swapped_out_pages: int
    oom_kills: int
    target_writes: int
    daemon_restarts: int
    daemon_pid: int | None
    dom0_target_sets: int = 0
    target_moves: int = 0  # the daemon's writes that moved the driver's target
    cover_delays_s: tuple[float, ...] = ()  # target below Committed_AS: each spell's length


def _mib(kb: int) -> int:
    return kb // KIB_PER_MIB


_ROW = "{:>3} {:<8} {:<5} {:<8} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7} {:>6} {:>7} {:>4}"


def table(t_s: float, mode: str, seed: int, rows: Sequence[GuestRow],
          events: Sequence[str] = ()) -> str:
    """The live view: one line per guest, sizes in MiB."""
    given_kb = sum(r.boot_kb - r.current_kb for r in rows)
    lines = [f"xenballoon-sim  t={t_s:6.1f}s  mode={mode}  seed={seed}  "
             f"guests={len(rows)}  given back now: {_mib(given_kb)} MiB",
             _ROW.format("dom", "name", "drv", "policy", "mem", "target", "MemTotal",
                         "Commit", "below-s", "deficit", "swpin", "swpout", "rst")]
    for r in rows:
        lines.append(_ROW.format(
            r.domid, r.name[:8], r.balloon, r.policy, _mib(r.current_kb), _mib(r.target_kb),
            _mib(r.memtotal_kb), _mib(r.committed_kb), f"{r.below_committed_s:.1f}",
            _mib(max(r.committed_kb - r.memtotal_kb, 0)), r.swapped_in_pages,
            r.swapped_out_pages, r.daemon_restarts))
    lines.extend(f"  dom0: {e}" for e in events)
    return "\n".join(lines) + "\n"


def summary(*, mode: str, seed: int, tick_s: float, simulated_s: float, wall_s: float,
            interrupted: bool, rows: Sequence[GuestRow], dom0_actions: dict[str, int],
            max_lag_s: float, work_dir: str | None,
            cpu_s: dict[str, float | None] | None = None,
            host_free_avg_kb: int | None = None, workload: str | None = None,
            timeline: dict[str, object] | None = None) -> dict[str, object]:
    """The machine-readable summary (``--json`` prints exactly this).  ``timeline``:
    the run step by step (sim/timeline.py), what ``--plot`` draws."""
    given_kb = sum(r.boot_kb - r.current_kb for r in rows)
    avg_given_kb = sum(r.boot_kb - r.avg_kb for r in rows)
    below_s = sum(r.below_committed_s for r in rows)
    restarts = sum(r.daemon_restarts for r in rows)
    return {
        "mode": mode, "workload": workload, "seed": seed, "tick_s": tick_s, "guests": len(rows),
        "simulated_s": round(simulated_s, 3), "wall_s": round(wall_s, 3),
        "interrupted": interrupted,
        "given_back_mib": _mib(given_kb),
        "avg_given_back_mib": _mib(avg_given_kb),
        "below_committed_s": round(below_s, 3),
        "swapped_out_pages": sum(r.swapped_out_pages for r in rows),
        "swapped_in_pages": sum(r.swapped_in_pages for r in rows),
        "oom_kills": sum(r.oom_kills for r in rows),
        "daemon_restarts": restarts,
        "safe": below_s == 0 and sum(r.oom_kills for r in rows) == 0,
        "problems": problems(rows),
        "dom0_actions": dict(dom0_actions),
        "host_free_avg_mib": None if host_free_avg_kb is None else _mib(host_free_avg_kb),
        "target_writes_per_guest_min": _per_guest_min(
            sum(r.target_moves + r.dom0_target_sets for r in rows), len(rows), simulated_s),
        "dom0_target_sets": sum(r.dom0_target_sets for r in rows),
        "cover_delay_mean_s": _mean([d for r in rows for d in r.cover_delays_s]),
        "cover_delay_max_s": max((d for r in rows for d in r.cover_delays_s), default=None),
        "max_step_lag_s": round(max_lag_s, 3),
        # the simulator's own process (xenstored thread included), daemons excluded
        "host_cpu_s": (cpu_s or {}).get("host_cpu_s"),
        "xenstored_cpu_s": (cpu_s or {}).get("xenstored_cpu_s"),
        "work_dir": work_dir,
        "per_guest": [dict(asdict(r), below_committed_s=round(r.below_committed_s, 3),
                           cover_delays_s=list(r.cover_delays_s))
                      for r in rows],
        "timeline": timeline,
    }


def _per_guest_min(count: int, guests: int, simulated_s: float) -> float | None:
    return round(count / guests / (simulated_s / 60), 2) if guests and simulated_s else None


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def summary_text(s: dict[str, object]) -> str:
    """The summary for people."""
    actions: dict[str, int] = s["dom0_actions"]  # type: ignore[assignment]
    lines = [
        f"xenballoon-sim summary: mode={s['mode']} seed={s['seed']} guests={s['guests']} "
        f"simulated {s['simulated_s']}s{' (interrupted)' if s['interrupted'] else ''}",
        f"  memory given back: {s['given_back_mib']} MiB at the end, "
        f"{s['avg_given_back_mib']} MiB on average",
        f"  time below Committed_AS: {s['below_committed_s']} s (must be 0)",
        f"  swap: {s['swapped_out_pages']} pages out, {s['swapped_in_pages']} in; "
        f"OOM kills: {s['oom_kills']}",
        f"  daemon restarts: {s['daemon_restarts']}",
        "  dom0: " + ", ".join(f"{k} {v}" for k, v in actions.items()),
        f"  host free on average: {s['host_free_avg_mib']} MiB; target writes "
        f"{s['target_writes_per_guest_min']} per guest per minute; demand above the target "
        f"for {s['cover_delay_mean_s']} s on average (worst {s['cover_delay_max_s']} s)",
    ]
    per_guest = s["per_guest"]
    assert isinstance(per_guest, list)
    for g in per_guest:
        lines.append(
            f"  dom{g['domid']} {g['name']}: {_mib(g['boot_kb'])} -> {_mib(g['current_kb'])} MiB "
            f"(min {_mib(g['min_kb'])}, avg {_mib(g['avg_kb'])}), below Committed_AS "
            f"{g['below_committed_s']} s (worst {_mib(g['worst_deficit_kb'])} MiB), "
            f"swap out {g['swapped_out_pages']} pages, restarts {g['daemon_restarts']}")
    if s["work_dir"]:
        lines.append(f"  kept: {s['work_dir']}")
    found = list(s["problems"])  # type: ignore[call-overload]
    lines.append("  verdict: " + ("OK" if not found else "NOT OK: " + "; ".join(found)))
    return "\n".join(lines) + "\n"


def problems(rows: Sequence[GuestRow]) -> list[str]:
    """What went wrong in a run, in words; empty when nothing did."""
    found = []
    short = [r for r in rows if r.below_committed_s > 0]
    if short:
        worst = max(r.worst_deficit_kb for r in short)
        found.append(f"{len(short)} guest(s) had MemTotal below Committed_AS "
                     f"(worst {_mib(worst)} MiB short)")
    if any(r.oom_kills for r in rows):
        found.append(f"{sum(r.oom_kills for r in rows)} OOM kill(s)")
    if any(r.daemon_restarts for r in rows):
        found.append(f"daemons exited {sum(r.daemon_restarts for r in rows)} time(s): "
                     "see var/log/xenballoond.log in the guests (--keep)")
    # Only a self-ballooning daemon must set targets: a directed one writes dom0's target, which
    # the kernel's own watch on memory/target has usually applied already, so it may write none.
    selfish = [r for r in rows if r.policy == "self"]
    if selfish and all(r.target_writes == 0 for r in selfish):
        found.append("no self-ballooning daemon ever set a balloon target")
    return found
