"""The monitor's output: the original's table, one fixed-width template for the
header and every row (so ``watch -d`` highlights only values that changed), and
the same rows as JSON.  Only parsed numbers reach the screen, never guest text."""
from __future__ import annotations

import json
from typing import Iterable, Sequence

from .hostinfo import FreeMemory
from .stats import (ACTIVE_INT_DIGITS, KB_DIGITS, PAGING_DIGITS, SWAP_DIGITS, FIELDS,
                            Row)

ID_DIGITS = 5  # domids stop at 0x7FEF
# (header, Row field, width): the original's columns, in its order.
COLUMNS = (
    ("id", "domid", ID_DIGITS),
    ("mem-kb", "mem_kb", KB_DIGITS),
    ("tgt-kb", "tgt_kb", KB_DIGITS),
    ("commit", "commit_kb", KB_DIGITS),
    ("swapin", "swapin", SWAP_DIGITS),
    ("swapout", "swapout", SWAP_DIGITS),
    ("pgin", "pgin", PAGING_DIGITS),
    ("pgout", "pgout", PAGING_DIGITS),
    ("active(sec)", "active_cs", ACTIVE_INT_DIGITS + 3),
)
TEMPLATE = " ".join(f"{{:>{width}}}" for _, _, width in COLUMNS)
NOT_PUBLISHED = "-"
INVALID = "?"
NO_STATS = "no stats published"
NO_DOMAIN = "no such domain"


def header() -> str:
    return TEMPLATE.format(*(title for title, _, _ in COLUMNS))


def _cell(row: Row, name: str) -> str:
    if name == "domid":
        return str(row.domid)
    if name in row.invalid:
        return INVALID
    value = getattr(row, name)
    if value is None:
        return NOT_PUBLISHED
    if name == "active_cs":
        return f"{value // 100}.{value % 100:02d}"
    return str(value)


def row_line(row: Row) -> str:
    if not row.published:
        return f"{row.domid:>{ID_DIGITS}} {NO_STATS}"
    return TEMPLATE.format(*(_cell(row, name) for _, name, _ in COLUMNS))


def missing_line(domid: int) -> str:
    return f"{domid:>{ID_DIGITS}} {NO_DOMAIN}"


def free_line(free: FreeMemory) -> str:
    if free.mb is None:
        return f"Free memory: unknown ({free.why})" if free.why else "Free memory: unknown"
    return f"Free memory: {free.mb} MB"


def render_text(rows: Sequence[Row], free: FreeMemory, missing: Iterable[int] = ()) -> str:
    lines = [header()]
    by_id = [(row.domid, row_line(row)) for row in rows]
    by_id += [(domid, missing_line(domid)) for domid in missing]
    lines += [line for _, line in sorted(by_id)]
    lines.append(free_line(free))
    return "\n".join(lines) + "\n"


def row_json(row: Row) -> dict[str, object]:
    out: dict[str, object] = {"id": row.domid, "published": row.published}
    for name in FIELDS:
        value = None if name in row.invalid else getattr(row, name)
        if name == "active_cs":
            out["active_s"] = None if value is None else round(value / 100, 2)
        else:
            out[name] = value
    out["vcpus"] = row.vcpus
    out["invalid"] = sorted("active_s" if n == "active_cs" else n for n in row.invalid)
    return out


def render_json(rows: Sequence[Row], free: FreeMemory, missing: Iterable[int] = ()) -> str:
    doc = {
        "domains": [row_json(r) for r in sorted(rows, key=lambda r: r.domid)],
        "missing_domains": sorted(missing),
        "free_memory_mb": free.mb,
        "free_memory_source": free.source,
    }
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"
