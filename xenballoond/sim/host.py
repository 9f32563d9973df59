"""``xenballoon-sim``: a simulated Xen host running the real daemon in K guests.

The host starts the simulated xenstored, makes K guest trees (proc/, sys/,
etc/) driven by seeded workloads and balloon driver models, runs one real
``xenballoond -f --root <guest> -c <conf>`` per guest against its own xenstored
socket and the real ``xenstore-*`` clients, plays dom0 (``xl mem-set``,
``xl mem-max``, memory/selfballoon), shows a table once a second and ends with
a summary.  SIGINT/SIGTERM stop everything it started and remove its files
(unless --keep).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence, TextIO

if TYPE_CHECKING:
    from ..xenstore.native import NativeXenstore
    from .xenstored import SimXenstored
from ..guest import meminfo as meminfo_mod
from ..guest.settings import Config, render_config
from ..contract.minimum import MIN_POLICIES, MIN_POLICY_2008
from . import balloon_model as bm
from . import cpu
from . import dom0 as dom0_mod
from . import report
from .guest import SimGuest
from .procs import Child, await_logged, stop_all
from . import vm_model
from .fake_xl import STATE as XL_STATE, read_requests as read_xl_requests
from .stall import StallModel
from .timeline import GuestSample, Timeline
from .workload import (WORKLOADS, Workload, make_idle_workload, make_ramp_workload,
                       make_turns_workload, make_workload)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
BALANCED = "balanced"
DOM0_MEM_KB = 1024 * 1024  # what xl list shows for Domain-0; not in the guests' host memory
MAX_RESTARTS_PER_GUEST = 5
RESTART_BACKOFF_S = 1.0
STARTUP_TIMEOUT_S = 60.0  # for every daemon to log "started:" before the clock runs
DOM0_PERIOD_S = 1.0
TABLE_PERIOD_S = 1.0
SWAP_TOTAL_KB = 512 * 1024
HOST_SPARE_KB = 512 * 1024
XENSTORED_THREAD = "sim-xenstored"  # the serving thread's name in xenstored.py
# the folder our package is imported from (the checkout, or site-packages)
IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def daemon_conf(backend: str, reserve_pct: int, min_policy: str = MIN_POLICY_2008) -> str:
    """The daemons' xenballoon.conf: the defaults, self-ballooning off (dom0
    switches it with memory/selfballoon), rendered by the real config module."""
    config = Config(xenstore_backend=backend, self_reserve_pct=reserve_pct, min_policy=min_policy)
    return "# written by xenballoon-sim\n" + render_config(config)


@dataclass(frozen=True)
class Options:
    guests: int
    duration_s: float
    mode: str
    seed: int
    tick_s: float
    memory_mb: int
    maxmem_mb: int
    balloon: str
    xenstore: str
    keep: bool
    json: bool
    quiet: bool
    table: str
    work_dir: str | None
    reserve_pct: int = 10
    host_mb: int | None = None
    workload: str = "random"
    balancer: str | None = None  # a program run instead of xenballoon-balancer (bench)
    ramp_mb_s: int = 64
    ramp_start_s: float = 3.0
    min_policy: str = MIN_POLICY_2008
    swap_mb: int = SWAP_TOTAL_KB // 1024
    plot: str | None = None


def _positive(kind: Callable[[str], float], what: str) -> Callable[[str], float]:
    def conv(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be > 0, not {text}")
        return value
    return conv


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="xenballoon-sim",
        description="Run the real xenballoond in simulated Xen guests on a simulated host "
                    "(simulated xenstored, balloon drivers, workloads, dom0) and report "
                    "how much memory came back and whether any guest went short.")
    p.add_argument("-g", "--guests", type=_positive(int, "--guests"), default=3,
                   help="number of guests (default 3)")
    p.add_argument("-d", "--duration", type=_positive(float, "--duration"), default=60.0,
                   help="simulated seconds to run (default 60)")
    p.add_argument("-m", "--mode", choices=(*dom0_mod.MODES, BALANCED), default="mixed",
                   help="self: every guest self-balloons; directed: dom0 sets targets; "
                        "mixed: some of each, dom0 switches guests now and then (default); "
                        "balanced: the real xenballoon-balancer runs as dom0 (with a "
                        "simulated xl) and every guest is opted in (memory/balance = 1)")
    p.add_argument("--host-mb", type=_positive(int, "--host-mb"),
                   help="the host's memory for guests: they can grow only into what is "
                        "free (default: room for every guest's memory= plus 512 MiB, "
                        "never short); a sum of maxmem above it is overcommit")
    p.add_argument("-w", "--workload", choices=WORKLOADS, default="random",
                   help="random: each guest's own seeded jobs (default); turns: the guests "
                        "take turns being busy, 15 s each, the busy one needing more than "
                        "its memory=; ramp: one program that allocates --ramp-mb-s from "
                        "t=3 s (--ramp-start-s) up to 70%% of --maxmem-mb; idle: the base "
                        "load alone, 3-12%% of memory= committed")
    p.add_argument("--balancer", metavar="PROGRAM",
                   help="with -m balanced, run PROGRAM with the balancer's arguments instead "
                        "of xenballoon-balancer (benchmarks: another policy, same I/O)")
    p.add_argument("-s", "--seed", type=int, default=1,
                   help="seed for the workloads and the dom0 script (default 1)")
    p.add_argument("--tick", type=_positive(float, "--tick"), default=0.25,
                   help="simulation step in seconds; time runs at wall-clock speed, "
                        "smaller steps follow the daemons more closely (default 0.25)")
    p.add_argument("--memory-mb", type=_positive(int, "--memory-mb"), default=1024,
                   help="each guest's memory= at boot (default 1024)")
    p.add_argument("--maxmem-mb", type=_positive(int, "--maxmem-mb"), default=2048,
                   help="each guest's maxmem= (default 2048)")
    p.add_argument("--balloon", choices=("sysfs", "proc", "mixed"), default="sysfs",
                   help="balloon driver: sysfs (Linux pvops, default), proc (2008 "
                        "/proc/xen/balloon), mixed (every third guest proc)")
    p.add_argument("--reserve-pct", type=int, choices=range(0, 101), metavar="PCT", default=10,
                   help="the daemons' XENBALLOON_SELF_RESERVE_PCT: headroom over Committed_AS "
                        "when self-ballooning, %% of memory (default 10; 0 = the 2008 policy)")
    p.add_argument("--ramp-mb-s", type=_positive(int, "--ramp-mb-s"), default=64,
                   help="the ramp workload's allocation rate, MiB/s (default 64)")
    p.add_argument("--ramp-start-s", type=_positive(float, "--ramp-start-s"), default=3.0,
                   help="when the ramp begins, simulated seconds (default 3; later: from "
                        "wherever the guest shrank to)")
    p.add_argument("--min-policy", choices=MIN_POLICIES, default=MIN_POLICY_2008,
                   help="the daemons' XENBALLOON_MIN_POLICY, and with -m balanced dom0's "
                        "memory/minpolicy: the 2008 minimum target or the adaptive one "
                        "(default 2008)")
    p.add_argument("--swap-mb", type=int, default=SWAP_TOTAL_KB // 1024, metavar="MB",
                   help="each guest's swap (default 512; 0: none, as many guests today)")
    p.add_argument("--xenstore", choices=("cli", "native"),
                   help="the daemons' XENBALLOON_XENSTORE backend (default: cli if the "
                        "xenstore-* clients are installed, else native)")
    p.add_argument("--dir", dest="work_dir", metavar="DIR",
                   help="make the guests, sockets and logs under DIR (kept) instead of a "
                        "temporary directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", action="store_true",
                   help="print only the summary, as JSON, on stdout")
    p.add_argument("--table", choices=("monitor", "sim"), default="monitor",
                   help="the live table: monitor (xenballoon-monitor's, what dom0 reads "
                        "from xenstore; default) or sim (the simulator's own view: "
                        "MemTotal against Committed_AS)")
    p.add_argument("-q", "--quiet", action="store_true", help="no live table")
    p.add_argument("--plot", metavar="FILE",
                   help="at the end, draw the run into FILE (.svg or .png): per guest its "
                        "size, balloon target, Committed_AS and dom0's target over time, "
                        "swap and OOM kills marked; the host's free memory (needs "
                        "matplotlib: pip install '.[plot]')")
    a = p.parse_args(argv)
    if a.plot is not None:
        from .plot.draw import file_format
        try:
            file_format(a.plot)
        except ValueError as exc:
            p.error(f"--plot: {exc}")
    if a.swap_mb < 0:
        p.error(f"--swap-mb must be >= 0, not {a.swap_mb}")
    if a.maxmem_mb < a.memory_mb:
        p.error(f"--maxmem-mb ({a.maxmem_mb}) must be >= --memory-mb ({a.memory_mb})")
    xenstore = a.xenstore or ("cli" if cli_tools_present() else "native")
    if a.host_mb is not None and a.host_mb < a.guests * a.memory_mb:
        p.error(f"--host-mb ({a.host_mb}) must hold every guest's memory= "
                f"({a.guests} x {a.memory_mb})")
    return Options(guests=a.guests, duration_s=a.duration, mode=a.mode, seed=a.seed,
                   tick_s=a.tick, memory_mb=a.memory_mb, maxmem_mb=a.maxmem_mb,
                   balloon=a.balloon, xenstore=xenstore, keep=a.keep or a.work_dir is not None,
                   json=a.json, quiet=a.quiet or a.json, table=a.table, work_dir=a.work_dir,
                   reserve_pct=a.reserve_pct, host_mb=a.host_mb, workload=a.workload,
                   balancer=a.balancer, ramp_mb_s=a.ramp_mb_s, swap_mb=a.swap_mb,
                   ramp_start_s=a.ramp_start_s, min_policy=a.min_policy,
                   plot=a.plot)


DAEMON_PATH = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/sbin",
                               "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])


def cli_tools_present() -> bool:
    """Whether the daemons would find the xenstore-* clients."""
    from ..xenstore.cli import TOOLS
    return all(shutil.which(t, path=DAEMON_PATH) for t in TOOLS)


def daemon_env(socket_path: str) -> dict[str, str]:
    env = dict(os.environ)
    env["XENSTORED_PATH"] = socket_path
    env["PATH"] = DAEMON_PATH
    env["PYTHONPATH"] = os.pathsep.join(p for p in (IMPORT_ROOT, env.get("PYTHONPATH")) if p)
    return env


def scratch_parent() -> str | None:
    """Where the temporary directory goes: $TMPDIR if set, else /dev/shm if
    usable, else the system default.  The guests' /proc and /sys files are
    replaced several times a second and belong in memory like the real ones:
    on ext4 every rename over an existing file forces its data out to disk
    (auto_da_alloc), 1 ms a rename here."""
    if os.environ.get("TMPDIR"):
        return None
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def balloon_kind(opts: Options, index: int) -> str:
    if opts.balloon == "mixed":
        return bm.PROC if index % 3 == 2 else bm.SYSFS
    return opts.balloon


class Host:
    """The composition root of a run.  ``setup`` makes everything, ``run`` steps
    until the duration or a stop request, ``shutdown`` undoes ``setup``."""

    def __init__(self, opts: Options, out: TextIO, err: TextIO, stop: threading.Event) -> None:
        self.opts = opts
        self.out, self.err, self.stop = out, err, stop
        self.dir: str | None = None
        self.xsd: SimXenstored | None = None
        self.guests: list[SimGuest] = []
        self.children: dict[int, Child] = {}
        self.restarts: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        self.stalls: dict[int, StallModel] = {}
        self.dom0 = dom0_mod.Dom0(())
        self.dom0_actions = {"mem-set": 0, "mem-max": 0, "selfballoon": 0}
        self.events: list[str] = []
        self.t_s = 0.0
        self.monitor_xs: NativeXenstore | None = None  # dom0's connection for the monitor table
        self.trace: TextIO | None = None
        self.max_lag_s = 0.0
        self.wall_s = 0.0
        self.cpu_start_s = 0.0
        self.cpu_s: dict[str, float | None] = {}
        self.balancer: Child | None = None
        self.dom0_root: str | None = None
        self._xl_offset = 0
        self.free_kb_seconds = 0.0
        self.timeline = Timeline()

    # --- setup / shutdown ------------------------------------------------

    def setup(self) -> None:
        from .xenstored import SimXenstored

        o = self.opts
        if o.work_dir:
            os.makedirs(o.work_dir, exist_ok=True)
            self.dir = os.path.abspath(o.work_dir)
        else:
            self.dir = tempfile.mkdtemp(prefix="xbsim-", dir=scratch_parent())
        if not o.json:
            print(f"xenballoon-sim: {o.guests} guests in {self.dir}, mode {o.mode}, "
                  f"seed {o.seed}, {o.duration_s:g} s, daemons' xenstore backend {o.xenstore}; "
                  "Ctrl-C stops", file=self.err, flush=True)
        self.xsd = SimXenstored(os.path.join(self.dir, "xs"))
        if o.keep:
            self.trace = open(os.path.join(self.dir, "trace.jsonl"), "w")
        memory_kb, maxmem_kb = o.memory_mb * 1024, o.maxmem_mb * 1024
        domids = list(range(1, o.guests + 1))
        for i, domid in enumerate(domids):
            name = f"guest{domid}"
            self.xsd.add_domain(domid, name, memory_kb, maxmem_kb)
            g = SimGuest(root=os.path.join(self.dir, name), domid=domid, name=name,
                         kind=balloon_kind(o, i), memory_kb=memory_kb, maxmem_kb=maxmem_kb,
                         workload=self._workload(i, memory_kb, maxmem_kb),
                         swap_total_kb=o.swap_mb * 1024, uptime_s=30.0 + 17.0 * i)
            g.create()
            with open(g.root.path("/etc/sysconfig/xenballoon.conf"), "w") as f:
                f.write(daemon_conf(o.xenstore, o.reserve_pct, o.min_policy))
            self.xsd.watch(f"/local/domain/{domid}/memory/target", g.on_target_watch)
            if o.mode == BALANCED:  # the toolstack opts it in; only dom0 may write memory/
                self.xsd.write(f"/local/domain/{domid}/memory/balance", "1")
                if o.min_policy != MIN_POLICY_2008:  # the balancer's floor: the guest's
                    self.xsd.write(f"/local/domain/{domid}/memory/minpolicy", o.min_policy)
            self.guests.append(g)
            self.stalls[domid] = StallModel()
        if o.mode != BALANCED:
            self.dom0 = dom0_mod.Dom0(dom0_mod.plan(o.mode, o.seed, domids, o.duration_s))
        self.xsd.start()
        self._dom0_pass()  # the modes at t=0, before any daemon looks
        for g in self.guests:
            self._start_daemon(g)
        if o.mode == BALANCED:
            self._start_balancer()
        # The clock starts once every daemon has started: on a loaded machine Python's start
        # alone can take seconds, which a short run would otherwise count as the daemon's doing.
        starting = list(self.children.values()) + ([self.balancer] if self.balancer else [])
        for c in await_logged(starting, b"started: ", STARTUP_TIMEOUT_S):
            self._event(f"{c.argv[0]} {' '.join(c.argv[1:3])} not started after "
                        f"{STARTUP_TIMEOUT_S:g} s")

    def _start_balancer(self) -> None:
        """The real balancer as dom0, in its own root, with the simulated xl."""
        assert self.xsd is not None and self.dir is not None
        top = self.dom0_root = os.path.join(self.dir, "dom0")
        for sub in ("bin", "etc/sysconfig", "var/run", "var/log"):
            os.makedirs(os.path.join(top, sub), exist_ok=True)
        xl = os.path.join(top, "bin", "xl")
        with open(xl, "w") as f:
            f.write(f"#!/bin/sh\nexec {sys.executable} -m xenballoond.sim.fake_xl \"$@\"\n")
        os.chmod(xl, 0o755)
        conf = os.path.join(top, "etc/sysconfig/xenballoon-balancer.conf")
        with open(conf, "w") as f:
            f.write(f"# written by xenballoon-sim\nXENBALLOON_BALANCER_XL={xl}\n"
                    f"XENBALLOON_XENSTORE={self.opts.xenstore}\n")
        self._write_xl_state()
        program = ([self.opts.balancer] if self.opts.balancer
                   else [sys.executable, "-m", "xenballoond.dom0.balancer"])
        env = daemon_env(self.xsd.dom0_socket)
        env["XBSIM_XL_DIR"] = top
        self.balancer = Child([*program, "-f", "--root", top, "-c", conf], env,
                              os.path.join(top, "var/log/xenballoon-balancer.log"))
        self.balancer.start()

    def host_total_kb(self) -> int:
        if self.opts.host_mb is not None:
            return self.opts.host_mb * 1024
        return sum(g.stats.boot_kb for g in self.guests) + HOST_SPARE_KB

    def _write_xl_state(self) -> None:
        """What the simulated xl reports (sim/fake_xl.py)."""
        if self.dom0_root is None:
            return
        from .guest import write_atomic
        doc = {"total_kb": self.host_total_kb() + DOM0_MEM_KB, "free_kb": self.host_free_kb(),
               "domains": [{"domid": 0, "name": "Domain-0", "mem_kb": DOM0_MEM_KB}]
               + [{"domid": g.domid, "name": g.name, "mem_kb": g.driver.current_kb}
                  for g in self.guests]}
        write_atomic(os.path.join(self.dom0_root, XL_STATE), json.dumps(doc))

    def _apply_xl_requests(self) -> None:
        """``xl mem-set`` from the balancer, as libxl does it: maxmem = target +
        1 MiB, then memory/target."""
        if self.dom0_root is None:
            return
        requests, self._xl_offset = read_xl_requests(self.dom0_root, self._xl_offset)
        for verb, domid, kb in requests:
            self._apply(dom0_mod.MemSet(domid, kb) if verb == "mem-set"
                        else dom0_mod.MemMax(domid, kb))

    def _workload(self, index: int, memory_kb: int, maxmem_kb: int) -> Workload:
        o = self.opts
        if o.workload == "ramp":
            return make_ramp_workload(memory_kb, o.ramp_mb_s * 1024, maxmem_kb * 7 // 10,
                                      o.ramp_start_s)
        if o.workload == "idle":
            return make_idle_workload(o.seed, index, memory_kb)
        if o.workload == "turns":
            return make_turns_workload(o.seed, index, o.guests, memory_kb, o.duration_s)
        return make_workload(o.seed, index, memory_kb, o.duration_s)

    def _start_daemon(self, g: SimGuest) -> None:
        assert self.xsd is not None
        child = self.children.get(g.domid)
        if child is None:
            argv = [sys.executable, "-m", "xenballoond.guest", "-f", "--root", g.top,
                    "-c", g.root.path("/etc/sysconfig/xenballoon.conf")]
            child = Child(argv, daemon_env(self.xsd.socket_path(g.domid)),
                          g.root.path("/var/log/xenballoond.log"))
            self.children[g.domid] = child
        child.start()

    def shutdown(self) -> None:
        for stall in self.stalls.values():
            stall.release()
        killed = stop_all(list(self.children.values())
                          + ([self.balancer] if self.balancer is not None else []))
        for c in killed:
            print(f"xenballoon-sim: {c.argv[0]} (pid {c.pid}) needed SIGKILL", file=self.err)
        if self.monitor_xs is not None:
            self.monitor_xs.close()
        if self.xsd is not None:
            self.xsd.stop()
        if self.trace is not None:
            self.trace.close()
        if self.dir and not self.opts.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- the loop --------------------------------------------------------

    def run(self) -> None:
        o = self.opts
        start = time.monotonic()
        self.cpu_start_s = cpu.cpu_s() or 0.0
        xenstored_start_s = cpu.thread_cpu_s(XENSTORED_THREAD) or 0.0
        step = 0
        next_dom0_s = DOM0_PERIOD_S
        next_table_s = 0.0
        self._sample()
        while not self.stop.is_set():
            t_s = (step + 1) * o.tick_s
            if t_s > o.duration_s + 1e-9:
                break
            lag_s = time.monotonic() - (start + t_s)
            if lag_s < 0:
                if self.stop.wait(-lag_s):
                    break
            else:
                self.max_lag_s = max(self.max_lag_s, lag_s)
            step += 1
            self.t_s = t_s
            self._apply_xl_requests()
            room_kb = self.host_free_kb() if o.host_mb is not None else None
            for g in self.guests:
                before_kb = g.driver.current_kb
                g.step(t_s, o.tick_s, self._memory_target_reader(g.domid), room_kb)
                if room_kb is not None:
                    room_kb -= g.driver.current_kb - before_kb
                child = self.children.get(g.domid)
                self.stalls[g.domid].step(child.pid if child else None,
                                          vm_model.under_pressure(g.vm, g.driver.memtotal_kb),
                                          o.tick_s)
            self.free_kb_seconds += self.host_free_kb() * o.tick_s
            self._sample()
            self._write_xl_state()
            if self.balancer is not None and self.balancer.exited() is not None:
                self._event(f"xenballoon-balancer exited with status {self.balancer.exited()}")
                self.balancer.proc = None
            if t_s + 1e-9 >= next_dom0_s:
                self._dom0_pass()
                next_dom0_s += DOM0_PERIOD_S
            self._supervise(time.monotonic())
            if t_s + 1e-9 >= next_table_s:
                if not o.quiet:
                    self._show_table()
                self._trace_rows()
                next_table_s += TABLE_PERIOD_S
        self.wall_s = time.monotonic() - start
        host_s, xenstored_s = cpu.cpu_s(), cpu.thread_cpu_s(XENSTORED_THREAD)
        self.cpu_s = {
            "host_cpu_s": None if host_s is None else round(host_s - self.cpu_start_s, 3),
            "xenstored_cpu_s": None if xenstored_s is None
            else round(xenstored_s - xenstored_start_s, 3)}

    def _memory_target_reader(self, domid: int) -> Callable[[], str | None]:
        path = f"/local/domain/{domid}/memory/target"
        return lambda: self.xsd.get(path) if self.xsd is not None else None

    def _supervise(self, now: float) -> None:
        for g in self.guests:
            child = self.children.get(g.domid)
            if child is None:
                continue
            if g.domid in self.restart_at:
                if now >= self.restart_at[g.domid]:
                    del self.restart_at[g.domid]
                    self._start_daemon(g)
                continue
            status = child.exited()
            if status is None:
                continue
            child.exits.append(status)
            n = self.restarts.get(g.domid, 0)
            self._event(f"xenballoond in dom{g.domid} exited with status {status}")
            if n >= MAX_RESTARTS_PER_GUEST:
                continue
            self.restarts[g.domid] = n + 1
            self.restart_at[g.domid] = now + RESTART_BACKOFF_S
            child.proc = None

    # --- dom0 ------------------------------------------------------------

    def _published_meminfo(self, domid: int) -> dict[str, int]:
        assert self.xsd is not None
        for rel in ("data/xenballoon/meminfo", "memory/meminfo"):
            text = self.xsd.get(f"/local/domain/{domid}/{rel}")
            if text:
                return meminfo_mod.parse_meminfo(text)
        return {}

    def _views(self) -> list[dom0_mod.GuestView]:
        assert self.xsd is not None
        views = []
        for g in self.guests:
            fields = self._published_meminfo(g.domid)
            raw = self.xsd.get(f"/local/domain/{g.domid}/memory/target") or ""
            target_kb = int(raw) if raw.isdigit() else g.driver.current_kb
            views.append(dom0_mod.GuestView(
                domid=g.domid, current_kb=g.driver.current_kb,
                static_max_kb=g.driver.static_max_kb, target_kb=target_kb,
                cap_kb=g.driver.cap_kb - bm.LIBXL_MAXMEM_SLACK_KB,
                memtotal_kb=fields.get("MemTotal"), committed_kb=fields.get("Committed_AS")))
        return views

    def _dom0_pass(self) -> None:
        if self.opts.mode == BALANCED:
            return  # the real balancer is dom0
        for a in self.dom0.decide(self.t_s, self._views()):
            self._apply(a)

    def _apply(self, a: dom0_mod.Action) -> None:
        assert self.xsd is not None
        g = {g.domid: g for g in self.guests}[a.domid]
        home = f"/local/domain/{a.domid}"
        if isinstance(a, dom0_mod.MemSet):
            g.set_cap_kb(a.target_kb + bm.LIBXL_MAXMEM_SLACK_KB)
            self.xsd.write(f"{home}/memory/target", str(a.target_kb))
            self.dom0_actions["mem-set"] += 1
            g.stats.dom0_target_sets += 1
            self._event(f"xl mem-set {g.name} {a.target_kb // 1024}m", quiet=True)
        elif isinstance(a, dom0_mod.MemMax):
            g.set_cap_kb(a.maxmem_kb + bm.LIBXL_MAXMEM_SLACK_KB)
            self.xsd.write(f"{home}/memory/static-max", str(a.maxmem_kb))
            self.dom0_actions["mem-max"] += 1
            self._event(f"xl mem-max {g.name} {a.maxmem_kb // 1024}m")
        elif isinstance(a, dom0_mod.SetSelfballoon):
            self.xsd.write(f"{home}/memory/selfballoon", "1" if a.on else "0")
            self.dom0_actions["selfballoon"] += 1
            self._event(f"{g.name}: memory/selfballoon = {1 if a.on else 0}")

    def _trace_rows(self) -> None:
        if self.trace is None:
            return
        for r in self.rows():
            self.trace.write(json.dumps({"t_s": round(self.t_s, 3), "domid": r.domid,
                                         "policy": r.policy, "current_kb": r.current_kb,
                                         "target_kb": r.target_kb, "memtotal_kb": r.memtotal_kb,
                                         "committed_kb": r.committed_kb}) + "\n")

    def _sample(self) -> None:
        assert self.xsd is not None
        samples = []
        for g in self.guests:
            raw = self.xsd.get(f"/local/domain/{g.domid}/memory/target") or ""
            samples.append(GuestSample(
                domid=g.domid, name=g.name, current_kb=g.driver.current_kb,
                target_kb=g.driver.target_kb, committed_kb=g.demand.committed_kb,
                dom0_target_kb=int(raw) if raw.isdigit() else None,
                swapped_out_pages=g.swapped_out_pages, swapped_in_pages=g.swapped_in_pages,
                oom_kills=g.vm.counters.oom_kill))
        self.timeline.record(self.t_s, self.host_free_kb(), samples)

    def _event(self, text: str, quiet: bool = False) -> None:
        if self.trace is not None:
            self.trace.write(json.dumps({"t_s": round(self.t_s, 3), "dom0": text}) + "\n")
        self.events.append(f"t={self.t_s:.1f}s {text}")
        del self.events[:-4]
        if not quiet and self.opts.quiet and not self.opts.json:
            print(f"xenballoon-sim: {self.events[-1]}", file=self.err)

    # --- output ----------------------------------------------------------

    def rows(self) -> list[report.GuestRow]:
        rows = []
        for g in self.guests:
            s, d = g.stats, g.driver
            child = self.children.get(g.domid)
            rows.append(report.GuestRow(
                domid=g.domid, name=g.name, balloon=g.kind,
                policy="self" if self.dom0.self_ballooning.get(g.domid) else "directed",
                boot_kb=s.boot_kb, current_kb=d.current_kb, target_kb=d.target_kb,
                memtotal_kb=d.memtotal_kb, committed_kb=g.demand.committed_kb,
                min_kb=s.min_kb, avg_kb=int(s.kb_seconds / s.seconds) if s.seconds else s.boot_kb,
                below_committed_s=s.below_committed_s, worst_deficit_kb=s.worst_deficit_kb,
                swapped_in_pages=g.swapped_in_pages, swapped_out_pages=g.swapped_out_pages,
                oom_kills=g.vm.counters.oom_kill, target_writes=s.target_writes,
                dom0_target_sets=s.dom0_target_sets, target_moves=s.target_moves,
                cover_delays_s=tuple(round(x, 3) for x in s.cover_delays_s),
                daemon_restarts=self.restarts.get(g.domid, 0),
                daemon_pid=child.pid if child is not None else None))
        return rows

    def host_free_kb(self) -> int:
        """The simulated host's free memory: --host-mb (default: room for every
        guest's boot memory plus HOST_SPARE_KB), less what the guests hold now."""
        return self.host_total_kb() - sum(g.driver.current_kb for g in self.guests)

    def _monitor_text(self) -> str:
        """xenballoon-monitor's table, read as dom0 over the wire like the real one."""
        from ..dom0 import monitor
        from ..dom0.hostinfo import FreeMemory
        from ..dom0.table import render_text
        from ..xenstore import XenstoreError
        from ..xenstore.native import NativeXenstore

        assert self.xsd is not None
        if self.monitor_xs is None:
            self.monitor_xs = NativeXenstore(socket_path=self.xsd.dom0_socket)
        free = FreeMemory(self.host_free_kb() // 1024, "sim")
        try:
            snap = monitor.refresh(self.monitor_xs, None)
        except XenstoreError as exc:
            return f"xenballoon-monitor: cannot read xenstore: {exc}\n"
        return render_text(snap.rows, free, snap.missing)

    def _show_table(self) -> None:
        if self.opts.table == "monitor":
            rows = self.rows()
            below_s = sum(r.below_committed_s for r in rows)
            text = (f"xenballoon-sim  t={self.t_s:6.1f}s  mode={self.opts.mode}  "
                    f"seed={self.opts.seed}  given back: "
                    f"{sum(r.boot_kb - r.current_kb for r in rows) // 1024} MiB  "
                    f"below Committed_AS: {below_s:.1f} s  "
                    f"restarts: {sum(self.restarts.values())}\n"
                    + self._monitor_text()
                    + "".join(f"  dom0: {e}\n" for e in self.events))
        else:
            text = report.table(self.t_s, self.opts.mode, self.opts.seed, self.rows(),
                                self.events)
        if self.out.isatty():
            self.out.write("\033[H\033[2J" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def summary(self, interrupted: bool) -> dict[str, object]:
        return report.summary(
            mode=self.opts.mode, seed=self.opts.seed, tick_s=self.opts.tick_s,
            simulated_s=self.t_s, wall_s=self.wall_s, interrupted=interrupted,
            rows=self.rows(), dom0_actions=self.dom0_actions, max_lag_s=self.max_lag_s,
            work_dir=self.dir if self.opts.keep else None, cpu_s=self.cpu_s,
            host_free_avg_kb=int(self.free_kb_seconds / self.t_s) if self.t_s else None,
            workload=self.opts.workload,
            timeline=self.timeline.as_json({g.domid: g.uncovered_spells_s(self.t_s)
                                            for g in self.guests}))


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.plot is not None:
        from .plot.draw import PlotUnavailable, require_matplotlib
        try:
            require_matplotlib()  # now, not after the run
        except PlotUnavailable as exc:
            print(f"xenballoon-sim: --plot: {exc}", file=sys.stderr)
            return EXIT_FAIL
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    host = Host(opts, sys.stdout, sys.stderr, stop)
    status = EXIT_OK
    try:
        try:
            host.setup()
        except (OSError, ValueError) as exc:  # ValueError: e.g. a socket path too long
            print(f"xenballoon-sim: cannot set up the host: {exc}", file=sys.stderr)
            status = EXIT_FAIL
        else:
            host.run()
    finally:
        host.shutdown()
        for s, handler in old.items():
            signal.signal(s, handler)
    if status != EXIT_OK:
        return status
    summary = host.summary(interrupted=bool(received))
    if opts.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.summary_text(summary))
    sys.stdout.flush()
    if opts.plot is not None and not write_plot(summary, opts.plot, opts.json):
        return EXIT_FAIL
    return EXIT_INTERRUPTED if received else EXIT_OK


def write_plot(summary: dict[str, object], path: str, quiet: bool) -> bool:
    """Draw the run into ``path``; False (and why, on stderr) if it could not be."""
    from .plot import draw, series
    try:
        draw.draw(series.run_figure(summary), path)
    except (OSError, ValueError) as exc:
        print(f"xenballoon-sim: cannot plot to {path}: {exc}", file=sys.stderr)
        return False
    if not quiet:
        print(f"xenballoon-sim: plotted to {path}", file=sys.stderr)
    return True


if __name__ == "__main__":
    sys.exit(main())
