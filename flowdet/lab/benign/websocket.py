"""RFC 6455 websockets: chat, notifications, Engine.IO heartbeats and JSON-RPC subscriptions.

These are the closest benign look-alikes of a Stratum session: one long-lived TCP (or TLS)
connection, a JSON subscribe at the start, then small JSON pushes from the responder every few
seconds and occasional small messages from the initiator. The server picks the behaviour from
the request path, the way real services route websocket endpoints:

- `/chat`       both sides send short chat messages and typing notices at random times;
- `/notify`     the server pushes notifications, the client sends an application heartbeat;
- `/socket.io/` Engine.IO v4 framing: server ping `2` every interval, client pong `3`, events
                as `42[...]` (what Socket.IO apps put on the wire);
- `/ws`         a web terminal in ttyd's framing: keystrokes one binary frame each at typing
                speed, echoed, then a burst of command output: the interactive rhythm of an SSH
                session (the SSH-tunnel class's look-alike) inside an ordinary wss connection;
- `/rpc`        JSON-RPC 2.0 subscription: a price ticker (`subscribe`/`ticker`) or Ethereum
                `eth_subscribe` to `newHeads` (read-only chain data, never work/submit calls).

Framing follows RFC 6455 section 5: clients mask every frame, servers never do, control frames
(ping/pong/close) are answered, and the opening handshake checks Sec-WebSocket-Accept.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
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

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_PAYLOAD = 1 << 20
MODES = ("chat", "notify", "engineio", "ticker", "newheads", "terminal")
PATHS = {
    "chat": "/chat",
    "notify": "/notify",
    "engineio": "/socket.io/?EIO=4&transport=websocket",
    "ticker": "/rpc",
    "newheads": "/rpc",
    "terminal": "/ws",
}
# ttyd's message types: the first byte of every binary frame.
TTY_INPUT, TTY_RESIZE, TTY_OUTPUT, TTY_TITLE, TTY_PREFS = b"0", b"1", b"0", b"1", b"2"
COMMANDS = ("ls -la", "git status", "top -bn1 | head", "tail -n 50 /var/log/syslog", "cd src",
            "make test", "vim README.md", "df -h", "ps aux | grep nginx", "cat config.yaml",
            "history | tail", "ssh-add -l", "docker ps", "kubectl get pods")  # fmt: skip
WORDS = [
    "ok",
    "sure",
    "lunch",
    "meeting",
    "deploy",
    "later",
    "tomorrow",
    "build",
    "green",
    "red",
    "review",
    "merge",
    "thanks",
    "lol",
    "coffee",
    "standup",
    "ticket",
    "ship",
    "it",
    "looks",
    "good",
    "on",
    "call",
    "incident",
    "resolved",
    "ping",
    "me",
    "when",
]
LOREM_OUT = (
    b"drwxr-xr-x  5 dev dev  4096 Nov 27 09:12 src\r\n",
    b"-rw-r--r--  1 dev dev 18231 Nov 26 17:40 README.md\r\n",
    b"root       812  0.0  0.1  55180  1632 ?  Ss 08:01 0:00 nginx: master\r\n",
    b"/dev/sda1        98G   41G   52G  45% /\r\n",
    b"api-7d9f8c6b5-x2kq9   1/1   Running   0   3d4h\r\n",
    b"    modified:   flowdet/lab/runner.py\r\n",
)
SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD", "EUR-USD", "AAPL", "MSFT", "XAU-USD")


class ProtocolError(ValueError):
    """The peer broke RFC 6455 (bad handshake, unmasked client frame, oversize frame)."""


@dataclass(frozen=True, slots=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    masked: bool


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None, fin: bool = True) -> bytes:
    """One frame; `mask` (4 bytes) is required from clients and forbidden from servers."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mbit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head += bytes([mbit | n])
    elif n < 1 << 16:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask is None:
        return head + payload
    return head + mask + _mask(payload, mask)


