"""A guest's workload as a pure function of time: what its processes have
committed (Committed_AS) and touched (anonymous memory), and how much file I/O
and CPU they do.

A workload is a base load (kernel threads, sshd, the daemon itself) plus jobs
that start, grow their heap over a few seconds, hold it, and exit (at once) or
shrink.  Jobs are drawn from a seeded generator, so a seed and a guest index
give the same workload on every run and every machine.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    """One process's life.  Its commitment ramps linearly from 0 to
    ``committed_kb`` over ``ramp_up_s``, holds, then ramps back to 0 over
    ``ramp_down_s`` (0: the process exits and frees it at once)."""

    start_s: float
    ramp_up_s: float
    hold_s: float
    ramp_down_s: float
    committed_kb: int
    touched_pct: int  # share of the commitment the process actually writes
    io_kb_per_s: int  # file reads while it runs (fills the page cache)
    cpu_pct: int  # one vCPU's busy share while it runs

    @property
    def end_s(self) -> float:
        return self.start_s + self.ramp_up_s + self.hold_s + self.ramp_down_s

    def share(self, t_s: float) -> float:
        """How much of the job's commitment is held at ``t_s``, 0.0 to 1.0."""
        if t_s < self.start_s or t_s >= self.end_s:
            return 0.0
        t = t_s - self.start_s
        if t < self.ramp_up_s:
            return t / self.ramp_up_s
        t -= self.ramp_up_s
        if t < self.hold_s:
            return 1.0
        t -= self.hold_s
        return 1.0 - t / self.ramp_down_s  # ramp_down_s > 0 here, else end_s was hit


@dataclass(frozen=True)
class Workload:
    base_committed_kb: int
    base_anon_kb: int
    base_io_kb_per_s: int
    base_cpu_pct: int
    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class Demand:
    """What the workload asks of the guest's memory at one instant."""

    committed_kb: int
    anon_kb: int
    io_kb_per_s: int
    cpu_pct: int


def demand_at(workload: Workload, t_s: float) -> Demand:
    committed = workload.base_committed_kb
    anon = workload.base_anon_kb
    io = workload.base_io_kb_per_s
    cpu = workload.base_cpu_pct
    for job in workload.jobs:
        share = job.share(t_s)
        if share <= 0.0:
            continue
        job_kb = int(job.committed_kb * share)
        committed += job_kb
        anon += job_kb * job.touched_pct // 100
        io += job.io_kb_per_s
        cpu += job.cpu_pct
    return Demand(committed_kb=committed, anon_kb=anon, io_kb_per_s=io, cpu_pct=min(cpu, 100))


# The shape of generated workloads, as shares of the guest's boot memory.
BASE_COMMITTED_PCT = (16, 26)
JOB_COMMITTED_PCT = (4, 20)
MAX_TOTAL_COMMITTED_PCT = 80  # jobs that would push the sum above this are not started
RAMP_UP_S = (3.0, 10.0)
HOLD_S = (2.0, 12.0)
RAMP_DOWN_S = (1.0, 5.0)
EXIT_AT_ONCE_PCT = 50
GAP_MEAN_S = 4.0


def make_workload(seed: int, guest_index: int, memory_kb: int, duration_s: float) -> Workload:
    """A seeded workload for one guest of ``memory_kb`` boot memory, with jobs
    starting up to ``duration_s`` (the first one within a few seconds)."""
    rng = random.Random(f"xenballoon-sim workload {seed} {guest_index}")
    base_committed_kb = memory_kb * rng.randint(*BASE_COMMITTED_PCT) // 100
    base = Workload(
        base_committed_kb=base_committed_kb,
        base_anon_kb=base_committed_kb * rng.randint(35, 55) // 100,
        base_io_kb_per_s=rng.randint(8, 64),
        base_cpu_pct=rng.randint(1, 4),
        jobs=())
    limit_kb = memory_kb * MAX_TOTAL_COMMITTED_PCT // 100
    jobs: list[Job] = []
    t_s = rng.uniform(0.5, 3.0)
    while t_s < duration_s:
        job = Job(
            start_s=round(t_s, 3),
            ramp_up_s=round(rng.uniform(*RAMP_UP_S), 3),
            hold_s=round(rng.uniform(*HOLD_S), 3),
            ramp_down_s=0.0 if rng.randrange(100) < EXIT_AT_ONCE_PCT
            else round(rng.uniform(*RAMP_DOWN_S), 3),
            committed_kb=memory_kb * rng.randint(*JOB_COMMITTED_PCT) // 100,
            touched_pct=rng.randint(40, 90),
            io_kb_per_s=rng.randint(0, 4096),
            cpu_pct=rng.randint(5, 60))
        if _peak_committed_kb(base, jobs, job) <= limit_kb:
            jobs.append(job)
        t_s += rng.expovariate(1.0 / GAP_MEAN_S)
    return Workload(base.base_committed_kb, base.base_anon_kb, base.base_io_kb_per_s,
                    base.base_cpu_pct, tuple(jobs))


