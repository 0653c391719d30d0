"""Plumbing shared by the benign servers and clients: arguments, pacing, TLS, summaries.

Every program here is started by the lab inside a namespace and stopped by PID, so servers
treat SIGTERM as a normal end, clients stop on their own after `--duration` seconds, and
both speak to the runner (or a test) through single JSON lines on stdout: servers announce
`{"listening": ...}` once bound (ports may be 0 in tests), clients end with a summary of what
they actually exchanged, so nobody has to trust that traffic happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowdet.lab.certs import server_context
from flowdet.lab.emulators import emit, run_until_signal

LOOPBACK = "127.0.0.1"


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def jittered(rng: random.Random, mean: float, jitter: float) -> float:
    """`mean` seconds give or take `jitter` (a fraction): real timers drift, and a perfectly
    regular period would be an easy tell that the model could learn instead of the protocol."""
    return max(0.0, mean * (1.0 + rng.uniform(-jitter, jitter)))


@dataclass(slots=True)
class Tally:
    """What a client really exchanged; printed as its summary line.

    Bytes are application-layer bytes as the protocol frames them (websocket frames, RESP
    values, JSON lines, DNS/NTP datagrams; HTTP clients count request lines and response
    bodies), never TCP/TLS overhead: the capture is the authority on wire sizes."""

    connections: int = 0
    sent: int = 0  # application messages or requests sent
    received: int = 0  # application messages or responses received
    bytes_sent: int = 0
    bytes_received: int = 0
    errors: int = 0
    send_times: list[float] = field(default_factory=list)  # seconds since start
    extra: dict[str, Any] = field(default_factory=dict)

    def record_send(self, t0: float, nbytes: int) -> None:
        self.sent += 1
        self.bytes_sent += nbytes
        self.send_times.append(round(time.monotonic() - t0, 4))

    def summary(self, kind: str) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        out["kind"] = kind
        return out


def client_parser(description: str, default_port: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--server", default=LOOPBACK, help="responder address (lab host or loopback)")
    p.add_argument("--port", type=int, default=default_port)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of traffic, then exit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tls", action="store_true", help="wrap the connection in TLS")
    p.add_argument("--cafile", type=Path, help="CA/certificate to verify the server with")
    p.add_argument("--sni", help="TLS server name (also the certificate name checked)")
    return p


def server_parser(description: str, default_port: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bind", default=LOOPBACK)
    p.add_argument("--port", type=int, default=default_port, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    return p


def udp_server_parser(description: str, default_port: int) -> argparse.ArgumentParser:
    """Arguments of a UDP responder: no TLS, and answers that do not depend on a seed."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bind", default=LOOPBACK)
    p.add_argument("--port", type=int, default=default_port, help="0 picks a free port")
    return p


