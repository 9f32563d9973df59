"""dom0's overrides, read from the guest's memory/ directory in xenstore.

The original evaluated these values in shell arithmetic (``[ $RETVAL -eq 1 ]``,
``$(( $1 * 1024 ))``), where a guest-writable or dom0-supplied ``a[$(cmd)]``
runs ``cmd`` as root, and ``sleep`` of 0 or garbage made a busy loop.  Here every
value is a bounded ASCII integer or it is ignored.
"""
from __future__ import annotations

import re
from ..record import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (RSS)
if TYPE_CHECKING:
    from typing import Mapping

_INT = re.compile(r"[ \t\r\n]*([0-9]{1,19})[ \t\r\n]*")

# 1 PiB in kB: far beyond any guest, small enough that bytes fit in 64 bits.
MAX_TARGET_KB = 1 << 40
MAX_INTERVAL_S = 86400
MAX_HYSTERESIS = 1_000_000

KEY_TARGET = "target"
KEY_SELFBALLOON = "selfballoon"
KEY_INTERVAL = "interval"
KEY_DOWN = "downhysteresis"
KEY_UP = "uphysteresis"


def parse_bounded_int(text: str, lo: int, hi: int) -> int | None:
    """An ASCII decimal integer in [lo, hi], else None."""
    m = _INT.fullmatch(text)
    if not m:
        return None
    value = int(m.group(1))
    return value if lo <= value <= hi else None


@frozen
class Overrides:
    target_kb: int | None = None
    selfballoon: bool | None = None
    interval_s: int | None = None
    down_hysteresis: int | None = None
    up_hysteresis: int | None = None


_RULES = {
    KEY_TARGET: (1, MAX_TARGET_KB),
    KEY_SELFBALLOON: (0, 1),
    KEY_INTERVAL: (1, MAX_INTERVAL_S),
    # 0 = at once, as the original's `if [ $downhys -ne 0 ]` and the config
    KEY_DOWN: (0, MAX_HYSTERESIS),
    # 0 killed the original (it divides by it); read as 1, at once, as the config does
    KEY_UP: (0, MAX_HYSTERESIS),
}
KEYS = tuple(_RULES)


def parse_overrides(memory_dir: Mapping[str, str]) -> tuple[Overrides, dict[str, str]]:
    """Validate the keys present in memory/; return the overrides and, per
    key whose value was ignored or read otherwise, why."""
    values: dict[str, int] = {}
    problems: dict[str, str] = {}
    for key, (lo, hi) in _RULES.items():
        raw = memory_dir.get(key)
        if raw is None:
            continue
        value = parse_bounded_int(raw, lo, hi)
        if value is None:
            problems[key] = (f"ignoring memory/{key}={raw[:64]!r}: "
                             f"not an integer from {lo} to {hi}")
        elif key == KEY_UP and value == 0:
            problems[key] = ("memory/uphysteresis=0 would divide by zero in the original "
                             "daemon; treated as 1 (balloon up at once)")
            values[key] = 1
        else:
            values[key] = value
    sb = values.get(KEY_SELFBALLOON)
    return Overrides(
        target_kb=values.get(KEY_TARGET),
        selfballoon=None if sb is None else sb == 1,
        interval_s=values.get(KEY_INTERVAL),
        down_hysteresis=values.get(KEY_DOWN),
        up_hysteresis=values.get(KEY_UP),
    ), problems
