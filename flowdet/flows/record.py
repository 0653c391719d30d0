"""Flow records: the `FlowRecord` dataclass (the one documented field list) and `FlowBlock`.

The table emits records as a `FlowBlock`, a columnar block of state rows, because building a
Python object per record is only worth it at the edges (sinks, tests, the detector's per-flow
code). `FlowBlock.columns()` turns the block into one list per `FlowRecord` field with numpy
doing the arithmetic; `FlowBlock.records()` zips those into dataclasses.

Every field of `FlowRecord` carries a description in its metadata: docs/flows.md and
`flowdet flows --fields` are generated from it, and a test keeps them equal.
"""

from __future__ import annotations

import base64
import socket
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

from flowdet.community_id import community_ids_from_keys
from flowdet.flows import layout as L
from flowdet.flows.config import DEFAULT_PAYLOAD_BYTES

DIRS = ("toserver", "toclient")
FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")
PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP", 132: "SCTP", 47: "GRE", 50: "ESP"}


def _f(doc: str, csv: bool = True, default: Any = MISSING) -> Any:
    return field(metadata=_m(doc, csv), default=default)


def _m(doc: str, csv: bool = True) -> dict[str, Any]:
    return {"doc": doc, "csv": csv}


@dataclass(slots=True)
class FlowRecord:
    """One emitted flow record: a finished flow, an active-timeout segment or a checkpoint.

    Direction words: src / toserver = the initiator's side, dest / toclient = the responder's.
    Byte counts come in three kinds: `bytes_*` is frame length on the wire (as Suricata's EVE
    and tshark's conversation table count), `ip_bytes_*` is IP total length (as NetFlow), and
    `payload_bytes_*` is transport payload length per the IP header. Packet size statistics
    use IP length, which does not depend on the link type.
    """

    flow_id: int = _f("Flow identifier, unique within a run (shared by all records of a flow)")
    segment: int = _f("Record number within the flow: 0, then +1 after each active timeout")
    end_reason: str = _f("fin, rst, idle, active, eof, evicted or checkpoint")
    checkpoint: str = _f("For checkpoint records: pkts:N or secs:T; empty otherwise")
    community_id: str = _f("Community ID v1 (seed 0) of the flow's 5-tuple")
    start: str = _f("First packet of the record, ISO 8601 UTC")
    end: str = _f("Last packet of the record, ISO 8601 UTC")
    start_epoch: float = _f("First packet, seconds since the Unix epoch")
    end_epoch: float = _f("Last packet, seconds since the Unix epoch")
    duration: float = _f("end - start, seconds")
    ip_version: int = _f("4 or 6")
    proto: str = _f("Transport protocol name (TCP, UDP, ICMP, IPv6-ICMP, ...) or number")
    proto_num: int = _f("IP protocol number")
    src_ip: str = _f("Initiator address")
    src_port: int = _f("Initiator port (ICMP: type of the initiator's message, as Zeek)")
    dest_ip: str = _f("Responder address")
    dest_port: int = _f("Responder port (ICMP: counterpart type, or code for one-way types)")
    vlan: int = _f(
        "VLAN id of the outermost 802.1Q/802.1ad tag, part of the flow key (0 = untagged, "
        "or --no-vlan-key)"
    )
    icmp_type: int | None = _f("ICMP/ICMPv6 type of the first packet; empty for other protocols")
    icmp_code: int | None = _f("ICMP/ICMPv6 code of the first packet; empty for other protocols")
    pkts_toserver: int = _f("Packets initiator->responder, non-first fragments included")
    pkts_toclient: int = _f("Packets responder->initiator, non-first fragments included")
    bytes_toserver: int = _f(
        "Bytes on the wire (frame length, link header included, as Suricata and tshark count) "
        "initiator->responder"
    )
    bytes_toclient: int = _f("Bytes on the wire (frame length) responder->initiator")
    ip_bytes_toserver: int = _f("IP bytes (IP total length) initiator->responder")
    ip_bytes_toclient: int = _f("IP bytes (IP total length) responder->initiator")
    payload_bytes_toserver: int = _f("Transport payload bytes initiator->responder")
    payload_bytes_toclient: int = _f("Transport payload bytes responder->initiator")
    payload_pkts_toserver: int = _f("Packets carrying transport payload, initiator->responder")
    payload_pkts_toclient: int = _f("Packets carrying transport payload, responder->initiator")
    bare_acks_toserver: int = _f("TCP packets with ACK, no payload, no SYN/FIN/RST, from initiator")
    bare_acks_toclient: int = _f("TCP packets with ACK, no payload, no SYN/FIN/RST, from responder")
    frags_toserver: int = _f("Non-first IP fragments counted to the flow, initiator->responder")
    frags_toclient: int = _f("Non-first IP fragments counted to the flow, responder->initiator")
    fin_toserver: int = _f("TCP packets with FIN from the initiator")
    fin_toclient: int = _f("TCP packets with FIN from the responder")
    syn_toserver: int = _f("TCP packets with SYN from the initiator")
    syn_toclient: int = _f("TCP packets with SYN from the responder")
    rst_toserver: int = _f("TCP packets with RST from the initiator")
    rst_toclient: int = _f("TCP packets with RST from the responder")
    psh_toserver: int = _f("TCP packets with PSH from the initiator")
    psh_toclient: int = _f("TCP packets with PSH from the responder")
    ack_toserver: int = _f("TCP packets with ACK from the initiator")
    ack_toclient: int = _f("TCP packets with ACK from the responder")
    urg_toserver: int = _f("TCP packets with URG from the initiator")
    urg_toclient: int = _f("TCP packets with URG from the responder")
    ece_toserver: int = _f("TCP packets with ECE from the initiator")
    ece_toclient: int = _f("TCP packets with ECE from the responder")
    cwr_toserver: int = _f("TCP packets with CWR from the initiator")
    cwr_toclient: int = _f("TCP packets with CWR from the responder")
    size_min_toserver: int = _f("Smallest IP length initiator->responder (0 if no packet)")
    size_min_toclient: int = _f("Smallest IP length responder->initiator (0 if no packet)")
    size_max_toserver: int = _f("Largest IP length initiator->responder")
    size_max_toclient: int = _f("Largest IP length responder->initiator")
    size_mean_toserver: float = _f("Mean IP length initiator->responder")
    size_mean_toclient: float = _f("Mean IP length responder->initiator")
    size_std_toserver: float = _f("Population std of IP length initiator->responder (Welford)")
    size_std_toclient: float = _f("Population std of IP length responder->initiator (Welford)")
    iat_min: float = _f("Smallest gap between consecutive packets of the flow, seconds")
    iat_max: float = _f("Largest gap between consecutive packets of the flow, seconds")
    iat_mean: float = _f("Mean gap between consecutive packets, seconds")
    iat_std: float = _f("Population std of the gaps between consecutive packets, seconds")
    iat_min_toserver: float = _f("Smallest gap between initiator packets, seconds")
    iat_min_toclient: float = _f("Smallest gap between responder packets, seconds")
    iat_max_toserver: float = _f("Largest gap between initiator packets, seconds")
    iat_max_toclient: float = _f("Largest gap between responder packets, seconds")
    iat_mean_toserver: float = _f("Mean gap between initiator packets, seconds")
    iat_mean_toclient: float = _f("Mean gap between responder packets, seconds")
    iat_std_toserver: float = _f("Population std of gaps between initiator packets, seconds")
    iat_std_toclient: float = _f("Population std of gaps between responder packets, seconds")
    piat_min_toserver: float = _f("Smallest gap between initiator payload packets, seconds")
    piat_min_toclient: float = _f("Smallest gap between responder payload packets, seconds")
    piat_max_toserver: float = _f("Largest gap between initiator payload packets, seconds")
    piat_max_toclient: float = _f("Largest gap between responder payload packets, seconds")
    piat_mean_toserver: float = _f("Mean gap between initiator payload packets (message period)")
    piat_mean_toclient: float = _f("Mean gap between responder payload packets (message period)")
    piat_std_toserver: float = _f("Population std of gaps between initiator payload packets")
    piat_std_toclient: float = _f("Population std of gaps between responder payload packets")
    idle_gaps: int = _f("Gaps between consecutive packets longer than gap_threshold (1 s)")
    max_gap: float = _f("Longest gap between consecutive packets, seconds")
    bursts_toserver: int = _f("Idle gaps broken by an initiator packet (initiator spoke first)")
    bursts_toclient: int = _f("Idle gaps broken by a responder packet (responder spoke first)")
    out_of_order: int = _f("Packets older than the flow's previous packet (gap counted as 0)")
    payload_hist_toserver: list[int] = field(
        metadata=_m(
            "Initiator payload sizes in 12 log2 bins: bin k counts 2^k <= len < 2^(k+1), "
            "bin 11 is len >= 2048 (jsonl only)",
            csv=False,
        ),
    )
    payload_hist_toclient: list[int] = field(
        metadata=_m(
            "Responder payload sizes in 12 log2 bins, as payload_hist_toserver (jsonl only)",
            csv=False,
        ),
    )
    first_pkts: dict[str, list] = field(
        metadata=_m(
            "First 32 packets as parallel arrays {dir, len, iat, flags}: dir 0 = toserver, "
            "1 = toclient; len = payload length; iat = seconds since the previous packet of "
            "the flow (0 for the first); flags = TCP flags byte (jsonl only)",
            csv=False,
        )
    )
    last_pkts: dict[str, list] = field(
        metadata=_m(
            "Last 32 packets, oldest first, same layout as first_pkts (jsonl only)", csv=False
        )
    )
    payload_toserver: list[bytes] = field(
        metadata=_m(
            f"First payload messages from the initiator: up to {L.PAY_MSGS} packets, "
            f"{DEFAULT_PAYLOAD_BYTES} bytes in all (FlowConfig.payload_bytes, --payload-bytes), "
            "one entry per packet, TCP "
            "retransmissions of the last kept packet skipped (jsonl: base64)",
            csv=False,
        ),
    )
    payload_toclient: list[bytes] = field(
        metadata=_m(
            "First payload messages from the responder, as payload_toserver (jsonl: base64)",
            csv=False,
        ),
    )

    def to_json_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("payload_toserver", "payload_toclient"):
            d[k] = [base64.b64encode(m).decode() for m in d[k]]
        return d