def _peak_committed_kb(base: Workload, jobs: list[Job], new: Job) -> int:
    """The most the base plus every job overlapping ``new`` can commit at once
    (an upper bound: each overlapping job counted at its full size)."""
    return base.base_committed_kb + new.committed_kb + sum(
        j.committed_kb for j in jobs if j.start_s < new.end_s and new.start_s < j.end_s)


WORKLOADS = ("random", "turns", "ramp", "idle")
TURN_S = 15.0


def make_turns_workload(seed: int, guest_index: int, guests: int, memory_kb: int,
                        duration_s: float) -> Workload:
    """Guests take turns being busy: in each TURN_S slot one guest (slot
    number modulo the guest count) runs a job that commits about 90-120% of
    its boot memory, so it needs memory the idle ones must give back; the
    others run only their base load and a small job now and then."""
    rng = random.Random(f"xenballoon-sim turns {seed} {guest_index}")
    base_committed_kb = memory_kb * rng.randint(12, 18) // 100
    jobs: list[Job] = []
    slot = 0
    while slot * TURN_S < duration_s:
        start_s = slot * TURN_S + rng.uniform(0.5, 2.0)
        if slot % max(guests, 1) == guest_index:
            jobs.append(Job(start_s=round(start_s, 3), ramp_up_s=round(rng.uniform(3.0, 5.0), 3),
                            hold_s=round(TURN_S - 8.0, 3), ramp_down_s=round(rng.uniform(1.0, 2.0), 3),
                            committed_kb=memory_kb * rng.randint(90, 120) // 100,
                            touched_pct=rng.randint(60, 85), io_kb_per_s=rng.randint(512, 4096),
                            cpu_pct=rng.randint(40, 90)))
        elif rng.randrange(3) == 0:
            jobs.append(Job(start_s=round(start_s, 3), ramp_up_s=2.0, hold_s=3.0, ramp_down_s=0.0,
                            committed_kb=memory_kb * rng.randint(3, 8) // 100,
                            touched_pct=50, io_kb_per_s=64, cpu_pct=5))
        slot += 1
    return Workload(base_committed_kb, base_committed_kb * rng.randint(35, 55) // 100,
                    rng.randint(8, 64), rng.randint(1, 4), tuple(jobs))


IDLE_COMMITTED_PCT = (3, 12)


def make_idle_workload(seed: int, guest_index: int, memory_kb: int) -> Workload:
    """A guest that runs only its base load (sshd, cron, the daemon): 3-12% of
    its boot memory committed, as the ramp's quiet guest (3%) up to a small
    server's, a trickle of file reads and no jobs.  Where a floor binds: its
    self target (Committed_AS plus the headroom) is below the 2008 floor."""
    rng = random.Random(f"xenballoon-sim idle {seed} {guest_index}")
    base_committed_kb = memory_kb * rng.randint(*IDLE_COMMITTED_PCT) // 100
    return Workload(base_committed_kb=base_committed_kb,
                    base_anon_kb=base_committed_kb * rng.randint(35, 55) // 100,
                    base_io_kb_per_s=rng.randint(8, 64), base_cpu_pct=rng.randint(1, 4), jobs=())


def make_ramp_workload(memory_kb: int, rate_kb_per_s: int, peak_kb: int,
                       start_s: float = 3.0) -> Workload:
    """One program that allocates and touches memory at ``rate_kb_per_s`` from
    ``start_s`` until it holds ``peak_kb``, then holds it: the ramp that starved
    a swapless guest on real Xen (32 MiB every 0.5 s), faster than a 1 s tick can follow."""
    base_committed_kb = memory_kb * 3 // 100  # a quiet guest: ~12 MB of 400
    ramp = Job(start_s=start_s, ramp_up_s=max(peak_kb / max(rate_kb_per_s, 1), 0.001),
               hold_s=1e9, ramp_down_s=0.0, committed_kb=peak_kb, touched_pct=100,
               io_kb_per_s=0, cpu_pct=100)
    return Workload(base_committed_kb=base_committed_kb, base_anon_kb=base_committed_kb // 2,
                    base_io_kb_per_s=16, base_cpu_pct=2, jobs=(ramp,))
