"""Running scenarios: one fresh lab instance and one capture per scenario run.

Each scenario gets its own namespaces, delay line and capture, so its capture holds its own
traffic only and independent scenarios can run side by side (`jobs`). After a scenario the
runner stops what it started, lets the last packets cross the WAN, closes the capture,
removes the namespaces and resolves the scenario's `Expect`s against its capture into
`labels.tsv`. A failing scenario is reported and the run goes on; the caller decides the
exit code from `RunReport.failed`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from flowdet import __version__
from flowdet.errors import LabError
from flowdet.lab import labels as labelling
from flowdet.lab import tools
from flowdet.lab.capture import Capture
from flowdet.lab.procs import ProcessTable, StateFile, alive
from flowdet.lab.scenario import LABELS, PROFILES, Expect, Scenario
from flowdet.lab.topology import (
    ADDRESSES,
    CAPTURE_IFACE,
    HOSTS,
    OUTSIDE,
    ROUTER,
    SANDBOX,
    Topology,
    Wan,
    cleanup_state,
)

# Per-scenario time budget: past it the lab is torn down under the scenario.
BUDGET_S = {"quick": 100.0, "standard": 20 * 60.0, "full": 4 * 3600.0}
DEFAULT_JOBS = {"quick": 4, "standard": 4, "full": 3}
STATE_FILE = ".lab-state.json"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class NamespaceLab:
    """The `Lab` a scenario sees: three hosts in fresh namespaces, torn down exactly once."""

    hosts: Sequence[str] = HOSTS

    def __init__(self, state: StateFile, wan: dict[str, Wan], seed: int, tag: str) -> None:
        self.procs = ProcessTable(state, "pending")
        self.topo = Topology(self.procs, state, wan, seed)
        self.procs.lab_id = self.topo.id
        self.state = state
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.topo.id}-{tag}-"))
        (self._workdir / "logs").mkdir()
        state.lab(self.topo.id, workdir=str(self._workdir), scenario=tag)
        self.notes: dict[str, Any] = {}
        self.captures: list[Capture] = []
        self.infra: list[subprocess.Popen[bytes]] = []  # captures: stopped last
        self.aborted: str | None = None
        self._abort_event = threading.Event()
        self._teardown_lock = threading.Lock()
        self._torn_down = False
        self._nlog = 0
        self.problems: list[str] = []

    # --- the Lab protocol -------------------------------------------------------------

    def ip(self, host: str) -> str:
        if host not in ADDRESSES:
            raise LabError(f"no host {host!r} in the lab (hosts: {', '.join(HOSTS)})")
        return ADDRESSES[host]

    def spawn(
        self,
        host: str,
        argv: Sequence[str],
        *,
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        if host not in self.hosts and host != ROUTER:
            raise LabError(f"no host {host!r} in the lab (hosts: {', '.join(HOSTS)})")
        self._check()
        if argv and "/" not in argv[0] and tools.which(argv[0]) is None:
            tools.require([argv[0]])  # a LabError naming the Debian package
        full_env = {
            "PATH": BASE_PATH,
            "HOME": str(self.home(host)),
            "USER": "root",
            "LOGNAME": "root",
            "LANG": "C.UTF-8",
            "TERM": "xterm-256color",
            "FLOWDET_LAB_HOST": host,
        }
        full_env.update(env or {})
        log: IO[bytes] | None = None
        if stdout is None or stderr is None:
            self._nlog += 1
            name = Path(argv[0]).name if argv else "proc"
            log = open(self._workdir / "logs" / f"{self._nlog:03d}-{host}-{name}.log", "ab")  # noqa: SIM115
        try:
            return self.procs.start(
                self.topo.exec_argv(host, list(argv)),
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=log if stdout is None else stdout,
                stderr=log if stderr is None else stderr,
                env=full_env,
                cwd=cwd or self._workdir,
            )
        finally:
            if log is not None:
                log.close()

    def wait_port(self, host: str, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            out = subprocess.run(
                self.topo.exec_argv(host, ["ss", flag, f"sport = :{port}"]),
                capture_output=True,
                text=True,
                timeout=10,
            )
            if out.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise LabError(f"nothing listens on {proto}/{port} in {host} after {timeout:.0f} s")
            time.sleep(0.05)

    @property
    def workdir(self) -> Path:
        return self._workdir

    def sleep(self, seconds: float) -> None:
        if self._abort_event.wait(max(0.0, seconds)):
            self._check()

    def note(self, **facts: object) -> None:
        self.notes.update(facts)

    # --- runner side ------------------------------------------------------------------

    def home(self, host: str) -> Path:
        path = self._workdir / "home" / host
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _check(self) -> None:
        if self.aborted is not None:
            raise LabError(f"lab stopped: {self.aborted}")

    def up(self) -> None:
        self.topo.up()

    def start_capture(self, path: Path, host: str = ROUTER, iface: str = CAPTURE_IFACE) -> None:
        tool, _ = tools.capture_program()
        if tool == "tcpdump" and path.suffix == ".pcapng":
            path = path.with_suffix(".pcap")  # tcpdump writes pcap only
        cap = Capture(tool, path, iface, self._workdir / "logs" / f"capture-{host}-{iface}.log")

        def spawn(argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
            proc = self.procs.start(self.topo.exec_argv(host, argv), **kw)
            self.infra.append(proc)
            return proc

        cap.start(spawn)
        self.captures.append(cap)

    def abort(self, reason: str) -> None:
        """Stop the lab under a running scenario (interrupt, time budget)."""
        if self.aborted is None:
            self.aborted = reason
        self._abort_event.set()
        self.teardown()

    def teardown(self, settle: float = 0.0) -> None:
        """Stop scenario programs, let the last packets land, close captures, remove all."""
        with self._teardown_lock:
            if self._torn_down:
                return
            self._torn_down = True
            self.procs.close()
            scenario_procs = [
                p for p in self.procs.all() if p not in self.infra and p is not self.topo.delayline
            ]
            self.procs.stop(scenario_procs, grace=3.0)
            if settle > 0 and self.aborted is None:
                time.sleep(settle)
            for cap in self.captures:
                cap.stop()
            self.topo.stop_delayline()
            self.procs.stop()
            self.problems.extend(self.topo.down())
            self.state.lab(self.topo.id, torn_down=True, problems=self.problems)

    def remove_workdir(self, keep_logs_in: Path | None = None) -> None:
        if keep_logs_in is not None:
            with contextlib.suppress(OSError):
                shutil.copytree(self._workdir / "logs", keep_logs_in, dirs_exist_ok=True)
        shutil.rmtree(self._workdir, ignore_errors=True)


@dataclass(slots=True)
class ScenarioResult:
    name: str
    label: str
    pcap: str
    status: str = "pending"  # ok | failed | interrupted
    error: str | None = None
    detail: str | None = None
    started: float = 0.0
    duration_s: float = 0.0
    wan: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    flows_labelled: int = 0
    flows_unlabelled: list[str] = field(default_factory=list)
    delayline: dict[str, Any] = field(default_factory=dict)
    extra_pcaps: list[str] = field(default_factory=list)
    lab_id: str = ""


@dataclass(slots=True)
class RunReport:
    outdir: Path
    seed: int
    profile: str
    results: list[ScenarioResult]
    interrupted: bool = False

    @property
    def failed(self) -> list[ScenarioResult]:
        return [r for r in self.results if r.status != "ok"]


def scenario_seed(seed: int, name: str) -> random.Random:
    """Each scenario's own random stream: independent of which others run, or in what order."""
    return random.Random(f"{seed}:{name}")


