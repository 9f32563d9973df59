"""The native xenstore backend: speaks the wire protocol itself, no processes.

Where it connects, as libxenstore's xs_open() decides: ``$XENSTORED_PATH`` if set
(a socket, or a device such as /proc/xen/xenbus), else xenstored's socket
/var/run/xenstored/socket (dom0), else the guest's /dev/xen/xenbus (or the older
/proc/xen/xenbus).  Socket or device, the framing is the same; reads and writes
go through the file descriptor with poll(), so every request has a deadline.

The connection is opened on first use and kept.  If xenstored goes away the
next request fails with XenstoreUnavailable, and the one after that reconnects
(a request that finds its kept connection dead is retried once on a fresh one).
"""
from __future__ import annotations

import builtins  # the type, where a method named list hides it

import os
import select
import socket
import stat
import threading
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping

from . import wire
from ..paths import Root
from . import (XenstoreDenied, XenstoreError, XenstoreNotFound, XenstoreTooBig,
                       XenstoreUnavailable, XenstoreWriteFailed)
from .wire import Op

DAEMON_SOCKET = "/var/run/xenstored/socket"
GUEST_DEVICES = ("/dev/xen/xenbus", "/proc/xen/xenbus")
TRANSACTION_RETRIES = 8


class _Dead(Exception):
    """The connection broke; the request may be retried on a new one."""


class XenstoreRequestError(XenstoreError):
    """xenstored answered a request with an error; ``errno_name`` says which."""

    def __init__(self, errno_name: str, what: str) -> None:
        self.errno_name = errno_name
        super().__init__(f"{what}: {errno_name}")


def _b(text: str) -> bytes:
    try:
        return wire.to_bytes(text)
    except wire.WireError as exc:
        raise XenstoreError(f"{exc} for xenstore") from None


