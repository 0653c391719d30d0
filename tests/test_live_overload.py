"""`flowdet live` under overload: packets it could not take are counted and reported.

Real dumpcap on a real veth between two namespaces of our own. Scoring is held (a gate in
the pipeline) while far more packets arrive than the capture path can hold - dumpcap's
1 MiB kernel buffer, the pipe, one queued batch - so the kernel must drop. Nothing here
depends on timing: the drops follow from the sizes, and the checks are exact counts.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from flowdet.interfaces import find_dumpcap
from flowdet.live.dumpcap import DumpcapCapture
from flowdet.live.events import LivePipeline
from flowdet.live.loop import DumpcapSource, LiveLoop, Sinks
from flowdet.live.sinks import JsonlLiveSink

CLASSES = ("benign", "mining", "ssh-tunnel")
FRAMES = 20_000  # of 1,442 bytes: ~28 MB, against < 6 MB of buffers on the capture path

# Sends FRAMES copies of one UDP frame out of an interface (AF_PACKET), in its namespace.
SENDER = r"""
import socket, struct, sys
iface, n = sys.argv[1], int(sys.argv[2])
payload = bytes(1400)
udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                 bytes([10, 99, 0, 1]), bytes([10, 99, 0, 2]))
frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for _ in range(n):
    s.send(frame)
"""


class AllBenign:
    classes = CLASSES
    feature_names = ("pkts",)

    def __init__(self) -> None:
        self.thresholds = {"mining": 0.5, "ssh-tunnel": 0.5}
        self.card = {"name": "all-benign"}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.tile([1.0, 0.0, 0.0], (len(X), 1))


def _featurize(records: Sequence) -> tuple[np.ndarray, list]:
    return np.zeros((len(records), 1)), [None] * len(records)


class HeldPipeline(LivePipeline):
    """Scoring that does not start until the test opens the gate."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__(AllBenign(), featurize=_featurize, source="test")
        self.gate = gate
        self.entered = threading.Event()

    def feed_events(self, batch: object) -> list:
        self.entered.set()
        assert self.gate.wait(120), "the test never opened the gate"
        return super().feed_events(batch)


def _send(ns: str, frames: int) -> None:
    argv = ["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, "vtx", str(frames)]
    subprocess.run(argv, check=True, timeout=120)


def _sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def _counters(ns: str, dev: str) -> dict[str, int]:
    for line in _sh("ip", "netns", "exec", ns, "cat", "/proc/net/dev").splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == dev:
            c = [int(x) for x in rest.split()]
            return {"rx": c[1], "tx": c[9], "tx_drop": c[11]}
    raise AssertionError(f"{dev} not in {ns}")


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    """(tx namespace, rx namespace) joined by vtx <-> vrx; no addresses, IPv6 off."""
    tag = secrets.token_hex(3)
    tx, rx = f"fdov-{tag}-tx", f"fdov-{tag}-rx"
    try:
        for ns in (tx, rx):
            _sh("ip", "netns", "add", ns)
            _sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            _sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        _sh("ip", "link", "add", "vtx", "netns", tx, "type", "veth", "peer", "name", "vrx",
            "netns", rx)  # fmt: skip
        _sh("ip", "-n", tx, "link", "set", "vtx", "up")
        _sh("ip", "-n", rx, "link", "set", "vrx", "up")
        yield tx, rx
    finally:
        for ns in (tx, rx):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)


