"""The balloon driver adapters: the 2008 ``/proc/xen/balloon`` and the sysfs
``xen_memory0`` interface of every current kernel.  Both take targets in bytes.
"""
from __future__ import annotations

import os

from ..paths import PROC_XEN_BALLOON, SYSFS_BALLOON_DIR, Root

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping, Protocol

    class Balloon(Protocol):
        """What a tick needs from a balloon driver."""

        name: str

        def current_kb(self, meminfo: Mapping[str, int]) -> int:
            """The memory the guest holds now, in the units targets are set in."""

        def kernel_reserved_kb(self, meminfo: Mapping[str, int], cur_kb: int) -> int:
            """What the kernel keeps out of MemTotal from the memory it holds."""

        def set_target_bytes(self, tgt_bytes: int) -> None: ...


class BalloonError(OSError):
    pass


def _write(path: str, text: str) -> None:
    try:
        # os.open, not open(): no text file object around one write, every tick
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)
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

    def kernel_reserved_kb(self, meminfo: Mapping[str, int], cur_kb: int) -> int:
        return 0  # current is MemTotal: nothing held outside it

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

    def kernel_reserved_kb(self, meminfo: Mapping[str, int], cur_kb: int) -> int:
        """The pages the kernel holds outside MemTotal (63116 kB in a 384 MiB
        pvops guest): added to a self target, or the guest would shrink every tick."""
        return max(cur_kb - meminfo["MemTotal"], 0)

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
