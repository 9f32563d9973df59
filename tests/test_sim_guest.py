"""A simulated guest's tree on disk: the files the daemon reads, and what
happens when something writes to the balloon driver's files."""
from __future__ import annotations

import os

import pytest

from xenballoond.guest.balloon import detect_balloon
from tests.guestroot import parse_vmstat
from xenballoond.guest.meminfo import parse_meminfo
from xenballoond.paths import Root
from xenballoond.sim import balloon_model as bm
from xenballoond.sim.guest import SimGuest, scanf_llu, write_atomic
from xenballoond.sim.workload import Workload

MIB = 1024
SYSFS = "sys/devices/system/xen_memory/xen_memory0"
STEADY = Workload(base_committed_kb=300 * MIB, base_anon_kb=150 * MIB, base_io_kb_per_s=0,
                  base_cpu_pct=1, jobs=())


def make(tmp_path, kind: str = bm.SYSFS, workload: Workload = STEADY) -> SimGuest:
    g = SimGuest(root=str(tmp_path), domid=1, name="g1", kind=kind, memory_kb=1024 * MIB,
                 maxmem_kb=2048 * MIB, workload=workload, swap_total_kb=512 * MIB, uptime_s=30.0)
    g.create()
    return g


def read(tmp_path, rel: str) -> str:
    with open(os.path.join(tmp_path, rel)) as f:
        return f.read()


def no_target() -> None:
    return None


def run(g: SimGuest, seconds: float, t0: float = 0.0, reader=no_target) -> float:
    t = t0
    for _ in range(int(seconds / 0.25)):
        t += 0.25
        g.step(t, 0.25, reader)
    return t


def test_tree_is_what_the_daemon_detects_and_parses(tmp_path) -> None:
    make(tmp_path)
    assert detect_balloon(Root(str(tmp_path))).name == "sysfs"
    meminfo = parse_meminfo(read(tmp_path, "proc/meminfo"))
    current_kb = int(read(tmp_path, f"{SYSFS}/info/current_kb"))
    assert current_kb == 1024 * MIB
    assert meminfo["MemTotal"] == current_kb - bm.kernel_reserved_kb_for(2048 * MIB)
    assert meminfo["Committed_AS"] == 300 * MIB
    assert "pswpout" in parse_vmstat(read(tmp_path, "proc/vmstat"))
    assert read(tmp_path, "proc/uptime") == "30.00 27.00\n"
    assert read(tmp_path, f"{SYSFS}/target") == f"{1024 * MIB * 1024}\n"
    assert not [n for n in os.listdir(tmp_path / "proc") if n.endswith("sim-tmp")]


def test_daemon_write_to_target_moves_the_reservation(tmp_path) -> None:
    g = make(tmp_path)
    with open(tmp_path / SYSFS / "target", "w") as f:  # as balloon.SysfsBalloon writes
        f.write(f"{600 * MIB * 1024 + 123}\n")
    run(g, 0.25)
    assert read(tmp_path, f"{SYSFS}/target_kb") == f"{600 * MIB}\n"
    assert read(tmp_path, f"{SYSFS}/target") == f"{600 * MIB * 1024}\n"  # read back page-aligned
    assert int(read(tmp_path, f"{SYSFS}/info/current_kb")) == (1024 - 64) * MIB  # 256 MiB/s
    run(g, 5, 0.25)
    assert int(read(tmp_path, f"{SYSFS}/info/current_kb")) == 600 * MIB
    memtotal_kb = parse_meminfo(read(tmp_path, "proc/meminfo"))["MemTotal"]
    assert memtotal_kb == 600 * MIB - bm.kernel_reserved_kb_for(2048 * MIB)
    assert g.stats.target_writes == 1 and g.stats.below_committed_s == 0


def test_a_write_caught_half_done_is_not_a_target_of_0(tmp_path) -> None:
    """The daemon's open(O_TRUNC) then write(): the simulator may look in
    between.  The kernel's store sees the whole write() or nothing, so an
    empty file is no target (it was read as 0 and shrank a busy guest)."""
    g = make(tmp_path)
    open(tmp_path / SYSFS / "target", "w").close()
    run(g, 1)
    assert g.driver.target_kb == 1024 * MIB and g.stats.target_writes == 0
    with open(tmp_path / SYSFS / "target", "w") as f:  # the write lands
        f.write(f"{600 * MIB * 1024}\n")
    run(g, 0.25, 1)
    assert g.driver.target_kb == 600 * MIB and g.stats.target_writes == 1


def test_rewriting_the_target_the_kernel_took_is_not_a_move(tmp_path) -> None:
    """Directed: the kernel takes memory/target (kB, floored to pages); the
    daemon then writes the same target in bytes.  A write, not a move."""
    g = make(tmp_path)
    g.on_target_watch()
    run(g, 0.25, reader=lambda: "614403")  # 600 MiB + 3 kB: the kernel takes 614400
    with open(tmp_path / SYSFS / "target", "w") as f:
        f.write(f"{614403 * 1024}\n")
    run(g, 0.25, 0.25)
    assert g.stats.target_writes == 1 and g.stats.target_moves == 0
    with open(tmp_path / SYSFS / "target", "w") as f:
        f.write(f"{700 * MIB * 1024}\n")
    run(g, 0.25, 0.5)
    assert g.stats.target_writes == 2 and g.stats.target_moves == 1
    text = read(tmp_path, f"{SYSFS}/target")
    os.utime(tmp_path / SYSFS / "target", ns=(1, 1))  # a write in place of the same text
    run(g, 0.25, 0.75)
    assert read(tmp_path, f"{SYSFS}/target") == text
    assert g.stats.target_writes == 3 and g.stats.target_moves == 1
    run(g, 0.5, 1.0)  # nothing written since: nothing counted
    assert g.stats.target_writes == 3