def _s(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class NativeXenstore:
    """The ``Xenstore`` protocol over one persistent connection.  Thread-safe
    (one request at a time).  ``requests`` counts round trips."""

    def __init__(self, socket_path: str | None = None, timeout_s: float = 2.0,
                 env: Mapping[str, str] | None = None, root: Root = Root()) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._env = env
        self._root = root
        self.processes_spawned = 0
        self.requests = 0
        self.reconnects = 0
        self._fd: int | None = None
        self._sock: socket.socket | None = None
        self._decoder = wire.Decoder()
        self._req_id = 0
        self._lock = threading.RLock()

    # --- connection ------------------------------------------------------

    def candidates(self) -> list[str]:
        """Paths tried in order, as xs_open() would."""
        if self.socket_path is not None:
            return [self.socket_path]
        env = os.environ if self._env is None else self._env
        override = env.get("XENSTORED_PATH")
        if override:
            return [override]
        return [self._root.path(DAEMON_SOCKET), *(self._root.path(d) for d in GUEST_DEVICES)]

    def _connect(self) -> None:
        errors = []
        for path in self.candidates():
            try:
                mode = os.stat(path).st_mode
                if stat.S_ISSOCK(mode):
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        sock.settimeout(self.timeout_s)
                        sock.connect(path)
                        sock.setblocking(False)
                    except OSError:
                        sock.close()
                        raise
                    self._sock, self._fd = sock, sock.fileno()
                else:
                    self._sock = None
                    self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
                continue
            self._decoder = wire.Decoder()
            return
        raise XenstoreUnavailable("cannot reach xenstored (" + "; ".join(errors) + ")")

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
        elif self._fd is not None:
            os.close(self._fd)
        self._sock = self._fd = None

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def available(self) -> bool:
        with self._lock:
            if self._fd is not None:
                return True
            try:
                self._connect()
            except XenstoreUnavailable:
                return False
            return True

    # --- one round trip --------------------------------------------------

    def _wait(self, fd: int, events: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, events)
        while True:
            left_ms = (deadline - time.monotonic()) * 1000
            if left_ms <= 0:
                raise TimeoutError
            ready = poller.poll(left_ms)
            if ready:
                if ready[0][1] & (select.POLLERR | select.POLLNVAL):
                    raise _Dead("poll error")
                return

    def _exchange(self, data: bytes, req_id: int) -> wire.Message:
        assert self._fd is not None
        fd = self._fd
        deadline = time.monotonic() + self.timeout_s
        view = memoryview(data)
        while view:
            self._wait(fd, select.POLLOUT, deadline)
            try:
                sent = os.write(fd, view)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # EPIPE, ECONNRESET: xenstored went away
                raise _Dead(str(exc)) from exc
            view = view[sent:]
        while True:
            self._wait(fd, select.POLLIN, deadline)
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise _Dead(str(exc)) from exc
            if not chunk:
                raise _Dead("connection closed by xenstored")
            try:
                msgs = self._decoder.feed(chunk)
            except wire.WireError as exc:
                raise _Dead(f"garbage from xenstored: {exc}") from exc
            reply = None
            for msg in msgs:
                # a WATCH_EVENT is dropped: the daemon sets no watch
                if msg.op != Op.WATCH_EVENT and msg.req_id == req_id and reply is None:
                    reply = msg
            if reply is not None:
                return reply

    def _talk(self, op: Op, payload: bytes, tx_id: int = 0, what: str = "") -> bytes:
        """Send one request and return the reply's payload; raise
        XenstoreRequestError for an XS_ERROR reply, XenstoreUnavailable when
        xenstored cannot be reached or does not answer in time."""
        if len(payload) > wire.PAYLOAD_MAX_BYTES:
            raise XenstoreRequestError("E2BIG", what or op.name)
        with self._lock:
            for attempt in (1, 2):
                fresh = self._fd is None
                if fresh:
                    self._connect()
                    if attempt == 2:
                        self.reconnects += 1
                self._req_id = (self._req_id + 1) & wire.U32_MAX
                data = wire.encode(op, payload, self._req_id, tx_id)
                self.requests += 1
                try:
                    reply = self._exchange(data, self._req_id)
                except TimeoutError:
                    self._disconnect()  # the stream is out of step now
                    raise XenstoreUnavailable(
                        f"xenstored did not answer {what or op.name} in {self.timeout_s}s") from None
                except _Dead as exc:
                    self._disconnect()
                    # A kept connection may have died with a restarted xenstored:
                    # retry once on a new one, unless a transaction was open on it.
                    if fresh or tx_id:
                        raise XenstoreUnavailable(f"xenstored connection lost: {exc}") from None
                    continue
                if reply.op == Op.ERROR:
                    raise XenstoreRequestError(wire.parse_error(reply.payload), what or op.name)
                if reply.op != op:
                    self._disconnect()
                    raise XenstoreUnavailable(f"xenstored answered {reply.op_name} to {op.name}")
                return reply.payload
        raise AssertionError("unreachable")

    # --- the Xenstore protocol ------------------------------------------

    def _read(self, path: str, tx_id: int = 0) -> bytes:
        return self._talk(Op.READ, wire.strings(_b(path)), tx_id, f"read {path}")

    def _directory(self, path: str, tx_id: int = 0) -> list[str]:
        try:
            payload = self._talk(Op.DIRECTORY, wire.strings(_b(path)), tx_id, f"list {path}")
        except XenstoreRequestError as exc:
            if exc.errno_name != "E2BIG":
                raise
            return self._directory_part(path, tx_id)
        try:
            return [_s(c) for c in wire.split_strings(payload)]
        except wire.WireError as exc:
            raise XenstoreError(f"list {path}: bad reply: {exc}") from None

    def _directory_part(self, path: str, tx_id: int) -> list[str]:
        """A directory too big for one reply, in parts (xs_directory_part())."""
        for _ in range(TRANSACTION_RETRIES):
            children: list[bytes] = []
            offset, gen = 0, None
            while True:
                payload = self._talk(Op.DIRECTORY_PART, wire.strings(_b(path), str(offset)),
                                     tx_id, f"list {path}")
                part_gen, _, rest = payload.partition(b"\0")
                if gen is not None and part_gen != gen:
                    break  # changed meanwhile: start again
                gen = part_gen
                if rest in (b"", b"\0"):
                    return [_s(c) for c in children]
                done = rest.endswith(b"\0\0")
                names = rest[:-2 if done else -1].split(b"\0") if rest.endswith(b"\0") else []
                if not names:
                    raise XenstoreError(f"list {path}: bad DIRECTORY_PART reply")
                children += names
                offset += sum(len(n) + 1 for n in names)
                if done:
                    return [_s(c) for c in children]
        raise XenstoreError(f"list {path}: kept changing")

    @staticmethod
    def _as_lookup_error(exc: XenstoreRequestError) -> XenstoreError:
        # Like the CLI ("couldn't read path"): a node we may not read is as good
        # as missing, and xenstored itself hides whether it exists.
        if exc.errno_name in ("ENOENT", "EACCES"):
            return XenstoreNotFound(str(exc))
        return exc

    def read(self, path: str) -> str:
        try:
            return _s(self._read(path))
        except XenstoreRequestError as exc:
            raise self._as_lookup_error(exc) from None

    def list(self, path: str) -> list[str]:
        try:
            return self._directory(path)
        except XenstoreRequestError as exc:
            raise self._as_lookup_error(exc) from None

    def snapshot(self, path: str) -> dict[str, str]:
        """Every readable node below ``path``: one DIRECTORY and one READ per
        node, depth first, as ``xenstore-ls -f`` walks.  Missing path: {}."""
        nodes: dict[str, str] = {}
        top = path.rstrip("/") or "/"
        try:
            kids = self._directory(top)
        except XenstoreRequestError as exc:
            if exc.errno_name in ("ENOENT", "EACCES"):
                return {}
            raise
        stack = [(top, "", kids)]
        while stack:
            abs_path, rel, children = stack.pop()
            for child in reversed(children):
                sub = f"{abs_path}/{child}" if abs_path != "/" else f"/{child}"
                key = f"{rel}/{child}" if rel else child
                try:
                    nodes[key] = _s(self._read(sub))
                    grandkids = self._directory(sub)
                except XenstoreRequestError as exc:
                    if exc.errno_name in ("ENOENT", "EACCES"):
                        continue  # removed meanwhile, or not ours to read
                    raise
                if grandkids:
                    stack.append((sub, key, grandkids))
        return dict(sorted(nodes.items()))

    def write_many(self, items: Mapping[str, str]) -> None:
        """One transaction: all items or none; retried while xenstored says EAGAIN."""
        if not items:
            return
        encoded = []
        for key, value in items.items():
            if "\0" in value or "\0" in key:
                raise XenstoreWriteFailed(f"NUL byte in {key!r} or its value")
            try:
                payload = wire.write_payload(_b(key), _b(value))
            except XenstoreError as exc:
                raise XenstoreWriteFailed(f"write {key!r}: {exc}") from None
            if len(payload) > wire.PAYLOAD_MAX_BYTES:
                raise XenstoreTooBig(f"write {key}: {len(payload)} bytes exceeds the "
                                     f"{wire.PAYLOAD_MAX_BYTES}-byte message limit")
            encoded.append((key, payload))
        with self._lock:
            for _ in range(TRANSACTION_RETRIES):
                try:
                    if self._write_once(encoded):
                        return
                except XenstoreRequestError as exc:
                    raise self._as_write_error(exc) from None
            raise XenstoreWriteFailed(f"transaction kept conflicting (EAGAIN) after "
                                      f"{TRANSACTION_RETRIES} tries")

    def _write_once(self, encoded: builtins.list[tuple[str, bytes]]) -> bool:
        """False if the commit met a conflict (EAGAIN) and should be retried."""
        if len(encoded) == 1:
            key, payload = encoded[0]
            self._talk(Op.WRITE, payload, 0, f"write {key}")
            return True
        tx_reply = self._talk(Op.TRANSACTION_START, wire.strings(""), 0, "start transaction")
        try:
            tx_id = int(tx_reply.rstrip(b"\0"))
        except ValueError:
            raise XenstoreError(f"bad transaction id {tx_reply[:40]!r}") from None
        try:
            for key, payload in encoded:
                self._talk(Op.WRITE, payload, tx_id, f"write {key}")
        except XenstoreRequestError:
            try:
                self._talk(Op.TRANSACTION_END, wire.strings("F"), tx_id, "abort transaction")
            except XenstoreError:
                pass
            raise
        try:
            self._talk(Op.TRANSACTION_END, wire.strings("T"), tx_id, "commit transaction")
        except XenstoreRequestError as exc:
            if exc.errno_name == "EAGAIN":
                return False
            raise
        return True

    @staticmethod
    def _as_write_error(exc: XenstoreRequestError) -> XenstoreError:
        if exc.errno_name == "EACCES":
            return XenstoreDenied(str(exc))
        if exc.errno_name in ("E2BIG", "ENOSPC"):
            return XenstoreTooBig(str(exc))
        return XenstoreWriteFailed(str(exc))
