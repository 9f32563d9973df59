"""The guest-dom0 contract (xenballoond/contract/): each rule both sides apply
is written once, so the guest daemon and dom0's balancer read dom0's keys alike.
Expected values are worked by hand; then the two sides are held to the same
answer on hostile text."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from xenballoond.contract.headroom import headroom_kb, risen_kb
from xenballoond.contract.keys import MAX_BOUND_MB, memory_path
from xenballoond.contract.overrides import parse_overrides
from xenballoond.dom0 import guests
from xenballoond.dom0.balance import GuestState, need_kb
from xenballoond.dom0.stats import Published, make_row
from xenballoond.dom0.status import Status
from xenballoond.guest.policy import rise_per_interval_kb, self_headroom_kb

GIB_KB = 1024 * 1024
MEMINFO = "MemTotal: 1000000 kB\nMapped: 1000 kB\nCommitted_AS: 200000 kB\n"


def test_memory_path() -> None:
    assert memory_path(7, "target") == "/local/domain/7/memory/target"


def dom0_view(selfballoon: str | None = "0", minmem: str | None = None,
              softmaxmem: str | None = None, static_max: str = "2097152") -> guests.GuestView:
    keys = guests.Dom0Keys(static_max=static_max, balance="1", selfballoon=selfballoon,
                           minmem=minmem, softmaxmem=softmaxmem)
    row = make_row(Published(domid=5, meminfo=MEMINFO, uptime="10.00 5.00"))
    return guests.guest_view(guests.Domain(5, "g", GIB_KB), keys, row, listed=(), fresh=True,
                             marked_uncooperative=False)


# memory/selfballoon: (text, does the guest self-balloon by it: True, False, None = its conf)
SELFBALLOON = [("1", True), ("0", False), (" 1\n", True), ("01", True), ("\t0", False),
               ("2", None), ("yes", None), ("", None), ("-1", None), ("1.0", None),
               ("\u00a01", None), ("١", None)]


@pytest.mark.parametrize("text,self_on", SELFBALLOON)
def test_selfballoon_read_alike(text: str, self_on: bool | None) -> None:
    assert parse_overrides({"selfballoon": text})[0].selfballoon is self_on
    # dom0 holds the guest as self-ballooning exactly when the guest will be
    assert (dom0_view(text).status == Status.SELF_BALLOONING) is (self_on is True)


# (minmem, softmaxmem) -> (floor MB, ceiling MB) the guest keeps, by hand
BOUNDS = [(("256", "512"), (256, 512)),
          (("512", "256"), (512, None)),  # a ceiling below the floor: the floor wins
          (("256", "256"), (256, 256)),
          ((None, "512"), (None, 512)),
          (("0", "512"), (None, 512)),  # 0 MB is no floor
          (("256", "x"), (256, None)),
          ((str(MAX_BOUND_MB + 1), "512"), (None, 512))]


@pytest.mark.parametrize("texts,bounds", BOUNDS)
def test_bounds_read_alike(texts: tuple[str | None, str | None],
                           bounds: tuple[int | None, int | None]) -> None:
    minmem, softmaxmem = texts
    raw = {k: v for k, v in (("minmem", minmem), ("softmaxmem", softmaxmem)) if v is not None}
    o = parse_overrides(raw)[0]
    assert (o.min_mb, o.max_mb) == bounds
    state = dom0_view(minmem=minmem, softmaxmem=softmaxmem).state
    floor_mb, ceiling_mb = bounds
    assert state.static_max_kb == min(2 * GIB_KB, (ceiling_mb or 1 << 30) * 1024)
    assert state.min_kb >= min((floor_mb or 0) * 1024, state.static_max_kb)


@settings(max_examples=300, deadline=None)
@given(minmem=st.one_of(st.none(), st.integers(0, 4096).map(str), st.text(max_size=8)),
       softmaxmem=st.one_of(st.none(), st.integers(0, 4096).map(str), st.text(max_size=8)),
       selfballoon=st.one_of(st.none(), st.sampled_from(["0", "1", " 1 ", "01"]),
                             st.text(max_size=4)))
def test_dom0_holds_the_guest_to_the_guests_own_reading(minmem, softmaxmem, selfballoon) -> None:
    raw = {k: v for k, v in (("minmem", minmem), ("softmaxmem", softmaxmem),
                             ("selfballoon", selfballoon)) if v is not None}
    o = parse_overrides(raw)[0]
    view = dom0_view(selfballoon, minmem, softmaxmem)
    assert (view.status == Status.SELF_BALLOONING) is (o.selfballoon is True)
    cap_kb = min(2 * GIB_KB, o.max_mb * 1024) if o.max_mb is not None else 2 * GIB_KB
    assert view.state.static_max_kb == cap_kb
    if o.min_mb is not None:
        assert view.state.min_kb >= min(o.min_mb * 1024, cap_kb)


# ------------------------------------------------------------------ the headroom rule

@pytest.mark.parametrize("size_kb,pct,room_kb", [
    (1048576, 10, 104857),  # 1 GiB: 104857.6 kB, rounded down
    (1048576, 0, 0), (524288, 25, 131072), (1000, 100, 1000), (-5, 10, 0), (999, 1, 9)])
def test_headroom_by_hand(size_kb: int, pct: int, room_kb: int) -> None:
    assert headroom_kb(size_kb, pct) == room_kb


@pytest.mark.parametrize("prev_kb,now_kb,risen", [
    (100000, 100000, 0), (100000, 101024, 0),  # an idle guest's wobble: 1024 kB at most
    (100000, 101025, 1025), (100000, 90000, 0), (0, 65536, 65536)])
def test_rise_by_hand(prev_kb: int, now_kb: int, risen: int) -> None:
    assert risen_kb(prev_kb, now_kb) == risen


@given(size_kb=st.integers(0, 1 << 40), pct=st.integers(0, 100),
       committed_kb=st.integers(0, 1 << 30))
def test_dom0s_need_has_the_guests_headroom(size_kb: int, pct: int, committed_kb: int) -> None:
    """A guest that booted with its static-max: dom0's need is its daemon's
    self-ballooning target (Committed_AS + the reserve), within its limits."""
    guest = GuestState(domid=5, name="g", cur_kb=size_kb, static_max_kb=size_kb, min_kb=0,
                       committed_as_kb=committed_kb)
    want_kb = committed_kb + self_headroom_kb(size_kb, pct, 0, 0) if pct else committed_kb
    assert need_kb(guest, pct) == min(want_kb, size_kb)


@given(st.lists(st.integers(0, 1 << 30), min_size=2, max_size=2))
def test_guest_and_dom0_see_the_same_rise(committed: list[int]) -> None:
    """Over one second of uptime and a one-second interval, the guest's projected
    rise (kB an interval) is dom0's rate (kB a second): both or neither see one."""
    prev_kb, now_kb = committed
    rise = guests.Rise()
    rise.observe(5, 100, prev_kb)
    assert rise.observe(5, 200, now_kb) == rise_per_interval_kb(prev_kb, now_kb, 1.0, 1)
