"""`flowdet live` without namespaces: replay equals `score`, pacing, stop, errors, sinks.

Every test runs the real command in a subprocess (the real model, dumpcap where a capture
is needed) and checks what it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flowdet.capture import open_capture

REPO = Path(__file__).resolve().parent.parent
FLOWDET = [sys.executable, "-m", "flowdet.cli"]
LIVE_ONLY = ("verdict_stage", "alert_event", "checkpoint", "emitted")


def _mining(corpus: Path) -> Path:
    return corpus / "mining-real" / "cgminer.s0.pcapng"


def _run(args: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLOWDET, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw
    )


def _jsonl(path: Path) -> list[dict]:
    """The flow records of a JSON lines file (live's `stats` records are tested in
    tests/test_live_stats.py)."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in recs if r["event_type"] != "stats"]


def _ts(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _count(path: Path) -> int:
    with open_capture(str(path)) as r:
        return sum(len(b) for b in r)


@pytest.fixture(scope="module")
def replay(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One --read replay and one `score` of the same capture, with per-alert pcaps."""
    tmp = tmp_path_factory.mktemp("live-replay")
    cap = _mining(corpus)
    live = _run(
        [
            "live",
            "--read",
            str(cap),
            "--format",
            "jsonl",
            "-o",
            str(tmp / "live.jsonl"),
            "--alert-pcap",
            str(tmp / "live-pcaps"),
        ]
    )
    score = _run(
        [
            "score",
            str(cap),
            "--format",
            "jsonl",
            "-o",
            str(tmp / "score.jsonl"),
            "--alert-pcap",
            str(tmp / "score-pcaps"),
        ]
    )
    return {"tmp": tmp, "live": live, "score": score}


def test_replay_gives_the_alerts_of_score(replay: dict) -> None:
    live, score, tmp = replay["live"], replay["score"], replay["tmp"]
    assert live.returncode == 0, live.stderr
    assert score.returncode == 1, score.stderr  # score: 1 = alerts found
    lrecs, srecs = _jsonl(tmp / "live.jsonl"), _jsonl(tmp / "score.jsonl")
    assert srecs, "the mining capture must give alerts for this test to mean anything"
    finals = [r for r in lrecs if r["verdict_stage"] == "final" and r["event_type"] == "alert"]

    def strip(r: dict) -> dict:
        return {k: v for k, v in r.items() if k not in LIVE_ONLY}

    key = lambda r: (r["flow_id"], r["segment"])  # noqa: E731
    assert sorted(map(strip, finals), key=key) == sorted(srecs, key=key)
    # every record beyond those is an earlier event of an alerted flow
    for r in lrecs:
        assert set(LIVE_ONLY) <= set(r)
    early = [r for r in lrecs if r["verdict_stage"] == "early"]
    assert early, "cgminer flows are decided at early checkpoints"
    first = {}
    for r in lrecs:
        first.setdefault(r["flow_id"], r)
    for r in early:
        assert r["end_reason"] == "checkpoint"
        assert r["verdict_checkpoint"].startswith(("pkts:", "secs:"))
        assert r["checkpoint"].startswith(("pkts:", "secs:"))
    for r in finals:
        assert r["checkpoint"] is None
    for fid, r in first.items():
        assert r["alert_event"] == "alert", f"flow {fid}: first record is {r['alert_event']}"
    by_flow_final = {r["flow_id"]: r for r in finals}
    for r in early:
        fin = by_flow_final[r["flow_id"]]
        assert fin["alert_event"] == "flow_end"
        assert (
            r["pkts_toserver"] + r["pkts_toclient"] <= fin["pkts_toserver"] + fin["pkts_toclient"]
        )
        assert _ts(r["timestamp"]) <= _ts(fin["end"])
    assert "17 alerts" in live.stderr or "alerts" in live.stderr


def test_replay_alert_pcaps_hold_the_flow(replay: dict) -> None:
    tmp = replay["tmp"]
    lp, sp = tmp / "live-pcaps", tmp / "score-pcaps"
    live_files = {p.name: _count(p) for p in lp.iterdir()}
    score_files = {p.name: _count(p) for p in sp.iterdir()}
    assert live_files and live_files == score_files


def test_realtime_replay_keeps_the_recorded_pace(corpus: Path, tmp_path: Path) -> None:
    speed = 10.0
    out = tmp_path / "rt.jsonl"
    launched = time.time()
    res = _run(
        [
            "live",
            "--read",
            str(_mining(corpus)),
            "--realtime",
            "--speed",
            str(speed),
            "--format",
            "jsonl",
            "-o",
            str(out),
            "--tick",
            "0.1",
        ]
    )
    assert res.returncode == 0, res.stderr
    recs = _jsonl(out)
    alerts = [r for r in recs if r["alert_event"] == "alert"]
    ends = {r["flow_id"]: r for r in recs if r["alert_event"] == "flow_end"}
    assert alerts and ends
    # Records come out in capture-time order of the packets that make them: an alert while
    # its flow is open, its flow_end once the flow's last packet has been handed over.
    for a in alerts:
        if a["verdict_stage"] == "early":
            e = ends[a["flow_id"]]
            assert _ts(a["emitted"]) < _ts(e["emitted"])
    # Pacing: a record is never emitted before its packets were due, counted from the moment
    # the test launched the process (earlier than the replay's start, so a lower bound that
    # late start-up or a late first alert under load cannot break; sleeping is never early).
    t0_cap = min(_ts(r["start"]) for r in recs)
    spans = []
    for e in ends.values():
        if e["end_reason"] in ("fin", "rst"):
            cap_gap = (_ts(e["end"]) - t0_cap) / speed
            spans.append(cap_gap)
            assert _ts(e["emitted"]) - launched >= cap_gap - 0.05, (e["flow_id"], cap_gap)
    # (a replay that ignored the pace would emit everything within its start-up time)
    assert max(spans) > 3.0, f"the capture must hold flows that end seconds later: {spans}"


def test_missing_interface_is_one_line_exit_2() -> None:
    res = _run(["live", "-i", "flowdet-no-such0", "--format", "jsonl"], timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("flowdet: ") and "Traceback" not in res.stderr
    if os.geteuid() == 0:
        assert "flowdet-no-such0" in lines[0]


def test_bad_option_combinations_exit_2(tmp_path: Path) -> None:
    for args in (
        ["live"],
        ["live", "-i", "lo", "--read", "x.pcap"],
        ["live", "--realtime", "-i", "lo"],
        ["live", "--read", str(tmp_path / "none.pcap")],
    ):
        res = _run(args, timeout=60)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)


# -- a real capture on loopback ---------------------------------------------------------------

_SUBSCRIBE = b'{"id": 1, "method": "mining.subscribe", "params": ["cgminer/4.9.0"]}\n'
_AUTH = b'{"id": 2, "method": "mining.authorize", "params": ["wallet.rig1", "x"]}\n'
_SUB_OK = (
    b'{"id":1,"result":[[["mining.set_difficulty","b4b6693b72a50c7116db18d6497cac52"],'
    b'["mining.notify","ae6812eb4cd7735a302a8a9dd95cf71f"]],"08000002",4],"error":null}\n'
)
_AUTH_OK = b'{"id":2,"result":true,"error":null}\n'
_DIFF = b'{"id":null,"method":"mining.set_difficulty","params":[16]}\n'


def _notify(i: int) -> bytes:
    return (
        b'{"id":null,"method":"mining.notify","params":["%x","4d16b6f85af6e2198f44ae2a6de67f78'
        b'487ae5611b77c6c0440b921e00000000","01000000010000000000000000000000000000000000000000'
        b'00000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f0000'
        b'0000",[],"00000002","1c2ac4af","504e86b9",false]}\n' % i
    )


class _Pool:
    """A stratum-speaking server on loopback that keeps its connections open until told."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.release = threading.Event()
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            f = conn.makefile("rb")
            f.readline()
            conn.sendall(_SUB_OK)
            f.readline()
            conn.sendall(_AUTH_OK)
            conn.sendall(_DIFF)
            i = 0
            while not self.release.wait(0.15):
                conn.sendall(_notify(i))
                i += 1


def _miner(port: int, stop: threading.Event) -> None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(_SUBSCRIBE)
        time.sleep(0.05)
        s.sendall(_AUTH)
        n = 0
        s.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                if not s.recv(65536):
                    break
            n += 1
            if n % 3 == 0:
                s.sendall(
                    b'{"id":%d,"method":"mining.submit","params":["wallet.rig1","%x",'
                    b'"00000000","504e86b9","b2957c02"]}\n' % (n + 3, n)
                )
        stop.wait()


def _start_live(args: list[str], tmp: Path) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [*FLOWDET, "live", *args],
        stdout=subprocess.PIPE,
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
    deadline = time.monotonic() + 60
    while not any("capturing on" in ln for ln in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("flowdet live did not start: " + "".join(lines))
        time.sleep(0.05)
    return proc, lines


def _wait_for(path: Path, pred, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            recs = _jsonl(path) if path.read_text().endswith("\n") else []
            if pred(recs):
                return recs
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting on {path}: {path.read_text() if path.exists() else ''}"
    )


@pytest.mark.usefixtures("root")
def test_sigterm_flushes_open_flows_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    pool = _Pool()
    proc, lines = _start_live(
        [
            "-i",
            "lo",
            "--bpf",
            f"tcp port {pool.port}",
            "--format",
            "jsonl",
            "-o",
            str(out),
            "--status-interval",
            "1",
        ],
        tmp_path,
    )
    stop = threading.Event()
    miner = threading.Thread(target=_miner, args=(pool.port, stop), daemon=True)
    miner.start()
    try:
        recs = _wait_for(out, lambda rs: any(r["alert_event"] == "alert" for r in rs))
        # the alert arrived while the miner's connection is still open
        assert miner.is_alive()
        a = next(r for r in recs if r["alert_event"] == "alert")
        assert a["label"] == "mining" and a["verdict_stage"] == "early"
        assert a["dest_port"] == pool.port and a["app_proto"] == "stratum"
        # the status line (every 1 s) counts the open flow's alert
        deadline = time.monotonic() + 30
        while not any("pkt/s" in ln and " 1 alerts" in ln for ln in lines):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        assert miner.is_alive()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        stop.set()
        pool.release.set()
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    assert proc.returncode == 0, "".join(lines)
    recs = _jsonl(out)
    ends = [r for r in recs if r["alert_event"] == "flow_end" and r["flow_id"] == a["flow_id"]]
    assert len(ends) == 1 and ends[0]["end_reason"] == "eof" and ends[0]["verdict_stage"] == "final"
    text = "".join(lines)
    assert "stopped by SIGTERM" in text and "received" in text and "dropped" in text
    assert "Traceback" not in text


@pytest.mark.usefixtures("root")
def test_dumpcap_dying_is_one_line_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    proc, lines = _start_live(["-i", "lo", "--format", "jsonl", "-o", str(out)], tmp_path)
    try:
        started = next(ln for ln in lines if "capturing on" in ln)
        pid = int(started.rsplit("dumpcap pid ", 1)[1].rstrip(")\n"))
        os.kill(pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    assert proc.returncode == 2
    after = [ln for ln in lines if ln is not started]
    assert len(after) == 1 and after[0].startswith("flowdet: live: dumpcap was killed"), lines
    # the JSON lines end with a final stats record that says why it stopped
    last = json.loads(out.read_text().splitlines()[-1])
    assert last["event_type"] == "stats" and last["stats_event"] == "final", last
    assert last["stopped_by"].startswith("error: live: dumpcap was killed"), last


def test_on_alert_gets_json_and_a_hung_command_is_killed(corpus: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    got = tmp_path / "got"
    got.mkdir()
    out = tmp_path / "out.jsonl"
    # The command saves its stdin, then hangs; each must be killed at the 1 s timeout while
    # the replay goes on (the JSON lines are complete regardless of the hung commands).
    dest = f"{got}/$FLOWDET_FLOW_ID-$FLOWDET_ALERT_EVENT"
    # (a command killed at exit may not have read its stdin: only complete copies count)
    cmd = f"echo $$ >> {pids}; cat > {dest}.part && mv {dest}.part {dest}.json; sleep 600"
    res = _run(
        [
            "live",
            "--read",
            str(_mining(corpus)),
            "--format",
            "jsonl",
            "-o",
            str(out),
            "--on-alert",
            cmd,
            "--on-alert-timeout",
            "1",
        ]
    )
    assert res.returncode == 0, res.stderr
    recs = _jsonl(out)
    alerts = [r for r in recs if r["alert_event"] == "alert"]
    assert len(alerts) == 17 and len([r for r in recs if r["alert_event"] == "flow_end"]) == 17
    saved = sorted(got.glob("*.json"))
    assert saved, res.stderr
    for p in saved:
        rec = json.loads(p.read_text())
        assert rec["event_type"] == "alert" and f"{rec['flow_id']}-" in p.name
        assert rec in alerts
    started = [int(x) for x in pids.read_text().split()]
    summary = [ln for ln in res.stderr.splitlines() if "--on-alert:" in ln]
    assert summary, res.stderr
    counts = {
        what: int(m.group(1))
        for what in ("ok", "failed", "killed at the timeout", "not run")
        if (m := re.search(rf"(\d+) {what}", summary[0]))
    }
    # Every alert is accounted for: run (and here always killed) or counted as not run. A
    # command killed at exit may not have got as far as writing its pid, hence >=.
    assert counts["ok"] == counts["failed"] == 0, summary[0]
    assert counts["killed at the timeout"] + counts["not run"] == len(alerts), summary[0]
    assert counts["killed at the timeout"] >= len(started) >= 1, summary[0]
    assert counts["not run"] > 0  # the rest did not wait: counted, not run
    for pid in started:  # the shell and its sleep are gone (killed by process group)
        assert _live_group_members(pid) == [], pid


def _live_group_members(pgid: int) -> list[int]:
    """Processes of a group that still run (zombies left to an init that does not reap
    them are dead)."""
    alive = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(d.name))
    return alive


def test_fields_doc_is_generated() -> None:
    from flowdet.live.events import live_fields_markdown

    doc = (REPO / "docs" / "live.md").read_text()
    assert live_fields_markdown() in doc, "docs/live.md is stale: run `flowdet live --fields`"