def decode_frame(buf: bytes) -> tuple[Frame, int] | None:
    """Parse one frame from the start of `buf`: (frame, bytes used), or None if incomplete."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    if b0 & 0x70:
        raise ProtocolError("reserved bits set without a negotiated extension")
    masked, n, pos = bool(b1 & 0x80), b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        (n,) = struct.unpack_from("!H", buf, 2)
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        (n,) = struct.unpack_from("!Q", buf, 2)
        pos = 10
    if n > MAX_PAYLOAD:
        raise ProtocolError(f"frame of {n} bytes is over the {MAX_PAYLOAD} limit")
    key = b""
    if masked:
        if len(buf) < pos + 4:
            return None
        key, pos = buf[pos : pos + 4], pos + 4
    if len(buf) < pos + n:
        return None
    payload = buf[pos : pos + n]
    if masked:
        payload = _mask(payload, key)
    return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, masked), pos + n


def frame_size(frame: Frame) -> int:
    """Bytes the frame took on the wire (header, mask key, payload)."""
    n = len(frame.payload)
    return 2 + (2 if 126 <= n < 1 << 16 else 8 if n >= 1 << 16 else 0) + 4 * frame.masked + n


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    head = await reader.readexactly(2)
    need = {126: 2, 127: 8}.get(head[1] & 0x7F, 0) + (4 if head[1] & 0x80 else 0)
    rest = await reader.readexactly(need) if need else b""
    length_bytes = head + rest
    n = head[1] & 0x7F
    if n == 126:
        (n,) = struct.unpack_from("!H", rest)
    elif n == 127:
        (n,) = struct.unpack_from("!Q", rest)
    if n > MAX_PAYLOAD:
        raise ProtocolError(f"frame of {n} bytes is over the {MAX_PAYLOAD} limit")
    body = await reader.readexactly(n)
    parsed = decode_frame(length_bytes + body)
    assert parsed is not None  # all bytes the header announced are present
    return parsed[0]


async def read_http_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


class Peer:
    """One side of an open websocket: sends masked (client) or unmasked (server) frames."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        is_client: bool,
        tally: Tally | None = None,
        t0: float = 0.0,
    ) -> None:
        self.reader, self.writer, self.is_client = reader, writer, is_client
        self.tally, self.t0 = tally, t0
        self.closed = asyncio.Event()

    async def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4) if self.is_client else None
        data = encode_frame(opcode, payload, mask)
        self.writer.write(data)
        await self.writer.drain()
        if self.tally is not None and opcode in (OP_TEXT, OP_BINARY):
            self.tally.record_send(self.t0, len(data))

    async def send_json(self, obj: Any) -> None:
        await self.send(OP_TEXT, json.dumps(obj, separators=(",", ":")).encode())

    async def send_text(self, text: str) -> None:
        await self.send(OP_TEXT, text.encode())

    async def close(self, code: int = 1000) -> None:
        if not self.writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await self.send(OP_CLOSE, struct.pack("!H", code))

    async def messages(self):  # type: ignore[no-untyped-def]
        """Yield data frames, answering control frames as RFC 6455 requires."""
        while True:
            frame = await read_frame(self.reader)
            if not self.is_client and not frame.masked:
                await self.close(1002)
                raise ProtocolError("client frame without a mask")
            if self.tally is not None:
                self.tally.bytes_received += frame_size(frame)
            if frame.opcode == OP_PING:
                await self.send(OP_PONG, frame.payload)
            elif frame.opcode == OP_PONG:
                continue
            elif frame.opcode == OP_CLOSE:
                if not self.closed.is_set():
                    self.closed.set()
                    await self.close(1000)
                return
            else:
                if self.tally is not None:
                    self.tally.received += 1
                yield frame


# ---------------------------------------------------------------- server


def _chat_line(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9)))


def _ticker_params(rng: random.Random, sub: str, prices: dict[str, float]) -> dict[str, Any]:
    sym = rng.choice(list(prices))
    prices[sym] *= 1 + rng.gauss(0, 0.001)
    p = prices[sym]
    return {
        "subscription": sub,
        "result": {
            "symbol": sym,
            "bid": round(p * 0.9998, 4),
            "ask": round(p * 1.0002, 4),
            "last": round(p, 4),
            "volume24h": round(rng.uniform(1e3, 1e6), 2),
            "ts": int(time.time() * 1000),
        },
    }


def _new_head(rng: random.Random, number: int) -> dict[str, Any]:
    """An Ethereum block header as a node's `eth_subscription` would push it (read-only)."""
    h = lambda n: "0x" + rng.randbytes(n).hex()  # noqa: E731
    return {
        "number": hex(number),
        "hash": h(32),
        "parentHash": h(32),
        "miner": h(20),
        "stateRoot": h(32),
        "transactionsRoot": h(32),
        "receiptsRoot": h(32),
        "gasLimit": hex(30_000_000),
        "gasUsed": hex(rng.randint(5_000_000, 29_000_000)),
        "baseFeePerGas": hex(rng.randint(5 * 10**9, 60 * 10**9)),
        "timestamp": hex(int(time.time())),
        "extraData": "0x",
    }


