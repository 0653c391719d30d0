"""The clocks of a mining session: block-like job pushes, vardiff, Poisson share submissions.

These are what flow statistics see through encryption, so they follow how pools behave: a new
block arrives as a Poisson process (clean jobs), transaction updates come on a jittered timer
(not clean), a share is found as a Poisson process of rate hashrate / (difficulty x unit), and
vardiff retunes the difficulty after a few shares so that shares settle near the pool's target
interval.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flowdet.lab.mining.common import Clock, jittered


@dataclass(frozen=True, slots=True)
class ChainTiming:
    """A coin's timing: mean block interval and the pool's job refresh interval (seconds)."""

    block_mean: float
    update_mean: float | None  # None: a new job only on a new block (Ethereum-like chains)


CHAINS: dict[str, ChainTiming] = {
    "bitcoin": ChainTiming(600.0, 30.0),
    "ethereum": ChainTiming(13.0, None),
    "zcash": ChainTiming(75.0, 30.0),
    "monero": ChainTiming(120.0, 60.0),
}


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work pushed by the pool; its fields are rendered by each dialect."""

    seq: int
    height: int
    clean: bool  # a new block: previous jobs are void
    ntime: int  # unix seconds in protocol time
    seed: int  # for the dialect's random fields, so every connection sees the same job
    block: int  # how many blocks since start; jobs with the same block share a prevhash


class JobBoard:
    """The pool-wide job source: every connected miner gets every job."""

    def __init__(self, rng: random.Random, clock: Clock, chain: ChainTiming) -> None:
        self.rng = rng
        self.clock = clock
        self.chain = chain
        self.wall0 = int(time.time())
        self.height = rng.randint(800_000, 900_000)
        self.block = 0
        self.seq = 0
        self.current = self._make(clean=True)
        self._subscribers: set[asyncio.Queue[Job]] = set()

    def _make(self, clean: bool) -> Job:
        self.seq += 1
        if clean:
            self.block += 1
            self.height += 1
        ntime = self.wall0 + int(self.clock.now())
        return Job(self.seq, self.height, clean, ntime, self.rng.getrandbits(63), self.block)

    def subscribe(self) -> asyncio.Queue[Job]:
        q: asyncio.Queue[Job] = asyncio.Queue()
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Job]) -> None:
        self._subscribers.discard(q)

    def next_event(self) -> tuple[float, bool]:
        """Seconds until the next job and whether it is a new block."""
        t_block = self.rng.expovariate(1.0 / self.chain.block_mean)
        if self.chain.update_mean is None:
            return t_block, True
        t_update = jittered(self.rng, self.chain.update_mean, 0.25)
        return (t_block, True) if t_block < t_update else (t_update, False)

    async def run(self) -> None:
        while True:
            delay, clean = self.next_event()
            await self.clock.sleep(delay)
            self.current = self._make(clean)
            for q in list(self._subscribers):
                q.put_nowait(self.current)


@dataclass(slots=True)
class Vardiff:
    """Per-connection variable difficulty: after `retarget_shares` shares (or a long silence)
    the pool moves the difficulty so shares come about every `target_interval` seconds."""

    difficulty: float
    target_interval: float
    enabled: bool = True
    retarget_shares: int = 4
    minimum: float = 1e-9
    rounder: Callable[[float], float] = float
    since: float = 0.0
    count: int = 0

    def reset(self, now: float) -> None:
        self.since, self.count = now, 0

    def _retarget(self, now: float, observed: float) -> float | None:
        ratio = self.target_interval / max(observed, 1e-9)
        self.reset(now)
        if 0.5 < ratio < 2.0:  # within the noise of a few exponential intervals
            return None
        new = self.rounder(max(self.minimum, self.difficulty * min(4.0, max(0.25, ratio))))
        if new == self.difficulty:
            return None
        self.difficulty = new
        return new

    def on_share(self, now: float) -> float | None:
        """Count a share; a new difficulty when it is time to change it."""
        if not self.enabled:
            return None
        self.count += 1
        if self.count < self.retarget_shares:
            return None
        return self._retarget(now, (now - self.since) / self.count)

    def on_idle(self, now: float) -> float | None:
        """No share for several target intervals: the difficulty is too high."""
        if not self.enabled or self.count > 0 or now - self.since < 4 * self.target_interval:
            return None
        return self._retarget(now, 4 * (now - self.since))


def pow2_round(value: float) -> float:
    """Bitcoin pools hand out powers of two (cgminer-era ckpool/slush style)."""
    if value >= 1:
        return float(2 ** round(math.log2(value)))
    return float(f"{value:.3g}")


def int_round(value: float) -> float:
    return float(max(1, round(value)))


@dataclass(slots=True)
class ShareClock:
    """A miner's share finding: Poisson with rate hashrate / (difficulty x unit) per second.

    `unit` is the hashes a difficulty-1 share costs in the dialect (2**32 for Bitcoin-style
    stratum, 1 where the difficulty is already in hashes)."""

    rng: random.Random
    hashrate: float
    unit: float
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    difficulty: float = 0.0

    def rate(self) -> float:
        if self.difficulty <= 0:
            return 0.0
        return self.hashrate / (self.difficulty * self.unit)

    def set_difficulty(self, difficulty: float) -> None:
        if difficulty != self.difficulty:
            self.difficulty = difficulty
            self.changed.set()

    async def wait_share(self, clock: Clock) -> None:
        """Sleep until the next share. A difficulty change re-draws the wait, which the
        memorylessness of the exponential distribution makes exact."""
        while True:
            self.changed.clear()
            rate = self.rate()
            delay = self.rng.expovariate(rate) if rate > 0 else math.inf
            try:
                await asyncio.wait_for(
                    self.changed.wait(), None if math.isinf(delay) else clock.real(delay)
                )
            except TimeoutError:
                return
