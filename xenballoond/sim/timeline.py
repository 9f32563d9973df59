"""What ``xenballoon-sim`` records over a run, sample by sample, for its
summary's ``"timeline"`` (and so for ``--plot``).

One sample per simulation step: the picture of a ramp needs the step's
resolution, not the live table's second.  Columns, not rows: each quantity is
one list, as a plot draws it.  Counters (swap pages, OOM kills) are kept as
the guest's running totals since the run began; where they rise is where
something happened.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True)
class GuestSample:
    """One guest at one step."""

    domid: int
    name: str
    current_kb: int  # the reservation: the guest's size
    target_kb: int  # the balloon driver's target
    committed_kb: int  # Committed_AS
    dom0_target_kb: int | None  # memory/target in xenstore (None: absent or not a number)
    swapped_out_pages: int
    swapped_in_pages: int
    oom_kills: int


@dataclass
class GuestTrack:
    domid: int
    name: str
    current_kb: list[int] = field(default_factory=list)
    target_kb: list[int] = field(default_factory=list)
    committed_kb: list[int] = field(default_factory=list)
    dom0_target_kb: list[int | None] = field(default_factory=list)
    swapped_out_pages: list[int] = field(default_factory=list)
    swapped_in_pages: list[int] = field(default_factory=list)
    oom_kills: list[int] = field(default_factory=list)


@dataclass
class Timeline:
    t_s: list[float] = field(default_factory=list)
    host_free_kb: list[int] = field(default_factory=list)
    guests: list[GuestTrack] = field(default_factory=list)

    def record(self, t_s: float, host_free_kb: int, samples: Sequence[GuestSample]) -> None:
        """Append one step; the guests come in the same order every step."""
        if not self.guests:
            self.guests = [GuestTrack(s.domid, s.name) for s in samples]
        if [g.domid for g in self.guests] != [s.domid for s in samples]:
            raise ValueError("a timeline's guests cannot change during a run")
        self.t_s.append(round(t_s, 3))
        self.host_free_kb.append(host_free_kb)
        for track, s in zip(self.guests, samples):
            track.current_kb.append(s.current_kb)
            track.target_kb.append(s.target_kb)
            track.committed_kb.append(s.committed_kb)
            track.dom0_target_kb.append(s.dom0_target_kb)
            track.swapped_out_pages.append(s.swapped_out_pages)
            track.swapped_in_pages.append(s.swapped_in_pages)
            track.oom_kills.append(s.oom_kills)

    def as_json(self, uncovered_s: dict[int, Sequence[tuple[float, float]]]) -> dict[str, object]:
        """The summary's ``"timeline"``.  ``uncovered_s``: per domid, the spells
        (start, end) in which the balloon target's MemTotal was below
        Committed_AS, the last one ending at the run's end if still open."""
        return {
            "t_s": list(self.t_s),
            "host_free_kb": list(self.host_free_kb),
            "guests": [{
                "domid": g.domid, "name": g.name,
                "current_kb": list(g.current_kb), "target_kb": list(g.target_kb),
                "committed_kb": list(g.committed_kb), "dom0_target_kb": list(g.dom0_target_kb),
                "swapped_out_pages": list(g.swapped_out_pages),
                "swapped_in_pages": list(g.swapped_in_pages),
                "oom_kills": list(g.oom_kills),
                "uncovered_s": [[round(a, 3), round(b, 3)]
                                for a, b in uncovered_s.get(g.domid, ())],
            } for g in self.guests],
        }
