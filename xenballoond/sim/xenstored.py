"""A simulated xenstored: the wire protocol on unix sockets, one per domain.

A real guest talks to xenstored through its own ring, so xenstored knows who is
asking; here each simulated domain gets its own socket (``<dir>/d<domid>``) and
whatever connects to it is that domain.  ``d0`` is dom0 (privileged).  Point
Debian's real clients at one with ``XENSTORED_PATH=<dir>/d5 xenstore-read
memory/target`` and they resolve relative paths under /local/domain/5, get
EACCES on memory/, and so on.  Node rules live in ``xs_tree``.

One thread serves every socket with ``selectors``; requests are handled one at a
time under a lock, like xenstored's single loop.  The simulator may also read and
write the tree in-process (``read``/``write``/``set_perms``/``watch``...), as dom0
by default; those changes fire watches on the sockets too.

Run standalone: ``python -m xenballoond.sim.xenstored --dir /tmp/xs --domains 3``.
"""
from __future__ import annotations

import builtins  # the type, where a method named list hides it

import argparse
import contextlib
import itertools
import json
import logging
import os
import selectors
import signal
import socket
import stat
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ..xenstore import wire
from . import wire_server
from ..xenstore.wire import Op, WireError
from .wire_server import Perm
from . import xs_tree as tree
from .xs_tree import DOM0, Caller, Event, XsError

log = logging.getLogger(__name__)

SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1
OUTBUF_MAX_BYTES = 1 << 20  # a client that never reads its watch events is dropped
GUEST_WATCH_MAX = 128
GUEST_TRANSACTION_MAX = 10
TRACE_MAX = 20000

_PRIVILEGED_OPS = {Op.CONTROL, Op.INTRODUCE, Op.RELEASE, Op.IS_DOMAIN_INTRODUCED,
                   Op.RESUME, Op.SET_TARGET}
_NO_TX_OPS = {Op.WATCH, Op.UNWATCH}


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")




@dataclass
class _Watch:
    path: str  # canonical
    given: str  # as the client wrote it
    token: bytes
    relative: bool


@dataclass
class _Conn:
    sock: socket.socket
    fd: int
    caller: Caller
    decoder: wire.Decoder = field(default_factory=wire.Decoder)
    out: bytearray = field(default_factory=bytearray)
    watches: list[_Watch] = field(default_factory=list)
    txs: dict[int, tree.Transaction] = field(default_factory=dict)
    next_tx: int = 1
    closed: bool = False


@dataclass
class _LocalWatch:
    path: str
    caller: Caller
    callback: Callable[[str], None]


@dataclass
class DomainInfo:
    domid: int
    name: str
    socket_path: str


@dataclass(frozen=True)
class TraceEntry:
    domid: int
    op: str
    tx_id: int
    payload: bytes
    error: str | None


