"""Build, boot and read the real-Xen test host.

    python3 tests/e2e/harness.py [--only a,b] [--log FILE] [--timeout S]

1. A cached base (tests/e2e/build-base.sh): Xen 4.17, the Debian kernel, and the dom0 and
   guest root filesystems as initramfs archives.  Keyed by a hash of the build script, kept in
   $XENBALLOON_E2E_CACHE (default ~/.cache/xenballoond-e2e), never inside the repository.
2. Per run, THIS working tree's Debian packages, built with dpkg-buildpackage in a copy outside
   the repository (tests/debbuild.py, as tests/test_packaging.py builds them), and a small second
   archive for each side with them, the test's config and the scenario scripts.  The kernel
   unpacks concatenated archives in order, so a run only packs a few hundred kB.  At boot the
   guest installs xenballoond and python3-xenballoond, dom0 xenballoon-dom0 and
   python3-xenballoond, with `apt install ./<package>_*.deb` (tests/e2e/e2e-pkg), offline: the
   packages' dependencies (python3-daemon, python3-lockfile) are in the base images.
3. One QEMU (TCG) boot: Xen, dom0, the guest; dom0's driver plays every scenario and prints
   "E2E RESULT" lines, which parse_log() turns into a dict per scenario.
"""
from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if REPO not in sys.path:  # run as a script: tests/debbuild.py is the repository's
    sys.path.insert(0, REPO)
from tests import debbuild  # noqa: E402

BUILD_SCRIPT = os.path.join(HERE, "build-base.sh")
BASE_FILES = ("xen", "vmlinuz", "dom0.cpio", "guest-boot.cpio.gz", "KVER", "XEN_VERSION")
# what each side installs (tests/e2e/e2e-pkg), and where the .debs wait for it
GUEST_PACKAGES = ("xenballoond", "python3-xenballoond")
DOM0_PACKAGES = ("xenballoon-dom0", "python3-xenballoond")
DEB_DIR = "/etc/e2e/debs"
HOST_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "mmdebstrap": "mmdebstrap", "cpio": "cpio",
              "depmod": "kmod", "apt-get": "apt", "dpkg-deb": "dpkg", "mke2fs": "e2fsprogs",
              "dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "dh_python3": "dh-python",
              "fakeroot": "fakeroot"}
# dom0 holds the guest's disk, and a save file of up to maxmem (768 MiB) in its RAM file system;
# Xen needs room for two copies of the guest during a localhost migration
QEMU_MEM_MB = 4096
XEN_ARGS = ("console=com1 com1=115200,8n1 dom0_mem=2048M,max:2048M dom0_max_vcpus=1 "
            # smap/smep off: under TCG a PV dom0 faults at once with them on
            "loglvl=all guest_loglvl=all smap=0 smep=0")
# ramfs: the default tmpfs root (half of dom0_mem) is too small for the guest's disk image
DOM0_ARGS = "console=hvc0 earlyprintk=xen rdinit=/init rootfstype=ramfs"


def log(msg: str) -> None:
    print("[e2e] " + msg, file=sys.stderr, flush=True)


