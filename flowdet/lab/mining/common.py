"""Plumbing shared by the mining emulators: the address guard, scaled time, logs, TLS, SOCKS5.

The emulators run inside lab namespaces and are stopped by PID, so they must be safe to start
anywhere: `check_target` refuses every address outside loopback and the private ranges the lab
uses, and refuses names outright (resolving one could reach a real pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from flowdet.errors import LabError
from flowdet.lab.emulators import run_until_signal

# Loopback, RFC 1918, shared address space (RFC 6598), the benchmarking range (RFC 2544,
# popular for test beds) and IPv6 unique-local / link-local: the only places a lab lives.
LAB_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "198.18.0.0/15",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


class TargetRefused(LabError):
    """An emulator was asked to talk to an address outside the lab."""


def check_target(host: str) -> str:
    """Return `host` if it is an IP literal inside the lab's ranges, else raise TargetRefused."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise TargetRefused(
            f"{host!r} is not an IP address; mining emulators never resolve names"
        ) from None
    if not any(addr in net for net in LAB_NETWORKS):
        raise TargetRefused(f"{host} is outside loopback and the lab's private ranges")
    return host


def parse_endpoint(text: str) -> tuple[str, int]:
    """'1.2.3.4:3333' or '[::1]:3333' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise LabError(f"endpoint {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@dataclass(slots=True)
class Clock:
    """Protocol time: real pool timing multiplied by `scale` (1.0 real, 0.01 a hundred times
    faster), so the quick profile can compress a session of minutes into seconds while every
    ratio between intervals, and so the traffic's shape, stays the same."""

    scale: float = 1.0
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        """Protocol seconds since start."""
        return (time.monotonic() - self.t0) / self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) * self.scale)

    def real(self, seconds: float) -> float:
        return max(0.0, seconds) * self.scale


def jittered(rng: random.Random, mean: float, jitter: float = 0.2) -> float:
    """`mean` give or take `jitter` (a fraction): real timers drift."""
    return max(0.0, mean * (1.0 + rng.uniform(-jitter, jitter)))


def rhex(rng: random.Random, nbytes: int) -> str:
    """Random bytes as hex: stands in for every hash, nonce and solution (none is computed)."""
    return rng.randbytes(nbytes).hex()


