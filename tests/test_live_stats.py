"""`stats` records of `flowdet live --format jsonl`: schema, counters that add up, the final
record equal to the stderr summary, interval records, and dumpcap's counts on loopback.

Every run is the real command in a subprocess on a committed capture (pcaps/) or on lo.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from flowdet.capture import open_capture
from flowdet.live.stats import SKIP_REASONS, STATS_FIELDS

REPO = Path(__file__).resolve().parent.parent
FLOWDET = [sys.executable, "-m", "flowdet.cli"]
MINING = REPO / "pcaps" / "mining-stratum1-tcp-2026.pcapng"  # 64 packets over 142 s
WEB = REPO / "pcaps" / "benign-web-https-2026.pcapng"  # 3,895 packets
JSON_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "object": dict,
    "array": list,
    "null": type(None),
}
CAPTURE_NULL_ON_READ = (
    "dumpcap_captured",
    "dumpcap_unscored",
    "dumpcap_received",
    "dumpcap_dropped",
    "dumpcap_interfaces",
    "if_rx_packets",
    "if_rx_dropped",
    "behind_s",
    "behind_share",
)
# the counters that only grow from one stats record to the next
TOTALS = (
    "pkts_read",
    "pkts_decoded",
    "pkts_scored",
    "flows_ended",
    "records_scored",
    "records_written",
    "alerts",
    "alert_updates",
    "flow_ends",
)


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLOWDET, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _packets(path: Path) -> int:
    with open_capture(str(path)) as r:
        return sum(len(b) for b in r)


def _check_schema(rec: dict) -> None:
    assert list(rec) == [f.name for f in STATS_FIELDS], rec
    for f in STATS_FIELDS:
        types = tuple(JSON_TYPES[t] for t in f.type.split("|"))
        v = rec[f.name]
        assert isinstance(v, types), (f.name, f.type, v)
        assert not isinstance(v, bool), (f.name, v)  # JSON true/false is no count
    assert rec["event_type"] == "stats"
    assert rec["stats_event"] in ("interval", "final")
    assert set(rec["pkts_skipped"]) == set(SKIP_REASONS)
    assert all(isinstance(n, int) and n >= 0 for n in rec["pkts_skipped"].values())


def _check_adds_up(rec: dict) -> None:
    skipped = sum(rec["pkts_skipped"].values())
    assert rec["pkts_read"] == rec["pkts_decoded"] + skipped, rec
    assert rec["pkts_read"] == rec["pkts_scored"] + rec["pkts_queued"], rec
    assert 0 <= rec["pkts_fragments"] <= rec["pkts_decoded"], rec
    assert rec["pkts_queued"] >= 0 and rec["flows_open"] >= 0, rec
    assert rec["alerts"] == sum(rec["alerts_by_label"].values()), rec
    assert rec["records_written"] == rec["alerts"] + rec["alert_updates"] + rec["flow_ends"]


def _summary(stderr: str) -> dict:
    """The numbers of the closing summary on stderr."""
    m = re.search(
        r"flowdet live: ([\d,]+) packets in [\d.]+ s, ([\d,]+) flows ended, ([\d,]+) records "
        r"scored; ([\d,]+) alerts(?: \(final: ([^)]*)\))?, ([\d,]+) updates, ([\d,]+) flow "
        r"ends; stopped by (.+)",
        stderr,
    )
    assert m, stderr
    num = lambda s: int(s.replace(",", ""))  # noqa: E731
    final = {}
    for part in filter(None, (m.group(5) or "").split(", ")):
        label, n = part.rsplit(" ", 1)
        final[label] = num(n)
    bad = re.search(r"flowdet live: ([\d,]+) packets not decoded", stderr)
    return {
        "pkts_scored": num(m.group(1)),
        "flows_ended": num(m.group(2)),
        "records_scored": num(m.group(3)),
        "alerts": num(m.group(4)),
        "final_alerts_by_label": final,
        "alert_updates": num(m.group(6)),
        "flow_ends": num(m.group(7)),
        "stopped_by": m.group(8).strip(),
        "not_decoded": num(bad.group(1)) if bad else 0,
    }


def _check_final_matches_summary(final: dict, stderr: str) -> None:
    s = _summary(stderr)
    for k in (
        "pkts_scored",
        "flows_ended",
        "records_scored",
        "alerts",
        "alert_updates",
        "flow_ends",
        "final_alerts_by_label",
        "stopped_by",
    ):
        assert final[k] == s[k], (k, final[k], s[k])
    assert sum(final["pkts_skipped"].values()) == s["not_decoded"]


def _check_stream(recs: list[dict]) -> tuple[list[dict], list[dict], dict]:
    """Stats records of a finished run: schema, sums, growth, one final record at the end,
    whose alert counts are those of the records in the stream."""
    stats = [r for r in recs if r["event_type"] == "stats"]
    flows = [r for r in recs if r["event_type"] != "stats"]
    for r in stats:
        _check_schema(r)
        _check_adds_up(r)
    assert recs[-1]["event_type"] == "stats" and recs[-1]["stats_event"] == "final"
    assert [r["stats_event"] for r in stats].count("final") == 1
    for a, b in itertools.pairwise(stats):
        for k in TOTALS:
            assert a[k] <= b[k], (k, a, b)
        assert a["uptime"] <= b["uptime"]
    final = stats[-1]
    assert final["pkts_queued"] == 0 and final["flows_open"] == 0
    events = Counter(r["alert_event"] for r in flows)
    assert final["alerts"] == events["alert"]
    assert final["alert_updates"] == events["alert_update"]
    assert final["flow_ends"] == events["flow_end"]
    assert final["records_written"] == len(flows)
    labels = Counter(r["label"] for r in flows if r["alert_event"] == "alert")
    assert final["alerts_by_label"] == dict(labels)
    # interval records only count what had been written before them
    for i, r in enumerate(recs):
        if r["event_type"] == "stats" and r["stats_event"] == "interval":
            assert r["records_written"] == sum(1 for x in recs[:i] if x["event_type"] != "stats")
    return stats, flows, final


def test_fields_doc_is_generated() -> None:
    from flowdet.live.stats import stats_fields_markdown

    doc = (REPO / "docs" / "live.md").read_text()
    assert stats_fields_markdown() in doc, "docs/live.md is stale: run `flowdet live --fields`"
    res = _run(["live", "--fields"], timeout=60)
    assert res.returncode == 0 and stats_fields_markdown() in res.stdout


@pytest.fixture(scope="module")
def realtime(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The mining capture at 50x its pace (~3 s) with a stats record every 0.5 s."""
    out = tmp_path_factory.mktemp("live-stats") / "rt.jsonl"
    res = _run(
        [
            "live",
            "--read",
            str(MINING),
            "--realtime",
            "--speed",
            "50",
            "--tick",
            "0.1",
            "--stats-interval",
            "0.5",
            "--format",
            "jsonl",
            "-o",
            str(out),
        ]
    )
    assert res.returncode == 0, res.stderr
    return {"recs": _lines(out), "stderr": res.stderr}


