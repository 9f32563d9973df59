"""Fixtures: a simulated xenstored on private unix sockets, for any test module.

Use: ``from tests.xsfixtures import sim_xenstored`` in a test module, then take
``sim_xenstored`` as an argument.  It yields an ``XsHost``: the running server
with dom0 (socket ``dom0_socket``) and one guest, domid 1 (``guest_socket``),
made as libxl makes a domain (memory/ read-only for the guest, data/ writable).
``host.env(domid)`` is os.environ plus XENSTORED_PATH for that domain's socket,
for Debian's real ``xenstore-*`` clients.  Add guests with
``host.server.add_domain(domid, name, memory_kb, maxmem_kb)``.

Sockets live in a short /tmp directory (a unix socket path must fit in 108 bytes,
which pytest's tmp_path does not promise).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterator

import pytest

from xenballoond.sim.xenstored import SimXenstored

GUEST_DOMID = 1
GUEST_MEMORY_KB = 524288
GUEST_MAXMEM_KB = 1048576


@dataclass
class XsHost:
    server: SimXenstored
    guest_domid: int = GUEST_DOMID

    @property
    def dom0_socket(self) -> str:
        return self.server.dom0_socket

    @property
    def guest_socket(self) -> str:
        return self.server.socket_path(self.guest_domid)

    def socket(self, domid: int) -> str:
        return self.server.socket_path(domid)

    def env(self, domid: int | None = None) -> dict[str, str]:
        """os.environ with XENSTORED_PATH set to ``domid``'s socket (the guest's
        by default)."""
        sock = self.server.socket_path(self.guest_domid if domid is None else domid)
        return {**os.environ, "XENSTORED_PATH": sock}


@contextlib.contextmanager
def running_sim_xenstored(guests: int = 1, memory_kb: int = GUEST_MEMORY_KB,
                          maxmem_kb: int = GUEST_MAXMEM_KB,
                          trace: bool = False) -> Iterator[XsHost]:
    """A started server with guests 1..``guests``; stopped and removed after."""
    sock_dir = tempfile.mkdtemp(prefix="xsd", dir="/tmp")
    server = SimXenstored(sock_dir, trace=trace)
    server.add_domain(0, "Domain-0", maxmem_kb, maxmem_kb)
    for domid in range(1, guests + 1):
        server.add_domain(domid, f"guest{domid}", memory_kb, maxmem_kb)
    server.start()
    try:
        yield XsHost(server)
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
def sim_xenstored() -> Iterator[XsHost]:
    with running_sim_xenstored(trace=True) as host:
        yield host
