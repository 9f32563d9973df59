"""The settings in force: the config with dom0's overrides merged, once."""
from __future__ import annotations

from ..contract.minimum import MIN_POLICY_2008
from ..record import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from .settings import Config
    from ..contract.overrides import Overrides


@frozen
class Effective:
    """What a tick decides with: each value is dom0's (memory/) where it set
    one, else the config's."""

    self_ballooning: bool
    interval_s: int
    directed_target_kb: int | None  # memory/target
    min_mem_mb: int  # XENBALLOON_MINMEM, 0: from the high-water mark
    down_hysteresis: int
    up_hysteresis: int
    self_reserve_pct: int = 0
    floor_mb: int | None = None  # memory/minmem
    ceiling_mb: int | None = None  # memory/softmaxmem
    min_policy: str = MIN_POLICY_2008  # XENBALLOON_MIN_POLICY, or memory/minpolicy


def choose_interval_s(self_ballooning: bool, self_interval_s: int, directed_interval_s: int,
                      override_s: int | None) -> int:
    """The main loop's sleep: XENBALLOON_SELF_INTERVAL or XENBALLOON_INTERVAL,
    unless dom0's memory/interval says otherwise."""
    if override_s is not None:
        return override_s
    return self_interval_s if self_ballooning else directed_interval_s


def merge(config: Config, o: Overrides) -> Effective:
    self_ballooning = config.self_ballooning if o.selfballoon is None else o.selfballoon
    return Effective(
        self_ballooning=self_ballooning,
        interval_s=choose_interval_s(self_ballooning, config.self_interval_s,
                                     config.interval_s, o.interval_s),
        directed_target_kb=o.target_kb,
        min_mem_mb=config.min_mem_mb,
        down_hysteresis=(config.down_hysteresis if o.down_hysteresis is None
                         else o.down_hysteresis),
        up_hysteresis=config.up_hysteresis if o.up_hysteresis is None else o.up_hysteresis,
        self_reserve_pct=config.self_reserve_pct,
        floor_mb=o.min_mb,
        ceiling_mb=o.max_mb,
        min_policy=config.min_policy if o.min_policy is None else o.min_policy)

