"""dumpcap as the live source: pcapng on a pipe, its stderr read for status, errors and drops.

dumpcap runs in its own session, so a Ctrl-C at the terminal reaches flowdet only; flowdet
stops dumpcap by PID (SIGTERM), and dumpcap then ends the pcapng stream cleanly (interface
statistics blocks) and prints its final counts per interface, which is where the packets
dropped by the kernel and by dumpcap itself are reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO

from flowdet.interfaces import CaptureSetupError, describe_failure, find_dumpcap

# "Packets received/dropped on interface 'lan0': 812/0 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0)"
_FINAL = re.compile(
    r"Packets received/dropped on interface '(?P<iface>[^']*)': (?P<recv>\d+)/(?P<drop>\d+)"
    r"(?: \(pcap:(?P<pcap>\d+)/dumpcap:(?P<dumpcap>\d+)/flushed:(?P<flushed>\d+)"
    r"(?:/ps_ifdrop:(?P<ifdrop>\d+))?\))?"
)
_RUNNING = re.compile(r"^Packets(?: captured)?: (\d+)")


@dataclass(slots=True)
class InterfaceDrops:
    """dumpcap's final report for one interface."""

    iface: str
    received: int
    dropped: int  # total dropped: pcap (kernel socket) + dumpcap + flushed
    kernel: int = 0  # pcap: dropped by the kernel's capture buffer
    dumpcap: int = 0  # dumpcap's own buffer
    flushed: int = 0
    ifdrop: int = 0  # ps_ifdrop: dropped by the interface/driver (not counted in `dropped`)


@dataclass(slots=True)
class DumpcapStatus:
    captured: int = 0  # dumpcap's running count ("Packets: N")
    final: list[InterfaceDrops] = field(default_factory=list)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=50))


def dumpcap_argv(
    dumpcap: str, ifaces: list[str], bpf: str | None, buffer_mib: int, snaplen: int
) -> list[str]:
    argv = [dumpcap]
    if bpf:
        argv += ["-f", bpf]  # before the first -i: the filter of every interface
    for i in ifaces:
        argv += ["-i", i]
    argv += ["-B", str(buffer_mib)]
    if snaplen:
        argv += ["-s", str(snaplen)]
    argv += ["-w", "-"]  # pcapng to stdout; no -q: its counts on stderr are our status
    return argv


class DumpcapCapture:
    """One dumpcap process writing pcapng to `stdout`; `start()` returns once it captures."""

    def __init__(
        self,
        ifaces: list[str],
        bpf: str | None = None,
        *,
        buffer_mib: int = 64,
        snaplen: int = 0,
        dumpcap: str | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        if not ifaces:
            raise CaptureSetupError("live: no interface given (-i IFACE)")
        self.ifaces = list(ifaces)
        self.argv = dumpcap_argv(dumpcap or find_dumpcap(), self.ifaces, bpf, buffer_mib, snaplen)
        self.start_timeout = start_timeout
        self.status = DumpcapStatus()
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped_by_us = False
        self._started = threading.Event()
        self._stderr_done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C goes to flowdet, which stops dumpcap itself
            )
        except OSError as exc:
            raise CaptureSetupError(f"live: cannot start dumpcap: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._read_stderr, name="dumpcap-stderr")
        self._thread.daemon = True
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._started.wait(0.05):
            if self.proc.poll() is not None:
                self._stderr_done.wait(2.0)
                raise CaptureSetupError(f"live: {self.failure()}")
            if time.monotonic() > deadline:
                self.stop()
                raise CaptureSetupError(
                    f"live: dumpcap did not start capturing within {self.start_timeout:.0f} s"
                )

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        buf = b""
        st = self.status
        try:
            while True:
                chunk = self.proc.stderr.read1(4096)  # type: ignore[attr-defined]
                if not chunk:
                    break
                buf += chunk
                parts = re.split(rb"[\r\n]", buf)
                buf = parts.pop()
                for raw in parts:
                    self._line(raw.decode("utf-8", "replace").strip(), st)
            if buf:
                self._line(buf.decode("utf-8", "replace").strip(), st)
        finally:
            self._stderr_done.set()

    def _line(self, line: str, st: DumpcapStatus) -> None:
        if not line:
            return
        m = _RUNNING.match(line)
        if m:
            st.captured = int(m.group(1))
            return
        st.lines.append(line)
        if line.startswith("File:"):
            # dumpcap says "Capturing on ..." before it opens the interfaces; "File: -"
            # comes once they are open and the output is being written.
            self._started.set()
            return
        m = _FINAL.search(line)
        if m:
            g = m.groupdict()
            st.final.append(
                InterfaceDrops(
                    g["iface"],
                    int(g["recv"]),
                    int(g["drop"]),
                    int(g["pcap"] or 0),
                    int(g["dumpcap"] or 0),
                    int(g["flushed"] or 0),
                    int(g["ifdrop"] or 0),
                )
            )

    def failure(self) -> str:
        """dumpcap's reason for stopping, in one line."""
        info = ("Capturing on", "File:", "Packets received/dropped")
        text = "\n".join(ln for ln in self.status.lines if not ln.startswith(info))
        rc = self.proc.returncode if self.proc is not None else None
        if text:
            return f"dumpcap: {describe_failure(text)}"
        if rc is not None and rc < 0:
            return f"dumpcap was killed by signal {-rc} ({signal.Signals(-rc).name})"
        return f"dumpcap exited with status {rc} and no message"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died(self) -> bool:
        """dumpcap ended without being asked to."""
        return self.proc is not None and self.proc.poll() is not None and not self.stopped_by_us

    def terminate(self) -> None:
        """Ask dumpcap to stop (SIGTERM by PID) without waiting: it ends the stream itself."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.stopped_by_us = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM by PID, SIGKILL after `grace` seconds; wait for its final counts."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self._stderr_done.wait(2.0)

    def close(self) -> None:
        self.stop()
        if self.proc is not None:
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
