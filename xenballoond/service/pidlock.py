"""The one-instance guard: an flock on the PID file, held for the daemon's life.

The original recorded nothing, so flipping run levels 5 and 3 started more
daemons.  Liveness is the lock, which the kernel releases when the daemon
dies however it dies: not the PID in the file, which may name a reused PID
(any process whose command line says "xenballoond", a ``tail -f`` of its
log) or a daemon in another PID namespace.  The starter takes the lock
before detaching and the daemon inherits it (DaemonContext's files_preserve),
so a second start fails in the starter, where the caller sees it.  The file
keeps lockfile's format, the PID and a newline, for the init script and for
admins.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import time

# A reader (the init script's `flock -s`) may hold the lock for a moment.
ACQUIRE_TRIES = 40
ACQUIRE_PAUSE_S = 0.025


class AlreadyRunning(Exception):
    def __init__(self, pid: int | None, path: str) -> None:
        super().__init__(f"already running (pid {pid if pid is not None else 'unknown'}, "
                         f"{path} is locked)")
        self.pid = pid


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 1 << 22 else None


class PidLock:
    """An exclusive flock on ``path``, held through ``fd`` until release()."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, log: logging.Logger) -> None:
        """Take the lock or raise AlreadyRunning; a PID left in the file by a
        daemon that died is stale, and said so."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        for _ in range(ACQUIRE_TRIES):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                time.sleep(ACQUIRE_PAUSE_S)
                continue
            if self._still_the_file(fd):
                break
            # the holder removed the file as it stopped: lock the new one
            os.close(fd)
        else:
            raise AlreadyRunning(read_pid(self.path), self.path)
        stale = os.pread(fd, 32, 0).strip()
        if stale:
            log.warning("removing stale PID file %s (pid %s does not hold its lock)",
                        self.path, stale.decode("ascii", "replace"))
        os.ftruncate(fd, 0)
        self.fd = fd

    def _still_the_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def write_pid(self, pid: int) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def release(self) -> None:
        """Remove the file, then let go of the lock (in that order: a starter
        that opened the file meanwhile sees it is gone and tries again)."""
        if self.fd is None:
            return
        try:
            if self._still_the_file(self.fd):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None
