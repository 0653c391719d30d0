"""Capture reader + decoder throughput on the benchmark mix, beside tshark and ndpiReader.

    .venv/bin/python benchmarks/decode.py [--repeat 3] [--copies 14] [--no-tshark]
    .venv/bin/python benchmarks/decode.py --compare-numpy   # why the decoder is numba

--compare-numpy times the compiled header decoder against a vectorised numpy decoder of the
common path only (Ethernet, one VLAN tag, IPv4/IPv6 without extension headers, TCP/UDP
ports and flags) on the same batches: numpy does less work and is still slower.

flowdet runs as a fresh process per repetition (start-up included, like the peers; with
the kernels built ahead of time by `make kernels`, numba is not loaded at all); the rate
inside the read loop is printed as well. tshark dissects and
prints 9 fields; ndpiReader does flows + DPI. Ratios are flowdet's packets/s over theirs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from flowdet.capture.batch import PacketBatch
from flowdet.capture.jit import kernels_in_use

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import measure, median_run, mix_path, repeat

READER = """
import json, sys, time
t0 = time.perf_counter()
from flowdet.capture import open_capture
t1 = time.perf_counter()
n = 0
t_first = None
with open_capture(sys.argv[1], batch_packets=int(sys.argv[2])) as reader:
    for batch in reader:
        if t_first is None:
            t_first, n_first = time.perf_counter(), len(batch)
        n += len(batch)
t2 = time.perf_counter()
print(json.dumps({"packets": n, "import_s": t1 - t0, "first_batch_s": t_first - t1,
                  "steady_pps": (n - n_first) / (t2 - t_first),
                  "status": reader.stats.status, "warnings": reader.stats.warnings}))
