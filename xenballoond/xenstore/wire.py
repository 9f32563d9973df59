"""The xenstore wire protocol, as pure functions (xen/include/public/io/xs_wire.h).

A message is a 16-byte little-endian header ``struct xsd_sockmsg`` (type,
req_id, tx_id, len) followed by ``len`` payload bytes, at most
XENSTORE_PAYLOAD_MAX (4096).  The same framing runs over xenstored's unix socket
and over a guest's /dev/xen/xenbus.  Payloads are NUL-terminated strings, except
READ replies and the value of a WRITE ("path\\0value", no NUL after the value),
which are raw bytes.  Errors come back as an XS_ERROR message whose payload is
the errno's name ("EACCES\\0").

Everything read from the wire is hostile: the decoder refuses a length above the
maximum before buffering it, and the payload helpers raise ``WireError`` on
anything malformed rather than guessing.  This is the half a client needs; the
server's half (request parsing, errors, permissions) is in sim/wire_server.py.
"""
from __future__ import annotations

import enum

from ..record import frozen

class Op(enum.IntEnum):
    """enum xsd_sockmsg_type (Xen 4.17)."""

    CONTROL = 0  # was XS_DEBUG
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    # 20 was XS_RESTRICT, removed: "XS_RESET_WATCHES = XS_SET_TARGET + 2"
    RESET_WATCHES = 21
    DIRECTORY_PART = 22
    INVALID = 0xFFFF


# Four little-endian u32 (struct "<IIII"), packed with int.to_bytes: the struct
# module's C part is 0.06 MiB more in every guest, for one 16-byte header.
HEADER_BYTES = 16
PAYLOAD_MAX_BYTES = 4096  # XENSTORE_PAYLOAD_MAX
ABS_PATH_MAX = 3072  # XENSTORE_ABS_PATH_MAX
REL_PATH_MAX = 2048  # XENSTORE_REL_PATH_MAX
U32_MAX = 0xFFFFFFFF

# xsd_errors[] in order; EINVAL first (send_error() falls back to it), new ones
# are appended (E2BIG, then EPERM in 4.17).
ERRORS: tuple[str, ...] = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
)

class WireError(ValueError):
    """A malformed message or payload: bad length, missing NUL, bad permission."""


@frozen
class Message:
    """One decoded message.  ``op`` stays an int: unknown types must decode too
    (xenstored answers them with ENOSYS)."""

    op: int
    req_id: int
    tx_id: int
    payload: bytes

    @property
    def op_name(self) -> str:
        try:
            return Op(self.op).name
        except ValueError:
            return f"UNKNOWN({self.op})"


def _u32(name: str, value: int) -> int:
    if not 0 <= value <= U32_MAX:
        raise WireError(f"{name} {value} does not fit in 32 bits")
    return value


def _pack_header(*fields: int) -> bytes:
    return b"".join(f.to_bytes(4, "little") for f in fields)


def encode(op: int, payload: bytes = b"", req_id: int = 0, tx_id: int = 0) -> bytes:
    """Header + payload, ready to write.  Refuses a payload over 4096 bytes (the
    client library says E2BIG without sending; xenstored drops such a client)."""
    if len(payload) > PAYLOAD_MAX_BYTES:
        raise WireError(f"payload of {len(payload)} bytes exceeds {PAYLOAD_MAX_BYTES}")
    return _pack_header(_u32("type", int(op)), _u32("req_id", req_id),
                       _u32("tx_id", tx_id), len(payload)) + payload


def decode_header(data: bytes) -> tuple[int, int, int, int]:
    """(type, req_id, tx_id, len) of exactly 16 bytes; WireError if len > 4096."""
    if len(data) != HEADER_BYTES:
        raise WireError(f"header must be {HEADER_BYTES} bytes, got {len(data)}")
    op, req_id, tx_id, length = (int.from_bytes(data[i:i + 4], "little") for i in (0, 4, 8, 12))
    if length > PAYLOAD_MAX_BYTES:
        raise WireError(f"message length {length} exceeds {PAYLOAD_MAX_BYTES}")
    return op, req_id, tx_id, length


def decode(data: bytes) -> Message:
    """Exactly one whole message."""
    if len(data) < HEADER_BYTES:
        raise WireError(f"short message: {len(data)} bytes")
    op, req_id, tx_id, length = decode_header(data[:HEADER_BYTES])
    if len(data) != HEADER_BYTES + length:
        raise WireError(f"header says {length} payload bytes, got {len(data) - HEADER_BYTES}")
    return Message(op, req_id, tx_id, bytes(data[HEADER_BYTES:]))


class Decoder:
    """Incremental stream decoder: feed it what read() returned, get whole messages.

    Once it has seen a bad length it stays failed (the stream is out of sync,
    as xenstored's handle_input() concludes) and every feed() raises again.
    Memory held is bounded by one header plus one maximal payload.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: WireError | None = None

    @property
    def failed(self) -> bool:
        return self._error is not None

    def feed(self, data: bytes) -> list[Message]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HEADER_BYTES:
            try:
                op, req_id, tx_id, length = decode_header(bytes(self._buf[:HEADER_BYTES]))
            except WireError as exc:
                self._error = exc
                self._buf.clear()
                raise
            end = HEADER_BYTES + length
            if len(self._buf) < end:
                break
            out.append(Message(op, req_id, tx_id, bytes(self._buf[HEADER_BYTES:end])))
            del self._buf[:end]
        return out


# --- payload conventions ---------------------------------------------------

def to_bytes(text: str | bytes) -> bytes:
    """A value as xenstore holds it: str is UTF-8, with surrogate escapes for
    the bytes that are not (as values are decoded)."""
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        raise WireError(f"cannot encode {text[:80]!r} as bytes") from None


def strings(*parts: str | bytes) -> bytes:
    """Each part followed by a NUL: the usual request payload."""
    for part in parts:
        if b"\0" in to_bytes(part):
            raise WireError(f"NUL inside a string argument: {part!r}")
    return b"".join(to_bytes(p) + b"\0" for p in parts)


def split_strings(payload: bytes) -> list[bytes]:
    """A NUL-terminated list ("a\\0b\\0" -> [a, b]; b"" -> []), as DIRECTORY
    replies and GET_PERMS replies are.  Trailing bytes without a NUL are an error."""
    if not payload:
        return []
    if not payload.endswith(b"\0"):
        raise WireError("string list does not end with NUL")
    return payload[:-1].split(b"\0")


def write_payload(path: str | bytes, value: bytes) -> bytes:
    """WRITE: "path\\0value", the value raw and not NUL-terminated."""
    return strings(path) + value


def parse_error(payload: bytes) -> str:
    """Errno name of an XS_ERROR payload; unknown names read as EINVAL, as the
    client library's get_error() does."""
    name = payload.split(b"\0", 1)[0].decode("ascii", "replace")
    return name if name in ERRORS else "EINVAL"
