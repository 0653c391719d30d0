"""One reader for capture files and live streams: bytes in, bounded PacketBatches out.

The reader keeps one fixed buffer, refills it from the source, lets the compiled walker find
the records in it and hands each run of records to the decoder as a batch that owns a copy
of just those bytes. Memory therefore stays bounded by the buffer size whatever the capture
size, and a pipe yields a batch as soon as the bytes that arrived have been decoded.

Problems after the first record never raise: they are written to `stats.warnings` and
counted, and reading stops where Wireshark would stop. A source with nothing readable
raises CaptureError.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from flowdet.capture import walk
from flowdet.capture.batch import PacketBatch, Status
from flowdet.capture.decode import SUPPORTED_LINKTYPES, decode_into
from flowdet.capture.stream import ByteSource
from flowdet.errors import CaptureError

# Bytes kept in the read buffer: one refill reads up to this much, and a batch holds at most
# this many bytes of records. Large enough to amortise system calls and per-batch work, small
# enough to keep the reader's memory flat. The buffer doubles (up to MAX_BUFFER_BYTES) only when
# a single record or block does not fit.
BUFFER_BYTES = 8 * 1024 * 1024
MAX_BUFFER_BYTES = walk.MAX_BLOCK + (1 << 16)
# Longest a refill keeps reading bytes that are already waiting on a stream before decoding.
_COALESCE_SECONDS = 0.02

_PCAP_MAGICS = {
    # first four bytes -> (big-endian, nanosecond, record header length, name)
    b"\xd4\xc3\xb2\xa1": (False, False, 16, "pcap"),
    b"\xa1\xb2\xc3\xd4": (True, False, 16, "pcap"),
    b"\x4d\x3c\xb2\xa1": (False, True, 16, "pcap-ns"),
    b"\xa1\xb2\x3c\x4d": (True, True, 16, "pcap-ns"),
    b"\x34\xcd\xb2\xa1": (False, False, 24, "pcap-kuznetzov"),
    b"\xa1\xb2\xcd\x34": (True, False, 24, "pcap-kuznetzov"),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


@dataclass(slots=True)
class InterfaceInfo:
    """One capture interface; `index` is the value used in PacketBatch.iface."""

    index: int
    section: int
    local_id: int
    linktype: int
    snaplen: int
    ts_resolution: str  # "10^-6", "2^-20", ...
    ts_offset_s: int


@dataclass(slots=True)
class ReadStats:
    """What was read and what could not be, for the run summary and for comparisons."""

    source: str
    format: str = ""  # pcap, pcap-ns, pcapng; "+gzip" when compressed
    records: int = 0  # rows emitted in batches; equals sum(status.values())
    bytes: int = 0  # captured bytes of those records (sum of caplen)
    wire_bytes: int = 0  # their original lengths (sum of wirelen)
    stream_bytes: int = 0  # bytes of the (decompressed) capture consumed
    batches: int = 0
    status: dict[str, int] = field(default_factory=lambda: {s.name: 0 for s in Status})
    link_types: dict[int, int] = field(default_factory=dict)  # link type -> records
    interfaces: list[InterfaceInfo] = field(default_factory=list)
    blocks: dict[str, int] = field(default_factory=dict)  # pcapng block and anomaly counts
    lost_records: int = 0  # packet records present but not emitted (see warnings)
    warnings: list[str] = field(default_factory=list)
    complete: bool = False  # True when the stream ended cleanly at a record boundary

    @property
    def unsupported_link_types(self) -> list[int]:
        return sorted(lt for lt in self.link_types if lt not in SUPPORTED_LINKTYPES)


def _resolution_text(res: int) -> str:
    return f"2^-{res & 0x7F}" if res & 0x80 else f"10^-{res & 0x7F}"


class CaptureReader:
    """Iterate over PacketBatches of a pcap/pcapng(.gz) file, stdin or pipe."""

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, batch_packets: int = 65536):
        if batch_packets < 1:
            raise ValueError("batch_packets must be >= 1")
        self._src = ByteSource(source)
        self.name = self._src.name
        self.stats = ReadStats(source=self.name)
        self._max_n = batch_packets
        self._buf = np.empty(min(BUFFER_BYTES, MAX_BUFFER_BYTES), dtype=np.uint8)
        self._start = 0
        self._end = 0
        self._base = 0  # stream offset of self._buf[0]
        self._eof = False
        self._started = False
        self._closed = False
        # A regular file is mapped: the buffer is the whole file, walked in windows of
        # BUFFER_BYTES (the batches a read buffer of that size gives), pages released behind.
        self._mm = self._src.map_file()
        self._window = self._buf.shape[0]
        self._released = 0
        if self._mm is not None:
            self._buf = np.frombuffer(self._mm, dtype=np.uint8)
            self._end = self._buf.shape[0]
            self._eof = True
        try:
            self._read_header()
            self._probe_first_record()
        except BaseException:
            self._src.close()
            raise

    # -- header -----------------------------------------------------------------------------

    def _fill(self) -> int:
        """Refill the buffer: one read, plus whatever else a stream has ready right now."""
        if self._start > 0:
            rem = self._end - self._start
            self._buf[:rem] = self._buf[self._start : self._end]
            self._base += self._start
            self._start, self._end = 0, rem
        size = self._buf.shape[0]
        if self._end == size and size < MAX_BUFFER_BYTES:
            # One record/block larger than the buffer: the walker accepted its length, so grow.
            grown = np.empty(min(2 * size, MAX_BUFFER_BYTES), dtype=np.uint8)
            grown[: self._end] = self._buf[: self._end]
            self._buf = grown
            size = grown.shape[0]
        if self._end == size:  # cannot happen: the walker bounds records by the buffer cap
            self.stats.warnings.append("record larger than the read buffer; stopped")
            self._eof = True
            return 0
        mv = memoryview(self._buf)
        total = 0
        deadline = time.monotonic() + _COALESCE_SECONDS
        while self._end < size:
            got = self._src.readinto(mv[self._end :])
            if got == 0:
                self._eof = True
                break
            self._end += got
            total += got
            # On a stream, take what is already waiting too, but never hold a batch back
            # for bytes that have not arrived yet, nor for long while they keep arriving.
            if not self._src.more_ready() or time.monotonic() > deadline:
                break
        return total

    def _need(self, n: int) -> bool:
        while self._end - self._start < n and not self._eof:
            self._fill()
        return self._end - self._start >= n

    def _read_header(self) -> None:
        self._need(24)
        head = self._buf[self._start : self._end][:24].tobytes()
        gz = "+gzip" if self._src.compressed else ""
        if not head:
            what = "empty after decompression" if self._src.compressed else "empty file"
            why = f" ({self._src.warnings[0]})" if self._src.warnings else ""
            raise CaptureError(f"{self.name}: {what}, not a capture{why}")
        magic = head[:4]
        if magic in _PCAP_MAGICS:
            big, nano, hdr_len, fmt = _PCAP_MAGICS[magic]
            if len(head) < 24:
                raise CaptureError(
                    f"{self.name}: pcap file header is truncated ({len(head)} bytes)"
                )
            e = ">" if big else "<"
            major, _minor, _tz, _sigfigs, snaplen, lt = struct.unpack(e + "HHiIII", head[4:24])
            if major != 2:
                raise CaptureError(f"{self.name}: unsupported pcap version {major}")
            self._linktype = lt & 0xFFFF
            self._pcap = (big, nano, hdr_len)
            self.stats.format = fmt + gz
            self.stats.interfaces.append(
                InterfaceInfo(0, 0, 0, self._linktype, snaplen, "10^-9" if nano else "10^-6", 0)
            )
            self._start += 24
        elif magic == _PCAPNG_MAGIC:
            if len(head) < 12:
                raise CaptureError(f"{self.name}: pcapng section header is truncated")
            if head[8:12] not in (b"\x1a\x2b\x3c\x4d", b"\x4d\x3c\x2b\x1a"):
                raise CaptureError(
                    f"{self.name}: bad pcapng section header (byte-order magic {head[8:12].hex()})"
                )
            self._pcap = None
            self.stats.format = "pcapng" + gz
            self._state = np.zeros(walk.N_STATE, dtype=np.int64)
            self._if_link = np.zeros(walk.MAX_IFACES, dtype=np.int64)
            self._if_snap = np.zeros(walk.MAX_IFACES, dtype=np.int64)
            self._if_tsres = np.zeros(walk.MAX_IFACES, dtype=np.int64)
            self._if_tsoff = np.zeros(walk.MAX_IFACES, dtype=np.int64)
            self._if_sect = np.zeros(walk.MAX_IFACES, dtype=np.int64)
            self._if_local = np.zeros(walk.MAX_IFACES, dtype=np.int64)
            self._counters = np.zeros(walk.N_COUNTERS, dtype=np.int64)
        else:
            raise CaptureError(
                f"{self.name}: not a pcap or pcapng capture (unknown magic 0x{magic.hex()})"
            )
        self._out_off = np.empty(self._max_n, dtype=np.int64)
        self._out_cap = np.empty(self._max_n, dtype=np.uint32)
        self._out_wire = np.empty(self._max_n, dtype=np.uint32)
        self._out_ts = np.empty(self._max_n, dtype=np.int64)
        self._out_if = np.zeros(self._max_n, dtype=np.uint16)
        self._out_link = np.empty(self._max_n, dtype=np.uint16)

    def _probe_first_record(self) -> None:
        """Raise at open, not mid-iteration, when a file has no readable record at all.

        Only for files (a stream's first packet may be minutes away) and only on the bytes
        already buffered; the walker's state is restored so iteration starts afresh.
        """
        if self._src.is_stream:
            return
        saved = [a.copy() for a in self._ng_arrays()] if self._pcap is None else []
        while True:
            n, pos, code, aux = self._walk(max_n=1, end=self._end)
            for a, b in zip(self._ng_arrays() if saved else [], saved, strict=True):
                a[:] = b
            if n or code != walk.NEED_MORE or self._eof or self._end >= self._buf.shape[0]:
                break
            self._fill()  # a file: reading ahead until its end or a full buffer is harmless
        if n:
            return
        if code not in (walk.FULL, walk.NEED_MORE):
            raise CaptureError(f"{self.name}: {self._framing_problem(code, aux, self._base + pos)}")
        if code == walk.NEED_MORE and self._eof and pos < self._end:
            raise CaptureError(
                f"{self.name}: truncated record at offset {self._base + pos} "
                f"({self._end - pos} bytes left at the end of the capture)"
            )

    def _ng_arrays(self) -> list[np.ndarray]:
        return [
            self._state,
            self._if_link,
            self._if_snap,
            self._if_tsres,
            self._if_tsoff,
            self._if_sect,
            self._if_local,
            self._counters,
        ]

    # -- iteration --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[PacketBatch]:
        if self._started:
            raise RuntimeError("a CaptureReader can be iterated only once")
        self._started = True
        return self._batches()

    def _walk_end(self) -> int:
        """End of the bytes the next walk may use: a window of the mapping, or the buffer's."""
        if self._mm is None:
            return self._end
        return min(self._end, self._start + self._window)

    def _walk(self, max_n: int = 0, end: int = -1) -> tuple[int, int, int, int]:
        max_n = max_n or self._max_n
        if end < 0:
            end = self._walk_end()
        if self._pcap is not None:
            big, nano, hdr_len = self._pcap
            return walk.walk_pcap(
                self._buf,
                self._start,
                end,
                max_n,
                big,
                nano,
                hdr_len,
                self._out_off,
                self._out_cap,
                self._out_wire,
                self._out_ts,
            )
        return walk.walk_pcapng(
            self._buf,
            self._start,
            end,
            max_n,
            self._state,
            self._if_link,
            self._if_snap,
            self._if_tsres,
            self._if_tsoff,
            self._if_sect,
            self._if_local,
            self._counters,
            self._out_off,
            self._out_cap,
            self._out_wire,
            self._out_ts,
            self._out_if,
            self._out_link,
        )

    def _batches(self) -> Iterator[PacketBatch]:
        while not self._closed:
            if self._end > self._start:
                wend = self._walk_end()
                n, pos, code, aux = self._walk(end=wend)
                if n:
                    yield self._make_batch(n, pos)
                    self._release_pages(pos)
                elif self._pcap is None:
                    self._sync_pcapng_stats()
                self._start = pos
                if code == walk.FULL:
                    continue
                if code == walk.NEED_MORE and wend < self._end:
                    # the mapping goes on past this window: next window, grown (as the read
                    # buffer would be) when one record or block does not fit in it
                    if n == 0:
                        self._window = min(2 * self._window, MAX_BUFFER_BYTES)
                    continue
                if code != walk.NEED_MORE:
                    self._stop(self._framing_problem(code, aux, self._base + pos))
                    return
            if self._eof:
                self._finish()
                return
            self._fill()

    def _framing_problem(self, code: int, aux: int, off: int) -> str:
        if code == walk.ERR_CAPLEN:
            return f"record at offset {off} claims caplen {aux} > {walk.MAX_CAPLEN} (corrupt file?)"
        if code == walk.ERR_BLOCK_LEN:
            return f"pcapng block at offset {off} has a bad length {aux}"
        if code == walk.ERR_TRAILER:
            return f"pcapng block at offset {off} has a mismatched trailing length {aux}"
        return f"bad pcapng section header at offset {off}"

    def _stop(self, problem: str) -> None:
        """A framing error: nothing after it can be trusted."""
        self._sync_pcapng_stats()
        self.stats.stream_bytes = self._base + self._start
        if self.stats.records == 0 and self.stats.lost_records == 0:
            raise CaptureError(f"{self.name}: {problem}")
        self.stats.warnings.append(problem + "; stopped")
        self.stats.warnings.extend(self._src.warnings)
        self.stats.lost_records += 1

    def _finish(self) -> None:
        self._sync_pcapng_stats()
        left = self._end - self._start
        self.stats.stream_bytes = self._base + self._start
        self.stats.warnings.extend(self._src.warnings)
        if left:
            off = self._base + self._start
            problem = (
                f"truncated record at offset {off} ({left} bytes left at the end of the "
                "capture); stopped"
            )
            if self.stats.records == 0 and self.stats.lost_records == 0:
                raise CaptureError(f"{self.name}: {problem.removesuffix('; stopped')}")
            self.stats.warnings.append(problem)
            self.stats.lost_records += 1
            self.stats.stream_bytes += left
        else:
            self.stats.complete = not self._src.warnings

    def _sync_pcapng_stats(self) -> None:
        if self._pcap is not None:
            return
        c = self._counters
        st = self.stats
        prev_lost = sum(st.blocks.get(walk.COUNTER_NAMES[i], 0) for i in walk.LOST_PACKET_COUNTERS)
        st.blocks = {name: int(c[i]) for i, name in enumerate(walk.COUNTER_NAMES) if c[i]}
        lost = sum(int(c[i]) for i in walk.LOST_PACKET_COUNTERS)
        st.lost_records += lost - prev_lost
        for i in walk.LOST_PACKET_COUNTERS:
            if c[i] and not any(w.startswith(walk.COUNTER_NAMES[i]) for w in st.warnings):
                st.warnings.append(f"{walk.COUNTER_NAMES[i]}: packet blocks skipped (see counts)")
        total = int(self._state[walk.S_IF_TOTAL])
        while len(st.interfaces) < total:
            k = len(st.interfaces)
            st.interfaces.append(
                InterfaceInfo(
                    k,
                    int(self._if_sect[k]),
                    int(self._if_local[k]),
                    int(self._if_link[k]),
                    int(self._if_snap[k]),
                    _resolution_text(int(self._if_tsres[k])),
                    int(self._if_tsoff[k]),
                )
            )

    def _release_pages(self, upto: int) -> None:
        """Drop the mapped pages before `upto` from this process (they stay in the page
        cache), so resident memory stays about one window whatever the file size. A batch
        still held by the caller keeps working: its pages are mapped in again on access."""
        if self._mm is None:
            return
        stop = upto - upto % mmap.PAGESIZE
        if stop > self._released:
            with contextlib.suppress(OSError, ValueError):
                self._mm.madvise(mmap.MADV_DONTNEED, self._released, stop - self._released)
            self._released = stop

    def _make_batch(self, n: int, pos: int) -> PacketBatch:
        lo = self._start
        # a view of the mapping (private, never written) or a copy out of the read buffer
        data = self._buf[lo:pos] if self._mm is not None else self._buf[lo:pos].copy()
        batch = PacketBatch.empty(n, data=data)
        batch.rec_off[:] = self._out_off[:n]
        batch.rec_off -= lo
        batch.caplen[:] = self._out_cap[:n]
        batch.wirelen[:] = self._out_wire[:n]
        batch.ts_ns[:] = self._out_ts[:n]
        if self._pcap is None:
            batch.iface[:] = self._out_if[:n]
            batch.linktype[:] = self._out_link[:n]
        else:
            batch.linktype[:] = self._linktype
        decode_into(batch)
        st = self.stats
        st.records += n
        st.batches += 1
        st.bytes += int(batch.caplen.sum(dtype=np.int64))
        st.wire_bytes += int(batch.wirelen.sum(dtype=np.int64))
        st.stream_bytes = self._base + pos
        counts = np.bincount(batch.status, minlength=len(Status))
        for s in Status:
            st.status[s.name] += int(counts[s])
        if self._pcap is not None:  # classic pcap: one link type for the whole file
            st.link_types[self._linktype] = st.link_types.get(self._linktype, 0) + n
        else:
            lts, lt_counts = np.unique(batch.linktype, return_counts=True)
            for lt, c in zip(lts.tolist(), lt_counts.tolist(), strict=True):
                st.link_types[lt] = st.link_types.get(lt, 0) + c
        self._sync_pcapng_stats()
        return batch

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        self._src.close()
        if self._mm is not None:
            # batches still in use keep the mapping alive; it goes when the last one does
            with contextlib.suppress(BufferError):
                self._mm.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(
    source: str | os.PathLike[str] | BinaryIO, batch_packets: int = 65536
) -> CaptureReader:
    """Open a pcap/pcapng file (optionally gzip-compressed), "-" for stdin, or a binary stream.

    Raises CaptureError at once when the source cannot be opened or is not a capture.
    """
    return CaptureReader(source, batch_packets=batch_packets)
