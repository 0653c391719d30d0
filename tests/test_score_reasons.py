"""Reason sentences: each describer states what the record shows; drivers pick the order."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from flowdet.flows import iter_flows
from flowdet.reasons import (
    describe_bare_acks,
    describe_keystrokes,
    describe_periodic_server,
    evidence_reasons,
    flow_reasons,
    fmt_bytes,
    fmt_secs,
    keystroke_sizes,
    typed_pairs,
)
from flowdet.signatures import SIGNATURE_FEATURES, Evidence, SignatureResult, inspect
from flowdet.signatures.ssh import channel_data_wire_size


@pytest.fixture(scope="module")
def record(corpus):
    recs = list(iter_flows([corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng"]))
    return recs[0]


def _sig(*evidence: Evidence) -> SignatureResult:
    return SignatureResult(tuple(evidence), np.zeros(len(SIGNATURE_FEATURES), np.float32))


NEGOTIATED = Evidence(
    "ssh",
    "negotiated",
    "toserver",
    {"cipher_c2s": "aes256-gcm@openssh.com", "mac_c2s": ""},
    "client and server agree on aes256-gcm@openssh.com with its built-in MAC",
)


def test_formatting():
    assert [fmt_secs(x) for x in (0.25, 4.04, 31.2, 245, 7380)] == [
        "0.25 s",
        "4.0 s",
        "31 s",
        "4 min 5 s",
        "2 h 3 min",
    ]
    assert [fmt_bytes(x) for x in (240, 1300, 2_500_000)] == ["240 B", "1.3 kB", "2.5 MB"]


def test_periodic_server_pushes(record):
    rec = replace(
        record,
        payload_pkts_toclient=10,
        payload_bytes_toclient=2400,
        piat_mean_toclient=31.0,
        piat_std_toclient=4.0,
    )
    assert describe_periodic_server(rec, None) == (
        "server pushes ~240-byte messages every 31 s ± 4.0 s (regular), 10 payload packets"
    )
    assert describe_periodic_server(replace(rec, payload_pkts_toclient=2), None) is None


def test_bare_acks_side(record):
    rec = replace(record, bare_acks_toserver=3, bare_acks_toclient=70)
    text = describe_bare_acks(rec, None)
    assert (
        text == "bare ACKs come from the server side: 70 of 73 (the client sends most of the data)"
    )
    assert describe_bare_acks(replace(rec, bare_acks_toclient=2), None) is None


def _typing(typer: int, size: int, echo: int, n: int = 6) -> dict[str, list]:
    """A session's packets: handshake-ish payloads, then n keystrokes from `typer` (after
    a 0.3 s human pause), each echoed by the other side 20 ms later and ACKed."""
    rows = [(0, 0, 0.0), (1, 0, 0.01), (0, 0, 0.0), (0, 41, 0.01), (1, 41, 0.01)]
    for _ in range(n):
        rows += [(typer, size, 0.3), (1 - typer, echo, 0.02), (typer, 0, 0.001)]
    d, ln, iat = (list(x) for x in zip(*rows[:32], strict=True))
    return {"dir": d, "len": ln, "iat": iat, "flags": [0x18] * len(d)}


def test_keystrokes_typed_from_the_outside(record):
    sig = _sig(NEGOTIATED)
    single, nested = keystroke_sizes(sig)
    assert single == channel_data_wire_size("aes256-gcm@openssh.com", None, 1) == 36
    inner = channel_data_wire_size("chacha20-poly1305@openssh.com", None, 1)
    size = channel_data_wire_size("aes256-gcm@openssh.com", None, inner)
    assert size in nested
    seq = _typing(typer=1, size=size, echo=size + 32)
    rec = replace(
        record,
        first_pkts=seq,
        last_pkts=seq,
        pkts_toserver=seq["dir"].count(0),
        pkts_toclient=seq["dir"].count(1),
        frags_toserver=0,
        frags_toclient=0,
    )
    assert typed_pairs(rec, size) == (0, 6, 6)
    text = describe_keystrokes(rec, sig)
    assert text.startswith(f"keystroke-sized packets ({size} B = a keystroke inside a nested")
    assert "typed from the outside host (the responder)" in text and "6 keystroke/echo" in text
    # the same stream typed by the initiator, echoed with the same size, is attributed to it
    seq = _typing(typer=0, size=36, echo=36)
    rec = replace(rec, first_pkts=seq, last_pkts=seq)
    assert typed_pairs(rec, 36) == (6, 0, 12)
    assert "typed from the initiator side" in describe_keystrokes(rec, sig)


def test_evidence_names_the_server(record):
    sig = inspect(record.payload_toserver, record.payload_toclient)
    got = evidence_reasons(record, sig, "mining")
    server = f"{record.dest_ip}:{record.dest_port}"
    assert got and all(r.source == "signature:stratum" for r in got)
    assert all(r.text.endswith((f"to {server}", f"from {server}")) for r in got)
    assert evidence_reasons(record, sig, "ssh-tunnel") == []  # stratum says nothing there
    ssh = evidence_reasons(record, _sig(NEGOTIATED), "ssh-tunnel")
    assert [r.text for r in ssh] == [NEGOTIATED.text]  # not a client->server message


def test_drivers_choose_the_order(record):
    rec = replace(
        record,
        payload_pkts_toclient=10,
        payload_bytes_toclient=2400,
        piat_mean_toclient=31.0,
        piat_std_toclient=4.0,
        bare_acks_toserver=3,
        bare_acks_toclient=70,
    )
    a = flow_reasons(rec, None, "ssh-tunnel", {"bare_ack_share_toclient": 2.0})
    b = flow_reasons(rec, None, "ssh-tunnel", {"log_piat_mean_toclient": 2.0})
    assert a[0].source == "flow:bare_acks" and a[0].weight == 2.0
    assert b[0].source == "flow:server_period"
    assert len(flow_reasons(rec, None, "mining")) <= 6
