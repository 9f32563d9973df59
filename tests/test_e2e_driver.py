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


def test_over_allocations_tells_the_toolstacks_from_a_guests_own():
    # lines from the branch's run 4 console (xl dmesg through xenconsoled)
    text = ("(XEN) d1v0 Over-allocation for d1: 98561 > 98560\n"
            "(XEN) d0v0 Over-allocation for d7: 33025 > 33024\n"
            "(XEN) d9v0 Over-allocation for d9: 89416 > 89415\n"
            "(XEN) d0v1 Over-allocation for d12: 1 > 0\n"
            "(XEN) Over-allocation for domain 3\n"
            "(XEN) d3v0 Over-allocation for d4: 5 > 4\n"
            "(XEN) something else\n")
    # own: d1 and d9 asked for themselves; the rest dom0's, or another's, or unknown
    assert dom0_driver.over_allocations(text) == (4, 2)
    assert dom0_driver.over_allocations("") == (0, 0)


def test_follow_lags_by_hand():
    static_max = 786432
    # the branch's run 4 trace: 1105141 stood 1.51 s and memory/target never showed it
    # (capped: it would be 786432); 617405 shown 0.81 s after it appeared
    trace = [[0.4, "491929", "524288"], [1.16, "1105141", "491929"], [2.67, "617405", "491929"],
             [3.48, "617405", "617405"], [3.79, "617401", "617405"], [15.41, "617377", "617377"]]
    assert dom0_driver.follow_lags(trace, static_max) == ([0.81], 0, 1)
    # a selftarget above static-max shown capped: followed
    trace = [[0.0, "900000", "500000"], [1.0, "900000", "786432"], [5.0, "900000", "786432"]]
    assert dom0_driver.follow_lags(trace, static_max) == ([1.0], 0, 0)
    # a rise that stood 3 s and was never shown: missed
    trace = [[0.0, "600000", "500000"], [3.0, "600000", "500000"], [3.5, "400000", "500000"]]
    assert dom0_driver.follow_lags(trace, static_max) == ([], 1, 0)
    # run 6: the guest held 786432 kB, its selftarget 770810: memory/target 786432 covers it
    trace = [[1.32, "457357", "524288"], [3.51, "770810", "524288"], [3.88, "770810", "786432"],
             [6.02, "756749", "770810"]]
    assert dom0_driver.follow_lags(trace, static_max) == ([0.37], 0, 0)
    # garbage selftarget: skipped
    assert dom0_driver.follow_lags([[0.0, "x1", "500000"]], static_max) == ([], 0, 0)
