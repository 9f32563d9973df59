"""Integers from hostile text: xenstore values and files another party writes."""
from __future__ import annotations

import re

_INT = re.compile(r"[ \t\r\n]*([0-9]{1,19})[ \t\r\n]*")


def parse_bounded_int(text: str, lo: int, hi: int) -> int | None:
    """An ASCII decimal integer in [lo, hi], else None."""
    m = _INT.fullmatch(text)
    if not m:
        return None
    value = int(m.group(1))
    return value if lo <= value <= hi else None
