"""Whatever the guest's /proc and balloon files say, a tick neither crashes
nor writes a target below the minimum."""
from __future__ import annotations

import logging
import os
import socket
import tempfile

from hypothesis import given, settings, strategies as st

from tests.guestroot import SYSFS, make_guest, write
from xenballoond.guest.balloon import detect_balloon
from xenballoond.guest.settings import Config
from xenballoond.service.logsetup import SyslogHandler
from xenballoond.guest.maxmem import MaxmemFile
from xenballoond.paths import Root
from xenballoond.contract.minimum import min_target_mb
from xenballoond.guest.policy import MIB
from xenballoond.guest.sensor import ProcFiles
from xenballoond.guest.tick import Ballooner

LOG = logging.getLogger("test-properties")
LOG.addHandler(logging.NullHandler())
LOG.propagate = False

numbers = st.one_of(st.integers(0, 1 << 62).map(str), st.text(max_size=30),
                    st.sampled_from(["-1", "", "99999999999999999999999", "0x10", "1e9", "\x00"]))


def tick_once(root: str, config: Config) -> int | None:
    b = Ballooner(config=config, balloon=detect_balloon(Root(root)),
                  files=ProcFiles(*(os.path.join(root, "proc", n) for n in
                                    ("meminfo", "vmstat", "uptime", "sys/vm/min_free_kbytes"))),
                  maxmem=MaxmemFile(os.path.join(root, "var/run/xenballoon-maxmem")),
                  xenstore=None, log=LOG)
    before = open(os.path.join(root, SYSFS, "target")).read()
    b.tick()
    after = open(os.path.join(root, SYSFS, "target")).read()
    return None if after == before else int(after)


@settings(max_examples=150, deadline=None)
@given(memtotal=numbers, committed=numbers, current=numbers, maxmem=numbers,
       extra=st.text(max_size=200), self_mode=st.booleans(), minmem=st.integers(0, 4096))
def test_tick_never_crashes_nor_goes_below_minimum(memtotal, committed, current, maxmem,
                                                    extra, self_mode, minmem) -> None:
    with tempfile.TemporaryDirectory() as root:
        make_guest(root, memtotal_kb=1, committed_kb=1, current_kb=1)
        write(os.path.join(root, "proc/meminfo"),
              f"MemTotal: {memtotal} kB\n{extra}\nCommitted_AS: {committed} kB\n")
        write(os.path.join(root, SYSFS, "info/current_kb"), current + "\n")
        write(os.path.join(root, SYSFS, "target"), "sentinel\n")
        write(os.path.join(root, "var/run/xenballoon-maxmem"), maxmem + "\n")
        config = Config(self_ballooning=self_mode, min_mem_mb=minmem)
        tgt = tick_once(root, config)
        if tgt is not None:
            maxmem_kb = int(open(os.path.join(root, "var/run/xenballoon-maxmem")).read())
            assert tgt >= min_target_mb(maxmem_kb, minmem) * MIB


def test_real_meminfo_self_mode_writes_target() -> None:
    with tempfile.TemporaryDirectory() as root:
        make_guest(root, memtotal_kb=380000, committed_kb=200000, current_kb=393216)
        assert tick_once(root, Config(self_ballooning=True, self_reserve_pct=0)) == 384221184


def test_syslog_lines_reach_the_socket(tmp_path) -> None:
    path = str(tmp_path / "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(30)
    try:
        h = SyslogHandler(path)
        h.setFormatter(logging.Formatter("%(message)s"))
        h.emit(logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("world",), None))
        data = server.recv(4096).decode()
        assert data == f"<28>xenballoond[{os.getpid()}]: hello world"  # daemon.warning
        h.close()
    finally:
        server.close()


def test_syslog_without_a_syslog_daemon_drops_quietly(tmp_path) -> None:
    h = SyslogHandler(str(tmp_path / "nothing"))
    h.emit(logging.LogRecord("x", logging.ERROR, __file__, 1, "lost", (), None))
    h.close()
