"""The balancer's state file: its last pass, written by the balancer at the end
of each (tick.py), read by the monitor (table.py; dom0-only, under the root's
/var/run).  One JSON object:

* ``written_at`` (seconds since the epoch), ``pid``, ``paused`` (bool),
  ``free_kb``, ``host_reserve_kb``, ``unsure_kb``, ``interval_s``;
* ``guests``: one object per guest: ``domid``, ``name``, ``status`` (its
  text) and ``status_code`` (status.Status's name), ``cur_kb``,
  ``static_max_kb``, ``min_kb``, ``need_kb`` (null unless balanced),
  ``target_kb`` (null: never set), ``reason`` (the last decision's, or null).
"""
from __future__ import annotations

import json
import os
import time
from typing import Optional

from ..atomicfile import replace_file
from ..paths import Root

STATE_FILE = "/var/run/xenballoon-balancer.json"
MAX_STATE_BYTES = 4 * 1024 * 1024


def write_state(root: Root, doc: dict[str, object]) -> None:
    replace_file(root.path(STATE_FILE), json.dumps(doc, indent=1) + "\n", make_dirs=True)


def read_state(root: Root) -> Optional[tuple[dict[str, object], float]]:
    """The balancer's last decisions and their age in seconds, if it runs here."""
    path = root.path(STATE_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
        age_s = max(time.time() - os.stat(path).st_mtime, 0.0)
        doc = json.loads(data) if len(data) <= MAX_STATE_BYTES else None
    except (OSError, ValueError):
        return None
    return (doc, age_s) if isinstance(doc, dict) else None
