"""A Redis-protocol (RESP2) key-value server and an application-style client with a pool.

Database traffic is long-lived TCP with small request/response exchanges, bursty while the
application serves users and idle between, with periodic health-check PINGs on idle pooled
connections (what redis-py's `health_check_interval` does): another innocent shape that a
timing-only detector could mistake for a miner's keepalive. The server implements enough real
commands (strings, hashes, lists, sets, counters, expiry, pipelining) for the client's
workload to get real answers, and errors for the rest as Redis does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

from flowdet.lab.benign.common import (
    PooledConn,
    Tally,
    client_parser,
    dispatch,
    emit,
    health_checks,
    jittered,
    open_tcp,
    paced,
    run_async,
    serve_tcp,
    server_parser,
    server_tls,
)

Reply = bytes | int | str | list[Any] | None | Exception


class RespError(ValueError):
    """Malformed RESP on the wire."""


def encode_command(*parts: str | bytes | int) -> bytes:
    """A command as clients send it: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def encode_reply(value: Reply) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, Exception):
        return b"-%s\r\n" % str(value).encode()
    if isinstance(value, str):  # simple string
        return b"+%s\r\n" % value.encode()
    if isinstance(value, bool | int):
        return b":%d\r\n" % int(value)
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(encode_reply(v) for v in value)


