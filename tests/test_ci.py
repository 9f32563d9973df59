""".ci/run runs the README's test command, exactly, from a venv made with
Debian's own Python (which refuses a system-wide pip install, PEP 668)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

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


HANGS = '''
import os, threading

def test_waits_for_a_writer(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    threading.Thread(target=threading.Event().wait, name="idle-helper", daemon=True).start()
    with open(path) as f:  # nobody ever writes: the line the failure must name
        f.read()
'''


def test_a_test_that_hangs_fails_at_its_limit_naming_what_it_waited_for(tmp_path):
    """The suite's time limit (pytest.ini: pytest-timeout, tests/timeouts.py), run on a test that
    blocks for good on a FIFO nobody writes: it fails within the limit given, naming that line,
    and the run goes on."""
    test = tmp_path / "test_hangs.py"
    test.write_text(HANGS + "\n\ndef test_after():\n    pass\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:randomly",
                        "-p", "no:cacheprovider", "-o", "timeout_method=signal", "--timeout", "2",
                        str(test)], cwd=REPO, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert ("Failed: Timeout: still running after 2 s, the test's limit (pytest.ini, or its timeout "
            "mark), waiting at ") in out, out
    assert ("test_hangs.py:8 in test_waits_for_a_writer: with open(path) as f:  # nobody ever "
            "writes: the line the failure must name") in out, out
    assert "--- thread idle-helper, waiting at " in out, out


def test_every_test_has_a_time_limit_and_a_random_order():
    r = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "tests/test_fifo.py"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    header = subprocess.run([sys.executable, "-m", "pytest", "--co", "tests/test_fifo.py"],
                            cwd=REPO, capture_output=True, text=True, timeout=120).stdout
    assert "timeout: 300.0s" in header and "timeout method: signal" in header, header
    assert re.search(r"Using --randomly-seed=\d+", header), header
