"""Logging: stderr in the foreground, syslog (daemon facility) when detached.

Handlers are created after daemonizing: DaemonContext closes every descriptor
it is not told to keep, a syslog socket opened before included.
"""
from __future__ import annotations

import logging
import logging.handlers
import sys

NAME = "xenballoond"


def to_stderr(debug: bool) -> logging.Logger:
    log = logging.getLogger(NAME)
    log.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    return log


def to_syslog(debug: bool, address: str = "/dev/log") -> logging.Logger:
    log = logging.getLogger(NAME)
    log.handlers.clear()
    try:
        handler: logging.Handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter(f"{NAME}[%(process)d]: %(message)s"))
    except OSError:
        handler = logging.NullHandler()  # no syslog daemon: nothing to log to
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    return log