def cache_dir() -> str:
    top = os.environ.get("XENBALLOON_E2E_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "xenballoond-e2e")
    top = os.path.realpath(top)
    if top == REPO or top.startswith(REPO + os.sep):
        raise SystemExit(f"XENBALLOON_E2E_CACHE={top} is inside the repository {REPO}: "
                         "images must not land in the work tree")
    os.makedirs(top, exist_ok=True)
    return top


def missing_tools() -> list[str]:
    """Host tools the suite needs, as 'command (package)' for each one absent."""
    return [f"{cmd} ({pkg})" for cmd, pkg in HOST_TOOLS.items() if shutil.which(cmd) is None]


def why_not_run() -> str | None:
    """Why this machine cannot play the real-Xen run, or None if it can."""
    if os.environ.get("XENBALLOON_E2E", "1") == "0":
        return "XENBALLOON_E2E=0"
    if os.geteuid() != 0:  # first: an ordinary user's PATH lacks /usr/sbin's tools too
        return "needs root: real-Xen e2e builds root file systems with mmdebstrap/chroot"
    miss = missing_tools()
    if miss:
        return ("real-Xen e2e needs host tools: " + ", ".join(miss) +
                " (apt-get install qemu-system-x86 mmdebstrap cpio kmod e2fsprogs dpkg-dev debhelper"
                " dh-python fakeroot)")
    return None


# Each stage's limit, measured on this 2-core machine: the base build took 1-3 minutes, the
# .debs 4 s; the boot and every scenario 10-11 minutes alone, and more than 20 with two unit
# suites running beside it (QEMU's TCG shares the two cores).  A lock is waited for as long as
# another run may hold it.  test_real_xen.py's time limit is their sum.
BASE_BUILD_LIMIT_S = 600
DEBS_LIMIT_S = 120
QEMU_LIMIT_S = 1800
LOCK_LIMIT_S = QEMU_LIMIT_S + DEBS_LIMIT_S
SUITE_LIMIT_S = 2 * LOCK_LIMIT_S + BASE_BUILD_LIMIT_S + DEBS_LIMIT_S + QEMU_LIMIT_S


class Locked:
    """An exclusive flock on a file in the cache: one build or boot at a time on this machine.
    Waits at most timeout_s for another holder, then fails saying so."""

    def __init__(self, path: str, timeout_s: float = LOCK_LIMIT_S) -> None:
        self.path, self.timeout_s = path, timeout_s

    def __enter__(self) -> "Locked":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise RuntimeError(f"timed out after {self.timeout_s:.0f} s waiting for the lock "
                                       f"{self.path}: another real-Xen run on this machine holds it")
                time.sleep(1)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def file_hash(*paths: str) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def ensure_base(cache: str) -> tuple[str, float]:
    """The base image directory for the current build script; (dir, seconds spent building)."""
    base = os.path.join(cache, "base-" + file_hash(BUILD_SCRIPT))
    with Locked(os.path.join(cache, "build.lock")):
        if all(os.path.isfile(os.path.join(base, f)) for f in BASE_FILES):
            return base, 0.0
        log(f"building the base images into {base} (about 1-3 minutes, once)")
        t0 = time.monotonic()
        tmp = base + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        with open(os.path.join(cache, "build.log"), "w") as out:
            try:
                p = subprocess.run(["sh", BUILD_SCRIPT, tmp], stdout=out, stderr=subprocess.STDOUT,
                                   timeout=BASE_BUILD_LIMIT_S)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"timed out after {BASE_BUILD_LIMIT_S} s waiting for build-base.sh "
                                   f"to build the base images; see {cache}/build.log") from None
        if p.returncode != 0:
            tail = open(os.path.join(cache, "build.log"), errors="replace").read()[-3000:]
            raise RuntimeError(f"build-base.sh failed (rc={p.returncode}); end of "
                               f"{cache}/build.log:\n{tail}")
        for root in ("dom0root", "guestroot"):  # the archives are all a run needs
            shutil.rmtree(os.path.join(tmp, root), ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
        os.rename(tmp, base)
        for old in os.listdir(cache):  # previous bases are stale once the script changed
            if old.startswith("base-") and os.path.join(cache, old) != base:
                shutil.rmtree(os.path.join(cache, old), ignore_errors=True)
        return base, time.monotonic() - t0


def build_debs(run_dir: str) -> tuple[dict[str, str], float]:
    """This working tree's .debs, built afresh into run_dir/debs; ({package: path}, seconds)."""
    t0 = time.monotonic()
    out = os.path.join(run_dir, "debs")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with tempfile.TemporaryDirectory(prefix="debs-", dir=run_dir) as top:
        built = debbuild.build_debs(Path(top), timeout_s=DEBS_LIMIT_S)
        found = {name: shutil.copy(str(deb), out) for name, deb in built.items()}
    return found, time.monotonic() - t0


def _put(stage: str, os_path: str, src: str | None = None, text: str | None = None,
         mode: int = 0o644) -> None:
    dst = os.path.join(stage, os_path.lstrip("/"))
    os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
    if src is not None:
        shutil.copyfile(src, dst)
    else:
        with open(dst, "w") as f:
            f.write(text or "")
    os.chmod(dst, mode)


def pack(stage: str, out_path: str) -> None:
    """A newc cpio of stage (root-owned), gzipped."""
    for dirpath, dirnames, _files in os.walk(stage):
        os.chmod(dirpath, 0o755)
    names = subprocess.run(["find", "."], cwd=stage, check=True, stdout=subprocess.PIPE).stdout
    names = b"\n".join(sorted(n for n in names.split(b"\n") if n)) + b"\n"
    raw = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=stage,
                         input=names, stdout=subprocess.PIPE, check=True).stdout
    with gzip.open(out_path, "wb", compresslevel=1) as f:
        f.write(raw)


