"""The minimum target (contract/minimum.py): the 2008 floor and the adaptive one (issue
24), the guest's decide() with either, dom0's overrides of the rule.

Expected values are worked by hand from the formulas in the docstrings, never
taken from the code's output.  The 2008 curve's own table is in
test_policy.py (with the original's bash as oracle).
"""
from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from tests import test_tick_properties as tick_props
from tests.guestroot import SYSFS, make_guest, write
from tests.policy_kw import decide
from xenballoond.guest.settings import Config
from xenballoond.dom0 import guests
from xenballoond.dom0.stats import Published, make_row
from xenballoond.guest.effective import merge
from xenballoond.contract.overrides import Overrides, parse_overrides
from xenballoond.guest.policy import MIB
from xenballoond.contract.minimum import (MIN_POLICIES, adaptive_min_mb, hard_min_mb,
                                          min_target_mb, parse_min_policy, policy_min_mb)

GIB_KB = 1024 * 1024

# maxmem (kB) -> hard_min_mb: 48 + maxmem MiB / 32, at most the 2008 floor
HARD_GOLDEN = [
    (393216, 60),      # 384 MiB: 48 + 12 (2008: 40 + 98304 >> 10 = 136)
    (GIB_KB, 80),      # 48 + 32 (2008: 104 + 262144 >> 11 = 232)
    (2 * GIB_KB, 112),  # 48 + 64 (2008: 296 + 524288 >> 13 = 360)
    (4 * GIB_KB, 176),  # 48 + 128 (2008: 296 + 1048576 >> 13 = 424)
    (131072, 52),      # 128 MiB: 48 + 4 (2008: 40 + 32768 >> 10 = 72)
    (65536, 40),       # 64 MiB: 48 + 2 = 50, above the 2008 floor 8 + 16384 >> 9 = 40: 40
    (0, 8),            # nothing: the 2008 floor of 0 is 8
]


@pytest.mark.parametrize("maxmem_kb,expected_mb", HARD_GOLDEN)
def test_hard_bound_by_hand(maxmem_kb: int, expected_mb: int) -> None:
    assert hard_min_mb(maxmem_kb) == expected_mb


def test_hard_bound_of_a_negative_mark_is_the_2008_floor_of_it() -> None:
    # bash_div(-5, 1024) = 0 < 125 MB, pages = bash_div(-5, 4) = -1, -1 >> 9 = -1: 8 - 1 = 7
    assert min_target_mb(-5) == 7
    assert hard_min_mb(-5) == 7


# (maxmem kB, need kB) -> adaptive_min_mb
ADAPTIVE_GOLDEN = [
    (GIB_KB, 0, 80),                 # no need measured: the hard bound
    (GIB_KB, -5, 80),                # garbage need: the hard bound
    (GIB_KB, 81920, 80),             # 80 MiB exactly
    (GIB_KB, 81921, 81),             # a kB more: rounded up to 81
    (GIB_KB, 100000, 98),            # 97.66 -> 98
    (GIB_KB, 237568, 232),           # 232 MiB: the 2008 floor itself
    (GIB_KB, 10 ** 12, 232),         # a huge need: never above the 2008 floor
    # the real host's guest (memory=384): reservation 63116 kB, Mapped 40208 kB,
    # min_free_kbytes 2465: 63116 + 40208 + 2 * 2465 = 108254 kB = 105.7 -> 106 MB
    (393216, 108254, 106),
    (393216, 150000, 136),           # 146.5 MB over its 2008 floor 136
    (65536, 10 ** 6, 40),            # tiny: hard and 2008 floors are both 40
]


@pytest.mark.parametrize("maxmem_kb,need_kb,expected_mb", ADAPTIVE_GOLDEN)
def test_adaptive_floor_by_hand(maxmem_kb: int, need_kb: int, expected_mb: int) -> None:
    assert adaptive_min_mb(maxmem_kb, need_kb) == expected_mb


def test_floor_policy_and_minmem() -> None:
    assert policy_min_mb("2008", GIB_KB, 0, 100000) == 232
    assert policy_min_mb("adaptive", GIB_KB, 0, 100000) == 98
    # XENBALLOON_MINMEM is the administrator's number: it wins over either rule
    assert policy_min_mb("adaptive", GIB_KB, 300, 100000) == 300
    assert policy_min_mb("adaptive", GIB_KB, 50, 100000) == 50
    assert policy_min_mb("2008", GIB_KB, 50) == 50
    # anything but "adaptive" is the 2008 rule (the config and overrides let nothing else in)
    assert policy_min_mb("aggressive", GIB_KB, 0, 0) == 232


big = st.integers(-(1 << 62), 1 << 62)
marks = st.integers(0, 1 << 40)


