"""Publish on change: what dom0 was last sent, and what to send it now."""
from __future__ import annotations

import os

from ..contract.keys import PUBLISHED
from .policy import KIB
from .publish import build_outputs, stats_due, watched_numbers, watched_vmstat
from ..record import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Callable

    from .settings import Config
    from .policy import Decision
    from .sensor import Sensed, Sensor


@frozen
class Parcel:
    """What to write under ``directory`` (``outputs``: key -> text; may be
    empty), why the stats went (None: only selftarget changed, or nothing),
    and what it leaves dom0 knowing once written."""

    directory: str
    outputs: dict[str, str]
    why: str | None
    selftarget_kb: int | None  # the selftarget sent, None if not
    mode: str | None  # the mode sent, None if not
    numbers: dict[str, int]
    at_s: float


class Outbox:
    """selftarget and mode are sent when they changed; meminfo, vmstat and
    uptime when a number dom0 reads from them moved (publish.stats_due), or
    every XENBALLOON_PUBLISH_MAX_S, and all again under a new directory."""

    def __init__(self, config: Config, sensor: Sensor, clock: Callable[[], float]) -> None:
        self.config = config
        self._sensor = sensor
        self._clock = clock
        self._page_kb = max(os.sysconf("SC_PAGE_SIZE") // KIB, 1)
        self._stats_numbers: dict[str, int] | None = None
        self._stats_at_s: float | None = None
        self._stats_dir: str | None = None
        self._selftarget_kb: int | None = None
        self._mode: str | None = None

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self._stats_at_s = None  # what is sent may have changed: everything again

    @property
    def mode_sent(self) -> str | None:
        """The mode dom0 was last sent (None: none yet)."""
        return self._mode

    def keys_sent(self) -> frozenset[str]:
        """Which of the keys in keys.PUBLISHED this config sends."""
        cfg = self.config
        sent = {"selftarget": True, "meminfo": cfg.send_meminfo, "vmstat": cfg.send_vmstat,
                "uptime": cfg.send_uptime, "mode": True}
        return frozenset(k for k in PUBLISHED if sent[k])

    def compose(self, directory: str, decision: Decision, sensed: Sensed,
                mode: str) -> Parcel:
        """What dom0 does not have yet (reads vmstat, and uptime when due).
        ``mode``: keys.MODE_SELF or keys.MODE_DIRECTED, the mode in force."""
        cfg, files = self.config, self._sensor.files
        now_s = self._clock()
        vmstat_text = self._sensor.optional_text(cfg.send_vmstat, files.vmstat)
        numbers = watched_numbers(
            sensed.meminfo_fields if cfg.send_meminfo else None,
            None if vmstat_text is None else watched_vmstat(vmstat_text), self._page_kb)
        new_dir = directory != self._stats_dir
        why = stats_due(None if new_dir else self._stats_numbers, self._stats_at_s, numbers,
                        now_s, cfg.publish_threshold_mb * 1024, cfg.publish_max_s)
        tgt_kb = None if decision.tgt_bytes is None else decision.tgt_bytes // KIB
        send_tgt = tgt_kb is not None and (why is not None or tgt_kb != self._selftarget_kb)
        send_mode = why is not None or mode != self._mode
        outputs = build_outputs(
            selftarget_kb=tgt_kb if send_tgt else None, mode=mode if send_mode else None,
            meminfo_text=sensed.meminfo_text if why and cfg.send_meminfo else None,
            vmstat_text=vmstat_text if why else None,
            uptime_text=self._sensor.optional_text(cfg.send_uptime, files.uptime)
            if why else None)
        return Parcel(directory, outputs, why, tgt_kb if send_tgt else None,
                      mode if send_mode else None, numbers, now_s)

    def sent(self, parcel: Parcel) -> None:
        """The parcel was written (or was empty): dom0 has it."""
        if parcel.selftarget_kb is not None:
            self._selftarget_kb = parcel.selftarget_kb
        if parcel.mode is not None:
            self._mode = parcel.mode
        if parcel.why is not None:
            self._stats_numbers, self._stats_at_s = parcel.numbers, parcel.at_s
            self._stats_dir = parcel.directory
