"""Every process the lab starts, stopped by PID and process group, and a state file naming them.

Each program starts in a session of its own (`start_new_session=True`), so its PID is also its
process-group id and one `killpg` reaches the helpers it forks. Programs that daemonise into a
new session (`ssh -f`) escape their group; the runner catches those by listing the PIDs still
inside its own, uniquely named namespaces (`ip netns pids`). Nothing is ever killed by name.

The state file (JSON, rewritten atomically on every change) lets a test, or
`flowdet lab cleanup`, check or finish the job after a crash or SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class StateFile:
    """What a run has created, per lab instance, written as it happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"runner_pid": os.getpid(), "labs": {}}
        self._write()

    def lab(self, lab_id: str, **facts: Any) -> None:
        with self._lock:
            entry = self._data["labs"].setdefault(
                lab_id, {"namespaces": [], "pids": [], "workdir": None, "torn_down": False}
            )
            entry.update(facts)
            self._write()

    def add(self, lab_id: str, key: str, value: Any) -> None:
        with self._lock:
            entry = self._data["labs"].setdefault(
                lab_id, {"namespaces": [], "pids": [], "workdir": None, "torn_down": False}
            )
            entry.setdefault(key, []).append(value)
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data, indent=1))
        os.replace(tmp, self.path)


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


class ProcessTable:
    """The processes of one lab instance, started in their own sessions and stopped by group."""

    def __init__(self, state: StateFile, lab_id: str) -> None:
        self.state = state
        self.lab_id = lab_id
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen[bytes]] = []
        self.closed = False

    def start(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        from flowdet.errors import LabError

        with self._lock:  # a process started after teardown began would be orphaned
            if self.closed:
                raise LabError("the lab is shutting down; not starting " + " ".join(argv[:3]))
            proc: subprocess.Popen[bytes] = subprocess.Popen(
                list(argv), start_new_session=True, close_fds=True, **kwargs
            )
            self._procs.append(proc)
        self.state.add(self.lab_id, "pids", proc.pid)
        return proc

    def close(self) -> None:
        with self._lock:
            self.closed = True

    def stop(
        self, procs: Sequence[subprocess.Popen[bytes]] | None = None, grace: float = 3.0
    ) -> None:
        """SIGTERM each process group, wait up to `grace` seconds, then SIGKILL what is left."""
        with self._lock:
            targets = list(self._procs if procs is None else procs)
        for p in targets:
            if p.poll() is None:
                killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in targets:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
        for p in targets:
            # the leader may be gone while helpers in its group live on
            killpg(p.pid, signal.SIGKILL)
            if p.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2.0)

    def all(self) -> list[subprocess.Popen[bytes]]:
        with self._lock:
            return list(self._procs)
