"""xenballoon-monitor --prometheus: the rows in Prometheus' text format, read back
with prometheus_client's own parser (the reference reader of the format), and
written for node_exporter's textfile collector (whole file or none)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_monitor import golden_host, xl_bin  # noqa: F401  (fixtures)
from xenballoond.dom0.prometheus import COLUMNS, render_metrics, write_textfile
from xenballoond.dom0.hostinfo import FreeMemory
from xenballoond.dom0.stats import Row

parser = pytest.importorskip("prometheus_client.parser",
                             reason="prometheus_client missing (pip install -e '.[test]')")
REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


def samples(text: str) -> dict:
    """{(sample name, domid or None): value}, and every family's type checked."""
    out = {}
    for family in parser.text_string_to_metric_families(text):
        assert family.type in ("gauge", "counter"), family
        for s in family.samples:
            assert s.timestamp is None  # the textfile collector refuses timestamps
            out[(s.name, s.labels.get("domid"))] = s.value
    return out


def test_one_metric_per_column_in_base_units() -> None:
    row = Row(domid=5, published=True, mem_kb=1048576, tgt_kb=262144, commit_kb=1258291,
              swapin=40321, swapout=98765, pgin=5566778, pgout=3344556, active_cs=26667,
              vcpus=3)
    got = samples(render_metrics([row], FreeMemory(3071, "xl")))
    assert got == {
        ("xenballoon_guest_stats_published", "5"): 1,
        ("xenballoon_guest_memory_total_bytes", "5"): 1048576 * 1024,
        ("xenballoon_guest_target_bytes", "5"): 262144 * 1024,
        ("xenballoon_guest_committed_as_bytes", "5"): 1258291 * 1024,
        ("xenballoon_guest_swap_in_pages_total", "5"): 40321,
        ("xenballoon_guest_swap_out_pages_total", "5"): 98765,
        ("xenballoon_guest_paged_in_bytes_total", "5"): 5566778 * 1024,
        ("xenballoon_guest_paged_out_bytes_total", "5"): 3344556 * 1024,
        ("xenballoon_guest_active_seconds_total", "5"): 266.67,
        ("xenballoon_host_free_memory_bytes", None): 3071 * 1024 * 1024,
    }
    assert len(COLUMNS) == 8  # the table's columns but id


def test_unknown_cells_have_no_sample_not_zero() -> None:
    rows = [Row(domid=1, published=True, mem_kb=100, invalid=frozenset({"tgt_kb"})),
            Row(domid=3, published=False)]
    got = samples(render_metrics(rows, FreeMemory(None, None, "no xl; no xm")))
    assert got == {("xenballoon_guest_stats_published", "1"): 1,
                   ("xenballoon_guest_stats_published", "3"): 0,
                   ("xenballoon_guest_memory_total_bytes", "1"): 102400}
    assert render_metrics([]) == ""


def test_the_largest_values_stay_exact() -> None:
    row = Row(domid=12, published=True, pgout=9999999999999, active_cs=99999999999)
    text = render_metrics([row])
    assert 'xenballoon_guest_paged_out_bytes_total{domid="12"} 10239999999998976\n' in text
    assert 'xenballoon_guest_active_seconds_total{domid="12"} 999999999.99\n' in text


def test_names_are_escaped_labels() -> None:
    name = 'a"b\\c\nd}{,=e'
    text = render_metrics([Row(domid=7, published=False)], names={7: name})
    [family] = parser.text_string_to_metric_families(text)
    assert family.samples[0].labels == {"domid": "7", "name": name}


def test_write_textfile_replaces_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "xenballoon.prom"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    write_textfile(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["xenballoon.prom"]  # no temp file left
    with pytest.raises(OSError):
        write_textfile(str(tmp_path / "no" / "such.prom"), "x\n")


def test_the_command_writes_the_golden_guests(golden_host, xl_bin, tmp_path: Path) -> None:  # noqa: F811
    conf = tmp_path / "xenballoon.conf"
    conf.write_text("XENBALLOON_XENSTORE=native\n")
    prom = tmp_path / "textfile" / "xenballoon.prom"
    prom.parent.mkdir()
    env = dict(golden_host.env(0), PATH=str(xl_bin))
    cmd = [sys.executable, "-m", "xenballoond.dom0.monitor", "-c", str(conf), "--prometheus", str(prom)]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    got = samples(prom.read_text())
    # domain 2 of tests/data/monitor_golden.txt (see test_monitor.py)
    assert got[("xenballoon_guest_memory_total_bytes", "2")] == 1048576 * 1024
    assert got[("xenballoon_guest_swap_in_pages_total", "2")] == 40321
    assert got[("xenballoon_guest_active_seconds_total", "2")] == 266.67
    assert got[("xenballoon_guest_stats_published", "3")] == 0
    assert ("xenballoon_guest_target_bytes", "7") not in got  # "-5": not a number
    assert got[("xenballoon_host_free_memory_bytes", None)] == 3071 * 1024 * 1024

    bad = subprocess.run(cmd[:-2] + ["--json", "--prometheus", str(prom)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "choose one" in bad.stderr
    unwritable = subprocess.run(cmd[:-1] + [str(tmp_path / "no" / "x.prom")], env=env,
                                cwd=REPO, capture_output=True, text=True, timeout=60)
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr
