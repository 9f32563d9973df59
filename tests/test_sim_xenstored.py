"""The simulated xenstored, checked with Debian's real xenstore-* clients (as a
guest and as dom0 would run them) and with raw protocol messages for what the
clients cannot show (error names, watches, transactions, hostile input).

Expected behaviour comes from Xen: tools/xenstored/core.c (permissions,
canonicalize, errno_from_parents), libxl (the nodes and permissions of a new
domain), oxenstored's quota (2048-byte nodes) and /work/shared/xen-e2e/README.md
(what a real Xen 4.17 guest saw).
"""
from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.repo import python_env
from tests.xsfixtures import GUEST_MAXMEM_KB, GUEST_MEMORY_KB, XsHost, sim_xenstored  # noqa: F401
from xenballoond.xenstore import wire
from xenballoond.sim import wire_server
from xenballoond.sim import xs_tree as tree
from tests.needs import XENSTORE_CLIENTS, tool_mark
from xenballoond.sim.xenstored import SimXenstored
from xenballoond.xenstore.wire import Op
from xenballoond.sim.wire_server import Perm

needs_clients = tool_mark(*XENSTORE_CLIENTS)
HOME1 = "/local/domain/1"


def xs(host: XsHost, domid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=host.env(domid), capture_output=True, text=True,
                          timeout=20)


