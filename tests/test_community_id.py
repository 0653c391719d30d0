"""Community ID v1 against the spec's published baseline vectors (seed 0), through both the
scalar function and the flow path (canonical keys of real packet rows -> flow record)."""

from __future__ import annotations

import numpy as np
import pytest
from flows_synth import P, make_batch

from flowdet.community_id import community_id, community_id_from_key, community_ids_from_keys
from flowdet.flows import FlowConfig, FlowTable

# corelight/community-id-spec baseline/baseline_deflt.json: (proto, saddr, daddr, sport,
# dport, id). For ICMP/ICMPv6 sport/dport are type/code (paired types map to counterparts).
VECTORS = [
    (
        58,
        "fe80::200:86ff:fe05:80da",
        "fe80::260:97ff:fe07:69ea",
        135,
        0,
        "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
    ),
    (
        58,
        "fe80::260:97ff:fe07:69ea",
        "fe80::200:86ff:fe05:80da",
        136,
        0,
        "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
    ),
    (
        58,
        "fe80::260:97ff:fe07:69ea",
        "fe80::200:86ff:fe05:80da",
        135,
        0,
        "1:zavyT/cezQr1fmImYCwYnMXbgck=",
    ),
    (
        58,
        "fe80::200:86ff:fe05:80da",
        "fe80::260:97ff:fe07:69ea",
        136,
        0,
        "1:zavyT/cezQr1fmImYCwYnMXbgck=",
    ),
    (
        58,
        "3ffe:501:1800:2345::2",
        "3ffe:507:0:1:200:86ff:fe05:80da",
        3,
        0,
        "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
    ),
    (
        58,
        "3ffe:501:410:0:2c0:dfff:fe47:33e",
        "3ffe:507:0:1:200:86ff:fe05:80da",
        1,
        4,
        "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
    ),
    (
        58,
        "3ffe:507:0:1:200:86ff:fe05:80da",
        "3ffe:501:0:1001::2",
        128,
        0,
        "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
    ),
    (
        58,
        "3ffe:501:0:1001::2",
        "3ffe:507:0:1:200:86ff:fe05:80da",
        129,
        0,
        "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
    ),
    (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 0, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="),
    (58, "fe80::260:97ff:fe07:69ea", "ff02::1", 134, 0, "1:pkvHqCL88/tg1k4cPigmZXUtL00="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM="),
    (
        6,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        "2607:f8b0:400c:c03::1a",
        63943,
        25,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (
        6,
        "2607:f8b0:400c:c03::1a",
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        25,
        63943,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (132, "192.168.170.56", "192.168.170.8", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (46, "10.1.12.1", "10.1.12.2", None, None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    (46, "10.1.12.2", "10.1.12.1", None, None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
]


@pytest.mark.parametrize(("proto", "src", "dst", "sport", "dport", "expect"), VECTORS)
def test_scalar_matches_spec(proto, src, dst, sport, dport, expect):
    assert community_id(src, dst, proto, sport, dport) == expect


@pytest.mark.parametrize(("proto", "src", "dst", "sport", "dport", "expect"), VECTORS)
def test_flow_record_matches_spec(proto, src, dst, sport, dport, expect):
    """The same tuple as a packet through the flow table gives the same ID on the record."""
    table = FlowTable(FlowConfig())
    table.update(make_batch([P(1.0, src, sport or 0, dst, dport or 0, proto=proto)]))
    (rec,) = table.flush().records()
    assert rec.community_id == expect


def test_icmp_echo_pairs_into_one_flow():
    """Request and reply share a flow and an ID; a one-way type from the same host does not."""
    pk = [
        P(1.0, "192.168.0.89", 8, "192.168.0.1", 0, proto=1, payload=32),
        P(1.1, "192.168.0.1", 0, "192.168.0.89", 0, proto=1, payload=32),
        P(1.2, "192.168.0.1", 3, "192.168.0.89", 3, proto=1, payload=28),
    ]
    table = FlowTable()
    table.update(make_batch(pk))
    recs = sorted(table.flush().records(), key=lambda r: r.start_epoch)
    assert len(recs) == 2
    echo, unreach = recs
    assert (echo.pkts_toserver, echo.pkts_toclient) == (1, 1)
    assert echo.src_ip == "192.168.0.89" and (echo.src_port, echo.dest_port) == (8, 0)
    assert echo.icmp_type == 8 and echo.icmp_code == 0
    assert echo.community_id == "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
    assert unreach.src_ip == "192.168.0.1" and unreach.icmp_type == 3
    assert unreach.community_id == community_id("192.168.0.1", "192.168.0.89", 1, 3, 3)


def test_seed_changes_the_id():
    a = community_id("10.0.0.1", "10.0.0.2", 6, 1234, 80)
    b = community_id("10.0.0.1", "10.0.0.2", 6, 1234, 80, seed=1)
    assert a != b and a.startswith("1:") and b.startswith("1:")


@pytest.mark.parametrize("seed", [0, 1, 65535])
def test_vectorised_ids_match_the_scalar_function(seed):
    """community_ids_from_keys (used for records) against community_id_from_key, row by row,
    over random IPv4/IPv6 keys and protocols with and without ports."""
    rng = np.random.default_rng(seed)
    n = 500
    ver = rng.choice([4, 6], n)
    key = rng.integers(0, 2**63, (n, 5), dtype=np.uint64) * np.uint64(2)
    key[:, 4] = rng.integers(0, 2**40, n, dtype=np.uint64)
    key[:, 4] = (key[:, 4] & ~np.uint64(0xFF)) | rng.choice([1, 6, 17, 47, 50, 58, 132], n).astype(
        np.uint64
    )
    v4 = ver == 4
    key[v4, 0] = key[v4, 2] = 0
    key[v4, 1] = (key[v4, 1] & np.uint64(0xFFFFFFFF)) | np.uint64(0xFFFF00000000)
    got = community_ids_from_keys(ver, key, seed=seed)
    want = [
        community_id_from_key(v, *row, seed=seed)
        for v, row in zip(ver.tolist(), key.tolist(), strict=True)
    ]
    assert got == want
    assert community_ids_from_keys(ver[:0], key[:0]) == []
