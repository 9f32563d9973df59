"""Publish on change (issue 12): what the guest sends again, and dom0's view
of an idle guest that publishes less often.  Pure functions; expected values
worked by hand (30 MB = 30720 kB; pswpin/pswpout are pages of 4 kB)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xenballoond.dom0.guests import Freshness
from xenballoond.dom0.settings import BalancerConfig
from xenballoond.guest.publish import (FIRST, MOVED, PERIOD, stats_due, watched_numbers,
                                       watched_vmstat)

LAST = {"MemTotal": 1000000, "Committed_AS": 500000, "pgpgin": 100000, "pgpgout": 50000,
        "pswpin": 0, "pswpout": 0}
T_KB = 30 * 1024


def moved(**changes: int) -> dict[str, int]:
    out = dict(LAST)
    for key, delta in changes.items():
        out[key] += delta
    return out


# (last, now, seconds since the last publication, threshold kB, expected)
GOLDEN = [
    (None, LAST, 0.0, T_KB, FIRST),
    (LAST, LAST, 5.0, T_KB, None),
    (LAST, LAST, 9.99, T_KB, None),
    (LAST, LAST, 10.0, T_KB, PERIOD),                        # XENBALLOON_PUBLISH_MAX_S
    (LAST, LAST, 3600.0, T_KB, PERIOD),
    (LAST, moved(Committed_AS=30720), 1.0, T_KB, None),       # exactly 30 MB: not more
    (LAST, moved(Committed_AS=30721), 1.0, T_KB, MOVED),
    (LAST, moved(Committed_AS=-30721), 1.0, T_KB, MOVED),     # down as much as up
    (LAST, moved(Committed_AS=20000, pgpgin=20000), 1.0, T_KB, None),  # each under it
    (LAST, moved(MemTotal=-4), 1.0, T_KB, MOVED),              # the balloon moved: any change
    (LAST, moved(MemTotal=4), 1.0, T_KB, MOVED),
    (LAST, moved(pgpgin=30721), 1.0, T_KB, MOVED),
    (LAST, moved(pgpgout=30720), 1.0, T_KB, None),
    (LAST, moved(pswpout=30724), 1.0, T_KB, MOVED),            # 7681 pages
    (LAST, moved(pswpin=30720), 1.0, T_KB, None),              # 7680 pages
    (LAST, {k: v for k, v in LAST.items() if k != "pswpin"}, 1.0, T_KB, MOVED),  # a line went
    (LAST, {**LAST, "extra": 0}, 1.0, T_KB, MOVED),
    (LAST, moved(Committed_AS=1), 1.0, 0, MOVED),              # threshold 0: any change
    (LAST, LAST, 1.0, 0, None),
    (LAST, moved(Committed_AS=10 ** 9), 1.0, 1024 * 1024 * 1024, None),  # the largest threshold
    ({}, {}, 1.0, T_KB, None),                                  # nothing sent but uptime
    ({}, {}, 10.0, T_KB, PERIOD),
]


@pytest.mark.parametrize("last,now,age_s,threshold_kb,expected", GOLDEN)
def test_stats_due_golden(last, now, age_s, threshold_kb, expected):
    last_at_s = None if last is None else 500.0
    assert stats_due(last, last_at_s, now, 500.0 + age_s, threshold_kb, 10) == expected


def test_watched_numbers_are_the_ones_dom0_reads_in_kb():
    meminfo = {"MemTotal": 1000, "MemFree": 5, "Committed_AS": 700, "Cached": 9}
    vmstat = {"pswpin": 3, "pswpout": 0, "pgpgin": 10, "nr_free_pages": 5, "pgfault": 8}
    assert watched_numbers(meminfo, vmstat, 4) == {
        "MemTotal": 1000, "Committed_AS": 700, "pgpgin": 10, "pswpin": 12, "pswpout": 0}
    assert watched_numbers(meminfo, None, 4) == {"MemTotal": 1000, "Committed_AS": 700}
    assert watched_numbers(None, vmstat, 64) == {"pgpgin": 10, "pswpin": 192, "pswpout": 0}
    assert watched_numbers(None, None, 4) == {}


KEYS = ("MemTotal", "Committed_AS", "pgpgin", "pgpgout", "pswpin", "pswpout")
NUMBERS = st.fixed_dictionaries({k: st.integers(0, 1 << 50) for k in KEYS})
THRESHOLDS = st.integers(0, 1 << 30)


@given(NUMBERS, st.floats(0, 9.999), THRESHOLDS)
def test_nothing_moved_nothing_due_within_the_period(numbers, age_s, threshold_kb):
    assert stats_due(numbers, 0.0, numbers, age_s, threshold_kb, 10) is None


@given(NUMBERS, NUMBERS, st.floats(10, 1e6), THRESHOLDS)
def test_always_due_after_the_period(last, now, age_s, threshold_kb):
    assert stats_due(last, 0.0, now, age_s, threshold_kb, 10) == PERIOD


@given(NUMBERS, NUMBERS, THRESHOLDS, THRESHOLDS)
def test_a_lower_threshold_is_due_at_least_as_often(last, now, t1, t2):
    low, high = sorted((t1, t2))
    if stats_due(last, 0.0, now, 1.0, high, 10) is not None:
        assert stats_due(last, 0.0, now, 1.0, low, 10) == MOVED


@given(NUMBERS, st.dictionaries(st.sampled_from(KEYS[1:]), st.integers(-(1 << 30), 1 << 30)),
       THRESHOLDS)
def test_due_exactly_when_a_number_moved_more_than_the_threshold(last, deltas, threshold_kb):
    now = {k: v + deltas.get(k, 0) for k, v in last.items()}
    expected = MOVED if any(abs(d) > threshold_kb for d in deltas.values()) else None
    assert stats_due(last, 0.0, now, 1.0, threshold_kb, 10) == expected


# --- dom0: an idle guest is not a dead one ------------------------------------

def observe_every_second(f: Freshness, uptimes: list[int | None]) -> list[bool]:
    return [f.observe(7, u, float(t)) for t, u in enumerate(uptimes)]


def test_idle_guest_publishing_every_period_stays_fresh():
    config = BalancerConfig()  # 5 passes of 1 s, guests publishing every 10 s at the least
    assert config.stale_after_s == 15
    f = Freshness(config.stale_intervals, config.stale_after_s)
    # the uptime advances every 11 s (10 s, at the first 1 s tick after), for 2 minutes
    uptimes = [1000 + 1100 * (t // 11) for t in range(120)]
    assert all(observe_every_second(f, uptimes))


def test_dead_guest_is_stale_after_the_period_and_the_passes():
    f = Freshness(5, 15)
    fresh = observe_every_second(f, [1000] * 30)
    assert fresh == [True] * 16 + [False] * 14  # t = 0..15 s fresh, stale from 16 s
    assert f.observe(7, 1001, 30.0)  # publishes again: fresh at once


def test_stale_polls_alone_as_before_with_no_grace():
    f = Freshness(2, 0)
    assert observe_every_second(f, [5, 5, 5, None, 6]) == [True, True, False, False, True]


def test_balancer_stale_after_follows_its_settings():
    assert BalancerConfig(guest_publish_s=30, stale_intervals=3, interval_s=2).stale_after_s == 36


def test_watched_vmstat_reads_only_well_formed_lines_of_the_four_counters():
    text = ("nr_free_pages 5\npgpgin 10\npgpgout 20\n pswpin 3\npswpin_x 9\npswpout 4 \n"
            "pgpgin 99\npswpin 7\npgfault 8\npgpgout -1\npgpgin\t\n" + "pswpout " + "9" * 30)
    assert watched_vmstat(text) == {"pgpgin": 10, "pgpgout": 20, "pswpout": 4, "pswpin": 7}
    assert watched_vmstat("") == {}
    assert watched_vmstat("pgpgin \u0661\u0662\npswpin 1e3\n") == {}


@given(st.text())
def test_watched_vmstat_never_crashes_and_stays_bounded(text):
    out = watched_vmstat(text)
    assert set(out) <= {"pgpgin", "pgpgout", "pswpin", "pswpout"}
    assert all(0 <= v < 10 ** 20 for v in out.values())


@pytest.mark.parametrize("raw", ["", "''", "-1", "0", "86401", "1e3", "10s", "9" * 40,
                                 "\u0661\u0660", "0x10", "010"])
def test_balancer_guest_publish_s_refuses_bad_values(raw):
    from xenballoond.shellconf import ConfigError
    from xenballoond.dom0.settings import parse_balancer_config
    with pytest.raises(ConfigError) as err:
        parse_balancer_config(f"XENBALLOON_BALANCER_GUEST_PUBLISH_S={raw}\n", "b.conf")
    assert (err.value.line, err.value.key) == (1, "XENBALLOON_BALANCER_GUEST_PUBLISH_S")


def test_balancer_guest_publish_s_good_values():
    from xenballoond.dom0.settings import parse_balancer_config
    for raw, value in (("1", 1), ("30", 30), ("86400", 86400), ('"10"', 10)):
        config, _ = parse_balancer_config(f"XENBALLOON_BALANCER_GUEST_PUBLISH_S={raw}\n", "b.conf")
        assert config.guest_publish_s == value
