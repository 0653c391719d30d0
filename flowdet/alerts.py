"""Alert output: the alert record schema, its sinks (table, JSON lines, CSV) and per-alert
capture extraction.

The JSON record follows Suricata's EVE where EVE has a word for it (`event_type`,
`flow_id`, `community_id`, `src_ip`/`dest_ip`, `pkts_toserver`, ...), flat, so `jq` reads
it. `ALERT_FIELDS` is the one field list: docs/alerts.md and `flowdet score --fields` are
generated from it, the JSON and CSV sinks write it, and a test keeps them equal.
"""

from __future__ import annotations

import csv
import json
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, TextIO

import numpy as np

from flowdet.pipeline import Verdict
from flowdet.reasons import fmt_secs
from flowdet.signatures import MINING_FAMILIES

ALERT_FORMATS = ("table", "jsonl", "csv")


@dataclass(frozen=True, slots=True)
class AlertField:
    name: str
    type: str  # JSON type: string, integer, number, object, array; "|null" when optional
    doc: str
    csv: bool = True


ALERT_FIELDS: tuple[AlertField, ...] = (
    AlertField(
        "timestamp",
        "string",
        "ISO 8601 UTC. Alerts: when the verdict was first reached (last packet of that "
        "evaluation); flow events: the flow's last packet",
    ),
    AlertField("event_type", "string", '"alert" (label is not benign) or "flow" (--all-flows)'),
    AlertField("pcap_filename", "string", "Capture file the flow was read from (base name)"),
    AlertField(
        "flow_id", "integer", "Flow number within the capture (as `flowdet flows` on that file)"
    ),
    AlertField("segment", "integer", "Record number within the flow (+1 per active timeout)"),
    AlertField("community_id", "string", "Community ID v1 (seed 0): pivot to Zeek/Suricata"),
    AlertField("src_ip", "string", "Initiator address"),
    AlertField("src_port", "integer", "Initiator port"),
    AlertField("dest_ip", "string", "Responder address"),
    AlertField("dest_port", "integer", "Responder port"),
    AlertField("proto", "string", "Transport protocol (TCP, UDP, ...)"),
    AlertField(
        "app_proto",
        "string",
        "Protocol family the payload signatures recognised (stratum, monero, getwork, sv2, "
        "ssh, tls, http), mining families first; empty if none",
    ),
    AlertField("pkts_toserver", "integer", "Packets initiator->responder"),
    AlertField("pkts_toclient", "integer", "Packets responder->initiator"),
    AlertField("bytes_toserver", "integer", "IP bytes initiator->responder"),
    AlertField("bytes_toclient", "integer", "IP bytes responder->initiator"),
    AlertField("start", "string", "First packet, ISO 8601 UTC"),
    AlertField("end", "string", "Last packet, ISO 8601 UTC"),
    AlertField("duration", "number", "end - start, seconds"),
    AlertField("end_reason", "string", "fin, rst, idle, active, eof or evicted"),
    AlertField("label", "string", "Verdict: benign or one of the model's alert classes"),
    AlertField(
        "score",
        "number",
        "Highest non-benign class probability (0..1), for benign flows too: sort key",
    ),
    AlertField("threshold", "number|null", "Threshold of the label's class; null when benign"),
    AlertField(
        "probabilities",
        "object",
        "Class -> probability on the flow's final record (jsonl only; csv: p_<class> columns)",
        csv=False,
    ),
    AlertField(
        "verdict_checkpoint",
        "string|null",
        "Earliest evaluation whose probability of `label` crossed the threshold: pkts:N, "
        "secs:T (prefix checkpoints) or final; null when benign",
    ),
    AlertField(
        "verdict_pkts",
        "integer|null",
        "Packets of the flow seen at that evaluation; null if benign",
    ),
    AlertField(
        "verdict_client_payload_pkts",
        "integer|null",
        "Initiator payload-carrying packets seen at that evaluation; null if benign",
    ),
    AlertField(
        "verdict_time", "string|null", "Time of that evaluation's last packet; null if benign"
    ),
    AlertField(
        "reasons",
        "array",
        "Sentences a person can check in Wireshark, strongest first (csv: joined by ' | ')",
    ),
    AlertField(
        "reason_sources",
        "array",
        "Where each reason comes from: signature:<family>, flow:<describer> or model:rule "
        "(jsonl only)",
        csv=False,
    ),
    AlertField(
        "drivers_method",
        "string",
        "How drivers were computed: contribution (tree path), atypicality (vs benign "
        "training statistics) or none",
    ),
    AlertField(
        "drivers",
        "array",
        "Features that pushed the flow towards its label: [{feature, value, weight}], "
        "strongest first (jsonl only)",
        csv=False,
    ),
    AlertField("model", "string", "Model identity from its card (name, version or trained date)"),
)

