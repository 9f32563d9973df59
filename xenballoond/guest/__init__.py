"""xenballoond, the in-guest daemon: sense (/proc/meminfo, the balloon, dom0's
keys), decide (policy), act (the balloon target), publish (xenstore)."""

from .. import lazytraceback

lazytraceback.install()  # before logging: in the daemon's process, traceback on first use
