"""Highest SUSTAINED packet rate `flowdet live` keeps up with, and peers on the same stream.

    sudo .venv/bin/python benchmarks/live_throughput.py [--rates 50000,100000,200000,400000]
        [--seconds 30] [--tools flowdet,dumpcap,tshark,nfstream] [--pin] [--nice -15]
        [--slice N] [--past 0] [--src DIR] [--json out.json]

Needs root (network namespaces) and tcpreplay (Debian: `apt-get install tcpreplay`).

Two network namespaces of our own joined by a veth pair (vtx <-> vrx; offloads off, IPv6
off, no addresses: nothing leaves the pair). tcpreplay sends the benchmark mix
(benchmarks/_common.mix_path: ~1M packets of the Zeek corpus, or its first `--slice`
packets) into vtx *in a loop* for `--seconds` per step at a target rate (`--pps`, preloaded
into RAM), so each step offers far more packets than the capture buffers hold (dumpcap's
64 MiB kernel ring is ~1-3 s of this mix at 100k packets/s): a receiver that is slower
than the offered rate has to drop, it cannot hide in the buffers.

Per step, one receiver at a time captures vrx (same stream, same rate, one after the
other, so they do not share the CPU with each other):

- flowdet: `flowdet live -i vrx` (dumpcap -> pipe -> flowdet, full scoring chain, default
  model, JSONL sink);
- dumpcap: `dumpcap -i vrx -B 64 -w /dev/null` alone: the capture ceiling;
- tshark: `tshark -i vrx -B 64 -q -z conv,ip` (dumpcap child, every packet dissected, one
  conversation table). Its dumpcap writes a temporary file that tshark reads, so tshark
  never makes dumpcap drop: it falls behind instead (and its memory grows); the time it
  takes to finish after the stop stands for its lag;
- nfstream: `NFStreamer(source="vrx", statistical_analysis=True, n_meters=1)` (libpcap).

Reported per step and receiver:

- offered: packets/s measured on the sender side (vtx tx counter over the sending window;
  tcpreplay's own count is reported too), and how many frames reached vrx (its rx counter)
  - the "wire";
- captured / dropped: dumpcap's final per-interface counts (received; dropped by the kernel
  ring "pcap", by dumpcap, flushed; interface drops), tshark's and nfstream's own counts;
  veth rx/tx drops from the kernel (`/proc/net/dev`, what `ip -s link` shows);
- processed: packets the receiver processed (flowdet: its summary);
- lag: how far the receiver was behind the wire when the sender stopped (wire packets not
  yet processed, and that in seconds of the offered rate), and how long it took to catch
  up afterwards (drain);
- CPU (user+sys seconds per wall second over the sending window, 1.0 = one core) and peak
  RSS of the receiver, of its dumpcap child (nfstream: its meter process), and CPU of the
  sender.

A step is "kept up" when nothing was dropped anywhere (kernel ring, dumpcap, veth), the
receiver processed every packet that reached vrx, and it was less than one second of
traffic behind the wire when the sender stopped (a growing backlog is not keeping up even
if the step was too short for it to overflow the buffers). Steps stop at the first rate a
receiver does not keep up with (two steps past it with `--past 2`).

On this 2-core machine the sender competes with the receiver for CPU; so does the veth's
receive path (softirq), which runs on the sender's CPU. `--pin` puts tcpreplay on CPU 1
and the receiver (with its dumpcap child) on CPU 0, so the receiver has exactly one core
whatever the sender does; without it the scheduler shares both cores. The sender's
achieved rate is always measured, and a step whose sender fell more than 5 % short of the
target is marked so. Other work on the machine disturbs the numbers: repeat them. With
autogroups (Linux's default), other sessions get the same CPU share as ours whatever our
`nice`, so `--nice` (default -15) sets the autogroup nice of the sender's and receivers'
sessions; `--nice 0` shares the CPU with other work as it comes. `--src DIR` runs flowdet
from another source tree (a `git archive` of a commit), to compare commits in one go while
the working tree changes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import mix_path  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
if not Path(PY).exists():
    PY = sys.executable
TOOLS = ("flowdet", "dumpcap", "tshark", "nfstream")
CLK = os.sysconf("SC_CLK_TCK")

NFSTREAM_RUNNER = r"""
import sys
from nfstream import NFStreamer
s = NFStreamer(source=sys.argv[1], statistical_analysis=True, n_meters=1,
               performance_report=1, idle_timeout=120, active_timeout=1800)
