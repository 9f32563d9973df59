"""The project's Debian packages built from this work tree, as a clean checkout would build
them: `dpkg-buildpackage -us -uc -b` on a copy outside the repository, with Debian's own
python3 and tools (PATH limited to the system's: a virtualenv's python3 has no dh-python).

Used by tests/test_packaging.py (which lints and inspects them) and by the real-Xen harness
(tests/e2e/harness.py), which installs them on the test host.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGES = ("python3-xenballoond", "xenballoon-dom0", "xenballoond")
# what a clean checkout does not have (outputs of builds and test runs)
IGNORED = (".git", "__pycache__", "*.egg-info", "build", "dist", ".pybuild", ".pytest_cache",
           ".hypothesis", ".e2e-cache", "*.deb", "*.rpm", "tmp", ".debhelper")


def system_env(**extra: str) -> dict[str, str]:
    """This environment without a virtualenv's, pyenv's or an outer build's variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYENV", "VIRTUAL_ENV", "DEB_", "PYBUILD", "MAKEFLAGS"))}
    env.update(PATH=SYSTEM_PATH, LC_ALL="C.UTF-8", **extra)
    return env


def copy_tree(dest: Path) -> Path:
    """The work tree as a clean checkout would have it, in dest/xenballoond (the packages
    land beside it, in dest)."""
    src = dest / "xenballoond"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*IGNORED))
    return src


def build_debs(top: Path, timeout_s: float = 900) -> dict[str, Path]:
    """Copy the tree into top, build it there; {package name: its .deb} (the .changes and
    .buildinfo stay in top).  Raises RuntimeError with the build's output on failure."""
    src = copy_tree(top)
    cmd = ["dpkg-buildpackage", "-us", "-uc", "-b"]
    r = subprocess.run(cmd, cwd=src, env=system_env(), capture_output=True, text=True,
                       timeout=timeout_s)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout[-6000:]}\n"
                           f"{r.stderr[-6000:]}")
    found = {p.name.split("_")[0]: p for p in top.glob("*.deb")}
    if tuple(sorted(found)) != PACKAGES:
        raise RuntimeError(f"{' '.join(cmd)} built {sorted(found)}, not {list(PACKAGES)}")
    return found
