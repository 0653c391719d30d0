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

from flowdet.flows.record import CSV_FIELDS, RECORD_FIELDS, FlowBlock, FlowRecord

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

    Text is made column by column: each distinct value of a numeric column is formatted once
    (str(int), repr(float), as the csv module does) and the cells are gathered by index, so
    the per-cell cost is a numpy take, not a Python call. The bytes are those csv.writer
    writes; a block with a string that would need quoting goes through csv.writer itself.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._w = csv.writer(out, lineterminator="\n")
        self._w.writerow(CSV_FIELDS)

    def write(self, block: FlowBlock) -> int:
        n = len(block)
        if not n:
            return 0
        cols = block.column_arrays(CSV_FIELDS)
        grid = np.empty((n, len(CSV_FIELDS)), dtype=object)
        last = len(CSV_FIELDS) - 1
        floats = [
            j
            for j, name in enumerate(CSV_FIELDS[:last])
            if isinstance(cols[name], np.ndarray) and cols[name].dtype.kind == "f"
        ]
        if floats:
            # one repr per distinct value over all float columns: start/end times, min/max/
            # mean of short flows and zeros repeat across columns
            bits = np.stack([cols[CSV_FIELDS[j]] for j in floats]).astype(np.float64)
            uniq, inv = np.unique(bits.view(np.int64), return_inverse=True)
            text = np.array([repr(v) + "," for v in uniq.view(np.float64).tolist()], object)
            grid[:, floats] = text[inv.reshape(len(floats), n)].T
        done = set(floats)
        for j, name in enumerate(CSV_FIELDS):
            if j in done:
                continue
            cells = _csv_cells(cols[name], "\n" if j == last else ",")
            if cells is None:  # needs csv quoting: let the csv module do this block
                lists = block.columns(CSV_FIELDS)
                self._w.writerows(zip(*(lists[nm] for nm in CSV_FIELDS), strict=True))
                return n
            grid[:, j] = cells
        self.out.write("".join(grid.ravel().tolist()))
        return n

    def close(self) -> None:
        self.out.flush()


_CSV_SPECIAL = (",", '"', "\r", "\n")


def _csv_cells(values: Any, sep: str) -> Any:
    """Cell texts of one column, each followed by `sep`; None if a string needs quoting."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f":
            # unique on the bit pattern: keeps -0.0 and 0.0 apart, as repr does
            bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
            uniq, inv = np.unique(bits, return_inverse=True)
            text = [repr(v) + sep for v in uniq.view(np.float64).tolist()]
        else:
            uniq, inv = np.unique(values, return_inverse=True)
            text = [str(v) + sep for v in uniq.tolist()]
        return np.array(text, dtype=object)[inv.reshape(-1)]
    if all(isinstance(v, str) for v in values):
        joined = "".join(values)
        if any(c in joined for c in _CSV_SPECIAL):
            return None
        return [v + sep for v in values]
    if any(isinstance(v, str) for v in values):
        return None  # mixed column: not one of ours, let csv.writer decide
    return [sep if v is None else str(v) + sep for v in values]


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
