"""The guest kernel's memory accounting and the /proc text it is shown as."""
from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings, strategies as st

from tests.guestroot import parse_vmstat
from xenballoond.guest.meminfo import parse_meminfo
from xenballoond.sim import procfs, vm_model as vm
from xenballoond.sim.workload import Demand

MIB = 1024
GIB = 1024 * MIB


def run(s: vm.VmState, seconds: float, memtotal_kb: int, demand: Demand) -> vm.VmState:
    for _ in range(int(seconds / 0.25)):
        s = vm.step(s, 0.25, memtotal_kb, demand)
    return s


def quiet(anon_kb: int) -> Demand:
    return Demand(committed_kb=anon_kb * 2, anon_kb=anon_kb, io_kb_per_s=0, cpu_pct=0)


def test_free_floor_is_twice_min_free_kbytes() -> None:
    # min_free_kbytes = sqrt(lowmem_kB * 16): 4096 for 1 GiB
    assert vm.free_floor_kb(GIB) == 8192
    assert vm.free_floor_kb(0) == 0


def test_no_swap_while_anon_fits() -> None:
    s = run(vm.boot(uptime_s=30, swap_total_kb=512 * MIB, anon_kb=200 * MIB), 10, GIB,
            quiet(200 * MIB))
    c = s.counters
    assert (s.swap_used_kb, c.pswpout - vm.BOOT_COUNTERS.pswpout, c.oom_kill) == (0, 0, 0)


