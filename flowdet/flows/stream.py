"""Captures -> flow records: the convenience chain open_capture -> FlowTable.

Each capture gets an empty table (flows never join across files; flow ids keep counting),
so time-shifted or unrelated captures never merge into one flow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flowdet.errors import CaptureError
from flowdet.flows.config import FlowConfig
from flowdet.flows.record import FlowBlock, FlowRecord
from flowdet.flows.table import FlowTable

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz", ".gz")


def expand_sources(sources: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files as given; a folder becomes every capture file under it, recursive and sorted."""
    out: list[str] = []
    for src in sources:
        s = os.fspath(src)
        if s != "-" and os.path.isdir(s):
            found = sorted(
                str(p)
                for p in Path(s).rglob("*")
                if p.is_file() and p.name.lower().endswith(CAPTURE_SUFFIXES)
            )
            if not found:
                raise CaptureError(f"{s}: folder holds no capture files (*.pcap, *.pcapng, *.gz)")
            out.extend(found)
        else:
            out.append(s)
    return out


def iter_flow_blocks(
    sources: Iterable[Any], config: FlowConfig | None = None, table: FlowTable | None = None
) -> Iterator[tuple[Any, FlowBlock]]:
    """(source, block) for each capture in turn; a CaptureError propagates to the caller."""
    from flowdet.capture import open_capture

    table = table or FlowTable(config)
    for src in sources:
        with open_capture(src) as reader:
            for batch in reader:
                blk = table.update(batch)
                if len(blk):
                    yield src, blk
        blk = table.flush()
        if len(blk):
            yield src, blk


def iter_flows(sources: Iterable[Any], config: FlowConfig | None = None) -> Iterator[FlowRecord]:
    """Every flow record of the given captures (files, folders, '-' or file objects)."""
    srcs = [s for s in sources]
    paths = [s for s in srcs if isinstance(s, (str, os.PathLike))]
    if len(paths) == len(srcs):
        srcs = expand_sources(paths)
    for _, blk in iter_flow_blocks(srcs, config):
        yield from blk.records()
