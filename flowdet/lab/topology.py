"""The lab's network: namespaces, a veth to the sandbox, TUN links through the WAN delay line.

```
 sandbox ─eth0═veth═lan0─ router ─wan-outside══(delay line)══wan0─ outside   10.213.2.20
 10.213.1.10         ▲ capture  ─wan-outside2═(delay line)══wan0─ outside2  10.213.3.30
 (monitored host)               ip_forward, no NAT
```

The capture point is the router's side of the sandbox's veth, like a firewall or tap next to
the sandbox: it sees the sandbox's packets as they leave and the outside's answers once they
have crossed the WAN. Offloads are off on the veth so the capture holds wire-sized packets
with real checksums, not 64 KB GSO super-packets. IPv6 is off so the capture holds only the
scenario's traffic (and ARP, as a real segment would).

Every namespace name carries a random suffix (`fdlab-<hex>-<role>`), so parallel runs and
leftovers of a crashed one never collide, and everything inside them is the lab's own.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from flowdet.errors import LabError
from flowdet.lab.delayline import LinkSpec
from flowdet.lab.procs import ProcessTable, StateFile, kill

PREFIX = "fdlab-"
SANDBOX = "sandbox"
OUTSIDE = ("outside", "outside2")
HOSTS = (SANDBOX, *OUTSIDE)
ROUTER = "router"
CAPTURE_IFACE = "lan0"  # in the router namespace, facing the sandbox

ADDRESSES = {"sandbox": "10.213.1.10", "outside": "10.213.2.20", "outside2": "10.213.3.30"}
ROUTER_LAN = "10.213.1.1"
PREFIXES = {"sandbox": "10.213.1.0/24", "outside": "10.213.2.0/24", "outside2": "10.213.3.0/24"}


@dataclass(frozen=True, slots=True)
class Wan:
    """Path conditions between the router and one outside host (each direction)."""

    rtt_ms: float
    jitter_ms: float
    loss: float
    rate_mbps: float
    ttl: int = 64  # the outside host's initial TTL, less the hops it is away
    mtu: int = 1500  # the outside host's link MTU (its TCP MSS follows)

    @classmethod
    def choose(cls, rng: random.Random) -> Wan:
        """A plausible Internet path: 20–150 ms RTT, a few % jitter, up to 0.5 % loss.

        TTL and MTU vary too, so no constant of the lab (TTL 63, MSS 1460) can stand in for
        the label in a model that happens to see them.
        """
        rtt = rng.uniform(20.0, 150.0)
        hops = rng.randint(6, 22)
        return cls(
            rtt_ms=round(rtt, 1),
            jitter_ms=round(rtt / 2 * rng.uniform(0.02, 0.12), 2),
            loss=round(rng.choice([0.0, 0.0005, 0.001, 0.002, 0.005]), 4),
            rate_mbps=round(10 ** rng.uniform(1.0, 2.0), 1),  # 10–100 Mbit/s
            ttl=rng.choice([64, 64, 64, 128, 255]) - hops,
            mtu=rng.choice([1500, 1500, 1500, 1500, 1492, 1480, 1460, 1420]),
        )

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {out.stderr.strip() or out.returncode}")
    return out


def ns_pids(ns: str) -> list[int]:
    out = _ip("netns", "pids", ns, check=False)
    return [int(x) for x in out.stdout.split() if x.isdigit()]


def ns_exists(ns: str) -> bool:
    return Path("/run/netns", ns).exists()


class Topology:
    """Creates and removes one lab instance's namespaces, links and delay line."""

    def __init__(
        self, procs: ProcessTable, state: StateFile, wan: dict[str, Wan], seed: int
    ) -> None:
        self.id = PREFIX + secrets.token_hex(4)
        self.procs = procs
        self.state = state
        self.wan = wan
        self.seed = seed
        self.ns = {role: f"{self.id}-{role}" for role in (*HOSTS, ROUTER)}
        self.delayline: subprocess.Popen[bytes] | None = None
        self.delayline_counts: dict[str, object] = {}
        # up() and down() exclude each other: an interrupt that tears the lab down while it
        # is being built must not miss a namespace created a moment later
        self._lock = threading.Lock()
        self._closed = False

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host], *argv]

    def _in(self, host: str, *argv: str) -> None:
        out = subprocess.run(
            self.exec_argv(host, list(argv)), capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            raise LabError(f"{host}: {' '.join(argv)}: {out.stderr.strip() or out.returncode}")

    def up(self) -> None:
        with self._lock:
            if self._closed:
                raise LabError("the lab was stopped before it was built")
            self._up()

    def _up(self) -> None:
        for role, ns in self.ns.items():
            self.state.add(self.procs.lab_id, "namespaces", ns)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            sysctls = [
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ]
            if role == ROUTER:
                sysctls.append("net.ipv4.ip_forward=1")
            self._in(role, "sysctl", "-qw", *sysctls)
        # sandbox <-> router veth, created directly inside the namespaces (never the host's)
        r, s = self.ns[ROUTER], self.ns[SANDBOX]
        _ip(
            "-n",
            r,
            "link",
            "add",
            CAPTURE_IFACE,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            s,
        )
        for host, dev in ((ROUTER, CAPTURE_IFACE), (SANDBOX, "eth0")):
            # wire-sized packets with real checksums in the capture
            subprocess.run(
                self.exec_argv(
                    host,
                    ["ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off"],
                ),
                capture_output=True,
                timeout=30,
            )
        _ip("-n", r, "addr", "add", f"{ROUTER_LAN}/24", "dev", CAPTURE_IFACE)
        _ip("-n", r, "link", "set", CAPTURE_IFACE, "up")
        _ip("-n", s, "addr", "add", f"{ADDRESSES[SANDBOX]}/24", "dev", "eth0")
        _ip("-n", s, "link", "set", "eth0", "up")
        _ip("-n", s, "route", "add", "default", "via", ROUTER_LAN)
        self._start_delayline()
        for host in OUTSIDE:
            o = self.ns[host]
            self._in(host, "sysctl", "-qw", f"net.ipv4.ip_default_ttl={self.wan[host].ttl}")
            _ip("-n", o, "link", "set", "wan0", "mtu", str(self.wan[host].mtu))
            _ip("-n", r, "link", "set", f"wan-{host}", "up")
            _ip("-n", r, "route", "add", PREFIXES[host], "dev", f"wan-{host}")
            _ip("-n", o, "addr", "add", f"{ADDRESSES[host]}/24", "dev", "wan0")
            _ip("-n", o, "link", "set", "wan0", "up")
            _ip("-n", o, "route", "add", "default", "dev", "wan0")

    def _start_delayline(self) -> None:
        specs = []
        for i, host in enumerate(OUTSIDE):
            w = self.wan[host]
            specs.append(
                LinkSpec(
                    a_ns=self.ns[ROUTER],
                    a_dev=f"wan-{host}",
                    b_ns=self.ns[host],
                    b_dev="wan0",
                    delay_ms=w.rtt_ms / 2,
                    jitter_ms=w.jitter_ms,
                    loss=w.loss,
                    rate_bps=w.rate_mbps * 1e6,
                    seed=self.seed * 7 + i,
                    name=host,
                ).to_json()
            )
        proc = self.procs.start(
            [sys.executable, "-m", "flowdet.lab.delayline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.delayline = proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps(specs) + "\n").encode())
        proc.stdin.flush()
        line = proc.stdout.readline()  # "ready", or EOF if it failed
        if line.strip() != b"ready":
            proc.wait(5)
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise LabError(f"WAN delay line failed to start: {err.splitlines()[-1:] or '?'}")

    def stop_delayline(self) -> None:
        proc = self.delayline
        if proc is None or proc.poll() is not None:
            return
        try:
            assert proc.stdin is not None and proc.stderr is not None
            proc.stdin.close()  # EOF: it prints its counters and exits
            proc.wait(3)
            text = proc.stderr.read().decode(errors="replace").strip()
            if text:
                self.delayline_counts = json.loads(text.splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, OSError):
            pass

    def down(self) -> list[str]:
        """Kill anything left inside our namespaces, then delete them. Returns problems."""
        self._closed = True
        with self._lock:
            return self._down()

    def _down(self) -> list[str]:
        problems: list[str] = []
        for _ in range(3):
            left = [pid for ns in self.ns.values() if ns_exists(ns) for pid in ns_pids(ns)]
            if not left:
                break
            for pid in left:
                kill(pid, 9)
            time.sleep(0.2)
        for ns in self.ns.values():
            if ns_exists(ns):
                out = _ip("netns", "del", ns, check=False)
                if out.returncode != 0:
                    problems.append(f"ip netns del {ns}: {out.stderr.strip()}")
        stuck = [ns for ns in self.ns.values() if ns_exists(ns)]
        if stuck:
            problems.append("namespaces left: " + ", ".join(stuck))
        return problems


def leftover_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(PREFIX)]


def cleanup_state(path: Path) -> list[str]:
    """Finish a crashed run's teardown from its state file; return what was removed."""
    data = json.loads(path.read_text())
    done: list[str] = []
    for lab in data.get("labs", {}).values():
        nss = [ns for ns in lab.get("namespaces", []) if ns_exists(ns)]
        for ns in nss:
            for pid in ns_pids(ns):
                kill(pid, 9)
                done.append(f"pid {pid}")
        for ns in nss:
            _ip("netns", "del", ns, check=False)
            done.append(f"namespace {ns}")
        workdir = lab.get("workdir")
        if workdir and Path(workdir).is_dir() and Path(workdir).name.startswith(PREFIX):
            shutil.rmtree(workdir, ignore_errors=True)
            done.append(f"directory {workdir}")
    return done
