"""decide() called as the policy tables are written: every input a keyword.
The settings' keywords go into the Effective record decide() takes (its
interval is not an input of decide), the readings stay keywords."""
from __future__ import annotations

from xenballoond.guest import policy
from xenballoond.guest.effective import Effective

SETTINGS = ("self_ballooning", "directed_target_kb", "min_mem_mb", "down_hysteresis",
            "up_hysteresis", "self_reserve_pct", "floor_mb", "ceiling_mb", "min_policy")


def decide(**kw) -> policy.Decision:
    settings = {k: kw.pop(k) for k in SETTINGS if k in kw}
    return policy.decide(Effective(interval_s=1, **settings), **kw)
