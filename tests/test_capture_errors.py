"""Unreadable sources raise CaptureError; partly corrupt ones keep what precedes the damage and
say what was lost, never silently."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest
from capture_fab import block, epb, idb, pcap, shb, sll, tcp4_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdet.capture import Status, open_capture
from flowdet.errors import CaptureError, FlowdetError


def read(path: Path):
    with open_capture(path) as r:
        n = sum(len(b) for b in r)
    return n, r.stats


def write(tmp_path: Path, data: bytes, name: str = "x.pcap") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


GOOD = pcap([(i * 1000, tcp4_frame(i)) for i in range(5)])
GOOD_NG = shb() + idb(1) + b"".join(epb(0, i, tcp4_frame(i)) for i in range(5))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty file"),
        (b"hello, this is not a capture at all" * 3, "unknown magic"),
        (GOOD[:10], "pcap file header is truncated"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\xde\xad\xbe\xef" + bytes(16), "byte-order magic"),
        (b"\xa1\xb2\xc3\xd4\x00\x09" + bytes(18), "unsupported pcap version 9"),
        (GOOD[:24] + GOOD[24:40], "truncated record at offset 24"),  # only a partial record
        (GOOD[:24] + struct.pack("<IIII", 0, 0, 10**6, 10**6), "caplen 1000000"),
        (shb() + idb(1) + struct.pack("<II", 6, 13) + bytes(20), "bad length 13"),
        (gzip.compress(b"")[:12], "empty after decompression"),
        (b"\x1f\x8b" + bytes(40), "gzip"),
    ],
)
def test_nothing_readable_raises_one_line_capture_error(tmp_path, data, words):
    path = write(tmp_path, data)
    with pytest.raises(CaptureError) as exc:
        open_capture(path)  # a file is checked at open, before any batch is asked for
    msg = str(exc.value)
    assert str(path) in msg and words in msg and "\n" not in msg
    assert isinstance(exc.value, FlowdetError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError, match="is a directory"):
        open_capture(tmp_path)
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(write(tmp_path, GOOD) / "sub")  # not a directory


def test_truncated_last_record_keeps_the_rest(tmp_path):
    n, st = read(write(tmp_path, GOOD[:-7]))
    assert n == 4 and st.records == 4 and st.lost_records == 1
    assert not st.complete
    assert len(st.warnings) == 1 and st.warnings[0].startswith("truncated record at offset")
    off = len(GOOD) - len(tcp4_frame(4)) - 16
    assert f"offset {off} " in st.warnings[0]


def test_absurd_caplen_in_the_middle_stops_with_a_warning(tmp_path):
    rec = tcp4_frame(0)
    bad = struct.pack("<IIII", 0, 0, 300_000, 300_000)
    data = pcap([(0, rec), (1, rec)]) + bad + bytes(64) + pcap([(2, rec)])[24:]
    n, st = read(write(tmp_path, data))
    assert n == 2 and st.lost_records == 1
    assert any("caplen 300000 > 262144" in w for w in st.warnings)


@pytest.mark.parametrize(
    ("bad_block", "words"),
    [
        (struct.pack("<II", 6, 30) + bytes(22), "bad length 30"),  # not a multiple of 4
        (struct.pack("<II", 6, 8), "bad length 8"),  # shorter than a block header
        (struct.pack("<II", 6, 0x7FFFFFF0) + bytes(100), "bad length"),  # absurd
        (block(6, bytes(40))[:-4] + struct.pack("<I", 99), "mismatched trailing length 99"),
    ],
)
def test_pcapng_bad_block_length_after_packets(tmp_path, bad_block, words):
    data = GOOD_NG + bad_block + epb(0, 9, tcp4_frame(9))
    n, st = read(write(tmp_path, data, "x.pcapng"))
    assert n == 5 and st.lost_records == 1
    assert any(words in w and "stopped" in w for w in st.warnings)


def test_pcapng_caplen_beyond_block_is_counted_and_skipped(tmp_path):
    frame = tcp4_frame(1)
    lying = bytearray(epb(0, 1, frame))
    struct.pack_into("<I", lying, 20, len(frame) + 100)  # caplen beyond the block
    data = shb() + idb(1) + epb(0, 0, tcp4_frame(0)) + bytes(lying) + epb(0, 2, tcp4_frame(2))
    n, st = read(write(tmp_path, data, "x.pcapng"))
    assert n == 2 and st.lost_records == 1
    assert st.blocks["packet_blocks_with_bad_caplen"] == 1
    assert st.warnings


def test_caplen_beyond_end_of_file(tmp_path):
    rec = tcp4_frame(0)
    tail = struct.pack("<IIII", 0, 0, 1000, 1000) + rec  # claims 1000 bytes, has fewer
    n, st = read(write(tmp_path, pcap([(0, rec)]) + tail))
    assert n == 1 and st.lost_records == 1 and "truncated record" in st.warnings[0]


def test_unknown_link_type_in_pcapng_is_counted(tmp_path):
    data = shb() + idb(147) + idb(1) + epb(0, 1, b"\x01" * 30) + epb(1, 2, tcp4_frame())
    n, st = read(write(tmp_path, data, "x.pcapng"))
    assert n == 2
    assert st.status["UNSUPPORTED_LINK"] == 1 and st.status["OK"] == 1
    assert st.unsupported_link_types == [147]


def test_header_only_capture_is_valid_and_empty(tmp_path):
    n, st = read(write(tmp_path, GOOD[:24]))
    assert n == 0 and st.complete and not st.warnings
    n, st = read(write(tmp_path, shb() + idb(1), "e.pcapng"))
    assert n == 0 and st.complete and st.blocks["interface_description_blocks"] == 1


def check_consistent(path: Path) -> None:
    try:
        with open_capture(path) as r:
            n = sum(len(b) for b in r)
    except CaptureError as exc:
        assert "\n" not in str(exc)
        return
    st = r.stats
    assert n == st.records == sum(st.status.values())
    assert set(st.status) == {s.name for s in Status}
    assert st.complete or st.warnings  # anything short of a clean end is explained


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300))
def test_random_files_raise_only_capture_error(tmp_path, data):
    check_consistent(write(tmp_path, data))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.sampled_from([GOOD, GOOD_NG, GOOD_NG + shb(big=True) + idb(1, big=True)]),
    edits=st.lists(st.tuples(st.integers(0, 700), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 700),
    compress=st.booleans(),
)
def test_mutated_captures_raise_only_capture_error(tmp_path, base, edits, cut, compress):
    buf = bytearray(base)
    for pos, val in edits:
        if pos < len(buf):
            buf[pos] = val
    data = bytes(buf[: len(buf) - cut]) if cut < len(buf) else bytes(buf)
    if compress:
        data = gzip.compress(data)
    check_consistent(write(tmp_path, data))


def test_stream_with_nothing_readable_raises_while_iterating():
    """open() must not wait for a pipe's first packet, so the error comes from iteration."""
    r_fd, w_fd = os.pipe()
    os.write(w_fd, GOOD[:24] + GOOD[24:40])
    os.close(w_fd)
    with open(r_fd, "rb", buffering=0) as pipe:
        reader = open_capture(pipe)
        with pytest.raises(CaptureError, match="truncated record at offset 24"):
            list(reader)


def test_probe_at_open_does_not_consume_pcapng_state(tmp_path):
    data = shb() + idb(1) + idb(113) + epb(1, 5, sll(tcp4_frame()[14:]))
    with open_capture(write(tmp_path, data, "p.pcapng")) as r:
        (batch,) = list(r)
    assert r.stats.blocks["interface_description_blocks"] == 2
    assert [i.linktype for i in r.stats.interfaces] == [1, 113]
    assert batch.linktype.tolist() == [113] and batch.status.tolist() == [Status.OK]


def test_permission_denied_is_a_capture_error(tmp_path, monkeypatch):
    """Tests run as root, which ignores file modes, so the OS error is simulated."""
    path = write(tmp_path, GOOD)

    def denied(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("flowdet.capture.stream.open", denied, raising=False)
    with pytest.raises(CaptureError, match=r"x\.pcap: cannot open: Permission denied$"):
        open_capture(path)
