"""Turning a scenario's `Expect`s into labelled flows found in its own capture.

Client ports are ephemeral, so the capture is the authority: a TCP flow's initiator is the
sender of the SYN without ACK, a UDP flow's is the sender of its first datagram. tshark is
the reader here (an independent dissector, and the lab needs it anyway); rows follow the
layout spirit of ../shared/corpus/mining-real/labels.tsv.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from flowdet.errors import LabError
from flowdet.lab.scenario import Expect

COLUMNS = (
    "pcap",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "proto",
    "label",
    "scenario",
)


@dataclass(frozen=True, slots=True)
class Flow:
    """A flow's canonical identity: initiator (client) first."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    proto: str


@dataclass(frozen=True, slots=True)
class LabelRow:
    pcap: str
    flow: Flow
    label: str
    scenario: str

    def tsv(self) -> str:
        f = self.flow
        return "\t".join(
            (
                self.pcap,
                f.client_ip,
                str(f.client_port),
                f.server_ip,
                str(f.server_port),
                f.proto,
                self.label,
                self.scenario,
            )
        )


def flows_in(pcap: Path) -> list[Flow]:
    """Every TCP and UDP flow in `pcap`, in order of first packet, initiator first."""
    argv = [
        "tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t",
        "-Y", "(tcp.flags.syn == 1 && tcp.flags.ack == 0) || (udp && !icmp)",
        "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport", "-e", "tcp.dstport",
        "-e", "udp.srcport", "-e", "udp.dstport",
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise LabError(f"tshark could not read {pcap.name}: {out.stderr.strip()[:200]}")
    seen: dict[tuple[str, int, str, int, str], Flow] = {}
    for line in out.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 6 or not parts[0] or not parts[1]:
            continue  # not IPv4 (the lab disables IPv6)
        src, dst, tsp, tdp, usp, udp = parts[:6]
        proto, sport, dport = ("tcp", tsp, tdp) if tsp else ("udp", usp, udp)
        if not sport or not dport:
            continue
        flow = Flow(src, int(sport), dst, int(dport), proto)
        (ip_a, port_a), (ip_b, port_b) = sorted([(src, flow.client_port), (dst, flow.server_port)])
        seen.setdefault((ip_a, port_a, ip_b, port_b, proto), flow)
    return list(seen.values())


def resolve(
    pcap: Path,
    scenario: str,
    expects: Iterable[Expect],
    ip_of: Callable[[str], str],
) -> tuple[list[LabelRow], list[Flow], list[str]]:
    """Labelled rows, the flows no Expect claimed, and one error per Expect that matched nothing."""
    flows = flows_in(pcap)
    rows: list[LabelRow] = []
    errors: list[str] = []
    claimed: set[Flow] = set()
    for exp in expects:
        cip, sip = ip_of(exp.client), ip_of(exp.server)
        matched = [
            f
            for f in flows
            if f.client_ip == cip
            and f.server_ip == sip
            and f.server_port == exp.server_port
            and f.proto == exp.proto
        ]
        if not matched:
            errors.append(
                f"expected {exp.proto} {exp.client}({cip}) -> {exp.server}({sip}):"
                f"{exp.server_port} ({exp.label}) but the capture has no such flow"
            )
        for f in matched:
            if f in claimed:
                continue  # two Expects for one flow: the first one wins
            claimed.add(f)
            rows.append(LabelRow(pcap.name, f, exp.label, scenario))
    unclaimed = [f for f in flows if f not in claimed]
    return rows, unclaimed, errors


def append_tsv(path: Path, rows: Iterable[LabelRow]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        for row in rows:
            f.write(row.tsv() + "\n")


def drop_pcap(path: Path, names: Iterable[str]) -> int:
    """Remove the rows of captures that are about to be made again; return how many.

    A re-run with the same seed overwrites `<scenario>-<seed>.pcapng`, so rows of the old
    capture would point at flows that no longer exist.
    """
    if not path.exists():
        return 0
    drop = set(names)
    lines = path.read_text().splitlines(keepends=True)
    kept = [ln for i, ln in enumerate(lines) if i == 0 or ln.split("\t", 1)[0] not in drop]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)
    return len(lines) - len(kept)
