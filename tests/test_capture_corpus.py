"""Real captures: the whole Zeek trace corpus must read cleanly, and a sample of it (merged into
one multi-interface pcapng) must decode exactly as tshark dissects it."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowdet.capture import Status, open_capture

pytestmark = pytest.mark.corpus


def zeek_index(corpus: Path) -> list[dict[str, str]]:
    with open(corpus / "zeek-traces" / "INDEX.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# Runs in a child process so that a hang fails the test (timeout) instead of stalling CI, and a
# traceback shows up as output on stderr.
READ_ALL = """
import json, sys
import numpy as np
from flowdet.capture import Status, open_capture
for path in sys.argv[1:]:
    bounds_ok = True
    with open_capture(path) as reader:
        n = 0
        for batch in reader:
            n += len(batch)
            ok = (batch.status == Status.OK) | (batch.status == Status.FRAGMENT)
            end = batch.payload_off[ok].astype(np.int64) + batch.payload_len[ok]
            bounds_ok &= bool((batch.payload_len[~ok] == 0).all())
            bounds_ok &= bool((batch.l4_off[ok] <= batch.payload_off[ok]).all())
            bounds_ok &= bool((end <= np.maximum(batch.wirelen[ok], batch.caplen[ok])).all())
    st = reader.stats
    print(json.dumps({"file": path, "n": n, "records": st.records, "status": st.status,
                      "warnings": st.warnings, "lost": st.lost_records, "bounds_ok": bounds_ok}))
