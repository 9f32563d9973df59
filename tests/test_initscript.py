"""The SysV init scripts and the systemd units, run for real.

The real initscripts/xenballoond runs under sh (dash) or bash against a guest
tree in a temp root (XENBALLOON_ROOT), starting the real daemon, through each
function library it supports: a stand-in for Red Hat's /etc/init.d/functions,
Debian's real /lib/lsb/init-functions, an LSB-only library as SUSE has, and
none.  xenstored is unreachable (XENSTORED_PATH names no socket) while Debian's
xenstore-* clients are on PATH: the daemon must balloon anyway.  What is the
same for dom0's initscripts/xenballoon-balancer (against a dom0 tree, xl
unreachable too) is one test over both services, its IDs naming the program.

This process stands in for init: it becomes the subreaper of the daemons that
double-fork away from the script and reaps them.  Here PID 1 does not reap, so
a killed daemon would stay a zombie that Red Hat's checkpid and kill -0 see
as alive; on a guest init reaps it.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from typing import Mapping, Sequence

import pytest

from tests.repo import REPO
from tests.daemonproc import processes, wait_until
from tests.needs import needs_file, needs_tool
from tests.guestroot import SYSFS, make_guest, set_current_kb, write
from xenballoond.guest.domain import is_dom0
from xenballoond.paths import Root

SCRIPT = os.path.join(REPO, "initscripts", "xenballoond")
UNIT = os.path.join(REPO, "initscripts", "xenballoond.service")
DATA = os.path.join(REPO, "tests", "data")
DEBIAN_LSB = "/lib/lsb/init-functions"

SELF_CONF = "XENBALLOON_SELF=true\nXENBALLOON_SELF_INTERVAL=1\n"
# pvops guest: MemTotal leaves out the kernel's reservation
MEMTOTAL_KB, CURRENT_KB, COMMITTED_KB = 380000, 393216, 200000


# --------------------------------------------------------------------------
# Every child process goes through the reaper, so it never reaps one of ours.

class Reaper:
    PR_SET_CHILD_SUBREAPER = 36

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ours: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(self.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            assert not self._thread.is_alive(), "timed out waiting for the reaper thread to stop"
        ctypes.CDLL(None).prctl(self.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        self.reap()

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.reap()

    def reap(self) -> None:
        me = os.getpid()
        with self._lock:
            for name in os.listdir("/proc"):
                if not name.isdigit() or int(name) in self._ours:
                    continue
                try:
                    with open(f"/proc/{name}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[0] == "Z" and int(fields[1]) == me:
                    try:
                        os.waitpid(int(name), os.WNOHANG)
                    except ChildProcessError:
                        pass

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float = 120, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        with self._lock:
            proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._ours.add(proc.pid)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=30)  # a child still holding the pipes: raises
            raise AssertionError(f"{argv} timed out; stdout {out!r}, stderr {err!r}")
        finally:
            with self._lock:
                self._ours.discard(proc.pid)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def run_many(self, argvs: Sequence[Sequence[str]], env: Mapping[str, str],
                 timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
        """Start them all, then wait for them all: concurrent runs."""
        procs = []
        with self._lock:
            for argv in argvs:
                proc = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                self._ours.add(proc.pid)
                procs.append((argv, proc))
        results = []
        try:
            for argv, proc in procs:
                out, err = proc.communicate(timeout=timeout)
                results.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
        finally:
            for _, proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate(timeout=30)
            with self._lock:
                for _, proc in procs:
                    self._ours.discard(proc.pid)
        return results


REAPER = Reaper()


@pytest.fixture(scope="module", autouse=True)
def reaper():
    REAPER.start()
    yield REAPER
    REAPER.close()


# --------------------------------------------------------------------------
# The two services: the guest's daemon (initscripts/xenballoond) and dom0's
# balancer (initscripts/xenballoon-balancer).  Each is a root tree, a function
# library, a shell and the program.  The balancer's tree has xl and xenstored
# unreachable: it keeps running and says so each pass.

BAL_SCRIPT = os.path.join(REPO, "initscripts", "xenballoon-balancer")
BAL_UNIT = os.path.join(REPO, "initscripts", "xenballoon-balancer.service")
BAL_CONF = "XENBALLOON_BALANCER_INTERVAL=1\nXENBALLOON_XENSTORE=native\n"


def console_script(directory, name: str, module: str) -> str:
    """A program as pip's console script is: a Python script with the
    program's name (its process name, which Debian's killproc matches)."""
    path = str(directory / name)
    with open(path, "w") as f:
        f.write(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {REPO!r})\n"
                f"from {module} import main\nsys.exit(main())\n")
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="module")
def daemon_program(tmp_path_factory) -> str:
    return console_script(tmp_path_factory.mktemp("bin"), "xenballoond", "xenballoond.guest.cli")


@pytest.fixture(scope="module")
def balancer_program(tmp_path_factory) -> str:
    return console_script(tmp_path_factory.mktemp("bin"), "xenballoon-balancer",
                          "xenballoond.dom0.balancer")


VARIANTS = [("redhat", "bash"), ("debian", "sh"), ("debian", "bash"), ("lsb-only", "sh"),
            ("plain", "sh"), ("plain", "bash")]


def install_library(root: str, lib: str) -> None:
    if lib == "redhat":
        dest, src = "etc/init.d/functions", os.path.join(DATA, "initscript_redhat_functions")
    elif lib == "debian":
        dest, src = "lib/lsb/init-functions", DEBIAN_LSB
    elif lib == "lsb-only":
        dest, src = "lib/lsb/init-functions", os.path.join(DATA, "initscript_lsb_init_functions")
    else:
        return
    os.makedirs(os.path.dirname(os.path.join(root, dest)), exist_ok=True)
    shutil.copy(src, os.path.join(root, dest))


def write_dom0_signs(root: str, features: str | None, capabilities: str | None) -> None:
    if features is not None:
        write(os.path.join(root, "sys/hypervisor/properties/features"), features + "\n")
    if capabilities is not None:
        write(os.path.join(root, "proc/xen/capabilities"), capabilities + "\n")


class Service:
    """One init script run against one root tree; what the two services share."""
    NAME: str        # the program, the script, the PID file, the subsys lock
    SCRIPT: str
    UNIT: str
    CONF_NAME: str
    IN_DOM0: bool    # the domain it runs in: dom0, or a guest
    NOT_HERE: str    # what its script says where it does not run
    BAD_START: tuple[str, str]   # a (variable, value) its config check refuses
    BAD_RELOAD: str              # a config line a reload refuses

    def __init__(self, root: str, lib: str, shell: str, program: str) -> None:
        self.root, self.lib, self.shell, self.program = root, lib, shell, program
        # Red Hat and SUSE read /etc/sysconfig, Debian /etc/default
        confdir = "etc/default" if lib in ("debian", "plain") else "etc/sysconfig"
        self.conf = os.path.join(root, confdir, self.CONF_NAME)
        self.pidfile = os.path.join(root, f"var/run/{self.NAME}.pid")
        self.env = dict(os.environ, XENBALLOON_ROOT=root, XENBALLOOND=program,
                        XENSTORED_PATH=os.path.join(root, "no-xenstored.sock"),
                        SYSTEMCTL_SKIP_REDIRECT="1")
        self.env.pop("PYTHONPATH", None)

    def argv(self, action: str) -> list[str]:
        return [self.shell, self.SCRIPT, action]

    def run(self, action: str) -> subprocess.CompletedProcess[str]:
        return REAPER.run(self.argv(action), env=self.env)

    def daemons(self) -> list[int]:
        """Live daemons of this tree: not --check-config runs, and not a
        daemon's child between fork and exec (it has the daemon's argv)."""
        found = {pid: ppid for pid, ppid, args in processes()
                 if self.program in args and self.root in args and "--check-config" not in args}
        return sorted(pid for pid, ppid in found.items() if ppid not in found)

    def pid_in_file(self) -> int | None:
        try:
            return int(open(self.pidfile).read())
        except (OSError, ValueError):
            return None

    def kill_all(self) -> None:
        for pid in self.daemons():
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.daemons(), what="daemons killed")

    def check_at_work(self) -> None:
        """What shows under the root that the running daemon does its job."""
        raise NotImplementedError


class Guest(Service):
    NAME, CONF_NAME = "xenballoond", "xenballoon.conf"
    SCRIPT, UNIT = SCRIPT, UNIT  # the module's
    IN_DOM0, NOT_HERE = False, "this is domain 0"
    EXPOSURE_MAX = 2.0  # issue 22's aim for systemd-analyze security
    BAD_START = ("XENBALLOON_SELF", "maybe")
    BAD_RELOAD = "XENBALLOON_INTERVAL=0"

    def target_bytes(self) -> int:
        text = open(os.path.join(self.root, SYSFS, "target")).read().strip()
        return int(text) if text else -1

    def check_at_work(self) -> None:
        # it balloons although xenstored is unreachable
        initial = CURRENT_KB * 1024
        wait_until(lambda: 0 < self.target_bytes() < initial, what="a lower balloon target")
        # the high-water mark, from info/current_kb on sysfs (MemTotal is smaller)
        assert open(os.path.join(self.root, "var/run/xenballoon-maxmem")).read() \
            == f"{CURRENT_KB}\n"


class Dom0(Service):
    NAME, CONF_NAME = "xenballoon-balancer", "xenballoon-balancer.conf"
    SCRIPT, UNIT = BAL_SCRIPT, BAL_UNIT
    IN_DOM0, NOT_HERE = True, "not domain 0"
    EXPOSURE_MAX = 2.5  # it runs xl: the hypervisor's devices, /var/lib/xen
    BAD_START = ("XENBALLOON_BALANCER_INTERVAL", "soon")
    BAD_RELOAD = "XENBALLOON_BALANCER_HEADROOM_PCT=101"

    def check_at_work(self) -> None:
        # xl and xenstored are unreachable: each pass logs so (to syslog) and
        # changes nothing under the root; that it keeps running is checked
        pass


def make(tmp_path, lib: str, shell: str, program: str, conf: str | None = SELF_CONF,
         balloon: str = "sysfs", features: str | None = None,
         capabilities: str | None = None) -> Guest:
    root = str(tmp_path / "guest")
    make_guest(root, memtotal_kb=MEMTOTAL_KB, committed_kb=COMMITTED_KB, current_kb=CURRENT_KB,
               balloon=balloon)
    write_dom0_signs(root, features, capabilities)
    install_library(root, lib)
    guest = Guest(root, lib, shell, program)
    if conf is not None:
        write(guest.conf, conf)
    return guest


def make_dom0(tmp_path, lib: str, shell: str, program: str, conf: str | None = BAL_CONF,
              features: str | None = "00000f05", capabilities: str | None = "control_d"
              ) -> Dom0:
    root = str(tmp_path / "dom0")
    os.makedirs(os.path.join(root, "var/run"))
    write_dom0_signs(root, features, capabilities)
    install_library(root, lib)
    d = Dom0(root, lib, shell, program)
    d.env["XENBALLOON_BALANCER_XL"] = os.path.join(root, "no/such/xl")
    if conf is not None:
        write(d.conf, conf + f"XENBALLOON_BALANCER_XL={os.path.join(root, 'no/such/xl')}\n")
    return d


# each service: how its tree is made, the fixture of its program
KINDS = {Guest: (make, "daemon_program"), Dom0: (make_dom0, "balancer_program")}
KIND_IDS = [kind.NAME for kind in KINDS]


def make_service(request, kind: type[Service], tmp_path, lib: str, shell: str,
                 **kw) -> Service:
    maker, program = KINDS[kind]
    if lib == "debian" and not os.path.exists(DEBIAN_LSB):
        needs_file(DEBIAN_LSB, "sysvinit-utils, or lsb-base")
    return maker(tmp_path, lib, shell, request.getfixturevalue(program), **kw)


SERVICE_PARAMS = [(kind, lib, sh) for kind in KINDS for lib, sh in VARIANTS]


@pytest.fixture(params=SERVICE_PARAMS,
                ids=[f"{kind.NAME}-{lib}-{sh}" for kind, lib, sh in SERVICE_PARAMS])
def service(request, tmp_path):
    """Each service through each library and shell."""
    kind, lib, shell = request.param
    s = make_service(request, kind, tmp_path, lib, shell)
    yield s
    s.kill_all()


@pytest.fixture
def plain_of(request, tmp_path):
    """plain_of(kind, **kw): for what the library does not change, plain sh."""
    made: list[Service] = []

    def factory(kind: type[Service], **kw) -> Service:
        s = make_service(request, kind, tmp_path, "plain", "sh", **kw)
        made.append(s)
        return s
    yield factory
    for s in made:
        s.kill_all()


@pytest.fixture
def plain(plain_of):
    """The guest's daemon, plain sh."""
    return lambda **kw: plain_of(Guest, **kw)


