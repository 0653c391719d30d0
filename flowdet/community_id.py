"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

The ID lets an analyst pivot from a flowdet record to the same flow in Zeek, Suricata,
Wireshark or Arkime by string comparison. Hash input, all big-endian: seed (2 bytes),
the smaller endpoint's address (4 bytes for IPv4, 16 for IPv6), the other address,
protocol (1 byte), a zero byte, then for TCP/UDP/SCTP/ICMP/ICMPv6 the two ports in the same
endpoint order. ICMP type/code map to "ports" as in Zeek (the COUNTERPART tables below,
which flow keys share), and one-way ICMP messages are never reordered.
Output: "1:" + base64(sha1(input)).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct

import numpy as np

_PORT_PROTOS = frozenset((1, 6, 17, 58, 132))

# Type -> counterpart type; types not listed are one-way (key = type, code; never swapped).
ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 17: 18, 18: 17}
ICMP6_COUNTERPART = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    130: 131,
    131: 130,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}


def icmp_ports(proto: int, icmp_type: int, code: int) -> tuple[int, int, bool]:
    """Scalar form: (sport, dport, one_way) for an ICMP (proto 1) / ICMPv6 (58) message."""
    table = ICMP4_COUNTERPART if proto == 1 else ICMP6_COUNTERPART
    if icmp_type in table:
        return icmp_type, table[icmp_type], False
    return icmp_type, code, True


def _hash(seed: int, a: bytes, b: bytes, proto: int, pa: int | None, pb: int | None) -> str:
    data = struct.pack("!H", seed) + a + b + struct.pack("BB", proto, 0)
    if pa is not None and pb is not None:
        data += struct.pack("!HH", pa, pb)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def community_id(
    saddr: str,
    daddr: str,
    proto: int,
    sport: int | None = None,
    dport: int | None = None,
    seed: int = 0,
) -> str:
    """Community ID of one packet's 5-tuple; for ICMP/ICMPv6 pass type as sport, code as dport."""
    sa = ipaddress.ip_address(saddr).packed
    da = ipaddress.ip_address(daddr).packed
    if len(sa) != len(da):
        raise ValueError("both addresses must be of the same family")
    one_way = False
    if proto in (1, 58) and sport is not None:
        sport, dport, one_way = icmp_ports(proto, sport, dport or 0)
    if proto not in _PORT_PROTOS:
        sport = dport = None
    p1 = sport or 0
    p2 = dport or 0
    if not one_way and (sa, p1) > (da, p2):
        sa, da, sport, dport = da, sa, dport, sport
    return _hash(seed, sa, da, proto, sport, dport)


def community_id_from_key(
    ip_version: int, a_hi: int, a_lo: int, b_hi: int, b_lo: int, pp: int, seed: int = 0
) -> str:
    """Community ID of a canonical flow key (flowdet.flows.keys: already ordered and mapped)."""
    if ip_version == 4:
        a = (a_lo & 0xFFFFFFFF).to_bytes(4, "big")
        b = (b_lo & 0xFFFFFFFF).to_bytes(4, "big")
    else:
        a = a_hi.to_bytes(8, "big") + a_lo.to_bytes(8, "big")
        b = b_hi.to_bytes(8, "big") + b_lo.to_bytes(8, "big")
    proto = pp & 0xFF
    if proto in _PORT_PROTOS:
        return _hash(seed, a, b, proto, (pp >> 24) & 0xFFFF, (pp >> 8) & 0xFFFF)
    return _hash(seed, a, b, proto, None, None)


def _be(values: np.ndarray, dtype: str) -> np.ndarray:
    """Big-endian bytes of each value: uint8 [n, itemsize]."""
    v = np.ascontiguousarray(values.astype(dtype))
    return v.view(np.uint8).reshape(v.shape[0], -1)


def community_ids_from_keys(ip_version: np.ndarray, key: np.ndarray, seed: int = 0) -> list[str]:
    """community_id_from_key for many keys (rows a_hi, a_lo, b_hi, b_lo, pp) at once.

    The hash inputs are built as byte matrices with numpy and the digests base64-encoded in
    one call; only the SHA-1 itself runs per flow. Same strings as the scalar function.
    """
    n = key.shape[0]
    out = np.empty(n, dtype=object)
    ver = np.asarray(ip_version)
    pp = key[:, 4]
    proto = (pp & np.uint64(0xFF)).astype(np.uint8)
    ports = np.isin(proto, np.array(sorted(_PORT_PROTOS), dtype=np.uint8))
    for v4 in (True, False):
        for with_ports in (True, False):
            sel = np.flatnonzero(((ver == 4) == v4) & (ports == with_ports))
            if not sel.size:
                continue
            k = key[sel]
            parts = [_be(np.full(sel.size, seed), ">u2")]
            if v4:
                parts += [_be(k[:, 1] & np.uint64(0xFFFFFFFF), ">u4")]
                parts += [_be(k[:, 3] & np.uint64(0xFFFFFFFF), ">u4")]
            else:
                parts += [_be(k[:, c], ">u8") for c in range(4)]
            parts.append(proto[sel].reshape(-1, 1))
            parts.append(np.zeros((sel.size, 1), np.uint8))
            if with_ports:
                parts.append(_be((k[:, 4] >> np.uint64(24)) & np.uint64(0xFFFF), ">u2"))
                parts.append(_be((k[:, 4] >> np.uint64(8)) & np.uint64(0xFFFF), ">u2"))
            rows = np.hstack(parts)
            w = rows.shape[1]
            buf = rows.tobytes()
            sha1 = hashlib.sha1
            digests = b"".join(
                [sha1(buf[i : i + w]).digest() + b"\0" for i in range(0, sel.size * w, w)]
            )
            # base64 of 21 bytes = the 20-byte digest's text with its final "=" as a letter
            enc = np.frombuffer(base64.b64encode(digests), np.uint8).reshape(sel.size, 28).copy()
            enc[:, 27] = ord("=")
            txt = enc.tobytes().decode("ascii")
            out[sel] = ["1:" + txt[i : i + 28] for i in range(0, 28 * sel.size, 28)]
    return out.tolist()
