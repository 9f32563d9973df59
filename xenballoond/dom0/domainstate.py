"""What the balancer remembers of each domain from one pass to the next, in one
record per domid (qmemman's DomainState), added on first sight and dropped as
a unit (``Domains.prune``) once the domain is gone.  The parameters that judge
these records (staleness, the cooperation window) are not in them: a reload
swaps those and keeps every record."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

from .status import Status


@dataclass(frozen=True)
class Asked:
    """A target dom0 saw set: from what size, and when (the cooperation window)."""

    tgt_kb: int
    cur_at_set_kb: int
    set_at_s: float


class DomainState:
    """One domain, as the balancer's earlier looks left it."""

    __slots__ = ("uptime_cs", "same_looks", "same_since_s", "rise_from", "rise_kb_per_s",
                 "sizes_kb", "reservation_cs", "reserved_kb", "asked", "uncooperative",
                 "status", "reason", "selftarget", "following")

    def __init__(self) -> None:
        # freshness: the published uptime last seen, how many looks in a row it
        # stood still, and since when (None: never looked at)
        self.uptime_cs: Optional[int] = None
        self.same_looks = 0
        self.same_since_s: Optional[float] = None
        # the rise of Committed_AS: the publication it is measured from
        # (uptime_cs, committed_kb), and the rate it gave
        self.rise_from: Optional[tuple[int, int]] = None
        self.rise_kb_per_s = 0
        # the kernel's reservation: the last three sizes, the publication seen
        # with the last, and the measurement kept
        self.sizes_kb: tuple[int, ...] = ()
        self.reservation_cs: Optional[int] = None
        self.reserved_kb: Optional[int] = None
        # cooperation: the target being judged, and why it is marked (None: it is not)
        self.asked: Optional[Asked] = None
        self.uncooperative: Optional[str] = None
        # what the log and the state file last said of it
        self.status: Optional[Status] = None
        self.reason = ""
        # following a self-ballooning guest's selftarget: its last (when, kB),
        # and whether dom0 has written its memory/target yet
        self.selftarget: Optional[tuple[float, int]] = None
        self.following = False


class Domains:
    """The records, by domid."""

    def __init__(self) -> None:
        self._by_domid: dict[int, DomainState] = {}

    def __getitem__(self, domid: int) -> DomainState:
        """The domain's record, a new one on first sight."""
        record = self._by_domid.get(domid)
        if record is None:
            record = self._by_domid[domid] = DomainState()
        return record

    def get(self, domid: int) -> Optional[DomainState]:
        """The domain's record if dom0 has one."""
        return self._by_domid.get(domid)

    def __contains__(self, domid: object) -> bool:
        return domid in self._by_domid

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_domid)

    def prune(self, domids: Iterable[int]) -> None:
        """Drop every record but those of ``domids``, the domains still here."""
        keep = set(domids)
        for domid in [d for d in self._by_domid if d not in keep]:
            del self._by_domid[domid]
