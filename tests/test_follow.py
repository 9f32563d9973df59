"""dom0 copies a self-ballooning guest's selftarget into memory/target (issue 20).

The rule (dom0/follow.py) by hand-worked cases and properties; then the real
balancer, as a process, against the simulated xenstored and the simulator's
xl: what it writes, and what it never writes."""
from __future__ import annotations

import subprocess
import time

import pytest
from hypothesis import given, strategies as st

from tests.daemonproc import wait_until
from tests.test_balancer import BalancerHost
from xenballoond.dom0 import balancer
from xenballoond.dom0 import settings as balancer_settings
from xenballoond.dom0.follow import (AHEAD_MAX_S, ahead_kb, built_max_kb, follow_kb,
                                     incoming_max_kb, is_self, self_target_kb)
from xenballoond.dom0.xenctrl import XenCtrlError
from xenballoond.paths import Root

MIB = 1024
SMAX = 768 * MIB


# --- the rule ------------------------------------------------------------------

@pytest.mark.parametrize("selftarget, target, cur, smax, expected", [
    # grown above its target (the issue: 357 MiB held against 256): up at once
    (357 * MIB, 256 * MIB, 300 * MIB, SMAX, 357 * MIB),
    # up at once even before the balloon got there: the guest will hold it
    (400 * MIB, 256 * MIB, 256 * MIB, SMAX, 400 * MIB),
    # the same: nothing to write
    (400 * MIB, 400 * MIB, 400 * MIB, SMAX, None),
    # a selftarget the guest has already grown past (it published a higher one since):
    # what it holds, not the selftarget (the kernel would take pages back from it)
    (300 * MIB, 256 * MIB, 320 * MIB, SMAX, 320 * MIB),
    # after a live migration (the branch's run 4): the new domain holds 407 MiB, its
    # balloon counts 392 MiB, memory/target 348 MiB: raised to what it holds
    (392 * MIB, 348 * MIB, 407 * MIB, SMAX, 407 * MIB),
    # holding more than its selftarget, target above both: left alone
    (300 * MIB, 420 * MIB, 407 * MIB, SMAX, None),
    # holding more than its static-max (an administrator's mem-max below it): no raise
    (300 * MIB, 256 * MIB, SMAX + MIB, SMAX, None),
    # down: not while the guest still holds more than the new target
    (300 * MIB, 400 * MIB, 400 * MIB, SMAX, None),
    (300 * MIB, 400 * MIB, 300 * MIB + 1, SMAX, None),
    # down once it holds no more (xl list's whole MiB: target + 1 MiB covers it)
    (300 * MIB, 400 * MIB, 300 * MIB, SMAX, 300 * MIB),
    (300 * MIB, 400 * MIB, 290 * MIB, SMAX, 300 * MIB),
    # never above static-max: libxl refuses a target above it
    (10 ** 9, 256 * MIB, 300 * MIB, SMAX, SMAX),
    (SMAX, SMAX, SMAX, SMAX, None),
    # a target above static-max (set by hand) comes down to it once the guest fits
    (SMAX + 5 * MIB, SMAX + 10 * MIB, 700 * MIB, SMAX, SMAX),
    # no memory/target or no static-max: being built or torn down, no stray node
    (400 * MIB, None, 300 * MIB, SMAX, None),
    (400 * MIB, 256 * MIB, 300 * MIB, None, None),
])
def test_follow_kb_by_hand(selftarget, target, cur, smax, expected):
    assert follow_kb(selftarget, target, cur, smax) == expected


sizes = st.integers(min_value=1, max_value=1 << 40)


@given(selftarget=sizes, target=sizes, cur=st.integers(min_value=0, max_value=1 << 40),
       smax=sizes)
def test_follow_kb_keeps_the_guest_restorable(selftarget, target, cur, smax):
    """Never above static-max; never below what the guest holds; a guest whose
    selftarget is above its target, and not below what it holds, gets it (up to
    static-max); and a target below what the guest holds is raised to at least that."""
    new = follow_kb(selftarget, target, cur, smax)
    if new is not None:
        assert new <= smax
        assert new != target
        assert cur <= new
    if min(selftarget, smax) > target and cur <= min(selftarget, smax):
        assert new == min(selftarget, smax)
    if target < cur <= smax:  # never left below what the guest holds
        assert new is not None and new >= cur


