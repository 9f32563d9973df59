#!/usr/bin/python3
"""Issue 22 on the real host: both units under systemd as PID 1.

Run by e2e-systemd.service (systemd-phase) once dom0's /init has exec'd systemd, after every
other scenario: dom0's packages were installed again under systemd (their postinst started
xenballoon-balancer.service), and this boots the guest with systemd as its init too
(e2e_init=systemd: init2 execs it; the package's postinst had enabled xenballoond.service).
The units are the packages' own, as installed.  Scenarios, each reported as dom0_driver.py
reports its own (E2E RESULT lines, checked by tests/e2e/test_real_xen.py):

  sd_dom0      systemd in dom0; the balancer unit started by the install, its sandbox
               (then kill -STOP of the balancer, whose watchdog restart is timed beside the
               next four)
  sd_guest     the guest (B's disk, the packages on it) booted under systemd;
               xenballoond.service started by it, in its sandbox: the balloon's sysfs target
               written, /dev/xen/xenbus (native), the PID file, published keys
  sd_reload    systemctl reload with a changed config (STATUS= follows), then a bad one:
               refused, the reason in journalctl -u, the daemon running on the old config
  sd_kill9     kill -9 of the guest's daemon: restarted
  sd_watchdog  kill -STOP of the guest's daemon: each unit's watchdog restarted its own (timed)
  sd_balancer  the guest directed and opted in: the balancer's xl mem-set from its sandbox;
               its reload and bad reload, and kill -9
  sd_stop      systemctl stop, disable, enable --now (guest) and stop (dom0)

Standard library and dom0_driver.py's helpers only.
"""
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dom0_driver as d  # noqa: E402
from dom0_driver import data, emit, local_sh, result, run, say  # noqa: E402

GUEST_UNIT = "xenballoond.service"
BAL_UNIT = "xenballoon-balancer.service"
GUEST_CONF = d.CONF                                  # /etc/default/xenballoon.conf
BAL_CONF = "/etc/default/xenballoon-balancer.conf"   # the package's conffile
BAL_PIDFILE = "/var/run/xenballoon-balancer.pid"
PKG_DIR = "/run/e2e-pkg-systemd"                     # systemd-phase's e2e-pkg records
B_ROOT = "/guest/root-b.img"  # the balancer scenario's B disk, moved there by dom0's /init
EXTRA = 'extra="console=hvc0 sysrq_always_enabled rdinit=/init quiet e2e_init=systemd"'
# what the unit's sandbox would make a daemon say if it got in the way
DENIED = re.compile(r"Permission denied|Operation not permitted|Read-only file system|"
                    r"Bad system call|No such device|Traceback", re.I)
BOOT_LIMIT_S = 300      # xl create to the agent's answer, systemd booting in the guest
START_LIMIT_S = 90      # a unit's start (Type=notify: READY=1 after the first tick)
COVER_LIMIT_S = 60      # the balancer's xl mem-set landing in xl list
# kill -STOP to the new process READY: WatchdogSec, TimeoutAbortSec (a stopped process takes
# SIGABRT only when killed), RestartSec, the start; the limit is the units' sum and a start
WATCHDOG_LIMIT_S = 240


def unit_props(sh, unit, names):
    """{property: value} of `systemctl show`, through sh(cmd) (dom0's shell or the guest's)."""
    out = sh("systemctl show -p %s %s" % (",".join(names), unit))
    return dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)


def restart_after(unit, signal, limit_s):
    """A shell script: send signal to the unit's main process, then wait for a new main process
    to be active (for Type=notify: READY=1 sent).  Prints old=, new=, restart_s= (uptime's
    clock, 0.2 s steps), nrestarts=, or gave_up_s= at limit_s."""
    return ("u=%(u)s; old=$(systemctl show -p MainPID --value $u); t0=$(cut -d' ' -f1 /proc/uptime);"
            " kill -%(sig)s $old; while :; do new=$(systemctl show -p MainPID --value $u);"
            " now=$(cut -d' ' -f1 /proc/uptime);"
            " if [ \"$new\" != \"$old\" ] && [ \"$new\" != 0 ] && [ \"$(systemctl is-active $u)\" = active ];"
            " then echo old=$old new=$new restart_s=$(awk -v a=$t0 -v b=$now 'BEGIN{printf \"%%.1f\", b-a}')"
            " nrestarts=$(systemctl show -p NRestarts --value $u); break; fi;"
            " if awk -v a=$t0 -v b=$now 'BEGIN{exit !(b-a > %(lim)d)}'; then echo old=$old new=$new"
            " gave_up_s=%(lim)d state=$(systemctl is-active $u); kill -CONT $old 2>/dev/null; break; fi;"
            " sleep 0.2; done" % {"u": unit, "sig": signal, "lim": limit_s})


