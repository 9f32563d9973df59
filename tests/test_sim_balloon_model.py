"""The balloon driver model against what a real Linux 6.1 PV guest showed
(/work/shared/xen-e2e example run: memory=384M, maxmem=768M) and against the
2008 xenlinux driver's source (drivers/xen/balloon/balloon.c)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from xenballoond.sim import balloon_model as bm

MIB = 1024


def settle(d: bm.Driver, in_use_kb: int = 0, seconds: float = 30.0) -> bm.Driver:
    for _ in range(int(seconds / 0.25)):
        d = bm.step(d, 0.25, in_use_kb)
    return d


def test_boot_matches_the_e2e_guest() -> None:
    d = bm.boot(bm.SYSFS, 384 * MIB, 768 * MIB)
    files = bm.sysfs_files(d)
    # MEM[boot] target_kb=393216 target=402653184 current_kb=393216 low_kb=393216 high_kb=0
    assert files == {"target": "402653184\n", "target_kb": "393216\n",
                     "info/current_kb": "393216\n", "info/low_kb": "393216\n",
                     "info/high_kb": "0\n"}


def test_e2e_sequence_shrink_memset_cap_memmax() -> None:
    d = bm.boot(bm.SYSFS, 384 * MIB, 768 * MIB)
    offset_kb = d.current_kb - d.memtotal_kb
    # step A: 320 MiB in bytes written to target
    d = settle(bm.set_target_kb(d, bm.parse_sysfs_target(f"{320 * MIB * 1024}\n")))
    assert (d.current_kb, d.balloon_kb) == (327680, 458752)
    assert d.current_kb - d.memtotal_kb == offset_kb  # "MemTotal fell by the same amount"
    # xl mem-set 352m: libxl caps at target + 1 MiB, the watch sets the target
    d = bm.set_cap_kb(d, 360448 + bm.LIBXL_MAXMEM_SLACK_KB)
    d = settle(bm.set_target_kb(d, 360448))
    assert d.current_kb == 360448
    # step C: grow to 700 MiB via target_kb: stuck at the cap
    d = settle(bm.set_target_kb(d, bm.parse_sysfs_target_kb("716800\n")))
    assert (d.current_kb, d.target_kb) == (361472, 716800)  # as the real guest
    assert d.blocked_s > 0
    # xl mem-max 768m, then it reaches the target
    d = settle(bm.set_cap_kb(d, 768 * MIB + bm.LIBXL_MAXMEM_SLACK_KB))
    assert (d.current_kb, d.balloon_kb) == (716800, 69632)


def test_growth_and_shrink_at_a_finite_rate() -> None:
    d = bm.boot(bm.SYSFS, 1024 * MIB, 2048 * MIB, down_kb_per_s=256 * MIB, up_kb_per_s=128 * MIB)
    d = bm.set_target_kb(d, 512 * MIB)
    d = bm.step(d, 0.25, 0)
    assert d.current_kb == 1024 * MIB - 64 * MIB
    d = bm.set_target_kb(d, 2048 * MIB)
    d = bm.step(d, 0.25, 0)
    assert d.current_kb == 1024 * MIB - 64 * MIB + 32 * MIB


def test_never_above_maxmem_without_a_cap() -> None:
    d = settle(bm.set_target_kb(bm.boot(bm.SYSFS, 512 * MIB, 1024 * MIB), 4096 * MIB))
    assert d.current_kb == 1024 * MIB


def test_never_below_what_the_guest_uses() -> None:
    d = settle(bm.set_target_kb(bm.boot(bm.SYSFS, 1024 * MIB, 1024 * MIB), 0), in_use_kb=300 * MIB)
    assert d.current_kb == 300 * MIB
    assert d.blocked_s > 0


def test_legacy_memtotal_is_the_allocation_and_hard_limit_shows() -> None:
    d = bm.boot(bm.PROC, 1024 * MIB, 2048 * MIB)
    assert d.memtotal_kb == d.current_kb  # totalram_pages = bs.current_pages
    d = bm.set_cap_kb(d, 1100 * MIB)
    d = settle(bm.set_target_kb(d, 1500 * MIB))
    assert d.current_kb == 1100 * MIB and d.hard_limit_kb == 1100 * MIB
    assert bm.proc_balloon_text(d) == (
        "Current allocation:  1126400 kB\n"
        "Requested target:    1536000 kB\n"
        "Low-mem balloon:      970752 kB\n"
        "High-mem balloon:          0 kB\n"
        "Driver pages:              0 kB\n"
        "Xen hard limit:      1126400 kB\n")
    # a new target resets the hard limit (balloon_set_new_target)
    d = bm.set_target_kb(d, 1000 * MIB)
    assert bm.proc_balloon_text(d).endswith("Xen hard limit:          ??? kB\n")


@pytest.mark.parametrize("text,value", [
    ("1024", 1024), ("1024\n", 1024), ("1K", 1024), ("1k", 1024), ("2M", 2 << 20),
    ("1G\n", 1 << 30), ("3t", 3 << 40), ("0x10", 16), ("0X1f", 31), ("010", 8), ("0", 0),
    ("09", 0),  # octal: the 9 stops it
    ("0x", 0), ("abc", 0), ("", 0), (" 12", 0), ("-5", 0), ("12abc", 12), ("12 M", 12),
    ("18446744073709551616", 0),  # 2^64 wraps
    ("18446744073709551615", (1 << 64) - 1), ("16E", 0),  # 16 << 60 wraps
])
def test_memparse_as_the_kernel(text: str, value: int) -> None:
    assert bm.memparse(text) == value


@pytest.mark.parametrize("text,kb", [
    ("335544320\n", 327680), ("335544321", 327680), ("335548415", 327680),
    ("320M", 327680), ("garbage", 0), ("", 0), ("4095", 0), ("4096", 4),
])
def test_sysfs_target_bytes(text: str, kb: int) -> None:
    assert bm.parse_sysfs_target(text) == kb


@pytest.mark.parametrize("text,kb", [
    ("327680", 327680), ("327681\n", 327680), ("3", 0), ("4", 4), ("0x400", 1024), ("x", 0),
])
def test_sysfs_target_kb(text: str, kb: int) -> None:
    assert bm.parse_sysfs_target_kb(text) == kb


@pytest.mark.parametrize("text,kb", [
    ("", None), ("\n", None), ("1", None),  # runts: -EBADMSG
    ("12", 0), ("4096\n", 4), ("1G", 1 << 20), ("9" * 64, bm.parse_sysfs_target("9" * 64)),
    ("9" * 65, None),  # -EFBIG
])
def test_proc_write(text: str, kb: int | None) -> None:
    assert bm.parse_proc_write(text) == kb


@given(kind=st.sampled_from(bm.KINDS),
       memory_mb=st.integers(64, 4096), extra_mb=st.integers(0, 4096),
       ops=st.lists(st.tuples(st.sampled_from(["target", "cap", "step"]),
                              st.integers(0, 1 << 24), st.integers(0, 1 << 23)), max_size=40))
def test_invariants(kind: str, memory_mb: int, extra_mb: int,
                    ops: list[tuple[str, int, int]]) -> None:
    d = bm.boot(kind, memory_mb * MIB, (memory_mb + extra_mb) * MIB)
    for op, kb, in_use_kb in ops:
        before = d.current_kb
        if op == "target":
            d = bm.set_target_kb(d, kb)
        elif op == "cap":
            d = bm.set_cap_kb(d, kb)
        else:
            d = bm.step(d, 0.25, in_use_kb)
            if d.current_kb > before:  # grew: never past the cap, maxmem or target
                assert d.current_kb <= min(d.cap_kb, d.static_max_kb, d.target_kb)
            if d.current_kb < before:  # shrank: never below the target or what is in use
                assert d.current_kb >= max(d.target_kb, in_use_kb // 4 * 4)
        assert 0 <= d.current_kb <= d.static_max_kb
        assert d.current_kb % 4 == 0 and d.target_kb % 4 == 0
        assert d.memtotal_kb <= d.current_kb
        text = bm.proc_balloon_text(d)
        assert text.startswith("Current allocation: ") and text.count("\n") == 6
