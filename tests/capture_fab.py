"""Builders for small captures and packets, written with struct straight from the specs.

They are independent of flowdet's reader so the tests check the reader against the file
formats rather than against itself.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_SRC = bytes.fromhex("020000000001")
ETH_DST = bytes.fromhex("020000000002")


def ip4(a: str) -> bytes:
    return ipaddress.IPv4Address(a).packed


def ip6(a: str) -> bytes:
    return ipaddress.IPv6Address(a).packed


def v4_lo(a: str) -> int:
    """The src_lo/dst_lo value of an IPv4 address (IPv4-mapped IPv6)."""
    return 0x0000FFFF00000000 | int(ipaddress.IPv4Address(a))


def v6_hi_lo(a: str) -> tuple[int, int]:
    v = int(ipaddress.IPv6Address(a))
    return v >> 64, v & ((1 << 64) - 1)


def tcp(
    sport: int,
    dport: int,
    payload: bytes = b"",
    seq: int = 1000,
    ack: int = 2000,
    flags: int = 0x18,
    win: int = 65535,
    options: bytes = b"",
) -> bytes:
    assert len(options) % 4 == 0
    doff = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, win, 0, 0)
    return hdr + options + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(typ: int, code: int, payload: bytes = b"", rest: bytes = b"\x00\x01\x00\x02") -> bytes:
    return struct.pack("!BBH", typ, code, 0) + rest + payload


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    ident: int = 0x1234,
    ttl: int = 64,
    options: bytes = b"",
    frag_off: int = 0,
    mf: bool = False,
    df: bool = False,
    total_len: int | None = None,
) -> bytes:
    assert len(options) % 4 == 0
    ihl = 5 + len(options) // 4
    tl = ihl * 4 + len(payload) if total_len is None else total_len
    flags = (0x2000 if mf else 0) | (0x4000 if df else 0) | frag_off
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, tl, ident, flags, ttl, proto, 0, ip4(src), ip4(dst)
    )
    return hdr + options + payload


def ipv6(
    src: str,
    dst: str,
    nh: int,
    payload: bytes,
    hlim: int = 64,
    plen: int | None = None,
) -> bytes:
    pl = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, pl, nh, hlim, ip6(src), ip6(dst)) + payload


def v6_ext(nh: int, body_len8: int = 0) -> bytes:
    """A generic extension header (hop-by-hop, routing, destination options): 8*(1+n) bytes."""
    return bytes([nh, body_len8]) + bytes(6 + 8 * body_len8)


def v6_frag(nh: int, offset8: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", nh, 0, (offset8 << 3) | (1 if more else 0), ident)


def v6_ah(nh: int, words: int = 4) -> bytes:
    """An authentication header of (words + 2) * 4 bytes."""
    return bytes([nh, words]) + bytes((words + 2) * 4 - 2)


def eth(payload: bytes, ethertype: int = 0x0800, vlans: tuple[tuple[int, int], ...] = ()) -> bytes:
    """Ethernet frame; `vlans` is a stack of (TPID, VID) outermost first."""
    out = ETH_DST + ETH_SRC
    for tpid, vid in vlans:
        out += struct.pack("!HH", tpid, vid)
    return out + struct.pack("!H", ethertype) + payload


def sll(payload: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, ETH_SRC + b"\0\0", proto) + payload


def sll2(payload: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, 2, 1, 0, 6, ETH_SRC + b"\0\0") + payload


# -- classic pcap ----------------------------------------------------------------------------


def pcap(
    records: list[tuple[int, bytes] | tuple[int, bytes, int]],
    linktype: int = 1,
    big: bool = False,
    nano: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """records: (ts_ns, data[, wirelen])."""
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for rec in records:
        ts, data = rec[0], rec[1]
        wire = rec[2] if len(rec) > 2 else len(data)
        frac = ts % 1_000_000_000 if nano else (ts % 1_000_000_000) // 1000
        out += struct.pack(e + "IIII", ts // 1_000_000_000, frac, len(data), wire) + data
    return out


# -- pcapng ----------------------------------------------------------------------------------


def _pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def block(btype: int, body: bytes, big: bool = False) -> bytes:
    e = ">" if big else "<"
    body = _pad4(body)
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def option(code: int, value: bytes, big: bool = False) -> bytes:
    e = ">" if big else "<"
    return struct.pack(e + "HH", code, len(value)) + _pad4(value)


def shb(big: bool = False) -> bytes:
    e = ">" if big else "<"
    return block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), big)


def idb(
    linktype: int,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    big: bool = False,
) -> bytes:
    e = ">" if big else "<"
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), big)
    if tsoffset is not None:
        opts += option(14, struct.pack(e + "q", tsoffset), big)
    if opts:
        opts += option(0, b"", big)
    return block(1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts, big)


def epb(
    iface: int, ts_units: int, data: bytes, wire: int | None = None, big: bool = False
) -> bytes:
    e = ">" if big else "<"
    w = len(data) if wire is None else wire
    hdr = struct.pack(e + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), w)
    return block(6, hdr + data, big)


def opb(iface: int, ts_units: int, data: bytes, big: bool = False) -> bytes:
    e = ">" if big else "<"
    hdr = struct.pack(
        e + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data)
    )
    return block(2, hdr + data, big)


def spb(data: bytes, wire: int | None = None, big: bool = False) -> bytes:
    e = ">" if big else "<"
    return block(3, struct.pack(e + "I", len(data) if wire is None else wire) + data, big)


def tcp4_frame(n: int = 0, payload: bytes = b"hello") -> bytes:
    """A distinct Ethernet/IPv4/TCP frame per n (source port 10000 + n)."""
    return eth(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(10000 + n, 80, payload, seq=n)))
