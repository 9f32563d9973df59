"""The memory high-water file (XENBALLOON_MAXMEMFILE).

The original's main loop raised it whenever the guest held more than it
recorded (hot-add memory); minmb() bases the minimum target on it.
"""
from __future__ import annotations

import os

from ..numbers import parse_bounded_int
from .meminfo import MAX_KB


class MaxmemFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def read_kb(self) -> int | None:
        """The recorded high-water mark, or None if absent or not a number."""
        try:
            with open(self.path, encoding="ascii", errors="replace") as f:
                text = f.read(64)
        except FileNotFoundError:
            return None
        return parse_bounded_int(text, 0, MAX_KB)

    def update(self, cur_kb: int) -> int:
        """Record ``cur_kb`` if it is a new high; return the high-water mark."""
        old_kb = self.read_kb()
        if old_kb is not None and old_kb >= cur_kb:
            return old_kb
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".xenballoon-maxmem.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(f"{cur_kb}\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return cur_kb
