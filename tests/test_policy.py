"""The policy against golden values worked by hand from the original formulas,
and against the original's own bash functions (tests/bash_oracle.py)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from tests import bash_oracle
from tests.policy_kw import decide
from xenballoond.guest.effective import choose_interval_s
from xenballoond.contract.minimum import min_target_mb
from xenballoond.guest.policy import (MIB, bash_div, directed_target_bytes, self_target_bytes,
                                      step_bytes)

# (maxmem_kb, XENBALLOON_MINMEM) -> minmb() in MB, worked by hand:
# mb = kb/1024, pages = kb/4, then 8+(pages>>9) | 40+(pages>>10) | 104+(pages>>11) | 296+(pages>>13)
MINMB_GOLDEN = [
    ((1048576, 0), 232),   # 1 GiB: 104 + 262144>>11 = 104 + 128
    ((393216, 0), 136),    # 384 MiB: 40 + 98304>>10 = 40 + 96
    ((131072, 0), 72),     # 128 MiB: 40 + 32768>>10
    ((126975, 0), 69),     # mb 123: 8 + 31743>>9 = 8 + 61
    ((4194304, 0), 424),   # 4 GiB: 296 + 1048576>>13 = 296 + 128
    ((128000, 0), 71),     # mb 125 is the first of the second band: 40 + 32000>>10
    ((127999, 0), 70),     # mb 124: 8 + 31999>>9 = 8 + 62
    ((512000, 0), 166),    # mb 500: 104 + 128000>>11 = 104 + 62
    ((511999, 0), 164),    # mb 499: 40 + 127999>>10 = 40 + 124
    ((2048000, 0), 358),   # mb 2000: 296 + 512000>>13 = 296 + 62
    ((2047999, 0), 353),   # mb 1999: 104 + 511999>>11 = 104 + 249
    ((0, 0), 8),
    ((1048576, 300), 300),  # XENBALLOON_MINMEM wins
    ((1048576, 1), 1),
]


@pytest.mark.parametrize("args,expected_mb", MINMB_GOLDEN)
def test_min_target_golden(args: tuple[int, int], expected_mb: int) -> None:
    assert min_target_mb(*args) == expected_mb


def test_min_target_golden_matches_original_bash() -> None:
    assert bash_oracle.minmb([a for a, _ in MINMB_GOLDEN]) == [e for _, e in MINMB_GOLDEN]


@settings(max_examples=1, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 34), st.sampled_from([0, 0, 0, 64, 4096])),
                min_size=60, max_size=60))
def test_min_target_equals_original_on_random_sizes(cases: list[tuple[int, int]]) -> None:
    assert [min_target_mb(*c) for c in cases] == bash_oracle.minmb(cases)


def test_bash_division_truncates_toward_zero() -> None:
    assert bash_div(7, 2) == 3
    assert bash_div(-7, 2) == -3  # Python's // would give -4
    assert bash_div(7, -2) == -3
    with pytest.raises(ZeroDivisionError):
        bash_div(1, 0)


# (cur_bytes, tgt_bytes, down, up) -> bytes, by hand from balloon_to_target()
STEP_GOLDEN = [
    ((1024000000, 307200000, 10, 1), 952320000),   # 1024000000 - 716800000/10
    ((1024000000, 307200000, 0, 1), 307200000),    # down 0: at once
    ((1024000000, 307200000, 1, 1), 307200000),
    ((1024000000, 1023999999, 10, 1), 1024000000),  # 1/10 of 1 byte is 0
    ((512000000, 716800000, 10, 4), 563200000),    # 512000000 + 204800000/4
    ((512000000, 716800000, 10, 1), 716800000),
    ((512000000, 716800000, 10, 3), 580266666),    # 204800000/3 = 68266666.67 -> 68266666
    ((500, 500, 10, 1), 500),
]


@pytest.mark.parametrize("args,expected", STEP_GOLDEN)
def test_step_golden(args: tuple[int, int, int, int], expected: int) -> None:
    assert step_bytes(*args) == expected


def test_up_hysteresis_zero_is_at_once_not_a_crash() -> None:
    # the original divided by 0 here and bash killed the daemon
    assert step_bytes(100 * MIB, 200 * MIB, 10, 0) == 200 * MIB


def test_self_target_golden() -> None:
    # selftarget(): Committed_AS*1024, at least minmb*1024*1024
    assert self_target_bytes(300000, 232) == 307200000
    assert self_target_bytes(100000, 232) == 232 * MIB
    # pvops: the reservation kept out of MemTotal is added back
    assert self_target_bytes(300000, 232, kernel_reserved_kb=20000) == 320000 * 1024
    assert self_target_bytes(300000, 232, kernel_reserved_kb=-5) == 307200000


def test_self_reserve_golden() -> None:
    # 10% of 1 GiB booted with is 104857 kB (integer %), over Committed_AS 300000 kB
    from xenballoond.guest.policy import headroom_kb
    assert headroom_kb(1048576, 10) == 104857
    assert headroom_kb(1048576, 0) == 0
    assert self_target_bytes(300000, 232, 0, 104857) == 404857 * 1024
    d = decide(self_ballooning=True, directed_target_kb=None, cur_kb=300000,
               committed_as_kb=300000, kernel_reserved_kb=0, maxmem_kb=2097152, min_mem_mb=0,
               down_hysteresis=10, up_hysteresis=1, self_reserve_pct=10, boot_kb=1048576)
    assert d.tgt_bytes == 404857 * 1024  # of the boot memory, not of the 2 GiB mark
    # directed targets are dom0's: no reserve added
    d = decide(self_ballooning=False, directed_target_kb=300000, cur_kb=300000,
               committed_as_kb=0, kernel_reserved_kb=0, maxmem_kb=1048576, min_mem_mb=0,
               down_hysteresis=10, up_hysteresis=1, self_reserve_pct=10, boot_kb=1048576)
    assert d.tgt_bytes == 300000 * 1024


def test_directed_target_of_1kb_is_a_target_not_self() -> None:
    # the original's balloon_to_target 1 meant "self"; a dom0 target of 1 kB is floored
    assert directed_target_bytes(1, 232) == 232 * MIB
    assert directed_target_bytes(500000, 232) == 512000000


# balloon_to_target() of the original, run in bash, against decide() with the
# 2008 driver (no reservation offset), where the original was not wrong.
ORACLE_CASES = [
    # (arg, memtotal_kb, committed_kb, maxmem_kb, minmem_mb, down, up)
    (1, 1000000, 300000, 1048576, 0, 10, 1),
    (1, 1000000, 100000, 1048576, 0, 10, 1),    # floored at minmb 232
    (1, 500000, 700000, 1048576, 0, 10, 4),
    (1, 500000, 700000, 1048576, 0, 10, 3),
    (1, 1048576, 2000000, 1048576, 0, 0, 1),
    (300000, 1000000, 0, 1048576, 0, 10, 1),
    (300000, 1000000, 0, 1048576, 0, 0, 1),
    (900000, 400000, 0, 1048576, 0, 10, 2),
    (262144, 262144, 0, 1048576, 0, 10, 1),
    (1, 4000000, 12345, 4194304, 0, 7, 1),
    (1, 4000000, 12345, 4194304, 1000, 7, 1),
]


def _decide_like_original(arg: int, memtotal: int, committed: int, maxmem: int,
                          minmem: int, down: int, up: int) -> int:
    # XENBALLOON_SELF_RESERVE_PCT=0: the original's self target, Committed_AS exactly
    d = decide(self_ballooning=arg == 1, directed_target_kb=None if arg == 1 else arg,
               cur_kb=memtotal, committed_as_kb=committed, kernel_reserved_kb=0,
               maxmem_kb=maxmem, min_mem_mb=minmem, down_hysteresis=down,
               up_hysteresis=up)
    assert d.tgt_bytes is not None
    return d.tgt_bytes


def test_decide_matches_original_balloon_to_target() -> None:
    expected = bash_oracle.balloon_to_target(ORACLE_CASES)
    for case, want in zip(ORACLE_CASES, expected):
        arg, _, _, maxmem, minmem, _, _ = case
        if arg == 1:  # self-ballooning: the original's step, exactly
            assert _decide_like_original(*case) == want, case
        else:  # directed: dom0's target at once, floored; the original stepped 1/n
            assert _decide_like_original(*case) == max(arg * 1024,
                                                      min_target_mb(maxmem, minmem) * MIB)


@settings(max_examples=1, deadline=None)
@given(st.lists(st.tuples(
    st.integers(2, 1 << 26),                # arg: self (1 excluded) or target kB
    st.integers(65536, 1 << 26),            # MemTotal kB
    st.integers(0, 1 << 26),                # Committed_AS kB
    st.integers(0, 1 << 26),                # maxmem kB
    st.sampled_from([0, 0, 128]),
    st.integers(0, 20), st.integers(1, 20), st.booleans()), min_size=80, max_size=80))
def test_decide_equals_original_where_the_original_is_safe(cases: list) -> None:
    rows = []
    for arg, memtotal, committed, maxmem, minmem, down, up, self_mode in cases:
        maxmem = max(maxmem, memtotal)  # the main loop keeps it a high-water mark
        rows.append((1 if self_mode else arg, memtotal, committed, maxmem, minmem, down, up))
    expected = bash_oracle.balloon_to_target(rows)
    for row, want in zip(rows, expected):
        arg, memtotal, _, maxmem, minmem, _, _ = row
        min_bytes = min_target_mb(maxmem, minmem) * MIB
        got = _decide_like_original(*row)
        if arg != 1:
            # directed: dom0's target at once, floored; the original stepped 1/n of
            # the way, holding the guest above the toolstack's target
            assert got == max(arg * 1024, min_bytes), row
        elif want >= min_bytes:
            assert got == want, row
        else:
            # the original went below the minimum here (a partial step up from
            # below it); we never do
            assert got >= min_bytes


@given(st.booleans(), st.one_of(st.none(), st.integers(1, 1 << 40)), st.integers(0, 1 << 40),
       st.integers(0, 1 << 40), st.integers(-(1 << 30), 1 << 30), st.integers(0, 1 << 40),
       st.integers(0, 1 << 20), st.integers(0, 10**6), st.integers(0, 10**6))
def test_never_below_minimum(self_mode, target_kb, cur_kb, committed_kb, kernel_reserved_kb,
                             maxmem_kb, minmem_mb, down, up) -> None:
    d = decide(self_ballooning=self_mode, directed_target_kb=target_kb, cur_kb=cur_kb,
               committed_as_kb=committed_kb, kernel_reserved_kb=kernel_reserved_kb, maxmem_kb=maxmem_kb,
               min_mem_mb=minmem_mb, down_hysteresis=down, up_hysteresis=up)
    if d.tgt_bytes is not None:
        assert d.tgt_bytes >= min_target_mb(maxmem_kb, minmem_mb) * MIB
    else:
        assert not self_mode and target_kb is None


def test_below_minimum_goes_back_to_it_at_once() -> None:
    # dom0 squeezed the guest to 100 MB; minimum 232 MB; self target 300 MB; up
    # hysteresis 4 would have stepped to 150 MB (still under it) in the original
    d = decide(self_ballooning=True, directed_target_kb=None, cur_kb=100 * 1024,
               committed_as_kb=300 * 1024, kernel_reserved_kb=0, maxmem_kb=1048576,
               min_mem_mb=0, down_hysteresis=10, up_hysteresis=4)
    assert d.tgt_bytes == 232 * MIB


def test_directed_target_at_once_whatever_the_hysteresis() -> None:
    # the real host: xl mem-set 512 -> 256 MiB took 55 s with the 2008 steps (and a
    # restore then failed), 1.3 s with the kernel alone
    for down, up in ((10, 1), (2, 4), (1000000, 1000000)):
        d = decide(self_ballooning=False, directed_target_kb=262144, cur_kb=524288,
                   committed_as_kb=0, kernel_reserved_kb=0, maxmem_kb=786432, min_mem_mb=0,
                   down_hysteresis=down, up_hysteresis=up)
        assert d.tgt_bytes == 262144 * 1024
        d = decide(self_ballooning=False, directed_target_kb=524288, cur_kb=262144,
                   committed_as_kb=0, kernel_reserved_kb=0, maxmem_kb=786432, min_mem_mb=0,
                   down_hysteresis=down, up_hysteresis=up)
        assert d.tgt_bytes == 524288 * 1024


def test_interval_as_the_original_main_loop_chose_it() -> None:
    # XENBALLOON_SELF_INTERVAL when self-ballooning, else XENBALLOON_INTERVAL;
    # memory/interval (already validated) wins
    assert choose_interval_s(True, 3, 7, None) == 3
    assert choose_interval_s(False, 3, 7, None) == 7
    assert choose_interval_s(True, 3, 7, 9) == 9 and choose_interval_s(False, 3, 7, 9) == 9


def test_no_target_in_directed_mode_without_dom0() -> None:
    d = decide(self_ballooning=False, directed_target_kb=None, cur_kb=1, committed_as_kb=1,
               kernel_reserved_kb=0, maxmem_kb=1, min_mem_mb=0, down_hysteresis=1, up_hysteresis=1)
    assert d.tgt_bytes is None


def test_dom0_bounds_floor_and_cap_every_target() -> None:
    # minimum of a 1 GiB mark: 232 MB.  A floor of 300 MB raises it; a ceiling of
    # 400 MB caps a self target of 600 MB (Committed_AS, reserve 0) and dom0's target
    args = dict(cur_kb=500 * 1024, committed_as_kb=600 * 1024, kernel_reserved_kb=0,
                maxmem_kb=1048576, min_mem_mb=0, down_hysteresis=1, up_hysteresis=1)
    d = decide(self_ballooning=True, directed_target_kb=None, floor_mb=300, ceiling_mb=400, **args)
    assert (d.tgt_bytes, d.min_bytes) == (400 * MIB, 300 * MIB)
    d = decide(self_ballooning=False, directed_target_kb=100 * 1024, floor_mb=300, **args)
    assert d.tgt_bytes == 300 * MIB
    d = decide(self_ballooning=False, directed_target_kb=900 * 1024, ceiling_mb=400, **args)
    assert d.tgt_bytes == 400 * MIB
    # a ceiling under the guest's own minimum: the minimum wins
    d = decide(self_ballooning=False, directed_target_kb=900 * 1024, ceiling_mb=100, **args)
    assert d.tgt_bytes == 232 * MIB
