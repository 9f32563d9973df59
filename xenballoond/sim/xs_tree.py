"""xenstored's node tree and its rules, without any I/O (tools/xenstored/core.c).

Nodes are immutable; the tree is a dict from absolute path to node, so a
transaction is a copy of the dict and a commit checks, node by node, that what
the transaction looked at is still the same object.

Rules followed (core.c unless noted):
- canonicalize(): characters [A-Za-z0-9-/_@], no "//", no trailing "/"; a relative
  path is under the caller's /local/domain/<id>; "@..." only where allowed.
- perm_for_conn(): dom0 and the owner (first entry) get everything; otherwise the
  caller's own entry, else the first entry's bits apply to everyone else.
- errno_from_parents(): a missing node reads as ENOENT only if the nearest
  existing ancestor grants the wanted access, else EACCES (no leaking existence).
- construct_node(): a new node inherits its parent's permissions; an unprivileged
  creator becomes the owner.  Creating needs write on the nearest existing ancestor.
- quota: an unprivileged domain may not store more than 2048 bytes in one node:
  E2BIG, as oxenstored (quota.ml maxsize, Debian's default xenstored) answers.
  The C xenstored counts its node header too and answers ENOSPC.
- SET_PERMS needs owner rights; an unprivileged domain may not give a node away (EPERM).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..xenstore.wire import ABS_PATH_MAX, PAYLOAD_MAX_BYTES, REL_PATH_MAX
from .wire_server import PERM_NONE, PERM_OWNER, PERM_READ, PERM_WRITE, Perm

GUEST_NODE_MAX_BYTES = 2048  # oxenstored quota-maxsize
ALL = PERM_READ | PERM_WRITE | PERM_OWNER
_VALID = re.compile(r"[A-Za-z0-9\-/_@]+")
_LOCAL = re.compile(r"/local/domain/([0-9]{1,5})/")


class XsError(Exception):
    """A request refused with a xenstore errno name (EACCES, ENOENT, ...)."""

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        super().__init__(f"{name}: {detail}" if detail else name)


@dataclass(frozen=True)
class Caller:
    """Who is asking: a domain id; dom0 is privileged."""

    domid: int

    @property
    def privileged(self) -> bool:
        return self.domid == 0

    @property
    def home(self) -> str:
        return f"/local/domain/{self.domid}"


DOM0 = Caller(0)


@dataclass(frozen=True)
class Node:
    value: bytes = b""
    perms: tuple[Perm, ...] = (Perm(0, PERM_NONE),)
    children: tuple[str, ...] = ()

    @property
    def owner(self) -> int:
        return self.perms[0].domid


@dataclass(frozen=True)
class Event:
    """A change a watch may see: ``exact`` events only match a watch on that very
    path (the nodes below a removed node)."""

    path: str
    perms: tuple[Perm, ...]
    exact: bool = False
    old_perms: tuple[Perm, ...] | None = None  # SET_PERMS: visible under either

    def visible_to(self, caller: Caller) -> bool:
        if perm_for(caller, self.perms) & PERM_READ:
            return True
        return self.old_perms is not None and bool(perm_for(caller, self.old_perms) & PERM_READ)


def perm_for(caller: Caller, perms: tuple[Perm, ...]) -> int:
    if caller.privileged or perms[0].domid == caller.domid:
        return ALL
    for p in perms[1:]:
        if p.domid == caller.domid:
            return p.bits
    return perms[0].bits


def parent_of(path: str) -> str:
    slash = path.rfind("/")
    return path[:slash] if slash > 0 else "/"


def basename(path: str) -> str:
    return path[path.rfind("/") + 1:]


def child_path(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


def is_below(path: str, top: str) -> bool:
    """``path`` is ``top`` or under it."""
    return path == top or top == "/" or path.startswith(top + "/")


def canonicalize(caller: Caller, raw: bytes | str, allow_special: bool = False) -> str:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            raise XsError("EINVAL", "non-ASCII path") from None
    if not raw or not _VALID.fullmatch(raw) or (raw[0] == "@" and not allow_special):
        raise XsError("EINVAL", f"invalid path {raw[:80]!r}")
    name = raw if raw[0] in "/@" else f"{caller.home}/{raw}"
    m = _LOCAL.match(name)
    local_off = m.end() if m else 0
    if (name.endswith("/") and name != "/") or "//" in name:
        raise XsError("EINVAL", f"invalid path {raw[:80]!r}")
    limit = ABS_PATH_MAX if caller.privileged else REL_PATH_MAX
    if len(name) - local_off > limit:
        raise XsError("EINVAL", "path too long")
    return name


class View:
    """The nodes one request works on (the live tree, or a transaction's copy),
    recording what it looked at and what it changed."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        self.accessed: set[str] = set()
        self.changed: set[str] = set()

    def get(self, path: str) -> Node | None:
        self.accessed.add(path)
        return self.nodes.get(path)

    def put(self, path: str, node: Node) -> None:
        self.changed.add(path)
        self.nodes[path] = node

    def delete(self, path: str) -> None:
        self.changed.add(path)
        self.nodes.pop(path, None)


def _nearest_existing(view: View, path: str) -> tuple[str, Node]:
    while True:
        path = parent_of(path)
        node = view.get(path)
        if node is not None:
            return path, node
        if path == "/":
            raise XsError("EIO", "no root node")


def get_node(view: View, caller: Caller, name: str, need: int) -> Node:
    """The node if the caller has ``need`` on it; else EACCES or ENOENT as
    get_node_chk_perm() + errno_from_parents() decide."""
    node = view.get(name)
    if node is not None:
        if perm_for(caller, node.perms) & need != need:
            raise XsError("EACCES", name)
        return node
    if name.startswith("@"):
        raise XsError("ENOENT", name)
    _, parent = _nearest_existing(view, name)
    if perm_for(caller, parent.perms) & need:
        raise XsError("ENOENT", name)
    raise XsError("EACCES", name)


def _check_size(caller: Caller, value: bytes) -> None:
    if not caller.privileged and len(value) > GUEST_NODE_MAX_BYTES:
        raise XsError("E2BIG", f"{len(value)} bytes > {GUEST_NODE_MAX_BYTES}")


def _create(view: View, caller: Caller, name: str, value: bytes) -> list[Event]:
    """construct_node() + create_node(): make ``name`` and any missing ancestors."""
    missing = [name]
    parent_path = parent_of(name)
    parent = view.get(parent_path)
    while parent is None:
        missing.append(parent_path)
        parent_path = parent_of(parent_path)
        parent = view.get(parent_path)
    events = []
    for path in reversed(missing):
        perms = parent.perms
        if not caller.privileged:
            perms = (Perm(caller.domid, perms[0].bits),) + perms[1:]
        node = Node(value if path == name else b"", perms, ())
        view.put(parent_path, replace(parent, children=parent.children + (basename(path),)))
        view.put(path, node)
        parent_path, parent = path, node
    events.append(Event(name, view.nodes[name].perms))
    return events


def read(view: View, caller: Caller, raw: bytes | str) -> bytes:
    name = canonicalize(caller, raw)
    return get_node(view, caller, name, PERM_READ).value


def directory(view: View, caller: Caller, raw: bytes | str) -> tuple[str, ...]:
    name = canonicalize(caller, raw)
    return get_node(view, caller, name, PERM_READ).children


def write(view: View, caller: Caller, raw: bytes | str, value: bytes) -> list[Event]:
    name = canonicalize(caller, raw)
    try:
        node = get_node(view, caller, name, PERM_WRITE)
    except XsError as exc:
        if exc.name != "ENOENT":
            raise
        _check_size(caller, value)
        return _create(view, caller, name, value)
    _check_size(caller, value)
    view.put(name, replace(node, value=value))
    return [Event(name, node.perms)]


def mkdir(view: View, caller: Caller, raw: bytes | str) -> list[Event]:
    name = canonicalize(caller, raw)
    try:
        get_node(view, caller, name, PERM_WRITE)
    except XsError as exc:
        if exc.name != "ENOENT":
            raise
        return _create(view, caller, name, b"")
    return []


def rm(view: View, caller: Caller, raw: bytes | str) -> list[Event]:
    name = canonicalize(caller, raw)
    try:
        get_node(view, caller, name, PERM_WRITE)
    except XsError as exc:
        # "Didn't exist already?  Fine, if parent exists."
        if exc.name == "ENOENT" and view.get(parent_of(name)) is not None:
            return []
        raise
    if name == "/":
        raise XsError("EINVAL", "cannot remove /")
    events: list[Event] = []

    def remove(path: str, exact: bool) -> None:
        node = view.nodes[path]
        for child in node.children:
            remove(child_path(path, child), True)
        view.delete(path)
        events.append(Event(path, node.perms, exact))

    remove(name, False)
    parent_path = parent_of(name)
    parent = view.get(parent_path)
    if parent is not None:
        kids = tuple(c for c in parent.children if c != basename(name))
        view.put(parent_path, replace(parent, children=kids))
    return events


def get_perms(view: View, caller: Caller, raw: bytes | str) -> tuple[Perm, ...]:
    name = canonicalize(caller, raw, allow_special=True)
    return get_node(view, caller, name, PERM_READ).perms


def set_perms(view: View, caller: Caller, raw: bytes | str,
              perms: tuple[Perm, ...]) -> list[Event]:
    if not perms:
        raise XsError("EINVAL", "no permissions")
    name = canonicalize(caller, raw, allow_special=True)
    node = get_node(view, caller, name, PERM_WRITE | PERM_OWNER)
    if not caller.privileged and perms[0].domid != node.owner:
        raise XsError("EPERM", "unprivileged domains may not change the owner")
    view.put(name, replace(node, perms=tuple(perms)))
    return [Event(name, tuple(perms), old_perms=node.perms)]


def directory_part(children: tuple[str, ...], generation: int, offset: int) -> bytes:
    """send_directory_part(): "gen\\0" then as many NUL-terminated children from
    byte ``offset`` as fit, plus an empty string once the list is complete."""
    blob = b"".join(c.encode("ascii") + b"\0" for c in children)
    gen = str(generation).encode("ascii") + b"\0"
    if offset >= len(blob):
        return gen + b"\0"
    maxlen = PAYLOAD_MAX_BYTES - len(gen) - 1
    out = bytearray()
    pos = offset
    while pos < len(blob):
        end = blob.index(b"\0", pos) + 1
        if len(out) + (end - pos - 1) >= maxlen:
            break
        out += blob[pos:end]
        pos = end
    if pos >= len(blob):
        out += b"\0"
    return gen + bytes(out)


def initial_nodes() -> dict[str, Node]:
    """setup_structure() plus the directories a toolstack makes: all dom0's."""
    n0 = (Perm(0, PERM_NONE),)
    return {
        "/": Node(b"", n0, ("tool", "local", "vm")),
        "/tool": Node(b"", n0, ("xenstored",)),
        "/tool/xenstored": Node(b"", n0, ()),
        "/local": Node(b"", n0, ("domain",)),
        "/local/domain": Node(b"", n0, ()),
        "/vm": Node(b"", n0, ()),
        "@introduceDomain": Node(b"", n0, ()),
        "@releaseDomain": Node(b"", n0, ()),
    }


@dataclass
class Transaction:
    base: dict[str, Node]
    nodes: dict[str, Node]
    accessed: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    failed: bool = False


class Tree:
    """The live nodes, and transactions against them (not thread-safe: the
    server serialises requests, as xenstored does)."""

    def __init__(self) -> None:
        self.nodes = initial_nodes()
        self.generation = 0

    def view(self) -> View:
        return View(self.nodes)

    def begin(self) -> Transaction:
        return Transaction(base=dict(self.nodes), nodes=dict(self.nodes))

    def commit(self, tx: Transaction) -> list[Event]:
        """Apply ``tx`` if nothing it looked at changed meanwhile, else EAGAIN."""
        for path in tx.accessed | tx.changed:
            if self.nodes.get(path) is not tx.base.get(path):
                raise XsError("EAGAIN", f"{path} changed during the transaction")
        if tx.failed:
            raise XsError("EAGAIN", "transaction failed")
        for path in tx.changed:
            node = tx.nodes.get(path)
            if node is None:
                self.nodes.pop(path, None)
            else:
                self.nodes[path] = node
        if tx.changed:
            self.generation += 1
        return tx.events
