"""Running a daemon, for xenballoond and xenballoon-balancer alike: one
instance (the flock on the PID file, pidlock.py), the loop in the foreground
(systemd, -f), or detached with python-daemon, the starter waiting until the
daemon says it really started, so that the init script's [ OK ] is true; the
loop itself (serve: tick, wait, reload between ticks) and the reload
(reloader: a fresh config swapped in only if it is valid).

python-daemon's own PID lock would be taken in the detached child, too late to
tell anyone: the lock is taken in the starter and the daemon inherits it
(files_preserve).  Logging handlers are made after DaemonContext.open(), which
closes every descriptor it is not told to keep.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import select
import signal
import sys
import time

from .. import __version__
from . import logsetup, notify, pidlock
from ..shellconf import ConfigError
from ..paths import DEFAULT_PIDFILE

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    import argparse
    from typing import Callable, TypeVar

    Loop = Callable[["LoopControl", logging.Logger], None]
    C = TypeVar("C")

EXIT_OK, EXIT_FAIL = 0, 1
READY_TIMEOUT_S = 30.0


def help_formatter(prog: str) -> argparse.HelpFormatter:
    # argparse's default asks shutil for the terminal width, and shutil brings
    # zlib, bz2 and lzma into a daemon that never prints help (0.3 MiB of RSS)
    import argparse
    try:
        columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
    except (ValueError, OSError):
        columns = 80
    return argparse.HelpFormatter(prog, width=max(columns - 2, 40))


def daemon_parser(prog: str, description: str, *, config_help: str, once_help: str,
                  root_help: str, debug_help: str, epilog: str | None = None,
                  pidfile: str = DEFAULT_PIDFILE) -> argparse.ArgumentParser:
    """The options every daemon of ours takes, in one order."""
    import argparse  # here: xenballoond parses an ordinary command line without it

    p = argparse.ArgumentParser(prog=prog, formatter_class=help_formatter,
                                description=description, epilog=epilog)
    p.add_argument("-c", "--config", metavar="CONF", help=config_help)
    p.add_argument("-p", "--pidfile", metavar="PIDFILE",
                   help=f"PID file (default: {pidfile} under the root)")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="do not detach; log to stderr (for systemd)")
    p.add_argument("--once", action="store_true", help=once_help)
    p.add_argument("--check-config", action="store_true",
                   help="check the config file, print OK or the error, and exit")
    p.add_argument("--root", metavar="DIR", default="/", help=root_help)
    p.add_argument("--debug", action="store_true", help=debug_help)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


# The options of daemon_parser() that take a value, and those that do not
# (argparse's dest for each spelling).
_VALUE_OPTIONS = {"-c": "config", "--config": "config", "-p": "pidfile", "--pidfile": "pidfile",
                  "--root": "root"}
_FLAG_OPTIONS = {"-f": "foreground", "--foreground": "foreground", "--once": "once",
                 "--check-config": "check_config", "--debug": "debug"}


def simple_daemon_args(argv: list[str]) -> object | None:
    """What daemon_parser().parse_args(argv) gives, for a command line of the
    plain forms an init script or a unit writes (``-f``, ``--root DIR``,
    ``--config=FILE``, ...); None for anything else (help, --version, an
    abbreviation, a value that starts with "-", an error), which argparse
    then parses.  argparse and its gettext cost every guest 0.45 MiB for the
    one command line a daemon parses (bench/bench_daemon.py)."""
    import types

    values: dict[str, object] = {"config": None, "pidfile": None, "foreground": False,
                                 "once": False, "check_config": False, "root": "/",
                                 "debug": False}
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _FLAG_OPTIONS and not eq:
            values[_FLAG_OPTIONS[name]] = True
        elif name in _VALUE_OPTIONS:
            if not eq:
                value = next(args, "")
            if value == "" or value.startswith("-"):
                return None
            values[_VALUE_OPTIONS[name]] = value
        else:
            return None
    return types.SimpleNamespace(**values)


class LoopControl:
    """Signals for the main loop (a self-pipe), and systemd's notify socket
    when it runs under a Type=notify unit: wait() pings the watchdog while it
    waits, so an interval longer than WatchdogSec= is no stall, a stuck tick is."""

    def __init__(self, notifier: notify.Notifier | None = None) -> None:
        self.stop = False
        self.reload = False
        self.notifier = notifier
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)

    def on_stop(self, signum: int, frame: object) -> None:
        self.stop = True
        self._wake()

    def on_reload(self, signum: int, frame: object) -> None:
        self.reload = True
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._w, b"x")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def fds(self) -> tuple[int, int]:
        """The self-pipe, for DaemonContext's files_preserve."""
        return self._r, self._w

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        signal.signal(signal.SIGHUP, self.on_reload)

    def wake_fd(self) -> int:
        """Readable when a signal came: for a loop that polls more than this."""
        return self._r

    def drain(self) -> None:
        os.read(self._r, 4096)

    def wait(self, seconds: float) -> None:
        """Wait ``seconds`` or until a signal comes, pinging the watchdog."""
        deadline = time.monotonic() + seconds
        while True:
            self.alive()
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return
            ready, _, _ = select.select([self._r], [], [], self.slice_s(left_s))
            if ready:
                os.read(self._r, 4096)
                return

    def slice_s(self, seconds: float) -> float:
        """``seconds``, or less: how long a wait may block between two alive()."""
        if self.notifier is not None and self.notifier.ping_every_s:
            return min(seconds, self.notifier.ping_every_s / 2)
        return seconds

    def ready(self, status: str) -> None:
        """The first tick is done: READY=1 and the policy as STATUS=, under systemd."""
        if self.notifier is not None:
            self.notifier.ready(status)

    def status(self, text: str) -> None:
        if self.notifier is not None:
            self.notifier.status(text)

    def alive(self) -> None:
        """The main loop runs: WATCHDOG=1, when systemd asked for it."""
        if self.notifier is not None:
            self.notifier.alive()

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)
        if self.notifier is not None:
            self.notifier.close()


