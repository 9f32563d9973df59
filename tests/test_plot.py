"""xenballoon-sim --plot: the file it draws, read back.

An SVG is parsed as XML: every series is the element whose id is its gid
(sim/plot/series.py), and its points are mapped back to data through the
panel's own tick marks and labels, as a person reads a chart; what comes out
must be the run's JSON (``--json``, the same run).  A PNG is opened as an
image.  No pixel is compared.  matplotlib is the optional extra ``plot`` (and
in ``test``): without it these tests skip, which CI=true makes a failure.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Callable

import pytest

from tests.repo import REPO, python_env

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
MIB = 1024
LINES = {"size": "current_kb", "target": "target_kb", "committed": "committed_kb",
         "dom0-target": "dom0_target_kb"}
# A ramp faster than the self-ballooning daemon with the 2008 target (reserve 0) follows:
# Committed_AS above the target and swap traffic within 6 s.
RUN = ("-g", "2", "-d", "6", "-w", "ramp", "--ramp-mb-s", "256", "-m", "self",
       "--reserve-pct", "0", "--xenstore", "native", "--tick", "0.25")
TOLERANCE_MIB = 0.01  # the SVG's coordinates have 6 decimals


def needs_matplotlib() -> None:
    pytest.importorskip("matplotlib", reason="matplotlib missing (pip install -e '.[test]', "
                                             "or '.[plot]')")


def sim(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xenballoond.sim.host", *args],
                          env=python_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, ET.Element]:
    """One short run: its --json summary and its --plot SVG, parsed."""
    needs_matplotlib()
    svg = tmp_path_factory.mktemp("plot") / "run.svg"
    proc = sim(*RUN, "--json", "--plot", str(svg))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), ET.parse(svg).getroot()


# --- reading an SVG back ---------------------------------------------------

def by_id(root: ET.Element) -> dict[str, ET.Element]:
    return {e.get("id"): e for e in root.iter() if e.get("id")}


def shapes(group: ET.Element) -> list[list[tuple[float, float]]]:
    """Each path in the group as its vertices, in order, and each marker placed as one point."""
    out = []
    for e in group.iter():
        if e.tag == SVG + "path" and not e.get("id"):  # ids: marker shapes in <defs>
            numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", e.get("d", ""))]
            out.append(list(zip(numbers[::2], numbers[1::2])))
        elif e.tag == SVG + "use":
            out.append([(float(e.get("x")), float(e.get("y")))])
    return out


def axis(panel: ET.Element, which: str) -> Callable[[float], float]:
    """SVG coordinate -> data, from the panel's ticks: each tick's mark and its label."""
    ticks = []
    for tick in panel.iter(SVG + "g"):
        if not (tick.get("id") or "").startswith(f"{which}tick_"):
            continue
        mark = next(tick.iter(SVG + "use"))
        label = "".join(next(tick.iter(SVG + "text")).itertext())
        ticks.append((float(mark.get("x" if which == "x" else "y")), float(label)))
    assert len(ticks) >= 2, f"{panel.get('id')}: fewer than two {which} ticks"
    (s0, v0), (s1, v1) = ticks[0], ticks[-1]
    return lambda s: v0 + (s - s0) * (v1 - v0) / (s1 - s0)


def drawn_shapes(root: ET.Element, panel_gid: str, gid: str) -> list[list[tuple[float, float]]]:
    """The series' shapes in data units (s, MiB)."""
    ids = by_id(root)
    x, y = axis(ids[panel_gid], "x"), axis(ids[panel_gid], "y")
    return [[(x(a), y(b)) for a, b in shape] for shape in shapes(ids[gid])]


def drawn(root: ET.Element, panel_gid: str, gid: str) -> list[tuple[float, float]]:
    """The series' points in data units (s, MiB), every shape's in order."""
    return [p for shape in drawn_shapes(root, panel_gid, gid) for p in shape]


