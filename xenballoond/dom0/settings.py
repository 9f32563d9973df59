"""xenballoon-balancer.conf: the balancer's variables, read by the shared
parser (shellconf.parse_values) with its own table; guest/settings.py is the
guest daemon's.

The defaults are balance.py's (BalanceParams, CooperationParams), so the
policy's golden tables and the shipped file say the same thing.
"""
from __future__ import annotations

from ..record import frozen
from typing import Optional

from ..contract.keys import DEFAULT_PUBLISH_MAX_S, MAX_INTERVAL_S
from ..shellconf import Spec, check_fields, find_conf_file, parse_values, read_config_text
from ..xenstore.choose import CHOICES as XENSTORE_BACKENDS
from ..paths import Root
from .balance import DEFAULT_COOPERATION, DEFAULT_PARAMS, MIB_KB

CONFIG_CANDIDATES = ("/etc/sysconfig/xenballoon-balancer.conf",
                     "/etc/default/xenballoon-balancer.conf")
MAX_MB = 16 * 1024 * 1024  # 16 TiB
MAX_STALE_INTERVALS = 1000
MAX_TIMEOUT_S = 3600


@frozen
class BalancerConfig:
    interval_s: int = 1
    host_reserve_mb: int = 64
    headroom_pct: int = DEFAULT_PARAMS.headroom_pct
    min_guest_move_mb: int = DEFAULT_PARAMS.min_guest_move_kb // MIB_KB
    min_total_move_mb: int = DEFAULT_PARAMS.min_total_move_kb // MIB_KB
    pool_mb: int = DEFAULT_PARAMS.pool_kb // MIB_KB
    uncooperative_s: int = int(DEFAULT_COOPERATION.timeout_s)
    stale_intervals: int = 5
    guest_publish_s: int = DEFAULT_PUBLISH_MAX_S  # the guests' XENBALLOON_PUBLISH_MAX_S
    guests: tuple[str, ...] = ()
    follow: bool = True  # copy self-ballooning guests' selftarget into memory/target
    xl: str = "xl"
    xenstore_backend: str = "cli"
    command_timeout_s: int = 10

    def __post_init__(self) -> None:
        check_fields(self, _BY_FIELD)

    @property
    def stale_after_s(self) -> int:
        """How long a guest's published uptime may stand still before its stats
        are stale: an idle guest publishes only every guest_publish_s seconds
        (at its first tick after), so that long, and stale_intervals passes more."""
        return self.guest_publish_s + self.stale_intervals * self.interval_s


SPECS: tuple[Spec, ...] = (
    Spec("XENBALLOON_BALANCER_INTERVAL", "interval_s", "int", 1, MAX_INTERVAL_S),
    Spec("XENBALLOON_BALANCER_HOST_RESERVE_MB", "host_reserve_mb", "int", 0, MAX_MB),
    Spec("XENBALLOON_BALANCER_HEADROOM_PCT", "headroom_pct", "int", 0, 100),
    Spec("XENBALLOON_BALANCER_MIN_GUEST_MOVE_MB", "min_guest_move_mb", "int", 0, MAX_MB),
    Spec("XENBALLOON_BALANCER_MIN_TOTAL_MOVE_MB", "min_total_move_mb", "int", 0, MAX_MB),
    Spec("XENBALLOON_BALANCER_POOL_MB", "pool_mb", "int", 0, MAX_MB),
    Spec("XENBALLOON_BALANCER_UNCOOPERATIVE_S", "uncooperative_s", "int", 1, MAX_TIMEOUT_S),
    Spec("XENBALLOON_BALANCER_STALE_INTERVALS", "stale_intervals", "int", 1,
         MAX_STALE_INTERVALS),
    Spec("XENBALLOON_BALANCER_GUEST_PUBLISH_S", "guest_publish_s", "int", 1, MAX_INTERVAL_S),
    Spec("XENBALLOON_BALANCE_GUESTS", "guests", "words"),
    Spec("XENBALLOON_BALANCER_FOLLOW", "follow", "bool"),
    Spec("XENBALLOON_BALANCER_XL", "xl", "command"),
    Spec("XENBALLOON_XENSTORE", "xenstore_backend", "choice", choices=XENSTORE_BACKENDS),
    Spec("XENBALLOON_BALANCER_COMMAND_TIMEOUT_S", "command_timeout_s", "int", 1,
         MAX_TIMEOUT_S),
)
_BY_FIELD = {s.field: s for s in SPECS}
VARIABLES = tuple(s.key for s in SPECS)


def parse_balancer_config(text: str, filename: str) -> tuple[BalancerConfig, list[str]]:
    values, warnings = parse_values(text, filename, SPECS)
    return BalancerConfig(**values), warnings  # type: ignore[arg-type]


def load(root: Root, explicit: Optional[str]
         ) -> tuple[BalancerConfig, Optional[str], list[str]]:
    """The config from -c, else the first of CONFIG_CANDIDATES under the root,
    else the defaults; raises ConfigError."""
    path = find_conf_file(root, explicit, CONFIG_CANDIDATES)
    if path is None:
        return BalancerConfig(), None, []
    config, warnings = parse_balancer_config(read_config_text(path), path)
    return config, path, warnings
