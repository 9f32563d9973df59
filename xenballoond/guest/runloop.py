"""The daemon's main loop: tick, then wait for the interval or a signal
(service.LoopControl: SIGTERM/SIGINT stop it, SIGHUP reloads the config,
acted on between ticks)."""
from __future__ import annotations

import logging
import select
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable

from ..service import LoopControl
from . import resident
from .pressure import SAMPLE_S, PressureWatch
from .tick import Ballooner

if TYPE_CHECKING:
    from .policy import Wake


def wait(control: LoopControl, seconds: float, pressure: PressureWatch | None = None,
         wake: Wake | None = None) -> bool:
    """Wait ``seconds``, less if a signal comes, or memory gets tight
    (``pressure``: the PSI trigger, or a sample against ``wake``).  Return
    True if woken by memory pressure."""
    poller = select.poll()
    poller.register(control.wake_fd(), select.POLLIN)
    psi_fd = pressure.register(poller) if pressure is not None else None
    sampling = pressure is not None and wake is not None
    deadline = time.monotonic() + seconds
    while True:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            return False
        slice_s = min(left_s, SAMPLE_S) if sampling else left_s
        for fd, events in poller.poll(slice_s * 1000):
            if fd == control.wake_fd():
                control.drain()
                return False
            if fd == psi_fd and pressure is not None:
                if events & select.POLLPRI:
                    return True
                poller.unregister(fd)  # POLLERR: this kernel took the trigger back
                pressure.close()
                psi_fd = None
        if sampling and pressure is not None and wake is not None and pressure.tight(wake):
            return True


def run(ballooner: Ballooner, control: LoopControl, reload: Callable[[], None],
        log: logging.Logger, pressure: PressureWatch | None = None) -> None:
    log.info("started: %s balloon, self-ballooning %s, xenstore %s",
             ballooner.balloon.name, "on" if ballooner.config.self_ballooning else "off",
             "on" if ballooner.xenstore is not None else "off")
    resident.keep(log)
    if pressure is not None:
        pressure.open()
        if pressure.psi_error:
            log.info("no memory pressure trigger (%s): sampling /proc/meminfo every %g s "
                     "between ticks", pressure.psi_error, SAMPLE_S)
    woken = False
    while not control.stop:
        try:
            interval_s = ballooner.tick(pressure=woken)
        except Exception:  # one bad tick must not end ballooning
            log.exception("tick failed")
            interval_s = ballooner.config.interval_s
        woken = False
        if not control.stop and not control.reload:
            woken = wait(control, interval_s, pressure, ballooner.wake)
            if woken:
                log.debug("memory pressure: ticking early")
        if control.reload:
            control.reload = False
            reload()
    if pressure is not None:
        pressure.close()
    log.info("stopping")
