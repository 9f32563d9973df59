"""XENBALLOON_XENSTORE=auto (xenstore/choose.py): native where the machine, under the root, has
xenstored's socket or a guest's xenbus device; else cli."""
from __future__ import annotations

import os
import socket

import pytest

from xenballoond.guest.settings import Config, parse_config
from xenballoond.paths import Root
from xenballoond.xenstore.choose import backend_for, open_xenstore


def make(root, os_path: str, kind: str = "file") -> None:
    path = Root(str(root)).path(os_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
    else:
        open(path, "w").close()


def test_the_guest_daemons_default_is_auto():
    assert Config().xenstore_backend == "auto"
    assert parse_config("", "x.conf")[0].xenstore_backend == "auto"


def test_auto_is_cli_on_a_machine_without_xenstore(tmp_path):
    assert backend_for("auto", Root(str(tmp_path))) == "cli"
    assert open_xenstore("auto", Root(str(tmp_path))).backend == "cli"


@pytest.mark.parametrize("os_path,kind", [("/dev/xen/xenbus", "file"), ("/proc/xen/xenbus", "file"),
                                          ("/var/run/xenstored/socket", "socket")])
def test_auto_is_native_where_xenbus_or_xenstoreds_socket_is(tmp_path, os_path, kind):
    make(tmp_path, os_path, kind)
    root = Root(str(tmp_path))
    assert backend_for("auto", root) == "native"
    xs = open_xenstore("auto", root)
    assert xs.backend == "native"
    assert xs.processes_spawned == 0 and xs.requests == 0  # nothing run or sent yet


def test_a_named_backend_is_taken_as_it_is(tmp_path):
    make(tmp_path, "/dev/xen/xenbus")
    root = Root(str(tmp_path))
    assert backend_for("cli", root) == "cli"
    assert open_xenstore("cli", root).backend == "cli"
    assert backend_for("native", Root(str(tmp_path / "empty"))) == "native"


def test_native_chosen_by_auto_connects_where_xenstored_path_says(tmp_path):
    """auto looks at the machine; $XENSTORED_PATH still names where native connects."""
    make(tmp_path, "/dev/xen/xenbus")
    xs = open_xenstore("auto", Root(str(tmp_path)), env={"XENSTORED_PATH": "/elsewhere/socket"})
    assert xs.candidates() == ["/elsewhere/socket"]  # type: ignore[attr-defined]