@settings(max_examples=500)
@given(marks, big)
def test_adaptive_floor_between_its_bounds(maxmem_kb: int, need_kb: int) -> None:
    floor = adaptive_min_mb(maxmem_kb, need_kb)
    assert hard_min_mb(maxmem_kb) <= floor <= min_target_mb(maxmem_kb)
    # the hard bound is a real bound: 48 MB, or the whole 2008 floor of a tiny guest
    assert hard_min_mb(maxmem_kb) >= min(48, min_target_mb(maxmem_kb))
    # it covers the need, unless the need is above the 2008 floor
    assert floor * 1024 >= min(need_kb, min_target_mb(maxmem_kb) * 1024)


@settings(max_examples=500)
@given(marks, marks, big, big)
def test_adaptive_floor_is_monotone(mark_a: int, mark_b: int, need_a: int, need_b: int) -> None:
    """dom0 works the floor out of static-max, the guest out of its high-water
    mark (never above static-max): with the same need, dom0's is never lower,
    so dom0 never asks a guest below the floor the guest keeps."""
    lo_mark, hi_mark = sorted((mark_a, mark_b))
    lo_need, hi_need = sorted((need_a, need_b))
    assert adaptive_min_mb(lo_mark, lo_need) <= adaptive_min_mb(hi_mark, hi_need)
    assert hard_min_mb(lo_mark) <= hard_min_mb(hi_mark)


# ----------------------------------------------------------------- the guest's decide()

def test_directed_target_floored_by_the_policy() -> None:
    """dom0 asks a 1 GiB guest for 100000 kB; it runs on 108254 kB (the real
    host's figures above, with the reservation in kernel_reserved_kb)."""
    common = dict(self_ballooning=False, directed_target_kb=100000, min_mem_mb=0,
                  down_hysteresis=10, up_hysteresis=1, cur_kb=GIB_KB, committed_as_kb=150000,
                  kernel_reserved_kb=63116, maxmem_kb=GIB_KB, run_need_kb=45138)
    d2008 = decide(min_policy="2008", **common)
    assert (d2008.tgt_bytes, d2008.min_bytes) == (232 * MIB, 232 * MIB)
    adaptive = decide(min_policy="adaptive", **common)
    assert (adaptive.tgt_bytes, adaptive.min_bytes) == (106 * MIB, 106 * MIB)
    # a target above the adaptive floor is taken as it is
    assert decide(min_policy="adaptive", **{**common, "directed_target_kb": 200000}
                  ).tgt_bytes == 200000 * 1024
    # dom0's memory/minmem still raises it
    assert decide(min_policy="adaptive", floor_mb=150, **common).tgt_bytes == 150 * MIB


def test_self_target_of_an_idle_guest_below_the_2008_floor() -> None:
    """An idle 1 GiB guest (2008 driver: no reservation) commits 100000 kB: its
    self target is 100000 + max(10% of 1048576 = 104857, run 45138) = 204857 kB
    (200.1 MB), under the 2008 floor of 232 MB; at once with downhysteresis 0."""
    common = dict(self_ballooning=True, directed_target_kb=None, min_mem_mb=0,
                  down_hysteresis=0, up_hysteresis=1,
                  self_reserve_pct=10, cur_kb=GIB_KB, committed_as_kb=100000,
                  kernel_reserved_kb=0, maxmem_kb=GIB_KB, boot_kb=GIB_KB, run_need_kb=45138)
    assert decide(min_policy="2008", **common).tgt_bytes == 232 * MIB
    adaptive = decide(min_policy="adaptive", **common)
    assert adaptive.tgt_bytes == 204857 * 1024
    assert adaptive.min_bytes == 80 * MIB  # the hard bound: its need is 45138 kB (45 MB)
    # rising demand: still never a step down, whatever the floor
    rising = decide(min_policy="adaptive", committed_rise_kb=50000, **common)
    assert rising.tgt_bytes == GIB_KB * 1024


@settings(max_examples=300, deadline=None)
@given(self_mode=st.booleans(), policy=st.sampled_from(MIN_POLICIES),
       target=st.one_of(st.none(), st.integers(1, 1 << 40)), cur=st.integers(0, 1 << 40),
       committed=st.integers(0, 1 << 40), reserved=big, maxmem=marks, run_need=big,
       ceiling=st.one_of(st.none(), st.integers(1, 1 << 30)))
def test_no_target_below_the_hard_bound_nor_the_policys_floor(
        self_mode, policy, target, cur, committed, reserved, maxmem, run_need, ceiling) -> None:
    d = decide(self_ballooning=self_mode, directed_target_kb=target, min_mem_mb=0,
               down_hysteresis=10, up_hysteresis=1, self_reserve_pct=10, ceiling_mb=ceiling,
               min_policy=policy, cur_kb=cur, committed_as_kb=committed,
               kernel_reserved_kb=reserved, maxmem_kb=maxmem, boot_kb=maxmem,
               run_need_kb=run_need)
    floor = policy_min_mb(policy, maxmem, 0, max(reserved, 0) + max(run_need, 0))
    assert d.min_bytes == floor * MIB
    assert hard_min_mb(maxmem) * MIB <= d.min_bytes <= min_target_mb(maxmem) * MIB
    if d.tgt_bytes is not None:
        assert d.tgt_bytes >= d.min_bytes


