"""`flowdet live`: the click command, thin: parse, build source, pipeline and sinks, run."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TextIO

import click

from flowdet.cli_options import (
    alert_pcap_option,
    fields_option,
    model_option,
    output_option,
    threshold_option,
)
from flowdet.errors import FlowdetError
from flowdet.live.events import live_fields_markdown
from flowdet.live.sinks import LIVE_FORMATS
from flowdet.live.stats import stats_fields_markdown


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """The options of `flowdet live`, carried as one value from the command to the run.

    Field names are the click parameter names: the command builds it from its keyword
    arguments, so the option list is written here once, not again as each function's
    parameters (a frozen value: nothing downstream changes an option)."""

    ifaces: tuple[str, ...]
    read: str | None
    realtime: bool
    speed: float
    bpf: str | None
    fmt: str
    output: str
    on_alert: str | None
    on_alert_timeout: float
    alert_pcap: str | None
    alert_pcap_ring: int
    duration: float | None
    model: str | None
    thresholds: tuple[str, ...]
    tick: float
    status_interval: float
    stats_interval: float
    buffer_mib: int


@click.command("live")
@click.option(
    "-i",
    "--interface",
    "ifaces",
    multiple=True,
    metavar="IFACE",
    help="Capture on this interface (repeatable; see `flowdet interfaces`).",
)
@click.option(
    "--read",
    "read",
    default=None,
    metavar="CAPTURE",
    help="Push a capture file through the live path instead of an interface.",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="With --read: hand packets over at their recorded pace (else at full speed).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="With --read --realtime: play this many times faster than recorded.",
)
@click.option(
    "--bpf",
    "-f",
    default=None,
    metavar="EXPR",
    help="Capture filter (libpcap syntax), e.g. 'tcp and not port 22'.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(LIVE_FORMATS),
    default="table",
    show_default=True,
    help="table: lines for people; jsonl: EVE-like records.",
)
@output_option("Write records here instead of stdout (flushed per record).")
@click.option(
    "--on-alert",
    "on_alert",
    default=None,
    metavar="CMD",
    help="Shell command run per alert and alert update, the record as JSON on stdin.",
)
@click.option(
    "--on-alert-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds before an --on-alert command is killed.",
)
@alert_pcap_option("Write each alerted flow's packets to DIR, appending while it is open.")
@click.option(
    "--alert-pcap-ring",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    metavar="MB",
    help="Recent packets kept for --alert-pcap (MB of packet bytes).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="Stop after S seconds.",
)
@model_option()
@threshold_option()
@click.option(
    "--tick",
    type=click.FloatRange(min=0.05, max=10),
    default=0.5,
    show_default=True,
    metavar="S",
    help="Clock tick: time checkpoints and idle timeouts fire on it.",
)
@click.option(
    "--status-interval",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="S",
    help="Status line on stderr every S s (0: off).",
)
@click.option(
    "--stats-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="S",
    help="With --format jsonl: a 'stats' record (capture, decode, drops, alerts) every S s "
    "and one at exit (0: only the one at exit).",
)
@click.option(
    "--buffer-mib",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="dumpcap's kernel capture buffer (MiB).",
)
@fields_option(
    "Print the fields live adds to `flowdet score` records, and those of its stats "
    "records, and exit."
)
def live_command(show_fields: bool, **options: Any) -> int:
    """Score flows on a live interface while their connections are open.

    dumpcap captures IFACE (pcapng on a pipe) and flowdet decodes it with the reader used
    for files. Every open flow is scored at prefix checkpoints (8/16/32/64/128 packets,
    10/60/300 s; a clock tick fires time checkpoints and idle timeouts on a quiet link).
    An alert is written once, at the earliest checkpoint over the threshold; an
    "alert_update" record follows if its label changes or its score rises; a "flow_end"
    record when an alerted flow ends. Records are `flowdet score` records plus
    verdict_stage, alert_event, checkpoint and emitted (`--fields`). With --format jsonl,
    "stats" records (packets read, decoded, skipped, scored; dumpcap's and the
    interface's drops; time scoring was behind; flows; alerts) come every
    --stats-interval seconds and once at exit.

    A status line goes to stderr every few seconds; Ctrl-C or SIGTERM stops dumpcap,
    writes the final records of open flows and a summary, and exits 0. A missing
    interface, no permission to capture or dumpcap dying: one line, exit 2.

    --read CAPTURE replays a file through the same path (--realtime: at its recorded pace).
    """
    if show_fields:
        click.echo(live_fields_markdown(), nl=False)
        click.echo("\n`stats` records (--format jsonl):\n")
        click.echo(stats_fields_markdown(), nl=False)
        return 0
    opts = LiveSettings(**options)
    if bool(opts.ifaces) == bool(opts.read):
        raise FlowdetError("live: give -i IFACE (one or more) or --read CAPTURE, not both")
    if opts.read and opts.bpf:
        raise FlowdetError("live: --bpf applies to interfaces, not to --read")
    if opts.realtime and not opts.read:
        raise FlowdetError("live: --realtime applies to --read")
    import threading

    from flowdet.live.loop import stop_on_signals

    stop = threading.Event()
    with stop_on_signals(stop):
        return _run_live(opts, stop)


def _run_live(opts: LiveSettings, stop: Any) -> int:
    from flowdet.alerts import model_name
    from flowdet.live.dumpcap import DumpcapCapture
    from flowdet.live.events import LivePipeline
    from flowdet.live.loop import DumpcapSource, LiveLoop, ReplaySource, Sinks
    from flowdet.live.sinks import AlertCommand, AlertPcaps, JsonlLiveSink, TerminalLiveSink
    from flowdet.score import load_detector
    from flowdet.verdicts import parse_thresholds

    if opts.ifaces:
        from flowdet.interfaces import check_can_capture, find_dumpcap

        # fail in a second on a missing interface or no permission, before the model loads
        dumpcap = find_dumpcap()
        for iface in dict.fromkeys(opts.ifaces):
            check_can_capture(iface, dumpcap, prefix="live: ")
    detector = load_detector(opts.model)
    thr = parse_thresholds(opts.thresholds, tuple(detector.classes))
    mname = model_name(getattr(detector, "card", {}))
    source: Any
    if opts.read:
        source = ReplaySource(opts.read, realtime=opts.realtime, speed=opts.speed)
    else:
        source = DumpcapSource(
            DumpcapCapture(list(opts.ifaces), opts.bpf, buffer_mib=opts.buffer_mib)
        )
    from flowdet.live.warmup import warm_up

    warm_up(detector, thr)  # compile and load everything before the first real packet
    pipe = LivePipeline(detector, thresholds=thr, source=source.name)
    out: TextIO = sys.stdout if opts.output == "-" else open(opts.output, "w")  # noqa: SIM115
    writer = JsonlLiveSink(out) if opts.fmt == "jsonl" else TerminalLiveSink(out, mname)
    sinks = Sinks([writer], mname)
    if opts.on_alert:
        sinks.command = AlertCommand(opts.on_alert, timeout=opts.on_alert_timeout)
    if opts.alert_pcap:
        sinks.pcaps = AlertPcaps(opts.alert_pcap, ring_bytes=opts.alert_pcap_ring << 20)
    loop = LiveLoop(
        source,
        pipe,
        sinks,
        tick=opts.tick,
        status_every=opts.status_interval,
        stats_every=opts.stats_interval,
        duration=opts.duration,
        # live: wait up to 50 ms for a few thousand packets before scoring (cheaper per
        # packet); a replay is paced by the file, or fills the queue at full speed anyway
        linger=0.05 if opts.ifaces else 0.0,
    )
    try:
        rc = loop.run()
    finally:
        if out is not sys.stdout:
            out.close()
    for line in loop.summary():
        click.echo(f"flowdet live: {line}", err=True)
    return rc
