"""`xenballoon-balancer restore FILE` (issue 20): the xl save header, read and
written by hand from xl's layout (tools/xl/xl.h, xl_saverestore.c); then the
real command as a process, against the simulated xenstored and the
simulator's xl, bringing back a guest whose plain `xl restore` failed."""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from tests.repo import python_env
from tests.test_balancer import BalancerHost
from xenballoond.dom0.savefile import SaveFileError, read_header, with_target

MIB = 1024
# xl's header, by hand: the 32-byte magic (a NUL and a CR inside), then four
# uint32 in the host's order (x86: little-endian): byteorder 0x01020304,
# mandatory flags (JSON 1 | STREAMv2 2), optional flags, optional data length
MAGIC = b"Xen saved domain, xl format\n \x00 \r"
assert len(MAGIC) == 32

CONFIG = {"c_info": {"type": "pv", "name": "guest7", "uuid": "3a2b"},
          "b_info": {"max_vcpus": 1, "max_memkb": 786432, "target_memkb": 262144,
                     "type.pv": {"kernel": "/guest/vmlinuz"}},
          "disks": [{"pdev_path": "/dev/loop0", "vdev": "xvda"}]}


def header(config: object = CONFIG, *, magic: bytes = MAGIC, order: int = 0x01020304,
           flags: int = 3, config_text: bytes | None = None, opt_len: int | None = None,
           config_len: int | None = None) -> bytes:
    text = config_text if config_text is not None else json.dumps(config).encode() + b"\0"
    opt = struct.pack("<I", len(text) if config_len is None else config_len) + text
    return (magic + struct.pack("<IIII", order, flags, 0, len(opt) if opt_len is None else opt_len)
            + opt)


def parse(data: bytes):
    return read_header(io.BytesIO(data).read)


def test_reads_xls_header_by_hand():
    data = header() + b"STREAM"
    h = parse(data)
    assert h.name == "guest7"
    assert h.memory_kb("target_memkb") == 262144 and h.memory_kb("max_memkb") == 786432
    assert data[h.size:] == b"STREAM"
    assert h.size == 48 + 4 + len(json.dumps(CONFIG)) + 1


def test_with_target_raises_only_the_target():
    h = parse(header())
    new = parse(with_target(h, 409600))
    assert new.memory_kb("target_memkb") == 409600
    assert new.memory_kb("max_memkb") == 786432
    assert new.config["disks"] == CONFIG["disks"] and new.name == "guest7"
    raw = with_target(h, 409600)
    assert raw[:32] == MAGIC and struct.unpack_from("<IIII", raw, 32)[:3] == (0x01020304, 3, 0)
    assert raw.endswith(b"}\0")  # NUL-terminated, as libxl_domain_config_to_json's strlen + 1


def test_a_target_above_maxmem_raises_maxmem_with_it():
    new = parse(with_target(parse(header()), 900000))
    assert new.memory_kb("max_memkb") == 900000


@pytest.mark.parametrize("data, why", [
    (b"", "not an xl save file"),
    (b"LinuxGuestRecord" + b"\0" * 64, "not an xl save file"),
    (header(magic=b"Xen saved domain, xl format\n \x00 \n"), "not an xl save file"),
    (header(order=0x04030201), "byte order"),
    (header(flags=2), "no JSON config"),
    (header(opt_len=0), "optional data is 0 bytes"),
    (header(opt_len=1 << 30), "optional data is"),
    (header()[:60], "ends inside its header"),
    (header(config_len=1 << 20), "does not fit"),
    (header(config_len=0), "does not fit"),
    (header(config_text=b"{not json\0"), "not JSON"),
    (header(config_text=b"\xff\xfe\0"), "not JSON"),
    (header(config=[1, 2]), "not a JSON object"),
])
def test_damaged_headers_fail_with_a_reason(data, why):
    with pytest.raises(SaveFileError, match=why):
        parse(data)


@pytest.mark.parametrize("b_info, why", [
    ({}, "target_memkb: None"), ({"target_memkb": "262144"}, "'262144'"),
    ({"target_memkb": True}, "True"), ({"target_memkb": -1}, "-1"),
    ({"target_memkb": 1 << 41}, str(1 << 41)), ({"target_memkb": 262144.0}, "262144.0"),
])
def test_unusable_sizes_are_named(b_info, why):
    h = parse(header({"c_info": {"name": "g"}, "b_info": b_info}))
    with pytest.raises(SaveFileError, match=why):
        h.memory_kb("target_memkb")


@pytest.mark.parametrize("c_info", [{}, {"name": ""}, {"name": 7}, {"name": None}])
def test_a_config_naming_no_domain_is_refused(c_info):
    with pytest.raises(SaveFileError, match="names no domain"):
        _ = parse(header({"c_info": c_info, "b_info": CONFIG["b_info"]})).name


@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_anything_but_save_file_error(data):
    try:
        parse(data)
    except SaveFileError:
        pass


@given(target=st.integers(min_value=1, max_value=1 << 40),
       name=st.text(min_size=1, max_size=40), stream=st.binary(max_size=64))
