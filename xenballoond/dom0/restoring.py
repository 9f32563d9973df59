"""``xenballoon-balancer restore FILE``: bring back a guest whose ``xl
restore`` failed because it held more than its saved ``memory/target``.

A failed restore leaves the save file intact.  This feeds it to ``xl
restore -p`` through a FIFO, with the header's ``b_info.target_memkb``
raised (savefile.py), so libxl builds the domain with room for every page it
held; the stream after the header is copied untouched (sendfile: no second
copy of a file as large as the guest on disk).  Then, with the domain still
paused, ``memory/target`` is set to what it holds (+ 1 MiB, as prepare-save
does), or its kernel would balloon up to the raised target on resume; then
``xl unpause``.  The domain's hypervisor limit stays at the raised target:
a self-ballooning guest may grow to it again (after-restore's job, done).
"""
from __future__ import annotations

import errno
import os
import select
import subprocess
import tempfile
import time
from typing import BinaryIO, Optional

from ..contract.keys import TARGET, memory_path
from ..xenstore import XenstoreError
from ..xenstore.interface import Xenstore
from . import savefile
from .act import Xl, XlError
from .saving import find_domain, save_target_kb

CHUNK_BYTES = 1 << 20
POLL_S = 0.05


def restore(xl: Xl, xs: Xenstore, path: str, room_kb: Optional[int], timeout_s: float
            ) -> tuple[bool, str]:
    """(ok, what to tell the administrator)."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        return False, f"cannot read {path}: {exc.strerror}"
    with f:
        try:
            header = savefile.read_header(f.read)
            name = header.name
            saved_kb = header.memory_kb("target_memkb")
            if room_kb is None:
                room_kb = max(header.memory_kb("max_memkb"), saved_kb)
        except savefile.SaveFileError as exc:
            return False, f"{path}: {exc}"
        try:
            if find_domain(xl.list_domains(), name) is not None:
                return False, (f"a domain named {name!r} exists: restoring {path} would make a "
                               "second one (xl destroy it first if it is the failed restore's)")
        except XlError as exc:
            return False, str(exc)
        ok, why = feed(xl, f, header, savefile.with_target(header, room_kb), timeout_s)
        if not ok:
            return False, (f"{why}; the save file is untouched (the guest may have held more "
                           f"than {room_kb} kB: try --memory with more)")
    try:
        d = find_domain(xl.list_domains(), name)
        if d is None:
            return False, f"xl restore succeeded but {name!r} is not in xl list"
        tgt_kb = min(save_target_kb(d.cur_kb), room_kb)
        xs.write_many({memory_path(d.domid, TARGET): str(tgt_kb)})
        xl.unpause(d.domid)
    except (XlError, XenstoreError) as exc:
        return False, f"restored {name!r} paused, but: {exc} (xl unpause {name} when it is fixed)"
    return True, (f"dom {d.domid} {name}: restored from {path} with room for {room_kb} kB "
                  f"(saved with a target of {saved_kb} kB); it holds {d.cur_kb} kB, "
                  f"memory/target = {tgt_kb} kB; it may grow to {room_kb} kB")


def feed(xl: Xl, f: BinaryIO, header: savefile.SaveHeader, new_header: bytes,
         timeout_s: float) -> tuple[bool, str]:
    """Run ``xl restore -p`` on a FIFO and write new_header, then the file's
    stream after its old header, into it."""
    deadline = time.monotonic() + timeout_s
    with tempfile.TemporaryDirectory(prefix="xenballoon-restore.") as tmp, \
            tempfile.TemporaryFile() as out:
        fifo = os.path.join(tmp, "stream")
        os.mkfifo(fifo, 0o600)
        child = subprocess.Popen([xl.xl, "restore", "-p", fifo], env=xl.env,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            fed = _write(fifo, child, f, header.size, new_header, deadline)
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return False, f"xl restore did not finish within {timeout_s:g} s"
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        out.seek(0)
        said = out.read(65536).decode("utf-8", "replace")
    if child.returncode != 0:
        return False, f"xl restore failed (rc {child.returncode}): {_gist(said)}"
    if not fed:
        return False, f"xl restore ended before it read the whole stream: {_gist(said)}"
    return True, ""


def _write(fifo: str, child: "subprocess.Popen[bytes]", f: BinaryIO, offset: int,
           head: bytes, deadline: float) -> bool:
    """Everything into the FIFO; False if xl stopped reading first."""
    fd = None
    while fd is None:  # until xl opens it: a blocking open would wait for good if xl failed
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            if child.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("xl restore", 0) from None
            time.sleep(POLL_S)
    try:
        size = os.fstat(f.fileno()).st_size
        while head:
            _wait_writable(fd, child, deadline)
            try:
                head = head[os.write(fd, head):]
            except BlockingIOError:
                pass  # less room than a PIPE_BUF write needs: wait again
        while offset < size:
            _wait_writable(fd, child, deadline)
            try:
                sent = os.sendfile(fd, f.fileno(), offset, min(CHUNK_BYTES, size - offset))
            except BlockingIOError:
                continue
            if sent == 0:
                break  # the file shrank under us: xl says what it makes of that
            offset += sent
    except BrokenPipeError:
        return False
    finally:
        os.close(fd)
    return offset >= size


def _wait_writable(fd: int, child: "subprocess.Popen[bytes]", deadline: float) -> None:
    while True:
        if select.select([], [fd], [], POLL_S)[1]:
            return
        if child.poll() is not None:
            raise BrokenPipeError(errno.EPIPE, "xl restore ended")
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired("xl restore", 0)


def _gist(said: str) -> str:
    """What xl said that matters: its error lines, else its last lines."""
    lines = [ln.strip() for ln in said.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "rror" in ln or "Over-allocation" in ln]
    return " | ".join((errors or lines)[-3:]) or "(nothing)"
