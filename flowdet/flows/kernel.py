"""The compiled per-packet loop of the flow table (numba).

Why a loop and not numpy reductions: most per-flow state is order-dependent (inter-arrival
times, Welford variance, idle gaps and bursts, the first/last packet sequences, the TCP
close state machine that ends one flow and starts the next on the same key). A numpy
version needs a sort by flow plus one segmented reduction per statistic and still cannot
express "this FIN ends the flow, the next SYN starts another" without a second pass; the
compiled loop is one pass over the batch in timestamp order, touching one state row per
packet. Canonical keys and their hashes come from one compiled pass (batch_keys); the
key -> slot map stays np.unique of the hashes + one dict lookup per distinct key per batch
(see table.py).

All functions return an index to resume from when an output buffer or the payload pool is
full, so buffers stay small and the Python side grows them without losing a packet.
"""

from __future__ import annotations

import numpy as np

from flowdet.capture.jit import compiled
from flowdet.flows.layout import (
    BARE_ACK,
    BURSTS,
    BYTES,
    CKPT_FIRED,
    CLOSE_TS,
    DIR_BLOCKS_S,
    DIR_PAIRS_G,
    DIR_PAIRS_S,
    FIN_SEEN,
    FIRST_DPORT,
    FIRST_FROM_INIT,
    FIRST_SPORT,
    FLAGS,
    FLOW_ID,
    FRAGS,
    HIST,
    HIST_BINS,
    IAT_M2,
    IAT_M2_ALL,
    IAT_MAX,
    IAT_MAX_ALL,
    IAT_MEAN,
    IAT_MEAN_ALL,
    IAT_MIN,
    IAT_MIN_ALL,
    IDLE_GAPS,
    INIT_A,
    IPBYTES,
    IPVER,
    LAST,
    LAST_PTS,
    LAST_TS,
    LIVE,
    MAX_GAP,
    NPK,
    OOO,
    PAY_LEN,
    PAY_MSGS,
    PAY_N,
    PAY_ROW,
    PAY_SEQ,
    PAY_USED,
    PBYTES,
    PIAT_M2,
    PIAT_MAX,
    PIAT_MEAN,
    PIAT_MIN,
    PIAT_N,
    PKTS,
    PPKTS,
    R_ACTIVE,
    R_CHECKPOINT,
    R_EOF,
    R_FIN,
    R_IDLE,
    R_RST,
    RST_SEEN,
    SEGMENT,
    SEQ_DIR_SHIFT,
    SEQ_FLAGS_SHIFT,
    SEQ_LEN_MASK,
    SEQ_N,
    SIZE_M2,
    SIZE_MAX,
    SIZE_MEAN,
    SIZE_MIN,
    START,
    SYN_SEEN,
)

I64MAX = np.iinfo(np.int64).max

# ctr: shared int64 counters between Python and the kernel.
C_NEXT_ID, C_OUT_N, C_POOL_TOP, C_FRAG_OK, C_FRAG_LOST, C_FREED_N = range(6)
N_CTR = 6

# cfg: int64 settings in ns.
G_IDLE_TCP, G_IDLE_OTHER, G_ACTIVE, G_LINGER, G_GAP, G_CK_DOMAIN = range(6)
N_CFG = 6

# The state tuple st = (KEY, S, G, SEQM, SEQI, POOL, pool_free) and the output tuple
# out = (OKEY, OS, OG, OSEQM, OSEQI, OPAY, OREA, OCK) travel together through these functions.


@compiled(inline="always")
def _init_mins(row):
    for d in range(2):
        row[SIZE_MIN + d] = I64MAX
        row[IAT_MIN + d] = I64MAX
        row[PIAT_MIN + d] = I64MAX
    row[IAT_MIN_ALL] = I64MAX


@compiled
def new_flow(S, G, sl):
    """Reset slot `sl` for a new flow on the same key (keeps its payload pool row)."""
    row = S[sl]
    pay_row = row[PAY_ROW]
    row[:] = 0
    G[sl, :] = 0.0
    row[LIVE] = 1
    row[INIT_A] = -1  # flow id and orientation are set by the first packet
    row[CLOSE_TS] = -1
    row[PAY_ROW] = pay_row
    _init_mins(row)


@compiled
def init_slots(S, G, slots):
    for j in range(slots.shape[0]):
        S[slots[j], PAY_ROW] = -1
        new_flow(S, G, slots[j])


