"""Stratum V2's shape on the wire: the Noise NX handshake sizes, then encrypted binary frames.

Real SV2 (sv2-spec) opens with a 64-byte ElligatorSwift ephemeral key from the client and 234
bytes from the server (its ephemeral key, its encrypted static key and certificate); after that
every frame is a 6-byte header (extension_type u16, msg_type u8, msg_length u24) encrypted
with a 16-byte MAC, followed by the payload encrypted with its own 16-byte MAC. So on the wire
a frame is 6 + 16 + length + 16 bytes of noise-like bytes.

We do no cryptography: the handshake is random bytes, and frames are the real SV2 message
layouts XORed with a keystream from `random.Random` seeded by both handshake messages, so
both ends can parse each other while the bytes on the wire look as random as ciphertext.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import struct
from typing import Any

from flowdet.errors import LabError
from flowdet.lab.mining.common import EventLog, close_writer, open_stream, rhex, set_keepalive
from flowdet.lab.mining.engine import MinerConfig, PoolContext, Tally, note_tls, run_server
from flowdet.lab.mining.timing import Job, ShareClock, Vardiff, pow2_round

CLIENT_HELLO = 64  # ElligatorSwift-encoded ephemeral public key
SERVER_HELLO = 234  # ephemeral key 64 + encrypted static key 64+16 + encrypted certificate 74+16
MAC = 16
HEADER = 6
DIFF1_TARGET = 0xFFFF << 208

# Message types (sv2-spec, Mining Protocol)
SETUP_CONNECTION = 0x00
SETUP_CONNECTION_SUCCESS = 0x01
OPEN_STANDARD_MINING_CHANNEL = 0x10
OPEN_STANDARD_MINING_CHANNEL_SUCCESS = 0x11
NEW_MINING_JOB = 0x15
SUBMIT_SHARES_STANDARD = 0x1A
SUBMIT_SHARES_SUCCESS = 0x1C
SUBMIT_SHARES_ERROR = 0x1D
SET_NEW_PREV_HASH = 0x20
SET_TARGET = 0x21
CHANNEL_BIT = 0x8000  # extension_type high bit: the message is for a channel

NAMES = {
    SETUP_CONNECTION: "SetupConnection",
    SETUP_CONNECTION_SUCCESS: "SetupConnection.Success",
    OPEN_STANDARD_MINING_CHANNEL: "OpenStandardMiningChannel",
    OPEN_STANDARD_MINING_CHANNEL_SUCCESS: "OpenStandardMiningChannel.Success",
    NEW_MINING_JOB: "NewMiningJob",
    SUBMIT_SHARES_STANDARD: "SubmitSharesStandard",
    SUBMIT_SHARES_SUCCESS: "SubmitShares.Success",
    SUBMIT_SHARES_ERROR: "SubmitShares.Error",
    SET_NEW_PREV_HASH: "SetNewPrevHash",
    SET_TARGET: "SetTarget",
}


def str0_255(text: str) -> bytes:
    raw = text.encode()[:255]
    return bytes([len(raw)]) + raw


def u256(value: int) -> bytes:
    return value.to_bytes(32, "little")


def frame_size(payload_len: int) -> int:
    """Bytes on the wire for one encrypted frame carrying `payload_len` bytes."""
    return HEADER + MAC + payload_len + MAC


class FrameConn:
    """Encrypted-looking SV2 frames in both directions of one connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: EventLog,
        conn_id: int,
        hello_c: bytes,
        hello_s: bytes,
        is_server: bool,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.log = log
        self.conn_id = conn_id
        base = int.from_bytes(hello_c + hello_s, "big")
        c2s, s2c = random.Random(base * 2), random.Random(base * 2 + 1)
        self.tx, self.rx = (s2c, c2s) if is_server else (c2s, s2c)
        self.mac = random.Random(base ^ (1 << 300 if is_server else 1 << 301))
        self.bytes_sent = 0
        self.bytes_received = 0

    @staticmethod
    def _xor(data: bytes, key: bytes) -> bytes:
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(len(data), "big")

    async def send(self, msg_type: int, payload: bytes, channel: bool = False) -> None:
        ext = CHANNEL_BIT if channel else 0
        header = struct.pack("<HB", ext, msg_type) + len(payload).to_bytes(3, "little")
        enc_header = self._xor(header, self.tx.randbytes(HEADER)) + self.mac.randbytes(MAC)
        enc_payload = self._xor(payload, self.tx.randbytes(len(payload))) if payload else b""
        data = enc_header + enc_payload + self.mac.randbytes(MAC)
        self.writer.write(data)
        await self.writer.drain()
        self.bytes_sent += len(data)
        self.log.record(self.conn_id, "tx", NAMES.get(msg_type, f"0x{msg_type:02x}"), len(data))

    async def recv(self) -> tuple[int, bytes] | None:
        try:
            enc_header = await self.reader.readexactly(HEADER + MAC)
        except asyncio.IncompleteReadError:
            return None
        header = self._xor(enc_header[:HEADER], self.rx.randbytes(HEADER))
        _, msg_type = struct.unpack("<HB", header[:3])
        length = int.from_bytes(header[3:], "little")
        body = await self.reader.readexactly(length + MAC)
        payload = self._xor(body[:length], self.rx.randbytes(length)) if length else b""
        size = HEADER + MAC + length + MAC
        self.bytes_received += size
        self.log.record(self.conn_id, "rx", NAMES.get(msg_type, f"0x{msg_type:02x}"), size)
        return msg_type, payload


