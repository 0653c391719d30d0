"""Featurizing straight from a FlowBlock's columns gives the FlowRecord path's values, bit
for bit; the pipeline's RecordView stand-ins hold the FlowRecord's values."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from flowdet.capture import open_capture
from flowdet.features import (
    FEATURIZER_FIELDS,
    RECORD_SCALARS,
    block_payloads,
    block_sequences,
    featurize,
    inputs_of_block,
    inputs_of_records,
    pad_sequences,
)
from flowdet.flows.config import FlowConfig
from flowdet.flows.record import FlowRecord
from flowdet.flows.table import FlowTable

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "pcaps").glob("*.pcapng"))


def _blocks(path: Path) -> list:
    table = FlowTable(FlowConfig().with_default_checkpoints())
    out = []
    with open_capture(path) as reader:
        for batch in reader:
            out.append(table.update(batch))
    out.append(table.flush())
    return [b for b in out if len(b)]


def test_public_field_lists_name_flowrecord_fields() -> None:
    names = {f.name for f in fields(FlowRecord)}
    assert set(FEATURIZER_FIELDS) <= names
    assert set(RECORD_SCALARS) <= set(FEATURIZER_FIELDS)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_block_columns_give_the_records_features(path: Path) -> None:
    blocks = _blocks(path)
    assert blocks
    for blk in blocks:
        recs = blk.records()
        assert block_payloads(blk) == [(r.payload_toserver, r.payload_toclient) for r in recs]
        first, last = block_sequences(blk)
        for got, want in zip(
            (*first, *last),
            (
                *pad_sequences([r.first_pkts for r in recs]),
                *pad_sequences([r.last_pkts for r in recs]),
            ),
            strict=True,
        ):
            assert got.dtype == want.dtype and np.array_equal(got, want)
        a, b = inputs_of_block(blk), inputs_of_records(recs)
        assert np.array_equal(a.scalars, b.scalars)
        assert all(np.array_equal(x, y) for x, y in zip(a.hists, b.hists, strict=True))
        rows = [i for i, r in enumerate(recs) if r.first_pkts["len"]]
        for i in rows:
            want = {k: recs[i].first_pkts[k] for k in ("dir", "len")}
            assert a.first_seqs[i] == want
        Xb, sb = featurize(blk)
        Xr, sr = featurize(recs)
        assert Xb.tobytes() == Xr.tobytes()
        assert [s.features.tobytes() for s in sb] == [s.features.tobytes() for s in sr]


def test_pipeline_stand_ins_hold_the_record_values() -> None:
    """Offline, in-domain rows nobody outputs are RecordViews with the FlowRecord's values,
    alerts are FlowRecords."""
    from flowdet.model import Detector
    from flowdet.pipeline import RecordStub, RecordView, ScoredBlock, ScoringPipeline

    seen: list[ScoredBlock] = []

    class Tap(ScoringPipeline):
        def on_scored(self, scored: ScoredBlock) -> None:
            seen.append(scored)

    n_views = n_stubs = n_alerts = 0
    for path in SAMPLES:
        pipe = Tap(Detector.load())
        with open_capture(path) as reader:
            for batch in reader:
                pipe.feed(batch)
        pipe.flush()
    for sc in seen:
        full = sc.block.records()
        for i, rec in enumerate(sc.records):
            assert sc.records[i] is rec  # made once
            kind = type(rec)
            if kind in (RecordView, RecordStub):
                n_views += kind is RecordView
                n_stubs += kind is RecordStub
                for f in fields(kind):
                    assert getattr(rec, f.name) == getattr(full[i], f.name), f.name
        for v in sc.verdicts:
            assert isinstance(v.record, FlowRecord)
            n_alerts += v.is_alert
    assert n_views > 10 and n_stubs > 10 and n_alerts >= 3


def test_rows_subset_gives_the_same_bits_and_the_cheap_columns() -> None:
    from flowdet.features import CHEAP_COLUMNS, FEATURE_NAMES, featurize_inputs

    blk = max((b for p in SAMPLES for b in _blocks(p)), key=len)
    inputs, sigs = inputs_of_block(blk), featurize(blk)[1]
    full = featurize_inputs(inputs, sigs)
    rows = np.arange(len(blk)) % 3 == 0
    part = featurize_inputs(inputs, sigs, rows)
    assert part[rows].tobytes() == full[rows].tobytes()
    cheap = np.array([n in CHEAP_COLUMNS for n in FEATURE_NAMES])
    assert part[~rows][:, cheap].tobytes() == full[~rows][:, cheap].tobytes()
    assert not part[~rows][:, ~cheap].any()
    assert full[~rows][:, ~cheap].any()  # the test would notice columns left out
    # the mask may come from a function of the cheap columns
    seen = []
    got = featurize_inputs(inputs, sigs, lambda X: seen.append(X.copy()) or rows)
    assert got.tobytes() == part.tobytes()
    assert not seen[0][:, ~cheap].any()


def test_gate_first_featurizing_keeps_the_probabilities() -> None:
    """Rows the model's domain gate decides get the same probabilities without the costly
    columns: what ScoringPipeline relies on (flowdet.pipeline._gate_rows)."""
    from flowdet.features import CHEAP_COLUMNS, featurize_inputs
    from flowdet.model import Detector

    det = Detector.load()
    assert set(det.gate_features) <= CHEAP_COLUMNS
    n_decided = 0
    for path in SAMPLES:
        for blk in _blocks(path):
            inputs, sigs = inputs_of_block(blk), featurize(blk)[1]
            full = featurize_inputs(inputs, sigs)
            part = featurize_inputs(inputs, sigs, det.undecided)
            assert det.predict_proba(part).tobytes() == det.predict_proba(full).tobytes()
            assert (det.undecided(part) == det.undecided(full)).all()
            n_decided += int((~det.undecided(full)).sum())
    assert n_decided > 20


def test_signature_memo_is_shared_across_calls_and_bounded():
    from flowdet.features import signatures_of_payloads

    a = ([b"SSH-2.0-OpenSSH_9.2\r\n"], [b"SSH-2.0-OpenSSH_9.2\r\n"])
    b = ([b'{"id":1,"method":"mining.subscribe","params":[]}\n'], [])
    c = ([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], [])
    memo: dict = {}
    first = signatures_of_payloads([a, b, a], memo, keep=2)
    assert first[0] is first[2]  # one recognizer pass per distinct pair
    assert signatures_of_payloads([b], memo, keep=2)[0] is first[1]  # carried over
    signatures_of_payloads([c], memo, keep=2)
    assert list(memo) == [(tuple(b[0]), ()), (tuple(c[0]), ())]  # oldest (a) dropped