_KEEP_ON_SEGMENT = (
    LIVE,
    FLOW_ID,
    INIT_A,
    IPVER,
    FIRST_SPORT,
    FIRST_DPORT,
    FIRST_FROM_INIT,
    LAST,
    CLOSE_TS,
    FIN_SEEN,
    FIN_SEEN + 1,
    RST_SEEN,
    SYN_SEEN,
    PAY_ROW,
)


@compiled
def _new_segment(S, G, sl):
    """Active timeout: same flow, next segment; identity and TCP state carry over."""
    row = S[sl]
    seg = row[SEGMENT] + 1
    kept = np.empty(len(_KEEP_ON_SEGMENT), np.int64)
    for j, c in enumerate(_KEEP_ON_SEGMENT):
        kept[j] = row[c]
    row[:] = 0
    G[sl, :] = 0.0
    for j, c in enumerate(_KEEP_ON_SEGMENT):
        row[c] = kept[j]
    row[SEGMENT] = seg
    _init_mins(row)


@compiled(inline="always")
def _emit(st, out, ctr, sl, reason, ck):
    KEY, S, G, SEQM, SEQI, POOL, _ = st
    OKEY, OS, OG, OSEQM, OSEQI, OPAY, OREA, OCK = out
    o = ctr[C_OUT_N]
    ctr[C_OUT_N] = o + 1
    # element loops, not row slices: a slice is an array view, whose reference counting
    # costs more than the copy of these short rows
    pay_bytes = OPAY.shape[1] // 2
    pr = S[sl, PAY_ROW]
    for d in range(2):
        # what the record emitted earlier into this output row left of its payload (its
        # PAY_USED is still in OS): zeroed beyond this record's, so no block carries another
        # flow's bytes without zeroing whole rows
        before = OS[o, PAY_USED + d]
        n = S[sl, PAY_USED + d] if pr >= 0 else 0
        base = d * pay_bytes
        for k in range(n):
            OPAY[o, base + k] = POOL[pr, base + k]
        for k in range(n, before):
            OPAY[o, base + k] = 0
    for c in range(KEY.shape[1]):
        OKEY[o, c] = KEY[sl, c]
    for c in range(S.shape[1]):
        OS[o, c] = S[sl, c]
    for c in range(G.shape[1]):
        OG[o, c] = G[sl, c]
    for c in range(SEQM.shape[1]):
        OSEQM[o, c] = SEQM[sl, c]
        OSEQI[o, c] = SEQI[sl, c]
    OREA[o] = reason
    OCK[o] = ck


@compiled
def _free(st, sl, ctr, freed):
    S = st[1]
    pool_free = st[6]
    pr = S[sl, PAY_ROW]
    if pr >= 0:
        pool_free[ctr[C_POOL_TOP]] = pr
        ctr[C_POOL_TOP] += 1
        S[sl, PAY_ROW] = -1
    S[sl, LIVE] = 0
    freed[ctr[C_FREED_N]] = sl
    ctr[C_FREED_N] += 1


@compiled
def _flip(S, G, SEQM, POOL, sl):
    """Swap initiator and responder: a pure SYN came from the side taken for the responder
    before any SYN was seen (the capture started mid-handshake or out of order)."""
    row = S[sl]
    for c in DIR_PAIRS_S:
        row[c], row[c + 1] = row[c + 1], row[c]
    for c, w in DIR_BLOCKS_S:
        for j in range(w):
            row[c + j], row[c + w + j] = row[c + w + j], row[c + j]
    for c in DIR_PAIRS_G:
        G[sl, c], G[sl, c + 1] = G[sl, c + 1], G[sl, c]
    for j in range(SEQM.shape[1]):
        SEQM[sl, j] ^= 1 << SEQ_DIR_SHIFT
    pr = row[PAY_ROW]
    if pr >= 0:
        pay_bytes = POOL.shape[1] // 2
        for j in range(pay_bytes):
            POOL[pr, j], POOL[pr, pay_bytes + j] = POOL[pr, pay_bytes + j], POOL[pr, j]
    row[INIT_A] = 1 - row[INIT_A]
    row[FIRST_FROM_INIT] = 1 - row[FIRST_FROM_INIT]


@compiled(inline="always")
def _welford(G, sl, mean_col, m2_col, n, x):
    delta = x - G[sl, mean_col]
    G[sl, mean_col] += delta / n
    G[sl, m2_col] += delta * (x - G[sl, mean_col])


@compiled(inline="always")
def _end_reason(row):
    return R_RST if row[RST_SEEN] != 0 else R_FIN


