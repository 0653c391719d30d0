"""Batches joined before scoring (flowdet.live.coalesce): same packets, same events."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from test_live_events import T0, Scripted, _batches, _featurize, _flow, _run, _summary

from flowdet.capture.batch import PacketBatch
from flowdet.live.coalesce import join_batches
from flowdet.live.events import LivePipeline
from flowdet.live.loop import LiveLoop, LiveSource, Sinks, _groups
from flowdet.live.sinks import JsonlLiveSink


def _records() -> list[tuple[int, bytes]]:
    return _flow(40001, 80, T0) + _flow(40002, 80, T0 + 1) + _flow(40003, 20, T0 + 2)


def _whole() -> PacketBatch:
    return _batches(_records(), 1)[0]


def test_join_keeps_every_row_and_its_bytes() -> None:
    whole = _whole()
    # pieces made by take() share the whole batch's buffer; one piece is empty
    cuts = [*np.array_split(np.arange(len(whole)), 7), np.arange(0)]
    pieces = [whole.take(c) for c in cuts]
    joined = join_batches(pieces)
    assert len(joined) == len(whole)
    for name in ("ts_ns", "sport", "dport", "tcp_seq", "payload_len", "status", "caplen"):
        assert np.array_equal(getattr(joined, name), getattr(whole, name)), name
    assert [joined.payload(i) for i in range(len(joined))] == [
        whole.payload(i) for i in range(len(whole))
    ]
    # only the bytes the rows point into are copied, not the shared buffer once per piece
    assert joined.data.nbytes <= whole.data.nbytes
    assert len(join_batches([])) == 0
    assert join_batches([pieces[0]]) is pieces[0]


def test_joined_batches_give_the_events_of_separate_ones() -> None:
    pieces = _batches(_records(), 23)
    pipe = LivePipeline(Scripted(), featurize=_featurize, source="test")
    events = pipe.feed_events(join_batches(pieces[:9])) + pipe.feed_events(pieces[9])
    events += pipe.feed_events(join_batches(pieces[10:])) + pipe.flush_events()
    assert sorted(_summary(events)) == sorted(_summary(_run(pieces=23)))


class Pieces(LiveSource):
    name = "pieces"

    def __init__(self, pieces: list[PacketBatch]) -> None:
        self.pieces = pieces

    def batches(self) -> Iterator[PacketBatch]:
        yield from self.pieces


def test_the_loop_scores_waiting_batches_in_one_call() -> None:
    pieces = _batches(_records(), 23)
    records: list[dict] = []
    loop = LiveLoop(
        Pieces(pieces),
        LivePipeline(Scripted(), featurize=_featurize, source="test"),
        Sinks([JsonlLiveSink(io.StringIO())]),
        status_every=0,
        err=io.StringIO(),
        linger=60.0,  # waits for more until the end of the stream: fewer than 4096 packets
        on_record=records.append,
    )
    assert loop.run() == 0
    assert loop.stats.batches == len(pieces) and loop.stats.scoring_calls == 1
    assert loop.stats.packets == sum(len(p) for p in pieces)
    got = sorted((r["src_port"], r["alert_event"], r["label"]) for r in records)
    want = sorted((port, ev, label) for port, ev, _, label, _ in _summary(_run(pieces=1)))
    assert got == want
    # a file waits for scoring: no overload is reported for it
    assert not any("behind" in line.lower() for line in loop.summary())


def test_small_batches_are_grouped_large_ones_left_alone() -> None:
    sizes = [5000, 100, 100, 5000, 10]
    batches = [PacketBatch.empty(n) for n in sizes]
    groups = [[len(b) for b in g] for g in _groups(batches, 4096)]
    assert groups == [[5000], [100, 100, 5000], [10]]