class SimXenstored:
    """The simulated daemon.  The constructor does no I/O; ``start()`` binds the
    sockets and starts the serving thread; ``stop()`` closes everything and
    removes the socket files but keeps the tree, so ``start()`` again looks like
    a restarted xenstored to connected clients (their old connections are gone)."""

    def __init__(self, sock_dir: str, trace: bool = False) -> None:
        self.sock_dir = sock_dir
        self.tree = tree.Tree()
        self.domains: dict[int, DomainInfo] = {}
        self.requests_served = 0
        self.connections_accepted = 0
        # per domain: [requests, bytes received, bytes sent (replies and watch events)]
        self.traffic: dict[int, list[int]] = {}
        self.trace: deque[TraceEntry] | None = deque(maxlen=TRACE_MAX) if trace else None
        self._lock = threading.Lock()  # the tree, connections, watches, out buffers
        self._gate = threading.Lock()  # held while stalled
        self._stalled = False
        self._sel: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._listeners: dict[int, socket.socket] = {}
        self._conns: dict[int, _Conn] = {}  # by fileno
        self._pending: deque[Callable[[], object]] = deque()  # run by the loop thread
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = False
        self._local_watches: dict[int, _LocalWatch] = {}
        self._watch_ids = itertools.count(1)
        self._introduced: set[int] = set()
        self.add_domain(0, "Domain-0")

    # --- lifecycle -------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def socket_path(self, domid: int) -> str:
        return os.path.join(self.sock_dir, f"d{domid}")

    @property
    def dom0_socket(self) -> str:
        return self.socket_path(0)

    def start(self) -> "SimXenstored":
        if self._thread is not None:
            return self
        os.makedirs(self.sock_dir, exist_ok=True)
        self._stopping = False
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        for domid in list(self.domains):
            self._listen(domid)
        self._thread = threading.Thread(target=self._loop, name="sim-xenstored", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake()
        if self._stalled:
            self.unstall()
        thread.join()
        self._thread = None
        with self._lock:
            for conn in list(self._conns.values()):
                self._close_conn(conn)
            for domid in list(self._listeners):
                self._unlisten(domid)
        assert self._sel is not None and self._wake_r is not None and self._wake_w is not None
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
        self._sel = self._wake_r = self._wake_w = None

    def __enter__(self) -> "SimXenstored":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stall(self) -> None:
        """Stop answering (a hung xenstored): connections are still accepted by
        the kernel, requests are read by nobody, until ``unstall()``."""
        if not self._stalled:
            self._gate.acquire()
            self._stalled = True

    def unstall(self) -> None:
        if self._stalled:
            self._stalled = False
            self._gate.release()

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        self.stall()
        try:
            yield
        finally:
            self.unstall()

    # --- domains ---------------------------------------------------------

    def add_domain(self, domid: int, name: str, memory_kb: int | None = None,
                   maxmem_kb: int | None = None) -> str:
        """Make /local/domain/<domid> as libxl does and give the domain a socket;
        returns the socket path.  For dom0 (always present) it updates the keys."""
        if not 0 <= domid < 0x7FF0:
            raise ValueError(f"domid {domid} out of range")
        path = self.socket_path(domid)
        if len(path.encode()) > SUN_PATH_MAX:
            raise ValueError(f"socket path too long for a unix socket: {path}")
        home = f"/local/domain/{domid}"
        ro = (Perm(0, wire_server.PERM_NONE), Perm(domid, wire_server.PERM_READ)) if domid else (Perm(0, 0),)
        rw = (Perm(domid, wire_server.PERM_NONE),)
        events: list[Event] = []
        with self._lock:
            view = self.tree.view()
            events += tree.mkdir(view, DOM0, home)
            events += tree.set_perms(view, DOM0, home, ro)
            for key, value in (("name", name), ("domid", str(domid))):
                events += tree.write(view, DOM0, f"{home}/{key}", value.encode())
            for sub, perms in (("memory", ro), ("control", ro), ("device", ro), ("data", rw),
                               ("drivers", rw), ("feature", rw), ("attr", rw), ("error", rw)):
                events += tree.mkdir(view, DOM0, f"{home}/{sub}")
                events += tree.set_perms(view, DOM0, f"{home}/{sub}", perms)
            if maxmem_kb is not None:
                events += tree.write(view, DOM0, f"{home}/memory/static-max", b"%d" % maxmem_kb)
            if memory_kb is not None:
                events += tree.write(view, DOM0, f"{home}/memory/target", b"%d" % memory_kb)
            if memory_kb is not None or maxmem_kb is not None:
                events += tree.write(view, DOM0, f"{home}/memory/videoram", b"-1")
            if domid:
                events += tree.write(view, DOM0, f"{home}/control/shutdown", b"")
                events += tree.set_perms(view, DOM0, f"{home}/control/shutdown", rw)
            new = domid not in self.domains
            self.domains[domid] = DomainInfo(domid, name, path)
            if new:
                self._introduced.add(domid)
                events.append(Event("@introduceDomain", (Perm(0, wire_server.PERM_NONE),)))
            calls = self._deliver(events)
        self._run_callbacks(calls)
        if self.running and domid not in self._listeners:
            self._listen(domid)
        return path

    def remove_domain(self, domid: int) -> None:
        """Destroy a domain: its nodes, its socket and its connections."""
        if domid == 0 or domid not in self.domains:
            raise ValueError(f"no such guest domain {domid}")
        with self._lock:
            view = self.tree.view()
            events = tree.rm(view, DOM0, f"/local/domain/{domid}")
            del self.domains[domid]
            self._introduced.discard(domid)
            events.append(Event("@releaseDomain", (Perm(0, wire_server.PERM_NONE),)))
            for conn in list(self._conns.values()):
                if conn.caller.domid == domid:
                    conn.closed = True
            calls = self._deliver(events)
        self._run_callbacks(calls)
        if self.running:
            self._unlisten(domid)
            self._wake()

    def _listen(self, domid: int) -> None:
        path = self.socket_path(domid)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._listeners[domid] = sock
        self._in_loop(lambda: self._sel.register(sock, selectors.EVENT_READ, ("listen", domid))
                      if self._sel else None)

    def _unlisten(self, domid: int) -> None:
        sock = self._listeners.pop(domid, None)
        if sock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path(domid))

        def close() -> None:
            if self._sel is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(sock)
            sock.close()
        self._in_loop(close)

    def _in_loop(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in the serving thread (the selector is not thread-safe),
        or now if there is no serving thread."""
        if self._thread is None or threading.current_thread() is self._thread:
            fn()
        else:
            self._pending.append(fn)
            self._wake()

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\0")

    # --- serving loop ----------------------------------------------------

    def _loop(self) -> None:
        assert self._sel is not None
        try:
            while not self._stopping:
                for key, mask in self._sel.select():
                    if key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            key.fileobj.recv(4096)  # type: ignore[union-attr]
                    elif isinstance(key.data, tuple):
                        self._accept(key.fileobj, key.data[1])  # type: ignore[arg-type]
                    else:
                        conn: _Conn = key.data
                        if mask & selectors.EVENT_READ and not conn.closed:
                            self._on_readable(conn)
                while self._pending:
                    self._pending.popleft()()
                self._flush_all()
        except Exception:  # pragma: no cover - a bug in the simulator itself
            log.exception("sim-xenstored loop died")
            raise

    def _accept(self, lsock: socket.socket, domid: int) -> None:
        assert self._sel is not None
        while True:
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            conn = _Conn(sock, sock.fileno(), Caller(domid))
            with self._lock:
                self._conns[conn.fd] = conn
                self.connections_accepted += 1
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            with self._lock:
                self._close_conn(conn)
            return
        try:
            msgs = conn.decoder.feed(data)
        except WireError as exc:
            log.info("dropping domain %d connection: %s", conn.caller.domid, exc)
            with self._lock:
                self._close_conn(conn)
            return
        for msg in msgs:
            with self._gate:
                with self._lock:
                    if conn.closed:
                        return
                    calls = self._process(conn, msg)
            self._run_callbacks(calls)

    def _flush_all(self) -> None:
        assert self._sel is not None
        with self._lock:
            for conn in list(self._conns.values()):
                if conn.closed:
                    self._close_conn(conn)
                    continue
                if conn.out:
                    try:
                        sent = conn.sock.send(conn.out)
                        del conn.out[:sent]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        self._close_conn(conn)
                        continue
                    if len(conn.out) > OUTBUF_MAX_BYTES:
                        log.warning("dropping domain %d connection: %d bytes unread",
                                    conn.caller.domid, len(conn.out))
                        self._close_conn(conn)
                        continue
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
                with contextlib.suppress(KeyError, ValueError):
                    if self._sel.get_key(conn.sock).events != events:
                        self._sel.modify(conn.sock, events, conn)

    def _close_conn(self, conn: _Conn) -> None:
        """Lock held; from the serving thread, or once it has stopped.  (Other
        threads only mark a connection closed; the loop closes it.)"""
        conn.closed = True
        conn.watches.clear()
        conn.txs.clear()
        if self._conns.get(conn.fd) is conn:
            del self._conns[conn.fd]
        if self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        conn.sock.close()

    # --- requests --------------------------------------------------------

    def _process(self, conn: _Conn, msg: wire.Message) -> list[tuple[Callable[[str], None], str]]:
        """Handle one request (lock held): queue its reply and any watch events."""
        self.requests_served += 1
        traffic = self.traffic.setdefault(conn.caller.domid, [0, 0, 0])
        traffic[0] += 1
        traffic[1] += wire.HEADER_BYTES + len(msg.payload)
        out_before = len(conn.out)
        events: list[Event] = []
        error: str | None = None
        try:
            payload, events = self._dispatch(conn, msg)
            if len(payload) > wire.PAYLOAD_MAX_BYTES:
                raise XsError("E2BIG", "reply too large")
            conn.out += wire.encode(msg.op, payload, msg.req_id, msg.tx_id)
        except XsError as exc:
            error = exc.name
            conn.out += wire.encode(Op.ERROR, wire_server.error_payload(exc.name), msg.req_id, msg.tx_id)
        if self.trace is not None:
            self.trace.append(TraceEntry(conn.caller.domid, msg.op_name, msg.tx_id,
                                         msg.payload[:256], error))
        if msg.op == Op.WATCH and error is None:
            path, token = wire.split_strings(msg.payload)[:2]
            conn.out += wire.encode(Op.WATCH_EVENT, wire.strings(path, token))
        traffic[2] += len(conn.out) - out_before
        return self._deliver(events)

    def _dispatch(self, conn: _Conn, msg: wire.Message) -> tuple[bytes, list[Event]]:
        try:
            op = Op(msg.op)
        except ValueError:
            raise XsError("ENOSYS", f"unknown operation {msg.op}") from None
        caller = conn.caller
        if op in _PRIVILEGED_OPS and not caller.privileged:
            raise XsError("EACCES", f"{op.name} is for dom0")
        tx: tree.Transaction | None = None
        if op not in _NO_TX_OPS and msg.tx_id:
            tx = conn.txs.get(msg.tx_id)
            if tx is None:
                raise XsError("ENOENT", f"no transaction {msg.tx_id}")
        view = tree.View(tx.nodes) if tx is not None else self.tree.view()
        try:
            payload, events = self._op(conn, op, msg, view, tx)
        except WireError as exc:
            raise XsError("EINVAL", str(exc)) from None
        finally:
            if tx is not None:
                tx.accessed |= view.accessed
                tx.changed |= view.changed
        if view.changed and tx is None:
            self.tree.generation += 1
        if tx is not None and op != Op.TRANSACTION_END:
            tx.events += events  # fired at commit, as xenstored does
            return payload, []
        return payload, events

    def _op(self, conn: _Conn, op: Op, msg: wire.Message, view: tree.View,
            tx: tree.Transaction | None) -> tuple[bytes, list[Event]]:
        caller, p = conn.caller, msg.payload
        ok = b"OK\0"
        if op == Op.READ:
            return tree.read(view, caller, wire_server.one_arg(p)), []
        if op == Op.WRITE:
            path, value = wire_server.split_write(p)
            return ok, tree.write(view, caller, path, value)
        if op == Op.DIRECTORY:
            kids = tree.directory(view, caller, wire_server.one_arg(p))
            return wire.strings(*kids), []
        if op == Op.DIRECTORY_PART:
            args = wire.split_strings(p)
            if len(args) != 2 or not args[1].isdigit():
                raise XsError("EINVAL", "DIRECTORY_PART wants path and offset")
            kids = tree.directory(view, caller, args[0])
            return tree.directory_part(kids, self.tree.generation, int(args[1])), []
        if op == Op.MKDIR:
            return ok, tree.mkdir(view, caller, wire_server.one_arg(p))
        if op == Op.RM:
            return ok, tree.rm(view, caller, wire_server.one_arg(p))
        if op == Op.GET_PERMS:
            return wire_server.perms_payload(tree.get_perms(view, caller, wire_server.one_arg(p))), []
        if op == Op.SET_PERMS:
            args = wire.split_strings(p)
            if len(args) < 2:
                raise XsError("EINVAL", "SET_PERMS wants a path and permissions")
            perms = tuple(wire_server.parse_perm(a) for a in args[1:])
            return ok, tree.set_perms(view, caller, args[0], perms)
        if op == Op.WATCH:
            return self._watch(conn, p), []
        if op == Op.UNWATCH:
            return self._unwatch(conn, p), []
        if op == Op.TRANSACTION_START:
            if tx is not None:
                raise XsError("EBUSY", "already in a transaction")
            if not caller.privileged and len(conn.txs) >= GUEST_TRANSACTION_MAX:
                raise XsError("ENOSPC", "too many transactions")
            tx_id = conn.next_tx
            conn.next_tx = conn.next_tx % wire.U32_MAX + 1
            conn.txs[tx_id] = self.tree.begin()
            return wire.strings(str(tx_id)), []
        if op == Op.TRANSACTION_END:
            arg = wire_server.one_arg(p)
            if arg not in (b"T", b"F"):
                raise XsError("EINVAL", "TRANSACTION_END wants T or F")
            if tx is None:
                raise XsError("ENOENT", "no transaction")
            del conn.txs[msg.tx_id]
            if arg == b"F":
                return ok, []
            return ok, self.tree.commit(tx)
        if op == Op.GET_DOMAIN_PATH:
            arg = wire_server.one_arg(p)
            if not arg.isdigit() or int(arg) > wire_server.DOMID_MAX:
                raise XsError("EINVAL", "bad domid")
            return wire.strings(f"/local/domain/{int(arg)}"), []
        if op == Op.RESET_WATCHES:
            conn.watches.clear()
            conn.txs.clear()
            return ok, []
        if op == Op.IS_DOMAIN_INTRODUCED:
            arg = wire_server.one_arg(p)
            known = arg.isdigit() and int(arg) in self._introduced
            return (b"T\0" if known else b"F\0"), []
        if op == Op.INTRODUCE:
            args = wire.split_strings(p)
            if len(args) < 3 or not args[0].isdigit():
                raise XsError("EINVAL", "INTRODUCE wants domid, mfn, port")
            self._introduced.add(int(args[0]))
            return ok, [Event("@introduceDomain", (Perm(0, 0),))]
        if op == Op.RELEASE:
            arg = wire_server.one_arg(p)
            if not arg.isdigit():
                raise XsError("EINVAL", "bad domid")
            if int(arg) not in self._introduced:
                raise XsError("ENOENT", "domain not introduced")
            self._introduced.discard(int(arg))
            return ok, [Event("@releaseDomain", (Perm(0, 0),))]
        if op == Op.CONTROL:
            args = wire.split_strings(p)
            if args[:1] == [b"print"]:
                log.info("control print: %s", b" ".join(args[1:]).decode("ascii", "replace"))
                return ok, []
            raise XsError("EINVAL", "unsupported control command")
        raise XsError("ENOSYS", f"{op.name} not simulated")

    def _watch(self, conn: _Conn, payload: bytes) -> bytes:
        args = wire.split_strings(payload)
        if len(args) != 2:
            raise XsError("EINVAL", "WATCH wants path and token")
        given, token = args
        path = tree.canonicalize(conn.caller, given, allow_special=True)
        if any(w.path == path and w.token == token for w in conn.watches):
            raise XsError("EEXIST", "watch exists")
        if not conn.caller.privileged and len(conn.watches) >= GUEST_WATCH_MAX:
            raise XsError("ENOSPC", "too many watches")
        relative = not given.startswith((b"/", b"@"))
        conn.watches.append(_Watch(path, given.decode("ascii"), token, relative))
        return b"OK\0"

    def _unwatch(self, conn: _Conn, payload: bytes) -> bytes:
        args = wire.split_strings(payload)
        if len(args) != 2:
            raise XsError("EINVAL", "UNWATCH wants path and token")
        path = tree.canonicalize(conn.caller, args[0], allow_special=True)
        for i, w in enumerate(conn.watches):
            if w.path == path and w.token == args[1]:
                del conn.watches[i]
                return b"OK\0"
        raise XsError("ENOENT", "no such watch")

    def _deliver(self, events: Iterable[Event]) -> list[tuple[Callable[[str], None], str]]:
        """Queue WATCH_EVENTs for the matching watches (lock held); return the
        in-process callbacks to run once the lock is released."""
        calls: list[tuple[Callable[[str], None], str]] = []
        queued = False
        for ev in events:
            for conn in self._conns.values():
                if conn.closed:
                    continue
                for w in conn.watches:
                    if not _matches(ev, w.path) or not ev.visible_to(conn.caller):
                        continue
                    path = ev.path
                    home = conn.caller.home + "/"
                    if w.relative and path.startswith(home):
                        path = path[len(home):]
                    event = wire.encode(Op.WATCH_EVENT, wire.strings(path, w.token))
                    conn.out += event
                    self.traffic.setdefault(conn.caller.domid, [0, 0, 0])[2] += len(event)
                    queued = True
            for lw in self._local_watches.values():
                if _matches(ev, lw.path) and ev.visible_to(lw.caller):
                    calls.append((lw.callback, ev.path))
        if queued and self._thread is not None and threading.current_thread() is not self._thread:
            self._wake()
        return calls

    @staticmethod
    def _run_callbacks(calls: list[tuple[Callable[[str], None], str]]) -> None:
        for callback, path in calls:
            try:
                callback(path)
            except Exception:
                log.exception("watch callback for %s failed", path)

    # --- in-process access (for the simulator) ---------------------------

    def _apply(self, fn: Callable[[tree.View, Caller], list[Event]], domid: int) -> None:
        with self._lock:
            view = self.tree.view()
            events = fn(view, Caller(domid))
            if view.changed:
                self.tree.generation += 1
            calls = self._deliver(events)
        self._run_callbacks(calls)

    def read_bytes(self, path: str, domid: int = 0) -> bytes:
        """Raises XsError("ENOENT"/"EACCES"/...) like the protocol would."""
        with self._lock:
            return tree.read(self.tree.view(), Caller(domid), path)

    def read(self, path: str, domid: int = 0) -> str:
        return _text(self.read_bytes(path, domid))

    def get(self, path: str, default: str | None = None, domid: int = 0) -> str | None:
        try:
            return self.read(path, domid)
        except XsError:
            return default

    def exists(self, path: str, domid: int = 0) -> bool:
        return self.get(path, None, domid) is not None

    def list(self, path: str, domid: int = 0) -> list[str]:
        with self._lock:
            return list(tree.directory(self.tree.view(), Caller(domid), path))

    def snapshot(self, path: str, domid: int = 0) -> dict[str, str]:
        """Every node below ``path`` as {relative key: value}; {} if missing."""
        out: dict[str, str] = {}
        with self._lock:
            view, caller = self.tree.view(), Caller(domid)
            try:
                top = tree.canonicalize(caller, path)
                tree.directory(view, caller, top)
            except XsError:
                return {}

            def walk(abs_path: str, rel: str) -> None:
                for child in tree.directory(view, caller, abs_path):
                    key = f"{rel}/{child}" if rel else child
                    sub = tree.child_path(abs_path, child)
                    out[key] = _text(tree.read(view, caller, sub))
                    walk(sub, key)
            walk(top, "")
        return out

    def write(self, path: str, value: str | bytes, domid: int = 0) -> None:
        self._apply(lambda v, c: tree.write(v, c, path, wire.to_bytes(value)), domid)

    def write_many(self, items: dict[str, str | bytes], domid: int = 0) -> None:
        """All or nothing, like one transaction."""
        with self._lock:
            tx = self.tree.begin()
            view = tree.View(tx.nodes)
            events: list[Event] = []
            for key, value in items.items():
                events += tree.write(view, Caller(domid), key, wire.to_bytes(value))
            tx.accessed, tx.changed = view.accessed, view.changed
            self.tree.commit(tx)
            calls = self._deliver(events)
        self._run_callbacks(calls)

    def mkdir(self, path: str, domid: int = 0) -> None:
        self._apply(lambda v, c: tree.mkdir(v, c, path), domid)

    def rm(self, path: str, domid: int = 0) -> None:
        self._apply(lambda v, c: tree.rm(v, c, path), domid)

    def get_perms(self, path: str, domid: int = 0) -> builtins.list[str]:
        with self._lock:
            return [str(p) for p in tree.get_perms(self.tree.view(), Caller(domid), path)]

    def set_perms(self, path: str, perms: Iterable[str | Perm], domid: int = 0) -> None:
        parsed = tuple(p if isinstance(p, Perm) else wire_server.parse_perm(p) for p in perms)
        self._apply(lambda v, c: tree.set_perms(v, c, path, parsed), domid)

    def watch(self, path: str, callback: Callable[[str], None], domid: int = 0) -> int:
        """Call ``callback(abs_path)`` after every change at or below ``path``
        (from the thread that made the change, lock released).  Returns a handle."""
        canon = tree.canonicalize(Caller(domid), path, allow_special=True)
        with self._lock:
            handle = next(self._watch_ids)
            self._local_watches[handle] = _LocalWatch(canon, Caller(domid), callback)
        return handle

    def unwatch(self, handle: int) -> None:
        with self._lock:
            self._local_watches.pop(handle, None)

    def connection_count(self, domid: int | None = None) -> int:
        with self._lock:
            return sum(1 for c in self._conns.values()
                       if not c.closed and (domid is None or c.caller.domid == domid))


def _matches(ev: Event, watch_path: str) -> bool:
    if ev.exact or ev.path.startswith("@") or watch_path.startswith("@"):
        return ev.path == watch_path
    return tree.is_below(ev.path, watch_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xenballoond.sim.xenstored",
        description="Serve a simulated xenstore: one unix socket per domain (DIR/d<domid>).")
    parser.add_argument("--dir", required=True, help="directory for the sockets")
    parser.add_argument("--domains", type=int, default=1, help="number of guests (domids 1..N)")
    parser.add_argument("--memory-kb", type=int, default=524288, help="each guest's memory/target")
    parser.add_argument("--maxmem-kb", type=int, default=1048576, help="each guest's static-max")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--stats", metavar="FILE",
                        help="on SIGUSR1, write the requests served (in all and per domain: "
                             "requests, bytes received, bytes sent) to FILE as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(name)s: %(message)s", stream=sys.stderr)
    if args.domains < 0:
        parser.error("--domains must be >= 0")
    xsd = SimXenstored(args.dir)
    xsd.add_domain(0, "Domain-0", args.maxmem_kb, args.maxmem_kb)
    for domid in range(1, args.domains + 1):
        xsd.add_domain(domid, f"guest{domid}", args.memory_kb, args.maxmem_kb)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    if args.stats:
        stats_path = args.stats

        def write_stats(*_: object) -> None:
            with xsd._lock:
                stats = {"requests": xsd.requests_served,
                         "by_domid": {str(d): list(t) for d, t in xsd.traffic.items()}}
            with open(stats_path + ".tmp", "w") as f:
                json.dump(stats, f)
            os.replace(stats_path + ".tmp", stats_path)
        signal.signal(signal.SIGUSR1, write_stats)
    try:
        xsd.start()
    except OSError as exc:
        print(f"cannot listen in {args.dir}: {exc}", file=sys.stderr)
        return 1
    for info in xsd.domains.values():
        print(f"dom{info.domid} {info.name} XENSTORED_PATH={info.socket_path}", flush=True)
    done.wait()
    xsd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
