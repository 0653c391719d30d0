"""`flowdet live` on the lab's monitored link, for the integration test and the latency
benchmark: one lab instance, flowdet live on the router's side of the sandbox veth, lab
scenarios run across it, and every JSON line timed as it is read.

    with LiveLab(workdir) as ll:
        ll.run(["mining-stratum1-tcp", "ssh-reverse-login"])   # scenarios in parallel
        seen = ll.records                                        # SeenRecord per line
    # the lab is torn down; ll.reference is the link's own capture (dumpcap -w)

Each scenario runs in a thread of this process against the same lab (they use distinct
ports), so the JSON lines can be matched against "was that scenario still running when
its alert was read". A reference capture of the same link is written alongside, so the
flow's last packet is known independently of flowdet.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowdet.lab.procs import StateFile, killpg
from flowdet.lab.runner import NamespaceLab, scenario_seed
from flowdet.lab.scenario import Expect
from flowdet.lab.scenarios import select
from flowdet.lab.topology import CAPTURE_IFACE, OUTSIDE, ROUTER, Wan


class _ScenarioView:
    """The lab as one scenario sees it, with a workdir of its own: scenarios written to run
    alone (SSH keys, configs, web roots in `workdir`) can then share one lab instance."""

    def __init__(self, lab: NamespaceLab, workdir: Path) -> None:
        self._lab = lab
        self.hosts = lab.hosts
        workdir.mkdir(parents=True, exist_ok=True)
        self._workdir = workdir

    @property
    def workdir(self) -> Path:
        return self._workdir

    def ip(self, host: str) -> str:
        return self._lab.ip(host)

    def spawn(self, host: str, argv: Any, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("cwd", self._workdir)
        return self._lab.spawn(host, argv, **kw)

    def wait_port(self, host: str, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
        self._lab.wait_port(host, port, proto, timeout)

    def sleep(self, seconds: float) -> None:
        self._lab.sleep(seconds)

    def note(self, **facts: object) -> None:
        self._lab.note(**facts)


@dataclass(slots=True)
class ScenarioRun:
    name: str
    started: float = 0.0  # wall clock (time.time), same clock as packet timestamps
    ended: float = 0.0
    expects: list[Expect] = field(default_factory=list)
    error: str = ""

    def alive_at(self, t: float) -> bool:
        return self.started <= t and (self.ended == 0.0 or t < self.ended)


@dataclass(slots=True)
class SeenRecord:
    read_at: float  # wall clock when the line was read from the JSONL file
    record: dict[str, Any]
    running: tuple[str, ...]  # scenarios still running at that moment


class LiveLab:
    def __init__(
        self,
        workdir: Path,
        seed: int = 7,
        live_args: tuple[str, ...] = (),
        wan: dict[str, Wan] | None = None,
        profile: str = "quick",
        extra_captures: tuple[tuple[str, str, Path], ...] = (),
    ) -> None:
        self.workdir = workdir
        self.seed, self.profile = seed, profile
        self.live_args = live_args
        self.extra_captures = extra_captures  # (host, iface, path): e.g. the sandbox's lo
        self.jsonl = workdir / "live.jsonl"
        self.live_log = workdir / "live.stderr"
        self.reference = workdir / "link.pcapng"
        rng = random.Random(f"{seed}:live-tap")
        self.wan = wan or {h: Wan.choose(rng) for h in OUTSIDE}
        self.lab: NamespaceLab | None = None
        self.live: subprocess.Popen[bytes] | None = None
        self.live_rc: int | None = None
        self.records: list[SeenRecord] = []
        self.runs: dict[str, ScenarioRun] = {}
        self._lock = threading.Lock()
        self._tail_stop = threading.Event()
        self._tail: threading.Thread | None = None

    # -- lifetime ----------------------------------------------------------------------------
    def __enter__(self) -> LiveLab:
        self.workdir.mkdir(parents=True, exist_ok=True)
        state = StateFile(self.workdir / ".lab-state.json")
        self.lab = NamespaceLab(state, self.wan, self.seed, "live")
        try:
            self.lab.up()
            self.lab.start_capture(self.reference)
            for host, iface, path in self.extra_captures:
                self.lab.start_capture(path, host=host, iface=iface)
            self._start_live()
        except BaseException:
            self.lab.teardown()
            raise
        return self

    def _start_live(self) -> None:
        assert self.lab is not None
        argv = [sys.executable, "-m", "flowdet.cli", "live", "-i", CAPTURE_IFACE,
                "--format", "jsonl", "-o", str(self.jsonl), "--status-interval", "2",
                *self.live_args]  # fmt: skip
        with open(self.live_log, "wb") as log:
            self.live = self.lab.procs.start(
                self.lab.topo.exec_argv(ROUTER, argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.lab.infra.append(self.live)
        deadline = time.monotonic() + 90
        while "capturing on" not in self.live_log.read_text(errors="replace"):
            if self.live.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"flowdet live did not start: {self.live_log.read_text()}")
            time.sleep(0.05)
        self._tail = threading.Thread(target=self._tail_jsonl, daemon=True)
        self._tail.start()

    def _tail_jsonl(self) -> None:
        """Read lines as flowdet writes them, stamping when each became readable."""
        pos, buf = 0, b""
        while True:
            stop = self._tail_stop.is_set()
            with contextlib.suppress(FileNotFoundError), open(self.jsonl, "rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos += len(chunk)
                buf += chunk
            now = time.time()
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    rec = json.loads(line)
                    with self._lock:
                        running = tuple(n for n, r in self.runs.items() if r.alive_at(now))
                        self.records.append(SeenRecord(now, rec, running))
            if stop:
                return
            time.sleep(0.02)

    def stop_live(self, timeout: float = 60.0) -> str:
        """SIGTERM flowdet live (as a user would), wait for its summary; its stderr."""
        if self.live is not None and self.live.poll() is None:
            killpg(self.live.pid, 15)
            try:
                self.live.wait(timeout)
            except subprocess.TimeoutExpired:
                killpg(self.live.pid, 9)
                self.live.wait(5)
        if self.live is not None:
            self.live_rc = self.live.returncode
        self._tail_stop.set()
        if self._tail is not None:
            self._tail.join(5)
        return self.live_log.read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_live()
        finally:
            if self.lab is not None:
                self.lab.teardown(settle=0.3)
                self.lab.remove_workdir()

    # -- scenarios ---------------------------------------------------------------------------
    def run(self, names: list[str], stagger: float = 0.0) -> dict[str, ScenarioRun]:
        """Run these scenarios side by side in the lab; return when all have finished."""
        assert self.lab is not None
        scenarios = select(self.profile, names)
        before = set(self.lab.procs.all())
        threads = []
        for i, scn in enumerate(scenarios):
            run = ScenarioRun(scn.name)
            with self._lock:
                self.runs[scn.name] = run

            def work(scn: Any = scn, run: ScenarioRun = run, delay: float = i * stagger) -> None:
                time.sleep(delay)
                run.started = time.time()
                try:
                    assert self.lab is not None
                    view = _ScenarioView(self.lab, self.lab.workdir / f"scn-{scn.name}")
                    rng = scenario_seed(self.seed, scn.name)
                    run.expects = list(scn.run(view, rng, self.profile))
                except Exception as exc:  # reported by the caller
                    run.error = f"{type(exc).__name__}: {exc}"
                finally:
                    run.ended = time.time()

            t = threading.Thread(target=work, name=scn.name, daemon=True)
            threads.append(t)
            t.start()
        for t in threads:
            t.join()
        # the servers these scenarios left running (sshd, pools) would hold their ports
        # against the next group: stop them, as the runner's teardown would
        left = [p for p in self.lab.procs.all() if p not in before and p not in self.lab.infra]
        self.lab.procs.stop(left, grace=3.0)
        time.sleep(1.0)  # let the tail read what the last packets produced
        return self.runs

    def records_for(self, server_port: int, server_ip: str | None = None) -> list[SeenRecord]:
        with self._lock:
            recs = list(self.records)
        return [
            s
            for s in recs
            if s.record["event_type"] != "stats"  # capture health, no flow
            and s.record["dest_port"] == server_port
            and (server_ip is None or s.record["dest_ip"] == server_ip)
        ]