def test_interval_records_while_replaying(realtime: dict) -> None:
    recs = realtime["recs"]
    stats, flows, final = _check_stream(recs)
    interval = [r for r in stats if r["stats_event"] == "interval"]
    assert len(interval) >= 2, stats
    assert any(r["event_type"] == "alert" for r in flows), "the capture must alert"
    # the replay was in progress at the first interval record: counters grow afterwards
    assert interval[0]["pkts_read"] < final["pkts_read"]
    for r in interval:
        assert r["stopped_by"] is None
    for k in CAPTURE_NULL_ON_READ:  # a file has no dumpcap, interface or overload
        assert all(r[k] is None for r in stats), k
    assert final["pcap_filename"] == MINING.name == flows[0]["pcap_filename"]


def test_final_record_is_the_summary(realtime: dict) -> None:
    final = realtime["recs"][-1]
    assert final["pkts_read"] == final["pkts_scored"] == _packets(MINING)
    assert final["stopped_by"] == "end of input"
    _check_final_matches_summary(final, realtime["stderr"])


def test_full_speed_read_with_interval_0_has_only_the_final_record(tmp_path: Path) -> None:
    out = tmp_path / "web.jsonl"
    res = _run(
        ["live", "--read", str(WEB), "--stats-interval", "0", "--format", "jsonl", "-o", str(out)]
    )
    assert res.returncode == 0, res.stderr
    recs = _lines(out)
    stats, _, final = _check_stream(recs)
    assert len(stats) == 1 and final["stats_event"] == "final"
    assert final["pkts_read"] == _packets(WEB) > 1000
    assert final["flows_ended"] > 0 and final["records_scored"] >= final["flows_ended"]
    _check_final_matches_summary(final, res.stderr)