"""

TSHARK_FIELDS = [
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
]


def numpy_common_path(batch) -> dict[str, np.ndarray]:
    """The common-path subset of the header decode, vectorised with numpy gathers."""
    d = batch.data
    o = batch.rec_off.astype(np.int64)
    cap = batch.caplen.astype(np.int64)

    def u8(off: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return np.where(ok, d[np.where(ok, o + off, 0)], 0).astype(np.int64)

    def be16(off: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return (u8(off, ok) << 8) | u8(off + 1, ok)

    def be32(off: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return (be16(off, ok) << 16) | be16(off + 2, ok)

    eth = (batch.linktype == 1) & (cap >= 14)
    zero = np.zeros_like(o)
    et = be16(zero + 12, eth)
    vlan = eth & (et == 0x8100) & (cap >= 18)
    l3 = np.where(vlan, 18, 14)
    et = np.where(vlan, be16(zero + 16, vlan), et)
    v4 = eth & (et == 0x0800) & (cap >= l3 + 20)
    v6 = eth & (et == 0x86DD) & (cap >= l3 + 40)
    ihl = (u8(l3, v4) & 15) * 4
    proto = np.where(v4, u8(l3 + 9, v4), u8(l3 + 6, v6))
    ip_len = np.where(v4, be16(l3 + 2, v4), be16(l3 + 4, v6) + 40)
    src_lo = np.where(v4, be32(l3 + 12, v4), (be32(l3 + 16, v6) << 32) | be32(l3 + 20, v6))
    dst_lo = np.where(v4, be32(l3 + 16, v4), (be32(l3 + 32, v6) << 32) | be32(l3 + 36, v6))
    src_hi = (be32(l3 + 8, v6) << 32) | be32(l3 + 12, v6)
    dst_hi = (be32(l3 + 24, v6) << 32) | be32(l3 + 28, v6)
    l4 = np.where(v4, l3 + ihl, l3 + 40)
    tcp = (v4 | v6) & (proto == 6) & (cap >= l4 + 20)
    udp = (v4 | v6) & (proto == 17) & (cap >= l4 + 8)
    ports = tcp | udp
    doff = (u8(l4 + 12, tcp) >> 4) * 4
    hdr = np.where(tcp, doff, np.where(udp, 8, 0))
    return {
        "src_hi": src_hi,
        "src_lo": src_lo,
        "dst_hi": dst_hi,
        "dst_lo": dst_lo,
        "sport": be16(l4, ports),
        "dport": be16(l4 + 2, ports),
        "flags": u8(l4 + 13, tcp),
        "seq": be32(l4 + 4, tcp),
        "payload_len": np.maximum(ip_len - (l4 - l3) - hdr, 0),
    }


def compare_numpy(mix: Path, batch_packets: int) -> None:
    from flowdet.capture import open_capture
    from flowdet.capture.decode import decode_into

    warm = PacketBatch.empty(1, data=np.zeros(64, dtype=np.uint8))
    decode_into(warm)  # load the compiled kernel before timing
    numpy_common_path(warm)
    t_numba = t_numpy = 0.0
    n = same = 0
    with open_capture(mix, batch_packets=batch_packets) as reader:
        for batch in reader:
            fresh = PacketBatch.empty(len(batch), data=batch.data)
            for name in ("rec_off", "caplen", "wirelen", "linktype"):
                getattr(fresh, name)[:] = getattr(batch, name)
            t0 = time.perf_counter()
            decode_into(fresh)
            t1 = time.perf_counter()
            cols = numpy_common_path(batch)
            t2 = time.perf_counter()
            t_numba += t1 - t0
            t_numpy += t2 - t1
            n += len(batch)
            same += int((cols["sport"] == fresh.sport).sum())
    print(f"{n:,} packets: numba decode {n / t_numba:,.0f} packets/s (all link types, full")
    print(f"  header chains); numpy common path only {n / t_numpy:,.0f} packets/s")
    print(f"  numba is {t_numpy / t_numba:.1f}x faster; sport agrees on {same / n:.2%} of packets")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool (median reported)")
    ap.add_argument("--copies", type=int, default=14, help="mix copies (14 = ~1M packets)")
    ap.add_argument("--mix", type=Path, help="use this capture instead of the mix")
    ap.add_argument("--batch-packets", type=int, default=65536)
    ap.add_argument("--no-tshark", action="store_true", help="skip tshark (about 15 s per run)")
    ap.add_argument("--compare-numpy", action="store_true", help="numba vs numpy decode only")
    args = ap.parse_args()

    mix = args.mix or mix_path(args.copies)
    if args.compare_numpy:
        compare_numpy(mix, args.batch_packets)
        return
    size_mb = mix.stat().st_size / 1e6
    py = sys.executable
    cmd = [py, "-c", READER, str(mix), str(args.batch_packets)]
    warm = measure(cmd)  # compiles numba's cache on a fresh checkout; not reported
    if warm.returncode != 0:
        raise SystemExit("flowdet reader failed on the mix")
    runs = repeat(cmd, args.repeat)
    info = [json.loads(r.stdout) for r in runs]
    packets = info[0]["packets"]
    best = median_run(runs)
    rows = [("flowdet open_capture", best)]

    tshark = shutil.which("tshark")
    if tshark and not args.no_tshark:
        tcmd = [tshark, "-r", str(mix), "-n", "-T", "fields"]
        tcmd += [x for f in TSHARK_FIELDS for x in ("-e", f)]
        rows.append(("tshark -T fields (9)", median_run(repeat(tcmd, 1, stdout_to_devnull=True))))
    ndpi = shutil.which("ndpiReader")
    if ndpi:
        ncmd = [ndpi, "-i", str(mix), "-q"]
        rows.append(
            ("ndpiReader -q", median_run(repeat(ncmd, args.repeat, stdout_to_devnull=True)))
        )

    print(f"input: {mix} ({packets:,} packets, {size_mb:.0f} MB); median of {args.repeat} runs")
    head = ("tool", "wall s", "cpu s", "pkts/s wall", "pkts/s cpu", "RSS MB", "x wall", "x cpu")
    print(f"{head[0]:<22}" + "".join(f"{h:>12}" for h in head[1:]))
    for name, r in rows:
        print(
            f"{name:<22}{r.seconds:>12.2f}{r.cpu_seconds:>12.2f}"
            f"{packets / r.seconds:>12,.0f}{packets / r.cpu_seconds:>12,.0f}{r.peak_rss_mb:>12.0f}"
            f"{r.seconds / best.seconds:>12.2f}{r.cpu_seconds / best.cpu_seconds:>12.2f}"
        )
    print("x = the tool's time / flowdet's (above 1: flowdet is faster)")
    steady = sorted(i["steady_pps"] for i in info)
    print(
        f"flowdet after the first batch: {', '.join(f'{v:,.0f}' for v in steady)} packets/s; "
        f"import {info[0]['import_s']:.2f} s, first batch after "
        f"{info[0]['first_batch_s']:.2f} s (kernels: {kernels_in_use()})"
    )
    print(f"flowdet status counts: {info[0]['status']}")
    if info[0]["warnings"]:
        print(f"flowdet warnings: {info[0]['warnings']}")


if __name__ == "__main__":
    main()
