"""`python -m flowdet.lab.mining.socks5`: a small SOCKS5 proxy (RFC 1928, CONNECT, no auth).

Miners hide pool connections behind SOCKS proxies (xmrig `--proxy`, Tor), so the monitored
host's flow goes to the proxy, not the pool. This proxy relays bytes unchanged, admits only
CONNECT to lab addresses (`check_target`; domain names are refused, never resolved), prints
`{"listening": ...}` once bound and, with `--log`, one JSON line per relayed connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import sys
import time
from pathlib import Path

from flowdet.errors import LabError
from flowdet.lab.emulators import emit
from flowdet.lab.mining.common import check_target, close_writer, run_async

REP_OK, REP_FAILURE, REP_NOT_ALLOWED, REP_REFUSED, REP_CMD, REP_ATYP = 0, 1, 2, 5, 7, 8


def reply(code: int) -> bytes:
    return bytes([5, code, 0, 1]) + bytes(6)


async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, counter: list[int]) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await src.read(65536):
            counter[0] += len(data)
            dst.write(data)
            await dst.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if dst.can_write_eof():
            dst.write_eof()


async def handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: Path | None
) -> None:
    record: dict[str, object] = {"t": time.time(), "peer": writer.get_extra_info("peername")[:2]}
    upstream: asyncio.StreamWriter | None = None
    try:
        ver, nmethods = await reader.readexactly(2)
        methods = await reader.readexactly(nmethods)
        if ver != 5:
            raise LabError(f"not SOCKS5 (version {ver})")
        if 0 not in methods:
            writer.write(b"\x05\xff")
            raise LabError("client offers no no-auth method")
        writer.write(b"\x05\x00")
        await writer.drain()
        ver, cmd, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif atyp == 3:
            name = await reader.readexactly((await reader.readexactly(1))[0])
            await reader.readexactly(2)
            writer.write(reply(REP_ATYP))
            raise LabError(f"domain name {name.decode(errors='replace')!r} refused: never resolved")
        else:
            writer.write(reply(REP_ATYP))
            raise LabError(f"unknown address type {atyp}")
        port = int.from_bytes(await reader.readexactly(2), "big")
        record["target"] = [host, port]
        if cmd != 1:
            writer.write(reply(REP_CMD))
            raise LabError(f"command {cmd} not supported (CONNECT only)")
        try:
            check_target(host)
        except LabError:
            writer.write(reply(REP_NOT_ALLOWED))
            raise
        try:
            up_reader, upstream = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (OSError, TimeoutError) as exc:
            writer.write(reply(REP_REFUSED))
            raise LabError(f"upstream {host}:{port}: {exc}") from exc
        bound = upstream.get_extra_info("sockname")
        addr = ipaddress.ip_address(bound[0])
        writer.write(
            bytes([5, REP_OK, 0, 1 if addr.version == 4 else 4])
            + addr.packed
            + bound[1].to_bytes(2, "big")
        )
        await writer.drain()
        up_bytes, down_bytes = [0], [0]
        await asyncio.gather(pipe(reader, upstream, up_bytes), pipe(up_reader, writer, down_bytes))
        record.update(ok=True, bytes_up=up_bytes[0], bytes_down=down_bytes[0])
    except (LabError, asyncio.IncompleteReadError, ConnectionError) as exc:
        record.update(ok=False, error=str(exc)[:200])
    finally:
        if upstream is not None:
            await close_writer(upstream)
        await close_writer(writer)
        if log is not None:
            with log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flowdet.lab.mining.socks5", description=__doc__)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1080, help="0 picks a free port")
    p.add_argument("--log", type=Path, help="one JSON line per relayed connection")
    args = p.parse_args(argv)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # see engine.run_server
            await handle(reader, writer, args.log)

    async def run() -> None:
        server = await asyncio.start_server(on_connect, args.bind, args.port, reuse_address=True)
        sock = server.sockets[0].getsockname()
        emit({"listening": [sock[0], sock[1]], "kind": "socks5"})
        async with server:
            await server.serve_forever()

    return run_async(run)


if __name__ == "__main__":
    sys.exit(main())
