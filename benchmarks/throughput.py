"""`flowdet flows` throughput and peak RSS on the benchmark mix, beside its peers.

    .venv/bin/python benchmarks/throughput.py [--repeat 3] [--scale 10] [--no-peers]

Every tool runs as a whole process on the same file in the same run (start-up included):
- flowdet: the real CLI, `flowdet flows MIX -o /dev/null` (csv, the default, and jsonl);
- tshark: `tshark -n -r MIX -T fields` with 9 fields (dissection only);
- nfstream: NFStreamer(source=MIX, statistical_analysis=True), counting flows;
- ndpiReader: `ndpiReader -q -i MIX` (flows + DPI, C).
Reported: median wall seconds, CPU seconds (user+sys, less disturbed by other work on a
shared machine), packets/s on both, peak RSS (wait4 of that process), and flowdet's
packets/s over each peer's. Targets: >= 1,000,000 packets/s and < 300 MB on the 1M-packet
mix; < 1 GB on the 10x mix (--scale 10: make_mix.sh N=140, ~3.6 GB on disk).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs of flowdet (median); peers: 1")
    ap.add_argument("--peer-repeat", type=int, default=1)
    ap.add_argument("--scale", type=int, default=1, help="mix size: 1 = N 14, 10 = N 140")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    mix = mix_path(copies=14 * args.scale)
    n = packet_count(mix)
    print(f"input: {mix} ({mix.stat().st_size / 1e6:,.0f} MB, {n:,} packets)")
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
        ours = rates[mine]
        print(f"\n{mine} packets/s over each peer's (wall, cpu):")
        for name, (w, c) in rates.items():
            if not name.startswith("flowdet"):
                print(f"  / {name:<24} {ours[0] / w:6.2f}x  {ours[1] / c:6.2f}x")


if __name__ == "__main__":
    main()
