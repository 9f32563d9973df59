"""Keeping the daemon runnable when the guest runs short of memory.

Under pressure the kernel evicts file-backed pages first, the interpreter's
text and the daemon's modules among them, and reads them back at disk speed:
on the real host a swapless guest's daemon went 8 s between two ticks while
its guest ran out.  So the daemon locks its pages (mlockall, as it faults
them in: about 12 MiB) and asks the OOM killer to pick another process: it is
the one that can give the guest memory.

Under systemd the unit does both before the start (LimitMEMLOCK=infinity,
OOMScoreAdjust=-1000), with no CAP_IPC_LOCK: mlockall() then fits the limit,
and writing -1000 again is allowed (it is the floor systemd set), so nothing
is logged.  Started otherwise (SysV, by hand), root's capabilities do it, or
the warning says why not.
"""
from __future__ import annotations

import logging
import os

MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
OOM_SCORE_ADJ_MIN = -1000
# The kernel's, not the --root tree's: it is this process.
PROC_SELF_OOM_SCORE_ADJ = "/proc/self/oom_score_adj"


def lock_memory() -> str | None:
    """mlockall(); None if done, else why not.

    os has no mlockall, and it locks only the process that calls it, so it is
    called here, through _ctypes, the C module under ctypes: the ctypes
    package around it (its c_* types, CDLL, _endian) costs every guest
    0.15 MiB more, for one call made once."""
    import _ctypes

    class Int(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int
        _type_ = "i"

    class Mlockall(_ctypes.CFuncPtr):  # int mlockall(int flags), errno kept
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = Int
        _argtypes_ = (Int,)

    try:
        # dlopen(NULL): the process itself, libc among it
        libc = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]
        mlockall = Mlockall(_ctypes.dlsym(libc, "mlockall"))
    except OSError as exc:  # no such symbol: not glibc nor musl
        return str(exc)
    # ONFAULT (Linux 4.4): lock pages as they are touched, not every mapping
    # at once (thread stacks, arenas reserved but unused)
    for flags in (MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT, MCL_CURRENT | MCL_FUTURE):
        if mlockall(flags) == 0:
            return None
        err = _ctypes.get_errno()
        if err != 22:  # EINVAL: no MCL_ONFAULT on this kernel
            break
    return os.strerror(err)


def avoid_oom_killer(path: str = PROC_SELF_OOM_SCORE_ADJ) -> str | None:
    """oom_score_adj -1000; None if done, else why not."""
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{OOM_SCORE_ADJ_MIN}\n")
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def keep(log: logging.Logger) -> None:
    why = lock_memory()
    if why is not None:
        log.warning("cannot lock the daemon in memory (%s): under memory pressure it may "
                    "stall when the guest needs it most", why)
    why = avoid_oom_killer()
    if why is not None:
        log.warning("cannot exempt the daemon from the OOM killer (%s)", why)
