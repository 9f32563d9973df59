"""One monitor row from what a guest published: hostile text in, bounded numbers out.

The original (xenballoon-monitor) took its numbers with ``grep NAME | sed``/``cut``
on the output of ``xenstore-read``, which since Xen 3.2 prints the whole text on
one line with ``\\n`` escapes, so every grep matched the one line and every column
showed the first number in it; ``grep pgout`` also matched ``pgpgout`` and
``pswpout``.  Here each field is found by its exact name on its own line, and a
value is used only if it is plain ASCII digits that fit its column.

A cell is a number, ``None`` (not published) or listed in ``Row.invalid``
(published, but not a number that fits): the table shows "-" and "?" for those.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Mapping, Optional

# Column capacities (digits).  Generous on purpose: 11 digits of kB is 93 TiB,
# 13 digits of pgpgin kB is 9 PB; a value that does not fit is not a real guest's.
KB_DIGITS = 11
SWAP_DIGITS = 11
PAGING_DIGITS = 13
ACTIVE_INT_DIGITS = 9  # seconds: 31 years; shown with two decimals
MAX_VCPUS = 8192  # MAX_VIRT_CPUS in Xen's public headers

FIELDS = ("mem_kb", "tgt_kb", "commit_kb", "swapin", "swapout", "pgin", "pgout", "active_cs")
_MAX = {
    "mem_kb": 10 ** KB_DIGITS - 1, "tgt_kb": 10 ** KB_DIGITS - 1,
    "commit_kb": 10 ** KB_DIGITS - 1,
    "swapin": 10 ** SWAP_DIGITS - 1, "swapout": 10 ** SWAP_DIGITS - 1,
    "pgin": 10 ** PAGING_DIGITS - 1, "pgout": 10 ** PAGING_DIGITS - 1,
    "active_cs": 10 ** (ACTIVE_INT_DIGITS + 2) - 1,
}
# Where each number comes from: (published text, name in it).
_MEMINFO_FIELDS = {"mem_kb": "MemTotal", "commit_kb": "Committed_AS"}
_VMSTAT_FIELDS = {"swapin": "pswpin", "swapout": "pswpout", "pgin": "pgpgin", "pgout": "pgpgout"}

_DIGITS = re.compile(r"[0-9]{1,20}", re.ASCII)
_SECONDS = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?", re.ASCII)
_SPACES = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class Published:
    """The raw text one guest left in xenstore (None: key absent), and dom0's
    count of its online vCPUs (None: unknown)."""

    domid: int
    selftarget: Optional[str] = None
    meminfo: Optional[str] = None
    vmstat: Optional[str] = None
    uptime: Optional[str] = None
    mode: Optional[str] = None  # keys.MODE_SELF or MODE_DIRECTED, if the guest is honest
    vcpus: Optional[int] = None

    @property
    def has_stats(self) -> bool:
        """Whether the guest published any of its keys."""
        return any(v is not None for v in (self.selftarget, self.meminfo, self.vmstat, self.uptime))


@dataclass(frozen=True)
class Row:
    """One guest's numbers.  ``active_cs`` is active time in centiseconds."""

    domid: int
    published: bool
    mem_kb: Optional[int] = None
    tgt_kb: Optional[int] = None
    commit_kb: Optional[int] = None
    swapin: Optional[int] = None
    swapout: Optional[int] = None
    pgin: Optional[int] = None
    pgout: Optional[int] = None
    active_cs: Optional[int] = None
    vcpus: int = 1
    invalid: frozenset[str] = field(default_factory=frozenset)
    # not a column, for the adaptive floor (contract/minimum.py); None: absent or not a number
    mapped_kb: Optional[int] = None


def bounded_count(text: str, max_value: int) -> Optional[int]:
    """``text`` as a non-negative decimal integer <= max_value, else None.
    Only ASCII digits (Python's int() also takes "١٢", "+5", "1_0", spaces)."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= max_value else None


@functools.lru_cache(maxsize=8)
def _line_regex(names: frozenset[str], meminfo_style: bool) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    if meminfo_style:  # the name is everything before the line's first ":"
        return re.compile(rf"^({alternatives}):([^\n]*)", re.M)
    # the name is the line's first word
    return re.compile(rf"^[ \t]*({alternatives})(?=[ \t\n]|$)([^\n]*)", re.M)


def named_values(text: str, names: frozenset[str], meminfo_style: bool) -> dict[str, str]:
    """The raw value text of the first line for each wanted name: ``Name: value kB``
    (meminfo) or ``name value`` (vmstat).  Other lines are ignored unread."""
    found: dict[str, str] = {}
    for m in _line_regex(names, meminfo_style).finditer(text):
        name, rest = m.group(1), m.group(2).strip(" \t")
        if name in found:
            continue
        if meminfo_style:
            if rest.endswith(" kB"):
                rest = rest[:-3].rstrip(" \t")
        else:
            rest = _SPACES.sub(" ", rest)
        found[name] = rest
        if len(found) == len(names):
            break
    return found


def _from_text(text: Optional[str], wanted: Mapping[str, str], meminfo_style: bool,
               values: dict[str, int], invalid: set[str]) -> None:
    if text is None:
        return
    raw = named_values(text, frozenset(wanted.values()), meminfo_style)
    for column, name in wanted.items():
        if name not in raw:
            invalid.add(column)  # published, but this line is missing: not a zero
            continue
        value = bounded_count(raw[name], _MAX[column])
        if value is None:
            invalid.add(column)
        else:
            values[column] = value


def active_centiseconds(uptime_text: str, vcpus: int) -> Optional[int]:
    """/proc/uptime is "<uptime> <idle>", idle summed over every CPU: active time
    is uptime - idle / vcpus, clamped at 0, rounded half up to 1/100 s."""
    parts = uptime_text.split()
    if len(parts) != 2 or not all(_SECONDS.fullmatch(p) for p in parts):
        return None
    up_s, idle_s = (Fraction(p) for p in parts)
    active = max(up_s - idle_s / vcpus, Fraction(0))
    cs = int(active * 100 + Fraction(1, 2))  # floor(x + 1/2): half up
    return cs if cs <= _MAX["active_cs"] else None


def usable_vcpus(vcpus: Optional[int]) -> int:
    """dom0's count of the guest's vCPUs, else 1 (the original assumed 1)."""
    if vcpus is None or vcpus < 1:
        return 1
    return min(vcpus, MAX_VCPUS)


def make_row(pub: Published) -> Row:
    """Every number the monitor shows for one guest."""
    values: dict[str, int] = {}
    invalid: set[str] = set()
    vcpus = usable_vcpus(pub.vcpus)
    if pub.selftarget is not None:
        target = bounded_count(pub.selftarget, _MAX["tgt_kb"])
        if target is None:
            invalid.add("tgt_kb")
        else:
            values["tgt_kb"] = target
    _from_text(pub.meminfo, _MEMINFO_FIELDS, True, values, invalid)
    mapped_kb = None
    if pub.meminfo is not None:
        mapped_raw = named_values(pub.meminfo, frozenset(("Mapped",)), True).get("Mapped")
        mapped_kb = None if mapped_raw is None else bounded_count(mapped_raw, _MAX["mem_kb"])
    _from_text(pub.vmstat, _VMSTAT_FIELDS, False, values, invalid)
    if pub.uptime is not None:
        active = active_centiseconds(pub.uptime, vcpus)
        if active is None:
            invalid.add("active_cs")
        else:
            values["active_cs"] = active
    return Row(domid=pub.domid, published=pub.has_stats, vcpus=vcpus,
               invalid=frozenset(invalid), mapped_kb=mapped_kb, **values)
