"""MQTT 3.1.1: a small broker and an IoT-sensor client (telemetry, commands, PINGREQ keepalive).

An IoT device holds one TCP (or TLS, 8883) connection to its broker for days, publishes a
small JSON reading every few seconds, and sends a 2-byte PINGREQ whenever it has been quiet
for its keepalive period: long-lived, periodic, small, JSON inside, and entirely benign. The
broker routes PUBLISH to matching subscriptions (`+` and `#` wildcards), acknowledges QoS 1,
and pushes its own periodic announcements so traffic flows both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

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

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 8: "SUBSCRIBE", 9: "SUBACK",
         12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT"}  # fmt: skip


class MqttError(ValueError):
    """A packet that breaks MQTT 3.1.1."""


@dataclass(frozen=True, slots=True)
class Packet:
    type: int
    flags: int
    body: bytes


def encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(ptype: int, flags: int, body: bytes = b"") -> bytes:
    return bytes([(ptype << 4) | flags]) + encode_length(len(body)) + body


def mstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


async def read_packet(reader: asyncio.StreamReader) -> Packet:
    first = (await reader.readexactly(1))[0]
    n, mult = 0, 1
    for _ in range(4):
        b = (await reader.readexactly(1))[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    else:
        raise MqttError("remaining length longer than 4 bytes")
    return Packet(first >> 4, first & 0xF, await reader.readexactly(n))


def connect_packet(client_id: str, keepalive: int) -> bytes:
    var = mstr("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive)  # level 4, clean session
    return packet(CONNECT, 0, var + mstr(client_id))


def publish_packet(topic: str, payload: bytes, qos: int = 0, pid: int = 0) -> bytes:
    body = mstr(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return packet(PUBLISH, qos << 1, body)


def parse_publish(p: Packet) -> tuple[str, int, bytes]:
    (tlen,) = struct.unpack_from("!H", p.body)
    topic = p.body[2 : 2 + tlen].decode()
    pos = 2 + tlen
    qos = (p.flags >> 1) & 3
    pid = 0
    if qos:
        (pid,) = struct.unpack_from("!H", p.body, pos)
        pos += 2
    return topic, pid, p.body[pos:]


def topic_matches(pattern: str, topic: str) -> bool:
    pp, tt = pattern.split("/"), topic.split("/")
    for i, part in enumerate(pp):
        if part == "#":
            return True
        if i >= len(tt) or (part != "+" and part != tt[i]):
            return False
    return len(pp) == len(tt)


class Broker:
    def __init__(self, interval: float, seed: int) -> None:
        self.interval, self.rng = interval, random.Random(seed)
        self.subs: dict[asyncio.StreamWriter, list[str]] = {}

    def route(self, topic: str, payload: bytes) -> None:
        for w, patterns in list(self.subs.items()):
            if any(topic_matches(p, topic) for p in patterns) and not w.is_closing():
                w.write(publish_packet(topic, payload))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await asyncio.wait_for(read_packet(reader), timeout=10)
        if first.type != CONNECT or first.body[:6] != mstr("MQTT"):
            raise MqttError("first packet is not an MQTT 3.1.1 CONNECT")
        (keepalive,) = struct.unpack_from("!H", first.body, 8)
        writer.write(packet(CONNACK, 0, b"\x00\x00"))
        self.subs[writer] = []
        announcer = peer_task(self._announce(writer))
        try:
            while True:
                # The spec lets the broker drop a client silent for 1.5 keepalive periods.
                p = await asyncio.wait_for(read_packet(reader), timeout=keepalive * 1.5 or None)
                if p.type == PINGREQ:
                    writer.write(packet(PINGRESP, 0))
                elif p.type == SUBSCRIBE:
                    pid = p.body[:2]
                    pos, granted = 2, []
                    while pos < len(p.body):
                        (tlen,) = struct.unpack_from("!H", p.body, pos)
                        self.subs[writer].append(p.body[pos + 2 : pos + 2 + tlen].decode())
                        granted.append(min(p.body[pos + 2 + tlen], 1))
                        pos += 3 + tlen
                    writer.write(packet(SUBACK, 0, pid + bytes(granted)))
                elif p.type == PUBLISH:
                    topic, pid, payload = parse_publish(p)
                    if (p.flags >> 1) & 3:
                        writer.write(packet(PUBACK, 0, struct.pack("!H", pid)))
                    self.route(topic, payload)
                elif p.type == DISCONNECT:
                    return
                await writer.drain()
        finally:
            announcer.cancel()
            self.subs.pop(writer, None)

    async def _announce(self, writer: asyncio.StreamWriter) -> None:
        rng = random.Random(self.rng.random())
        while True:
            await asyncio.sleep(jittered(rng, self.interval, 0.5))
            ids = [p.split("/")[1] for p in self.subs.get(writer, []) if p.startswith("devices/")]
            if ids and rng.random() < 0.5:
                topic = f"devices/{ids[0]}/cmd"
                body = {
                    "cmd": rng.choice(("report", "set_interval", "blink")),
                    "seq": rng.randint(1, 9999),
                }
            else:
                topic = "alerts/system"
                body = {"level": "info", "msg": "broker heartbeat", "clients": len(self.subs),
                        "ts": int(time.time())}  # fmt: skip
            self.route(topic, json.dumps(body, separators=(",", ":")).encode())
            await writer.drain()


def serve(argv: Sequence[str]) -> int:
    p = server_parser("MQTT 3.1.1 broker", 1883)
    p.add_argument(
        "--interval", type=float, default=20.0, help="mean seconds between broker pushes"
    )
    args = p.parse_args(argv)
    tls = server_tls(args)
    broker = Broker(args.interval, args.seed)
    return run_async(lambda: serve_tcp(broker.handle, args.bind, args.port, tls, "mqtt"))


async def run_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    tally = Tally(extra={"packets": {}, "pings": 0})
    t0 = time.monotonic()
    reader, writer = await open_tcp(args, tally)
    device = f"sensor-{rng.randbytes(3).hex()}"
    last_sent = [time.monotonic()]

    async def send(data: bytes, app: bool = True) -> None:
        writer.write(data)
        await writer.drain()
        last_sent[0] = time.monotonic()
        if app:
            tally.record_send(t0, len(data))
        else:
            tally.bytes_sent += len(data)

    await send(connect_packet(device, args.keepalive), app=False)
    ack = await asyncio.wait_for(read_packet(reader), timeout=10)
    if ack.type != CONNACK or ack.body[1:2] != b"\x00":
        raise MqttError(f"broker refused the connection: {ack}")
    await send(packet(SUBSCRIBE, 0x2, struct.pack("!H", 1) + mstr(f"devices/{device}/cmd") + b"\x01"
                      + mstr("alerts/#") + b"\x00"), app=False)  # fmt: skip

    async def receive() -> None:
        while True:
            p = await read_packet(reader)
            tally.bytes_received += 1 + len(encode_length(len(p.body))) + len(p.body)
            tally.received += 1
            name = NAMES.get(p.type, str(p.type))
            tally.extra["packets"][name] = tally.extra["packets"].get(name, 0) + 1
            if p.type == PUBLISH:
                json.loads(parse_publish(p)[2])  # every payload here is JSON: prove it

    async def keepalive() -> None:
        while True:
            await asyncio.sleep(0.2)
            if time.monotonic() - last_sent[0] >= args.keepalive:
                await send(packet(PINGREQ, 0), app=False)
                tally.extra["pings"] += 1

    receiver = asyncio.create_task(receive())
    pinger = asyncio.create_task(keepalive())
    deadline = t0 + args.duration
    pid, temp = 1, rng.uniform(18, 24)
    async for _ in paced(deadline, lambda: jittered(rng, args.interval, 0.1), receiver.done):
        temp += rng.gauss(0, 0.1)
        reading = {"device": device, "temp_c": round(temp, 2), "rh": rng.randint(30, 60),
                   "battery": rng.randint(60, 100), "ts": int(time.time())}  # fmt: skip
        qos = 1 if rng.random() < 0.3 else 0
        pid = pid % 65535 + 1
        await send(publish_packet(f"telemetry/{device}", json.dumps(reading).encode(), qos, pid))
    pinger.cancel()
    await send(packet(DISCONNECT, 0), app=False)
    await asyncio.sleep(0.05)
    receiver.cancel()
    with contextlib.suppress(asyncio.CancelledError, asyncio.IncompleteReadError):
        await receiver
    await hang_up(writer)
    emit(tally.summary("mqtt"))


def client(argv: Sequence[str]) -> int:
    p = client_parser("MQTT sensor: telemetry publisher with keepalive", 1883)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between readings")
    p.add_argument("--keepalive", type=int, default=60, help="MQTT keepalive, seconds")
    args = p.parse_args(argv)
    return run_async(lambda: run_client(args))


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("mqtt", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