def server_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context when started with --tls (from server_parser), else None."""
    if not args.tls:
        return None
    if args.cert is None or args.key is None:
        raise SystemExit("--tls needs --cert and --key")
    return server_context(args.cert, args.key)


def client_context(cafile: Path | None, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A verifying client context: hostname and chain are checked against the lab's own CA,
    so the handshake is the one a careful real client would make."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_facts(obj: ssl.SSLSocket | ssl.SSLObject | None) -> dict[str, Any]:
    if obj is None:
        return {}
    cipher = obj.cipher()
    return {
        "tls_version": obj.version(),
        "tls_cipher": cipher[0] if cipher else None,
        "alpn": obj.selected_alpn_protocol(),
    }


def run_async(main: Callable[[], Awaitable[None]]) -> int:
    """Run `main` until it returns or SIGTERM/SIGINT arrives; both are a clean exit (0).

    A network failure is one line on stderr and exit status 1, never a traceback: the runner
    shows that line when a scenario's client did not do its job."""

    try:
        run_until_signal(main)
    except (OSError, EOFError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
        log(f"{Path(sys.argv[0]).stem}: {type(exc).__name__}: {exc}")
        return 1
    return 0


def peer_task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A server's background pusher for one connection: when the peer goes away mid-write,
    the task just ends (the connection handler notices and cleans up) instead of leaving an
    unretrieved exception for asyncio to print at exit."""

    async def quiet() -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            await coro

    return asyncio.create_task(quiet())


async def serve_tcp(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    bind: str,
    port: int,
    tls: ssl.SSLContext | None = None,
    kind: str = "tcp",
) -> None:
    """Accept connections forever, announcing the bound port; one task per connection."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (
            OSError,  # resets, timeouts, TLS alerts (ssl.SSLError is an OSError)
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,  # malformed protocol data (each module's errors subclass it)
        ) as exc:
            log(f"{kind}: connection ended: {exc!r}")
        finally:
            await hang_up(writer)

    server = await asyncio.start_server(guarded, bind, port, ssl=tls, reuse_address=True)
    sock = server.sockets[0].getsockname()
    emit({"listening": [sock[0], sock[1]], "kind": kind, "tls": tls is not None})
    async with server:
        await server.serve_forever()


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve_udp(
    answer: Callable[[bytes], bytes | None], bind: str, port: int, kind: str
) -> None:
    """Answer each datagram with `answer(request)` forever (None: stay silent, as real
    servers do to what they cannot parse), announcing the bound port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Responder(answer), local_addr=(bind, port)
    )
    sock = transport.get_extra_info("sockname")
    emit({"listening": [sock[0], sock[1]], "kind": kind, "proto": "udp"})
    try:
        await asyncio.Event().wait()
    finally:
        transport.close()


async def open_tcp(
    args: argparse.Namespace, tally: Tally
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The client's connection to --server/--port (TLS with --tls), counted in `tally` with
    the TLS version, cipher and ALPN it negotiated: the summary says what really ran."""
    ctx = client_context(args.cafile) if args.tls else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            args.server,
            args.port,
            ssl=ctx,
            server_hostname=(args.sni or args.server) if ctx else None,
        ),
        timeout=10,
    )
    tally.connections += 1
    tally.extra.update(tls_facts(writer.get_extra_info("ssl_object")))
    return reader, writer


async def hang_up(writer: asyncio.StreamWriter) -> None:
    """Close and wait until the close is done (TLS close_notify, FIN), so a client's summary
    comes after its last packet; a peer that already went away is not an error here."""
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def paced(
    deadline: float, pause: Callable[[], float], stop: Callable[[], bool] | None = None
) -> AsyncIterator[None]:
    """Yield after each `pause()` seconds until the next pause would reach `deadline` (or
    `stop()` is true before it starts): a client acts now and then but never starts an
    action its --duration has no time left for."""
    while True:
        wait = pause()
        if time.monotonic() + wait >= deadline or (stop is not None and stop()):
            return
        await asyncio.sleep(wait)
        yield


class PooledConn:
    """One connection of an application's pool: busy while its lock is held; `last_used`
    is what the idle health check looks at."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lock = asyncio.Lock()
        self.last_used = time.monotonic()


async def health_checks(
    pool: Sequence[PooledConn], idle: float, check: Callable[[PooledConn], Awaitable[None]]
) -> None:
    """An application pool's keepalive: every `idle`/4 seconds, `check` each connection that
    has been idle for `idle` seconds and is not in use, so quiet pools still show small
    periodic exchanges, as real ones do."""
    while True:
        await asyncio.sleep(idle / 4)
        for conn in pool:
            if time.monotonic() - conn.last_used >= idle and not conn.lock.locked():
                await check(conn)


def dispatch(
    module: str, argv: Sequence[str] | None, **parts: Callable[[Sequence[str]], int]
) -> int:
    """`python -m flowdet.lab.benign.MODULE {server,client} ...`: run the part named first."""
    args = list(sys.argv[1:] if argv is None else argv)
    run = parts.get(args[0]) if args else None
    if run is None:
        names = ",".join(parts)
        sys.stderr.write(f"usage: python -m flowdet.lab.benign.{module} {{{names}}} ...\n")
        return 2
    return run(args[1:])
