"""`flowdet flows` throughput and peak RSS on the benchmark mix, beside its peers.

    .venv/bin/python benchmarks/throughput.py [--repeat 3] [--scale 10] [--no-peers]
    .venv/bin/python benchmarks/throughput.py --compare-numpy   # why the flow kernel is numba

Every tool runs as a whole process on the same file in the same run (start-up included):
- flowdet: the real CLI, `flowdet flows MIX -o /dev/null` (csv, the default, and jsonl);
- tshark: `tshark -n -r MIX -T fields` with 9 fields (dissection only);
- nfstream: NFStreamer(source=MIX, statistical_analysis=True), counting flows;
- ndpiReader: `ndpiReader -q -i MIX` (flows + DPI, C).
Reported: median wall seconds, CPU seconds (user+sys, less disturbed by other work on a
shared machine), packets/s on both, peak RSS (wait4 of that process), and flowdet's
packets/s over each peer's. Targets: >= 1,000,000 packets/s and < 300 MB on the 1M-packet
mix; < 1 GB on the 10x mix (--scale 10: make_mix.sh N=140, ~3.6 GB on disk).

--compare-numpy times FlowTable.update (every statistic, timeouts, sequences, payload
prefixes, state across batches) against a numpy-only meter of a small subset (per-direction
packet and byte counts, flow inter-arrival min/max/mean/std, first-32 packet sizes) on the
same batches with no state across batches and no flow splitting. Measured (2 cores, shared):
FlowTable 0.24 s CPU per 1M mix packets (0.32-0.37 before the compiled key pass), the
numpy subset 0.13-0.14 s. The subset is
cheaper, but it is a fraction of the work and has no way to end a flow on FIN and start the
next one inside a batch, fire events in time order, or keep sequences and payload across
batches; each further statistic costs numpy another sort or bincount pass, while the
compiled loop touches one state row per packet. Neither is the bottleneck of the command
(reading and decoding the capture, and writing records, cost more).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Run, median, mix_path, repeat

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
NFSTREAM = (
    "import sys\n"
    "from nfstream import NFStreamer\n"
    "n = sum(1 for _ in NFStreamer(source=sys.argv[1], statistical_analysis=True))\n"
    "print(n)\n"
)


def packet_count(path: Path) -> int:
    from flowdet.capture import open_capture

    with open_capture(str(path)) as reader:
        for _ in reader:
            pass
        return reader.stats.records


def kernels_state() -> str:
    """aot (the ahead-of-time build is current) or jit (numba at run time: slower start-up)."""
    from flowdet.capture.jit import kernels_in_use

    state = kernels_in_use()
    return state if state == "aot" else f"{state} (make kernels builds the ahead-of-time module)"


def commands(mix: Path) -> list[tuple[str, list[str]]]:
    flowdet = str(Path(sys.executable).parent / "flowdet")
    out = [
        ("flowdet flows (csv)", [flowdet, "flows", str(mix), "-o", "/dev/null"]),
        (
            "flowdet flows (jsonl)",
            [flowdet, "flows", "--format", "jsonl", str(mix), "-o", "/dev/null"],
        ),
    ]
    return out


def peers(mix: Path) -> list[tuple[str, list[str]]]:
    out = []
    if shutil.which("ndpiReader"):
        out.append(("ndpiReader -i", ["ndpiReader", "-q", "-i", str(mix)]))
    try:
        import nfstream  # noqa: F401

        out.append(("nfstream (statistical)", [sys.executable, "-c", NFSTREAM, str(mix)]))
    except ImportError:
        print("nfstream not installed: skipped", file=sys.stderr)
    if shutil.which("tshark"):
        fields = [a for f in TSHARK_FIELDS for a in ("-e", f)]
        out.append(
            ("tshark -T fields (9)", ["tshark", "-n", "-r", str(mix), "-T", "fields", *fields])
        )
    return out


def numpy_subset(batch) -> int:
    """Per-batch numpy meter of a subset of the flow statistics (see --compare-numpy)."""
    import numpy as np

    from flowdet.capture.batch import Status
    from flowdet.flows.keys import canonical_keys, unique_keys

    rows = np.flatnonzero(batch.status == Status.OK)
    key, src_a = canonical_keys(batch, rows)
    _, inv = unique_keys(key)
    u = int(inv.max()) + 1 if inv.size else 0
    ts = batch.ts_ns[rows]
    size = batch.ip_len[rows].astype(np.int64)
    d = (~src_a).astype(np.int64)  # direction relative to endpoint a (orientation omitted)
    pk = np.bincount(inv * 2 + d, minlength=2 * u)
    by = np.bincount(inv * 2 + d, weights=size, minlength=2 * u)
    order = np.lexsort((ts, inv))
    g, t = inv[order], ts[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    iat = np.diff(t, prepend=t[:1]).astype(np.float64)
    iat[starts] = 0.0
    n = np.diff(np.r_[starts, g.size])
    mean = np.add.reduceat(iat, starts) / np.maximum(n - 1, 1)
    sq = np.add.reduceat(iat * iat, starts) / np.maximum(n - 1, 1)
    std = np.sqrt(np.maximum(sq - mean * mean, 0))
    lo = np.minimum.reduceat(
        np.where(np.arange(g.size) == np.repeat(starts, n), np.inf, iat), starts
    )
    hi = np.maximum.reduceat(iat, starts)
    rank = np.arange(g.size) - np.repeat(starts, n)
    first = np.zeros((u, 32), np.int64)
    keep = rank < 32
    first[g[keep], rank[keep]] = size[order][keep]
    return int(pk.sum() + by.size + std.size + lo.size + hi.size + first.shape[0])


def compare_numpy(mix: Path) -> None:
    import time

    from flowdet.capture import open_capture
    from flowdet.flows import FlowTable

    with open_capture(str(mix)) as reader:
        batches = list(reader)
    n = sum(len(b) for b in batches)
    for rep in range(3):
        table = FlowTable()
        t0 = time.process_time()
        for b in batches:
            table.update(b)
        table.flush()
        t1 = time.process_time()
        for b in batches:
            numpy_subset(b)
        t2 = time.process_time()
        print(
            f"run {rep}: FlowTable (all fields) {t1 - t0:.2f} s cpu = {n / (t1 - t0):,.0f} "
            f"pkt/s;  numpy subset {t2 - t1:.2f} s cpu = {n / (t2 - t1):,.0f} pkt/s"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs of flowdet (median); peers: 1")
    ap.add_argument("--peer-repeat", type=int, default=1)
    ap.add_argument("--scale", type=int, default=1, help="mix size: 1 = N 14, 10 = N 140")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--compare-numpy", action="store_true")
    args = ap.parse_args()
    mix = mix_path(copies=14 * args.scale)
    if args.compare_numpy:
        compare_numpy(mix)
        return
    n = packet_count(mix)
    print(f"input: {mix} ({mix.stat().st_size / 1e6:,.0f} MB, {n:,} packets)")
    print(f"flowdet kernels: {kernels_state()}")
    results: list[tuple[str, list[Run]]] = []
    for name, cmd in commands(mix):
        results.append((name, repeat(cmd, args.repeat, stdout_to_devnull=True)))
    if not args.no_peers:
        for name, cmd in peers(mix):
            results.append((name, repeat(cmd, args.peer_repeat, stdout_to_devnull=True)))
    print(
        f"{'tool':<24} {'wall s':>7} {'cpu s':>7} {'pkt/s wall':>12} {'pkt/s cpu':>12} "
        f"{'peak MB':>8}  ok"
    )
    rates: dict[str, tuple[float, float]] = {}
    for name, runs in results:
        wall = median([r.seconds for r in runs])
        cpu = median([r.cpu_seconds for r in runs])
        rss = max(r.peak_rss_mb for r in runs)
        ok = all(r.returncode == 0 for r in runs)
        rates[name] = (n / wall, n / cpu)
        print(
            f"{name:<24} {wall:7.2f} {cpu:7.2f} {n / wall:12,.0f} {n / cpu:12,.0f} "
            f"{rss:8.0f}  {'yes' if ok else 'FAILED'}"
        )
    for mine in ("flowdet flows (csv)", "flowdet flows (jsonl)"):
        if args.no_peers:
            break
        ours = rates[mine]
        print(f"\n{mine} packets/s over each peer's (wall, cpu):")
        for name, (w, c) in rates.items():
            if not name.startswith("flowdet"):
                print(f"  / {name:<24} {ours[0] / w:6.2f}x  {ours[1] / c:6.2f}x")


if __name__ == "__main__":
    main()
