"""The errors xenstore calls raise, the node limits, and the clients' escaping.

The operations are the ``Xenstore`` protocol in interface.py.

Two backends implement it: ``cli.CliXenstore`` (shells out to the
``xenstore-*`` tools found on PATH, so ``XENSTORED_PATH`` works) and
``native.NativeXenstore`` (speaks the wire protocol itself, wire.py);
choose.py picks one for XENBALLOON_XENSTORE.  Both pass the same contract
suite (tests/test_xenstore_contract.py).

Paths may be relative ("memory/target"): xenstored resolves them against the
caller's domain path (/local/domain/<id>), as the original script relied on.
Values are ``str``; bytes that are not UTF-8 come back as surrogate escapes.
"""
from __future__ import annotations

import re


class XenstoreError(Exception):
    """Any xenstore failure."""


class XenstoreUnavailable(XenstoreError):
    """No tools or socket, xenstored down, or a request timed out."""


class XenstoreNotFound(XenstoreError):
    """ENOENT: the node does not exist."""


class XenstoreWriteFailed(XenstoreError):
    """A write was refused.  The CLI tools cannot say why ("could not write
    path"); the native backend raises one of the two subclasses."""


class XenstoreDenied(XenstoreWriteFailed):
    """EACCES: e.g. a guest writing under its own memory/ under xl."""


class XenstoreTooBig(XenstoreWriteFailed):
    """E2BIG: a guest's node over 2048 bytes, or a message over 4096."""


# xenstored refuses larger nodes from an unprivileged domain (quota-maxsize).
GUEST_NODE_MAX_BYTES = 2048


_UNESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{3}|[tnr\\]|.|$)", re.DOTALL)
_SIMPLE = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """Undo xenstore_client.c:sanitise_value(): \\t \\n \\r \\\\ \\xHH \\ooo."""
    def sub(m: re.Match[str]) -> str:
        tok = m.group(1)
        if tok in _SIMPLE:
            return _SIMPLE[tok]
        if tok.startswith("x") and len(tok) == 3:
            return chr(int(tok[1:], 16))
        if len(tok) == 3 and tok.isdigit():
            return chr(int(tok, 8))
        return tok  # unknown escape: the client keeps the character
    raw = _UNESCAPE_RE.sub(sub, text)
    try:
        # sanitise_value() escapes every byte >= 0x7f, so \xHH are bytes of UTF-8
        return raw.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return raw


def escape(text: str) -> str:
    """Escape a value for xenstore-write, which runs unsanitise_value() on it:
    only the backslash needs doubling; newlines may travel raw in argv."""
    return text.replace("\\", "\\\\")
