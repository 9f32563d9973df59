#!/usr/bin/python3
"""The test agent inside the guest: does what dom0's scenario driver asks, through xenstore.

dom0 writes  data/e2e/cmd = "<seq> <op> <base64 json args>"
the agent answers  data/e2e/res = "<seq> <base64 zlib json result>"  (fits the 2048-byte node limit)
and prints every answer whole on the console as "E2E-AGENT seq=<n> <json>" for the log.

It reads its own state straight from /proc and /sys (no process per sample), so it can watch the
balloon closely without adding to the Committed_AS that the daemon under test reacts to.
Standard library only: it must not depend on the code it is testing.
"""
import base64
import json
import mmap
import os
import select
import signal
import subprocess
import sys
import time
import zlib

BALLOON = "/sys/devices/system/xen_memory/xen_memory0"
CMD_KEY = "data/e2e/cmd"
RES_KEY = "data/e2e/res"
READY_KEY = "data/e2e/ready"
SYSLOG = "/var/log/messages"
RES_MAX_BYTES = 1900
MIB_KB = 1024


def say(msg):
    sys.stdout.write("G: " + msg + "\n")
    sys.stdout.flush()


def xs(*argv, timeout=10):
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, universal_newlines=True)
    return p.returncode, p.stdout.strip()


def read(path, limit=1 << 20):
    with open(path, errors="replace") as f:
        return f.read(limit)


def read_int(path):
    try:
        return int(read(path, 64).split()[0])
    except (OSError, ValueError, IndexError):
        return -1


def fields(text, sep):
    out = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split() if sep == ":" else line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def snapshot():
    """The guest's own view of its memory, as the kernel reports it right now."""
    meminfo_text = read("/proc/meminfo")
    vmstat_text = read("/proc/vmstat")
    mi, vm = fields(meminfo_text, ":"), fields(vmstat_text, " ")
    up = read("/proc/uptime").split()
    return {
        "uptime": float(up[0]), "idle": float(up[1]),
        "cur_kb": read_int(BALLOON + "/info/current_kb"),
        "target_kb": read_int(BALLOON + "/target_kb"),
        "low_kb": read_int(BALLOON + "/info/low_kb"),
        "memtotal_kb": mi.get("MemTotal", -1), "memfree_kb": mi.get("MemFree", -1),
        "memavail_kb": mi.get("MemAvailable", -1), "committed_kb": mi.get("Committed_AS", -1),
        "pswpin": vm.get("pswpin", -1), "pswpout": vm.get("pswpout", -1),
        "pgpgin": vm.get("pgpgin", -1), "pgpgout": vm.get("pgpgout", -1),
        "oom_kill": vm.get("oom_kill", -1),
        "vmstat_bytes": len(vmstat_text.rstrip("\n").encode()),
        "meminfo_bytes": len(meminfo_text.rstrip("\n").encode()),
    }


class Syslog:
    """Forwards new lines of the guest's syslog to the console, so the log shows the daemon's."""

    def __init__(self):
        self.pos = 0

    def pump(self):
        try:
            with open(SYSLOG, errors="replace") as f:
                f.seek(self.pos)
                text = f.read()
                self.pos = f.tell()
        except OSError:
            return
        for line in text.splitlines():
            say("syslog: " + line)


SYS = Syslog()


