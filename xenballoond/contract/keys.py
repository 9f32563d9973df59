"""The xenstore keys the guest's daemon and dom0 share, relative to the guest's
domain directory (/local/domain/<domid>/)."""

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

# Bounds and defaults both sides count on.  An interval, in the conf or in
# memory/interval, is at most a day.
MAX_INTERVAL_S = 86400
# How often an idle guest publishes its stats at the least (XENBALLOON_PUBLISH_MAX_S);
# dom0's balancer allows a guest this long between uptimes before it calls it stale.
DEFAULT_PUBLISH_MAX_S = 10
# Which minimum rule the guest and dom0 apply (contract/minimum.py): "2008" or "adaptive".
MINPOLICY = "minpolicy"
