"""The real-Xen suite's reading of a hung guest's SysRq w (tests/e2e/dom0/dom0_driver.py's
blocked_tasks), on console text in Linux 6.1's format: what a failure will name."""
import importlib.util
import pathlib

from hypothesis import given
from hypothesis import strategies as st

SPEC = importlib.util.spec_from_file_location(
    "dom0_driver", pathlib.Path(__file__).parent / "e2e" / "dom0" / "dom0_driver.py")
assert SPEC is not None and SPEC.loader is not None
dom0_driver = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dom0_driver)

# As xenconsoled logs a 6.1 guest's console (timestamps, a "? " frame, the <TASK> markers).
SYSRQ_W = """\
[  612.118230] sysrq: Show Blocked State
[  612.118517] task:xenwatch        state:D stack:0     pid:16    ppid:2      flags:0x00004000
[  612.118701] Call Trace:
[  612.118760]  <TASK>
[  612.118800]  __schedule+0x34d/0x9e0
[  612.118866]  schedule+0x5a/0xd0
[  612.118920]  xs_suspend+0x9e/0x130
[  612.118981]  ? cpuacct_percpu_seq_show+0x20/0x20
[  612.119040]  do_suspend+0xa4/0x1f0
[  612.119101]  shutdown_handler+0x11d/0x170
[  612.119160]  xenwatch_thread+0x91/0x180
[  612.119222]  ? wake_up_bit+0x40/0x40
[  612.119280]  kthread+0xd7/0x100
[  612.119333]  ret_from_fork+0x22/0x30
[  612.119390]  </TASK>
[  612.119430] task:python3         state:D stack:0     pid:1124  ppid:1      flags:0x00000002
[  612.119500] Call Trace:
[  612.119560]  <TASK>
[  612.119600]  __schedule+0x34d/0x9e0
[  612.119660]  schedule+0x5a/0xd0
[  612.119700]  __refrigerator+0x4a/0x140
[  612.119760]  </TASK>
""".splitlines()


def test_names_each_blocked_task_and_where_it_waits() -> None:
    assert dom0_driver.blocked_tasks(SYSRQ_W) == [
        "xenwatch:xs_suspend<cpuacct_percpu_seq_show<do_suspend<shutdown_handler<xenwatch_thread",
        "python3:?"]


def test_no_blocked_task_is_an_empty_list() -> None:
    assert dom0_driver.blocked_tasks(["[  1.0] sysrq: Show Blocked State", "[  1.1] random"]) == []


def test_no_answer_is_none() -> None:
    assert dom0_driver.blocked_tasks([]) is None
    assert dom0_driver.blocked_tasks(SYSRQ_W[1:]) is None


def test_garbage_lines_never_raise() -> None:
    lines = ["sysrq: Show Blocked State", "task: state:", "+0x", " \x00+0x1/0x2", "task:x state:D",
             "", "\udcff+0x"]
    assert dom0_driver.blocked_tasks(lines) == ["x:?"]  # what is no task line or frame is left out


@given(st.lists(st.text()))
def test_any_console_text_gives_a_list_or_none(lines: list[str]) -> None:
    got = dom0_driver.blocked_tasks(lines)
    assert got is None or all(isinstance(t, str) and ":" in t for t in got)
