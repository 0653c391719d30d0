"""The pool and miner loops that every dialect shares: connections, jobs, shares, reconnects.

A dialect only says how its messages look (`PoolSession` / `MinerSession` subclasses); the
engine does the rest the same way for all of them, so timing behaviour cannot drift between
dialects: the pool pushes every job from one `JobBoard` and retunes difficulty with `Vardiff`,
the miner submits on a `ShareClock` and reconnects (a new TCP connection, so a new flow) after
an exponentially distributed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import ssl
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flowdet.errors import LabError
from flowdet.lab.emulators import emit
from flowdet.lab.mining.common import (
    Clock,
    EventLog,
    LineConn,
    close_writer,
    open_stream,
    set_keepalive,
    warn,
)
from flowdet.lab.mining.timing import CHAINS, Job, JobBoard, ShareClock, Vardiff


@dataclass(slots=True)
class PoolConfig:
    seed: int
    clock: Clock
    log: EventLog
    start_difficulty: float | None = None  # None: the dialect's usual starting difficulty
    target_interval: float = 15.0  # vardiff aims at a share every this many seconds
    vardiff: bool = True
    reject_rate: float = 0.01  # stale / low-difficulty shares a real pool rejects
    compact: bool = True  # JSON separators without spaces (most pools) or with (Python pools)
    name: str = "pool.example"  # the pool's host name, where a dialect mentions it
    drop_mean: float | None = None  # mean protocol seconds before the pool hangs up on a miner


@dataclass(slots=True)
class Tally:
    """What really crossed, printed as the miner's summary line."""

    connections: int = 0
    jobs: int = 0
    clean_jobs: int = 0
    difficulty_changes: int = 0
    shares: int = 0
    accepted: int = 0
    rejected: int = 0
    keepalives: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    share_times: list[float] = field(default_factory=list)  # protocol seconds since start
    tls_versions: list[str] = field(default_factory=list)
    difficulties: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    session: str | None = None  # the last stratum session id, offered again on reconnect


class PoolContext:
    """State shared by all connections of one pool process."""

    def __init__(self, cfg: PoolConfig, chain: str) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.board = JobBoard(random.Random(cfg.seed ^ 0x5EED), cfg.clock, CHAINS[chain])
        self.conn_ids = itertools.count(1)
        self.sessions: dict[str, str] = {}  # stratum session id -> extranonce1, for resumes


class PoolSession(ABC):
    """One miner's connection as the pool sees it, for a newline-delimited JSON dialect."""

    chain: ClassVar[str]
    unit: ClassVar[float]  # hashes per difficulty-1 share
    default_difficulty: ClassVar[float]
    rounder: ClassVar[Callable[[float], float]] = staticmethod(float)

    def __init__(self, ctx: PoolContext, conn: LineConn) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.conn = conn
        self.rng = random.Random(ctx.rng.getrandbits(64))
        start = self.cfg.start_difficulty or self.default_difficulty
        self.vardiff = Vardiff(
            difficulty=self.rounder(start),
            target_interval=self.cfg.target_interval,
            enabled=self.cfg.vardiff,
            retarget_shares=self.rng.randint(4, 8),
            rounder=self.rounder,
        )
        self.active = False  # jobs flow once the miner has authorized / logged in
        self.queue = ctx.board.subscribe()

    async def serve(self) -> None:
        pusher = asyncio.create_task(self._push_loop())
        try:
            if self.cfg.drop_mean:
                # Pools restart and rebalance: then the pool, not the miner, closes first.
                delay = self.cfg.clock.real(self.rng.expovariate(1.0 / self.cfg.drop_mean))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._read_loop(), delay)
            else:
                await self._read_loop()
        finally:
            pusher.cancel()
            self.ctx.board.unsubscribe(self.queue)

    async def _read_loop(self) -> None:
        while (msg := await self.conn.recv()) is not None:
            await self.handle(msg)

    async def _push_loop(self) -> None:
        while True:
            try:
                job = await asyncio.wait_for(
                    self.queue.get(), self.cfg.clock.real(self.cfg.target_interval)
                )
            except TimeoutError:
                job = None
            if not self.active:
                continue
            new = self.vardiff.on_idle(self.cfg.clock.now())
            if new is not None:
                await self.push_difficulty(job)
            elif job is not None:
                await self.push_job(job)

    def start(self) -> None:
        """The miner is in: vardiff counts from now."""
        self.active = True
        self.vardiff.reset(self.cfg.clock.now())

    def accept_share(self) -> bool:
        return self.rng.random() >= self.cfg.reject_rate

    async def after_share(self) -> None:
        if self.vardiff.on_share(self.cfg.clock.now()) is not None:
            await self.push_difficulty(None)

    @abstractmethod
    async def handle(self, msg: dict[str, Any]) -> None: ...

    @abstractmethod
    async def push_job(self, job: Job) -> None: ...

    @abstractmethod
    async def push_difficulty(self, job: Job | None) -> None:
        """Send the new difficulty (and `job`, if one is due, in the same write)."""


