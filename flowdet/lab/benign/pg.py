"""PostgreSQL frontend/backend protocol v3: a small server and an application pool client.

A second database shape beside RESP: a binary, length-prefixed protocol with a startup and
authentication exchange, optional TLS negotiated in-band (SSLRequest, as libpq does with
`sslmode=require`), then simple-query round trips (`Q` -> `T` `D`... `C` `Z`). Application
pools hold their connections open for hours, run short transactions in bursts and check idle
connections with `SELECT 1`: long-lived, periodic, small, and benign.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from flowdet.lab.benign.common import (
    PooledConn,
    Tally,
    client_context,
    client_parser,
    dispatch,
    emit,
    health_checks,
    jittered,
    paced,
    run_async,
    serve_tcp,
    server_parser,
    server_tls,
    tls_facts,
)

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
INT4, TEXT, NUMERIC, TIMESTAMPTZ = 23, 25, 1700, 1184


class PgError(ValueError):
    """A message that breaks the v3 protocol."""


@dataclass(frozen=True, slots=True)
class Message:
    type: bytes  # one byte; b"" for the untyped startup-phase messages
    body: bytes


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def startup_message(user: str, database: str, app: str) -> bytes:
    params = b"".join(cstr(k) + cstr(v) for k, v in (
        ("user", user), ("database", database), ("application_name", app),
        ("client_encoding", "UTF8"), ("DateStyle", "ISO"),
    )) + b"\0"  # fmt: skip
    body = struct.pack("!I", PROTOCOL_3) + params
    return struct.pack("!I", len(body) + 4) + body


async def read_message(reader: asyncio.StreamReader) -> Message:
    kind = await reader.readexactly(1)
    (n,) = struct.unpack("!I", await reader.readexactly(4))
    if not 4 <= n <= 1 << 24:
        raise PgError(f"message length {n} out of range")
    return Message(kind, await reader.readexactly(n - 4))


def row_description(columns: Sequence[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", len(columns))
    for name, oid in columns:
        size = 4 if oid == INT4 else 8 if oid == TIMESTAMPTZ else -1
        body += cstr(name) + struct.pack("!IhIhih", 0, 0, oid, size, -1, 0)
    return message(b"T", body)


def data_row(values: Sequence[str | None]) -> bytes:
    body = struct.pack("!H", len(values))
    for v in values:
        if v is None:
            body += struct.pack("!i", -1)
        else:
            raw = v.encode()
            body += struct.pack("!i", len(raw)) + raw
    return message(b"D", body)


def parse_data_row(body: bytes) -> list[str | None]:
    (n,) = struct.unpack_from("!H", body)
    pos, out = 2, []
    for _ in range(n):
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if size < 0:
            out.append(None)
        else:
            out.append(body[pos : pos + size].decode())
            pos += size
    return out


# ---------------------------------------------------------------- server


class Server:
    def __init__(self, tls, seed: int) -> None:  # type: ignore[no-untyped-def]
        self.tls, self.rng = tls, random.Random(seed)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rng = random.Random(self.rng.random())
        (n,) = struct.unpack("!I", await reader.readexactly(4))
        body = await reader.readexactly(n - 4)
        if struct.unpack_from("!I", body)[0] == SSL_REQUEST:
            if self.tls is None:
                writer.write(b"N")
            else:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self.tls)
            (n,) = struct.unpack("!I", await reader.readexactly(4))
            body = await reader.readexactly(n - 4)
        if struct.unpack_from("!I", body)[0] != PROTOCOL_3:
            raise PgError("unsupported protocol version")
        out = [message(b"R", struct.pack("!I", 0))]  # AuthenticationOk (trust)
        for k, v in (("server_version", "15.8"), ("server_encoding", "UTF8"),
                     ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                     ("TimeZone", "UTC"), ("integer_datetimes", "on")):  # fmt: skip
            out.append(message(b"S", cstr(k) + cstr(v)))
        out.append(message(b"K", struct.pack("!II", rng.getrandbits(31), rng.getrandbits(32))))
        out.append(message(b"Z", b"I"))
        writer.write(b"".join(out))
        await writer.drain()
        status = b"I"
        while True:
            msg = await read_message(reader)
            if msg.type == b"X":
                return
            if msg.type != b"Q":
                writer.write(message(b"E", b"SERROR\0C0A000\0Mfeature not supported\0\0"))
                writer.write(message(b"Z", status))
                await writer.drain()
                continue
            sql = msg.body.rstrip(b"\0").decode(errors="replace").strip()
            reply, status = self._execute(sql, rng, status)
            writer.write(reply + message(b"Z", status))
            await writer.drain()

    @staticmethod
    def _execute(sql: str, rng: random.Random, status: bytes) -> tuple[bytes, bytes]:
        verb = sql.split(None, 1)[0].upper() if sql else ""
        if verb == "BEGIN":
            return message(b"C", cstr("BEGIN")), b"T"
        if verb in ("COMMIT", "ROLLBACK"):
            return message(b"C", cstr(verb)), b"I"
        if verb == "SELECT" and sql.upper().startswith("SELECT 1"):
            return row_description([("?column?", INT4)]) + data_row(["1"]) + message(
                b"C", cstr("SELECT 1")
            ), status
        if verb == "SELECT":
            cols = [
                ("id", INT4),
                ("customer", TEXT),
                ("amount", NUMERIC),
                ("created_at", TIMESTAMPTZ),
            ]
            rows = [
                data_row([str(rng.randint(1, 10**6)), f"cust-{rng.randint(1, 5000)}",
                          f"{rng.uniform(1, 900):.2f}",
                          time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())])
                for _ in range(rng.randint(0, 40))
            ]  # fmt: skip
            return row_description(cols) + b"".join(rows) + message(
                b"C", cstr(f"SELECT {len(rows)}")
            ), status
        if verb == "INSERT":
            return message(b"C", cstr("INSERT 0 1")), status
        if verb in ("UPDATE", "DELETE"):
            return message(b"C", cstr(f"{verb} {rng.randint(0, 3)}")), status
        err = f'SERROR\0C42601\0Msyntax error at or near "{verb[:20]}"\0\0'.encode()
        return message(b"E", err), (b"E" if status == b"T" else status)


def serve(argv: Sequence[str]) -> int:
    p = server_parser("PostgreSQL v3 protocol server (trust auth, optional SSLRequest TLS)", 5432)
    args = p.parse_args(argv)
    srv = Server(server_tls(args), args.seed)
    # TLS is negotiated in-band after SSLRequest, so the listener itself is plain TCP.
    return run_async(lambda: serve_tcp(srv.handle, args.bind, args.port, None, "pg"))


# ---------------------------------------------------------------- client


async def connect(args: argparse.Namespace, tally: Tally, name: str) -> PooledConn:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(args.server, args.port), timeout=10
    )
    if args.tls:  # libpq sslmode=verify-full: SSLRequest, then TLS on the same connection
        writer.write(struct.pack("!II", 8, SSL_REQUEST))
        await writer.drain()
        if await reader.readexactly(1) != b"S":
            raise PgError("server refused TLS")
        await writer.start_tls(client_context(args.cafile), server_hostname=args.sni or args.server)
        tally.extra.update(tls_facts(writer.get_extra_info("ssl_object")))
    writer.write(startup_message("app", "shop", name))
    await writer.drain()
    while (msg := await read_message(reader)).type != b"Z":
        if msg.type == b"E":
            raise PgError(f"startup refused: {msg.body!r}")
        if msg.type == b"R" and msg.body[:4] != b"\0\0\0\0":
            raise PgError("server asks for a password; the lab uses trust")
    tally.connections += 1
    return PooledConn(reader, writer)


async def run_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    tally = Tally(extra={"rows": 0, "health_checks": 0, "transactions": 0, "tags": {}})
    t0 = time.monotonic()
    pool = [await connect(args, tally, f"web-{i}") for i in range(args.connections)]

    async def query(conn: PooledConn, sql: str) -> list[list[str | None]]:
        data = message(b"Q", cstr(sql))
        conn.writer.write(data)
        await conn.writer.drain()
        tally.record_send(t0, len(data))
        rows = []
        while (msg := await read_message(conn.reader)).type != b"Z":
            tally.bytes_received += 5 + len(msg.body)
            if msg.type == b"D":
                rows.append(parse_data_row(msg.body))
            elif msg.type == b"C":
                tag = msg.body.rstrip(b"\0").decode().split()[0]
                tally.extra["tags"][tag] = tally.extra["tags"].get(tag, 0) + 1
            elif msg.type == b"E":
                tally.errors += 1
        tally.received += 1
        tally.extra["rows"] += len(rows)
        conn.last_used = time.monotonic()
        return rows

    async def transaction(conn: PooledConn) -> None:
        async with conn.lock:
            who = f"customer = 'cust-{rng.randint(1, 5000)}'"
            cols = "id, customer, amount, created_at"
            if rng.random() < 0.6:
                await query(conn, f"SELECT {cols} FROM orders WHERE {who} LIMIT 20")
                return
            await query(conn, "BEGIN")
            await query(conn, f"SELECT {cols} FROM carts WHERE {who} FOR UPDATE")
            amount = f"{rng.uniform(5, 500):.2f}"
            await query(
                conn, f"INSERT INTO orders (customer, amount) VALUES ({who[11:]}, {amount})"
            )
            await query(conn, f"UPDATE carts SET checked_out = true WHERE {who}")
            await query(conn, "COMMIT")
            tally.extra["transactions"] += 1

    async def ping(conn: PooledConn) -> None:
        async with conn.lock:
            await query(conn, "SELECT 1")
        tally.extra["health_checks"] += 1

    checker = asyncio.create_task(health_checks(pool, args.health_interval, ping))
    deadline = t0 + args.duration
    async for _ in paced(deadline, lambda: jittered(rng, args.interval, 0.9), checker.done):
        await asyncio.gather(*(transaction(rng.choice(pool)) for _ in range(rng.randint(1, 6))))
    checker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checker
    for conn in pool:
        async with conn.lock:
            conn.writer.write(message(b"X"))
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()
        conn.writer.close()
    emit(tally.summary("pg"))


def client(argv: Sequence[str]) -> int:
    p = client_parser("PostgreSQL application pool: bursts of queries, idle SELECT 1", 5432)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--interval", type=float, default=2.0, help="mean seconds between bursts")
    p.add_argument("--health-interval", type=float, default=30.0)
    args = p.parse_args(argv)
    return run_async(lambda: run_client(args))


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("pg", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
