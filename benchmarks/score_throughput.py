"""`flowdet score` end to end on the benchmark mix, with `flowdet flows` as the reference.

    .venv/bin/python benchmarks/score_throughput.py [--repeat 3] [--copies 14] [--all-flows]

Both commands run as fresh processes (imports, numba cache load and model load included,
like the peers in docs/ANCHORS.md) on ../shared/bench/make_mix.sh's capture (~1M packets),
output to /dev/null. Reported per command: median wall time, packets/s on wall time and on
CPU time (user + system of that process: less disturbed by other work on a shared
machine), peak RSS; then score/flows ratios and the target (>= 500,000 packets/s).

`score` does everything `flows` does plus prefix checkpoints (8/16/32/64/128 packets,
10/60/300 s: several records per flow), features and signatures for every record, one
model call per block, and reasons for alerts; the ratio shows what that costs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, Run, median_run, mix_path, repeat

TARGET_PPS = 500_000
NFSTREAM_PPS = 340_000  # docs/ANCHORS.md, same machine class
NDPI_PPS = 4_000_000


def count_packets(path: Path) -> int:
    from flowdet.capture import open_capture

    with open_capture(path) as reader:
        return sum(len(b) for b in reader)


def summary_line(cmd: list[str]) -> str:
    """The command's stderr summary line, from one extra, unmeasured run (--summary)."""
    import subprocess

    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


def row(name: str, runs: list[Run], packets: int) -> dict:
    m = median_run(runs)
    cpu = sorted(r.cpu_seconds for r in runs)[len(runs) // 2]
    return {
        "command": name,
        "runs": len(runs),
        "seconds": round(m.seconds, 2),
        "all_seconds": [round(r.seconds, 2) for r in runs],
        "pps_wall": round(packets / m.seconds),
        "pps_cpu": round(packets / cpu),
        "peak_rss_mb": round(max(r.peak_rss_mb for r in runs), 1),
        "returncodes": sorted({r.returncode for r in runs}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--copies", type=int, default=14)
    ap.add_argument("--all-flows", action="store_true", help="score with --all-flows too")
    ap.add_argument("--summary", action="store_true", help="also print score's stderr summary")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()

    mix = mix_path(args.copies)
    packets = count_packets(mix)
    flowdet = str(REPO / ".venv" / "bin" / "flowdet")
    cmds = {
        "flows": [flowdet, "flows", str(mix), "--format", "jsonl", "-o", "/dev/null"],
        "score": [flowdet, "score", str(mix), "--format", "jsonl", "-o", "/dev/null"],
    }
    if args.all_flows:
        cmds["score --all-flows"] = [*cmds["score"], "--all-flows"]
    rows: list[tuple[str, list[Run]]] = [(name, []) for name in cmds]
    for _ in range(args.repeat):  # interleaved, so changes of machine load hit all alike
        for (_name, runs), cmd in zip(rows, cmds.values(), strict=True):
            runs.extend(repeat(cmd, 1, stdout_to_devnull=True))
    result = {
        "input": str(mix),
        "packets": packets,
        "rows": [row(n, r, packets) for n, r in rows],
    }
    by = {r["command"]: r for r in result["rows"]}
    result["score_over_flows_wall"] = round(by["score"]["pps_wall"] / by["flows"]["pps_wall"], 3)
    result["score_over_flows_cpu"] = round(by["score"]["pps_cpu"] / by["flows"]["pps_cpu"], 3)
    result["score_over_nfstream_wall"] = round(by["score"]["pps_wall"] / NFSTREAM_PPS, 2)
    result["target_met_wall"] = by["score"]["pps_wall"] >= TARGET_PPS
    if args.summary:
        result["score_summary"] = summary_line(cmds["score"])
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"input: {mix} ({packets:,} packets)")
    print(f"{'command':<20}{'median s':>10}{'pkts/s wall':>14}{'pkts/s cpu':>13}{'peak RSS':>11}")
    for r in result["rows"]:
        print(
            f"{r['command']:<20}{r['seconds']:>10.2f}{r['pps_wall']:>14,}{r['pps_cpu']:>13,}"
            f"{r['peak_rss_mb']:>8.0f} MB   runs {r['all_seconds']} exit {r['returncodes']}"
        )
    print(
        f"score/flows: {result['score_over_flows_wall']:.2f} (wall), "
        f"{result['score_over_flows_cpu']:.2f} (cpu); score/nfstream (ANCHORS "
        f"{NFSTREAM_PPS:,}/s): {result['score_over_nfstream_wall']:.2f}; target "
        f"{TARGET_PPS:,}/s {'met' if result['target_met_wall'] else 'NOT met'}"
    )
    if args.summary:
        print(f"score summary: {result['score_summary']}")


if __name__ == "__main__":
    main()
