"""The type checker over the package (mypy.ini: strict on the guest daemon and
the xenstore client): a wrong type is a failing test, not a comment."""
from __future__ import annotations

from mypy import api

from tests.repo import REPO


def test_mypy_passes() -> None:
    out, err, status = api.run(["--config-file", f"{REPO}/mypy.ini", "--no-error-summary",
                                f"{REPO}/xenballoond"])
    assert status == 0, out + err
