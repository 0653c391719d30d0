"""FlowTable on synthetic batches: initiator rule, per-direction statistics against a plain
Python reference, timeouts, eviction, checkpoints, fragments, ordering, payload prefixes."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import statistics

import pytest
from flows_synth import FLAG_BITS, NS, P, make_batch, tcp_session

from flowdet.capture.batch import Status
from flowdet.errors import FlowdetError
from flowdet.flows import RECORD_FIELDS, FlowConfig, FlowRecord, FlowTable

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def run(pkts: list[P], config: FlowConfig | None = None, batches: int = 1) -> list[FlowRecord]:
    table = FlowTable(config or FlowConfig())
    recs: list[FlowRecord] = []
    size = max(1, math.ceil(len(pkts) / batches))
    for i in range(0, len(pkts), size):
        recs += table.update(make_batch(pkts[i : i + size])).records()
    recs += table.flush().records()
    return recs


def finals(recs: list[FlowRecord]) -> list[FlowRecord]:
    return [r for r in recs if r.end_reason != "checkpoint"]


# -- Python reference ------------------------------------------------------------------------
def _stats(xs: list[float]) -> tuple[float, float, float, float]:
    if not xs:
        return 0, 0, 0.0, 0.0
    return min(xs), max(xs), statistics.fmean(xs), statistics.pstdev(xs)


def reference(
    pkts: list[P],
    initiator: tuple[str, int],
    gap: float = 1.0,
    pay_bytes: int = FlowConfig().payload_bytes,
) -> dict:
    """Expected record fields for one flow, computed the obvious way."""
    dirs = [0 if (p.src, p.sport) == initiator else 1 for p in pkts]
    t = [p.ts_ns / NS for p in pkts]
    ex: dict = {}
    for d, dn in enumerate(("toserver", "toclient")):
        sel = [p for p, x in zip(pkts, dirs, strict=True) if x == d]
        ts = [p.ts_ns / NS for p in sel]
        sizes = [p.ip_len for p in sel]
        pay = [p for p in sel if p.payload_bytes]
        ex[f"pkts_{dn}"] = len(sel)
        ex[f"ip_bytes_{dn}"] = sum(sizes)
        ex[f"bytes_{dn}"] = sum(sizes) + 14 * len(sel)  # Ethernet header in make_batch
        ex[f"payload_bytes_{dn}"] = sum(len(p.payload_bytes) for p in sel)
        ex[f"payload_pkts_{dn}"] = len(pay)
        ex[f"bare_acks_{dn}"] = sum(
            1
            for p in sel
            if p.proto == 6
            and "A" in p.flags
            and not p.payload_bytes
            and not set("SFR") & set(p.flags)
        )
        for name, bit in FLAG_BITS.items():
            fname = {
                "F": "fin",
                "S": "syn",
                "R": "rst",
                "P": "psh",
                "A": "ack",
                "U": "urg",
                "E": "ece",
                "C": "cwr",
            }[name]
            ex[f"{fname}_{dn}"] = sum(1 for p in sel if p.proto == 6 and p.flag_bits & bit)
        lo, hi, mean, std = _stats(sizes)
        ex[f"size_min_{dn}"], ex[f"size_max_{dn}"] = lo, hi
        ex[f"size_mean_{dn}"], ex[f"size_std_{dn}"] = mean, std
        lo, hi, mean, std = _stats([b - a for a, b in itertools.pairwise(ts)])
        ex[f"iat_min_{dn}"], ex[f"iat_max_{dn}"] = lo, hi
        ex[f"iat_mean_{dn}"], ex[f"iat_std_{dn}"] = mean, std
        pts = [p.ts_ns / NS for p in pay]
        lo, hi, mean, std = _stats([b - a for a, b in itertools.pairwise(pts)])
        ex[f"piat_min_{dn}"], ex[f"piat_max_{dn}"] = lo, hi
        ex[f"piat_mean_{dn}"], ex[f"piat_std_{dn}"] = mean, std
        hist = [0] * 12
        for p in pay:
            hist[min(len(p.payload_bytes).bit_length() - 1, 11)] += 1
        ex[f"payload_hist_{dn}"] = hist
        msgs: list[bytes] = []
        used, last_seq = 0, None
        for p in pay:
            if len(msgs) == 4 or used >= pay_bytes:
                break
            if p.proto == 6 and msgs and p.seq == last_seq:
                continue
            m = p.payload_bytes[: pay_bytes - used]
            msgs.append(m)
            used += len(m)
            last_seq = p.seq
        ex[f"payload_{dn}"] = msgs
        ex[f"bursts_{dn}"] = sum(
            1 for i in range(1, len(pkts)) if dirs[i] == d and t[i] - t[i - 1] > gap
        )
    gaps = [b - a for a, b in itertools.pairwise(t)]
    lo, hi, mean, std = _stats(gaps)
    ex["iat_min"], ex["iat_max"], ex["iat_mean"], ex["iat_std"] = lo, hi, mean, std
    ex["idle_gaps"] = sum(1 for g in gaps if g > gap)
    ex["max_gap"] = max(gaps, default=0)
    seq = [
        (dirs[i], len(p.payload_bytes), (t[i] - t[i - 1]) if i else 0.0, p.flag_bits)
        for i, p in enumerate(pkts)
    ]

    def cols(s: list) -> dict:
        return {
            "dir": [x[0] for x in s],
            "len": [x[1] for x in s],
            "iat": [x[2] for x in s],
            "flags": [x[3] for x in s],
        }

    ex["first_pkts"] = cols(seq[:32])
    ex["last_pkts"] = cols(seq[-32:])
    ex["start_epoch"], ex["end_epoch"] = t[0], t[-1]
    ex["duration"] = t[-1] - t[0]
    ex["src_ip"], ex["src_port"] = initiator
    return ex


def assert_matches(rec: FlowRecord, ex: dict) -> None:
    for k, v in ex.items():
        got = getattr(rec, k)
        if isinstance(v, dict):
            assert got.keys() == v.keys()
            for kk in v:
                assert got[kk] == pytest.approx(v[kk], rel=1e-9, abs=1e-9), (k, kk)
        elif isinstance(v, float):
            assert got == pytest.approx(v, rel=1e-9, abs=1e-9), k
        else:
            assert got == v, k


def random_flow(rng: random.Random, n: int, proto: int = 6) -> list[P]:
    t = 1000.0
    out = []
    seq = [100_000, 900_000]
    for i in range(n):
        d = i > 0 and rng.random() < 0.45  # the initiator (A) speaks first
        t += rng.choice([0.0, 1e-6, 0.0004, 0.02, 0.3, 1.5, 4.0])
        size = rng.choice([0, 0, 1, 7, 64, 90, 513, 1200, 1460])
        flags = "" if proto != 6 else rng.choice(["A", "PA", "A", "PA", "AU", "AE", "AC"])
        src, sp, dst, dp = (B, 443, A, 51000) if d else (A, 51000, B, 443)
        s = seq[int(d)]
        if size and rng.random() < 0.1:
            s -= size  # looks like a retransmission of the previous message
        else:
            seq[int(d)] += size
        out.append(
            P(
                t,
                src,
                sp,
                dst,
                dp,
                proto=proto,
                flags=("S" if i == 0 and proto == 6 else flags),
                payload=size,
                seq=s,
            )
        )
    return out


# -- initiator rule --------------------------------------------------------------------------
def test_syn_sender_is_initiator_even_from_the_higher_address():
    pk = tcp_session(1.0, C, 5555, A, 22, [(10, 20)])
    (rec,) = finals(run(pk))
    assert (rec.src_ip, rec.src_port, rec.dest_ip, rec.dest_port) == (C, 5555, A, 22)
    assert rec.end_reason == "fin"
    assert rec.syn_toserver == 1 and rec.syn_toclient == 1 and rec.ack_toclient >= 1


def test_syn_ack_first_makes_its_receiver_the_initiator():
    pk = tcp_session(1.0, A, 40000, B, 80, [(10, 20)])[1:]  # SYN not captured
    (rec,) = finals(run(pk))
    assert (rec.src_ip, rec.src_port) == (A, 40000)
    assert rec.pkts_toclient == 3  # SYN-ACK, data, FIN from the responder


def test_first_packet_sender_otherwise():
    pk = [
        P(1.0, B, 53, A, 3333, proto=17, payload=60),
        P(1.1, A, 3333, B, 53, proto=17, payload=30),
    ]
    (rec,) = finals(run(pk))
    assert (rec.src_ip, rec.src_port, rec.pkts_toserver, rec.payload_bytes_toserver) == (
        B,
        53,
        1,
        60,
    )


# -- statistics against the reference -------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("proto", [6, 17])
def test_stats_match_python_reference(seed, proto):
    rng = random.Random(seed)
    pk = random_flow(rng, rng.choice([3, 20, 45, 120]), proto)
    config = FlowConfig(idle_timeout_tcp=1e6, idle_timeout_other=1e6, active_timeout=1e7)
    (rec,) = finals(run(pk, config, batches=1 + seed % 3))
    assert_matches(rec, reference(pk, (A, 51000)))


def test_welford_is_stable_for_large_offsets():
    """Equal sizes and gaps around a huge epoch: naive sum-of-squares would give noise."""
    t0 = 1.7e9  # + multiples of 0.25 s stay exact in float64 seconds
    pk = [P(t0 + i * 0.25, A, 1, B, 2, proto=17, payload=1000) for i in range(2000)]
    (rec,) = finals(run(pk))
    assert rec.size_std_toserver == 0.0
    assert rec.iat_std_toserver == 0.0 and rec.iat_mean_toserver == 0.25


# -- timeouts and ends -----------------------------------------------------------------------
def test_idle_timeout_splits_udp_and_tcp_differently():
    pk = [
        P(0.0, A, 1, B, 2, proto=17),
        P(100.0, A, 1, B, 2, proto=17),
        P(221.0, A, 1, B, 2, proto=17),
    ]
    pk += [
        P(0.5, A, 3, B, 4, flags="A"),
        P(250.0, A, 3, B, 4, flags="A"),
        P(551.0, A, 3, B, 4, flags="A"),
    ]
    pk.sort(key=lambda p: p.t)
    recs = finals(run(pk))
    udp = sorted((r for r in recs if r.proto == "UDP"), key=lambda r: r.start_epoch)
    tcp = sorted((r for r in recs if r.proto == "TCP"), key=lambda r: r.start_epoch)
    # the last UDP packet (221 s) is idle by the time the TCP flow's last packet (551 s) comes
    assert [(r.pkts_toserver, r.end_reason) for r in udp] == [(2, "idle"), (1, "idle")]
    assert [(r.pkts_toserver, r.end_reason) for r in tcp] == [(2, "idle"), (1, "eof")]
    assert udp[0].flow_id != udp[1].flow_id


def test_active_timeout_emits_segments_of_one_flow():
    pk = [P(i * 100.0, A, 1, B, 2, proto=17, payload=10) for i in range(45)]  # 0 .. 4400 s
    recs = finals(run(pk, FlowConfig(active_timeout=1800, idle_timeout_other=200)))
    recs.sort(key=lambda r: r.segment)
    assert [r.segment for r in recs] == [0, 1, 2]
    assert [r.end_reason for r in recs] == ["active", "active", "eof"]
    assert len({r.flow_id for r in recs}) == 1
    assert [r.pkts_toserver for r in recs] == [18, 18, 9]
    assert recs[1].start_epoch == 1800.0 and recs[0].end_epoch == 1700.0


def test_fin_linger_absorbs_late_ack_then_new_flow():
    pk = tcp_session(10.0, A, 40000, B, 80, [(10, 20)])
    end = pk[-1].t
    pk.append(P(end + 2.0, B, 80, A, 40000, flags="A"))  # within the 5 s linger
    pk.append(P(end + 9.0, A, 40000, B, 80, flags="PA", payload=5))  # after it: new flow
    recs = sorted(finals(run(pk)), key=lambda r: r.start_epoch)
    assert [r.end_reason for r in recs] == ["fin", "eof"]
    assert recs[0].pkts_toclient == 4 and recs[0].flow_id != recs[1].flow_id
    assert recs[1].pkts_toserver == 1


def test_new_syn_after_fin_starts_new_flow_at_once():
    pk = tcp_session(10.0, A, 40000, B, 80, [(10, 20)])
    pk += tcp_session(pk[-1].t + 0.5, A, 40000, B, 80, [(30, 40)])  # port reuse inside linger
    recs = sorted(finals(run(pk)), key=lambda r: r.start_epoch)
    assert [r.end_reason for r in recs] == ["fin", "fin"]
    assert [r.payload_bytes_toserver for r in recs] == [10, 30]


def test_rst_ends_flow_and_sweep_emits_it_after_linger():
    pk = [P(1.0, A, 5, B, 6, flags="S"), P(1.01, B, 6, A, 5, flags="RA")]
    pk.append(P(20.0, C, 1, B, 2, proto=17))  # moves the clock past the linger
    table = FlowTable()
    first = table.update(make_batch(pk[:2])).records()
    assert first == []  # still lingering
    recs = table.update(make_batch(pk[2:])).records()
    assert [(r.end_reason, r.rst_toclient) for r in recs] == [("rst", 1)]


def test_eof_inside_linger_reports_fin():
    (rec,) = finals(run(tcp_session(1.0, A, 1, B, 2, [(1, 1)])))
    assert rec.end_reason == "fin"


def test_eviction_under_the_cap_takes_longest_idle():
    pk = [
        P(1.0, A, 1, B, 1, proto=17),
        P(2.0, A, 2, B, 2, proto=17),
        P(2.5, A, 1, B, 1, proto=17),
        P(3.0, A, 3, B, 3, proto=17),
    ]
    table = FlowTable(FlowConfig(max_flows=2))
    recs = []
    for p in pk:
        recs += table.update(make_batch([p])).records()
    assert [(r.end_reason, r.src_port) for r in recs] == [("evicted", 2)]
    assert table.live_flows == 2
    rest = table.flush().records()
    assert sorted(r.src_port for r in rest) == [1, 3]
    assert table.stats.evictions == 1


def test_eviction_when_one_batch_has_more_new_flows_than_the_cap():
    pk = [P(1.0 + i, A, 100 + i, B, 53, proto=17) for i in range(7)]
    recs = run(pk, FlowConfig(max_flows=3))
    assert sorted(r.src_port for r in recs) == list(range(100, 107))
    assert sum(r.end_reason == "evicted" for r in recs) == 4


# -- checkpoints ------------------------------------------------------------------------------
def test_packet_checkpoints_are_exact_prefixes():
    rng = random.Random(7)
    pk = random_flow(rng, 40, 6)
    cfg = FlowConfig(checkpoint_packets=(8, 16, 32), idle_timeout_tcp=1e6, active_timeout=1e7)
    recs = run(pk, cfg, batches=3)
    cps = {r.checkpoint: r for r in recs if r.end_reason == "checkpoint"}
    assert set(cps) == {"pkts:8", "pkts:16", "pkts:32"}
    for n in (8, 16, 32):
        assert_matches(cps[f"pkts:{n}"], reference(pk[:n], (A, 51000)))
    (final,) = finals(recs)
    assert final.flow_id == cps["pkts:8"].flow_id


def test_time_checkpoint_holds_state_before_first_packet_at_or_after_t():
    pk = [P(100.0 + i * 3.0, A, 1, B, 2, proto=17, payload=5) for i in range(10)]  # 100..127
    recs = run(pk, FlowConfig(checkpoint_seconds=(10.0,)))
    (cp,) = [r for r in recs if r.end_reason == "checkpoint"]
    assert cp.checkpoint == "secs:10"
    assert cp.pkts_toserver == 4 and cp.end_epoch == 109.0  # 100,103,106,109; 112 >= 110


def test_time_checkpoint_fires_on_clock_tick_without_packets():
    table = FlowTable(FlowConfig(checkpoint_seconds=(10.0, 60.0)))
    assert table.update(make_batch([P(5.0, A, 1, B, 2, proto=17)])).records() == []
    assert table.advance(round(14.9 * NS)).records() == []
    (cp,) = table.advance(round(15.0 * NS)).records()
    assert (cp.checkpoint, cp.pkts_toserver) == ("secs:10", 1)
    assert table.advance(round(60 * NS)).records() == []  # 60 s checkpoint is at 65 s
    # a tick long after: the flow was still alive at 65 s (idle end is 5 + 120 s), so the
    # checkpoint fires first, then the idle end, as if ticks had come every second
    cp60, rec = table.advance(round(200 * NS)).records()
    assert (cp60.checkpoint, rec.end_reason, rec.pkts_toserver) == ("secs:60", "idle", 1)


def test_checkpoints_off_by_default():
    pk = [P(float(i), A, 1, B, 2, proto=17) for i in range(100)]
    assert [r.end_reason for r in run(pk)] == ["eof"]


# -- fragments and ordering -----------------------------------------------------------------
def test_fragments_count_to_their_first_fragment_flow():
    first = P(1.0, A, 7000, B, 53, proto=17, payload=1472, ip_id=77, more_frags=True)
    frag2 = P(
        1.0001, A, 0, B, 0, proto=17, payload=600, ip_id=77, frag_off=185, status=Status.FRAGMENT
    )
    orphan = P(
        1.0002, A, 0, B, 0, proto=17, payload=100, ip_id=99, frag_off=185, status=Status.FRAGMENT
    )
    later = P(
        1.5, A, 0, B, 0, proto=17, payload=100, ip_id=77, frag_off=260, status=Status.FRAGMENT
    )  # next batch: matched across batches
    table = FlowTable()
    table.update(make_batch([first, frag2, orphan]))
    table.update(make_batch([later]))
    (rec,) = table.flush().records()
    assert rec.pkts_toserver == 3 and rec.frags_toserver == 2
    assert rec.ip_bytes_toserver == first.ip_len + frag2.ip_len + later.ip_len
    assert rec.bytes_toserver == rec.ip_bytes_toserver + 3 * 14
    assert table.stats.frags_attributed == 2 and table.stats.frags_unattributed == 1


def test_unordered_batch_is_sorted_and_late_packets_counted():
    pk = [P(1.0, A, 1, B, 2, proto=17), P(1.2, B, 2, A, 1, proto=17), P(1.1, A, 1, B, 2, proto=17)]
    (rec,) = run(pk)
    assert rec.first_pkts["dir"] == [0, 0, 1] and rec.out_of_order == 0
    table = FlowTable()
    table.update(make_batch(pk[:2]))
    table.update(make_batch(pk[2:]))  # older than the flow's last packet
    (rec2,) = table.flush().records()
    assert rec2.out_of_order == 1 and rec2.pkts_toserver == 2 and rec2.iat_min == 0.0


def test_non_ip_rows_are_counted_not_flowed():
    pk = [P(1.0, A, 1, B, 2, proto=17), P(1.1, A, 1, B, 2, proto=17, status=Status.NON_IP)]
    table = FlowTable()
    table.update(make_batch(pk))
    (rec,) = table.flush().records()
    assert rec.pkts_toserver == 1 and table.stats.not_decoded == 1


# -- sequences and payload ------------------------------------------------------------------
def test_last_packets_ring_in_long_flow():
    pk = [
        P(
            i * 0.01,
            A if i % 3 else B,
            1 if i % 3 else 2,
            B if i % 3 else A,
            2 if i % 3 else 1,
            proto=17,
            payload=i + 1,
        )
        for i in range(100)
    ]
    (rec,) = run(pk, batches=4)
    assert rec.first_pkts["len"] == list(range(1, 33))
    assert rec.last_pkts["len"] == list(range(69, 101))
    assert rec.last_pkts["dir"] == [1 if i % 3 else 0 for i in range(68, 100)]  # B initiates


@pytest.mark.parametrize("cap", [1024, 2048, None])
def test_payload_prefix_keeps_message_boundaries_and_caps(cap):
    config = FlowConfig() if cap is None else FlowConfig(payload_bytes=cap)
    cap = config.payload_bytes
    big = cap * 700 // 1024
    msgs = [b"GET / HTTP/1.1\r\n", b"x" * big, b"y" * big, b"z" * 10, b"w" * 10]
    pk = [P(1.0, A, 1, B, 2, flags="S")]
    seq = 1
    for i, m in enumerate(msgs):
        pk.append(P(1.1 + i * 0.1, A, 1, B, 2, flags="PA", payload=m, seq=seq))
        if i == 0:  # a retransmission of the first message is skipped
            pk.append(P(1.15, A, 1, B, 2, flags="PA", payload=m, seq=seq))
        seq += len(m)
    (rec,) = run(pk, config)
    kept = rec.payload_toserver
    assert kept[0] == msgs[0] and kept[1] == msgs[1]
    assert kept[2] == msgs[2][: cap - len(msgs[0]) - big]
    assert len(kept) == 3 and sum(map(len, kept)) == cap
    assert rec.payload_toclient == []


def test_record_fields_cover_the_dataclass():
    (rec,) = run([P(1.0, A, 1, B, 2, proto=17)])
    assert list(rec.to_json_dict()) == RECORD_FIELDS


def test_growth_paths_keep_every_flow_and_payload():
    """5000 concurrent flows in one batch: state rows, payload pool and the output buffer all
    grow or refill mid-batch (4096-record buffer), and nothing is lost or mixed up."""
    n = 5000
    pk = []
    for i in range(n):
        src = f"10.{i // 250}.{i % 250}.1"
        pk.append(P(1.0 + i * 1e-4, src, 1000 + i % 50, B, 53, proto=17, payload=b"q%d" % i))
        pk.append(P(2.0 + i * 1e-4, B, 53, src, 1000 + i % 50, proto=17, payload=b"r%d" % i))
    table = FlowTable(FlowConfig(checkpoint_packets=(1,)))
    recs = table.update(make_batch(pk)).records()
    assert len(recs) == n and {r.checkpoint for r in recs} == {"pkts:1"}
    final = table.flush().records()
    assert len(final) == n and table.live_flows == 0
    for r in final:
        i = int(r.payload_toserver[0][1:])
        assert r.src_ip == f"10.{i // 250}.{i % 250}.1"
        assert r.payload_toclient == [b"r%d" % i]
        assert (r.pkts_toserver, r.pkts_toclient) == (1, 1)
    assert len({r.flow_id for r in final}) == n


def test_late_syn_from_the_other_side_flips_the_orientation():
    """Initiator = the pure SYN's sender even when a responder packet was captured first."""
    pk = [
        P(1.0, B, 80, A, 40000, flags="A", payload=10, seq=7),  # stray packet from the server
        P(1.1, A, 40000, B, 80, flags="S"),
        P(1.2, B, 80, A, 40000, flags="SA"),
        P(1.3, A, 40000, B, 80, flags="PA", payload=5, seq=1),
    ]
    (rec,) = run(pk)
    assert (rec.src_ip, rec.src_port) == (A, 40000)
    assert (rec.pkts_toserver, rec.pkts_toclient) == (2, 2)
    assert rec.syn_toserver == 1 and rec.syn_toclient == 1
    assert rec.payload_toclient == [P(0, A, 0, B, 0, payload=10).payload_bytes]
    assert rec.payload_toserver == [P(0, A, 0, B, 0, payload=5).payload_bytes]
    assert rec.first_pkts["dir"] == [1, 0, 1, 0]
    assert rec.size_max_toclient == 50 and rec.size_max_toserver == 45
    # a SYN seen first keeps its orientation against a later pure SYN from the other side
    pk2 = [P(1.0, A, 40000, B, 80, flags="S"), P(1.1, B, 80, A, 40000, flags="S")]
    (rec2,) = run(pk2)
    assert rec2.src_ip == A and rec2.syn_toclient == 1