def stop_unit(unit, pidfile):
    """A shell command: systemctl stop; prints rc=, state= and pidfile=present|gone."""
    return ("systemctl stop %s; echo rc=$? state=$(systemctl is-active %s)"
            " pidfile=$(test -e %s && echo present || echo gone)" % (unit, unit, pidfile))


def settled(sh, unit):
    """The unit's state once no job is under way (Type=notify: active once READY=1 came)."""
    state = sh("systemctl is-active %s" % unit).strip()
    return None if state in ("", "activating", "deactivating", "reloading") else state


def kv(text):
    """'a=1 b=2' (the last line that has any) as a dict."""
    for ln in reversed(text.strip().splitlines()):
        if "=" in ln:
            return dict(p.split("=", 1) for p in ln.split() if "=" in p)
    return {}


def wait_until(check, timeout_s, what, step_s=0.5):
    """check()'s first true value within timeout_s, else RuntimeError naming what."""
    t_end = time.monotonic() + timeout_s
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > t_end:
            raise RuntimeError("timed out after %d s waiting for %s" % (timeout_s, what))
        time.sleep(step_s)


def proc_facts(sh, pid):
    """What the kernel says of a process's confinement and size."""
    out = sh("grep -E '^(NoNewPrivs|Seccomp|CapBnd|CapEff|VmRSS|VmLck):' /proc/%s/status;"
             " echo oom_score_adj: $(cat /proc/%s/oom_score_adj)" % (pid, pid))
    facts = {}
    for ln in out.splitlines():
        k, _, v = ln.partition(":")
        if v.strip():
            facts[k.strip().lower()] = v.split()[0]
    return facts


def exposure(sh, unit):
    """systemd-analyze security's overall exposure of the loaded unit, e.g. '1.9'."""
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)",
                  sh("systemd-analyze security --no-pager %s 2>&1 | tail -3" % unit))
    return m.group(1) if m else None


def journal(sh, unit, since=""):
    """The unit's journal, messages only."""
    return sh("journalctl -u %s -o cat --no-pager %s 2>&1 | tail -n 60" % (unit, since))


def denials(text):
    return [ln for ln in text.splitlines() if DENIED.search(ln)]


