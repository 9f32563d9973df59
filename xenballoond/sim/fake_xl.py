"""The simulator's ``xl``, for the balancer running as dom0 (-m balanced).

A real ``xl`` needs a hypervisor, so the simulated host writes what xl would
report to ``xl-state.json`` beside this program's wrapper every step, and
this program answers ``xl list`` and ``xl info`` from it.  ``xl mem-set`` and
``xl mem-max`` are appended to ``xl-requests`` (one line each, O_APPEND, so
lines never interleave); the host applies them on its next step as libxl
does: maxmem = target + 1 MiB, then memory/target; or maxmem = static-max +
1 MiB, then memory/static-max.  The directory is $XBSIM_XL_DIR.

``xl restore [-p] FILE`` and ``xl unpause DOMID`` go to ``xl-restores``, a
JSON document a line, for a host that plays them (tests/test_balancer.py's);
the simulator's does not.  The simulated save file is xl's header
(dom0/savefile.py) and a stream whose length in bytes is the kB the guest
held: more than the saved target + 1 MiB fails as libxl's rebuild does.
"""
from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Optional, Sequence

STATE = "xl-state.json"
REQUESTS = "xl-requests"
RESTORES = "xl-restores"
RESTORE_WAIT_S = 10.0  # how long a restore waits for the host to show the domain
_SIZE = re.compile(r"([0-9]{1,15})([bkmgt]?)", re.ASCII | re.IGNORECASE)
_TO_KB = {"b": -10, "k": 0, "": 10, "m": 10, "g": 20, "t": 30}


def parse_mem_kb(text: str) -> Optional[int]:
    """xl's size argument: a number and a unit, MiB when there is none."""
    m = _SIZE.fullmatch(text)
    if m is None:
        return None
    shift = _TO_KB[m.group(2).lower()]
    value = int(m.group(1))
    return value >> -shift if shift < 0 else value << shift


def read_requests(directory: str, offset: int) -> tuple[list[tuple[str, int, int]], int]:
    """The ``xl mem-set`` and ``mem-max`` requests appended since ``offset``
    bytes, as (verb, domid, kB), and the offset after the last whole line read."""
    try:
        with open(os.path.join(directory, REQUESTS), "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    complete = data[:data.rfind(b"\n") + 1]
    requests = []
    for line in complete.decode().splitlines():
        verb, domid, kb = line.split()
        requests.append((verb, int(domid), int(kb)))
    return requests, offset + len(complete)


def render_list(state: dict[str, Any]) -> str:
    lines = [f"{'Name':<40}{'ID':>5}{'Mem':>6}{'VCPUs':>6}\t{'State':<8}{'Time(s)':>8}"]
    for d in state["domains"]:
        lines.append(f"{d['name']:<40}{d['domid']:>5}{d['mem_kb'] // 1024:>6}{1:>6}"
                     f"\t{'-b----' if d['domid'] else 'r-----':<8}{0.0:>8.1f}")
    return "\n".join(lines) + "\n"


def render_info(state: dict[str, Any]) -> str:
    return (f"host                   : xenballoon-sim\n"
            f"total_memory           : {state['total_kb'] // 1024}\n"
            f"free_memory            : {state['free_kb'] // 1024}\n"
            f"free_cpus              : 0\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    directory = os.environ.get("XBSIM_XL_DIR", "")
    if not directory:
        print("xl (xenballoon-sim): XBSIM_XL_DIR is not set", file=sys.stderr)
        return 1
    try:
        with open(os.path.join(directory, STATE), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"xl (xenballoon-sim): no host state: {exc}", file=sys.stderr)
        return 1
    if args == ["list"]:
        sys.stdout.write(render_list(state))
        return 0
    if args == ["info"]:
        sys.stdout.write(render_info(state))
        return 0
    if len(args) == 3 and args[0] in ("mem-set", "mem-max"):
        by_name = {d["name"]: d["domid"] for d in state["domains"]}
        domid = by_name.get(args[1], int(args[1]) if args[1].isdigit() else None)
        kb = parse_mem_kb(args[2])
        if domid not in {d["domid"] for d in state["domains"]} or kb is None:
            print(f"xl (xenballoon-sim): bad {args[0]} {args[1:]}", file=sys.stderr)
            return 1
        _append(directory, REQUESTS, f"{args[0]} {domid} {kb}")
        return 0
    if len(args) in (2, 3) and args[0] == "restore" and args[1:-1] in ([], ["-p"]):
        return _restore(directory, args[-1], paused=args[1:-1] == ["-p"])
    if len(args) == 2 and args[0] == "unpause" and args[1].isdigit():
        _append(directory, RESTORES, json.dumps({"unpause": int(args[1])}))
        return 0
    print(f"xl (xenballoon-sim): not simulated: {' '.join(args)}", file=sys.stderr)
    return 1


def _append(directory: str, name: str, line: str) -> None:
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _restore(directory: str, path: str, paused: bool) -> int:
    import hashlib
    import time

    from ..dom0.savefile import SaveFileError, read_header
    try:
        with open(path, "rb") as f:
            header = read_header(f.read)
            stream = f.read()
        name = header.name
        target_kb = header.memory_kb("target_memkb")
        max_kb = header.memory_kb("max_memkb")
    except (OSError, SaveFileError) as exc:
        print(f"xl (xenballoon-sim): cannot restore {path}: {exc}", file=sys.stderr)
        return 1
    held_kb = len(stream)
    if held_kb > target_kb + 1024:
        print(f"(XEN) Over-allocation for the new domain: {held_kb // 4 + 1} > "
              f"{(target_kb + 1024) // 4}\nlibxl: error: cannot (re-)build domain: -3",
              file=sys.stderr)
        return 1
    _append(directory, RESTORES, json.dumps({
        "name": name, "held_kb": held_kb, "target_kb": target_kb, "max_kb": max_kb,
        "paused": paused, "stream_sha256": hashlib.sha256(stream).hexdigest()}))
    deadline = time.monotonic() + RESTORE_WAIT_S
    while time.monotonic() < deadline:  # xl returns once the domain is built
        try:
            with open(os.path.join(directory, STATE), encoding="utf-8") as f:
                if any(d["name"] == name for d in json.load(f)["domains"]):
                    return 0
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    print(f"xl (xenballoon-sim): this host does not play restores ({name})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
