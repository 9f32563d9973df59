"""The FIFO write recorder the tick tests watch the balloon through: it must record every line
written and always stop, whatever its reader thread was doing (the race that hung CI: the
reader took the last write after the stop was asked, and left its loop)."""
from __future__ import annotations

import os

from tests.daemonproc import wait_until
from tests.fifo import WriteRecorder


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def test_every_line_written(tmp_path):
    rec = WriteRecorder(str(tmp_path / "target"))
    for text in ("300\n", "262144\n", "1\n"):
        write(rec.path, text)
    assert rec.stop() == ["300", "262144", "1"]


def test_stops_with_the_reader_waiting_in_open(tmp_path):
    rec = WriteRecorder(str(tmp_path / "target"))
    assert rec.stop() == []
    assert not rec._thread.is_alive()


def test_stops_when_the_reader_already_left_its_loop(tmp_path):
    rec = WriteRecorder(str(tmp_path / "target"))
    rec._done.set()  # the stop is asked ...
    write(rec.path, "42\n")  # ... and the reader takes one more write, sees it and leaves
    wait_until(lambda: not rec._thread.is_alive(), timeout=10, what="the reader to leave its loop")
    assert rec.stop(timeout_s=5) == ["42"]  # the old release, open(path, "w"), blocked forever here


def test_the_file_is_replaced_by_the_fifo(tmp_path):
    path = str(tmp_path / "target")
    write(path, "old")
    rec = WriteRecorder(path)
    assert os.path.exists(path) and not os.path.isfile(path)
    rec.stop()
