"""A small authoritative-style DNS responder and a stub-resolver client (RFC 1035 wire format).

DNS is the background of every real host capture: many short UDP flows, one per lookup, each a
query and an answer of a few dozen bytes, in bursts when a page or an app starts and quiet in
between. The client behaves like glibc's stub resolver: a fresh socket (ephemeral port) per
lookup, A and AAAA queries sent back to back on it, a 1 s retry. The server answers A/AAAA for
a synthetic zone (with CNAMEs for `www.` names and name compression), NXDOMAIN with an SOA for
unknown names, and NOTIMP for other opcodes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

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

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_AAAA, TYPE_OPT = 1, 2, 5, 6, 28, 41
CLASS_IN = 1
RCODE_OK, RCODE_FORMERR, RCODE_NXDOMAIN, RCODE_NOTIMP = 0, 1, 3, 4

# Names the lab "knows"; lookups of anything else under these zones get NXDOMAIN.
ZONES = ("example.com", "example.net", "example.org", "corp.example")
HOSTS = (
    "www.example.com", "example.com", "cdn.example.net", "static.example.net",
    "api.example.org", "auth.example.org", "mail.example.com", "chat.example.com",
    "ticker.example.net", "metrics.corp.example", "db.corp.example", "git.corp.example",
    "ntp.corp.example", "updates.example.org", "img.example.net", "telemetry.example.com",
)  # fmt: skip
MISSES = ("wpad.corp.example", "printer.corp.example", "old-api.example.org")


class DnsFormatError(ValueError):
    """A message that is not valid DNS wire format."""


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes

    def value(self) -> str:
        """rdata in presentation form for the types this lab uses."""
        if self.rtype == TYPE_A:
            return str(ipaddress.IPv4Address(self.rdata))
        if self.rtype == TYPE_AAAA:
            return str(ipaddress.IPv6Address(self.rdata))
        return self.rdata.hex()


@dataclass(slots=True)
class Message:
    id: int
    flags: int
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF


def encode_name(name: str, offsets: dict[str, int] | None = None, at: int = 0) -> bytes:
    """Labels of `name`, compressed against `offsets` (suffix -> message offset) when given."""
    out = bytearray()
    labels = [x for x in name.rstrip(".").split(".") if x]
    for i in range(len(labels)):
        suffix = ".".join(labels[i:]).lower()
        if offsets is not None and suffix in offsets:
            out += struct.pack("!H", 0xC000 | offsets[suffix])
            return bytes(out)
        if offsets is not None and at + len(out) < 0x3FFF:
            offsets[suffix] = at + len(out)
        raw = labels[i].encode("idna")
        if not 0 < len(raw) < 64:
            raise DnsFormatError(f"label {labels[i]!r} is not 1..63 bytes")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def decode_name(buf: bytes, pos: int) -> tuple[str, int]:
    """(name, position after it), following compression pointers with a loop guard."""
    labels: list[str] = []
    end = -1
    for _ in range(128):
        if pos >= len(buf):
            raise DnsFormatError("name runs past the end of the message")
        n = buf[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(buf):
                raise DnsFormatError("truncated compression pointer")
            if end < 0:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | buf[pos + 1]
            continue
        if n & 0xC0:
            raise DnsFormatError("unsupported label type")
        if n == 0:
            return ".".join(labels) or ".", (end if end >= 0 else pos + 1)
        labels.append(buf[pos + 1 : pos + 1 + n].decode("ascii", errors="replace"))
        pos += 1 + n
    raise DnsFormatError("compression pointer loop")


def encode_message(msg: Message) -> bytes:
    out = bytearray(
        struct.pack(
            "!HHHHHH", msg.id, msg.flags, len(msg.questions), len(msg.answers),
            len(msg.authority), len(msg.additional),
        )
    )  # fmt: skip
    offsets: dict[str, int] = {}
    for q in msg.questions:
        out += encode_name(q.name, offsets, len(out)) + struct.pack("!HH", q.qtype, q.qclass)
    for rr in (*msg.answers, *msg.authority, *msg.additional):
        out += encode_name(rr.name, offsets, len(out))
        rdata = rr.rdata
        if rr.rtype == TYPE_CNAME:  # rdata starts after type, class, TTL and length
            rdata = encode_name(rr.rdata.decode(), offsets, len(out) + 10)
        out += struct.pack("!HHIH", rr.rtype, rr.rclass, rr.ttl, len(rdata)) + rdata
    return bytes(out)


def decode_message(buf: bytes) -> Message:
    if len(buf) < 12:
        raise DnsFormatError(f"{len(buf)} bytes is shorter than a DNS header")
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", buf)
    msg = Message(qid, flags)
    pos = 12
    for _ in range(qd):
        name, pos = decode_name(buf, pos)
        if pos + 4 > len(buf):
            raise DnsFormatError("truncated question")
        qtype, qclass = struct.unpack_from("!HH", buf, pos)
        msg.questions.append(Question(name, qtype, qclass))
        pos += 4
    for section, count in ((msg.answers, an), (msg.authority, ns), (msg.additional, ar)):
        for _ in range(count):
            name, pos = decode_name(buf, pos)
            if pos + 10 > len(buf):
                raise DnsFormatError("truncated resource record")
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", buf, pos)
            pos += 10
            if pos + rdlen > len(buf):
                raise DnsFormatError("resource data runs past the end")
            rdata = buf[pos : pos + rdlen]
            if rtype == TYPE_CNAME:
                rdata = decode_name(buf, pos)[0].encode()
            section.append(Record(name, rtype, rclass, ttl, rdata))
            pos += rdlen
    return msg


def query(qid: int, name: str, qtype: int) -> bytes:
    """A recursive query as a stub resolver sends it (RD set, one question)."""
    return encode_message(Message(qid, 0x0100, [Question(name, qtype)]))


# ---------------------------------------------------------------- server


def _addresses(name: str) -> tuple[bytes, bytes, int]:
    """Stable addresses per name (documentation ranges) and a plausible TTL."""
    d = hashlib.sha256(name.lower().encode()).digest()
    v4 = bytes([198, 51, 100, d[0] % 254 + 1])  # TEST-NET-2
    v6 = bytes.fromhex("20010db8") + d[1:13]  # 2001:db8::/32
    ttl = (60, 300, 600, 3600)[d[14] % 4]
    return v4, v6, ttl


def _soa(zone: str) -> Record:
    mname = encode_name(f"ns1.{zone}")
    rname = encode_name(f"hostmaster.{zone}")
    times = struct.pack("!IIIII", 2026112701, 7200, 3600, 1209600, 300)
    return Record(zone, TYPE_SOA, CLASS_IN, 300, mname + rname + times)


def answer(request: bytes, known: frozenset[str] = frozenset(HOSTS)) -> bytes | None:
    """The response to one query datagram, or None for datagrams that are not queries."""
    try:
        req = decode_message(request)
    except DnsFormatError:
        if len(request) < 12:
            return None
        return struct.pack("!HHHHHH", struct.unpack_from("!H", request)[0], 0x8001, 0, 0, 0, 0)
    if req.is_response:
        return None
    flags = 0x8000 | (req.flags & 0x0100) | 0x0080 | 0x0400  # QR, RD copied, RA, AA
    resp = Message(req.id, flags, req.questions[:1])
    if req.opcode != 0:
        resp.flags = (resp.flags & ~0xF) | RCODE_NOTIMP
        return encode_message(resp)
    if len(req.questions) != 1:
        resp.flags |= RCODE_FORMERR
        return encode_message(resp)
    q = req.questions[0]
    name = q.name.lower().rstrip(".")
    zone = next((z for z in ZONES if name == z or name.endswith("." + z)), ZONES[0])
    target = name
    if name not in known:
        resp.flags |= RCODE_NXDOMAIN
        resp.authority.append(_soa(zone))
        return encode_message(resp)
    if name.startswith("www.") and name[4:] in known:
        target = name[4:]
        resp.answers.append(Record(q.name, TYPE_CNAME, CLASS_IN, 3600, target.encode()))
    v4, v6, ttl = _addresses(target)
    if q.qtype == TYPE_A:
        resp.answers.append(Record(target, TYPE_A, CLASS_IN, ttl, v4))
    elif q.qtype == TYPE_AAAA:
        resp.answers.append(Record(target, TYPE_AAAA, CLASS_IN, ttl, v6))
    if not any(r.rtype in (TYPE_A, TYPE_AAAA) for r in resp.answers):
        resp.authority.append(_soa(zone))  # NODATA
    return encode_message(resp)


# ---------------------------------------------------------------- client


def lookup(server: str, port: int, name: str, rng: random.Random, tally: Tally, t0: float) -> None:
    """getaddrinfo-style: A and AAAA back to back on one fresh socket, retry once after 1 s."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((server, port))
        pending = {rng.getrandbits(16): TYPE_A, rng.getrandbits(16): TYPE_AAAA}
        for attempt in range(2):
            for qid, qtype in pending.items():
                pkt = query(qid, name, qtype)
                s.send(pkt)
                tally.record_send(t0, len(pkt))
            end = time.monotonic() + 1.0
            while pending and (left := end - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    data = s.recv(4096)
                except (TimeoutError, ConnectionRefusedError):
                    break
                tally.bytes_received += len(data)
                try:
                    msg = decode_message(data)
                except DnsFormatError:
                    tally.errors += 1
                    continue
                if msg.id not in pending or not msg.questions or msg.questions[0].name != name:
                    tally.errors += 1  # not ours: a real stub would ignore it too
                    continue
                pending.pop(msg.id)
                tally.received += 1
                key = "nxdomain" if msg.rcode == RCODE_NXDOMAIN else f"rcode{msg.rcode}"
                tally.extra[key] = tally.extra.get(key, 0) + 1
                for rr in msg.answers:
                    if rr.rtype in (TYPE_A, TYPE_AAAA):
                        tally.extra["addresses"].add(rr.value())
            if not pending:
                return
            tally.extra["retries"] += attempt == 0
        tally.errors += len(pending)


def run_client(args) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(args.seed)
    tally = Tally(extra={"addresses": set(), "retries": 0, "lookups": 0})
    t0 = time.monotonic()
    deadline = t0 + args.duration
    names = list(HOSTS)
    while time.monotonic() < deadline:
        # One "page load" or app wake-up: a burst of lookups a few ms apart.
        burst = rng.sample(names, rng.randint(2, 6))
        if rng.random() < 0.2:
            burst.append(rng.choice(MISSES))
        for name in burst:
            lookup(args.server, args.port, name, rng, tally, t0)
            tally.extra["lookups"] += 1
            time.sleep(rng.uniform(0.002, 0.05))
        tally.connections += len(burst)
        time.sleep(min(max(0.0, deadline - time.monotonic()), jittered(rng, args.interval, 0.8)))
    tally.extra["addresses"] = sorted(tally.extra["addresses"])
    emit(tally.summary("dns"))


def serve(argv: Sequence[str]) -> int:
    args = udp_server_parser("UDP DNS responder for the lab zone", 53).parse_args(argv)
    return run_async(lambda: serve_udp(answer, args.bind, args.port, "dns"))


def client(argv: Sequence[str]) -> int:
    p = client_parser("stub-resolver lookups in bursts", 53)
    p.add_argument("--interval", type=float, default=5.0, help="mean seconds between bursts")
    args = p.parse_args(argv)
    try:
        run_client(args)
    except OSError as exc:
        sys.stderr.write(f"dns client: {exc}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("dns", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
