"""notify.py's reading of systemd's environment (sd_notify(3),
sd_watchdog_enabled(3)); the daemons' messages are tested on a real socket in
test_daemon.py and test_balancer.py."""
from __future__ import annotations

import logging
import os

from xenballoond.service import notify

LOG = logging.getLogger("test")


def test_abstract_socket_names_start_with_a_nul():
    assert notify.address("@foo") == "\0foo"
    assert notify.address("/run/systemd/notify") == "/run/systemd/notify"


def test_the_variables_are_taken_out_for_the_programs_the_daemon_runs():
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000",
           "WATCHDOG_PID": str(os.getpid()), "PATH": "/bin"}
    n = notify.from_environ(LOG, env)
    assert n is not None and n.ping_every_s == 15.0
    assert env == {"PATH": "/bin"}


def test_no_socket_no_notifier():
    env = {"WATCHDOG_USEC": "30000000"}
    assert notify.from_environ(LOG, env) is None
    assert env == {}
    assert notify.from_environ(LOG, {"NOTIFY_SOCKET": "relative"}) is None


def test_the_watchdog_is_ours_only_when_systemd_named_us():
    assert notify.watchdog_usec({"WATCHDOG_USEC": "1000"}, 42) == 1000
    assert notify.watchdog_usec({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "42"}, 42) == 1000
    assert notify.watchdog_usec({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "7"}, 42) == 0
    assert notify.watchdog_usec({"WATCHDOG_USEC": "x"}, 42) == 0
    assert notify.watchdog_usec({}, 42) == 0
