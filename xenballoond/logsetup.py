"""Logging: stderr in the foreground, syslog (daemon facility) when detached.

Handlers are created after daemonizing: DaemonContext closes every descriptor
it is not told to keep, a syslog socket opened before included.  The syslog
handler is a few lines over a datagram socket rather than
logging.handlers.SysLogHandler, whose module costs the daemon 0.2 MiB of RSS
(bench/bench_daemon.py).
"""
from __future__ import annotations

import logging
import os
import socket
import sys

NAME = "xenballoond"
LOG_DAEMON = 3  # syslog facility


class SyslogHandler(logging.Handler):
    """RFC 3164 lines to the local syslog socket, reconnecting after a
    syslog restart; drops the message when there is no syslog."""

    def __init__(self, address: str = "/dev/log") -> None:
        super().__init__()
        self.address = address
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock

    def emit(self, record: logging.LogRecord) -> None:
        severity = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                    logging.ERROR: 3, logging.CRITICAL: 2}.get(record.levelno, 5)
        line = f"<{LOG_DAEMON * 8 + severity}>{NAME}[{os.getpid()}]: {self.format(record)}"
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


def _configure(handler: logging.Handler, fmt: str, debug: bool) -> logging.Logger:
    log = logging.getLogger(NAME)
    for old in log.handlers[:]:
        log.removeHandler(old)
    handler.setFormatter(logging.Formatter(fmt))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    return log


def to_stderr(debug: bool) -> logging.Logger:
    return _configure(logging.StreamHandler(sys.stderr), f"{NAME}: %(levelname)s: %(message)s",
                      debug)


def to_syslog(debug: bool, address: str = "/dev/log") -> logging.Logger:
    return _configure(SyslogHandler(address), "%(message)s", debug)