@pytest.fixture(params=list(KINDS), ids=KIND_IDS)
def plain_service(request, plain_of):
    """Each service, plain sh."""
    return lambda **kw: plain_of(request.param, **kw)


@pytest.fixture(params=list(KINDS), ids=KIND_IDS)
def kind(request) -> type[Service]:
    """Each service's class: its names and files."""
    return request.param


def gone(pid: int) -> bool:
    """Dead and reaped, as init would: a zombie still has its /proc entry."""
    return not os.path.exists(f"/proc/{pid}")


def ok(r: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert r.returncode == code, f"exit {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}"
    return r


# --------------------------------------------------------------------------
# Lifecycle, through every library, for both services.

def test_start_twice_one_daemon_then_stop_leaves_nothing(service):
    ok(service.run("status"), 3)
    ok(service.run("start"))
    [pid] = service.daemons()
    assert service.pid_in_file() == pid
    ok(service.run("status"), 0)
    # the run-level flip of the original's README: a second start starts nothing
    r = ok(service.run("start"))
    assert "already running" in r.stdout
    assert service.daemons() == [pid]

    service.check_at_work()

    ok(service.run("stop"))
    assert service.daemons() == []
    assert not os.path.exists(service.pidfile)
    ok(service.run("status"), 3)
    ok(service.run("stop"))  # stopping a stopped service succeeds


def test_killed_daemon_status_1_then_start_works(service):
    ok(service.run("start"))
    [pid] = service.daemons()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid), what="daemon dead and reaped")
    assert service.pid_in_file() == pid  # stale
    ok(service.run("status"), 1)
    ok(service.run("start"))
    [new] = service.daemons()
    assert new != pid and service.pid_in_file() == new
    ok(service.run("status"), 0)
    ok(service.run("stop"))
    assert not os.path.exists(service.pidfile)


