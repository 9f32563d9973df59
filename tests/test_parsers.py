"""Hostile input for every parser of values read from the guest or dom0."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from tests.guestroot import MEMINFO, parse_vmstat, vmstat_text
from xenballoond.contract.keys import MAX_INTERVAL_S, MAX_KB as MAX_TARGET_KB
from xenballoond.guest.meminfo import MAX_KB, MeminfoError, parse_meminfo, require
from xenballoond.guest.maxmem import MaxmemFile, why_unwritable
from xenballoond.contract.overrides import Overrides, parse_overrides
from xenballoond.guest.publish import VMSTAT_KEEP, build_outputs, fit_to_node
from xenballoond.contract.intparse import parse_bounded_int
from xenballoond.xenstore import escape, unescape

HOSTILE = ["", " ", "-1", "-0", "+5", "1e3", "0x10", "1.5", "١٢", "１２", "5 5", "\x00",
           "1\x00", "\x1b[2J", "$(reboot)", "a[$(id)]", "`id`", "9" * 5000, "99999999999999999999",
           "\\n", "1\n2", "*", "~", "18446744073709551617", "\udcff"]


@pytest.mark.parametrize("text", HOSTILE)
def test_bounded_int_rejects_hostile(text: str) -> None:
    assert parse_bounded_int(text, 1, MAX_TARGET_KB) is None


@pytest.mark.parametrize("text,expected", [("1", 1), ("86400", 86400), (" 5\n", 5), ("007", 7)])
def test_bounded_int_accepts(text: str, expected: int) -> None:
    assert parse_bounded_int(text, 1, MAX_INTERVAL_S) == expected


def test_bounded_int_bounds() -> None:
    assert parse_bounded_int("0", 1, 10) is None
    assert parse_bounded_int("11", 1, 10) is None


@given(st.text())
def test_bounded_int_never_out_of_range(text: str) -> None:
    v = parse_bounded_int(text, 1, 100)
    assert v is None or 1 <= v <= 100


def test_overrides_interval_zero_and_garbage_are_ignored() -> None:
    """Regression: the original's `sleep $interval` with 0 made a busy loop."""
    o, problems = parse_overrides({"interval": "0", "downhysteresis": "x", "uphysteresis": "-1",
                                   "target": "a[$(reboot)]", "selfballoon": "2"})
    assert o == Overrides()
    assert sorted(problems) == ["downhysteresis", "interval", "selfballoon", "target",
                                "uphysteresis"]
    assert all(p.startswith(f"ignoring memory/{k}=") for k, p in problems.items())


def test_overrides_selfballoon_zero_turns_it_off() -> None:
    """Regression: the original only honoured selfballoon == 1."""
    assert parse_overrides({"selfballoon": "0"})[0].selfballoon is False
    assert parse_overrides({"selfballoon": "1"})[0].selfballoon is True
    assert parse_overrides({})[0].selfballoon is None


def test_overrides_hysteresis_zero_is_at_once() -> None:
    """dom0's 0 means what the config's 0 means: down at once (the original's
    `if [ $downhys -ne 0 ]`); up 0, which killed the original, is 1 and said so."""
    o, problems = parse_overrides({"downhysteresis": "0", "uphysteresis": "0"})
    assert o.down_hysteresis == 0 and o.up_hysteresis == 1
    assert list(problems) == ["uphysteresis"] and "treated as 1" in problems["uphysteresis"]


def test_overrides_target_one_is_a_target() -> None:
    assert parse_overrides({"target": "1"})[0].target_kb == 1


def test_problem_messages_are_bounded() -> None:
    _, problems = parse_overrides({"target": "9" * 100000})
    assert len(problems["target"]) < 200


@given(st.dictionaries(st.sampled_from(["target", "selfballoon", "interval", "downhysteresis",
                                        "uphysteresis", "other"]), st.text()))
def test_overrides_always_in_bounds(d: dict[str, str]) -> None:
    o, _ = parse_overrides(d)
    assert o.target_kb is None or 1 <= o.target_kb <= MAX_TARGET_KB
    assert o.interval_s is None or 1 <= o.interval_s <= MAX_INTERVAL_S
    assert o.down_hysteresis is None or o.down_hysteresis >= 0
    assert o.up_hysteresis is None or o.up_hysteresis >= 1
    assert o.up_hysteresis is None or o.up_hysteresis >= 1


def test_meminfo_real_text() -> None:
    f = parse_meminfo(MEMINFO.format(memtotal="  380000", committed="  200000"))
    assert f["MemTotal"] == 380000 and f["Committed_AS"] == 200000
    assert f["HugePages_Total"] == 0 and f["Active(anon)"] == 780


