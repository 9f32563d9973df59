"""The memory high-water file (XENBALLOON_MAXMEMFILE).

The original's main loop raised it whenever the guest held more than it
recorded (hot-add memory); minmb() bases the minimum target on it.  A file
that cannot be read or written (a read-only /var/run, a file where a
directory should be) must not stop ballooning: the mark is then held in
memory, starting from the current size.

Beside it, ``<file>.boot`` keeps the first mark of this boot (/var/run is
emptied at boot; the init script, or else the daemon's first tick, records
the mark before any ballooning): the memory the guest booted with, which a
later ``xl mem-set`` up to maxmem does not raise.  XENBALLOON_SELF_RESERVE_PCT
is a percentage of it.
"""
from __future__ import annotations

import os

from ..atomicfile import replace_file
from ..contract.intparse import parse_bounded_int
from .meminfo import MAX_KB


class MaxmemFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.known_kb: int | None = None  # the last mark read or written
        self.boot_path = path + ".boot"
        self._boot_kb: int | None = None

    def read_kb(self) -> int | None:
        """The recorded high-water mark, or None if absent or not a number."""
        try:
            with open(self.path, encoding="ascii", errors="replace") as f:
                text = f.read(64)
        except FileNotFoundError:
            return None
        return parse_bounded_int(text, 0, MAX_KB)

    def update(self, cur_kb: int) -> tuple[int, OSError | None]:
        """Record ``cur_kb`` if it is a new high; return the high-water mark,
        and the error that kept the file from being read or written (the
        mark is then the one held in memory, or ``cur_kb``)."""
        try:
            old_kb = self.read_kb()
            if old_kb is not None and old_kb >= cur_kb:
                self.known_kb = old_kb
                return old_kb, None
            self._write(cur_kb)
        except OSError as exc:
            self.known_kb = max(self.known_kb or 0, cur_kb)
            return self.known_kb, exc
        self.known_kb = cur_kb
        return cur_kb, None

    def boot_kb(self, mark_kb: int) -> int:
        """The memory the guest booted with: ``<file>.boot``, recorded from
        ``mark_kb`` (this tick's high-water mark) when absent.  If it can be
        neither read nor written, ``mark_kb`` of this daemon's first tick."""
        if self._boot_kb is None:
            try:
                with open(self.boot_path, encoding="ascii", errors="replace") as f:
                    self._boot_kb = parse_bounded_int(f.read(64), 1, MAX_KB)
            except OSError:
                pass
            if self._boot_kb is None:
                self._boot_kb = mark_kb
                try:
                    _write_atomically(self.boot_path, mark_kb)
                except OSError:
                    pass  # held in memory, as the mark is (logged with it)
        return self._boot_kb

    def _write(self, cur_kb: int) -> None:
        _write_atomically(self.path, cur_kb)


def _write_atomically(path: str, value_kb: int) -> None:
    replace_file(path, f"{value_kb}\n", make_dirs=True)


def why_unwritable(path: str) -> str | None:
    """Why the high-water file at ``path`` could not be kept, as far as can
    be told without writing it; None if nothing is in the way."""
    if os.path.isdir(path):
        return f"{path} is a directory"
    directory = os.path.dirname(path) or "."
    while not os.path.lexists(directory):
        directory = os.path.dirname(directory)
    if not os.path.isdir(directory):
        return f"{directory} is not a directory"
    if not os.access(directory, os.W_OK):
        return f"{directory} is not writable"
    return None