class Raw:
    """A bare protocol client: one request, one reply; watch events kept aside."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.dec = wire.Decoder()
        self.req_id = 0
        self.events: list[tuple[bytes, bytes]] = []

    def close(self) -> None:
        self.sock.close()

    def _recv(self) -> list[wire.Message]:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by server")
        return self.dec.feed(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, op: int, payload: bytes = b"", tx_id: int = 0) -> tuple[int, bytes]:
        self.req_id += 1
        self.sock.sendall(wire.encode(op, payload, self.req_id, tx_id))
        reply = None
        while reply is None:
            for msg in self._recv():  # a reply and events may share one read
                if msg.op == Op.WATCH_EVENT:
                    path, token = wire.split_strings(msg.payload)
                    self.events.append((path, token))
                elif msg.req_id == self.req_id:
                    reply = (msg.op, msg.payload)
        return reply

    def ok(self, op: int, *args: str | bytes, tx_id: int = 0) -> bytes:
        rop, payload = self.call(op, wire.strings(*args), tx_id)
        assert rop == op, (Op(rop).name, payload)
        return payload

    def err(self, op: int, payload: bytes, tx_id: int = 0) -> str:
        rop, reply = self.call(op, payload, tx_id)
        assert rop == Op.ERROR, (Op(rop).name, reply)
        return wire.parse_error(reply)

    def write(self, path: str, value: bytes, tx_id: int = 0) -> tuple[int, bytes]:
        return self.call(Op.WRITE, wire.write_payload(path, value), tx_id)


@pytest.fixture
def guest(sim_xenstored: XsHost):  # noqa: F811
    raw = Raw(sim_xenstored.guest_socket)
    yield raw
    raw.close()


@pytest.fixture
def dom0(sim_xenstored: XsHost):  # noqa: F811
    raw = Raw(sim_xenstored.dom0_socket)
    yield raw
    raw.close()


# --- Debian's clients ------------------------------------------------------

@needs_clients
def test_cli_reads_relative_and_absolute(sim_xenstored: XsHost) -> None:  # noqa: F811
    assert xs(sim_xenstored, 1, "xenstore-read", "memory/target").stdout == f"{GUEST_MEMORY_KB}\n"
    assert xs(sim_xenstored, 1, "xenstore-read", f"{HOME1}/name").stdout == "guest1\n"
    assert xs(sim_xenstored, 0, "xenstore-read", "name").stdout == "Domain-0\n"


@needs_clients
def test_cli_guest_may_not_write_its_memory_keys(sim_xenstored: XsHost,  # noqa: F811
                                                 guest: Raw) -> None:
    r = xs(sim_xenstored, 1, "xenstore-write", "memory/selftarget", "123")
    assert r.returncode == 1
    assert r.stderr == "xenstore-write: could not write path memory/selftarget\n"
    assert guest.err(Op.WRITE, wire.write_payload("memory/selftarget", b"123")) == "EACCES"
    assert guest.err(Op.WRITE, wire.write_payload("memory/target", b"1")) == "EACCES"


@needs_clients
def test_cli_missing_node(sim_xenstored: XsHost, guest: Raw) -> None:  # noqa: F811
    r = xs(sim_xenstored, 1, "xenstore-read", "memory/selftarget")
    assert (r.returncode, r.stderr) == (1, "xenstore-read: couldn't read path memory/selftarget\n")
    assert xs(sim_xenstored, 1, "xenstore-exists", "memory/selftarget").returncode == 1
    assert xs(sim_xenstored, 1, "xenstore-exists", "memory/target").returncode == 0
    assert guest.err(Op.READ, wire.strings("memory/selftarget")) == "ENOENT"


@needs_clients
def test_cli_guest_over_2048_bytes(sim_xenstored: XsHost, guest: Raw) -> None:  # noqa: F811
    assert xs(sim_xenstored, 1, "xenstore-write", "data/x", "v" * 2048).returncode == 0
    r = xs(sim_xenstored, 1, "xenstore-write", "data/x", "v" * 2049)
    assert (r.returncode, r.stderr) == (1, "xenstore-write: could not write path data/x\n")
    assert guest.err(Op.WRITE, wire.write_payload("data/x", b"v" * 2049)) == "E2BIG"
    assert sim_xenstored.server.read(f"{HOME1}/data/x") == "v" * 2048
    assert xs(sim_xenstored, 0, "xenstore-write", f"{HOME1}/data/x", "v" * 3000).returncode == 0


@needs_clients
def test_cli_refuses_message_over_4096(sim_xenstored: XsHost) -> None:  # noqa: F811
    r = xs(sim_xenstored, 0, "xenstore-write", f"{HOME1}/data/x", "v" * 4096)
    assert r.returncode == 1  # "data/x\0" + 4096 bytes: libxenstore says E2BIG itself


def test_message_over_4096_drops_the_connection(sim_xenstored: XsHost,  # noqa: F811
                                                guest: Raw) -> None:
    guest.send_raw(struct.pack("<IIII", Op.WRITE, 1, 0, 4097) + b"x" * 4097)
    with pytest.raises((ConnectionError, OSError)):
        guest.call(Op.READ, wire.strings("name"))
    other = Raw(sim_xenstored.guest_socket)
    assert other.ok(Op.READ, "name") == b"guest1"  # the server carries on
    other.close()


@needs_clients
def test_cli_ls_full_paths_of_memory(sim_xenstored: XsHost) -> None:  # noqa: F811
    r = xs(sim_xenstored, 1, "xenstore-ls", "-f", "memory")
    assert r.stdout == (f'memory/static-max = "{GUEST_MAXMEM_KB}"\n'
                        f'memory/target = "{GUEST_MEMORY_KB}"\n'
                        'memory/videoram = "-1"\n')


@needs_clients
def test_cli_ls_shows_libxl_permissions(sim_xenstored: XsHost) -> None:  # noqa: F811
    out = xs(sim_xenstored, 0, "xenstore-ls", "-p", HOME1).stdout
    lines = {line.split(" = ")[0].strip(): line.rsplit("(", 1)[1].rstrip(")")
             for line in out.splitlines()}
    assert lines["name"] == "n0,r1"
    assert lines["memory"] == lines["target"] == lines["static-max"] == "n0,r1"
    assert lines["data"] == "n1"
    assert lines["control"] == "n0,r1" and lines["shutdown"] == "n1"


@needs_clients
def test_cli_escaping_is_the_clients(sim_xenstored: XsHost) -> None:  # noqa: F811
    # xenstore-write unsanitises its argument; xenstore-read sanitises the value
    srv = sim_xenstored.server
    for arg, stored, printed in [("a\nb", b"a\nb", "a\\nb\n"), ("a\\nb", b"a\nb", "a\\nb\n"),
                                 ("a\\\\b", b"a\\b", "a\\\\b\n"), ("a\\x41", b"aA", "aA\n"),
                                 ("\t", b"\t", "\\t\n"), ("é", b"\xc3\xa9", "\\xc3\\xa9\n")]:
        assert xs(sim_xenstored, 1, "xenstore-write", "data/x", arg).returncode == 0
        assert srv.read_bytes(f"{HOME1}/data/x") == stored
        assert xs(sim_xenstored, 1, "xenstore-read", "data/x").stdout == printed


@needs_clients
def test_cli_many_keys_use_one_transaction(sim_xenstored: XsHost) -> None:  # noqa: F811
    trace = sim_xenstored.server.trace
    assert trace is not None
    trace.clear()
    r = xs(sim_xenstored, 1, "xenstore-read", "memory/target", "memory/static-max", "name")
    assert r.stdout == f"{GUEST_MEMORY_KB}\n{GUEST_MAXMEM_KB}\nguest1\n"
    assert [(e.op, e.tx_id > 0) for e in trace] == [
        ("TRANSACTION_START", False), ("READ", True), ("READ", True), ("READ", True),
        ("TRANSACTION_END", True)]
    trace.clear()
    assert xs(sim_xenstored, 1, "xenstore-write", "data/a", "1", "data/b", "2").returncode == 0
    assert [e.op for e in trace] == ["TRANSACTION_START", "WRITE", "WRITE", "TRANSACTION_END"]
    assert trace[-1].payload == b"T\0"


@needs_clients
def test_cli_multi_write_with_a_refused_key_writes_nothing(sim_xenstored: XsHost) -> None:  # noqa: F811
    r = xs(sim_xenstored, 1, "xenstore-write", "data/a", "1", "memory/selftarget", "2")
    assert r.returncode == 1
    assert not sim_xenstored.server.exists(f"{HOME1}/data/a")
    assert sim_xenstored.server.trace[-1].payload == b"F\0"  # aborted


@needs_clients
def test_cli_chmod_hands_a_key_to_the_guest(sim_xenstored: XsHost) -> None:  # noqa: F811
    key = f"{HOME1}/memory/selftarget"
    assert xs(sim_xenstored, 0, "xenstore-write", key, "0").returncode == 0
    assert sim_xenstored.server.get_perms(key) == ["n0", "r1"]  # inherited from memory/
    assert xs(sim_xenstored, 1, "xenstore-write", "memory/selftarget", "5").returncode == 1
    assert xs(sim_xenstored, 0, "xenstore-chmod", key, "n1").returncode == 0
    assert xs(sim_xenstored, 1, "xenstore-write", "memory/selftarget", "5").returncode == 0
    assert sim_xenstored.server.read(key) == "5"


@needs_clients
def test_cli_guest_cannot_give_its_node_away(sim_xenstored: XsHost, guest: Raw) -> None:  # noqa: F811
    assert xs(sim_xenstored, 1, "xenstore-write", "data/mine", "x").returncode == 0
    assert xs(sim_xenstored, 1, "xenstore-chmod", "data/mine", "n0").returncode != 0
    assert guest.err(Op.SET_PERMS, wire.strings("data/mine", "n0")) == "EPERM"
    assert xs(sim_xenstored, 1, "xenstore-chmod", "data/mine", "n1", "r0").returncode == 0
    assert sim_xenstored.server.get_perms(f"{HOME1}/data/mine") == ["n1", "r0"]
    assert guest.err(Op.SET_PERMS, wire.strings("memory/target", "n1")) == "EACCES"


@needs_clients
def test_cli_rm(sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    srv.write(f"{HOME1}/data/d/e/f", "1")
    assert xs(sim_xenstored, 1, "xenstore-rm", "data/d").returncode == 0
    assert srv.list(f"{HOME1}/data") == []
    assert xs(sim_xenstored, 1, "xenstore-rm", "data/never").returncode == 0  # parent exists
    assert xs(sim_xenstored, 1, "xenstore-rm", "memory/target").returncode == 1
    assert srv.exists(f"{HOME1}/memory/target")


@needs_clients
def test_cli_list_of_a_huge_directory_goes_by_parts(sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    names = [f"child-with-a-rather-long-name-{i:04d}" for i in range(200)]  # > 4096 bytes
    srv.write_many({f"{HOME1}/data/many/{n}": "1" for n in names})
    srv.trace.clear()
    r = xs(sim_xenstored, 1, "xenstore-list", "data/many")
    assert r.stdout.splitlines() == names
    ops = [(e.op, e.error) for e in srv.trace if not e.op.startswith("TRANSACTION")]
    assert ops[0] == ("DIRECTORY", "E2BIG") and ("DIRECTORY_PART", None) in ops


@needs_clients
def test_cli_when_xenstored_is_stopped(sim_xenstored: XsHost) -> None:  # noqa: F811
    sim_xenstored.server.stop()
    assert not os.path.exists(sim_xenstored.guest_socket)
    r = xs(sim_xenstored, 1, "xenstore-read", "name")
    assert r.returncode == 1 and "xs_open" in r.stderr


@needs_clients
def test_fifty_domains_each_see_their_own_tree(sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    domids = range(2, 62)
    for domid in domids:
        srv.add_domain(domid, f"vm{domid}", 262144 + domid, 524288)

    def check(domid: int) -> tuple[str, str, int]:
        name = xs(sim_xenstored, domid, "xenstore-read", "name", "memory/target").stdout
        w = xs(sim_xenstored, domid, "xenstore-write", "data/me", str(domid), "data/x", "y")
        other = xs(sim_xenstored, domid, "xenstore-read", f"/local/domain/{domid % 60 + 2}/name")
        return name, w.stderr, other.returncode

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(domids, pool.map(check, domids)))
    for domid, (name, werr, other_rc) in results.items():
        assert name == f"vm{domid}\n{262144 + domid}\n"
        assert werr == ""
        assert srv.read(f"/local/domain/{domid}/data/me") == str(domid)
        assert other_rc == (0 if domid % 60 + 2 == domid else 1)


# --- raw protocol: what the clients cannot show ------------------------------

def test_guest_cannot_see_other_domains_nor_learn_what_exists(guest: Raw) -> None:
    assert guest.err(Op.READ, wire.strings("/local/domain/0/name")) == "EACCES"
    # missing node under an unreadable parent: EACCES, not ENOENT (errno_from_parents)
    assert guest.err(Op.READ, wire.strings("/local/domain/0/no-such-node")) == "EACCES"
    assert guest.err(Op.DIRECTORY, wire.strings("/local/domain")) == "EACCES"
    assert guest.err(Op.WRITE, wire.write_payload("/local/domain/0/x", b"1")) == "EACCES"
    assert guest.err(Op.WRITE, wire.write_payload("/tool/x", b"1")) == "EACCES"


def test_new_nodes_inherit_permissions_and_the_creator_owns_them(
        sim_xenstored: XsHost, guest: Raw, dom0: Raw) -> None:  # noqa: F811
    assert guest.write("data/a/b/c", b"1")[0] == Op.WRITE
    assert guest.ok(Op.GET_PERMS, "data/a/b") == b"n1\0"
    sim_xenstored.server.set_perms(f"{HOME1}/data/a", ["n1", "r0", "r7"])
    assert guest.write("data/a/new", b"1")[0] == Op.WRITE
    assert guest.ok(Op.GET_PERMS, "data/a/new") == b"n1\0r0\0r7\0"
    # dom0 creating under a guest's node keeps the parent's owner
    assert dom0.write(f"{HOME1}/data/by0", b"1")[0] == Op.WRITE
    assert dom0.ok(Op.GET_PERMS, f"{HOME1}/data/by0") == b"n1\0"
    # a guest given write (b1) on a dom0 node owns what it creates below it
    sim_xenstored.server.write("/local/domain/0/shared", "")
    sim_xenstored.server.set_perms("/local/domain/0/shared", ["n0", "b1"])
    assert guest.write("/local/domain/0/shared/k", b"v")[0] == Op.WRITE
    assert guest.ok(Op.GET_PERMS, "/local/domain/0/shared/k") == b"n1\0b1\0"


@pytest.mark.parametrize("path", ["", "bad path", "a//b", "memory/", "/local/domain/1/",
                                  "a\xe9", "@introduceDomain", "x" * 2049])
def test_invalid_paths_are_einval(guest: Raw, path: str) -> None:
    assert guest.err(Op.READ, wire.strings(path)) == "EINVAL"


def test_malformed_requests(guest: Raw) -> None:
    assert guest.err(Op.READ, b"name") == "EINVAL"  # no NUL
    assert guest.err(Op.READ, b"name\0extra\0") == "EINVAL"
    assert guest.err(Op.WRITE, b"no-nul-at-all") == "EINVAL"
    assert guest.err(Op.SET_PERMS, wire.strings("data")) == "EINVAL"
    assert guest.err(Op.SET_PERMS, wire.strings("data", "q1")) == "EINVAL"
    assert guest.err(Op.TRANSACTION_END, wire.strings("T")) == "ENOENT"
    assert guest.err(Op.READ, wire.strings("name"), tx_id=77) == "ENOENT"
    assert guest.err(999, b"") == "ENOSYS"
    assert guest.err(Op.INVALID, b"") == "ENOSYS"
    assert guest.err(Op.WATCH_EVENT, b"") == "ENOSYS"


def test_privileged_operations(guest: Raw, dom0: Raw) -> None:
    assert guest.err(Op.INTRODUCE, wire.strings("9", "0", "0")) == "EACCES"
    assert guest.err(Op.CONTROL, wire.strings("print", "x")) == "EACCES"
    assert guest.err(Op.IS_DOMAIN_INTRODUCED, wire.strings("1")) == "EACCES"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "1") == b"T\0"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "99") == b"F\0"
    assert dom0.ok(Op.CONTROL, "print", "hello") == b"OK\0"


def test_get_domain_path(guest: Raw) -> None:
    assert guest.ok(Op.GET_DOMAIN_PATH, "7") == b"/local/domain/7\0"
    assert guest.err(Op.GET_DOMAIN_PATH, wire.strings("x")) == "EINVAL"


def test_transactions_isolate_and_detect_conflicts(sim_xenstored: XsHost,  # noqa: F811
                                                   guest: Raw) -> None:
    srv = sim_xenstored.server
    tx = int(guest.ok(Op.TRANSACTION_START, "").rstrip(b"\0"))
    assert guest.write("data/t", b"1", tx)[0] == Op.WRITE
    assert guest.ok(Op.READ, "data/t", tx_id=tx) == b"1"
    assert guest.err(Op.READ, wire.strings("data/t")) == "ENOENT"  # not visible outside yet
    assert guest.ok(Op.TRANSACTION_END, "T", tx_id=tx) == b"OK\0"
    assert srv.read(f"{HOME1}/data/t") == "1"

    tx = int(guest.ok(Op.TRANSACTION_START, "").rstrip(b"\0"))
    assert guest.ok(Op.READ, "memory/target", tx_id=tx) == str(GUEST_MEMORY_KB).encode()
    srv.write(f"{HOME1}/memory/target", "1000")  # dom0 changes what the transaction read
    assert guest.write("data/u", b"1", tx)[0] == Op.WRITE
    assert guest.err(Op.TRANSACTION_END, wire.strings("T"), tx) == "EAGAIN"
    assert not srv.exists(f"{HOME1}/data/u")

    tx = int(guest.ok(Op.TRANSACTION_START, "").rstrip(b"\0"))
    assert guest.write("data/v", b"1", tx)[0] == Op.WRITE
    srv.write(f"{HOME1}/memory/target", "2000")  # not looked at: no conflict
    assert guest.ok(Op.TRANSACTION_END, "F", tx_id=tx) == b"OK\0"  # abort
    assert not srv.exists(f"{HOME1}/data/v")
    assert guest.err(Op.TRANSACTION_START, wire.strings(""), tx) == "ENOENT"


def test_watches(sim_xenstored: XsHost, guest: Raw) -> None:  # noqa: F811
    srv = sim_xenstored.server
    assert guest.ok(Op.WATCH, "memory/target", "tok") == b"OK\0"
    assert guest.ok(Op.WATCH, f"{HOME1}/data", "abs") == b"OK\0"
    guest.ok(Op.READ, "name")  # a round trip: events queued before it have arrived
    assert guest.events == [(b"memory/target", b"tok"), (f"{HOME1}/data".encode(), b"abs")]
    guest.events.clear()
    srv.write(f"{HOME1}/memory/target", "4096")
    srv.write(f"{HOME1}/memory/static-max", "1")  # not watched
    srv.write(f"{HOME1}/data/x/y", "1")
    guest.ok(Op.READ, "name")
    assert guest.events == [(b"memory/target", b"tok"), (f"{HOME1}/data/x/y".encode(), b"abs")]
    guest.events.clear()
    assert guest.err(Op.WATCH, wire.strings("memory/target", "tok")) == "EEXIST"
    assert guest.ok(Op.UNWATCH, "memory/target", "tok") == b"OK\0"
    assert guest.err(Op.UNWATCH, wire.strings("memory/target", "tok")) == "ENOENT"
    srv.write(f"{HOME1}/memory/target", "8192")
    guest.ok(Op.READ, "name")
    assert guest.events == []


def test_watch_events_respect_read_permission(sim_xenstored: XsHost, guest: Raw) -> None:  # noqa: F811
    srv = sim_xenstored.server
    guest.ok(Op.WATCH, "/local/domain", "all")
    guest.ok(Op.READ, "name")
    guest.events.clear()
    srv.write("/local/domain/0/secret", "x")  # n0: the guest may not read it
    srv.write(f"{HOME1}/memory/target", "1")
    guest.ok(Op.READ, "name")
    assert guest.events == [(f"{HOME1}/memory/target".encode(), b"all")]


def test_watch_events_from_a_transaction_fire_at_commit(sim_xenstored: XsHost,  # noqa: F811
                                                        guest: Raw, dom0: Raw) -> None:
    guest.ok(Op.WATCH, "data", "d")
    guest.ok(Op.READ, "name")
    guest.events.clear()
    tx = int(dom0.ok(Op.TRANSACTION_START, "").rstrip(b"\0"))
    dom0.write(f"{HOME1}/data/k", b"1", tx)
    guest.ok(Op.READ, "name")
    assert guest.events == []
    dom0.ok(Op.TRANSACTION_END, "T", tx_id=tx)
    guest.ok(Op.READ, "name")
    assert guest.events == [(b"data/k", b"d")]


def test_in_process_watch_callbacks(sim_xenstored: XsHost, guest: Raw) -> None:  # noqa: F811
    srv = sim_xenstored.server
    seen: list[str] = []
    handle = srv.watch(f"{HOME1}/data", seen.append)
    guest.write("data/from-guest", b"1")
    srv.write(f"{HOME1}/data/from-sim", "2")
    srv.unwatch(handle)
    srv.write(f"{HOME1}/data/after", "3")
    assert seen == [f"{HOME1}/data/from-guest", f"{HOME1}/data/from-sim"]


def test_special_watches_on_domain_introduction(sim_xenstored: XsHost, dom0: Raw) -> None:  # noqa: F811
    dom0.ok(Op.WATCH, "@introduceDomain", "i")
    dom0.ok(Op.WATCH, "@releaseDomain", "r")
    dom0.ok(Op.READ, "name")
    dom0.events.clear()
    sim_xenstored.server.add_domain(9, "late", 1024, 2048)
    sim_xenstored.server.remove_domain(9)
    dom0.ok(Op.READ, "name")
    assert dom0.events == [(b"@introduceDomain", b"i"), (b"@releaseDomain", b"r")]
    assert not sim_xenstored.server.exists("/local/domain/9")


def test_hostile_messages_never_kill_the_server(sim_xenstored: XsHost) -> None:  # noqa: F811
    rng = random.Random(20080101)
    alphabet = b"abc/@-_\0\0\0 \xff01nrwbTF"
    for conn_no in range(4):
        raw = Raw(sim_xenstored.socket(conn_no % 2))  # guest and dom0
        for _ in range(150):
            op = rng.choice([rng.randrange(0, 30), rng.randrange(0, 1 << 32)])
            payload = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
            tx_id = rng.choice([0, 0, 0, 1, rng.randrange(0, 1 << 32)])
            rop, reply = raw.call(op, payload, tx_id)
            assert rop in (op, Op.ERROR)
            if rop == Op.ERROR:
                assert wire.parse_error(reply) in wire.ERRORS
        raw.close()
    check = Raw(sim_xenstored.guest_socket)
    assert check.ok(Op.READ, "name") == b"guest1"
    check.close()


def test_garbage_bytes_drop_only_that_connection(sim_xenstored: XsHost) -> None:  # noqa: F811
    bad = Raw(sim_xenstored.guest_socket)
    bad.send_raw(b"\xff" * 64)  # a header claiming 4 GiB
    bad.close()
    good = Raw(sim_xenstored.guest_socket)
    assert good.ok(Op.READ, "name") == b"guest1"
    good.close()


def test_reply_too_big_is_e2big(sim_xenstored: XsHost, dom0: Raw) -> None:  # noqa: F811
    names = [f"n{i:05d}-padding-padding" for i in range(200)]
    sim_xenstored.server.write_many({f"/tool/big/{n}": "" for n in names})
    assert dom0.err(Op.DIRECTORY, wire.strings("/tool/big")) == "E2BIG"
    children, offset = [], 0
    while True:
        reply = dom0.ok(Op.DIRECTORY_PART, "/tool/big", str(offset))
        _, _, rest = reply.partition(b"\0")
        if rest == b"\0":
            break
        done = rest.endswith(b"\0\0")
        part = rest[:-2 if done else -1].split(b"\0")
        children += part
        offset += sum(len(p) + 1 for p in part)
        if done:
            break
    assert [c.decode() for c in children] == names


# --- the tree's rules, directly ---------------------------------------------

def test_canonicalize() -> None:
    g = tree.Caller(5)
    assert tree.canonicalize(g, "memory/target") == "/local/domain/5/memory/target"
    assert tree.canonicalize(g, "/vm") == "/vm"
    assert tree.canonicalize(g, "/") == "/"
    assert tree.canonicalize(g, "@releaseDomain", allow_special=True) == "@releaseDomain"
    # the length limit counts from the domain's home for a guest
    assert tree.canonicalize(g, "a" * 2048)
    for bad in ("", "a b", "a//b", "a/", "@x", "a" * 2049):
        with pytest.raises(tree.XsError):
            tree.canonicalize(g, bad)


@pytest.mark.parametrize("perms,domid,expected", [
    ((Perm(0, 0), Perm(5, 1)), 5, wire_server.PERM_READ),
    ((Perm(0, 0), Perm(5, 1)), 6, wire_server.PERM_NONE),
    ((Perm(0, 1), Perm(5, 0)), 6, wire_server.PERM_READ),  # first entry: everyone else
    ((Perm(0, 1), Perm(5, 0)), 5, wire_server.PERM_NONE),
    ((Perm(5, 0),), 5, tree.ALL),  # owner
    ((Perm(7, 0),), 0, tree.ALL),  # dom0
    ((Perm(0, 0), Perm(5, 3)), 5, wire_server.PERM_READ | wire_server.PERM_WRITE),
])
def test_perm_for(perms: tuple[Perm, ...], domid: int, expected: int) -> None:
    assert tree.perm_for(tree.Caller(domid), perms) == expected


def test_directory_part_is_bounded() -> None:
    kids = tuple(f"k{i:04d}" + "x" * 40 for i in range(300))
    part = tree.directory_part(kids, 7, 0)
    assert part.startswith(b"7\0") and len(part) <= wire.PAYLOAD_MAX_BYTES
    assert tree.directory_part(kids, 7, 10 ** 6) == b"7\0\0"
    assert tree.directory_part((), 3, 0) == b"3\0\0"


# --- lifecycle and standalone mode -------------------------------------------

def test_constructor_does_no_io_and_refuses_long_socket_paths() -> None:
    srv = SimXenstored("/nonexistent/dir/never/created")
    assert srv.read("name") == "Domain-0"
    assert not os.path.exists("/nonexistent/dir")
    with pytest.raises(ValueError):
        SimXenstored("/tmp/" + "d" * 120)


def test_restart_keeps_the_tree_and_drops_connections(sim_xenstored: XsHost) -> None:  # noqa: F811
    raw = Raw(sim_xenstored.guest_socket)
    raw.write("data/kept", b"1")
    sim_xenstored.server.stop()
    sim_xenstored.server.start()
    with pytest.raises((ConnectionError, OSError)):
        raw.call(Op.READ, wire.strings("name"))
    raw.close()
    again = Raw(sim_xenstored.guest_socket)
    assert again.ok(Op.READ, "data/kept") == b"1"
    again.close()


@needs_clients
def test_standalone_mode() -> None:
    sock_dir = tempfile.mkdtemp(prefix="xsd", dir="/tmp")
    env = python_env()
    proc = subprocess.Popen([sys.executable, "-m", "xenballoond.sim.xenstored", "--dir", sock_dir,
                             "--domains", "2", "--memory-kb", "1234"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        assert lines[2].startswith("dom2 guest2 XENSTORED_PATH=")
        path = lines[2].strip().split("=", 1)[1]
        r = subprocess.run(["xenstore-read", "name", "memory/target"], capture_output=True,
                           text=True, env={**os.environ, "XENSTORED_PATH": path}, timeout=20)
        assert r.stdout == "guest2\n1234\n"
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert not os.path.exists(os.path.join(sock_dir, "d2"))
    shutil.rmtree(sock_dir, ignore_errors=True)
