"""xenballoon-balancer with qmemman's rules (qmemman_ref.balance) in place of
ours: the same reading of the host, the same guest records, the same xl
mem-set; only the policy differs.  Targets equal to the one in place are not
written again (qmemman lists every guest in play, moved or not).  For
bench_balance.py, never installed."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import qmemman_ref  # noqa: E402

from xenballoond.dom0 import balancer, tick  # noqa: E402
from xenballoond.dom0.balance import ref_kb  # noqa: E402


def qmemman_balance(guests, host, params=None):
    by_id = {g.domid: g for g in guests}
    return [m for m in qmemman_ref.balance(guests, host)
            if m.tgt_kb != ref_kb(by_id[m.domid])]


tick.balance = qmemman_balance

if __name__ == "__main__":
    sys.exit(balancer.main())
