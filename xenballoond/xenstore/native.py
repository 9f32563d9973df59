"""The native xenstore backend: speaks the wire protocol itself, no processes.

Where it connects, as libxenstore's xs_open() decides: ``$XENSTORED_PATH`` if set
(a socket, or a device such as /proc/xen/xenbus), else xenstored's socket
/var/run/xenstored/socket (dom0), else the guest's /dev/xen/xenbus (or the older
/proc/xen/xenbus).  Socket or device, the framing is the same; reads and writes
go through the file descriptor with poll(), so every request has a deadline.

The connection is opened on first use and kept.  If xenstored goes away the
next request fails with XenstoreUnavailable, and the one after that reconnects
(a request that finds its kept connection dead is retried once on a fresh one).

A device is not a socket in four ways that matter (Linux's xenbus_dev_frontend.c):
- it takes one message per write(): the bytes after the first message of a
  write are dropped, so each request gets its own write();
- it does not copy a request's payload: xenbus_dev_request_and_reply() queues
  a pointer into the file's one message buffer, and the kernel's xenbus thread
  copies it to the ring later, while write() has already returned and the next
  write() overwrites that buffer.  A second request written before the first
  is on the ring goes out with the first one's header and the second one's
  bytes (on a one-vCPU guest, every request of a pipelined batch but the
  last).  Over a device, the next request is therefore written only once the
  reply to the one before has come: one request in flight per connection;
- its poll() reports POLLIN only, never POLLOUT (xenbus_file_poll): a write
  is always taken at once, and waiting for POLLOUT waited for the deadline
  unless something happened to be readable;
- a transaction still open when the device is closed (a timeout, the daemon
  killed) is ended by the kernel, which then counts one xenstore user too few
  (Linux 6.1's xs_request_exit), and every later xl save or migration of the
  guest waits in xs_suspend() for good.  Over a device, write_many() therefore
  writes its keys without a transaction, one request each.
"""
from __future__ import annotations

import builtins  # the type, where a method named list hides it

import os
import select
import stat
import threading
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping, Sequence

    from _socket import socket

from . import wire
from ..paths import Root
from . import (XenstoreDenied, XenstoreError, XenstoreNotFound, XenstoreTooBig,
                       XenstoreUnavailable, XenstoreWriteFailed)
from .wire import Op

DAEMON_SOCKET = "/var/run/xenstored/socket"
GUEST_DEVICES = ("/dev/xen/xenbus", "/proc/xen/xenbus")
TRANSACTION_RETRIES = 8
# Requests in flight at once on one connection: xenstored answers them in turn,
# and C xenstored's quota of outstanding requests per connection is 20.
PIPELINE_DEPTH = 16
EVENTS_MAX = 256  # events kept between two calls of events(); more are one change anyway


def write_units(messages: Sequence[bytes], device: bool) -> builtins.list[bytes]:
    """What each write() carries: one message on a device (the kernel keeps the
    first message of a write and drops the rest), all of them on a socket."""
    return list(messages) if device else [b"".join(messages)]