def test_stop_after_kill_clears_the_stale_pid_file(service):
    ok(service.run("start"))
    [pid] = service.daemons()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(pid), what="daemon dead and reaped")
    ok(service.run("stop"))
    assert not os.path.exists(service.pidfile)
    ok(service.run("status"), 3)


def test_a_live_process_named_like_us_in_the_pid_file_does_not_stop_a_start(service):
    """The PID of a reboot ago may be a `tail -f xenballoond.log` now: the lock decides."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                              f"/var/log/{service.NAME}.log"])
    try:
        write(service.pidfile, f"{other.pid}\n")
        ok(service.run("start"))
        [pid] = service.daemons()
        assert service.pid_in_file() == pid
        ok(service.run("stop"))
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_twenty_concurrent_starts_leave_one_daemon(service):
    results = REAPER.run_many([service.argv("start")] * 20, env=service.env)
    for r in results:
        ok(r)
    [pid] = service.daemons()
    assert service.pid_in_file() == pid


def test_bad_config_exit_6_starts_nothing(service):
    key, value = service.BAD_START
    write(service.conf, f"{key}={value}\n")
    r = ok(service.run("start"), 6)
    assert key in r.stderr and value in r.stderr
    assert service.daemons() == []
    assert not os.path.exists(service.pidfile)


def test_restart_try_restart_and_reload(service):
    ok(service.run("try-restart"))  # not running: nothing to do
    assert service.daemons() == []
    ok(service.run("reload"), 7)
    ok(service.run("restart"))  # restart of a stopped service starts it
    [first] = service.daemons()
    ok(service.run("restart"))
    [second] = service.daemons()
    assert second != first
    ok(service.run("condrestart"))
    [third] = service.daemons()
    assert third != second
    ok(service.run("reload"))
    ok(service.run("force-reload"))
    assert service.daemons() == [third]


# --------------------------------------------------------------------------
# Once is enough: what the function library does not change.

def test_config_warnings_are_shown_and_start_goes_on(plain):
    g = plain(conf=SELF_CONF + "OPTIONS=-x\n")
    r = ok(g.run("start"))
    assert "unknown variable OPTIONS" in r.stderr and "OK" not in r.stderr
    assert len(g.daemons()) == 1


def test_reload_sends_sighup_and_the_new_config_takes_effect(plain):
    g = plain(conf="XENBALLOON_SELF=false\n")
    ok(g.run("start"))
    [pid] = g.daemons()
    initial = g.target_bytes()
    write(g.conf, SELF_CONF)
    ok(g.run("reload"))
    wait_until(lambda: 0 < g.target_bytes() < initial, what="self-ballooning after reload")
    assert g.daemons() == [pid]


def test_reload_with_bad_config_exit_6_daemon_keeps_running(plain_service):
    s = plain_service()
    ok(s.run("start"))
    [pid] = s.daemons()
    write(s.conf, s.BAD_RELOAD + "\n")
    r = ok(s.run("reload"), 6)
    assert s.BAD_RELOAD.split("=")[0] in r.stderr
    assert s.daemons() == [pid]


# One table for the three places that tell domain 0 from a guest: the daemon,
# the init script and the unit's ExecCondition must agree on every row.
DOM0_SIGNS = [  # (features, capabilities, is a guest)
    (None, None, True),                 # nothing to tell: not dom0
    ("000027f5", "", True),             # a domU's features; xenfs mounted, empty
    ("000027f5", "\n", True),
    ("00000800", None, False),          # XENFEAT_dom0 is bit 11 (0x800)
    ("00000f05", None, False),
    (None, "control_d", False),         # older Xen: the original's test
    ("00002705", "control_d", False),   # either says dom0
    ("zz", None, True),                 # garbage: not dom0 by that
]


@pytest.mark.parametrize("features, capabilities, guest", DOM0_SIGNS)
def test_init_script_starts_only_in_its_domain(plain_service, features, capabilities, guest):
    """The guest's daemon nowhere but in a guest, the balancer only in domain 0."""
    s = plain_service(features=features, capabilities=capabilities)
    r = ok(s.run("start"))
    if s.IN_DOM0 != guest:
        assert len(s.daemons()) == 1
    else:
        assert s.NOT_HERE in r.stdout
        assert s.daemons() == [] and not os.path.exists(s.pidfile)


