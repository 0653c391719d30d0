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
        text = _jsonl_text(block)
        if text is not None:
            _write_bytes(self.out, text)
            return len(block)
        cols = block.columns()
        texts = [self._text(n, cols[n]) for n in RECORD_FIELDS]
        tpl = self._template
        self.out.write("".join([tpl % row for row in zip(*texts, strict=True)]))
        return len(block)

    def close(self) -> None:
        self.out.flush()


def _write_bytes(out: TextIO, text: memoryview) -> None:
    """ASCII text made by the row writer: to the binary buffer under `out` when it has one."""
    raw = getattr(out, "buffer", None)
    if raw is not None:
        out.flush()  # what was written as text (a CSV header, fallback rows) goes first
        raw.write(text)
    else:
        out.write(bytes(text).decode("ascii"))


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
        _write_bytes(self.out, text)
        return n

    def close(self) -> None:
        self.out.flush()


_KINDS = {f.name: str(f.type) for f in fields(FlowRecord)}


def _csv_text(block: FlowBlock) -> memoryview | None:
    """The CSV rows of a block as ASCII bytes, or None when csv.writer must do them."""
    return _rows_text(block, CSV_FIELDS, json_lines=False)


def _jsonl_text(block: FlowBlock) -> memoryview | None:
    """The JSON lines of a block as ASCII bytes, or None for the per-record path."""
    return _rows_text(block, RECORD_FIELDS, json_lines=True)


def _rows_text(block: FlowBlock, names: list[str], json_lines: bool) -> memoryview | None:
    """Prepare every column once, then let flowdet.flows.textkernel write the rows."""
    from flowdet.flows import layout as L
    from flowdet.flows import textkernel as TK

    n = len(block)
    m = len(names)
    seq_names = {"first_pkts", "last_pkts"}
    pay_names = {"payload_toserver", "payload_toclient"}
    cols = block.column_arrays(
        [nm for nm in names if nm not in seq_names and nm not in pay_names], ns_ints=True
    )
    if json_lines:
        if seq_names & set(names) and int(np.abs(block.seqi).max(initial=0)) >= TK.NS_EXACT_LIMIT:
            return None  # a gap of > 11 days inside a sequence: not exact in the kernel
        for nm in pay_names & set(names):
            d = 0 if nm.endswith("toserver") else 1
            cols[nm] = [
                "[" + ",".join('"' + base64.b64encode(x).decode("ascii") + '"' for x in msgs) + "]"
                for msgs in (block._payloads(i, d) for i in range(n))
            ]
    kinds = np.empty(m, np.int64)
    src = np.zeros(m, np.int64)
    cnt = np.zeros(m, np.int64)
    lits: list[bytes] = [TK.SEQ_LITERALS]
    lit_at = len(TK.SEQ_LITERALS)
    pre = np.zeros((m, 2), np.int64)
    post = np.zeros((m, 2), np.int64)

    def literal(text: str) -> tuple[int, int]:
        nonlocal lit_at
        raw = text.encode("ascii")
        lits.append(raw)
        lit_at += len(raw)
        return lit_at - len(raw), len(raw)

    int_cols: list[np.ndarray] = []
    float_cols: list[np.ndarray] = []
    texts: list[str] = []
    text_lens: list[np.ndarray] = []
    widths = 0  # bound on the value text of a row besides texts and floats
    for j, name in enumerate(names):
        kind = _KINDS[name]
        quoted = json_lines and kind == "str"
        if json_lines:
            pre[j] = literal(("{" if j == 0 else ",") + f'"{name}":' + ('"' if quoted else ""))
            post[j] = literal('"' if quoted else "")
        else:
            pre[j] = literal("" if j == 0 else ",")
            post[j] = literal("")
        v = cols.get(name)
        if name in seq_names:
            kinds[j] = TK.K_SEQ_FIRST if name == "first_pkts" else TK.K_SEQ_LAST
            widths += 40 + L.SEQ_N * (2 + 6 + TK.NS_WIDTH + 1 + 4)
        elif kind == "str" or name in pay_names:
            # lists of str by construction (FlowBlock.column_arrays, payloads above)
            joined = "".join(v)
            special = ('"', "\\") if quoted else () if json_lines else _CSV_SPECIAL
            if any(c in joined for c in special):
                return None
            kinds[j], src[j] = TK.K_TEXT, len(texts)
            texts.append(joined)
            text_lens.append(np.fromiter(map(len, v), np.int64, n))
        elif kind == "int | None":
            kinds[j], src[j] = TK.K_INT_NULL, len(int_cols)
            int_cols.append(np.array([TK.NULL_INT if x is None else x for x in v], np.int64))
            widths += TK.INT_WIDTH
        elif kind == "list[int]" and isinstance(v, np.ndarray) and v.ndim == 2:
            kinds[j], src[j], cnt[j] = TK.K_INTLIST, len(int_cols), v.shape[1]
            int_cols.extend(v[:, q].astype(np.int64) for q in range(v.shape[1]))
            widths += 2 + v.shape[1] * (TK.INT_WIDTH + 1)
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
            widths += TK.NS_WIDTH
        elif isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f":
            kinds[j], src[j] = TK.K_FLOAT, len(float_cols)
            float_cols.append(v)
        else:
            return None
    null_end = np.array(
        [*literal("null" if json_lines else ""), *literal("}\n" if json_lines else "\n")]
    )
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
        values = uniq.view(np.float64)
        # most values are short decimals the kernel writes itself; repr() for the rest
        dmant, dexp = TK.shortest_decimals(values)
        reprs = [
            repr(x) if e < 0 else "" for x, e in zip(values.tolist(), dexp.tolist(), strict=True)
        ]
        dbuf = np.frombuffer("".join(reprs).encode("ascii"), np.uint8)
        dlen = np.fromiter(map(len, reprs), np.int64, len(reprs))
        dstart = np.cumsum(dlen) - dlen
        fidx = np.ascontiguousarray(inv.reshape(len(float_cols), n).T)
        widths += max(int(dlen.max()), TK.DECIMAL_WIDTH) * len(float_cols)
    else:
        dbuf = np.zeros(0, np.uint8)
        dlen = dstart = dmant = dexp = np.zeros(0, np.int64)
        fidx = np.zeros((n, 0), np.int64)
    lit = np.frombuffer(b"".join(lits), np.uint8)
    row_lits = int(pre[:, 1].sum() + post[:, 1].sum()) + int(null_end[1] + null_end[3])
    out = np.empty(tbuf.shape[0] + n * (row_lits + widths), np.uint8)
    size = TK.format_rows(
        kinds,
        src,
        cnt,
        pre,
        post,
        lit,
        null_end,
        ints,
        fidx,
        tstart,
        tlen,
        tbuf,
        dstart,
        dlen,
        dbuf,
        dmant,
        dexp,
        np.ascontiguousarray(block.seqm),
        np.ascontiguousarray(block.seqi),
        np.ascontiguousarray(block.s[:, L.NPK]),
        out,
    )
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
