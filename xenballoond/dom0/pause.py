"""The balancer's pause flag and its act lock: the daemon's tick writes targets
only while it holds the lock and the flag is absent; ``free`` sets the flag and
takes the lock, so it never races a tick, whether the daemon runs or not."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

from ..paths import Root

PAUSE_FLAG = "/var/run/xenballoon-balancer.paused"
ACT_LOCK = "/var/run/xenballoon-balancer.lock"


def is_paused(root: Root) -> bool:
    return os.path.exists(root.path(PAUSE_FLAG))


def set_paused(root: Root, why: str) -> bool:
    """Create the pause flag; False if it was there already."""
    path = root.path(PAUSE_FLAG)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    existed = os.path.exists(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{why}\n")
    return not existed


def clear_paused(root: Root) -> bool:
    try:
        os.unlink(root.path(PAUSE_FLAG))
    except FileNotFoundError:
        return False
    return True


@contextmanager
def act_lock(root: Root) -> Iterator[None]:
    """Held while targets are written: the daemon's tick and ``free``."""
    path = root.path(ACT_LOCK)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
