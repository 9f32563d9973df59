"""The real daemon as a process, against a --root tree."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

from tests import daemonproc as dp
from tests.notifysock import NotifySocket
from tests.guestroot import balloon_target_bytes, make_guest, set_current_kb, set_meminfo, write
from xenballoond.guest.policy import MIB

# RESERVE_PCT=0: the 2008 self target (Committed_AS exactly), so the figures
# below are the original's, worked by hand
SELF_CONF = "XENBALLOON_SELF=true\nXENBALLOON_SELF_INTERVAL=1\nXENBALLOON_SELF_RESERVE_PCT=0\n"


def pidfile(root: str) -> str:
    return os.path.join(root, "var/run/xenballoond.pid")


def read_pid(root: str) -> int | None:
    try:
        return int(open(pidfile(root)).read())
    except (OSError, ValueError):
        return None


@pytest.fixture
def guest(tmp_path):
    root = str(tmp_path / "guest")
    # pvops: MemTotal 380000 kB, reservation 393216 kB (384 MiB), Committed_AS 200000 kB
    make_guest(root, memtotal_kb=380000, committed_kb=200000, current_kb=393216, conf=SELF_CONF)
    yield root
    pid = read_pid(root)
    if pid and dp.alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_once_self_target_on_sysfs(guest):
    r = dp.run("--root", guest, "--once")
    assert r.returncode == 0, r.stderr
    # worked by hand: reserved = 393216 - 380000 = 13216 kB;
    # self target = (200000 + 13216) * 1024 = 218333184 B; min 136 MB (maxmem 384 MiB);
    # cur = 393216 kB = 402653184 B; down hysteresis 10:
    # 402653184 - (402653184 - 218333184) / 10 = 384221184
    assert balloon_target_bytes(guest) == 384221184
    assert open(os.path.join(guest, "var/run/xenballoon-maxmem")).read().strip() == "393216"


def test_once_self_target_with_the_default_reserve(guest):
    write(os.path.join(guest, "etc/sysconfig/xenballoon.conf"), "XENBALLOON_SELF=true\n")
    assert dp.run("--root", guest, "--once").returncode == 0
    # headroom = max(10% of the 393216 kB booted with = 39321 kB, what it needs to run:
    # Mapped 40208 + 2 * min_free_kbytes (no /proc/sys/vm here: sqrt(380000 * 16) = 2465)
    # = 45138 kB) = 45138 kB; target = (200000 + 13216 + 45138) kB = 264554496 B;
    # cur 402653184 B; down 10: 402653184 - 138098688 / 10 = 388843316
    assert balloon_target_bytes(guest) == 388843316


def test_self_reserve_does_not_ratchet_up_with_the_high_water_mark(guest):
    """A temporary `xl mem-set` up to maxmem raises the high-water mark for
    good; the reserve stays 10% of the memory the guest booted with."""
    write(os.path.join(guest, "etc/sysconfig/xenballoon.conf"), "XENBALLOON_SELF=true\n")
    assert dp.run("--root", guest, "--once").returncode == 0
    assert open(os.path.join(guest, "var/run/xenballoon-maxmem.boot")).read() == "393216\n"
    set_current_kb(guest, 786432)  # xl mem-set up to maxmem ...
    set_meminfo(guest, memtotal_kb=786432 - 13216, committed_kb=200000)
    assert dp.run("--root", guest, "--once").returncode == 0
    set_current_kb(guest, 393216)  # ... and back
    set_meminfo(guest, memtotal_kb=380000, committed_kb=200000)
    r = dp.run("--root", guest, "--once")
    assert r.returncode == 0
    assert open(os.path.join(guest, "var/run/xenballoon-maxmem")).read() == "786432\n"
    # reserve 10% of 393216 kB = 39321 kB, not 78643 kB of the mark (which would beat the
    # 45138 kB the guest needs to run): the same target as
    # test_once_self_target_with_the_default_reserve (the minimum, 200 MB, is below it)
    assert balloon_target_bytes(guest) == 388843316
    assert ("policy: self-ballooning (reserve 10% of 393216 kB booted with = 39321 kB), "
            "minimum 200 MB (of the high-water mark 786432 kB), hysteresis down 10 up 1, "
            "every 1 s, xenstore off, balloon sysfs") in r.stderr


def test_once_self_target_on_legacy_proc_balloon(tmp_path):
    root = str(tmp_path)
    make_guest(root, memtotal_kb=1000000, committed_kb=300000, balloon="proc", conf=SELF_CONF)
    write(os.path.join(root, "var/run/xenballoon-maxmem"), "1048576\n")
    assert dp.run("--root", root, "--once").returncode == 0
    # as balloon_to_target 1 of the original: 1024000000 - (1024000000 - 307200000) / 10
    assert balloon_target_bytes(root, "proc") == 952320000


def test_shrinking_converges_without_drifting_below_committed(guest):
    """Regression: comparing with MemTotal on pvops shrank the guest every tick."""
    write(os.path.join(guest, "etc/sysconfig/xenballoon.conf"),
          SELF_CONF + "XENBALLOON_AUTO_DOWNHYSTERESIS=2\n")
    for _ in range(30):
        assert dp.run("--root", guest, "--once").returncode == 0
        set_current_kb(guest, balloon_target_bytes(guest) // 1024)
        # the kernel keeps its reservation out of MemTotal: 13216 kB
        cur = int(open(os.path.join(guest, "sys/devices/system/xen_memory/xen_memory0/"
                                           "info/current_kb")).read())
        from tests.guestroot import set_meminfo
        set_meminfo(guest, memtotal_kb=cur - 13216, committed_kb=200000)
    final_kb = balloon_target_bytes(guest) // 1024
    assert final_kb - 13216 >= 200000  # MemTotal never below Committed_AS
    assert final_kb <= 200000 + 13216 + 1


@pytest.mark.parametrize("blocker", ["var/run/xb", "var/run/xb/maxmem"])
def test_unwritable_maxmem_file_does_not_stop_ballooning(guest, blocker):
    """A file where its directory should be, or a directory where it should
    be: warned about by --check-config, logged once, and ballooning goes on
    with the current size as the high-water mark."""
    write(os.path.join(guest, "etc/sysconfig/xenballoon.conf"),
          SELF_CONF + "XENBALLOON_MAXMEMFILE=/var/run/xb/maxmem\n")
    if blocker.endswith("maxmem"):
        os.makedirs(os.path.join(guest, blocker))
    else:
        write(os.path.join(guest, blocker), "not a directory\n")
    r = dp.run("--root", guest, "--check-config")
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stderr
    assert "XENBALLOON_MAXMEMFILE" in r.stderr and "held in memory" in r.stderr

    r = dp.run("--root", guest, "--once")
    assert r.returncode == 0, r.stderr
    assert balloon_target_bytes(guest) == 384221184  # as with the mark at 393216 kB
    assert "cannot keep the memory high-water mark" in r.stderr

    p = dp.start("--root", guest, "-f", "--debug")
    seen = "".join(dp.wait_for_output(p, "target 375216 kB") for _ in range(3))  # 3 ticks
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 0
    seen += dp.rest_of_stderr(p)
    assert seen.count("cannot keep the memory high-water mark") == 1, seen


def test_no_balloon_driver_says_so_and_exits_0(tmp_path):
    make_guest(str(tmp_path), memtotal_kb=100000, committed_kb=1, balloon="none")
    r = dp.run("--root", str(tmp_path))
    assert r.returncode == 0
    assert "no balloon driver" in r.stderr
    assert not os.path.exists(pidfile(str(tmp_path)))


def test_bad_config_exits_2_naming_file_line_key_value(guest):
    conf = os.path.join(guest, "etc/sysconfig/xenballoon.conf")
    write(conf, "# ok\nXENBALLOON_SELF=true\nXENBALLOON_SELF_INTERVAL=0\n")
    r = dp.run("--root", guest)
    assert r.returncode == 2
    assert f"{conf}:3" in r.stderr and "XENBALLOON_SELF_INTERVAL" in r.stderr and '"0"' in r.stderr
    assert not os.path.exists(pidfile(guest))
    r = dp.run("--root", guest, "--check-config")
    assert r.returncode == 2 and "XENBALLOON_SELF_INTERVAL" in r.stderr


def test_check_config_ok(guest):
    r = dp.run("--root", guest, "--check-config")
    assert r.returncode == 0 and r.stdout.startswith("OK")


def test_debian_config_location(tmp_path):
    root = str(tmp_path)
    make_guest(root, memtotal_kb=380000, committed_kb=200000, current_kb=393216)
    write(os.path.join(root, "etc/default/xenballoon.conf"), "XENBALLOON_MINMEM=300\n"
          "XENBALLOON_SELF=true\nXENBALLOON_AUTO_DOWNHYSTERESIS=0\nXENBALLOON_SELF_RESERVE_PCT=0\n")
    assert dp.run("--root", root, "--once").returncode == 0
    assert balloon_target_bytes(root) == 300 * MIB


def test_detached_daemon_lifecycle(guest):
    r = dp.run("--root", guest)
    assert r.returncode == 0, r.stderr
    pid = read_pid(guest)
    assert pid and dp.alive(pid)
    assert stat.S_IMODE(os.stat(pidfile(guest)).st_mode) == 0o644  # umask 022
    dp.wait_until(lambda: balloon_target_bytes(guest) == 384221184, what="first target")

    # a second start (a run-level flip) starts nothing
    r2 = dp.run("--root", guest)
    assert r2.returncode == 1 and "already running" in r2.stderr
    assert read_pid(guest) == pid

    # SIGHUP with a good config takes effect: MINMEM 370 MB is above the self target
    # (a bad one: test_sighup_with_a_bad_config_is_refused_and_the_old_one_stays)
    conf = os.path.join(guest, "etc/sysconfig/xenballoon.conf")
    write(conf, SELF_CONF + "XENBALLOON_MINMEM=370\nXENBALLOON_AUTO_DOWNHYSTERESIS=0\n")
    os.kill(pid, signal.SIGHUP)
    dp.wait_until(lambda: balloon_target_bytes(guest) == 370 * MIB, what="reloaded target")
    assert dp.alive(pid)

    os.kill(pid, signal.SIGTERM)
    dp.wait_until(lambda: not dp.alive(pid), what="daemon exit")
    assert not os.path.exists(pidfile(guest))


def test_sighup_with_a_bad_config_is_refused_and_the_old_one_stays(guest):
    p = dp.start("--root", guest, "-f")
    try:
        dp.wait_for_output(p, "policy: self-ballooning (reserve 0%")
        conf = os.path.join(guest, "etc/sysconfig/xenballoon.conf")
        write(conf, "XENBALLOON_SELF=maybe\n")
        p.send_signal(signal.SIGHUP)
        seen = dp.wait_for_output(p, "reload refused")
        assert f'{conf}:1: XENBALLOON_SELF="maybe"' in seen, seen
        # the running config still decides: self-ballooning, reserve 0, down hysteresis 10;
        # cur 300000 kB = 307200000 B, target (286784 + 13216 reserved... ) worked by hand:
        # reserved = 300000 - 286784 = 13216 kB, self target (200000 + 13216) kB = 218333184 B,
        # 307200000 - (307200000 - 218333184) / 10 = 298313319
        set_meminfo(guest, memtotal_kb=286784, committed_kb=200000)
        set_current_kb(guest, 300000)
        dp.wait_until(lambda: balloon_target_bytes(guest) == 298313319, what="the old config")
        assert p.poll() is None
        # a good one after it is taken, and its policy logged
        write(conf, SELF_CONF + "XENBALLOON_MINMEM=370\nXENBALLOON_AUTO_DOWNHYSTERESIS=0\n")
        p.send_signal(signal.SIGHUP)
        seen = dp.wait_for_output(p, "minimum XENBALLOON_MINMEM 370 MB, hysteresis down 0 up 1")
        assert "reloaded " + conf in seen
        dp.wait_until(lambda: balloon_target_bytes(guest) == 370 * MIB, what="the new config")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def test_stale_pid_file_is_broken(guest):
    dead = dp.start("--version")
    dead.wait()
    write(pidfile(guest), f"{dead.pid}\n")
    r = dp.run("--root", guest)
    assert r.returncode == 0, r.stderr
    pid = read_pid(guest)
    assert pid != dead.pid and dp.alive(pid)
    os.kill(pid, signal.SIGTERM)
    dp.wait_until(lambda: not dp.alive(pid), what="daemon exit")


def test_pid_file_naming_another_program_is_stale(guest):
    write(pidfile(guest), f"{os.getpid()}\n")  # pytest is alive but is not xenballoond
    r = dp.run("--root", guest)
    assert r.returncode == 0, r.stderr
    pid = read_pid(guest)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGTERM)
    dp.wait_until(lambda: not dp.alive(pid), what="daemon exit")


def test_a_live_process_named_like_us_in_the_pid_file_does_not_stop_a_start(guest):
    """After a reboot the PID may be anyone's, even a `tail -f xenballoond.log`:
    only the lock says a daemon runs."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                              "/var/log/xenballoond.log"])
    try:
        dp.wait_until(lambda: b"xenballoond" in open(f"/proc/{other.pid}/cmdline", "rb").read(),
                      what="the other process's exec")
        write(pidfile(guest), f"{other.pid}\n")
        r = dp.run("--root", guest)
        assert r.returncode == 0, r.stderr
        pid = read_pid(guest)
        assert pid != other.pid and dp.alive(pid) and other.poll() is None
        os.kill(pid, signal.SIGTERM)
        dp.wait_until(lambda: not dp.alive(pid), what="daemon exit")
    finally:
        other.kill()
        other.wait()


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"4194000\\n")  # no such PID here: a daemon in another PID namespace
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("mode", [[], ["-f"]])
def test_the_lock_held_by_another_process_means_running(guest, mode):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, pidfile(guest)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        r = dp.run("--root", guest, *mode)
        assert r.returncode == 1 and "already running (pid 4194000" in r.stderr, r.stderr
        assert open(pidfile(guest)).read() == "4194000\n"
    finally:
        holder.kill()
        holder.wait()
    r = dp.run("--root", guest)  # the kernel released the lock: the PID in the file is stale
    assert r.returncode == 0, r.stderr
    assert "stale PID file" in r.stderr
    pid = read_pid(guest)
    os.kill(pid, signal.SIGTERM)
    dp.wait_until(lambda: not dp.alive(pid), what="daemon exit")


