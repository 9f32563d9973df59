"""dom0's overrides, read from the guest's memory/ directory in xenstore.

The original evaluated these values in shell arithmetic (``[ $RETVAL -eq 1 ]``,
``$(( $1 * 1024 ))``), where a guest-writable or dom0-supplied ``a[$(cmd)]``
runs ``cmd`` as root, and ``sleep`` of 0 or garbage made a busy loop.  Here every
value is a bounded ASCII integer or it is ignored.
"""
from __future__ import annotations

from ..config import MAX_HYSTERESIS, MAX_INTERVAL_S
from ..numbers import parse_bounded_int
from ..keys import DOWN_HYSTERESIS, INTERVAL, SELFBALLOON, TARGET, UP_HYSTERESIS
from ..record import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping

# 1 PiB in kB: far beyond any guest, small enough that bytes fit in 64 bits.
MAX_TARGET_KB = 1 << 40


@frozen
class Overrides:
    target_kb: int | None = None
    selfballoon: bool | None = None
    interval_s: int | None = None
    down_hysteresis: int | None = None
    up_hysteresis: int | None = None


_RULES = {
    TARGET: (1, MAX_TARGET_KB),
    SELFBALLOON: (0, 1),
    INTERVAL: (1, MAX_INTERVAL_S),
    DOWN_HYSTERESIS: (1, MAX_HYSTERESIS),
    UP_HYSTERESIS: (1, MAX_HYSTERESIS),
}


def parse_overrides(memory_dir: Mapping[str, str]) -> tuple[Overrides, list[str]]:
    """Validate the keys present in memory/; return the overrides and one
    message per value that was ignored."""
    values: dict[str, int] = {}
    problems: list[str] = []
    for key, (lo, hi) in _RULES.items():
        raw = memory_dir.get(key)
        if raw is None:
            continue
        value = parse_bounded_int(raw, lo, hi)
        if value is None:
            problems.append(f"ignoring memory/{key}={raw[:64]!r}: "
                            f"not an integer from {lo} to {hi}")
        else:
            values[key] = value
    sb = values.get(SELFBALLOON)
    return Overrides(
        target_kb=values.get(TARGET),
        selfballoon=None if sb is None else sb == 1,
        interval_s=values.get(INTERVAL),
        down_hysteresis=values.get(DOWN_HYSTERESIS),
        up_hysteresis=values.get(UP_HYSTERESIS),
    ), problems