def serve(control: LoopControl, log: logging.Logger, tick: Callable[[], None],
          status: Callable[[], str], pause: Callable[[], None],
          reload: Callable[[], None]) -> None:
    """Tick until a signal stops it.  ``pause()`` waits for the next tick
    (``control.wait``, or a wait of the daemon's own that also ends at a
    signal); SIGHUP's ``reload()`` runs between ticks."""
    ready = False
    while not control.stop:
        try:
            tick()
        except Exception:  # one bad tick must not end the daemon's work
            log.exception("tick failed")
        # under systemd (Type=notify): ready after the first tick, failed or not (as a
        # SysV start is: the next ticks retry); STATUS= the policy in force
        if ready:
            control.status(status())
        else:
            control.ready(status())
            ready = True
        if not control.stop and not control.reload:
            pause()
        if control.reload:
            control.reload = False
            reload()


def reloader(load: Callable[[], tuple[C, str | None, list[str]]], apply: Callable[[C], None],
             log: logging.Logger) -> Callable[[], None]:
    """SIGHUP: ``load()`` a fresh config (config, path, warnings) and ``apply()`` it
    only if it is valid; a bad one is refused, logged, and the running one stays."""
    def reload() -> None:
        try:
            config, path, warnings = load()
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return
        for w in warnings:
            log.warning("%s", w)
        apply(config)
        log.info("reloaded %s", path or "defaults (no config file)")
    return reload


def start(prog: str, foreground: bool, pidfile: str, log: logging.Logger, debug: bool,
          loop: Loop) -> int:
    """The loop in the foreground (-f, systemd) or detached."""
    if foreground:
        return run_foreground(prog, pidfile, log, loop)
    return run_detached(prog, pidfile, log, debug, loop)


def _lock(prog: str, pidfile: str, log: logging.Logger) -> pidlock.PidLock | None:
    """The PID lock, or None (said on stderr) when another instance holds it."""
    lock = pidlock.PidLock(pidfile)
    try:
        lock.acquire(log)
    except pidlock.AlreadyRunning as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None
    return lock


def run_foreground(prog: str, pidfile: str, log: logging.Logger, loop: Loop) -> int:
    lock = _lock(prog, pidfile, log)
    if lock is None:
        return EXIT_FAIL
    os.umask(0o022)
    lock.write_pid(os.getpid())
    # SIGABRT from systemd's watchdog (or SIGSEGV, SIGBUS...): where each thread was, on
    # stderr (the journal under systemd), before the process ends
    faulthandler.enable()
    control = LoopControl(notify.from_environ(log))
    control.install()
    try:
        loop(control, log)
    finally:
        if control.notifier is not None:
            control.notifier.stopping()
        lock.release()
    return EXIT_OK


def run_detached(prog: str, pidfile: str, log: logging.Logger, debug: bool, loop: Loop) -> int:
    import daemon  # python-daemon

    lock = _lock(prog, pidfile, log)
    if lock is None:
        return EXIT_FAIL
    assert lock.fd is not None
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child:
        os.close(ready_w)
        return await_ready(prog, child, ready_r)
    # The forked child: detach (python-daemon forks twice more), report.
    os.close(ready_r)
    control = LoopControl()
    context = daemon.DaemonContext(
        detach_process=True, umask=0o022, working_directory="/",
        files_preserve=[ready_w, lock.fd, *control.fds()],
        signal_map={signal.SIGTERM: control.on_stop, signal.SIGINT: control.on_stop,
                    signal.SIGHUP: control.on_reload})
    status = EXIT_OK
    try:
        context.open()
        lock.write_pid(os.getpid())
        log = logsetup.to_syslog(debug, name=prog)  # the same named logger, now to syslog
        os.write(ready_w, b"ok\n")
        os.close(ready_w)
        loop(control, log)
    except BaseException as exc:  # report, never leave a lock behind
        try:
            os.write(ready_w, f"failed: {exc}\n".encode())
        except OSError:
            pass
        logging.getLogger(prog).exception("daemon failed")
        status = EXIT_FAIL
    finally:
        lock.release()
        context.close()
        os._exit(status)


def await_ready(prog: str, child: int, ready_r: int) -> int:
    """The starter waits for the detached daemon to say it really started."""
    os.waitpid(child, 0)  # the first fork exits as soon as it has detached
    message = b""
    while not message.endswith(b"\n"):
        ready, _, _ = select.select([ready_r], [], [], READY_TIMEOUT_S)
        if not ready:
            message += b"no answer from the daemon\n"
            break
        chunk = os.read(ready_r, 4096)
        if not chunk:
            break
        message += chunk
    os.close(ready_r)
    text = message.decode(errors="replace").strip()
    if text == "ok":
        return EXIT_OK
    print(f"{prog}: {text or 'the daemon exited before it started'}", file=sys.stderr)
    return EXIT_FAIL
