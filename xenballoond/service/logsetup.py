"""Logging: stderr in the foreground, syslog (daemon facility) when detached.

Handlers are created after daemonizing: DaemonContext closes every descriptor
it is not told to keep, a syslog socket opened before included.  The syslog
handler is a few lines over a datagram socket rather than
logging.handlers.SysLogHandler, whose module costs the daemon 0.2 MiB of RSS
(bench/bench_daemon.py); the socket is the C module's (_socket, the one
socket.py wraps), made when the first message is sent: socket.py's enums and
wrappers cost every guest 0.25 MiB more, for one connect() and send().
"""
from __future__ import annotations

import logging
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from _socket import socket

NAME = "xenballoond"
LOG_DAEMON = 3  # syslog facility


class SyslogHandler(logging.Handler):
    """RFC 3164 lines to the local syslog socket, reconnecting after a
    syslog restart; drops the message when there is no syslog."""

    def __init__(self, address: str = "/dev/log", ident: str = NAME) -> None:
        super().__init__()
        self.address = address
        self.ident = ident
        self.sock: socket | None = None

    def _connect(self) -> socket:
        import _socket
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock

    def emit(self, record: logging.LogRecord) -> None:
        severity = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                    logging.ERROR: 3, logging.CRITICAL: 2}.get(record.levelno, 5)
        line = f"<{LOG_DAEMON * 8 + severity}>{self.ident}[{os.getpid()}]: {self.format(record)}"
        data = line.encode("utf-8", "replace")[:4096]
        for _ in range(2):
            try:
                if self.sock is None:
                    self.sock = self._connect()
                self.sock.send(data)
                return
            except OSError:
                if self.sock is not None:
                    self.sock.close()
                self.sock = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        super().close()


def _configure(handler: logging.Handler, fmt: str, debug: bool, name: str) -> logging.Logger:
    log = logging.getLogger(name)
    for old in log.handlers[:]:
        log.removeHandler(old)
    handler.setFormatter(logging.Formatter(fmt))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    return log


def to_stderr(debug: bool, name: str = NAME) -> logging.Logger:
    """The logger ``name`` (the program's), to stderr."""
    return _configure(logging.StreamHandler(sys.stderr), f"{name}: %(levelname)s: %(message)s",
                      debug, name)


def to_syslog(debug: bool, address: str = "/dev/log", name: str = NAME) -> logging.Logger:
    """The logger ``name``, to syslog with ``name`` as the ident."""
    return _configure(SyslogHandler(address, name), "%(message)s", debug, name)
