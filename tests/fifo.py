"""Every write a program makes to a file, seen through a FIFO in the file's place.

The program under test opens the path, writes a line and closes it (as the daemon writes the
balloon target); each line is one entry here (two writes may reach one read).  The reader thread sits in a blocking open() between
writes, so stopping it means being one last writer: stop() opens the FIFO without blocking
until the thread is gone, and fails, naming the path, if that takes longer than its timeout.
"""
from __future__ import annotations

import errno
import os
import threading
import time


class WriteRecorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: list[str] = []
        self._done = threading.Event()
        if os.path.lexists(path):
            os.unlink(path)
        os.mkfifo(path)
        self._thread = threading.Thread(target=self._read, name="fifo-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            with open(self.path) as f:  # blocks until a writer opens the FIFO
                text = f.read()  # until that writer closes it
            self.lines += text.splitlines()

    def stop(self, timeout_s: float = 10) -> list[str]:
        """End the reader and return the lines written."""
        self._done.set()
        deadline = time.monotonic() + timeout_s
        while self._thread.is_alive():
            try:  # release a reader waiting in open(); ENXIO: none is waiting right now
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            self._thread.join(0.05)
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for the reader of the "
                                     f"FIFO {self.path} to stop")
        return self.lines
