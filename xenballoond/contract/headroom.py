"""The room a guest keeps over Committed_AS, the guest daemon's rule that
dom0's balancer applies too when it works out a guest's need: a percentage of
a size fixed for the guest's life, and what counts as a rise of Committed_AS.
Pure: numbers in, numbers out."""
from __future__ import annotations

# Committed_AS moves by a few pages between two looks on an idle guest.
RISE_TOLERANCE_KB = 1024


def headroom_kb(size_kb: int, reserve_pct: int) -> int:
    """``reserve_pct`` (XENBALLOON_SELF_RESERVE_PCT) of ``size_kb``: the guest
    takes it of the memory it booted with, dom0 of the static-max; both are
    fixed for the guest's life, so the room does not chase its own target."""
    return max(size_kb, 0) * max(reserve_pct, 0) // 100


def risen_kb(prev_committed_kb: int, committed_kb: int) -> int:
    """How much Committed_AS rose between two readings, 0 if by no more than an
    idle guest's wobble (or it fell)."""
    grown_kb = committed_kb - prev_committed_kb
    return grown_kb if grown_kb > RISE_TOLERANCE_KB else 0