@settings(max_examples=60, deadline=None)
@given(mapped=tick_props.numbers, committed=tick_props.numbers)
def test_tick_with_hostile_mapped_never_below_the_hard_bound(mapped, committed) -> None:
    """The real tick on a guest tree whose Mapped and Committed_AS lines are
    garbage, huge, negative or empty: the adaptive floor holds."""
    with tempfile.TemporaryDirectory() as root:
        make_guest(root, memtotal_kb=1, committed_kb=1, current_kb=1)
        write(os.path.join(root, "proc/meminfo"),
              f"MemTotal: 980000 kB\nMapped: {mapped} kB\nCommitted_AS: {committed} kB\n")
        write(os.path.join(root, SYSFS, "info/current_kb"), "1048576\n")
        write(os.path.join(root, SYSFS, "target"), "sentinel\n")
        write(os.path.join(root, "var/run/xenballoon-maxmem"), "1048576\n")
        tgt = tick_props.tick_once(root, Config(self_ballooning=False, min_policy="adaptive"))
        assert tgt is None  # directed, no memory/target: nothing to write
        tgt = tick_props.tick_once(root, Config(self_ballooning=True, min_policy="adaptive"))
        if tgt is not None:
            assert tgt >= 80 * MIB


# ----------------------------------------------------------------- dom0's override

def test_minpolicy_override_by_hand() -> None:
    o, problems = parse_overrides({"minpolicy": "adaptive"})
    assert (o.min_policy, problems) == ("adaptive", {})
    assert parse_overrides({"minpolicy": "2008\n"})[0].min_policy == "2008"
    assert parse_overrides({"minpolicy": " adaptive\t"})[0].min_policy == "adaptive"
    assert parse_overrides({})[0].min_policy is None
    config = Config(min_policy="2008")
    assert merge(config, parse_overrides({"minpolicy": "adaptive"})[0]).min_policy == "adaptive"
    assert merge(Config(min_policy="adaptive"),
                 parse_overrides({"minpolicy": "2008"})[0]).min_policy == "2008"
    assert merge(Config(min_policy="adaptive"), Overrides()).min_policy == "adaptive"


HOSTILE_POLICIES = ["", " ", "Adaptive", "ADAPTIVE", "aggressive", "2009", "0", "1", "-1",
                    "02008", "adaptive\x1b[31m", "\x1b]0;pwned\x07", "\u202eadaptive",
                    "adaptive\x00", "a[$(reboot)]", "adaptive adaptive", "\uff12008",
                    "9" * 100000, "adaptive" * 1000]


@pytest.mark.parametrize("raw", HOSTILE_POLICIES)
def test_minpolicy_hostile_values_are_ignored_and_named(raw: str) -> None:
    o, problems = parse_overrides({"minpolicy": raw, "minmem": "256"})
    assert o.min_policy is None and o.min_mb == 256
    assert set(problems) == {"minpolicy"}
    assert problems["minpolicy"].startswith("ignoring memory/minpolicy=")
    assert "not one of 2008, adaptive" in problems["minpolicy"]
    assert len(problems["minpolicy"]) < 200  # a huge value is not echoed back
    assert "\x1b" not in problems["minpolicy"]  # repr(): escapes shown, not played
    # the config's rule stays in force
    assert merge(Config(min_policy="adaptive"), o).min_policy == "adaptive"


@given(st.text(max_size=40))
def test_minpolicy_is_a_policy_or_nothing(raw: str) -> None:
    assert parse_min_policy(raw) in (None, *MIN_POLICIES)
    o, _ = parse_overrides({"minpolicy": raw})
    assert o.min_policy in (None, *MIN_POLICIES)


# ----------------------------------------------------------------- dom0's balancer

def dom0_view(minpolicy: str | None, meminfo: str | None, *, cur_kb: int = GIB_KB,
              static_max: str = "2097152", minmem: str | None = None):
    domain = guests.Domain(5, "g", cur_kb)
    row = make_row(Published(domid=5, meminfo=meminfo, uptime="10.00 5.00"))
    keys = guests.Dom0Keys(static_max=static_max, balance="1", selfballoon="0", minmem=minmem,
                           minpolicy=minpolicy)
    return guests.guest_view(domain, keys, row, listed=(), fresh=True,
                             marked_uncooperative=False).state


