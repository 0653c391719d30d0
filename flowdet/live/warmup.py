"""Warm the scoring chain up before the capture starts.

The decoder and the flow table are compiled with numba on first use (from its on-disk cache
when that is current, else from scratch: tens of seconds on a busy 2-core machine), and the
first model call loads lazily too. Offline that only delays the first batch; live it would
delay the first alerts by as much, while packets pile up in the pipe. So a few synthetic
packets - one TCP connection with payload both ways - go through a throwaway pipeline
before dumpcap is started.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from flowdet.alerts import PcapngWriter

_LINKTYPE_ETHERNET = 1


def _frame(
    src: int, dst: int, sport: int, dport: int, flags: int, seq: int, payload: bytes
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    return eth + ip + tcp


def synthetic_capture(packets: int = 40) -> bytes:
    """A pcapng of one TCP connection (handshake, JSON lines both ways, FIN), in memory."""
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    c, s = 0xC0000201, 0xC6336401  # 192.0.2.1 -> 198.51.100.1 (documentation ranges)
    t = 1_700_000_000_000_000_000
    step = 50_000_000
    seq = [(c, s, 40000, 8080, 0x02, b""), (s, c, 8080, 40000, 0x12, b""),
           (c, s, 40000, 8080, 0x10, b"")]  # fmt: skip
    for i in range(packets):
        body = b'{"id":%d,"method":"ping","params":[]}\n' % i
        if i % 2:
            seq.append((s, c, 8080, 40000, 0x18, body))
        else:
            seq.append((c, s, 40000, 8080, 0x18, body))
    seq += [(c, s, 40000, 8080, 0x11, b""), (s, c, 8080, 40000, 0x11, b"")]
    for i, (a, b, sp, dp, fl, pl) in enumerate(seq):
        data = _frame(a, b, sp, dp, fl, 1000 + i, pl)
        w.write(_LINKTYPE_ETHERNET, t + i * step, data, len(data))
    return buf.getvalue()


def warm_up(detector: Any, thresholds: dict[str, float] | None = None) -> None:
    """Decode, flow, featurize, score and explain one synthetic connection; discard it."""
    from flowdet.capture import open_capture
    from flowdet.live.events import LivePipeline

    pipe = LivePipeline(detector, thresholds=thresholds, source="warm-up")
    with open_capture(io.BytesIO(synthetic_capture())) as reader:
        for batch in reader:
            pipe.feed_events(batch)
    pipe.advance_events(1_800_000_000_000_000_000)
    pipe.flush_events()
