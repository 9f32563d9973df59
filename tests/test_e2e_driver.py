"""The real-Xen dom0 driver's own arithmetic (tests/e2e/dom0/dom0_driver.py runs inside the
emulated dom0, where it cannot import the package) against the 2008 original run in bash."""
import importlib.util
import pathlib

from hypothesis import given, settings
from hypothesis import strategies as st

from tests import bash_oracle

SPEC = importlib.util.spec_from_file_location(
    "dom0_driver", pathlib.Path(__file__).parent / "e2e" / "dom0" / "dom0_driver.py")
assert SPEC is not None and SPEC.loader is not None
dom0_driver = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dom0_driver)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 1 << 26), min_size=1, max_size=40))
def test_the_drivers_minmb_is_the_originals(maxmem_kbs: list[int]) -> None:
    edges = [0, 125 * 1024 - 1, 125 * 1024, 500 * 1024, 2000 * 1024, 393216, 786432]
    cases = edges + maxmem_kbs
    assert [dom0_driver.original_minmb(kb) for kb in cases] == \
        bash_oracle.minmb([(kb, 0) for kb in cases])
