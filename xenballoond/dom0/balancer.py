"""``xenballoon-balancer``: dom0's memory balancer; the composition root and
command line.

Builds the balancer from its config and the root (tick.py: one pass), then
runs one pass (--once), the loop in the foreground (-f, systemd) or detached
(service/runner.py), or one of the commands: ``free`` (room.py), ``pause`` and
``resume`` (pause.py), ``prepare-save`` and ``after-restore`` (saving.py),
``restore`` (restoring.py).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional, Sequence

from ..contract.keys import MAX_KB
from ..service import logsetup, runner
from ..shellconf import ConfigError
from ..paths import Root
from ..xenstore import XenstoreError
from ..xenstore.choose import open_xenstore
from . import BALANCER_PROG as PROG, act, restoring, runloop, saving, settings
from .pause import clear_paused, set_paused
from .room import make_room
from .sizes import parse_size_kb
from .tick import Balancer, Limits, open_xenctrl

DEFAULT_PIDFILE = "/var/run/xenballoon-balancer.pid"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

log = logging.getLogger(PROG)


def build(config: settings.BalancerConfig, root: Root,
          xenctrl: Callable[[], Limits] = open_xenctrl) -> Balancer:
    xl = act.Xl(config.xl, config.command_timeout_s)
    xs = open_xenstore(config.xenstore_backend, root, config.command_timeout_s)
    return Balancer(config, root, xl, xs, xenctrl)


def build_parser() -> argparse.ArgumentParser:
    p = runner.daemon_parser(
        PROG,
        "dom0's memory balancer: moves memory between the guests whose xenballoond runs in "
        "directed mode and that the administrator opted in.",
        epilog="Commands: free SIZE (make SIZE free for a new guest, then stay paused), "
               "pause, resume, prepare-save GUEST, after-restore GUEST, restore FILE (after "
               "a failed xl restore).  Exit status: 0 ok, 1 failed or already running, 2 bad "
               "config or usage.",
        config_help="config file (default: /etc/sysconfig/xenballoon-balancer.conf, "
                    "then /etc/default/xenballoon-balancer.conf)",
        once_help="run exactly one balancing pass in the foreground and exit",
        root_help="resolve every OS path (/etc, /var/run, xenstored's socket) under DIR",
        debug_help="log more", pidfile=DEFAULT_PIDFILE)
    sub = p.add_subparsers(dest="command",
                           metavar="{free,pause,resume,prepare-save,after-restore,restore}")
    f = sub.add_parser("free", help="make SIZE free for a new guest, then stay paused")
    f.add_argument("size", metavar="SIZE", help="e.g. 1024M, 2G, 524288k (no suffix: MiB)")
    f.add_argument("--timeout", metavar="SEC", type=float, default=60.0,
                   help="give up after SEC seconds (default 60)")
    sub.add_parser("pause", help="stop setting targets until resume (for xl create)")
    sub.add_parser("resume", help="balance again")
    for name, text in (("prepare-save", "before xl save or xl migrate: set the guest's "
                        "memory/target to what it holds, or libxl cannot rebuild it"),
                       ("after-restore", "after xl restore: let the guest grow to its "
                        "static-max again")):
        s = sub.add_parser(name, help=text)
        s.add_argument("domain", metavar="DOMAIN", help="the guest's name or domid")
    r = sub.add_parser("restore", help="after an xl restore failed (the guest held more than "
                       "its saved memory/target): restore FILE with room for it")
    r.add_argument("file", metavar="FILE", help="the file xl save wrote (left intact)")
    r.add_argument("--memory", metavar="SIZE",
                   help="room to build the domain with (default: its saved maxmem)")
    r.add_argument("--timeout", metavar="SEC", type=float, default=600.0,
                   help="give up after SEC seconds (default 600)")
    return p


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.command == "free":
        try:
            args.size_kb = parse_size_kb(args.size)
        except ValueError as exc:
            p.error(str(exc))
    if args.command == "restore":
        args.memory_kb = None
        if args.memory is not None:
            try:
                args.memory_kb = parse_size_kb(args.memory)
            except ValueError as exc:
                p.error(f"--memory: {exc}")
            if not 0 < args.memory_kb <= MAX_KB:
                p.error(f"--memory: {args.memory!r} is not a guest's size")
    if args.command in ("free", "restore") and not 0 < args.timeout <= 86400:
        p.error("--timeout must be between 0 and 86400 seconds")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    root = Root(os.path.abspath(args.root))
    logsetup.to_stderr(args.debug, PROG)
    if args.command == "pause":
        new = set_paused(root, f"paused by {PROG} pause at {time.strftime('%F %T')}")
        print(f"{PROG}: paused" if new else f"{PROG}: already paused")
        return EXIT_OK
    if args.command == "resume":
        print(f"{PROG}: resumed" if clear_paused(root) else f"{PROG}: was not paused")
        return EXIT_OK
    try:
        config, path, warnings = settings.load(root, args.config)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        print(f"{PROG}: see {PROG} --help and the comments in xenballoon-balancer.conf",
              file=sys.stderr)
        return EXIT_USAGE
    for w in warnings:
        log.warning("%s", w)
    if args.check_config:
        print(f"OK: {path}" if path else "OK: no config file, using the defaults")
        return EXIT_OK
    if path is None:
        log.info("no config file found, using the defaults")
    balancer = build(config, root)
    if args.command in ("prepare-save", "after-restore"):
        if args.command == "prepare-save":
            ok, message = saving.prepare_save(balancer.xl, args.domain)
        else:
            ok, message = saving.after_restore(balancer.xl, args.domain, balancer.static_max_kb)
        print(f"{PROG}: {message}", file=sys.stdout if ok else sys.stderr)
        return EXIT_OK if ok else EXIT_FAIL
    if args.command == "restore":
        ok, message = restoring.restore(balancer.xl, balancer.xs, args.file, args.memory_kb,
                                        args.timeout)
        print(f"{PROG}: {message}", file=sys.stdout if ok else sys.stderr)
        return EXIT_OK if ok else EXIT_FAIL
    stop = threading.Event()

    def wait_event(seconds: float) -> bool:
        return stop.wait(seconds)

    if args.command == "free":
        set_paused(root, f"paused by {PROG} free {args.size} at {time.strftime('%F %T')}")
        old = signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            ok, message = make_room(balancer, args.size_kb, args.timeout, wait_event)
        except (act.XlError, XenstoreError) as exc:
            ok, message = False, f"cannot read the host: {exc}"
        finally:
            signal.signal(signal.SIGINT, old)
        print(f"{PROG}: {message}" + (f"; paused until '{PROG} resume'" if ok else ""),
              file=sys.stdout if ok else sys.stderr)
        return EXIT_OK if ok else EXIT_FAIL
    if args.once:
        balancer.tick(time.monotonic(), wait_event)
        return EXIT_OK
    pidfile = args.pidfile or root.path(DEFAULT_PIDFILE)
    return runner.start(PROG, args.foreground, pidfile, log, args.debug,
                        _loop(balancer, root, args))


def swap_config(b: Balancer, config: settings.BalancerConfig, root: Root) -> None:
    """A reloaded config in force: new xl and xenstore adapters only if it
    names other ones."""
    old = b.config
    if (config.xl, config.xenstore_backend, config.command_timeout_s) != (
            old.xl, old.xenstore_backend, old.command_timeout_s):
        fresh = build(config, root)
        b.xl = fresh.xl
        b.xs.close()
        b.xs = fresh.xs
    b.reconfigure(config)


def _loop(b: Balancer, root: Root, args: argparse.Namespace
          ) -> Callable[[runner.LoopControl, logging.Logger], None]:
    def loop(control: runner.LoopControl, _log: logging.Logger) -> None:
        reload = runner.reloader(lambda: settings.load(root, args.config),
                                 lambda config: swap_config(b, config, root), log)
        runloop.run(b, control, reload)
    return loop


if __name__ == "__main__":
    sys.exit(main())
