"""Column layout of the flow state: one row per flow slot, shared by the kernel and records.

The per-flow state lives in two matrices (int64 `S`, float64 `G`) plus fixed-size packet
sequence and payload arrays, so that emitting a record is a row copy and a block of records
is a handful of arrays. Indices are module constants: numba folds them at compile time.
Direction index 0 = toserver (sent by the initiator), 1 = toclient.
"""

from __future__ import annotations

SEQ_N = 32  # first N packets, and a ring of the last N
PAY_MSGS = 4  # payload-carrying packets kept per direction
HIST_BINS = 12  # payload size bins: floor(log2(len)) for len >= 1, last bin open-ended
N_FLAGS = 8  # FIN SYN RST PSH ACK URG ECE CWR, bit order of the TCP header

# Reasons a record is emitted (REASON column of a block).
R_FIN, R_RST, R_IDLE, R_ACTIVE, R_EOF, R_EVICTED, R_CHECKPOINT = range(7)
REASON_NAMES = ("fin", "rst", "idle", "active", "eof", "evicted", "checkpoint")

_n_int = 0


def _int(width: int = 1) -> int:
    global _n_int
    start = _n_int
    _n_int += width
    return start


_n_flt = 0


def _flt(width: int = 1) -> int:
    global _n_flt
    start = _n_flt
    _n_flt += width
    return start


# --- int64 state S -------------------------------------------------------------------------
LIVE = _int()  # 1 while the slot holds a flow
FLOW_ID = _int()
SEGMENT = _int()  # 0 for the first record of a flow, +1 after each active timeout
INIT_A = _int()  # 1 if the initiator is endpoint a of the canonical key
IPVER = _int()
FIRST_SPORT = _int()  # raw ports of the first packet (ICMP: type and code)
FIRST_DPORT = _int()
FIRST_FROM_INIT = _int()  # 1 if the first packet was sent by the initiator
START = _int()  # first packet of the segment, ns
LAST = _int()  # last packet, ns
NPK = _int()  # non-fragment packets in the segment
OOO = _int()  # packets older than the flow's previous packet (clamped to zero gap)
CKPT_FIRED = _int()  # bit j: time checkpoint j already emitted for this segment
CLOSE_TS = _int()  # ns when FIN both ways or RST made the flow end; -1 while open
FIN_SEEN = _int(2)
RST_SEEN = _int()
SYN_SEEN = _int()  # a pure SYN (SYN without ACK) was seen in the flow
IDLE_GAPS = _int()
MAX_GAP = _int()
IAT_MIN_ALL = _int()
IAT_MAX_ALL = _int()
PKTS = _int(2)  # non-fragment packets per direction
BYTES = _int(2)  # frame bytes on the wire (wirelen) per direction, fragments included
IPBYTES = _int(2)  # IP total length per direction, fragments included
PBYTES = _int(2)  # transport payload bytes per direction, fragments included
PPKTS = _int(2)  # payload-carrying packets
BARE_ACK = _int(2)  # TCP ACK set, no payload, no SYN/FIN/RST
FRAGS = _int(2)  # non-first fragments attributed to the flow
BURSTS = _int(2)  # packets that broke a silence longer than gap_threshold
LAST_TS = _int(2)
LAST_PTS = _int(2)  # last payload-carrying packet
SIZE_MIN = _int(2)
SIZE_MAX = _int(2)
IAT_MIN = _int(2)
IAT_MAX = _int(2)
PIAT_MIN = _int(2)
PIAT_MAX = _int(2)
PIAT_N = _int(2)
PAY_N = _int(2)  # payload messages kept
PAY_USED = _int(2)  # payload bytes kept
PAY_SEQ = _int(2)  # TCP sequence number of the last kept message (retransmission check)
PAY_LEN = _int(2 * PAY_MSGS)  # captured length of each kept message, [dir * PAY_MSGS + k]
PAY_ROW = _int()  # row in the payload pool, -1 until the flow carries payload
FLAGS = _int(2 * N_FLAGS)  # [dir * 8 + bit]
HIST = _int(2 * HIST_BINS)  # [dir * HIST_BINS + bin]
N_INT = _n_int

# Per-direction column pairs/blocks of S and G, swapped when the orientation flips.
DIR_PAIRS_S = (
    FIN_SEEN,
    PKTS,
    BYTES,
    IPBYTES,
    PBYTES,
    PPKTS,
    BARE_ACK,
    FRAGS,
    BURSTS,
    LAST_TS,
    LAST_PTS,
    SIZE_MIN,
    SIZE_MAX,
    IAT_MIN,
    IAT_MAX,
    PIAT_MIN,
    PIAT_MAX,
    PIAT_N,
    PAY_N,
    PAY_USED,
    PAY_SEQ,
)
DIR_BLOCKS_S = ((PAY_LEN, PAY_MSGS), (FLAGS, N_FLAGS), (HIST, HIST_BINS))

# --- float64 state G -----------------------------------------------------------------------
SIZE_MEAN = _flt(2)
SIZE_M2 = _flt(2)
IAT_MEAN = _flt(2)
IAT_M2 = _flt(2)
PIAT_MEAN = _flt(2)
PIAT_M2 = _flt(2)
IAT_MEAN_ALL = _flt()
IAT_M2_ALL = _flt()
N_FLT = _n_flt
DIR_PAIRS_G = (SIZE_MEAN, SIZE_M2, IAT_MEAN, IAT_M2, PIAT_MEAN, PIAT_M2)

# Key columns (uint64): canonical endpoints a, b and ports/proto packed as pa<<24 | pb<<8 | proto.
K_AHI, K_ALO, K_BHI, K_BLO, K_PP = range(5)
N_KEY = 5

# Packet sequence entry, packed in int32: payload length (clipped to 65535) | flags << 16 |
# direction << 24. Rows 0..SEQ_N-1 are the first packets, SEQ_N..2*SEQ_N-1 the ring.
SEQ_LEN_MASK = 0xFFFF
SEQ_FLAGS_SHIFT = 16
SEQ_DIR_SHIFT = 24