def test_concurrent_starts_leave_one_daemon(guest):
    procs = [dp.start("--root", guest) for _ in range(8)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0] + [1] * 7, results
    pid = read_pid(guest)
    assert dp.pids_with_cmdline("xenballoond.guest", guest) == [pid]
    os.kill(pid, signal.SIGTERM)
    dp.wait_until(lambda: not dp.alive(pid), what="daemon exit")


def test_foreground_stops_on_sigint_and_logs_to_stderr(guest):
    p = dp.start("--root", guest, "-f", "--debug")
    dp.wait_until(lambda: balloon_target_bytes(guest) == 384221184, what="first target")
    assert read_pid(guest) == p.pid
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 0
    err = p.stderr.read()
    assert "target 375216 kB" in err and "stopping" in err
    assert not os.path.exists(pidfile(guest))


# --- under systemd: Type=notify and the watchdog (issue 22) ----------------------


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def test_under_systemd_ready_after_the_first_tick_with_the_policy_as_status(guest, notify_socket):
    p = dp.start("--root", guest, "-f", extra_env=notify_socket.env())
    try:
        ready = notify_socket.wait_for("READY", "1", what="READY=1 after the first tick")
        # the first tick is done when READY=1 comes: its target is written
        assert balloon_target_bytes(guest) == 384221184
        assert ready["STATUS"].startswith("policy: self-ballooning (reserve 0%")
        assert "every 1 s" in ready["STATUS"]
        assert "WATCHDOG" not in ready  # no WATCHDOG_USEC: systemd asked for no pings
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    notify_socket.wait_for("STOPPING", "1", what="STOPPING=1 at SIGTERM")
    assert "cannot notify" not in p.stderr.read()