ALERT_FIELD_NAMES = tuple(f.name for f in ALERT_FIELDS)


def _type_and_doc(f: AlertField) -> tuple[str, str]:
    """A field's type and description as markdown cells (a pipe would end the cell)."""
    return f.type.replace("|", " or "), f.doc.replace("|", "\\|")


def fields_markdown() -> str:
    """The field table of docs/alerts.md, generated from ALERT_FIELDS."""
    lines = ["| field | type | csv | description |", "| --- | --- | --- | --- |"]
    for f in ALERT_FIELDS:
        type_, doc = _type_and_doc(f)
        lines.append(f"| `{f.name}` | {type_} | {'yes' if f.csv else 'no'} | {doc} |")
    return "\n".join(lines) + "\n"


def field_table(fields: Iterable[AlertField]) -> str:
    """A field | type | description table of other JSON records (live's, stats)."""
    lines = ["| field | type | description |", "| --- | --- | --- |"]
    for f in fields:
        type_, doc = _type_and_doc(f)
        lines.append(f"| `{f.name}` | {type_} | {doc} |")
    return "\n".join(lines) + "\n"


def _iso(ns: int | None) -> str | None:
    """ISO 8601 UTC with microseconds, as the flow records' start/end."""
    if ns is None:
        return None
    t = np.array([ns], dtype="int64").astype("datetime64[ns]")
    return str(np.datetime_as_string(t, unit="us")[0]) + "Z"


def app_proto(v: Verdict) -> str:
    if v.signature is None:
        return ""
    fams = [e.family for e in v.signature.evidence if e.strength == "message"]
    for f in fams:
        if f in MINING_FAMILIES:
            return f
    return fams[0] if fams else ""


def model_name(card: dict[str, Any] | None) -> str:
    """A short identity of the model for each record: its name (or estimator), version or
    training date, the flowdet that trained it and the seed - enough to tell two models'
    alerts apart in a SIEM."""
    card = card or {}
    name = next(
        (str(card[k]) for k in ("name", "model_id", "id", "estimator") if card.get(k)), "model"
    )
    parts = [name]
    ver = card.get("version") or card.get("trained") or card.get("created")
    if ver:
        parts.append(str(ver))
    versions = card.get("versions")
    if isinstance(versions, dict) and versions.get("flowdet"):
        parts.append(f"flowdet {versions['flowdet']}")
    if card.get("seed") is not None:
        parts.append(f"seed {card['seed']}")
    return ", ".join(parts)


def alert_record(v: Verdict, model: str = "") -> dict[str, Any]:
    """The JSON-ready alert record of a verdict, keys in ALERT_FIELDS order."""
    r = v.record
    alert = v.label != "benign"
    return {
        "timestamp": (_iso(v.first_ns) if alert and v.first_ns is not None else r.end),
        "event_type": "alert" if alert else "flow",
        "pcap_filename": v.source,
        "flow_id": r.flow_id,
        "segment": r.segment,
        "community_id": r.community_id,
        "src_ip": r.src_ip,
        "src_port": r.src_port,
        "dest_ip": r.dest_ip,
        "dest_port": r.dest_port,
        "proto": r.proto,
        "app_proto": app_proto(v),
        "pkts_toserver": r.pkts_toserver,
        "pkts_toclient": r.pkts_toclient,
        "bytes_toserver": r.bytes_toserver,
        "bytes_toclient": r.bytes_toclient,
        "start": r.start,
        "end": r.end,
        "duration": r.duration,
        "end_reason": r.end_reason,
        "label": v.label,
        "score": round(v.score, 6),
        "threshold": v.threshold if alert else None,
        "probabilities": v.proba,
        "verdict_checkpoint": v.first_checkpoint or None,
        "verdict_pkts": v.first_pkts if alert else None,
        "verdict_client_payload_pkts": v.first_client_payload_pkts if alert else None,
        "verdict_time": _iso(v.first_ns) if alert else None,
        "reasons": [x.text for x in v.reasons],
        "reason_sources": [x.source for x in v.reasons],
        "drivers_method": v.drivers_method,
        "drivers": [
            {"feature": n, "value": round(x, 6), "weight": round(w, 6)} for n, x, w in v.drivers
        ],
        "model": model,
    }