class Sampler:
    """Polls the balloon every 0.1 s; keeps the points where the target or the size changed."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.trace = []
        self.min_cur_kb = None
        self.max_cur_kb = None
        self.min_memtotal_kb = None
        self.last = None

    def sample(self):
        cur = read_int(BALLOON + "/info/current_kb")
        tgt = read_int(BALLOON + "/target_kb")
        t = round(time.monotonic() - self.t0, 1)
        if self.last != (tgt, cur):
            self.trace.append([t, tgt, cur])
            self.last = (tgt, cur)
        self.min_cur_kb = cur if self.min_cur_kb is None else min(self.min_cur_kb, cur)
        self.max_cur_kb = cur if self.max_cur_kb is None else max(self.max_cur_kb, cur)
        return t, tgt, cur

    def note_memtotal(self, kb):
        self.min_memtotal_kb = kb if self.min_memtotal_kb is None else min(self.min_memtotal_kb, kb)

    def summary(self):
        return {"trace": self.trace, "min_cur_kb": self.min_cur_kb, "max_cur_kb": self.max_cur_kb,
                "min_memtotal_kb": self.min_memtotal_kb}


def op_wait(args):
    """Wait until the balloon reaches a condition; report how it got there.

    until=settle: the size stayed within tol_kb for window_s seconds and equals the balloon target
    until=le / ge: current_kb <= / >= kb (then, with settle=true, also wait to settle)
    """
    until = args.get("until", "settle")
    timeout_s = float(args.get("timeout_s", 120))
    window_s = float(args.get("window_s", 5))
    tol_kb = int(args.get("tol_kb", 1024))
    want_kb = int(args.get("kb", 0))
    then_settle = bool(args.get("settle", False))
    s = Sampler()
    hist = []
    reached_at = None
    settled_at = None
    n = 0
    while True:
        t, tgt, cur = s.sample()
        if n % 10 == 0:
            s.note_memtotal(fields(read("/proc/meminfo"), ":").get("MemTotal", -1))
            SYS.pump()
        n += 1
        hist.append((t, cur))
        while hist and hist[0][0] < t - window_s:
            hist.pop(0)
        if reached_at is None:
            if until == "le" and cur <= want_kb:
                reached_at = t
            elif until == "ge" and cur >= want_kb:
                reached_at = t
            elif until == "settle":
                reached_at = 0.0
        if reached_at is not None and (until == "settle" or then_settle):
            span = max(c for _, c in hist) - min(c for _, c in hist)
            if t - reached_at >= window_s and hist[0][0] <= t - window_s + 0.2 \
                    and span <= tol_kb and abs(cur - tgt) <= tol_kb:
                settled_at = t
                break
        elif reached_at is not None:
            break
        if t >= timeout_s:
            break
        time.sleep(0.1)
    out = s.summary()
    out.update(ok=(settled_at is not None) if (until == "settle" or then_settle) else reached_at is not None,
               reached_s=reached_at, settled_s=settled_at, elapsed_s=t, snap=snapshot())
    if settled_at is not None:
        # the moment the size entered its final band: the time it took to get there
        final = out["snap"]["cur_kb"]
        entered = settled_at
        for tt, _tgt, cur in reversed(s.trace):
            if abs(cur - final) > tol_kb:
                break
            entered = tt
        out["entered_s"] = entered
    return out


ALLOC = {"proc": None}

ALLOCATOR = r"""
import mmap, sys, time
mb, touch_mb, settle_s, window_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def cur_kb():
    return int(open("/sys/devices/system/xen_memory/xen_memory0/info/current_kb").read())
def committed_kb():
    for line in open("/proc/meminfo"):
        if line.startswith("Committed_AS:"):
            return int(line.split()[1])
    return -1
t0, cur0 = time.monotonic(), cur_kb()
# private writable: the kernel counts the whole mapping in Committed_AS at once, before a page
# is touched; that is what the self-ballooning daemon reacts to
m = mmap.mmap(-1, mb << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
              prot=mmap.PROT_READ | mmap.PROT_WRITE)
print("mapped", mb, "committed_kb", committed_kb(), flush=True)
# wait for the balloon to answer (grown, then no change for window_s), then use part of the
# memory: touching it before the guest has grown would only make it swap
last, changed = cur0, time.monotonic()
while time.monotonic() - t0 < settle_s:
    c = cur_kb()
    if c != last:
        last, changed = c, time.monotonic()
    if c > cur0 and time.monotonic() - changed >= window_s:
        break
    time.sleep(0.1)
t1 = time.monotonic()
print("grown", round(t1 - t0, 1), "cur_kb", cur_kb(), flush=True)
for off in range(0, touch_mb << 20, 4096):
    m[off] = 1
print("done touched_mb", touch_mb, "touch_s", round(time.monotonic() - t1, 1), "cur_kb", cur_kb(),
      "committed_kb", committed_kb(), flush=True)
while True:
    time.sleep(3600)