@compiled(inline="always")
def _snapshot_wanted(payload_pkts, is_tcp, cfg):
    """A checkpoint snapshot is made unless the table only wants the detector's domain
    (FlowConfig.checkpoints_in_domain_only) and the flow is not TCP or has no payload yet."""
    return cfg[G_CK_DOMAIN] == 0 or (is_tcp and payload_pkts > 0)


@compiled
def _advance(st, out, ctr, sl, now, cfg, ck_secs, n_ck_p):
    """Fire, in time order, what is due for flow `sl` by clock `now`: time checkpoints, the
    active timeout, then the end (idle / FIN-RST linger). Returns True if the flow ended.

    The flow is alive up to its end instant (last + idle, or close + linger), so a time
    checkpoint or active timeout falling before that fires even if nothing is seen until
    much later; the kernel (clock = next packet) and the sweep (clock = batch end or a tick)
    therefore emit the same records whatever the batch boundaries.
    """
    KEY, S = st[0], st[1]
    row = S[sl]
    is_tcp = (KEY[sl, 4] & np.uint64(0xFF)) == 6
    idle = cfg[G_IDLE_TCP] if is_tcp else cfg[G_IDLE_OTHER]
    end_at = row[LAST] + idle
    closed = row[CLOSE_TS] >= 0
    if closed and row[CLOSE_TS] + cfg[G_LINGER] < end_at:
        end_at = row[CLOSE_TS] + cfg[G_LINGER]
    # snapshots are of open flows: a closed flow lingering for its last ACKs gets none
    open_until = row[CLOSE_TS] if closed else end_at
    if row[NPK] > 0:
        snap = _snapshot_wanted(row[PPKTS] + row[PPKTS + 1], is_tcp, cfg)
        for j in range(ck_secs.shape[0]):
            bit = np.int64(1) << j
            at = row[START] + ck_secs[j]
            if (row[CKPT_FIRED] & bit) == 0 and at <= now and at <= open_until:
                if snap:
                    _emit(st, out, ctr, sl, R_CHECKPOINT, n_ck_p + j)
                row[CKPT_FIRED] |= bit
        at = row[START] + cfg[G_ACTIVE]
        if at <= now and at <= end_at:
            _emit(st, out, ctr, sl, R_ACTIVE, -1)
            _new_segment(S, st[2], sl)
    if now > end_at:
        if row[NPK] > 0:
            if closed and end_at == row[CLOSE_TS] + cfg[G_LINGER]:
                _emit(st, out, ctr, sl, _end_reason(row), -1)
            else:
                _emit(st, out, ctr, sl, R_IDLE, -1)
        return True
    return False


