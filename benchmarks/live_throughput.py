"""Highest packet rate `flowdet live` keeps up with, against nfstream's live mode.

    sudo .venv/bin/python benchmarks/live_throughput.py [--rates 50000,100000,200000,300000]
        [--limit 1000000] [--tools flowdet,nfstream] [--json out.json]

Two namespaces of our own joined by a veth pair (offloads off, IPv6 off). tcpreplay sends
the benchmark mix (../shared/bench/make_mix.sh via benchmarks/_common.mix_path: ~1M
packets of the Zeek corpus) into the tx end at each rate (`--pps`); on the rx end, in the
same run, `flowdet live -i vrx` (dumpcap -> pipe -> flowdet, full scoring chain, default
model) and nfstream's live mode (`NFStreamer(source="vrx", statistical_analysis=True,
n_meters=1)`, libpcap) capture side by side. Per rate it reports what tcpreplay sent,
what each tool saw and what was dropped:

- flowdet: packets decoded by flowdet; dumpcap's final per-interface count of packets
  dropped by the kernel capture buffer / dumpcap (its pcapng stats and stderr);
- nfstream: `packets_processed` and `packets_dropped_filtered_by_kernel` of its
  performance report;
- the veth itself: rx/tx drops in /proc/net/dev (drops before either capture).

A rate counts as kept up with when nothing was dropped: for flowdet, dumpcap reports zero
drops, received at least every packet tcpreplay put on the wire, and flowdet decoded all
it received; for nfstream, its kernel drop count is zero (its processed + ignored counts
do not add up to what was sent even at low rates, so they are reported, not required).
Both tools and tcpreplay share the machine's cores, as they would on a sensor. Traffic
only ever goes onto the veths this script creates; they are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import mix_path  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
if not Path(PY).exists():
    PY = sys.executable

NFSTREAM_RUNNER = r"""
import sys
from nfstream import NFStreamer
s = NFStreamer(source=sys.argv[1], statistical_analysis=True, n_meters=1,
               performance_report=1, idle_timeout=120, active_timeout=1800)
flows = 0
try:
    for f in s:
        flows += 1
except KeyboardInterrupt:
    pass
print('{"flows_yielded": %d}' % flows, flush=True)
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


