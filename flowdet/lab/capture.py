"""Capturing one scenario's traffic: dumpcap (pcapng, full snaplen) or tcpdump as a fallback."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from flowdet.errors import LabError
from flowdet.lab.procs import kill

Spawner = Callable[..., subprocess.Popen[bytes]]


class Capture:
    """A capture on `iface` inside a namespace, written to `path` until `stop()`."""

    def __init__(self, tool: str, path: Path, iface: str, log: Path) -> None:
        self.tool = tool
        self.path = path
        self.iface = iface
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        if self.tool == "dumpcap":
            # -s 0 is the default full snaplen; -q: no packet count on stderr
            return ["dumpcap", "-q", "-i", self.iface, "-s", "0", "-w", str(self.path)]
        return ["tcpdump", "-q", "-i", self.iface, "-s", "0", "-U", "-w", str(self.path)]

    def start(self, spawn: Spawner, timeout: float = 15.0) -> None:
        with open(self.log, "wb") as log:
            self.proc = spawn(self.argv(), stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        # dumpcap writes the section header once the interface is open; tcpdump after -U
        # flushes its file header. Traffic before that would be lost, so wait for it.
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LabError(f"{self.tool} on {self.iface} exited: {self._log_tail()}")
            if self.path.exists() and self.path.stat().st_size > 0:
                time.sleep(0.2)  # the ring buffer is armed shortly after the header is out
                return
            time.sleep(0.05)
        raise LabError(f"{self.tool} on {self.iface} did not start within {timeout:.0f} s")

    def stop(self) -> None:
        """SIGINT lets the capture program flush and close the file properly."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if self.path.exists():
            self.path.chmod(0o644)  # dumpcap creates 0600; captures are data to share

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "?"
        return lines[-1] if lines else "?"
