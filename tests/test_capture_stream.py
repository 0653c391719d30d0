"""Pipes, stdin and live dumpcap: batches must come out as data arrives, not when a batch fills
or the writer closes."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from capture_fab import epb, idb, pcap, shb, tcp4_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdet.capture import open_capture

REPO = Path(__file__).resolve().parent.parent


class SlowWriter(threading.Thread):
    """Writes a first part, then holds the rest back until released (or a safety timeout)."""

    def __init__(self, fd: int, first: bytes, rest: bytes) -> None:
        super().__init__(daemon=True)
        self.fd, self.first, self.rest = fd, first, rest
        self.release = threading.Event()
        self.released_by_reader = False
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            for i in range(0, len(self.first), 97):  # dribble, like a live capture
                os.write(self.fd, self.first[i : i + 97])
            self.released_by_reader = self.release.wait(timeout=20)
            os.write(self.fd, self.rest)
        finally:
            os.close(self.fd)
            self.finished.set()


@pytest.mark.parametrize("fmt", ["pcapng", "pcap", "pcapng-gzip"])
def test_pipe_yields_first_batch_before_the_writer_finishes(fmt):
    frames = [tcp4_frame(i) for i in range(20)]
    if fmt == "pcap":
        whole = pcap([(i, f) for i, f in enumerate(frames)])
        split = 24 + 5 * (16 + len(frames[0]))
    else:
        head = shb() + idb(1)
        blocks = [epb(0, i, f) for i, f in enumerate(frames)]
        whole = head + b"".join(blocks)
        split = len(head) + sum(len(b) for b in blocks[:5])
    first, rest = whole[:split], whole[split:]
    if fmt.endswith("gzip"):
        comp = zlib.compressobj(wbits=31)
        first = comp.compress(first) + comp.flush(zlib.Z_SYNC_FLUSH)
        rest = comp.compress(rest) + comp.flush()
    r_fd, w_fd = os.pipe()
    writer = SlowWriter(w_fd, first, rest)
    writer.start()
    seen = 0
    seen_at_release = -1
    with open(r_fd, "rb", buffering=0) as pipe, open_capture(pipe) as reader:
        for batch in reader:
            seen += len(batch)
            if seen >= 5 and seen_at_release < 0:
                # Everything written so far is decoded while the writer still holds back.
                assert not writer.finished.is_set()
                seen_at_release = seen
                writer.release.set()
    writer.join()
    assert writer.released_by_reader, "the reader waited for more data before yielding"
    assert seen_at_release == 5 and seen == 20
    assert reader.stats.records == 20 and reader.stats.complete


def test_stdin_dash(tmp_path):
    raw = gzip.compress(pcap([(i, tcp4_frame(i)) for i in range(30)]))
    code = (
        "from flowdet.capture import open_capture\n"
        "r = open_capture('-')\n"
        "print(sum(len(b) for b in r), r.stats.format, r.stats.status['OK'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=raw, capture_output=True, check=True, cwd=REPO
    )
    assert out.stdout.split() == [b"30", b"pcap+gzip", b"30"]


def test_buffered_pipe_from_subprocess(tmp_path):
    path = tmp_path / "c.pcapng"
    path.write_bytes(shb() + idb(1) + b"".join(epb(0, i, tcp4_frame(i)) for i in range(50)))
    proc = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
    try:
        with open_capture(proc.stdout) as reader:
            sports = [int(s) for b in reader for s in b.sport]
    finally:
        proc.wait(timeout=10)
    assert sports == [10000 + i for i in range(50)]


@pytest.mark.slow
def test_live_dumpcap_pcapng_stream_on_loopback(root):
    dumpcap = shutil.which("dumpcap")
    if dumpcap is None:
        pytest.skip("dumpcap is not installed (Debian package wireshark-common)")
    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.bind(("127.0.0.1", 0))
    port = recv.getsockname()[1]
    proc = subprocess.Popen(
        [dumpcap, "-q", "-i", "lo", "-f", f"udp port {port}", "-c", "6", "-w", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop = threading.Event()

    def pump() -> None:  # dumpcap needs a moment to start capturing: keep sending until done
        i = 0
        while not stop.wait(0.05):
            send.sendto(b"flowdet-live-%d" % i, ("127.0.0.1", port))
            i += 1

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        with open_capture(proc.stdout) as reader:
            rows = [(int(b.sport[i]), int(b.dport[i])) for b in reader for i in range(len(b))]
            stats = reader.stats
        proc.wait(timeout=30)
    finally:
        stop.set()
        t.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        send.close()
        recv.close()
    assert stats.format == "pcapng" and stats.records == 6
    assert all(d == port for _, d in rows) and len(rows) == 6
    assert stats.interfaces[0].linktype == 1  # Linux loopback is Ethernet-framed


def test_non_blocking_pipe_is_waited_on_not_taken_for_the_end():
    raw = pcap([(i, tcp4_frame(i)) for i in range(10)])
    r_fd, w_fd = os.pipe()
    os.set_blocking(r_fd, False)
    writer = SlowWriter(w_fd, raw[:100], raw[100:])
    writer.start()
    with open(r_fd, "rb", buffering=0) as pipe, open_capture(pipe) as reader:
        n = 0
        for batch in reader:
            n += len(batch)
            writer.release.set()
        writer.release.set()
    writer.join()
    assert n == 10 and reader.stats.complete


class Dribble:
    """A binary stream that hands out its bytes in the given chunk sizes, like a slow pipe."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.pos, self.sizes, self.k = data, 0, sizes, 0

    def readinto(self, mv: memoryview) -> int:
        size = self.sizes[self.k % len(self.sizes)]
        self.k += 1
        chunk = self.data[self.pos : self.pos + min(size, len(mv))]
        mv[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def _rows(source) -> tuple[list[tuple[int, ...]], object]:
    with open_capture(source, batch_packets=3) as reader:
        rows = [
            (int(b.ts_ns[i]), int(b.iface[i]), int(b.sport[i]), int(b.status[i]), b.payload(i))
            for b in reader
            for i in range(len(b))
        ]
    return rows, reader.stats


MULTI = (
    shb()
    + idb(1)
    + b"".join(epb(0, i, tcp4_frame(i, bytes([i]) * i)) for i in range(12))
    + shb(big=True)
    + idb(1, tsresol=9, big=True)
    + b"".join(epb(0, 10**18 + i, tcp4_frame(100 + i), big=True) for i in range(7))
)


PLAIN = pcap([(i * 7, tcp4_frame(i, b"z" * i)) for i in range(15)])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=20),
    fmt=st.sampled_from(["pcapng", "pcap", "gzip"]),
)
def test_any_split_of_the_stream_gives_the_same_packets(sizes, fmt):
    raw = PLAIN if fmt == "pcap" else MULTI
    data = gzip.compress(raw) if fmt == "gzip" else raw
    whole, _ = _rows(io.BytesIO(data))
    split, stats = _rows(Dribble(data, sizes))
    assert split == whole and len(whole) in (15, 19)
    assert stats.complete
