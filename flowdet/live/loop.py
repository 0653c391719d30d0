"""The live loop: an endless capture source -> scoring pipeline -> alert sinks, with a clock.

A reader thread decodes the source (dumpcap's pcapng pipe, or a capture replayed) with the
same reader as files and hands batches over a small bounded queue; the main thread owns the
pipeline and the sinks. The queue being bounded is deliberate: if scoring falls behind,
the pipe and then dumpcap's buffer fill up and the kernel drops packets - which dumpcap
counts and reports - instead of flowdet's memory growing without limit.

The main thread wakes at least every `tick` seconds, packets or not, and advances the flow
table to the source's clock, so time checkpoints fire and idle flows expire on a quiet link.
On a live interface the clock is the wall clock less `lag` (packets still in the pipe are
at most that old, so the table's clock never runs ahead of packets still to come).
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from flowdet.capture import open_capture
from flowdet.capture.batch import PacketBatch, Status
from flowdet.errors import FlowdetError
from flowdet.live.coalesce import join_batches
from flowdet.live.dumpcap import DumpcapCapture
from flowdet.live.events import LiveEvent, LivePipeline, live_record, now_iso
from flowdet.live.sinks import AlertCommand, AlertPcaps
from flowdet.live.stats import N_STATUS, SKIP_REASONS, RxCounters, proc_net_dev_rx

NS = 1_000_000_000
_EOF = object()
# Most packets scored in one call when batches queue up behind a slow scoring call.
COALESCE_PACKETS = 131_072
# Below this many packets, the loop waits up to `linger` seconds for more before scoring.
LINGER_PACKETS = 4096


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` (and its `reason`) instead of killing the process.

    Installed by the command before the model loads, so a stop during start-up still ends
    with a clean exit. Outside the main thread (tests) signals are left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if not getattr(stop, "reason", ""):
            stop.reason = signal.Signals(signum).name  # type: ignore[attr-defined]
        stop.set()

    prev = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in prev.items():
            signal.signal(s, h)


class LiveSource:
    """What the loop reads from: batches (from a reader thread) and a clock."""

    name: str = "live"
    # True when packets the loop does not read in time are lost (an interface); a file
    # just waits, so waiting on scoring is then no overload
    lossy: bool = False

    def start(self) -> None: ...

    def batches(self) -> Iterator[PacketBatch]:
        raise NotImplementedError

    def now_ns(self) -> int | None:
        """The clock to advance the flow table to, or None when only packets drive time."""
        return None

    def stop(self) -> None: ...

    def close(self) -> None: ...

    def failure(self) -> str | None:
        """Why the source ended on its own, if that is an error."""
        return None

    def status(self, packets: int) -> str:
        return ""

    def started(self) -> str:
        return f"reading {self.name}"

    def summary(self) -> list[str]:
        return []

    def dropped(self) -> int | None:
        """Packets the source lost before flowdet read them (None: not known)."""
        return None

    def counters(self, scored: int) -> dict[str, Any]:
        """The capture fields of a stats record (flowdet.live.stats); null: not known here."""
        return dict.fromkeys(_CAPTURE_FIELDS)


_CAPTURE_FIELDS = (
    "dumpcap_captured",
    "dumpcap_unscored",
    "dumpcap_received",
    "dumpcap_dropped",
    "dumpcap_interfaces",
    "if_rx_packets",
    "if_rx_dropped",
)


class DumpcapSource(LiveSource):
    lossy = True

    def __init__(self, cap: DumpcapCapture, lag: float = 0.5) -> None:
        self.cap = cap
        self.lag_ns = int(lag * NS)
        self.name = "live:" + "+".join(cap.ifaces)
        self.reader: Any = None
        self._base_rx: RxCounters | None = None

    def start(self) -> None:
        self.cap.start()
        self._base_rx = proc_net_dev_rx(self.cap.ifaces)

    def started(self) -> str:
        return f"capturing on {', '.join(self.cap.ifaces)} (dumpcap pid {self.cap.pid})"

    def batches(self) -> Iterator[PacketBatch]:
        self.reader = open_capture(self.cap.stdout)
        with self.reader:
            yield from self.reader

    def now_ns(self) -> int | None:
        return time.time_ns() - self.lag_ns

    def stop(self) -> None:
        self.cap.terminate()  # the main thread keeps draining the pipe while dumpcap ends

    def close(self) -> None:
        self.cap.close()

    def failure(self) -> str | None:
        proc = self.cap.proc
        if proc is not None and not self.cap.stopped_by_us:
            with contextlib.suppress(Exception):
                proc.wait(2.0)  # the pipe ended: give dumpcap a moment to exit and say why
        if self.cap.died():
            return self.cap.failure()
        return None

    def _iface_drops(self) -> int | None:
        now, base = proc_net_dev_rx(self.cap.ifaces), self._base_rx
        return now.dropped - base.dropped if now and base else None

    def status(self, packets: int) -> str:
        d = self._iface_drops()
        captured = self.cap.status.captured  # dumpcap's own count, updated about once a second
        parts = [f"dumpcap {captured:,} pkts (not yet scored {max(0, captured - packets):,})"]
        if d is not None:
            parts.append(f"interface rx drops {d:,} (/proc/net/dev)")
        return ", ".join(parts)

    def summary(self) -> list[str]:
        fin = self.cap.status.final
        if not fin:
            return ["dumpcap: no final counts (it did not stop cleanly)"]
        return [
            f"dumpcap {f.iface}: {f.received:,} received, {f.dropped:,} dropped "
            f"(kernel {f.kernel:,}, dumpcap {f.dumpcap:,}, flushed {f.flushed:,}; "
            f"interface {f.ifdrop:,})"
            for f in fin
        ]

    def dropped(self) -> int | None:
        fin = self.cap.status.final
        return sum(f.dropped + f.ifdrop for f in fin) if fin else None

    def counters(self, scored: int) -> dict[str, Any]:
        captured = self.cap.status.captured
        fin = list(self.cap.status.final)
        rx = proc_net_dev_rx(self.cap.ifaces)
        base = self._base_rx
        return {
            "dumpcap_captured": captured,
            "dumpcap_unscored": max(0, captured - scored),
            "dumpcap_received": sum(f.received for f in fin) if fin else None,
            "dumpcap_dropped": self.dropped(),
            "dumpcap_interfaces": [dataclasses.asdict(f) for f in fin] if fin else None,
            "if_rx_packets": rx.packets - base.packets if rx and base else None,
            "if_rx_dropped": rx.dropped - base.dropped if rx and base else None,
        }


class ReplaySource(LiveSource):
    """A capture file pushed through the live path, at its recorded pace or at full speed.

    With `realtime`, each packet is handed over no earlier than its offset from the first
    packet (batches are split at the due packet), and the clock is the capture's time
    running at wall-clock speed, so time checkpoints and idle timeouts fire on ticks as
    they would live. Without it, only packets drive time, exactly as `flowdet score` does.
    """

    def __init__(self, path: str, realtime: bool = False, speed: float = 1.0) -> None:
        self.path, self.realtime, self.speed = path, realtime, speed
        import os

        self.name = os.path.basename(path)
        self.reader = open_capture(path)  # CaptureError at once for a bad file
        self._t0: int | None = None
        self._m0 = 0.0
        self._stop = threading.Event()

    def batches(self) -> Iterator[PacketBatch]:
        with self.reader:
            for b in self.reader:
                if self._stop.is_set():
                    return
                if not self.realtime or not len(b):
                    yield b
                    continue
                yield from self._paced(b)

    def _paced(self, b: PacketBatch) -> Iterator[PacketBatch]:
        if self._t0 is None:
            self._t0 = int(b.ts_ns.min())
            self._m0 = time.monotonic()
        # offsets from the first packet; out-of-order stamps are due with their predecessors
        off = np.maximum.accumulate(b.ts_ns.astype(np.int64) - self._t0)
        pos, n = 0, len(b)
        while pos < n:
            if self._stop.is_set():
                return
            due = (time.monotonic() - self._m0) * self.speed * NS
            end = int(np.searchsorted(off, due, side="right"))
            if end > pos:
                yield b.take(np.arange(pos, end))
                pos = end
                continue
            wait = (float(off[pos]) - due) / NS / self.speed
            self._stop.wait(min(max(wait, 0.0), 0.25))

    def now_ns(self) -> int | None:
        if not self.realtime or self._t0 is None:
            return None
        return self._t0 + int((time.monotonic() - self._m0) * self.speed * NS)

    def stop(self) -> None:
        self._stop.set()

    def started(self) -> str:
        pace = f"at {self.speed:g}x its recorded pace" if self.realtime else "at full speed"
        return f"replaying {self.name} {pace}"


def _groups(batches: list[PacketBatch], at_least: int) -> Iterator[list[PacketBatch]]:
    """Consecutive runs of `batches` of at least `at_least` packets (the last may have
    fewer): small batches are joined, a batch that is large on its own is not copied."""
    group: list[PacketBatch] = []
    n = 0
    for b in batches:
        group.append(b)
        n += len(b)
        if n >= at_least:
            yield group
            group, n = [], 0
    if group:
        yield group


@dataclass(slots=True)
class LiveStats:
    packets: int = 0  # scored (handed to the pipeline)
    read: int = 0  # decoded by the reader thread, scored or still queued
    reader_waited: float = 0.0  # seconds the reader waited on a full queue (scoring behind)
    batches: int = 0  # from the reader
    scoring_calls: int = 0  # batches joined and scored together count once
    ticks: int = 0
    records_written: int = 0
    started: float = field(default_factory=time.monotonic)
    stopped_by: str = ""
    # decode outcome (Status) of the packets read, counted with `read` under one lock
    read_status: np.ndarray = field(default_factory=lambda: np.zeros(N_STATUS, np.int64))


@dataclass(slots=True)
class Sinks:
    writers: list[Any]  # TerminalLiveSink / JsonlLiveSink
    model: str = ""
    command: AlertCommand | None = None
    pcaps: AlertPcaps | None = None


class LiveLoop:
    def __init__(
        self,
        source: LiveSource,
        pipe: LivePipeline,
        sinks: Sinks,
        *,
        tick: float = 0.5,
        status_every: float = 5.0,
        duration: float | None = None,
        err: TextIO | None = None,
        queue_batches: int = 16,
        linger: float = 0.0,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        stop: threading.Event | None = None,
        stats_every: float = 0.0,
    ) -> None:
        self.source, self.pipe, self.sinks = source, pipe, sinks
        self.tick, self.status_every, self.duration = tick, status_every, duration
        self.stats_every = stats_every  # seconds between stats records; 0: only the final one
        self._count_lock = threading.Lock()
        self._last_stats = time.monotonic()
        self._stats_waited = 0.0
        self.linger = linger
        self.err = err or sys.stderr
        self.stats = LiveStats()
        self.on_record = on_record
        self._q: queue.Queue[Any] = queue.Queue(queue_batches)
        self._own_signals = stop is None  # else the caller installed stop_on_signals early
        self._stop = stop if stop is not None else threading.Event()
        self._reader_done = threading.Event()
        self._reader_error: BaseException | None = None

    # -- signals ------------------------------------------------------------------------------
    def request_stop(self, why: str) -> None:
        if not self.stats.stopped_by:
            self.stats.stopped_by = why
        self._stop.set()

    @property
    def stopped_by(self) -> str:
        return self.stats.stopped_by or getattr(self._stop, "reason", "") or "end of input"

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if self._own_signals:
            with stop_on_signals(self._stop):
                yield
        else:
            yield

    # -- reader thread --------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            for b in self.source.batches():
                by_status = np.bincount(b.status, minlength=N_STATUS)[:N_STATUS]
                with self._count_lock:  # a stats record reads both at once
                    self.stats.read += len(b)
                    self.stats.read_status += by_status
                try:
                    self._q.put_nowait(b)
                    continue
                except queue.Full:
                    pass
                # Scoring is behind the capture: while the reader waits here nothing drains
                # the pipe, dumpcap blocks, and its kernel buffer fills up until the kernel
                # drops packets. The wait is counted (status line, summary): it is the
                # running sign of overload, dumpcap's exact drop count only comes at exit.
                self.waiting_since = waited_from = time.monotonic()
                while True:  # a bounded put that still notices a stop request
                    try:
                        self._q.put(b, timeout=0.2)
                        break
                    except queue.Full:
                        if self._stop.is_set() and self._reader_abandon:
                            return
                self.stats.reader_waited += time.monotonic() - waited_from
                self.waiting_since = None
        except BaseException as exc:  # handed to the main thread, which decides
            self._reader_error = exc
        finally:
            self._reader_done.set()
            with contextlib.suppress(queue.Full):
                self._q.put(_EOF, timeout=5.0)

    _reader_abandon = False

    # -- main loop --------------------------------------------------------------------------------
    def run(self) -> int:
        """Run until the source ends, a stop is requested, or `duration` passes; 0 or raise."""
        with self._signals():
            self.source.start()
            self.err.write(f"flowdet live: {self.source.started()}\n")
            self.err.flush()
            try:
                return self._run()
            except FlowdetError as exc:
                if not self.stats.stopped_by:  # the final stats record says why
                    self.stats.stopped_by = f"error: {exc}"
                raise
            finally:
                self.source.close()  # dumpcap has stopped: its final counts are in
                if self.sinks.command is not None:
                    self.sinks.command.close()
                if self.sinks.pcaps is not None:
                    self.sinks.pcaps.close()
                with contextlib.suppress(OSError, ValueError):  # never hide the real error
                    self._write_stats(final=True)
                for w in self.sinks.writers:
                    w.close()

    def _run(self) -> int:
        reader = threading.Thread(target=self._read, name="live-reader", daemon=True)
        reader.start()
        t0 = time.monotonic()
        next_tick = t0 + self.tick
        next_status = t0 + self.status_every if self.status_every > 0 else float("inf")
        next_stats = t0 + self.stats_every if self.stats_every > 0 else float("inf")
        stop_sent_at: float | None = None
        last_pkts, last_status = 0, t0
        while True:
            now = time.monotonic()
            if self.duration is not None and now - t0 >= self.duration:
                self.request_stop("duration")
            if self._stop.is_set() and stop_sent_at is None:
                stop_sent_at = now
                if not self.stats.stopped_by:
                    self.stats.stopped_by = getattr(self._stop, "reason", "") or "stop request"
                self.source.stop()  # dumpcap: SIGTERM, it ends the stream; replay: stop reading
            if stop_sent_at is not None and now - stop_sent_at > 10.0:
                self._reader_abandon = True  # the reader hangs on a dead source: give up on it
                self._warn("the capture reader did not finish within 10 s of the stop; abandoned")
                break
            wait = max(0.0, min(next_tick, next_status, next_stats) - now)
            try:
                item = self._q.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _EOF:
                break
            if item is not None:
                eof = self._batches(item)
                if eof:
                    break
            now = time.monotonic()
            if now >= next_tick:
                self._tick()
                next_tick = now + self.tick
            if now >= next_status:
                pk = self.stats.packets
                rate = (pk - last_pkts) / max(now - last_status, 1e-9)
                self._status(rate, now - last_status)
                last_pkts, last_status, next_status = pk, now, now + self.status_every
            if now >= next_stats:
                self._write_stats(final=False)
                next_stats = now + self.stats_every
        if self._reader_error is not None and not self._stop.is_set():
            exc = self._reader_error
            reason = self.source.failure()
            if reason:
                raise FlowdetError(f"live: {reason}")
            if isinstance(exc, FlowdetError):
                raise exc
            raise FlowdetError(f"live: capture reader failed: {exc}") from None
        reason = self.source.failure()
        if reason and not self._stop.is_set():
            self._emit(self.pipe.flush_events())
            raise FlowdetError(f"live: {reason}")
        self._emit(self.pipe.flush_events())
        if not self.stats.stopped_by:
            self.stats.stopped_by = "end of input"
        return 0

    def _batches(self, first: PacketBatch) -> bool:
        """Score `first` together with the batches already waiting behind it (up to
        COALESCE_PACKETS), small ones joined into runs of at least LINGER_PACKETS: one
        flow-table and scoring call per run instead of one per batch (flowdet.live.coalesce
        says why), without copying batches that are large on their own. When little
        is waiting, wait up to `linger` seconds for more: a pipe read holds a few hundred
        packets at moderate rates, which would cost several times the CPU per packet.
        True when the end of the stream was among them."""
        batches, n, eof = [first], len(first), False
        linger_until = time.monotonic() + self.linger
        while n < COALESCE_PACKETS:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                wait = linger_until - time.monotonic()
                if n >= LINGER_PACKETS or wait <= 0 or self._stop.is_set():
                    break
                try:
                    item = self._q.get(timeout=wait)
                except queue.Empty:
                    break
            if item is _EOF:
                eof = True
                break
            batches.append(item)
            n += len(item)
        self.stats.packets += n
        self.stats.batches += len(batches)
        for group in _groups(batches, LINGER_PACKETS):
            batch = join_batches(group)
            self.stats.scoring_calls += 1
            if self.sinks.pcaps is not None:
                self.sinks.pcaps.packets(batch)
            self._emit(self.pipe.feed_events(batch))
        return eof

    def _tick(self) -> None:
        now = self.source.now_ns()
        self.stats.ticks += 1
        if now is not None:
            self._emit(self.pipe.advance_events(now))

    def _emit(self, evs: list[LiveEvent]) -> None:
        if not evs:
            return
        if self.sinks.pcaps is not None:
            self.sinks.pcaps.events(evs)
        for ev in evs:
            rec = live_record(ev, self.sinks.model)
            for w in self.sinks.writers:
                w.write(ev, rec)
            self.stats.records_written += 1
            if self.sinks.command is not None and ev.verdict.is_alert and ev.event != "flow_end":
                self.sinks.command.submit(rec)
            if self.on_record is not None:
                self.on_record(rec)

    # -- reporting --------------------------------------------------------------------------------
    def _warn(self, msg: str) -> None:
        self.err.write(f"flowdet: warning: {msg}\n")
        self.err.flush()

    def _alerts_text(self) -> str:
        a = self.pipe.stats.alerts
        ev = self.pipe.events
        n = ev["alert"]
        by = ", ".join(f"{k} {v:,}" for k, v in sorted(a.items()))
        return f"{n:,} alerts" + (f" (final: {by})" if by else "")

    def _status(self, rate: float, interval: float) -> None:
        up = time.monotonic() - self.stats.started
        src = self.source.status(self.stats.packets)
        behind = self._behind(interval) if self.source.lossy else ""
        self.err.write(
            f"flowdet live: {up:6.0f} s  {self.stats.packets:,} pkts ({rate:,.0f} pkt/s)  "
            f"{self.pipe.table.live_flows:,} open flows  {self._alerts_text()}"
            + (f"  {src}" if src else "")
            + (f"  {behind}" if behind else "")
            + "\n"
        )
        self.err.flush()

    def _waited_total(self) -> float:
        """Seconds the reader has waited on a full queue, including a wait going on now."""
        since = self.waiting_since  # the reader is waiting right now
        return self.stats.reader_waited + (time.monotonic() - since if since else 0.0)

    def _behind(self, interval: float) -> str:
        """The back-pressure of the last interval, in words, or "" when there was none."""
        total = self._waited_total()
        waited = total - self._waited_reported
        self._waited_reported = total
        if waited <= 0.0:
            return ""
        share = min(1.0, waited / max(interval, 1e-9))
        return (
            f"BEHIND: the capture waited on scoring {share:.0%} of the time "
            f"(queued {self.stats.read - self.stats.packets:,} pkts; the kernel drops "
            "packets once dumpcap's buffer is full)"
        )

    _waited_reported = 0.0
    waiting_since: float | None = None  # set by the reader while it waits on a full queue

    def stats_record(self, final: bool) -> dict[str, Any]:
        """A `stats` record (fields and their meaning: flowdet.live.stats.STATS_FIELDS)."""
        now = time.monotonic()
        st, ps, ev = self.stats, self.pipe.stats, self.pipe.events
        with self._count_lock:
            read, by_status = st.read, st.read_status.copy()
        scored = st.packets
        interval = now - self._last_stats
        self._last_stats = now
        rec: dict[str, Any] = {
            "timestamp": now_iso(),
            "event_type": "stats",
            "pcap_filename": self.source.name,
            "stats_event": "final" if final else "interval",
            "uptime": round(now - st.started, 3),
            "interval": round(interval, 3),
            "pkts_read": read,
            "pkts_decoded": int(by_status[Status.OK] + by_status[Status.FRAGMENT]),
            "pkts_fragments": int(by_status[Status.FRAGMENT]),
            "pkts_skipped": {k: int(by_status[s]) for k, s in SKIP_REASONS.items()},
            "pkts_scored": scored,
            "pkts_queued": read - scored,
        }
        rec.update(self.source.counters(scored))
        if self.source.lossy:
            total = self._waited_total()
            behind = total - self._stats_waited
            self._stats_waited = total
            rec["behind_s"] = round(total, 3)
            rec["behind_share"] = round(min(1.0, behind / max(interval, 1e-9)), 4)
        else:
            rec["behind_s"] = rec["behind_share"] = None
        rec.update(
            flows_open=self.pipe.table.live_flows,
            flows_ended=ps.flows,
            records_scored=ps.records,
            records_written=st.records_written,
            alerts=ev["alert"],
            alert_updates=ev["alert_update"],
            flow_ends=ev["flow_end"],
            alerts_by_label=dict(sorted(self.pipe.alert_labels.items())),
            final_alerts_by_label=dict(sorted(ps.alerts.items())),
            retracted=ps.retracted,
            stopped_by=self.stopped_by if final else None,
        )
        return rec

    def _write_stats(self, final: bool) -> None:
        writers = [w for w in self.sinks.writers if hasattr(w, "write_stats")]
        if not writers:
            return
        rec = self.stats_record(final)
        for w in writers:
            w.write_stats(rec)

    def _overload_summary(self) -> list[str]:
        """Packets lost to overload, said loudly: a detector that missed traffic must say so."""
        out = []
        dropped = self.source.dropped()
        if dropped:
            seen = self.stats.packets + dropped
            out.append(
                f"WARNING: {dropped:,} packets ({dropped / seen:.2%} of {seen:,}) were dropped "
                "before flowdet saw them; their flows were scored without them or not at all"
            )
        if self.stats.reader_waited > 0.0 and self.source.lossy:
            out.append(
                f"scoring was behind the capture for {self.stats.reader_waited:.2f} s "
                "in total (the capture reader waited on a full queue)"
            )
        return out

    def summary(self) -> list[str]:
        st, ps = self.stats, self.pipe.stats
        up = time.monotonic() - st.started
        ev = self.pipe.events
        lines = [
            f"{st.packets:,} packets in {up:.1f} s, {ps.flows:,} flows ended, "
            f"{ps.records:,} records scored; {self._alerts_text()}, {ev['alert_update']:,} "
            f"updates, {ev['flow_end']:,} flow ends; stopped by {self.stopped_by}",
        ]
        if ps.retracted:
            lines.append(f"{ps.retracted:,} early alerts not confirmed by the full flow")
        lines.append(
            f"{st.batches:,} capture batches scored in {st.scoring_calls:,} calls "
            f"(batches waiting together are joined)"
        )
        lines.extend(self.source.summary())
        lines.extend(self._overload_summary())
        cmd = self.sinks.command
        if cmd is not None:
            c = cmd.stats
            lines.append(
                f"--on-alert: {c.ok:,} ok, {c.failed:,} failed, {c.timed_out:,} killed at the "
                f"timeout, {c.dropped:,} not run (queue full or at exit)"
                + (f"; last problem: {c.last_error}" if c.last_error else "")
            )
        pc = self.sinks.pcaps
        if pc is not None:
            lines.append(
                f"--alert-pcap: {pc.stats.files:,} files, {pc.stats.packets:,} packets"
                + (
                    f", {pc.stats.missed:,} packets already out of the ring buffer"
                    if pc.stats.missed
                    else ""
                )
            )
        reader = getattr(self.source, "reader", None)
        rs = getattr(reader, "stats", None)
        if rs is not None:
            bad = rs.records - rs.status.get("OK", 0) - rs.status.get("FRAGMENT", 0)
            if bad:
                lines.append(f"{bad:,} packets not decoded (not IP, truncated, unsupported)")
            for w in rs.warnings[:5]:
                lines.append(f"warning: {w}")
        return lines
