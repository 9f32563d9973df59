"""systemd's side of the notify protocol, for tests: an AF_UNIX datagram
socket the test binds and hands the real daemon as $NOTIFY_SOCKET."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time



class NotifySocket:
    """Bound at a short path (sun_path holds 108 bytes: a pytest tmp_path may
    not fit), or with ``abstract`` a name in the abstract namespace."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dir = ""
        if abstract:
            name = f"xenballoond-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            self.dir = tempfile.mkdtemp(prefix="xbn-")
            self.env_value = os.path.join(self.dir, "notify")
            self.sock.bind(self.env_value)
        self.messages: list[dict[str, str]] = []

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        e = {"NOTIFY_SOCKET": self.env_value}
        if watchdog_usec is not None:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        return e

    def receive(self, timeout: float) -> dict[str, str] | None:
        """The next datagram as KEY -> value, or None when none came in ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(message)
        return message

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30,
                 what: str = "") -> dict[str, str]:
        """The first message (from now) with ``key`` (= ``value``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            message = self.receive(left) if left > 0 else None
            if message is None:
                raise AssertionError(f"timed out waiting for {what or key} on the notify socket;"
                                     f" got {self.messages!r}")
            if key in message and (value is None or message[key] == value):
                return message

    def count(self, key: str, value: str, want: int, timeout: float, what: str) -> int:
        """Receive until ``want`` messages with key=value came; fail at the deadline."""
        got = 0
        deadline = time.monotonic() + timeout
        while got < want:
            left = deadline - time.monotonic()
            message = self.receive(left) if left > 0 else None
            if message is None:
                raise AssertionError(f"timed out waiting for {what}: {got} of {want} "
                                     f"{key}={value} came")
            got += message.get(key) == value
        return got

    def close(self) -> None:
        self.sock.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