def test_swap_out_when_memory_is_short_then_back_in() -> None:
    s = vm.boot(uptime_s=30, swap_total_kb=512 * MIB, anon_kb=300 * MIB)
    memtotal_kb = 300 * MIB
    room_kb = (memtotal_kb - vm.kernel_kb(memtotal_kb, 300 * MIB) - vm.SLAB_RECLAIM_BASE_KB
               - vm.SHMEM_KB - vm.MIN_FILE_KB - vm.free_floor_kb(memtotal_kb))
    s = vm.step(s, 0.25, memtotal_kb, quiet(300 * MIB))
    short_kb = -(-(300 * MIB - room_kb) // 4) * 4  # whole pages
    assert s.swap_used_kb == short_kb
    assert s.counters.pswpout - vm.BOOT_COUNTERS.pswpout == short_kb // 4
    assert s.counters.allocstall_normal == 1
    # the balloon gives memory back: pages come back in, counted in pswpin
    s = run(s, 20, GIB, quiet(300 * MIB))
    assert s.swap_used_kb == 0
    assert s.counters.pswpin == s.counters.pswpout


def test_oom_counted_once_per_episode() -> None:
    s = vm.boot(uptime_s=30, swap_total_kb=64 * MIB, anon_kb=500 * MIB)
    s = run(s, 5, 256 * MIB, quiet(500 * MIB))
    assert s.in_oom and s.counters.oom_kill == 1 and s.swap_used_kb == 64 * MIB
    s = run(s, 5, GIB, quiet(500 * MIB))
    assert not s.in_oom
    s = run(s, 5, 256 * MIB, quiet(500 * MIB))
    assert s.counters.oom_kill == 2


def test_reads_fill_the_cache_and_reclaim_empties_it() -> None:
    s = vm.boot(uptime_s=30, swap_total_kb=0, anon_kb=100 * MIB)
    busy = Demand(committed_kb=200 * MIB, anon_kb=100 * MIB, io_kb_per_s=64 * MIB, cpu_pct=50)
    s = run(s, 20, GIB, busy)
    assert s.cache_kb > 500 * MIB
    free = vm.meminfo_fields(s, GIB, 200 * MIB, 2 * GIB)["MemFree"]
    assert free <= 2 * vm.free_floor_kb(GIB)  # the cache took what was free
    shrunk = run(s, 1, 400 * MIB, busy)
    assert shrunk.cache_kb < 300 * MIB
    assert shrunk.counters.pgsteal_kswapd > s.counters.pgsteal_kswapd


def test_uptime_and_idle() -> None:
    s = vm.step(vm.boot(uptime_s=100, swap_total_kb=0), 2.0, GIB,
                Demand(committed_kb=1, anon_kb=1, io_kb_per_s=0, cpu_pct=25))
    assert (s.uptime_s, s.idle_s) == (102.0, 90.0 + 1.5)
    assert procfs.uptime_text(s.uptime_s, s.idle_s) == "102.00 91.50\n"


def test_meminfo_text_formats_as_linux() -> None:
    s = vm.boot(uptime_s=30, swap_total_kb=512 * MIB, anon_kb=100 * MIB)
    text = procfs.meminfo_text(vm.meminfo_fields(s, 999424, 300000, 2 * GIB))
    lines = text.splitlines()
    assert lines[0] == "MemTotal:         999424 kB"
    assert "Committed_AS:     300000 kB" in lines
    assert "VmallocTotal:   34359738367 kB" in lines
    assert "HardwareCorrupted:     0 kB" in lines
    assert "HugePages_Total:       0" in lines
    assert "Hugepagesize:       2048 kB" in lines
    assert len(lines) == 53 and 1300 <= len(text) <= 1600
    assert len(parse_meminfo(text)) == 53  # every line parses with the daemon's parser


def test_vmstat_text_has_the_modern_key_set() -> None:
    s = vm.boot(uptime_s=30, swap_total_kb=512 * MIB, anon_kb=100 * MIB)
    fields = vm.meminfo_fields(s, GIB, 300000, 2 * GIB)
    values = s.counters.as_dict()
    values.update(vm.vmstat_gauges(s, fields))
    text = procfs.vmstat_text(values)
    parsed = parse_vmstat(text)
    assert list(parsed) == list(procfs.VMSTAT_KEYS) and len(parsed) > 170
    assert parsed["nr_free_pages"] == fields["MemFree"] // 4
    assert parsed["pswpin"] == 0 and parsed["pgpgin"] == vm.BOOT_COUNTERS.pgpgin
    assert 3000 <= len(text) <= 4600  # "a modern /proc/vmstat is about 4 KB"


@settings(max_examples=80, deadline=None)
@given(memtotal_kb=st.integers(64 * MIB, 8 * GIB), anon_kb=st.integers(0, 8 * GIB),
       swap_kb=st.integers(0, 2 * GIB), io=st.integers(0, 256 * MIB), cpu=st.integers(0, 100),
       steps=st.integers(1, 12), shrink_pct=st.integers(10, 100))
def test_accounting_invariants(memtotal_kb: int, anon_kb: int, swap_kb: int, io: int, cpu: int,
                               steps: int, shrink_pct: int) -> None:
    s = vm.boot(uptime_s=10, swap_total_kb=swap_kb)
    demand = Demand(committed_kb=anon_kb + 1, anon_kb=anon_kb, io_kb_per_s=io, cpu_pct=cpu)
    for i in range(steps):
        mt = memtotal_kb if i % 2 == 0 else memtotal_kb * shrink_pct // 100
        before = s.counters
        s = vm.step(s, 0.25, mt, demand)
        assert 0 <= s.swap_used_kb <= s.swap_total_kb
        assert s.cache_kb >= 0 and vm.resident_anon_kb(s) >= 0
        for name, value in s.counters.as_dict().items():
            assert value >= getattr(before, name), name  # counters never go back
        fields = vm.meminfo_fields(s, mt, demand.committed_kb, 8 * GIB)
        assert all(v >= 0 for v in fields.values())
        assert fields["MemFree"] <= fields["MemTotal"]
        assert fields["SwapFree"] + s.swap_used_kb == fields["SwapTotal"]
    assert replace(s, counters=s.counters) == s


def test_pressure_is_a_page_cache_down_to_the_hot_set_or_an_oom() -> None:
    s = vm.boot(uptime_s=60, swap_total_kb=0, cache_kb=48 * 1024)
    assert not vm.under_pressure(s, 400 * 1024)
    squeezed = replace(s, cache_kb=vm.MIN_FILE_KB)
    assert vm.under_pressure(squeezed, 400 * 1024)
    assert vm.under_pressure(replace(s, in_oom=True), 400 * 1024)


def test_without_swap_nothing_is_counted_as_swapped_out() -> None:
    s = vm.boot(uptime_s=60, swap_total_kb=0)
    s = vm.step(s, 1.0, 200 * 1024, Demand(committed_kb=400 * 1024, anon_kb=400 * 1024,
                                           io_kb_per_s=0, cpu_pct=10))
    assert s.in_oom and s.counters.oom_kill == 1 and s.counters.pswpout == 0
