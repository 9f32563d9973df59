"""With CI=true, a skipped test is a failure: CI has every tool installed
(.ci/run), so a skip there means something is missing that should not be.
XENBALLOON_E2E=0, which a person sets on purpose, is the one skip allowed.

The real-Xen run begins once collected, beside the unit tests, and its tests come last
(tests/e2e/early.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ALLOWED_IN_CI = ("XENBALLOON_E2E=0",)
REAL_XEN_DIR = Path(__file__).resolve().parent / "e2e"


def _real_xen(item: pytest.Item) -> bool:
    return Path(item.path).resolve().is_relative_to(REAL_XEN_DIR)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The real-Xen tests last: they wait for the run begun beside the unit tests (below).
    A stable sort, after pytest-randomly's shuffle (a wrapper), keeps its order otherwise."""
    items.sort(key=_real_xen)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Begin the real-Xen run now, if it is collected and can run here (tests/e2e/early.py)."""
    if session.config.option.collectonly or os.environ.get("XENBALLOON_E2E_LOG"):
        return
    if not any(_real_xen(item) for item in session.items):
        return
    from tests.e2e import early, harness
    if harness.why_not_run() is None:  # else its fixture skips or fails, saying why
        early.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    early = sys.modules.get("tests.e2e.early")
    if early is not None:
        early.stop()  # a session ended before the run (-x, Ctrl-C): QEMU goes too


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(reason.removeprefix("Skipped: ").startswith(a) for a in ALLOWED_IN_CI):
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true, so this skip is a failure: {reason}"


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):  # type: ignore[no-untyped-def]
    from tests.timeouts import set_timer
    return set_timer(item, settings)