@pytest.mark.parametrize("selftarget, prev, now, expected", [
    (448512, (10.0, 382976), 12.0, 65536),  # CI run 39's ramp64: one pass's rise, again
    (448512, None, 12.0, 0),  # no earlier look
    (382976, (10.0, 448512), 12.0, 0),  # falling: nothing ahead
    (448512, (10.0, 448512), 12.0, 0),  # standing
    (448512, (10.0, 382976), 10.0 + AHEAD_MAX_S, 65536),
    (448512, (10.0, 382976), 10.0 + AHEAD_MAX_S + 0.1, 0),  # too long ago to say
    (448512, (12.0, 382976), 12.0, 0), (448512, (13.0, 382976), 12.0, 0),  # clock garbage
])
def test_ahead_by_hand(selftarget, prev, now, expected):
    assert ahead_kb(selftarget, prev, now) == expected


@given(selftarget=sizes, then_kb=sizes, then_s=st.floats(-1e6, 1e6), dt=st.floats(-100, 100))
def test_ahead_is_a_rise_never_negative(selftarget, then_kb, then_s, dt):
    a = ahead_kb(selftarget, (then_s, then_kb), then_s + dt)
    assert 0 <= a <= max(selftarget - then_kb, 0)


@pytest.mark.parametrize("text, expected", [
    ("409600", 409600), (" 409600\n", 409600), ("1", 1), (str(1 << 40), 1 << 40),
    ("0", None), ("-5", None), ("", None), ("4e5", None), ("409600 kB", None),
    (str((1 << 40) + 1), None), ("9" * 40, None), ("\\n409600", None), ("0x10", None),
    ("٤٠٩٦٠٠", None), (None, None),
])
def test_selftarget_is_a_bounded_integer(text, expected):
    assert self_target_kb(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("self", True), ("self\n", True), (" self ", True), ("directed", False), ("SELF", False),
    ("selfish", False), ("", False), ("1", False), ("self\\n", False), (None, False),
])
def test_only_the_exact_word_self_is_followed(text, expected):
    assert is_self(text) is expected


@given(st.text(max_size=64))
def test_hostile_text_never_breaks_the_parsers(text):
    value = self_target_kb(text)
    assert value is None or 1 <= value <= 1 << 40
    assert is_self(text) is (text.strip() == "self")


# --- the balancer ----------------------------------------------------------------

@pytest.fixture
def host(tmp_path):
    made: list[BalancerHost] = []

    def make(**sizes_mb: tuple[int, int]) -> BalancerHost:
        h = BalancerHost(str(tmp_path), 4096, {int(d[1:]): s for d, s in sizes_mb.items()})
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def publish(h: BalancerHost, domid: int, *, selftarget: str, mode: str, held_mb: int) -> None:
    """The guest's daemon publishes; the guest holds held_mb (xl list)."""
    h.cur_kb[domid] = held_mb * MIB
    h.publish(domid, 200)
    home = f"/local/domain/{domid}/data/xenballoon"
    h.xsd.write(f"{home}/selftarget", selftarget, domid=domid)
    h.xsd.write(f"{home}/mode", mode, domid=domid)


def once(h: BalancerHost) -> None:
    proc = h.run("--once")
    assert proc.returncode == 0, proc.stderr


def test_a_grown_self_ballooning_guest_gets_its_target_without_xl(host):
    h = host(d1=(256, 768), d2=(256, 768))
    publish(h, 1, selftarget=str(357 * MIB), mode="self", held_mb=357)
    publish(h, 2, selftarget=str(357 * MIB), mode="directed", held_mb=256)
    once(h)
    assert h.target_kb(1) == 357 * MIB
    assert h.target_kb(2) == 256 * MIB  # directed: dom0's target is the input, never touched
    assert h.requests == []  # a xenstore write: no xl mem-set
    # its limit once becomes its static-max (xl create or restore left target + 1 MiB)
    assert h.mem_max == [(1, 768 * MIB)]