@pytest.mark.parametrize("features, capabilities, guest", DOM0_SIGNS)
def test_daemon_tells_domain_0_as_the_init_script_does(tmp_path, features, capabilities, guest):
    write_dom0_signs(str(tmp_path), features, capabilities)
    assert is_dom0(Root(str(tmp_path))) == (not guest)


def test_no_balloon_driver_exit_0_starts_nothing(plain):
    g = plain(balloon="none")
    r = ok(g.run("start"))
    assert "no balloon driver" in r.stdout
    assert g.daemons() == [] and not os.path.exists(g.pidfile)


def test_legacy_proc_balloon_starts_and_records_memtotal(plain):
    g = plain(balloon="proc")
    ok(g.run("start"))
    assert len(g.daemons()) == 1
    # the original's source: MemTotal
    assert open(os.path.join(g.root, "var/run/xenballoon-maxmem")).read() == f"{MEMTOTAL_KB}\n"


def test_start_reports_failure_when_the_daemon_does_not_start(plain):
    g = plain()
    os.unlink(os.path.join(g.root, "proc/meminfo"))  # the daemon exits 0 and says why
    r = ok(g.run("start"), 1)
    assert "failed" in r.stdout
    assert g.daemons() == []


def test_daemon_not_installed_exit_5(plain_service):
    s = plain_service()
    s.env["XENBALLOOND"] = os.path.join(s.root, "no/such", s.NAME)
    ok(s.run("start"), 5)
    ok(s.run("status"), 3)