# -- sinks --------------------------------------------------------------------------------


class AlertSink(Protocol):
    def write(self, verdicts: Sequence[Verdict]) -> int: ...

    def close(self) -> None: ...


class JsonlAlertSink:
    """One EVE-like JSON object per line, written as verdicts arrive."""

    def __init__(self, out: TextIO, model: str = "") -> None:
        self.out, self.model = out, model

    def write(self, verdicts: Sequence[Verdict]) -> int:
        for v in verdicts:
            self.out.write(json.dumps(alert_record(v, self.model), ensure_ascii=False) + "\n")
        return len(verdicts)

    def close(self) -> None:
        self.out.flush()


class CsvAlertSink:
    """Flat CSV: the scalar fields, one p_<class> column per class, reasons joined."""

    def __init__(self, out: TextIO, classes: Sequence[str], model: str = "") -> None:
        self.out, self.model, self.classes = out, model, tuple(classes)
        self.columns = [f.name for f in ALERT_FIELDS if f.csv] + [f"p_{c}" for c in classes]
        self._w = csv.writer(out, lineterminator="\n")
        self._w.writerow(self.columns)

    def write(self, verdicts: Sequence[Verdict]) -> int:
        for v in verdicts:
            rec = alert_record(v, self.model)
            rec["reasons"] = " | ".join(rec["reasons"])
            for c in self.classes:
                rec[f"p_{c}"] = v.proba.get(c, 0.0)
            self._w.writerow(["" if rec[c] is None else rec[c] for c in self.columns])
        return len(verdicts)

    def close(self) -> None:
        self.out.flush()


class TableAlertSink:
    """For a person at a terminal: alerts sorted by score, each with its reasons.

    Rows are held until close() because sorting needs them all (alerts are few; with
    --all-flows the table holds every flow, use jsonl for big captures).
    """

    def __init__(self, out: TextIO, model: str = "") -> None:
        self.out, self.model = out, model
        self._rows: list[Verdict] = []

    def write(self, verdicts: Sequence[Verdict]) -> int:
        self._rows.extend(verdicts)
        return len(verdicts)

    def close(self) -> None:
        rows = sorted(self._rows, key=lambda v: (-v.score, v.source, v.record.flow_id))
        self.out.write(render_table(rows))
        self.out.flush()


