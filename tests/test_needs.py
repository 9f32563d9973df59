"""A missing tool skips the test that needs it, naming it; with CI=true the
skip is a failure (tests/conftest.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAMPLE = '''
from tests.needs import needs_tool

def test_needs_a_missing_tool():
    needs_tool("sh", "no-such-tool-xb")

def test_opted_out():
    import pytest
    pytest.skip("XENBALLOON_E2E=0")

def test_pure():
    assert True
'''


@pytest.mark.parametrize("ci, summary", [("", "1 passed, 2 skipped"),
                                          ("true", "1 failed, 1 passed, 1 skipped")])
def test_skips_name_the_tool_and_fail_under_ci(tmp_path, ci, summary):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = dict(os.environ, CI=ci, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p",
                        "no:cacheprovider", "-q", "-rA", "test_sample.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert summary in r.stdout, r.stdout
    assert "no-such-tool-xb missing (Debian package no-such-tool-xb)" in r.stdout
    assert "sh missing" not in r.stdout
