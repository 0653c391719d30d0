"""`flowdet flows`: captures in, one record per flow out (thin: parse, run the table, print)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import click

from flowdet.cli_options import F, fields_option, output_option, progress_option
from flowdet.errors import CaptureError, FlowdetError
from flowdet.flows.config import FlowConfig, parse_checkpoints
from flowdet.flows.record import fields_markdown
from flowdet.flows.stream import expand_sources
from flowdet.flows.table import FlowTable
from flowdet.sinks import FLOW_FORMATS, flow_sink

_D = FlowConfig()

SKIP_LABELS = (
    ("NON_IP", "non-IP"),
    ("TRUNCATED", "truncated"),
    ("UNSUPPORTED_LINK", "unsupported link type"),
    ("MALFORMED", "malformed"),
)


class _Progress:
    """One status line on stderr: redrawn in place on a terminal, a plain line every few
    seconds when forced with --progress onto a file or pipe (never carriage-return noise)."""

    def __init__(self, enabled: bool, tty: bool) -> None:
        self.enabled = enabled
        self.tty = tty
        self.last = 0.0
        self.shown = False

    def update(self, name: str, done: int, total: int | None, packets: int, which: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        pct = f"{100 * done / total:5.1f}% " if total else ""
        line = f"{which}{os.path.basename(name)}: {pct}{done / 1e6:,.1f} MB, {packets:,} packets"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
            self.shown = True
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled and self.tty and self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def _config_option(flag: str, name: str, help: str) -> Callable[[F], F]:
    """An option for the FlowConfig field `name`: its default and type are FlowConfig's, so
    the help never shows a default the table does not use."""
    default = getattr(_D, name)
    return click.option(
        flag, name, type=type(default), default=default, show_default=True, help=help
    )


@click.command("flows")
@click.argument("captures", nargs=-1, metavar="CAPTURE...")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FLOW_FORMATS),
    default="csv",
    show_default=True,
    help="csv: scalar fields only; jsonl: all fields (packet sequences, payload prefixes).",
)
@output_option()
@_config_option(
    "--idle-timeout-tcp", "idle_timeout_tcp", "Seconds without packets that end a TCP flow."
)
@_config_option(
    "--idle-timeout",
    "idle_timeout_other",
    "Seconds without packets that end a UDP, ICMP or other flow.",
)
@_config_option(
    "--active-timeout",
    "active_timeout",
    "Emit a record (segment) of a flow that lasts this long, and go on.",
)
@_config_option(
    "--tcp-linger",
    "tcp_linger",
    "Seconds a TCP flow still absorbs packets after FIN both ways or RST.",
)
@_config_option(
    "--max-flows", "max_flows", "Concurrent flows; beyond it the longest-idle are evicted."
)
@_config_option("--gap", "gap_threshold", "Silence (seconds) counted as an idle gap / new burst.")
@_config_option(
    "--payload-bytes",
    "payload_bytes",
    "Payload bytes kept per direction (first 4 payload packets; jsonl fields).",
)
@_config_option(
    "--vlan-key/--no-vlan-key",
    "vlan_in_key",
    "Key flows per VLAN (outermost 802.1Q/802.1ad id), as Suricata does by default.",
)
@click.option(
    "--checkpoints",
    default="",
    metavar="LIST",
    help="Also emit snapshots of live flows, e.g. '8,16,32,64,128,10s,60s,300s' "
    "(N = after N packets, Ts = T seconds after the start). Off by default.",
)
@progress_option()
@fields_option("Print the record fields as a markdown table and exit.")
def flows_command(
    captures: tuple[str, ...],
    fmt: str,
    output: str,
    checkpoints: str,
    progress: bool | None,
    show_fields: bool,
    **table: Any,
) -> int:
    """Turn packet captures into bidirectional flow records, one per flow.

    CAPTURE is a pcap, pcapng or gzip-compressed capture file, '-' for stdin, or a folder
    (every capture under it, recursively, in sorted order). Each capture gets its own flow
    table. src = the initiator (sender of the SYN, else of the first packet).

    A summary goes to stderr: captures, packets read and decoded, skipped packets by reason,
    flows emitted.

    Exit status: 0 on success; 2 if a capture cannot be read. With several captures an
    unreadable one is reported on stderr and skipped, the others are processed, and the
    exit status is 2 at the end.
    """
    if show_fields:
        click.echo(fields_markdown(), nl=False)
        return 0
    if not captures:
        raise FlowdetError("flows: no CAPTURE given (see flowdet flows --help)")
    pk, ps = parse_checkpoints(checkpoints)
    if fmt != "jsonl":
        # payload prefixes are jsonl fields only: CSV runs keep none (no copies per packet
        # and per record; every CSV field is the same)
        table["payload_bytes"] = 0
    # `table` holds the _config_option values, keyed by FlowConfig field
    config = FlowConfig(**table, checkpoint_packets=pk, checkpoint_seconds=ps)
    sources = expand_sources(captures)
    tty = sys.stderr.isatty()
    bar = _Progress(tty if progress is None else progress, tty)
    out: TextIO = sys.stdout if output == "-" else open(output, "w", newline="")  # noqa: SIM115
    try:
        return _run(sources, config, fmt, out, bar)
    finally:
        if out is not sys.stdout:
            out.close()


def _run(sources: list[str], config: FlowConfig, fmt: str, out: TextIO, bar: _Progress) -> int:
    from flowdet.capture import open_capture

    sink = flow_sink(fmt, out)
    table = FlowTable(config)
    failed: list[str] = []
    totals = {"records": 0, "OK": 0, "FRAGMENT": 0}
    skipped = dict.fromkeys([k for k, _ in SKIP_LABELS], 0)
    warnings: list[str] = []
    flows = 0
    for n, src in enumerate(sources, 1):
        which = f"[{n}/{len(sources)}] " if len(sources) > 1 else ""
        try:
            reader = open_capture(src)
        except CaptureError as exc:
            if len(sources) == 1:
                raise
            bar.clear()
            click.echo(f"flowdet: {exc}", err=True)
            failed.append(src)
            continue
        size = None
        if src != "-" and not src.endswith(".gz"):
            try:
                size = os.path.getsize(src)
            except OSError:
                size = None
        with reader:
            for batch in reader:
                flows += sink.write(table.update(batch))
                st = reader.stats
                bar.update(src, st.stream_bytes, size, st.records, which)
            flows += sink.write(table.flush())
            st = reader.stats
        totals["records"] += st.records
        for k in totals:
            if k != "records":
                totals[k] += st.status.get(k, 0)
        for k in skipped:
            skipped[k] += st.status.get(k, 0)
        warnings.extend(f"{os.path.basename(src)}: {w}" for w in st.warnings)
    sink.close()
    bar.clear()
    ts = table.stats
    n_ok = len(sources) - len(failed)
    parts = [f"{n_ok} capture{'s' if n_ok != 1 else ''}"]
    if failed:
        parts[0] += f" ({len(failed)} unreadable)"
    decoded = totals["OK"] + totals["FRAGMENT"]
    parts.append(f"{totals['records']:,} packets read, {decoded:,} decoded")
    skip = [f"{label} {skipped[k]:,}" for k, label in SKIP_LABELS]
    skip.append(f"unattributed fragments {ts.frags_unattributed:,}")
    parts.append("skipped: " + ", ".join(skip))
    parts.append(f"{flows:,} flow records")
    click.echo("flowdet flows: " + "; ".join(parts), err=True)
    for w in warnings[:10]:
        click.echo(f"flowdet: warning: {w}", err=True)
    if len(warnings) > 10:
        click.echo(f"flowdet: ... and {len(warnings) - 10} more warnings", err=True)
    return 2 if failed else 0
