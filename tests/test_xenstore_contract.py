"""One contract for both xenstore backends, against the simulated xenstored.

Every test runs with CliXenstore (Debian's real xenstore-* clients, pointed at
the server by XENSTORED_PATH) and with NativeXenstore (the wire protocol in
Python).  Expected values come from what the fixture put in the tree (as libxl
would) or from what the test wrote, checked through the server's own accessors.
"""
from __future__ import annotations

import select
import socket
import threading
from typing import Callable

import pytest

from tests.daemonproc import wait_until
from tests.needs import XENSTORE_CLIENTS, tool_mark
from tests.xsfixtures import GUEST_MAXMEM_KB, GUEST_MEMORY_KB, XsHost, sim_xenstored  # noqa: F401
from xenballoond.xenstore.interface import Xenstore
from xenballoond.xenstore import (XenstoreDenied, XenstoreError, XenstoreNotFound,
                                  XenstoreTooBig, XenstoreUnavailable, XenstoreWriteFailed)
from xenballoond.xenstore.cli import UNFINISHED_MAX, CliXenstore
from xenballoond.xenstore import wire
from xenballoond.xenstore.native import PIPELINE_DEPTH, NativeXenstore, write_units


Factory = Callable[..., Xenstore]
GUEST_HOME = "/local/domain/1"


