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


# --- the balancer's decisions (statefile.py) ----------------------

BALANCER_TEMPLATE = f"{{:>{ID_DIGITS}}} {{:>{KB_DIGITS}}} {{:>{KB_DIGITS}}}  {{}}"


def _kb_cell(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else NOT_PUBLISHED


def balancer_lines(state: dict[str, object], age_s: float) -> list[str]:
    """The balancer's view: each guest's need and target, and why."""
    head = "balancer: " + ("PAUSED" if state.get("paused") else "running")
    lines = [f"{head} (state from {age_s:.0f} s ago)",
             BALANCER_TEMPLATE.format("id", "need-kb", "bal-tgt-kb", "status / last decision")]
    guests = state.get("guests")
    for g in sorted(guests if isinstance(guests, list) else [],
                    key=lambda g: g.get("domid", 0) if isinstance(g, dict) else 0):
        if not isinstance(g, dict):
            continue
        why = str(g.get("status", ""))
        if g.get("reason"):
            why += f": {g['reason']}"
        shown = ascii(why)[1:-1][:120]  # our own file, but never trust text to a terminal
        lines.append(BALANCER_TEMPLATE.format(_kb_cell(g.get("domid")), _kb_cell(g.get("need_kb")),
                                              _kb_cell(g.get("target_kb")), shown))
    return lines


def balancer_json(state: dict[str, object], age_s: float) -> dict[str, object]:
    guests = state.get("guests")
    return {"paused": bool(state.get("paused")), "age_s": round(age_s, 1),
            "guests": {str(g["domid"]): {k: g.get(k) for k in
                                         ("status", "status_code", "need_kb", "target_kb",
                                          "min_kb", "reason")}
                       for g in (guests if isinstance(guests, list) else [])
                       if isinstance(g, dict) and isinstance(g.get("domid"), int)}}
