"""What a plot of simulator runs shows (sim/plot/series.py), worked by hand from
small summaries: pure, no matplotlib."""
from __future__ import annotations

import copy

import pytest

from xenballoond.sim.plot.series import compare_figure, run_figure

MIB = 1024


def summary(**timeline_changes: object) -> dict:
    """A run of two guests over four steps, as xenballoon-sim --json prints it
    (only what a plot reads)."""
    timeline = {
        "t_s": [0.0, 0.5, 1.0, 1.5],
        "host_free_kb": [512 * MIB, 600 * MIB, 700 * MIB, 650 * MIB],
        "guests": [
            {"domid": 1, "name": "guest1",
             "current_kb": [1024 * MIB, 1000 * MIB, 900 * MIB, 950 * MIB],
             "target_kb": [1024 * MIB, 900 * MIB, 900 * MIB, 1100 * MIB],
             "committed_kb": [400 * MIB, 400 * MIB, 1000 * MIB, 1000 * MIB],
             "dom0_target_kb": [1024 * MIB, None, 900 * MIB, 900 * MIB],
             "swapped_out_pages": [5, 5, 9, 9], "swapped_in_pages": [0, 0, 0, 3],
             "oom_kills": [0, 0, 0, 0], "uncovered_s": [[1.0, 1.5]]},
            {"domid": 2, "name": "guest2",
             "current_kb": [1024 * MIB, 1024 * MIB, 1200 * MIB, 1300 * MIB],
             "target_kb": [1024 * MIB, 1024 * MIB, 1300 * MIB, 1300 * MIB],
             "committed_kb": [300 * MIB] * 4, "dom0_target_kb": [1024 * MIB] * 4,
             "swapped_out_pages": [0] * 4, "swapped_in_pages": [0] * 4,
             "oom_kills": [0, 1, 1, 2], "uncovered_s": []},
        ],
    }
    timeline.update(timeline_changes)
    return {"mode": "balanced", "workload": "turns", "seed": 3, "guests": 2,
            "simulated_s": 1.5, "timeline": timeline}


def test_one_panel_per_guest_then_the_host_in_one_column() -> None:
    fig = run_figure(summary())
    assert fig.title == "xenballoon-sim -m balanced -w turns -s 3: 2 guests, 1.5 s"
    assert [[p.gid for p in row] for row in fig.rows] == [["dom1"], ["dom2"], ["host"]]
    assert [p.title for (p,) in fig.rows] == [
        "dom1 guest1: Committed_AS above target 1x, longest 0.50 s",
        "dom2 guest2: Committed_AS never above target", "host: free memory"]


def test_one_series_per_guest_and_quantity_in_mib() -> None:
    (g1,), _, (host,) = run_figure(summary()).rows
    assert [line.gid for line in g1.lines] == ["dom1-size", "dom1-target", "dom1-committed",
                                               "dom1-dom0-target"]
    assert [m.gid for m in g1.marks] == ["dom1-swap", "dom1-oom"]
    assert [s.gid for s in g1.spans] == ["dom1-uncovered"]
    size, target, committed, dom0 = g1.lines
    assert size.t_s == (0.0, 0.5, 1.0, 1.5)
    assert size.mib == (1024, 1000, 900, 950)
    assert target.mib == (1024, 900, 900, 1100) and committed.mib == (400, 400, 1000, 1000)
    assert dom0.mib == (1024, None, 900, 900)  # not in xenstore at 0.5 s: a gap, not 0
    assert [line.gid for line in host.lines] == ["host-free"]
    assert host.lines[0].mib == (512, 600, 700, 650)
    assert host.marks == () and host.spans == ()


def test_swap_and_oom_kills_are_marked_where_their_counters_rise() -> None:
    (g1,), (g2,), _ = run_figure(summary()).rows
    assert g1.marks[0].t_s == (1.0, 1.5)  # pswpout at 1.0, pswpin at 1.5
    assert g1.marks[1].t_s == ()
    assert g2.marks[0].t_s == ()
    assert g2.marks[1].t_s == (0.5, 1.5)
    assert g1.spans[0].spans_s == ((1.0, 1.5),) and g2.spans[0].spans_s == ()


def test_guests_share_one_scale_above_the_highest_value_and_the_host_its_own() -> None:
    (g1,), (g2,), (host,) = run_figure(summary()).rows
    assert g1.y_max_mib == g2.y_max_mib == 1536  # 1300 MiB, rounded up to 256 MiB steps
    assert host.y_max_mib == 768
    assert g1.t_max_s == host.t_max_s == 1.5


def test_policies_side_by_side_share_their_rows_scales() -> None:
    other = summary()
    other["timeline"]["guests"][1]["current_kb"][3] = 1900 * MIB
    other["timeline"]["host_free_kb"][0] = 100 * MIB
    fig = compare_figure([("self 2008", summary()), ("ours", other)], "bench")
    assert [[p.gid for p in row] for row in fig.rows] == [
        ["self-2008-dom1", "ours-dom1"], ["self-2008-dom2", "ours-dom2"],
        ["self-2008-host", "ours-host"]]
    assert {p.y_max_mib for row in fig.rows[:2] for p in row} == {2048}
    assert {p.y_max_mib for p in fig.rows[2]} == {768}
    assert fig.rows[0][1].lines[0].gid == "ours-dom1-size"
    assert fig.rows[2][0].title == "self 2008 | host: free memory"
    assert fig.rows[1][1].lines[0].mib[3] == 1900


def test_runs_to_compare_have_the_same_guests() -> None:
    one_guest = summary()
    del one_guest["timeline"]["guests"][1]
    with pytest.raises(ValueError):
        compare_figure([("a", summary()), ("b", one_guest)], "bench")


@pytest.mark.parametrize("timeline", [None, {"t_s": [], "host_free_kb": [], "guests": []}])
def test_a_summary_without_a_timeline_is_refused(timeline: object) -> None:
    s = copy.deepcopy(summary())
    s["timeline"] = timeline
    with pytest.raises(ValueError, match="no timeline"):
        run_figure(s)
