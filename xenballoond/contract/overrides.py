"""dom0's keys in the guest's memory/ directory, parsed: the one reading of
them, the guest daemon's (its overrides) and dom0's (what the guest will do
with them: whether it self-balloons, its bounds, its minimum rule).

The original evaluated these values in shell arithmetic (``[ $RETVAL -eq 1 ]``,
``$(( $1 * 1024 ))``), where a guest-writable or dom0-supplied ``a[$(cmd)]``
runs ``cmd`` as root, and ``sleep`` of 0 or garbage made a busy loop.  Here every
value is a bounded ASCII integer or it is ignored.
"""
from __future__ import annotations

from .intparse import parse_bounded_int
from .keys import (DOWN_HYSTERESIS, INTERVAL, MAX_BOUND_MB, MAX_HYSTERESIS, MAX_INTERVAL_S,
                   MAX_KB, MINMEM, MINPOLICY, SELFBALLOON, SOFTMAXMEM, TARGET, UP_HYSTERESIS)
from .minimum import MIN_POLICIES, parse_min_policy
from ..record import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping


@frozen
class Overrides:
    target_kb: int | None = None
    selfballoon: bool | None = None
    interval_s: int | None = None
    down_hysteresis: int | None = None
    up_hysteresis: int | None = None
    min_mb: int | None = None  # memory/minmem: dom0's floor for this guest
    max_mb: int | None = None  # memory/softmaxmem: dom0's ceiling for this guest
    min_policy: str | None = None  # memory/minpolicy: "2008" or "adaptive"


_RULES = {
    TARGET: (1, MAX_KB),
    SELFBALLOON: (0, 1),
    INTERVAL: (1, MAX_INTERVAL_S),
    # 0 = at once, as the original's `if [ $downhys -ne 0 ]` and the config
    DOWN_HYSTERESIS: (0, MAX_HYSTERESIS),
    # 0 killed the original (it divides by it); read as 1, at once, as the config does
    UP_HYSTERESIS: (0, MAX_HYSTERESIS),
    MINMEM: (1, MAX_BOUND_MB),
    SOFTMAXMEM: (1, MAX_BOUND_MB),
}
KEYS = tuple(_RULES) + (MINPOLICY,)


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
        elif key == UP_HYSTERESIS and value == 0:
            problems[key] = ("memory/uphysteresis=0 would divide by zero in the original "
                             "daemon; treated as 1 (balloon up at once)")
            values[key] = 1
        else:
            values[key] = value
    floor, ceiling = values.get(MINMEM), values.get(SOFTMAXMEM)
    if floor is not None and ceiling is not None and ceiling < floor:
        # contradictory bounds: the floor wins, it is the safe one
        problems[SOFTMAXMEM] = (f"ignoring memory/softmaxmem={ceiling}: below "
                                f"memory/minmem={floor}")
        del values[SOFTMAXMEM]
    min_policy = None
    raw_policy = memory_dir.get(MINPOLICY)
    if raw_policy is not None:
        min_policy = parse_min_policy(raw_policy)
        if min_policy is None:
            problems[MINPOLICY] = (f"ignoring memory/{MINPOLICY}={raw_policy[:64]!r}: "
                                   f"not one of {', '.join(MIN_POLICIES)}")
    sb = values.get(SELFBALLOON)
    return Overrides(
        target_kb=values.get(TARGET),
        selfballoon=None if sb is None else sb == 1,
        interval_s=values.get(INTERVAL),
        down_hysteresis=values.get(DOWN_HYSTERESIS),
        up_hysteresis=values.get(UP_HYSTERESIS),
        min_mb=values.get(MINMEM),
        max_mb=values.get(SOFTMAXMEM),
        min_policy=min_policy,
    ), problems
