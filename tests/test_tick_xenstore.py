"""A tick of the real code against the simulated xenstored, through Debian's
real xenstore-* clients (XENSTORED_PATH points at the guest's socket)."""
from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import tempfile
import threading
import time

import pytest

from tests import daemonproc as dp
from tests.needs import XENSTORE_CLIENTS, tool_mark
from tests.fifo import WriteRecorder
from tests.guestroot import SYSFS, balloon_target_bytes, make_guest, set_current_kb
from xenballoond.guest.cli import build
from xenballoond.xenstore.cli import CliXenstore
from xenballoond.xenstore import wire
from xenballoond.xenstore.native import NativeXenstore
from xenballoond.guest.settings import parse_config
from xenballoond.paths import Root
from xenballoond.guest.policy import MIB
from xenballoond.sim.xenstored import SimXenstored

CLIENTS = tool_mark(*XENSTORE_CLIENTS)
DOMID = 5
HOME = f"/local/domain/{DOMID}"


@pytest.fixture
def xs():
    d = tempfile.mkdtemp(prefix="xs")
    sim = SimXenstored(d)
    sim.add_domain(DOMID, "guest", memory_kb=393216, maxmem_kb=786432)
    sim.start()
    yield sim
    sim.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def guest(tmp_path, xs, monkeypatch):
    root = str(tmp_path)
    make_guest(root, memtotal_kb=380000, committed_kb=200000, current_kb=393216)
    monkeypatch.setenv("XENSTORED_PATH", xs.socket_path(DOMID))
    return root


@pytest.fixture(params=[pytest.param("cli", marks=CLIENTS), "native"])
def backend(request, monkeypatch):
    return request.param


def ballooner(root: str, conf: str = "", backend: str = "cli", clock=None):
    config, _ = parse_config(conf + f"XENBALLOON_XENSTORE={backend}\n", "test.conf")
    b = build(config, Root(root), logging.getLogger("test"), clock=clock)
    assert b is not None and b.xenstore is not None
    return b


