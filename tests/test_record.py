"""record.frozen behaves as dataclasses.dataclass(frozen=True) where we use it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from xenballoond.record import asdict, fields, frozen


@frozen
class Point:
    x: int
    y: int = 2

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("x < 0")


def test_init_defaults_eq_hash_repr() -> None:
    assert Point(1) == Point(1, 2) == Point(x=1, y=2)
    assert Point(1) != Point(1, 3)
    assert hash(Point(1)) == hash(Point(1, 2))
    assert repr(Point(1)) == "Point(x=1, y=2)"
    assert fields(Point) == ("x", "y") and asdict(Point(1)) == {"x": 1, "y": 2}


def test_frozen_and_checked() -> None:
    p = Point(1)
    with pytest.raises(AttributeError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.x  # type: ignore[misc]
    with pytest.raises(ValueError):
        Point(-1)
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, x=1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Point(1, z=1)  # type: ignore[call-arg]


def guest_daemon_modules() -> list[str]:
    """Every module the guest daemon's modules load, in a fresh interpreter."""
    code = ("import sys, xenballoond.guest.cli, xenballoond.guest.runloop, "
            "xenballoond.xenstore.cli, xenballoond.xenstore.native; "
            "print(' '.join(sys.modules))")
    return subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_daemon_imports_stay_lean() -> None:
    """The long-running daemon's modules import neither typing nor dataclasses
    (+0.2-0.6 and +0.4-1.2 MiB of RSS in every guest: bench/bench_daemon.py); counted, not timed."""
    loaded = set(guest_daemon_modules())
    assert loaded & {"typing", "dataclasses", "inspect", "shutil", "tempfile",
                     "logging.handlers"} == set()


def native_daemon_modules() -> list[str]:
    """What the daemon with the native backend loads, in a fresh interpreter."""
    code = ("import sys, xenballoond.guest.cli, xenballoond.guest.runloop, "
            "xenballoond.xenstore.native; print(' '.join(sys.modules))")
    return subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_native_daemon_leaves_out_what_it_needs_once_or_never() -> None:
    """Issue 12, RSS: argparse (a plain command line is parsed without it),
    ctypes and struct (_ctypes for mlockall, int.to_bytes for the header),
    socket (_socket), traceback and what it brings (on first use)."""
    loaded = set(native_daemon_modules())
    assert loaded & {"argparse", "gettext", "ctypes", "struct", "_struct", "socket", "selectors",
                     "tokenize", "linecache", "textwrap"} == set()


def test_traceback_on_first_use_prints_the_exception() -> None:
    code = ("import sys, xenballoond.guest.cli, logging\n"
            "assert type(sys.modules['traceback']).__name__ == 'module'\n"
            "assert 'tokenize' not in sys.modules\n"
            "logging.basicConfig(stream=sys.stdout, format='%(message)s')\n"
            "def fail(): raise ValueError('no good')\n"
            "try:\n    fail()\nexcept ValueError:\n    logging.getLogger('t').exception('tick failed')\n"
            "import traceback\n"
            "assert sys.modules['traceback'] is traceback and hasattr(traceback, 'format_exc')\n"
            "print(traceback.format_exception_only(KeyError, KeyError('k'))[0].strip())\n")
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}\n{code}"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "tick failed"
    assert "Traceback (most recent call last):" in out
    assert "in fail" in out and "ValueError: no good" in out
    assert out.splitlines()[-1] == "KeyError: 'k'"


def test_lazy_traceback_changes_nothing_where_logging_is_loaded() -> None:
    from xenballoond import lazytraceback
    import traceback
    assert lazytraceback.install() is False
    assert sys.modules["traceback"] is traceback


def test_guest_daemon_does_not_import_dom0_or_sim() -> None:
    assert [m for m in guest_daemon_modules()
            if m.startswith(("xenballoond.dom0", "xenballoond.sim"))] == []