class SystemdDriver:
    def __init__(self):
        self.g = None
        self.bal_watchdog = (threading.Thread(), {})  # stop_balancer's

    def gsh(self, cmd, timeout_s=60):
        return self.g.out(cmd, timeout_s=timeout_s)

    @staticmethod
    def dsh(cmd, timeout_s=120):
        return local_sh(cmd, timeout=timeout_s)

    # -- scenarios ------------------------------------------------------------------------
    def s_dom0(self, name):
        """systemd is dom0's PID 1; the packages installed under it started the balancer."""
        rec = d.parse_record(self.dsh("cat %s/install.txt" % PKG_DIR).strip())
        state = wait_until(lambda: settled(self.dsh, BAL_UNIT), START_LIMIT_S,
                           "the balancer's unit to be started")
        p = unit_props(self.dsh, BAL_UNIT, ("Type", "MainPID", "StatusText", "NRestarts",
                                            "WatchdogUSec", "UnitFileState"))
        pid = p.get("MainPID", "0")
        pidfile = self.dsh("cat %s 2>&1" % BAL_PIDFILE).strip()
        log = journal(self.dsh, BAL_UNIT)
        data(name, "journal", log.splitlines())
        result(name, bool(rec), pid1=open("/proc/1/comm").read().strip(),
               system_state=self.dsh("systemctl is-system-running").strip(),
               install_rc=rec.get("rc"), install_s=rec.get("seconds"), state=state,
               enabled=p.get("UnitFileState"), type=p.get("Type"), main_pid=pid,
               pidfile_pid=pidfile, status_text=p.get("StatusText"),
               watchdog_usec=p.get("WatchdogUSec"), nrestarts=p.get("NRestarts"),
               exposure=exposure(self.dsh, BAL_UNIT), denials=len(denials(log)),
               **proc_facts(self.dsh, pid))

    def s_guest(self, name):
        """The guest booted with systemd as PID 1; xenballoond.service started at boot."""
        t0 = time.monotonic()
        disks = []
        if os.path.exists(B_ROOT):  # B's disk, its packages installed (not purged, as A's)
            loop = run(["losetup", "-f"], check=True).stdout.strip()
            run(["losetup", loop, B_ROOT], check=True)
            disks = ['disk=["%s", "%s"]' % (d.BAL_DISK % loop, (d.BAL_DISK % "/dev/loop1").replace("xvda", "xvdb"))]
        p = run(["xl", "create", d.GUEST_CFG, EXTRA] + disks, timeout=300)
        if p.returncode != 0:
            raise RuntimeError("xl create failed: " + p.stderr.strip()[-500:])
        self.g = d.Guest(d.xl_domid())
        wait_until(lambda: self.g.read("data/e2e/ready"), BOOT_LIMIT_S, "the agent (e2e-agent.service)")
        agent_s = time.monotonic() - t0
        state = wait_until(lambda: settled(self.gsh, GUEST_UNIT), START_LIMIT_S,
                           "xenballoond.service to be started")
        props = unit_props(self.gsh, GUEST_UNIT, ("Type", "MainPID", "StatusText", "NRestarts",
                                                  "WatchdogUSec", "UnitFileState"))
        pid = props.get("MainPID", "0")
        # the self-ballooning daemon's first targets: the balloon comes down from 384 MiB
        try:
            snap = wait_until(lambda: (lambda s: s if s["target_kb"] < 384 * d.MIB_KB else None)(
                self.g.snap()), 60, "the daemon to write a balloon target below the 393216 kB booted with")
        finally:
            log = journal(self.gsh, GUEST_UNIT)
            data(name, "journal", log.splitlines())
        fds = self.gsh("ls -l /proc/%s/fd 2>&1" % pid)
        result(name, True, agent_s=agent_s, disk="root-b" if disks else "root",
               pid1=self.gsh("cat /proc/1/comm").strip(),
               state=state, enabled=props.get("UnitFileState"), type=props.get("Type"),
               main_pid=pid, pidfile_pid=self.gsh("cat %s 2>&1" % d.PIDFILE).strip(),
               status_text=props.get("StatusText"), watchdog_usec=props.get("WatchdogUSec"),
               nrestarts=props.get("NRestarts"), target_kb=snap["target_kb"],
               cur_kb=snap["cur_kb"], xenbus_fd=int("/dev/xen/xenbus" in fds),
               selftarget=self.g.read("data/xenballoon/selftarget") or self.g.read("memory/selftarget"),
               status_line=int("Status:" in self.gsh("systemctl status --no-pager %s" % GUEST_UNIT)),
               exposure=exposure(self.gsh, GUEST_UNIT), denials=len(denials(log)),
               **proc_facts(self.gsh, pid))

    def s_reload(self, name):
        """A good config, reloaded: STATUS= follows it.  A bad one: refused, the reason in the
        unit's journal, the daemon running on with the good one."""
        try:
            self.reload(name)
        finally:
            data(name, "journal", journal(self.gsh, GUEST_UNIT).splitlines())

    def reload(self, name):
        pid = unit_props(self.gsh, GUEST_UNIT, ("MainPID",))["MainPID"]
        # self-ballooning, the interval in force is XENBALLOON_SELF_INTERVAL's (directed, from
        # sd_balancer on, XENBALLOON_INTERVAL's): both
        good = self.gsh("sed -i -e 's/^XENBALLOON_SELF_INTERVAL=.*/XENBALLOON_SELF_INTERVAL=2/'"
                        " -e 's/^XENBALLOON_INTERVAL=.*/XENBALLOON_INTERVAL=2/' %s &&"
                        " systemctl reload %s; echo rc=$?" % (GUEST_CONF, GUEST_UNIT))
        status = wait_until(lambda: (lambda t: t if "every 2 s" in t else None)(
            unit_props(self.gsh, GUEST_UNIT, ("StatusText",)).get("StatusText", "")),
            30, "STATUS= to say 'every 2 s' after the reload")
        # a value the parser refuses, as the last assignment: the file, line, key and value named
        lines = int(self.gsh("wc -l < %s" % GUEST_CONF).strip()) + 1
        bad = self.gsh("echo XENBALLOON_INTERVAL=soon >> %s && systemctl reload %s; echo rc=$?"
                       % (GUEST_CONF, GUEST_UNIT))
        time.sleep(2)
        after = unit_props(self.gsh, GUEST_UNIT, ("MainPID", "ActiveState", "StatusText"))
        log = journal(self.gsh, GUEST_UNIT)
        said = [ln for ln in log.splitlines() if "soon" in ln]
        data(name, "said", said)
        self.gsh("sed -i '$d' %s && systemctl reload %s" % (GUEST_CONF, GUEST_UNIT))
        result(name, True, good_rc=kv(good).get("rc"), status_after_good=status,
               bad_rc=kv(bad).get("rc"), bad_line=lines, pid_before=pid,
               pid_after=after.get("MainPID"), state_after=after.get("ActiveState"),
               status_after_bad=after.get("StatusText"), said=len(said),
               said_line=said[0] if said else "")

    def s_kill9(self, name):
        out = self.gsh(restart_after(GUEST_UNIT, "KILL", WATCHDOG_LIMIT_S), timeout_s=WATCHDOG_LIMIT_S + 30)
        result(name, True, **kv(out))

    def s_balancer(self, name):
        """The guest directed and opted in through the package's config: the balancer, in its
        sandbox, sets its target with xl mem-set; then its own reloads and a kill -9."""
        try:
            self.balancer(name)
        finally:
            data(name, "journal", journal(self.dsh, BAL_UNIT).splitlines())
            data(name, "guest_journal", journal(self.gsh, GUEST_UNIT).splitlines())

    def balancer(self, name):
        self.gsh("sed -i 's/^XENBALLOON_SELF=.*/XENBALLOON_SELF=false/' %s && systemctl restart %s"
                 % (GUEST_CONF, GUEST_UNIT), timeout_s=START_LIMIT_S)
        t0 = time.monotonic()
        mark = self.dsh("date +'%Y-%m-%d %H:%M:%S'").strip()
        good = self.dsh("sed -i \"s/^XENBALLOON_BALANCE_GUESTS=.*/XENBALLOON_BALANCE_GUESTS='guest'/\" %s"
                        " && systemctl reload %s; echo rc=$?" % (BAL_CONF, BAL_UNIT))
        pat = re.compile(r"dom %d guest: target (\d+) -> (\d+) kB" % self.g.domid)

        def moved():
            for ln in journal(self.dsh, BAL_UNIT, "--since '%s'" % mark).splitlines():
                m = pat.search(ln)
                if m and m.group(1) != m.group(2):
                    return m
            return None
        m = wait_until(moved, COVER_LIMIT_S, "the balancer to set the opted-in guest's target")
        set_s = time.monotonic() - t0
        to_kb = int(m.group(2))
        xl_mb = wait_until(lambda: (lambda mb: mb if abs(mb * d.MIB_KB - to_kb) <= 2 * d.MIB_KB else None)(
            d.xl_mem_mb()), COVER_LIMIT_S, "xl list to show the guest at %d kB" % to_kb)
        pid = unit_props(self.dsh, BAL_UNIT, ("MainPID",))["MainPID"]
        bad = self.dsh("echo XENBALLOON_BALANCER_INTERVAL=-3 >> %s && systemctl reload %s; echo rc=$?"
                       % (BAL_CONF, BAL_UNIT))
        time.sleep(2)
        after = unit_props(self.dsh, BAL_UNIT, ("MainPID", "ActiveState"))
        log = journal(self.dsh, BAL_UNIT)
        said = [ln for ln in log.splitlines() if "XENBALLOON_BALANCER_INTERVAL" in ln and "-3" in ln]
        self.dsh("sed -i '$d' %s && systemctl reload %s" % (BAL_CONF, BAL_UNIT))
        kill9 = kv(self.dsh(restart_after(BAL_UNIT, "KILL", WATCHDOG_LIMIT_S), WATCHDOG_LIMIT_S + 30))
        log = journal(self.dsh, BAL_UNIT)
        result(name, True, reload_rc=kv(good).get("rc"), set_s=set_s, from_kb=m.group(1),
               to_kb=to_kb, xl_mb=xl_mb, bad_rc=kv(bad).get("rc"), pid_before=pid,
               pid_after=after.get("MainPID"), state_after=after.get("ActiveState"),
               said=len(said), said_line=said[0] if said else "",
               denials=len(denials(log)), **{"kill9_" + k: v for k, v in kill9.items()})

    def stop_balancer(self):
        """kill -STOP of the balancer, in a thread: its watchdog restart (WatchdogSec=120) is
        timed while the guest boots and plays its scenarios; s_watchdog collects it."""
        out = {}

        def play():
            out.update(kv(self.dsh(restart_after(BAL_UNIT, "STOP", WATCHDOG_LIMIT_S),
                                   WATCHDOG_LIMIT_S + 30)))
        self.bal_watchdog = (threading.Thread(target=play, daemon=True), out)
        self.bal_watchdog[0].start()

    def s_watchdog(self, name):
        """kill -STOP of both daemons (the balancer's since stop_balancer); each unit's watchdog
        restarts its own."""
        guest = kv(self.gsh(restart_after(GUEST_UNIT, "STOP", WATCHDOG_LIMIT_S), WATCHDOG_LIMIT_S + 30))
        thread, dom0 = self.bal_watchdog
        thread.join(WATCHDOG_LIMIT_S + 60)
        said = {"guest": [ln for ln in journal(self.gsh, GUEST_UNIT).splitlines() if "atchdog" in ln],
                "dom0": [ln for ln in journal(self.dsh, BAL_UNIT).splitlines() if "atchdog" in ln]}
        data(name, "said", said)
        result(name, True, guest_watchdog_said=len(said["guest"]), dom0_watchdog_said=len(said["dom0"]),
               **dict([("guest_" + k, v) for k, v in guest.items()]
                      + [("dom0_" + k, v) for k, v in dom0.items()]))

    def s_stop(self, name):
        g_stop = self.gsh(stop_unit(GUEST_UNIT, d.PIDFILE))
        g_dis = self.gsh("systemctl disable %s 2>&1; echo rc=$? enabled=$(systemctl is-enabled %s)"
                         % (GUEST_UNIT, GUEST_UNIT))
        g_en = self.gsh("t0=$(cut -d' ' -f1 /proc/uptime); systemctl enable --now %s 2>&1; rc=$?;"
                        " echo rc=$rc enabled=$(systemctl is-enabled %s) state=$(systemctl is-active %s)"
                        " start_s=$(awk -v a=$t0 -v b=$(cut -d' ' -f1 /proc/uptime) 'BEGIN{printf \"%%.1f\", b-a}')"
                        % (GUEST_UNIT, GUEST_UNIT, GUEST_UNIT), timeout_s=START_LIMIT_S)
        d_stop = self.dsh(stop_unit(BAL_UNIT, BAL_PIDFILE))
        fig = {}
        for prefix, out in (("guest_stop_", g_stop), ("guest_disable_", g_dis),
                            ("guest_enable_", g_en), ("dom0_stop_", d_stop)):
            fig.update((prefix + k, v) for k, v in kv(out).items())
        result(name, True, **fig)

    def main(self):
        say("systemd driver start, dom0 uptime %s" % open("/proc/uptime").read().split()[0])
        stop = threading.Event()
        threading.Thread(target=d.console_tail, args=(stop,), daemon=True).start()
        driver = d.Driver()
        driver.scenario("sd_dom0", self.s_dom0)
        # the balancer's watchdog is timed from here on, beside the guest's boot and scenarios
        # (WatchdogSec=120: the longest wait of all); sd_watchdog collects it
        self.stop_balancer()
        driver.scenario("sd_guest", self.s_guest)
        for name, fn in (("sd_reload", self.s_reload), ("sd_kill9", self.s_kill9),
                         ("sd_watchdog", self.s_watchdog), ("sd_balancer", self.s_balancer),
                         ("sd_stop", self.s_stop)):
            if self.g is None:
                result(name, False, error="no_guest")
            else:
                driver.scenario(name, fn)
        time.sleep(1.5)  # let the console tail catch up
        stop.set()
        emit("E2E SYSTEMD_DRIVER_DONE t=%.1f" % (time.monotonic() - d.T_START))


if __name__ == "__main__":
    SystemdDriver().main()