class Server:
    def __init__(self, interval: float, jitter: float, seed: int) -> None:
        self.interval, self.jitter = interval, jitter
        self.rng = random.Random(seed)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request, headers = await read_http_head(reader)
        parts = request.split(" ")
        key = headers.get("sec-websocket-key", "")
        if (
            len(parts) != 3
            or parts[0] != "GET"
            or headers.get("upgrade", "").lower() != "websocket"
            or headers.get("sec-websocket-version") != "13"
            or len(base64.b64decode(key or "=", validate=False)) != 16
        ):
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return
        path = parts[1]
        reply = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
        )
        if "sec-websocket-protocol" in headers:
            reply += (
                f"Sec-WebSocket-Protocol: {headers['sec-websocket-protocol'].split(',')[0]}\r\n"
            )
        writer.write((reply + "\r\n").encode())
        await writer.drain()
        peer = Peer(reader, writer, is_client=False)
        rng = random.Random(self.rng.random())
        if path.startswith("/socket.io/"):
            await self._engineio(peer, rng)
        elif path.startswith("/rpc"):
            await self._rpc(peer, rng)
        elif path.startswith("/ws"):
            await self._terminal(peer, rng)
        elif path.startswith("/notify"):
            await self._push(peer, rng, self._notification)
        else:
            await self._push(peer, rng, self._chat)

    async def _pusher(self, peer: Peer, rng: random.Random, make) -> None:  # type: ignore[no-untyped-def]
        while not peer.closed.is_set():
            await asyncio.sleep(jittered(rng, self.interval, self.jitter))
            await peer.send_json(make(rng))

    @staticmethod
    def _chat(rng: random.Random) -> dict[str, Any]:
        kind = rng.choice(("message", "message", "typing", "presence"))
        msg: dict[str, Any] = {"type": kind, "room": "team", "from": f"user{rng.randint(2, 40)}"}
        if kind == "message":
            msg["text"] = _chat_line(rng)
            msg["id"] = rng.getrandbits(48)
        elif kind == "presence":
            msg["status"] = rng.choice(("online", "away", "offline"))
        msg["ts"] = int(time.time() * 1000)
        return msg

    @staticmethod
    def _notification(rng: random.Random) -> dict[str, Any]:
        return {
            "event": rng.choice(("mention", "build", "order", "alert", "reaction")),
            "id": rng.getrandbits(40),
            "unread": rng.randint(0, 30),
            "title": _chat_line(rng),
            "ts": int(time.time()),
        }

    async def _push(self, peer: Peer, rng: random.Random, make) -> None:  # type: ignore[no-untyped-def]
        pusher = peer_task(self._pusher(peer, rng, make))
        try:
            async for frame in peer.messages():
                try:
                    msg = json.loads(frame.payload)
                except ValueError:
                    continue
                if msg.get("type") == "ping":
                    await peer.send_json({"type": "pong", "ts": msg.get("ts")})
                elif msg.get("type") == "message":
                    await peer.send_json({"type": "ack", "id": msg.get("id")})
        finally:
            pusher.cancel()

    async def _engineio(self, peer: Peer, rng: random.Random) -> None:
        sid = base64.urlsafe_b64encode(rng.randbytes(15)).decode()
        ping_ms = int(self.interval * 1000)
        await peer.send_text(
            "0"
            + json.dumps(
                {"sid": sid, "upgrades": [], "pingInterval": ping_ms, "pingTimeout": 20000,
                 "maxPayload": 1000000}, separators=(",", ":"))
        )  # fmt: skip

        async def pinger() -> None:
            while True:
                await asyncio.sleep(jittered(rng, self.interval, self.jitter / 4))
                await peer.send_text("2")
                if rng.random() < 0.5:
                    await peer.send_text(
                        "42"
                        + json.dumps(["update", self._notification(rng)], separators=(",", ":"))
                    )

        task = peer_task(pinger())
        try:
            async for frame in peer.messages():
                text = frame.payload.decode(errors="replace")
                if text.startswith("40"):
                    await peer.send_text("40" + json.dumps({"sid": sid[:20]}))
                elif text.startswith("42"):
                    await peer.send_text("43" + text[2:8].split("[")[0] + '[{"ok":true}]')
        finally:
            task.cancel()

    async def _terminal(self, peer: Peer, rng: random.Random) -> None:
        """A shell behind ttyd: echo each keystroke, answer Enter with command output."""
        prompt = b"\x1b[01;32mdev@box\x1b[00m:\x1b[01;34m~/src\x1b[00m$ "
        line = bytearray()
        async for frame in peer.messages():
            data = frame.payload
            if frame.opcode == OP_TEXT or data[:1] == b"{":  # the initial auth/size message
                await peer.send(OP_BINARY, TTY_TITLE + b"dev@box: ~/src")
                await peer.send(OP_BINARY, TTY_PREFS + b'{"fontSize":14}')
                await peer.send(OP_BINARY, TTY_OUTPUT + b"Last login: today\r\n" + prompt)
            elif data[:1] == TTY_INPUT:
                keys = data[1:]
                if keys == b"\r":
                    size = int(min(30_000, rng.lognormvariate(6.0, 1.2))) if line else 0
                    out = b"".join(rng.choice(LOREM_OUT) for _ in range(size // 40 + 1))[:size]
                    line.clear()
                    # Output arrives as a terminal sends it: a few writes, not one big frame.
                    await peer.send(OP_BINARY, TTY_OUTPUT + b"\r\n")
                    for i in range(0, len(out), 4096):
                        await asyncio.sleep(rng.uniform(0.001, 0.02))
                        await peer.send(OP_BINARY, TTY_OUTPUT + out[i : i + 4096])
                    await peer.send(OP_BINARY, TTY_OUTPUT + prompt)
                else:
                    line += keys
                    await peer.send(OP_BINARY, TTY_OUTPUT + keys)  # the echo

    async def _rpc(self, peer: Peer, rng: random.Random) -> None:
        tasks: list[asyncio.Task[None]] = []
        block = [19_000_000 + rng.randint(0, 999_999)]
        prices = {s: rng.uniform(1, 60_000) for s in SYMBOLS}

        async def feed(sub: str, method: str, heads: bool) -> None:
            while True:
                await asyncio.sleep(jittered(rng, self.interval, self.jitter))
                if heads:
                    block[0] += 1
                    params = {"subscription": sub, "result": _new_head(rng, block[0])}
                else:
                    params = _ticker_params(rng, sub, prices)
                await peer.send_json({"jsonrpc": "2.0", "method": method, "params": params})

        try:
            async for frame in peer.messages():
                try:
                    req = json.loads(frame.payload)
                except ValueError:
                    await peer.send_json(
                        {
                            "jsonrpc": "2.0",
                            "id": None,
                            "error": {"code": -32700, "message": "Parse error"},
                        }
                    )
                    continue
                method, rid = req.get("method"), req.get("id")
                sub = "0x" + rng.randbytes(16).hex()
                if method == "eth_subscribe" and req.get("params", [None])[0] == "newHeads":
                    tasks.append(peer_task(feed(sub, "eth_subscription", True)))
                    result: Any = sub
                elif method == "subscribe":
                    tasks.append(peer_task(feed(sub, "ticker", False)))
                    result = sub
                elif method in ("ping", "net_version"):
                    result = "pong" if method == "ping" else "1"
                elif method == "eth_blockNumber":
                    result = hex(block[0])
                else:
                    await peer.send_json(
                        {"jsonrpc": "2.0", "id": rid,
                         "error": {"code": -32601, "message": "Method not found"}}
                    )  # fmt: skip
                    continue
                await peer.send_json({"jsonrpc": "2.0", "id": rid, "result": result})
        finally:
            for t in tasks:
                t.cancel()


def serve(argv: Sequence[str]) -> int:
    p = server_parser("websocket server (chat, notify, socket.io, JSON-RPC feeds)", 8080)
    p.add_argument("--interval", type=float, default=5.0, help="mean seconds between pushes")
    p.add_argument("--jitter", type=float, default=0.3)
    args = p.parse_args(argv)
    tls = server_tls(args)
    server = Server(args.interval, args.jitter, args.seed)
    return run_async(lambda: serve_tcp(server.handle, args.bind, args.port, tls, "websocket"))


# ---------------------------------------------------------------- client


async def client_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str
) -> dict[str, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Origin: https://{host}\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status, headers = await read_http_head(reader)
    if " 101 " not in status + " ":
        raise ProtocolError(f"handshake refused: {status}")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise ProtocolError("Sec-WebSocket-Accept does not match the key")
    return headers


async def run_client(args) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(args.seed)
    tally = Tally()
    t0 = time.monotonic()
    reader, writer = await open_tcp(args, tally)
    host = args.sni or args.server
    await client_handshake(reader, writer, host, PATHS[args.mode])
    tally.extra["handshake"] = "ok"
    peer = Peer(reader, writer, is_client=True, tally=tally, t0=t0)
    opcodes: dict[str, int] = {}
    received_kinds: dict[str, int] = {}

    async def receive() -> None:
        async for frame in peer.messages():
            opcodes[str(frame.opcode)] = opcodes.get(str(frame.opcode), 0) + 1
            text = frame.payload.decode(errors="replace")
            if args.mode == "terminal":
                kind = {b"0": "output", b"1": "title", b"2": "prefs"}.get(frame.payload[:1], "?")
                if kind == "output":
                    tally.extra["output_bytes"] = tally.extra.get("output_bytes", 0) + len(text) - 1
            elif args.mode == "engineio":
                kind = text[:2] if text[:1] == "4" else text[:1]
                if text == "2":
                    await peer.send_text("3")
            else:
                msg = json.loads(text)
                kind = str(msg.get("type") or msg.get("event") or msg.get("method") or "result")
            received_kinds[kind] = received_kinds.get(kind, 0) + 1

    receiver = asyncio.create_task(receive())
    deadline = t0 + args.duration
    n = 0
    if args.mode == "engineio":
        await peer.send_text("40")
    elif args.mode == "ticker":
        syms = rng.sample(SYMBOLS, rng.randint(1, 3))
        await peer.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "subscribe",
             "params": {"channel": "ticker", "symbols": syms}}
        )  # fmt: skip
    elif args.mode == "newheads":
        await peer.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
        )
    elif args.mode == "terminal":
        cols, rows = rng.choice(((80, 24), (120, 40), (203, 52)))
        await peer.send_json({"AuthToken": "", "columns": cols, "rows": rows})
    rid = 1
    async for _ in paced(deadline, lambda: jittered(rng, args.interval, args.jitter)):
        if receiver.done():
            break
        n += 1
        if args.mode == "chat":
            if rng.random() < 0.3:
                await peer.send_json({"type": "typing", "room": "team"})
            else:
                await peer.send_json(
                    {"type": "message", "room": "team", "id": rng.getrandbits(48),
                     "text": _chat_line(rng), "ts": int(time.time() * 1000)}
                )  # fmt: skip
        elif args.mode == "notify":
            await peer.send_json({"type": "ping", "ts": int(time.time() * 1000)})
        elif args.mode == "terminal":
            await _type_command(peer, rng, deadline)
        elif args.mode == "engineio":
            await peer.send_text(
                "42" + json.dumps(["heartbeat", {"view": rng.choice(("inbox", "feed", "cart"))}])
            )
        else:
            rid += 1
            method = "ping" if args.mode == "ticker" else "eth_blockNumber"
            await peer.send_json({"jsonrpc": "2.0", "id": rid, "method": method})
    await peer.close(1000)
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
        await asyncio.wait_for(receiver, timeout=3)
    receiver.cancel()
    await hang_up(writer)
    tally.extra.update(mode=args.mode, opcodes=opcodes, received_kinds=received_kinds)
    emit(tally.summary("websocket"))


