"""Mining scenarios: the emulators of flowdet.lab.mining across the lab's hosts.

The miner always runs in the sandbox (the monitored host); the pool on an outside host. Each
scenario is one dialect x transport combination; everything else (ports, worker names, user
agents, hashrate, vardiff's target and its starting error, reconnects by the miner or drops
by the pool, JSON spacing, TLS version) is drawn from the scenario's seed, so repeated runs
with new seeds widen the data instead of repeating one session. Path conditions (RTT,
jitter, loss) are the runner's.

Timing: `quick` compresses protocol time (--time-scale) so a session of several protocol
minutes takes seconds of wall time; `standard` and `full` use real pool timing (jobs every
~30 s, blocks as a Poisson process, shares every 5-30 s) for sessions of several minutes.

Labels: every flow from the sandbox to the pool is `mining`. Through SOCKS5 the sandbox only
talks to the proxy (outside), and the proxy to the pool (outside2) is not on the captured
link, so the sandbox->proxy flow is the mining flow. Through `ssh -L` / `ssh -D` the SSH
connection carries the mining session and is labelled `mining` too (the brief's choice: the
model should call what the tunnel carries; note that the SSH family labels other -L/-D
tunnels `ssh-tunnel`, so these flows differ from those only in what is inside).
"""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowdet.errors import LabError
from flowdet.lab.mining.dialects import DIALECTS, Dialect
from flowdet.lab.mining.monero import monero_address
from flowdet.lab.scenario import Expect, Lab, Scenario

# Seconds a Python emulator may take to start on a loaded 2-core machine (imports, binding).
STARTUP_S = 30.0
QUICK = frozenset({"quick", "standard", "full"})
STANDARD = frozenset({"standard", "full"})
FULL = frozenset({"full"})

POOL_NAMES = {
    "stratum1": ("btc-eu.pool.example", "stratum.slushpool.example", "ss.antpool.example"),
    "ethstratum": ("daggerhashimoto.eu.nicehash.example", "eth-eu1.pool.example"),
    "ethproxy": ("eth-eu2.nanopool.example", "eu1.ethermine.example"),
    "zcash": ("zec-eu.suprnova.example", "eu1-zcash.flypool.example"),
    "monero": ("xmr-eu1.nanopool.example", "pool.supportxmr.example", "gulf.moneroocean.example"),
    "getwork": ("mint.bitminter.example", "api.bitcoin.cz.example"),
    "ethhttp": ("pool.eth.pp.example",),
    "sv2": ("v2.stratum.braiins.example",),
}


@dataclass(frozen=True, slots=True)
class Pace:
    time_scale: float
    duration: tuple[float, float]  # protocol seconds of mining
    reconnect_mean: tuple[float, float]  # protocol seconds between reconnects (variant)


PACE = {
    "quick": Pace(0.05, (240.0, 420.0), (60.0, 120.0)),
    # standard must fit the whole lab (all families) in < 30 min: ~2-3 min sessions, and
    # only the combinations that matter most; full runs everything for longer.
    "standard": Pace(1.0, (100.0, 200.0), (40.0, 90.0)),
    "full": Pace(1.0, (420.0, 900.0), (120.0, 300.0)),
}


def _worker(rng: random.Random, dialect: str) -> str:
    rig = rng.choice(("rig1", "worker1", "rig01", "gpu3", "s19-07", "farm2", "001"))
    if dialect in ("ethstratum", "ethproxy", "ethhttp"):
        return "0x" + rng.randbytes(20).hex() + "." + rig
    if dialect == "monero":
        return monero_address(rng)
    if dialect == "zcash":
        return "t1" + "".join(rng.choices(string.ascii_letters + string.digits, k=33)) + "." + rig
    account = rng.choice(("kvetak", "minerx", "farmops", "bitfarm", "jdoe", "hashco"))
    if rng.random() < 0.3:  # solo / PPLNS pools that take an address
        return "bc1q" + "".join(rng.choices("023456789acdefghjklmnpqrstuvwxyz", k=38)) + "." + rig
    return f"{account}.{rig}"


def _start_difficulty(d: Dialect, hashrate: float, interval: float, rng: random.Random) -> float:
    """Where vardiff starts: the ideal difficulty for `interval`, off by up to 4x either way,
    as a pool's default is for a miner it does not know yet."""
    return hashrate * interval / d.unit * 2 ** rng.uniform(-2.0, 2.0)


