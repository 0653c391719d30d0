"""Measure the recognizers on captures: ``python -m flowdet.signatures --help``.

Flows come from `flowdet.signatures.reference` (tshark), so this measures the signatures
alone, independent of the flows stage. Per flow it prints one tab-separated line to stdout
(capture, client, server, mining yes/no, evidence texts); the summary goes to stderr. With
``--labels`` (mining-real/labels.tsv) it also counts recall and false alarms against them.
"""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from pathlib import Path

import click

from flowdet.signatures.families import inspect
from flowdet.signatures.reference import flow_prefixes


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="labels.tsv (pcap, client_ip, client_port, server_ip, server_port, label, evidence)",
)
@click.option("--quiet", "-q", is_flag=True, help="only the summary")
def main(captures: tuple[Path, ...], labels: Path | None, quiet: bool) -> None:
    """Run every signature over the first payload packets of each TCP flow in CAPTURES
    (files or directories of .pcap/.pcapng) and report what they find."""
    files: list[Path] = []
    for path in captures:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".pcap", ".pcapng"))
        else:
            files.append(path)
    truth: dict[tuple[str, str, int, str, int], tuple[str, str]] = {}
    if labels is not None:
        with labels.open(newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                key = (
                    row["pcap"],
                    row["client_ip"],
                    int(row["client_port"]),
                    row["server_ip"],
                    int(row["server_port"]),
                )
                truth[key] = (row["label"], row.get("evidence") or "")
    counts: Counter[str] = Counter()
    strengths: Counter[str] = Counter()
    spent = 0.0  # seconds inside the recognizers, without tshark
    for pcap in files:
        try:
            flows = flow_prefixes(pcap)
        except Exception as exc:  # a capture tshark cannot read: count it, go on
            counts["captures_unreadable"] += 1
            click.echo(f"skipped {pcap}: {exc}", err=True)
            continue
        counts["captures"] += 1
        for flow in flows:
            t0 = time.perf_counter()
            result = inspect(flow.toserver, flow.toclient)
            spent += time.perf_counter() - t0
            counts["flows"] += 1
            counts["recognizer_errors"] += bool(result.errors)
            mining = result.is_mining
            counts["flows_with_mining_evidence"] += mining
            for ev in result.evidence:
                if ev.family in ("stratum", "monero", "getwork", "sv2"):
                    strengths[f"{ev.family}:{ev.strength}"] += 1
            if labels is not None:
                label, _ = truth.get(flow.key, ("unlabelled", ""))
                counts[f"{label}_{'detected' if mining else 'missed'}"] += 1
            if not quiet:
                texts = " | ".join(e.text for e in result.evidence) or "-"
                click.echo(
                    f"{pcap.name}\t{flow.client_ip}:{flow.client_port}\t"
                    f"{flow.server_ip}:{flow.server_port}\t{'mining' if mining else '-'}\t{texts}"
                )
    click.echo("summary: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())), err=True)
    if counts["flows"]:
        rate = counts["flows"] / spent if spent > 0 else float("inf")
        click.echo(
            f"recognizers: {spent:.3f} s for {counts['flows']} flows ({rate:,.0f} flows/s)",
            err=True,
        )
    if strengths:
        items = sorted(strengths.items())
        click.echo("mining-family evidence: " + ", ".join(f"{k}={v}" for k, v in items), err=True)
    if labels is not None:
        tp, fn = counts["mining_detected"], counts["mining_missed"]
        fp, tn = counts["other_detected"], counts["other_missed"]
        click.echo(
            f"recall {tp}/{tp + fn} mining flows; false alarms {fp}/{fp + tn} other flows",
            err=True,
        )


if __name__ == "__main__":
    sys.exit(main())
