"""Newline-delimited JSON over TCP: a log shipper and a market-data subscription feed.

Stratum v1 is newline-delimited JSON-RPC over a long-lived TCP connection; so are plenty of
innocent services. Two of them live here:

- `ship`   a log shipper (fluent-bit `tcp` input style, port 5170): the initiator pushes a
           batch of JSON log records every few seconds, the responder acks each batch;
- `ticker` a price feed in JSON-RPC 1.0 shape (port 9000): `subscribe` with an id, then
           server notifications with `"id": null` every few seconds and client `ping`s. This
           is deliberately as close to `mining.subscribe`/`mining.notify` as an innocent
           protocol gets, minus everything that is mining (no jobs, targets, nonces, shares).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from flowdet.lab.benign.common import (
    Tally,
    client_parser,
    dispatch,
    emit,
    hang_up,
    jittered,
    open_tcp,
    paced,
    peer_task,
    run_async,
    serve_tcp,
    server_parser,
    server_tls,
)

SERVICES = ("api", "worker", "auth", "billing", "frontend")
LEVELS = ("debug", "info", "info", "info", "warn", "error")
MESSAGES = (
    "request served", "cache miss", "retrying upstream", "job done", "slow query",
    "user login", "token refreshed",
)  # fmt: skip
SYMBOLS = ("BTC-USD", "ETH-USD", "EUR-USD", "GBP-USD", "XAU-USD", "SPX", "NDX")


def _line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class Server:
    def __init__(self, interval: float, jitter: float, seed: int) -> None:
        self.interval, self.jitter, self.rng = interval, jitter, random.Random(seed)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rng = random.Random(self.rng.random())
        feeds: list[asyncio.Task[None]] = []
        try:
            while line := await reader.readline():
                try:
                    msg = json.loads(line)
                except ValueError:
                    writer.write(_line({"id": None, "result": None, "error": [-32700, "parse"]}))
                    continue
                if "batch" in msg:  # log shipper: ack the batch sequence number
                    writer.write(_line({"ack": msg["batch"], "accepted": len(msg["records"])}))
                elif msg.get("method") == "subscribe":
                    symbols = [s for s in msg.get("params", []) if s in SYMBOLS] or ["BTC-USD"]
                    writer.write(_line({"id": msg.get("id"), "result": True, "error": None}))
                    feeds.append(peer_task(self._feed(writer, rng, symbols)))
                elif msg.get("method") == "ping":
                    writer.write(_line({"id": msg.get("id"), "result": "pong", "error": None}))
                else:
                    writer.write(
                        _line(
                            {"id": msg.get("id"), "result": None, "error": [-3, "unknown method"]}
                        )
                    )
                await writer.drain()
        finally:
            for t in feeds:
                t.cancel()

    async def _feed(
        self, writer: asyncio.StreamWriter, rng: random.Random, syms: list[str]
    ) -> None:
        prices = {s: rng.uniform(10, 50_000) for s in syms}
        seq = 0
        while True:
            await asyncio.sleep(jittered(rng, self.interval, self.jitter))
            seq += 1
            sym = rng.choice(syms)
            prices[sym] *= 1 + rng.gauss(0, 0.0008)
            params = [sym, round(prices[sym], 4), round(rng.uniform(0.01, 50), 4),
                      int(time.time() * 1000), seq]  # fmt: skip
            writer.write(_line({"id": None, "method": "ticker.update", "params": params}))
            await writer.drain()


def serve(argv: Sequence[str]) -> int:
    p = server_parser("newline-JSON server: log intake and ticker feed", 9000)
    p.add_argument("--interval", type=float, default=3.0, help="mean seconds between updates")
    p.add_argument("--jitter", type=float, default=0.5)
    args = p.parse_args(argv)
    tls = server_tls(args)
    srv = Server(args.interval, args.jitter, args.seed)
    return run_async(lambda: serve_tcp(srv.handle, args.bind, args.port, tls, "linejson"))


def _log_record(rng: random.Random, host: str) -> dict[str, Any]:
    level = rng.choice(LEVELS)
    return {
        "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        + f".{rng.randint(0, 999):03d}Z",
        "host": host,
        "service": rng.choice(SERVICES),
        "level": level,
        "msg": rng.choice(MESSAGES),
        "latency_ms": round(rng.lognormvariate(3, 1), 1),
        "status": rng.choice((200, 200, 200, 201, 204, 304, 404, 500)),
        "trace_id": rng.randbytes(8).hex(),
    }


async def run_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    tally = Tally()
    t0 = time.monotonic()
    reader, writer = await open_tcp(args, tally)
    tally.extra["mode"] = args.mode
    kinds: dict[str, int] = {}
    answered = asyncio.Event()  # every request has its ack/result: safe to hang up

    async def receive() -> None:
        while line := await reader.readline():
            tally.bytes_received += len(line)
            tally.received += 1
            msg = json.loads(line)
            kind = "ack" if "ack" in msg else str(msg.get("method") or "result")
            kinds[kind] = kinds.get(kind, 0) + 1
            if kinds.get("ack", 0) + kinds.get("result", 0) >= tally.sent:
                answered.set()

    async def send(obj: Any) -> None:
        data = _line(obj)
        writer.write(data)
        await writer.drain()
        tally.record_send(t0, len(data))

    receiver = asyncio.create_task(receive())
    deadline = t0 + args.duration
    if args.mode == "ticker":
        await send(
            {"id": 1, "method": "subscribe", "params": rng.sample(SYMBOLS, rng.randint(1, 3))}
        )
    seq = rid = 1
    async for _ in paced(
        deadline, lambda: jittered(rng, args.interval, args.jitter), receiver.done
    ):
        if args.mode == "ship":
            records = [_log_record(rng, "sandbox") for _ in range(rng.randint(1, 6))]
            await send({"batch": seq, "records": records})
            seq += 1
        else:
            rid += 1
            await send({"id": rid, "method": "ping", "params": []})
    answered.clear()
    if kinds.get("ack", 0) + kinds.get("result", 0) >= tally.sent:
        answered.set()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(answered.wait(), timeout=3)
    receiver.cancel()
    await hang_up(writer)
    tally.extra["received_kinds"] = kinds
    emit(tally.summary("linejson"))


def client(argv: Sequence[str]) -> int:
    p = client_parser("newline-JSON client: log shipper or ticker subscriber", 9000)
    p.add_argument("--mode", choices=("ship", "ticker"), default="ticker")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--jitter", type=float, default=0.3)
    args = p.parse_args(argv)
    return run_async(lambda: run_client(args))


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("linejson", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