async def serve_pool(
    ctx: PoolContext,
    session_cls: type[PoolSession],
    bind: str,
    port: int,
    tls: ssl.SSLContext | None,
) -> None:
    """Accept miners forever; one `session_cls` per connection."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = LineConn(reader, writer, ctx.cfg.log, next(ctx.conn_ids), ctx.cfg.compact)
        try:
            await session_cls(ctx, conn).serve()
        except (OSError, ssl.SSLError, LabError, asyncio.IncompleteReadError) as exc:
            warn(f"pool: connection {conn.conn_id} ended: {exc!r}")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            # A peer that is not a miner of this dialect: drop it, as a pool would.
            warn(f"pool: connection {conn.conn_id} dropped, unexpected message: {exc!r}")
        finally:
            await close_writer(writer)

    await run_server(ctx, on_connect, bind, port, tls)


async def run_server(
    ctx: PoolContext,
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    bind: str,
    port: int,
    tls: ssl.SSLContext | None,
) -> None:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A handler cancelled at shutdown must end normally: asyncio 3.11's stream callback
        # calls task.exception() on it and would print a spurious CancelledError traceback.
        with contextlib.suppress(asyncio.CancelledError):
            await on_connect(reader, writer)

    server = await asyncio.start_server(guarded, bind, port, ssl=tls, reuse_address=True)
    sock = server.sockets[0].getsockname()
    emit({"listening": [sock[0], sock[1]], "tls": tls is not None})
    board = asyncio.create_task(ctx.board.run())
    try:
        async with server:
            await server.serve_forever()
    finally:
        board.cancel()


# ---------------------------------------------------------------- miner side


@dataclass(slots=True)
class MinerConfig:
    host: str
    port: int
    seed: int
    clock: Clock
    log: EventLog
    hashrate: float  # hashes (or solutions) per second
    user: str = "wallet.rig1"
    password: str = "x"
    agent: str = ""
    compact: bool = False  # cgminer and friends write {"id": 1, "method": ...} with spaces
    duration: float = 300.0  # protocol seconds of mining in all
    reconnect_mean: float | None = None  # mean protocol seconds between reconnects
    reconnect_delay: float = 5.0  # protocol seconds a miner waits before reconnecting
    keepalive: float | None = None  # protocol seconds of idleness before a keepalive
    tcp_keepalive: float | None = None  # TCP keepalive idle, protocol seconds
    tls: ssl.SSLContext | None = None
    sni: str | None = None
    pool_name: str | None = None  # the DNS name the miner was configured with (never resolved)
    socks: tuple[str, int] | None = None
    variant: str = ""  # a dialect's sub-style (agent family, getwork vs getblocktemplate)

    @property
    def name(self) -> str:
        """How the miner names its pool in Host headers and subscribe parameters."""
        return self.pool_name or self.sni or self.host


class MinerSession(ABC):
    """One connection's worth of mining for a newline-delimited JSON dialect."""

    unit: ClassVar[float]

    def __init__(
        self, cfg: MinerConfig, conn: LineConn, rng: random.Random, shares: ShareClock, tally: Tally
    ) -> None:
        self.cfg = cfg
        self.conn = conn
        self.rng = rng
        self.shares = shares
        self.tally = tally
        self.ids = itertools.count(1)
        self.pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.job: Any = None
        self.have_job = asyncio.Event()
        self.last_sent = cfg.clock.now()
        # ids of shares awaiting the pool's verdict (a count: nheqminer reuses one id)
        self.submitted: Counter[Any] = Counter()

    def next_id(self) -> int:
        return next(self.ids)

    async def send(self, msg: dict[str, Any], kind: str | None = None) -> None:
        await self.conn.send(msg, kind)
        self.last_sent = self.cfg.clock.now()

    async def request(self, msg: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg["id"]] = fut
        await self.send(msg, kind)
        return await asyncio.wait_for(fut, 30.0)

    async def read_loop(self) -> None:
        while (msg := await self.conn.recv()) is not None:
            if msg.get("method") is None and self.submitted[msg.get("id")] > 0:
                self.submitted[msg.get("id")] -= 1
                self.count_result(msg)
                continue
            fut = self.pending.pop(msg.get("id"), None) if msg.get("method") is None else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
            else:
                await self.on_push(msg)

    def new_job(self, job: Any, clean: bool) -> None:
        self.job = job
        self.tally.jobs += 1
        self.tally.clean_jobs += int(clean)
        self.have_job.set()

    def new_difficulty(self, difficulty: float) -> None:
        if self.shares.difficulty and difficulty != self.shares.difficulty:
            self.tally.difficulty_changes += 1
        self.tally.difficulties.append(difficulty)
        self.shares.set_difficulty(difficulty)

    def count_result(self, response: dict[str, Any]) -> None:
        ok = response.get("error") in (None, False) and response.get("result") not in (None, False)
        self.tally.accepted += int(ok)
        self.tally.rejected += int(not ok)

    async def send_share(self, msg: dict[str, Any], kind: str | None = None) -> None:
        self.submitted[msg["id"]] += 1
        await self.send(msg, kind)

    async def share_loop(self) -> None:
        await self.have_job.wait()
        while True:
            await self.shares.wait_share(self.cfg.clock)
            self.tally.shares += 1
            self.tally.share_times.append(round(self.cfg.clock.now(), 4))
            await self.submit()

    async def keepalive_loop(self) -> None:
        """Dialects with an application keepalive send it after `keepalive` idle seconds."""
        if self.cfg.keepalive is None:
            return
        while True:
            idle = self.cfg.clock.now() - self.last_sent
            if idle >= self.cfg.keepalive:
                await self.keepalive()
                self.tally.keepalives += 1
                continue
            await self.cfg.clock.sleep(self.cfg.keepalive - idle)

    async def run(self) -> None:
        reader = asyncio.create_task(self.read_loop())
        tasks: list[asyncio.Task[None]] = []
        try:
            handshake = asyncio.create_task(self.handshake())
            done, _ = await asyncio.wait({reader, handshake}, return_when="FIRST_COMPLETED")
            if handshake not in done:
                handshake.cancel()
                return
            handshake.result()
            tasks = [
                asyncio.create_task(self.share_loop()),
                asyncio.create_task(self.keepalive_loop()),
            ]
            await reader  # the session lasts until the pool hangs up or the caller cancels
        finally:
            for t in [reader, *tasks]:
                t.cancel()
            for t in [reader, *tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def keepalive(self) -> None:
        raise NotImplementedError

    @abstractmethod
    async def handshake(self) -> None: ...

    @abstractmethod
    async def on_push(self, msg: dict[str, Any]) -> None: ...

    @abstractmethod
    async def submit(self) -> None: ...


async def run_miner(
    cfg: MinerConfig,
    connect_once: Callable[[MinerConfig, random.Random, ShareClock, Tally, int], Any],
    unit: float,
) -> Tally:
    """Mine for `cfg.duration` protocol seconds over one or more connections."""
    rng = random.Random(cfg.seed)
    tally = Tally()
    shares = ShareClock(random.Random(rng.getrandbits(64)), cfg.hashrate, unit)
    end = cfg.duration
    while cfg.clock.now() < end:
        lifetime = rng.expovariate(1.0 / cfg.reconnect_mean) if cfg.reconnect_mean else end
        tally.connections += 1
        shares.difficulty = 0.0
        task = asyncio.create_task(connect_once(cfg, rng, shares, tally, tally.connections))
        try:
            await _supervise(task, cfg, tally, end, lifetime)
        except (
            OSError,
            ssl.SSLError,
            asyncio.IncompleteReadError,
            LabError,
            KeyError,
            IndexError,
            TypeError,
            ValueError,
        ) as exc:
            # A dropped, refused or garbled connection: count it, wait, reconnect, as miners do.
            tally.errors.append(repr(exc)[:200])
            if tally.connections > 50:
                raise LabError(f"miner: giving up after {tally.connections} connections") from exc
        if cfg.clock.now() < end:
            await cfg.clock.sleep(min(end - cfg.clock.now(), cfg.reconnect_delay))
    return tally


async def _supervise(
    task: asyncio.Task[Any], cfg: MinerConfig, tally: Tally, end: float, lifetime: float
) -> None:
    """Let one connection run until the session's end or its own lifetime is up, then close
    it. The lifetime counts from the first job: a slow login is not a reconnect."""
    try:
        jobs = tally.jobs
        while not task.done() and tally.jobs == jobs and cfg.clock.now() < end:
            await asyncio.sleep(0.01)
        budget = min(end - cfg.clock.now(), lifetime)
        await asyncio.wait({task}, timeout=cfg.clock.real(budget))
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled():
            task.result()  # the connection's own error, if it had one
    finally:
        if not task.done():
            task.cancel()


def json_connector(
    session_cls: type[MinerSession],
) -> Callable[[MinerConfig, random.Random, ShareClock, Tally, int], Any]:
    """Connect, run one `session_cls`, close: the connect_once for JSON-line dialects."""

    async def connect_once(
        cfg: MinerConfig, rng: random.Random, shares: ShareClock, tally: Tally, conn_id: int
    ) -> None:
        reader, writer = await open_stream(
            cfg.host, cfg.port, tls=cfg.tls, sni=cfg.sni, socks=cfg.socks
        )
        if cfg.tcp_keepalive:
            set_keepalive(writer, cfg.clock.real(cfg.tcp_keepalive))
        note_tls(writer, tally)
        conn = LineConn(reader, writer, cfg.log, conn_id, cfg.compact)
        try:
            await session_cls(cfg, conn, rng, shares, tally).run()
        finally:
            tally.bytes_sent += conn.bytes_sent
            tally.bytes_received += conn.bytes_received
            await close_writer(writer)

    return connect_once


def note_tls(writer: asyncio.StreamWriter, tally: Tally) -> None:
    obj = writer.get_extra_info("ssl_object")
    if obj is not None:
        tally.tls_versions.append(str(obj.version()))
