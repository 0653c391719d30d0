"""Container formats: classic pcap, pcapng and gzip, checked field by field."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from capture_fab import (
    block,
    epb,
    eth,
    idb,
    ip4,
    ipv4,
    ipv6,
    opb,
    pcap,
    shb,
    spb,
    tcp,
    tcp4_frame,
    udp,
    v4_lo,
)

from flowdet.capture import PacketBatch, Status, open_capture


def read_all(source, **kw) -> tuple[PacketBatch, object]:
    """All rows of a capture concatenated (tests only; the reader itself never does this)."""
    with open_capture(source, **kw) as r:
        batches = list(r)
        stats = r.stats
    cols = {}
    for name in ("ts_ns", "iface", "caplen", "wirelen", "status", "sport", "dport", "linktype"):
        cols[name] = np.concatenate([getattr(b, name) for b in batches]) if batches else np.zeros(0)
    return cols, stats


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


TS = [1_600_000_000_123_456_789, 1_600_000_001_000_000_001, 1_700_000_000_999_999_999]


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_byte_orders_and_resolutions(tmp_path, big, nano):
    frames = [tcp4_frame(i, b"x" * i) for i in range(3)]
    recs = [(TS[i], frames[i], len(frames[i]) + 100 * i) for i in range(3)]
    path = write(tmp_path, "a.pcap", pcap(recs, big=big, nano=nano))
    cols, st = read_all(path)
    expect_ts = [t if nano else t - t % 1000 for t in TS]
    assert cols["ts_ns"].tolist() == expect_ts
    assert cols["caplen"].tolist() == [len(f) for f in frames]
    assert cols["wirelen"].tolist() == [len(frames[i]) + 100 * i for i in range(3)]
    assert cols["sport"].tolist() == [10000, 10001, 10002]
    assert cols["status"].tolist() == [Status.OK] * 3
    assert st.records == 3 and st.status["OK"] == 3
    assert st.format == ("pcap-ns" if nano else "pcap")
    assert st.link_types == {1: 3}
    assert st.complete and not st.warnings
    assert st.bytes == sum(len(f) for f in frames)


def test_batches_are_bounded_and_own_their_bytes(tmp_path):
    frames = [tcp4_frame(i, bytes([i]) * 10) for i in range(100)]
    path = write(tmp_path, "b.pcap", pcap([(i * 1000, f) for i, f in enumerate(frames)]))
    with open_capture(path, batch_packets=7) as r:
        batches = list(r)
    assert [len(b) for b in batches] == [7] * 14 + [2]
    k = 0
    for b in batches:
        assert b.data.nbytes < 7 * (len(frames[0]) + 16) + 1
        for i in range(len(b)):
            assert b.payload(i) == bytes([k]) * 10
            k += 1


def test_pcapng_sections_interfaces_and_resolutions(tmp_path):
    f4 = eth(ipv4("192.0.2.1", "192.0.2.2", 17, udp(53, 5353, b"q")))
    raw6 = ipv6("2001:db8::1", "2001:db8::2", 17, udp(1, 2, b"zz"))
    data = (
        shb(big=False)
        + idb(1, snaplen=65535)  # default resolution 10^-6
        + idb(101, tsresol=9)  # ns
        + epb(0, 1_600_000_000_123_456, f4)
        + epb(1, 1_600_000_000_123_456_789, raw6)
        + block(0x5, b"\0" * 8)  # interface statistics
        + block(0x12345678, b"junk")  # unknown block type
        # A second section in the other byte order, with its own interface numbering.
        + shb(big=True)
        + idb(1, tsresol=0x80 | 20, big=True)  # 2^-20 s units
        + idb(228, tsresol=3, tsoffset=1_000_000, big=True)  # ms, offset 1e6 s
        + epb(1, 1_600_000_000_250, ipv4("10.1.1.1", "10.2.2.2", 6, tcp(1, 2)), big=True)
        + epb(0, (1_700_000_000 << 20) | (1 << 19), f4, big=True)
        + spb(f4, big=True)  # no timestamp: carries the previous one
        + opb(0, 5 << 20, f4, big=True)
    )
    path = write(tmp_path, "m.pcapng", data)
    cols, st = read_all(path)
    assert cols["ts_ns"].tolist() == [
        1_600_000_000_123_456_000,
        1_600_000_000_123_456_789,
        (1_600_000_000 + 1_000_000) * 10**9 + 250_000_000,
        1_700_000_000_500_000_000,
        1_700_000_000_500_000_000,
        5 * 10**9,
    ]
    assert cols["iface"].tolist() == [0, 1, 3, 2, 2, 2]
    assert cols["linktype"].tolist() == [1, 101, 228, 1, 1, 1]
    assert cols["status"].tolist() == [Status.OK] * 6
    assert cols["sport"].tolist() == [53, 1, 1, 53, 53, 53]
    assert [(i.index, i.section, i.local_id, i.linktype) for i in st.interfaces] == [
        (0, 0, 0, 1),
        (1, 0, 1, 101),
        (2, 1, 0, 1),
        (3, 1, 1, 228),
    ]
    assert [i.ts_resolution for i in st.interfaces] == ["10^-6", "10^-9", "2^-20", "10^-3"]
    assert st.interfaces[3].ts_offset_s == 1_000_000
    assert st.blocks["section_header_blocks"] == 2
    assert st.blocks["unknown_blocks"] == 1
    assert st.blocks["interface_statistics_blocks"] == 1
    assert st.blocks["simple_packet_blocks"] == 1
    assert st.blocks["obsolete_packet_blocks"] == 1
    assert st.records == 6 and st.link_types == {1: 4, 101: 1, 228: 1}


def test_pcapng_packet_on_undefined_interface_is_counted(tmp_path):
    f = tcp4_frame()
    data = shb() + idb(1) + epb(0, 1, f) + epb(5, 2, f) + epb(0, 3, f)
    _cols, st = read_all(write(tmp_path, "u.pcapng", data))
    assert st.records == 2
    assert st.lost_records == 1
    assert st.blocks["packets_on_undefined_interface"] == 1
    assert any("undefined_interface" in w for w in st.warnings)


def test_simple_packet_block_respects_snaplen(tmp_path):
    f = tcp4_frame(payload=b"p" * 100)
    data = shb() + idb(1, snaplen=60) + spb(f[:60], wire=len(f))
    cols, _st = read_all(write(tmp_path, "s.pcapng", data))
    assert cols["caplen"].tolist() == [60]
    assert cols["wirelen"].tolist() == [len(f)]
    assert cols["status"].tolist() == [Status.OK]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_gzip_detected_by_magic_not_name(tmp_path, fmt):
    frames = [tcp4_frame(i) for i in range(50)]
    if fmt == "pcap":
        raw = pcap([(i, f) for i, f in enumerate(frames)])
    else:
        raw = shb() + idb(1) + b"".join(epb(0, i, f) for i, f in enumerate(frames))
    path = write(tmp_path, "no-gz-extension.cap", gzip.compress(raw))
    cols, st = read_all(path)
    assert st.format == fmt + "+gzip"
    assert cols["sport"].tolist() == [10000 + i for i in range(50)]
    assert st.complete and not st.warnings


def test_gzip_multi_member_and_truncated(tmp_path):
    rng = np.random.default_rng(1)
    frames = [tcp4_frame(i, rng.bytes(200)) for i in range(40)]
    raw = pcap([(i, f) for i, f in enumerate(frames)])
    two = gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])
    cols, st = read_all(write(tmp_path, "two.gz", two))
    assert st.records == 40 and st.complete
    assert cols["sport"].tolist() == [10000 + i for i in range(40)]

    cut = gzip.compress(raw)[:-2000]
    _cols, st = read_all(write(tmp_path, "cut.gz", cut))
    assert 0 < st.records < 40
    assert any("gzip" in w for w in st.warnings)
    assert not st.complete


def test_binary_file_object_source():
    raw = pcap([(i, tcp4_frame(i)) for i in range(5)])
    cols, _st = read_all(io.BytesIO(raw))
    assert cols["sport"].tolist() == [10000 + i for i in range(5)]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_records_larger_than_the_buffer_and_many_refills(tmp_path, monkeypatch, fmt):
    from flowdet.capture import reader

    monkeypatch.setattr(reader, "BUFFER_BYTES", 50_000)  # smaller than some records below
    sizes = [60000 if i % 7 == 0 else 100 + i for i in range(300)]
    frames = [
        eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(i, 9, b"B" * n))) for i, n in enumerate(sizes)
    ]
    if fmt == "pcap":
        raw = pcap([(i, f) for i, f in enumerate(frames)])
    else:
        raw = shb() + idb(1) + b"".join(epb(0, i, f) for i, f in enumerate(frames))
    path = write(tmp_path, "big." + fmt, raw)
    with open_capture(path) as r:
        rows = [(int(b.sport[i]), int(b.payload_len[i])) for b in r for i in range(len(b))]
        assert r.stats.batches > 10
    assert rows == list(enumerate(sizes))
    assert r.stats.complete and r.stats.records == 300
    assert r.stats.stream_bytes == path.stat().st_size


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_mapped_file_gives_the_batches_of_the_read_path(tmp_path, monkeypatch, fmt):
    """A file opened by path is mapped; a file object is read. Same batches, same bytes."""
    from flowdet.capture import reader

    monkeypatch.setattr(reader, "BUFFER_BYTES", 50_000)
    sizes = [60000 if i % 11 == 0 else 40 + (i * 37) % 1400 for i in range(400)]
    frames = [
        eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(i, 9, bytes([i % 256]) * n)))
        for i, n in enumerate(sizes)
    ]
    if fmt == "pcap":
        raw = pcap([(i, f) for i, f in enumerate(frames)])
    else:
        raw = shb() + idb(1) + b"".join(epb(0, i, f) for i, f in enumerate(frames))
    path = write(tmp_path, "m." + fmt, raw[:-7])  # truncated last record: same warning too

    def batches(src):
        with open_capture(src) as r:
            assert (r._mm is not None) == isinstance(src, Path)
            got = [(len(b), b.sport.tolist(), [b.payload(i) for i in range(len(b))]) for b in r]
            return got, r.stats.warnings, r.stats.stream_bytes, r.stats.records

    mapped = batches(path)
    with open(path, "rb") as f:
        read = batches(f)
    assert mapped == read
    assert len(mapped[0]) > 10 and mapped[3] == 399
    assert mapped[1] and "truncated record" in mapped[1][0]


def test_ipv4_address_columns_roundtrip(tmp_path):
    f = eth(ipv4("198.51.100.7", "203.0.113.9", 6, tcp(1, 2)))
    with open_capture(write(tmp_path, "a.pcap", pcap([(0, f)]))) as r:
        (b,) = list(r)
    assert int(b.src_lo[0]) == v4_lo("198.51.100.7")
    assert int(b.dst_lo[0]) == v4_lo("203.0.113.9")
    assert int(b.src_hi[0]) == 0
    assert ip4("198.51.100.7") == int(b.src_lo[0] & 0xFFFFFFFF).to_bytes(4, "big")


def test_kuznetzov_pcap_variant(tmp_path):
    """The old modified pcap (magic a1b2cd34) has 24-byte record headers."""
    frames = [tcp4_frame(i) for i in range(3)]
    out = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", 100 + i, 5, len(f), len(f)) + bytes(8) + f
    cols, st = read_all(write(tmp_path, "k.pcap", out))
    assert st.format == "pcap-kuznetzov"
    assert cols["sport"].tolist() == [10000, 10001, 10002]
    assert cols["ts_ns"].tolist() == [(100 + i) * 10**9 + 5000 for i in range(3)]


@pytest.mark.parametrize(
    ("tsresol", "units", "expect_ns"),
    [
        (0x80 | 40, (1_000_000 << 40) | (1 << 39), 1_000_000_500_000_000),
        (12, 1_000_000_123_456_789_012, 1_000_000_123_456_789),
        (10, 17_000_000_001_234_567_891, 1_700_000_000_123_456_789),  # above 2^63 units
        (0x80 | 30, (1_700_000_000 << 30) | (1 << 29), 1_700_000_000_500_000_000),
        (0, 1_700_000_000, 1_700_000_000_000_000_000),
        (0x80 | 0, 42, 42_000_000_000),
    ],
)
def test_pcapng_fine_and_coarse_resolutions(tmp_path, tsresol, units, expect_ns):
    data = shb() + idb(1, tsresol=tsresol) + epb(0, units, tcp4_frame())
    cols, st = read_all(write(tmp_path, "r.pcapng", data))
    assert cols["ts_ns"].tolist() == [expect_ns]
    assert st.records == 1


def test_simple_packet_block_without_interface_is_counted(tmp_path):
    data = shb() + spb(tcp4_frame()) + idb(1) + spb(tcp4_frame())
    cols, st = read_all(write(tmp_path, "s.pcapng", data))
    assert st.records == 1 and st.lost_records == 1
    assert st.blocks["packets_on_undefined_interface"] == 1
    assert cols["sport"].tolist() == [10000]


def test_big_endian_pcapng_from_the_first_section(tmp_path):
    frames = [tcp4_frame(i) for i in range(3)]
    data = shb(big=True) + idb(1, tsresol=9, big=True)
    data += b"".join(epb(0, 10**18 + i, f, big=True) for i, f in enumerate(frames))
    cols, st = read_all(write(tmp_path, "be.pcapng", data))
    assert cols["ts_ns"].tolist() == [10**18, 10**18 + 1, 10**18 + 2]
    assert cols["sport"].tolist() == [10000, 10001, 10002]
    assert st.interfaces[0].ts_resolution == "10^-9" and st.complete
