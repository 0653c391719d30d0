"""Synthetic PacketBatches for flow tests: packets as small tuples, no capture file needed."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from flowdet.capture.batch import PacketBatch, Status

FLAG_BITS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}
NS = 1_000_000_000


@dataclass
class P:
    """One packet: time in seconds, endpoints, protocol, TCP flags as letters, payload."""

    t: float
    src: str
    sport: int
    dst: str
    dport: int
    proto: int = 6
    flags: str = ""
    payload: bytes | int = b""
    status: int = Status.OK
    ip_id: int = 0
    frag_off: int = 0
    more_frags: bool = False
    seq: int = 0
    extra_len: int = 0  # IP bytes that are not payload beyond the fixed headers

    @property
    def payload_bytes(self) -> bytes:
        if isinstance(self.payload, int):
            return bytes((i * 7 + 3) % 256 for i in range(self.payload))
        return self.payload

    @property
    def ts_ns(self) -> int:
        return round(self.t * NS)

    @property
    def flag_bits(self) -> int:
        return sum(FLAG_BITS[c] for c in self.flags)

    @property
    def header_len(self) -> int:
        v6 = ":" in self.src
        l4 = {6: 20, 17: 8, 1: 8, 58: 8}.get(self.proto, 0)
        if self.status == Status.FRAGMENT:
            l4 = 0
        return (40 if v6 else 20) + l4 + self.extra_len

    @property
    def ip_len(self) -> int:
        return self.header_len + len(self.payload_bytes)


def _addr(a: str) -> tuple[int, int, int]:
    ip = ipaddress.ip_address(a)
    if ip.version == 4:
        v = 0xFFFF_0000_0000 | int(ip)
        return 4, 0, v
    v = int(ip)
    return 6, v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF


def make_batch(pkts: list[P]) -> PacketBatch:
    n = len(pkts)
    chunks = []
    off = 0
    b = PacketBatch.empty(n)
    for i, p in enumerate(pkts):
        eth = 14
        pay = p.payload_bytes
        rec = bytes(eth + p.header_len) + pay
        chunks.append(rec)
        b.ts_ns[i] = p.ts_ns
        b.caplen[i] = len(rec)
        b.wirelen[i] = len(rec)
        b.rec_off[i] = off
        off += len(rec)
        b.status[i] = p.status
        ver, shi, slo = _addr(p.src)
        _, dhi, dlo = _addr(p.dst)
        b.ip_version[i] = ver
        b.src_hi[i], b.src_lo[i], b.dst_hi[i], b.dst_lo[i] = shi, slo, dhi, dlo
        b.proto[i] = p.proto
        if p.status == Status.OK:
            b.sport[i] = p.sport
            b.dport[i] = p.dport
        b.ip_len[i] = p.ip_len
        b.l4_off[i] = eth + (40 if ver == 6 else 20)
        b.payload_off[i] = eth + p.header_len
        b.payload_len[i] = len(pay)
        b.tcp_flags[i] = p.flag_bits if p.proto == 6 else 0
        b.tcp_seq[i] = p.seq
        b.ip_id[i] = p.ip_id
        b.frag_off[i] = p.frag_off
        b.more_frags[i] = p.more_frags
        b.ttl[i] = 64
    b.data = np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()
    b.linktype[:] = 1
    return b


def tcp_session(
    t0: float,
    cli: str,
    cport: int,
    srv: str,
    sport: int,
    exchanges: list[tuple[int, int]],
    gap: float = 0.01,
) -> list[P]:
    """A full TCP session: handshake, (client bytes, server bytes) exchanges, FIN both ways."""
    out = [
        P(t0, cli, cport, srv, sport, flags="S"),
        P(t0 + gap, srv, sport, cli, cport, flags="SA"),
        P(t0 + 2 * gap, cli, cport, srv, sport, flags="A"),
    ]
    t = t0 + 2 * gap
    cseq, sseq = 1000, 5000
    for c, s in exchanges:
        if c:
            t += gap
            out.append(P(t, cli, cport, srv, sport, flags="PA", payload=c, seq=cseq))
            cseq += c
        if s:
            t += gap
            out.append(P(t, srv, sport, cli, cport, flags="PA", payload=s, seq=sseq))
            sseq += s
    t += gap
    out.append(P(t, cli, cport, srv, sport, flags="FA"))
    t += gap
    out.append(P(t, srv, sport, cli, cport, flags="FA"))
    t += gap
    out.append(P(t, cli, cport, srv, sport, flags="A"))
    return out