def concat(parts: list[str], out_path: str) -> None:
    with open(out_path, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out)


def put_packages(stage: str, debs: dict[str, str], names: tuple[str, ...]) -> None:
    """The .debs one side installs at boot, and the script that installs them."""
    for name in names:
        _put(stage, DEB_DIR + "/" + os.path.basename(debs[name]), debs[name])
    _put(stage, "/etc/e2e/e2e-pkg", os.path.join(HERE, "e2e-pkg"), mode=0o755)


def assemble(base: str, debs: dict[str, str], run_dir: str) -> dict[str, str]:
    """The per-run overlays on top of the cached bases; returns the paths QEMU boots."""
    g = os.path.join(run_dir, "stage-guest")
    d = os.path.join(run_dir, "stage-dom0")
    for s in (g, d):
        shutil.rmtree(s, ignore_errors=True)
        os.makedirs(s, mode=0o755)
    # guest: the boot /init, and under /overlay what it copies onto the root disk: the agent,
    # busybox init table, the packages to install and the test's config (init2 puts it over
    # the package's conffile once installed)
    _put(g, "/init", os.path.join(HERE, "guest/boot"), mode=0o755)
    o = os.path.join(g, "overlay")
    _put(o, "/etc/e2e/init2", os.path.join(HERE, "guest/init2"), mode=0o755)
    _put(o, "/etc/inittab", os.path.join(HERE, "guest/inittab"))
    _put(o, "/etc/e2e/guest_agent.py", os.path.join(HERE, "guest/guest_agent.py"), mode=0o755)
    _put(o, "/etc/e2e/e2e-agent.service", os.path.join(HERE, "guest/e2e-agent.service"))
    _put(o, "/etc/e2e/xenballoon.conf", os.path.join(HERE, "guest/xenballoon.conf"))
    put_packages(o, debs, GUEST_PACKAGES)
    pack(g, os.path.join(run_dir, "guest-overlay.cpio.gz"))
    # one uncompressed archive: Xen's domain builder inflates a gzip ramdisk itself and fails
    # on concatenated gzip members
    with open(os.path.join(run_dir, "guest-initrd.cpio"), "wb") as out:
        for part in ("guest-boot.cpio.gz", "guest-overlay.cpio.gz"):
            src = os.path.join(base if part.startswith("guest-boot") else run_dir, part)
            with gzip.open(src, "rb") as f:
                shutil.copyfileobj(f, out)
    # dom0: the driver, the guest's kernel and initramfs, and the dom0 packages to install
    _put(d, "/init", os.path.join(HERE, "dom0/init"), mode=0o755)
    _put(d, "/etc/e2e/dom0_driver.py", os.path.join(HERE, "dom0/dom0_driver.py"), mode=0o755)
    # issue 22: the scenarios under systemd, which /init execs once the driver is done
    _put(d, "/etc/e2e/systemd_driver.py", os.path.join(HERE, "dom0/systemd_driver.py"), mode=0o755)
    _put(d, "/etc/e2e/systemd-phase", os.path.join(HERE, "dom0/systemd-phase"), mode=0o755)
    _put(d, "/etc/e2e/e2e-systemd.service", os.path.join(HERE, "dom0/e2e-systemd.service"))
    _put(d, "/etc/e2e/guest.cfg", os.path.join(HERE, "dom0/guest.cfg"))
    for cfg in ("guest2.cfg", "guest3.cfg"):  # the balancer scenario's guests
        _put(d, "/etc/e2e/" + cfg, os.path.join(HERE, "dom0", cfg))
    _put(d, "/etc/e2e/block-phy", os.path.join(HERE, "dom0/block-phy"), mode=0o755)
    _put(d, "/guest/vmlinuz", os.path.join(base, "vmlinuz"))
    _put(d, "/guest/initrd.cpio", os.path.join(run_dir, "guest-initrd.cpio"))
    put_packages(d, debs, DOM0_PACKAGES)
    pack(d, os.path.join(run_dir, "dom0-overlay.cpio.gz"))
    # the kernel unpacks an uncompressed archive and a gzipped one after it alike
    concat([os.path.join(base, "dom0.cpio"), os.path.join(run_dir, "dom0-overlay.cpio.gz")],
           os.path.join(run_dir, "dom0-initrd"))
    shutil.rmtree(g)
    shutil.rmtree(d)
    return {"xen": os.path.join(base, "xen"), "vmlinuz": os.path.join(base, "vmlinuz"),
            "initrd": os.path.join(run_dir, "dom0-initrd")}


