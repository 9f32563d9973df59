"""With CI=true, a skipped test is a failure: CI has every tool installed
(.ci/run), so a skip there means something is missing that should not be.
XENBALLOON_E2E=0, which a person sets on purpose, is the one skip allowed."""
from __future__ import annotations

import os

import pytest

ALLOWED_IN_CI = ("XENBALLOON_E2E=0",)


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
