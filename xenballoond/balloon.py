"""The balloon driver adapters: the 2008 ``/proc/xen/balloon`` and the sysfs
``xen_memory0`` interface of every current kernel.  Both take targets in bytes.
"""
from __future__ import annotations

import os

from .paths import PROC_XEN_BALLOON, SYSFS_BALLOON_DIR, Root

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (RSS)
if TYPE_CHECKING:
    from typing import Mapping

    from .interfaces import Balloon


class BalloonError(OSError):
    pass


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(text)
    except OSError as exc:
        raise BalloonError(exc.errno, f"cannot write balloon target {path}: {exc.strerror}") from exc


class ProcBalloon:
    """/proc/xen/balloon of the 2008 xenlinux driver: write a target in bytes.
    Current memory is MemTotal, as the original's curkb() took it."""

    name = "proc"

    def __init__(self, path: str) -> None:
        self.path = path

    def current_kb(self, meminfo: Mapping[str, int]) -> int:
        return meminfo["MemTotal"]

    def set_target_bytes(self, tgt_bytes: int) -> None:
        _write(self.path, f"{tgt_bytes}\n")


class SysfsBalloon:
    """/sys/devices/system/xen_memory/xen_memory0: ``target`` in bytes,
    ``info/current_kb`` the current reservation (MemTotal is smaller on pvops
    kernels: comparing targets with MemTotal would shrink the guest every tick)."""

    name = "sysfs"

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def current_kb(self, meminfo: Mapping[str, int]) -> int:
        path = os.path.join(self.directory, "info", "current_kb")
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                text = f.read(64).strip()
        except OSError as exc:
            raise BalloonError(exc.errno, f"cannot read {path}: {exc.strerror}") from exc
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            raise BalloonError(0, f"{path}: not a number: {text[:32]!r}")
        return int(text)

    def set_target_bytes(self, tgt_bytes: int) -> None:
        _write(os.path.join(self.directory, "target"), f"{tgt_bytes}\n")


def detect_balloon(root: Root) -> Balloon | None:
    """The legacy interface where it exists (as the original), else sysfs."""
    proc = root.path(PROC_XEN_BALLOON)
    if os.path.isfile(proc):
        return ProcBalloon(proc)
    sysfs = root.path(SYSFS_BALLOON_DIR)
    if os.path.isfile(os.path.join(sysfs, "target")):
        return SysfsBalloon(sysfs)
    return None
