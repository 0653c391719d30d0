"""Output formats. Data goes to stdout or a file; progress and logs never do.

Flow records: JSON lines (Suricata-EVE-like flat objects, arrays for the packet sequences,
base64 for payload messages) or CSV (scalar fields only, the columns of CSV_FIELDS).
"""

from __future__ import annotations

import base64
import csv
import json
from dataclasses import fields
from typing import Any, Protocol, TextIO

import numpy as np

from flowdet.flows.record import CSV_FIELDS, NS_FIELDS, RECORD_FIELDS, FlowBlock, FlowRecord

FLOW_FORMATS = ("csv", "jsonl")


class FlowSink(Protocol):
    def write(self, block: FlowBlock) -> int: ...

    def close(self) -> None: ...


def _json_lists(lists: list[list]) -> list[str]:
    """JSON text of each flat list of numbers, with one C-level json.dumps for all of them."""
    if not lists:
        return []
    body = json.dumps(lists, separators=(",", ":"))[2:-2]  # drop the outer "[[" and "]]"
    return ["[" + part + "]" for part in body.split("],[")]


class JsonlFlowSink:
    """One JSON object per line, keys in FlowRecord field order.

    Lines are made with one %-format per record from per-column text, not json.dumps of a
    dict: about 10x faster, and exact because every string field is plain ASCII without
    quotes or backslashes (addresses, ISO times, base64, names).
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        kinds = {f.name: str(f.type) for f in fields(FlowRecord)}
        self._kinds = kinds
        self._template = (
            "{"
            + ",".join(
                f'"{name}":' + ('"%s"' if kinds[name] == "str" else "%s") for name in RECORD_FIELDS
            )
            + "}\n"
        )

    def _text(self, name: str, col: list) -> list:
        kind = self._kinds[name]
        if kind in ("str", "int", "float"):
            return col
        if kind == "int | None":
            return ["null" if v is None else v for v in col]
        if kind == "list[bytes]":
            return [
                "[" + ",".join('"' + base64.b64encode(m).decode("ascii") + '"' for m in msgs) + "]"
                for msgs in col
            ]
        if kind == "dict[str, list]":
            parts = [_json_lists([d[k] for d in col]) for k in ("dir", "len", "iat", "flags")]
            return [
                f'{{"dir":{a},"len":{b},"iat":{c},"flags":{d}}}'
                for a, b, c, d in zip(*parts, strict=True)
            ]
        return _json_lists(col)

    def write(self, block: FlowBlock) -> int:
        if not len(block):
            return 0
        cols = block.columns()
        texts = [self._text(n, cols[n]) for n in RECORD_FIELDS]
        tpl = self._template
        self.out.write("".join([tpl % row for row in zip(*texts, strict=True)]))
        return len(block)

    def close(self) -> None:
        self.out.flush()


class CsvFlowSink:
    """CSV with a header row; empty cells for absent values (ICMP type on TCP flows).

    The bytes are those csv.writer writes (str(int), repr(float), no quoting needed), made
    column by column and written by a compiled row writer (flowdet.flows.textkernel): each
    distinct float is formatted once by repr(), nanosecond durations are formatted from their
    integers (exactly repr's text), text columns are joined once. A block with a string that
    would need quoting, or a column of another type, goes through csv.writer itself.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._w = csv.writer(out, lineterminator="\n")
        self._w.writerow(CSV_FIELDS)

    def write(self, block: FlowBlock) -> int:
        n = len(block)
        if not n:
            return 0
        text = _csv_text(block)
        if text is None:  # needs csv quoting or is not one of ours: the csv module does it
            lists = block.columns(CSV_FIELDS)
            self._w.writerows(zip(*(lists[nm] for nm in CSV_FIELDS), strict=True))
            return n
        raw = getattr(self.out, "buffer", None)
        if raw is not None:
            self.out.flush()  # the header and any csv.writer rows go first
            raw.write(text)
        else:
            self.out.write(bytes(text).decode("ascii"))
        return n

    def close(self) -> None:
        self.out.flush()


_CSV_KINDS = {f.name: str(f.type) for f in fields(FlowRecord)}


def _csv_text(block: FlowBlock) -> memoryview | None:
    """The CSV rows of a block as ASCII bytes, or None when csv.writer must do them."""
    from flowdet.flows import textkernel as TK

    n = len(block)
    cols = block.column_arrays(CSV_FIELDS, ns_ints=True)
    m = len(CSV_FIELDS)
    kinds = np.empty(m, np.int64)
    src = np.empty(m, np.int64)
    int_cols: list[np.ndarray] = []
    float_cols: list[np.ndarray] = []
    texts: list[str] = []
    text_lens: list[np.ndarray] = []
    for j, name in enumerate(CSV_FIELDS):
        v = cols[name]
        kind = _CSV_KINDS[name]
        if kind == "str":  # lists of str by construction (FlowBlock.column_arrays)
            joined = "".join(v)
            if any(c in joined for c in _CSV_SPECIAL):
                return None
            kinds[j], src[j] = TK.K_TEXT, len(texts)
            texts.append(joined)
            text_lens.append(np.fromiter(map(len, v), np.int64, n))
        elif kind == "int | None":
            kinds[j], src[j] = TK.K_INT_NULL, len(int_cols)
            int_cols.append(np.array([TK.NULL_INT if x is None else x for x in v], np.int64))
        elif isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu":
            if name in NS_FIELDS:
                if v.size and int(np.abs(v).max()) >= TK.NS_EXACT_LIMIT:
                    kinds[j], src[j] = TK.K_FLOAT, len(float_cols)
                    float_cols.append(v / 1e9)
                    continue
                kinds[j] = TK.K_NS
            else:
                kinds[j] = TK.K_INT
            src[j] = len(int_cols)
            int_cols.append(v.astype(np.int64, copy=False))
        elif isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f":
            kinds[j], src[j] = TK.K_FLOAT, len(float_cols)
            float_cols.append(v)
        else:
            return None
    try:
        tbuf = np.frombuffer("".join(texts).encode("ascii"), np.uint8)
    except UnicodeEncodeError:
        return None
    ints = np.stack(int_cols, axis=1) if int_cols else np.zeros((n, 0), np.int64)
    if text_lens:
        tlen = np.stack(text_lens, axis=1)
        tstart = (np.cumsum(tlen.T.ravel()) - tlen.T.ravel()).reshape(len(texts), n).T.copy()
    else:
        tlen = tstart = np.zeros((n, 0), np.int64)
    if float_cols:
        # one repr per distinct value over all float columns (bit pattern: -0.0 stays apart)
        bits = np.stack(float_cols).astype(np.float64).view(np.int64)
        uniq, inv = np.unique(bits, return_inverse=True)
        reprs = [repr(x) for x in uniq.view(np.float64).tolist()]
        dbuf = np.frombuffer("".join(reprs).encode("ascii"), np.uint8)
        dlen = np.fromiter(map(len, reprs), np.int64, len(reprs))
        dstart = np.cumsum(dlen) - dlen
        fidx = np.ascontiguousarray(inv.reshape(len(float_cols), n).T)
        widest = int(dlen.max())
    else:
        dbuf = np.zeros(0, np.uint8)
        dlen = dstart = np.zeros(0, np.int64)
        fidx = np.zeros((n, 0), np.int64)
        widest = 0
    bound = tbuf.shape[0] + n * (m + TK.NS_WIDTH * len(int_cols) + widest * len(float_cols))
    out = np.empty(bound, np.uint8)
    size = TK.format_csv(kinds, src, ints, fidx, tstart, tlen, tbuf, dstart, dlen, dbuf, out)
    return memoryview(out)[:size]


_CSV_SPECIAL = (",", '"', "\r", "\n")


def flow_sink(fmt: str, out: TextIO) -> FlowSink:
    if fmt == "jsonl":
        return JsonlFlowSink(out)
    if fmt == "csv":
        return CsvFlowSink(out)
    raise ValueError(f"unknown flow format {fmt!r}")


def read_flows(path: str, fmt: str = "jsonl") -> list[dict[str, Any]]:
    """Read records written by a flow sink back (tests, notebooks)."""
    with open(path, newline="") as f:
        if fmt == "jsonl":
            return [json.loads(line) for line in f if line.strip()]
        return list(csv.DictReader(f))
