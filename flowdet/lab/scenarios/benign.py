"""Benign scenarios: hard negatives for the mining and SSH-tunnel classes.

Each scenario starts real servers on the outside hosts (nginx, or the programs in
`flowdet.lab.benign`), runs clients on the sandbox for a profile-dependent time, checks from
the clients' own summaries that the traffic really happened (a labelled capture with no
traffic in it would be a silent lie), stops its own servers by PID, and returns one `Expect`
per server endpoint the sandbox talks to. Parameters (intervals, pool sizes,
modes, seeds) come from the runner's rng, so two runs with the same seed are alike.

Profiles: `quick` has web over HTTP and HTTPS, websocket chat/notifications and DNS, a few
seconds each; `standard` adds everything else at about 30 s each (about 9 minutes in all);
`full` runs everything for minutes with realistic periods (15 s scrapes, 64 s NTP polls).
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flowdet.errors import LabError
from flowdet.lab.certs import make_certificate
from flowdet.lab.scenario import Expect, Lab, Scenario

LABEL = "benign"
CLIENT = "sandbox"
ALL = frozenset({"quick", "standard", "full"})
STANDARD = frozenset({"standard", "full"})
# Seconds of client traffic per scenario, by profile.
DURATION = {"quick": 4.0, "standard": 30.0, "full": 240.0}
# Bulk downloads share a delay line that may be as slow as 10 Mbit/s: minutes, not forever.
SLOW = 900.0
# What each client's summary contributes to the run's manifest.json (via Lab.note).
NOTE_KEYS = ("kind", "mode", "connections", "sent", "received", "bytes_sent", "bytes_received",
             "errors", "tls_version", "alpn", "status")  # fmt: skip
WEB_NAMES = ("www.example.com", "static.example.net", "api.example.org", "chat.example.com",
             "ticker.example.net", "metrics.corp.example", "node.example.org")  # fmt: skip


def _module(name: str, *args: object) -> list[str]:
    return [sys.executable, "-m", f"flowdet.lab.benign.{name}", *map(str, args)]


def _far(lab: Lab) -> str:
    """A second outside host when the lab has one, so servers are spread over two peers."""
    return "outside2" if "outside2" in lab.hosts else "outside"


@dataclass(slots=True)
class _Client:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    timeout: float


class _Session:
    """Servers and clients of one scenario run; servers are stopped by PID on exit."""

    def __init__(self, lab: Lab, scenario: str, rng: random.Random) -> None:
        self.lab, self.scenario, self.rng = lab, scenario, rng
        self.dir = lab.workdir / "benign" / scenario  # sites, configs: scratch
        self.dir.mkdir(parents=True, exist_ok=True)
        # Program output goes under workdir/logs, which the runner keeps on failure or with
        # --keep-logs; the site (with its large files) stays out of it.
        self.logdir = lab.workdir / "logs" / scenario
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.clients: list[_Client] = []
        self.servers: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.expects: list[Expect] = []
        self._files: list[IO[bytes]] = []

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        procs = [p for _, p in self.servers] + [c.proc for c in self.clients]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for f in self._files:
            f.close()

    def seed(self) -> int:
        return self.rng.getrandbits(31)

    def _log(self, name: str, suffix: str) -> tuple[Path, IO[bytes]]:
        path = self.logdir / f"{name}.{suffix}"
        f = path.open("wb")
        self._files.append(f)
        return path, f

    def cert(self, host: str, name: str) -> tuple[Path, Path]:
        return make_certificate(self.lab.workdir / "benign-pki", [name], [self.lab.ip(host)])

    def server(
        self, host: str, port: int, proto: str, name: str, argv: Sequence[str], expect: bool = True
    ) -> None:
        """Start a server on `host` and wait until it listens; its flows are labelled benign
        (`expect=False` for servers the sandbox never reaches directly, e.g. behind a proxy)."""
        path, f = self._log(f"server-{name}", "log")
        proc = self.lab.spawn(host, argv, stdout=f, stderr=subprocess.STDOUT)
        self.servers.append((name, proc))
        try:
            self.lab.wait_port(host, port, proto, timeout=20.0)
        except Exception as exc:
            tail = path.read_text(errors="replace")[-400:].strip()
            raise LabError(f"benign {self.scenario}: {name} server did not start: {tail}") from exc
        if expect:
            self.expects.append(Expect(CLIENT, host, port, proto, LABEL))

    def client(self, name: str, argv: Sequence[str], duration: float, grace: float = 180.0) -> None:
        out, fo = self._log(f"client-{name}", "json")
        err, fe = self._log(f"client-{name}", "err")
        proc = self.lab.spawn(CLIENT, argv, stdout=fo, stderr=fe)
        self.clients.append(_Client(name, proc, out, err, duration + grace))

    def finish(self) -> list[Expect]:
        """Wait for every client and check it exchanged real traffic; return the Expects."""
        facts: dict[str, dict[str, Any]] = {}
        for c in self.clients:
            try:
                rc = c.proc.wait(timeout=c.timeout)
            except subprocess.TimeoutExpired:
                raise LabError(
                    f"benign {self.scenario}: client {c.name} still running after {c.timeout:.0f} s"
                ) from None
            summary = _summary(c.out)
            if rc != 0 or summary is None:
                tail = c.err.read_text(errors="replace")[-400:].strip()
                dead = [f"{name} exited {p.returncode}" for name, p in self.servers
                        if p.poll() is not None]  # fmt: skip
                raise LabError(
                    f"benign {self.scenario}: client {c.name} failed (exit {rc}): {tail}"
                    + (f" (servers: {', '.join(dead)})" if dead else "")
                )
            if summary.get("received", 0) <= 0 or summary.get("sent", 0) <= 0:
                raise LabError(
                    f"benign {self.scenario}: client {c.name} exchanged no messages: {summary}"
                )
            facts[c.name] = {k: summary[k] for k in NOTE_KEYS if summary.get(k) is not None}
        note = getattr(self.lab, "note", None)  # optional in the Lab protocol
        if callable(note):
            note(benign_clients=facts)
        return list(dict.fromkeys(self.expects))


def _summary(path: Path) -> dict[str, Any] | None:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.startswith("{")]
    if not lines:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(lines[-1])
    return None


def _tls_args(cert: Path, sni: str) -> list[str]:
    return ["--tls", "--cafile", str(cert), "--sni", sni]


# ---------------------------------------------------------------- web


def _web_server(
    s: _Session, host: str, http: int, https: int, big: str, name: str, expect: bool = True
) -> tuple[str, Path]:
    """nginx on `host`: the name it serves and the certificate clients verify it with."""
    sni = s.rng.choice(WEB_NAMES[:3])
    cert, key = s.cert(host, sni)
    argv = _module(
        "web", "server", "--root", s.dir / f"site-{name}", "--bind", s.lab.ip(host),
        "--http-port", http, "--https-port", https, "--cert", cert, "--key", key,
        "--names", sni, "--big-mb", big, "--seed", s.seed(),
    )  # fmt: skip
    s.server(host, https or http, "tcp", name, argv, expect)
    if http and https and expect:  # both ports are served by the same nginx
        s.expects.append(Expect(CLIENT, host, http, "tcp", LABEL))
    return sni, cert


def _reading_time(profile: str, rng: random.Random) -> float:
    """A browsing person's mean seconds between pages: short in quick, so a few seconds hold
    several pages."""
    return round(rng.uniform(0.8, 2.0) if profile == "quick" else rng.uniform(4, 15), 2)


def web_http(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    with _Session(lab, "benign-web-http", rng) as s:
        _web_server(s, "outside", 80, 0, "", "nginx")
        d = DURATION[profile]
        for i in range(1 if profile == "quick" else rng.randint(2, 3)):
            s.client(f"browse{i}", _module(
                "web", "browse", "--server", lab.ip("outside"), "--port", 80, "--duration", d,
                "--interval", _reading_time(profile, rng),
                "--connections", rng.randint(2, 6), "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def web_https(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    with _Session(lab, "benign-web-https", rng) as s:
        sni, cert = _web_server(s, "outside", 0, 443, "", "nginx")
        d = DURATION[profile]
        for i in range(1 if profile == "quick" else rng.randint(2, 3)):
            s.client(f"browse{i}", _module(
                "web", "browse", "--server", lab.ip("outside"), "--port", 443, "--duration", d,
                *_tls_args(cert, sni),
                "--interval", _reading_time(profile, rng),
                "--connections", rng.randint(2, 6), "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def web_download(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """Bulk transfers: the volume extreme that neither miners nor interactive tunnels show."""
    # The lab's delay line is a 10-100 Mbit/s userspace bottleneck: sizes keep standard short.
    sizes = {"quick": (4, 8), "standard": (12, 24), "full": (32, 64)}[profile]
    big = ",".join(map(str, sizes))
    with _Session(lab, "benign-web-download", rng) as s:
        sni, cert = _web_server(s, "outside", 80, 443, big, "nginx")
        d = DURATION[profile] / 2
        ip = lab.ip("outside")
        path = f"/dl/release-{rng.choice(sizes)}M.tar.gz"
        s.client("http-python", _module(
            "web", "download", "--server", ip, "--port", 80, "--path", path, "--count", 1,
            "--interval", 2, "--duration", d, "--seed", s.seed()), d, SLOW)  # fmt: skip
        s.client("https-curl", _module(
            "web", "download", "--server", ip, "--port", 443, *_tls_args(cert, sni), "--via",
            "curl", "--tls-max", rng.choice(("1.2", "1.3")), "--path",
            f"/dl/release-{sizes[-1]}M.tar.gz", "--duration", d,
            "--seed", s.seed()), d, SLOW)  # fmt: skip
        s.client("https-python", _module(
            "web", "download", "--server", ip, "--port", 443, *_tls_args(cert, sni), "--path",
            path, "--duration", d, "--seed", s.seed()), d, SLOW)  # fmt: skip
        return s.finish()


def web_proxy(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """Browsing and a download through an HTTP CONNECT proxy: a benign tunnel to one peer."""
    host = _far(lab)
    with _Session(lab, "benign-web-proxy", rng) as s:
        ip = lab.ip(host)
        big = {"quick": "4", "standard": "12", "full": "32"}[profile]
        # nginx and the proxy share the far host: the sandbox only ever talks to the proxy.
        sni, cert = _web_server(s, host, 0, 443, big, "nginx", expect=False)
        s.server(host, 3128, "tcp", "proxy", _module(
            "proxy", "server", "--bind", ip, "--port", 3128, "--upstream", ip))  # fmt: skip
        d = DURATION[profile]
        via = ["--proxy", f"{ip}:3128"]
        s.client("browse", _module(
            "web", "browse", "--server", ip, "--port", 443, *_tls_args(cert, sni), *via,
            "--interval", _reading_time(profile, rng),
            "--connections", rng.randint(2, 6), "--duration", d,
            "--seed", s.seed()), d)  # fmt: skip
        s.client("download", _module(
            "web", "download", "--server", ip, "--port", 443, *_tls_args(cert, sni), *via,
            "--via", "curl", "--path", f"/dl/release-{big}M.tar.gz", "--duration", d,
            "--seed", s.seed()), d, SLOW)  # fmt: skip
        return s.finish()


def web_terminal(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """A browser terminal (ttyd framing over wss): keystroke-by-keystroke like an SSH session."""
    with _Session(lab, "benign-web-terminal", rng) as s:
        ip = lab.ip("outside")
        sni = rng.choice(("shell.corp.example", "console.example.org"))
        cert, key = s.cert("outside", sni)
        s.server("outside", 443, "tcp", "ttyd", _module(
            "websocket", "server", "--bind", ip, "--port", 443, "--tls", "--cert", cert,
            "--key", key, "--seed", s.seed()))  # fmt: skip
        d = DURATION[profile]
        for i in range(1 if profile == "quick" else 2):
            s.client(f"terminal{i}", _module(
                "websocket", "client", "--server", ip, "--port", 443, "--mode", "terminal",
                *_tls_args(cert, sni), "--interval", _period(profile, rng, (2, 8)),
                "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def metrics_scrape(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """A Prometheus-style scraper polling nginx status over TLS: periodic, tiny, long-lived."""
    host = _far(lab)
    with _Session(lab, "benign-metrics-scrape", rng) as s:
        sni, cert = _web_server(s, host, 0, 9443, "", "nginx-status")
        d = DURATION[profile] * 1.5
        interval = {"quick": 1.0, "standard": rng.uniform(5, 10), "full": 15.0}[profile]
        s.client("scraper", _module(
            "web", "poll", "--server", lab.ip(host), "--port", 9443, *_tls_args(cert, sni),
            "--interval", round(interval, 2), "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


# ---------------------------------------------------------------- long-lived JSON


def _period(profile: str, rng: random.Random, standard: tuple[float, float]) -> float:
    """Message period: short in quick so a few seconds hold several messages."""
    if profile == "quick":
        return round(rng.uniform(0.4, 1.0), 2)
    lo, hi = standard
    return round(rng.uniform(lo, hi) * (2 if profile == "full" else 1), 2)


def websocket_chat(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    with _Session(lab, "benign-websocket-chat", rng) as s:
        ip = lab.ip("outside")
        s.server("outside", 8080, "tcp", "websocket", _module(
            "websocket", "server", "--bind", ip, "--port", 8080, "--seed", s.seed(),
            "--interval", _period(profile, rng, (2, 8)), "--jitter", 0.6))  # fmt: skip
        d = DURATION[profile]
        for mode in ("chat", "notify"):
            s.client(mode, _module(
                "websocket", "client", "--server", ip, "--port", 8080, "--mode", mode,
                "--interval", _period(profile, rng, (3, 12)), "--duration", d,
                "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def websocket_tls_feeds(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """wss on 443: Engine.IO heartbeats, a JSON-RPC price ticker and eth_subscribe newHeads."""
    host = _far(lab)
    with _Session(lab, "benign-websocket-tls-feeds", rng) as s:
        ip = lab.ip(host)
        sni = rng.choice(("ticker.example.net", "chat.example.com", "node.example.org"))
        cert, key = s.cert(host, sni)
        s.server(host, 443, "tcp", "wss", _module(
            "websocket", "server", "--bind", ip, "--port", 443, "--tls", "--cert", cert,
            "--key", key, "--seed", s.seed(), "--interval", _period(profile, rng, (2, 6)),
            "--jitter", 0.3))  # fmt: skip
        d = DURATION[profile]
        for mode in ("engineio", "ticker", "newheads"):
            s.client(mode, _module(
                "websocket", "client", "--server", ip, "--port", 443, "--mode", mode,
                *_tls_args(cert, sni), "--interval", _period(profile, rng, (5, 20)),
                "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def linejson_feeds(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """Newline-JSON on raw TCP: a ticker subscription (Stratum-shaped) and a log shipper (TLS)."""
    far = _far(lab)
    with _Session(lab, "benign-linejson-feeds", rng) as s:
        ip, ip2 = lab.ip("outside"), lab.ip(far)
        s.server("outside", 9000, "tcp", "ticker", _module(
            "linejson", "server", "--bind", ip, "--port", 9000, "--seed", s.seed(),
            "--interval", _period(profile, rng, (1, 6))))  # fmt: skip
        cert, key = s.cert(far, "logs.corp.example")
        s.server(far, 5170, "tcp", "log-intake", _module(
            "linejson", "server", "--bind", ip2, "--port", 5170, "--tls", "--cert", cert,
            "--key", key, "--seed", s.seed()))  # fmt: skip
        d = DURATION[profile]
        s.client("ticker", _module(
            "linejson", "client", "--server", ip, "--port", 9000, "--mode", "ticker",
            "--interval", _period(profile, rng, (10, 30)), "--duration", d,
            "--seed", s.seed()), d)  # fmt: skip
        s.client("shipper", _module(
            "linejson", "client", "--server", ip2, "--port", 5170, "--mode", "ship",
            *_tls_args(cert, "logs.corp.example"), "--interval", _period(profile, rng, (1, 5)),
            "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def mqtt_keepalive(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    far = _far(lab)
    with _Session(lab, "benign-mqtt", rng) as s:
        ip, ip2 = lab.ip("outside"), lab.ip(far)
        s.server("outside", 1883, "tcp", "mqtt", _module(
            "mqtt", "server", "--bind", ip, "--port", 1883, "--seed", s.seed(),
            "--interval", _period(profile, rng, (5, 15))))  # fmt: skip
        cert, key = s.cert(far, "mqtt.corp.example")
        s.server(far, 8883, "tcp", "mqtts", _module(
            "mqtt", "server", "--bind", ip2, "--port", 8883, "--tls", "--cert", cert,
            "--key", key, "--seed", s.seed(),
            "--interval", _period(profile, rng, (5, 15))))  # fmt: skip
        d = DURATION[profile]
        keepalive = 2 if profile == "quick" else rng.choice((10, 15, 30))
        s.client("sensor", _module(
            "mqtt", "client", "--server", ip, "--port", 1883, "--keepalive", keepalive,
            "--interval", _period(profile, rng, (3, 10)), "--duration", d,
            "--seed", s.seed()), d)  # fmt: skip
        s.client("sensor-tls", _module(
            "mqtt", "client", "--server", ip2, "--port", 8883, "--keepalive", keepalive * 3,
            *_tls_args(cert, "mqtt.corp.example"), "--interval", _period(profile, rng, (5, 20)),
            "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def irc_idle(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """IRC clients idling in channels (plain 6667 and TLS 6697): server PINGs, chatter."""
    far = _far(lab)
    with _Session(lab, "benign-irc", rng) as s:
        ip, ip2 = lab.ip("outside"), lab.ip(far)
        ping = {"quick": 1.0, "standard": rng.uniform(8, 16), "full": 90.0}[profile]
        s.server("outside", 6667, "tcp", "irc", _module(
            "irc", "server", "--bind", ip, "--port", 6667, "--seed", s.seed(), "--ping", ping,
            "--chatter", _period(profile, rng, (3, 10))))  # fmt: skip
        cert, key = s.cert(far, "irc.example.net")
        s.server(far, 6697, "tcp", "ircs", _module(
            "irc", "server", "--bind", ip2, "--port", 6697, "--tls", "--cert", cert, "--key", key,
            "--seed", s.seed(), "--ping", ping,
            "--chatter", _period(profile, rng, (3, 10))))  # fmt: skip
        d = DURATION[profile]
        s.client("irc", _module(
            "irc", "client", "--server", ip, "--port", 6667, "--duration", d, "--seed", s.seed(),
            "--interval", _period(profile, rng, (8, 20))), d)  # fmt: skip
        s.client("ircs", _module(
            "irc", "client", "--server", ip2, "--port", 6697, *_tls_args(cert, "irc.example.net"),
            "--duration", d, "--seed", s.seed(),
            "--interval", _period(profile, rng, (8, 20))), d)  # fmt: skip
        return s.finish()


# ---------------------------------------------------------------- RPC and databases


def eth_rpc(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """An Ethereum node watched over JSON-RPC (read-only) and a service API over HTTPS."""
    far = _far(lab)
    with _Session(lab, "benign-jsonrpc", rng) as s:
        ip, ip2 = lab.ip("outside"), lab.ip(far)
        s.server("outside", 8545, "tcp", "eth-node", _module(
            "jsonrpc", "server", "--bind", ip, "--port", 8545, "--seed", s.seed(),
            "--block-time", 2 if profile == "quick" else 12))  # fmt: skip
        cert, key = s.cert(far, "api.example.org")
        s.server(far, 8443, "tcp", "service-api", _module(
            "jsonrpc", "server", "--bind", ip2, "--port", 8443, "--tls", "--cert", cert,
            "--key", key, "--seed", s.seed()))  # fmt: skip
        d = DURATION[profile]
        s.client("wallet", _module(
            "jsonrpc", "client", "--server", ip, "--port", 8545, "--mode", "eth",
            "--interval", _period(profile, rng, (2, 6)), "--duration", d,
            "--seed", s.seed()), d)  # fmt: skip
        s.client("service", _module(
            "jsonrpc", "client", "--server", ip2, "--port", 8443, "--mode", "service",
            *_tls_args(cert, "api.example.org"), "--interval", _period(profile, rng, (3, 10)),
            "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def redis_pool(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    with _Session(lab, "benign-redis", rng) as s:
        ip = lab.ip("outside")
        s.server("outside", 6379, "tcp", "redis", _module(
            "resp", "server", "--bind", ip, "--port", 6379, "--seed", s.seed()))  # fmt: skip
        d = DURATION[profile]
        s.client("app", _module(
            "resp", "client", "--server", ip, "--port", 6379, "--connections", rng.randint(2, 8),
            "--interval", _period(profile, rng, (0.5, 4)),
            "--health-interval", 2 if profile == "quick" else rng.choice((10, 15, 30)),
            "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def postgres_pool(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """A PostgreSQL application pool, TLS negotiated in-band (SSLRequest) half of the time."""
    with _Session(lab, "benign-postgres", rng) as s:
        ip = lab.ip("outside")
        tls = rng.random() < 0.5
        cert, key = s.cert("outside", "db.corp.example")
        s.server("outside", 5432, "tcp", "postgres", _module(
            "pg", "server", "--bind", ip, "--port", 5432, "--seed", s.seed(),
            *(["--tls", "--cert", cert, "--key", key] if tls else [])))  # fmt: skip
        d = DURATION[profile]
        s.client("app", _module(
            "pg", "client", "--server", ip, "--port", 5432, "--connections", rng.randint(2, 6),
            *(_tls_args(cert, "db.corp.example") if tls else []),
            "--interval", _period(profile, rng, (0.5, 4)),
            "--health-interval", 2 if profile == "quick" else rng.choice((10, 30, 60)),
            "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


# ---------------------------------------------------------------- UDP


def dns_lookups(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    with _Session(lab, "benign-dns", rng) as s:
        ip = lab.ip("outside")
        s.server("outside", 53, "udp", "dns", _module("dns", "server", "--bind", ip, "--port", 53))
        d = DURATION[profile]
        s.client("stub", _module(
            "dns", "client", "--server", ip, "--port", 53,
            "--interval", _period(profile, rng, (3, 10)), "--duration", d,
            "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def ntp_polls(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """ntpd-style (source port 123, one endless flow) and chrony-style (a port per poll)."""
    with _Session(lab, "benign-ntp", rng) as s:
        ip = lab.ip("outside")
        s.server(
            "outside", 123, "udp", "ntp", _module("ntp", "server", "--bind", ip, "--port", 123)
        )
        d = DURATION[profile] * (1.5 if profile == "standard" else 1)
        interval = {"quick": 1.0, "standard": rng.choice((4.0, 8.0)), "full": 64.0}[profile]
        s.client("ntpd", _module(
            "ntp", "client", "--server", ip, "--port", 123, "--source-port", 123, "--iburst",
            "--source-addr", lab.ip(CLIENT),
            "--interval", interval, "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        s.client("chrony", _module(
            "ntp", "client", "--server", ip, "--port", 123, "--interval", interval,
            "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def desktop_mix(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """One busy workstation: DNS, HTTPS browsing, a notification socket, NTP and a log
    shipper all at once, so flows interleave in time as they do on a real host."""
    far = _far(lab)
    with _Session(lab, "benign-desktop-mix", rng) as s:
        ip, ip2 = lab.ip("outside"), lab.ip(far)
        sni, cert = _web_server(s, "outside", 0, 443, "", "nginx")
        s.server("outside", 53, "udp", "dns", _module("dns", "server", "--bind", ip, "--port", 53))
        s.server(far, 8080, "tcp", "websocket", _module(
            "websocket", "server", "--bind", ip2, "--port", 8080, "--seed", s.seed(),
            "--interval", _period(profile, rng, (4, 12))))  # fmt: skip
        s.server(far, 123, "udp", "ntp", _module("ntp", "server", "--bind", ip2, "--port", 123))
        lcert, lkey = s.cert(far, "logs.corp.example")
        s.server(far, 5170, "tcp", "log-intake", _module(
            "linejson", "server", "--bind", ip2, "--port", 5170, "--tls", "--cert", lcert,
            "--key", lkey, "--seed", s.seed()))  # fmt: skip
        d = DURATION[profile]
        s.client("dns", _module(
            "dns", "client", "--server", ip, "--port", 53, "--duration", d, "--seed", s.seed(),
            "--interval", _period(profile, rng, (3, 10))), d)  # fmt: skip
        s.client("browse", _module(
            "web", "browse", "--server", ip, "--port", 443, *_tls_args(cert, sni),
            "--interval", _period(profile, rng, (4, 15)), "--connections", rng.randint(2, 6),
            "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        s.client("notify", _module(
            "websocket", "client", "--server", ip2, "--port", 8080, "--mode", "notify",
            "--interval", _period(profile, rng, (10, 30)), "--duration", d,
            "--seed", s.seed()), d)  # fmt: skip
        s.client("ntp", _module(
            "ntp", "client", "--server", ip2, "--port", 123, "--duration", d, "--seed", s.seed(),
            "--interval", 1.0 if profile == "quick" else 16.0 if profile == "standard" else 64.0),
            d)  # fmt: skip
        s.client("shipper", _module(
            "linejson", "client", "--server", ip2, "--port", 5170, "--mode", "ship",
            *_tls_args(lcert, "logs.corp.example"), "--interval", _period(profile, rng, (2, 8)),
            "--duration", d, "--seed", s.seed()), d)  # fmt: skip
        return s.finish()


def _scenario(name: str, profiles: frozenset[str], run: Any, description: str) -> Scenario:
    return Scenario(name, LABEL, description, profiles, run)


SCENARIOS: list[Scenario] = [
    _scenario("benign-web-http", ALL, web_http,
              "browsing a real nginx over HTTP/1.1: pages, assets over a keep-alive pool, 304s"),
    _scenario("benign-web-https", ALL, web_https,
              "browsing a real nginx over TLS 1.3 with SNI, keep-alive pool, think time"),
    _scenario("benign-websocket-chat", ALL, websocket_chat,
              "RFC 6455 websockets: chat and notifications, small JSON both ways with jitter"),
    _scenario("benign-dns", ALL, dns_lookups,
              "stub-resolver A/AAAA lookups in bursts against a UDP DNS responder"),
    _scenario("benign-web-download", STANDARD, web_download,
              "tens of MB over HTTP/1.1 and TLS from nginx, with http.client and curl"),
    _scenario("benign-websocket-tls-feeds", STANDARD, websocket_tls_feeds,
              "wss: Engine.IO heartbeats, JSON-RPC price ticker, eth_subscribe newHeads"),
    _scenario("benign-linejson-feeds", STANDARD, linejson_feeds,
              "newline-JSON ticker subscription (id:null pushes) and a TLS log shipper"),
    _scenario("benign-jsonrpc", STANDARD, eth_rpc,
              "read-only Ethereum JSON-RPC polling on 8545 and a JSON-RPC service API over TLS"),
    _scenario("benign-redis", STANDARD, redis_pool,
              "RESP key-value traffic from a connection pool: bursts plus idle health PINGs"),
    _scenario("benign-postgres", STANDARD, postgres_pool,
              "PostgreSQL v3 from a pool: transactions in bursts, idle SELECT 1, TLS or not"),
    _scenario("benign-ntp", STANDARD, ntp_polls,
              "NTPv4 polls, ntpd-style from port 123 and chrony-style from ephemeral ports"),
    _scenario("benign-irc", STANDARD, irc_idle,
              "IRC clients idling in channels over 6667 and 6697 (TLS): PING/PONG, chatter"),
    _scenario("benign-web-proxy", STANDARD, web_proxy,
              "HTTPS browsing and a curl download through an HTTP CONNECT proxy on 3128"),
    _scenario("benign-web-terminal", STANDARD, web_terminal,
              "a ttyd-style web terminal over wss: keystrokes, echoes and output bursts"),
    _scenario("benign-desktop-mix", STANDARD, desktop_mix,
              "a busy workstation: DNS, HTTPS, notification websocket, NTP, log shipper at once"),
    _scenario("benign-metrics-scrape", STANDARD, metrics_scrape,
              "a scraper polling nginx stub_status and a JSON endpoint over TLS at a fixed period"),
    _scenario("benign-mqtt", STANDARD, mqtt_keepalive,
              "MQTT 3.1.1 sensors: JSON telemetry, broker pushes, PINGREQ keepalive, plain, TLS"),
]  # fmt: skip
