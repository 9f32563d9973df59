"""The daemon's main loop: tick, then wait for the interval or a signal
(service.LoopControl: SIGTERM/SIGINT stop it, SIGHUP reloads the config,
acted on between ticks)."""
from __future__ import annotations

import logging

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable

from ..service import LoopControl
from .tick import Ballooner


def run(ballooner: Ballooner, control: LoopControl, reload: Callable[[], None],
        log: logging.Logger) -> None:
    log.info("started: %s balloon, self-ballooning %s, xenstore %s",
             ballooner.balloon.name, "on" if ballooner.config.self_ballooning else "off",
             "on" if ballooner.xenstore is not None else "off")
    while not control.stop:
        try:
            interval_s = ballooner.tick()
        except Exception:  # one bad tick must not end ballooning
            log.exception("tick failed")
            interval_s = ballooner.config.interval_s
        if not control.stop and not control.reload:
            control.wait(interval_s)
        if control.reload:
            control.reload = False
            reload()
    log.info("stopping")
