"""The xenstore keys the guest's daemon and dom0 share, relative to the guest's
domain directory (/local/domain/<domid>/), the paths dom0 reads them at, and
the bounds both sides count on."""

# Every domain's directory; a guest's relative paths are under its own.
DOMAIN_ROOT = "/local/domain"

# Where the daemon publishes, in order of preference: the original's memory/,
# and data/xenballoon/, the guest's own, when xl keeps memory/ read-only for
# the guest (perms n0,r<domid>).
PRIMARY_DIR = "memory"
FALLBACK_DIR = "data/xenballoon"
# What it publishes there.
SELFTARGET, MEMINFO, VMSTAT, UPTIME = "selftarget", "meminfo", "vmstat", "uptime"
# Whether the target the guest sets is its own: MODE_SELF while it
# self-ballooons, MODE_DIRECTED while it follows memory/target.  dom0's
# follower copies a self-ballooning guest's selftarget into memory/target
# (dom0/follow.py), so that xl save, restore and migrate rebuild it whole.
MODE = "mode"
MODE_SELF, MODE_DIRECTED = "self", "directed"
PUBLISHED = (SELFTARGET, MEMINFO, VMSTAT, UPTIME, MODE)

# What dom0 writes in memory/ for the daemon (the original's overrides).
TARGET = "target"
SELFBALLOON = "selfballoon"
INTERVAL = "interval"
DOWN_HYSTERESIS = "downhysteresis"
UP_HYSTERESIS = "uphysteresis"
# Per-guest bounds from dom0 (MB): the guest daemon never sets a target below
# minmem nor above softmaxmem, and dom0's balancer gives it no less and no more.
MINMEM = "minmem"
SOFTMAXMEM = "softmaxmem"
# dom0's own keys there: libxl's static-max (the most the domain may hold), and
# the administrator's opt-in to the balancer (memory/balance = 1), which the
# guest cannot write.
STATIC_MAX = "static-max"
BALANCE = "balance"

# Bounds and defaults both sides count on.  An interval, in the conf or in
# memory/interval, is at most a day.
MAX_INTERVAL_S = 86400
# 1 PiB in kB: far beyond any guest, small enough that bytes fit in 64 bits; a
# size or target above it is garbage.  dom0's per-guest bounds (MB) likewise.
MAX_KB = 1 << 40
MAX_BOUND_MB = MAX_KB >> 10
# A hysteresis, in the conf or in memory/downhysteresis and uphysteresis.
MAX_HYSTERESIS = 1_000_000
# How often an idle guest publishes its stats at the least (XENBALLOON_PUBLISH_MAX_S);
# dom0's balancer allows a guest this long between uptimes before it calls it stale.
DEFAULT_PUBLISH_MAX_S = 10
# Which minimum rule the guest and dom0 apply (contract/minimum.py): "2008" or "adaptive".
MINPOLICY = "minpolicy"


def domain_path(domid: int) -> str:
    """A domain's directory, as dom0 names it."""
    return f"{DOMAIN_ROOT}/{domid}"


def memory_dir(domid: int) -> str:
    """A guest's memory/, as dom0 names it: /local/domain/<domid>/memory."""
    return f"{DOMAIN_ROOT}/{domid}/{PRIMARY_DIR}"


def memory_path(domid: int, key: str) -> str:
    """A key of a guest's memory/, as dom0 names it."""
    return f"{memory_dir(domid)}/{key}"