class VethPair:
    """tx and rx namespaces joined by a veth pair (vtx <-> vrx), created and removed here."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.tx, self.rx = f"fdtp-{tag}-tx", f"fdtp-{tag}-rx"

    def __enter__(self) -> VethPair:
        for ns in (self.tx, self.rx):
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "link", "add", "vtx", "netns", self.tx, "type", "veth", "peer", "name", "vrx",
           "netns", self.rx)  # fmt: skip
        for ns, dev in ((self.tx, "vtx"), (self.rx, "vrx")):
            # jumbo frames of the corpus must fit; offloads off: packets stay as sent
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "mtu", "9000", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "off", "gso", "off",
               "tso", "off", check=False)  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in (self.tx, self.rx):
            sh("ip", "netns", "del", ns, check=False)

    def ns(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def drops(self) -> dict[str, int]:
        out = {}
        for ns, dev in ((self.tx, "vtx"), (self.rx, "vrx")):
            text = sh(*self.ns(ns, "cat", "/proc/net/dev")).stdout
            for line in text.splitlines()[2:]:
                name, _, rest = line.partition(":")
                if name.strip() == dev:
                    c = rest.split()
                    out[f"{dev}_rx_drop"] = int(c[3])
                    out[f"{dev}_tx_drop"] = int(c[11])
        return out


def _wait_text(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args}: did not start: {path.read_text()[-2000:]}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen, sig: int, timeout: float = 60.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its group (nfstream meters)


def _flowdet_running_count(text: str) -> int | None:
    counts = re.findall(r"flowdet live: +\d+ s +([\d,]+) pkts", text)
    return int(counts[-1].replace(",", "")) if counts else None


def _drain(log: Path, count, sent: int, still: float = 6.0, limit: float = 180.0) -> None:
    start = last_change = time.monotonic()
    last = None
    while time.monotonic() - start < limit:
        n = count(log.read_text(errors="replace"))
        if n is not None and n >= sent:
            return
        if n != last:
            last, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > still:
            return
        time.sleep(0.5)


def parse_flowdet(text: str) -> dict:
    out: dict = {}
    m = re.search(r"flowdet live: ([\d,]+) packets in ([\d.]+) s", text)
    if m:
        out["packets"] = int(m.group(1).replace(",", ""))
    m = re.search(r"dumpcap vrx: ([\d,]+) received, ([\d,]+) dropped \(kernel ([\d,]+), "
                  r"dumpcap ([\d,]+), flushed ([\d,]+); interface ([\d,]+)\)", text)  # fmt: skip
    if m:
        vals = [int(g.replace(",", "")) for g in m.groups()]
        out.update(
            dumpcap_received=vals[0], dumpcap_dropped=vals[1], kernel_buffer_drops=vals[2],
            dumpcap_buffer_drops=vals[3], flushed=vals[4], ifdrop=vals[5],
        )  # fmt: skip
    return out


def parse_nfstream(text: str) -> dict:
    last: dict = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and "packets_processed" in line:
            last = json.loads(line)
    return {
        "packets": last.get("packets_processed"),
        "dropped": last.get("packets_dropped_filtered_by_kernel"),
        "ignored": last.get("packets_ignored"),
    }


def parse_tcpreplay(text: str) -> dict:
    out: dict = {}
    m = re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", text)
    if m:
        out.update(sent=int(m.group(1)), seconds=float(m.group(3)))
    m = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", text)
    if m:
        out["achieved_pps"] = float(m.group(1))
    m = re.search(r"Failed packets:\s+(\d+)", text)
    if m:
        out["failed"] = int(m.group(1))
    return out


def one_rate(
    v: VethPair, mix: Path, rate: int, limit: int, tools: tuple[str, ...], tmp: Path
) -> dict:
    flog, nlog = tmp / f"flowdet-{rate}.log", tmp / f"nfstream-{rate}.log"
    fd = nf = None
    rep = None
    try:
        if "flowdet" in tools:
            with open(flog, "wb") as f:
                fd = subprocess.Popen(
                    v.ns(v.rx, PY, "-m", "flowdet.cli", "live", "-i", "vrx", "--format",
                         "jsonl", "-o", str(tmp / f"alerts-{rate}.jsonl"),
                         "--status-interval", "1"),
                    stdout=subprocess.DEVNULL, stderr=f, start_new_session=True, cwd=REPO,
                )  # fmt: skip
            _wait_text(flog, "capturing on", fd, 120)
        if "nfstream" in tools:
            with open(nlog, "wb") as f:
                nf = subprocess.Popen(
                    v.ns(v.rx, PY, "-c", NFSTREAM_RUNNER, "vrx"),
                    stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            _wait_text(nlog, "packets_processed", nf, 60)
        before = v.drops()
        rep = sh(*v.ns(v.tx, "tcpreplay", "-i", "vtx", f"--pps={rate}", f"--limit={limit}",
                       str(mix)), check=False)  # fmt: skip
        if rep.returncode != 0:
            raise RuntimeError(f"tcpreplay failed: {rep.stderr.strip()[-500:]}")
        sent = parse_tcpreplay(rep.stdout + rep.stderr).get("sent", 0)
        # let the tools drain what the kernel buffered: until they have seen every packet
        # sent, or their counts stop moving
        if fd is not None:
            _drain(flog, _flowdet_running_count, sent)
        if nf is not None:
            _drain(nlog, lambda t: parse_nfstream(t)["packets"], sent)
        after = v.drops()
    finally:
        if fd is not None:
            _stop(fd, signal.SIGTERM)
        if nf is not None:
            _stop(nf, signal.SIGINT)
    res: dict = {"rate_pps": rate, "tools": list(tools)}
    res["tcpreplay"] = tr = parse_tcpreplay(rep.stdout + rep.stderr)
    res["veth_drops"] = {k: after[k] - before.get(k, 0) for k in after}
    # "sent" excludes tcpreplay's "failed" packets (frames it could not send); rx_drop on
    # the veth counts frames the stack had no handler for, after packet sockets saw them
    on_wire = tr.get("sent", -1)
    if fd is not None:
        res["flowdet"] = fdr = parse_flowdet(flog.read_text(errors="replace"))
        res["flowdet_kept_up"] = bool(
            fdr.get("dumpcap_dropped", 1) == 0
            and fdr.get("packets") == fdr.get("dumpcap_received")
            and (fdr.get("dumpcap_received") or 0) >= on_wire
        )
    if nf is not None:
        res["nfstream"] = nr = parse_nfstream(nlog.read_text(errors="replace"))
        res["nfstream_kept_up"] = bool(nr.get("packets") is not None and nr.get("dropped") == 0)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="25000,50000,100000,150000,200000,300000")
    ap.add_argument("--limit", type=int, default=1_000_000, help="packets sent per rate")
    ap.add_argument(
        "--tools",
        default="flowdet,nfstream",
        help="comma-separated: flowdet, nfstream (both: side by side in the same run)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    mix = mix_path()
    rates = [int(r) for r in args.rates.split(",")]
    tools = tuple(t for t in ("flowdet", "nfstream") if t in args.tools.split(","))
    if not tools:
        print("--tools: flowdet and/or nfstream", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="flowdet-live-tp-") as t, VethPair() as v:
        for rate in rates:
            res = one_rate(v, mix, rate, args.limit, tools, Path(t))
            print(json.dumps(res), flush=True)
            results.append(res)
    print("\nrate (pps)  achieved   sent       flowdet seen  dumpcap drops  nfstream seen  "
          "nfstream drops  veth drops")  # fmt: skip
    for r in results:
        tr, fd, nf = r["tcpreplay"], r.get("flowdet", {}), r.get("nfstream", {})
        print(
            f"{r['rate_pps']:>10,}  {tr.get('achieved_pps', 0):>9,.0f}  {tr.get('sent', 0):>9,}  "
            f"{fd.get('packets', 0):>12,}  {fd.get('dumpcap_dropped', -1):>13,}  "
            f"{(nf.get('packets') or 0):>13,}  {(nf.get('dropped') or 0):>14,}  "
            f"{sum(r['veth_drops'].values()):>10,}"
        )
    alone = " (alone)" if len(tools) == 1 else " (side by side with the other)"
    if "flowdet" in tools:
        best_fd = max((r["rate_pps"] for r in results if r["flowdet_kept_up"]), default=0)
        print(f"\nflowdet live{alone}: highest rate with zero drops: {best_fd:,} pps")
    if "nfstream" in tools:
        best_nf = max((r["rate_pps"] for r in results if r.get("nfstream_kept_up")), default=0)
        print(f"nfstream live{alone}: highest rate with zero drops: {best_nf:,} pps")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