def test_unknown_action_prints_usage_exit_2(plain_service):
    s = plain_service()
    r = ok(s.run("frobnicate"), 2)
    assert "Usage:" in r.stderr
    assert ok(REAPER.run(["sh", s.SCRIPT], env=s.env), 2)


@pytest.mark.parametrize("old, expected", [
    ("999999\n", "999999\n"),            # higher: kept (hot-added memory, or ballooned down)
    ("100\n", f"{CURRENT_KB}\n"),        # lower: raised
    ("garbage\n", f"{CURRENT_KB}\n"),    # hostile: replaced
    ("", f"{CURRENT_KB}\n"),
])
def test_maxmem_high_water_mark(plain, old, expected):
    g = plain()
    path = os.path.join(g.root, "var/run/xenballoon-maxmem")
    write(path, old)
    ok(g.run("start"))
    assert open(path).read() == expected


@pytest.mark.parametrize("line", [
    "XENBALLOON_MAXMEMFILE=/var/lib/xb/max",
    'XENBALLOON_MAXMEMFILE="/var/lib/xb/max"  # the high-water mark',
    "export XENBALLOON_MAXMEMFILE='/var/lib/xb/max'",
])
def test_maxmem_file_from_the_config(plain, line):
    g = plain(conf=SELF_CONF + "XENBALLOON_MAXMEMFILE=/elsewhere\n" + line + "\n")
    ok(g.run("start"))
    assert open(os.path.join(g.root, "var/lib/xb/max")).read() == f"{CURRENT_KB}\n"
    assert not os.path.exists(os.path.join(g.root, "elsewhere"))


@pytest.mark.parametrize("blocker", ["var/lib/xb", "var/lib/xb/max"])
def test_unwritable_maxmem_file_is_warned_about_and_start_goes_on(plain, blocker):
    g = plain(conf=SELF_CONF + "XENBALLOON_MAXMEMFILE=/var/lib/xb/max\n")
    if blocker.endswith("max"):
        os.makedirs(os.path.join(g.root, blocker))
    else:
        write(os.path.join(g.root, blocker), "a file\n")
    r = ok(g.run("start"))
    assert "XENBALLOON_MAXMEMFILE" in r.stderr, r.stderr
    assert len(g.daemons()) == 1
    wait_until(lambda: 0 < g.target_bytes() < CURRENT_KB * 1024, what="a lower balloon target")
    if blocker.endswith("max"):
        assert os.listdir(os.path.join(g.root, blocker)) == []


def test_maxmem_current_kb_garbage_falls_back_to_memtotal(plain):
    g = plain()
    set_current_kb(g.root, 0)
    write(os.path.join(g.root, SYSFS, "info/current_kb"), "12x\n")
    path = os.path.join(g.root, "var/run/xenballoon-maxmem")
    g.run("start")  # the daemon may refuse a garbage current_kb; the mark is recorded first
    assert open(path).read() == f"{MEMTOTAL_KB}\n"


def test_red_hat_subsys_lock(request, tmp_path, kind):
    s = make_service(request, kind, tmp_path, "redhat", "bash")
    lock = os.path.join(s.root, "var/lock/subsys", s.NAME)
    os.makedirs(os.path.dirname(lock))
    try:
        r = ok(s.run("start"))
        assert "[  OK  ]" in r.stdout
        assert os.path.exists(lock)  # so that rc runs the K script at shutdown
        ok(s.run("stop"))
        assert not os.path.exists(lock)
    finally:
        s.kill_all()


@pytest.mark.parametrize("root", ["relative/dir", "/tmp/with space"])
def test_bad_root_is_refused(plain, root):
    g = plain()
    g.env["XENBALLOON_ROOT"] = root
    ok(g.run("start"), 2)


# --------------------------------------------------------------------------
# The script's text.

@pytest.mark.parametrize("path", [SCRIPT, BAL_SCRIPT, os.path.join(REPO, "scripts", "install.sh")],
                         ids=os.path.basename)
