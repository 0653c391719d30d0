"""An HTTP CONNECT forward proxy (port 3128, like Squid) for browsing through a proxy.

Tunnelling is not in itself suspicious: corporate networks send every HTTPS request through
a CONNECT proxy, so one long-lived TCP connection from the host to a proxy carrying someone
else's TLS is normal. The mining class includes miners behind SOCKS5 and the SSH class has
SSH -D; this is the benign counterpart, so the model learns the payload and rhythm, not the
fact of a proxy. The proxy answers `CONNECT host:port` by connecting to `--upstream` (the lab
has no DNS between its hosts, so every name maps to that address) and relaying both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from flowdet.lab.benign.common import LOOPBACK, log, run_async, serve_tcp

ALLOWED_PORTS = frozenset({443, 8443, 9443})


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


def make_handler(upstream: str, allowed: frozenset[int] = ALLOWED_PORTS):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        request = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(request) != 3 or request[0] != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")  # fmt: skip
            return
        host, _, port_s = request[1].rpartition(":")
        port = int(port_s) if port_s.isdigit() else 0
        if port not in allowed:  # Squid's default: CONNECT only to SSL ports
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(upstream, port), timeout=10
            )
        except (OSError, TimeoutError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        log(f"proxy: CONNECT {host}:{port} -> {upstream}:{port}")
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    return handle


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["server"]:
        sys.stderr.write("usage: python -m flowdet.lab.benign.proxy server ...\n")
        return 2
    p = argparse.ArgumentParser(description="HTTP CONNECT forward proxy")
    p.add_argument("--bind", default=LOOPBACK)
    p.add_argument("--port", type=int, default=3128)
    p.add_argument("--upstream", default=LOOPBACK, help="address every CONNECT goes to")
    p.add_argument("--allow-port", type=int, action="append", help="CONNECT ports (443, ...)")
    args = p.parse_args(argv[1:])
    allowed = frozenset(args.allow_port or ALLOWED_PORTS)
    handler = make_handler(args.upstream, allowed)
    return run_async(lambda: serve_tcp(handler, args.bind, args.port, None, "proxy"))


if __name__ == "__main__":
    sys.exit(main())
