"""Signatures on real captures: recall on mining-real, no mining evidence on benign traffic.

Payload prefixes are taken two independent ways: with flowdet's own capture reader and flow
table (`flowdet.flows.iter_flows`), and with tshark (`flowdet.signatures.reference`). Both
must give mining evidence - naming every method the label names - for every `mining` flow of
mining-real/labels.tsv, and none for its `other` flows or for any flow of the Zeek traces.
Reproduce the numbers: ``python -m flowdet.signatures --labels
../shared/corpus/mining-real/labels.tsv ../shared/corpus/mining-real``.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from flowdet.errors import FlowdetError
from flowdet.flows import iter_flows
from flowdet.signatures import inspect
from flowdet.signatures.reference import flow_prefixes

Key = tuple[str, str, int, str, int]

pytestmark = pytest.mark.corpus


def load_labels(corpus: Path) -> dict[Key, tuple[str, set[str]]]:
    out = {}
    with (corpus / "mining-real" / "labels.tsv").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            key = (
                row["pcap"],
                row["client_ip"],
                int(row["client_port"]),
                row["server_ip"],
                int(row["server_port"]),
            )
            out[key] = (row["label"], set(filter(None, (row["evidence"] or "").split(","))))
    return out


def client_methods(result) -> set[str]:
    """Methods named by the mining evidence from the initiator (a Monero login is 'login')."""
    return {
        str(e.detail.get("method") or e.name)
        for e in result.mining_evidence
        if e.direction == "toserver"
    }


def check_against_labels(
    labels: dict[Key, tuple[str, set[str]]], flows: list[tuple[Key, list[bytes], list[bytes]]]
) -> Counter:
    counts: Counter = Counter()
    seen = set()
    for key, toserver, toclient in flows:
        if key not in labels:
            continue
        seen.add(key)
        label, methods = labels[key]
        result = inspect(toserver, toclient)
        assert not result.errors, (key, result.errors)
        if label == "mining":
            assert result.is_mining, (key, [e.text for e in result.evidence])
            assert methods <= client_methods(result), (key, methods, client_methods(result))
            counts["mining_detected"] += 1
        else:
            assert not result.is_mining, (key, [e.text for e in result.mining_evidence])
            counts["other_clean"] += 1
    assert seen == set(labels), f"labelled flows not found: {sorted(set(labels) - seen)[:5]}"
    return counts


def test_mining_real_via_flowdet_flows(corpus):
    labels = load_labels(corpus)
    flows = []
    for pcap in sorted((corpus / "mining-real").glob("*.pcapng")):
        for rec in iter_flows([pcap]):
            key = (pcap.name, rec.src_ip, rec.src_port, rec.dest_ip, rec.dest_port)
            flows.append((key, rec.payload_toserver, rec.payload_toclient))
    counts = check_against_labels(labels, flows)
    n_mining = sum(1 for label, _ in labels.values() if label == "mining")
    assert counts["mining_detected"] >= n_mining  # a flow can be split into two records
    assert counts["other_clean"] == len(labels) - n_mining


def test_mining_real_via_tshark(corpus, tshark):
    labels = load_labels(corpus)
    flows = []
    for pcap in sorted((corpus / "mining-real").glob("*.pcapng")):
        for f in flow_prefixes(pcap, tshark):
            flows.append((f.key, f.toserver, f.toclient))
    counts = check_against_labels(labels, flows)
    assert counts["mining_detected"] == sum(1 for lab, _ in labels.values() if lab == "mining")


def test_zeek_traces_have_no_mining_evidence(corpus):
    """All 787 Zeek traces through flowdet's own flows: no flow may carry mining evidence,
    and the traces must really exercise the parsers (SSH, TLS and HTTP evidence appears)."""
    traces = sorted(p for p in (corpus / "zeek-traces").iterdir() if p.suffix != ".tsv")
    seen: Counter = Counter()
    for pcap in traces:
        try:
            records = list(iter_flows([pcap]))
        except FlowdetError:
            seen["unreadable_captures"] += 1  # the capture tests own this; not our concern
            continue
        for rec in records:
            if not (rec.payload_toserver or rec.payload_toclient):
                continue
            seen["flows_with_payload"] += 1
            result = inspect(rec.payload_toserver, rec.payload_toclient)
            assert not result.errors, (pcap.name, result.errors)
            assert not result.is_mining, (pcap.name, [e.text for e in result.mining_evidence])
            for ev in result.evidence:
                seen[f"{ev.family}:{ev.name}"] += 1
    assert seen["flows_with_payload"] > 1000
    for kind in (
        "ssh:banner",
        "ssh:kexinit",
        "tls:client_hello",
        "tls:server_hello",
        "http:request",
    ):
        assert seen[kind] > 10, (kind, seen)


@pytest.mark.slow
def test_zeek_ssh_tls_http_sample_via_tshark(corpus, tshark):
    """The protocol-named Zeek traces again, with tshark cutting the flows."""
    prefixes = ("ssh", "ssl", "tls", "http", "dns")
    traces = sorted(
        p for p in (corpus / "zeek-traces").iterdir() if p.name.lower().startswith(prefixes)
    )[::3]
    assert len(traces) > 30
    flows = 0
    for pcap in traces:
        try:
            found = flow_prefixes(pcap, tshark)
        except FlowdetError:
            continue
        for f in found:
            flows += 1
            result = inspect(f.toserver, f.toclient)
            assert not result.errors and not result.is_mining, (pcap.name, f.key)
    assert flows > 50


def test_evaluation_command(corpus, tshark, tmp_path):
    """`python -m flowdet.signatures --labels ...` reports recall and false alarms; a file
    that is not a capture is counted and skipped, not fatal."""
    from click.testing import CliRunner

    from flowdet.signatures.__main__ import main

    labels = load_labels(corpus)
    n_mining = sum(1 for label, _ in labels.values() if label == "mining")
    n_other = len(labels) - n_mining
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("not a capture\n")
    args = ["-q", "--labels", str(corpus / "mining-real" / "labels.tsv")]
    result = CliRunner().invoke(main, [*args, str(corpus / "mining-real"), str(bogus)])
    assert result.exit_code == 0, result.output
    assert f"recall {n_mining}/{n_mining} mining flows" in result.output
    assert f"false alarms 0/{n_other} other flows" in result.output
    assert "captures_unreadable=1" in result.output