def close(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and all(abs(g - w) < TOLERANCE_MIB for g, w in zip(got, want))


def rises(t_s: list[float], *counters: list[int]) -> list[float]:
    return [t_s[i] for i in range(1, len(t_s)) if any(c[i] > c[i - 1] for c in counters)]


# --- the tests ---------------------------------------------------------------

def test_one_series_per_guest_and_quantity(run) -> None:
    summary, root = run
    gids = {i for i in by_id(root) if re.match(r"(dom\d+|host)-", i)}
    kinds = [*LINES, "swap", "oom", "uncovered", "background", "xlabel", "ylabel"]
    assert gids == ({f"dom{d}-{k}" for d in (1, 2) for k in kinds}
                    | {f"host-{k}" for k in ("free", "background", "xlabel", "ylabel")})


def test_every_axis_is_labelled_with_its_unit(run) -> None:
    _, root = run
    ids = by_id(root)
    for panel in ("dom1", "dom2", "host"):
        assert "".join(ids[f"{panel}-xlabel"].itertext()).strip() == "time, s"
        assert "".join(ids[f"{panel}-ylabel"].itertext()).strip() == "memory, MiB"
    texts = {"".join(t.itertext()) for t in root.iter(SVG + "text")}
    assert {"dom1 guest1: ", "dom2 guest2: "} <= {t[:len("domN guestN: ")] for t in texts}
    assert "host: free memory" in texts


def test_the_lines_drawn_are_the_runs_json(run) -> None:
    summary, root = run
    timeline = summary["timeline"]
    t_s = timeline["t_s"]
    assert len(t_s) == int(summary["simulated_s"] / summary["tick_s"]) + 1  # t=0 and each step
    for guest in timeline["guests"]:
        for quantity, key in LINES.items():
            xy = drawn(root, f"dom{guest['domid']}", f"dom{guest['domid']}-{quantity}")
            want = [(t, kb / MIB) for t, kb in zip(t_s, guest[key]) if kb is not None]
            assert close([p[0] for p in xy], [w[0] for w in want]), quantity
            assert close([p[1] for p in xy], [w[1] for w in want]), quantity
    xy = drawn(root, "host", "host-free")
    assert close([p[0] for p in xy], t_s)
    assert close([p[1] for p in xy], [kb / MIB for kb in timeline["host_free_kb"]])


def test_swap_oom_kills_and_uncovered_spells_are_where_the_json_has_them(run) -> None:
    summary, root = run
    timeline = summary["timeline"]
    for guest in timeline["guests"]:
        d = guest["domid"]
        swaps = rises(timeline["t_s"], guest["swapped_out_pages"], guest["swapped_in_pages"])
        assert close([x for x, _ in drawn(root, f"dom{d}", f"dom{d}-swap")], swaps)
        ooms = rises(timeline["t_s"], guest["oom_kills"])
        oom_x = [x for x, _ in drawn(root, f"dom{d}", f"dom{d}-oom")]
        assert close(sorted(set(round(x, 3) for x in oom_x)), ooms)
        rects = drawn_shapes(root, f"dom{d}", f"dom{d}-uncovered")
        got = [[min(x for x, _ in r), max(x for x, _ in r)] for r in rects]
        assert len(got) == len(guest["uncovered_s"])
        assert all(close(g, w) for g, w in zip(got, guest["uncovered_s"]))
    # this run is chosen to show both: the 2008 target lags the ramp and the guests swap
    assert any(g["uncovered_s"] for g in timeline["guests"])
    assert any(g["swapped_out_pages"][-1] for g in timeline["guests"])


def test_a_png_is_a_picture_of_the_figures_size(run, tmp_path) -> None:
    from PIL import Image

    from xenballoond.sim.plot import draw, series
    summary, _ = run
    path = str(tmp_path / "run.png")
    draw.draw(series.run_figure(summary), path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (round(draw.PANEL_W_IN * draw.PNG_DPI),
                              round((draw.PANEL_H_IN * 3 + 0.8) * draw.PNG_DPI))
        image.verify()


def test_the_bench_draws_each_policy_from_its_own_run(run, tmp_path) -> None:
    """bench_balance.plot: one column per policy, each drawn from that policy's summary
    (here the same run, its host's free memory shifted by the column's index)."""
    from bench import bench_balance
    summary, _ = run
    summaries = {}
    for i, policy in enumerate(bench_balance.POLICIES):
        s = copy.deepcopy(summary)
        s["timeline"]["host_free_kb"] = [kb + i * 100 * MIB for kb in s["timeline"]["host_free_kb"]]
        summaries[(policy, 7)] = s
    path = tmp_path / "bench.svg"
    opts = argparse.Namespace(guests=2, duration=6.0, host_mb=3584)
    bench_balance.plot(summaries, 7, opts, str(path))
    root = ET.parse(path).getroot()
    for i, slug in enumerate(("self-2008", "self-ours", "qmemman", "ours")):
        xy = drawn(root, f"{slug}-host", f"{slug}-host-free")
        want = [kb / MIB for kb in summaries[(bench_balance.POLICIES[i], 7)]["timeline"][
            "host_free_kb"]]
        assert close([y for _, y in xy], want), slug
        for d in (1, 2):
            assert {f"{slug}-dom{d}-{q}" for q in LINES} <= set(by_id(root))


def test_bench_plot_runs_the_four_policies_into_one_file(tmp_path) -> None:
    needs_matplotlib()
    path = tmp_path / "bench.svg"
    r = subprocess.run([sys.executable, os.path.join(REPO, "bench", "bench_balance.py"), "-d", "2",
                        "-g", "1", "-s", "1", "-j", "4", "--host-mb", "1536", "--no-cpu",
                        "--plot", str(path)], env=python_env(), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert f"plotted seed 1 to {path}" in r.stdout
    root = ET.parse(path).getroot()
    for slug in ("self-2008", "self-ours", "qmemman", "ours"):
        assert {f"{slug}-dom1-{q}" for q in LINES} | {f"{slug}-host-free"} <= set(by_id(root))
        assert len(drawn(root, f"{slug}-dom1", f"{slug}-dom1-size")) == 21  # t = 0, 0.1, ... 2


def readme_picture_command() -> list[str]:
    """The command the README gives for its picture, split as a shell would."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    found = re.search(r"```sh\n(xenballoon-sim [^\n]*--plot (\S+))\n```", readme)
    assert found, "README.md: no xenballoon-sim ... --plot FILE command"
    assert f"]({found.group(2)})" in readme  # and the picture shown
    return shlex.split(found.group(1))


def test_the_readme_picture_is_committed_small_and_from_its_command() -> None:
    argv = readme_picture_command()
    path = os.path.join(REPO, argv[-1])
    assert os.path.getsize(path) < 200_000
    guests = int(argv[argv.index("-g") + 1])
    ids = by_id(ET.parse(path).getroot())
    assert {f"dom{d}-{q}" for d in range(1, guests + 1) for q in LINES} | {"host-free"} <= set(ids)
    assert f"dom{guests + 1}-size" not in ids


def test_the_readme_picture_command_still_draws(tmp_path) -> None:
    """The README's command as it stands, only shorter (-d 2) and into a temporary file."""
    needs_matplotlib()
    argv = readme_picture_command()[1:]
    argv[argv.index("-d") + 1] = "2"
    out = tmp_path / "picture.svg"
    argv[-1] = str(out)
    proc = sim(*argv)
    assert proc.returncode == 0, proc.stderr
    ids = by_id(ET.parse(out).getroot())
    guests = int(argv[argv.index("-g") + 1])
    assert {f"dom{d}-{q}" for d in range(1, guests + 1) for q in LINES} | {"host-free"} <= set(ids)


def test_a_plot_file_is_svg_or_png_by_its_name(tmp_path) -> None:
    proc = sim("-d", "1", "--plot", str(tmp_path / "run.pdf"))
    assert proc.returncode == 2
    assert "ends in .svg or .png" in proc.stderr


def test_without_matplotlib_plot_fails_at_once_naming_the_extra(tmp_path) -> None:
    hide = tmp_path / "hide"
    (hide / "matplotlib").mkdir(parents=True)
    (hide / "matplotlib" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\")\n")
    env = python_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hide), env["PYTHONPATH"]])
    out = tmp_path / "run.svg"
    proc = subprocess.run([sys.executable, "-m", "xenballoond.sim.host", "-d", "1", "--plot",
                           str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "pip install '.[plot]'" in proc.stderr and "matplotlib" in proc.stderr
    assert " guests in " not in proc.stderr  # it said so before starting a run
    assert not out.exists()


def test_no_daemon_loads_matplotlib() -> None:
    """Plotting is the simulator's and the bench's: xenballoond, the balancer and the
    monitor (and the simulator without --plot) never import it, so their RSS is as before."""
    code = ("import sys, xenballoond.guest.cli, xenballoond.guest.runloop, "
            "xenballoond.xenstore.native, xenballoond.dom0.balancer, xenballoond.dom0.monitor, "
            "xenballoond.dom0.prometheus, xenballoond.sim.host, xenballoond.sim.plot.series, "
            "xenballoond.sim.plot.draw; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'numpy', 'PIL')))")
    r = subprocess.run([sys.executable, "-c", code], env=python_env(), cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
