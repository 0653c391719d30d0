"""Live alert events: the scoring pipeline with early verdicts, and when a flow is reported.

The offline pipeline (flowdet.pipeline) labels a flow from its final record. Live, a flow is
reported while it is still open:

- `alert`: the first record of a flow, at the earliest prefix checkpoint whose label is not
  benign (or at the flow's end if no checkpoint crossed a threshold);
- `alert_update`: a later checkpoint of the same open flow with another alert label, or a
  score at least `UPDATE_STEP` above the last reported one;
- `flow_end`: the final record of a flow that was reported earlier, whatever its label; a
  final `benign` label means the full flow no longer supports the early alert.

Records are the `flowdet score` records (flowdet.alerts.alert_record) plus the fields of
`LIVE_FIELDS`, added at the end, so a consumer of `score` output reads live output as is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowdet.alerts import AlertField, alert_record, field_table
from flowdet.flows import layout as L
from flowdet.flows.record import FlowBlock
from flowdet.pipeline import FlowState, RecordStub, ScoredBlock, ScoringPipeline, Verdict
from flowdet.verdicts import BENIGN

# A rise in score smaller than this is not worth a new record (probabilities wobble by a few
# hundredths from one checkpoint to the next).
UPDATE_STEP = 0.05

EV_ALERT, EV_UPDATE, EV_END = "alert", "alert_update", "flow_end"
_EMPTY_STATE = FlowState()  # verdict state of a flow the base class already let go

LIVE_FIELDS: tuple[AlertField, ...] = (
    AlertField(
        "verdict_stage",
        "string",
        '"early": made at a prefix checkpoint while the flow is open; "final": the flow ended '
        "(fin, rst, idle, active timeout, evicted, or eof when live stops)",
    ),
    AlertField(
        "alert_event",
        "string",
        '"alert": first record of the flow; "alert_update": its label changed or its score rose '
        f'by >= {UPDATE_STEP} while open; "flow_end": final record of a flow reported earlier '
        "(label benign = the early alert is not confirmed by the full flow)",
    ),
    AlertField(
        "checkpoint",
        "string|null",
        "The checkpoint this record was made at (pkts:N or secs:T; verdict_checkpoint is the "
        "first one that crossed the threshold); null on final records",
    ),
    AlertField(
        "emitted",
        "string",
        "Wall-clock time the record was written, ISO 8601 UTC (timestamp - emitted = "
        "decision latency on a live interface)",
    ),
)


def live_fields_markdown() -> str:
    """The field table of docs/live.md (`flowdet live --fields`), from LIVE_FIELDS."""
    return field_table(LIVE_FIELDS)


@dataclass(slots=True)
class LiveEvent:
    verdict: Verdict
    event: str  # EV_ALERT, EV_UPDATE or EV_END

    @property
    def stage(self) -> str:
        return "final" if self.verdict.final else "early"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def live_record(ev: LiveEvent, model: str = "", emitted: str | None = None) -> dict[str, Any]:
    rec = alert_record(ev.verdict, model)
    rec["verdict_stage"] = ev.stage
    rec["alert_event"] = ev.event
    rec["checkpoint"] = None if ev.verdict.final else (ev.verdict.record.checkpoint or None)
    rec["emitted"] = emitted or now_iso()
    return rec


class LivePipeline(ScoringPipeline):
    """ScoringPipeline with early verdicts, turned into alert events (see module doc).

    Updates need the label and score of every checkpoint, which the base class scores but
    returns only at the first crossing; its `on_scored` hook hands over every scored block,
    so nothing is scored twice.
    """

    def __init__(self, detector: Any, **kw: Any) -> None:
        kw["early"] = True
        kw["all_flows"] = False  # benign finals of reported flows are made here, not for all
        super().__init__(detector, **kw)
        self._reported: dict[int, tuple[str, float]] = {}  # flow_id -> last (label, score)
        self._scored: ScoredBlock | None = None
        self.events: dict[str, int] = {EV_ALERT: 0, EV_UPDATE: 0, EV_END: 0}
        self.alert_labels: dict[str, int] = {}  # "alert" events by label (stats records)

    @property
    def alerted_open(self) -> int:
        return len(self._reported)

    def on_scored(self, scored: ScoredBlock) -> None:
        self._scored = scored

    def feed_events(self, batch: Any) -> list[LiveEvent]:
        return self._events(self.table.update(batch))

    def feed_many(self, batches: list[Any]) -> list[LiveEvent]:
        """Several batches (a backlog the loop took at once), batch by batch.

        The records and events are those of one block made of all of them (the table does
        not depend on batch boundaries and the order is kept), but joining the blocks
        would copy every record's payload prefixes (4 KiB a row) only to read a few of
        them; signature passes are still shared by a flow's records across batches (the
        pipeline keeps them per open flow)."""
        out: list[LiveEvent] = []
        for b in batches:
            out.extend(self._events(self.table.update(b)))
        return out

    def advance_events(self, now_ns: int) -> list[LiveEvent]:
        return self._events(self.table.advance(now_ns))

    def flush_events(self) -> list[LiveEvent]:
        out = self._events(self.table.flush())
        self.clear_state()
        return out

    def _events(self, block: FlowBlock) -> list[LiveEvent]:
        self._scored = None
        self.consume(block)
        sc = self._scored
        if sc is None or sc.block is not block:
            return []
        self._scored = None
        recs, X, lab, score = sc.records, sc.X, sc.labels, sc.scores
        by_rec = {id(v.record): v for v in sc.verdicts}
        is_ckpt = block.reason == L.R_CHECKPOINT
        out: list[LiveEvent] = []
        new_rows: list[int] = []
        new_verdicts: list[Verdict] = []
        # benign checkpoints make no event: visit only the other rows
        visit = np.flatnonzero(~(is_ckpt & (lab == self.classes.index(BENIGN))))
        for i in visit.tolist():
            rec = recs[i]
            fid = rec.flow_id
            prev = self._reported.get(fid)
            v = by_rec.get(id(rec))
            if is_ckpt[i]:
                label = self.classes[int(lab[i])]
                if label == BENIGN:
                    continue
                s = float(score[i])
                if v is None:  # the base class reports only a label's first crossing
                    if prev is None or (label == prev[0] and s < prev[1] + UPDATE_STEP):
                        continue
                    st = self.flow_state(fid)
                    if st is None or label not in st.crossed:
                        continue
                    v = self.verdict(sc, i, st)
                    new_rows.append(i)
                    new_verdicts.append(v)
                elif prev is not None and label == prev[0] and s < prev[1] + UPDATE_STEP:
                    continue
                event = EV_ALERT if prev is None else EV_UPDATE
                self._reported[fid] = (label, s)
                out.append(LiveEvent(v, event))
                continue
            if v is None:
                if prev is None:
                    continue
                if isinstance(rec, RecordStub):  # ended out of the model's domain: benign
                    if rec.end_reason != "active":
                        self._reported.pop(fid, None)
                    continue
                # a reported flow ends benign: the full flow no longer supports the alert
                st = self.flow_state(fid) or _EMPTY_STATE
                v = self.verdict(sc, i, st, final=True)
            ended = rec.end_reason != "active"  # "active": the flow goes on in a new segment
            if prev is not None:
                out.append(LiveEvent(v, EV_END))
                if ended:
                    self._reported.pop(fid, None)
            elif v.is_alert:
                out.append(LiveEvent(v, EV_ALERT))
                if not ended:
                    self._reported[fid] = (v.label, v.score)
        if new_verdicts:
            self.explain(new_verdicts, X[new_rows])
        for ev in out:
            self.events[ev.event] += 1
            if ev.event == EV_ALERT:
                lab_ = ev.verdict.label
                self.alert_labels[lab_] = self.alert_labels.get(lab_, 0) + 1
        return out
