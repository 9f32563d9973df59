"""The balancer's main loop: a pass every XENBALLOON_BALANCER_INTERVAL seconds
(runner.serve: SIGTERM/SIGINT stop it, SIGHUP reloads the config, acted on
between passes)."""
from __future__ import annotations

import logging
import time
from typing import Callable

from ..service.runner import LoopControl, serve
from . import BALANCER_PROG
from .tick import Balancer

log = logging.getLogger(BALANCER_PROG)


def status_line(b: Balancer) -> str:
    """The policy in force, for systemd's STATUS=."""
    c = b.config
    return (f"{'paused' if b.paused() else 'balancing'}: every {c.interval_s} s, host reserve "
            f"{c.host_reserve_mb} MiB, pool {c.pool_mb} MiB, headroom {c.headroom_pct}%, "
            f"opted in by config: {' '.join(c.guests) or 'none'}")


def run(b: Balancer, control: LoopControl, reload: Callable[[], None]) -> None:
    c = b.config
    log.info("started: interval %d s, host reserve %d MiB, pool %d MiB, headroom %d%%, "
             "opted in by config: %s", c.interval_s, c.host_reserve_mb, c.pool_mb, c.headroom_pct,
             " ".join(c.guests) or "none (memory/balance = 1 only)")

    def wait(seconds: float) -> bool:
        control.wait(seconds)
        return control.stop

    serve(control, log, lambda: b.tick(time.monotonic(), wait), lambda: status_line(b),
          lambda: control.wait(b.config.interval_s), reload)
    log.info("stopping")