def _ep(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def render_verdict(v: Verdict, n: int | None = None) -> str:
    r = v.record
    head = f"[{n}] " if n is not None else ""
    thr = f" (threshold {v.threshold:.2f})" if v.threshold is not None else ""
    lines = [
        f"{head}{v.label.upper()}  score {v.score:.2f}{thr}  {v.source}  flow {r.flow_id}"
        + (f" segment {r.segment}" if r.segment else "")
        + f"  {r.community_id}",
        f"    {_ep(r.src_ip, r.src_port)} -> {_ep(r.dest_ip, r.dest_port)} {r.proto}  "
        f"{r.pkts_toserver + r.pkts_toclient:,} packets ({r.pkts_toserver:,} to server, "
        f"{r.pkts_toclient:,} to client)  {fmt_secs(r.duration)}  {r.start} .. {r.end}",
    ]
    if v.label != "benign" and v.first_checkpoint:
        when = (
            "at the end of the flow"
            if v.first_checkpoint == "final"
            else f"at checkpoint {v.first_checkpoint}"
        )
        lines.append(
            f"    verdict first reached {when}: after {v.first_pkts:,} packets "
            f"({_plural(v.first_client_payload_pkts or 0, 'client payload packet')}), "
            f"{_iso(v.first_ns)}"
        )
    probs = ", ".join(f"{c} {p:.2f}" for c, p in v.proba.items())
    lines.append(f"    probabilities: {probs}")
    for reason in v.reasons:
        lines.append(f"    - {reason.text}")
    return "\n".join(lines) + "\n"


def render_table(rows: Sequence[Verdict]) -> str:
    if not rows:
        return ""
    return "\n".join(render_verdict(v, i + 1) for i, v in enumerate(rows))


def alert_sink(fmt: str, out: TextIO, classes: Sequence[str], model: str = "") -> AlertSink:
    if fmt == "jsonl":
        return JsonlAlertSink(out, model)
    if fmt == "csv":
        return CsvAlertSink(out, classes, model)
    if fmt == "table":
        return TableAlertSink(out, model)
    raise ValueError(f"unknown alert format {fmt!r}")


# -- per-alert captures -------------------------------------------------------------------


class PcapngWriter:
    """A minimal pcapng writer: one section, one interface per link type, nanosecond
    timestamps, enhanced packet blocks holding the original record bytes."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self._ifaces: dict[int, int] = {}
        f.write(self._block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))

    @staticmethod
    def _block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    def _iface(self, linktype: int) -> int:
        idx = self._ifaces.get(linktype)
        if idx is None:
            idx = self._ifaces[linktype] = len(self._ifaces)
            opts = struct.pack("<HH", 9, 1) + bytes([9]) + b"\x00" * 3  # if_tsresol = 10^-9
            opts += struct.pack("<HH", 0, 0)
            self.f.write(self._block(1, struct.pack("<HHI", linktype, 0, 0) + opts))
        return idx

    def write(self, linktype: int, ts_ns: int, data: bytes, wirelen: int) -> None:
        iface = self._iface(linktype)
        hdr = struct.pack(
            "<IIIII", iface, (ts_ns >> 32) & 0xFFFFFFFF, ts_ns & 0xFFFFFFFF, len(data), wirelen
        )
        self.f.write(self._block(6, hdr + data))


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def alert_pcap_name(v: Verdict) -> str:
    """<capture>_flow<id>[-<segment>]_<label>_<community id, file-name safe>.pcapng"""
    stem = v.source
    for suf in (".gz", ".pcapng", ".pcap", ".cap"):
        stem = stem.removesuffix(suf)
    cid = v.record.community_id.removeprefix("1:").replace("/", "_").replace("+", "-")
    seg = f"-{v.record.segment}" if v.record.segment else ""
    parts = [stem, f"flow{v.record.flow_id}{seg}", v.label, cid.rstrip("=")]
    return _SAFE.sub("_", "_".join(parts)) + ".pcapng"


@dataclass(slots=True)
class Extracted:
    verdict: Verdict
    path: str
    packets: int
    expected: int  # packets the record counts (non-first fragments are not extracted)


def extract_alert_pcaps(source: Any, verdicts: Iterable[Verdict], out_dir: str) -> list[Extracted]:
    """Second pass over one capture: each verdict's packets into its own pcapng.

    Packets are matched by canonical flow key and the record's exact first/last packet
    times, in capture order; memory holds only the wanted keys. Non-first IP fragments
    carry no ports and are not extracted (the count difference is reported by the caller).
    """
    from flowdet.capture import Status, open_capture
    from flowdet.flows.keys import canonical_keys, key_hash

    verdicts = list(verdicts)
    if not verdicts:
        return []
    os.makedirs(out_dir, exist_ok=True)
    wanted: dict[tuple[int, ...], list[int]] = {}
    for i, v in enumerate(verdicts):
        wanted.setdefault(v.key, []).append(i)
    keys = np.array(list(wanted), dtype=np.uint64)
    hashes = np.unique(key_hash(keys))
    files: list[BinaryIO] = []
    writers: list[PcapngWriter] = []
    counts = [0] * len(verdicts)
    paths = []
    try:
        for v in verdicts:
            path = os.path.join(out_dir, alert_pcap_name(v))
            f = open(path, "wb")  # noqa: SIM115 - closed in finally
            files.append(f)
            writers.append(PcapngWriter(f))
            paths.append(path)
        with open_capture(source) as reader:
            for b in reader:
                rows = np.flatnonzero(b.status == Status.OK)
                if not len(rows):
                    continue
                k, _ = canonical_keys(b, rows)
                hit = np.isin(key_hash(k), hashes)
                for j in np.flatnonzero(hit).tolist():
                    cand = wanted.get(tuple(k[j].tolist()))
                    if cand is None:
                        continue
                    row = int(rows[j])
                    ts = int(b.ts_ns[row])
                    for vi in cand:
                        v = verdicts[vi]
                        if v.start_ns <= ts <= v.end_ns:
                            off = int(b.rec_off[row])
                            data = b.data[off : off + int(b.caplen[row])].tobytes()
                            writers[vi].write(int(b.linktype[row]), ts, data, int(b.wirelen[row]))
                            counts[vi] += 1
                            break
    finally:
        for f in files:
            f.close()
    return [
        Extracted(
            v,
            p,
            c,
            v.record.pkts_toserver
            + v.record.pkts_toclient
            - v.record.frags_toserver
            - v.record.frags_toclient,
        )
        for v, p, c in zip(verdicts, paths, counts, strict=True)
    ]
