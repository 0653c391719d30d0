"""The columnar packet batch handed from decode to flows.

One `PacketBatch` holds a few tens of thousands of packets as parallel numpy arrays, so that
every later stage works on whole columns instead of Python objects per packet. The record
bytes stay in one buffer (`data`) and packets point into it by offset, so payload prefixes
can be sliced out for signatures without copying the whole capture.

Addresses are 128-bit, stored as two uint64 halves in network order (hi, lo). IPv4 addresses
are IPv4-mapped IPv6 (::ffff:a.b.c.d: hi = 0, lo = 0x0000ffff_00000000 | addr), so one key
layout serves both families and the v4/v6 split is `ip_version`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np


class Status(IntEnum):
    """Why a record did or did not decode into an IP packet; counted in the run summary."""

    OK = 0
    NON_IP = 1  # ARP, LLDP, STP, ... : a well-formed frame that carries no IP
    TRUNCATED = 2  # caplen too short for the headers the packet announces
    UNSUPPORTED_LINK = 3  # link type we do not decode (802.11, NFLOG, ...)
    MALFORMED = 4  # header fields that contradict each other (IHL < 5, bad version, ...)
    FRAGMENT = 5  # IP fragment after the first: no ports, attributed to its flow if possible


# Column name -> dtype. The single source of truth for the batch layout.
COLUMNS: dict[str, np.dtype] = {
    "ts_ns": np.dtype(np.int64),  # capture timestamp, ns since the Unix epoch
    # pcapng interface id (0 for classic pcap); numbered across sections so it stays unique
    # in a multi-section file: the index into CaptureReader.stats.interfaces
    "iface": np.dtype(np.uint16),
    "caplen": np.dtype(np.uint32),  # bytes captured for the record
    "wirelen": np.dtype(np.uint32),  # original length on the wire
    "rec_off": np.dtype(np.int64),  # offset of the record's first byte in `data`
    "status": np.dtype(np.uint8),  # a Status value
    "ip_version": np.dtype(np.uint8),  # 4, 6, or 0 when not IP
    "src_hi": np.dtype(np.uint64),
    "src_lo": np.dtype(np.uint64),
    "dst_hi": np.dtype(np.uint64),
    "dst_lo": np.dtype(np.uint64),
    "proto": np.dtype(np.uint8),  # IP protocol number of the transport (after v6 ext headers)
    "sport": np.dtype(np.uint16),  # 0 for protocols without ports; ICMP: type
    "dport": np.dtype(np.uint16),  # 0 for protocols without ports; ICMP: code
    "ip_len": np.dtype(np.uint32),  # IP total length from the header (v6: 40 + payload length)
    "l4_off": np.dtype(np.uint32),  # offset of the transport header from the record start
    "payload_off": np.dtype(np.uint32),  # offset of the transport payload from the record start
    "payload_len": np.dtype(np.uint32),  # payload length per the IP header (not caplen)
    "tcp_flags": np.dtype(np.uint8),  # FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128
    "tcp_seq": np.dtype(np.uint32),
    "tcp_ack": np.dtype(np.uint32),
    "tcp_win": np.dtype(np.uint16),
    "ip_id": np.dtype(np.uint32),  # v4 identification / v6 fragment id, for fragment grouping
    "frag_off": np.dtype(np.uint16),  # fragment offset in 8-byte units (0 = first or unfragmented)
    "more_frags": np.dtype(np.bool_),
    "ttl": np.dtype(np.uint8),  # v4 TTL / v6 hop limit
    # VLAN id (12 bits) of the first 802.1Q/802.1ad tag after the Ethernet (or Linux SLL)
    # header, 0 when untagged; part of the flow key, as Zeek and Suricata key flows per VLAN
    "vlan": np.dtype(np.uint16),
}


@dataclass(slots=True)
class PacketBatch:
    """Parallel arrays, one element per captured record, plus the bytes they point into.

    Records that did not decode (status != OK and != FRAGMENT) keep their row with zeroed
    network fields, so counts per status are exact and no record is silently dropped.
    """

    data: np.ndarray  # uint8 buffer holding the records' bytes
    linktype: np.ndarray  # uint16: link type of each record (per interface in pcapng)
    ts_ns: np.ndarray
    iface: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    rec_off: np.ndarray
    status: np.ndarray
    ip_version: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    ip_len: np.ndarray
    l4_off: np.ndarray
    payload_off: np.ndarray
    payload_len: np.ndarray
    tcp_flags: np.ndarray
    tcp_seq: np.ndarray
    tcp_ack: np.ndarray
    tcp_win: np.ndarray
    ip_id: np.ndarray
    frag_off: np.ndarray
    more_frags: np.ndarray
    ttl: np.ndarray
    vlan: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    @classmethod
    def empty(cls, n: int = 0, data: np.ndarray | None = None) -> PacketBatch:
        """A batch of `n` zeroed rows; decoders fill it column by column."""
        cols = {name: np.zeros(n, dtype=dt) for name, dt in COLUMNS.items()}
        buf = data if data is not None else np.zeros(0, dtype=np.uint8)
        return cls(data=buf, linktype=np.zeros(n, dtype=np.uint16), **cols)

    def take(self, index: np.ndarray) -> PacketBatch:
        """Rows selected by a boolean mask or integer index; shares `data`."""
        cols = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "data"}
        return PacketBatch(data=self.data, **cols)

    def payload(self, i: int, limit: int | None = None) -> bytes:
        """Captured payload bytes of row `i` (may be shorter than payload_len if snapped)."""
        start = int(self.rec_off[i]) + int(self.payload_off[i])
        end_cap = int(self.rec_off[i]) + int(self.caplen[i])
        end = min(end_cap, start + int(self.payload_len[i]))
        if limit is not None:
            end = min(end, start + limit)
        return self.data[start : max(start, end)].tobytes()
