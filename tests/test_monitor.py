"""xenballoon-monitor: parsing hostile guest text, the table, ``xl``/``xm info``, and
whole refreshes against the simulated xenstored through Debian's real clients.

Expected numbers are worked by hand from the inputs (tests/data/monitor_golden.txt
was typed with printf from those hand values, not produced by our code).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from tests.repo import REPO
from tests.needs import XENSTORE_CLIENTS, tool_mark
from tests.xsfixtures import XsHost, running_sim_xenstored
from xenballoond.dom0.monitor import refresh
from xenballoond.dom0.hostinfo import FreeMemory, FreeMemoryReader, MAX_FREE_MB, parse_free_memory_mb
from xenballoond.dom0.stats import (Published, active_centiseconds, bounded_count, make_row,
                                       named_values)
from xenballoond.dom0.table import header, render_json, render_text, row_line
from xenballoond.dom0.reader import Listing, collect, published
from xenballoond.xenstore.cli import CliXenstore
from xenballoond.xenstore.native import NativeXenstore

DATA = Path(__file__).resolve().parent / "data"
MEMINFO = (DATA / "monitor_meminfo.txt").read_text().rstrip("\n")
VMSTAT_FULL = (DATA / "monitor_vmstat_full.txt").read_text().rstrip("\n")
VMSTAT_TRIMMED = (DATA / "monitor_vmstat_trimmed.txt").read_text().rstrip("\n")
# the tests that run Debian's real xenstore-* clients; the others need nothing
CLIENTS = tool_mark(*XENSTORE_CLIENTS)

HOSTILE = ["", " ", "-1", "-0", "+5", "1e3", "0x10", "1.5", "١٢", "１２", "5 5", "\x00", "1_000",
           "\x1b[2J", "\x1b]0;owned\x07", "$(reboot)", "`id`", "*", "/*", "~", "9" * 5000,
           "99999999999999999999", "18446744073709551617", "\\n", "1\n2", "\udcff", "\r", "5\r"]
PRINTABLE = set(map(chr, range(0x20, 0x7F)))


# --- pure parsing ------------------------------------------------------------

@pytest.mark.parametrize("text", HOSTILE)
def test_bounded_count_rejects_hostile(text: str) -> None:
    assert bounded_count(text, 10 ** 11 - 1) is None


def test_bounded_count_bounds() -> None:
    assert bounded_count("0", 10) == 0
    assert bounded_count("007", 10) == 7
    assert bounded_count("10", 10) == 10
    assert bounded_count("11", 10) is None


def test_row_from_full_publish() -> None:
    row = make_row(Published(1, selftarget="1843200", meminfo=MEMINFO, vmstat=VMSTAT_FULL,
                             uptime="86400.25 160000.10", vcpus=2))
    # MemTotal, Committed_AS, pswpin, pswpout, pgpgin, pgpgout read off the data files
    assert (row.mem_kb, row.tgt_kb, row.commit_kb) == (2014464, 1843200, 795392)
    assert (row.swapin, row.swapout, row.pgin, row.pgout) == (12, 345, 1843765, 913376)
    assert row.active_cs == 640020  # 86400.25 - 160000.10 / 2
    assert row.invalid == frozenset()


def test_exact_names_not_grep() -> None:
    """Regression: the original's `grep pgout` matched pswpout and pgpgout, `grep
    pswpin` would match any line containing it."""
    vmstat = "xpswpin 5\npswpout 1\npswpin_x 6\npgpgout 2\npswpin 3\npgpgin 4\nthp_swpout 9"
    row = make_row(Published(1, vmstat=vmstat))
    assert (row.swapin, row.swapout, row.pgin, row.pgout) == (3, 1, 4, 2)


def test_escaped_newlines_are_not_lines() -> None:
    """What the original parsed: xenstore-read's one-line text with literal \\n."""
    one_line = MEMINFO.replace("\n", "\\n")
    row = make_row(Published(1, meminfo=one_line))
    assert row.mem_kb is None and "mem_kb" in row.invalid
    assert row.commit_kb is None and "commit_kb" in row.invalid


def test_first_of_duplicate_names_wins() -> None:
    assert named_values("a 1\na 2", frozenset({"a"}), False) == {"a": "1"}
    assert named_values("MemTotal: 5 kB\nMemTotal: 6 kB", frozenset({"MemTotal"}), True) == \
        {"MemTotal": "5"}


def reference_named_values(text: str, names: frozenset, meminfo_style: bool) -> dict:
    """named_values spelt out line by line, as an oracle for the regex version."""
    found = {}
    for line in text.split("\n"):
        if meminfo_style:
            name, sep, rest = line.partition(":")
            if not sep:
                continue
            rest = rest.strip(" \t")
            if rest.endswith(" kB"):
                rest = rest[:-3].rstrip(" \t")
        else:
            words = line.strip(" \t").replace("\t", " ").split(" ")
            name, rest = words[0], " ".join(w for w in words[1:] if w)
        if name in names and name not in found:
            found[name] = rest
    return found


line_text = st.lists(st.one_of(
    st.sampled_from(["MemTotal", "Committed_AS", "pswpin", "pgpgin", "pgpgout", "MemTotalX",
                     " pswpin", "pswpinx"]),
    st.sampled_from([":", " ", "\t", ": ", " kB", "5", " 5 kB", " 5  6", "\r", "\x1b[2J", ""]),
    st.text(max_size=5)), max_size=12).map("".join)


@given(st.lists(line_text, max_size=8).map("\n".join), st.booleans())
def test_named_values_matches_line_by_line(text: str, meminfo_style: bool) -> None:
    names = frozenset({"MemTotal", "Committed_AS"} if meminfo_style
                      else {"pswpin", "pswpout", "pgpgin", "pgpgout"})
    assert named_values(text, names, meminfo_style) == \
        reference_named_values(text, names, meminfo_style)


@pytest.mark.parametrize("uptime,vcpus,cs", [
    ("86400.25 160000.10", 2, 640020),
    ("3600.00 10000.00", 3, 26667),     # 3600 - 3333.333... = 266.666... -> 266.67
    ("10.00 0.01", 2, 1000),             # 9.995 rounds half up
    ("100.00 400.00", 1, 0),             # idle over all CPUs > uptime: clamped
    ("100.00 400.00", 4, 0),
    ("100.00 400.00", 8, 5000),
    ("0.00 0.00", 1, 0),
    ("12 3", 1, 900),
    ("999999999.99 0.00", 1, 99999999999),
])
def test_active_time(uptime: str, vcpus: int, cs: int) -> None:
    assert active_centiseconds(uptime, vcpus) == cs


@pytest.mark.parametrize("uptime", ["", "1.00", "1.00 2.00 3.00", "-1.00 5.00", "1e3 1",
                                    "1000000000.00 0.00", "1,5 2", "\x1b[2J 1", ". .", "1. 2",
                                    "nan 1", "inf inf", "١ ١"])
def test_active_time_rejects(uptime: str) -> None:
    assert active_centiseconds(uptime, 1) is None


@given(st.integers(0, 10 ** 11 - 1), st.integers(0, 10 ** 13), st.integers(1, 512))
def test_active_time_matches_integer_formula(up_cs: int, idle_cs: int, vcpus: int) -> None:
    text = f"{up_cs // 100}.{up_cs % 100:02d} {idle_cs // 100}.{idle_cs % 100:02d}"
    num = up_cs * vcpus - idle_cs          # (up - idle/v) * 100 * v
    expected = 0 if num <= 0 else (2 * num + vcpus) // (2 * vcpus)
    assert active_centiseconds(text, vcpus) == expected


def test_vcpus_fallback_and_clamp() -> None:
    assert make_row(Published(1, uptime="10.00 30.00")).active_cs == 0
    assert make_row(Published(1, uptime="10.00 30.00", vcpus=0)).vcpus == 1
    assert make_row(Published(1, uptime="10.00 30.00", vcpus=10 ** 9)).vcpus == 8192


def test_missing_line_in_published_text_is_unknown_not_zero() -> None:
    row = make_row(Published(1, meminfo="MemFree: 5 kB", vmstat="pgpgin 5"))
    assert row.mem_kb is None and {"mem_kb", "commit_kb", "swapin", "swapout", "pgout"} \
        <= row.invalid
    assert row.pgin == 5


def test_nothing_published_says_so() -> None:
    row = make_row(Published(4))
    assert not row.published
    assert row_line(row) == "    4 no stats published"


published_text = st.one_of(st.none(), st.sampled_from(HOSTILE), st.text(max_size=300),
                           st.from_regex(r"[A-Za-z_]{1,12}:? *-?[0-9]{0,22}( kB)?(\n.*)?",
                                         fullmatch=True))


@given(published_text, published_text, published_text, published_text,
       st.one_of(st.none(), st.integers(-5, 10 ** 6)))
def test_any_published_text_gives_a_bounded_printable_row(sel, mem, vm, up, vcpus) -> None:
    row = make_row(Published(9, selftarget=sel, meminfo=mem, vmstat=vm, uptime=up, vcpus=vcpus))
    line = row_line(row)
    assert set(line) <= PRINTABLE
    if row.published:
        assert len(line) == len(header())
    for name, limit in (("mem_kb", 10 ** 11), ("swapin", 10 ** 11), ("pgin", 10 ** 13),
                        ("active_cs", 10 ** 11)):
        value = getattr(row, name)
        assert value is None or 0 <= value < limit
        assert not (value is not None and name in row.invalid)


# --- the table ---------------------------------------------------------------

def test_header_and_rows_share_columns() -> None:
    row = make_row(Published(12, selftarget="16777216",
                             meminfo="MemTotal: 16777216 kB\nCommitted_AS: 123456789 kB",
                             vmstat="pswpin 99999999999\npswpout 1\npgpgin 1234567890123\n"
                                    "pgpgout 9999999999999", uptime="999999999.99 0"))
    head, line = header(), row_line(row)
    assert len(head) == len(line)
    # every value ends where its title ends, and at least one space separates them
    ends = [i + 1 for i, c in enumerate(head) if c != " " and (i + 1 == len(head) or head[i + 1] == " ")]
    assert all(line[e - 1] != " " for e in ends)
    assert "  " not in " ".join(line.split()) and len(line.split()) == 9


def test_json_has_the_same_rows() -> None:
    rows = [make_row(Published(2, selftarget="5", uptime="3600.00 10000.00", vcpus=3)),
            make_row(Published(1, selftarget="x"))]
    doc = json.loads(render_json(rows, FreeMemory(0, "xl"), missing=[9]))
    assert [d["id"] for d in doc["domains"]] == [1, 2]
    assert doc["domains"][0]["tgt_kb"] is None and doc["domains"][0]["invalid"] == ["tgt_kb"]
    assert doc["domains"][1]["tgt_kb"] == 5 and doc["domains"][1]["active_s"] == 266.67
    assert doc["domains"][1]["mem_kb"] is None and doc["domains"][1]["invalid"] == []
    assert doc["free_memory_mb"] == 0 and doc["missing_domains"] == [9]


# --- xl info / xm info -------------------------------------------------------

def test_free_memory_from_xl_and_xm_info() -> None:
    assert parse_free_memory_mb((DATA / "monitor_xl_info.txt").read_text()) == 3071
    assert parse_free_memory_mb((DATA / "monitor_xm_info.txt").read_text()) == 1536


@pytest.mark.parametrize("text,mb", [
    ("free_cpus              : 0\nfree_memory            : 0\n", 0),
    ("free_memory            : 0", 0),
    ("sharing_freed_memory   : 7\nmax_free_memory        : 9\nfree_memory : 12\n", 12),
    ("free_memory:42", 42),
    ("free_cpus              : 0\n", None),
    ("", None),
    ("free_memory            : -1\n", None),
    ("free_memory            : 12 MB\n", None),
    ("free_memory            : \x1b[2J\n", None),
    (f"free_memory            : {MAX_FREE_MB + 1}\n", None),
    ("free_memory            : " + "9" * 5000 + "\n", None),
])
def test_free_memory_line(text: str, mb: int | None) -> None:
    assert parse_free_memory_mb(text) == mb


@given(st.text())
def test_free_memory_any_text(text: str) -> None:
    mb = parse_free_memory_mb(text)
    assert mb is None or 0 <= mb <= MAX_FREE_MB


def write_tool(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def cat_tool(bindir: Path, name: str, text: str) -> None:
    src = bindir / f"{name}.out"
    src.write_text(text)
    write_tool(bindir, name, f"exec /bin/cat '{src}'")


def test_free_memory_reader_prefers_xl(tmp_path: Path) -> None:
    cat_tool(tmp_path, "xl", (DATA / "monitor_xl_info.txt").read_text())
    cat_tool(tmp_path, "xm", (DATA / "monitor_xm_info.txt").read_text())
    reader = FreeMemoryReader(path_env=str(tmp_path))
    assert reader.read() == FreeMemory(3071, "xl")
    assert reader.processes_spawned == 1


def test_free_memory_reader_falls_back_to_xm(tmp_path: Path) -> None:
    write_tool(tmp_path, "xl", "echo 'xc: error: Could not obtain handle on privileged command "
                               "interface (2 = No such file or directory)' >&2; exit 1")
    cat_tool(tmp_path, "xm", (DATA / "monitor_xm_info.txt").read_text())
    reader = FreeMemoryReader(path_env=str(tmp_path))
    assert reader.read() == FreeMemory(1536, "xm")
    assert reader.processes_spawned == 2


def test_free_memory_reader_only_xm(tmp_path: Path) -> None:
    cat_tool(tmp_path, "xm", "free_memory            : 0\nfree_cpus              : 0\n")
    assert FreeMemoryReader(path_env=str(tmp_path)).read() == FreeMemory(0, "xm")


def test_free_memory_unknown(tmp_path: Path) -> None:
    cat_tool(tmp_path, "xl", "host : x\nfree_cpus : 0\n")
    free = FreeMemoryReader(path_env=str(tmp_path)).read()
    assert free.mb is None
    assert "xl info has no free_memory line" in free.why and "no xm" in free.why
    assert render_text([], free).endswith(
        "Free memory: unknown (xl info has no free_memory line; no xm)\n")


def test_free_memory_hung_xl_times_out(tmp_path: Path) -> None:
    write_tool(tmp_path, "xl", "exec /bin/sleep 60")
    free = FreeMemoryReader(path_env=str(tmp_path), timeout_s=0.3).read()
    assert free.mb is None and "xl info timed out" in free.why


# --- the xenstore side: pure selection ---------------------------------------

def test_listing_prefers_memory_per_key() -> None:
    ls = Listing(5, memory=frozenset({"target", "selftarget", "meminfo"}), has_fallback=True,
                 cpus=("0", "1", "2"))
    # data/xenballoon/ is taken to hold what memory/ lacks; reading tells
    assert ls.stat_paths() == {
        "selftarget": "/local/domain/5/memory/selftarget",
        "meminfo": "/local/domain/5/memory/meminfo",
        "vmstat": "/local/domain/5/data/xenballoon/vmstat",
        "uptime": "/local/domain/5/data/xenballoon/uptime",
        "mode": "/local/domain/5/data/xenballoon/mode",
    }
    assert Listing(5, memory=frozenset({"uptime"})).stat_paths() == {
        "uptime": "/local/domain/5/memory/uptime"}
    values = {"/local/domain/5/memory/selftarget": "1",
              "/local/domain/5/cpu/0/availability": "online",
              "/local/domain/5/cpu/1/availability": "offline",
              "/local/domain/5/cpu/2/availability": "online"}
    pub = published(ls, values)
    # meminfo listed but gone by the time of the read: not published, no fallback
    assert pub == Published(5, selftarget="1", vcpus=2)


def test_vcpus_without_availability_nodes_count_entries() -> None:
    assert published(Listing(3, cpus=("0", "1")), {}).vcpus == 2
    assert published(Listing(3, cpus=()), {}).vcpus is None
    assert published(Listing(3), {}).vcpus is None


# --- whole refreshes against the simulated xenstored --------------------------

def dom(d: int, key: str) -> str:
    return f"/local/domain/{d}/{key}"


def add_cpus(host: XsHost, domid: int, states: list[str]) -> None:
    """As libxl does: cpu/<n>/availability, written by dom0."""
    host.server.write_many({dom(domid, f"cpu/{n}/availability"): s for n, s in enumerate(states)})


DOM2_MEMINFO = ("MemTotal:        1048576 kB\nMemFree:          100000 kB\n"
                "MemAvailable:     300000 kB\nCommitLimit:      524288 kB\n"
                "Committed_AS:    1258291 kB")


def populate_golden(host: XsHost) -> None:
    """The guests behind tests/data/monitor_golden.txt."""
    s = host.server
    for domid in (2, 3, 7, 10, 12, 13):
        s.add_domain(domid, f"guest{domid}", 524288, 1048576)
    # 1: everything under memory/ (as under xm, or after dom0 handed the keys over),
    #    the whole /proc/vmstat (dom0-written: over a guest's 2048-byte node limit)
    s.write_many({dom(1, "memory/selftarget"): "1843200", dom(1, "memory/meminfo"): MEMINFO,
                  dom(1, "memory/vmstat"): VMSTAT_FULL,
                  dom(1, "memory/uptime"): "86400.25 160000.10"})
    add_cpus(host, 1, ["online", "online"])
    # 2: the daemon's fallback under xl: data/xenballoon/, vmstat trimmed; 3 of 4 vCPUs online
    s.write_many({dom(2, "data/xenballoon/selftarget"): "262144",
                  dom(2, "data/xenballoon/meminfo"): DOM2_MEMINFO,
                  dom(2, "data/xenballoon/vmstat"): VMSTAT_TRIMMED,
                  dom(2, "data/xenballoon/uptime"): "3600.00 10000.00"}, domid=2)
    add_cpus(host, 2, ["online", "online", "online", "offline"])
    # 3: nothing
    add_cpus(host, 3, ["online"])
    # 7: hostile, written by the guest itself
    s.write_many({dom(7, "data/xenballoon/selftarget"): "-5",
                  dom(7, "data/xenballoon/meminfo"):
                      "MemTotal: \x1b[2J\x1b[31m99 kB\nCommitted_AS: 100000000000 kB",
                  dom(7, "data/xenballoon/vmstat"):
                      "pswpin $(reboot)\npswpout *\npgpgin 1e9\npgpgout ١٢٣",
                  dom(7, "data/xenballoon/uptime"): "-1.00 5.00"}, domid=7)
    # 10: memory/ wins key by key over stale data/xenballoon/; vmstat only in data/
    s.write_many({dom(10, "memory/selftarget"): "500000",
                  dom(10, "memory/meminfo"): "MemTotal:  512000 kB\nCommitted_AS:  4096000 kB"})
    s.write_many({dom(10, "data/xenballoon/selftarget"): "1",
                  dom(10, "data/xenballoon/meminfo"): "MemTotal: 1 kB\nCommitted_AS: 1 kB",
                  dom(10, "data/xenballoon/vmstat"): "pswpin 0\npswpout 0\npgpgin 0\npgpgout 0"},
                 domid=10)
    add_cpus(host, 10, ["online"])
    # 12: the widest values each column holds; no cpu/ (one vCPU assumed)
    s.write_many({dom(12, "memory/selftarget"): "16777216",
                  dom(12, "memory/meminfo"): "MemTotal:       16777216 kB\n"
                                             "Committed_AS:   123456789 kB",
                  dom(12, "memory/vmstat"): "pswpin 99999999999\npswpout 12345678901\n"
                                            "pgpgin 1234567890123\npgpgout 9999999999999",
                  dom(12, "memory/uptime"): "999999999.99 5.00"})
    # 13: only uptime, idle over uptime with no cpu/ to divide by: clamped to 0
    s.write(dom(13, "data/xenballoon/uptime"), "100.00 400.00", domid=13)


@pytest.fixture
def golden_host() -> Iterator[XsHost]:
    with running_sim_xenstored(guests=1) as host:
        populate_golden(host)
        yield host


@pytest.fixture
def xl_bin(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cat_tool(bindir, "xl", (DATA / "monitor_xl_info.txt").read_text())
    return bindir


def cli_refresh(host: XsHost, bindir: Path, domids=None):
    batch = CliXenstore(timeout_s=10, env=host.env(0), path_env=f"{bindir}:/usr/bin:/bin")
    free = FreeMemoryReader(path_env=str(bindir))
    before = host.server.connections_accepted
    snap = refresh(batch, free, domids)
    return snap, batch, free, host.server.connections_accepted - before


@CLIENTS
def test_golden_table(golden_host: XsHost, xl_bin: Path) -> None:
    snap, batch, free, connections = cli_refresh(golden_host, xl_bin)
    text = render_text(snap.rows, snap.free, snap.missing)
    assert text == (DATA / "monitor_golden.txt").read_text()
    # xenstore processes (one connection to xenstored each): list /local/domain; list
    # every memory/ data/ cpu/ (stops at 12's missing cpu/); list 12 and 13; their
    # remaining dirs; read all (stops at 10's data/xenballoon/uptime, which was
    # assumed); list the data/xenballoon/ left; read the rest.  And one xl.
    assert batch.processes_spawned <= 7 and connections <= 7 and free.processes_spawned == 1


@CLIENTS
def test_golden_through_the_command(golden_host: XsHost, xl_bin: Path, tmp_path: Path) -> None:
    conf = tmp_path / "xenballoon.conf"
    conf.write_text("XENBALLOON_XENSTORE=cli\n")
    env = dict(golden_host.env(0), PATH=f"{xl_bin}:/usr/bin:/bin")
    cmd = [sys.executable, "-m", "xenballoond.dom0.monitor", "-c", str(conf)]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout == (DATA / "monitor_golden.txt").read_text()
    js = subprocess.run(cmd + ["--json", "--domain", "12", "-d", "2", "-d", "99"], env=env,
                        cwd=REPO, capture_output=True, text=True, timeout=60)
    doc = json.loads(js.stdout)
    assert [d["id"] for d in doc["domains"]] == [2, 12]
    assert doc["domains"][0] == {
        "id": 2, "published": True, "mem_kb": 1048576, "tgt_kb": 262144, "commit_kb": 1258291,
        "swapin": 40321, "swapout": 98765, "pgin": 5566778, "pgout": 3344556,
        "active_s": 266.67, "vcpus": 3, "invalid": []}
    assert doc["missing_domains"] == [99] and doc["free_memory_mb"] == 3071


def test_native_backend_from_config(golden_host: XsHost, xl_bin: Path, tmp_path: Path) -> None:
    conf = tmp_path / "xenballoon.conf"
    conf.write_text("XENBALLOON_XENSTORE=native\n")
    # no xenstore-* on PATH at all: the native backend needs none
    env = dict(golden_host.env(0), PATH=str(xl_bin))
    before = golden_host.server.connections_accepted
    out = subprocess.run([sys.executable, "-m", "xenballoond.dom0.monitor", "-c", str(conf)], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout == (DATA / "monitor_golden.txt").read_text()
    assert golden_host.server.connections_accepted - before == 1


@CLIENTS
def test_native_batch_in_process(golden_host: XsHost) -> None:
    xs = NativeXenstore(socket_path=golden_host.dom0_socket)
    try:
        pubs, _ = collect(xs)
    finally:
        xs.close()
    cli_pubs, _ = collect(CliXenstore(timeout_s=10, env=golden_host.env(0)))
    assert pubs == cli_pubs and xs.processes_spawned == 0


@CLIENTS
def test_processes_per_refresh_do_not_grow_with_guests(xl_bin: Path) -> None:
    counts = []
    for guests in (2, 60):
        with running_sim_xenstored(guests=guests) as host:
            for d in range(1, guests + 1):
                host.server.write_many({dom(d, "data/xenballoon/meminfo"): MEMINFO,
                                        dom(d, "data/xenballoon/vmstat"): VMSTAT_TRIMMED,
                                        dom(d, "data/xenballoon/uptime"): "5.00 1.00",
                                        dom(d, "data/xenballoon/selftarget"): "1000",
                                        dom(d, "data/xenballoon/mode"): "self"}, domid=d)
                add_cpus(host, d, ["online"])
            snap, batch, free, connections = cli_refresh(host, xl_bin)
            assert len(snap.rows) == guests and all(r.mem_kb == 2014464 for r in snap.rows)
            counts.append((batch.processes_spawned, connections, free.processes_spawned))
    assert counts == [(3, 3, 1), (3, 3, 1)]
    # the original: per guest 4 xenstore-exists + 11 xenstore-read (+ bc), i.e. 900+ for 60


@CLIENTS
def test_guests_without_cpu_or_data_keys(xl_bin: Path) -> None:
    with running_sim_xenstored(guests=3) as host:
        for d in (1, 2, 3):
            host.server.write(dom(d, "memory/selftarget"), str(1000 * d))
        snap, batch, _, _ = cli_refresh(host, xl_bin)
    assert [r.tgt_kb for r in snap.rows] == [1000, 2000, 3000]
    # the first listing stops at 1's missing cpu/: list 2 and 3, then their dirs
    assert batch.processes_spawned <= 5


@CLIENTS
def test_argv_budget_splits_but_keeps_results(golden_host: XsHost) -> None:
    small = CliXenstore(timeout_s=10, env=golden_host.env(0), argv_budget_bytes=100)
    assert collect(small) == collect(CliXenstore(timeout_s=10, env=golden_host.env(0)))
    assert small.processes_spawned > 7


@CLIENTS
def test_hostile_guest_cannot_touch_the_screen(xl_bin: Path) -> None:
    """The guest writes its own keys with the real xenstore-write through its own
    socket: escapes, globs, command substitutions, 2 KB of garbage."""
    nasty = {
        "selftarget": "$(touch /tmp/xb-owned)",
        "meminfo": "MemTotal: 5 kB\x1b[2J\x1b[H\x1b]0;pwned\x07\nCommitted_AS: *\n" + "\x1b" * 1900,
        "vmstat": "pswpin `id`\npswpout -3\npgpgin 99999999999999999999999\npgpgout \\x1b[31m",
    }
    with running_sim_xenstored(guests=2) as host:
        genv = dict(host.env(1), PATH="/usr/bin:/bin")
        for key, value in nasty.items():
            # xenstore-write unescapes its argument; \\ keeps a backslash literal
            subprocess.run(["xenstore-write", f"data/xenballoon/{key}",
                            value.replace("\\", "\\\\")], env=genv, check=True, timeout=30)
        # NUL and CR bytes, spelt as xenstore-write's escapes
        subprocess.run(["xenstore-write", "data/xenballoon/uptime", r"\000\000 \r\r"], env=genv,
                       check=True, timeout=30)
        too_big = subprocess.run(["xenstore-write", "data/xenballoon/vmstat", "9" * 3000],
                                 env=genv, capture_output=True, timeout=30)
        assert too_big.returncode != 0  # xenstored's 2048-byte node limit for guests
        host.server.write_many({dom(2, "data/xenballoon/selftarget"): "777"}, domid=2)
        snap, _, _, _ = cli_refresh(host, xl_bin)
    text = render_text(snap.rows, snap.free)
    assert set(text) <= PRINTABLE | {"\n"}
    assert not os.path.exists("/tmp/xb-owned")
    row1, row2 = snap.rows
    assert row1.invalid == {"tgt_kb", "mem_kb", "commit_kb", "swapin", "swapout", "pgin", "pgout",
                            "active_cs"}
    assert row2.tgt_kb == 777
    lines = text.splitlines()
    assert lines[1].split() == ["1"] + ["?"] * 8
    assert lines[2].split() == ["2", "-", "777"] + ["-"] * 6


@CLIENTS
def test_multi_kilobyte_values_from_dom0(golden_host: XsHost, xl_bin: Path) -> None:
    """A 4 KB node (the most xenstored carries) full of digits and escapes."""
    golden_host.server.write(dom(3, "memory/meminfo"), ("MemTotal: " + "9" * 4000)[:4000])
    golden_host.server.write(dom(3, "memory/vmstat"), "\\" * 2000 + "\n" + "\x7f" * 2000)
    snap, _, _, _ = cli_refresh(golden_host, xl_bin, [3])
    (row,) = snap.rows
    assert {"mem_kb", "commit_kb", "swapin"} <= row.invalid


@pytest.mark.parametrize("removed,processes", [
    ("2/data/xenballoon/vmstat", 7),   # an assumed key: the usual second pass covers it
    ("12/memory/vmstat", 8),           # a listed key: one more xenstore-read
])
@CLIENTS
def test_key_removed_between_listing_and_reading(golden_host: XsHost, tmp_path: Path,
                                                 xl_bin: Path, removed: str,
                                                 processes: int) -> None:
    """A guest deleting its keys mid-refresh: its row loses that column ("-",
    as never published), the others are whole, and no refresh fails."""
    shim = tmp_path / "shim"
    shim.mkdir()
    write_tool(shim, "xenstore-read",
               f"/usr/bin/xenstore-rm /local/domain/{removed} 2>/dev/null\n"
               'exec /usr/bin/xenstore-read "$@"')
    batch = CliXenstore(timeout_s=10, env=golden_host.env(0), path_env=f"{shim}:/usr/bin:/bin")
    snap = refresh(batch, FreeMemoryReader(path_env=str(xl_bin)))
    rows = {r.domid: r for r in snap.rows}
    gone_row = rows[int(removed.split("/")[0])]
    assert gone_row.swapin is None and gone_row.invalid == frozenset()
    assert rows[2].mem_kb == 1048576 and rows[2].active_cs == 26667
    assert rows[12].mem_kb == 16777216 and rows[1].commit_kb == 795392
    assert [r.domid for r in snap.rows] == [1, 2, 3, 7, 10, 12, 13]
    assert batch.processes_spawned == processes


@CLIENTS
def test_domain_destroyed_between_steps(golden_host: XsHost, tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    # the listing of every guest's directories finds domain 7 already gone
    write_tool(shim, "xenstore-list",
               'case "$2" in /local/domain/1/memory) /usr/bin/xenstore-rm /local/domain/7;; esac\n'
               'exec /usr/bin/xenstore-list "$@"')
    batch = CliXenstore(timeout_s=10, env=golden_host.env(0), path_env=f"{shim}:/usr/bin:/bin")
    pubs, missing = collect(batch)
    assert [p.domid for p in pubs] == [1, 2, 3, 10, 12, 13] and missing == []
    assert pubs[1].meminfo == DOM2_MEMINFO and pubs[4].selftarget == "16777216"
    assert batch.processes_spawned <= 8  # the golden 7, and the listing of 7's home again


@CLIENTS
def test_odd_domain_entries_are_skipped(golden_host: XsHost, xl_bin: Path) -> None:
    for name in ("007", "x-y", "99999", "32752"):
        golden_host.server.write(f"/local/domain/{name}/memory/selftarget", "5")
    snap, _, _, _ = cli_refresh(golden_host, xl_bin)
    assert [r.domid for r in snap.rows] == [1, 2, 3, 7, 10, 12, 13]


@CLIENTS
def test_requested_domain_that_does_not_exist(golden_host: XsHost, xl_bin: Path) -> None:
    snap, batch, _, _ = cli_refresh(golden_host, xl_bin, [13, 40, 2])
    assert [r.domid for r in snap.rows] == [2, 13] and snap.missing == [40]
    text = render_text(snap.rows, snap.free, snap.missing)
    assert text.splitlines()[3] == "   40 no such domain"


@CLIENTS
def test_xenstored_down(tmp_path: Path, xl_bin: Path) -> None:
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "nosocket"), PATH=f"{xl_bin}:/usr/bin:/bin")
    out = subprocess.run([sys.executable, "-m", "xenballoond.dom0.monitor", "-c", "/dev/null"], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("xenballoon-monitor: cannot read xenstore: xenstore-list")


def test_bad_config_and_usage(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("XENBALLOON_XENSTORE=telepathy\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "xenballoond.dom0.monitor", *a],  # noqa: E731
                                    cwd=REPO, capture_output=True, text=True, timeout=60)
    bad = run("-c", str(conf))
    assert bad.returncode == 2 and "XENBALLOON_XENSTORE" in bad.stderr and str(conf) in bad.stderr
    assert run("--domain", "0").returncode == 2
    assert run("--domain", "x").returncode == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                        max_size=200), min_size=4, max_size=4))
@CLIENTS
def test_values_survive_the_real_clients(golden_host: XsHost, values: list[str]) -> None:
    """Whatever a guest writes, the monitor reads back exactly that text (the
    CLI's escaping undone) and prints only a row of numbers, dashes and '?'."""
    names = ("selftarget", "meminfo", "vmstat", "uptime")
    golden_host.server.write_many({dom(13, f"data/xenballoon/{n}"): v
                                   for n, v in zip(names, values)}, domid=13)
    (pub,), _ = collect(CliXenstore(timeout_s=10, env=golden_host.env(0)), [13])
    assert (pub.selftarget, pub.meminfo, pub.vmstat, pub.uptime) == tuple(values)
    assert set(row_line(make_row(pub))) <= PRINTABLE


# --- the original, to show what the issue says it gets wrong -----------------

@CLIENTS
@tool_mark("bc")
def test_original_monitor_shows_the_bugs(golden_host: XsHost, tmp_path: Path) -> None:
    cat_tool(tmp_path, "xm", (DATA / "monitor_xm_info.txt").read_text())
    script = tmp_path / "xenballoon-monitor"
    shutil.copy(os.path.join(REPO, "tests/original/xenballoon-monitor"), script)
    env = dict(golden_host.env(0), PATH=f"{tmp_path}:/usr/bin:/bin")
    out = subprocess.run(["bash", str(script), ], env=env, capture_output=True, text=True,
                         timeout=120).stdout.splitlines()
    row1 = out[1].split()
    assert row1[0] == "1" and row1[1] == row1[3] == "2014464"         # commit shows MemTotal
    assert row1[4] == row1[5] == row1[6] == row1[7] == "227903"       # nr_free_pages, 4 times
    assert out[2].split()[0] == "0"                                    # bc -iq's echoed row
    assert out[-1] == "Free memory: 1536 free_cpus : 0 MB"
