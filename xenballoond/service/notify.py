"""systemd's notify protocol (sd_notify(3)), for a unit of Type=notify.

One datagram of ``KEY=value`` lines to the AF_UNIX socket in $NOTIFY_SOCKET
(a path, or with a leading "@" a name in the abstract namespace):
``READY=1`` once the daemon works, ``WATCHDOG=1`` at least every
$WATCHDOG_USEC / 2 while the main loop runs, ``STATUS=`` for ``systemctl
status``.  Without $NOTIFY_SOCKET (SysV, ``-f`` in a terminal) there is no
Notifier and nothing is sent.

A few lines of ours rather than a library: python-systemd is a C extension
(libsystemd) the guest package would have to depend on, sdnotify imports
socket.py; this uses the C module under it (_socket), loaded only when
$NOTIFY_SOCKET is set, as logsetup.py's syslog handler does: socket.py's
enums and wrappers cost every guest 0.25 MiB (bench/bench_daemon.py).
"""
from __future__ import annotations

import logging
import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import MutableMapping

    from _socket import socket

# What systemd puts in the environment of a Type=notify service's main process.
ENV_SOCKET, ENV_WATCHDOG_USEC, ENV_WATCHDOG_PID = "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"


def address(value: str) -> str:
    """$NOTIFY_SOCKET as sendto() takes it: "@name" is "\\0name"."""
    return "\0" + value[1:] if value.startswith("@") else value


def watchdog_usec(environ: MutableMapping[str, str], pid: int) -> int:
    """$WATCHDOG_USEC when it is for this process (sd_watchdog_enabled(3)), else 0."""
    owner = environ.get(ENV_WATCHDOG_PID, "")
    if owner and owner != str(pid):
        return 0
    try:
        usec = int(environ.get(ENV_WATCHDOG_USEC, "0"))
    except ValueError:
        return 0
    return max(usec, 0)


class Notifier:
    """Sends to one notify socket; a failed send is logged once, then ignored
    (as sd_notify: the service goes on, systemd is what misses it)."""

    def __init__(self, socket_path: str, watchdog_usec: int, log: logging.Logger) -> None:
        self.address = address(socket_path)
        # Pings at least every half of systemd's timeout, as sd_watchdog_enabled(3) advises.
        self.ping_every_s = watchdog_usec / 2e6 if watchdog_usec else 0.0
        self._log = log
        self._sock: socket | None = None
        self._status = ""
        self._pinged_s = float("-inf")  # monotonic
        self._failed = False

    def send(self, *lines: str) -> None:
        data = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                import _socket
                self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
                # never block the loop on a reader that does not read: a
                # message lost is what systemd missed, a stalled loop is worse
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                self._log.warning("cannot notify systemd at %s: %s", self.address, exc)
            return
        if self._failed:
            self._failed = False
            self._log.info("notifying systemd at %s again", self.address)

    def ready(self, status: str) -> None:
        self._status = status
        self._pinged_s = time.monotonic()
        self.send("READY=1", f"STATUS={status}", *(["WATCHDOG=1"] if self.ping_every_s else []))

    def status(self, text: str) -> None:
        """STATUS=text, when it differs from the last one sent."""
        if text != self._status:
            self._status = text
            self.send(f"STATUS={text}")

    def alive(self) -> None:
        """WATCHDOG=1, unless one went less than half a ping period ago."""
        if not self.ping_every_s:
            return
        now_s = time.monotonic()
        if now_s - self._pinged_s >= self.ping_every_s / 2:
            self._pinged_s = now_s
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def from_environ(log: logging.Logger, environ: MutableMapping[str, str] | None = None
                 ) -> Notifier | None:
    """The Notifier $NOTIFY_SOCKET asks for, or None.  Takes the variables out
    of the environment (sd_notify's unset_environment), so that the programs
    the daemon runs (xenstore-*, xl) do not see them."""
    env = os.environ if environ is None else environ
    path = env.pop(ENV_SOCKET, "")
    usec = watchdog_usec(env, os.getpid())
    env.pop(ENV_WATCHDOG_USEC, None)
    env.pop(ENV_WATCHDOG_PID, None)
    if not path or not (path.startswith("/") or path.startswith("@")):
        return None
    return Notifier(path, usec, log)
