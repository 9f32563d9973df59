"""xenballoond, the in-guest daemon: sense (/proc/meminfo, the balloon, dom0's
keys), decide (policy), act (the balloon target), publish (xenstore)."""
