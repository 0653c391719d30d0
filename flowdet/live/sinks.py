"""Where live alert events go: the terminal, JSON lines, a command per alert, per-alert pcaps.

Every sink writes (and flushes) a record as soon as it is made: a live tap is read while it
runs, by a person or by `tail -f | jq`. None of them may hold the capture up: the alert
command runs in a worker thread with a timeout, and its queue is bounded (what does not fit
is counted, not waited for).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

import numpy as np

from flowdet.alerts import PcapngWriter, alert_pcap_name
from flowdet.capture.batch import PacketBatch, Status
from flowdet.flows.keys import canonical_keys, key_hash
from flowdet.live.events import EV_ALERT, EV_END, EV_UPDATE, LiveEvent

LIVE_FORMATS = ("table", "jsonl")


def _ep(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class TerminalLiveSink:
    """One headline per event plus its strongest reasons, for a person watching."""

    def __init__(self, out: TextIO, model: str = "", max_reasons: int = 3) -> None:
        self.out, self.model, self.max_reasons = out, model, max_reasons

    def write(self, ev: LiveEvent, rec: dict[str, Any]) -> None:
        v = ev.verdict
        what = {EV_ALERT: "ALERT", EV_UPDATE: "UPDATE", EV_END: "END"}[ev.event]
        when = rec["verdict_checkpoint"] if v.is_alert else "-"
        pkts = rec["pkts_toserver"] + rec["pkts_toclient"]
        app = f" {rec['app_proto']}" if rec["app_proto"] else ""
        line = (
            f"{rec['emitted'][11:19]} {what:<6} {v.label:<10} {v.score:.2f} "
            f"[{ev.stage}, first at {when}] flow {rec['flow_id']} "
            f"{_ep(rec['src_ip'], rec['src_port'])} -> {_ep(rec['dest_ip'], rec['dest_port'])} "
            f"{rec['proto']}{app}  {pkts:,} pkts {rec['duration']:.1f} s  {rec['community_id']}\n"
        )
        reasons = rec["reasons"][: self.max_reasons] if ev.event != EV_END else []
        self.out.write(line + "".join(f"    - {r}\n" for r in reasons))
        self.out.flush()

    def write_stats(self, rec: dict[str, Any]) -> None:
        """Stats records are for machines reading JSON lines; a person has the status line."""

    def close(self) -> None:
        self.out.flush()


class JsonlLiveSink:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, ev: LiveEvent, rec: dict[str, Any]) -> None:
        self._line(rec)

    def write_stats(self, rec: dict[str, Any]) -> None:
        self._line(rec)

    def _line(self, rec: dict[str, Any]) -> None:
        self.out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


# -- --on-alert -----------------------------------------------------------------------------


@dataclass(slots=True)
class CommandStats:
    queued: int = 0
    ok: int = 0
    failed: int = 0  # non-zero exit status or could not start
    timed_out: int = 0  # killed at the timeout
    dropped: int = 0  # queue full: not run
    last_error: str = ""


class AlertCommand:
    """Runs a shell command per alert (JSON on stdin) in a worker thread.

    The command runs in its own session; at the timeout its whole process group is killed
    (by the command's PID as group id), so a hung command and whatever it started cannot
    hold the worker. Its stdout and stderr go to flowdet's stderr unless quiet.
    """

    def __init__(self, cmd: str, timeout: float = 10.0, max_queue: int = 256) -> None:
        self.cmd, self.timeout = cmd, timeout
        self.stats = CommandStats()
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._proc: subprocess.Popen[bytes] | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="on-alert", daemon=True)
        self._thread.start()

    def submit(self, rec: dict[str, Any]) -> None:
        try:
            self._q.put_nowait(rec)
            self.stats.queued += 1
        except queue.Full:
            self.stats.dropped += 1

    def _work(self) -> None:
        while True:
            rec = self._q.get()
            if rec is None:
                return
            self._run(rec)
            self._proc = None

    def _run(self, rec: dict[str, Any]) -> None:
        env = dict(os.environ)
        env.update(
            FLOWDET_ALERT_EVENT=str(rec.get("alert_event", "")),
            FLOWDET_LABEL=str(rec.get("label", "")),
            FLOWDET_SCORE=str(rec.get("score", "")),
            FLOWDET_COMMUNITY_ID=str(rec.get("community_id", "")),
            FLOWDET_FLOW_ID=str(rec.get("flow_id", "")),
        )
        data = (json.dumps(rec, ensure_ascii=False) + "\n").encode()
        try:
            proc = subprocess.Popen(
                self.cmd,
                shell=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self.stats.failed += 1
            self.stats.last_error = f"cannot start: {exc}"
            return
        self._proc = proc
        try:
            proc.communicate(data, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.stats.timed_out += 1
            self.stats.last_error = f"killed after {self.timeout:g} s"
            return
        except BrokenPipeError:  # the command did not read its stdin: not a failure
            proc.wait()
        if self._closing and proc.returncode == -signal.SIGKILL:
            self.stats.timed_out += 1  # killed by close(): it had outlived the wait
            self.stats.last_error = "killed at exit"
            return
        if proc.returncode == 0:
            self.stats.ok += 1
        else:
            self.stats.failed += 1
            self.stats.last_error = f"exit status {proc.returncode}"

    def close(self, wait: float | None = None) -> None:
        """Give queued commands `wait` seconds (default: one timeout + 2 s) to finish; the
        ones not started by then are counted as dropped, a running one is killed."""
        self._closing = True
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=1.0)
        self._thread.join(self.timeout + 2.0 if wait is None else wait)
        if self._thread.is_alive():
            proc = self._proc
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            while True:
                try:
                    rec = self._q.get_nowait()
                except queue.Empty:
                    break
                if rec is not None:
                    self.stats.dropped += 1
            self._q.put(None)
            # The running command is dead or dies at its own timeout: wait for the worker to
            # count it, so the summary accounts for every alert.
            self._thread.join(self.timeout + 1.0)


# -- --alert-pcap -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Open:
    key: tuple[int, ...]
    start_ns: int
    path: str
    f: BinaryIO
    writer: PcapngWriter
    packets: int = 0


@dataclass(slots=True)
class PcapStats:
    files: int = 0
    packets: int = 0
    missed: int = 0  # packets of alerted flows already gone from the ring when they alerted
    ring_bytes: int = 0
    ring_batches: int = 0
    paths: list[str] = field(default_factory=list)


class AlertPcaps:
    """Per-alert pcapng files that keep growing while their flow is open.

    Memory is bounded by a ring of the most recent packet batches (`ring_bytes` of record
    bytes, default 64 MB): when a flow alerts, its packets still in the ring are written
    (normally the whole flow, since alerts come at early checkpoints), then every later
    packet of the flow is appended as it arrives, until the flow's final record. Packets of
    the flow that had already left the ring are counted in `stats.missed`, never guessed.
    """

    def __init__(self, out_dir: str, ring_bytes: int = 64 << 20) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.ring_bytes = out_dir, ring_bytes
        self._ring: deque[tuple[PacketBatch, np.ndarray, np.ndarray, np.ndarray]] = deque()
        self._ring_size = 0
        self._open: dict[int, _Open] = {}  # flow_id -> open file
        self.stats = PcapStats()

    @staticmethod
    def _keyed(b: PacketBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.flatnonzero(b.status == Status.OK)
        if not len(rows):
            return rows, np.zeros((0, 5), np.uint64), np.zeros(0, np.uint64)
        k, _ = canonical_keys(b, rows)
        return rows, k, key_hash(k)

    def packets(self, batch: PacketBatch) -> None:
        """Before the batch is scored: remember it, append it to the files already open."""
        rows, k, h = self._keyed(batch)
        self._ring.append((batch, rows, k, h))
        self._ring_size += int(batch.data.nbytes)
        while self._ring_size > self.ring_bytes and len(self._ring) > 1:
            old = self._ring.popleft()
            self._ring_size -= int(old[0].data.nbytes)
        self.stats.ring_bytes, self.stats.ring_batches = self._ring_size, len(self._ring)
        if self._open and len(rows):
            for o in list(self._open.values()):
                self._write(o, batch, rows, k, h)

    def _write(
        self, o: _Open, b: PacketBatch, rows: np.ndarray, k: np.ndarray, h: np.ndarray
    ) -> int:
        want = key_hash(np.array([o.key], dtype=np.uint64))[0]
        cand = np.flatnonzero(h == want)
        n = 0
        for j in cand.tolist():
            if tuple(k[j].tolist()) != o.key:
                continue
            row = int(rows[j])
            ts = int(b.ts_ns[row])
            if ts < o.start_ns:
                continue
            off = int(b.rec_off[row])
            data = b.data[off : off + int(b.caplen[row])].tobytes()
            o.writer.write(int(b.linktype[row]), ts, data, int(b.wirelen[row]))
            n += 1
        if n:
            o.f.flush()
        o.packets += n
        self.stats.packets += n
        return n

    def events(self, evs: Sequence[LiveEvent]) -> None:
        """After scoring: open files for new alerts (from the ring), close ended flows."""
        for ev in evs:
            v = ev.verdict
            fid = v.record.flow_id
            o = self._open.get(fid)
            if o is None and ev.event == EV_ALERT and v.is_alert:
                path = os.path.join(self.out_dir, alert_pcap_name(v))
                f = open(path, "wb")  # noqa: SIM115 - closed at the flow's end or close()
                o = _Open(v.key, v.start_ns, path, f, PcapngWriter(f))
                for b, rows, k, h in self._ring:
                    self._write(o, b, rows, k, h)
                seen = v.record.pkts_toserver + v.record.pkts_toclient
                seen -= v.record.frags_toserver + v.record.frags_toclient
                self.stats.missed += max(0, seen - o.packets)
                self.stats.files += 1
                self.stats.paths.append(path)
                if v.final and v.record.end_reason != "active":
                    f.close()
                    continue
                self._open[fid] = o
            elif o is not None and v.final and v.record.end_reason != "active":
                o.f.close()
                del self._open[fid]

    def close(self) -> None:
        for o in self._open.values():
            o.f.close()
        self._open.clear()
        self._ring.clear()
