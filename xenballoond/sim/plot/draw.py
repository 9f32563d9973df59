"""Draw a ``series.Figure`` into an SVG or PNG file with matplotlib.

matplotlib is an optional extra (``pip install '.[plot]'``) and is imported
here only, when a plot is drawn: the daemons never load it, nor does the
simulator unless ``--plot`` is given.  Every artist gets its series' ``gid``,
which an SVG keeps as the element's id, so a reader (or a test) finds one
element per guest and quantity.  Every sample is drawn as recorded: no path
simplification, no snapping to pixels.
"""
from __future__ import annotations

import importlib
import math
import os
from typing import Any

from .series import Figure, Panel

INSTALL_HINT = "pip install '.[plot]'"
FORMATS = {".svg": "svg", ".png": "png"}
PANEL_W_IN, PANEL_H_IN = 7.0, 2.4
COMPARED_PANEL_W_IN = 4.5  # several columns: narrower, to be seen side by side
PNG_DPI = 100

# quantity -> matplotlib style
LINE_STYLES: dict[str, dict[str, Any]] = {
    "size": {"color": "#1f77b4", "linewidth": 1.6},
    "target": {"color": "#2ca02c", "linewidth": 1.0, "linestyle": "--"},
    "committed": {"color": "#d62728", "linewidth": 1.2},
    "dom0-target": {"color": "#7f7f7f", "linewidth": 1.0, "linestyle": ":"},
    "free": {"color": "#9467bd", "linewidth": 1.4},
}


class PlotUnavailable(Exception):
    """matplotlib cannot be imported."""


def require_matplotlib() -> None:
    """Fail early, before a run, when a plot could not be drawn at its end."""
    try:
        importlib.import_module("matplotlib")
    except ImportError as exc:
        raise PlotUnavailable(f"plotting needs matplotlib ({exc}): {INSTALL_HINT}") from None


def file_format(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: a plot file's name ends in .svg or .png")
    return FORMATS[suffix]


def _values(mib: tuple[float | None, ...]) -> list[float]:
    return [math.nan if v is None else v for v in mib]


def _draw_panel(ax: Any, panel: Panel) -> None:
    ax.set_gid(panel.gid)
    ax.patch.set_gid(f"{panel.gid}-background")
    for spans in panel.spans:
        ax.broken_barh([(a, b - a) for a, b in spans.spans_s], (0, panel.y_max_mib),
                       facecolor="#ffbf80", alpha=0.5, linewidth=0, gid=spans.gid,
                       label=spans.label)
    for line in panel.lines:
        ax.plot(line.t_s, _values(line.mib), gid=line.gid, label=line.label,
                **LINE_STYLES[line.quantity])
    for marks in panel.marks:
        if marks.quantity == "oom":
            ax.vlines(marks.t_s, 0, panel.y_max_mib, colors="black", linewidth=1.5,
                      gid=marks.gid, label=marks.label)
        else:  # a rug on the time axis; unclipped, and so kept out of the layout's
            # bounding boxes, which an unclipped artist would collapse
            ax.plot(marks.t_s, [0.0] * len(marks.t_s), linestyle="none", marker="|",
                    markersize=9, color="#8c564b", clip_on=False, in_layout=False,
                    gid=marks.gid, label=marks.label)
    ax.set_xlim(0, panel.t_max_s)
    ax.set_ylim(0, panel.y_max_mib)
    ax.set_title(panel.title, loc="left")
    ax.set_xlabel("time, s", gid=f"{panel.gid}-xlabel")
    ax.set_ylabel("memory, MiB", gid=f"{panel.gid}-ylabel")
    ax.grid(True, linewidth=0.3)


def draw(figure: Figure, path: str) -> None:
    """Write ``figure`` to ``path``, SVG or PNG by the name's suffix."""
    fmt = file_format(path)
    require_matplotlib()
    import matplotlib
    from matplotlib.figure import Figure as MplFigure

    n_rows, n_cols = len(figure.rows), len(figure.rows[0])
    with matplotlib.rc_context({
            "path.simplify": False,  # the file holds every sample: what is drawn is the JSON
            "path.snap": False,
            "svg.fonttype": "none",  # text stays text: small files, labels a parser can read
            "svg.hashsalt": "xenballoon",  # the same run gives the same file
            "font.size": 8}):
        panel_w_in = PANEL_W_IN if n_cols == 1 else COMPARED_PANEL_W_IN
        fig = MplFigure(figsize=(panel_w_in * n_cols, PANEL_H_IN * n_rows + 0.8),
                        layout="constrained")
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for i, row in enumerate(figure.rows):
            for j, panel in enumerate(row):
                _draw_panel(axes[i][j], panel)
        handles, labels = axes[0][0].get_legend_handles_labels()
        host_handles, host_labels = axes[-1][0].get_legend_handles_labels()
        fig.legend(handles + host_handles, labels + host_labels, loc="outside lower center",
                   ncols=4, frameon=False)
        fig.suptitle(figure.title)
        fig.savefig(path, format=fmt, dpi=PNG_DPI,
                    metadata={"Date": None} if fmt == "svg" else None)