class Runner:
    """Runs a list of scenarios into `outdir`, up to `jobs` at a time."""

    def __init__(
        self,
        outdir: Path,
        scenarios: Sequence[Scenario],
        *,
        profile: str = "quick",
        seed: int = 1,
        jobs: int | None = None,
        capture_loopback: bool = False,
        keep_logs: bool = False,
        progress: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        if profile not in PROFILES:
            raise LabError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
        self.outdir = outdir
        self.scenarios = list(scenarios)
        self.profile = profile
        self.seed = seed
        self.jobs = max(1, jobs or DEFAULT_JOBS[profile])
        self.capture_loopback = capture_loopback
        self.keep_logs = keep_logs
        self.progress = progress
        self._active: set[NamespaceLab] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.state: StateFile | None = None

    def check_environment(self) -> None:
        tools.require_root()
        tools.require(tools.CORE)
        tools.capture_program()
        # sshd refuses to start without its privilege-separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def run(self) -> RunReport:
        self.check_environment()
        self.outdir.mkdir(parents=True, exist_ok=True)
        self._take_over_state(self.outdir / STATE_FILE)
        self.state = StateFile(self.outdir / STATE_FILE)
        report = RunReport(self.outdir, self.seed, self.profile, [])
        started = time.time()
        todo: queue.Queue[Scenario] = queue.Queue()
        for scn in self.scenarios:
            todo.put(scn)
        results: dict[str, ScenarioResult] = {}
        threads = [
            threading.Thread(target=self._worker, args=(todo, results), daemon=True)
            for _ in range(min(self.jobs, len(self.scenarios)) or 1)
        ]
        previous = _install_sigterm()
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)
        except KeyboardInterrupt:
            report.interrupted = True
            # a second Ctrl-C must not cut the cleanup short and leave namespaces behind
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._stopping.set()
            self.progress("interrupted: stopping every lab")
            with self._lock:
                active = list(self._active)
            for lab in active:
                lab.abort("interrupted")
            for t in threads:
                t.join(20.0)
        finally:
            _restore_sigterm(previous)
            if report.interrupted and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.default_int_handler)
            report.results = [
                results.get(s.name) or ScenarioResult(s.name, s.label, "", status="interrupted")
                for s in self.scenarios
            ]
            self._write_manifest(report, started)
        if report.interrupted:
            raise KeyboardInterrupt
        return report

    def _take_over_state(self, path: Path) -> None:
        """Refuse an OUTDIR another live run is writing to; finish a killed run's teardown."""
        if not path.exists():
            return
        try:
            old = json.loads(path.read_text())
            pid = int(old.get("runner_pid", 0))
        except (ValueError, OSError, TypeError):
            return
        if pid and pid != os.getpid() and alive(pid):
            raise LabError(f"another lab run (pid {pid}) is writing to {self.outdir}")
        if any(not lab.get("torn_down") for lab in old.get("labs", {}).values()):
            done = cleanup_state(path)
            if done:
                self.progress(f"removed leftovers of an earlier, killed run: {len(done)} items")

    def _worker(self, todo: queue.Queue[Scenario], results: dict[str, ScenarioResult]) -> None:
        while not self._stopping.is_set():
            try:
                scn = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[scn.name] = self._run_one(scn)
            except Exception as exc:  # a runner bug must not lose the other scenarios
                results[scn.name] = ScenarioResult(
                    scn.name, scn.label, "", status="failed", error=_one_line(exc),
                    detail=traceback.format_exc(limit=6),
                )  # fmt: skip

    def _run_one(self, scn: Scenario) -> ScenarioResult:
        assert self.state is not None
        pcap = self.outdir / f"{scn.name}-{self.seed}.pcapng"
        res = ScenarioResult(scn.name, scn.label, pcap.name, started=time.time())
        wan_rng = random.Random(f"{self.seed}:{scn.name}:wan")
        wan = {host: Wan.choose(wan_rng) for host in OUTSIDE}
        res.wan = {h: w.to_json() for h, w in wan.items()}
        lab = NamespaceLab(self.state, wan, wan_rng.randrange(2**31), scn.name)
        res.lab_id = lab.topo.id
        with self._lock:
            self._active.add(lab)
        self.progress(f"{scn.name}: starting ({lab.topo.id})")
        t0 = time.monotonic()
        expects: list[Expect] = []
        timer = threading.Timer(
            BUDGET_S[self.profile], lab.abort, args=(f"time budget {BUDGET_S[self.profile]:.0f} s",)
        )
        timer.daemon = True
        try:
            stale = [pcap, pcap.with_suffix(".pcap"), pcap.with_suffix(".lo.pcapng")]
            with self._lock:
                labelling.drop_pcap(self.outdir / "labels.tsv", [p.name for p in stale])
            for p in stale:
                p.unlink(missing_ok=True)
            lab.up()
            lab.start_capture(pcap)
            if lab.captures[0].path != pcap:
                pcap = lab.captures[0].path
                res.pcap = pcap.name
            if self.capture_loopback:
                lo = self.outdir / f"{scn.name}-{self.seed}.lo.pcapng"
                lab.start_capture(lo, host=SANDBOX, iface="lo")
                res.extra_pcaps.append(lab.captures[-1].path.name)
            timer.start()
            expects = list(scn.run(lab, scenario_seed(self.seed, scn.name), self.profile))
            _validate(expects, lab)
        except Exception as exc:  # a scenario's failure is reported; the run goes on
            res.status = "failed"
            res.error = lab.aborted if lab.aborted else _one_line(exc)
            if not isinstance(exc, LabError):
                res.detail = traceback.format_exc(limit=6)
        finally:
            timer.cancel()
            settle = 0.3 + max(w.rtt_ms for w in wan.values()) / 1000.0 * 2
            lab.teardown(settle=settle)
            with self._lock:
                self._active.discard(lab)
            res.duration_s = round(time.monotonic() - t0, 2)
            res.notes = dict(lab.notes)
            res.delayline = dict(lab.topo.delayline_counts)
            if lab.problems:
                res.status = "failed"
                res.error = (res.error + "; " if res.error else "") + "; ".join(lab.problems)
        if lab.aborted == "interrupted":
            res.status = "interrupted"
        if res.status == "pending":
            try:
                rows, unclaimed, errors = labelling.resolve(pcap, scn.name, expects, lab.ip)
            except LabError as exc:
                rows, unclaimed, errors = [], [], [str(exc)]
            res.flows_unlabelled = [
                f"{f.proto} {f.client_ip}:{f.client_port} -> {f.server_ip}:{f.server_port}"
                for f in unclaimed
            ]
            if errors:
                res.status = "failed"
                res.error = "; ".join(errors)
            else:
                res.status = "ok"
                res.flows_labelled = len(rows)
                with self._lock:
                    labelling.append_tsv(self.outdir / "labels.tsv", rows)
        keep = None
        if res.status == "failed" or self.keep_logs:
            keep = self.outdir / "logs" / f"{scn.name}-{self.seed}"
        lab.remove_workdir(keep_logs_in=keep)
        if res.status == "ok":
            self.progress(
                f"{scn.name}: ok, {res.flows_labelled} flows labelled {scn.label}, "
                f"{res.duration_s:.1f} s"
            )
        else:
            self.progress(f"{scn.name}: {res.status.upper()}: {res.error}")
        return res

    def _write_manifest(self, report: RunReport, started: float) -> None:
        path = self.outdir / "manifest.json"
        runs: list[dict[str, Any]] = []
        if path.exists():
            with contextlib.suppress(ValueError, OSError):
                runs = list(json.loads(path.read_text()).get("runs", []))
        runs.append(
            {
                "flowdet": __version__,
                "seed": report.seed,
                "profile": report.profile,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "duration_s": round(time.time() - started, 2),
                "jobs": self.jobs,
                "interrupted": report.interrupted,
                "versions": tools.versions(),
                "topology": {
                    "addresses": ADDRESSES,
                    "capture": f"{ROUTER}:{CAPTURE_IFACE} (router side of the sandbox veth)",
                },
                "scenarios": [asdict(r) for r in report.results],
            }
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
        os.replace(tmp, path)


def _validate(expects: list[Expect], lab: NamespaceLab) -> None:
    if not expects:
        raise LabError("the scenario returned no Expect: its traffic would be unlabelled")
    for e in expects:
        if not isinstance(e, Expect):
            raise LabError(f"scenario returned {type(e).__name__}, not Expect")
        if e.label not in LABELS:
            raise LabError(f"unknown label {e.label!r} (one of {', '.join(LABELS)})")
        if e.proto not in ("tcp", "udp"):
            raise LabError(f"unknown proto {e.proto!r} in {e}")
        lab.ip(e.client)
        lab.ip(e.server)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _install_sigterm() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