def test_watchdog_pings_while_a_long_interval_waits(guest, notify_socket):
    """WATCHDOG_USEC 0.2 s, the interval a day: the loop pings while it waits
    (every 0.1 s at least); a loop that pinged once a tick would send one."""
    write(os.path.join(guest, "etc/sysconfig/xenballoon.conf"),
          SELF_CONF.replace("INTERVAL=1", "INTERVAL=86400"))
    p = dp.start("--root", guest, "-f", extra_env=notify_socket.env(watchdog_usec=200000))
    try:
        ready = notify_socket.wait_for("READY", "1", what="READY=1 after the first tick")
        assert ready.get("WATCHDOG") == "1" and "every 86400 s" in ready["STATUS"]
        notify_socket.count("WATCHDOG", "1", 20, timeout=60,
                            what="20 WATCHDOG=1 between two ticks a day apart")
        assert balloon_target_bytes(guest) == 384221184  # ... and only the one tick
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def test_watchdog_pings_are_for_the_process_systemd_named(guest, notify_socket):
    """WATCHDOG_PID of another process: the watchdog is not ours (sd_watchdog_enabled)."""
    env = {**notify_socket.env(watchdog_usec=200000), "WATCHDOG_PID": "1"}
    p = dp.start("--root", guest, "-f", extra_env=env)
    try:
        ready = notify_socket.wait_for("READY", "1", what="READY=1 after the first tick")
        assert "WATCHDOG" not in ready
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    notify_socket.wait_for("STOPPING", "1", what="STOPPING=1 at SIGTERM")
    assert not any("WATCHDOG" in m for m in notify_socket.messages)


