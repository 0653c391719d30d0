"""One packet batch out of several, so a backlog costs one flow-table and scoring call.

A live pipe hands the reader whatever bytes arrived - a few hundred packets a read at
tens of thousands of packets/s - and the flow table, featurizer and model each cost
much per call and little per extra packet: scored batch by batch, 200-packet batches
cost about four times the CPU per packet of 3,000-packet ones (benchmarks/
live_throughput.py, docs/live.md). Joining packet batches copies only their bytes; the
flow table's output does not depend on where batches are cut (tests/test_live_coalesce.py).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from flowdet.capture.batch import PacketBatch

_COLUMNS = tuple(f.name for f in fields(PacketBatch) if f.name != "data")


def join_batches(batches: list[PacketBatch]) -> PacketBatch:
    """The rows of `batches` in order, in one batch with its own byte buffer.

    Each batch contributes only the byte range its rows point into (batches made by
    `take` share one large buffer, which must not be copied once per batch)."""
    batches = [b for b in batches if len(b)]
    if not batches:
        return PacketBatch.empty()
    if len(batches) == 1:
        return batches[0]
    pieces: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    at = 0
    for b in batches:
        lo = int(b.rec_off.min())
        hi = int((b.rec_off + b.caplen).max())
        pieces.append(b.data[lo:hi])
        offsets.append(b.rec_off - (lo - at))
        at += hi - lo
    cols = {name: np.concatenate([getattr(b, name) for b in batches]) for name in _COLUMNS}
    cols["rec_off"] = np.concatenate(offsets).astype(batches[0].rec_off.dtype, copy=False)
    return PacketBatch(data=np.concatenate(pieces), **cols)