"""


def op_alloc(args):
    """Start a process that maps mb MiB (Committed_AS rises at once), waits for the balloon to
    grow (up to settle_s, done when it stood still window_s) and then touches touch_mb MiB of it;
    follow the balloon meanwhile.  The memory stays held until op_free."""
    if ALLOC["proc"] is not None:
        return {"ok": False, "error": "an allocation is already held"}
    mb, touch_mb = int(args.get("mb", 128)), int(args.get("touch_mb", 0))
    timeout_s = float(args.get("timeout_s", 120))
    before = snapshot()
    proc = subprocess.Popen([sys.executable, "-c", ALLOCATOR, str(mb), str(touch_mb),
                             str(args.get("settle_s", 40)), str(args.get("window_s", 3))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    ALLOC["proc"] = proc
    s = Sampler()
    lines = []
    done_at = grown_at = None
    while True:
        t, _tgt, _cur = s.sample()
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if r:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            say("alloc: " + line.strip())
            if line.startswith("grown"):
                grown_at = t
            if line.startswith("done"):
                done_at = t
                break
        if proc.poll() is not None or t >= timeout_s:
            break
    SYS.pump()
    out = s.summary()
    out.update(ok=done_at is not None, done_s=done_at, grown_s=grown_at, pid=proc.pid, lines=lines[-8:],
               alive=proc.poll() is None, before=before, snap=snapshot())
    return out


RAMPER = r"""
import mmap, sys, time
rate_mb_s, chunk_mb, total_mb = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
one_mib = b"\x01" * (1 << 20)
held = []
t0 = time.monotonic()
max_lag = 0.0
for i in range(total_mb // chunk_mb):
    due = t0 + i * chunk_mb / rate_mb_s
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    max_lag = max(max_lag, time.monotonic() - due)
    # private writable: Committed_AS rises by the chunk at the mmap, then every page is touched
    m = mmap.mmap(-1, chunk_mb << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
    for j in range(chunk_mb):
        m[j << 20:(j + 1) << 20] = one_mib
    held.append(m)
    print("chunk", i + 1, round(time.monotonic() - t0, 2), flush=True)
print("done mb", len(held) * chunk_mb, "s", round(time.monotonic() - t0, 2), "max_lag_s",
      round(max_lag, 2), flush=True)
while True:
    time.sleep(3600)
"""


def mem_row(t):
    """[t, balloon target, current, MemTotal, MemAvailable, Committed_AS] in MiB (t in s), then
    Committed_AS and the target in kB (for Cover; op_ramp keeps the first six)."""
    mi = fields(read("/proc/meminfo"), ":")
    tgt_kb = read_int(BALLOON + "/target_kb")
    return [t, tgt_kb >> 10, read_int(BALLOON + "/info/current_kb") >> 10,
            mi.get("MemTotal", -1) >> 10, mi.get("MemAvailable", -1) >> 10,
            mi.get("Committed_AS", -1) >> 10, mi.get("Committed_AS", -1), tgt_kb]


class Cover:
    """Issue 23: how long after each rise of this guest's Committed_AS its balloon target (dom0's
    memory/target, which the kernel takes at once) covered the need that rise made, on this
    guest's clock, sampled with the ramp's rows (every 0.1 s).  The need is the balancer's rule,
    its figures given by dom0: Committed_AS + the kernel's reservation + the headroom, at most
    static-max; covered within the rule's hysteresis for a raise (move_kb)."""

    def __init__(self, reserved_kb, headroom_kb, static_max_kb, move_kb, committed_kb):
        self.reserved_kb, self.headroom_kb = reserved_kb, headroom_kb
        self.static_max_kb, self.move_kb = static_max_kb, move_kb
        self.peak_kb = committed_kb
        self.pending = []  # [(t of the rise, need it made)]
        self.durations = []

    def sample(self, t, committed_kb, target_kb):
        if committed_kb > self.peak_kb + MIB_KB:
            self.peak_kb = committed_kb
            self.pending.append((t, min(committed_kb + self.reserved_kb + self.headroom_kb,
                                        self.static_max_kb)))
        still = []
        for t_rise, need_kb in self.pending:
            if target_kb >= need_kb - self.move_kb:
                self.durations.append(round(t - t_rise, 2))
            else:
                still.append((t_rise, need_kb))
        self.pending = still

    def result(self, t):
        d = sorted(self.durations)
        return {"n": len(d), "median_s": d[len(d) // 2] if d else None, "worst_s": d[-1] if d else None,
                "uncovered": len(self.pending),
                "uncovered_for_s": round(t - self.pending[0][0], 2) if self.pending else None,
                "durations": self.durations[:100]}


def op_ramp(args):
    """Allocate and touch memory at a fixed rate (chunk_mb chunks, rate_mb_s, up to total_mb)
    in a child process, sampling the balloon and /proc/meminfo every 0.1 s meanwhile and for
    hold_s after; the memory stays held (op_free releases it) unless the OOM killer took it.

    Reports the time from the ramp's start to the first rise of the balloon target, when
    MemAvailable first fell under 10% of MemTotal, OOM kills (vmstat oom_kill and dmesg)."""
    if ALLOC["proc"] is not None:
        return {"ok": False, "error": "an allocation is already held"}
    rate, chunk_mb = float(args["rate_mb_s"]), int(args.get("chunk_mb", 16))
    total_mb, hold_s = int(args["total_mb"]), float(args.get("hold_s", 3))
    time.sleep(float(args.get("delay_s", 0)))  # begin later than asked (migrate_self)
    timeout_s = float(args.get("timeout_s", 120))
    before = snapshot()
    seen = len(xs("dmesg", timeout=20)[1].splitlines())
    proc = subprocess.Popen([sys.executable, "-c", RAMPER, str(rate), str(chunk_mb), str(total_mb)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    ALLOC["proc"] = proc
    t0 = time.monotonic()
    rows, lines = [], []
    out_buf = ""
    chunks = 0
    done_at = first_up = avail10 = first_up_after_avail10 = None
    last_tgt = before["target_kb"] >> 10
    min_avail = None
    cover = None
    if "cover" in args:  # {reserved_kb, headroom_kb, static_max_kb, move_kb}
        cover = Cover(committed_kb=before["committed_kb"], **args["cover"])
    t = 0.0
    while True:
        t = round(time.monotonic() - t0, 2)
        row = mem_row(t)
        if cover is not None:
            cover.sample(t, row[6], row[7])
        if row[1] > last_tgt and first_up is None:
            first_up = t
        if avail10 is not None and first_up_after_avail10 is None and row[1] > last_tgt:
            first_up_after_avail10 = round(t - avail10, 2)
        last_tgt = row[1]
        if avail10 is None and 0 <= row[4] < row[3] // 10:
            avail10 = t
        min_avail = row[4] if min_avail is None else min(min_avail, row[4])
        if not rows or rows[-1][1:] != row[1:6] and t - rows[-1][0] >= 0.5:
            rows.append(row[:6])
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        # os.read, not readline: readline may take two lines into its buffer, and select()
        # never reports the second (the last chunk's line and "done" arriving together left
        # "done" unread until the timeout)
        out_buf += os.read(proc.stdout.fileno(), 65536).decode("utf-8", "replace") if r else ""
        while "\n" in out_buf:
            line, out_buf = out_buf.split("\n", 1)
            if line.startswith("chunk"):
                chunks += 1
            elif line:
                lines.append(line.strip())
                say("ramp: " + line.strip())
                if line.startswith("done"):
                    done_at = t
        alive = proc.poll() is None
        if (done_at is not None and t - done_at >= hold_s) or not alive and t > 0.5 or t >= timeout_s:
            break
    rows.append(mem_row(t)[:6])
    SYS.pump()
    after = snapshot()
    oom_lines = [ln for ln in xs("dmesg", timeout=20)[1].splitlines()[seen:]
                 if "Out of memory" in ln or "oom-kill" in ln]
    alive = proc.poll() is None
    if not alive:
        ALLOC["proc"] = None
    return {"ok": True, "rate_mb_s": rate, "chunk_mb": chunk_mb, "total_mb": total_mb,
            "chunks": chunks, "done_s": done_at, "alive": alive, "rc": proc.returncode,
            "first_up_s": first_up, "avail10_s": avail10, "up_after_avail10_s": first_up_after_avail10,
            "min_avail_mb": min_avail, "oom_kill": after["oom_kill"] - before["oom_kill"],
            "pswpout": after["pswpout"] - before["pswpout"], "oom_lines": oom_lines[-4:],
            "lines": lines[-4:], "before": before, "snap": after, "trace": rows,
            "cover": cover.result(t) if cover is not None else None}


def op_free(args):
    proc = ALLOC["proc"]
    if proc is None:
        return {"ok": False, "error": "nothing allocated"}
    proc.terminate()
    rc = proc.wait(30)
    ALLOC["proc"] = None
    return {"ok": True, "rc": rc, "snap": snapshot()}


def op_sh(args):
    t0 = time.monotonic()
    try:
        p = subprocess.run(["/bin/sh", "-c", args["cmd"]], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=float(args.get("timeout_s", 60)),
                           universal_newlines=True, errors="replace")
        rc, text = p.returncode, p.stdout
    except subprocess.TimeoutExpired as exc:
        rc, text = -999, (exc.stdout or "") if isinstance(exc.stdout, str) else "timeout"
    for line in text.splitlines():
        say("sh: " + line)
    SYS.pump()
    return {"ok": True, "rc": rc, "out": text[-int(args.get("max", 600)):],
            "elapsed_s": round(time.monotonic() - t0, 2)}


def op_snap(args):
    SYS.pump()
    return {"ok": True, "snap": snapshot()}


def op_file(args):
    try:
        text = read(args["path"])
        return {"ok": True, "exists": True, "bytes": len(text.encode()), "text": text[:int(args.get("max", 600))]}
    except OSError as exc:
        return {"ok": True, "exists": False, "error": str(exc)}


def op_procs(args):
    """Processes whose command line contains args['match'] (zombies flagged)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = read("/proc/%s/cmdline" % pid).replace("\0", " ").strip()
            state = [ln.split()[1] for ln in read("/proc/%s/status" % pid).splitlines()
                     if ln.startswith("State:")][0]
        except (OSError, IndexError):
            continue
        if args["match"] in cmdline:
            found.append({"pid": int(pid), "state": state, "cmdline": cmdline[:120]})
    return {"ok": True, "procs": found}


# each op's result, by seq, for "result": an answer written just before a migration's
# last suspend is in the old domain's xenstore, gone with it
RESULTS = {}
RESULTS_KEPT = 16


def op_result(args):
    kept = RESULTS.get(str(args.get("seq")))
    if kept is None:
        return {"ok": False, "error": "no result for seq %s" % args.get("seq")}
    return json.loads(kept)


OPS = {"wait": op_wait, "alloc": op_alloc, "ramp": op_ramp, "free": op_free, "sh": op_sh, "snap": op_snap,
       "file": op_file, "procs": op_procs, "result": op_result}


def encode(result):
    """Fit a result into one guest-writable node, dropping middle trace points if needed."""
    while True:
        blob = base64.b64encode(zlib.compress(json.dumps(result, separators=(",", ":")).encode(), 9))
        if len(blob) <= RES_MAX_BYTES:
            return blob.decode()
        trace = result.get("trace") or []
        if len(trace) > 6:
            keep = len(trace) * 2 // 3
            result["trace"] = trace[:keep // 2] + trace[len(trace) - keep // 2:]
            result["trace_cut"] = True
        elif "out" in result and len(result["out"]) > 50:
            result["out"] = result["out"][-len(result["out"]) // 2:]
        elif "text" in result and len(result["text"]) > 50:
            result["text"] = result["text"][:len(result["text"]) // 2]
        else:
            return base64.b64encode(zlib.compress(b'{"ok":false,"error":"result too big"}')).decode()


def handle(value, done):
    parts = value.split(" ", 2)
    if len(parts) != 3 or not parts[0].isdigit() or parts[0] in done:
        return
    seq, op = parts[0], parts[1]
    done.add(seq)
    try:
        args = json.loads(base64.b64decode(parts[2]).decode())
        result = OPS[op](args)
    except Exception as exc:  # report it to dom0 rather than die: the run must go on
        result = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    RESULTS[seq] = json.dumps(result)
    for old in sorted(RESULTS, key=int)[:-RESULTS_KEPT]:
        del RESULTS[old]
    print("E2E-AGENT seq=%s op=%s %s" % (seq, op, json.dumps(result, separators=(",", ":"))), flush=True)
    rc, out = xs("xenstore-write", RES_KEY, "%s %s" % (seq, encode(result)))
    if rc != 0:
        say("cannot write %s: %s" % (RES_KEY, out))


def main():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    say("agent up: python %s, uptime %s" % (sys.version.split()[0], read("/proc/uptime").split()[0]))
    say("snapshot at boot: " + json.dumps(snapshot(), separators=(",", ":")))
    xs("xenstore-write", READY_KEY, json.dumps(snapshot(), separators=(",", ":")))
    done = set()
    watch = subprocess.Popen(["xenstore-watch", CMD_KEY], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True)
    idle_s = 0
    while True:
        if watch.poll() is None:
            r, _, _ = select.select([watch.stdout], [], [], 1.0)
            if r:
                watch.stdout.readline()
                idle_s = 0
            else:
                SYS.pump()
                # after a save/restore or a migration the guest is another domain: read the
                # command now and then in case the watch did not come along
                idle_s += 1
                if idle_s % 3:
                    continue
        else:
            time.sleep(0.5)  # no watch: fall back to polling
        rc, value = xs("xenstore-read", CMD_KEY)
        if rc == 0:
            handle(value, done)
        SYS.pump()


if __name__ == "__main__":
    main()