def test_a_self_ballooning_guest_is_given_its_static_max_once(host):
    """xl create, restore and migrate build a domain limited to its target + 1 MiB: a
    self-ballooning guest gets its static-max, once, so an administrator's later
    xl mem-set or mem-max stands; a directed guest, and one whose static-max is not a
    number, get nothing."""
    h = host(d1=(256, 768), d2=(256, 768), d3=(256, 1024))
    publish(h, 1, selftarget=str(300 * MIB), mode="self", held_mb=256)
    publish(h, 2, selftarget=str(300 * MIB), mode="directed", held_mb=256)
    publish(h, 3, selftarget=str(300 * MIB), mode="self ", held_mb=256)
    h.xsd.write("/local/domain/3/memory/static-max", "garbage")
    once(h)
    assert sorted(h.mem_max) == [(1, 768 * MIB)]
    proc = subprocess.Popen(h.argv("-f"), env=h.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: h.mem_max.count((1, 768 * MIB)) == 2,
                   what="a new balancer process to give dom 1 its limit again")
        seen = h.written_at()
        for _ in range(2):  # two more passes
            wait_until(lambda: h.written_at() > seen, timeout=60, what="a pass")
            seen = h.written_at()
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert sorted(h.mem_max) == [(1, 768 * MIB)] * 2, err


def test_down_only_once_the_guest_holds_no_more(host):
    h = host(d1=(400, 768))
    publish(h, 1, selftarget=str(300 * MIB), mode="self", held_mb=400)
    once(h)
    assert h.target_kb(1) == 400 * MIB
    publish(h, 1, selftarget=str(300 * MIB), mode="self", held_mb=300)
    once(h)
    assert h.target_kb(1) == 300 * MIB


def test_static_max_bounds_what_a_guest_claims(host):
    h = host(d1=(256, 768))
    publish(h, 1, selftarget=str(1 << 40), mode="self", held_mb=300)
    once(h)
    assert h.target_kb(1) == 768 * MIB


@pytest.mark.parametrize("selftarget, mode", [
    ("garbage", "self"), ("-1", "self"), ("", "self"), (str(400 * MIB), "Self"),
    (str(400 * MIB), "self; rm -rf /"), (str(400 * MIB), "x" * 2000),
])
def test_hostile_keys_are_not_followed(host, selftarget, mode):
    h = host(d1=(256, 768))
    publish(h, 1, selftarget=selftarget, mode=mode, held_mb=256)
    once(h)
    assert h.target_kb(1) == 256 * MIB


def test_follow_off_leaves_memory_target_alone(host):
    h = host(d1=(256, 768))
    h.write_conf("XENBALLOON_BALANCER_FOLLOW=false\n")
    publish(h, 1, selftarget=str(357 * MIB), mode="self", held_mb=357)
    once(h)
    assert h.target_kb(1) == 256 * MIB


