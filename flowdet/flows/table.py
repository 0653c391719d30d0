"""FlowTable: packets in, flow records out (the meter of the nfstream streamer/meter split).

Bidirectional flows are keyed on the canonical 5-tuple (flowdet.flows.keys). The
*initiator* is the sender of a pure SYN (SYN without ACK); if the first packet seen is a
SYN-ACK, its receiver; otherwise the sender of the first packet seen. If a pure SYN later
comes from the side taken for the responder before any SYN was seen, the flow flips (as
Zeek's '^' history), counters and sequences included; checkpoints emitted before the flip
keep the earlier orientation.

A flow ends, and a record is emitted, when:
- fin / rst: TCP saw FIN in both directions, or a RST; packets within `tcp_linger` after that
  still count to the flow (final ACKs, retransmissions); a later packet, or a pure SYN at
  any time after the close, starts a new flow on the same 5-tuple (as Zeek does).
- idle: no packet for `idle_timeout_tcp` / `idle_timeout_other` seconds.
- active: the record has lasted `active_timeout`; the flow goes on with the same flow_id
  and `segment` + 1, all counters and sequences start afresh (NetFlow style), TCP close
  state carries over.
- evicted: more than `max_flows` flows are live; the longest-idle go first.
- eof: flush() at the end of input.
Checkpoint records (end_reason "checkpoint") are snapshots of a live flow: `pkts:N` right
after its N-th packet, `secs:T` with the state just before the first packet at or after
start + T (or at the clock tick at or after it, via advance() or the end of a batch).
Checkpoints count from the start of the record's segment.

Time: the table's clock is the largest packet timestamp seen (or advance()'s argument).
Each batch is processed in timestamp order (a stable sort when it is not ordered already).
A packet older than its flow's previous packet (disorder across batches) still counts, with
a zero gap, and is counted in `out_of_order`; timeouts never run backwards.

Non-first IP fragments (Status.FRAGMENT) count to the flow of their first fragment, matched
on (src, dst, IP id, proto) within `fragment_timeout`; they add to packets and bytes (and
`frags_*`), not to timing statistics or sequences. Those whose first fragment was not seen
are counted in `stats.frags_unattributed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from flowdet.capture.batch import PacketBatch, Status
from flowdet.flows import kernel as K
from flowdet.flows import layout as L
from flowdet.flows.config import NS, FlowConfig
from flowdet.flows.keys import keys_and_hashes, unique_keys
from flowdet.flows.record import FlowBlock

_OUT_CAP = 4096
_MIN_SLOTS = 1024
_MIN_POOL = 256


@dataclass(slots=True)
class FlowStats:
    """What the table did with the packets it was given, for the run summary."""

    packets: int = 0  # rows seen
    packets_in_flows: int = 0  # status OK rows fed to flows
    frags_attributed: int = 0
    frags_unattributed: int = 0
    not_decoded: int = 0  # rows with another status (the reader's stats say why)
    records: dict[str, int] = field(default_factory=dict)  # per end_reason
    evictions: int = 0


class FlowTable:
    """Accumulates packets into flows; `update` / `advance` / `flush` return FlowBlocks."""

    def __init__(self, config: FlowConfig | None = None, first_flow_id: int = 1) -> None:
        self.config = config or FlowConfig()
        c = self.config
        self.checkpoint_names = tuple(c.checkpoint_names)
        self._ck_pkts = np.array(c.checkpoint_packets, dtype=np.int64)  # order = names
        self._ck_secs = np.array([round(x * NS) for x in c.checkpoint_seconds], dtype=np.int64)
        self._cfg = np.zeros(K.N_CFG, dtype=np.int64)
        self._cfg[K.G_IDLE_TCP] = round(c.idle_timeout_tcp * NS)
        self._cfg[K.G_IDLE_OTHER] = round(c.idle_timeout_other * NS)
        self._cfg[K.G_ACTIVE] = round(c.active_timeout * NS)
        self._cfg[K.G_LINGER] = round(c.tcp_linger * NS)
        self._cfg[K.G_GAP] = round(c.gap_threshold * NS)
        self._cfg[K.G_CK_DOMAIN] = int(c.checkpoints_in_domain_only)
        self._ctr = np.zeros(K.N_CTR, dtype=np.int64)
        self._ctr[K.C_NEXT_ID] = first_flow_id
        self.clock: int | None = None
        self.stats = FlowStats()
        self._index: dict[bytes, int] = {}
        self._slot_key: list[bytes | None] = []
        self._free: list[int] = []
        self._alloc_slots(min(_MIN_SLOTS, c.max_flows))
        self._alloc_pool(_MIN_POOL)
        self._alloc_out()
        self._frag: dict[tuple, tuple[int, int, int, int]] = {}
        self._blocks: list[FlowBlock] = []

    # -- storage ----------------------------------------------------------------------------
    def _alloc_slots(self, cap: int) -> None:
        old = getattr(self, "_S", None)
        n0 = 0 if old is None else old.shape[0]
        key = np.zeros((cap, L.N_KEY), np.uint64)
        S = np.zeros((cap, L.N_INT), np.int64)
        G = np.zeros((cap, L.N_FLT), np.float64)
        seqm = np.zeros((cap, 2 * L.SEQ_N), np.int32)
        seqi = np.zeros((cap, 2 * L.SEQ_N), np.int64)
        if old is not None:
            key[:n0], S[:n0], G[:n0] = self._KEY, self._S, self._G
            seqm[:n0], seqi[:n0] = self._SEQM, self._SEQI
        S[n0:, L.PAY_ROW] = -1
        self._KEY, self._S, self._G, self._SEQM, self._SEQI = key, S, G, seqm, seqi
        self._slot_key.extend([None] * (cap - n0))
        self._free.extend(range(cap - 1, n0 - 1, -1))
        self._freed = np.zeros(cap, np.int64)

    def _alloc_pool(self, cap: int) -> None:
        old = getattr(self, "_POOL", None)
        n0 = 0 if old is None else old.shape[0]
        pool = np.zeros((cap, 2 * self.config.payload_bytes), np.uint8)
        free = np.zeros(cap, np.int64)
        top = int(self._ctr[K.C_POOL_TOP])
        if old is not None:
            pool[:n0] = old
            free[:top] = self._pool_free[:top]
        new = np.arange(cap - 1, n0 - 1, -1, dtype=np.int64)
        free[top : top + new.shape[0]] = new
        self._ctr[K.C_POOL_TOP] = top + new.shape[0]
        self._POOL, self._pool_free = pool, free

    def _alloc_out(self) -> None:
        self._OKEY = np.zeros((_OUT_CAP, L.N_KEY), np.uint64)
        self._OS = np.zeros((_OUT_CAP, L.N_INT), np.int64)
        self._OG = np.zeros((_OUT_CAP, L.N_FLT), np.float64)
        self._OSEQM = np.zeros((_OUT_CAP, 2 * L.SEQ_N), np.int32)
        self._OSEQI = np.zeros((_OUT_CAP, 2 * L.SEQ_N), np.int64)
        self._OPAY = np.zeros((_OUT_CAP, 2 * self.config.payload_bytes), np.uint8)
        self._OREA = np.zeros(_OUT_CAP, np.int8)
        self._OCK = np.zeros(_OUT_CAP, np.int16)

    def _out_args(self) -> tuple:
        return (
            self._OKEY,
            self._OS,
            self._OG,
            self._OSEQM,
            self._OSEQI,
            self._OPAY,
            self._OREA,
            self._OCK,
        )

    def _state(self) -> tuple:
        return (self._KEY, self._S, self._G, self._SEQM, self._SEQI, self._POOL, self._pool_free)

    def _collect(self) -> None:
        n = int(self._ctr[K.C_OUT_N])
        if n == 0:
            return
        blk = FlowBlock(
            self._OKEY[:n].copy(),
            self._OS[:n].copy(),
            self._OG[:n].copy(),
            self._OSEQM[:n].copy(),
            self._OSEQI[:n].copy(),
            self._OPAY[:n].copy(),
            self._OREA[:n].copy(),
            self._OCK[:n].copy(),
            self.checkpoint_names,
        )
        # payload bytes beyond each record's used length are zero: _emit clears what the
        # previous record of the same output row left there
        self._ctr[K.C_OUT_N] = 0
        for r, c in zip(*np.unique(blk.reason, return_counts=True), strict=True):
            name = L.REASON_NAMES[int(r)]
            self.stats.records[name] = self.stats.records.get(name, 0) + int(c)
        self._blocks.append(blk)

    def _take_blocks(self) -> FlowBlock:
        self._collect()
        blk = FlowBlock.concat(self._blocks, self.checkpoint_names)
        self._blocks = []
        return blk

    def _release_freed(self) -> None:
        nf = int(self._ctr[K.C_FREED_N])
        if nf:
            for sl in self._freed[:nf].tolist():
                kb = self._slot_key[sl]
                if kb is not None:
                    del self._index[kb]
                    self._slot_key[sl] = None
                self._free.append(sl)
            self._ctr[K.C_FREED_N] = 0

    @property
    def live_flows(self) -> int:
        return len(self._index)

    # -- public API -------------------------------------------------------------------------
    def update(self, batch: PacketBatch) -> FlowBlock:
        """Add a batch of packets; return the records it completed (and checkpoints)."""
        n = len(batch)
        self.stats.packets += n
        if n == 0:
            return self._take_blocks()
        ts = batch.ts_ns
        if n > 1 and bool(np.any(ts[1:] < ts[:-1])):
            order = np.argsort(ts, kind="stable")
        else:
            order = np.arange(n, dtype=np.int64)
        status = batch.status
        ok = status == Status.OK
        frag = status == Status.FRAGMENT
        n_ok = int(np.count_nonzero(ok))
        n_frag = int(np.count_nonzero(frag))
        self.stats.packets_in_flows += n_ok
        self.stats.not_decoded += n - n_ok - n_frag
        self._run(batch, order, ok, frag)
        tmax = int(ts.max())
        self.clock = tmax if self.clock is None else max(self.clock, tmax)
        self._sweep(self.clock)
        self._expire_frags()
        return self._take_blocks()

    def advance(self, now_ns: int) -> FlowBlock:
        """Move the clock without packets (live): fire timeouts and time checkpoints."""
        self.clock = now_ns if self.clock is None else max(self.clock, int(now_ns))
        self._sweep(self.clock)
        self._expire_frags()
        return self._take_blocks()

    def flush(self) -> FlowBlock:
        """End of input: apply the clock, then emit every live flow (eof) and reset the clock.

        The table stays usable (the next capture starts with an empty table, flow ids go on).
        """
        if self.clock is not None:
            self._sweep(self.clock)
        live = np.flatnonzero(self._S[:, L.LIVE] == 1)
        self._expire(live, L.R_EOF)
        self.clock = None
        self._frag.clear()
        return self._take_blocks()

    # -- internals ----------------------------------------------------------------------------
    def _run(self, batch: PacketBatch, order: np.ndarray, ok: np.ndarray, frag: np.ndarray) -> None:
        n = len(batch)
        rows = order[ok[order]]  # OK rows, in processing order
        if rows.shape[0] == 0 and not frag.any():
            return
        key, src_is_a, h = keys_and_hashes(batch, rows, self.config.vlan_in_key)
        first, inverse = unique_keys(key, h)
        ukey = np.ascontiguousarray(key[first])
        kbytes = ukey.view(np.dtype((np.void, ukey.shape[1] * 8))).ravel().tolist()
        index = self._index
        uslot = np.array([index.get(kb, -1) for kb in kbytes], dtype=np.int64)
        new = np.flatnonzero(uslot < 0)
        if new.shape[0]:
            need = len(index) + new.shape[0] - self.config.max_flows
            if need > 0:
                in_batch = uslot[uslot >= 0]
                if not self._evict(need, in_batch):
                    # too many distinct new flows for the cap in one go: halve the batch
                    half = order.shape[0] // 2
                    if half == 0:
                        raise AssertionError("flow cap below one flow")
                    self._run(batch, order[:half], ok, frag)
                    self._run(batch, order[half:], ok, frag)
                    return
            while len(self._free) < new.shape[0]:
                self._alloc_slots(min(self.config.max_flows, 2 * self._S.shape[0]))
            slots = np.array([self._free.pop() for _ in range(new.shape[0])], dtype=np.int64)
            for j, sl in zip(new.tolist(), slots.tolist(), strict=True):
                index[kbytes[j]] = sl
                self._slot_key[sl] = kbytes[j]
            uslot[new] = slots
            self._KEY[slots] = ukey[new]
            K.init_slots(self._S, self._G, slots)
        slot_of = np.full(n, -1, dtype=np.int64)
        slot_of[rows] = uslot[inverse]
        a_side = np.zeros(n, dtype=np.bool_)
        a_side[rows] = src_is_a
        fr_parent = fr_slot = fr_uid = fr_dir = np.zeros(0, np.int64)
        row_uid = np.full(n, -1, dtype=np.int64)
        row_dir = np.zeros(n, dtype=np.int64)
        frag_rows = np.flatnonzero(frag[order])
        if frag_rows.shape[0]:
            fr_parent, fr_slot, fr_uid, fr_dir = self._match_frags(batch, order, ok, slot_of)
        b = batch
        pk = (
            b.ts_ns,
            b.ip_len,
            b.payload_len,
            b.tcp_flags,
            b.proto,
            b.sport,
            b.dport,
            b.ip_version,
            b.tcp_seq,
            b.rec_off,
            b.payload_off,
            b.caplen,
            b.wirelen,
        )
        fr = (fr_parent, fr_slot, fr_uid, fr_dir)
        k = 0
        while True:
            k = K.process(
                order,
                k,
                slot_of,
                a_side,
                pk,
                b.data,
                fr,
                row_uid,
                row_dir,
                self._state(),
                self._out_args(),
                self._ctr,
                self._cfg,
                self._ck_pkts,
                self._ck_secs,
            )
            if k >= order.shape[0]:
                break
            self._collect()
            if self._ctr[K.C_POOL_TOP] == 0:
                self._alloc_pool(2 * self._POOL.shape[0])
        self.stats.frags_attributed += int(self._ctr[K.C_FRAG_OK])
        self.stats.frags_unattributed += int(self._ctr[K.C_FRAG_LOST])
        self._ctr[K.C_FRAG_OK] = 0
        self._ctr[K.C_FRAG_LOST] = 0
        if frag_rows.shape[0] or np.any(b.more_frags[rows]):
            self._remember_first_frags(batch, rows, row_uid, row_dir, slot_of)

    def _frag_key(self, b: PacketBatch, i: int, reverse: bool = False) -> tuple:
        return (
            int(b.src_hi[i]),
            int(b.src_lo[i]),
            int(b.dst_hi[i]),
            int(b.dst_lo[i]),
            int(b.ip_id[i]),
            int(b.proto[i]),
        )

    def _match_frags(
        self, b: PacketBatch, order: np.ndarray, ok: np.ndarray, slot_of: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Point each non-first fragment at its first fragment: a row of this batch processed
        earlier, or a (slot, flow_id, dir) remembered from an earlier batch."""
        n = len(b)
        fr_parent = np.full(n, -1, np.int64)
        fr_slot = np.full(n, -1, np.int64)
        fr_uid = np.full(n, -1, np.int64)
        fr_dir = np.zeros(n, np.int64)
        first_frag = ok & b.more_frags & (b.frag_off == 0)
        frag = b.status == Status.FRAGMENT
        seen: dict[tuple, int] = {}
        for i in order[(first_frag | frag)[order]].tolist():
            fk = self._frag_key(b, i)
            if first_frag[i]:
                seen[fk] = i
                continue
            slot_of[i] = -2
            if fk in seen:
                fr_parent[i] = seen[fk]
            elif fk in self._frag:
                sl, uid, d, _ = self._frag[fk]
                fr_slot[i], fr_uid[i], fr_dir[i] = sl, uid, d
        return fr_parent, fr_slot, fr_uid, fr_dir

    def _remember_first_frags(
        self,
        b: PacketBatch,
        rows: np.ndarray,
        row_uid: np.ndarray,
        row_dir: np.ndarray,
        slot_of: np.ndarray,
    ) -> None:
        sel = rows[(b.more_frags[rows]) & (b.frag_off[rows] == 0)]
        for i in sel.tolist():
            if row_uid[i] >= 0:
                self._frag[self._frag_key(b, i)] = (
                    int(slot_of[i]),
                    int(row_uid[i]),
                    int(row_dir[i]),
                    int(b.ts_ns[i]),
                )

    def _expire_frags(self) -> None:
        if not self._frag or self.clock is None:
            return
        limit = self.clock - round(self.config.fragment_timeout * NS)
        for fk in [fk for fk, v in self._frag.items() if v[3] < limit]:
            del self._frag[fk]

    def _sweep(self, now: int) -> None:
        s0 = 0
        cap = self._S.shape[0]
        while True:
            s0 = K.sweep(
                np.int64(now),
                s0,
                self._state(),
                self._out_args(),
                self._ctr,
                self._cfg,
                self._ck_secs,
                np.int64(self._ck_pkts.shape[0]),
                self._freed,
            )
            self._release_freed()
            if s0 >= cap:
                break
            self._collect()

    def _expire(self, slots: np.ndarray, reason: int) -> None:
        k = 0
        while True:
            k = K.expire_slots(
                slots, k, np.int8(reason), self._state(), self._out_args(), self._ctr, self._freed
            )
            self._release_freed()
            if k >= slots.shape[0]:
                break
            self._collect()

    def _evict(self, need: int, in_batch: np.ndarray) -> bool:
        """Evict the `need` longest-idle live flows not touched by this batch, if there are."""
        live = np.flatnonzero(self._S[:, L.LIVE] == 1)
        cand = np.setdiff1d(live, in_batch, assume_unique=False)
        if cand.shape[0] < need:
            return False
        last = self._S[cand, L.LAST]
        pick = cand[np.argsort(last, kind="stable")[:need]]
        self._expire(pick, L.R_EVICTED)
        self.stats.evictions += need
        return True


def iter_blocks(batches: Iterable[PacketBatch], table: FlowTable) -> Iterator[FlowBlock]:
    """Feed batches through `table`, yielding non-empty blocks, then flush at the end."""
    for batch in batches:
        blk = table.update(batch)
        if len(blk):
            yield blk
    blk = table.flush()
    if len(blk):
        yield blk
