"""`flowdet explain`: a flow dissected by the real tshark (through pyshark) beside flowdet's
verdict; checked on real captures of the shared corpus."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from score_fakes import FakeDetector, fake_featurize

from flowdet.errors import FlowdetError
from flowdet.explain import describe_json, dissect, explain_flow, find_flow, json_messages

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def detector() -> FakeDetector:
    return FakeDetector()


def _explain(path: Path, detector, **kw) -> str:
    out = io.StringIO()
    rc = explain_flow(str(path), detector=detector, featurize=fake_featurize, out=out, **kw)
    assert rc == 0
    return out.getvalue()


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    out = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        out.append(line.strip().removeprefix("- "))
    return out


def test_stratum_methods_and_worker_from_wireshark(corpus, tshark, detector):
    text = _explain(corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng", detector, flow_id=1)
    ws = _section(text, "Wireshark evidence")
    assert 'client JSON-RPC method mining.subscribe (agent "equihashminer")' in ws
    assert 'client JSON-RPC method mining.authorize (worker "kvetak.worker1")' in ws
    assert any(line.startswith("server JSON-RPC method mining.notify (job ") for line in ws)
    # the verdict and flowdet's own evidence stand beside it
    assert "MINING  score" in text and "flowdet payload evidence:" in text
    flt = _section(text, "Wireshark (")[0]
    assert "tcp.port==55566" in flt and "tcp.port==2142" in flt


def test_monero_login_is_masked(corpus, tshark, detector):
    text = _explain(corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng", detector, flow_id=1)
    ws = _section(text, "Wireshark evidence")
    login = [line for line in ws if "method login" in line]
    assert login and 'agent "xmr/1.0"' in login[0]
    m = re.search(r'login "([^"]+)"', login[0])
    assert m and "…" in m.group(1) and len(m.group(1)) < 40  # wallet address shortened


def _flows(path: Path) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "flowdet.cli", "flows", str(path), "--format", "jsonl"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_ssh_versions_and_hassh_match_flowdet(corpus, tshark, detector):
    path = corpus / "zeek-traces" / "ssh__single-conn.pcap"
    flow = max(_flows(path), key=lambda r: r["pkts_toserver"] + r["pkts_toclient"])
    text = _explain(path, detector, community_id=flow["community_id"])
    ws = _section(text, "Wireshark evidence")
    ours = _section(text, "flowdet payload evidence")
    banners = [line for line in ws if "SSH banner" in line]
    assert "client SSH banner SSH-2.0-OpenSSH_3.8.1p1" in banners
    assert "server SSH banner SSH-1.99-OpenSSH_3.9p1" in banners
    # Wireshark's HASSH and flowdet's are computed independently: they must agree
    ws_hassh = re.search(r"HASSH ([0-9a-f]{32})", " ".join(ws))
    our_hassh = re.search(r"hassh ([0-9a-f]{32})", " ".join(ours))
    assert ws_hassh and our_hassh and ws_hassh.group(1) == our_hassh.group(1)
    assert any("ciphers c2s" in line and "aes128-cbc" in line for line in ws)


def test_packet_limit_and_directions(corpus, tshark, detector):
    path = corpus / "zeek-traces" / "ssh__single-conn.pcap"
    text = _explain(path, detector, flow_id=1, packets=5)
    pk = [line for line in text.splitlines() if re.match(r"\s+\d+\s+\d+\.\d+\s+[CS]->", line)]
    assert len(pk) == 5
    assert "first 5 packets:" in text
    assert [line.split()[2] for line in pk[:3]] == ["C->S", "S->C", "C->S"]  # SYN, SYN-ACK, ACK


def test_unknown_flow_is_an_error(corpus, detector):
    path = corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng"
    with pytest.raises(FlowdetError, match="no flow with flow id 999"):
        _explain(path, detector, flow_id=999)
    with pytest.raises(FlowdetError, match="no flow with community id"):
        _explain(path, detector, community_id="1:AAAAAAAAAAAAAAAAAAAAAAAAAAA=")


def test_dissection_is_bounded_by_the_timeout(corpus, tshark, detector):
    path = corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng"
    v = find_flow(str(path), detector, flow_id=1, featurize=fake_featurize)[0]
    t = time.monotonic()
    view = dissect(str(path), v, packets=1000, timeout=0.05)
    assert time.monotonic() - t < 30
    assert view.timed_out and view.error is None
    assert len(view.packets) < v.record.pkts_toserver + v.record.pkts_toclient


def test_json_parsing_of_payload_streams():
    stream = (
        b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.9"]}\n'
        b'{"id":2,"method":"mining.authorize","params":["1BoatSLRHtKNngkdXEeobR76b53LETtpyT.rig7","x"]}\n'
        b"garbage\n"
        b'POST / HTTP/1.1\r\nHost: pool\r\n\r\n{"method":"eth_getWork","params":[],"id":3}\n'
    )
    msgs = list(json_messages(stream))
    assert len(msgs) == 3
    lines = [describe_json(m, "client") for m in msgs]
    assert lines[0] == 'client JSON-RPC method mining.subscribe (agent "cgminer/4.9")'
    assert lines[1] == 'client JSON-RPC method mining.authorize (worker "1BoatS…tpyT.rig7")'
    assert lines[2] == "client JSON-RPC method eth_getWork"


def test_explain_command(corpus, tshark):
    """The command as a user runs it (with the default model if it loads, else without a
    verdict, which it says)."""
    path = corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng"
    p = subprocess.run(
        [sys.executable, "-m", "flowdet.cli", "explain", str(path), "--flow-id", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert p.returncode == 0, p.stderr
    assert "mining.authorize" in p.stdout and "Wireshark evidence:" in p.stdout
    assert "Traceback" not in p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "flowdet.cli", "explain", str(path), "--flow-id", "77"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("flowdet: ")
    assert "Traceback" not in p.stderr


def test_benign_flow_shows_how_close_it_came(corpus, tshark):
    from score_fakes import ConstantDetector

    path = corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng"
    text = _explain(path, ConstantDetector([0.8, 0.15, 0.05]), flow_id=1, packets=3)
    assert "BENIGN  score 0.15" in text
    assert "not an alert: closest class mining at 0.15 (threshold 0.50)" in text
    why = _section(text, "not an alert")
    assert any("mining.subscribe" in line for line in why)  # the evidence is still shown