# ---------------------------------------------------------------- pool


class Sv2Pool:
    def __init__(self, ctx: PoolContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = next(self.ctx.conn_ids)
        rng = random.Random(self.ctx.rng.getrandbits(64))
        q = self.ctx.board.subscribe()
        pusher: asyncio.Task[None] | None = None
        flush_task: asyncio.Task[None] | None = None
        try:
            hello_c = await reader.readexactly(CLIENT_HELLO)
            self.cfg.log.record(conn_id, "rx", "noise.e", CLIENT_HELLO)
            hello_s = rng.randbytes(SERVER_HELLO)
            writer.write(hello_s)
            await writer.drain()
            self.cfg.log.record(conn_id, "tx", "noise.e.ee.s.es", SERVER_HELLO)
            conn = FrameConn(reader, writer, self.cfg.log, conn_id, hello_c, hello_s, True)
            vardiff = Vardiff(
                difficulty=pow2_round(self.cfg.start_difficulty or 16384.0),
                target_interval=self.cfg.target_interval,
                enabled=self.cfg.vardiff,
                retarget_shares=rng.randint(4, 8),
                rounder=pow2_round,
            )
            channel = rng.randint(1, 1 << 16)
            seq_ok = 0
            # Pools may acknowledge several shares in one SubmitShares.Success (sv2-spec):
            # this one acks every `batch` shares, or after `flush` seconds of silence.
            batch = rng.choice((1, 1, 2, 4))
            acks = {"unacked": 0, "sum": 0}

            async def ack() -> None:
                if acks["unacked"]:
                    payload = struct.pack("<IIIQ", channel, seq_ok, acks["unacked"], acks["sum"])
                    acks["unacked"] = acks["sum"] = 0
                    await conn.send(SUBMIT_SHARES_SUCCESS, payload, channel=True)

            async def flusher() -> None:
                while True:
                    await self.cfg.clock.sleep(rng.uniform(5.0, 20.0))
                    await ack()

            flush_task = asyncio.create_task(flusher()) if batch > 1 else None
            while (frame := await conn.recv()) is not None:
                msg_type, _ = frame
                if msg_type == SETUP_CONNECTION:
                    await conn.send(SETUP_CONNECTION_SUCCESS, struct.pack("<HI", 2, 0))
                elif msg_type == OPEN_STANDARD_MINING_CHANNEL:
                    target = int(DIFF1_TARGET / vardiff.difficulty)
                    payload = (
                        struct.pack("<II", rng.getrandbits(32), channel)
                        + u256(target)
                        + bytes([8])
                        + rng.randbytes(8)
                        + struct.pack("<I", 0)
                    )
                    await conn.send(OPEN_STANDARD_MINING_CHANNEL_SUCCESS, payload)
                    vardiff.reset(self.cfg.clock.now())
                    await self.push_job(conn, rng, channel, self.ctx.board.current, first=True)
                    pusher = asyncio.create_task(self.push_loop(conn, rng, channel, q))
                elif msg_type == SUBMIT_SHARES_STANDARD:
                    seq_ok += 1
                    if rng.random() >= self.cfg.reject_rate:
                        acks["unacked"] += 1
                        acks["sum"] += int(vardiff.difficulty)
                        if acks["unacked"] >= batch:
                            await ack()
                    else:
                        payload = struct.pack("<II", channel, seq_ok) + str0_255("stale-share")
                        await conn.send(SUBMIT_SHARES_ERROR, payload, channel=True)
                    if vardiff.on_share(self.cfg.clock.now()) is not None:
                        target = int(DIFF1_TARGET / vardiff.difficulty)
                        payload = struct.pack("<I", channel) + u256(target)
                        await conn.send(SET_TARGET, payload, channel=True)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            for task in (pusher, flush_task):
                if task is not None:
                    task.cancel()
            self.ctx.board.unsubscribe(q)
            await close_writer(writer)

    async def push_job(
        self, conn: FrameConn, rng: random.Random, channel: int, job: Job, first: bool = False
    ) -> None:
        """A new block is a future NewMiningJob then SetNewPrevHash that activates it; a
        transaction update is a NewMiningJob for the current prevhash (min_ntime set)."""
        r = random.Random(job.seed)
        job_id = job.seq & 0xFFFFFFFF
        if job.clean or first:
            future = struct.pack("<II", channel, job_id) + b"\x00"  # min_ntime: None
            await conn.send(
                NEW_MINING_JOB,
                future + struct.pack("<I", 0x20000000) + r.randbytes(32),
                channel=True,
            )
            prev = random.Random(job.block).randbytes(32)
            payload = (
                struct.pack("<II", channel, job_id)
                + prev
                + struct.pack("<II", job.ntime, 0x1703A30C)
            )
            await conn.send(SET_NEW_PREV_HASH, payload, channel=True)
        else:
            head = struct.pack("<II", channel, job_id) + b"\x01" + struct.pack("<I", job.ntime)
            await conn.send(
                NEW_MINING_JOB, head + struct.pack("<I", 0x20000000) + r.randbytes(32), channel=True
            )

    async def push_loop(
        self, conn: FrameConn, rng: random.Random, channel: int, q: asyncio.Queue[Job]
    ) -> None:
        while True:
            job = await q.get()
            await self.push_job(conn, rng, channel, job)


async def serve(ctx: PoolContext, dialect: Any, bind: str, port: int, tls: ssl.SSLContext | None):
    if tls is not None:
        raise LabError("Stratum V2 brings its own encryption (Noise); do not wrap it in TLS")
    await run_server(ctx, Sv2Pool(ctx).handle, bind, port, None)


# ---------------------------------------------------------------- miner


def connector(dialect: Any) -> Any:
    return _session


async def _session(
    cfg: MinerConfig, rng: random.Random, shares: ShareClock, tally: Tally, conn_id: int
) -> None:
    reader, writer = await open_stream(cfg.host, cfg.port, socks=cfg.socks)
    if cfg.tcp_keepalive:
        set_keepalive(writer, cfg.clock.real(cfg.tcp_keepalive))
    note_tls(writer, tally)
    conn: FrameConn | None = None
    try:
        hello_c = rng.randbytes(CLIENT_HELLO)
        writer.write(hello_c)
        await writer.drain()
        cfg.log.record(conn_id, "tx", "noise.e", CLIENT_HELLO)
        hello_s = await reader.readexactly(SERVER_HELLO)
        cfg.log.record(conn_id, "rx", "noise.e.ee.s.es", SERVER_HELLO)
        tally.bytes_sent += CLIENT_HELLO
        tally.bytes_received += SERVER_HELLO
        conn = FrameConn(reader, writer, cfg.log, conn_id, hello_c, hello_s, False)
        vendor, _, firmware = (cfg.agent or "braiins-os/22.08").partition("/")
        setup = (
            struct.pack("<BHHI", 0, 2, 2, 0b1)  # mining protocol, v2..v2, REQUIRES_STANDARD_JOBS
            + str0_255(cfg.name)
            + struct.pack("<H", cfg.port)
            + str0_255(vendor)
            + str0_255(rng.choice(("S19j Pro", "S9", "S19 XP", "M30S++")))
            + str0_255(f"{vendor}-{firmware}")
            + str0_255(rhex(rng, 8))
        )
        await conn.send(SETUP_CONNECTION, setup)
        frame = await conn.recv()
        if frame is None or frame[0] != SETUP_CONNECTION_SUCCESS:
            raise ConnectionError("pool refused SetupConnection")
        hashrate = struct.pack("<f", cfg.hashrate)
        open_ch = struct.pack("<I", 1) + str0_255(cfg.user) + hashrate + u256((1 << 256) - 1)
        await conn.send(OPEN_STANDARD_MINING_CHANNEL, open_ch)
        state: dict[str, Any] = {"channel": 0, "job": None, "seq": 0}
        have_job = asyncio.Event()

        def set_target(target: int) -> None:
            diff = DIFF1_TARGET / max(target, 1)
            if shares.difficulty and diff != shares.difficulty:
                tally.difficulty_changes += 1
            tally.difficulties.append(diff)
            shares.set_difficulty(diff)

        async def read_loop() -> None:
            assert conn is not None
            while (frame := await conn.recv()) is not None:
                msg_type, payload = frame
                if msg_type == OPEN_STANDARD_MINING_CHANNEL_SUCCESS:
                    state["channel"] = struct.unpack_from("<I", payload, 4)[0]
                    set_target(int.from_bytes(payload[8:40], "little"))
                elif msg_type == SET_TARGET:
                    set_target(int.from_bytes(payload[4:36], "little"))
                elif msg_type == NEW_MINING_JOB:
                    state["pending"] = struct.unpack_from("<I", payload, 4)[0]
                    if payload[8] == 1:  # active at once (min_ntime present)
                        state["job"] = state["pending"]
                        tally.jobs += 1
                        have_job.set()
                elif msg_type == SET_NEW_PREV_HASH:
                    state["job"] = struct.unpack_from("<I", payload, 4)[0]
                    tally.jobs += 1
                    tally.clean_jobs += 1
                    have_job.set()
                elif msg_type == SUBMIT_SHARES_SUCCESS:  # may acknowledge several shares
                    tally.accepted += struct.unpack_from("<I", payload, 8)[0]
                elif msg_type == SUBMIT_SHARES_ERROR:
                    tally.rejected += 1

        async def share_loop() -> None:
            assert conn is not None
            await have_job.wait()
            while True:
                await shares.wait_share(cfg.clock)
                tally.shares += 1
                tally.share_times.append(round(cfg.clock.now(), 4))
                state["seq"] += 1
                payload = struct.pack(
                    "<IIIIII",
                    state["channel"],
                    state["seq"],
                    state["job"],
                    rng.getrandbits(32),
                    int(cfg.clock.now()) + 1_700_000_000,
                    0x20000000 | (rng.getrandbits(16) << 13 & 0x1FFFE000),
                )
                await conn.send(SUBMIT_SHARES_STANDARD, payload, channel=True)

        reader_task = asyncio.create_task(read_loop())
        share_task = asyncio.create_task(share_loop())
        try:
            await reader_task
        finally:
            share_task.cancel()
            reader_task.cancel()
            await asyncio.gather(reader_task, share_task, return_exceptions=True)
    finally:
        if conn is not None:
            tally.bytes_sent += conn.bytes_sent
            tally.bytes_received += conn.bytes_received
        await close_writer(writer)