@pytest.mark.usefixtures("root")
def test_overload_drops_are_counted_and_reported(veth: tuple[str, str], tmp_path: Path) -> None:
    tx, rx = veth
    # dumpcap in the rx namespace: flowdet starts "dumpcap", which is this exec wrapper
    wrapper = tmp_path / "dumpcap-in-ns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {rx} {find_dumpcap()} "$@"\n')
    wrapper.chmod(0o755)
    cap = DumpcapCapture(["vrx"], buffer_mib=1, dumpcap=str(wrapper))
    gate = threading.Event()
    pipe = HeldPipeline(gate)
    err = io.StringIO()
    jsonl = io.StringIO()
    loop = LiveLoop(
        DumpcapSource(cap),
        pipe,
        Sinks([JsonlLiveSink(jsonl)]),
        status_every=0.05,
        stats_every=0.05,
        err=err,
        queue_batches=1,
        linger=0.0,  # scoring holds the first batch as it is
        stop=threading.Event(),
    )
    result: dict = {}

    def run() -> None:
        try:
            result["rc"] = loop.run()
        except BaseException as exc:  # reported by the main thread below
            result["exc"] = exc

    before = _counters(rx, "vrx")
    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while cap.proc is None or not cap._started.is_set():
            assert t.is_alive() and time.monotonic() < deadline, err.getvalue()
            time.sleep(0.02)
        # one frame: scoring takes it and holds; then bursts until the reader is stuck
        # behind the full queue (the pipe, then dumpcap's buffer fill up from there on),
        # then enough frames to overflow every buffer on the capture path
        _send(tx, 1)
        assert pipe.entered.wait(60), "no packet reached the scoring stage"
        sent = 1
        while loop.waiting_since is None:
            assert sent < FRAMES, "the capture reader never waited on scoring"
            _send(tx, 500)
            sent += 500
        _send(tx, FRAMES)
        sent += FRAMES
        # every frame sent is either on vrx or counted as dropped by the veth itself
        while True:
            now, txc = _counters(rx, "vrx"), _counters(tx, "vtx")
            if now["rx"] - before["rx"] + txc["tx_drop"] >= sent:
                break
            assert time.monotonic() < deadline, (now, txc)
            time.sleep(0.05)
        wire = now["rx"] + now["tx"] - before["rx"] - before["tx"]
        assert wire > sent // 2, (wire, txc)
        gate.set()
        # let flowdet drain what the capture path held, then stop (SIGTERM to dumpcap)
        last = -1
        while loop.stats.packets != last or loop.stats.read != loop.stats.packets:
            last = loop.stats.packets
            assert time.monotonic() < deadline + 60, err.getvalue()
            time.sleep(0.5)
        loop.request_stop("test")
        t.join(60)
    finally:
        gate.set()
        loop.request_stop("test")
        t.join(30)
    assert not t.is_alive()
    assert "exc" not in result, result.get("exc")
    assert result["rc"] == 0
    fin = cap.status.final
    assert len(fin) == 1, err.getvalue()
    f = fin[0]
    # every packet on the wire is either received by dumpcap or counted as dropped
    assert f.received + f.dropped == wire, (f, wire)
    assert f.dropped > 0 and f.kernel > 0
    # and flowdet scored every packet dumpcap received: nothing lost silently in between
    assert loop.stats.packets == f.received
    assert loop.source.dropped() == f.dropped
    summary = "\n".join(loop.summary())
    assert f"{f.received:,} received, {f.dropped:,} dropped" in summary
    assert f"WARNING: {f.dropped:,} packets" in summary
    assert "scoring was behind the capture" in summary
    # while it ran, the status lines said that scoring was behind
    assert "BEHIND: the capture waited on scoring" in err.getvalue()
    # and so did the stats records in the JSON lines, where a SIEM reads them: behind while
    # running (dumpcap's drops not known yet), the exact drops in the final record
    stats = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    assert all(r["event_type"] == "stats" for r in stats)  # all benign: no alert records
    *running, final = stats
    assert any(r["behind_share"] > 0 for r in running), running
    assert all(r["dumpcap_dropped"] is None for r in running)
    assert final["stats_event"] == "final"
    assert final["dumpcap_received"] == f.received == final["pkts_read"] == final["pkts_scored"]
    assert final["dumpcap_dropped"] == f.dropped + f.ifdrop > 0
    assert final["dumpcap_interfaces"][0]["kernel"] == f.kernel > 0
    assert final["behind_s"] == pytest.approx(loop.stats.reader_waited, abs=1e-3)
    assert final["behind_s"] > 0
