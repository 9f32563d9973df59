"""Reading every guest's published stats from dom0 in a fixed number of passes.

The original spent up to 13 processes per guest (``xenstore-exists`` then
``xenstore-read`` per key, the same key read again for each field).  Here a
refresh is three batched passes whatever the number of guests:

1. list /local/domain                                -> the domids
2. list every guest's memory/, data/ and cpu/        -> which keys exist, the vCPUs
3. read every wanted key                             -> the values

Each pass is one batch read of the Xenstore backend.  With the CLI each is one
``xenstore-list -p``/``xenstore-read -p`` process with many paths (one
transaction).  Those tools stop at the first missing path, printing what they
had, so passes 2 and 3 are optimistic (list_upto, read_upto): they take libxl's
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
from typing import Mapping, Optional, Sequence

from ..contract.keys import DOMAIN_ROOT, FALLBACK_DIR, PRIMARY_DIR, PUBLISHED, domain_path
from .stats import MAX_VCPUS, Published
from ..xenstore import XenstoreError
from ..xenstore.interface import Xenstore

MAX_DOMID = 0x7FEF  # DOMID_FIRST_RESERVED - 1

_CANONICAL_ID = re.compile(r"0|[1-9][0-9]{0,4}", re.ASCII)


def parse_domid(name: str) -> Optional[int]:
    """A /local/domain entry as a domid; anything else (never made by a
    toolstack) is None."""
    if not _CANONICAL_ID.fullmatch(name):
        return None
    domid = int(name)
    return domid if domid <= MAX_DOMID else None


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
        return domain_path(self.domid)

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


def list_domids(xs: Xenstore) -> list[int]:
    """Every guest domid (not 0), in numerical order."""
    names = xs.list_existing([DOMAIN_ROOT]).get(DOMAIN_ROOT)
    if names is None:
        raise XenstoreError(f"{DOMAIN_ROOT} does not exist")
    ids = {parse_domid(n) for n in names}
    return sorted(i for i in ids if i)


SUBDIRS = (PRIMARY_DIR, "data", "cpu")


def _domid_of(path: str) -> int:
    return int(path[len(DOMAIN_ROOT) + 1:].split("/", 1)[0])


def list_guests(xs: Xenstore, domids: Sequence[int]) -> tuple[list[Listing], list[int]]:
    """A Listing per domain that exists, and the domids that do not.

    First the memory/, data/ and cpu/ of every domain in one pass, as if they
    all existed (libxl makes all three).  Only if that stops at a missing one
    are the domains it did not settle listed (which subdirectories they have),
    then their remaining subdirectories: at most three passes."""
    homes = {d: domain_path(d) for d in domids}
    found, untried = xs.list_upto([f"{homes[d]}/{sub}" for d in domids for sub in SUBDIRS])
    unsettled = {_domid_of(p) for p in untried}
    unsettled |= {d for d in domids if not any(f"{homes[d]}/{sub}" in found for sub in SUBDIRS)}
    gone: set[int] = set()
    if unsettled:
        top = xs.list_existing([homes[d] for d in sorted(unsettled)])
        gone = {d for d in unsettled if homes[d] not in top}
        more = [f"{homes[d]}/{sub}" for d in sorted(unsettled - gone) for sub in SUBDIRS
                if sub in top[homes[d]] and f"{homes[d]}/{sub}" not in found]
        if more:
            found.update(xs.list_existing(more))

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


def read_values(xs: Xenstore, listings: Sequence[Listing]) -> dict[str, str]:
    """Every stat and vCPU state in one pass, taking data/xenballoon/ to hold
    all four names where it exists.  If that stops at a missing key, the
    data/xenballoon/ of the keys left are listed and the rest read: at most
    three passes, plus one per key deleted meanwhile."""
    paths = [p for ls in listings for p in (*ls.stat_paths().values(), *ls.cpu_paths())]
    values, untried = xs.read_upto(paths) if paths else ({}, [])
    if untried:
        fallback_dirs = sorted({p.rsplit("/", 1)[0] for p in untried
                                if p.rsplit("/", 1)[0].endswith("/" + FALLBACK_DIR)})
        listed = xs.list_existing(fallback_dirs) if fallback_dirs else {}
        rest = []
        for path in untried:
            parent, _, name = path.rpartition("/")
            if parent not in fallback_dirs or name in listed.get(parent, ()):
                rest.append(path)
        if rest:
            values.update(xs.read_existing(rest))
    return values


def collect(xs: Xenstore, domids: Optional[Sequence[int]] = None
            ) -> tuple[list[Published], list[int]]:
    """Every guest's published stats (or only ``domids``'), and the requested
    domids that do not exist."""
    wanted = list_domids(xs) if domids is None else sorted(set(domids))
    listings, gone = list_guests(xs, wanted)
    values = read_values(xs, listings)
    return [published(ls, values) for ls in listings], (gone if domids is not None else [])