class Clock:
    """Monotonic seconds that move only when the test says: each tick is one
    interval later, however long it took."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_directed_takes_dom0_target_at_once(guest, xs, backend):
    xs.write(f"{HOME}/memory/target", "300000")
    b = ballooner(guest, backend=backend)  # self-ballooning off: directed
    assert b.tick() == 1
    # dom0's 300000 kB, not a 1/10 step from 393216 kB (the default down hysteresis)
    assert balloon_target_bytes(guest) == 300000 * 1024
    # published under data/xenballoon: xl keeps memory/ read-only for the guest
    assert xs.read(f"{HOME}/data/xenballoon/selftarget") == "300000"
    assert "MemTotal:" in xs.read(f"{HOME}/data/xenballoon/meminfo")
    assert xs.read(f"{HOME}/data/xenballoon/uptime") == "1234.56 1100.20"
    assert len(xs.read(f"{HOME}/data/xenballoon/vmstat").encode()) <= 2048
    assert not xs.exists(f"{HOME}/memory/selftarget")
    # the mode, so that dom0 knows memory/target is the input here (never copied back)
    assert xs.read(f"{HOME}/data/xenballoon/mode") == "directed"


def test_self_ballooning_publishes_its_mode_for_dom0s_follower(guest, xs, backend):
    b = ballooner(guest, "XENBALLOON_SELF=true\n", backend=backend)
    b.tick()
    assert xs.read(f"{HOME}/data/xenballoon/mode") == "self"
    assert int(xs.read(f"{HOME}/data/xenballoon/selftarget")) == balloon_target_bytes(guest) // 1024


def test_mode_goes_under_data_even_when_dom0_handed_memory_over(guest, xs):
    """dom0 hands over the 2008 keys only (xenstore-chmod): the mode, in the guest's
    own data/xenballoon/, must not cost them their place under memory/."""
    for key in ("selftarget", "meminfo", "vmstat", "uptime"):
        xs.write(f"{HOME}/memory/{key}", "0")
        xs.set_perms(f"{HOME}/memory/{key}", [f"n{DOMID}"])
    b = ballooner(guest, "XENBALLOON_SELF=true\n", backend="native")
    b.tick()
    assert b.publisher.state == "primary"
    assert xs.read(f"{HOME}/memory/selftarget") != "0"
    assert xs.read(f"{HOME}/data/xenballoon/mode") == "self"
    assert not xs.exists(f"{HOME}/memory/mode")


def test_memory_target_is_no_input_while_self_ballooning(guest, xs):
    """dom0's follower copies our selftarget into memory/target: that write is
    no change of dom0's keys (no early tick, which would step the hysteresis
    ahead of its interval), only a touch; directed, it is the input."""
    xs.write(f"{HOME}/memory/target", "300000")
    b = ballooner(guest, "XENBALLOON_SELF=true\n", backend="native")
    b.link.watch_wanted = True
    b.tick()
    b.tick()
    b.link.take_events()  # the watch's first event
    b.link.take_target_touch()
    xs.write(f"{HOME}/memory/target", xs.read(f"{HOME}/data/xenballoon/selftarget"))
    assert not wait_for_watch(b, 1.0)
    assert b.link.take_target_touch()
    assert not b.link.take_target_touch()  # taken once
    xs.write(f"{HOME}/memory/selfballoon", "0")  # dom0 directs it: a change
    assert wait_for_watch(b)
    b.tick()
    assert b.link.target_is_input
    xs.write(f"{HOME}/memory/target", "280000")
    assert wait_for_watch(b)
    assert not b.link.take_target_touch()


@CLIENTS
def test_cli_idle_tick_is_one_process_and_publishes_every_max_s(guest, xs):
    clock = Clock()
    b = ballooner(guest, "XENBALLOON_SELF=true\n", backend="cli", clock=clock)
    b.tick()  # xenstore-ls, tries memory/ once, falls back
    first = b.xenstore.processes_spawned
    assert first == 3
    uptime_writes = []
    for n in range(1, 21):
        clock.now_s += 1
        before = b.xenstore.processes_spawned
        b.tick()
        uptime_writes += [n] if b.xenstore.processes_spawned - before == 2 else []
    # the balloon here does not move (a static tree): nothing changes but uptime.
    # The CLI backend reads memory/ every tick (xenstore-ls); writes every 10 s.
    assert b.xenstore.processes_spawned - first == 20 + 2
    assert uptime_writes == [10, 20]


def test_native_idle_ticks_send_under_one_request_a_second(guest, xs):
    """Watched, not read: an idle guest's ticks send nothing but the
    publication every XENBALLOON_PUBLISH_MAX_S (10 s): one transaction of five
    writes (the 2008 four and the mode), seven requests."""
    clock = Clock()
    xs.write(f"{HOME}/memory/target", "300000")
    b = ballooner(guest, backend="native", clock=clock)  # directed
    b.link.watch_wanted = True  # as the run loop sets it
    b.tick()
    clock.now_s += 1
    b.tick()
    requests, rx = b.xenstore.requests, b.xenstore.bytes_received
    per_tick = []
    for _ in range(30):
        clock.now_s += 1
        before = b.xenstore.requests
        b.tick()
        per_tick.append(b.xenstore.requests - before)
    assert sorted(per_tick) == [0] * 27 + [7] * 3, per_tick
    assert b.xenstore.requests - requests == 21  # 0.7 a second
    # the replies only (16-byte headers, OKs, a transaction id); our writes go
    # under data/xenballoon/, outside the watch on memory/
    assert b.xenstore.bytes_received - rx < 3 * 7 * 24
    assert balloon_target_bytes(guest) == 300000 * 1024


def wait_for_watch(b, timeout_s: float = 30) -> bool:
    """Until the watch reports a change (a failure bound, not a measurement)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if b.link.take_events():
            return True
        fd = b.link.fileno()
        if fd is None:
            return False
        select.select([fd], [], [], 0.1)
    return False


def test_watch_takes_dom0_target_without_reading_every_tick(guest, xs):
    clock = Clock()
    xs.write(f"{HOME}/memory/target", "300000")
    b = ballooner(guest, backend="native", clock=clock)
    b.link.watch_wanted = True
    b.tick()
    b.tick()
    served = xs.requests_served
    for _ in range(3):
        b.tick()  # idle: nothing read, nothing written (within the 10 s)
    assert xs.requests_served == served
    xs.write(f"{HOME}/memory/target", "280000")  # xl mem-set
    assert wait_for_watch(b)
    b.tick()  # what the run loop does at once on the event
    assert balloon_target_bytes(guest) == 280000 * 1024