def test_shellcheck_posix_sh(path):
    needs_tool("shellcheck")
    r = REAPER.run(["shellcheck", "-s", "sh", path])
    assert r.returncode == 0, r.stdout


def lsb_header(script: str = SCRIPT) -> dict[str, str]:
    text = open(script).read()
    block = text.split("### BEGIN INIT INFO\n", 1)[1].split("### END INIT INFO", 1)[0]
    fields: dict[str, str] = {}
    key = None
    for line in block.splitlines():
        m = re.match(r"# ([A-Za-z-]+):\s*(.*)$", line)
        if m:
            key = m.group(1)
            fields[key] = m.group(2).strip()
        else:
            assert key is not None and re.match(r"#(\t|  )", line), line
            fields[key] += " " + line[1:].strip()
    return fields


def test_lsb_header_agrees_with_chkconfig_line(kind):
    fields = lsb_header(kind.SCRIPT)
    assert fields["Provides"] == kind.NAME
    chk = re.search(r"^# chkconfig: (\d+) (\d+) (\d+)$", open(kind.SCRIPT).read(), re.M)
    assert chk and chk.group(1, 2, 3) == ("2345", "98", "01")
    assert fields["Default-Start"].split() == list(chk.group(1))
    assert fields["Default-Stop"].split() == ["0", "1", "6"]
    assert set(fields["Required-Start"].split()) == {"$remote_fs", "$syslog"}
    assert set(fields) <= {"Provides", "Required-Start", "Required-Stop", "Should-Start",
                           "Should-Stop", "Default-Start", "Default-Stop",
                           "Short-Description", "Description", "X-Start-Before",
                           "X-Stop-After", "X-Interactive"}


# --------------------------------------------------------------------------
# The systemd unit.

def unit_lines(unit: str = UNIT) -> list[tuple[str, str, str]]:
    section, out = "", []
    for line in open(unit).read().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.append((section, key, value))
    return out


def unit_values(section: str, key: str) -> list[str]:
    return [v for s, k, v in unit_lines() if s == section and k == key]


def unit_values_of(unit: str):
    lines = unit_lines(unit)
    return lambda section, key: [v for s, k, v in lines if s == section and k == key]


def test_unit_settings(kind):
    values = unit_values_of(kind.UNIT)
    [start] = values("Service", "ExecStart")
    assert start.split()[1:] == ["-f"]
    assert values("Service", "ExecReload")[-1] == "/bin/kill -HUP $MAINPID"
    assert values("Service", "Restart") == ["on-failure"]
    assert values("Service", "RestartPreventExitStatus") == ["2"]
    assert values("Service", "Type") == ["notify"]
    [watchdog] = values("Service", "WatchdogSec")
    assert int(watchdog) >= 60  # a tick or pass of xl and xenstore calls, each up to 10 s
    assert values("Install", "WantedBy") == ["multi-user.target"]


def test_unit_of_the_guest_needs_xen_and_a_balloon_driver():
    assert unit_values("Unit", "ConditionVirtualization") == ["xen"]
    assert sorted(unit_values("Unit", "ConditionPathExists")) == [
        "|/proc/xen/balloon", "|/sys/devices/system/xen_memory/xen_memory0"]


def test_unit_verifies(request, tmp_path, kind):
    needs_tool("systemd-analyze")
    unit = unit_for_analyze(tmp_path, kind, request.getfixturevalue(KINDS[kind][1]))
    r = REAPER.run(["systemd-analyze", "verify", "--man=no", unit])
    assert r.returncode == 0 and r.stderr == "", r.stderr


def unit_for_analyze(tmp_path, kind, program: str) -> str:
    """The unit, its program where this test's is (as the packages substitute theirs)."""
    unit = tmp_path / os.path.basename(kind.UNIT)
    unit.write_text(open(kind.UNIT).read().replace(f"/usr/local/bin/{kind.NAME}", program))
    return str(unit)


def test_unit_exposure(request, tmp_path, kind):
    """Issue 22: systemd-analyze rates the sandbox (9.6 UNSAFE before it)."""
    needs_tool("systemd-analyze")
    unit = unit_for_analyze(tmp_path, kind, request.getfixturevalue(KINDS[kind][1]))
    r = REAPER.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= kind.EXPOSURE_MAX, r.stdout


def rw_paths(unit: str) -> list[str]:
    """ReadWritePaths=, "-" (ignored when missing) taken off, /var/run as /run."""
    paths = [p.lstrip("-") for v in unit_values_of(unit)("Service", "ReadWritePaths")
             for p in v.split()]
    return ["/run" + p[len("/var/run"):] if p.startswith("/var/run") else p for p in paths]


def writable(path: str, unit: str) -> bool:
    path = "/run" + path[len("/var/run"):] if path.startswith("/var/run") else path
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in rw_paths(unit))