def test_meminfo_garbage_lines_are_skipped_not_trusted() -> None:
    f = parse_meminfo("MemTotal: lots\nCommitted_AS: -5 kB\nMemFree: 1e3 kB\n"
                      "Cached: 99999999999999999999 kB\nBuffers:\t12 kB\n\x1b[2J\n")
    assert f == {"Buffers": 12}
    with pytest.raises(MeminfoError):
        require(f, "MemTotal")


def test_meminfo_first_line_wins() -> None:
    assert parse_meminfo("MemTotal: 5 kB\nMemTotal: 7 kB\n")["MemTotal"] == 5


@given(st.text())
def test_meminfo_never_crashes_and_stays_bounded(text: str) -> None:
    for v in parse_meminfo(text).values():
        assert 0 <= v <= MAX_KB
    parse_vmstat(text)


def test_vmstat_real_text() -> None:
    f = parse_vmstat(vmstat_text(pswpin=3, pswpout=4, pgpgin=5, pgpgout=6))
    assert (f["pswpin"], f["pswpout"], f["pgpgin"], f["pgpgout"]) == (3, 4, 5, 6)


def test_modern_vmstat_is_trimmed_to_fit_a_node() -> None:
    text = vmstat_text(pswpin=3, pswpout=4)
    assert len(text) > 2048
    out = fit_to_node(text, VMSTAT_KEEP)
    assert len(out.encode()) <= 2048
    f = parse_vmstat(out)
    assert f["pswpin"] == 3 and f["pswpout"] == 4 and "pgpgin" in f and "nr_free_pages" in f
    # kept lines stay in the kernel's order
    assert out.split("\n") == [l for l in text.rstrip("\n").split("\n") if l in out.split("\n")]


def test_small_texts_are_sent_whole_without_trailing_newline() -> None:
    # as "`cat /proc/uptime`" gave it
    assert fit_to_node("1.0 2.0\n", ()) == "1.0 2.0"


@given(st.text(), st.integers(0, 4096))
def test_fit_to_node_never_exceeds(text: str, limit: int) -> None:
    out = fit_to_node(text, VMSTAT_KEEP, limit)
    assert len(out.encode("utf-8", "surrogateescape")) <= max(limit, 0) or \
        len(text.rstrip("\n").encode("utf-8", "surrogateescape")) <= limit


def test_send_flags_off_send_nothing() -> None:
    """Regression: the original's `if [ $XENBALLOON_SEND_MEMINFO ]` sent on 0 too."""
    assert build_outputs(selftarget_kb=None, meminfo_text=None, vmstat_text=None,
                         uptime_text=None) == {}


@given(st.text(alphabet=st.characters(blacklist_characters="\x00")))
def test_escape_unescape_round_trip(text: str) -> None:
    # what xenstore-write unsanitises from escape(text) is text again
    assert _unsanitise(escape(text)) == text


def _unsanitise(s: str) -> str:
    # xenstore_client.c:unsanitise_value() for the escapes escape() produces
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] == "\\":
            out.append("\\")
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize("escaped,value", [
    (r"MemTotal: 1 kB\nMemFree: 2 kB", "MemTotal: 1 kB\nMemFree: 2 kB"),
    (r"a\\b", "a\\b"), (r"\t\r", "\t\r"), (r"\001\x7f", "\x01\x7f"), (r"\xc3\xa9", "é"),
    (r"\x1b[2J", "\x1b[2J"), ("trailing\\", "trailing"), (r"\q", "q"),
])
def test_unescape_matches_the_client(escaped: str, value: str) -> None:
    assert unescape(escaped) == value


@given(st.text())
def test_unescape_never_crashes(text: str) -> None:
    unescape(text)


def test_maxmem_mark_held_in_memory_when_the_file_cannot_be_kept(tmp_path) -> None:
    (tmp_path / "run").write_text("a file where a directory should be\n")
    mark = MaxmemFile(str(tmp_path / "run" / "maxmem"))
    kb, error = mark.update(400000)
    assert kb == 400000 and isinstance(error, OSError)
    assert mark.update(300000)[0] == 400000  # the mark does not fall to the current size
    assert mark.update(450000)[0] == 450000
    assert why_unwritable(mark.path) is not None
    assert why_unwritable(str(tmp_path / "new" / "dir" / "maxmem")) is None


def test_dom0_bounds_are_bounded_integers_and_never_cross() -> None:
    o, problems = parse_overrides({"minmem": "256", "softmaxmem": "1024"})
    assert (o.min_mb, o.max_mb, problems) == (256, 1024, {})
    o, problems = parse_overrides({"minmem": "512", "softmaxmem": "256"})
    assert (o.min_mb, o.max_mb) == (512, None) and "softmaxmem" in problems  # the floor wins
    for bad in ("0", "-1", "", "1e3", "a[$(reboot)]", "9" * 30):
        o, problems = parse_overrides({"minmem": bad, "softmaxmem": bad})
        assert (o.min_mb, o.max_mb) == (None, None) and set(problems) == {"minmem", "softmaxmem"}
