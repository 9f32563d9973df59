"""Which xenstore client XENBALLOON_XENSTORE names, and what ``auto`` means here.

``auto`` (the guest daemon's default): ``native`` where this machine, under the
root, has xenstored's socket (dom0) or a guest's xenbus device, as libxenstore's
xs_open() would find them; else ``cli``, Debian's xenstore-* tools on PATH.
Either way $XENSTORED_PATH, if set, is where the chosen client connects.

``native`` became the guest's default once it had run on the real host what
``cli`` had: xl save and restore, xendomains stop and start, live migration
while the guest grew (its watch set again after each resume), and a ramp at
64 MB/s (README, "xenstore backends").
"""
from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Mapping

    from .interface import Xenstore

from ..paths import Root
from .native import DAEMON_SOCKET, GUEST_DEVICES

CHOICES = ("auto", "cli", "native")


def backend_for(choice: str, root: Root) -> str:
    """``cli`` or ``native``: the one ``choice`` names, or the one ``auto`` picks."""
    if choice != "auto":
        return choice
    reachable = any(os.path.exists(root.path(p)) for p in (DAEMON_SOCKET, *GUEST_DEVICES))
    return "native" if reachable else "cli"


def open_xenstore(choice: str, root: Root, timeout_s: float = 2.0,
                  env: Mapping[str, str] | None = None) -> Xenstore:
    """The client for ``choice`` (nothing is connected or run yet)."""
    if backend_for(choice, root) == "native":
        from .native import NativeXenstore
        return NativeXenstore(timeout_s=timeout_s, env=env, root=root)
    from .cli import CliXenstore
    return CliXenstore(timeout_s=timeout_s, env=env)