def test_unit_lets_the_daemons_write_what_they_write():
    """ProtectSystem=strict, and ReadWritePaths= for every path the code writes."""
    from xenballoond import paths
    from xenballoond.guest.settings import Config
    from xenballoond.dom0 import balancer, pause, statefile
    for unit in (UNIT, BAL_UNIT):
        assert unit_values_of(unit)("Service", "ProtectSystem") == ["strict"]
    for path in (paths.SYSFS_BALLOON_DIR + "/target", paths.PROC_XEN_BALLOON,
                 paths.DEFAULT_PIDFILE, Config().maxmem_file, Config().maxmem_file + ".boot"):
        assert writable(path, UNIT), path
    for path in (balancer.DEFAULT_PIDFILE, pause.PAUSE_FLAG, statefile.STATE_FILE,
                 pause.ACT_LOCK, "/var/lib/xen/userdata-l.1.x.domain-userdata-lock",
                 "/run/xenstored/socket"):
        assert writable(path, BAL_UNIT), path
    assert not writable("/etc/sysconfig/xenballoon.conf", UNIT)


def exec_condition(root: str, unit: str = UNIT) -> list[str]:
    """The unit's ExecCondition as systemd runs it ($$ is $), paths under root."""
    [cmd] = unit_values_of(unit)("Service", "ExecCondition")
    argv = re.findall(r"'[^']*'|\S+", cmd)
    argv = [a[1:-1] if a.startswith("'") else a for a in argv]
    script = argv[2].replace("$$", "$")
    for path in ("/sys/hypervisor/properties/features", "/proc/xen/capabilities"):
        script = script.replace(path, root + path)
    return ["sh", "-c", script]


@pytest.mark.parametrize("features, capabilities, guest", DOM0_SIGNS)
def test_unit_runs_only_in_its_domain(tmp_path, kind, features, capabilities, guest):
    """The unit's conditions and the script agree with the daemon on every row."""
    root = str(tmp_path)
    write_dom0_signs(root, features, capabilities)
    values = unit_values_of(kind.UNIT)
    paths_ok = all(os.path.exists(root + p.lstrip("|!"))
                   for p in values("Unit", "ConditionPathExists") if not p.startswith("|"))
    r = REAPER.run(exec_condition(root, kind.UNIT))
    runs = kind.IN_DOM0 != guest
    assert (paths_ok and r.returncode == 0) == runs, r
    assert r.returncode in range(0, 255)  # 1-254 skips the unit; 255 would fail it


# --------------------------------------------------------------------------
# Installation: make install-service (scripts/install.sh), make install (pip).

DEFAULT_CONF = os.path.join(REPO, "etc", "xenballoon.conf")
LAYOUT = {
    "redhat": ("etc/rc.d/init.d/xenballoond", "usr/lib/systemd/system/xenballoond.service",
               "etc/sysconfig/xenballoon.conf"),
    "suse": ("etc/init.d/xenballoond", "usr/lib/systemd/system/xenballoond.service",
             "etc/sysconfig/xenballoon.conf"),
    "debian": ("etc/init.d/xenballoond", "lib/systemd/system/xenballoond.service",
               "etc/default/xenballoon.conf"),
}


def make_install(destdir: str, *args: str, target: str = "install-service",
                 top: str = REPO) -> subprocess.CompletedProcess[str]:
    needs_tool("make")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DESTDIR", "DISTRO", "BINDIR", "UNITDIR", "PREFIX", "MAKEFLAGS")}
    return REAPER.run(["make", "-s", "-C", top, target, f"DESTDIR={destdir}", *args], env=env)


@pytest.mark.parametrize("distro", sorted(LAYOUT))
def test_install_service_layout(tmp_path, distro):
    dest = str(tmp_path)
    ok(make_install(dest, f"DISTRO={distro}", "BINDIR=/opt/xb/bin"))
    init, unit, conf = (os.path.join(dest, p) for p in LAYOUT[distro])
    assert os.stat(init).st_mode & 0o777 == 0o755
    assert os.stat(unit).st_mode & 0o777 == 0o644
    assert open(conf).read() == open(DEFAULT_CONF).read()
    text = open(init).read()
    assert 'xb_candidates="/opt/xb/bin/xenballoond /usr/sbin/xenballoond ' in text
    assert text.replace("/opt/xb/bin/xenballoond ", "", 1) == open(SCRIPT).read()
    assert "ExecStart=/opt/xb/bin/xenballoond -f" in open(unit).read()
    assert "/usr/local/bin" not in open(unit).read()
    assert sorted(os.listdir(os.path.dirname(conf))) == ["xenballoon.conf"]


def test_install_never_overwrites_the_config(tmp_path):
    dest = str(tmp_path)
    ok(make_install(dest, "DISTRO=debian"))
    conf = os.path.join(dest, "etc/default/xenballoon.conf")
    r = ok(make_install(dest, "DISTRO=debian"))
    assert f"unchanged {conf}" in r.stdout and not os.path.exists(conf + ".new")
    write(conf, "XENBALLOON_SELF=true\n")
    r = ok(make_install(dest, "DISTRO=debian"))
    assert f"kept your {conf}" in r.stdout and f"{conf}.new" in r.stdout
    assert open(conf).read() == "XENBALLOON_SELF=true\n"
    assert open(conf + ".new").read() == open(DEFAULT_CONF).read()