def _hashrate(d: Dialect, rng: random.Random) -> float:
    return d.default_hashrate * 2 ** rng.uniform(-1.5, 1.5)


class Session:
    """One pool + one miner (+ proxy or tunnel) run to completion in a lab."""

    def __init__(self, lab: Lab, rng: random.Random, profile: str, dialect: str) -> None:
        self.lab = lab
        self.rng = rng
        self.pace = PACE.get(profile, PACE["quick"])
        self.d = DIALECTS[dialect]
        self.tag = f"{dialect}-{rng.getrandbits(24):06x}"
        self.hashrate = _hashrate(self.d, rng)
        self.interval = rng.uniform(8.0, 30.0)
        self.duration = rng.uniform(*self.pace.duration)
        self.name = rng.choice(POOL_NAMES[dialect])

    def start_difficulty(self) -> float:
        return _start_difficulty(self.d, self.hashrate, self.interval, self.rng)

    def pool(self, host: str, port: int, *, tls: bool = False, extra: Sequence[str] = ()) -> None:
        argv = [
            sys.executable, "-m", "flowdet.lab.mining.pool",
            "--dialect", self.d.name,
            "--bind", self.lab.ip(host),
            "--port", str(port),
            "--seed", str(self.rng.getrandbits(31)),
            "--time-scale", str(self.pace.time_scale),
            "--target-interval", f"{self.interval:.2f}",
            "--start-difficulty", f"{self.start_difficulty():.6g}",
            "--reject-rate", f"{self.rng.choice((0.0, 0.005, 0.01, 0.02)):.3f}",
            "--name", self.name,
            "--cert-dir", str(self.lab.workdir / "certs"),
            "--log", str(self.lab.workdir / f"{self.tag}-pool.jsonl"),
            *extra,
        ]  # fmt: skip
        if self.rng.random() < 0.3:
            argv.append("--spaced")
        if tls:
            argv.append("--tls")
        self.lab.spawn(host, argv)
        self.lab.wait_port(host, port, timeout=STARTUP_S)

    def miner(
        self,
        target: str,
        *,
        tls: bool = False,
        socks: str | None = None,
        extra: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Run the miner in the sandbox to the end; its summary proves traffic happened."""
        argv = [
            sys.executable, "-m", "flowdet.lab.mining.miner",
            "--dialect", self.d.name,
            "--pool", target,
            "--seed", str(self.rng.getrandbits(31)),
            "--time-scale", str(self.pace.time_scale),
            "--duration", f"{self.duration:.1f}",
            "--hashrate", f"{self.hashrate:.6g}",
            "--user", _worker(self.rng, self.d.name),
            "--password", self.rng.choice(("x", "x", "c=BTC", "d=65536", "rig1")),
            "--agent", self.rng.choice(self.d.agents),
            "--pool-name", self.name,
            "--log", str(self.lab.workdir / f"{self.tag}-miner.jsonl"),
            *extra,
        ]  # fmt: skip
        if tls:
            argv += ["--tls", "--sni", self.name, "--tls-max", self.rng.choice(("1.2", "1.3"))]
        if socks:
            argv += ["--socks", socks]
        if self.rng.random() < 0.3:
            argv += ["--tcp-keepalive", str(self.rng.choice((30, 60, 120)))]
        out_path = self.lab.workdir / f"{self.tag}-miner.out"
        err_path = self.lab.workdir / f"{self.tag}-miner.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = self.lab.spawn("sandbox", argv, stdout=out, stderr=err)
        real = self.duration * self.pace.time_scale
        try:
            _wait(self.lab, proc, real * 1.5 + STARTUP_S + 30.0, f"{self.d.name} miner")
        except LabError as exc:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise LabError(f"{exc}: {tail[0] if tail else 'no stderr'}") from None
        summary = _summary(out_path)
        if summary.get("jobs", 0) == 0:
            raise LabError(f"{self.d.name} miner got no job: {summary.get('errors')}")
        self.lab.note(
            dialect=self.d.name,
            pool_name=self.name,
            hashrate=self.hashrate,
            share_interval_target=round(self.interval, 2),
            duration_protocol_s=round(self.duration, 1),
            time_scale=self.pace.time_scale,
            **{k: summary.get(k) for k in ("connections", "jobs", "shares", "accepted",
                                           "difficulty_changes", "keepalives", "tls_versions")},
        )  # fmt: skip
        return summary


def _wait(lab: Lab, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.terminate()
            raise LabError(f"{what} did not finish within {timeout:.0f} s")
        lab.sleep(0.2)
    if proc.returncode != 0:
        raise LabError(f"{what} exited with status {proc.returncode}")


def _summary(path: Path) -> dict[str, Any]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("{")]
    if not lines:
        raise LabError("the miner printed no summary")
    out = json.loads(lines[-1])
    return out if isinstance(out, dict) else {}


def _mining(server: str, port: int) -> list[Expect]:
    return [Expect("sandbox", server, port, "tcp", "mining")]


RunFn = Callable[[Lab, random.Random, str], list[Expect]]


def _direct(dialect: str, *, tls: bool = False, reconnects: bool = False,
            variant: Callable[[random.Random], list[str]] | None = None) -> RunFn:  # fmt: skip
    """A scenario body: the miner in the sandbox talks straight to a pool outside."""

    def run(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
        s = Session(lab, rng, profile, dialect)
        host = rng.choice(("outside", "outside2"))
        port = rng.choice(s.d.tls_ports if tls else s.d.ports)
        extra = variant(rng) if variant else []
        pool_extra: list[str] = []
        closer = None
        if reconnects or rng.random() < 0.15:  # pools drop and miners fail over now and then
            mean_s = rng.uniform(*s.pace.reconnect_mean)
            if reconnects:  # a reconnect scenario should show several flows: ~4 on average
                mean_s = min(mean_s, s.duration / 4)
            mean = f"{mean_s:.1f}"
            # Who ends each connection first shows in the capture (FIN direction).
            closer = "pool" if s.d.pool is not None and rng.random() < 0.4 else "miner"
            if closer == "pool":
                pool_extra = ["--drop-mean", mean]
            else:
                extra += ["--reconnect-mean", mean]
            extra += ["--reconnect-delay", f"{rng.uniform(2.0, 15.0):.1f}"]
        s.pool(host, port, tls=tls, extra=pool_extra)
        s.miner(f"{lab.ip(host)}:{port}", tls=tls, extra=extra)
        lab.note(pool_host=host, pool_port=port, tls=tls, reconnects_by=closer)
        return _mining(host, port)

    return run


def socks_proxy(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """Stratum or Monero through a SOCKS5 proxy on `outside` to a pool on `outside2`."""
    dialect = rng.choice(("stratum1", "monero", "monero", "ethstratum"))
    tls = rng.random() < 0.35
    s = Session(lab, rng, profile, dialect)
    port = rng.choice(s.d.tls_ports if tls else s.d.ports)
    s.pool("outside2", port, tls=tls)
    proxy_port = rng.choice((1080, 1080, 9050, 8888, 1081))
    lab.spawn(
        "outside",
        [sys.executable, "-m", "flowdet.lab.mining.socks5", "--bind", lab.ip("outside"),
         "--port", str(proxy_port), "--log", str(lab.workdir / f"{s.tag}-socks.jsonl")],
    )  # fmt: skip
    lab.wait_port("outside", proxy_port, timeout=STARTUP_S)
    s.miner(f"{lab.ip('outside2')}:{port}", tls=tls, socks=f"{lab.ip('outside')}:{proxy_port}")
    lab.note(proxy_port=proxy_port, pool_port=port, tls=tls)
    return _mining("outside", proxy_port)


def over_ssh(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """ssh -L (or -D, the miner then using it as its SOCKS5 proxy) from the sandbox to
    outside's sshd; the miner mines through it to a pool on outside2. The SSH flow carries
    the mining session, so it is labelled mining."""
    from flowdet.lab.sshkit import SshCrypto, SshWorld, choose_port, stop

    dialect = rng.choice(("stratum1", "monero", "monero"))
    s = Session(lab, rng, profile, dialect)
    pool_port = rng.choice(s.d.ports)
    s.pool("outside2", pool_port)
    world = SshWorld(lab, rng)
    crypto = SshCrypto.choose(rng)
    ssh_port = choose_port(rng)
    world.start_sshd("outside", ssh_port)
    dynamic = rng.random() < 0.35
    lport = rng.choice((1080, 9050, 1081) if dynamic else (3333, 4444, 13333, 5555, 14444))
    forward = (["-D", f"127.0.0.1:{lport}"] if dynamic
               else ["-L", f"127.0.0.1:{lport}:{lab.ip('outside2')}:{pool_port}"])  # fmt: skip
    options = ["-N", "-o", "ExitOnForwardFailure=yes", *forward]
    if rng.random() < 0.6:
        options += ["-o", f"ServerAliveInterval={rng.choice((15, 30, 60))}"]
    tunnel = lab.spawn(
        "sandbox", world.ssh("sandbox", lab.ip("outside"), ssh_port, crypto, options=options)
    )
    lab.wait_port("sandbox", lport, timeout=30.0)
    try:
        if dynamic:
            s.miner(f"{lab.ip('outside2')}:{pool_port}", socks=f"127.0.0.1:{lport}")
        else:
            s.miner(f"127.0.0.1:{lport}")
    finally:
        stop(tunnel)
    lab.note(ssh_port=ssh_port, local_port=lport, pool_port=pool_port, crypto=crypto.to_json(),
             forward="-D" if dynamic else "-L")  # fmt: skip
    return _mining("outside", ssh_port)


def _monero_variant(rng: random.Random) -> list[str]:
    return ["--variant", "legacy"] if rng.random() < 0.2 else []


def _getwork_variant(rng: random.Random) -> list[str]:
    return ["--variant", "gbt"] if rng.random() < 0.4 else []


def _eth_variant(rng: random.Random) -> list[str]:
    return ["--variant", "esm1"] if rng.random() < 0.3 else []


def _stratum_variant(rng: random.Random) -> list[str]:
    return ["--compact"] if rng.random() < 0.3 else []


def _scn(name: str, profiles: frozenset[str], run: RunFn, description: str) -> Scenario:
    return Scenario(name, "mining", description, profiles, run)


SCENARIOS: list[Scenario] = [
    _scn("mining-stratum1-tcp", QUICK, _direct("stratum1", variant=_stratum_variant),
         "Bitcoin stratum v1 (cgminer/bmminer) over plain TCP"),
    _scn("mining-stratum1-tls", QUICK, _direct("stratum1", tls=True, variant=_stratum_variant),
         "Bitcoin stratum v1 over TLS (stratum+ssl) with a pool-like SNI"),
    _scn("mining-monero-tcp", QUICK, _direct("monero", variant=_monero_variant),
         "xmrig login/job/submit/keepalived over plain TCP"),
    _scn("mining-getwork-http", QUICK, _direct("getwork", variant=_getwork_variant),
         "getwork or getblocktemplate over HTTP/1.1 with a long-polling connection"),
    _scn("mining-monero-tls", FULL, _direct("monero", tls=True, variant=_monero_variant),
         "xmrig over TLS"),
    _scn("mining-stratum1-reconnect", FULL,
         _direct("stratum1", reconnects=True, variant=_stratum_variant),
         "stratum v1 with vardiff retargets and reconnects (several flows)"),
    _scn("mining-ethstratum", FULL, _direct("ethstratum", variant=_eth_variant),
         "EthereumStratum/1.0.0 (NiceHash) or ethermine-style stratum over plain TCP"),
    _scn("mining-ethstratum-tls", FULL, _direct("ethstratum", tls=True, variant=_eth_variant),
         "EthereumStratum/1.0.0 over TLS"),
    _scn("mining-ethproxy", STANDARD, _direct("ethproxy"),
         "eth-proxy JSON lines (eth_submitLogin/getWork/submitWork/submitHashrate) over TCP"),
    _scn("mining-eth-http", FULL, _direct("ethhttp"),
         "eth_getWork/eth_submitWork/eth_submitHashrate polled over HTTP POST"),
    _scn("mining-zcash", STANDARD, _direct("zcash"),
         "ZCash Equihash stratum with 1344-byte solutions"),
    _scn("mining-zcash-reconnect", FULL, _direct("zcash", reconnects=True),
         "ZCash Equihash stratum with reconnects"),
    _scn("mining-monero-reconnect", FULL,
         _direct("monero", reconnects=True, variant=_monero_variant),
         "xmrig with reconnects and keepalives"),
    _scn("mining-sv2", STANDARD, _direct("sv2"),
         "Stratum V2 shape: Noise NX handshake sizes, encrypted binary frames"),
    _scn("mining-socks5", STANDARD, socks_proxy,
         "stratum/xmrig through a SOCKS5 proxy (the sandbox->proxy flow is mining)"),
    _scn("mining-over-ssh", STANDARD, over_ssh,
         "a miner through an ssh -L tunnel (the SSH flow is labelled mining)"),
]  # fmt: skip