def test_checkpoint_names_follow_the_config_order():
    pk = [P(float(i), A, 1, B, 2, proto=17) for i in range(6)]
    recs = run(pk, FlowConfig(checkpoint_packets=(5, 2), checkpoint_seconds=(4.0, 1.0)))
    cps = {r.checkpoint: r.pkts_toserver for r in recs if r.end_reason == "checkpoint"}
    assert cps == {"pkts:2": 2, "pkts:5": 5, "secs:1": 1, "secs:4": 4}


def test_payload_bytes_zero_keeps_no_payload_and_bad_values_fail():
    pk = [P(1.0, A, 1, B, 2, flags="S"), P(1.1, A, 1, B, 2, flags="PA", payload=b"abc", seq=1)]
    (rec,) = run(pk, FlowConfig(payload_bytes=0))
    assert rec.payload_toserver == [] and rec.payload_bytes_toserver == 3
    with pytest.raises(FlowdetError, match="payload_bytes"):
        FlowConfig(payload_bytes=-1)


@pytest.mark.parametrize("vlan_in_key", [True, False])
def test_vlan_is_part_of_the_flow_key(vlan_in_key):
    """The same 5-tuple on VLANs 10 and 20 is two flows (Suricata's default), or one."""
    pk = []
    for k, vlan in enumerate((10, 20, 10)):
        pk += [
            P(1.0 + k, A, 40000, B, 80, proto=17, payload=10, vlan=vlan),
            P(1.1 + k, B, 80, A, 40000, proto=17, payload=20, vlan=vlan),
        ]
    recs = run(pk, FlowConfig(vlan_in_key=vlan_in_key))
    if vlan_in_key:
        by_vlan = {r.vlan: r for r in recs}
        assert sorted(by_vlan) == [10, 20] and len(recs) == 2
        assert by_vlan[10].pkts_toserver == 2 and by_vlan[10].pkts_toclient == 2
        assert by_vlan[20].pkts_toserver == 1 and by_vlan[20].pkts_toclient == 1
        assert by_vlan[10].community_id == by_vlan[20].community_id  # 5-tuple only
        assert by_vlan[10].flow_id != by_vlan[20].flow_id
    else:
        (rec,) = recs
        assert rec.vlan == 0 and rec.pkts_toserver == 3 and rec.pkts_toclient == 3