def test_rewritten_header_reads_back(target, name, stream):
    config = json.loads(json.dumps(CONFIG))
    config["c_info"]["name"] = name
    h = parse(header(config) + stream)
    raw = with_target(h, target) + stream
    new = parse(raw)
    assert new.name == name and new.memory_kb("target_memkb") == target
    assert new.memory_kb("max_memkb") == max(786432, target)
    assert raw[new.size:] == stream


# --- the command, against the simulator's xl ---------------------------------------

def save_file(path: str, held_kb: int, config: dict = CONFIG) -> str:
    """A simulated save: xl's header, then a stream of held_kb bytes (fake_xl reads the
    stream's length as the kB the guest held)."""
    stream = bytes((i * 7) % 251 for i in range(held_kb))
    with open(path, "wb") as f:
        f.write(header(config) + stream)
    return hashlib.sha256(stream).hexdigest()


@pytest.fixture
def host(tmp_path):
    h = BalancerHost(str(tmp_path), 4096, {1: (256, 768)})
    yield h
    h.close()


def xl(h: BalancerHost, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([h.xl, *args], env=h.env(), capture_output=True, text=True,
                          timeout=60)


def test_a_failed_restore_comes_back_with_one_command(host, tmp_path):
    path = str(tmp_path / "guest7.save")
    digest = save_file(path, 400 * MIB)  # it held 400 MiB; saved with a target of 256
    plain = xl(host, "restore", path)
    assert plain.returncode == 1 and "Over-allocation" in plain.stderr  # the stand-in fails
    proc = host.run("restore", path)
    assert proc.returncode == 0, proc.stderr
    assert "guest7: restored from" in proc.stdout
    (event,) = host.restored
    assert event["target_kb"] == 786432  # room: its saved maxmem
    assert event["paused"] and event["stream_sha256"] == digest  # the stream untouched
    d = next(d for d, n in host.names.items() if n == "guest7")
    # paused, memory/target set to what it holds + 1 MiB, then unpaused
    assert host.target_kb(d) == 400 * MIB + MIB
    assert host.unpaused == [d]
    assert os.path.getsize(path) == len(header()) + 400 * MIB  # the save file is left


def test_too_little_room_fails_leaving_the_file(host, tmp_path):
    path = str(tmp_path / "guest7.save")
    save_file(path, 400 * MIB)
    before = open(path, "rb").read()
    proc = host.run("restore", path, "--memory", "300M")
    assert proc.returncode == 1
    assert "Over-allocation" in proc.stderr and "try --memory with more" in proc.stderr
    assert open(path, "rb").read() == before and host.restored == []


def test_a_running_domain_of_that_name_is_not_doubled(host, tmp_path):
    path = str(tmp_path / "guest1.save")
    config = json.loads(json.dumps(CONFIG))
    config["c_info"]["name"] = "guest1"
    save_file(path, 100, config)
    proc = host.run("restore", path)
    assert proc.returncode == 1 and "a domain named 'guest1' exists" in proc.stderr
    assert host.restored == []


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, MAGIC])
def test_a_file_that_is_no_save_says_so(host, tmp_path, content):
    path = tmp_path / "x.save"
    path.write_bytes(content)
    proc = host.run("restore", str(path))
    assert proc.returncode == 1 and "not an xl save file" in proc.stderr
    assert host.restored == []


def test_a_missing_file_says_so(host, tmp_path):
    proc = host.run("restore", str(tmp_path / "nope.save"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [["--memory", "lots"], ["--memory", "0"],
                                  ["--timeout", "0"], []])
def test_bad_arguments_are_usage_errors(host, tmp_path, args):
    argv = host.argv("restore", *([str(tmp_path / "f")] if args else []), *args)
    proc = subprocess.run(argv, env=host.env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_help_names_the_command():
    proc = subprocess.run([sys.executable, "-m", "xenballoond.dom0.balancer", "--help"],
                          env=python_env(), capture_output=True, text=True, timeout=60)
    assert "restore FILE" in proc.stdout


@pytest.mark.parametrize("script, said", [
    ("exit 3", "rc 3"),  # fails before it opens the stream: the command must not wait for good
    ("head -c 100 \"$3\" >/dev/null; echo 'xl: error: truncated' >&2; exit 1", "truncated"),
])
def test_an_xl_that_stops_early_is_reported(host, tmp_path, script, said):
    """A list that works, a restore that fails at once or after reading a little."""
    path = str(tmp_path / "guest7.save")
    save_file(path, 400 * MIB)
    xl_path = tmp_path / "xl-early"
    xl_path.write_text(f"#!/bin/sh\nif [ \"$1\" = restore ]; then {script}; fi\nexec {host.xl} \"$@\"\n")
    xl_path.chmod(0o755)
    host.write_conf(f"XENBALLOON_BALANCER_XL={xl_path}\n")
    proc = host.run("restore", path, "--timeout", "60")
    assert proc.returncode == 1 and said in proc.stderr, proc.stderr
    assert host.restored == [] and "Traceback" not in proc.stderr
