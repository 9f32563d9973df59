"""Reading every guest's published stats from dom0 in a fixed number of passes.

The original spent up to 13 processes per guest (``xenstore-exists`` then
``xenstore-read`` per key, the same key read again for each field).  Here a
refresh is three batched passes whatever the number of guests:

1. list /local/domain                                -> the domids
2. list every guest's memory/, data/ and cpu/        -> which keys exist, the vCPUs
3. read every wanted key                             -> the values

With the CLI each pass is one ``xenstore-list -p``/``xenstore-read -p`` process
with many paths (one transaction).  Those tools stop at the first missing path,
printing what they had, so passes 2 and 3 are optimistic: they take libxl's
directories, and data/xenballoon/<name> where data/xenballoon/ exists, to be
there.  Only when one is not are the paths left settled with one listing and
finished with one more pass: at most seven processes, plus one for each node
deleted between two passes (a guest deleting its own keys costs a process,
never a wrong row).  With the native backend each path is one round trip on one
connection.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Protocol, Sequence

from ..keys import FALLBACK_DIR, PRIMARY_DIR, PUBLISHED
from .stats import MAX_VCPUS, Published
from ..xenstore.cli import CliXenstore, error_for
from ..xenstore.native import NativeXenstore
from ..xenstore import XenstoreError, unescape

DOMAIN_ROOT = "/local/domain"
MAX_DOMID = 0x7FEF  # DOMID_FIRST_RESERVED - 1
# Bytes of arguments per process: well under Linux's ARG_MAX (2 MiB with the
# usual 8 MiB stack), so 1000 guests still take one process per step.
ARGV_BUDGET_BYTES = 512 * 1024

_CANONICAL_ID = re.compile(r"0|[1-9][0-9]{0,4}", re.ASCII)
_FAILED = {
    "xenstore-list": re.compile(r"could not list path (/\S*)\s*$"),
    "xenstore-read": re.compile(r"couldn't read path (/\S*)\s*$"),
}


def parse_domid(name: str) -> Optional[int]:
    """A /local/domain entry as a domid; anything else (never made by a
    toolstack) is None."""
    if not _CANONICAL_ID.fullmatch(name):
        return None
    domid = int(name)
    return domid if domid <= MAX_DOMID else None


class TreeBatch(Protocol):
    @property
    def processes_spawned(self) -> int: ...

    @property
    def requests(self) -> int: ...

    def list_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        """Children of each path that exists (missing paths are left out)."""
        ...

    def read_many(self, paths: Sequence[str]) -> dict[str, str]:
        """Value of each path that exists (missing paths are left out)."""
        ...

    def list_upto(self, paths: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
        """As list_many, but it may stop at the first missing path: the paths
        after it come back untried (the missing one is in neither)."""
        ...

    def read_upto(self, paths: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        """As read_many, but it may stop at the first missing path (see list_upto)."""
        ...


def _chunks(paths: Sequence[str], budget: int) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    used = 0
    for path in paths:
        size = len(path) + 1
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(path)
        used += size
    return [c for c in chunks if c]


class CliBatch:
    """Batched reads through Debian's ``xenstore-list -p`` and ``xenstore-read -p``
    found on ``path_env`` (None: $PATH); ``env`` carries XENSTORED_PATH."""

    def __init__(self, timeout_s: float = 10.0, env: Optional[Mapping[str, str]] = None,
                 path_env: Optional[str] = None,
                 argv_budget_bytes: int = ARGV_BUDGET_BYTES) -> None:
        self.tools = CliXenstore(timeout_s, env, path_env)
        self.argv_budget_bytes = argv_budget_bytes

    @property
    def processes_spawned(self) -> int:
        return self.tools.processes_spawned

    @property
    def requests(self) -> int:
        return self.tools.requests

    def _run(self, tool: str, paths: list[str]) -> tuple[str, Optional[str]]:
        """stdout, and the path the tool stopped at (None: it did them all)."""
        res = self.tools.run_tool(tool, ["-p", *paths], requests=len(paths))
        if res.returncode == 0:
            return res.stdout, None
        lines = res.stderr.strip().splitlines()
        m = _FAILED[tool].search(lines[-1]) if lines else None
        if m is None or m.group(1) not in paths:
            raise error_for(tool, res)
        return res.stdout, m.group(1)

    def _passes(self, tool: str, paths: Sequence[str], optimistic: bool
                ) -> tuple[list[tuple[list[str], str]], list[str]]:
        """Run ``tool`` over ``paths``: (paths done, output) per process, and the
        paths not tried.  A path the tool stopped at (missing) is dropped; the
        rest run again, unless ``optimistic``: then they are returned untried."""
        done: list[tuple[list[str], str]] = []
        chunks = _chunks(list(dict.fromkeys(paths)), self.argv_budget_bytes)
        for n, chunk in enumerate(chunks):
            todo = chunk
            while todo:
                out, stopped = self._run(tool, todo)
                if stopped is None:
                    done.append((todo, out))
                    break
                at = todo.index(stopped)
                done.append((todo[:at], out))
                todo = todo[at + 1:]
                if optimistic:
                    return done, todo + [p for c in chunks[n + 1:] for p in c]
        return done, []

    def _list(self, paths: Sequence[str], optimistic: bool
              ) -> tuple[dict[str, list[str]], list[str]]:
        found: dict[str, list[str]] = {}
        passes, untried = self._passes("xenstore-list", paths, optimistic)
        for ok_paths, out in passes:
            wanted = set(ok_paths)
            for p in ok_paths:
                found[p] = []
            for line in out.split("\n"):
                parent, sep, child = line.rpartition("/")
                if sep and parent in wanted and child:
                    found[parent].append(child)
        return found, untried

    def _read(self, paths: Sequence[str], optimistic: bool
              ) -> tuple[dict[str, str], list[str]]:
        found: dict[str, str] = {}
        passes, untried = self._passes("xenstore-read", paths, optimistic)
        for ok_paths, out in passes:
            wanted = set(ok_paths)
            for line in out.split("\n"):
                # "<path>: <value>"; values are escaped (one line), paths have no ": "
                path, sep, value = line.partition(": ")
                if sep and path in wanted and path not in found:
                    found[path] = _unescape(value)
        return found, untried

    def list_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        return self._list(paths, False)[0]

    def read_many(self, paths: Sequence[str]) -> dict[str, str]:
        return self._read(paths, False)[0]

    def list_upto(self, paths: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
        return self._list(paths, True)

    def read_upto(self, paths: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        return self._read(paths, True)


def _unescape(value: str) -> str:
    """xenstore.unescape, with a fast path for the usual case (a text whose
    only escapes are newlines): ~80,000 escapes a refresh at 1000 guests."""
    if "\\" not in value:
        return value
    if "\\" not in value.replace("\\n", ""):  # every backslash starts a "\n"
        return value.replace("\\n", "\n")
    return unescape(value)



class XenstoreBatch:
    """The same over the native backend: every path of a step pipelined on one
    kept connection (PIPELINE_DEPTH requests in flight), no processes."""

    def __init__(self, xs: NativeXenstore) -> None:
        self.xs = xs

    @property
    def processes_spawned(self) -> int:
        return self.xs.processes_spawned

    @property
    def requests(self) -> int:
        return self.xs.requests

    def list_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        return self.xs.list_existing(paths)

    def read_many(self, paths: Sequence[str]) -> dict[str, str]:
        return self.xs.read_existing(paths)

    def list_upto(self, paths: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
        return self.list_many(paths), []

    def read_upto(self, paths: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        return self.read_many(paths), []


@dataclass(frozen=True)
class Listing:
    """What the listings said about one guest: the children of its memory/
    and cpu/ (None: no such directory), and whether data/xenballoon/ exists."""

    domid: int
    memory: Optional[frozenset[str]] = None
    has_fallback: bool = False
    cpus: Optional[tuple[str, ...]] = None

    @property
    def home(self) -> str:
        return f"{DOMAIN_ROOT}/{self.domid}"

    def stat_paths(self) -> dict[str, str]:
        """name -> the path to read it from: memory/<name> if it exists, else
        data/xenballoon/<name> if that directory exists (not yet known whether
        the name is in it: reading tells)."""
        chosen = {}
        for name in PUBLISHED:
            if self.memory is not None and name in self.memory:
                chosen[name] = f"{self.home}/{PRIMARY_DIR}/{name}"
            elif self.has_fallback:
                chosen[name] = f"{self.home}/{FALLBACK_DIR}/{name}"
        return chosen

    def cpu_paths(self) -> list[str]:
        return [f"{self.home}/cpu/{c}/availability" for c in self.cpus or ()]


def published(listing: Listing, values: Mapping[str, str]) -> Published:
    """The guest's stats from the values read (a key not read counts as not
    published).  vCPUs: the cpu/<n> entries whose availability is "online";
    if none says either way, all the entries."""
    texts = {name: values.get(path) for name, path in listing.stat_paths().items()}
    vcpus = None
    if listing.cpus:
        states = [values.get(p) for p in listing.cpu_paths()]
        known = [s for s in states if s is not None]
        vcpus = sum(1 for s in known if s == "online") if known else len(listing.cpus)
    return Published(listing.domid, vcpus=vcpus, **texts)


def list_domids(batch: TreeBatch) -> list[int]:
    """Every guest domid (not 0), in numerical order."""
    names = batch.list_many([DOMAIN_ROOT]).get(DOMAIN_ROOT)
    if names is None:
        raise XenstoreError(f"{DOMAIN_ROOT} does not exist")
    ids = {parse_domid(n) for n in names}
    return sorted(i for i in ids if i)


SUBDIRS = ("memory", "data", "cpu")


def _domid_of(path: str) -> int:
    return int(path[len(DOMAIN_ROOT) + 1:].split("/", 1)[0])


def list_guests(batch: TreeBatch, domids: Sequence[int]) -> tuple[list[Listing], list[int]]:
    """A Listing per domain that exists, and the domids that do not.

    First the memory/, data/ and cpu/ of every domain in one pass, as if they
    all existed (libxl makes all three).  Only if that stops at a missing one
    are the domains it did not settle listed (which subdirectories they have),
    then their remaining subdirectories: at most three passes."""
    homes = {d: f"{DOMAIN_ROOT}/{d}" for d in domids}
    found, untried = batch.list_upto([f"{homes[d]}/{sub}" for d in domids for sub in SUBDIRS])
    unsettled = {_domid_of(p) for p in untried}
    unsettled |= {d for d in domids if not any(f"{homes[d]}/{sub}" in found for sub in SUBDIRS)}
    gone: set[int] = set()
    if unsettled:
        top = batch.list_many([homes[d] for d in sorted(unsettled)])
        gone = {d for d in unsettled if homes[d] not in top}
        more = [f"{homes[d]}/{sub}" for d in sorted(unsettled - gone) for sub in SUBDIRS
                if sub in top[homes[d]] and f"{homes[d]}/{sub}" not in found]
        if more:
            found.update(batch.list_many(more))

    listings = []
    for d in domids:
        if d in gone:
            continue
        memory, data, cpus = (found.get(f"{homes[d]}/{sub}") for sub in SUBDIRS)
        listings.append(Listing(
            d,
            memory=None if memory is None else frozenset(memory),
            has_fallback=data is not None and "xenballoon" in data,
            cpus=None if cpus is None else
            tuple(c for c in cpus if _CANONICAL_ID.fullmatch(c))[:MAX_VCPUS],
        ))
    return listings, sorted(gone)


def read_values(batch: TreeBatch, listings: Sequence[Listing]) -> dict[str, str]:
    """Every stat and vCPU state in one pass, taking data/xenballoon/ to hold
    all four names where it exists.  If that stops at a missing key, the
    data/xenballoon/ of the keys left are listed and the rest read: at most
    three passes, plus one per key deleted meanwhile."""
    paths = [p for ls in listings for p in (*ls.stat_paths().values(), *ls.cpu_paths())]
    values, untried = batch.read_upto(paths) if paths else ({}, [])
    if untried:
        fallback_dirs = sorted({p.rsplit("/", 1)[0] for p in untried
                                if p.rsplit("/", 1)[0].endswith("/" + FALLBACK_DIR)})
        listed = batch.list_many(fallback_dirs) if fallback_dirs else {}
        rest = []
        for path in untried:
            parent, _, name = path.rpartition("/")
            if parent not in fallback_dirs or name in listed.get(parent, ()):
                rest.append(path)
        if rest:
            values.update(batch.read_many(rest))
    return values


def collect(batch: TreeBatch, domids: Optional[Sequence[int]] = None
            ) -> tuple[list[Published], list[int]]:
    """Every guest's published stats (or only ``domids``'), and the requested
    domids that do not exist."""
    wanted = list_domids(batch) if domids is None else sorted(set(domids))
    listings, gone = list_guests(batch, wanted)
    values = read_values(batch, listings)
    return [published(ls, values) for ls in listings], (gone if domids is not None else [])
