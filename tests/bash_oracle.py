"""Run the original 2008 xenballoond's own functions in bash, as the oracle.

The function definitions are taken from tests/original/xenballoond verbatim;
only the two absolute paths they touch (/proc/meminfo, /proc/xen/balloon) are
pointed at files in a temporary directory.  Many cases run in one bash.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from typing import Iterable, Sequence

ORIGINAL = os.path.join(os.path.dirname(__file__), "original", "xenballoond")


def _functions(meminfo: str, balloon: str) -> str:
    text = open(ORIGINAL, encoding="utf-8").read()
    start = text.index("minmb() {")
    end = text.index("if [ ! -f /proc/xen/balloon ]")
    body = text[start:end]
    return body.replace("/proc/meminfo", meminfo).replace("/proc/xen/balloon", balloon)


def _run(script: str) -> list[str]:
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"bash failed: {out.stderr}")
    return out.stdout.split()


def minmb(cases: Iterable[tuple[int, int]]) -> list[int]:
    """[(maxmem_kb, XENBALLOON_MINMEM)] -> minmb()'s RETVAL for each."""
    with tempfile.TemporaryDirectory() as d:
        maxfile = os.path.join(d, "maxmem")
        lines = [_functions(os.path.join(d, "meminfo"), os.path.join(d, "balloon"))]
        lines.append(f"XENBALLOON_MAXMEMFILE={maxfile}")
        for maxmem_kb, minmem in cases:
            lines.append(f"echo {maxmem_kb} > {maxfile}; XENBALLOON_MINMEM={minmem}; "
                         "minmb; echo $RETVAL")
        return [int(x) for x in _run("\n".join(lines))]


def balloon_to_target(cases: Sequence[tuple[int, int, int, int, int, int, int]]) -> list[int]:
    """[(arg, memtotal_kb, committed_kb, maxmem_kb, minmem_mb, down, up)] -> the
    bytes balloon_to_target() writes to the balloon, for each case.  arg is
    the original's calling convention: 1 = self target, else a target in kB."""
    with tempfile.TemporaryDirectory() as d:
        meminfo = os.path.join(d, "meminfo")
        balloon = os.path.join(d, "balloon")
        maxfile = os.path.join(d, "maxmem")
        lines = [_functions(meminfo, balloon), "xenstore_enabled=false",
                 f"XENBALLOON_MAXMEMFILE={maxfile}"]
        for arg, memtotal, committed, maxmem, minmem, down, up in cases:
            lines.append(
                f"printf 'MemTotal:       {memtotal} kB\\nCommitted_AS:   {committed} kB\\n' > {meminfo}; "
                f"echo {maxmem} > {maxfile}; XENBALLOON_MINMEM={minmem}; "
                f"XENBALLOON_AUTO_DOWNHYSTERESIS={down}; XENBALLOON_AUTO_UPHYSTERESIS={up}; "
                f"balloon_to_target {arg}; cat {balloon}")
        return [int(x) for x in _run("\n".join(lines))]
