"""Host free memory for the monitor's last line: ``xl info``, else ``xm info``.

The original ran ``xm info | grep free | sed 's/[^1-9]*\\([1-9][0-9]*\\).*/\\1/'``:
``grep free`` also matches ``free_cpus`` (and ``sharing_freed_memory``), so it
printed two or three numbers, and a value of 0 has no digit 1-9, so it printed
nothing.  ``xm`` is gone since Xen 4.5.  Here the one ``free_memory`` line is
parsed, xl is tried first, and failing both the line says "unknown".
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import Mapping, Optional

from .. import proc

TOOLS = ("xl", "xm")
MAX_FREE_MB = 1 << 40  # an exabyte: no host has more; larger is garbage
_LINE = re.compile(r"free_memory[ \t]*:[ \t]*([0-9]{1,20})[ \t]*", re.ASCII)


@dataclass(frozen=True)
class FreeMemory:
    mb: Optional[int]
    source: Optional[str] = None  # "xl" or "xm"
    why: str = ""  # when mb is None: what was tried


def parse_free_memory_mb(info_text: str) -> Optional[int]:
    """The ``free_memory : N`` line of ``xl info``/``xm info`` (MB), or None."""
    for line in info_text.splitlines():
        m = _LINE.fullmatch(line)
        if m:
            value = int(m.group(1))
            return value if value <= MAX_FREE_MB else None
    return None


class FreeMemoryReader:
    """Runs ``xl info`` (then ``xm info``) found on ``path_env`` (None: $PATH)."""

    def __init__(self, path_env: Optional[str] = None, timeout_s: float = 10.0,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.path_env = path_env
        self.timeout_s = timeout_s
        self.env = env
        self.processes_spawned = 0

    def read(self) -> FreeMemory:
        tried = []
        for tool in TOOLS:
            exe = shutil.which(tool, path=self.path_env)
            if exe is None:
                tried.append(f"no {tool}")
                continue
            self.processes_spawned += 1
            try:
                out = proc.run([exe, "info"], self.timeout_s, env=self.env).stdout
            except proc.CommandError as exc:
                what = "timed out" if exc.returncode is None else f"exited {exc.returncode}"
                tried.append(f"{tool} info {what}")
                continue
            mb = parse_free_memory_mb(out)
            if mb is not None:
                return FreeMemory(mb, tool)
            tried.append(f"{tool} info has no free_memory line")
        return FreeMemory(None, None, "; ".join(tried))
