"""The wire codec: golden bytes worked by hand from xs_wire.h, round trips, and
hostile input (garbage, huge lengths, short reads) that must never crash it."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenballoond.xenstore import wire
from xenballoond.sim import wire_server
from xenballoond.xenstore.wire import Message, Op, WireError
from xenballoond.sim.wire_server import Perm

# --- golden values from xen/include/public/io/xs_wire.h --------------------

# enum xsd_sockmsg_type counts from XS_CONTROL (was XS_DEBUG) = 0; XS_RESTRICT (20)
# was removed and "XS_RESET_WATCHES = XS_SET_TARGET + 2".
ENUM_FROM_HEADER = [
    ("CONTROL", 0), ("DIRECTORY", 1), ("READ", 2), ("GET_PERMS", 3), ("WATCH", 4),
    ("UNWATCH", 5), ("TRANSACTION_START", 6), ("TRANSACTION_END", 7), ("INTRODUCE", 8),
    ("RELEASE", 9), ("GET_DOMAIN_PATH", 10), ("WRITE", 11), ("MKDIR", 12), ("RM", 13),
    ("SET_PERMS", 14), ("WATCH_EVENT", 15), ("ERROR", 16), ("IS_DOMAIN_INTRODUCED", 17),
    ("RESUME", 18), ("SET_TARGET", 19), ("RESET_WATCHES", 21), ("DIRECTORY_PART", 22),
    ("INVALID", 0xFFFF),
]


@pytest.mark.parametrize("name,value", ENUM_FROM_HEADER)
def test_message_type_numbers(name: str, value: int) -> None:
    assert Op[name] == value


def test_error_names_in_header_order() -> None:
    assert wire.ERRORS == ("EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM",
                           "ENOSPC", "EIO", "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY",
                           "EAGAIN", "EISCONN", "E2BIG", "EPERM")


def test_limits() -> None:
    assert (wire.HEADER_BYTES, wire.PAYLOAD_MAX_BYTES) == (16, 4096)
    assert (wire.ABS_PATH_MAX, wire.REL_PATH_MAX) == (3072, 2048)


GOLDEN = [
    # struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; } little-endian, then payload
    (Op.READ, 1, 0, b"memory/target\0",
     b"\x02\x00\x00\x00" b"\x01\x00\x00\x00" b"\x00\x00\x00\x00" b"\x0e\x00\x00\x00"
     b"memory/target\0"),
    # WRITE: "path\0value", no NUL after the value
    (Op.WRITE, 7, 3, b"data/x\x0042",
     b"\x0b\x00\x00\x00" b"\x07\x00\x00\x00" b"\x03\x00\x00\x00" b"\x09\x00\x00\x00"
     b"data/x\x0042"),
    (Op.ERROR, 0x01020304, 0, b"EACCES\0",
     b"\x10\x00\x00\x00" b"\x04\x03\x02\x01" b"\x00\x00\x00\x00" b"\x07\x00\x00\x00"
     b"EACCES\0"),
    (Op.TRANSACTION_END, 2, 0xFFFFFFFF, b"T\0",
     b"\x07\x00\x00\x00" b"\x02\x00\x00\x00" b"\xff\xff\xff\xff" b"\x02\x00\x00\x00" b"T\0"),
    (Op.DIRECTORY, 0, 0, b"", b"\x01\x00\x00\x00" + b"\x00" * 12),
    (Op.RESET_WATCHES, 9, 0, b"",
     b"\x15\x00\x00\x00" b"\x09\x00\x00\x00" + b"\x00" * 8),
]


@pytest.mark.parametrize("op,req_id,tx_id,payload,expected", GOLDEN)
def test_golden_encodings(op: Op, req_id: int, tx_id: int, payload: bytes,
                          expected: bytes) -> None:
    assert wire.encode(op, payload, req_id, tx_id) == expected
    assert wire.decode(expected) == Message(op, req_id, tx_id, payload)


def test_payload_conventions() -> None:
    assert wire.strings("memory", "tok") == b"memory\0tok\0"
    assert wire.write_payload("data/x", b"a\nb") == b"data/x\0a\nb"
    assert wire_server.split_write(b"data/x\0a\0b") == (b"data/x", b"a\0b")  # values may hold NUL
    assert wire.split_strings(b"static-max\0target\0videoram\0") == [
        b"static-max", b"target", b"videoram"]
    assert wire.split_strings(b"") == []
    assert wire_server.one_arg(b"memory/target\0") == b"memory/target"
    assert wire_server.error_payload("E2BIG") == b"E2BIG\0"
    assert wire.parse_error(b"EAGAIN\0") == "EAGAIN"
    assert wire_server.set_perms_payload("x", [Perm(0, 0), Perm(5, 1)]) == b"x\0n0\0r5\0"
    assert wire_server.parse_perms(b"n0\0r5\0w7\0b3\0") == (
        Perm(0, wire_server.PERM_NONE), Perm(5, wire_server.PERM_READ), Perm(7, wire_server.PERM_WRITE),
        Perm(3, wire_server.PERM_READ | wire_server.PERM_WRITE))


@pytest.mark.parametrize("bad", [b"", b"a", b"a\0b\0", b"\0\0", b"a\0b"])
def test_one_arg_wants_exactly_one_trailing_nul(bad: bytes) -> None:
    with pytest.raises(WireError):
        wire_server.one_arg(bad)


@pytest.mark.parametrize("bad", ["", "r", "x5", "r-1", "r65536", "r 5", "R5", "r5 ", "r0x10",
                                 "n123456", "r٣"])
def test_bad_permissions(bad: str) -> None:
    with pytest.raises(WireError):
        wire_server.parse_perm(bad)


def test_unknown_error_name_reads_as_einval() -> None:
    assert wire.parse_error(b"EWHATEVER\0") == "EINVAL"
    assert wire.parse_error(b"\xff\xfe") == "EINVAL"
    with pytest.raises(WireError):
        wire_server.error_payload("EWHATEVER")


def test_encode_refuses_what_xenstored_would_drop() -> None:
    with pytest.raises(WireError):
        wire.encode(Op.WRITE, b"x" * 4097)
    with pytest.raises(WireError):
        wire.encode(Op.READ, b"", req_id=-1)
    with pytest.raises(WireError):
        wire.encode(Op.READ, b"", tx_id=1 << 32)
    with pytest.raises(WireError):
        wire.strings("a\0b")
    assert len(wire.encode(Op.WRITE, b"x" * 4096)) == 16 + 4096


def test_unknown_message_type_still_decodes() -> None:
    msg = wire.decode(wire.encode(1234, b"?"))
    assert msg.op == 1234 and msg.op_name == "UNKNOWN(1234)"


# --- the incremental decoder -----------------------------------------------

def encode_message(msg: Message) -> bytes:
    return wire.encode(msg.op, msg.payload, msg.req_id, msg.tx_id)


def pending_bytes(dec: wire.Decoder) -> int:
    """What the decoder holds of a message not yet whole."""
    return len(dec._buf)


def test_decoder_waits_for_whole_messages() -> None:
    data = wire.encode(Op.READ, b"name\0", 1) + wire.encode(Op.WATCH_EVENT, b"a\0t\0")
    dec = wire.Decoder()
    assert dec.feed(data[:10]) == []
    assert dec.feed(data[10:20]) == []
    msgs = dec.feed(data[20:])
    assert [m.op for m in msgs] == [Op.READ, Op.WATCH_EVENT]
    assert pending_bytes(dec) == 0


def test_decoder_refuses_a_huge_length_before_buffering_and_stays_failed() -> None:
    dec = wire.Decoder()
    with pytest.raises(WireError):
        dec.feed(struct.pack("<IIII", Op.WRITE, 0, 0, 4097))
    assert dec.failed and pending_bytes(dec) == 0
    with pytest.raises(WireError):
        dec.feed(wire.encode(Op.READ, b"x\0"))


@pytest.mark.parametrize("bad", [b"", b"\x02", b"\x00" * 15, b"\x00" * 17,
                                 struct.pack("<IIII", 2, 0, 0, 5) + b"abc"])
def test_decode_of_a_wrong_size_is_an_error(bad: bytes) -> None:
    with pytest.raises(WireError):
        wire.decode(bad)


messages = st.builds(
    Message,
    op=st.integers(0, wire.U32_MAX),
    req_id=st.integers(0, wire.U32_MAX),
    tx_id=st.integers(0, wire.U32_MAX),
    payload=st.binary(max_size=wire.PAYLOAD_MAX_BYTES),
)


@given(messages)
def test_round_trip(msg: Message) -> None:
    assert wire.decode(encode_message(msg)) == msg


@settings(max_examples=200)
@given(st.lists(messages, max_size=6), st.lists(st.integers(1, 5000), max_size=20))
def test_stream_split_anywhere_gives_the_same_messages(msgs: list[Message],
                                                       cuts: list[int]) -> None:
    stream = b"".join(encode_message(m) for m in msgs)
    dec, got, pos = wire.Decoder(), [], 0
    for cut in cuts:
        got += dec.feed(stream[pos:pos + cut])
        pos += cut
    got += dec.feed(stream[pos:])
    assert got == msgs
    assert pending_bytes(dec) == 0


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=30))
def test_garbage_never_crashes_the_decoder(chunks: list[bytes]) -> None:
    dec = wire.Decoder()
    for chunk in chunks:
        try:
            msgs = dec.feed(chunk)
        except WireError:
            assert dec.failed
            return
        for m in msgs:
            assert len(m.payload) <= wire.PAYLOAD_MAX_BYTES
        assert pending_bytes(dec) < wire.HEADER_BYTES + wire.PAYLOAD_MAX_BYTES


@given(st.binary(max_size=200))
def test_payload_helpers_only_raise_wire_error(data: bytes) -> None:
    for fn in (wire.split_strings, wire_server.one_arg, wire_server.split_write, wire_server.parse_perms,
               wire_server.parse_perm):
        try:
            fn(data)
        except WireError:
            pass
    assert wire.parse_error(data) in wire.ERRORS


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0",
                                               blacklist_categories=("Cs",)), max_size=20),
                max_size=10))
def test_strings_round_trip(parts: list[str]) -> None:
    enc = [p.encode("utf-8") for p in parts]
    assert wire.split_strings(wire.strings(*parts)) == enc


@given(st.text(max_size=20))
def test_strings_of_any_text_encode_or_raise_wire_error(text: str) -> None:
    try:
        out = wire.strings(text)
    except WireError:
        return
    assert out.endswith(b"\0")


@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1),
       st.binary(max_size=64))
def test_header_is_struct_xsd_sockmsg(op, req_id, tx_id, payload):
    """Packed with int.to_bytes (no struct module in the guest), it is C's
    little-endian struct xsd_sockmsg {u32 type, req_id, tx_id, len}."""
    data = wire._pack_header(op, req_id, tx_id, len(payload))
    assert data == struct.pack("<IIII", op, req_id, tx_id, len(payload))
    assert wire.decode_header(data) == (op, req_id, tx_id, len(payload))
