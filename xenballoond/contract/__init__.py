"""The guest↔dom0 contract, written down once: the xenstore keys and their
paths, the bounds both sides count on, the parser of dom0's keys, the minimum
target and the headroom rule.  The guest daemon imports it, and so does dom0:
a rule here is the same rule on both sides.  Kept lean for the guest's RSS:
no typing, no dataclasses at run time."""
