"""Why the balancer balances a guest or holds it: one code per status, its text
beside it.  The state file carries both (``status_code`` the name, ``status``
the text), so a reader that decides by status need not match the wording."""
from __future__ import annotations

import enum


class Status(str, enum.Enum):
    BALANCED = "balanced"
    NOT_OPTED_IN = "not opted in"
    SELF_BALLOONING = "self-ballooning (memory/selfballoon=1)"
    NO_DAEMON = "no daemon (no Committed_AS published)"
    STALE = "stale stats (uptime not advancing)"
    UNCOOPERATIVE = "uncooperative"
    NO_STATIC_MAX = "no memory/static-max"

    @property
    def text(self) -> str:
        return str(self.value)

    def __str__(self) -> str:
        return self.text