"""


def test_every_zeek_trace_reads_and_counts_add_up(corpus):
    index = zeek_index(corpus)
    paths = [str(corpus / "zeek-traces" / row["file"]) for row in index]
    proc = subprocess.run(
        [sys.executable, "-c", READ_ALL, *paths], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(index)
    totals = dict.fromkeys((s.name for s in Status), 0)
    problems = []
    for row, res in zip(index, results, strict=True):
        assert res["n"] == res["records"] == sum(res["status"].values()), row["file"]
        assert res["bounds_ok"], row["file"]
        if res["n"] != int(row["packets"] or 0) or res["warnings"] or res["lost"]:
            problems.append((row["file"], row["packets"], res["n"], res["warnings"]))
        for k, v in res["status"].items():
            totals[k] += v
    assert problems == []
    # The corpus holds 802.11, NFLOG, ...: they must be counted, not dropped, and not crash.
    assert totals["UNSUPPORTED_LINK"] > 0 and totals["OK"] > 0
    assert sum(totals.values()) == sum(int(r["packets"] or 0) for r in index)


SAMPLE = [
    "mining-real/cgminer.s0.pcapng",
    "mining-real/pool.eth.pp.ua.pcapng",
    "mining-real/xmr-eu1.nanopool.org.pcapng",
    "zeek-traces/linux_dlt_sll2.pcap",
    "zeek-traces/tls__irc-starttls.pcap",
    "zeek-traces/ldap__issue-32.pcapng",
    "zeek-traces/contentline__contentline-irc-5k-line.pcap",
    "zeek-traces/redis__start-with-server.pcapng",
    "zeek-traces/tcp-syslog.pcap",
    "zeek-traces/icmp__icmp6-mldv2.pcap",
    "zeek-traces/tls__ml-dsa-44-cert.pcap",
    "zeek-traces/quic__interop__quic-go_quic-go__handshake.pcap",
    "zeek-traces/http-qinq-0.pcap",
    "zeek-traces/vlan-qinqinq.pcap",
    "zeek-traces/mixed-vlan-mpls.pcap",
    "zeek-traces/pppoe.pcap",
    "zeek-traces/pppoe-over-qinq.pcap",
    "zeek-traces/ipv4__fragmented-3.pcap",
    "zeek-traces/ipv4__fragmented-syn.pcap",
    "zeek-traces/ipv6-fragmented-dns.pcap",
    "zeek-traces/dns-edns-ecs.pcap",
    "zeek-traces/ldap__modify-request.pcapng",
    "zeek-traces/icmp_dot1q.pcap",
    "zeek-traces/tunnels__gre-pptp.pcap",
    "zeek-traces/ssh__ssh-over-udp.pcap",
    "zeek-traces/nflog-http.pcap",
    "zeek-traces/wlanmon.pcap",
]

FIELDS = [
    "frame.time_epoch",
    "frame.cap_len",
    "frame.len",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "tcp.len",
    "tcp.flags",
    "tcp.seq_raw",
    "icmp.type",
    "icmpv6.type",
]


def first(v: str) -> str:
    return v.split(",")[0]


def epoch_ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 10**9 + int((frac + "000000000")[:9])


def addr_text(ver: int, hi: int, lo: int) -> str:
    import ipaddress

    if ver == 4:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


@pytest.mark.slow
def test_decoder_agrees_with_tshark(corpus, tshark, tmp_path):
    mergecap = shutil.which("mergecap")
    if mergecap is None:
        pytest.skip("mergecap is not installed (Debian package tshark)")
    merged = tmp_path / "sample.pcapng"
    # Concatenated into one pcapng: one interface per input, link types mixed per packet.
    subprocess.run(
        [mergecap, "-a", "-F", "pcapng", "-w", str(merged)] + [str(corpus / f) for f in SAMPLE],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [tshark, "-r", str(merged), "-n", "-o", "ip.defragment:FALSE"]
        + ["-o", "ipv6.defragment:FALSE", "-T", "fields", "-E", "occurrence=f"]
        + [x for f in FIELDS for x in ("-e", f)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    ref = [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in out]

    with open_capture(merged) as reader:
        batches = list(reader)
    assert reader.stats.records == len(ref)
    assert len(reader.stats.interfaces) >= len(SAMPLE)
    k = 0
    checked = {s: 0 for s in Status}
    for b in batches:
        for i in range(len(b)):
            t = ref[k]
            k += 1
            where = f"packet {k}"
            assert int(b.ts_ns[i]) == epoch_ns(t["frame.time_epoch"]), where
            assert (int(b.caplen[i]), int(b.wirelen[i])) == (
                int(t["frame.cap_len"]),
                int(t["frame.len"]),
            ), where
            s = Status(int(b.status[i]))
            checked[s] += 1
            if s not in (Status.OK, Status.FRAGMENT):
                continue
            ver = int(b.ip_version[i])
            fam = "ip" if ver == 4 else "ipv6"
            src = addr_text(ver, int(b.src_hi[i]), int(b.src_lo[i]))
            dst = addr_text(ver, int(b.dst_hi[i]), int(b.dst_lo[i]))
            assert (src, dst) == (first(t[f"{fam}.src"]), first(t[f"{fam}.dst"])), where
            if s == Status.FRAGMENT:
                continue
            proto = int(b.proto[i])
            ports = (int(b.sport[i]), int(b.dport[i]))
            if proto == 6:
                assert ports == (int(t["tcp.srcport"]), int(t["tcp.dstport"])), where
                if t["tcp.len"]:
                    assert int(b.payload_len[i]) == int(t["tcp.len"]), where
                else:  # tshark leaves tcp.len empty on a first fragment
                    assert b.more_frags[i], where
                assert int(b.tcp_flags[i]) == int(t["tcp.flags"], 16) & 0xFF, where
                assert int(b.tcp_seq[i]) == int(t["tcp.seq_raw"]), where
            elif proto == 17 and t["udp.srcport"]:
                assert ports == (int(t["udp.srcport"]), int(t["udp.dstport"])), where
            elif proto == 1:
                assert ports[0] == int(t["icmp.type"]), where
            elif proto == 58:
                assert ports[0] == int(t["icmpv6.type"]), where
    assert k == len(ref)
    # The sample must exercise the interesting paths, or the comparison proves little.
    assert checked[Status.OK] > 1000
    assert checked[Status.FRAGMENT] > 0 and checked[Status.UNSUPPORTED_LINK] > 0