def test_table_format_writes_no_stats(tmp_path: Path) -> None:
    res = _run(["live", "--read", str(MINING), "--stats-interval", "0.1"])
    assert res.returncode == 0, res.stderr
    assert "ALERT" in res.stdout  # the table lines are there ...
    assert "stats" not in res.stdout and "{" not in res.stdout  # ... and nothing else


# -- on lo with dumpcap ---------------------------------------------------------------------


def _start_live(args: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [*FLOWDET, "live", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 90
    while not any("capturing on" in ln for ln in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("flowdet live did not start: " + "".join(lines))
        time.sleep(0.05)
    return proc, lines


def _complete(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text = path.read_text()
    return _lines(path) if text.endswith("\n") else _lines_upto_last_newline(text)


def _lines_upto_last_newline(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text[: text.rfind("\n") + 1].splitlines() if ln.strip()]


@pytest.mark.usefixtures("root")
def test_dumpcap_counts_on_loopback(tmp_path: Path) -> None:
    """UDP packets to a closed port on lo: interval records count them while dumpcap runs
    (dumpcap's received/dropped still null), the final one has dumpcap's final counts,
    equal to the summary's, and flowdet read every packet dumpcap received."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never read: no ICMP, the packets stay ours
        out = tmp_path / "lo.jsonl"
        proc, lines = _start_live(
            [
                "-i",
                "lo",
                "--bpf",
                f"udp dst port {port}",
                "--format",
                "jsonl",
                "-o",
                str(out),
                "--stats-interval",
                "0.3",
                "--status-interval",
                "0",
            ]
        )
        sent = 50
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(sent):
                    s.sendto(b"flowdet stats test %d" % i, ("127.0.0.1", port))
            deadline = time.monotonic() + 60
            while True:
                recs = _complete(out)
                seen = [r for r in recs if r["event_type"] == "stats" and r["pkts_read"] >= sent]
                if seen:
                    break
                assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
                time.sleep(0.1)
            running = seen[0]
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    time.sleep(0.2)  # the stderr pump reads the last lines
    stderr = "".join(lines)
    assert proc.returncode == 0, stderr
    _check_schema(running)
    _check_adds_up(running)
    assert running["stats_event"] == "interval" and running["pcap_filename"] == "live:lo"
    assert running["dumpcap_received"] is None and running["dumpcap_dropped"] is None
    assert running["dumpcap_interfaces"] is None
    assert isinstance(running["dumpcap_captured"], int)
    assert running["if_rx_packets"] is not None and running["if_rx_packets"] >= sent
    assert running["behind_s"] is not None and running["behind_s"] >= 0
    assert 0 <= running["behind_share"] <= 1

    recs = _lines(out)
    _, _, final = _check_stream(recs)
    assert final["stopped_by"] == "SIGTERM"
    _check_final_matches_summary(final, stderr)
    # dumpcap names it "Loopback: lo"
    m = re.search(r"dumpcap (.*lo): ([\d,]+) received, ([\d,]+) dropped", stderr)
    assert m, stderr
    received = int(m.group(2).replace(",", ""))
    assert final["dumpcap_received"] == received >= sent
    (iface,) = final["dumpcap_interfaces"]
    assert iface["iface"] == m.group(1) and iface["received"] == received
    assert iface["dropped"] == int(m.group(3).replace(",", ""))
    assert final["dumpcap_dropped"] == iface["dropped"] + iface["ifdrop"]
    if final["dumpcap_dropped"]:
        assert f"WARNING: {final['dumpcap_dropped']:,} packets" in stderr
    else:
        assert "WARNING" not in stderr
    # flowdet read and scored every packet dumpcap received, and only those (the filter)
    assert final["pkts_read"] == final["pkts_scored"] == received
    assert final["pkts_decoded"] == received