def test_target_kb_write_and_garbage(tmp_path) -> None:
    g = make(tmp_path)
    with open(tmp_path / SYSFS / "target_kb", "w") as f:
        f.write("0x20000000\n")  # the kernel takes hex: 512 GiB, more than maxmem
    run(g, 10)
    assert g.driver.current_kb == 2048 * MIB
    with open(tmp_path / SYSFS / "target", "w") as f:
        f.write("garbage\n")  # memparse gives 0: the kernel balloons as far as it can
    run(g, 10, 10)
    assert g.driver.target_kb == 0
    floor_kb = g.driver.current_kb
    assert 0 < floor_kb < 400 * MIB and g.driver.blocked_s > 0
    assert g.vm.swap_used_kb == 0  # the balloon does not push memory to swap
    assert g.stats.below_committed_s > 0  # but MemTotal is now below Committed_AS


def test_memory_target_watch(tmp_path) -> None:
    g = make(tmp_path)
    run(g, 1, reader=lambda: "360448")  # no watch event yet: nothing read
    assert g.driver.target_kb == 1024 * MIB
    g.on_target_watch("/local/domain/1/memory/target")
    run(g, 5, 1, reader=lambda: "360448")
    assert g.driver.current_kb == 360448 and g.stats.watch_targets == 1
    g.on_target_watch()
    run(g, 1, 6, reader=lambda: "junk")  # xenbus_scanf fails: ignored
    assert g.driver.target_kb == 360448


def test_legacy_proc_balloon(tmp_path) -> None:
    g = make(tmp_path, kind=bm.PROC)
    assert detect_balloon(Root(str(tmp_path))).name == "proc"
    assert read(tmp_path, "proc/xen/balloon").startswith("Current allocation:  1048576 kB\n")
    with open(tmp_path / "proc/xen/balloon", "w") as f:  # as the original: echo $bytes >
        f.write(f"{700 * MIB * 1024}\n")
    run(g, 5)
    text = read(tmp_path, "proc/xen/balloon")
    assert text.splitlines()[:2] == ["Current allocation:   716800 kB",
                                     "Requested target:     716800 kB"]
    assert parse_meminfo(read(tmp_path, "proc/meminfo"))["MemTotal"] == 716800
    with open(tmp_path / "proc/xen/balloon", "w") as f:
        f.write("\n")  # a runt: refused, target unchanged
    run(g, 1, 5)
    assert g.driver.target_kb == 716800


def test_rewrite_does_not_lose_a_write_made_meanwhile(tmp_path) -> None:
    g = make(tmp_path)
    path = str(tmp_path / SYSFS / "target")
    with open(path, "w") as f:
        f.write("123456789\n")
    # the step saw the old text: a daemon write after the poll must survive
    g._put_unless_written(path, "42\n", seen="something else")
    assert read(tmp_path, f"{SYSFS}/target") == "123456789\n"


def test_growth_beyond_memtotal_is_counted(tmp_path) -> None:
    from xenballoond.sim.workload import Job
    burst = Workload(base_committed_kb=300 * MIB, base_anon_kb=150 * MIB, base_io_kb_per_s=0,
                     base_cpu_pct=1,
                     jobs=(Job(start_s=1.0, ramp_up_s=2.0, hold_s=10.0, ramp_down_s=0.0,
                               committed_kb=500 * MIB, touched_pct=90, io_kb_per_s=0,
                               cpu_pct=50),))
    g = make(tmp_path, workload=burst)
    with open(tmp_path / SYSFS / "target", "w") as f:
        f.write(f"{400 * MIB * 1024}\n")
    run(g, 6)
    assert g.stats.below_committed_s > 0
    assert g.stats.worst_deficit_kb > 300 * MIB
    assert g.swapped_out_pages > 0  # 450 MiB touched does not fit in ~350 MiB


@pytest.mark.parametrize("text,value", [
    ("360448", 360448), ("  360448\n", 360448), ("+5", 5), ("12abc", 12), ("", None),
    ("abc", None), ("-1", None), ("99999999999999999999", 99999999999999999999 & ((1 << 64) - 1)),
])
def test_scanf_llu(text: str, value: int | None) -> None:
    assert scanf_llu(text) == value


def test_write_atomic_replaces(tmp_path) -> None:
    p = str(tmp_path / "f")
    write_atomic(p, "one")
    ino = os.stat(p).st_ino
    write_atomic(p, "two")
    assert read(tmp_path, "f") == "two" and os.stat(p).st_ino != ino
    assert os.listdir(tmp_path) == ["f"]
