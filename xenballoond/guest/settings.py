"""xenballoon.conf: the guest daemon's variables, read by the shared parser
(shellconf.parse_values) with its own table, in the order of
etc/xenballoon.conf; dom0/settings.py is the balancer's.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

from ..contract.keys import DEFAULT_PUBLISH_MAX_S, MAX_HYSTERESIS, MAX_INTERVAL_S
from ..contract.minimum import MIN_POLICIES, MIN_POLICY_2008
from ..paths import Root
from ..record import frozen
from ..shellconf import (Spec, check_fields, find_conf_file, parse_values, read_config_text,
                         render_values)
from ..xenstore.choose import CHOICES as XENSTORE_BACKENDS

CONFIG_CANDIDATES = ("/etc/sysconfig/xenballoon.conf", "/etc/default/xenballoon.conf")
# Sane upper bounds, so a typo can't overflow anything downstream.
MAX_MIN_MEM_MB = 16 * 1024 * 1024          # 16 TiB in MB
MAX_PUBLISH_THRESHOLD_MB = 1024 * 1024     # 1 TiB: more is "never on change"


@frozen
class Config:
    """The daemon's settings, typed, with units in the names.  Construction
    validates, so every Config satisfies the bounds."""

    self_ballooning: bool = False
    self_interval_s: int = 1
    interval_s: int = 1
    down_hysteresis: int = 10     # 0 = balloon down at once
    up_hysteresis: int = 1        # 1 = at once (a 0 in the file is read as 1)
    min_mem_mb: int = 0           # 0 = heuristic from the max-memory high-water mark
    min_policy: str = MIN_POLICY_2008  # without it, the floor's rule: "2008" or "adaptive"
    maxmem_file: str = "/var/run/xenballoon-maxmem"
    send_meminfo: bool = True
    send_vmstat: bool = True
    send_uptime: bool = True
    xenstore_backend: str = "auto"  # native where /dev/xen/xenbus is, else cli
    self_reserve_pct: int = 10    # headroom over Committed_AS, % of the high-water mark
    publish_threshold_mb: int = 30  # republish the stats when a number dom0 reads moved more
    publish_max_s: int = DEFAULT_PUBLISH_MAX_S  # and at least this often

    def __post_init__(self) -> None:
        check_fields(self, _SPECS_BY_FIELD)


SPECS: Tuple[Spec, ...] = (
    Spec("XENBALLOON_SELF", "self_ballooning", "bool"),
    Spec("XENBALLOON_SELF_INTERVAL", "self_interval_s", "int", 1, MAX_INTERVAL_S),
    Spec("XENBALLOON_INTERVAL", "interval_s", "int", 1, MAX_INTERVAL_S),
    Spec("XENBALLOON_AUTO_DOWNHYSTERESIS", "down_hysteresis", "int", 0, MAX_HYSTERESIS),
    Spec("XENBALLOON_AUTO_UPHYSTERESIS", "up_hysteresis", "int", 0, MAX_HYSTERESIS, field_lo=1,
         zero_is_one=True),
    Spec("XENBALLOON_MINMEM", "min_mem_mb", "int", 0, MAX_MIN_MEM_MB),
    Spec("XENBALLOON_MIN_POLICY", "min_policy", "choice", choices=MIN_POLICIES),
    Spec("XENBALLOON_MAXMEMFILE", "maxmem_file", "path"),
    Spec("XENBALLOON_SEND_MEMINFO", "send_meminfo", "flag"),
    Spec("XENBALLOON_SEND_VMSTAT", "send_vmstat", "flag"),
    Spec("XENBALLOON_SEND_UPTIME", "send_uptime", "flag"),
    Spec("XENBALLOON_XENSTORE", "xenstore_backend", "choice", choices=XENSTORE_BACKENDS),
    Spec("XENBALLOON_SELF_RESERVE_PCT", "self_reserve_pct", "int", 0, 100),
    Spec("XENBALLOON_PUBLISH_THRESHOLD_MB", "publish_threshold_mb", "int", 0,
         MAX_PUBLISH_THRESHOLD_MB),
    Spec("XENBALLOON_PUBLISH_MAX_S", "publish_max_s", "int", 1, MAX_INTERVAL_S),
)
_SPECS_BY_FIELD: Dict[str, Spec] = {s.field: s for s in SPECS}
VARIABLES: Tuple[str, ...] = tuple(s.key for s in SPECS)




def parse_config(text: str, filename: str) -> Tuple[Config, List[str]]:
    """Parse xenballoon.conf text.  Pure: no I/O.  Returns the Config and
    warnings; raises ConfigError on the first bad line."""
    values, warnings = parse_values(text, filename, SPECS)
    return Config(**values), warnings  # type: ignore[arg-type]


def render_config(config: Config) -> str:
    """A Config as KEY=value lines that parse_config (and sh) read back."""
    return render_values(config, SPECS)


def load_config(path: str) -> Tuple[Config, List[str]]:
    """Read and parse the xenballoon.conf at ``path``."""
    return parse_config(read_config_text(path), path)


def find_config(root: Root, explicit: Optional[str]) -> Optional[str]:
    """-c's file, else the first of CONFIG_CANDIDATES under ``root``; None: the defaults."""
    return find_conf_file(root, explicit, CONFIG_CANDIDATES)


def load(root: Root, explicit: Optional[str]) -> Tuple[Config, Optional[str], List[str]]:
    """The config from -c, else the first of CONFIG_CANDIDATES under the root,
    else the defaults; raises ConfigError."""
    path = find_config(root, explicit)
    if path is None:
        return Config(), None, []
    config, warnings = load_config(path)
    return config, path, warnings
