"""Property: how packets are cut into batches never changes the records (flow ids included).

Random packet sequences over a few endpoints (TCP with FIN/RST/SYN reuse, UDP, ICMP echo),
with short timeouts and checkpoints so that idle, active, linger and checkpoint paths all
run, are fed as one batch and as random splits; the sorted records must be identical.
"""

from __future__ import annotations

import itertools

from flows_synth import P, make_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdet.flows import FlowConfig, FlowTable

HOSTS = ["10.0.0.1", "10.0.0.2", "192.168.1.9", "2001:db8::1", "2001:db8::2"]
CONFIG = FlowConfig(
    idle_timeout_tcp=8.0,
    idle_timeout_other=5.0,
    active_timeout=20.0,
    tcp_linger=1.0,
    gap_threshold=0.5,
    checkpoint_packets=(2, 5),
    checkpoint_seconds=(3.0, 12.0),
)


@st.composite
def packets(draw) -> list[P]:
    n = draw(st.integers(1, 120))
    t = 1000.0
    out = []
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 0.001, 0.2, 0.7, 2.5, 6.0, 9.0]))
        v6 = draw(st.booleans())
        pool = HOSTS[3:] if v6 else HOSTS[:3]
        src, dst = draw(st.permutations(pool))[:2]
        kind = draw(st.sampled_from(["tcp", "tcp", "udp", "icmp"]))
        if kind == "tcp":
            sp, dp = draw(st.sampled_from([(40000, 80), (80, 40000), (40001, 22)]))
            flags = draw(st.sampled_from(["S", "SA", "A", "PA", "FA", "R", "A"]))
            p = P(
                t,
                src,
                sp,
                dst,
                dp,
                proto=6,
                flags=flags,
                payload=draw(st.sampled_from([0, 0, 10, 700])),
                seq=draw(st.integers(0, 3)),
            )
        elif kind == "udp":
            sp, dp = draw(st.sampled_from([(5000, 53), (53, 5000)]))
            p = P(t, src, sp, dst, dp, proto=17, payload=draw(st.integers(0, 1300)))
        else:
            typ = draw(st.sampled_from([8, 0, 3]) if not v6 else st.sampled_from([128, 129, 1]))
            p = P(t, src, typ, dst, 0, proto=58 if v6 else 1, payload=8)
        out.append(p)
    return out


def records(pkts: list[P], cuts: list[int]) -> list[dict]:
    table = FlowTable(CONFIG)
    out = []
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(pkts))), len(pkts)]
    for a, b in itertools.pairwise(bounds):
        out += table.update(make_batch(pkts[a:b])).records()
    out += table.flush().records()
    recs = [r.to_json_dict() for r in out]
    recs.sort(key=lambda r: (r["flow_id"], r["segment"], r["end_reason"], r["checkpoint"]))
    return recs


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets(), st.lists(st.integers(0, 120), max_size=8))
def test_batch_boundaries_do_not_change_records(pkts, cuts):
    whole = records(pkts, [])
    split = records(pkts, cuts)
    assert split == whole
    singles = records(pkts, list(range(len(pkts))))
    assert singles == whole


def test_every_packet_lands_in_exactly_one_final_record():
    """Companion sanity check on a fixed sequence: packets are conserved across records."""
    pkts = [
        P(
            1000.0 + i * 0.9,
            HOSTS[i % 2],
            40000,
            HOSTS[1 - i % 2],
            80,
            flags="R" if i % 17 == 16 else "A",
        )
        for i in range(60)
    ]
    recs = [r for r in records(pkts, [7, 30]) if r["end_reason"] != "checkpoint"]
    assert sum(r["pkts_toserver"] + r["pkts_toclient"] for r in recs) == 60
    assert any(r["end_reason"] == "rst" for r in recs)
    assert any(r["end_reason"] == "active" for r in recs)


def test_compiled_keys_equal_the_numpy_reference():
    """keys_and_hashes (the table's compiled pass) == canonical_keys + key_hash (numpy)."""
    import numpy as np

    from flowdet.flows.keys import canonical_keys, key_hash, keys_and_hashes

    rng = np.random.default_rng(7)
    addrs = ["10.0.0.1", "10.0.0.2", "192.168.1.9", "fe80::1", "fe80::2", "2001:db8::7"]
    pkts = []
    for i in range(600):
        a, b = rng.choice(addrs[:3] if i % 3 else addrs[3:], 2)
        proto = int(rng.choice([6, 17, 1, 58, 47]))
        if (proto == 1 and ":" in a) or (proto == 58 and ":" not in a):
            proto = 17
        sport, dport = int(rng.integers(0, 20)), int(rng.integers(0, 20))
        if proto in (1, 58):
            sport = int(rng.choice([0, 3, 8, 11, 128, 129, 133, 134, 135, 1, 2]))
        pkts.append(P(i * 0.01, a, sport, b, dport, proto=proto, vlan=int(rng.integers(0, 3))))
    batch = make_batch(pkts)
    rows = np.flatnonzero(rng.random(len(pkts)) < 0.8)
    for vlan in (True, False):
        ref_key, ref_keep = canonical_keys(batch, rows, vlan)
        key, keep, h = keys_and_hashes(batch, rows, vlan)
        assert key.tolist() == ref_key.tolist()
        assert keep.tolist() == ref_keep.tolist()
        assert h.tolist() == key_hash(ref_key).tolist()
    assert len({tuple(k) for k in key.tolist()}) > 50  # a varied set of flows was checked
