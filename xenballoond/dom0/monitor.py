"""xenballoon-monitor: every guest's memory at a glance, for dom0.

Run as ``watch -d xenballoon-monitor``.  The table is the original's
(tools/xenballoon/xenballoon-monitor) with the right numbers: see
reader.py (batched xenstore reads), stats.py (parsing), hostinfo.py (``xl
info``), table.py (layout), and statefile.py (the balancer's last pass).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from .. import __version__
from ..shellconf import ConfigError
from . import settings
from .hostinfo import FreeMemory, FreeMemoryReader
from .stats import Row, make_row
from .table import balancer_json, balancer_lines, render_json, render_text
from .reader import collect, parse_domid
from .statefile import read_state
from ..paths import Root
from ..xenstore import XenstoreError
from ..xenstore.choose import open_xenstore
from ..xenstore.interface import Xenstore

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("xenballoon-monitor")


@dataclass(frozen=True)
class Refresh:
    """What one refresh read: a row per guest, the guests that published nothing,
    and the host's free memory."""

    rows: list[Row]
    missing: list[int]
    free: FreeMemory


def refresh(xs: Xenstore, free_reader: Optional[FreeMemoryReader],
            domids: Optional[Sequence[int]] = None) -> Refresh:
    """One refresh: read, parse, no output."""
    pubs, missing = collect(xs, domids)
    free = free_reader.read() if free_reader is not None else FreeMemory(None, None, "not asked")
    return Refresh([make_row(p) for p in pubs], missing, free)


def _domid_arg(text: str) -> int:
    domid = parse_domid(text)
    if not domid:
        raise argparse.ArgumentTypeError(f"not a guest domain id: {text!r}")
    return domid


def build_parser() -> argparse.ArgumentParser:
    """The command line, also rendered into xenballoon-monitor(1) by scripts/gen-manpages.py."""
    p = argparse.ArgumentParser(
        prog="xenballoon-monitor",
        description="Show the memory statistics every guest's xenballoond publishes "
                    "(run in dom0, e.g. 'watch -d xenballoon-monitor').",
        epilog="Columns: mem-kb MemTotal, tgt-kb the guest's selftarget, commit Committed_AS, "
               "swapin/swapout pswpin/pswpout (pages), pgin/pgout pgpgin/pgpgout (kB), "
               "active(sec) uptime minus idle time per online vCPU.  '-': not published; "
               "'?': published, but not a number that fits.  Exit status: 0 ok, 1 xenstore "
               "unreadable, 2 bad usage or config.")
    p.add_argument("-c", "--config", metavar="CONF",
                   help="dom0's config file, for its XENBALLOON_XENSTORE=cli|native (default: "
                        "/etc/sysconfig/xenballoon-balancer.conf, then "
                        "/etc/default/xenballoon-balancer.conf)")
    p.add_argument("--json", action="store_true", help="print the same rows as JSON")
    p.add_argument("-d", "--domain", metavar="ID", type=_domid_arg, action="append",
                   help="only this guest (repeatable)")
    p.add_argument("--timeout", metavar="SEC", type=float, default=10.0,
                   help="timeout for each xenstore or xl command (default 10)")
    p.add_argument("--root", metavar="DIR", default="/",
                   help="resolve the config files, xenstored's socket and the balancer's "
                        "state file under DIR")
    p.add_argument("--prometheus", metavar="FILE",
                   help="write the rows and the free memory to FILE in Prometheus text format "
                        "instead of printing the table (replaced in one step, for "
                        "node_exporter's textfile collector: name it *.prom)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if not 0 < args.timeout <= 3600:
        p.error("--timeout must be between 0 and 3600 seconds")
    if args.json and args.prometheus is not None:
        p.error("--json and --prometheus are two outputs: choose one")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="xenballoon-monitor: %(message)s", stream=sys.stderr)
    root = Root(args.root)
    try:
        # dom0's own conf, the balancer's, which the dom0 package ships: the guest's
        # xenballoon.conf is the guest package's, and dom0 has none
        config, _, warnings = settings.load(root, args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    for warning in warnings:
        log.warning("%s", warning)
    xs = open_xenstore(config.xenstore_backend, root, args.timeout)
    try:
        snap = refresh(xs, FreeMemoryReader(timeout_s=args.timeout), args.domain)
    except XenstoreError as exc:
        log.error("cannot read xenstore: %s", ascii(str(exc))[1:-1])
        return EXIT_FAIL
    if args.prometheus is not None:
        from .prometheus import render_metrics, write_textfile
        try:
            write_textfile(args.prometheus, render_metrics(snap.rows, snap.free))
        except OSError as exc:
            log.error("cannot write %s: %s", args.prometheus, exc.strerror or exc)
            return EXIT_FAIL
        return EXIT_OK
    state = read_state(root)
    if args.json:
        text = render_json(snap.rows, snap.free, snap.missing)
        if state is not None:
            doc = json.loads(text)
            doc["balancer"] = balancer_json(*state)
            text = json.dumps(doc, indent=1) + "\n"
    else:
        text = render_text(snap.rows, snap.free, snap.missing)
        if state is not None:
            text += "\n".join(balancer_lines(*state)) + "\n"
    sys.stdout.write(text)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