class HostLoad:
    """How much of this machine's CPU went to processes other than QEMU while it ran: QEMU's
    TCG has only the cores others leave it, and a scenario with a time budget (a ramp, a
    settle) runs out of it on a loaded host.  A failure says so (Run.why_stopped)."""

    def __init__(self, qemu_pid: int) -> None:
        self.qemu_pid = qemu_pid
        self.samples: list[tuple[float, int, int]] = []  # (monotonic s, all busy ticks, QEMU's)

    @staticmethod
    def _busy_ticks() -> int:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait

    def _qemu_ticks(self) -> int:
        with open(f"/proc/{self.qemu_pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return int(v[11]) + int(v[12])  # utime, stime

    def sample(self) -> None:
        try:
            self.samples.append((time.monotonic(), self._busy_ticks(), self._qemu_ticks()))
        except (OSError, ValueError, IndexError):
            pass

    def others_pct(self, window_s: float | None = None) -> float | None:
        """Other processes' CPU as a percentage of the whole machine (every core): over the
        run, or the worst window_s seconds of it."""
        hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
        if len(self.samples) < 2:
            return None

        def pct(a: tuple[float, int, int], b: tuple[float, int, int]) -> float:
            return 100.0 * ((b[1] - a[1]) - (b[2] - a[2])) / hz / max(b[0] - a[0], 1e-9) / cores
        if window_s is None:
            return round(pct(self.samples[0], self.samples[-1]), 1)
        worst, j = 0.0, 0
        for i, b in enumerate(self.samples):
            while b[0] - self.samples[j][0] > window_s:
                j += 1
            if b[0] - self.samples[j][0] >= window_s / 2 and j < i:
                worst = max(worst, pct(self.samples[j], b))
        return round(worst, 1)


def run_qemu(images: dict[str, str], log_path: str, timeout_s: float, dom0_env: str = "",
             stop: threading.Event | None = None) -> dict:
    """Boot once under TCG; every console line is written to log_path prefixed with the
    seconds since QEMU started.  Ends at E2E ALL_DONE, at power-off, at timeout_s or when
    ``stop`` is set (the test session ended first: early.py)."""
    # -xsave: with three domains on QEMU's two CPUs (the balancer scenario), processes crashed
    # on corrupt memory in whichever domain shared a CPU with another (a heap "corrupted unsorted
    # chunks", general protection faults, an xz kernel image that would not decompress), in 3
    # runs out of 3; with XSAVE hidden from Xen, none.  Xen then saves FPU state with FXSAVE.
    cmd = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max,-xsave", "-machine", "pc",
           "-smp", "2", "-m", str(QEMU_MEM_MB), "-display", "none", "-monitor", "none",
           "-serial", "stdio", "-nic", "none", "-no-reboot",
           "-kernel", images["xen"], "-append", XEN_ARGS,
           "-initrd", f"{images['vmlinuz']} {DOM0_ARGS} {dom0_env},{images['initrd']}"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = timed_out = False
    peak_rss_kb = 0
    load = HostLoad(p.pid)
    buf = b""
    import select
    with open(log_path, "w") as f:
        f.write("CMD: " + " ".join(cmd) + "\n")
        while True:
            el = time.monotonic() - t0
            if el > timeout_s:
                timed_out = True
                f.write(f"[{el:7.1f}] HARNESS TIMEOUT after {timeout_s:.0f} s\n")
                break
            if stop is not None and stop.is_set():
                f.write(f"[{el:7.1f}] HARNESS STOPPED: the test session ended first\n")
                break
            load.sample()
            try:
                with open(f"/proc/{p.pid}/status") as st:
                    for line in st:
                        if line.startswith("VmRSS:"):
                            peak_rss_kb = max(peak_rss_kb, int(line.split()[1]))
            except OSError:
                pass
            r, _, _ = select.select([p.stdout], [], [], 1.0)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    s = line.decode("utf-8", "replace").replace("\r", "")
                    f.write(f"[{time.monotonic() - t0:7.1f}] {s}\n")
                    if "E2E ALL_DONE" in s:
                        done = True
                f.flush()
            elif p.poll() is not None:
                break
        if p.poll() is None:
            try:
                p.wait(20 if done else 0.1)
            except subprocess.TimeoutExpired:
                pass
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        f.write(f"[{time.monotonic() - t0:7.1f}] QEMU exited rc={p.returncode} "
                f"peak_rss_mib={peak_rss_kb // 1024}\n")
    return {"boot_run_s": time.monotonic() - t0, "done": done, "timed_out": timed_out,
            "qemu_rc": p.returncode, "qemu_peak_rss_mib": peak_rss_kb // 1024,
            "host_others_cpu_pct": load.others_pct(), "host_others_cpu_pct_worst_min": load.others_pct(60)}


# -- reading the log -----------------------------------------------------------------------

_LINE = re.compile(r"^\[\s*([0-9.]+)\] (.*)$")


@dataclass
class Scenario:
    name: str
    ok: bool = False
    figures: dict[str, str] = field(default_factory=dict)
    data: dict[str, object] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    seen: bool = False
    why: str = ""  # what the run's conditions say of a failure (Run.why_stopped)

    def num(self, key: str) -> float:
        """A figure as a number (raises KeyError/ValueError with the key named)."""
        v = self.figures[key]
        try:
            return int(v)
        except ValueError:
            return float(v)


@dataclass
class Run:
    scenarios: dict[str, Scenario]
    figures: dict[str, object]
    log_path: str
    lines: list[str]

    def get(self, name: str) -> Scenario:
        return self.scenarios.get(name) or Scenario(name)

    def console_tail(self, n: int = 60) -> str:
        return "\n".join(self.lines[-n:])

    def why_stopped(self) -> str:
        """What the run's conditions say of a failure: a loaded host, QEMU stopped at its
        time limit, and the driver's diagnoses of a guest that stopped answering."""
        out = []
        others, worst = self.figures.get("host_others_cpu_pct"), self.figures.get("host_others_cpu_pct_worst_min")
        if isinstance(others, float) and isinstance(worst, float) and worst >= 25:
            out.append(f"the host was loaded: while QEMU ran, other processes took {others}% of this "
                       f"machine's CPU ({worst}% in the worst minute); QEMU's TCG had that much less, "
                       f"and a scenario's time budget (a ramp, a settle) may have run out for it")
        if "harness_timeout" in self.figures:
            out.append(f"QEMU was stopped {self.figures['harness_timeout']}")
        out += [f"the driver's diagnosis {d}" for d in self.figures.get("diagnoses", [])]  # type: ignore[attr-defined]
        return "\n".join(out)


def parse_log(path: str) -> Run:
    scen: dict[str, Scenario] = {}
    figures: dict[str, object] = {}
    current: Scenario | None = None
    lines: list[str] = []
    with open(path, errors="replace") as f:
        for raw in f:
            m = _LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            t, text = float(m.group(1)), m.group(2)
            lines.append(raw.rstrip("\n"))
            # the GC: copy of the guest console carries its own "E2E" lines; only dom0's count
            if text.startswith("E2E BEGIN "):
                kv = dict(p.split("=", 1) for p in text.split()[2:] if "=" in p)
                current = scen.setdefault(kv["name"], Scenario(kv["name"]))
                current.seen = True
                figures.setdefault("scenario_start_s", {})[kv["name"]] = t
            elif text.startswith("E2E RESULT "):
                kv = dict(p.split("=", 1) for p in text.split()[2:] if "=" in p)
                s = scen.setdefault(kv["name"], Scenario(kv["name"]))
                s.seen = True
                s.ok = kv.pop("ok", "0") == "1"
                kv.pop("name")
                s.figures.update(kv)
            elif text.startswith("E2E DATA "):
                parts = text.split(" ", 4)
                kv = dict(p.split("=", 1) for p in parts[2:4])
                s = scen.setdefault(kv["name"], Scenario(kv["name"]))
                try:
                    s.data[kv["key"]] = json.loads(parts[4])
                except (IndexError, ValueError):
                    s.data[kv["key"]] = None
            elif text.startswith("E2E END "):
                kv = dict(p.split("=", 1) for p in text.split()[2:] if "=" in p)
                figures.setdefault("scenario_elapsed_s", {})[kv.get("name", "?")] = float(kv.get("elapsed_s", 0))
                current = None
            elif "D: DOM0_READY" in text:
                figures["dom0_ready_s"] = t
            elif "E2E ALL_DONE" in text:
                figures["all_done_s"] = t
            elif text.startswith("HARNESS TIMEOUT"):
                figures["harness_timeout"] = f"at {t:.0f} s: {text}"
            elif text.startswith("E2E DIAG "):
                figures.setdefault("diagnoses", []).append(f"[{t:.0f} s] {text[len('E2E DIAG '):]}")
            if current is not None:
                current.lines.append(raw.rstrip("\n"))
    return Run(scen, figures, path, lines)


_MATTERS = re.compile(r"D: |E2E |syslog:|Traceback|Error|error|rror:|Out of memory|oom|Killed|"
                      r"BUG|panic|Over-allocation|xenballoon|sh: ", re.I)


def lines_that_matter(s: Scenario, limit: int = 80) -> str:
    """The console lines of one scenario worth reading when it failed."""
    picked = [ln[:400] for ln in s.lines if _MATTERS.search(ln) and "E2E-AGENT" not in ln]
    if len(picked) > limit:
        picked = picked[:limit // 4] + ["    ..."] + picked[-(limit - limit // 4):]
    return "\n".join(picked)


# -- the whole run -------------------------------------------------------------------------

def run_suite(only: str = "", timeout_s: float = QEMU_LIMIT_S, log_path: str | None = None,
              dom0_env: tuple[str, ...] = (), stop: threading.Event | None = None) -> Run:
    t0 = time.monotonic()
    cache = cache_dir()
    base, build_s = ensure_base(cache)
    with Locked(os.path.join(cache, "run.lock")):
        run_dir = os.path.join(cache, "run")
        os.makedirs(run_dir, exist_ok=True)
        debs, debs_s = build_debs(run_dir)
        t1 = time.monotonic()
        images = assemble(base, debs, run_dir)
        assemble_s = time.monotonic() - t1
        log_path = log_path or os.path.join(cache, "console.log")
        log(f"booting Xen + dom0 + guest under QEMU (TCG), console in {log_path}")
        env = (("E2E_ONLY=" + only.replace(",", "+"),) if only else ()) + dom0_env
        q = run_qemu(images, log_path, timeout_s, " ".join(env), stop)
    run = parse_log(log_path)
    run.figures.update(q, base_build_s=build_s, debs_build_s=debs_s, assemble_s=assemble_s,
                       total_s=time.monotonic() - t0, base_dir=base)
    write_report(run, os.path.join(cache, "report.txt"))
    return run


def write_report(run: Run, path: str) -> str:
    out = [f"xenballoond real-Xen end-to-end run: {time.strftime('%Y-%m-%d %H:%M:%S')}",
           f"console log: {run.log_path}"]
    f = run.figures
    out.append("base build %.0f s (0 = cached), .debs %.0f s, assemble %.1f s, boot+run %.0f s, "
               "total %.0f s, dom0 ready at %s s, QEMU peak RSS %s MiB" % (
                   f.get("base_build_s", 0), f.get("debs_build_s", 0), f.get("assemble_s", 0),
                   f.get("boot_run_s", 0),
                   f.get("total_s", 0), f.get("dom0_ready_s", "?"), f.get("qemu_peak_rss_mib", "?")))
    out.append(f"other processes' CPU while QEMU ran: {f.get('host_others_cpu_pct', '?')}% of the machine, "
               f"{f.get('host_others_cpu_pct_worst_min', '?')}% in the worst minute")
    for name, s in run.scenarios.items():
        el = f.get("scenario_elapsed_s", {}).get(name, 0)
        out.append(f"  {name:15s} {'ok ' if s.ok else 'BAD'} {el:6.1f} s  " +
                   " ".join(f"{k}={v}" for k, v in s.figures.items()))
    text = "\n".join(out) + "\n"
    with open(path, "w") as fh:
        fh.write(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated scenario names (boot always runs)")
    ap.add_argument("--log", help="console log path (default: in the cache directory)")
    ap.add_argument("--timeout", type=float, default=QEMU_LIMIT_S,
                    help="seconds for the boot and all scenarios")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="a variable for dom0's driver, on dom0's kernel command line "
                         "(e.g. E2E_SAVE_LOOP=20); repeatable")
    ap.add_argument("--build-base", action="store_true",
                    help="only build the base images into the cache (if not there), then exit: "
                         ".ci/run does it while the unit tests run")
    args = ap.parse_args(argv)
    if args.build_base:
        base, secs = ensure_base(cache_dir())
        log(f"base images in {base} ({secs:.0f} s spent building)")
        return 0
    miss = missing_tools()
    if miss:
        print("missing host tools: " + ", ".join(miss), file=sys.stderr)
        return 2
    run = run_suite(args.only, args.timeout, args.log, tuple(args.env))
    print(write_report(run, os.path.join(cache_dir(), "report.txt")))
    return 0 if run.scenarios and all(s.ok for s in run.scenarios.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