@compiled
def process(
    order, k0, slot_of, a_side, pk, data, fr, row_uid, row_dir, st, out, ctr, cfg, ck_pkts, ck_secs
):
    """Feed packets order[k0:] into their slots; return where it stopped (len = done).

    pk = (ts, ip_len, pay_len, flags, proto, sport, dport, ipver, tcp_seq, rec_off, pay_off,
    caplen, wirelen) columns of the batch; fr = (parent row, slot, flow id, dir) of non-first
    fragments.
    """
    (
        ts,
        ip_len,
        pay_len,
        flags,
        proto,
        sport,
        dport,
        ipver,
        tcp_seq,
        rec_off,
        pay_off,
        caplen,
        wirelen,
    ) = pk
    fr_parent, fr_slot, fr_uid, fr_dir = fr
    S, G, SEQM, SEQI, POOL, pool_free = st[1], st[2], st[3], st[4], st[5], st[6]
    n_ck_p = ck_pkts.shape[0]
    pay_bytes = POOL.shape[1] // 2  # FlowConfig.payload_bytes per direction
    out_cap = out[1].shape[0]
    max_emit = 3 + ck_secs.shape[0] + n_ck_p
    gap = cfg[G_GAP]
    idle_tcp = cfg[G_IDLE_TCP]
    idle_other = cfg[G_IDLE_OTHER]
    active = cfg[G_ACTIVE]
    n_ck_s = ck_secs.shape[0]
    n = order.shape[0]
    for k in range(k0, n):
        i = order[k]
        sl = slot_of[i]
        if sl == -1:
            continue
        if sl == -2:
            # non-first fragment: count it to the flow of its first fragment if still live
            p = fr_parent[i]
            if p >= 0:
                s2 = slot_of[p]
                uid = row_uid[p]
                dd = row_dir[p]
            else:
                s2 = fr_slot[i]
                uid = fr_uid[i]
                dd = fr_dir[i]
            if (
                s2 >= 0
                and uid >= 0
                and S[s2, LIVE] == 1
                and S[s2, FLOW_ID] == uid
                and S[s2, NPK] > 0
            ):
                S[s2, FRAGS + dd] += 1
                S[s2, BYTES + dd] += wirelen[i]
                S[s2, IPBYTES + dd] += ip_len[i]
                S[s2, PBYTES + dd] += pay_len[i]
                ctr[C_FRAG_OK] += 1
            else:
                ctr[C_FRAG_LOST] += 1
            continue
        if ctr[C_OUT_N] + max_emit > out_cap:
            return k
        pl = np.int64(pay_len[i])
        if pl > 0 and S[sl, PAY_ROW] < 0 and ctr[C_POOL_TOP] == 0:
            return k
        t = ts[i]
        f = np.int64(flags[i])
        is_tcp = proto[i] == 6
        if S[sl, INIT_A] >= 0:
            # an existing flow: what is due by now, and does this packet start a new flow?
            # (the common case, an open flow with nothing due, skips the call)
            ended = False
            if (
                S[sl, CLOSE_TS] >= 0
                or n_ck_s > 0
                or t - S[sl, LAST] > (idle_tcp if is_tcp else idle_other)
                or t >= S[sl, START] + active
            ):
                ended = _advance(st, out, ctr, sl, t, cfg, ck_secs, n_ck_p)
            pure_syn = is_tcp and (f & 0x12) == 0x02
            if not ended and pure_syn and 0 <= S[sl, CLOSE_TS] < t:
                # a new SYN after FIN/RST: port reuse, a new flow even inside the linger
                if S[sl, NPK] > 0:
                    _emit(st, out, ctr, sl, R_RST if S[sl, RST_SEEN] != 0 else R_FIN, -1)
                ended = True
            if ended:
                new_flow(S, G, sl)
        src_a = np.int64(1) if a_side[i] else np.int64(0)
        if S[sl, INIT_A] < 0:
            # orientation: a pure SYN's sender initiates, a SYN-ACK's receiver initiates,
            # otherwise the sender of the first packet
            if is_tcp and (f & 0x12) == 0x12:
                S[sl, INIT_A] = 1 - src_a
                S[sl, FIRST_FROM_INIT] = 0
            else:
                S[sl, INIT_A] = src_a
                S[sl, FIRST_FROM_INIT] = 1
            # ids in order of first packets: independent of how input is cut into batches
            S[sl, FLOW_ID] = ctr[C_NEXT_ID]
            ctr[C_NEXT_ID] += 1
            S[sl, IPVER] = ipver[i]
            S[sl, FIRST_SPORT] = sport[i]
            S[sl, FIRST_DPORT] = dport[i]
        d = 0 if src_a == S[sl, INIT_A] else 1
        if is_tcp and (f & 0x12) == 0x02:
            if d == 1 and S[sl, SYN_SEEN] == 0 and S[sl, CLOSE_TS] < 0:
                _flip(S, G, SEQM, POOL, sl)
                d = 0
            S[sl, SYN_SEEN] = 1
        npk = S[sl, NPK]
        if npk == 0:
            S[sl, START] = t
            S[sl, LAST] = t
            iat = np.int64(0)
        else:
            iat = t - S[sl, LAST]
            if iat < 0:
                S[sl, OOO] += 1
                iat = np.int64(0)
            if iat > gap:
                S[sl, IDLE_GAPS] += 1
                S[sl, BURSTS + d] += 1
            if iat > S[sl, MAX_GAP]:
                S[sl, MAX_GAP] = iat
            if iat < S[sl, IAT_MIN_ALL]:
                S[sl, IAT_MIN_ALL] = iat
            if iat > S[sl, IAT_MAX_ALL]:
                S[sl, IAT_MAX_ALL] = iat
            _welford(G, sl, IAT_MEAN_ALL, IAT_M2_ALL, npk, float(iat))
            if t > S[sl, LAST]:
                S[sl, LAST] = t
        # per-direction timing
        pk_d = S[sl, PKTS + d]
        if pk_d > 0:
            iat_d = t - S[sl, LAST_TS + d]
            if iat_d < 0:
                iat_d = np.int64(0)
            if iat_d < S[sl, IAT_MIN + d]:
                S[sl, IAT_MIN + d] = iat_d
            if iat_d > S[sl, IAT_MAX + d]:
                S[sl, IAT_MAX + d] = iat_d
            _welford(G, sl, IAT_MEAN + d, IAT_M2 + d, pk_d, float(iat_d))
        if pk_d == 0 or t > S[sl, LAST_TS + d]:
            S[sl, LAST_TS + d] = t
        size = np.int64(ip_len[i])
        if size < S[sl, SIZE_MIN + d]:
            S[sl, SIZE_MIN + d] = size
        if size > S[sl, SIZE_MAX + d]:
            S[sl, SIZE_MAX + d] = size
        _welford(G, sl, SIZE_MEAN + d, SIZE_M2 + d, pk_d + 1, float(size))
        S[sl, PKTS + d] = pk_d + 1
        S[sl, BYTES + d] += np.int64(wirelen[i])
        S[sl, IPBYTES + d] += size
        S[sl, PBYTES + d] += pl
        if pl > 0:
            pp = S[sl, PPKTS + d]
            if pp > 0:
                piat = t - S[sl, LAST_PTS + d]
                if piat < 0:
                    piat = np.int64(0)
                if piat < S[sl, PIAT_MIN + d]:
                    S[sl, PIAT_MIN + d] = piat
                if piat > S[sl, PIAT_MAX + d]:
                    S[sl, PIAT_MAX + d] = piat
                S[sl, PIAT_N + d] += 1
                _welford(G, sl, PIAT_MEAN + d, PIAT_M2 + d, S[sl, PIAT_N + d], float(piat))
            if pp == 0 or t > S[sl, LAST_PTS + d]:
                S[sl, LAST_PTS + d] = t
            S[sl, PPKTS + d] = pp + 1
            b = 0
            v = pl
            while v > 1 and b < HIST_BINS - 1:
                v >>= 1
                b += 1
            S[sl, HIST + d * HIST_BINS + b] += 1
            # payload prefix, message by message
            pn = S[sl, PAY_N + d]
            used = S[sl, PAY_USED + d]
            if pn < PAY_MSGS and used < pay_bytes:
                seq = np.int64(tcp_seq[i])
                if not (is_tcp and pn > 0 and seq == S[sl, PAY_SEQ + d]):
                    if S[sl, PAY_ROW] < 0:
                        ctr[C_POOL_TOP] -= 1
                        S[sl, PAY_ROW] = pool_free[ctr[C_POOL_TOP]]
                    po = np.int64(pay_off[i])
                    m = min(pl, np.int64(caplen[i]) - po, pay_bytes - used)
                    if m < 0:
                        m = 0
                    src = rec_off[i] + po
                    dst = d * pay_bytes + used
                    POOL[S[sl, PAY_ROW], dst : dst + m] = data[src : src + m]
                    S[sl, PAY_LEN + d * PAY_MSGS + pn] = m
                    S[sl, PAY_N + d] = pn + 1
                    S[sl, PAY_USED + d] = used + m
                    S[sl, PAY_SEQ + d] = seq
        elif is_tcp and (f & 0x10) != 0 and (f & 0x07) == 0:
            S[sl, BARE_ACK + d] += 1
        if is_tcp:
            for bit in range(8):
                if (f >> bit) & 1:
                    S[sl, FLAGS + d * 8 + bit] += 1
            if f & 0x01:
                S[sl, FIN_SEEN + d] = 1
            if f & 0x04:
                S[sl, RST_SEEN] = 1
            if S[sl, CLOSE_TS] < 0 and (
                (f & 0x04) != 0 or (S[sl, FIN_SEEN] != 0 and S[sl, FIN_SEEN + 1] != 0)
            ):
                S[sl, CLOSE_TS] = t
        plc = pl if pl < SEQ_LEN_MASK else SEQ_LEN_MASK
        meta = plc | ((f & 0xFF) << SEQ_FLAGS_SHIFT) | (d << SEQ_DIR_SHIFT)
        if npk < SEQ_N:
            SEQM[sl, npk] = meta
            SEQI[sl, npk] = iat
        r = SEQ_N + npk % SEQ_N
        SEQM[sl, r] = meta
        SEQI[sl, r] = iat
        npk += 1
        S[sl, NPK] = npk
        row_uid[i] = S[sl, FLOW_ID]
        row_dir[i] = d
        for j in range(n_ck_p):
            if npk == ck_pkts[j] and _snapshot_wanted(S[sl, PPKTS] + S[sl, PPKTS + 1], is_tcp, cfg):
                _emit(st, out, ctr, sl, R_CHECKPOINT, j)
    return n


