"""Logging a condition once while it lasts."""
from __future__ import annotations

import logging


class OnceLog:
    """A condition (a short key, one per kind of trouble, so that what is
    remembered stays this small whatever the messages) is logged when it
    begins, not every tick while it lasts."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.said: dict[str, str] = {}  # condition -> the last message about it

    def say(self, condition: str, level: int, msg: str) -> None:
        """Log ``msg`` if the condition is new; a change of detail while it
        lasts is logged at debug level."""
        last = self.said.get(condition)
        if last is None:
            self.log.log(level, "%s", msg)
        elif last != msg:
            self.log.debug("%s", msg)
        self.said[condition] = msg

    def over(self, condition: str) -> None:
        """The condition is over: log it again if it comes back."""
        last = self.said.pop(condition, None)
        if last is not None:
            self.log.debug("over: %s", last)
