""".ci/run runs the README's test command, exactly, from a venv made with
Debian's own Python (which refuses a system-wide pip install, PEP 668)."""
from __future__ import annotations

import os
import re
import subprocess

from tests.needs import needs_tool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI_RUN = os.path.join(REPO, ".ci", "run")


def test_ci_runs_the_readme_test_command_from_a_venv():
    text = open(CI_RUN).read()
    readme = open(os.path.join(REPO, "README.md")).read()
    command = re.search(r"```sh\n(python3 -m pytest[^\n]*)\n```", readme).group(1)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[-1] == command
    assert "python3-venv" in text and "python3-pip" in text
    assert re.search(r"^/usr/bin/python3 -m venv ", text, re.M)
    assert re.search(r'^export PATH="\$venv/bin:\$PATH"', text, re.M)
    pip_lines = [line for line in lines if "pip install" in line]
    assert pip_lines and all(line.startswith('"$venv/bin/python3" -m pip') for line in pip_lines)


def test_ci_script_passes_shellcheck():
    needs_tool("shellcheck")
    r = subprocess.run(["shellcheck", CI_RUN], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