@compiled
def sweep(now, s0, st, out, ctr, cfg, ck_secs, n_ck_p, freed):
    """Apply the clock `now` to every live flow from slot s0 on; return where it stopped."""
    KEY, S = st[0], st[1]
    out_cap = out[1].shape[0]
    cap = S.shape[0]
    quick = ck_secs.shape[0] == 0  # no time checkpoints: most flows have nothing due
    for sl in range(s0, cap):
        if S[sl, LIVE] == 0 or S[sl, INIT_A] < 0:
            continue  # free, or allocated for a batch in progress with no packet yet
        if quick and S[sl, CLOSE_TS] < 0:
            # the test process() makes before calling _advance: open, not idle, not active
            idle = cfg[G_IDLE_TCP] if (KEY[sl, 4] & np.uint64(0xFF)) == 6 else cfg[G_IDLE_OTHER]
            if now - S[sl, LAST] <= idle and now < S[sl, START] + cfg[G_ACTIVE]:
                continue
        if ctr[C_OUT_N] + 2 + ck_secs.shape[0] > out_cap:
            return sl
        if _advance(st, out, ctr, sl, now, cfg, ck_secs, n_ck_p):
            _free(st, sl, ctr, freed)
    return cap


@compiled
def expire_slots(slots, k0, reason, st, out, ctr, freed):
    """Emit (if it has packets) and free each listed live slot: eviction and end of input."""
    S = st[1]
    out_cap = out[1].shape[0]
    for k in range(k0, slots.shape[0]):
        sl = slots[k]
        if S[sl, LIVE] == 0:
            continue
        if ctr[C_OUT_N] + 1 > out_cap:
            return k
        if S[sl, NPK] > 0:
            r = reason
            if r == R_EOF and S[sl, CLOSE_TS] >= 0:
                r = _end_reason(S[sl])  # ended by FIN/RST, input stopped inside the linger
            _emit(st, out, ctr, sl, r, -1)
        _free(st, sl, ctr, freed)
    return slots.shape[0]