async def _type_command(peer: Peer, rng: random.Random, deadline: float) -> None:
    """Type one command a key per frame at human speed (with the odd correction), then Enter."""
    for ch in rng.choice(COMMANDS):
        await asyncio.sleep(max(0.03, rng.gauss(0.14, 0.06)))
        await peer.send(OP_BINARY, TTY_INPUT + ch.encode())
        if rng.random() < 0.04:  # a typo and its backspace
            await asyncio.sleep(max(0.05, rng.gauss(0.3, 0.1)))
            await peer.send(OP_BINARY, TTY_INPUT + b"\x7f")
            await peer.send(OP_BINARY, TTY_INPUT + ch.encode())
        if time.monotonic() > deadline:
            break
    await asyncio.sleep(max(0.05, rng.gauss(0.3, 0.1)))
    await peer.send(OP_BINARY, TTY_INPUT + b"\r")


def client(argv: Sequence[str]) -> int:
    p = client_parser("websocket client with periodic small messages", 8080)
    p.add_argument("--mode", choices=MODES, default="chat")
    p.add_argument("--interval", type=float, default=5.0, help="mean seconds between sends")
    p.add_argument("--jitter", type=float, default=0.4)
    args = p.parse_args(argv)
    return run_async(lambda: run_client(args))


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("websocket", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
