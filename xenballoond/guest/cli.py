"""``xenballoond``: the composition root and command line.

Builds every collaborator from the config and the root, then runs one tick
(--once), the loop in the foreground (-f, systemd), or detaches with
python-daemon after checking, in the parent, everything that could fail.
"""
from __future__ import annotations

import logging
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    import argparse
    from typing import Callable, Sequence

    from ..xenstore.interface import Xenstore

from ..service import logsetup, runner
from . import runloop
from .balloon import detect_balloon
from ..shellconf import ConfigError
from .settings import Config, load
from .maxmem import MaxmemFile, why_unwritable
from ..paths import (DEFAULT_PIDFILE, PROC_MEMINFO, PROC_MIN_FREE_KBYTES, PROC_PRESSURE_MEMORY,
                     PROC_UPTIME, PROC_VMSTAT, Root)
from .pressure import PressureWatch
from .domain import is_dom0
from .sensor import ProcFiles
from .tick import Ballooner
from ..xenstore.choose import open_xenstore

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The command line, also rendered into xenballoond(8) by scripts/gen-manpages.py."""
    return runner.daemon_parser(
        "xenballoond",
        "In-guest Xen memory ballooning daemon: self-ballooning from Committed_AS, or "
        "directed by dom0 through xenstore.",
        config_help="config file (default: /etc/sysconfig/xenballoon.conf, "
                    "then /etc/default/xenballoon.conf)",
        once_help="run exactly one iteration in the foreground and exit",
        root_help="resolve every OS path (/proc, /sys, /etc, /var/run) under DIR",
        debug_help="log every decision")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: argparse's answer, without loading argparse for the
    plain forms (runner.simple_daemon_args)."""
    simple = runner.simple_daemon_args(list(sys.argv[1:] if argv is None else argv))
    if simple is not None:
        return simple  # type: ignore[return-value]
    return build_parser().parse_args(argv)


def make_xenstore(config: Config, root: Root, log: logging.Logger) -> Xenstore | None:
    xs = open_xenstore(config.xenstore_backend, root)
    if xs.backend == "cli" and not xs.available():
        # as the original: without the tools there is no directed ballooning
        log.warning("missing xenstore-* tools on PATH, disabling directed ballooning "
                    "and publishing")
        return None
    return xs


def build(config: Config, root: Root, log: logging.Logger,
          clock: Callable[[], float] | None = None) -> Ballooner | None:
    """The Ballooner, or None without a balloon driver.  ``clock``: monotonic
    seconds (the tests' own, to count what a tick does over simulated time)."""
    balloon = detect_balloon(root)
    if balloon is None:
        return None
    return Ballooner(
        config=config, balloon=balloon,
        files=ProcFiles(root.path(PROC_MEMINFO), root.path(PROC_VMSTAT), root.path(PROC_UPTIME),
                        root.path(PROC_MIN_FREE_KBYTES)),
        maxmem=MaxmemFile(root.path(config.maxmem_file)),
        xenstore=make_xenstore(config, root, log), log=log,
        **({} if clock is None else {"clock": clock}))


def swap_config(ballooner: Ballooner, config: Config, root: Root, log: logging.Logger) -> None:
    """A reloaded config in force: a new backend only if it names another."""
    xenstore = ballooner.xenstore
    if config.xenstore_backend != ballooner.config.xenstore_backend:
        xenstore = make_xenstore(config, root, log)
    ballooner.reconfigure(config, MaxmemFile(root.path(config.maxmem_file)), xenstore)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Root(os.path.abspath(args.root))
    log = logsetup.to_stderr(args.debug)
    try:
        config, path, warnings = load(root, args.config)
    except ConfigError as exc:
        print(f"xenballoond: {exc}", file=sys.stderr)
        print("xenballoond: see xenballoond --help and the comments in xenballoon.conf",
              file=sys.stderr)
        return EXIT_USAGE
    for w in warnings:
        log.warning("%s", w)
    if args.check_config:
        problem = why_unwritable(root.path(config.maxmem_file))
        if problem is not None:
            log.warning("XENBALLOON_MAXMEMFILE: %s: the high-water mark will be held in "
                        "memory only (from the current size after each restart)", problem)
        print(f"OK: {path}" if path else "OK: no config file, using the defaults")
        return EXIT_OK
    if path is None:
        log.info("no config file found, using the defaults")

    if is_dom0(root):
        print("xenballoond: this is domain 0: not ballooning", file=sys.stderr)
        return EXIT_OK
    ballooner = build(config, root, log)
    if ballooner is None:
        print("xenballoond: no balloon driver installed", file=sys.stderr)
        return EXIT_OK
    if not os.path.isfile(root.path(PROC_MEMINFO)):
        print(f"xenballoond: can't read {root.path(PROC_MEMINFO)}", file=sys.stderr)
        return EXIT_OK
    if args.once:
        ballooner.tick()
        return EXIT_OK

    pidfile = args.pidfile or root.path(DEFAULT_PIDFILE)
    return runner.start("xenballoond", args.foreground, pidfile, log, args.debug,
                        _loop(ballooner, root, args))


def pressure_watch(root: Root) -> PressureWatch:
    # the PSI trigger only on the real /proc: under a test root it is a plain file
    return PressureWatch(root.path(PROC_MEMINFO),
                         PROC_PRESSURE_MEMORY if root.top in ("", "/") else None)


def _loop(ballooner: Ballooner, root: Root, args: argparse.Namespace
          ) -> Callable[[runner.LoopControl, logging.Logger], None]:
    def loop(control: runner.LoopControl, log: logging.Logger) -> None:
        reload = runner.reloader(lambda: load(root, args.config),
                                 lambda config: swap_config(ballooner, config, root, log), log)
        runloop.run(ballooner, control, reload, log, pressure_watch(root))
    return loop