_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


@compiled(inline="always")
def _mix(x):
    x = x ^ (x >> np.uint64(30))
    x = x * _M2
    x = x ^ (x >> np.uint64(27))
    x = x * _M3
    return x ^ (x >> np.uint64(31))


@compiled
def batch_keys(
    rows,
    src_hi,
    src_lo,
    dst_hi,
    dst_lo,
    sport,
    dport,
    proto,
    ipver,
    vlan,
    use_vlan,
    icmp4,
    icmp6,
    key,
    keep,
    h,
):
    """flowdet.flows.keys.canonical_keys and key_hash of the selected rows in one pass (same
    values: the numpy functions are the reference, and the tests compare both)."""
    for j in range(rows.shape[0]):
        i = rows[j]
        pr = np.int64(proto[i])
        ver = np.int64(ipver[i])
        p1 = np.int64(sport[i])
        p2 = np.int64(dport[i])
        one_way = False
        if (pr == 1 and ver == 4) or (pr == 58 and ver == 6):
            cp = icmp4[p1 & 0xFF] if pr == 1 else icmp6[p1 & 0xFF]
            if cp >= 0:
                p2 = np.int64(cp)
            else:
                one_way = True
        shi, slo, dhi, dlo = src_hi[i], src_lo[i], dst_hi[i], dst_lo[i]
        src_first = shi < dhi or (shi == dhi and (slo < dlo or (slo == dlo and p1 < p2)))
        kp = src_first or one_way
        keep[j] = kp
        if kp:
            k0, k1, k2, k3, pa, pb = shi, slo, dhi, dlo, p1, p2
        else:
            k0, k1, k2, k3, pa, pb = dhi, dlo, shi, slo, p2, p1
        k4 = (np.uint64(pa) << np.uint64(24)) | (np.uint64(pb) << np.uint64(8)) | np.uint64(pr)
        if use_vlan:
            k4 |= np.uint64(vlan[i]) << np.uint64(40)
        key[j, 0] = k0
        key[j, 1] = k1
        key[j, 2] = k2
        key[j, 3] = k3
        key[j, 4] = k4
        x = _M1
        x = _mix(x ^ k0) + _M1
        x = _mix(x ^ k1) + _M1
        x = _mix(x ^ k2) + _M1
        x = _mix(x ^ k3) + _M1
        x = _mix(x ^ k4) + _M1
        h[j] = x