def test_a_rising_selftarget_is_copied_ahead_by_its_last_rise(host):
    """While the guest grows, dom0's copy would be behind its balloon (and pull it back):
    memory/target goes one pass's rise ahead, then down to the selftarget once the guest
    stands and holds no more."""
    h = host(d1=(256, 768))
    proc = subprocess.Popen(h.argv("-f"), env=h.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        publish(h, 1, selftarget=str(400 * MIB), mode="self", held_mb=400)
        wait_until(lambda: h.target_kb(1) == 400 * MIB, what="memory/target 400 MiB")
        publish(h, 1, selftarget=str(480 * MIB), mode="self", held_mb=400)
        wait_until(lambda: h.target_kb(1) == 560 * MIB, timeout=30,
                   what="memory/target 480 MiB + the 80 MiB it rose since the last look")
        publish(h, 1, selftarget=str(480 * MIB), mode="self", held_mb=480)
        wait_until(lambda: h.target_kb(1) == 480 * MIB, timeout=30,
                   what="memory/target back to the standing selftarget")
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_paused_balancer_still_follows(host):
    """The pause is for making room (free, xl create); a stale memory/target would lose
    the guest at the next xl save whatever the pause."""
    h = host(d1=(256, 768))
    assert h.run("pause").returncode == 0
    publish(h, 1, selftarget=str(357 * MIB), mode="self", held_mb=357)
    once(h)
    assert h.target_kb(1) == 357 * MIB


def test_a_daemon_that_stopped_publishing_is_no_longer_followed(host):
    """Killed, a daemon leaves mode "self" and its last selftarget behind: once its
    uptime stands still, dom0's own xl mem-set must not be undone with it."""
    h = host(d1=(256, 768))
    h.write_conf("XENBALLOON_BALANCER_GUEST_PUBLISH_S=1\nXENBALLOON_BALANCER_STALE_INTERVALS=1\n")
    proc = subprocess.Popen(h.argv("-f"), env=h.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        publish(h, 1, selftarget=str(357 * MIB), mode="self", held_mb=357)
        wait_until(lambda: h.target_kb(1) == 357 * MIB, what="memory/target to follow")
        crashed_at = time.time()  # the daemon publishes no more from here
        wait_until(lambda: h.written_at() > crashed_at + 3, timeout=60,
                   what="passes for 3 s after the last publication (stale after 2 s)")
        h.xsd.write("/local/domain/1/memory/target", str(256 * MIB))  # xl mem-set 256m
        seen = h.written_at()
        for _ in range(2):  # two more passes
            wait_until(lambda: h.written_at() > seen, timeout=60, what="a pass")
            seen = h.written_at()
        assert h.target_kb(1) == 256 * MIB
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# --- a migration coming in ----------------------------------------------------------

@pytest.mark.parametrize("name, max_kb, cur, free, expected", [
    # run 5: built with 342148 kB + 1 MiB, 0 held yet, 1.5 GiB free: all of it may come
    ("guest--incoming", 343172, 0, 1536 * MIB, 1536 * MIB),
    ("guest--incoming", 343172, 200 * MIB, 1536 * MIB, 1736 * MIB),
    # never lower than libxl's limit, even on a full host
    ("guest--incoming", 343172, 100 * MIB, 0, None),
    ("guest--incoming", 343172, 100 * MIB, -5 * MIB, None),
    ("guest--incoming", 343172, 343172, 0, None),
    ("guest", 343172, 0, 1536 * MIB, None),  # not a migration
    ("guest--incoming-not", 343172, 0, 1536 * MIB, None),
    ("guest--migratedaway", 343172, 0, 1536 * MIB, None),  # the sender's side
])
def test_incoming_max_by_hand(name, max_kb, cur, free, expected):
    assert incoming_max_kb(name, max_kb, cur, free) == expected


@given(max_kb=sizes, cur=st.integers(min_value=0, max_value=1 << 40),
       free=st.integers(min_value=-(1 << 40), max_value=1 << 40))
def test_incoming_max_never_lowers_and_never_passes_the_host(max_kb, cur, free):
    new = incoming_max_kb("g--incoming", max_kb, cur, free)
    if new is not None:
        assert max_kb < new <= cur + max(free, 0)


@pytest.mark.parametrize("saved, cur, expected", [
    (343172, 300 * MIB, 343172),  # it fits libxl's limit: that again
    (343172, 410 * MIB, 410 * MIB + 1024),  # run 5's guest grew to 410 MiB in the pre-copy
    (343172, 343172 - 1024, 343172),
])
def test_built_max_by_hand(saved, cur, expected):
    assert built_max_kb(saved, cur) == expected
    # self-ballooning: its static-max, whatever it holds below it
    assert built_max_kb(saved, cur, SMAX) == max(expected, SMAX)


class Hypervisor:
    """Each domain's limit as libxenctrl keeps it (the test plays the hypervisor)."""

    def __init__(self, limits_kb: dict[int, int]) -> None:
        self.limits_kb = dict(limits_kb)
        self.set: list[tuple[int, int]] = []

    def max_kb(self, domid: int) -> int:
        if domid not in self.limits_kb:
            raise XenCtrlError(0, f"no domain {domid}")
        return self.limits_kb[domid]

    def set_max_kb(self, domid: int, max_kb: int) -> None:
        self.limits_kb[domid] = max_kb
        self.set.append((domid, max_kb))


@pytest.mark.parametrize("mode, built_kb", [
    # run 45 on the real host: a limit at what it held (+ 1 MiB) until its daemon published
    # again stalled the still-growing guest in reclaim, and the daemon with it, for 187 s
    ("self", SMAX),
    ("directed", 340 * MIB + 1024),  # what it holds + 1 MiB: it grew past libxl's 301 MiB
])
def test_a_migrated_guest_is_given_its_limit_once_built(host, monkeypatch, mode, built_kb):
    """A localhost xl migrate, played by hand: guest1 (dom 1) runs on while xl
    migrate-receive builds guest1--incoming (dom 2, limited by libxl to the memory/target
    the migration began with + 1 MiB), whose memory/ libxl writes after the stream; then
    the sender is gone and dom 2 is renamed.  Once built, dom 2 gets its static-max at
    once if its sender self-ballooned, before its own daemon has published anything; and
    the keys dom0 wrote for its sender that libxl does not carry (the opt-in among them),
    but for one the new domain already has."""
    h = host(d1=(300, 768))
    publish(h, 1, selftarget=str(300 * MIB), mode=mode, held_mb=300)
    for key, value in (("balance", "1"), ("interval", "3"), ("minmem", "128"),
                       ("minpolicy", "adaptive"), ("uphysteresis", "")):
        h.xsd.write(f"/local/domain/1/memory/{key}", value)
    h.names[2] = "guest1--incoming"
    h.cur_kb[2] = 0
    h.xsd.add_domain(2, "guest1--incoming")
    hv = Hypervisor({1: 300 * MIB + 1024, 2: 300 * MIB + 1024})
    monkeypatch.setenv("XENSTORED_PATH", h.xsd.dom0_socket)
    monkeypatch.setenv("XBSIM_XL_DIR", h.dom0)
    root = Root(h.dom0)
    config, _, _ = balancer_settings.load(root, h.conf)
    b = balancer.build(config, root, xenctrl=lambda: hv)

    def tick() -> None:
        b.tick(time.monotonic(), lambda s: bool(time.sleep(0.05)))
        h.applied()

    try:
        tick()
        free_kb = 4096 * MIB - 300 * MIB  # the simulated host: 4 GiB, guest1 300 MiB of it
        assert hv.set == [(2, free_kb)]  # all this host could give it
        tick()  # still coming in: raised once
        assert hv.set == [(2, free_kb)]
        # the stream is done: libxl writes memory/, the sender goes, dom 2 takes its name
        h.xsd.write("/local/domain/2/memory/static-max", str(SMAX))
        h.xsd.write("/local/domain/2/memory/target", str(300 * MIB))
        h.xsd.write("/local/domain/2/memory/minmem", "150")  # already there: it stays
        h.xsd.write("/local/domain/2/name", "guest1")
        h.names[2] = "guest1"
        h.cur_kb[2] = 340 * MIB  # it grew in the pre-copy
        del h.cur_kb[1]
        h.xsd.remove_domain(1)
        tick()
        tick()
        carried = b.xs.read_existing([f"/local/domain/2/memory/{k}" for k in
                                      ("balance", "interval", "minmem", "minpolicy", "uphysteresis",
                                       "downhysteresis", "selfballoon")])
    finally:
        b.xs.close()
    assert carried == {"/local/domain/2/memory/balance": "1",
                       "/local/domain/2/memory/interval": "3",
                       "/local/domain/2/memory/minmem": "150",
                       "/local/domain/2/memory/minpolicy": "adaptive",
                       "/local/domain/2/memory/uphysteresis": "",
                       # the balancer's own, for the opted-in sender (make_directed)
                       "/local/domain/2/memory/selfballoon": "0"}
    assert hv.set == [(2, free_kb), (2, built_kb)]
    if mode == "self":  # given at once; xl mem-max, libxl's way, only ever for the sender
        assert h.mem_max == [(1, SMAX)]
    else:
        assert h.mem_max == []


def test_an_incoming_domain_without_libxenctrl_is_logged_not_fatal(host):
    """No libxenctrl here (no Xen): the raise fails, said once, and the pass goes on; the
    keys are carried all the same (test_a_migrated_guest_..., with the hypervisor)."""
    h = host(d1=(256, 768), d2=(320, 768))
    h.names[2] = "guest1--incoming"
    publish(h, 1, selftarget=str(357 * MIB), mode="self", held_mb=357)
    proc = h.run("--once")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("cannot raise its limit") == 1, proc.stderr
    assert h.target_kb(1) == 357 * MIB  # the follower still did its job
