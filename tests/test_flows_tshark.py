"""Differential test: per-flow packet and byte counts against Wireshark's conversation table.

For each capture, `tshark -n -q -z conv,tcp -z conv,udp` (one tshark run per file, two files
in parallel) is compared with flowdet's records summed per 5-tuple (tshark never splits a
conversation on timeouts or port reuse, so neither does the comparison). Every difference
must fall in a documented class (docs/flows.md, "Differences from tshark"), else the test
fails:

- undecoded: packets flowdet's decoder rejected (truncated, malformed, unsupported link
  type); they are counted in the run summary, and tshark may still show them.
- fragments: tshark reassembles IP fragments and counts a datagram once, in the frame that
  completes it; flowdet counts every fragment to the flow of the first fragment.
- tunnel: tshark dissects inner IP of GRE, IP-in-IP, 6in4, Teredo, VXLAN, GTP, ... and shows
  inner conversations; flowdet keys on the outer header only.
- icmp-quoted: tshark counts ICMP errors that quote a TCP/UDP header in that conversation;
  flowdet counts them in the ICMP flow.

With ../shared present, every Zeek-corpus capture is checked if FLOWDET_DIFF_ALL=1 is set,
else a deterministic sample (every 3rd capture in sorted order, ~260 files, to keep the test
near two minutes on 2 cores); without ../shared a small capture made here covers the paths.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flows_synth import P, Status, tcp_session, write_pcap

from flowdet.capture import open_capture
from flowdet.errors import CaptureError
from flowdet.flows import FlowConfig, FlowTable

TUNNEL_PROTOS = {4, 41, 47, 97, 115}  # IPIP, IPv6-in-IP, GRE, EtherIP, L2TPv3
# L2TP, GTP-U, Teredo, GRE-in-UDP, VXLAN, AYIYA, CAPWAP (2), Geneve, Linux VXLAN
TUNNEL_PORTS = {1701, 2152, 3544, 4754, 4789, 5072, 5246, 5247, 6081, 8472}
ICMP_ERRORS = {(1, t) for t in (3, 4, 5, 11, 12)} | {(58, t) for t in (1, 2, 3, 4)}
UNIT = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}

_LINE = re.compile(
    r"^(\S+)\s+<->\s+(\S+)\s+(\d[\d,]*)\s+(\d[\d,]*) (bytes|kB|MB|GB)\s+"
    r"(\d[\d,]*)\s+(\d[\d,]*) (bytes|kB|MB|GB)"
)


def _ep(s: str) -> tuple[str, int]:
    addr, port = s.rsplit(":", 1)
    return addr.strip("[]"), int(port)


def _num(s: str) -> int:
    return int(s.replace(",", ""))


@dataclass
class Side:
    pkts: int = 0
    bytes: int = 0
    unit: int = 1  # tshark rounds bytes to this unit (kB, MB) for large counts


@dataclass
class Conv:
    ab: Side = field(default_factory=Side)  # endpoint a -> endpoint b, a < b
    ba: Side = field(default_factory=Side)


def _key(proto: str, e1: tuple[str, int], e2: tuple[str, int]) -> tuple[tuple, bool]:
    a, b = sorted([e1, e2])
    return (proto, a, b), (a, b) != (e1, e2)


_IOSTAT = re.compile(r"^\|\s*[\d.]+ <> [\d.]+\s*\|\s*(\d+)\s*\|\s*\d+\s*\|\s*(\d+)\s*\|")


@dataclass
class Theirs:
    convs: dict[tuple, Conv]
    dropped: int  # frames tshark marked malformed or cut short: left out of conversations


def tshark_conversations(tshark: str, path: str) -> Theirs | None:
    res = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            path,
            "-q",
            "-z",
            "conv,tcp",
            "-z",
            "conv,udp",
            "-z",
            "io,stat,0,_ws.malformed,_ws.short",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if res.returncode != 0:
        return None  # tshark cannot read it either
    out: dict[tuple, Conv] = {}
    proto = ""
    dropped = 0
    for line in res.stdout.splitlines():
        io = _IOSTAT.match(line)
        if io:
            dropped = int(io[1]) + int(io[2])
        if line.startswith("TCP Conversations"):
            proto = "TCP"
        elif line.startswith("UDP Conversations"):
            proto = "UDP"
        m = _LINE.match(line)
        if not m or not proto:
            continue
        e1, e2 = _ep(m[1]), _ep(m[2])
        key, swapped = _key(proto, e1, e2)
        # "<-" columns are frames from the second endpoint to the first, "->" the reverse
        to_first = Side(_num(m[3]), _num(m[4]) * UNIT[m[5]], UNIT[m[5]])
        to_second = Side(_num(m[6]), _num(m[7]) * UNIT[m[8]], UNIT[m[8]])
        c = out.setdefault(key, Conv())
        ab, ba = (to_first, to_second) if swapped else (to_second, to_first)
        for mine, theirs in ((c.ab, ab), (c.ba, ba)):
            mine.pkts += theirs.pkts
            mine.bytes += theirs.bytes
            mine.unit = max(mine.unit, theirs.unit)
    return Theirs(out, dropped)


@dataclass
class Ours:
    convs: dict[tuple, Conv]
    status: dict[str, int]
    frag_rows: int
    first_frags: int
    icmp_errors: int
    tunnels: bool
    snapped: int  # transport header cut by the snap length (tshark drops these too)


def flowdet_conversations(path: str) -> Ours:
    convs: dict[tuple, Conv] = defaultdict(Conv)
    table = FlowTable(FlowConfig())
    icmp_errors = 0
    tunnels = False
    first_frags = 0
    snapped = 0
    with open_capture(path) as reader:
        blocks = []
        for batch in reader:
            ok = batch.status == Status.OK
            first_frags += int((ok & batch.more_frags & (batch.frag_off == 0)).sum())
            snapped += int((ok & (batch.payload_off > batch.caplen)).sum())
            blocks.append(table.update(batch))
        blocks.append(table.flush())
        status = dict(reader.stats.status)
    for blk in blocks:
        for r in blk.records():
            if r.end_reason == "checkpoint":
                continue
            if (r.proto_num, r.icmp_type) in ICMP_ERRORS:
                icmp_errors += r.pkts_toserver + r.pkts_toclient
            if r.proto_num in TUNNEL_PROTOS or (
                r.proto_num == 17 and {r.src_port, r.dest_port} & TUNNEL_PORTS
            ):
                tunnels = True
            if r.proto not in ("TCP", "UDP"):
                continue
            key, swapped = _key(r.proto, (r.src_ip, r.src_port), (r.dest_ip, r.dest_port))
            c = convs[key]
            fwd, rev = (c.ba, c.ab) if swapped else (c.ab, c.ba)
            fwd.pkts += r.pkts_toserver
            fwd.bytes += r.bytes_toserver
            rev.pkts += r.pkts_toclient
            rev.bytes += r.bytes_toclient
    return Ours(
        dict(convs), status, status.get("FRAGMENT", 0), first_frags, icmp_errors, tunnels, snapped
    )


def _same(mine: Side, theirs: Side) -> bool:
    if mine.pkts != theirs.pkts:
        return False
    if theirs.unit == 1:
        return mine.bytes == theirs.bytes
    return abs(mine.bytes - theirs.bytes) <= theirs.unit  # tshark rounded to kB / MB


def classify(
    ours: Ours, dropped: int, key: tuple, mine: Conv | None, theirs: Conv | None
) -> str | None:
    """The documented class explaining a difference, or None if none does."""
    m_pk = 0 if mine is None else mine.ab.pkts + mine.ba.pkts
    t_pk = 0 if theirs is None else theirs.ab.pkts + theirs.ba.pkts
    undecoded = sum(ours.status.get(s, 0) for s in ("TRUNCATED", "MALFORMED", "UNSUPPORTED_LINK"))
    if ours.tunnels and (mine is None or theirs is None or t_pk > m_pk):
        return "tunnel"
    if t_pk > m_pk and t_pk - m_pk <= undecoded:
        return "undecoded"
    if m_pk > t_pk and m_pk - t_pk <= dropped + ours.snapped:
        return "tshark-malformed"
    if ours.frag_rows + ours.first_frags and abs(m_pk - t_pk) <= ours.frag_rows + ours.first_frags:
        return "fragments"
    if t_pk > m_pk and t_pk - m_pk <= ours.icmp_errors:
        return "icmp-quoted"
    if mine is not None and theirs is not None and m_pk == t_pk and undecoded:
        return "undecoded"  # same packets, bytes differ: a rejected record in the mix
    return None


def _shape(key: tuple, c: Conv) -> tuple:
    ports = sorted([key[1][1], key[2][1]])
    return (key[0], *ports, c.ab.pkts + c.ba.pkts, c.ab.bytes + c.ba.bytes)


def _ipv6_rewrites(mine: dict, theirs: dict, only_ours: set, only_theirs: set) -> set:
    """IPv6 conversations that exist on each side under different addresses with the same
    protocol, ports and counts: tshark takes the destination from a type-0 routing header
    and the source from a Home Address option (as Zeek does), flowdet the IPv6 header."""
    v6 = [k for k in only_ours if ":" in k[1][0]]
    shapes = {_shape(k, theirs[k]): k for k in only_theirs if ":" in k[1][0]}
    out = set()
    for k in v6:
        other = shapes.get(_shape(k, mine[k]))
        if other is not None:
            out |= {k, other}
    return out


def compare(tshark: str, path: str) -> tuple[int, dict[str, int], list[str]]:
    """(conversations compared, mismatches per class, unexplained mismatches)."""
    t = tshark_conversations(tshark, path)
    if t is None:
        return 0, {}, []
    theirs_all = t.convs
    try:
        ours = flowdet_conversations(path)
    except CaptureError as exc:
        return 0, {}, [f"{path}: flowdet cannot read a capture tshark reads: {exc}"]
    classes: dict[str, int] = defaultdict(int)
    bad: list[str] = []
    only_ours = {k for k in ours.convs if k not in theirs_all}
    only_theirs = {k for k in theirs_all if k not in ours.convs}
    rewritten = _ipv6_rewrites(ours.convs, theirs_all, only_ours, only_theirs)
    for key in sorted(set(theirs_all) | set(ours.convs)):
        mine, theirs = ours.convs.get(key), theirs_all.get(key)
        if mine and theirs and _same(mine.ab, theirs.ab) and _same(mine.ba, theirs.ba):
            continue
        cls = (
            "ipv6-ext-address" if key in rewritten else classify(ours, t.dropped, key, mine, theirs)
        )
        if cls is None:
            bad.append(f"{Path(path).name} {key}: flowdet {mine} tshark {theirs}")
        else:
            classes[cls] += 1
    return len(theirs_all), dict(classes), bad


def corpus_files(corpus: Path) -> list[str]:
    files = sorted(
        str(p) for p in (corpus / "zeek-traces").iterdir() if p.is_file() and p.name != "INDEX.tsv"
    )
    if os.environ.get("FLOWDET_DIFF_ALL") == "1":
        return files
    return files[::3]


def run_all(tshark: str, files: list[str]) -> tuple[int, dict[str, int], list[str]]:
    total, classes, bad = 0, defaultdict(int), []
    with ThreadPoolExecutor(max_workers=2) as pool:  # tshark runs as a subprocess
        for n, cls, b in pool.map(lambda f: compare(tshark, f), files):
            total += n
            bad += b
            for k, v in cls.items():
                classes[k] += v
    return total, dict(classes), bad


@pytest.mark.slow
@pytest.mark.corpus
def test_counts_match_tshark_on_zeek_corpus(corpus, tshark):
    files = corpus_files(corpus)
    total, classes, bad = run_all(tshark, files)
    print(f"{len(files)} captures, {total} tshark conversations, explained: {classes}")
    assert total > 200  # the comparison really ran
    assert not bad, "\n".join(bad[:30])


def test_counts_match_tshark_on_made_capture(tmp_path, tshark):
    """Same comparison on a capture made here: TCP sessions, port reuse, UDP, IPv6, idle
    splits (tshark keeps one conversation, flowdet emits several records)."""
    pk = tcp_session(1.0, "10.0.0.1", 40000, "10.0.0.2", 80, [(100, 1500), (50, 0)])
    pk += tcp_session(2.0, "10.0.0.1", 40000, "10.0.0.2", 80, [(10, 20)])  # port reuse
    pk += tcp_session(3.0, "2001:db8::1", 5555, "2001:db8::2", 22, [(30, 40), (1, 1)])
    pk += [P(4.0 + i, "10.0.0.3", 5353, "10.0.0.4", 53, proto=17, payload=40 + i) for i in range(3)]
    pk += [P(400.0, "10.0.0.4", 53, "10.0.0.3", 5353, proto=17, payload=80)]  # after idle
    pk.sort(key=lambda p: p.t)
    path = tmp_path / "made.pcap"
    write_pcap(path, pk)
    total, classes, bad = run_all(tshark, [str(path)])
    assert total == 3 and classes == {} and bad == []
    ours = flowdet_conversations(str(path))
    assert sum(c.ab.pkts + c.ba.pkts for c in ours.convs.values()) == len(pk)


if __name__ == "__main__":  # exploration: python tests/test_flows_tshark.py FILE...
    import shutil
    import sys

    t, c, b = run_all(shutil.which("tshark") or "tshark", sys.argv[1:])
    print(t, c)
    print("\n".join(b))