def exchange_steps(messages: Sequence[bytes], req_ids: Sequence[int], device: bool
                   ) -> builtins.list[tuple[bytes, builtins.list[int]]]:
    """Each write() and the replies awaited before the next one: on a device, a
    message and its own reply (the kernel reads a request's payload from its one
    buffer after write() returns: the next write() must wait for the reply); on
    a socket, every message at once, then every reply."""
    if device:
        return [(m, [r]) for m, r in zip(write_units(messages, True), req_ids)]
    return [(u, list(req_ids)) for u in write_units(messages, False)]


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
    (one batch of requests at a time)."""

    backend = "native"

    def __init__(self, socket_path: str | None = None, timeout_s: float = 2.0,
                 env: Mapping[str, str] | None = None, root: Root = Root()) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._env = env
        self._root = root
        self.processes_spawned = 0
        self.requests = 0  # messages sent
        self.round_trips = 0  # waits for xenstored: one per batch (socket), per request (device)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.reconnects = 0
        self._fd: int | None = None
        self._sock: socket | None = None
        self.device = False  # the connection is a device (see the module's docstring)
        self._decoder = wire.Decoder()
        self._req_id = 0
        self._lock = threading.RLock()
        self._watches: dict[tuple[str, str], None] = {}  # (path, token), armed on connect
        self._events: builtins.list[tuple[str, str]] = []  # WATCH_EVENTs not yet taken

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
                    # The C module socket.py wraps: its enums and wrappers would
                    # cost every guest 0.25 MiB, for connect() and a descriptor.
                    # (A guest's xenbus is a device: no socket at all.)
                    import _socket
                    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                    try:
                        sock.settimeout(self.timeout_s)
                        sock.connect(path)
                        sock.setblocking(False)
                    except OSError:
                        sock.close()
                        raise
                    self._sock, self._fd, self.device = sock, sock.fileno(), False
                else:
                    self._sock = None
                    self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
                    self.device = True
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
                continue
            self._decoder = wire.Decoder()
            self._rearm()
            return
        raise XenstoreUnavailable("cannot reach xenstored (" + "; ".join(errors) + ")")

    def _rearm(self) -> None:
        """A new connection has no watches: set ours again.  xenstored fires
        each once when it is set, so a change missed while disconnected is seen."""
        if not self._watches:
            return
        requests = [(Op.WATCH, wire.strings(_b(p), _b(t)), f"watch {p}") for p, t in self._watches]
        for reply in self._talk_window(requests, 0, rearm=False):
            if isinstance(reply, XenstoreRequestError) and reply.errno_name != "EEXIST":
                raise XenstoreUnavailable(f"cannot set the watch again: {reply}")

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

    def _exchange(self, messages: builtins.list[bytes], req_ids: builtins.list[int]
                  ) -> dict[int, wire.Message]:
        """Send the encoded requests and wait for the reply to each of
        ``req_ids``, in whatever order they come: on a socket all back to back,
        on a device one at a time (see the module's docstring).  Each write
        and the replies it awaits have ``timeout_s``."""
        assert self._fd is not None
        fd = self._fd
        replies: dict[int, wire.Message] = {}
        for chunk, awaited in exchange_steps(messages, req_ids, self.device):
            deadline = time.monotonic() + self.timeout_s
            self.round_trips += 1
            self._send(fd, chunk, deadline)
            waiting = set(awaited)
            while waiting:
                self._wait(fd, select.POLLIN, deadline)
                self._receive(fd, waiting, replies)
        return replies

    def _send(self, fd: int, chunk: bytes, deadline: float) -> None:
        view = memoryview(chunk)
        while view:
            if not self.device:  # the device's poll() never says POLLOUT: a write always goes
                self._wait(fd, select.POLLOUT, deadline)
            try:
                sent = os.write(fd, view)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # EPIPE, ECONNRESET: xenstored went away
                raise _Dead(str(exc)) from exc
            view = view[sent:]
            self.bytes_sent += sent

    def _receive(self, fd: int, waiting: set[int], replies: dict[int, wire.Message]) -> bool:
        """Take what xenstored has sent: the replies awaited, and watch events
        (queued).  False if there was nothing to read."""
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            raise _Dead(str(exc)) from exc
        if not chunk:
            raise _Dead("connection closed by xenstored")
        self.bytes_received += len(chunk)
        try:
            msgs = self._decoder.feed(chunk)
        except wire.WireError as exc:
            raise _Dead(f"garbage from xenstored: {exc}") from exc
        self._take(msgs, waiting, replies)
        return True

    def _take(self, msgs: builtins.list[wire.Message], waiting: set[int],
              replies: dict[int, wire.Message]) -> None:
        for msg in msgs:
            if msg.op == Op.WATCH_EVENT:
                self._queue_event(msg.payload)
            elif msg.req_id in waiting:
                waiting.discard(msg.req_id)
                replies[msg.req_id] = msg

    def _queue_event(self, payload: bytes) -> None:
        parts = payload.split(b"\0")
        if len(parts) >= 2 and len(self._events) < EVENTS_MAX:
            self._events.append((_s(parts[0]), _s(parts[1])))

    def _talk(self, op: Op, payload: bytes, tx_id: int = 0, what: str = "") -> bytes:
        """Send one request and return the reply's payload; raise
        XenstoreRequestError for an XS_ERROR reply, XenstoreUnavailable when
        xenstored cannot be reached or does not answer in time."""
        [reply] = self._talk_many([(op, payload, what)], tx_id)
        if isinstance(reply, XenstoreRequestError):
            raise reply
        return reply

    def _talk_many(self, requests: Sequence[tuple[Op, bytes, str]], tx_id: int = 0
                   ) -> builtins.list[bytes | XenstoreRequestError]:
        """Send the requests, PIPELINE_DEPTH at a time (back to back on a socket,
        one after another's reply on a device), and return each one's reply
        payload, or its XS_ERROR as an XenstoreRequestError (not raised).
        xenstored answers each request of a connection in turn; the replies
        are matched by request id, as the protocol allows."""
        out: builtins.list[bytes | XenstoreRequestError] = []
        with self._lock:
            for start in range(0, len(requests), PIPELINE_DEPTH):
                out += self._talk_window(requests[start:start + PIPELINE_DEPTH], tx_id)
        return out

    def _talk_window(self, requests: Sequence[tuple[Op, bytes, str]], tx_id: int,
                     rearm: bool = True) -> builtins.list[bytes | XenstoreRequestError]:
        for op, payload, what in requests:
            if len(payload) > wire.PAYLOAD_MAX_BYTES:
                raise XenstoreRequestError("E2BIG", what or op.name)
        for attempt in (1, 2):
            fresh = self._fd is None
            if fresh:
                if not rearm:
                    raise XenstoreUnavailable("xenstored connection lost while setting watches")
                self._connect()
                if attempt == 2:
                    self.reconnects += 1
            ids = []
            messages = []
            for op, payload, _ in requests:
                self._req_id = (self._req_id + 1) & wire.U32_MAX
                ids.append(self._req_id)
                messages.append(wire.encode(op, payload, self._req_id, tx_id))
            self.requests += len(requests)
            try:
                replies = self._exchange(messages, ids)
            except TimeoutError:
                self._disconnect()  # the stream is out of step now
                what = requests[0][2] or requests[0][0].name
                raise XenstoreUnavailable(
                    f"xenstored did not answer {what} in {self.timeout_s}s") from None
            except _Dead as exc:
                self._disconnect()
                # A kept connection may have died with a restarted xenstored:
                # retry once on a new one, unless a transaction was open on it.
                if fresh or tx_id:
                    raise XenstoreUnavailable(f"xenstored connection lost: {exc}") from None
                continue
            out: builtins.list[bytes | XenstoreRequestError] = []
            for (op, _, what), req_id in zip(requests, ids):
                reply = replies[req_id]
                if reply.op == Op.ERROR:
                    out.append(XenstoreRequestError(wire.parse_error(reply.payload),
                                                    what or op.name))
                elif reply.op != op:
                    self._disconnect()
                    raise XenstoreUnavailable(f"xenstored answered {reply.op_name} to {op.name}")
                else:
                    out.append(reply.payload)
            return out
        raise AssertionError("unreachable")

    # --- watches --------------------------------------------------------

    def watch(self, path: str, token: str) -> None:
        """Have xenstored report every change at or below ``path`` (and once
        now); kept across reconnections.  Events: fileno() and events()."""
        with self._lock:
            key = (path, token)
            if key in self._watches:
                return
            self._watches[key] = None
            if self._fd is None:
                self._connect()  # sets it with the others
                return
            try:
                self._talk(Op.WATCH, wire.strings(_b(path), _b(token)), 0, f"watch {path}")
            except XenstoreError:
                del self._watches[key]
                raise

    def fileno(self) -> int | None:
        """The connection, for select(): readable when an event may be waiting
        (None: not connected; the next call connects and sets the watches)."""
        return self._fd

    def events(self) -> builtins.list[tuple[str, str]]:
        """Every (path, token) reported since the last call, without waiting.
        A dead connection is closed: the next call reconnects (and re-arms)."""
        with self._lock:
            if self._fd is not None:
                try:
                    self._drain()
                except _Dead:
                    self._disconnect()
            out, self._events = self._events, []
            return out

    def _drain(self) -> None:
        assert self._fd is not None
        while self._receive(self._fd, set(), {}):
            pass

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
        """Every readable node below ``path``, as ``xenstore-ls -f`` gives them:
        one DIRECTORY and one READ per node, sent a level of the tree at a time
        (memory/ is one level: two batches).  Missing path: {}."""
        nodes: dict[str, str] = {}
        top = path.rstrip("/") or "/"
        try:
            kids = self._directory(top)
        except XenstoreRequestError as exc:
            if exc.errno_name in ("ENOENT", "EACCES"):
                return {}
            raise
        level = [(f"{top}/{c}" if top != "/" else f"/{c}", c) for c in kids]
        while level:
            requests: builtins.list[tuple[Op, bytes, str]] = []
            for sub, _ in level:
                arg = wire.strings(_b(sub))
                requests += [(Op.READ, arg, f"read {sub}"), (Op.DIRECTORY, arg, f"list {sub}")]
            replies = self._talk_many(requests)
            deeper = []
            for n, (sub, key) in enumerate(level):
                value, listing = replies[2 * n], replies[2 * n + 1]
                for reply in (value, listing):
                    if isinstance(reply, XenstoreRequestError) and \
                            reply.errno_name not in ("ENOENT", "EACCES", "E2BIG"):
                        raise reply
                if isinstance(value, XenstoreRequestError):
                    continue  # removed meanwhile, or not ours to read
                nodes[key] = _s(value)
                if isinstance(listing, XenstoreRequestError):
                    if listing.errno_name != "E2BIG":
                        continue
                    children = self._directory_part(sub, 0)
                else:
                    children = self._children(listing, sub)
                deeper += [(f"{sub}/{c}", f"{key}/{c}") for c in children]
            level = deeper
        return dict(sorted(nodes.items()))

    @staticmethod
    def _children(payload: bytes, path: str) -> builtins.list[str]:
        try:
            return [_s(c) for c in wire.split_strings(payload)]
        except wire.WireError as exc:
            raise XenstoreError(f"list {path}: bad reply: {exc}") from None

    def read_existing(self, paths: Sequence[str]) -> dict[str, str]:
        """The value of each path that exists and is ours to read, pipelined."""
        return {p: _s(v) for p, v in self._existing(Op.READ, paths).items() if v is not None}

    def list_existing(self, paths: Sequence[str]) -> dict[str, builtins.list[str]]:
        """The children of each path that exists and is ours to read, pipelined."""
        return {p: self._children(v, p) if v is not None else self._directory_part(p, 0)
                for p, v in self._existing(Op.DIRECTORY, paths).items()}

    def read_upto(self, paths: Sequence[str]) -> tuple[dict[str, str], builtins.list[str]]:
        """read_existing: every path is tried, none is left untried."""
        return self.read_existing(paths), []

    def list_upto(self, paths: Sequence[str]
                  ) -> tuple[dict[str, builtins.list[str]], builtins.list[str]]:
        """list_existing: every path is tried, none is left untried."""
        return self.list_existing(paths), []

    def _existing(self, op: Op, paths: Sequence[str]) -> dict[str, bytes | None]:
        """Each distinct path's reply payload; missing and unreadable paths left
        out; None for a directory too big for one reply (E2BIG)."""
        unique = list(dict.fromkeys(paths))
        verb = "list" if op == Op.DIRECTORY else "read"
        replies = self._talk_many([(op, wire.strings(_b(p)), f"{verb} {p}") for p in unique])
        found: dict[str, bytes | None] = {}
        for path, reply in zip(unique, replies):
            if not isinstance(reply, XenstoreRequestError):
                found[path] = reply
            elif op == Op.DIRECTORY and reply.errno_name == "E2BIG":
                found[path] = None
            elif reply.errno_name not in ("ENOENT", "EACCES"):
                raise self._as_lookup_error(reply)
        return found

    def write_many(self, items: Mapping[str, str]) -> None:
        """One transaction: all items or none; retried while xenstored says EAGAIN.
        Over a device, one write each, one at a time, with no transaction (see the
        module's docstring): a reader may see some keys new and some old for the
        moment between two replies."""
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
            if self._fd is None:
                self._connect()  # a device or a socket: write_many depends on which
            if self.device:
                for reply in self._talk_many([(Op.WRITE, payload, f"write {key}")
                                              for key, payload in encoded]):
                    if isinstance(reply, XenstoreRequestError):
                        raise self._as_write_error(reply)
                return
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
        replies = self._talk_many([(Op.WRITE, payload, f"write {key}")
                                   for key, payload in encoded], tx_id)
        for reply in replies:
            if isinstance(reply, XenstoreRequestError):
                try:
                    self._talk(Op.TRANSACTION_END, wire.strings("F"), tx_id, "abort transaction")
                except XenstoreError:
                    pass
                raise reply
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
