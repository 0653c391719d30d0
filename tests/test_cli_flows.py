"""`flowdet flows` as a user runs it: a real subprocess on captures made here."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from flows_synth import P, make_batch, tcp_session, write_pcap

from flowdet.flows import CSV_FIELDS, RECORD_FIELDS, fields_markdown

REPO = Path(__file__).resolve().parent.parent
FLOWDET = str(Path(sys.executable).parent / "flowdet")


def flowdet(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FLOWDET, *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def packets() -> list[P]:
    pk = tcp_session(1.0, "10.0.0.1", 40000, "10.0.0.2", 80, [(100, 1500), (50, 0)])
    pk += [P(1.5 + i, "10.0.0.3", 5353, "10.0.0.4", 53, proto=17, payload=40) for i in range(20)]
    pk += [
        P(2.0, "2001:db8::1", 128, "2001:db8::2", 0, proto=58, payload=16),
        P(2.1, "2001:db8::2", 129, "2001:db8::1", 0, proto=58, payload=16),
    ]
    return sorted(pk, key=lambda p: p.t)


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "made.pcap"
    write_pcap(path, packets())
    return path


def test_docs_field_table_matches_code():
    doc = (REPO / "docs" / "flows.md").read_text()
    begin, end = "<!-- fields:begin -->\n", "<!-- fields:end -->"
    table = doc[doc.index(begin) + len(begin) : doc.index(end)]
    assert table == fields_markdown(), "regenerate: flowdet flows --fields"
    res = flowdet("flows", "--fields")
    assert res.returncode == 0 and res.stdout.decode() == fields_markdown()
    assert all(f"`{name}`" in table for name in RECORD_FIELDS)


def test_jsonl_records_and_summary(capture: Path):
    res = flowdet("flows", "--format", "jsonl", str(capture))
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert [list(r) for r in recs] == [RECORD_FIELDS] * 3
    by_proto = {r["proto"]: r for r in recs}
    tcp = by_proto["TCP"]
    assert (tcp["src_ip"], tcp["dest_port"], tcp["end_reason"]) == ("10.0.0.1", 80, "fin")
    assert (tcp["pkts_toserver"], tcp["pkts_toclient"]) == (6, 3)
    assert tcp["payload_bytes_toclient"] == 1500 and tcp["bytes_toserver"] == 6 * 54 + 150
    assert tcp["first_pkts"]["len"][:5] == [0, 0, 0, 100, 1500]
    assert len(tcp["payload_toserver"]) == 2  # base64 messages
    icmp = by_proto["IPv6-ICMP"]
    assert (icmp["pkts_toserver"], icmp["pkts_toclient"], icmp["icmp_type"]) == (1, 1, 128)
    err = res.stderr.decode()
    assert "1 capture;" in err and "31 packets read, 31 decoded" in err
    assert "non-IP 0" in err and "unattributed fragments 0" in err and "3 flow records" in err
    assert "\r" not in err and "Traceback" not in err


def test_csv_has_scalar_columns_only(capture: Path, tmp_path: Path):
    out = tmp_path / "flows.csv"
    res = flowdet("flows", "-o", str(out), str(capture))  # csv is the default
    assert res.returncode == 0 and res.stdout == b""
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == CSV_FIELDS and "first_pkts" not in rows[0] and len(rows) == 4
    udp = next(dict(zip(rows[0], r, strict=True)) for r in rows[1:] if "UDP" in r)
    assert udp["pkts_toserver"] == "20" and udp["icmp_type"] == ""
    assert float(udp["iat_mean_toserver"]) == 1.0


def test_options_reach_the_table(capture: Path):
    res = flowdet(
        "flows", "--format", "jsonl", "--checkpoints", "4,5s", "--idle-timeout", "3", str(capture)
    )
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.decode().splitlines()]
    cps = sorted(r["checkpoint"] for r in recs if r["end_reason"] == "checkpoint")
    # TCP and UDP reach 4 packets; only UDP is still open 5 s after its start
    assert cps == ["pkts:4", "pkts:4", "secs:5"]
    udp = [r for r in recs if r["proto"] == "UDP" and r["end_reason"] != "checkpoint"]
    assert len(udp) == 1 and udp[0]["pkts_toserver"] == 20  # 1 s gaps < 3 s idle


def test_unreadable_capture_is_one_line_exit_2(tmp_path: Path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all")
    res = flowdet("flows", str(bad))
    err = res.stderr.decode().strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and err[0].startswith("flowdet: ")
    res = flowdet("flows", str(tmp_path / "missing.pcap"))
    assert res.returncode == 2 and "Traceback" not in res.stderr.decode()


def test_bad_capture_among_several_is_reported_and_skipped(capture: Path, tmp_path: Path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\0" * 64)
    res = flowdet("flows", "--format", "jsonl", str(bad), str(capture))
    assert res.returncode == 2
    assert len(res.stdout.decode().splitlines()) == 3  # the good capture's flows
    err = res.stderr.decode()
    assert "bad.pcap" in err and "1 capture (1 unreadable)" in err


def test_folder_is_recursive_and_sorted(tmp_path: Path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    write_pcap(tmp_path / "b" / "c" / "z.pcap", [P(5.0, "10.0.0.9", 1, "10.0.0.8", 2, proto=17)])
    write_pcap(tmp_path / "a.pcap", [P(9.0, "10.0.0.7", 1, "10.0.0.6", 2, proto=17)])
    (tmp_path / "notes.txt").write_text("not a capture")
    res = flowdet("flows", "--format", "jsonl", str(tmp_path))
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert [r["src_ip"] for r in recs] == ["10.0.0.7", "10.0.0.9"]  # a.pcap, then b/c/z.pcap
    assert [r["flow_id"] for r in recs] == [1, 2]
    assert "2 captures;" in res.stderr.decode()


def test_stdin_and_forced_progress_without_tty(capture: Path):
    res = flowdet("flows", "--progress", "-", stdin=capture.read_bytes())
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 4  # csv header + 3
    assert b"\r" not in res.stderr and b"\x1b" not in res.stderr


def test_sinks_write_exactly_the_records():
    """The fast JSONL/CSV writers against json.dumps / str of the dataclass values."""
    from flows_synth import make_batch

    from flowdet.flows import FlowTable
    from flowdet.sinks import CsvFlowSink, JsonlFlowSink

    table = FlowTable()
    pk = [*packets(), P(3.0, "10.0.0.5", 1, "10.0.0.6", 2, proto=17, payload=b'"\\\n\x00')]
    block = table.update(make_batch(sorted(pk, key=lambda p: p.t)))
    block = type(block).concat([block, table.flush()])
    recs = block.records()
    out = io.StringIO()
    JsonlFlowSink(out).write(block)
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert got == [json.loads(json.dumps(r.to_json_dict())) for r in recs]
    out = io.StringIO()
    CsvFlowSink(out).write(block)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    for row, rec in zip(rows, recs, strict=True):
        for name in CSV_FIELDS:
            v = getattr(rec, name)
            assert row[name] == ("" if v is None else str(v)), name
    ref = io.StringIO()
    w = csv.writer(ref, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    w.writerows([[getattr(r, name) for name in CSV_FIELDS] for r in recs])
    assert out.getvalue() == ref.getvalue()  # byte for byte what the csv module writes


def _one_column(kind: int, ints=None, floats=None, decimals: bool = False) -> list[str]:
    """Rows written by the compiled CSV writer for a single column of one kind."""
    import numpy as np

    from flowdet.flows import textkernel as TK

    if floats is not None:
        uniq, inv = np.unique(np.asarray(floats).view(np.int64), return_inverse=True)
        reprs = [repr(v) for v in uniq.view(np.float64).tolist()]
        dbuf = np.frombuffer("".join(reprs).encode(), np.uint8)
        dlen = np.array([len(r) for r in reprs], np.int64)
        dstart = np.cumsum(dlen) - dlen
        fidx = inv.reshape(-1, 1).astype(np.int64)
        ints = np.zeros((len(floats), 0), np.int64)
        if decimals:
            dmant, dexp = TK.shortest_decimals(uniq.view(np.float64))
        else:  # every float as its repr text
            dmant, dexp = np.zeros(len(reprs), np.int64), np.full(len(reprs), -1, np.int64)
    else:
        ints = np.asarray(ints, np.int64).reshape(-1, 1)
        dbuf, dlen, dstart = np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
        dmant = dexp = np.zeros(0, np.int64)
        fidx = np.zeros((ints.shape[0], 0), np.int64)
    n = ints.shape[0]
    empty = np.zeros((n, 0), np.int64)
    out = np.zeros(n * 64, np.uint8)
    size = TK.format_rows(
        np.array([kind], np.int64),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),
        np.zeros((1, 2), np.int64),  # no literal before the value
        np.zeros((1, 2), np.int64),  # nor after it
        np.frombuffer(b"\n", np.uint8),
        np.array([0, 0, 0, 1], np.int64),  # null = "", row end = "\n"
        ints,
        fidx,
        empty,
        empty,
        np.zeros(0, np.uint8),
        dstart,
        dlen,
        dbuf,
        dmant,
        dexp,
        np.zeros((n, 0), np.int32),
        np.zeros((n, 0), np.int64),
        np.zeros(n, np.int64),
        out,
    )
    return out[:size].tobytes().decode().split("\n")[:-1]


def test_compiled_csv_cells_are_those_of_the_csv_module():
    import random

    import numpy as np

    from flowdet.flows import textkernel as TK

    floats = [0.0, -0.0, 1e-05, 1e16, 0.1, 0.1, 2.5, float("nan"), 1785708134.1245298]
    assert _one_column(TK.K_FLOAT, floats=np.array(floats)) == [repr(v) for v in floats]
    # the short decimals the kernel writes itself (shortest_decimals): exactly repr's text
    rng = random.Random(3)
    many = [0.0, -0.0, 1e-4, 9.99e-5, 1e16, 9999999999999998.0, 1 / 3, -4.75, 123.0, 5e-324]
    many += [float("inf"), 1e15 + 0.5, 0.30000000000000004, 1785068717.417952]
    for _ in range(3000):
        many.append(rng.random() * 10 ** rng.randint(-5, 17))
        many.append(round(rng.random() * 10 ** rng.randint(0, 10), rng.randint(0, 9)))
        many.append(rng.randint(0, 2**40) / 1e6)
        many.append(float(np.float64(rng.randint(10**17, 2 * 10**18))) / 1e9)
    _, exp = TK.shortest_decimals(np.array(many))
    assert (exp >= 0).sum() > len(many) // 2  # most are written by the kernel
    assert _one_column(TK.K_FLOAT, floats=np.array(many), decimals=True) == [repr(v) for v in many]
    ints = [3, -1, 3, 0, 2**62, -(2**63) + 1, 2**63 - 1, 10, 99, 100]
    assert _one_column(TK.K_INT, ints=ints) == [str(v) for v in ints]
    assert _one_column(TK.K_INT_NULL, ints=[TK.NULL_INT, 8, 0]) == ["", "8", "0"]
    # nanoseconds: the text of repr(ns / 1e9), exponent form below 1e-4 included
    rng = random.Random(5)
    ns = [0, 1, 9, 10, 12, 100, 12345, 99999, 100000, 100001, 120000, 10**9, 15 * 10**8]
    ns += [10**15 - 1, 999_999_999, 1_000_000_001, 3_600_000_000_000, -1500, -(10**12) - 7]
    for digits in range(1, 16):
        ns += [rng.randrange(10 ** (digits - 1), 10**digits) for _ in range(300)]
        ns += [rng.randrange(1, 10**digits) * 10 ** rng.randrange(0, 16 - digits)]
    ns = [v for v in ns if abs(v) < TK.NS_EXACT_LIMIT]
    assert _one_column(TK.K_NS, ints=ns) == [repr(v / 1e9) for v in ns]


def test_iter_flows_chains_reader_and_table(capture: Path, tmp_path: Path):
    from flowdet.errors import CaptureError
    from flowdet.flows import FlowConfig, iter_flows

    recs = list(iter_flows([capture, capture], FlowConfig()))
    assert len(recs) == 6  # each capture gets its own table: no flow spans the two files
    assert sorted(r.flow_id for r in recs) == [1, 2, 3, 4, 5, 6]
    assert {r.proto for r in recs} == {"TCP", "UDP", "IPv6-ICMP"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="no capture files"):
        list(iter_flows([tmp_path / "empty"]))


def test_csv_fields_do_not_depend_on_payload_capture():
    """CSV runs keep no payload prefixes (a speed-up): every CSV field must be the same."""
    from flowdet.flows import FlowConfig, FlowTable
    from flowdet.sinks import CsvFlowSink

    pkts = tcp_session(0.0, "10.0.0.1", 40000, "10.0.0.2", 443, [(300, 900), (5000, 40)])
    pkts += tcp_session(1.0, "10.0.0.3", 40001, "10.0.0.2", 22, [(2100, 10), (10, 10)] * 3)
    pkts += [P(2.0 + i, "10.0.0.4", 5353, "10.0.0.5", 53, proto=17, payload=i) for i in range(9)]
    texts = []
    for pb in (0, 16, 2048):
        table = FlowTable(FlowConfig(payload_bytes=pb).with_default_checkpoints())
        out = io.StringIO()
        sink = CsvFlowSink(out)
        sink.write(table.update(make_batch(sorted(pkts, key=lambda p: p.t))))
        sink.write(table.flush())
        texts.append(out.getvalue())
    assert texts[0] == texts[1] == texts[2]
    assert len(texts[0].splitlines()) > 4


@pytest.mark.parametrize("gap", [0.25, 1.2e6])  # 1.2e6 s: beyond the exact nanosecond text
def test_sinks_match_the_records_with_long_gaps(gap: float):
    """Gaps of >= 10^15 ns leave the compiled ns formatting (repr() or the per-record path)."""
    from flowdet.flows import FlowConfig, FlowTable
    from flowdet.sinks import CsvFlowSink, JsonlFlowSink

    table = FlowTable(FlowConfig(idle_timeout_other=1e7, active_timeout=1e8))
    pk = [P(1.0 + k * gap, "10.0.0.5", 7, "10.0.0.6", 9, proto=17, payload=k) for k in range(3)]
    pk += [P(2.0, "10.0.0.6", 9, "10.0.0.5", 7, proto=17, payload=b"back")]
    block = table.update(make_batch(sorted(pk, key=lambda p: p.t)))
    block = type(block).concat([block, table.flush()])
    recs = block.records()
    assert recs and max(r.duration for r in recs) >= gap
    out = io.StringIO()
    JsonlFlowSink(out).write(block)
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert got == [json.loads(json.dumps(r.to_json_dict())) for r in recs]
    out = io.StringIO()
    CsvFlowSink(out).write(block)
    ref = io.StringIO()
    w = csv.writer(ref, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    w.writerows([[getattr(r, name) for name in CSV_FIELDS] for r in recs])
    assert out.getvalue() == ref.getvalue()
