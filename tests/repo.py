"""The checkout under test, and how a subprocess runs this checkout's package."""
from __future__ import annotations

import os
from typing import Mapping

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the checkout first on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env
