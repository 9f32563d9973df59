"""The Grafana dashboard shipped for xenballoon-monitor --prometheus
(etc/grafana/xenballoon-monitor.json): it queries only metrics the monitor
writes, shows every one of them, and the dom0 package installs it."""
from __future__ import annotations

import json
import os
import re
from typing import Iterator

import pytest

from tests.repo import REPO
from xenballoond.dom0.hostinfo import FreeMemory
from xenballoond.dom0.prometheus import render_metrics
from xenballoond.dom0.stats import Row

DASHBOARD = os.path.join(REPO, "etc", "grafana", "xenballoon-monitor.json")
INSTALLED = "usr/share/xenballoon-dom0/grafana"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())  # a collapsed row holds its own


def queried(dashboard: dict) -> set[str]:
    """Every metric name in the panels' queries and the variables' queries."""
    texts = [t["expr"] for p in panels(dashboard) for t in p.get("targets", ())]
    texts += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return {name for text in texts for name in re.findall(r"\bxenballoon_[a-z_]+\b", text)}


def written() -> set[str]:
    """Every metric family xenballoon-monitor --prometheus writes: a guest with every
    column published, and the host's free memory."""
    row = Row(domid=1, published=True, mem_kb=1, tgt_kb=1, commit_kb=1, swapin=1, swapout=1,
              pgin=1, pgout=1, active_cs=1, vcpus=1)
    text = render_metrics([row], FreeMemory(1, "xl"))
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def test_every_metric_the_dashboard_queries_is_one_the_monitor_writes(dashboard) -> None:
    assert queried(dashboard) - written() == set()


def test_every_metric_the_monitor_writes_is_on_the_dashboard(dashboard) -> None:
    assert written() - queried(dashboard) == set()


def test_every_panel_is_complete(dashboard) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for p in panels(dashboard):
        assert p["title"] and set(p["gridPos"]) == {"x", "y", "w", "h"}, p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]  # Grafana's 24 columns
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        # the monitor writes bytes and seconds; a panel says which it shows
        assert p["fieldConfig"]["defaults"]["unit"], p["title"]


def test_variables_the_queries_use_are_defined(dashboard) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = {name for p in panels(dashboard) for t in p["targets"]
            for name in re.findall(r"\$(\w+)", t["expr"]) if not name.startswith("__")}
    used |= {p["repeat"] for p in panels(dashboard) if "repeat" in p}
    assert used <= defined and "datasource" in defined


def test_the_dom0_package_installs_it() -> None:
    with open(os.path.join(REPO, "debian", "xenballoon-dom0.install"), encoding="utf-8") as f:
        lines = [line.split() for line in f if line.strip()]
    assert ["etc/grafana/xenballoon-monitor.json", INSTALLED] in lines
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        assert f"/{INSTALLED}/xenballoon-monitor.json" in f.read()