def test_a_notify_socket_nobody_reads_does_not_stall_the_loop(guest, notify_socket):
    """Once the socket's queue is full a message is dropped, said once, and
    the loop goes on: SIGTERM still stops it."""
    p = dp.start("--root", guest, "-f", extra_env=notify_socket.env(watchdog_usec=20000))
    try:
        dp.wait_for_output(p, "cannot notify systemd", timeout=120)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    assert "cannot notify systemd" not in dp.rest_of_stderr(p)  # once


def test_foreground_refuses_when_daemon_runs(guest):
    assert dp.run("--root", guest).returncode == 0
    pid = read_pid(guest)
    r = dp.run("--root", guest, "-f")
    assert r.returncode == 1 and "already running" in r.stderr
    os.kill(pid, signal.SIGTERM)
    dp.wait_until(lambda: not dp.alive(pid), what="daemon exit")


def test_garbage_in_proc_files_does_not_kill_the_daemon(guest):
    p = dp.start("--root", guest, "-f")
    dp.wait_until(lambda: balloon_target_bytes(guest) == 384221184, what="first target")
    write(os.path.join(guest, "proc/meminfo"), "MemTotal: lots\n\x1b[2J garbage\n")
    write(os.path.join(guest, "sys/devices/system/xen_memory/xen_memory0/info/current_kb"), "-5\n")
    dp.wait_for_output(p, "cannot read the guest's memory state")
    before = balloon_target_bytes(guest)
    make_guest(guest, memtotal_kb=380000, committed_kb=200000, current_kb=384221184 // 1024)
    dp.wait_until(lambda: balloon_target_bytes(guest) != before, what="recovery")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0


@pytest.mark.parametrize("path,text", [("proc/xen/capabilities", "control_d\n"),
                                       ("sys/hypervisor/properties/features", "00000a01\n")])
def test_domain_0_is_not_ballooned(guest, path, text):
    write(os.path.join(guest, path), text)
    before = balloon_target_bytes(guest)
    r = dp.run("--root", guest)
    assert r.returncode == 0 and "domain 0" in r.stderr
    assert balloon_target_bytes(guest) == before and not os.path.exists(pidfile(guest))


def test_a_guests_features_are_not_dom0(guest):
    write(os.path.join(guest, "sys/hypervisor/properties/features"), "000021f1\n")  # bit 11 clear
    write(os.path.join(guest, "proc/xen/capabilities"), "\n")
    assert dp.run("--root", guest, "--once").returncode == 0
    assert balloon_target_bytes(guest) == 384221184


# --- the command line without argparse (issue 12, RSS) ------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xenballoond.service import runner  # noqa: E402
from xenballoond.guest.cli import build_parser  # noqa: E402

ARG_WORDS = st.sampled_from([
    "-f", "--foreground", "--once", "--check-config", "--debug", "-c", "--config", "-p",
    "--pidfile", "--root", "--config=/etc/x.conf", "--root=/srv/g", "--root=", "--pidfile=/p",
    "/etc/xenballoon.conf", "/srv/guest", "-", "--", "-x", "--fore", "--conf", "-fc", "-h",
    "--version", "--root=-x", "relative", "", "-c=/x", "--debug=1", "-f5"])


@given(st.lists(ARG_WORDS, max_size=6))
@settings(max_examples=400, deadline=None)
def test_plain_command_lines_parse_as_argparse_parses_them(argv):
    simple = runner.simple_daemon_args(argv)
    if simple is None:
        return  # argparse's own
    assert vars(simple) == vars(build_parser().parse_args(argv))


def test_init_script_and_unit_command_lines_need_no_argparse():
    for argv in (["-f"], ["-f", "--root", "/srv/g", "-c", "/c"], ["--check-config"],
                 ["--once", "--root=/r", "--debug"], [], ["-p", "/run/x.pid"]):
        assert runner.simple_daemon_args(argv) is not None, argv
    for argv in (["-h"], ["--version"], ["--fore"], ["-c"], ["-c", "-f"], ["x"]):
        assert runner.simple_daemon_args(argv) is None, argv


def test_the_watchdogs_sigabrt_says_where_the_loop_was(guest, notify_socket):
    """systemd's watchdog ends a stalled loop with SIGABRT (WatchdogSignal=): the journal (the
    foreground daemon's stderr) gets each thread's stack, faulthandler's, not a bare abort."""
    p = dp.start("--root", guest, "-f", extra_env=notify_socket.env())
    try:
        notify_socket.wait_for("READY", "1", what="READY=1 after the first tick")
        p.send_signal(signal.SIGABRT)
        assert p.wait(timeout=30) == -signal.SIGABRT
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
    err = p.stderr.read()
    assert "Fatal Python error: Aborted" in err
    assert "xenballoond/service/runner.py" in err  # the loop's frame, where it waited
