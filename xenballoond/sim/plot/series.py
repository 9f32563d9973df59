"""What a plot of simulator runs shows, as plain data: a pure function of the
summaries ``xenballoon-sim --json`` prints (their ``"timeline"``).

A figure is a grid of panels: one column per run (one run for
``xenballoon-sim --plot``, one per policy for ``bench_balance.py --plot``), a
row per guest and a last row for the host.  Every series carries a ``gid``,
the id its artist gets in an SVG: ``<panel>-<quantity>``, the panel being
``dom<id>`` or ``host``, prefixed with the column's name when there are
several.  Values are MiB (the summary's kB / 1024), times seconds.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

KIB_PER_MIB = 1024
Y_STEP_MIB = 256  # the y axis ends on a multiple of this, above the highest value

# quantity -> legend label, for the lines of a guest's panel
GUEST_LINES = (
    ("size", "current_kb", "size"),
    ("target", "target_kb", "balloon target"),
    ("committed", "committed_kb", "Committed_AS"),
    ("dom0-target", "dom0_target_kb", "dom0's target"),
)
HOST_LINE = ("free", "host free")
SWAP = ("swap", "swap in/out")
OOM = ("oom", "OOM kill")
UNCOVERED = ("uncovered", "Committed_AS > target")


@dataclass(frozen=True)
class Line:
    gid: str
    quantity: str
    label: str
    t_s: tuple[float, ...]
    mib: tuple[float | None, ...]  # None: no value at that instant (a gap)


@dataclass(frozen=True)
class Marks:
    """Instants something happened: swap traffic, an OOM kill."""

    gid: str
    quantity: str
    label: str
    t_s: tuple[float, ...]


@dataclass(frozen=True)
class Spans:
    """Intervals, (start, end) in seconds."""

    gid: str
    quantity: str
    label: str
    spans_s: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Panel:
    gid: str
    title: str
    lines: tuple[Line, ...]
    marks: tuple[Marks, ...]
    spans: tuple[Spans, ...]
    t_max_s: float
    y_max_mib: float


@dataclass(frozen=True)
class Figure:
    title: str
    rows: tuple[tuple[Panel, ...], ...]  # rows[i][j]: row i (a guest, then the host), column j


def _mib(kb: int | None) -> float | None:
    return None if kb is None else kb / KIB_PER_MIB


def _rises(t_s: Sequence[float], *counters: Sequence[int]) -> tuple[float, ...]:
    """The instants at which any of the running totals went up."""
    return tuple(t_s[i] for i in range(1, len(t_s))
                 if any(c[i] > c[i - 1] for c in counters))


def _y_max_mib(panels: Sequence[Panel]) -> float:
    top = max((v for p in panels for line in p.lines for v in line.mib if v is not None),
              default=0.0)
    return float(max(1, math.ceil(top / Y_STEP_MIB + 0.05)) * Y_STEP_MIB)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _timeline(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    timeline = summary.get("timeline")
    if not isinstance(timeline, Mapping) or not timeline.get("t_s"):
        raise ValueError("the summary has no timeline to plot (xenballoon-sim records one "
                         "for every run that took a step)")
    return timeline


def _guest_title(guest: Mapping[str, Any]) -> str:
    spells_s = [end - start for start, end in guest["uncovered_s"]]
    cover = (f"Committed_AS above target {len(spells_s)}x, longest {max(spells_s):.2f} s"
             if spells_s else "Committed_AS never above target")
    return f"dom{guest['domid']} {guest['name']}: {cover}"


def guest_panel(t_s: Sequence[float], guest: Mapping[str, Any], prefix: str = "") -> Panel:
    """One guest's panel; its y axis is set with the others' (``_grid``)."""
    gid = f"{prefix}dom{guest['domid']}"
    lines = tuple(Line(f"{gid}-{quantity}", quantity, label, tuple(t_s),
                       tuple(_mib(v) for v in guest[key]))
                  for quantity, key, label in GUEST_LINES)
    marks = (Marks(f"{gid}-{SWAP[0]}", SWAP[0], SWAP[1],
                   _rises(t_s, guest["swapped_out_pages"], guest["swapped_in_pages"])),
             Marks(f"{gid}-{OOM[0]}", OOM[0], OOM[1], _rises(t_s, guest["oom_kills"])))
    spans = (Spans(f"{gid}-{UNCOVERED[0]}", UNCOVERED[0], UNCOVERED[1],
                   tuple((float(a), float(b)) for a, b in guest["uncovered_s"])),)
    return Panel(gid, _guest_title(guest), lines, marks, spans, float(t_s[-1]), 0.0)


def host_panel(t_s: Sequence[float], free_kb: Sequence[int], prefix: str = "") -> Panel:
    gid = f"{prefix}host"
    line = Line(f"{gid}-{HOST_LINE[0]}", HOST_LINE[0], HOST_LINE[1], tuple(t_s),
                tuple(_mib(v) for v in free_kb))
    return Panel(gid, "host: free memory", (line,), (), (), float(t_s[-1]), 0.0)


def run_columns(summary: Mapping[str, Any], prefix: str = "") -> list[Panel]:
    """One run's panels, top to bottom: each guest, then the host."""
    timeline = _timeline(summary)
    t_s = timeline["t_s"]
    return ([guest_panel(t_s, g, prefix) for g in timeline["guests"]]
            + [host_panel(t_s, timeline["host_free_kb"], prefix)])


def _grid(columns: Sequence[Sequence[Panel]],
          titles: Sequence[str] | None) -> tuple[tuple[Panel, ...], ...]:
    """Columns into rows, every guest panel on one y scale, every host panel on another,
    so that sizes compare across guests and runs at a glance."""
    if len({len(c) for c in columns}) != 1:
        raise ValueError("the runs to compare have different numbers of guests")
    guests_max = _y_max_mib([p for c in columns for p in c[:-1]])
    host_max = _y_max_mib([c[-1] for c in columns])
    rows = []
    for i in range(len(columns[0])):
        row = []
        for j, column in enumerate(columns):
            panel = replace(column[i],
                            y_max_mib=host_max if i == len(column) - 1 else guests_max)
            if titles is not None:
                panel = replace(panel, title=f"{titles[j]} | {panel.title}")
            row.append(panel)
        rows.append(tuple(row))
    return tuple(rows)


def run_figure(summary: Mapping[str, Any]) -> Figure:
    """``xenballoon-sim --plot``: one run, one column."""
    title = (f"xenballoon-sim -m {summary['mode']} -w {summary.get('workload')} "
             f"-s {summary['seed']}: {summary['guests']} guests, {summary['simulated_s']:g} s")
    return Figure(title, _grid([run_columns(summary)], None))


def compare_figure(runs: Sequence[tuple[str, Mapping[str, Any]]], title: str) -> Figure:
    """``bench_balance.py --plot``: one column per (policy, summary), side by side."""
    if not runs:
        raise ValueError("no runs to compare")
    columns = [run_columns(summary, f"{_slug(name)}-") for name, summary in runs]
    return Figure(title, _grid(columns, [name for name, _ in runs]))
