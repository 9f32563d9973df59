"""The header of an ``xl save`` file: read it, and write it again with more
room for the domain (``xenballoon-balancer restore``).

The layout is xl's (tools/xl/xl.h, xl_saverestore.c): a 48-byte header

    char     magic[32]  "Xen saved domain, xl format\\n \\0 \\r"
    uint32_t byteorder  0x01020304, in the saving host's order
    uint32_t mandatory_flags   XL_MANDATORY_FLAG_JSON (1), _STREAMv2 (2)
    uint32_t optional_flags
    uint32_t optional_data_len

then the optional data: a uint32_t config length and the domain's config,
JSON with a trailing NUL when XL_MANDATORY_FLAG_JSON is set; then libxl's
stream, which is copied untouched.  libxl rebuilds the domain with
``b_info.target_memkb`` + 1 MiB: raising it there is what lets a guest that
held more than its ``memory/target`` come back.

A save file is the administrator's, not a guest's, but a damaged or foreign
one must fail with a message, not a traceback: every field is checked.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Callable

MAGIC = b"Xen saved domain, xl format\n \0 \r"
BYTEORDER = 0x01020304
FLAG_JSON, FLAG_STREAM_V2 = 1, 2
_HEAD = struct.Struct("<32sIIII")
HEADER_BYTES = _HEAD.size  # 48
# xl's own header is its config: a few kB.  More than this is not a save file.
MAX_OPTIONAL_BYTES = 16 << 20


Reader = Callable[[int], bytes]


class SaveFileError(ValueError):
    pass


@dataclass(frozen=True)
class SaveHeader:
    """What precedes libxl's stream; ``size``: how many bytes of the file it takes."""

    mandatory_flags: int
    optional_flags: int
    config: dict[str, Any]
    rest_of_optional: bytes  # optional data after the config (none today)
    size: int

    @property
    def name(self) -> str:
        name = self.config.get("c_info", {}).get("name")
        if not isinstance(name, str) or not name:
            raise SaveFileError("the saved config names no domain (c_info.name)")
        return name

    def memory_kb(self, key: str) -> int:
        """b_info.target_memkb or max_memkb."""
        value = self.config.get("b_info", {}).get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1 << 40:
            raise SaveFileError(f"the saved config has no usable b_info.{key}: {value!r}")
        return value


def read_header(read: Reader) -> SaveHeader:
    """Parse the header from ``read(n)`` (a file's read: fewer bytes at its end)."""
    head = read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or head[:32] != MAGIC:
        raise SaveFileError("not an xl save file (no \"Xen saved domain, xl format\" header)")
    _, order, mandatory, optional, opt_len = _HEAD.unpack(head)
    if order != BYTEORDER:
        raise SaveFileError(f"saved by a host of another byte order (0x{order:08x})")
    if not mandatory & FLAG_JSON:
        raise SaveFileError("the save file holds no JSON config (saved by an old xl)")
    if not 4 <= opt_len <= MAX_OPTIONAL_BYTES:
        raise SaveFileError(f"the save file's optional data is {opt_len} bytes")
    opt = read(opt_len)
    if len(opt) < opt_len:
        raise SaveFileError("the save file ends inside its header")
    (config_len,) = struct.unpack_from("<I", opt)
    if not 1 <= config_len <= opt_len - 4:
        raise SaveFileError(f"the saved config's length ({config_len}) does not fit")
    text = opt[4:4 + config_len].rstrip(b"\0")
    try:
        config = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SaveFileError(f"the saved config is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise SaveFileError("the saved config is not a JSON object")
    return SaveHeader(mandatory, optional, config, opt[4 + config_len:],
                      HEADER_BYTES + opt_len)


def with_target(header: SaveHeader, target_kb: int) -> bytes:
    """The header again, with b_info.target_memkb = target_kb (and
    max_memkb raised to it if below: libxl refuses a target above it)."""
    config = json.loads(json.dumps(header.config))
    b_info = config.setdefault("b_info", {})
    b_info["target_memkb"] = target_kb
    if not isinstance(b_info.get("max_memkb"), int) or b_info["max_memkb"] < target_kb:
        b_info["max_memkb"] = target_kb
    text = json.dumps(config, indent=4).encode("utf-8") + b"\0"
    opt = struct.pack("<I", len(text)) + text + header.rest_of_optional
    return _HEAD.pack(MAGIC, BYTEORDER, header.mandatory_flags, header.optional_flags,
                      len(opt)) + opt