def test_own_writes_under_memory_are_not_dom0s_changes(guest, xs):
    xs.write(f"{HOME}/memory/target", "300000")
    for key in ("selftarget", "meminfo", "vmstat", "uptime"):  # dom0 hands them over
        xs.write(f"{HOME}/memory/{key}", "0")
        xs.set_perms(f"{HOME}/memory/{key}", [f"n{DOMID}"])
    clock = Clock()
    b = ballooner(guest, backend="native", clock=clock)
    b.link.watch_wanted = True
    b.tick()
    assert xs.read(f"{HOME}/memory/selftarget") == "300000"
    wait_for_watch(b, 0.5)  # the watch fired when set; and our first writes
    clock.now_s += 10
    served = xs.requests_served
    b.tick()  # publishes again (10 s): our events come back on the watch
    assert xs.requests_served - served == 7  # the four under memory/, the mode under data/
    assert not wait_for_watch(b, 0.5)
    b.tick()
    assert xs.requests_served - served == 7  # and were not taken for dom0's


def test_watch_is_set_again_after_xenstored_restarts(guest, xs):
    xs.write(f"{HOME}/memory/target", "300000")
    b = ballooner(guest, backend="native")
    b.link.watch_wanted = True
    b.tick()
    b.tick()
    assert b.link.fileno() is not None
    xs.stop()
    xs.start()
    assert not b.link.take_events()  # the dead connection is noticed and closed
    assert b.link.fileno() is None  # no live watch: the next tick reads memory/
    xs.write(f"{HOME}/memory/target", "290000")  # while we were not watching
    b.tick()  # reads, reconnects, sets the watch again
    assert balloon_target_bytes(guest) == 290000 * 1024
    assert b.xenstore.reconnects == 0 and b.link.fileno() is not None
    b.link.take_events()  # the re-set watch fired once
    xs.write(f"{HOME}/memory/target", "270000")
    assert wait_for_watch(b)
    b.tick()
    assert balloon_target_bytes(guest) == 270000 * 1024


def test_cli_backend_keeps_reading_every_tick(guest, xs):
    if shutil.which("xenstore-ls") is None:
        pytest.skip("needs xenstore-utils (xenstore-ls)")
    b = ballooner(guest, backend="cli")
    b.link.watch_wanted = True
    b.tick()
    assert b.link.fileno() is None
    xs.write(f"{HOME}/memory/target", "250000")
    b.tick()
    assert balloon_target_bytes(guest) == 250000 * 1024


def test_native_backend_spawns_no_process(guest, xs):
    b = ballooner(guest, "XENBALLOON_SELF=true\n", backend="native")
    served = xs.requests_served
    for _ in range(3):
        b.tick()
    assert b.xenstore.processes_spawned == 0
    assert xs.exists(f"{HOME}/data/xenballoon/selftarget")
    assert b.xenstore.requests == xs.requests_served - served


