"""The policy in force, as one line logged at start and whenever it changes."""
from __future__ import annotations

import logging

from ..contract.minimum import MIN_POLICY_ADAPTIVE, hard_min_mb, min_target_mb
from ..contract.headroom import headroom_kb

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from .effective import Effective


def describe(s: Effective, *, min_mb: int, maxmem_kb: int, boot_kb: int, xenstore: str,
             balloon: str) -> str:
    """The policy line."""
    if s.self_ballooning:
        mode = (f"self-ballooning (reserve {s.self_reserve_pct}% of {boot_kb} kB "
                f"booted with = {headroom_kb(boot_kb, s.self_reserve_pct)} kB)")
    else:
        mode = "directed (memory/target)"
    if s.min_mem_mb:
        minimum = f"XENBALLOON_MINMEM {min_mb} MB"
    elif s.min_policy == MIN_POLICY_ADAPTIVE:
        # the bounds, not the floor: it follows Mapped, and the line would be logged every tick
        minimum = (f"adaptive, what the guest needs to run within {hard_min_mb(maxmem_kb)}-"
                   f"{min_target_mb(maxmem_kb)} MB (of the high-water mark {maxmem_kb} kB)")
    else:
        minimum = f"{min_mb} MB (of the high-water mark {maxmem_kb} kB)"
    return (f"policy: {mode}, minimum {minimum}, hysteresis down {s.down_hysteresis} "
            f"up {s.up_hysteresis}, every {s.interval_s} s, xenstore {xenstore}, "
            f"balloon {balloon}")


class PolicyLine:
    """Logs the policy line when it differs from the one last logged (a
    reload, dom0's overrides, a new high-water mark)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self.last = ""  # the line in force, "" before the first tick decided one

    def show(self, s: Effective, *, min_mb: int, maxmem_kb: int, boot_kb: int, xenstore: str,
             balloon: str) -> None:
        line = describe(s, min_mb=min_mb, maxmem_kb=maxmem_kb, boot_kb=boot_kb,
                        xenstore=xenstore, balloon=balloon)
        if line != self.last:
            self.last = line
            self._log.info("%s", line)
