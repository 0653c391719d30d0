"""Live alert events and per-alert pcaps, with a scripted detector on hand-built packets.

The detector's probabilities follow a script keyed on the packets a record has seen, so
each rule of flowdet.live.events (first alert, update on a score rise or a label change,
no update on a small rise, flow_end on the final record, alert at the end only) is
exercised on purpose; the flow table, the pipeline and the sinks are the real ones.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from capture_fab import eth, ipv4, pcap, tcp

from flowdet.capture import open_capture
from flowdet.capture.batch import PacketBatch
from flowdet.live.events import EV_ALERT, EV_END, EV_UPDATE, LiveEvent, LivePipeline
from flowdet.live.sinks import AlertPcaps

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
CLASSES = ("benign", "mining", "ssh-tunnel")


def _flow(sport: int, n: int, t0: int, step: int = 10_000_000) -> list[tuple[int, bytes]]:
    """A TCP connection 10.0.0.1:sport -> 10.0.0.2:3333: handshake, n payload packets, FIN."""
    c, s = ("10.0.0.1", "10.0.0.2")
    pk = [(c, s, sport, 3333, 0x02, b""), (s, c, 3333, sport, 0x12, b""),
          (c, s, sport, 3333, 0x10, b"")]  # fmt: skip
    for i in range(n):
        if i % 2:
            pk.append((s, c, 3333, sport, 0x18, b"y" * 40))
        else:
            pk.append((c, s, sport, 3333, 0x18, b"x" * 60))
    pk += [(c, s, sport, 3333, 0x11, b""), (s, c, 3333, sport, 0x11, b""),
           (c, s, sport, 3333, 0x10, b"")]  # fmt: skip
    out = []
    for i, (a, b, sp, dp, fl, pl) in enumerate(pk):
        frame = eth(ipv4(a, b, 6, tcp(sp, dp, pl, seq=1000 + i, flags=fl)))
        out.append((t0 + i * step, frame))
    return out


def _featurize(records: Sequence) -> tuple[np.ndarray, list]:
    X = np.array(
        [
            [r.pkts_toserver + r.pkts_toclient, r.end_reason != "checkpoint", r.src_port]
            for r in records
        ],
        dtype=np.float64,
    )
    return X, [None] * len(records)


class Scripted:
    """P(label) as a function of (packets seen, final record?, initiator port)."""

    classes = CLASSES
    feature_names = ("pkts", "final", "sport")

    def __init__(self) -> None:
        self.thresholds = {"mining": 0.5, "ssh-tunnel": 0.5}
        self.card = {"name": "scripted"}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = []
        for pkts, final, sport in X.tolist():
            if sport == 40001:  # rises, changes label, then the full flow says benign
                if final:
                    p = (0.9, 0.05, 0.05)
                elif pkts < 16:
                    p = (0.4, 0.6, 0.0)
                elif pkts < 32:
                    p = (0.38, 0.62, 0.0)  # +0.02: no update
                elif pkts < 64:
                    p = (0.3, 0.7, 0.0)  # +0.10: update
                else:
                    p = (0.1, 0.1, 0.8)  # another label: update
            elif sport == 40002:  # never crosses
                p = (0.8, 0.2, 0.0)
            else:  # 40003: crosses only on its final record
                p = (0.1, 0.9, 0.0) if final else (0.7, 0.3, 0.0)
            out.append(p)
        return np.array(out)


def _batches(records: list[tuple[int, bytes]], pieces: int) -> list[PacketBatch]:
    records = sorted(records)
    with open_capture(io.BytesIO(pcap(records))) as r:
        batch = next(iter(r))
    cuts = np.array_split(np.arange(len(batch)), pieces)
    return [batch.take(c) for c in cuts if len(c)]


def _run(pieces: int, pcaps: AlertPcaps | None = None) -> list[LiveEvent]:
    recs = _flow(40001, 80, T0) + _flow(40002, 80, T0 + 1) + _flow(40003, 20, T0 + 2)
    pipe = LivePipeline(Scripted(), featurize=_featurize, source="test")
    events: list[LiveEvent] = []
    for b in _batches(recs, pieces):
        if pcaps is not None:
            pcaps.packets(b)
        evs = pipe.feed_events(b)
        if pcaps is not None:
            pcaps.events(evs)
        events += evs
    evs = pipe.flush_events()
    if pcaps is not None:
        pcaps.events(evs)
    return events + evs


def _summary(events: list[LiveEvent]) -> list[tuple]:
    return [
        (e.verdict.record.src_port, e.event, e.stage, e.verdict.label, e.verdict.record.checkpoint)
        for e in events
    ]


def test_events_follow_the_rules() -> None:
    got = _summary(_run(pieces=1))
    per_flow: dict[int, list[tuple]] = {}
    for port, *rest in got:
        per_flow.setdefault(port, []).append(tuple(rest))
    assert per_flow == {
        40001: [
            (EV_ALERT, "early", "mining", "pkts:8"),
            (EV_UPDATE, "early", "mining", "pkts:32"),  # +0.10 (pkts:16 rose only 0.02)
            (EV_UPDATE, "early", "ssh-tunnel", "pkts:64"),  # another label
            (EV_END, "final", "benign", ""),  # the full flow does not support it
        ],
        40003: [(EV_ALERT, "final", "mining", "")],  # crossed only at its end
    }, got


def test_events_do_not_depend_on_batch_boundaries() -> None:
    assert sorted(_summary(_run(pieces=1))) == sorted(_summary(_run(pieces=17)))


def test_coalesced_batches_give_the_same_events() -> None:
    recs = _flow(40001, 80, T0) + _flow(40002, 80, T0 + 1) + _flow(40003, 20, T0 + 2)
    batches = _batches(recs, 23)
    pipe = LivePipeline(Scripted(), featurize=_featurize, source="test")
    events = pipe.feed_many(batches[:10]) + pipe.feed_many(batches[10:11])
    events += pipe.feed_many(batches[11:]) + pipe.flush_events()
    assert sorted(_summary(events)) == sorted(_summary(_run(pieces=1)))


def test_first_alert_keeps_its_first_crossing() -> None:
    evs = [e for e in _run(pieces=5) if e.verdict.record.src_port == 40001]
    first = evs[0].verdict
    assert first.first_checkpoint == "pkts:8" and first.first_pkts == 8
    upd = evs[1].verdict
    assert upd.first_checkpoint == "pkts:8"  # same label: still first reached at 8 packets
    assert upd.record.pkts_toserver + upd.record.pkts_toclient == 32


def _count(path: str) -> tuple[int, set[int]]:
    with open_capture(path) as r:
        n, ports = 0, set()
        for b in r:
            n += len(b)
            ports |= set(b.sport.tolist()) | set(b.dport.tolist())
    return n, ports


def test_alert_pcap_holds_the_whole_flow_and_grows(tmp_path) -> None:
    pcaps = AlertPcaps(str(tmp_path / "pcaps"))
    _run(pieces=13, pcaps=pcaps)
    files = {p.name: _count(str(p)) for p in (tmp_path / "pcaps").iterdir()}
    assert len(files) == 2, files  # 40001 (early) and 40003 (final only)
    by_port = {next(iter(ports - {3333})): n for n, ports in files.values()}
    assert by_port == {40001: 86, 40003: 26}  # handshake 3 + payload + FIN/FIN/ACK 3
    assert pcaps.stats.missed == 0


def test_alert_pcap_ring_is_bounded_and_counts_what_it_lost(tmp_path) -> None:
    pcaps = AlertPcaps(str(tmp_path / "pcaps"), ring_bytes=1)  # keeps one batch only
    _run(pieces=40, pcaps=pcaps)
    assert pcaps.stats.ring_batches == 1
    n40001 = [n for n, ports in map(_count, map(str, (tmp_path / "pcaps").iterdir()))
              if 40001 in ports]  # fmt: skip
    assert n40001 and n40001[0] < 86
    assert pcaps.stats.missed > 0
    assert n40001[0] + pcaps.stats.missed >= 86 - 8  # lost = not in the ring at the alert