@pytest.mark.parametrize("capture", ["pcaps", "mining-real"])
def test_checkpoints_in_domain_only_are_the_tcp_payload_subset(capture, request):
    """The scorer's setting drops exactly the snapshots of non-TCP and payload-less flows;
    every other record (finals, and the snapshots kept, with the same checkpoint names and
    counts) is as with all snapshots on, and a time checkpoint skipped while a flow had no
    payload is never emitted later under its name."""
    from pathlib import Path

    from flowdet.flows import iter_flows

    if capture == "pcaps":
        src = Path(__file__).resolve().parents[1] / "pcaps"
    else:
        src = request.getfixturevalue("corpus") / "mining-real"
    full_cfg = FlowConfig().with_default_checkpoints()
    full = list(iter_flows([str(src)], full_cfg))
    part = list(
        iter_flows(
            [str(src)], FlowConfig(checkpoints_in_domain_only=True).with_default_checkpoints()
        )
    )
    assert not FlowConfig().checkpoints_in_domain_only  # off unless a scorer asks for it

    def kept(r: FlowRecord) -> bool:
        payload = r.payload_pkts_toserver + r.payload_pkts_toclient
        return r.end_reason != "checkpoint" or (r.proto == "TCP" and payload > 0)

    expected = [r for r in full if kept(r)]
    assert part == expected
    dropped = len(full) - len(part)
    assert dropped > 0, "the captures must hold snapshots outside the domain"


def test_a_skipped_time_checkpoint_stays_skipped_once_payload_arrives():
    pk = [
        P(0.0, A, 40000, B, 443, flags="S"),
        P(0.1, B, 443, A, 40000, flags="SA"),
        P(0.2, A, 40000, B, 443, flags="A", seq=1),
        P(12.0, A, 40000, B, 443, flags="PA", payload=b"hello", seq=1),
        P(70.0, B, 443, A, 40000, flags="PA", payload=b"world", seq=1),
    ]
    cfg = FlowConfig(checkpoint_seconds=(10.0, 60.0), checkpoints_in_domain_only=True)
    cps = [r.checkpoint for r in run(pk, cfg) if r.end_reason == "checkpoint"]
    assert cps == ["secs:60"]  # no payload at 10 s: no snapshot then, and none named so later
    assert [
        r.checkpoint for r in run(pk, dataclasses.replace(cfg, checkpoints_in_domain_only=False))
    ] == ["secs:10", "secs:60", ""]