@pytest.mark.parametrize("files, distro", [
    ({"etc/os-release": 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'}, "redhat"),
    ({"etc/os-release": 'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n'}, "suse"),
    ({"etc/os-release": "ID=ubuntu\nID_LIKE=debian\n"}, "debian"),
    ({"etc/redhat-release": "CentOS release 5.2 (Final)\n"}, "redhat"),
    ({"etc/SuSE-release": "SUSE Linux Enterprise Server 10\n"}, "suse"),
    ({"etc/debian_version": "4.0\n"}, "debian"),
])
def test_install_detects_the_distribution_of_destdir(tmp_path, files, distro):
    dest = str(tmp_path)
    for path, text in files.items():
        write(os.path.join(dest, path), text)
    r = ok(make_install(dest))
    assert f"DISTRO={distro} (detected)" in r.stdout
    for path in LAYOUT[distro]:
        assert os.path.exists(os.path.join(dest, path)), path


def test_install_refuses_a_bad_distro(tmp_path):
    r = ok(make_install(str(tmp_path), "DISTRO=gentoo"), 2)
    assert "DISTRO must be redhat, suse or debian" in r.stderr


def test_uninstall_leaves_the_config(tmp_path):
    dest = str(tmp_path)
    ok(make_install(dest, "DISTRO=redhat"))
    ok(make_install(dest, "DISTRO=redhat", target="uninstall-service"))
    init, unit, conf = (os.path.join(dest, p) for p in LAYOUT["redhat"])
    assert not os.path.exists(init) and not os.path.exists(unit)
    assert os.path.exists(conf)


def test_make_install_then_the_installed_script_runs_the_installed_daemon(tmp_path):
    """pip installs the programs, install.sh the rest; DESTDIR then serves as
    the guest's root, with a balloon driver added."""
    try:
        import wheel  # noqa: F401  (setuptools < 70.1 builds wheels with it)
    except ImportError:
        pytest.skip("the wheel package is missing (pip install wheel; in '.[test]')")
    top = str(tmp_path / "src")
    shutil.copytree(REPO, top, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".hypothesis"))
    dest = str(tmp_path / "guest")
    r = ok(make_install(dest, "DISTRO=debian", "PREFIX=/usr/local",
                        "PIP_FLAGS=--no-deps --no-build-isolation --no-index --quiet",
                        target="install", top=top))
    program = os.path.join(dest, "usr/local/bin/xenballoond")
    assert os.access(program, os.X_OK), r.stdout + r.stderr
    assert os.access(os.path.join(dest, "usr/local/bin/xenballoon-monitor"), os.X_OK)
    [site] = [os.path.join(dest, "usr/local/lib", d, "site-packages")
              for d in os.listdir(os.path.join(dest, "usr/local/lib"))]

    make_guest(dest, memtotal_kb=MEMTOTAL_KB, committed_kb=COMMITTED_KB, current_kb=CURRENT_KB)
    install_library(dest, "debian" if os.path.exists(DEBIAN_LSB) else "lsb-only")
    g = Guest(dest, "debian", "sh", program)
    g.env["PYTHONPATH"] = site
    try:
        ok(REAPER.run(["sh", os.path.join(dest, "etc/init.d/xenballoond"), "start"], env=g.env))
        [pid] = g.daemons()
        ok(REAPER.run(["sh", os.path.join(dest, "etc/init.d/xenballoond"), "stop"], env=g.env))
        assert g.daemons() == [] and not os.path.exists(g.pidfile)
    finally:
        g.kill_all()


def test_install_service_layout_of_the_balancer(tmp_path):
    dest = str(tmp_path)
    ok(make_install(dest, "DISTRO=debian", "BINDIR=/opt/xb/bin", "PROGRAM=xenballoon-balancer"))
    init = os.path.join(dest, "etc/init.d/xenballoon-balancer")
    unit = os.path.join(dest, "lib/systemd/system/xenballoon-balancer.service")
    conf = os.path.join(dest, "etc/default/xenballoon-balancer.conf")
    assert os.stat(init).st_mode & 0o777 == 0o755
    assert open(conf).read() == open(os.path.join(REPO, "etc", "xenballoon-balancer.conf")).read()
    text = open(init).read()
    assert 'xb_candidates="/opt/xb/bin/xenballoon-balancer /usr/sbin/xenballoon-balancer ' in text
    assert text.replace("/opt/xb/bin/xenballoon-balancer ", "", 1) == open(BAL_SCRIPT).read()
    assert "ExecStart=/opt/xb/bin/xenballoon-balancer -f" in open(unit).read()
    assert "/usr/local/bin" not in open(unit).read()