MEMINFO = "MemTotal: 1000000 kB\nMapped: {} kB\nCommitted_AS: 200000 kB\n"


def test_dom0_floor_by_hand() -> None:
    """A guest of 1 GiB (xl list), static-max 2 GiB, MemTotal 1000000 kB:
    reservation 1048576 - 1000000 = 48576 kB; min_free_kbytes sqrt(16000000) =
    4000; Mapped 100000: need 48576 + 100000 + 8000 = 156576 kB = 152.9 ->
    153 MB, within [48 + 2048 / 32 = 112, 296 + 524288 >> 13 = 360]."""
    assert dom0_view("adaptive", MEMINFO.format(100000)).min_kb == 153 * 1024
    assert dom0_view("2008", MEMINFO.format(100000)).min_kb == 360 * 1024
    assert dom0_view(None, MEMINFO.format(100000)).min_kb == 360 * 1024  # not set: 2008
    # Mapped 40000: need 96576 kB = 94.3 MB, under the hard bound 112
    assert dom0_view("adaptive", MEMINFO.format(40000)).min_kb == 112 * 1024
    # dom0's memory/minmem still raises it, as in the guest
    assert dom0_view("adaptive", MEMINFO.format(100000), minmem="200").min_kb == 200 * 1024


@pytest.mark.parametrize("mapped", ["-1", "abc", "", "1e9", "0x10", "\x1b[31m", "9" * 40])
def test_dom0_floor_garbage_mapped_is_no_need(mapped: str) -> None:
    """Not a number: no Mapped (need 48576 + 8000 = 55.3 MB): the hard bound."""
    assert make_row(Published(domid=5, meminfo=MEMINFO.format(mapped))).mapped_kb is None
    assert dom0_view("adaptive", MEMINFO.format(mapped)).min_kb == 112 * 1024


def test_dom0_floor_a_guest_lie_stays_within_the_bounds() -> None:
    # a huge Mapped: capped at static-max, so the 2008 floor, no more
    assert dom0_view("adaptive", MEMINFO.format(10 ** 10)).min_kb == 360 * 1024
    # MemTotal above what the domain holds: no reservation; tiny Mapped: the hard bound
    lie = "MemTotal: 99999999 kB\nMapped: 0 kB\nCommitted_AS: 1 kB\n"
    assert dom0_view("adaptive", lie).min_kb == 112 * 1024
    # nothing published at all
    assert dom0_view("adaptive", None).min_kb == 112 * 1024


@pytest.mark.parametrize("raw", HOSTILE_POLICIES)
def test_dom0_reads_a_hostile_minpolicy_as_2008(raw: str) -> None:
    assert guests.min_policy(raw) == "2008"
    assert dom0_view(raw, MEMINFO.format(100000)).min_kb == 360 * 1024


@settings(max_examples=300, deadline=None)
@given(minpolicy=st.one_of(st.none(), st.sampled_from(MIN_POLICIES), st.text(max_size=20)),
       meminfo=st.one_of(st.none(), st.text(max_size=100), st.from_regex(
           r"MemTotal: -?[0-9]{1,14} kB\nMapped: -?[0-9]{1,14} kB\nCommitted_AS: [0-9]{1,14} kB\n",
           fullmatch=True)),
       cur_kb=st.integers(0, 1 << 40), static_max_kb=st.integers(1, 1 << 40))
def test_dom0_floor_between_the_hard_bound_and_the_2008_floor(minpolicy, meminfo, cur_kb,
                                                               static_max_kb) -> None:
    state = dom0_view(minpolicy, meminfo, cur_kb=cur_kb, static_max=str(static_max_kb))
    hard_kb = min(hard_min_mb(static_max_kb) * 1024, static_max_kb)
    top_kb = min(min_target_mb(static_max_kb) * 1024, static_max_kb)
    assert hard_kb <= state.min_kb <= top_kb
    if guests.min_policy(minpolicy) == "2008":
        assert state.min_kb == top_kb


def test_the_policy_line_names_the_adaptive_floors_bounds_not_its_value() -> None:
    """Its value moves with Mapped: the line would be logged every tick."""
    from xenballoond.guest.effective import Effective
    from xenballoond.guest.policyline import describe
    s = Effective(self_ballooning=False, interval_s=1, directed_target_kb=None, min_mem_mb=0,
                  down_hysteresis=10, up_hysteresis=1, min_policy="adaptive")
    lines = {describe(s, min_mb=mb, maxmem_kb=GIB_KB, boot_kb=GIB_KB, xenstore="native",
                      balloon="sysfs") for mb in (80, 97, 150)}
    assert lines == {"policy: directed (memory/target), minimum adaptive, what the guest needs "
                     "to run within 80-232 MB (of the high-water mark 1048576 kB), hysteresis "
                     "down 10 up 1, every 1 s, xenstore native, balloon sysfs"}
