"""The server's half of the xenstore wire code: parsing requests, error
replies and node permissions, which only the simulated xenstored needs.  The
framing and the client's payloads are in xenstore/wire.py."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from ..xenstore.wire import ERRORS, WireError, split_strings, strings


def one_arg(payload: bytes) -> bytes:
    """The single argument of READ/DIRECTORY/MKDIR/RM/...: exactly one NUL, at
    the end (xenstored's onearg())."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise WireError("expected exactly one NUL-terminated argument")
    return payload[:-1]


def split_write(payload: bytes) -> tuple[bytes, bytes]:
    """(path, value) of a WRITE payload; the value may contain anything."""
    nul = payload.find(b"\0")
    if nul < 0:
        raise WireError("WRITE payload has no NUL after the path")
    return payload[:nul], payload[nul + 1:]


def error_payload(name: str) -> bytes:
    if name not in ERRORS:
        raise WireError(f"not a xenstore error name: {name!r}")
    return strings(name)


# --- permissions -----------------------------------------------------------

PERM_NONE, PERM_READ, PERM_WRITE, PERM_OWNER = 0, 1, 2, 4
_PERM_LETTERS = {"n": PERM_NONE, "r": PERM_READ, "w": PERM_WRITE, "b": PERM_READ | PERM_WRITE}
_LETTER_OF = {v: k for k, v in _PERM_LETTERS.items()}
_PERM_RE = re.compile(r"([nrwb])([0-9]{1,5})")
DOMID_MAX = 0xFFFF


@dataclass(frozen=True)
class Perm:
    """One entry of a node's permission list, e.g. "r5": domain 5 may read.
    The first entry names the owner and what everyone else gets."""

    domid: int
    bits: int  # PERM_READ | PERM_WRITE

    def __post_init__(self) -> None:
        if not 0 <= self.domid <= DOMID_MAX:
            raise WireError(f"domid {self.domid} out of range")
        if self.bits not in _LETTER_OF:
            raise WireError(f"bad permission bits {self.bits}")

    def __str__(self) -> str:
        return f"{_LETTER_OF[self.bits]}{self.domid}"


def parse_perm(text: str | bytes) -> Perm:
    """"n0", "r5", "w7", "b3"; anything else is a WireError."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    m = _PERM_RE.fullmatch(text)
    if not m:
        raise WireError(f"bad permission {text!r}")
    return Perm(int(m.group(2)), _PERM_LETTERS[m.group(1)])


def perms_payload(perms: Iterable[Perm]) -> bytes:
    """GET_PERMS reply: each permission NUL-terminated."""
    return strings(*(str(p) for p in perms))


def parse_perms(payload: bytes) -> tuple[Perm, ...]:
    perms = tuple(parse_perm(s) for s in split_strings(payload))
    if not perms:
        raise WireError("empty permission list")
    return perms


def set_perms_payload(path: str | bytes, perms: Iterable[Perm]) -> bytes:
    """SET_PERMS: "path\\0perm\\0perm\\0"."""
    return strings(path) + perms_payload(perms)
