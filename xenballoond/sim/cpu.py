"""CPU time from /proc: a process's or one thread's own user+system time,
children excluded (fields 14 and 15 of /proc/<pid>/stat, in clock ticks)."""
from __future__ import annotations

import os
import threading

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_stat_cpu_s(stat_text: str) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds.  The command name
    (field 2) may hold spaces and parentheses: split after the last ')'."""
    fields = stat_text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_s(pid: int | str = "self", tid: int | None = None) -> float | None:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as f:
            return parse_stat_cpu_s(f.read())
    except (OSError, IndexError, ValueError):
        return None


def thread_cpu_s(name: str) -> float | None:
    """The CPU time of this process's thread called ``name``, if it runs."""
    for t in threading.enumerate():
        if t.name == name and t.native_id is not None:
            return cpu_s("self", t.native_id)
    return None