def test_publishes_under_memory_when_dom0_hands_the_keys_over(guest, xs, backend):
    b = ballooner(guest, "XENBALLOON_SELF=true\n", backend=backend)
    b.tick()
    assert xs.exists(f"{HOME}/data/xenballoon/selftarget")
    for key in ("selftarget", "meminfo", "vmstat", "uptime"):
        xs.write(f"{HOME}/memory/{key}", "0")
        xs.set_perms(f"{HOME}/memory/{key}", [f"n{DOMID}"])  # xenstore-chmod
    b.tick()
    assert xs.read(f"{HOME}/memory/selftarget") == str(balloon_target_bytes(guest) // 1024)
    assert "Committed_AS" in xs.read(f"{HOME}/memory/meminfo")


def test_hand_over_in_two_steps_is_seen_at_once(guest, xs, backend):
    """dom0's xenstore-write and xenstore-chmod are separate commands: a tick
    between them fails on memory/, and the next must try again, not in 60 ticks."""
    b = ballooner(guest, "XENBALLOON_SELF=true\n", backend=backend)
    b.tick()
    keys = ("selftarget", "meminfo", "vmstat", "uptime")
    for key in keys:
        xs.write(f"{HOME}/memory/{key}", "0")  # still n0,r<domid>: not the guest's yet
    b.tick()
    assert xs.read(f"{HOME}/memory/selftarget") == "0"
    for key in keys:
        xs.set_perms(f"{HOME}/memory/{key}", [f"n{DOMID}"])
    b.tick()
    assert xs.read(f"{HOME}/memory/selftarget") == str(balloon_target_bytes(guest) // 1024)


def test_selfballoon_zero_from_dom0_turns_self_off(guest, xs, backend):
    xs.write(f"{HOME}/memory/selfballoon", "0")
    xs.write(f"{HOME}/memory/target", "393216")
    b = ballooner(guest, "XENBALLOON_SELF=true\nXENBALLOON_INTERVAL=7\nXENBALLOON_SELF_INTERVAL=3\n", backend=backend)
    assert b.tick() == 7
    assert balloon_target_bytes(guest) == 393216 * 1024  # dom0's target, not Committed_AS
    xs.write(f"{HOME}/memory/selfballoon", "1")
    assert b.tick() == 3
    assert balloon_target_bytes(guest) < 393216 * 1024


def test_interval_and_hysteresis_overrides(guest, xs, backend):
    xs.write(f"{HOME}/memory/selfballoon", "1")
    xs.write(f"{HOME}/memory/interval", "9")
    xs.write(f"{HOME}/memory/downhysteresis", "2")
    b = ballooner(guest, backend=backend)
    assert b.tick() == 9
    # self target (200000 + 13216 + 45138 kB to run) * 1024 = 264554496 B, as in
    # test_daemon's; down 2: 402653184 - (402653184 - 264554496) / 2
    assert balloon_target_bytes(guest) == 333603840


def test_dom0_hysteresis_zero_moves_at_once(guest, xs, backend, request):
    xs.write(f"{HOME}/memory/selfballoon", "1")
    xs.write(f"{HOME}/memory/downhysteresis", "0")
    b, records = logged_ballooner(guest, request.node.name, backend)
    b.tick()
    assert balloon_target_bytes(guest) == 264554496  # down at once, as the original
    set_current_kb(guest, 200000)  # below MemTotal here: no kernel reservation to add
    xs.write(f"{HOME}/memory/uphysteresis", "0")
    b.tick()
    # up at once, and said so: (200000 + 0 + 45138) kB
    assert balloon_target_bytes(guest) == 245138 * 1024
    assert len(records.warnings("memory/uphysteresis=0")) == 1


@pytest.mark.parametrize("value", ["0", "-1", "", "garbage", "1e9", "99999999999999999999"])
def test_bad_interval_never_makes_a_busy_loop(guest, xs, value, backend):
    xs.write(f"{HOME}/memory/interval", value)
    b = ballooner(guest, "XENBALLOON_INTERVAL=4\n", backend=backend)
    assert b.tick() == 4


def test_target_is_never_evaluated_as_shell(guest, xs, tmp_path, backend):
    """Regression: the original's $(( $1 * 1024 )) ran a[$(cmd)] as root."""
    marker = tmp_path / "pwned"
    xs.write(f"{HOME}/memory/target", f"a[$(touch {marker})]")
    b = ballooner(guest, backend=backend)
    b.tick()
    assert not marker.exists()
    # no valid target: nothing written, the balloon keeps its size
    assert balloon_target_bytes(guest) == 393216 * 1024


def test_directed_target_below_minimum_is_floored(guest, xs, backend):
    xs.write(f"{HOME}/memory/target", "1")
    b = ballooner(guest, "XENBALLOON_AUTO_DOWNHYSTERESIS=0\n", backend=backend)
    b.tick()
    assert balloon_target_bytes(guest) == 136 * MIB  # minmb of 384 MiB


def test_ballooning_goes_on_when_xenstored_is_down(guest, xs, backend):
    xs.stop()
    b = ballooner(guest, "XENBALLOON_SELF=true\nXENBALLOON_AUTO_DOWNHYSTERESIS=0\nXENBALLOON_SELF_RESERVE_PCT=0\n", backend=backend)
    b.tick()
    assert balloon_target_bytes(guest) == (200000 + 13216) * 1024


def test_ballooning_goes_on_when_xenstored_hangs(guest, xs, backend):
    b = ballooner(guest, "XENBALLOON_SELF=true\nXENBALLOON_AUTO_DOWNHYSTERESIS=0\nXENBALLOON_SELF_RESERVE_PCT=0\n", backend=backend)
    xenstore = CliXenstore(timeout_s=0.5) if backend == "cli" else NativeXenstore(timeout_s=0.5)
    b.reconfigure(b.config, b.maxmem, xenstore)
    with xs.stalled():
        b.tick()
        # the read timed out: no write that would wait as long again
        assert b.xenstore.processes_spawned in (0, 1)
    assert balloon_target_bytes(guest) == (200000 + 13216) * 1024


@CLIENTS
def test_daemon_process_follows_xl_mem_set(guest, xs):
    """The real daemon, foreground, following dom0's target as `xl mem-set` sets it."""
    conf = os.path.join(guest, "etc/sysconfig/xenballoon.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    with open(conf, "w") as f:
        f.write("XENBALLOON_AUTO_DOWNHYSTERESIS=2\n")
    p = dp.start("--root", guest, "-f", xenstore=True,
                 extra_env={"XENSTORED_PATH": xs.socket_path(DOMID)})
    try:
        xs.write(f"{HOME}/memory/target", "262144")
        seen: list[int] = []

        def converged() -> bool:
            tgt_kb = balloon_target_bytes(guest) // 1024
            if not seen or seen[-1] != tgt_kb:
                seen.append(tgt_kb)
                set_current_kb(guest, tgt_kb)  # the driver reaches each target
            return tgt_kb <= 262144 + 1024
        dp.wait_until(converged, timeout=60, what="convergence to 262144 kB")
        # dom0's target at once, whatever XENBALLOON_AUTO_DOWNHYSTERESIS (2) says:
        # no 1/2 steps (327680, 294912, ...) that would hold it above the target
        assert [kb for kb in seen if kb != 393216] == [262144]
        assert dp.wait_until(lambda: xs.get(f"{HOME}/data/xenballoon/selftarget"))
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_daemon_takes_dom0_target_long_before_its_interval(guest, xs):
    """The real daemon, native backend, ticking every 60 s: an xl mem-set is
    taken when the watch fires, not at the next tick (the timeout is only a
    failure bound, well under the interval)."""
    conf = os.path.join(guest, "etc/sysconfig/xenballoon.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    with open(conf, "w") as f:
        f.write("XENBALLOON_XENSTORE=native\nXENBALLOON_INTERVAL=60\n")
    xs.write(f"{HOME}/memory/target", "300000")
    p = dp.start("--root", guest, "-f", "--debug",
                 extra_env={"XENSTORED_PATH": xs.socket_path(DOMID)})
    try:
        dp.wait_until(lambda: xs.get(f"{HOME}/data/xenballoon/selftarget") == "300000",
                      timeout=30, what="the first tick")
        xs.write(f"{HOME}/memory/target", "280000")
        dp.wait_until(lambda: balloon_target_bytes(guest) == 280000 * 1024, timeout=30,
                      what="the new target, before the next tick (60 s)")
        dp.wait_until(lambda: xs.get(f"{HOME}/data/xenballoon/selftarget") == "280000",
                      timeout=30, what="selftarget published on change")
    finally:
        p.terminate()
        _, err = p.communicate(timeout=30)
    assert "dom0 changed memory/: ticking early" in err
    assert err.count("ticking early") == 1, err


def test_daemon_puts_its_target_back_when_dom0_writes_memory_target(guest, xs):
    """Self-ballooning, ticking every hour: dom0 writes memory/target and the
    kernel applies it (here the test plays the kernel, first); the daemon puts
    its own target back when its watch fires, without a tick."""
    conf = os.path.join(guest, "etc/sysconfig/xenballoon.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    with open(conf, "w") as f:
        f.write("XENBALLOON_XENSTORE=native\nXENBALLOON_SELF=true\n"
                "XENBALLOON_SELF_INTERVAL=3600\n")
    p = dp.start("--root", guest, "-f", "--debug",
                 extra_env={"XENSTORED_PATH": xs.socket_path(DOMID)})
    try:
        dp.wait_for_output(p, "published", timeout=30)
        ours = balloon_target_bytes(guest)
        assert xs.get(f"{HOME}/data/xenballoon/mode") == "self"
        with open(os.path.join(guest, SYSFS.lstrip("/"), "target"), "w") as f:
            f.write(f"{ours - 50 * MIB}\n")  # the kernel took dom0's (late) value
        xs.write(f"{HOME}/memory/target", str((ours - 50 * MIB) // 1024))
        dp.wait_for_output(p, "putting the balloon target back", timeout=30)
        dp.wait_until(lambda: balloon_target_bytes(guest) == ours, timeout=30,
                      what="the daemon's own target back, long before its next tick (1 h)")
    finally:
        p.terminate()
        p.wait(timeout=30)
    err = dp.rest_of_stderr(p)
    assert "ticking early" not in err, err
    # stopped cleanly: dom0's follower must no longer copy a selftarget nobody keeps
    assert xs.get(f"{HOME}/data/xenballoon/mode") == "directed"


class Records(logging.Handler):
    """Every record the ballooner logs, kept to be counted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self, text: str) -> list[str]:
        return [r.getMessage() for r in self.records
                if r.levelno >= logging.WARNING and text in r.getMessage()]


def logged_ballooner(root: str, name: str, backend: str = "native") -> tuple:
    config, _ = parse_config(f"XENBALLOON_XENSTORE={backend}\n", "test.conf")
    log = logging.getLogger(name)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    records = Records()
    log.addHandler(records)
    b = build(config, Root(root), log)
    assert b is not None
    return b, records


def test_a_bad_override_is_logged_once_per_episode(guest, xs, request):
    b, records = logged_ballooner(guest, request.node.name)
    for value in ("garbage", "-1", "1e9", "garbage"):  # one episode, four bad values
        xs.write(f"{HOME}/memory/interval", value)
        b.tick()
        b.tick()
    assert len(records.warnings("memory/interval")) == 1
    xs.write(f"{HOME}/memory/interval", "5")
    assert b.tick() == 5
    xs.write(f"{HOME}/memory/interval", "garbage")  # the same bad value, a new episode
    b.tick()
    assert len(records.warnings("memory/interval")) == 2
    xs.rm(f"{HOME}/memory/interval")
    b.tick()
    xs.write(f"{HOME}/memory/interval", "0")
    b.tick()
    assert len(records.warnings("memory/interval")) == 3


def test_log_once_memory_stays_bounded(guest, xs, request):
    b, records = logged_ballooner(guest, request.node.name)
    for n in range(200):
        for key in ("target", "interval", "selfballoon", "downhysteresis", "uphysteresis"):
            xs.write(f"{HOME}/memory/{key}", f"bad{n}")
        b.tick()
    assert len(records.warnings("ignoring memory/")) == 5
    assert len(b.once.said) <= 5 + 2  # one per override key, at most two more conditions


def test_a_tick_after_xl_mem_set_never_writes_the_old_target(guest, xs, backend):
    """Issue 10 item 6: every balloon write, seen through a FIFO in place of the
    sysfs target: once dom0 set 262144 kB, no write may hold the guest above it."""
    xs.write(f"{HOME}/memory/target", "300000")
    b = ballooner(guest, backend=backend)
    b.tick()
    recorder = WriteRecorder(os.path.join(guest, SYSFS, "target"))
    xs.write(f"{HOME}/memory/target", "262144")  # xl mem-set
    b.tick()
    writes = [int(line) for line in recorder.stop()]
    assert writes and all(w <= 262144 * 1024 for w in writes), writes


def test_dom0_floor_and_ceiling_from_xenstore(guest, xs, backend):
    xs.write(f"{HOME}/memory/target", "100000")
    xs.write(f"{HOME}/memory/minmem", "250")
    b = ballooner(guest, backend=backend)
    b.tick()
    assert balloon_target_bytes(guest) == 250 * MIB  # above the 136 MB minimum: dom0's floor
    xs.write(f"{HOME}/memory/target", "600000")
    xs.write(f"{HOME}/memory/softmaxmem", "300")
    b.tick()
    assert balloon_target_bytes(guest) == 300 * MIB


def test_dom0_minpolicy_from_xenstore(guest, xs, backend):
    """Issue 24: dom0's memory/minpolicy switches the floor's rule.  The guest
    holds 393216 kB (its high-water mark), MemTotal 380000, Mapped 40208,
    min_free_kbytes 2465 (sqrt(380000 * 16)): its need is 13216 + 40208 +
    2 * 2465 = 58354 kB (57 MB), under the hard bound 48 + 384 / 32 = 60 MB;
    the 2008 floor is 136 MB."""
    xs.write(f"{HOME}/memory/target", "100000")
    b = ballooner(guest, backend=backend)
    b.tick()
    assert balloon_target_bytes(guest) == 136 * MIB  # the config's rule: 2008
    xs.write(f"{HOME}/memory/minpolicy", "adaptive")
    b.tick()
    assert balloon_target_bytes(guest) == 100000 * 1024  # dom0's target, over 60 MB
    xs.write(f"{HOME}/memory/target", "50000")
    b.tick()
    assert balloon_target_bytes(guest) == 60 * MIB  # the hard bound
    xs.write(f"{HOME}/memory/minpolicy", "adaptive\x1b[2J")  # garbage: the config's rule again
    b.tick()
    assert balloon_target_bytes(guest) == 136 * MIB
    assert any(k.endswith("minpolicy") for k in b.once.said)  # logged, once


class Proxy:
    """A unix socket between the daemon's client and the simulated xenstored,
    passing everything on, that can slip frames of its own to the client."""

    def __init__(self, upstream: str, path: str) -> None:
        self.upstream, self.path = upstream, path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.client: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not select.select([self.listener], [], [], 0.1)[0]:  # until a client, or close()
            if self._stop.is_set():
                return
        client, _ = self.listener.accept()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.connect(self.upstream)
        self.client = client
        pair = {client: server, server: client}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(pair), [], [], 0.1)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                pair[sock].sendall(data)

    def inject(self, frame: bytes) -> None:
        assert self.client is not None
        self.client.sendall(frame)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "timed out waiting for the proxy thread to stop"
        self.listener.close()


GARBAGE_EVENTS = [
    b"\xff\xfe\x1b[31m\x00xenballoond\x00",             # not UTF-8, an escape sequence
    b"memory/target",                                   # no token
    b"/local/domain/5/../../memory/selftarget\x00xenballoond\x00",
    b"\x00\x00",                                        # empty path and token
    b"memory/" + b"x" * 3000 + b"\x00xenballoond\x00",  # huge
    b"memory/target\x00someone-else\x00",               # another token
    b"-1\x00xenballoond\x00extra\x00",
]


def test_watch_events_with_garbage_paths_are_read_as_changes(guest, xs, tmp_path, monkeypatch):
    proxy = Proxy(xs.socket_path(DOMID), str(tmp_path / "xs-proxy"))
    monkeypatch.setenv("XENSTORED_PATH", proxy.path)
    try:
        xs.write(f"{HOME}/memory/target", "300000")
        b = ballooner(guest, backend="native")
        b.link.watch_wanted = True
        b.tick()
        b.tick()
        for payload in GARBAGE_EVENTS:
            proxy.inject(wire.encode(wire.Op.WATCH_EVENT, payload, 0, 0))
        assert wait_for_watch(b)  # garbage from xenstored: read memory/ again, to be safe
        served = xs.requests_served
        b.tick()
        assert xs.requests_served > served
        assert balloon_target_bytes(guest) == 300000 * 1024
        xs.write(f"{HOME}/memory/target", "260000")  # and the watch still works
        assert wait_for_watch(b)
        b.tick()
        assert balloon_target_bytes(guest) == 260000 * 1024
    finally:
        proxy.close()


def test_a_refused_watch_falls_back_to_reading_every_tick(guest, xs, request):
    """xenstored refuses the watch (here: the guest's quota of watches is
    used up): said once, and memory/ is read every tick as before."""
    b, records = logged_ballooner(guest, request.node.name)
    for n in range(128):  # the simulated xenstored's GUEST_WATCH_MAX
        b.xenstore.watch(f"data/w{n}", "other")
    b.link.watch_wanted = True
    xs.write(f"{HOME}/memory/target", "300000")
    b.tick()
    b.tick()
    assert b.link.fileno() is None
    xs.write(f"{HOME}/memory/target", "270000")
    b.tick()  # read at the tick: no watch to wait for
    assert balloon_target_bytes(guest) == 270000 * 1024
    assert len(records.warnings("cannot watch memory/")) == 1