RECORD_FIELDS = [f.name for f in fields(FlowRecord)]
# Float fields that are an integer count of nanoseconds / 1e9 (see column_arrays(ns_ints=True)).
NS_FIELDS = frozenset(
    ["duration", "iat_min", "iat_max", "max_gap"]
    + [f"{k}_{d}" for k in ("iat_min", "iat_max", "piat_min", "piat_max") for d in DIRS]
)
CSV_FIELDS = [f.name for f in fields(FlowRecord) if f.metadata.get("csv", True)]


def fields_markdown() -> str:
    """The field table of docs/flows.md, generated from FlowRecord."""
    lines = ["| field | type | csv | description |", "| --- | --- | --- | --- |"]
    for f in fields(FlowRecord):
        typ = str(f.type).replace("|", "or")
        csv = "yes" if f.metadata.get("csv", True) else "no"
        lines.append(f"| `{f.name}` | {typ} | {csv} | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"


def _ip_str(ver: int, hi: int, lo: int) -> str:
    if ver == 4:
        return socket.inet_ntop(socket.AF_INET, (lo & 0xFFFFFFFF).to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, hi.to_bytes(8, "big") + lo.to_bytes(8, "big"))


def _ip_strs(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """_ip_str of every row, formatting each distinct address once (flows share hosts)."""
    n = ver.shape[0]
    if n == 0:
        return []
    rows = np.empty((n, 3), dtype=np.uint64)
    rows[:, 0], rows[:, 1], rows[:, 2] = ver, hi, lo
    uniq, inv = np.unique(rows.view(np.dtype((np.void, 24))).ravel(), return_inverse=True)
    keys = uniq.view(np.uint64).reshape(-1, 3).tolist()
    texts = np.array([_ip_str(v, h, lo_) for v, h, lo_ in keys], dtype=object)
    return texts[inv.reshape(-1)].tolist()


def _iso(ns: np.ndarray) -> list[str]:
    txt = np.datetime_as_string(ns.astype("datetime64[ns]"), unit="us")
    return [t + "Z" for t in txt.tolist()]


@dataclass(slots=True)
class FlowBlock:
    """Emitted records in columnar form (one row per record); see kernel.py for the layout."""

    key: np.ndarray  # uint64 [n, 5]
    s: np.ndarray  # int64 [n, N_INT]
    g: np.ndarray  # float64 [n, N_FLT]
    seqm: np.ndarray  # int32 [n, 2 * SEQ_N]
    seqi: np.ndarray  # int64 [n, 2 * SEQ_N]
    pay: np.ndarray  # uint8 [n, 2 * FlowConfig.payload_bytes]: toserver, then toclient
    reason: np.ndarray  # int8 [n]
    ckpt: np.ndarray  # int16 [n], index into checkpoint_names or -1
    checkpoint_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.reason.shape[0])

    @classmethod
    def empty(cls, checkpoint_names: tuple[str, ...] = ()) -> FlowBlock:
        return cls(
            key=np.zeros((0, L.N_KEY), np.uint64),
            s=np.zeros((0, L.N_INT), np.int64),
            g=np.zeros((0, L.N_FLT), np.float64),
            seqm=np.zeros((0, 2 * L.SEQ_N), np.int32),
            seqi=np.zeros((0, 2 * L.SEQ_N), np.int64),
            pay=np.zeros((0, 0), np.uint8),
            reason=np.zeros(0, np.int8),
            ckpt=np.zeros(0, np.int16),
            checkpoint_names=checkpoint_names,
        )

    @classmethod
    def concat(cls, blocks: list[FlowBlock], checkpoint_names: tuple[str, ...] = ()) -> FlowBlock:
        blocks = [b for b in blocks if len(b)]
        if not blocks:
            return cls.empty(checkpoint_names)
        if len(blocks) == 1:
            return blocks[0]
        return cls(
            *(
                np.concatenate([getattr(b, n) for b in blocks])
                for n in ("key", "s", "g", "seqm", "seqi", "pay", "reason", "ckpt")
            ),
            checkpoint_names=blocks[0].checkpoint_names,
        )

    def take(self, index: np.ndarray) -> FlowBlock:
        return FlowBlock(
            *(
                getattr(self, n)[index]
                for n in ("key", "s", "g", "seqm", "seqi", "pay", "reason", "ckpt")
            ),
            checkpoint_names=self.checkpoint_names,
        )

    # -- column extraction -------------------------------------------------------------------
    def columns(self, names: list[str] | None = None) -> dict[str, list]:
        """One Python list per requested FlowRecord field (all fields by default)."""
        return {
            name: col.tolist() if isinstance(col, np.ndarray) else col
            for name, col in self.column_arrays(names).items()
        }

    def column_arrays(
        self, names: list[str] | None = None, ns_ints: bool = False
    ) -> dict[str, Any]:
        """As columns(), but numeric fields stay 1-D numpy arrays (int64 / float64).

        For sinks that format whole columns at once; values are those of columns(). With
        `ns_ints`, the fields of NS_FIELDS (durations kept as integer nanoseconds, given in
        seconds as ns / 1e9) come as those int64 nanoseconds.
        """
        want = set(RECORD_FIELDS if names is None else names)
        n = len(self)
        s, g, key = self.s, self.g, self.key
        out: dict[str, Any] = {}

        def put(name: str, values: Any) -> None:
            if name in want:
                out[name] = values

        def put_ns(name: str, ns: np.ndarray) -> None:
            if name in want:
                out[name] = ns if ns_ints else ns / 1e9

        put("flow_id", s[:, L.FLOW_ID])
        put("segment", s[:, L.SEGMENT])
        put("end_reason", [L.REASON_NAMES[r] for r in self.reason.tolist()])
        put("checkpoint", [self.checkpoint_names[c] if c >= 0 else "" for c in self.ckpt.tolist()])
        ver = s[:, L.IPVER]
        proto = (key[:, L.K_PP] & np.uint64(0xFF)).astype(np.int64)
        init_a = s[:, L.INIT_A] == 1
        pa = ((key[:, L.K_PP] >> np.uint64(24)) & np.uint64(0xFFFF)).astype(np.int64)
        pb = ((key[:, L.K_PP] >> np.uint64(8)) & np.uint64(0xFFFF)).astype(np.int64)
        if "community_id" in want:
            out["community_id"] = community_ids_from_keys(ver, key)
        start, last = s[:, L.START], s[:, L.LAST]
        if "start" in want:
            out["start"] = _iso(start)
        if "end" in want:
            out["end"] = _iso(last)
        put("start_epoch", start / 1e9)
        put("end_epoch", last / 1e9)
        put_ns("duration", last - start)
        put("ip_version", ver)
        put("proto", [PROTO_NAMES.get(p, str(p)) for p in proto.tolist()])
        put("proto_num", proto)
        src_hi = np.where(init_a, key[:, L.K_AHI], key[:, L.K_BHI])
        src_lo = np.where(init_a, key[:, L.K_ALO], key[:, L.K_BLO])
        dst_hi = np.where(init_a, key[:, L.K_BHI], key[:, L.K_AHI])
        dst_lo = np.where(init_a, key[:, L.K_BLO], key[:, L.K_ALO])
        if "src_ip" in want:
            out["src_ip"] = _ip_strs(ver, src_hi, src_lo)
        if "dest_ip" in want:
            out["dest_ip"] = _ip_strs(ver, dst_hi, dst_lo)
        put("src_port", np.where(init_a, pa, pb))
        put("dest_port", np.where(init_a, pb, pa))
        put("vlan", ((key[:, L.K_PP] >> np.uint64(40)) & np.uint64(0xFFF)).astype(np.int64))
        icmp = ((proto == 1) & (ver == 4)) | ((proto == 58) & (ver == 6))
        if "icmp_type" in want:
            out["icmp_type"] = [
                int(t) if m else None
                for t, m in zip(s[:, L.FIRST_SPORT].tolist(), icmp.tolist(), strict=True)
            ]
        if "icmp_code" in want:
            out["icmp_code"] = [
                int(c) if m else None
                for c, m in zip(s[:, L.FIRST_DPORT].tolist(), icmp.tolist(), strict=True)
            ]
        for d, dn in enumerate(DIRS):
            put(f"pkts_{dn}", s[:, L.PKTS + d] + s[:, L.FRAGS + d])
            put(f"bytes_{dn}", s[:, L.BYTES + d])
            put(f"ip_bytes_{dn}", s[:, L.IPBYTES + d])
            put(f"payload_bytes_{dn}", s[:, L.PBYTES + d])
            put(f"payload_pkts_{dn}", s[:, L.PPKTS + d])
            put(f"bare_acks_{dn}", s[:, L.BARE_ACK + d])
            put(f"frags_{dn}", s[:, L.FRAGS + d])
            for b, fn in enumerate(FLAG_NAMES):
                put(f"{fn}_{dn}", s[:, L.FLAGS + d * L.N_FLAGS + b])
            npk = s[:, L.PKTS + d]
            has = npk > 0
            put(f"size_min_{dn}", np.where(has, s[:, L.SIZE_MIN + d], 0))
            put(f"size_max_{dn}", s[:, L.SIZE_MAX + d])
            put(f"size_mean_{dn}", g[:, L.SIZE_MEAN + d])
            put(f"size_std_{dn}", np.sqrt(np.maximum(g[:, L.SIZE_M2 + d], 0) / np.maximum(npk, 1)))
            ni = np.maximum(npk - 1, 0)
            hi_ = ni > 0
            put_ns(f"iat_min_{dn}", np.where(hi_, s[:, L.IAT_MIN + d], 0))
            put_ns(f"iat_max_{dn}", s[:, L.IAT_MAX + d])
            put(f"iat_mean_{dn}", g[:, L.IAT_MEAN + d] / 1e9)
            put(
                f"iat_std_{dn}",
                np.sqrt(np.maximum(g[:, L.IAT_M2 + d], 0) / np.maximum(ni, 1)) / 1e9,
            )
            npi = s[:, L.PIAT_N + d]
            put_ns(f"piat_min_{dn}", np.where(npi > 0, s[:, L.PIAT_MIN + d], 0))
            put_ns(f"piat_max_{dn}", s[:, L.PIAT_MAX + d])
            put(f"piat_mean_{dn}", g[:, L.PIAT_MEAN + d] / 1e9)
            put(
                f"piat_std_{dn}",
                np.sqrt(np.maximum(g[:, L.PIAT_M2 + d], 0) / np.maximum(npi, 1)) / 1e9,
            )
            put(f"bursts_{dn}", s[:, L.BURSTS + d])
            h0 = L.HIST + d * L.HIST_BINS
            put(f"payload_hist_{dn}", s[:, h0 : h0 + L.HIST_BINS])
        npk_all = s[:, L.NPK]
        na = np.maximum(npk_all - 1, 0)
        put_ns("iat_min", np.where(na > 0, s[:, L.IAT_MIN_ALL], 0))
        put_ns("iat_max", s[:, L.IAT_MAX_ALL])
        put("iat_mean", g[:, L.IAT_MEAN_ALL] / 1e9)
        put("iat_std", np.sqrt(np.maximum(g[:, L.IAT_M2_ALL], 0) / np.maximum(na, 1)) / 1e9)
        put("idle_gaps", s[:, L.IDLE_GAPS])
        put_ns("max_gap", s[:, L.MAX_GAP])
        put("out_of_order", s[:, L.OOO])
        if "first_pkts" in want or "last_pkts" in want:
            first, last_ = self._sequences()
            put("first_pkts", first)
            put("last_pkts", last_)
        for d, dn in enumerate(DIRS):
            name = f"payload_{dn}"
            if name in want:
                out[name] = [self._payloads(i, d) for i in range(n)]
        return out

    def _sequences(self) -> tuple[list, list]:
        N = L.SEQ_N
        npk = self.s[:, L.NPK]
        k = np.minimum(npk, N)
        meta = self.seqm.astype(np.int64)
        # ring slot of packet p is N + p % N; the last k packets are m-k .. m-1, oldest first
        j = np.arange(N)
        ring = N + (npk[:, None] - k[:, None] + j[None, :]) % N
        ring = np.where(j[None, :] < k[:, None], ring, N)
        out = []
        for cols in (slice(0, N), None):
            if cols is None:
                m = np.take_along_axis(meta, ring, axis=1)
                iat = np.take_along_axis(self.seqi, ring, axis=1)
            else:
                m, iat = meta[:, cols], self.seqi[:, cols]
            valid = j[None, :] < k[:, None]  # row-major: each record's entries in order
            parts = (
                ((m >> L.SEQ_DIR_SHIFT) & 0x1)[valid],
                (m & L.SEQ_LEN_MASK)[valid],
                iat[valid] / 1e9,
                ((m >> L.SEQ_FLAGS_SHIFT) & 0xFF)[valid],
            )
            da, ln, ia, fl = (p.tolist() for p in parts)
            ends = np.cumsum(k).tolist()
            starts = [0, *ends[:-1]] if ends else []
            out.append(
                [
                    {"dir": da[a:e], "len": ln[a:e], "iat": ia[a:e], "flags": fl[a:e]}
                    for a, e in zip(starts, ends, strict=True)
                ]
            )
        return out[0], out[1]

    def _payloads(self, i: int, d: int) -> list[bytes]:
        s = self.s[i]
        n = int(s[L.PAY_N + d])
        pos = d * (self.pay.shape[1] // 2)
        msgs = []
        for k in range(n):
            m = int(s[L.PAY_LEN + d * L.PAY_MSGS + k])
            msgs.append(self.pay[i, pos : pos + m].tobytes())
            pos += m
        return msgs

    def records(self) -> list[FlowRecord]:
        cols = self.columns()
        names = RECORD_FIELDS
        return [FlowRecord(*vals) for vals in zip(*(cols[nm] for nm in names), strict=True)]

    def __iter__(self):
        return iter(self.records())