flows = 0
try:
    for f in s:
        flows += 1
except KeyboardInterrupt:
    pass
print('{"flows_yielded": %d}' % flows, flush=True)
"""

# dumpcap's final line per interface (flowdet's summary repeats it with its own wording)
_DUMPCAP_FINAL = re.compile(
    r"Packets received/dropped on interface '[^']*': (\d+)/(\d+) "
    r"\(pcap:(\d+)/dumpcap:(\d+)/flushed:(\d+)(?:/ps_ifdrop:(\d+))?\)"
)
_FLOWDET_FINAL = re.compile(
    r"dumpcap vrx: ([\d,]+) received, ([\d,]+) dropped \(kernel ([\d,]+), "
    r"dumpcap ([\d,]+), flushed ([\d,]+); interface ([\d,]+)\)"
)
_FLOWDET_STATUS = re.compile(r"flowdet live: +\d+ s +([\d,]+) pkts")
_DUMPCAP_RUNNING = re.compile(r"^Packets(?: captured)?: (\d+)", re.M)


def _int(s: str | None) -> int:
    return int(s.replace(",", "")) if s else 0


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


# -- the veth pair ----------------------------------------------------------------------------


class VethPair:
    """tx and rx namespaces joined by a veth pair (vtx <-> vrx), created and removed here.

    A `sleep` parked in each namespace lets the counters be read from /proc/PID/net/dev
    without starting a process per reading."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.tx, self.rx = f"fdtp-{tag}-tx", f"fdtp-{tag}-rx"
        self._anchors: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> VethPair:
        try:
            for ns in (self.tx, self.rx):
                sh("ip", "netns", "add", ns)
                for k in ("all", "default"):
                    sh(*self.ns(ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1"))
            sh("ip", "link", "add", "vtx", "netns", self.tx, "type", "veth", "peer", "name",
               "vrx", "netns", self.rx)  # fmt: skip
            for ns, dev in ((self.tx, "vtx"), (self.rx, "vrx")):
                # jumbo frames of the corpus must fit; offloads off: packets stay as sent
                sh(*self.ns(ns, "ip", "link", "set", dev, "mtu", "9000", "up"))
                sh(*self.ns(ns, "ethtool", "-K", dev, "gro", "off", "gso", "off", "tso", "off"),
                   check=False)  # fmt: skip
                self._anchors[ns] = subprocess.Popen(
                    self.ns(ns, "sleep", "86400"), stdin=subprocess.DEVNULL
                )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self._anchors.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            p.wait(5)
        for ns in (self.tx, self.rx):
            sh("ip", "netns", "del", ns, check=False)

    @staticmethod
    def ns(ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def counters(self) -> dict[str, int]:
        """rx/tx packets and drops of vtx and vrx (the kernel's, as `ip -s link` shows)."""
        out: dict[str, int] = {}
        for ns, dev in ((self.tx, "vtx"), (self.rx, "vrx")):
            text = Path(f"/proc/{self._anchors[ns].pid}/net/dev").read_text()
            for line in text.splitlines()[2:]:
                name, _, rest = line.partition(":")
                if name.strip() == dev:
                    c = [int(x) for x in rest.split()]
                    out[f"{dev}_rx_packets"], out[f"{dev}_rx_drop"] = c[1], c[3]
                    out[f"{dev}_tx_packets"], out[f"{dev}_tx_drop"] = c[9], c[11]
        return out


# -- processes ----------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


def cpu_seconds(pid: int | None) -> float | None:
    """user + system CPU seconds of a running process (all its threads)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK


def peak_rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def set_priority(pid: int | None, nice: int) -> None:
    """Scheduling priority of `pid`'s autogroup (its session): with autogroups on, `nice`
    within a session does not count against other sessions, so this is the knob."""
    if pid is not None and nice:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def with_priority(argv: list[str], nice: int) -> list[str]:
    """`argv` in a session of its own whose autogroup runs at `nice`."""
    if not nice:
        return argv
    return ["setsid", "sh", "-c", f'echo {nice} > /proc/self/autogroup; exec "$@"', "sh", *argv]


def _stop(proc: subprocess.Popen, sig: int, timeout: float = 120.0) -> None:
    if proc.poll() is None:
        # SIGINT goes to the whole group (nfstream's meter processes stop on it too)
        (os.killpg if sig == signal.SIGINT else os.kill)(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its group (nfstream meters)


def _wait_text(path: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, path.read_text(errors="replace"), re.M):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args}: did not start: {path.read_text()[-2000:]}")
        time.sleep(0.05)


# -- receivers ----------------------------------------------------------------------------------


@dataclass
class Receiver:
    """One capturing tool: how to start it, read its running count, and its final counts."""

    tool: str
    argv: list[str]
    log: Path
    ready: str  # regex in the log once it captures
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = None

    def start(self, pin: str | None, src: Path) -> None:
        argv = (["taskset", "-c", pin] if pin else []) + self.argv
        env = dict(os.environ, PYTHONPATH=str(src))
        with open(self.log, "wb") as f:
            out = f if self.tool == "nfstream" else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=f, start_new_session=True, cwd=src,
                stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        _wait_text(self.log, self.ready, self.proc, 180)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def capture_pid(self) -> int | None:
        """The dumpcap child of flowdet or tshark, nfstream's meter process (None for
        dumpcap alone)."""
        if self.tool == "dumpcap" or self.pid is None:
            return None
        kids = _children(self.pid)
        return kids[0] if kids else None

    def processed_now(self) -> int | None:
        """Packets processed so far, from the tool's running output (None: not known)."""
        text = self.log.read_text(errors="replace")
        if self.tool == "flowdet":
            counts = _FLOWDET_STATUS.findall(text)
            return _int(counts[-1]) if counts else 0
        if self.tool == "dumpcap":
            counts = _DUMPCAP_RUNNING.findall(text.replace("\r", "\n"))
            return int(counts[-1]) if counts else 0
        if self.tool == "nfstream":
            r = _nfstream_report(text)
            if r.get("processed") is None:
                return None
            return r["processed"] + (r.get("ignored") or 0)
        return None  # tshark -q prints nothing while it runs

    def final(self) -> dict:
        text = self.log.read_text(errors="replace")
        out: dict = {}
        if self.tool == "flowdet":
            m = re.search(r"flowdet live: ([\d,]+) packets in ([\d.]+) s", text)
            out["processed"] = _int(m.group(1)) if m else None
            m = _FLOWDET_FINAL.search(text)
            if m:
                v = [_int(g) for g in m.groups()]
                out.update(received=v[0], dropped=v[1], kernel=v[2], dumpcap=v[3],
                           flushed=v[4], ifdrop=v[5])  # fmt: skip
        elif self.tool in ("dumpcap", "tshark"):
            m = _DUMPCAP_FINAL.search(text)
            if m:
                v = [_int(g) for g in m.groups()]
                out.update(received=v[0], dropped=v[1], kernel=v[2], dumpcap=v[3],
                           flushed=v[4], ifdrop=v[5])  # fmt: skip
            if self.tool == "dumpcap":
                out["processed"] = out.get("received")
            else:
                m = re.search(r"^(\d+) packets? captured", text, re.M)
                out["processed"] = int(m.group(1)) if m else None
                # tshark prints its dumpcap child's drops only when there were some
                m = re.search(r"^(\d+) packets? dropped from", text, re.M)
                if "dropped" not in out:
                    out["dropped"] = int(m.group(1)) if m else 0
        elif self.tool == "nfstream":
            r = _nfstream_report(text)
            # nfstream's processed count leaves out the packets it ignored (not IP)
            rec = (r.get("processed") or 0) + (r.get("ignored") or 0)
            out.update(processed=rec, received=rec, dropped=r.get("dropped"),
                       ignored=r.get("ignored"))  # fmt: skip
        return out


def _nfstream_report(text: str) -> dict:
    last: dict = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and "packets_processed" in line:
            with contextlib.suppress(ValueError):
                last = json.loads(line)
    return {
        "processed": last.get("packets_processed"),
        "dropped": last.get("packets_dropped_filtered_by_kernel"),
        "ignored": last.get("packets_ignored"),
    }


def make_receiver(tool: str, v: VethPair, tmp: Path, tag: str) -> Receiver:
    log = tmp / f"{tool}-{tag}.log"
    if tool == "flowdet":
        argv = v.ns(v.rx, PY, "-m", "flowdet.cli", "live", "-i", "vrx", "--format", "jsonl",
                    "-o", str(tmp / f"alerts-{tag}.jsonl"),
                    "--status-interval", "0.25")  # fmt: skip
        return Receiver(tool, argv, log, r"capturing on")
    if tool == "dumpcap":
        argv = v.ns(v.rx, "dumpcap", "-i", "vrx", "-B", "64", "-w", "/dev/null")
        return Receiver(tool, argv, log, r"^File: ")
    if tool == "tshark":
        argv = v.ns(v.rx, "tshark", "-i", "vrx", "-B", "64", "-q", "-z", "conv,ip")
        return Receiver(tool, argv, log, r"^Capturing on")
    if tool == "nfstream":
        argv = v.ns(v.rx, PY, "-c", NFSTREAM_RUNNER, "vrx")
        return Receiver(tool, argv, log, r"packets_processed", stop_signal=signal.SIGINT)
    raise ValueError(tool)


# -- one step -------------------------------------------------------------------------------------


@dataclass
class Step:
    tool: str
    target_pps: int
    seconds: float = 0.0  # sending window
    offered_pps: float = 0.0  # vtx tx packets / sending window
    sender: dict = field(default_factory=dict)  # tcpreplay's report and CPU
    wire: int = 0  # frames that reached vrx (its rx counter) during the step
    veth_drops: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)  # the receiver's own final counts
    processed_at_send_end: int | None = None
    # packets captured but not yet processed when the sender stopped (wire - processed -
    # dropped: dropped ones will never be processed, they are counted as drops)
    lag_packets: int | None = None
    lag_seconds: float | None = None
    processed_pps: float | None = None  # over the sending window
    drain_seconds: float | None = None  # after the sender stopped, until caught up
    exit_seconds: float | None = None  # from the stop signal to the receiver's exit
    cpu: dict = field(default_factory=dict)  # CPU seconds per wall second (1.0 = a core)
    peak_rss_mb: dict = field(default_factory=dict)
    load: float = 0.0  # 1-minute load average of the machine as the step started
    kept_up: bool = False
    why_not: str = ""
    sender_short: bool = False


def _sample(rx: Receiver, v: VethPair) -> tuple[float, int | None, dict[str, int]]:
    return time.monotonic(), rx.processed_now(), v.counters()


def one_step(
    v: VethPair,
    pcap: Path,
    rate: int,
    seconds: float,
    tool: str,
    tmp: Path,
    pin: bool,
    src: Path = REPO,
    nice: int = 0,
) -> Step:
    st = Step(tool, rate)
    rx = make_receiver(tool, v, tmp, f"{rate}")
    sender_log = tmp / f"tcpreplay-{tool}-{rate}.log"
    sender_argv = v.ns(v.tx, "tcpreplay", "-i", "vtx", "-K", "--loop=0", f"--pps={rate}",
                       f"--duration={seconds:g}", "--stats=0", str(pcap))  # fmt: skip
    sender_argv = with_priority(sender_argv, nice)
    if pin:
        sender_argv = ["taskset", "-c", "1", *sender_argv]
    rx.start("0" if pin else None, src)
    try:
        cap_pid = rx.capture_pid()
        for pid in (rx.pid, *_children(rx.pid or 0)):
            set_priority(pid, nice)
        st.load = os.getloadavg()[0]
        c0 = v.counters()
        with open(sender_log, "wb") as f:
            snd = subprocess.Popen(sender_argv, stdout=f, stderr=subprocess.STDOUT)
        # the sending window: from the first frame out of vtx (preloading comes first) to
        # the last one, read every 20 ms
        tx0 = c0["vtx_tx_packets"]
        while v.counters()["vtx_tx_packets"] == tx0 and snd.poll() is None:
            time.sleep(0.005)
        t_start, p_start, c_start = _sample(rx, v)
        cpu0 = {k: cpu_seconds(p) for k, p in (("receiver", rx.pid), ("dumpcap", cap_pid),
                                                ("sender", snd.pid))}  # fmt: skip
        last = (t_start, p_start, c_start)
        cpu1: dict[str, float | None] = {}
        while snd.poll() is None:
            time.sleep(0.02)
            cur = _sample(rx, v)
            if cur[2]["vtx_tx_packets"] != last[2]["vtx_tx_packets"]:
                last = cur
                cpu1 = {k: cpu_seconds(p) for k, p in (("receiver", rx.pid),
                        ("dumpcap", cap_pid), ("sender", snd.pid))}  # fmt: skip
        t_end, p_end, c_end = last
        window = t_end - t_start
        st.seconds = round(window, 2)
        sent = c_end["vtx_tx_packets"] - c_start["vtx_tx_packets"]
        st.offered_pps = round(sent / window) if window > 0 else 0.0
        st.sender = _parse_tcpreplay(sender_log.read_text(errors="replace"))
        st.sender_short = st.offered_pps < 0.95 * rate
        for k, a in cpu0.items():
            b = cpu1.get(k)
            if a is not None and b is not None:
                st.cpu[k] = round((b - a) / window, 2)
        if p_end is not None and p_start is not None:
            st.processed_pps = round((p_end - p_start) / window)
        st.peak_rss_mb = {"receiver": peak_rss_mb(rx.pid), "dumpcap": peak_rss_mb(cap_pid)}
        # lag: wire packets not yet processed at the first count after the sender stopped
        wire_so_far = c_end["vrx_rx_packets"] - c0["vrx_rx_packets"]
        p_after = _next_count(rx, p_end)
        if p_after is not None:
            st.processed_at_send_end = p_after
            st.lag_packets = max(0, wire_so_far - p_after)
            st.lag_seconds = round(st.lag_packets / max(st.offered_pps, 1.0), 2)
        st.drain_seconds = _drain(rx, wire_so_far, t_end)
        st.peak_rss_mb = {k: _max(st.peak_rss_mb.get(k), peak_rss_mb(p))
                          for k, p in (("receiver", rx.pid), ("dumpcap", cap_pid))}  # fmt: skip
    finally:
        if rx.proc is not None:
            t_stop = time.monotonic()
            # nfstream does not always exit on SIGINT: its last report line is its count
            _stop(rx.proc, rx.stop_signal, 15.0 if rx.tool == "nfstream" else 120.0)
            st.exit_seconds = round(time.monotonic() - t_stop, 2)
    c9 = v.counters()
    st.wire = c9["vrx_rx_packets"] - c0["vrx_rx_packets"]
    st.veth_drops = {k: c9[k] - c0[k] for k in c9 if k.endswith("_drop")}
    st.final = rx.final()
    if st.lag_packets is not None:
        st.lag_packets = max(0, st.lag_packets - (st.final.get("dropped") or 0))
        st.lag_seconds = round(st.lag_packets / max(st.offered_pps, 1.0), 2)
    st.kept_up, st.why_not = _verdict(st)
    return st


def _next_count(rx: Receiver, prev: int | None, timeout: float = 2.0) -> int | None:
    """The receiver's first running count that differs from `prev` (a fresh one), or the
    same count after `timeout` (it had nothing more to process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = rx.processed_now()
        if n is not None and n != prev:
            return n
        time.sleep(0.02)
    return rx.processed_now()


def _max(a: float | None, b: float | None) -> float | None:
    vals = [x for x in (a, b) if x is not None]
    return round(max(vals), 1) if vals else None


def _drain(rx: Receiver, target: int, t_end: float, still: float = 4.0, limit: float = 300.0):
    """Seconds after the sender stopped until the receiver's count stopped moving (or
    reached `target`); None when the tool prints no running count."""
    last, last_change = rx.processed_now(), t_end
    if last is None and rx.tool in ("tshark",):
        time.sleep(still)
        return None
    while time.monotonic() - t_end < limit:
        n = rx.processed_now()
        now = time.monotonic()
        if n is not None and n >= target:
            return round(now - t_end, 2)
        if n != last:
            last, last_change = n, now
        elif now - last_change > still:
            return round(last_change - t_end, 2)
        time.sleep(0.1)
    return None


def _verdict(st: Step) -> tuple[bool, str]:
    f = st.final
    why = []
    if f.get("processed") is None:
        why.append("no final counts")
    dropped = (f.get("dropped") or 0) + (f.get("ifdrop") or 0)
    if dropped:
        why.append(f"capture dropped {dropped:,}")
    # vtx tx drops: frames the veth could not hand to vrx's backlog (never captured).
    # vrx rx drops alone are frames no protocol took *after* packet sockets saw them.
    vd = st.veth_drops.get("vtx_tx_drop", 0)
    if vd:
        why.append(f"veth dropped {vd:,} before the capture")
    rec = f.get("received")
    # nfstream's processed + ignored counts fall short of the wire by ~0.2 % even at low
    # rates with no drop: its own kernel drop count decides for it
    if rec is not None and rec < st.wire and st.tool != "nfstream":
        why.append(f"captured {st.wire - rec:,} fewer than reached vrx")
    proc = f.get("processed") or 0
    if st.tool != "nfstream" and proc < st.wire:
        why.append(f"processed {st.wire - proc:,} fewer than reached vrx")
    if st.tool == "tshark" and (st.exit_seconds or 0) > 1.5:
        # dumpcap writes a temp file that tshark reads: it never blocks, tshark lags instead
        # (and its memory grows); how long it took to finish after the stop is that lag
        why.append(f"finished {st.exit_seconds:g} s after the stop (behind the capture)")
    if st.lag_seconds is not None and st.lag_seconds > 1.0:
        why.append(f"{st.lag_seconds:g} s behind the wire when the sender stopped")
    return not why, "; ".join(why)


def _parse_tcpreplay(text: str) -> dict:
    out: dict = {}
    m = re.findall(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", text)
    if m:
        out.update(sent=int(m[-1][0]), seconds=float(m[-1][2]))
    m = re.findall(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", text)
    if m:
        out["pps"] = float(m[-1])
    m = re.findall(r"Failed packets:\s+(\d+)", text)
    if m:
        out["failed"] = int(m[-1])
    return out


def slice_pcap(mix: Path, n: int, tmp: Path) -> Path:
    out = tmp / f"mix-first-{n}.pcap"
    sh("editcap", "-r", str(mix), str(out), f"1-{n}")
    return out


def sender_ceiling(v: VethPair, pcap: Path, pin: bool, nice: int, seconds: int = 5) -> float:
    """tcpreplay --topspeed with nobody capturing: the most this sender offers here."""
    argv = v.ns(v.tx, "tcpreplay", "-i", "vtx", "-K", "--loop=0", "--topspeed",
                f"--duration={seconds:g}", str(pcap))  # fmt: skip
    argv = with_priority(argv, nice)
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    c0 = v.counters()["vtx_tx_packets"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while v.counters()["vtx_tx_packets"] == c0 and p.poll() is None:
        time.sleep(0.01)
    t0, n0 = time.monotonic(), v.counters()["vtx_tx_packets"]
    p.wait()
    return (v.counters()["vtx_tx_packets"] - n0) / (time.monotonic() - t0)


# -- report ---------------------------------------------------------------------------------------


def _fmt(x: float | int | None, spec: str = ",") -> str:
    return "-" if x is None else format(x, spec)


def table(steps: list[Step]) -> str:
    head = (
        "| tool | target pps | offered pps | reached vrx | captured | dropped (kernel/dumpcap/"
        "veth) | processed | processed pps | lag at end | drain s | CPU rx+dumpcap / sender "
        "| pkts per rx CPU-s | peak RSS MB rx / dumpcap | load | kept up |"
    )
    rows = [head, "|" + " --- |" * 15]
    for s in steps:
        f = s.final
        drops = (
            f"{_fmt(f.get('dropped'))} ({_fmt(f.get('kernel'))}/{_fmt(f.get('dumpcap'))}/"
            f"{s.veth_drops.get('vtx_tx_drop', 0):,})"
        )
        lag = "-" if s.lag_packets is None else f"{s.lag_packets:,} ({s.lag_seconds:g} s)"
        cpu = f"{_fmt(s.cpu.get('receiver'), 'g')}+{_fmt(s.cpu.get('dumpcap'), 'g')} / " \
              f"{_fmt(s.cpu.get('sender'), 'g')}"  # fmt: skip
        rss = f"{_fmt(s.peak_rss_mb.get('receiver'), '.0f')} / " \
              f"{_fmt(s.peak_rss_mb.get('dumpcap'), '.0f')}"  # fmt: skip
        ok = "yes" if s.kept_up else f"no: {s.why_not}"
        cpu_rx = (s.cpu.get("receiver") or 0) + (s.cpu.get("dumpcap") or 0)
        per_cpu = round(s.processed_pps / cpu_rx) if s.processed_pps and cpu_rx else None
        short = " (sender short)" if s.sender_short else ""
        rows.append(
            f"| {s.tool} | {s.target_pps:,} | {s.offered_pps:,.0f}{short} | {s.wire:,} | "
            f"{_fmt(f.get('received'))} | {drops} | {_fmt(f.get('processed'))} | "
            f"{_fmt(s.processed_pps)} | {lag} | {_fmt(s.drain_seconds, 'g')} | {cpu} | "
            f"{_fmt(per_cpu)} | {rss} | {s.load:.1f} | {ok} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="50000,100000,200000,400000")
    ap.add_argument("--seconds", type=int, default=30, help="sending time per step")
    ap.add_argument("--tools", default="flowdet,dumpcap,tshark", help=f"of {','.join(TOOLS)}")
    ap.add_argument("--pin", action="store_true", help="sender on CPU 1, receiver on CPU 0")
    ap.add_argument(
        "--nice",
        type=int,
        default=-15,
        help="autogroup nice of sender and receivers (0: share the CPU with other work as is)",
    )
    ap.add_argument("--slice", type=int, default=0, help="replay only the first N packets")
    ap.add_argument("--past", type=int, default=0, help="steps to run past a tool's limit")
    ap.add_argument(
        "--src",
        type=Path,
        default=REPO,
        help="run flowdet from this source tree (e.g. `git archive` of a commit) instead of "
        "the working tree",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    for exe in ("tcpreplay", "dumpcap", "editcap"):
        if not any(Path(d, exe).exists() for d in os.environ.get("PATH", "").split(":")):
            print(f"{exe} not found (Debian: apt-get install tcpreplay tshark)", file=sys.stderr)
            return 2
    tools = [t for t in args.tools.split(",") if t]
    if not tools or any(t not in TOOLS for t in tools):
        print(f"--tools: some of {','.join(TOOLS)}", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    mix = mix_path()
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="flowdet-live-tp-") as t, VethPair() as v:
        tmp = Path(t)
        pcap = slice_pcap(mix, args.slice, tmp) if args.slice else mix
        ceiling = sender_ceiling(v, pcap, args.pin, args.nice)
        print(f"sender ceiling (tcpreplay --topspeed, nobody capturing, "
              f"{'pinned to CPU 1' if args.pin else 'not pinned'}): {ceiling:,.0f} pps",
              flush=True)  # fmt: skip
        for tool in tools:
            past = 0
            for rate in rates:
                st = one_step(
                    v, pcap, rate, args.seconds, tool, tmp, args.pin, args.src.resolve(), args.nice
                )
                steps.append(st)
                print(json.dumps(asdict(st)), flush=True)
                if not st.kept_up:
                    past += 1
                    if past > args.past:
                        break
    print(
        f"\n{'pinned: sender CPU 1, receiver CPU 0' if args.pin else 'not pinned'}; "
        f"{args.seconds:g} s per step; input {pcap.name}; sender ceiling {ceiling:,.0f} pps\n"
    )
    print(table(steps))
    print()
    for tool in tools:
        ok = [s for s in steps if s.tool == tool and s.kept_up]
        best = max(ok, key=lambda s: s.offered_pps, default=None)
        print(
            f"{tool}: highest sustained rate kept up with: "
            + (
                f"{best.offered_pps:,.0f} pps offered (target {best.target_pps:,})"
                if best
                else "none of the steps"
            )
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"ceiling_pps": ceiling, "pin": args.pin, "steps": [asdict(s) for s in steps]},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
