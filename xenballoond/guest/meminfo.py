"""The parser for the kernel's /proc/meminfo text.

The original read fields with ``grep NAME | sed 's/  */ /' | cut -f2 -d' '``;
here every line is parsed once, and a line that is not ``Name: <digits> [kB]``
is skipped rather than trusted.
"""
from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping

# Values above this are not memory sizes any kernel reports (2^50 kB, 1 EiB); a number
# that large in a meminfo is garbage, and bash's 64-bit arithmetic would wrap.
MAX_KB = 1 << 50

_MEMINFO_LINE = re.compile(r"([A-Za-z0-9_()]+):[ \t]*([0-9]{1,19})(?:[ \t]+kB)?[ \t]*")


def parse_meminfo(text: str) -> dict[str, int]:
    """Map each well-formed ``Name:  value kB`` line to its value (kB)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        m = _MEMINFO_LINE.fullmatch(line)
        if m and m.group(1) not in fields:
            value = int(m.group(2))
            if value <= MAX_KB:
                fields[m.group(1)] = value
    return fields


class MeminfoError(ValueError):
    """/proc/meminfo lacks a field the policy needs."""


def require(fields: Mapping[str, int], name: str) -> int:
    try:
        return fields[name]
    except KeyError:
        raise MeminfoError(f"/proc/meminfo has no usable {name} line") from None
