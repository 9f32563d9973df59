"""The monitor's rows in Prometheus' text exposition format (0.0.4), for
node_exporter's textfile collector.

One metric family per column of the table, in base units (bytes, seconds), one
sample per guest labelled ``domid`` (and ``name`` when the caller knows it),
and the host's free memory.  A cell that is not published ("-") or not a number
that fits ("?") has no sample: Prometheus reads a missing sample as "unknown",
never as 0.  ``xenballoon_guest_stats_published`` tells a guest with no
xenballoond (0) from one whose numbers are all there (1).

No timestamps (the textfile collector refuses them: the file's mtime, exported
as ``node_textfile_mtime_seconds``, tells its age).  ``write_textfile`` replaces
the file in one rename, so the collector never reads half of it.
"""
from __future__ import annotations

from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

from ..atomicfile import replace_file
from .hostinfo import FreeMemory
from .stats import Row

PREFIX = "xenballoon_"
KIB = 1024
MIB = 1024 * 1024

# (metric name, type, Row field, to base units: multiply by, then divide by a power of 10,
# help), in the table's column order.  pswpin/pswpout count pages, pgpgin/pgpgout kB,
# active_cs 1/100 s.
COLUMNS: Tuple[Tuple[str, str, str, int, int, str], ...] = (
    ("guest_memory_total_bytes", "gauge", "mem_kb", KIB, 1,
     "The guest's MemTotal (/proc/meminfo), as its xenballoond last published it."),
    ("guest_target_bytes", "gauge", "tgt_kb", KIB, 1,
     "The balloon target the guest's xenballoond last set (memory/selftarget)."),
    ("guest_committed_as_bytes", "gauge", "commit_kb", KIB, 1,
     "The guest's Committed_AS (/proc/meminfo)."),
    ("guest_swap_in_pages_total", "counter", "swapin", 1, 1,
     "Pages the guest swapped in (pswpin, /proc/vmstat)."),
    ("guest_swap_out_pages_total", "counter", "swapout", 1, 1,
     "Pages the guest swapped out (pswpout, /proc/vmstat)."),
    ("guest_paged_in_bytes_total", "counter", "pgin", KIB, 1,
     "Bytes the guest paged in from disk (pgpgin, /proc/vmstat)."),
    ("guest_paged_out_bytes_total", "counter", "pgout", KIB, 1,
     "Bytes the guest paged out to disk (pgpgout, /proc/vmstat)."),
    ("guest_active_seconds_total", "counter", "active_cs", 1, 100,
     "The guest's uptime minus its idle time per online vCPU (/proc/uptime)."),
)
PUBLISHED = ("guest_stats_published", "gauge",
             "1 if the guest published any statistics (a xenballoond runs there), else 0.")
HOST_FREE = ("host_free_memory_bytes", "gauge",
             "Free memory of the Xen host (free_memory of xl info); absent when unknown.")


def _escape_label(value: str) -> str:
    # The exposition format's three escapes; anything else is taken literally.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(row: Row, names: Mapping[int, str]) -> str:
    pairs = [("domid", str(row.domid))]
    name = names.get(row.domid)
    if name is not None:
        pairs.append(("name", name))
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in pairs) + "}"


def _value(raw: int, multiply: int, divide: int) -> str:
    """raw * multiply / divide as an exact decimal (divide is a power of 10): no float
    rounding, no 1e+05 notation."""
    value = raw * multiply
    if divide == 1:
        return str(value)
    digits = len(str(divide)) - 1
    return f"{value // divide}.{value % divide:0{digits}d}"


def _family(lines: List[str], name: str, kind: str, help_text: str,
            samples: Iterable[Tuple[str, str]]) -> None:
    samples = list(samples)
    if not samples:
        return
    full = PREFIX + name
    lines.append(f"# HELP {full} {help_text}")
    lines.append(f"# TYPE {full} {kind}")
    lines.extend(f"{full}{labels} {value}" for labels, value in samples)


def render_metrics(rows: Sequence[Row], free: Optional[FreeMemory] = None,
                   names: Optional[Mapping[int, str]] = None) -> str:
    """The text a .prom file holds: every family with at least one sample."""
    names = names or {}
    labelled = [(row, _labels(row, names)) for row in rows]
    lines: List[str] = []
    _family(lines, PUBLISHED[0], PUBLISHED[1], PUBLISHED[2],
            ((labels, "1" if row.published else "0") for row, labels in labelled))
    for name, kind, field, multiply, divide, help_text in COLUMNS:
        _family(lines, name, kind, help_text,
                ((labels, _value(getattr(row, field), multiply, divide))
                 for row, labels in labelled
                 if row.published and field not in row.invalid
                 and getattr(row, field) is not None))
    if free is not None and free.mb is not None:
        _family(lines, HOST_FREE[0], HOST_FREE[1], HOST_FREE[2], [("", str(free.mb * MIB))])
    return "\n".join(lines) + "\n" if lines else ""


def write_textfile(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (the temporary file's name
    does not end in .prom, so the collector skips it), fsynced, mode 0644."""
    replace_file(path, text, fsync=True)


__all__ = ["COLUMNS", "render_metrics", "write_textfile"]
