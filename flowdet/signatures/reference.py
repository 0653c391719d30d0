"""First payload packets per TCP flow, cut out by tshark: a reference independent of flows.py.

Used by the tests and by ``python -m flowdet.signatures`` to measure the recognizers on real
captures with Wireshark's own TCP dissection. It mirrors the flows stage's contract - up to
`MAX_PACKETS` payload packets and `MAX_BYTES` bytes per direction, packet boundaries kept -
but runs one tshark process per capture, so it is for evaluation, not for the hot path.

The initiator is the sender of the first SYN without ACK; in flows whose handshake was not
captured, the sender of the first payload (the same rule as mining-real/labels.tsv).
Retransmitted segments are kept, as a capture-level flow table would see them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from flowdet.errors import FlowdetError

MAX_PACKETS = 4
MAX_BYTES = 1024
_FIELDS = (
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "tcp.payload",
)


@dataclass
class FlowPrefix:
    """One TCP flow's identity and its first payload packets per direction."""

    pcap: str
    stream: int
    client_ip: str = ""
    client_port: int = 0
    server_ip: str = ""
    server_port: int = 0
    toserver: list[bytes] = field(default_factory=list)
    toclient: list[bytes] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, int, str, int]:
        return (self.pcap, self.client_ip, self.client_port, self.server_ip, self.server_port)


def _append(packets: list[bytes], payload: bytes, max_packets: int, max_bytes: int) -> None:
    used = sum(len(p) for p in packets)
    if len(packets) < max_packets and used < max_bytes:
        packets.append(payload[: max_bytes - used])


def flow_prefixes(
    pcap: Path,
    tshark: str | None = None,
    max_packets: int = MAX_PACKETS,
    max_bytes: int = MAX_BYTES,
) -> list[FlowPrefix]:
    """Flows of `pcap` that carried TCP payload, in order of first appearance.

    `max_packets` / `max_bytes` default to the flows stage's limits; tests raise them to see
    whole handshakes.
    """
    tshark = tshark or shutil.which("tshark")
    if tshark is None:
        raise FlowdetError("tshark not found (Debian package tshark)")
    cmd = [tshark, "-n", "-r", str(pcap), "-Y", "tcp.len > 0 or tcp.flags.syn == 1"]
    cmd += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for name in _FIELDS:
        cmd += ["-e", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 and not proc.stdout:
        raise FlowdetError(f"tshark could not read {pcap}: {proc.stderr.strip()[:200]}")
    flows: dict[int, FlowPrefix] = {}
    for line in proc.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) != len(_FIELDS) or not cols[0]:
            continue
        stream, src4, src6, sport, dst4, dst6, dport, syn, ack, hexpayload = cols
        src, dst = src4 or src6, dst4 or dst6
        flow = flows.setdefault(int(stream), FlowPrefix(pcap.name, int(stream)))
        if not flow.client_ip:
            is_syn = syn in ("1", "True") and ack in ("0", "False")
            if is_syn or hexpayload:
                flow.client_ip, flow.client_port = src, int(sport)
                flow.server_ip, flow.server_port = dst, int(dport)
        if not hexpayload:
            continue
        payload = bytes.fromhex(hexpayload.replace(":", ""))
        toserver = (src, int(sport)) == (flow.client_ip, flow.client_port)
        _append(flow.toserver if toserver else flow.toclient, payload, max_packets, max_bytes)
    return [f for f in flows.values() if f.toserver or f.toclient]
