"""The Xenstore protocol both backends implement, for type checkers only:
the daemon's modules import it under ``TYPE_CHECKING`` and never at run time.

Every operation is here; a backend that cannot do one says so by its null
behaviour (the CLI's watch() sets nothing, its fileno() is None, its events()
are []), never by leaving the method out."""
from __future__ import annotations

import builtins  # the type, where the method named list hides it
from typing import Mapping, Protocol, Sequence


class Xenstore(Protocol):
    """What the daemon, the monitor and the balancer need from xenstore.
    Every call has a timeout."""

    backend: str  # "cli" or "native" (xenstore/choose.py)
    processes_spawned: int
    requests: int

    def available(self) -> bool: ...

    def snapshot(self, path: str) -> dict[str, str]:
        """Every node below ``path`` (recursive) as {relative key: value}.
        A missing ``path`` gives {}.  One process / a few round trips."""
        ...

    def list(self, path: str) -> list[str]: ...

    def read(self, path: str) -> str: ...

    def read_existing(self, paths: Sequence[str]) -> dict[str, str]:
        """The value of each path that exists (missing and unreadable paths
        are left out), in one batch."""
        ...

    def list_existing(self, paths: Sequence[str]) -> dict[str, builtins.list[str]]:
        """The children of each path that exists (missing paths are left out)."""
        ...

    def read_upto(self, paths: Sequence[str]) -> tuple[dict[str, str], builtins.list[str]]:
        """As read_existing, but it may stop at the first missing path: the
        paths after it come back untried (the missing one is in neither)."""
        ...

    def list_upto(self, paths: Sequence[str]
                  ) -> tuple[dict[str, builtins.list[str]], builtins.list[str]]:
        """As list_existing, but it may stop at the first missing path (see read_upto)."""
        ...

    def write_many(self, items: Mapping[str, str]) -> None:
        """Write all items at once (one transaction); all or nothing."""
        ...

    def watch(self, path: str, token: str) -> None:
        """Have changes at or below ``path`` reported as events (none where
        the backend cannot watch)."""
        ...

    def fileno(self) -> int | None:
        """The descriptor to poll for events; None: no events to wait for."""
        ...

    def events(self) -> builtins.list[tuple[str, str]]:
        """The (path, token) of every change reported since the last call,
        without waiting."""
        ...

    def close(self) -> None: ...