class EventLog:
    """Application messages as JSON lines: what each side sent and received, with sizes."""

    def __init__(self, path: Path | None, role: str, clock: Clock) -> None:
        self._fh: IO[str] | None = path.open("a", encoding="utf-8") if path else None
        self.role = role
        self.clock = clock

    def record(self, conn: int, direction: str, kind: str, size: int, **extra: Any) -> None:
        if self._fh is None:
            return
        rec = {
            "t": round(time.monotonic() - self.clock.t0, 6),
            "role": self.role,
            "conn": conn,
            "dir": direction,
            "kind": kind,
            "size": size,
        }
        rec.update(extra)
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def warn(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run_async(main: Callable[[], Awaitable[None]]) -> int:
    """Run `main` until it returns or SIGTERM/SIGINT arrives (exit status 0); a LabError
    (an address outside the lab, a bad endpoint) is one line on stderr and exit status 2."""

    try:
        run_until_signal(main)
    except LabError as exc:
        warn(f"flowdet: {exc}")
        return 2
    return 0


# ---------------------------------------------------------------- JSON lines


class LineConn:
    """A newline-delimited JSON connection that logs every message with its size on the wire."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: EventLog,
        conn_id: int,
        compact: bool = True,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.log = log
        self.conn_id = conn_id
        self.separators = (",", ":") if compact else (", ", ": ")
        self.mixed = False  # nheqminer style: spaced object, compact params list
        self.bytes_sent = 0
        self.bytes_received = 0

    def encode(self, msg: dict[str, Any]) -> bytes:
        if self.mixed and isinstance(msg.get("params"), list):
            params = json.dumps(msg["params"], separators=(",", ":"))
            text = json.dumps({**msg, "params": None}).replace(
                '"params": null', f'"params": {params}'
            )
            return (text + "\n").encode()
        return (json.dumps(msg, separators=self.separators) + "\n").encode()

    async def send(self, msg: dict[str, Any], kind: str | None = None) -> int:
        data = self.encode(msg)
        self.writer.write(data)
        await self.writer.drain()
        self.bytes_sent += len(data)
        self.log.record(self.conn_id, "tx", kind or message_kind(msg), len(data), **facts(msg))
        return len(data)

    async def send_many(self, msgs: list[tuple[dict[str, Any], str]]) -> None:
        """Several messages in one write, as pools do (set_difficulty + notify together)."""
        chunks = [self.encode(m) for m, _ in msgs]
        self.writer.write(b"".join(chunks))
        await self.writer.drain()
        for (msg, kind), chunk in zip(msgs, chunks, strict=True):
            self.bytes_sent += len(chunk)
            self.log.record(self.conn_id, "tx", kind, len(chunk), **facts(msg))

    async def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end of stream. Lines that are not JSON end the
        connection with an error: a real pool would drop such a peer too."""
        while True:
            try:
                line = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError as exc:
                raise LabError("peer sent a line longer than the stream limit") from exc
            if not line.strip():
                continue
            self.bytes_received += len(line)
            try:
                msg = json.loads(line)
            except ValueError as exc:
                raise LabError(f"peer sent a line that is not JSON: {line[:60]!r}") from exc
            if not isinstance(msg, dict):
                raise LabError("peer sent JSON that is not an object")
            self.log.record(self.conn_id, "rx", message_kind(msg), len(line), **facts(msg))
            return msg


def facts(msg: dict[str, Any]) -> dict[str, Any]:
    """What a log needs beyond the size: a Bitcoin notify's merkle branch length, which
    follows the block's transaction count and so is compared apart from the rest."""
    params = msg.get("params")
    if msg.get("method") == "mining.notify" and isinstance(params, list) and len(params) == 9:
        return {"branches": len(params[4])}
    return {}


def message_kind(msg: dict[str, Any]) -> str:
    """A message's name for logs: its method, or 'result' for responses and result pushes."""
    method = msg.get("method")
    if isinstance(method, str):
        return method
    return "result" if "result" in msg or "error" in msg else "unknown"


# ---------------------------------------------------------------- transport


def client_tls(max_version: str = "1.3") -> ssl.SSLContext:
    """Miners talk to pools with self-signed certificates and do not verify them (xmrig pins a
    fingerprint at most), so neither do we; some builds still top out at TLS 1.2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def set_keepalive(writer: asyncio.StreamWriter, idle: float) -> None:
    """TCP keepalive like the miners that enable it: idle probes carry no payload."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, round(idle)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, round(idle / 4)))


async def socks5_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    """RFC 1928 CONNECT without authentication over an open connection to the proxy."""
    writer.write(b"\x05\x01\x00")
    await writer.drain()
    ver, method = await reader.readexactly(2)
    if ver != 5 or method != 0:
        raise LabError(f"SOCKS5 proxy refused no-auth (version {ver}, method {method})")
    addr = ipaddress.ip_address(host)
    atyp = b"\x01" if addr.version == 4 else b"\x04"
    writer.write(b"\x05\x01\x00" + atyp + addr.packed + port.to_bytes(2, "big"))
    await writer.drain()
    ver, rep, _, atyp_r = await reader.readexactly(4)
    if ver != 5 or rep != 0:
        raise LabError(f"SOCKS5 proxy refused CONNECT to {host}:{port} (reply {rep})")
    await reader.readexactly({1: 4, 4: 16}.get(atyp_r, 4) + 2)


async def open_stream(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    sni: str | None = None,
    socks: tuple[str, int] | None = None,
    timeout: float = 10.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to a pool, directly or through a SOCKS5 proxy, optionally in TLS; both the
    pool and the proxy must pass the address guard."""
    check_target(host)
    if socks is None:
        return await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=sni if tls else None),
            timeout,
        )
    check_target(socks[0])
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*socks), timeout)
    await asyncio.wait_for(socks5_connect(reader, writer, host, port), timeout)
    if tls is not None:
        await asyncio.wait_for(writer.start_tls(tls, server_hostname=sni), timeout)
    return reader, writer


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2.0)
