"""Header decoding: every link type, VLAN/MPLS/PPPoE, IPv4/IPv6 details, transports, and
property tests that random or mutated input never escapes the bounds of the record."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from capture_fab import (
    eth,
    icmp,
    ip4,
    ipv4,
    ipv6,
    pcap,
    sll,
    sll2,
    tcp,
    udp,
    v4_lo,
    v6_ah,
    v6_ext,
    v6_frag,
    v6_hi_lo,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdet.capture import COLUMNS, Status, open_capture
from flowdet.capture.decode import decode_records


def dec(frame: bytes, linktype: int = 1, wire: int | None = None) -> dict[str, int]:
    b = decode_records(
        np.frombuffer(frame, dtype=np.uint8),
        np.array([0]),
        np.array([len(frame)]),
        linktype,
        None if wire is None else np.array([wire]),
    )
    return {name: int(getattr(b, name)[0]) for name in COLUMNS if name != "more_frags"} | {
        "more_frags": bool(b.more_frags[0])
    }


SEG = tcp(40000, 3333, b"mining.subscribe", seq=7, ack=9, flags=0x18, win=512)
PKT4 = ipv4("10.0.0.1", "10.0.0.2", 6, SEG, ident=77, ttl=61)


def check_tcp4(r: dict[str, int], l3: int, ip_hdr: int = 20) -> None:
    assert r["status"] == Status.OK
    assert r["ip_version"] == 4
    assert r["src_hi"] == 0 and r["src_lo"] == v4_lo("10.0.0.1")
    assert r["dst_hi"] == 0 and r["dst_lo"] == v4_lo("10.0.0.2")
    assert r["proto"] == 6
    assert (r["sport"], r["dport"]) == (40000, 3333)
    assert (r["tcp_seq"], r["tcp_ack"], r["tcp_win"], r["tcp_flags"]) == (7, 9, 512, 0x18)
    assert r["ttl"] == 61 and r["ip_id"] == 77
    assert r["ip_len"] == ip_hdr + len(SEG)
    assert r["l4_off"] == l3 + ip_hdr
    assert r["payload_off"] == l3 + ip_hdr + 20
    assert r["payload_len"] == len(b"mining.subscribe")


def af_header(fam: int, big: bool) -> bytes:
    return struct.pack(">I" if big else "<I", fam)


@pytest.mark.parametrize(
    ("linktype", "frame", "l3"),
    [
        (1, eth(PKT4), 14),
        (1, eth(PKT4, vlans=((0x8100, 10),)), 18),
        (1, eth(PKT4, vlans=((0x88A8, 100), (0x8100, 10))), 22),  # QinQ
        (1, eth(PKT4, vlans=((0x9100, 1), (0x8100, 2), (0x8100, 3))), 26),
        (1, eth(struct.pack("!I", (16 << 12) | 0x100 | 64) + PKT4, 0x8847), 18),  # MPLS
        (1, eth(struct.pack("!II", 16 << 12, (17 << 12) | 0x100) + PKT4, 0x8847), 22),
        (1, eth(struct.pack("!BBHHH", 0x11, 0, 1, len(PKT4) + 2, 0x0021) + PKT4, 0x8864), 22),
        (1, eth(b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + PKT4, len(PKT4) + 8), 22),  # SNAP
        (1, eth(bytes(4) + bytes(12) + b"\x08\x00" + PKT4, 0x88E7), 32),  # 802.1ah PBB
        (1, eth(bytes(4) + b"\x81\x00\x00\x05\x08\x00" + PKT4, 0x8926), 24),  # VN-Tag+VLAN
        (1, eth(bytes(2) + bytes(12) + b"\x08\x00" + PKT4, 0x8903), 30),  # FabricPath
        (10, b"\x50" + bytes(12) + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + PKT4, 21),  # FDDI
        (113, sll(PKT4), 16),
        (276, sll2(PKT4), 20),
        (101, PKT4, 0),
        (12, PKT4, 0),
        (14, PKT4, 0),
        (228, PKT4, 0),
        (0, af_header(2, False) + PKT4, 4),
        (0, af_header(2, True) + PKT4, 4),
        (108, af_header(2, True) + PKT4, 4),
        (9, b"\xff\x03\x00\x21" + PKT4, 4),
        (9, b"\x00\x21" + PKT4, 2),
        (9, b"\x21" + PKT4, 1),  # protocol-field compression
        (50, b"\xff\x03\x00\x21" + PKT4, 4),
        (50, b"\x0f\x00\x08\x00" + PKT4, 4),  # Cisco HDLC
        (104, b"\x0f\x00\x08\x00" + PKT4, 4),
        (51, b"\x11\x00\x00\x01\x00\x40\x00\x21" + PKT4, 8),
    ],
)
def test_link_types_to_ipv4_tcp(linktype, frame, l3):
    check_tcp4(dec(frame, linktype), l3)


V6S, V6D = "2001:db8::1", "2001:db8:ffff::2"


@pytest.mark.parametrize(
    ("linktype", "prefix"),
    [
        (1, eth(b"", 0x86DD)),
        (101, b""),
        (229, b""),
        (113, sll(b"", 0x86DD)),
        (276, sll2(b"", 0x86DD)),
        (0, af_header(24, False)),
        (0, af_header(28, False)),
        (0, af_header(30, True)),
        (108, af_header(24, True)),
        (0, af_header(10, False)),
        (9, b"\x00\x57"),
    ],
)
def test_link_types_to_ipv6_udp(linktype, prefix):
    pkt = ipv6(V6S, V6D, 17, udp(5353, 53, b"abc"), hlim=3)
    r = dec(prefix + pkt, linktype)
    assert r["status"] == Status.OK and r["ip_version"] == 6
    assert (r["src_hi"], r["src_lo"]) == v6_hi_lo(V6S)
    assert (r["dst_hi"], r["dst_lo"]) == v6_hi_lo(V6D)
    assert (r["proto"], r["sport"], r["dport"], r["ttl"]) == (17, 5353, 53, 3)
    assert r["ip_len"] == 40 + 11
    assert r["payload_off"] == len(prefix) + 48 and r["payload_len"] == 3


@pytest.mark.parametrize(
    ("linktype", "frame", "status"),
    [
        (1, eth(b"\0" * 28, 0x0806), Status.NON_IP),  # ARP
        (1, eth(b"\x42\x42\x03" + b"\0" * 40, 0x05DC), Status.NON_IP),  # 802.3 + STP LLC
        (1, eth(PKT4)[:13], Status.TRUNCATED),
        (1, eth(PKT4)[:30], Status.TRUNCATED),
        (1, eth(b"", 0x8100), Status.TRUNCATED),
        (105, b"\0" * 60, Status.UNSUPPORTED_LINK),  # 802.11
        (239, b"\0" * 60, Status.UNSUPPORTED_LINK),  # NFLOG
        (0, af_header(7, False) + PKT4, Status.NON_IP),
        (229, PKT4, Status.MALFORMED),  # IPv4 bytes on an IPv6-only link type
        (1, eth(ipv6(V6S, V6D, 17, udp(1, 2))), Status.MALFORMED),  # ethertype says v4
        (101, b"\x75" + PKT4[1:], Status.MALFORMED),  # version 7
        (101, b"\x44" + PKT4[1:], Status.MALFORMED),  # IHL 4
        (101, ipv4("1.1.1.1", "2.2.2.2", 6, SEG, total_len=10), Status.MALFORMED),
        (
            101,
            ipv4("1.1.1.1", "2.2.2.2", 6, tcp(1, 2)[:12] + b"\x30" + tcp(1, 2)[13:]),
            Status.MALFORMED,
        ),
        (101, ipv4("1.1.1.1", "2.2.2.2", 6, b"\0" * 10), Status.TRUNCATED),
        (101, ipv4("1.1.1.1", "2.2.2.2", 17, b"\0" * 4), Status.TRUNCATED),
        (101, ipv6(V6S, V6D, 6, b"")[:30], Status.TRUNCATED),
        (101, ipv6(V6S, V6D, 0, v6_ext(6))[:43], Status.TRUNCATED),
        # an extension header running past the end of the IPv6 payload
        (101, ipv6(V6S, V6D, 0, v6_ext(6, 5), plen=16), Status.MALFORMED),
    ],
)
def test_non_ip_truncated_malformed(linktype, frame, status):
    r = dec(frame, linktype, wire=len(frame) + 1000)  # as if snapped by the capture
    assert r["status"] == status
    if status not in (Status.OK, Status.FRAGMENT):
        assert all(r[k] == 0 for k in ("ip_version", "src_lo", "dst_lo", "sport", "proto"))


def test_ipv4_options_move_the_transport_header():
    opts = b"\x07\x07\x04" + b"\0" * 4 + b"\x01" * 5  # record-route + NOPs: 12 bytes
    r = dec(eth(ipv4("10.0.0.1", "10.0.0.2", 6, SEG, ident=77, ttl=61, options=opts)))
    check_tcp4(r, 14, ip_hdr=32)


def test_ipv4_fragments():
    whole = udp(5000, 53, b"A" * 40)
    first = ipv4("10.0.0.1", "10.0.0.2", 17, whole[:24], ident=999, mf=True)
    later = ipv4("10.0.0.1", "10.0.0.2", 17, whole[24:], ident=999, frag_off=3)
    r1, r2 = dec(eth(first)), dec(eth(later))
    assert r1["status"] == Status.OK and r1["more_frags"] and r1["frag_off"] == 0
    assert (r1["sport"], r1["dport"], r1["ip_id"]) == (5000, 53, 999)
    assert r1["payload_len"] == 16  # this fragment's share, from its IP length
    assert r2["status"] == Status.FRAGMENT and not r2["more_frags"]
    assert (r2["frag_off"], r2["ip_id"], r2["proto"]) == (3, 999, 17)
    assert (r2["src_lo"], r2["dst_lo"]) == (v4_lo("10.0.0.1"), v4_lo("10.0.0.2"))
    assert (r2["sport"], r2["dport"]) == (0, 0)
    assert r2["payload_off"] == 34 and r2["payload_len"] == len(whole) - 24


def test_ipv6_extension_header_chain_and_fragments():
    seg = tcp(443, 51000, b"hi", flags=0x12)
    chain = v6_ext(43, 1) + v6_ext(44) + v6_frag(60, 0, True, 0xABCDEF01) + v6_ext(51, 0)
    chain += v6_ah(6) + seg
    r = dec(eth(ipv6(V6S, V6D, 0, chain), 0x86DD))
    hdrs = 16 + 8 + 8 + 8 + 24
    assert r["status"] == Status.OK
    assert (r["proto"], r["sport"], r["dport"], r["tcp_flags"]) == (6, 443, 51000, 0x12)
    assert r["more_frags"] and r["ip_id"] == 0xABCDEF01 and r["frag_off"] == 0
    assert r["l4_off"] == 14 + 40 + hdrs
    assert r["payload_off"] == 14 + 40 + hdrs + 20 and r["payload_len"] == 2
    assert r["ip_len"] == 40 + len(chain)

    later = dec(ipv6(V6S, V6D, 44, v6_frag(17, 181, False, 7) + b"x" * 50), 229)
    assert later["status"] == Status.FRAGMENT
    assert (later["proto"], later["frag_off"], later["ip_id"]) == (17, 181, 7)
    assert later["payload_off"] == 48 and later["payload_len"] == 50
    assert (later["src_hi"], later["src_lo"]) == v6_hi_lo(V6S)


def test_ipv6_stops_at_esp_and_no_next_header():
    esp = dec(ipv6(V6S, V6D, 0, v6_ext(50) + b"\0" * 24), 229)
    assert (esp["status"], esp["proto"], esp["sport"]) == (Status.OK, 50, 0)
    assert esp["payload_off"] == 48 and esp["payload_len"] == 24
    none = dec(ipv6(V6S, V6D, 59, b""), 229)
    assert (none["status"], none["proto"], none["payload_len"]) == (Status.OK, 59, 0)


def test_icmp_and_icmpv6_type_code():
    r = dec(ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, b"ping" * 4)), 101)
    assert (r["proto"], r["sport"], r["dport"]) == (1, 8, 0)
    assert r["payload_off"] == 28 and r["payload_len"] == 16
    r6 = dec(ipv6(V6S, V6D, 58, icmp(135, 0, b"\0" * 16)), 229)
    assert (r6["proto"], r6["sport"], r6["dport"], r6["payload_len"]) == (58, 135, 0, 16)
    unreach = dec(ipv4("10.0.0.1", "10.0.0.2", 1, icmp(3, 13)), 101)
    assert (unreach["sport"], unreach["dport"]) == (3, 13)


def test_payload_length_comes_from_ip_header_not_caplen():
    pkt = ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, b"P" * 1000))
    frame = eth(pkt)
    r = dec(frame[:96], 1, wire=len(frame))  # snapped capture, like tcpdump -s 96
    assert r["status"] == Status.OK and r["payload_len"] == 1000 and r["caplen"] == 96
    padded = eth(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2))) + b"\0" * 6  # Ethernet padding
    assert dec(padded)["payload_len"] == 0
    tso = eth(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, b"T" * 3000), total_len=0))
    assert dec(tso)["payload_len"] == 3000 and dec(tso)["ip_len"] == 3040
    liar = eth(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, b"L" * 10), total_len=60000))
    r = dec(liar)
    assert r["ip_len"] == 50 and r["payload_len"] == 10  # clamped to the frame


def test_other_transports_keep_addresses():
    r = dec(ipv4("10.0.0.1", "10.0.0.2", 47, b"\0" * 12), 101)  # GRE
    assert (r["status"], r["proto"], r["sport"], r["payload_off"], r["payload_len"]) == (
        Status.OK,
        47,
        0,
        20,
        12,
    )
    sctp = dec(ipv4("10.0.0.1", "10.0.0.2", 132, struct.pack("!HHII", 9, 10, 0, 0) + b"d"), 101)
    assert (sctp["sport"], sctp["dport"], sctp["payload_len"]) == (9, 10, 1)


def test_reader_counts_statuses_per_link_type(tmp_path):
    frames = [
        eth(PKT4),
        eth(b"\0" * 28, 0x0806),
        eth(PKT4)[:20],
        eth(ipv4("1.1.1.1", "2.2.2.2", 17, b"x" * 20, frag_off=5)),
    ]
    p = tmp_path / "mix.pcap"
    p.write_bytes(pcap([(i, f) for i, f in enumerate(frames)]))
    with open_capture(p) as r:
        list(r)
    assert r.stats.status == {
        "OK": 1,
        "NON_IP": 1,
        "TRUNCATED": 1,
        "UNSUPPORTED_LINK": 0,
        "MALFORMED": 0,
        "FRAGMENT": 1,
    }
    p2 = tmp_path / "wlan.pcap"
    p2.write_bytes(pcap([(0, b"\0" * 40)], linktype=127))
    with open_capture(p2) as r:
        list(r)
    assert r.stats.status["UNSUPPORTED_LINK"] == 1 and r.stats.unsupported_link_types == [127]


# -- properties ------------------------------------------------------------------------------

LINKS = [0, 1, 9, 12, 14, 50, 51, 101, 104, 108, 113, 127, 228, 229, 239, 276]


def assert_row_bounds(b, i: int) -> None:
    cap = int(b.caplen[i])
    s = int(b.status[i])
    assert s in {x.value for x in Status}
    if s in (Status.OK, Status.FRAGMENT):
        assert b.ip_version[i] in (4, 6)
        assert int(b.l4_off[i]) <= int(b.payload_off[i])
        assert int(b.l4_off[i]) <= int(b.ip_len[i]) + int(b.l4_off[i])
        # the transport payload never extends past the IP packet as the wire carried it
        assert int(b.payload_off[i]) + int(b.payload_len[i]) <= max(cap, int(b.wirelen[i]))
        assert int(b.payload_len[i]) <= int(b.ip_len[i])
        assert len(b.payload(i)) <= int(b.payload_len[i])
    else:
        assert b.ip_version[i] == 0 and b.src_lo[i] == 0 and b.sport[i] == 0
        assert b.payload_len[i] == 0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), linktype=st.sampled_from(LINKS))
def test_random_bytes_decode_within_bounds(data, linktype):
    b = decode_records(
        np.frombuffer(data, dtype=np.uint8), np.array([0]), np.array([len(data)]), linktype
    )
    assert_row_bounds(b, 0)


VALID = [
    (1, eth(PKT4)),
    (1, eth(ipv6(V6S, V6D, 0, v6_ext(44) + v6_frag(6, 0, True, 1) + tcp(1, 2, b"x")), 0x86DD)),
    (1, eth(PKT4, vlans=((0x88A8, 1), (0x8100, 2)))),
    (113, sll(ipv4("1.2.3.4", "5.6.7.8", 17, udp(1, 2, b"u" * 30)))),
    (0, af_header(30, False) + ipv6(V6S, V6D, 58, icmp(128, 0, b"e"))),
]


@settings(max_examples=400, deadline=None)
@given(
    which=st.integers(0, len(VALID) - 1),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 200),
    wire_extra=st.integers(0, 70000),
)
def test_mutated_packets_decode_within_bounds(which, edits, cut, wire_extra):
    lt, frame = VALID[which]
    buf = bytearray(frame)
    for pos, val in edits:
        if pos < len(buf):
            buf[pos] = val
    buf = bytes(buf[: max(0, len(buf) - cut)]) if cut < len(buf) else bytes(buf)
    b = decode_records(
        np.frombuffer(b"\xee" * 7 + buf + b"\xee" * 5, dtype=np.uint8),
        np.array([7]),
        np.array([len(buf)]),
        lt,
        np.array([len(buf) + wire_extra]),
    )
    assert_row_bounds(b, 0)


def test_ip4_helper_matches_column_layout():
    r = dec(eth(ipv4("255.255.255.255", "0.0.0.0", 17, udp(0, 65535))))
    assert r["src_lo"] == 0x0000FFFFFFFFFFFF and r["dst_lo"] == 0x0000FFFF00000000
    assert ip4("0.0.0.0") == b"\0\0\0\0"


def test_first_fragment_cut_inside_tcp_options_keeps_ports():
    seg = tcp(1234, 80, b"", flags=0x02, options=b"\x02\x04\x05\xb4" * 5)  # 40-byte header
    first = ipv4("10.0.0.1", "10.0.0.2", 6, seg[:24], mf=True)
    r = dec(eth(first))
    assert (r["status"], r["sport"], r["dport"], r["tcp_flags"]) == (Status.OK, 1234, 80, 2)
    assert r["payload_len"] == 0 and r["payload_off"] == 14 + 20 + 24
    unfragmented = dec(eth(ipv4("10.0.0.1", "10.0.0.2", 6, seg[:24])))
    assert unfragmented["status"] == Status.MALFORMED


def test_pppoe_length_bounds_the_ip_packet():
    pkt = ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, b"123456"))
    session = struct.pack("!BBHHH", 0x11, 0, 1, len(pkt) + 2 - 6, 0x0021)  # 6 bytes short
    r = dec(eth(session + pkt, 0x8864))
    assert r["ip_len"] == len(pkt) - 6 and r["payload_len"] == 0


@pytest.mark.parametrize(
    ("linktype", "frame", "vlan"),
    [
        (1, eth(PKT4), 0),
        (1, eth(PKT4, vlans=((0x8100, 10),)), 10),
        (1, eth(PKT4, vlans=((0x8100, 0xF123),)), 0x123),  # PCP/DEI bits are not the id
        (1, eth(PKT4, vlans=((0x88A8, 100), (0x8100, 10))), 100),  # QinQ: the outer tag
        (1, eth(PKT4, vlans=((0x9100, 4094),)), 4094),
        (113, sll(b"\x00\x2a\x08\x00" + PKT4, 0x8100), 42),
        (276, sll2(b"\x00\x2b\x08\x00" + PKT4, 0x8100), 43),
        (113, sll(PKT4), 0),
        (1, eth(b"\x00\x07", 0x8100), 0),  # truncated tag: no id, and TRUNCATED
        (101, PKT4, 0),
    ],
)
def test_vlan_id_of_the_outermost_tag(linktype, frame, vlan):
    b = decode_records(np.frombuffer(frame, np.uint8), np.array([0]), [len(frame)], linktype)
    assert int(b.vlan[0]) == vlan
    if len(frame) > 20:
        assert b.status[0] == Status.OK
