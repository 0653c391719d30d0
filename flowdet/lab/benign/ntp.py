"""NTPv4 client and server (RFC 5905 packet format, 48-byte headers, modes 3 and 4).

Time sync is the textbook periodic flow: a 48-byte request and a 48-byte reply every poll
interval, for as long as the host is up. With ntpd-style source port 123 all polls are one
endless UDP flow with perfectly small, regular packets, the timing signature a naive detector
would pin on a miner's keepalive. The server answers like a stratum-2 server (origin timestamp
echoed, receive and transmit stamped); the client checks the echo and computes offset and
delay like a real one, so a broken exchange shows up in its summary.
"""

from __future__ import annotations

import argparse
import math
import random
import socket
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
    jittered,
    run_async,
    serve_udp,
    udp_server_parser,
)

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
PACKET = struct.Struct("!BBbbII4sQQQQ")  # 48 bytes
MODE_CLIENT, MODE_SERVER = 3, 4
assert PACKET.size == 48


@dataclass(frozen=True, slots=True)
class NtpPacket:
    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay: int  # NTP short format (16.16)
    root_dispersion: int
    refid: bytes
    reference: int  # NTP timestamps, 32.32 fixed point
    origin: int
    receive: int
    transmit: int

    def encode(self) -> bytes:
        first = (self.leap << 6) | (self.version << 3) | self.mode
        return PACKET.pack(
            first, self.stratum, self.poll, self.precision, self.root_delay,
            self.root_dispersion, self.refid, self.reference, self.origin, self.receive,
            self.transmit,
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> NtpPacket:
        if len(data) < PACKET.size:
            raise ValueError(f"{len(data)} bytes is shorter than an NTP header (48)")
        f, st, poll, prec, rd, rdisp, refid, ref, org, rec, xmt = PACKET.unpack_from(data)
        return cls(
            f >> 6, (f >> 3) & 7, f & 7, st, poll, prec, rd, rdisp, refid, ref, org, rec, xmt
        )


def to_ntp(t: float) -> int:
    secs = int(t) + NTP_EPOCH_OFFSET
    return ((secs & 0xFFFFFFFF) << 32) | int((t % 1.0) * (1 << 32))


def from_ntp(v: int) -> float:
    return (v >> 32) - NTP_EPOCH_OFFSET + (v & 0xFFFFFFFF) / (1 << 32)


def request(poll: int, now: float | None = None) -> NtpPacket:
    return NtpPacket(0, 4, MODE_CLIENT, 0, poll, -20, 0, 0, b"\0\0\0\0", 0, 0, 0,
                     to_ntp(time.time() if now is None else now))  # fmt: skip


def reply(req: NtpPacket, received: float, refid: bytes) -> NtpPacket:
    return NtpPacket(
        0, req.version, MODE_SERVER, 2, max(req.poll, 4), -23, 0x0000_0A3D, 0x0000_1F40,
        refid, to_ntp(received - 40.0), req.transmit, to_ntp(received), to_ntp(time.time()),
    )  # fmt: skip


def answer(data: bytes) -> bytes | None:
    """The server's reply to one datagram, stamped on arrival; None for anything but a client
    request (servers stay silent to those)."""
    t = time.time()
    try:
        req = NtpPacket.decode(data)
    except ValueError:
        return None
    if req.mode != MODE_CLIENT or not 1 <= req.version <= 4:
        return None
    return reply(req, t, bytes([192, 0, 2, 123])).encode()


def _exchange(s: socket.socket, poll: int, tally: Tally, t0: float) -> None:
    pkt = request(poll)
    s.send(pkt.encode())
    tally.record_send(t0, 48)
    t1 = from_ntp(pkt.transmit)
    s.settimeout(2.0)
    try:
        data = s.recv(512)
    except (TimeoutError, ConnectionRefusedError):
        tally.errors += 1
        return
    t4 = time.time()
    tally.bytes_received += len(data)
    resp = NtpPacket.decode(data)
    if resp.mode != MODE_SERVER or resp.origin != pkt.transmit:
        tally.errors += 1  # bogus or replayed: a real client discards it
        return
    tally.received += 1
    t2, t3 = from_ntp(resp.receive), from_ntp(resp.transmit)
    tally.extra["offsets"].append(round(((t2 - t1) + (t3 - t4)) / 2, 6))
    tally.extra["delays"].append(round((t4 - t1) - (t3 - t2), 6))
    tally.extra["stratum"] = resp.stratum


def run_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    tally = Tally(extra={"offsets": [], "delays": [], "source_port": args.source_port})
    t0 = time.monotonic()
    deadline = t0 + args.duration
    poll = max(0, min(17, round(math.log2(max(args.interval, 1.0)))))
    family = socket.AF_INET6 if ":" in args.server else socket.AF_INET
    persistent: socket.socket | None = None
    if args.source_port:
        persistent = socket.socket(family, socket.SOCK_DGRAM)
        persistent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        persistent.bind((args.source_addr, args.source_port))
        persistent.connect((args.server, args.port))
        tally.connections = 1
    n = 0
    try:
        while True:
            if persistent is not None:
                _exchange(persistent, poll, tally, t0)
            else:  # chrony-style: a fresh ephemeral port per request
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.connect((args.server, args.port))
                    _exchange(s, poll, tally, t0)
                tally.connections += 1
            n += 1
            # iburst: the first few polls come quickly, then the regular interval.
            wait = args.interval / 8 if args.iburst and n < 4 else jittered(rng, args.interval, 0.1)
            if time.monotonic() + wait >= deadline:
                break
            time.sleep(wait)
    finally:
        if persistent is not None:
            persistent.close()
    emit(tally.summary("ntp"))


def serve(argv: Sequence[str]) -> int:
    args = udp_server_parser("NTPv4 server (stratum 2)", 123).parse_args(argv)
    return run_async(lambda: serve_udp(answer, args.bind, args.port, "ntp"))


def client(argv: Sequence[str]) -> int:
    p = client_parser("NTPv4 client polling at an interval", 123)
    p.add_argument("--interval", type=float, default=64.0, help="seconds between polls")
    p.add_argument("--source-port", type=int, default=0, help="123 = ntpd style, 0 = chrony")
    p.add_argument("--source-addr", default="", help="local address for --source-port")
    p.add_argument("--iburst", action="store_true")
    args = p.parse_args(argv)
    try:
        run_client(args)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"ntp client: {exc}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("ntp", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