def parse_value(buf: bytes, pos: int = 0) -> tuple[Reply, int] | None:
    """One RESP value from `buf` at `pos`: (value, end position), or None if incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, rest = buf[pos : pos + 1], buf[pos + 1 : end]
    nxt = end + 2
    if kind == b"+":
        return rest.decode(), nxt
    if kind == b"-":
        return RespError(rest.decode()), nxt
    if kind == b":":
        return int(rest), nxt
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None, nxt
        if len(buf) < nxt + n + 2:
            return None
        return buf[nxt : nxt + n], nxt + n + 2
    if kind == b"*":
        n = int(rest)
        items: list[Any] = []
        for _ in range(max(n, 0)):
            got = parse_value(buf, nxt)
            if got is None:
                return None
            items.append(got[0])
            nxt = got[1]
        return (items if n >= 0 else None), nxt
    return [w for w in buf[pos:end].split()], nxt  # inline command


async def read_value(reader: asyncio.StreamReader) -> Reply:
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = await reader.readexactly(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [await read_value(reader) for _ in range(n)]
    if line.strip():  # inline command, as `redis-cli`/telnet users type them
        return [w.encode() for w in line.split()]
    raise RespError(f"unexpected RESP type byte {kind!r}")


class Store:
    """The keyspace: values with optional expiry deadlines (monotonic seconds)."""

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}
        self.expires: dict[bytes, float] = {}

    def _live(self, key: bytes) -> Any:
        if key in self.expires and self.expires[key] <= time.monotonic():
            self.data.pop(key, None)
            self.expires.pop(key, None)
        return self.data.get(key)

    def execute(self, args: list[bytes]) -> Reply:
        if not args:
            return RespError("ERR empty command")
        cmd, a = args[0].upper().decode(errors="replace"), args[1:]
        try:
            if cmd == "PING":
                return a[0] if a else "PONG"
            if cmd == "ECHO":
                return a[0]
            if cmd in ("SELECT", "AUTH"):
                return "OK"
            if cmd == "CLIENT":
                return "OK" if a and a[0].upper() in (b"SETNAME", b"SETINFO") else None
            if cmd == "HELLO":
                return RespError("NOPROTO unsupported protocol version")
            if cmd == "SET":
                self.data[a[0]] = a[1]
                self.expires.pop(a[0], None)
                if len(a) >= 4 and a[2].upper() == b"EX":
                    self.expires[a[0]] = time.monotonic() + int(a[3])
                return "OK"
            if cmd == "GET":
                v = self._live(a[0])
                return v if v is None or isinstance(v, bytes) else RespError("WRONGTYPE")
            if cmd == "MGET":
                return [self._live(k) if isinstance(self._live(k), bytes) else None for k in a]
            if cmd in ("INCR", "INCRBY"):
                v = int(self._live(a[0]) or 0) + (int(a[1]) if cmd == "INCRBY" else 1)
                self.data[a[0]] = str(v).encode()
                return v
            if cmd == "DEL":
                return sum(self.data.pop(k, None) is not None for k in a)
            if cmd == "EXISTS":
                return sum(self._live(k) is not None for k in a)
            if cmd == "EXPIRE":
                if self._live(a[0]) is None:
                    return 0
                self.expires[a[0]] = time.monotonic() + int(a[1])
                return 1
            if cmd == "TTL":
                if self._live(a[0]) is None:
                    return -2
                return int(self.expires[a[0]] - time.monotonic()) if a[0] in self.expires else -1
            if cmd in ("HSET", "HGET", "HGETALL", "HINCRBY"):
                h = self._live(a[0])
                if h is None:
                    h = self.data[a[0]] = {}
                if cmd == "HSET":
                    new = sum(f not in h for f in a[1::2])
                    h.update(zip(a[1::2], a[2::2], strict=False))
                    return new
                if cmd == "HGET":
                    return h.get(a[1])
                if cmd == "HINCRBY":
                    h[a[1]] = str(int(h.get(a[1], b"0")) + int(a[2])).encode()
                    return int(h[a[1]])
                return [x for kv in h.items() for x in kv]
            if cmd in ("LPUSH", "RPUSH", "LRANGE", "LLEN", "LPOP", "LTRIM"):
                lst = self._live(a[0])
                if lst is None:
                    lst = self.data[a[0]] = []
                if cmd == "LPUSH":
                    lst[:0] = list(reversed(a[1:]))
                    return len(lst)
                if cmd == "RPUSH":
                    lst.extend(a[1:])
                    return len(lst)
                if cmd == "LLEN":
                    return len(lst)
                if cmd == "LPOP":
                    return lst.pop(0) if lst else None
                start, stop = int(a[1]), int(a[2])
                stop = len(lst) if stop == -1 else stop + 1
                if cmd == "LTRIM":
                    lst[:] = lst[start:stop]
                    return "OK"
                return lst[start:stop]
            if cmd in ("SADD", "SMEMBERS", "SISMEMBER"):
                s = self._live(a[0])
                if s is None:
                    s = self.data[a[0]] = set()
                if cmd == "SADD":
                    before = len(s)
                    s.update(a[1:])
                    return len(s) - before
                if cmd == "SISMEMBER":
                    return int(a[1] in s)
                return sorted(s)
            if cmd == "INFO":
                up = int(time.monotonic())
                return f"# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:{up}\r\n".encode()
        except (IndexError, ValueError, AttributeError, TypeError):
            return RespError(f"ERR wrong arguments for '{cmd.lower()}' command")
        return RespError(f"ERR unknown command '{cmd.lower()}'")


def serve(argv: Sequence[str]) -> int:
    p = server_parser("Redis-protocol (RESP2) server", 6379)
    args = p.parse_args(argv)
    tls = server_tls(args)
    store = Store()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        while chunk := await reader.read(1 << 16):
            buf += chunk
            out: list[bytes] = []
            quit_ = False
            # Answer every complete command in the buffer with one write, as Redis does for
            # a pipeline, and keep a partial command for the next read.
            while (parsed := parse_value(buf)) is not None:
                req, used = parsed
                buf = buf[used:]
                if not isinstance(req, list):
                    out.append(encode_reply(RespError("ERR protocol error")))
                    quit_ = True
                    break
                if req and bytes(req[0]).upper() == b"QUIT":
                    out.append(encode_reply("OK"))
                    quit_ = True
                    break
                out.append(encode_reply(store.execute([bytes(x) for x in req])))
            if out:
                writer.write(b"".join(out))
                await writer.drain()
            if quit_:
                return

    return run_async(lambda: serve_tcp(handle, args.bind, args.port, tls, "resp"))


async def run_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    tally = Tally(extra={"replies": {}, "health_checks": 0, "bursts": 0})
    t0 = time.monotonic()
    pool: list[PooledConn] = []

    async def call(conn: PooledConn, *commands: Sequence[str | bytes | int]) -> list[Reply]:
        """Send commands as one pipeline, read one reply each."""
        async with conn.lock:
            data = b"".join(encode_command(*c) for c in commands)
            conn.writer.write(data)
            await conn.writer.drain()
            tally.record_send(t0, len(data))
            replies = [await read_value(conn.reader) for _ in commands]
            conn.last_used = time.monotonic()
        tally.received += len(replies)
        for r in replies:
            kind = type(r).__name__
            tally.extra["replies"][kind] = tally.extra["replies"].get(kind, 0) + 1
            if isinstance(r, RespError):
                tally.errors += 1
        tally.bytes_received += sum(len(encode_reply(r)) for r in replies)  # canonical form
        return replies

    for i in range(args.connections):
        reader, writer = await open_tcp(args, tally)
        conn = PooledConn(reader, writer)
        pool.append(conn)
        await call(conn, ("CLIENT", "SETNAME", f"app-{args.seed}-{i}"), ("SELECT", 0))

    async def ping(conn: PooledConn) -> None:
        await call(conn, ("PING",))
        tally.extra["health_checks"] += 1

    checker = asyncio.create_task(health_checks(pool, args.health_interval, ping))
    deadline = t0 + args.duration
    async for _ in paced(deadline, lambda: jittered(rng, args.interval, 0.9)):
        tally.extra["bursts"] += 1
        jobs = []
        for _ in range(rng.randint(1, 2 * len(pool))):
            user = rng.randint(1, 500)
            conn = rng.choice(pool)
            op = rng.random()
            if op < 0.4:
                jobs.append(call(conn, ("GET", f"session:{user}")))
            elif op < 0.6:
                jobs.append(call(conn, ("HSET", f"user:{user}", "last_seen", int(time.time()),
                                        "plan", rng.choice(("free", "pro"))),
                                 ("HGETALL", f"user:{user}")))  # fmt: skip
            elif op < 0.75:
                jobs.append(
                    call(conn, ("SET", f"session:{user}", rng.randbytes(24).hex(), "EX", 900))
                )
            elif op < 0.9:
                jobs.append(call(conn, ("INCR", "page_views"), ("LPUSH", "events", f"view:{user}"),
                                 ("LTRIM", "events", 0, 999)))  # fmt: skip
            else:
                jobs.append(
                    call(conn, ("MGET", *[f"session:{rng.randint(1, 500)}" for _ in range(8)]))
                )
        await asyncio.gather(*jobs)
    checker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checker
    for conn in pool:
        with contextlib.suppress(Exception):
            async with conn.lock:
                conn.writer.write(encode_command("QUIT"))
                await conn.writer.drain()
                await read_value(conn.reader)
        conn.writer.close()
    emit(tally.summary("resp"))


def client(argv: Sequence[str]) -> int:
    p = client_parser("Redis-protocol application client with a connection pool", 6379)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--interval", type=float, default=2.0, help="mean seconds between bursts")
    p.add_argument("--health-interval", type=float, default=30.0, help="idle PING period")
    args = p.parse_args(argv)
    return run_async(lambda: run_client(args))


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("resp", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
