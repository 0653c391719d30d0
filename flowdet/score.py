"""`flowdet score`: captures in, alerts out (the chain of flowdet.pipeline plus sinks).

Verdict rules live in flowdet.verdicts, reason sentences in flowdet.reasons, output formats
and per-alert captures in flowdet.alerts; this module runs captures (in parallel processes
with --jobs), writes the results in input order and sets the exit code:
0 nothing found, 1 alerts raised, 2 an error (a capture that cannot be read, a model that
cannot be used, a bad option).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

import click

from flowdet.alerts import (
    ALERT_FORMATS,
    Extracted,
    alert_sink,
    extract_alert_pcaps,
    fields_markdown,
    model_name,
)
from flowdet.cli_options import (
    alert_pcap_option,
    fields_option,
    model_option,
    output_option,
    progress_option,
    threshold_option,
)
from flowdet.errors import CaptureError, FlowdetError, ModelError
from flowdet.flows.config import FlowConfig
from flowdet.pipeline import Featurizer, ScoreStats, ScoringPipeline, Verdict
from flowdet.verdicts import parse_thresholds

DetectorLoader = Callable[[str | None], Any]


def load_detector(path: str | None) -> Any:
    """The real Detector (flowdet.model); ModelError when missing, corrupt or incompatible."""
    try:
        from flowdet.model import Detector
    except ImportError as exc:  # the model stage is not installed in this checkout
        raise ModelError(f"cannot load a model: {exc}") from None
    return Detector.load(path)


@dataclass(slots=True)
class ScoreOptions:
    thresholds: dict[str, float] = field(default_factory=dict)
    all_flows: bool = False
    alert_pcap: str | None = None
    config: FlowConfig | None = None


@dataclass(slots=True)
class CaptureResult:
    source: str
    verdicts: list[Verdict] = field(default_factory=list)
    stats: ScoreStats = field(default_factory=ScoreStats)
    packets: int = 0
    decoded: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    extracted: list[Extracted] = field(default_factory=list)
    error: str | None = None


class Progress:
    """One status line on stderr while a capture is scored: redrawn in place on a terminal,
    a plain line every 5 s otherwise; never on stdout, cleared before the summary."""

    def __init__(self, enabled: bool, tty: bool) -> None:
        self.enabled, self.tty = enabled, tty
        self.last = 0.0
        self.shown = False

    def update(self, name: str, done: int, total: int | None, packets: int, alerts: int) -> None:
        import time

        now = time.monotonic()
        if not self.enabled or now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        pct = f"{100 * done / total:5.1f}% " if total else ""
        line = f"{os.path.basename(name)}: {pct}{packets:,} packets, {alerts:,} alerts"
        sys.stderr.write(("\r\x1b[K" + line) if self.tty else (line + "\n"))
        sys.stderr.flush()
        self.shown = self.tty

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def score_capture(
    source: str,
    detector: Any,
    opts: ScoreOptions,
    featurize: Featurizer | None = None,
    on_verdicts: Callable[[list[Verdict]], None] | None = None,
    progress: Progress | None = None,
) -> CaptureResult:
    """Score one capture. Verdicts go to `on_verdicts` as they come (streaming) or, without
    it, into the result. Alerts are kept for --alert-pcap either way."""
    from flowdet.capture import open_capture

    res = CaptureResult(source)
    try:
        reader = open_capture(source)
    except CaptureError as exc:
        res.error = str(exc)
        return res
    pipe = ScoringPipeline(
        detector,
        thresholds=opts.thresholds,
        config=opts.config,
        featurize=featurize,
        all_flows=opts.all_flows,
        source=os.path.basename(source) if source != "-" else "stdin",
    )
    alerts: list[Verdict] = []

    def emit(vs: list[Verdict]) -> None:
        if not vs:
            return
        if opts.alert_pcap:
            alerts.extend(v for v in vs if v.is_alert)
        if on_verdicts is not None:
            on_verdicts(vs)
        else:
            res.verdicts.extend(vs)

    size = None
    if progress is not None and source != "-" and not source.endswith(".gz"):
        with contextlib.suppress(OSError):
            size = os.path.getsize(source)
    with reader:
        for batch in reader:
            emit(pipe.feed(batch))
            if progress is not None:
                st = reader.stats
                n_alerts = sum(pipe.stats.alerts.values())
                progress.update(source, st.stream_bytes, size, st.records, n_alerts)
        emit(pipe.flush())
        st = reader.stats
    if progress is not None:
        progress.clear()
    res.stats = pipe.stats
    res.packets = st.records
    res.decoded = st.status.get("OK", 0) + st.status.get("FRAGMENT", 0)
    res.skipped = res.packets - res.decoded
    res.warnings = list(st.warnings)
    if opts.alert_pcap and alerts:
        if source == "-":
            res.warnings.append("--alert-pcap needs a capture file, not stdin: nothing written")
        else:
            try:
                res.extracted = extract_alert_pcaps(source, alerts, opts.alert_pcap)
            except OSError as exc:
                raise FlowdetError(
                    f"--alert-pcap {opts.alert_pcap}: {exc.strerror or exc}"
                ) from None
    return res


def _worker(
    sources: list[str],
    model: str | None,
    loader: DetectorLoader,
    featurize: Featurizer | None,
    opts: ScoreOptions,
) -> list[CaptureResult]:
    """One task of --jobs: a run of captures, the model loaded once for all of them."""
    detector = loader(model)
    return [score_capture(s, detector, opts, featurize) for s in sources]


def _chunks(sources: Sequence[str], jobs: int) -> list[list[str]]:
    """Consecutive runs of captures, about 4 per worker: few model loads, and a slow
    capture still leaves the other workers something to do."""
    n = max(1, -(-len(sources) // (4 * jobs)))
    return [list(sources[i : i + n]) for i in range(0, len(sources), n)]


def run_score(
    sources: Sequence[str],
    model: str | None,
    opts: ScoreOptions,
    fmt: str,
    out: TextIO,
    *,
    jobs: int = 1,
    loader: DetectorLoader = load_detector,
    featurize: Featurizer | None = None,
    threshold_specs: Sequence[str] = (),
    err: TextIO | None = None,
    progress: Progress | None = None,
) -> int:
    """Score captures and write alerts; return the exit code (0 clean, 1 alerts, 2 error)."""
    err = err or sys.stderr
    detector = loader(model)
    opts.thresholds = parse_thresholds(threshold_specs, tuple(detector.classes))
    sink = alert_sink(fmt, out, tuple(detector.classes), model_name(getattr(detector, "card", {})))
    results: list[CaptureResult] = []
    if jobs > 1 and len(sources) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(jobs, len(sources)), mp_context=ctx) as ex:
            futs = [
                ex.submit(_worker, chunk, model, loader, featurize, opts)
                for chunk in _chunks(sources, jobs)
            ]
            for fut in futs:  # input order, whatever order they finish in
                for res in fut.result():
                    sink.write(res.verdicts)
                    res.verdicts = []
                    results.append(res)
    else:
        for s in sources:
            res = score_capture(
                s, detector, opts, featurize, on_verdicts=sink.write, progress=progress
            )
            results.append(res)
    sink.close()
    return _summary(results, opts, err)


def _n(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _summary(results: list[CaptureResult], opts: ScoreOptions, err: TextIO) -> int:
    failed = [r for r in results if r.error]
    if len(results) == 1 and failed:
        raise CaptureError(failed[0].error or "unreadable capture")
    for r in failed:
        err.write(f"flowdet: {r.error}\n")
    ok = [r for r in results if not r.error]
    alerts: dict[str, int] = {}
    for r in ok:
        for k, n in r.stats.alerts.items():
            alerts[k] = alerts.get(k, 0) + n
    n_alerts = sum(alerts.values())
    parts = [f"{len(ok)} capture{'s' if len(ok) != 1 else ''}"]
    if failed:
        parts[0] += f" ({len(failed)} unreadable)"
    packets = sum(r.packets for r in ok)
    skipped = sum(r.skipped for r in ok)
    parts.append(f"{packets:,} packets ({skipped:,} not decoded)")
    parts.append(
        f"{_n(sum(r.stats.flows for r in ok), 'flow')}, "
        f"{sum(r.stats.records for r in ok):,} records ({sum(r.stats.featurized for r in ok):,} "
        "given to the model)"
    )
    if alerts:
        parts.append("alerts: " + ", ".join(f"{k} {n:,}" for k, n in sorted(alerts.items())))
    else:
        parts.append("no alerts")
    retracted = sum(r.stats.retracted for r in ok)
    if retracted:
        parts.append(f"{retracted:,} early threshold crossings not confirmed by the full flow")
    sig_err = sum(r.stats.signature_errors for r in ok)
    if sig_err:
        parts.append(f"{sig_err:,} records where a signature recognizer failed")
    err.write("flowdet score: " + "; ".join(parts) + "\n")
    extracted = [e for r in ok for e in r.extracted]
    if opts.alert_pcap and extracted:
        short = [e for e in extracted if e.packets != e.expected]
        err.write(
            f"flowdet score: wrote {len(extracted)} alert capture"
            f"{'s' if len(extracted) != 1 else ''} to {opts.alert_pcap}\n"
        )
        for e in short:
            err.write(
                f"flowdet: warning: {os.path.basename(e.path)}: {e.packets} packets written, "
                f"the flow record counts {e.expected}\n"
            )
    warnings = [f"{os.path.basename(r.source)}: {w}" for r in ok for w in r.warnings]
    for w in warnings[:10]:
        err.write(f"flowdet: warning: {w}\n")
    if len(warnings) > 10:
        err.write(f"flowdet: ... and {len(warnings) - 10} more warnings\n")
    err.flush()
    if failed:
        return 2
    return 1 if n_alerts else 0


@click.command("score")
@click.argument("captures", nargs=-1, metavar="CAPTURE...")
@model_option()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ALERT_FORMATS),
    default="table",
    show_default=True,
    help="table: for people, sorted by score; jsonl: EVE-like records; csv: flat columns.",
)
@output_option()
@click.option("--all-flows", is_flag=True, help="One record per flow, benign ones too.")
@threshold_option()
@alert_pcap_option(
    "Write each alerted flow's packets to DIR/<capture>_flow<id>_<label>_<cid>.pcapng."
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Score this many captures in parallel processes.",
)
@progress_option(
    "Progress line on stderr [default: only when stderr is a terminal; not with --jobs]."
)
@fields_option("Print the alert fields and exit.")
def score_command(
    captures: tuple[str, ...],
    model: str | None,
    fmt: str,
    output: str,
    all_flows: bool,
    thresholds: tuple[str, ...],
    alert_pcap: str | None,
    jobs: int,
    progress: bool | None,
    show_fields: bool,
) -> int:
    """Score packet captures with the detector and report mining and SSH-tunnel flows.

    CAPTURE is a pcap, pcapng or gzip-compressed capture file, '-' for stdin, or a folder
    (every capture under it, recursively). Each capture gets its own flow table; flow ids
    count from 1 per capture, as `flowdet flows` on that file alone.

    Each flow is scored at prefix checkpoints (8/16/32/64/128 packets, 10/60/300 s) and at
    its end; the label comes from the end, and the alert says when the verdict was first
    reached. Reasons name what to look for in Wireshark. Summary and warnings go to stderr.

    Exit status: 0 no alerts, 1 alerts raised, 2 error (unreadable capture, unusable model,
    bad option). With several captures an unreadable one is reported and skipped, and the
    exit status is 2 at the end.
    """
    if show_fields:
        click.echo(fields_markdown(), nl=False)
        return 0
    if not captures:
        raise FlowdetError("score: no CAPTURE given (see flowdet score --help)")
    from flowdet.flows.stream import expand_sources

    sources = expand_sources(captures)
    if "-" in sources and jobs > 1:
        raise FlowdetError("score: --jobs cannot read stdin ('-')")
    opts = ScoreOptions(all_flows=all_flows, alert_pcap=alert_pcap)
    out: TextIO = sys.stdout if output == "-" else open(output, "w", newline="")  # noqa: SIM115
    try:
        tty = sys.stderr.isatty()
        bar = Progress(tty if progress is None else progress, tty)
        return run_score(
            sources, model, opts, fmt, out, jobs=jobs, threshold_specs=thresholds, progress=bar
        )
    finally:
        if out is not sys.stdout:
            out.close()
