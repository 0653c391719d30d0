"""Capture reader + decoder throughput on the benchmark mix, beside tshark and ndpiReader.

    .venv/bin/python benchmarks/decode.py [--repeat 3] [--copies 14] [--no-tshark]

flowdet runs as a fresh process per repetition (start-up and numba's cache load included,
like the peers); the rate inside the read loop is printed as well. tshark dissects and
prints 9 fields; ndpiReader does flows + DPI. Ratios are flowdet's packets/s over theirs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool (median reported)")
    ap.add_argument("--copies", type=int, default=14, help="mix copies (14 = ~1M packets)")
    ap.add_argument("--mix", type=Path, help="use this capture instead of the mix")
    ap.add_argument("--batch-packets", type=int, default=65536)
    ap.add_argument("--no-tshark", action="store_true", help="skip tshark (about 15 s per run)")
    args = ap.parse_args()

    mix = args.mix or mix_path(args.copies)
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
        f"{info[0]['first_batch_s']:.2f} s (numba cache load)"
    )
    print(f"flowdet status counts: {info[0]['status']}")
    if info[0]["warnings"]:
        print(f"flowdet warnings: {info[0]['warnings']}")


if __name__ == "__main__":
    main()
