"""The daemon's main loop: runner.serve ticks, and this module's wait()
ends a wait early for memory pressure or dom0's keys as well as for a signal
(runner.LoopControl: SIGTERM/SIGINT stop it, SIGHUP reloads the config,
acted on between ticks)."""
from __future__ import annotations

import logging
import select
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable

from ..service.runner import LoopControl, serve
from . import resident
from .pressure import SAMPLE_S, PressureWatch

if TYPE_CHECKING:
    from .link import Dom0Link
    from .policy import Wake
    from .tick import Ballooner


# Why wait() returned early.
PRESSURE = "pressure"  # memory got tight: tick now, as under pressure
WATCH = "watch"  # dom0 changed a key in memory/: tick now, to take it
TARGET = "target"  # self-ballooning, dom0 wrote memory/target: put ours back, no tick
# Watch-triggered ticks come at most this often, whatever dom0 writes.
WATCH_MIN_GAP_S = 0.05
# What keeps a self-ballooning guest through a save, said once at start.
SAVE_NOTE = ("self-ballooning: xl save, xl restore, xl migrate and a host's shutdown "
             "(xendomains) rebuild this guest at its memory/target + 1 MiB; dom0's "
             "xenballoon-balancer copies this daemon's target there (XENBALLOON_BALANCER_FOLLOW, "
             "on by default). Without it, a guest grown above memory/target is lost: run "
             "'xenballoon-balancer prepare-save GUEST' in dom0 before each")


def wait(control: LoopControl, seconds: float, pressure: PressureWatch | None = None,
         wake: Wake | None = None, link: Dom0Link | None = None) -> str:
    """Wait ``seconds``, less if a signal comes, or memory gets tight
    (``pressure``: the PSI trigger, or a sample against ``wake``), or dom0
    changes its keys (``link``'s watch on memory/), or writes memory/target
    while it is no input.  Return PRESSURE, WATCH or TARGET for those, ""
    otherwise."""
    start_s = time.monotonic()
    deadline = start_s + seconds
    if link is not None and link.take_events():
        _hold(control, start_s + WATCH_MIN_GAP_S)
        return WATCH
    if link is not None and link.take_target_touch():
        return TARGET
    poller = select.poll()
    poller.register(control.wake_fd(), select.POLLIN)
    psi_fd = pressure.register(poller) if pressure is not None else None
    xs_fd = link.fileno() if link is not None else None
    if xs_fd is not None:
        poller.register(xs_fd, select.POLLIN)
    sampling = pressure is not None and wake is not None
    while True:
        control.alive()
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            return ""
        slice_s = control.slice_s(min(left_s, SAMPLE_S) if sampling else left_s)
        for fd, events in poller.poll(slice_s * 1000):
            if fd == control.wake_fd():
                control.drain()
                return ""
            if fd == psi_fd and pressure is not None:
                if events & select.POLLPRI:
                    return PRESSURE
                poller.unregister(fd)  # POLLERR: this kernel took the trigger back
                pressure.close()
                psi_fd = None
            if fd == xs_fd and link is not None:
                if link.take_events():
                    _hold(control, start_s + WATCH_MIN_GAP_S)
                    return WATCH
                if link.take_target_touch():
                    return TARGET
                if link.fileno() != xs_fd:  # the connection broke: ticks read memory/
                    poller.unregister(fd)
                    xs_fd = None
        if sampling and pressure is not None and wake is not None and pressure.tight(wake):
            return PRESSURE


def _hold(control: LoopControl, until_s: float) -> None:
    """Wait until ``until_s`` unless a signal comes (it is left for the loop)."""
    left_s = until_s - time.monotonic()
    if left_s > 0:
        select.select([control.wake_fd()], [], [], left_s)


class _Ticks:
    """The ticks and waits of one run: what the last wait woke for decides the
    next tick (a full tick, one under pressure, or only the balloon target put
    back), and each tick when the next is due."""

    def __init__(self, ballooner: Ballooner, control: LoopControl, log: logging.Logger,
                 pressure: PressureWatch | None) -> None:
        self.ballooner, self.control, self.log, self.pressure = ballooner, control, log, pressure
        self.woken = ""
        self.next_tick_s = 0.0  # monotonic

    def tick(self) -> None:
        woken, self.woken = self.woken, ""
        if woken == TARGET:
            self.ballooner.reassert()  # and wait out the interval: no tick
            return
        interval_s = None
        try:
            interval_s = self.ballooner.tick(pressure=woken == PRESSURE)
        finally:
            if interval_s is None:  # the tick failed: the next after the interval in force
                interval_s = self.ballooner.interval_s()
            self.next_tick_s = time.monotonic() + interval_s

    def status(self) -> str:
        return self.ballooner.policy_line.last or self.ballooner.summary()

    def pause(self) -> None:
        self.woken = wait(self.control, max(self.next_tick_s - time.monotonic(), 0.0),
                          self.pressure, self.ballooner.wake, self.ballooner.link)
        if self.woken == PRESSURE:
            self.log.debug("memory pressure: ticking early")
        elif self.woken == WATCH:
            self.log.debug("dom0 changed memory/: ticking early")
        elif self.woken == TARGET:
            self.log.debug("dom0 wrote memory/target: putting the balloon target back")


def run(ballooner: Ballooner, control: LoopControl, reload: Callable[[], None],
        log: logging.Logger, pressure: PressureWatch | None = None) -> None:
    log.info("started: %s", ballooner.summary())
    if ballooner.self_ballooning():
        log.info("%s", SAVE_NOTE)
    resident.keep(log)
    if pressure is not None:
        pressure.open()
        if pressure.psi_error:
            log.info("no memory pressure trigger (%s): sampling /proc/meminfo every %g s "
                     "between ticks", pressure.psi_error, SAMPLE_S)
    ballooner.link.watch_wanted = True  # the native backend watches memory/ instead of reading it
    ticks = _Ticks(ballooner, control, log, pressure)
    serve(control, log, ticks.tick, ticks.status, ticks.pause, reload)
    if pressure is not None:
        pressure.close()
    ballooner.sign_off()
    log.info("stopping")
