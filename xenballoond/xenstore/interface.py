"""The Xenstore protocol both backends implement, for type checkers only:
the daemon's modules import it under ``TYPE_CHECKING`` and never at run time."""
from __future__ import annotations

from typing import Mapping, Protocol


class Xenstore(Protocol):
    """What the daemon and the monitor need from xenstore.  Every call has a timeout."""

    processes_spawned: int
    requests: int

    def available(self) -> bool: ...

    def snapshot(self, path: str) -> dict[str, str]:
        """Every node below ``path`` (recursive) as {relative key: value}.
        A missing ``path`` gives {}.  One process / a few round trips."""
        ...

    def list(self, path: str) -> list[str]: ...

    def read(self, path: str) -> str: ...

    def write_many(self, items: Mapping[str, str]) -> None:
        """Write all items at once (one transaction); all or nothing."""
        ...

    def close(self) -> None: ...