@pytest.fixture(params=[pytest.param("cli", marks=tool_mark(*XENSTORE_CLIENTS)), "native"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make(kind: str, sim_xenstored: XsHost) -> Factory:  # noqa: F811
    """make(domid=1, timeout_s=2.0) -> a backend talking to that domain's socket."""
    made: list[Xenstore] = []

    def factory(domid: int = 1, timeout_s: float = 2.0) -> Xenstore:
        env = sim_xenstored.env(domid)
        xs: Xenstore
        if kind == "cli":
            xs = CliXenstore(timeout_s=timeout_s, env=env)
        else:
            xs = NativeXenstore(timeout_s=timeout_s, env=env)  # finds XENSTORED_PATH in env
        made.append(xs)
        return xs
    yield factory
    for xs in made:
        xs.close()


@pytest.fixture
def guest(make: Factory) -> Xenstore:
    return make(1)


@pytest.fixture
def dom0(make: Factory) -> Xenstore:
    return make(0)


# --- reading ---------------------------------------------------------------

def test_snapshot_of_memory_as_libxl_made_it(guest: Xenstore) -> None:
    assert guest.snapshot("memory") == {
        "static-max": str(GUEST_MAXMEM_KB), "target": str(GUEST_MEMORY_KB), "videoram": "-1"}


def test_snapshot_includes_intermediate_nodes_with_relative_keys(
        guest: Xenstore, sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    srv.write(f"{GUEST_HOME}/data/xenballoon/selftarget", "4096")
    srv.write(f"{GUEST_HOME}/data/xenballoon/meminfo", "MemTotal: 1 kB\nMemFree: 2 kB")
    srv.write(f"{GUEST_HOME}/data/other", "x")
    assert guest.snapshot("data") == {
        "xenballoon": "", "xenballoon/selftarget": "4096",
        "xenballoon/meminfo": "MemTotal: 1 kB\nMemFree: 2 kB", "other": "x"}


def test_snapshot_of_missing_or_unreadable_path_is_empty(guest: Xenstore) -> None:
    assert guest.snapshot("memory/nothing-here") == {}
    assert guest.snapshot("/local/domain/0") == {}  # dom0's, not ours to read


def test_snapshot_of_absolute_path_gives_relative_keys(dom0: Xenstore) -> None:
    snap = dom0.snapshot(f"{GUEST_HOME}/memory")
    assert snap["target"] == str(GUEST_MEMORY_KB)


def test_read_relative_and_absolute_agree(guest: Xenstore) -> None:
    assert guest.read("memory/target") == str(GUEST_MEMORY_KB)
    assert guest.read(f"{GUEST_HOME}/memory/target") == str(GUEST_MEMORY_KB)
    assert guest.read("name") == "guest1"


def test_dom0_relative_paths_resolve_under_domain_0(dom0: Xenstore) -> None:
    assert dom0.read("name") == "Domain-0"


def test_read(guest: Xenstore) -> None:
    assert [guest.read(k) for k in ("memory/target", "memory/static-max", "name")] == [
        str(GUEST_MEMORY_KB), str(GUEST_MAXMEM_KB), "guest1"]


def test_list_in_creation_order(guest: Xenstore) -> None:
    assert guest.list("memory") == ["static-max", "target", "videoram"]
    assert guest.list("data") == []


def absent(xs: Xenstore, path: str) -> bool:
    """Not there, or not readable by this domain: both read as absent."""
    try:
        xs.read(path)
    except XenstoreNotFound:
        return True
    return False


def test_missing_and_unreadable_read_as_absent(guest: Xenstore) -> None:
    assert not absent(guest, "memory/target")
    assert absent(guest, "memory/selftarget")
    assert absent(guest, "/local/domain/0/name")


def test_missing_raises_not_found(guest: Xenstore) -> None:
    with pytest.raises(XenstoreNotFound):
        guest.read("memory/selftarget")
    with pytest.raises(XenstoreNotFound):
        guest.list("memory/selftarget")


def test_invalid_path_is_an_error_not_a_crash(guest: Xenstore) -> None:
    with pytest.raises(XenstoreError):
        guest.read("bad path!")


# --- writing ---------------------------------------------------------------

def test_write_many_writes_all(guest: Xenstore, sim_xenstored: XsHost) -> None:  # noqa: F811
    guest.write_many({"data/xenballoon/selftarget": "123", "data/xenballoon/uptime": "9.5 1.0"})
    srv = sim_xenstored.server
    assert srv.read(f"{GUEST_HOME}/data/xenballoon/selftarget") == "123"
    assert srv.read(f"{GUEST_HOME}/data/xenballoon/uptime") == "9.5 1.0"
    assert srv.get_perms(f"{GUEST_HOME}/data/xenballoon/selftarget") == ["n1"]


def test_write_under_memory_is_denied_for_a_guest(
        guest: Xenstore, kind: str, sim_xenstored: XsHost) -> None:  # noqa: F811
    expected = XenstoreDenied if kind == "native" else XenstoreWriteFailed
    with pytest.raises(expected):
        guest.write_many({"memory/selftarget": "123"})
    assert not sim_xenstored.server.exists(f"{GUEST_HOME}/memory/selftarget")


def test_write_many_is_all_or_nothing(
        guest: Xenstore, kind: str, sim_xenstored: XsHost) -> None:  # noqa: F811
    expected = XenstoreDenied if kind == "native" else XenstoreWriteFailed
    with pytest.raises(expected):
        guest.write_many({"data/first": "1", "memory/selftarget": "2", "data/last": "3"})
    srv = sim_xenstored.server
    assert not srv.exists(f"{GUEST_HOME}/data/first")
    assert not srv.exists(f"{GUEST_HOME}/data/last")


def test_key_handed_over_by_dom0_becomes_writable(guest: Xenstore, dom0: Xenstore,
                                                  sim_xenstored: XsHost) -> None:  # noqa: F811
    dom0.write_many({f"{GUEST_HOME}/memory/selftarget": "0"})
    sim_xenstored.server.set_perms(f"{GUEST_HOME}/memory/selftarget", ["n1"])
    guest.write_many({"memory/selftarget": "4242"})
    assert guest.read("memory/selftarget") == "4242"


@pytest.mark.parametrize("size", [2048, 1500])
def test_guest_node_up_to_2048_bytes_is_accepted(guest: Xenstore, size: int) -> None:
    guest.write_many({"data/big": "v" * size})
    assert guest.read("data/big") == "v" * size


def test_guest_node_over_2048_bytes_is_refused(guest: Xenstore, kind: str) -> None:
    expected = XenstoreTooBig if kind == "native" else XenstoreWriteFailed
    with pytest.raises(expected):
        guest.write_many({"data/big": "v" * 2049})
    assert absent(guest, "data/big")


def test_dom0_may_write_bigger_nodes(dom0: Xenstore) -> None:
    dom0.write_many({f"{GUEST_HOME}/data/big": "v" * 3000})
    assert dom0.read(f"{GUEST_HOME}/data/big") == "v" * 3000


def test_message_over_4096_bytes_is_refused(dom0: Xenstore, kind: str) -> None:
    expected = XenstoreTooBig if kind == "native" else XenstoreWriteFailed
    with pytest.raises(expected):
        dom0.write_many({f"{GUEST_HOME}/data/huge": "v" * 4097})
    assert absent(dom0, f"{GUEST_HOME}/data/huge")


def test_nul_in_value_is_refused(guest: Xenstore) -> None:
    with pytest.raises(XenstoreWriteFailed):
        guest.write_many({"data/nul": "a\0b"})


def test_native_refuses_text_that_has_no_bytes(sim_xenstored: XsHost) -> None:  # noqa: F811
    xs = NativeXenstore(socket_path=sim_xenstored.guest_socket)
    with pytest.raises(XenstoreWriteFailed):
        xs.write_many({"data/x": "lone \ud800 surrogate"})
    with pytest.raises(XenstoreError):
        xs.read("data/\ud800")


def test_text_that_has_no_bytes_is_refused_not_a_crash(guest: Xenstore) -> None:
    with pytest.raises(XenstoreWriteFailed):
        guest.write_many({"data/x": "lone \ud800 surrogate"})
    with pytest.raises(XenstoreWriteFailed):
        guest.write_many({"data/\ud800": "1"})


def test_four_daemon_outputs_of_1500_bytes_in_one_go(guest: Xenstore) -> None:
    outputs = {f"data/xenballoon/{k}": f"{k} " + "9" * 1490
               for k in ("selftarget", "meminfo", "vmstat", "uptime")}
    guest.write_many(outputs)
    snap = guest.snapshot("data/xenballoon")
    assert snap == {k.rsplit("/", 1)[1]: v for k, v in outputs.items()}


HOSTILE_VALUES = [
    "two\nlines", "trailing\n", "\n", "back\\slash", "a\\", "\\\\", 'quo"te', "'single'",
    "tab\there", "\r\n", "\\n not a newline", "\\x41", "\\101", "\\t", "ünïcödé €", "😀",
    "\x01\x02\x7f", "", "  spaced  ", "-1", "--", "-p", "= \"x\"", "$(id)", "%s%n",
    "\udcff\udcfe",  # bytes that are not UTF-8 come back as surrogate escapes
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_values_round_trip_exactly(guest: Xenstore, sim_xenstored: XsHost,  # noqa: F811
                                   value: str) -> None:
    guest.write_many({"data/v": value})
    stored = sim_xenstored.server.read_bytes(f"{GUEST_HOME}/data/v")
    assert stored == value.encode("utf-8", "surrogateescape")
    assert guest.read("data/v") == value
    assert guest.snapshot("data") == {"v": value}


def test_many_hostile_values_in_one_transaction(guest: Xenstore) -> None:
    items = {f"data/h{i}": v for i, v in enumerate(HOSTILE_VALUES)}
    guest.write_many(items)
    assert {k: guest.read(k) for k in items} == items
    assert guest.snapshot("data") == {k[5:]: v for k, v in items.items()}


# --- failures of xenstored itself ------------------------------------------

def test_stopped_xenstored_is_unavailable(make: Factory, sim_xenstored: XsHost) -> None:  # noqa: F811
    xs = make(1)
    assert xs.read("name") == "guest1"
    sim_xenstored.server.stop()
    with pytest.raises(XenstoreUnavailable):
        xs.read("name")
    with pytest.raises(XenstoreUnavailable):
        xs.snapshot("memory")
    with pytest.raises(XenstoreUnavailable):
        xs.write_many({"data/a": "1", "data/b": "2"})


def test_hung_xenstored_times_out_as_unavailable(make: Factory,
                                                 sim_xenstored: XsHost) -> None:  # noqa: F811
    xs = make(1, timeout_s=0.5)
    with sim_xenstored.server.stalled():
        with pytest.raises(XenstoreUnavailable):
            xs.read("name")
        with pytest.raises(XenstoreUnavailable):
            xs.write_many({"data/a": "1", "data/b": "2"})
    assert xs.read("name") == "guest1"  # and it recovers


def test_works_again_after_xenstored_restarts(make: Factory,
                                              sim_xenstored: XsHost) -> None:  # noqa: F811
    xs = make(1)
    assert xs.read("name") == "guest1"
    sim_xenstored.server.stop()
    sim_xenstored.server.start()
    assert xs.read("name") == "guest1"
    xs.write_many({"data/a": "1", "data/b": "2"})
    assert xs.snapshot("data") == {"a": "1", "b": "2"}


def test_available(make: Factory) -> None:
    assert make(1).available()


# --- costs -----------------------------------------------------------------

@tool_mark(*XENSTORE_CLIENTS)
def test_cli_costs_one_process_per_call(sim_xenstored: XsHost) -> None:  # noqa: F811
    xs = CliXenstore(env=sim_xenstored.env(1))
    xs.snapshot("memory")
    assert (xs.processes_spawned, xs.requests) == (1, 1)
    xs.write_many({f"data/k{i}": "v" for i in range(4)})
    assert (xs.processes_spawned, xs.requests) == (2, 2)
    xs.read("memory/target")
    assert xs.processes_spawned == 3


def test_native_spawns_nothing_and_counts_round_trips(sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    xs = NativeXenstore(socket_path=sim_xenstored.guest_socket)
    served0 = srv.requests_served
    xs.snapshot("memory")  # DIRECTORY memory, then READ + DIRECTORY for each of 3 keys
    assert xs.requests == 1 + 2 * 3
    xs.write_many({f"data/k{i}": "v" for i in range(4)})  # start, 4 writes, commit
    assert xs.requests == 7 + 6
    xs.write_many({"data/one": "v"})  # a single write needs no transaction
    assert xs.requests == 13 + 1
    assert srv.requests_served - served0 == xs.requests
    assert xs.processes_spawned == 0
    assert srv.connection_count(1) == 1  # one kept connection


def test_native_pipelines_a_snapshot_and_a_transaction(sim_xenstored: XsHost) -> None:  # noqa: F811
    xs = NativeXenstore(socket_path=sim_xenstored.guest_socket)
    xs.snapshot("memory")  # DIRECTORY memory; then READ + DIRECTORY of its 3 keys at once
    assert (xs.requests, xs.round_trips) == (7, 2)
    xs.write_many({f"data/k{i}": "v" for i in range(4)})  # start; 4 writes at once; commit
    assert (xs.requests, xs.round_trips) == (13, 5)
    assert xs.bytes_sent > 0 and xs.bytes_received > 0


def test_native_batches_of_reads_keep_at_most_a_window_in_flight(
        sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    for i in range(40):
        srv.write(f"/local/domain/0/data/k{i}", str(i))
    xs = NativeXenstore(socket_path=sim_xenstored.dom0_socket)
    paths = [f"/local/domain/0/data/k{i}" for i in range(40)] + ["/local/domain/0/data/nope"]
    assert xs.read_existing(paths) == {f"/local/domain/0/data/k{i}": str(i) for i in range(40)}
    assert xs.requests == 41 and xs.round_trips == -(-41 // PIPELINE_DEPTH)
    assert xs.list_existing(["/local/domain/0/data", "/nope"]) == {
        "/local/domain/0/data": [f"k{i}" for i in range(40)]}


def test_batch_reads_leave_missing_paths_out(dom0: Xenstore,
                                             sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    for i in range(3):
        srv.write(f"{GUEST_HOME}/data/k{i}", f"v{i}\nline")
    paths = [f"{GUEST_HOME}/data/k0", f"{GUEST_HOME}/data/nope", f"{GUEST_HOME}/data/k2",
             f"{GUEST_HOME}/data/k1", f"{GUEST_HOME}/data/k0"]
    assert dom0.read_existing(paths) == {f"{GUEST_HOME}/data/k{i}": f"v{i}\nline"
                                         for i in range(3)}
    assert dom0.list_existing([f"{GUEST_HOME}/data", "/nope", f"{GUEST_HOME}/memory"]) == {
        f"{GUEST_HOME}/data": ["k0", "k1", "k2"],
        f"{GUEST_HOME}/memory": ["static-max", "target", "videoram"]}
    assert dom0.read_existing([]) == {} and dom0.list_existing([]) == {}


def test_batch_reads_up_to_a_missing_path_say_what_they_left(
        dom0: Xenstore, kind: str, sim_xenstored: XsHost) -> None:  # noqa: F811
    """read_upto/list_upto: each path is found, left untried, or missing;
    the CLI stops at the first missing path, the native backend never does."""
    srv = sim_xenstored.server
    for i in range(3):
        srv.write(f"{GUEST_HOME}/data/k{i}/v", str(i))
    names = ["k0", "nope", "k1", "k2"]
    done = ["k0"] if kind == "cli" else ["k0", "k1", "k2"]
    left = ["k1", "k2"] if kind == "cli" else []
    found, untried = dom0.read_upto([f"{GUEST_HOME}/data/{n}/v" for n in names])
    assert found == {f"{GUEST_HOME}/data/{n}/v": n[1] for n in done}
    assert untried == [f"{GUEST_HOME}/data/{n}/v" for n in left]
    listed, untried = dom0.list_upto([f"{GUEST_HOME}/data/{n}" for n in names])
    assert listed == {f"{GUEST_HOME}/data/{n}": ["v"] for n in done}
    assert untried == [f"{GUEST_HOME}/data/{n}" for n in left]


def test_watch_reports_changes_or_has_nothing_to_wait_for(
        guest: Xenstore, kind: str, sim_xenstored: XsHost) -> None:  # noqa: F811
    """Both backends take watch(); the CLI's does nothing (no descriptor, no
    events), the native one reports the change."""
    guest.watch("memory", "m")
    sim_xenstored.server.write(f"{GUEST_HOME}/memory/target", "300000")
    if kind == "cli":
        assert guest.fileno() is None and guest.events() == []
        return
    got: list[tuple[str, str]] = []
    for _ in range(300):
        got += guest.events()
        if ("memory/target", "m") in got:
            break
        fd = guest.fileno()
        assert fd is not None
        select.select([fd], [], [], 0.01)
    assert got == [("memory", "m"), ("memory/target", "m")]


def test_native_matches_replies_by_request_id(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A server that answers a batch last request first: each value still
    comes back under its own path."""
    path = str(tmp_path / "sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    listener.settimeout(30)  # no client, or one that stops talking: the thread ends anyway

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(30)
        dec, pending = wire.Decoder(), []
        while len(pending) < 3:
            pending += dec.feed(conn.recv(65536))
        for msg in reversed(pending):  # READ "a", "b", "c": answered c, b, a
            conn.sendall(wire.encode(msg.op, msg.payload[:-1].upper(), msg.req_id))
        conn.recv(1)  # until the client closes
        conn.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    xs = NativeXenstore(socket_path=path)
    assert xs.read_existing(["a", "b", "c"]) == {"a": "A", "b": "B", "c": "C"}
    xs.close()
    server.join(5)
    listener.close()


def wait_events(xs: NativeXenstore, count: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    for _ in range(300):
        got += xs.events()
        if len(got) >= count:
            break
        fd = xs.fileno()
        if fd is not None:
            select.select([fd], [], [], 0.01)
    return got


def test_native_watch_reports_changes_and_survives_a_restart(
        sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    xs = NativeXenstore(socket_path=sim_xenstored.guest_socket)
    xs.watch("memory", "m")
    assert wait_events(xs, 1) == [("memory", "m")]  # once when set
    srv.write(f"{GUEST_HOME}/memory/target", "300000")
    assert wait_events(xs, 1) == [("memory/target", "m")]
    assert xs.events() == []
    srv.stop()
    srv.start()
    assert xs.events() == []  # the dead connection is noticed and closed
    assert xs.read("memory/target") == "300000"  # reconnects, sets the watch again
    assert wait_events(xs, 1) == [("memory", "m")]
    srv.write(f"{GUEST_HOME}/memory/target", "290000")
    assert wait_events(xs, 1) == [("memory/target", "m")]


def test_native_events_while_waiting_for_a_reply_are_kept(sim_xenstored: XsHost) -> None:  # noqa: F811
    xs = NativeXenstore(socket_path=sim_xenstored.guest_socket)
    xs.watch("data", "d")
    xs.write_many({"data/a": "1", "data/b": "2"})  # events arrive among the replies
    assert sorted(wait_events(xs, 3)) == [("data", "d"), ("data/a", "d"), ("data/b", "d")]


def test_native_reconnects_transparently_after_restart(sim_xenstored: XsHost) -> None:  # noqa: F811
    xs = NativeXenstore(socket_path=sim_xenstored.guest_socket)
    assert xs.read("name") == "guest1"
    sim_xenstored.server.stop()
    sim_xenstored.server.start()
    assert xs.read("name") == "guest1"
    assert xs.reconnects == 1


def test_native_constructor_does_no_io(tmp_path) -> None:  # type: ignore[no-untyped-def]
    xs = NativeXenstore(socket_path=str(tmp_path / "nothing-listens-here"))
    assert not xs.available()
    with pytest.raises(XenstoreUnavailable):
        xs.read("name")


def test_native_finds_the_socket_like_libxenstore(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xenballoond.paths import Root
    assert NativeXenstore(env={"XENSTORED_PATH": "/x/y"}).candidates() == ["/x/y"]
    assert NativeXenstore(env={}, root=Root(str(tmp_path))).candidates() == [
        str(tmp_path / "var/run/xenstored/socket"), str(tmp_path / "dev/xen/xenbus"),
        str(tmp_path / "proc/xen/xenbus")]


def test_native_speaks_through_a_device_node_too(sim_xenstored: XsHost) -> None:  # noqa: F811
    """A guest has /dev/xen/xenbus, not a socket: same framing over read/write
    on the fd.  A raw pty stands in for the device, bridged to the guest socket."""
    import os
    import pty
    import socket
    import threading
    import tty

    master, slave = pty.openpty()
    tty.setraw(slave)
    dev_path = os.ttyname(slave)
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    upstream.connect(sim_xenstored.guest_socket)
    stop = threading.Event()

    def pump() -> None:
        import select
        while not stop.is_set():
            ready, _, _ = select.select([master, upstream], [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(master, 65536) if fd == master else upstream.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if fd == master:
                    upstream.sendall(data)
                else:
                    os.write(master, data)

    bridge = threading.Thread(target=pump, daemon=True)
    bridge.start()
    try:
        xs = NativeXenstore(socket_path=dev_path)
        assert xs.read("name") == "guest1"
        xs.write_many({"data/a": "x" * 1500, "data/b": "two\nlines"})
        assert xs.snapshot("data") == {"a": "x" * 1500, "b": "two\nlines"}
        with pytest.raises(XenstoreDenied):
            xs.write_many({"memory/selftarget": "1"})
        xs.close()
    finally:
        stop.set()
        bridge.join(10)
        assert not bridge.is_alive(), "timed out waiting for the pty bridge thread to stop"
        upstream.close()
        os.close(master)
        os.close(slave)


# --- never leave a transaction to the guest's kernel (Linux 6.1 xs_suspend hang) ----------

@tool_mark(*XENSTORE_CLIENTS)
def test_cli_leaves_a_client_that_timed_out_to_finish_its_transaction(
        sim_xenstored: XsHost) -> None:  # noqa: F811
    """xenstore-write of two keys holds a transaction: killed, the guest's kernel would end it
    and count a xenstore user too few, and no xl save could suspend the guest again."""
    srv = sim_xenstored.server
    xs = CliXenstore(timeout_s=0.5, env=sim_xenstored.env(1))
    with srv.stalled():
        with pytest.raises(XenstoreUnavailable, match="left to finish"):
            xs.write_many({"data/a": "1", "data/b": "2"})
        assert xs.unfinished() == 1
    wait_until(lambda: srv.exists(f"{GUEST_HOME}/data/b") and xs.unfinished() == 0, 10,
               "the timed-out xenstore-write to commit its transaction and be reaped")
    assert (srv.read(f"{GUEST_HOME}/data/a"), srv.read(f"{GUEST_HOME}/data/b")) == ("1", "2")


@tool_mark(*XENSTORE_CLIENTS)
def test_cli_runs_no_more_clients_while_too_many_are_unfinished(
        sim_xenstored: XsHost) -> None:  # noqa: F811
    srv = sim_xenstored.server
    xs = CliXenstore(timeout_s=0.3, env=sim_xenstored.env(1))
    with srv.stalled():
        for _ in range(UNFINISHED_MAX):
            with pytest.raises(XenstoreUnavailable, match="timed out"):
                xs.read("memory/target")
        spawned = xs.processes_spawned
        with pytest.raises(XenstoreUnavailable, match="still running"):
            xs.read("memory/target")
        assert xs.processes_spawned == spawned
    wait_until(lambda: xs.unfinished() == 0, 10, "the unfinished clients to end once xenstored answers")
    assert xs.read("memory/target") == str(GUEST_MEMORY_KB)


def test_write_units_one_message_per_write_on_a_device() -> None:
    """Linux's /dev/xen/xenbus acts on the first message of a write() and drops the rest."""
    msgs = [wire.encode(wire.Op.READ, b"a\0", 1, 0), wire.encode(wire.Op.READ, b"b\0", 2, 0)]
    assert write_units(msgs, device=True) == msgs
    assert write_units(msgs, device=False) == [msgs[0] + msgs[1]]


def test_native_over_a_device_writes_each_key_with_no_transaction(
        sim_xenstored: XsHost) -> None:  # noqa: F811
    """A transaction open when the device is closed (a timeout, the daemon killed) would be
    ended by the kernel, which counts it wrongly: over a device, no transaction at all."""
    srv = sim_xenstored.server
    xs = NativeXenstore(socket_path=sim_xenstored.guest_socket)
    assert xs.available() and xs.device is False
    xs.device = True  # what _connect() finds for /dev/xen/xenbus; the server is the socket
    served0 = srv.requests_served
    xs.write_many({f"data/k{i}": str(i) for i in range(3)})
    assert srv.requests_served - served0 == 3  # three writes: no start, no commit
    assert [srv.read(f"{GUEST_HOME}/data/k{i}") for i in range(3)] == ["0", "1", "2"]
    with pytest.raises(XenstoreDenied):
        xs.write_many({"data/first": "1", "memory/selftarget": "2"})
    assert srv.read(f"{GUEST_HOME}/data/first") == "1"  # not all or nothing over a device


# --- a device reads a request's payload after write() returns (Linux's xenbus_dev_frontend) ----

class KernelLikeDevice:
    """A pty standing in for a guest's /dev/xen/xenbus that does what Linux's
    xenbus_dev_frontend.c does with a request: xenbus_file_write() copies the
    message into the file's one buffer (u->u.buffer) and returns;
    xenbus_dev_request_and_reply() keeps a copy of the header but only a pointer
    to the payload in that buffer, which the kernel's xenbus thread copies to the
    ring when it runs.  On a one-vCPU guest that is once the writer stops
    writing: here, once the pty has been quiet for IDLE_S."""

    IDLE_S = 0.02

    def __init__(self, upstream_path: str) -> None:
        import os
        import pty
        import tty
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.upstream.connect(upstream_path)
        self.buffer = bytearray(wire.PAYLOAD_MAX_BYTES)  # u->u.buffer, header included
        self.queued: list[bytes] = []  # headers of requests not yet on the ring
        self.partial = bytearray()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _take(self, data: bytes) -> None:
        self.partial += data
        while len(self.partial) >= wire.HEADER_BYTES:
            length = int.from_bytes(self.partial[12:16], "little")
            end = wire.HEADER_BYTES + length
            if len(self.partial) < end:
                return
            self.buffer[:end] = self.partial[:end]  # the next write() lands where the last one was
            self.queued.append(bytes(self.partial[:wire.HEADER_BYTES]))
            del self.partial[:end]

    def _flush(self) -> None:
        """The xenbus thread: each queued header, and its length of the buffer as it is now."""
        for header in self.queued:
            length = int.from_bytes(header[12:16], "little")
            payload = self.buffer[wire.HEADER_BYTES:wire.HEADER_BYTES + length]
            self.upstream.sendall(header + bytes(payload))
        self.queued.clear()

    def _pump(self) -> None:
        import os
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master, self.upstream.fileno()], [], [],
                                        self.IDLE_S)
            if not ready:
                self._flush()
            for fd in ready:
                try:
                    data = (os.read(self.master, 65536) if fd == self.master
                            else self.upstream.recv(65536))
                except OSError:
                    return
                if not data:
                    return
                if fd == self.master:
                    self._take(data)
                else:
                    os.write(self.master, data)

    def close(self) -> None:
        import os
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "timed out waiting for the device thread to stop"
        self.upstream.close()
        os.close(self.master)
        os.close(self.slave)


def test_native_over_a_device_sends_each_request_after_the_last_reply(
        sim_xenstored: XsHost) -> None:  # noqa: F811
    """Requests written back to back on a device all went out with the last one's payload
    (the kernel reads a payload from its one buffer after write() has returned): keys written
    with each other's values, reads answered for another path or EINVAL.  One request in
    flight: every key and value arrives as sent."""
    srv = sim_xenstored.server
    dev = KernelLikeDevice(sim_xenstored.guest_socket)
    try:
        xs = NativeXenstore(socket_path=dev.path)
        items = {f"data/k{i}": str(i) * (1 + 7 * i) for i in range(6)}
        xs.write_many(items)
        assert xs.device
        assert {k: srv.read(f"{GUEST_HOME}/{k}") for k in items} == items
        assert xs.read_existing(list(items)) == items
        assert xs.snapshot("data") == {k.split("/", 1)[1]: v for k, v in items.items()}
        assert xs.round_trips == xs.requests  # one request at a time
        xs.close()
    finally:
        dev.close()
