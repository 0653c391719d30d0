"""The scoring chain, incremental: packet batches (or flow blocks) in, verdicts out.

    pipe = ScoringPipeline(Detector.load())
    for batch in reader:                  # a file, or an endless live stream
        for v in pipe.feed(batch): ...
    for v in pipe.flush(): ...            # end of input

The flow table runs with prefix checkpoints (8/16/32/64/128 packets, 10/60/300 s by
default); the records it emits - checkpoint snapshots and final records - are scored block
by block (one model call per block, never per flow). Records outside the model's domain
(see `in_domain`) are benign without being featurized; offline, checkpoint records are
held back until their flow's final record shows they matter (see `consume`). Per live flow
the pipeline keeps only a little verdict state: the earliest evaluation at which each label
crossed its threshold. So memory follows the number of live flows (and the bounded held
rows), not the length of the input, and the live tap can drive the same object with an
endless source (`feed` per batch, `advance` on clock ticks).

What comes out:
- one final `Verdict` per final record (fin, rst, idle, active timeout segment, eof,
  evicted): the label is decided on the final record, which holds the most information;
  `first_*` fields say at which evaluation (checkpoint or the final record) the probability
  of that label first reached its threshold - the earliest moment the verdict was known.
  Only alerts are returned unless `all_flows`.
- with `early=True` (live), also a non-final Verdict the first time a checkpoint of a
  flow crosses a threshold, so an alert can be raised while the flow is still open; an
  early crossing that the full flow no longer supports is counted in `stats.retracted`.
  Offline scoring leaves it off and holds checkpoint records back until the flow's final
  record says they matter (see `consume`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from flowdet.capture.batch import PacketBatch
from flowdet.errors import ModelError
from flowdet.flows import layout as L
from flowdet.flows.config import FlowConfig
from flowdet.flows.record import FlowBlock, FlowRecord
from flowdet.flows.table import FlowTable
from flowdet.reasons import Reason, flow_reasons
from flowdet.signatures import SignatureResult
from flowdet.verdicts import BENIGN, Decider, effective_thresholds

# Distinct payload prefix pairs whose signature results are kept between blocks.
SIGNATURE_MEMO = 8192

Featurizer = Callable[[Sequence[FlowRecord]], tuple[np.ndarray, list[SignatureResult]]]


def default_featurizer() -> Featurizer:
    from flowdet.features import featurize

    return featurize


@dataclass(slots=True)
class Verdict:
    """The verdict on one flow record, with what is needed to show, store and extract it."""

    record: FlowRecord
    label: str
    score: float
    proba: dict[str, float]
    threshold: float | None  # of the label (None for benign)
    final: bool
    source: str  # capture the flow came from
    start_ns: int  # exact bounds of the record, for extracting its packets
    end_ns: int
    key: tuple[int, ...]  # canonical flow key (flowdet.flows.keys), for extraction
    first_checkpoint: str = ""  # "pkts:8", "secs:60" or "final"; "" when benign
    first_pkts: int | None = None  # flow packets when the verdict was first reached
    first_ns: int | None = None  # time of the last packet of that evaluation, ns
    first_client_payload_pkts: int | None = None
    reasons: list[Reason] = field(default_factory=list)
    drivers_method: str = "none"
    drivers: list[tuple[str, float, float]] = field(default_factory=list)
    signature: SignatureResult | None = None

    @property
    def is_alert(self) -> bool:
        return self.label != BENIGN


@dataclass(frozen=True, slots=True)
class RecordStub:
    """Stands in for the FlowRecord of a row outside the model's domain that no output
    needs (see ScoringPipeline._predict)."""

    flow_id: int
    segment: int
    end_reason: str
    checkpoint: str


@dataclass(frozen=True, slots=True)
class RecordView:
    """Stands in for the FlowRecord of an in-domain row while no output needs it: the
    fields the verdict state reads (same values as the FlowRecord's). Rows that become
    verdicts get their FlowRecord before anything else sees them (see _full_records)."""

    flow_id: int
    segment: int
    end_reason: str
    checkpoint: str
    pkts_toserver: int
    pkts_toclient: int
    payload_pkts_toserver: int


@dataclass(slots=True)
class ScoreStats:
    records: int = 0  # records scored (checkpoints included)
    featurized: int = 0  # of which in the model's domain: featurized and given to the model
    flows: int = 0  # final records
    alerts: dict[str, int] = field(default_factory=dict)
    early_alerts: int = 0
    retracted: int = 0  # flows whose checkpoint crossed a threshold, final record did not
    signature_errors: int = 0


@dataclass(slots=True)
class FlowState:
    """The little verdict state kept per open flow (see the module doc)."""

    # label -> (checkpoint name or 'final', flow packets, last packet ns, client payload pkts)
    crossed: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)
    early_sent: set[str] = field(default_factory=set)
    prior_pkts: int = 0  # packets of earlier active-timeout segments
    prior_client_payload: int = 0


_FlowState = FlowState  # the former private name, for code written against it


class LazyRecords(Sequence):
    """The records of a block's rows for the verdict stage: FlowRecords for the rows given
    as `full` (built at once, in one pass), RecordViews for `views` rows (in the model's
    domain) and RecordStubs for the rest (outside it), those two made only when read - on a
    busy link most rows are benign and never read. Reading a row twice gives the same
    object."""

    def __init__(self, block: FlowBlock, full: np.ndarray, views: np.ndarray) -> None:
        self._block = block
        self._views = np.asarray(views, dtype=bool) & ~np.asarray(full, dtype=bool)
        self._items: list[Any] = block.records() if full.all() else [None] * len(block)
        idx = np.flatnonzero(full)
        if len(idx) and len(idx) < len(block):
            for i, rec in zip(idx.tolist(), block.take(idx).records(), strict=True):
                self._items[i] = rec

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        rec = self._items[i]
        if rec is None:
            rec = self._items[i] = self._make(i)
        return rec

    def _make(self, i: int) -> Any:
        b = self._block
        s = b.s[i]
        c = int(b.ckpt[i])
        head = (
            int(s[L.FLOW_ID]),
            int(s[L.SEGMENT]),
            L.REASON_NAMES[int(b.reason[i])],
            b.checkpoint_names[c] if c >= 0 else "",
        )
        if not self._views[i]:
            return RecordStub(*head)
        return RecordView(
            *head,
            int(s[L.PKTS] + s[L.FRAGS]),
            int(s[L.PKTS + 1] + s[L.FRAGS + 1]),
            int(s[L.PPKTS]),
        )

    def upgrade(self, rows: np.ndarray) -> None:
        """FlowRecords for the `views` rows among `rows` (in one pass)."""
        idx = [i for i in np.asarray(rows).tolist() if self._views[i]]
        if idx:
            for i, rec in zip(idx, self._block.take(np.asarray(idx)).records(), strict=True):
                self._items[i] = rec
                self._views[i] = False


@dataclass(slots=True)
class ScoredBlock:
    """One block of records as the pipeline scored it: the input of `on_scored`.

    Row i of every field belongs to row i of `block`. Records outside the model's domain
    that no output needs are `RecordStub`s; their features are zeros, their signature
    None and P(benign) = 1. In-domain rows that no output needs are `RecordView`s;
    rows that became verdicts, and (with `early` on) all final rows of the domain, are
    FlowRecords.
    """

    block: FlowBlock
    records: Sequence[Any]  # FlowRecord, RecordView or RecordStub (a LazyRecords)
    X: np.ndarray  # features (rows x detector.feature_names); see _gate_rows
    P: np.ndarray  # probabilities (rows x pipeline.classes)
    signatures: list[SignatureResult | None]
    labels: np.ndarray  # index into pipeline.classes of each row's label
    scores: np.ndarray  # each row's score (probability of its label)
    verdicts: list[Verdict]  # what consume() returns for this block, in row order


class ScoringPipeline:
    """flows (with checkpoints) -> features -> model -> verdicts, one block at a time."""

    def __init__(
        self,
        detector: Any,
        *,
        thresholds: dict[str, float] | None = None,
        config: FlowConfig | None = None,
        featurize: Featurizer | None = None,
        all_flows: bool = False,
        early: bool = False,
        source: str = "",
        first_flow_id: int = 1,
        max_pending: int = 16384,
    ) -> None:
        self.detector = detector
        self.classes = tuple(detector.classes)
        self.thresholds = effective_thresholds(
            self.classes, dict(getattr(detector, "thresholds", {}) or {}), thresholds or {}
        )
        self.decider = Decider(self.classes, self.thresholds)
        self.domain_gate = _declares_domain_gate(detector)
        cfg = config or FlowConfig()
        if not cfg.checkpoint_packets and not cfg.checkpoint_seconds:
            cfg = cfg.with_default_checkpoints()
        if self.domain_gate and featurize is None:
            # snapshots outside the gate's domain would be made only to be called benign
            cfg = replace(cfg, checkpoints_in_domain_only=True)
        self.config = cfg
        self.table = FlowTable(cfg, first_flow_id=first_flow_id)
        self.featurize = featurize or default_featurizer()
        # the default featurizer takes precomputed signature results (see _signatures)
        self._own_signatures = featurize is None
        self._sig_memo: dict[tuple, SignatureResult] = {}  # payload prefixes -> result
        self.all_flows = all_flows
        self.early = early
        self.source = source
        self.stats = ScoreStats()
        self._state: dict[int, FlowState] = {}
        # held checkpoint rows (offline, see consume), each block with its alive mask
        self._pending: list[tuple[FlowBlock, np.ndarray]] = []
        self._n_pending = 0
        self.max_pending = max_pending
        if early:  # live: the first alert must not wait for the explainer (numba, trees)
            self.explainer.warm()

    # -- driving ------------------------------------------------------------------------------
    def feed(self, batch: PacketBatch) -> list[Verdict]:
        return self.consume(self.table.update(batch))

    def advance(self, now_ns: int) -> list[Verdict]:
        return self.consume(self.table.advance(now_ns))

    def flush(self) -> list[Verdict]:
        out = self.consume(self.table.flush())
        self.clear_state()
        return out

    @functools.cached_property
    def explainer(self) -> Any:
        """The DriverExplainer of the detector, made at the first alert offline (it
        flattens the trees and its module loads numba, which a capture without alerts never
        needs) and at construction with `early` (live), so no alert waits for it."""
        from flowdet.drivers import DriverExplainer

        return DriverExplainer(self.detector)

    @property
    def live_state(self) -> int:
        """Flows with verdict state held (bounded by the table's live flows)."""
        return len(self._state)

    def clear_state(self) -> None:
        """Forget all per-flow verdict state and held rows (after the table was flushed)."""
        self._state.clear()
        self._pending, self._n_pending = [], 0
        self._sig_memo.clear()

    def flow_state(self, flow_id: int) -> FlowState | None:
        """The verdict state of an open flow (None once its final record was scored)."""
        return self._state.get(flow_id)

    # -- hooks for subclasses ---------------------------------------------------------------------
    def on_scored(self, scored: ScoredBlock) -> None:
        """Called once for every block `consume` scores as a whole - every block when
        `early` is on (live), the final records when it is off - after the verdict state
        of its flows was updated and before its verdicts are returned. Does nothing here.

        This is the stable place to see the label and score of every record, checkpoints
        included (consume returns only a label's first crossing): the live tap
        (flowdet.live.events) turns it into alert updates. Held checkpoint rows scored
        offline to date a verdict do not pass through it. Build extra verdicts with
        `verdict` and give their alerts reasons with `explain`.
        """

    def verdict(
        self, scored: ScoredBlock, i: int, state: FlowState, final: bool = False
    ) -> Verdict:
        """A Verdict for row i of a scored block, its `first_*` fields from `state`."""
        label = self.classes[int(scored.labels[i])]
        return self._verdict(
            scored.block,
            i,
            scored.records[i],
            scored.P[i],
            label,
            float(scored.scores[i]),
            scored.signatures,
            state,
            final,
        )

    def explain(self, verdicts: list[Verdict], X: np.ndarray) -> None:
        """Fill in drivers and reasons of the alerts among `verdicts` (X: their rows)."""
        self._explain(verdicts, X)

    # -- scoring ------------------------------------------------------------------------------
    def in_domain(self, block: FlowBlock) -> np.ndarray:
        """Rows the model is asked about; the rest are benign without being featurized.

        With a detector that declares the domain gate (flowdet.model.Detector: only TCP
        flows that carried payload can be mining or a tunnel, everything else gets
        P(benign) = 1), the same rule is applied here on the block's columns, before the
        costly part - features and signatures - so out-of-domain records (most UDP, ICMP
        and payload-less records of a busy link) cost nothing. The verdicts are the same.
        """
        if not self.domain_gate:
            return np.ones(len(block), dtype=bool)
        proto = (block.key[:, L.K_PP] & np.uint64(0xFF)).astype(np.int64)
        payload = (block.s[:, L.PPKTS] > 0) | (block.s[:, L.PPKTS + 1] > 0)
        return (proto == 6) & payload

    def _predict(self, block: FlowBlock) -> tuple[list[Any], np.ndarray, np.ndarray, list]:
        """(records, features, probabilities, signature results), one per block row; rows
        outside the domain get zero features, no signature result and P(benign) = 1.

        Building a FlowRecord costs more than the table's work on its packets, so rows
        that no output may need get a stand-in: out of the domain a `RecordStub`, inside it
        a `RecordView` (the fields the verdict state reads). With the default featurizer
        the in-domain rows are featurized straight from the block's columns
        (flowdet.features.inputs_of_block: same values as from FlowRecords); `_consume`
        builds FlowRecords for the rows that become verdicts (`_full_records`)."""
        inside = self.in_domain(block)
        final = block.reason != L.R_CHECKPOINT
        outside_full = ~inside & final & (self.all_flows | (block.reason == L.R_ACTIVE))
        if self._own_signatures:
            # live (early) reads the final records of in-domain flows to end its alerts
            inside_full = inside & final & (self.all_flows | self.early)
        else:  # a custom featurizer gets FlowRecords
            inside_full = inside
        views = inside & ~inside_full
        recs = self._records(block, outside_full | inside_full, views)
        names = tuple(self.detector.feature_names)
        n, k = len(recs), len(self.classes)
        keep = np.flatnonzero(inside)
        X = np.zeros((n, len(names)), dtype=np.float32)
        P = np.zeros((n, k), dtype=np.float64)
        P[:, self.classes.index(BENIGN)] = 1.0
        sigs: list = [None] * n
        if len(keep):
            if self._own_signatures:
                from flowdet.features import block_payloads, featurize_inputs, inputs_of_block

                sub = block.take(keep)
                sk = self._signatures(block_payloads(sub))
                Xk = featurize_inputs(inputs_of_block(sub), sk, self._gate_rows(names))
            else:
                Xk, sk = self.featurize([recs[i] for i in keep.tolist()])
            Xk = np.asarray(Xk)
            if Xk.ndim != 2 or Xk.shape[1] != len(names):
                raise ModelError(
                    f"model expects {len(names)} features, the featurizer made "
                    f"{Xk.shape[1] if Xk.ndim == 2 else Xk.shape}: retrain or use a matching "
                    "flowdet"
                )
            Pk = np.asarray(self.detector.predict_proba(Xk), dtype=np.float64)
            if Pk.shape != (len(keep), k):
                raise ModelError(f"model returned probabilities of shape {Pk.shape}")
            X = X.astype(Xk.dtype) if Xk.dtype != X.dtype else X
            X[keep] = Xk
            P[keep] = Pk
            for j, i in enumerate(keep.tolist()):
                sigs[i] = sk[j]
        self.stats.featurized += len(keep)
        return recs, X, P, sigs

    def _gate_rows(self, names: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray] | None:
        """The detector's `undecided` when the rows it leaves out can skip the costly
        feature columns: it declares the domain gate and reads only columns that
        featurize_inputs computes for every row. Most in-domain records of a busy link are
        decided by the gate alone (the 1M mix: 8,784 of 11,325), so their packet-sequence,
        SSH keystroke and post-auth columns are left at 0 (ScoredBlock.X shows that); the
        probabilities are the same."""
        from flowdet.features import CHEAP_COLUMNS, FEATURE_NAMES

        undecided = getattr(self.detector, "undecided", None)
        cols = set(getattr(self.detector, "gate_features", ()) or ())
        if not (self.domain_gate and callable(undecided) and cols and names == FEATURE_NAMES):
            return None
        return undecided if cols <= CHEAP_COLUMNS else None

    def _signatures(self, payloads: list[tuple[list[bytes], list[bytes]]]) -> list[SignatureResult]:
        """Signature results of in-domain records from their (toserver, toclient) payload
        prefixes, as flowdet.features.signatures_of makes them (one recognizer pass per
        distinct pair of payload prefixes), remembered across blocks: a flow's prefixes
        stop growing after a few packets, and many flows open with the same bytes, so later
        checkpoints, final records and other flows mostly find theirs here. The recognizers
        depend on nothing but the bytes, which are compared in full. At most SIGNATURE_MEMO
        pairs are kept, oldest dropped first."""
        from flowdet.features import signatures_of_payloads

        return signatures_of_payloads(payloads, self._sig_memo, SIGNATURE_MEMO)

    @staticmethod
    def _records(block: FlowBlock, full: np.ndarray, views: np.ndarray) -> LazyRecords:
        """A FlowRecord per `full` row (built now, in one pass), a RecordView per `views`
        row, else a RecordStub (both made when first read)."""
        return LazyRecords(block, full, views)

    def consume(self, block: FlowBlock) -> list[Verdict]:
        """Score the records of a block; return final verdicts (and early alerts).

        Offline (`early` off), checkpoint records only matter for the flows that end up
        alerted (to say when the verdict was first reached), so they are held back, in
        columnar form, and scored only when their flow's final record is an alert - most
        flows are benign, and their snapshots are never featurized. Held rows are bounded
        (`max_pending`): past it, the oldest are scored at once, as in live mode.
        """
        if not len(block):
            return []
        if self.early:
            return self._consume(block)
        ck = block.reason == L.R_CHECKPOINT
        if not ck.any():
            return self._consume(block)
        self.stats.records += int(ck.sum())
        hold = np.flatnonzero(ck & self.in_domain(block))  # out of domain: benign anyway
        if len(hold):
            self._pending.append((block.take(hold), np.ones(len(hold), dtype=bool)))
            self._n_pending += len(hold)
            while self._n_pending > self.max_pending and self._pending:
                oldest, alive = self._pending.pop(0)
                self._n_pending -= int(alive.sum())
                self._cross(oldest.take(np.flatnonzero(alive)))
        finals = np.flatnonzero(~ck)
        return self._consume(block.take(finals)) if len(finals) else []

    @staticmethod
    def _full_records(block: FlowBlock, recs: LazyRecords, rows: np.ndarray) -> None:
        """Make the RecordViews among `rows` FlowRecords, in place."""
        recs.upgrade(rows)

    def _cross(self, block: FlowBlock) -> None:
        """Score held checkpoint rows and record each flow's first threshold crossings."""
        recs, _X, P, _sigs = self._predict(block)
        lab, _, _ = self.decider.label_index(P)
        for i in np.flatnonzero(lab != self.classes.index(BENIGN)).tolist():
            rec = recs[i]
            label = self.classes[int(lab[i])]
            st = self._state.get(rec.flow_id)
            if st is None:
                st = self._state[rec.flow_id] = FlowState()
            if label not in st.crossed:
                pkts = st.prior_pkts + rec.pkts_toserver + rec.pkts_toclient
                cpay = st.prior_client_payload + rec.payload_pkts_toserver
                st.crossed[label] = (rec.checkpoint, pkts, int(block.s[i, L.LAST]), cpay)

    def _take_pending(self, flow_ids: np.ndarray, score: bool) -> None:
        """Remove the held rows of these flows, scoring them first if `score`. Rows are
        marked dead in place and a block is compacted only when half of it is dead, so
        the held rows are not copied on every call."""
        if not self._pending or not len(flow_ids):
            return
        taken: list[FlowBlock] = []
        kept: list[tuple[FlowBlock, np.ndarray]] = []
        for b, alive in self._pending:
            m = alive & np.isin(b.s[:, L.FLOW_ID], flow_ids)
            if m.any():
                if score:
                    taken.append(b.take(np.flatnonzero(m)))
                alive = alive & ~m
                n_alive = int(alive.sum())
                if not n_alive:
                    continue
                if 2 * n_alive < len(b):
                    b, alive = b.take(np.flatnonzero(alive)), np.ones(n_alive, dtype=bool)
            kept.append((b, alive))
        self._pending = kept
        self._n_pending = sum(int(a.sum()) for _, a in kept)
        if taken:
            self._cross(FlowBlock.concat(taken))

    def _consume(self, block: FlowBlock) -> list[Verdict]:
        recs, X, P, sigs = self._predict(block)
        lab, score, _ = self.decider.label_index(P)
        classes = self.classes
        is_ckpt = block.reason == L.R_CHECKPOINT
        # rows that crossed a threshold may become verdicts: full records for them
        self._full_records(block, recs, np.flatnonzero(lab != self.classes.index(BENIGN)))
        self.stats.records += len(recs)
        if self._pending:
            fid = block.s[:, L.FLOW_ID]
            alert = (~is_ckpt) & (lab != self.classes.index(BENIGN))
            self._take_pending(np.unique(fid[alert]), score=True)
            self._take_pending(np.unique(fid[~is_ckpt]), score=False)
        out: list[Verdict] = []
        rows: list[int] = []
        benign = lab == classes.index(BENIGN)
        # A benign snapshot changes no verdict state, and neither does the benign final
        # record (not an active-timeout segment) of a flow without state when only alerts
        # are wanted: it is only counted. Visit the other rows.
        quiet = ~is_ckpt & benign & (block.reason != L.R_ACTIVE)
        if self.all_flows:
            quiet[:] = False
        elif self._state and quiet.any():
            held = np.fromiter(self._state, dtype=np.int64, count=len(self._state))
            quiet &= ~np.isin(block.s[:, L.FLOW_ID], held)
        self.stats.flows += int(quiet.sum())
        visit = np.flatnonzero(~((is_ckpt & benign) | quiet))
        for i in visit.tolist():
            rec = recs[i]
            label = classes[int(lab[i])]
            st = self._state.get(rec.flow_id)
            if isinstance(rec, RecordStub):  # out of domain, benign, only alerts wanted
                self.stats.flows += 1
                self._state.pop(rec.flow_id, None)
                if st is not None and st.crossed:
                    self.stats.retracted += 1
                continue
            if st is None:
                st = self._state[rec.flow_id] = FlowState()
            pkts = st.prior_pkts + rec.pkts_toserver + rec.pkts_toclient
            cpay = st.prior_client_payload + rec.payload_pkts_toserver
            if label != BENIGN and label not in st.crossed:
                name = rec.checkpoint if is_ckpt[i] else "final"
                st.crossed[label] = (name, pkts, int(block.s[i, L.LAST]), cpay)
            if is_ckpt[i]:
                if self.early and label not in st.early_sent:
                    st.early_sent.add(label)
                    self.stats.early_alerts += 1
                    out.append(self._verdict(block, i, rec, P[i], label, score[i], sigs, st))
                    rows.append(i)
                continue
            self.stats.flows += 1
            if rec.end_reason == "active":
                st.prior_pkts = pkts
                st.prior_client_payload = cpay
            else:
                self._state.pop(rec.flow_id, None)
            if label == BENIGN and st.crossed:
                self.stats.retracted += 1
            if label != BENIGN:
                self.stats.alerts[label] = self.stats.alerts.get(label, 0) + 1
            if label != BENIGN or self.all_flows:
                out.append(self._verdict(block, i, rec, P[i], label, score[i], sigs, st, True))
                rows.append(i)
        self.stats.signature_errors += sum(1 for s in sigs if s is not None and s.errors)
        self._explain(out, X[rows] if rows else X[:0])
        self.on_scored(ScoredBlock(block, recs, X, P, sigs, lab, score, out))
        return out

    def _explain(self, verdicts: list[Verdict], X: np.ndarray) -> None:
        """Drivers and reasons for the alerts among `verdicts` (rows of X), in one pass."""
        alert = [j for j, v in enumerate(verdicts) if v.label != BENIGN]
        if not alert:
            return
        drivers = self.explainer.drivers(X[alert], [verdicts[j].label for j in alert])
        method = self.explainer.method
        raw = self._estimator_proba(X[alert])
        for n, (j, d) in enumerate(zip(alert, drivers, strict=True)):
            v = verdicts[j]
            v.drivers_method, v.drivers = (method if d else "none"), d
            weights = {n: w for n, _, w in d}
            v.reasons = flow_reasons(v.record, v.signature, v.label, weights or None)
            if raw is not None and v.threshold is not None:
                p_raw = float(raw[n, self.classes.index(v.label)])
                if p_raw < v.threshold:
                    # the trees alone would not have alerted: a rule of the model did
                    v.reasons.insert(
                        0,
                        Reason(
                            f"decided by the model's rule on parsed protocol evidence: "
                            f"P({v.label}) {v.proba[v.label]:.2f}, the trees alone "
                            f"{p_raw:.2f} (threshold {v.threshold:.2f})",
                            "model:rule",
                        ),
                    )

    def _estimator_proba(self, X: np.ndarray) -> np.ndarray | None:
        """The bare estimator's probabilities in the detector's class order, when the
        detector adjusts them afterwards (flowdet.model: domain gate, evidence floor), so a
        verdict made by such a rule rather than by the trees can say so; else None."""
        est = getattr(self.detector, "estimator", None)
        classes = [str(c) for c in getattr(est, "classes_", [])]
        if (
            est is None
            or not hasattr(est, "predict_proba")
            or not set(classes) <= set(self.classes)
        ):
            return None
        P = est.predict_proba(np.asarray(X, dtype=np.float32))
        out = np.zeros((len(X), len(self.classes)))
        for j, c in enumerate(classes):
            out[:, self.classes.index(c)] = P[:, j]
        return out

    def _verdict(
        self,
        block: FlowBlock,
        i: int,
        rec: FlowRecord,
        p: np.ndarray,
        label: str,
        score: float,
        sigs: list,
        st: FlowState,
        final: bool = False,
    ) -> Verdict:
        sig = sigs[i] if i < len(sigs) else None
        v = Verdict(
            record=rec,
            label=label,
            score=float(score),
            proba={c: round(float(q), 6) for c, q in zip(self.classes, p.tolist(), strict=True)},
            threshold=self.thresholds.get(label),
            final=final,
            source=self.source,
            start_ns=int(block.s[i, L.START]),
            end_ns=int(block.s[i, L.LAST]),
            key=tuple(int(k) for k in block.key[i].tolist()),
            signature=sig,
        )
        if label != BENIGN:
            name, pkts, epoch, cpay = st.crossed[label]
            v.first_checkpoint, v.first_pkts, v.first_ns = name, pkts, epoch
            v.first_client_payload_pkts = cpay
        return v


def _declares_domain_gate(detector: Any) -> bool:
    flag = getattr(detector, "domain_gate", None)
    if flag is not None:
        return bool(flag)
    try:
        from flowdet.model import Detector, apply_gate  # noqa: F401 - the gate exists
    except ImportError:
        return False
    return isinstance(detector, Detector)


def score_source(
    source: Any,
    detector: Any,
    *,
    thresholds: dict[str, float] | None = None,
    config: FlowConfig | None = None,
    featurize: Featurizer | None = None,
    all_flows: bool = False,
    name: str | None = None,
) -> tuple[list[Verdict], ScoringPipeline, Any]:
    """One capture end to end: (final verdicts, the pipeline with its stats, read stats)."""
    import os

    from flowdet.capture import open_capture

    reader = open_capture(source)
    label = name if name is not None else os.path.basename(str(getattr(reader, "name", source)))
    pipe = ScoringPipeline(
        detector,
        thresholds=thresholds,
        config=config,
        featurize=featurize,
        all_flows=all_flows,
        source=label,
    )
    out: list[Verdict] = []
    with reader:
        for batch in reader:
            out.extend(pipe.feed(batch))
        out.extend(pipe.flush())
    return out, pipe, reader.stats
