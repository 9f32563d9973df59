"""Sizes as an administrator types them for ``free`` and ``restore --memory``."""
from __future__ import annotations

import re

_SIZE = re.compile(r"([0-9]{1,12})([kKmMgGtT]?)(i?[bB])?", re.ASCII)
_SHIFT_KB = {"k": 0, "": 10, "m": 10, "g": 20, "t": 30}


def parse_size_kb(text: str) -> int:
    """``1024M``, ``2G``, ``512k``, ``1.5``-free integers; no suffix: MiB (as xl)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a size: {text!r} (e.g. 1024M, 2G, 524288k)")
    return int(m.group(1)) << _SHIFT_KB[m.group(2).lower()]
