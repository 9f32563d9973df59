"""What a test needs from the machine: a tool, a file, root.

A test that lacks one skips, naming what is missing and the Debian package
that has it; with CI=true tests/conftest.py turns every skip into a failure,
so CI still runs everything.  Pure tests call none of these.
"""
from __future__ import annotations

import os
import shutil

import pytest

# tool -> the Debian package it comes in
PACKAGES = {
    "xenstore-read": "xenstore-utils", "xenstore-write": "xenstore-utils",
    "xenstore-ls": "xenstore-utils", "xenstore-list": "xenstore-utils",
    "shellcheck": "shellcheck", "systemd-analyze": "systemd", "make": "make", "bc": "bc",
    "strace": "strace", "bash": "bash", "flock": "util-linux",
    "qemu-system-x86_64": "qemu-system-x86",
}
XENSTORE_CLIENTS = ("xenstore-read", "xenstore-write", "xenstore-ls", "xenstore-list")


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def _why(missing: list[str]) -> str:
    by_package: dict[str, list[str]] = {}
    for tool in missing:
        by_package.setdefault(PACKAGES.get(tool, tool), []).append(tool)
    return "; ".join(f"{', '.join(tools)} missing (Debian package {package})"
                     for package, tools in by_package.items())


def needs_tool(*tools: str) -> None:
    """Skip the calling test unless every tool is on PATH."""
    missing = missing_tools(*tools)
    if missing:
        pytest.skip(_why(missing))


def tool_mark(*tools: str) -> pytest.MarkDecorator:
    """The same as a mark, for a whole test or parameter."""
    missing = missing_tools(*tools)
    return pytest.mark.skipif(bool(missing), reason=_why(missing))


def needs_file(path: str, package: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} missing (Debian package {package})")


def needs_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {why}")


CAP_IPC_LOCK, CAP_SYS_ADMIN, CAP_SYS_RESOURCE = 14, 21, 24  # linux/capability.h


def has_capability(bit: int) -> bool:
    """Whether this process holds the capability (its CapEff bit)."""
    with open("/proc/self/status") as f:
        caps = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    return bool(caps >> bit & 1)
