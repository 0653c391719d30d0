"""Synthetic PacketBatches for flow tests: packets as small tuples, no capture file needed."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from fractions import Fraction

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
    vlan: int = 0

    @property
    def payload_bytes(self) -> bytes:
        if isinstance(self.payload, int):
            return bytes((i * 7 + 3) % 256 for i in range(self.payload))
        return self.payload

    @property
    def ts_ns(self) -> int:
        return round(Fraction(self.t) * NS)  # exact: no float error at epoch scale

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
        b.vlan[i] = p.vlan
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


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(p: P) -> bytes:
    """A real Ethernet frame for `p` (valid IPv4 header checksum), for test-made captures."""
    import struct

    pay = p.payload_bytes
    v6 = ":" in p.src
    if p.status == Status.FRAGMENT:
        l4 = pay
    elif p.proto == 6:
        l4 = (
            struct.pack("!HHIIBBHHH", p.sport, p.dport, p.seq, 0, 5 << 4, p.flag_bits, 65535, 0, 0)
            + pay
        )
    elif p.proto == 17:
        l4 = struct.pack("!HHHH", p.sport, p.dport, 8 + len(pay), 0) + pay
    elif p.proto in (1, 58):
        l4 = struct.pack("!BBHI", p.sport, p.dport, 0, 0x12340001) + pay
    else:
        l4 = pay
    l4 = l4 + bytes(p.extra_len)
    src = ipaddress.ip_address(p.src).packed
    dst = ipaddress.ip_address(p.dst).packed
    if v6:
        if p.status == Status.FRAGMENT or p.more_frags:
            fh = struct.pack("!BBHI", p.proto, 0, (p.frag_off << 3) | int(p.more_frags), p.ip_id)
            ip = struct.pack("!IHBB", 6 << 28, len(fh) + len(l4), 44, 64) + src + dst + fh
        else:
            ip = struct.pack("!IHBB", 6 << 28, len(l4), p.proto, 64) + src + dst
        et = 0x86DD
    else:
        fl = (p.frag_off & 0x1FFF) | (0x2000 if p.more_frags else 0)
        hdr = (
            struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), p.ip_id & 0xFFFF, fl, 64, p.proto, 0)
            + src
            + dst
        )
        ip = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
        et = 0x0800
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + struct.pack("!H", et) + ip + l4


def write_pcap(path, pkts: list[P]) -> None:
    """Classic pcap, microsecond timestamps, Ethernet link type."""
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for p in pkts:
            fr = frame(p)
            us = round(p.t * 1_000_000)
            f.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(fr), len(fr)))
            f.write(fr)
