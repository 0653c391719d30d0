"""The mining emulators run for real on loopback and are checked on the wire.

Every session goes through a recording TCP relay, so the assertions are about the bytes that
crossed, parsed independently of the emulators' own code: which side sent which method,
whether every line is JSON, how big each message is compared with the real captures in
../shared/corpus/mining-real (computed here with tshark when the corpus is present, else the
documented ranges below), whether TLS and SOCKS5 really happen, the Stratum V2 handshake
sizes, and whether shares arrive as a Poisson process of the configured rate.

All sessions start together in one module fixture (a compressed time scale, a few seconds of
wall time), so the module stays well under a minute on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from loopback import stop

from flowdet.lab.mining.common import Clock, TargetRefused, check_target
from flowdet.lab.mining.reference import (
    corpus_gaps,
    corpus_sizes,
    http_messages,
    kind,
    notify_minus_branch,
)
from flowdet.lab.mining.timing import CHAINS, JobBoard, Vardiff

PY = sys.executable
SCALE = 0.01  # protocol seconds -> wall seconds
XMR_ADDR = "47mr7jYTroxQMwdKoPQuJoc9Vs9S9qCUAL6Ek4qyNFWJdqgBZRn4RYY2QjQfqEMJZVWPscupSgaqmUn1dpdUTC4fQsu3yjN"  # noqa: E501
ETH_USER = "0x4b999ba68e017854ffb6b494bc2ddb9ef02bd745.OptionalRigName"

# ---------------------------------------------------------------- recording relay


@dataclass
class Chunk:
    conn: int
    direction: str  # "c2s" (miner -> pool) or "s2c"
    t: float
    data: bytes


@dataclass
class Relay:
    """A TCP relay on 127.0.0.1 that records every byte in both directions."""

    upstream: tuple[str, int]
    chunks: list[Chunk] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sock: socket.socket = field(init=False)
    conns: int = 0
    copiers: list[tuple[str, threading.Thread]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for src, dst, d in ((client, server, "c2s"), (server, client, "s2c")):
                t = threading.Thread(target=self._copy, args=(n, src, dst, d), daemon=True)
                with self.lock:
                    self.copiers.append((d, t))
                t.start()

    def _copy(self, n: int, src: socket.socket, dst: socket.socket, d: str) -> None:
        try:
            while data := src.recv(65536):
                with self.lock:
                    self.chunks.append(Chunk(n, d, time.monotonic(), data))
                dst.sendall(data)
            with self.lock:  # an orderly close (FIN) from src: an empty chunk marks it
                self.chunks.append(Chunk(n, d, time.monotonic(), b""))
        except OSError:
            pass
        finally:
            for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                with contextlib.suppress(OSError):
                    s.shutdown(how)

    def stream(self, direction: str, conn: int | None = None) -> bytes:
        with self.lock:
            return b"".join(
                c.data
                for c in self.chunks
                if c.direction == direction and (conn is None or c.conn == conn)
            )

    def first_closer(self, conn: int) -> str | None:
        """Which side of connection `conn` closed first: "c2s" (miner) or "s2c" (pool)."""
        with self.lock:
            eofs = [c for c in self.chunks if c.conn == conn and not c.data]
        return min(eofs, key=lambda c: c.t).direction if eofs else None

    def settle(self) -> None:
        """Wait until every byte the (exited) miner sent has been recorded.

        Once the miner is gone each toserver copier reads its last bytes and EOF, however late
        the scheduler runs it; the toclient copiers end when the pool answers that EOF.
        """
        with self.lock:
            copiers = list(self.copiers)
        for d, t in copiers:
            t.join(timeout=15 if d == "c2s" else 3)
            assert d == "s2c" or not t.is_alive(), "relay still copying after the miner exited"

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------- running emulators


def start(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    """Start a server-like emulator and read the port from its `listening` line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(
            f"{argv[2]} did not start: {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, int(json.loads(line)["listening"][1])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Run:
    name: str
    dialect: str
    relay: Relay
    miner: subprocess.Popen[str]
    pool: subprocess.Popen[str]
    pool_log: Path
    miner_log: Path
    socks: subprocess.Popen[str] | None = None
    socks_log: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    miner_args: list[str] = field(default_factory=list)


# name -> (dialect, pool args, miner args, options)
SESSIONS: dict[str, tuple[str, list[str], list[str], dict[str, Any]]] = {
    "stratum1": ("stratum1", ["--start-difficulty", "4096"],
                 ["--hashrate", "2e12", "--agent", "cgminer/4.10.0", "--user", "kvetak.worker1"],
                 {}),
    "stratum1-compact": ("stratum1", ["--start-difficulty", "4096"],
                         ["--hashrate", "2e12", "--agent", "sgminer/5.6.1", "--compact"], {}),
    "ethstratum": ("ethstratum", ["--start-difficulty", "0.1"],
                   ["--hashrate", "100e6", "--user", ETH_USER], {}),
    "ethstratum-esm1": ("ethstratum", ["--start-difficulty", "0.1"],
                        ["--hashrate", "100e6", "--user", ETH_USER, "--variant", "esm1"], {}),
    "ethproxy": ("ethproxy", ["--start-difficulty", "1e9"],
                 ["--hashrate", "100e6", "--user", ETH_USER, "--keepalive", "30"], {}),
    "zcash": ("zcash", ["--start-difficulty", "0.25"],
              ["--hashrate", "300", "--user", "kvetak.worker1", "--password", "password",
               "--agent", "equihashminer"], {}),
    "monero": ("monero", ["--start-difficulty", "40000"],
               ["--hashrate", "4000", "--user", XMR_ADDR, "--keepalive", "20"], {}),
    "monero-legacy": ("monero", ["--start-difficulty", "40000"],
                      ["--hashrate", "4000", "--user", XMR_ADDR, "--variant", "legacy",
                       "--agent", "xmr/1.0"], {}),
    "getwork": ("getwork", ["--start-difficulty", "1"], ["--hashrate", "1e9"], {}),
    "gbt": ("getwork", ["--start-difficulty", "1"], ["--hashrate", "1e9", "--variant", "gbt"], {}),
    # Polls every second: a slower scale, so HTTP round trips stay small against the period.
    "ethhttp": ("ethhttp", ["--start-difficulty", "1e8"],
                ["--hashrate", "100e6", "--user", ETH_USER, "--duration", "60"],
                {"scale": 0.05}),
    "sv2": ("sv2", ["--start-difficulty", "4096"], ["--hashrate", "2e12"], {}),
    "stratum1-tls": ("stratum1", ["--tls", "--name", "btc-eu.pool.example"],
                     ["--tls", "--sni", "btc-eu.pool.example", "--hashrate", "2e12"], {}),
    "monero-tls12": ("monero", ["--tls", "--name", "xmr-eu1.pool.example"],
                     ["--tls", "--sni", "xmr-eu1.pool.example", "--tls-max", "1.2"], {}),
    "monero-socks": ("monero", ["--start-difficulty", "40000"], ["--hashrate", "4000"],
                     {"socks": True}),
    "stratum1-socks-tls": ("stratum1", ["--tls", "--name", "ss.pool.example"],
                           ["--tls", "--sni", "ss.pool.example", "--hashrate", "2e12"],
                           {"socks": True}),
    # Fixed difficulty so the share rate is known: 2e12 / (1024 * 2**32) = 0.455 shares/s.
    "poisson": ("stratum1", ["--start-difficulty", "1024", "--no-vardiff", "--reject-rate", "0"],
                ["--hashrate", "2e12", "--duration", "300"], {}),
    "vardiff": ("stratum1", ["--start-difficulty", "64", "--target-interval", "10"],
                ["--hashrate", "2e12"], {}),
    "reconnect": ("stratum1", ["--start-difficulty", "4096"],
                  ["--hashrate", "2e12", "--reconnect-mean", "40", "--reconnect-delay", "2"], {}),
    "pool-drops": ("monero", ["--start-difficulty", "40000", "--drop-mean", "40"],
                   ["--hashrate", "4000", "--reconnect-delay", "2"], {}),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Every session of SESSIONS, run side by side through recording relays."""
    tmp = tmp_path_factory.mktemp("mining")
    started: dict[str, Run] = {}
    procs: list[subprocess.Popen[str]] = []
    try:
        for name, (dialect, pool_args, miner_args, opts) in SESSIONS.items():
            pool_log, miner_log = tmp / f"{name}-pool.jsonl", tmp / f"{name}-miner.jsonl"
            pool, port = start(
                [PY, "-m", "flowdet.lab.mining.pool", "--dialect", dialect, "--port", "0",
                 "--time-scale", str(opts.get("scale", SCALE)), "--seed", "7",
                 "--log", str(pool_log),
                 "--cert-dir", str(tmp / "certs"), *pool_args]
            )  # fmt: skip
            procs.append(pool)
            socks = socks_log = None
            if opts.get("socks"):
                socks_log = tmp / f"{name}-socks.jsonl"
                socks, sport = start(
                    [PY, "-m", "flowdet.lab.mining.socks5", "--port", "0", "--log", str(socks_log)]
                )
                procs.append(socks)
                relay = Relay(("127.0.0.1", sport))
                target = ["--pool", f"127.0.0.1:{port}", "--socks", f"127.0.0.1:{relay.port}"]
            else:
                relay = Relay(("127.0.0.1", port))
                target = ["--pool", f"127.0.0.1:{relay.port}"]
            args = ["--duration", "200", *miner_args]
            miner = subprocess.Popen(
                [PY, "-m", "flowdet.lab.mining.miner", "--dialect", dialect, *target,
                 "--time-scale", str(opts.get("scale", SCALE)), "--seed", "11",
                 "--log", str(miner_log), *args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            procs.append(miner)
            started[name] = Run(name, dialect, relay, miner, pool, pool_log, miner_log,
                                socks, socks_log, miner_args=args)  # fmt: skip
        for run in started.values():
            out, err = run.miner.communicate(timeout=120)
            assert run.miner.returncode == 0, f"{run.name} miner failed: {err[-800:]}"
            run.summary = json.loads(out.strip().splitlines()[-1])
        for run in started.values():
            run.relay.settle()
        yield started
    finally:
        for p in procs:
            stop(p)
        for run in started.values():
            run.relay.close()


# ---------------------------------------------------------------- wire parsing
# (independent of the emulators; HTTP framing and corpus reading: flowdet.lab.mining.reference)


def json_lines(data: bytes) -> list[tuple[dict[str, Any], int]]:
    """Every line as (object, size with newline); fails the test on a line that is not JSON."""
    assert data.endswith(b"\n"), "the stream does not end on a line boundary"
    out = []
    for line in data.split(b"\n")[:-1]:
        msg = json.loads(line)  # raises on malformed JSON
        assert isinstance(msg, dict), f"not a JSON object: {line[:80]!r}"
        out.append((msg, len(line) + 1))
    return out


def wire_sizes(run: Run) -> dict[tuple[str, str], list[int]]:
    """(direction, message kind) -> sizes on the wire, for a cleartext JSON-lines session."""
    sizes: dict[tuple[str, str], list[int]] = defaultdict(list)
    for conn in range(1, run.relay.conns + 1):
        for d in ("c2s", "s2c"):
            data = run.relay.stream(d, conn)
            if data:
                for msg, n in json_lines(data):
                    sizes[(d, kind(msg))].append(n)
    return sizes


# ---------------------------------------------------------------- reference sizes

# Fallback when ../shared is absent: ranges measured on ../shared/corpus/mining-real
# (message sizes with the newline; see flowdet.lab.mining.reference for how).
DOCUMENTED = {
    ("stratum", "c2s", "mining.subscribe"): (55, 71),
    ("stratum", "c2s", "mining.authorize"): (68, 70),
    ("stratum", "s2c", "mining.set_difficulty"): (62, 66),
    ("stratum", "s2c", "notify-minus-branch"): (494, 612),
    ("stratum", "s2c", "eth-notify"): (267, 267),
    ("zcash", "c2s", "mining.submit"): (2817, 2817),
    ("zcash", "s2c", "mining.notify"): (294, 294),
    ("zcash", "s2c", "mining.set_target"): (119, 119),
    ("monero", "c2s", "login"): (182, 182),
    ("monero", "s2c", "job"): (242, 242),
    ("monero", "s2c", "result"): (278, 278),
    ("ethproxy", "s2c", "result"): (243, 243),
    ("ethhttp", "c2s", "eth_getWork"): (239, 239),
    ("ethhttp", "c2s", "eth_submitHashrate"): (333, 339),
    ("ethhttp", "s2c", "result"): (221, 424),
}


@pytest.fixture(scope="module")
def reference(request: pytest.FixtureRequest) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Size ranges from the real corpus when ../shared is present, else the documented ones."""
    try:
        corpus = request.getfixturevalue("corpus")
        tshark = request.getfixturevalue("tshark")
    except pytest.skip.Exception:
        return dict(DOCUMENTED)
    measured = {k: (min(v), max(v)) for k, v in corpus_sizes(corpus, tshark).items()}
    # The measurement and the documented fallback must agree, or the fallback is stale.
    for key, rng in DOCUMENTED.items():
        assert measured.get(key) == rng, f"{key}: corpus says {measured.get(key)}, doc {rng}"
    return measured


SLACK = 0.15  # JSON spacing and name lengths differ between real miners and pools


def assert_in_range(sizes: list[int], ref: tuple[int, int], what: str) -> None:
    lo, hi = ref[0] * (1 - SLACK), ref[1] * (1 + SLACK)
    assert sizes, f"{what}: no message of this kind crossed"
    bad = [n for n in sizes if not lo <= n <= hi]
    assert not bad, f"{what}: sizes {sorted(set(bad))[:5]} outside real {ref} +-{SLACK:.0%}"


# ---------------------------------------------------------------- tests: directions, shapes

CLIENT_SERVER = {
    "stratum1": (
        {"mining.subscribe", "mining.authorize", "mining.submit"},
        {"mining.notify", "mining.set_difficulty", "result"},
    ),
    "ethstratum": (
        {"mining.subscribe", "mining.authorize", "mining.extranonce.subscribe", "mining.submit"},
        {"mining.notify", "mining.set_difficulty", "result"},
    ),
    "ethproxy": (
        {"eth_submitLogin", "eth_getWork", "eth_submitWork", "eth_submitHashrate"},
        {"result"},
    ),
    "zcash": (
        {"mining.subscribe", "mining.authorize", "mining.extranonce.subscribe", "mining.submit"},
        {"mining.notify", "mining.set_target", "result"},
    ),
    "monero": ({"login", "submit", "keepalived"}, {"job", "result"}),
    "monero-legacy": ({"login", "submit"}, {"job", "result"}),
}
SUBMIT_METHOD = {"ethproxy": "eth_submitWork", "monero": "submit", "monero-legacy": "submit"}
SERVER_ONLY = {"mining.notify", "mining.set_difficulty", "mining.set_target", "job"}
CLIENT_ONLY = {"mining.subscribe", "mining.authorize", "mining.submit", "login", "submit",
               "eth_submitLogin", "eth_submitWork", "keepalived"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CLIENT_SERVER))
def test_methods_flow_in_the_right_direction(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    sizes = wire_sizes(run)
    c2s = {k for d, k in sizes if d == "c2s"}
    s2c = {k for d, k in sizes if d == "s2c"}
    client, server = CLIENT_SERVER[name]
    assert client <= c2s, f"client never sent {client - c2s}"
    assert server <= s2c, f"pool never sent {server - s2c}"
    assert not c2s & SERVER_ONLY, f"client sent server methods {c2s & SERVER_ONLY}"
    assert not s2c & CLIENT_ONLY, f"pool sent client methods {s2c & CLIENT_ONLY}"
    # Every submit the miner counted crossed the wire, and each got a verdict.
    submit = SUBMIT_METHOD.get(name, "mining.submit")
    assert len(sizes[("c2s", submit)]) == run.summary["shares"] > 0
    assert run.summary["accepted"] + run.summary["rejected"] >= run.summary["shares"] - 1


def test_stratum1_fields(runs: dict[str, Run], reference: dict[Any, tuple[int, int]]) -> None:
    """Bitcoin notify has real field widths; submit carries worker, job, en2, ntime, nonce."""
    run = runs["stratum1"]
    s2c = [m for m, _ in json_lines(run.relay.stream("s2c"))]
    c2s = [m for m, _ in json_lines(run.relay.stream("c2s"))]
    sub = next(m for m in c2s if m.get("method") == "mining.subscribe")
    assert sub["params"] == ["cgminer/4.10.0"]
    auth = next(m for m in c2s if m.get("method") == "mining.authorize")
    assert auth["params"] == ["kvetak.worker1", "x"]
    sub_result = next(m for m in s2c if m.get("id") == sub["id"])["result"]
    en2_size = sub_result[2]
    assert [s[0] for s in sub_result[0]] == ["mining.set_difficulty", "mining.notify"]
    notifies = [m["params"] for m in s2c if m.get("method") == "mining.notify"]
    assert len(notifies) >= 3
    assert notifies[0][8] is True, "the first job after authorize must be clean"
    job_ids = set()
    for p in notifies:
        job_id, prev, coinb1, coinb2, branch, version, nbits, ntime, clean = p
        job_ids.add(job_id)
        assert len(prev) == 64 and prev.endswith("0" * 16)
        assert coinb1.startswith("01000000010000") and 100 <= len(coinb1) <= 260
        assert coinb2.endswith("00000000") and 80 <= len(coinb2) <= 260
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in branch)
        assert len(branch) <= 14
        assert (version, len(nbits), len(ntime)) == ("20000000", 8, 8)
        assert isinstance(clean, bool)
    assert any(10 <= len(p[4]) <= 14 for p in notifies)
    submits = [m["params"] for m in c2s if m.get("method") == "mining.submit"]
    for p in submits:
        assert p[0] == "kvetak.worker1" and p[1] in job_ids
        assert len(p[2]) == 2 * en2_size and len(p[3]) == 8 and len(p[4]) == 8
        assert len(p) == 6 and len(p[5]) == 8  # cgminer 4.x rolls version bits


def test_stratum1_sizes_match_the_corpus(
    runs: dict[str, Run], reference: dict[Any, tuple[int, int]]
) -> None:
    for name in ("stratum1", "stratum1-compact"):
        run = runs[name]
        sizes = wire_sizes(run)
        for k in ("mining.subscribe", "mining.authorize"):
            assert_in_range(sizes[("c2s", k)], reference[("stratum", "c2s", k)], f"{name} {k}")
        assert_in_range(
            sizes[("s2c", "mining.set_difficulty")],
            reference[("stratum", "s2c", "mining.set_difficulty")],
            f"{name} set_difficulty",
        )
        trimmed = [
            notify_minus_branch(m, n)
            for m, n in json_lines(run.relay.stream("s2c"))
            if m.get("method") == "mining.notify"
        ]
        assert_in_range(
            trimmed, reference[("stratum", "s2c", "notify-minus-branch")], f"{name} notify"
        )
        # No real Bitcoin submit in the corpus: cgminer's is ~100-160 bytes (documented).
        assert all(95 <= n <= 170 for n in sizes[("c2s", "mining.submit")])


def test_zcash_shapes_and_sizes(
    runs: dict[str, Run], reference: dict[Any, tuple[int, int]]
) -> None:
    run = runs["zcash"]
    sizes = wire_sizes(run)
    for d, k in (("c2s", "mining.submit"), ("s2c", "mining.notify"), ("s2c", "mining.set_target")):
        assert_in_range(sizes[(d, k)], reference[("zcash", d, k)], f"zcash {k}")
    c2s = [m for m, _ in json_lines(run.relay.stream("c2s"))]
    s2c = [m for m, _ in json_lines(run.relay.stream("s2c"))]
    nonce1 = next(m["result"][1] for m in s2c if m.get("id") == 1)
    for m in c2s:
        if m.get("method") == "mining.submit":
            _, _, ntime, nonce2, solution = m["params"]
            assert len(nonce1) + len(nonce2) == 64 and len(ntime) == 8
            assert solution.startswith("fd4005") and len(solution) == 2 * (3 + 1344)
    targets = [m["params"][0] for m in s2c if m.get("method") == "mining.set_target"]
    assert targets and all(len(t) == 64 and t.startswith("00") for t in targets)
    assert int(targets[0], 16) == 2**248 - 1, "difficulty below 1 is clamped to the limit"
    notify = next(m["params"] for m in s2c if m.get("method") == "mining.notify")
    assert notify[1] == "04000000" and notify[4] == "0" * 64 and len(notify) == 8


def test_monero_shapes_and_sizes(
    runs: dict[str, Run], reference: dict[Any, tuple[int, int]]
) -> None:
    legacy = wire_sizes(runs["monero-legacy"])
    for d, k in (("c2s", "login"), ("s2c", "job")):
        assert_in_range(legacy[(d, k)], reference[("monero", d, k)], f"legacy {k}")
    assert_in_range(
        [max(legacy[("s2c", "result")])], reference[("monero", "s2c", "result")], "login result"
    )
    run = runs["monero"]
    c2s = [m for m, _ in json_lines(run.relay.stream("c2s"))]
    s2c = [m for m, _ in json_lines(run.relay.stream("s2c"))]
    login = c2s[0]
    assert login["method"] == "login" and login["params"]["agent"].startswith("XMRig/6.")
    assert {"login", "pass", "agent", "rigid", "algo"} <= set(login["params"])
    assert "rx/0" in login["params"]["algo"]
    jobs = [s2c[0]["result"]["job"]] + [m["params"] for m in s2c if m.get("method") == "job"]
    for job in jobs:
        assert len(bytes.fromhex(job["blob"])) == 76
        assert len(job["target"]) in (8, 16) and len(job["seed_hash"]) == 64
        assert job["algo"] == "rx/0" and isinstance(job["height"], int)
    rpc_id = s2c[0]["result"]["id"]
    for m in c2s:
        if m.get("method") == "submit":
            p = m["params"]
            assert p["id"] == rpc_id and len(p["nonce"]) == 8 and len(p["result"]) == 64
        if m.get("method") == "keepalived":
            assert m["params"] == {"id": rpc_id}
    assert any(m.get("result") == {"status": "KEEPALIVED"} for m in s2c)
    # An xmrig 6 login is bigger than the 2017 corpus login only by what xmrig added (algo
    # list, rigid, jsonrpc, a long agent): without those it is the corpus login's size.
    xmrig_login = wire_sizes(run)[("c2s", "login")][0]
    assert 450 <= xmrig_login <= 800  # xmrig 6.x logins (documented range)
    params = {k: v for k, v in login["params"].items() if k not in ("algo", "rigid")}
    params["agent"] = "xmr/1.0"
    old_style = {"method": "login", "params": params, "id": 1}
    assert_in_range(
        [len(json.dumps(old_style)) + 1], reference[("monero", "c2s", "login")], "xmrig login"
    )


def test_eth_proxy_and_stratum(runs: dict[str, Run], reference: dict[Any, tuple[int, int]]) -> None:
    proxy = runs["ethproxy"]
    pushes = [
        n for m, n in json_lines(proxy.relay.stream("s2c")) if m.get("id") == 0 and "result" in m
    ]
    assert len(pushes) >= 3, "an eth-proxy pool pushes work on every block"
    assert_in_range(pushes, reference[("ethproxy", "s2c", "result")], "eth-proxy work push")
    for m, _ in json_lines(proxy.relay.stream("c2s")):
        if m.get("method") == "eth_submitWork":
            nonce, header, mix = m["params"]
            assert (len(nonce), len(header), len(mix)) == (18, 66, 66)
    eth = runs["ethstratum"]
    c2s = [m for m, _ in json_lines(eth.relay.stream("c2s"))]
    s2c = [m for m, _ in json_lines(eth.relay.stream("s2c"))]
    assert c2s[0]["params"][1] == "EthereumStratum/1.0.0"
    assert s2c[0]["result"][0][2] == "EthereumStratum/1.0.0"
    extranonce = s2c[0]["result"][1]
    for m in s2c:
        if m.get("method") == "mining.notify":
            _, seedhash, headerhash, clean = m["params"]
            assert len(seedhash) == len(headerhash) == 64 and isinstance(clean, bool)
    for m in c2s:
        if m.get("method") == "mining.submit":
            assert len(extranonce) + len(m["params"][2]) == 16
    # The older ethermine-style stratum, as the eth pools in cgminer.s2 speak it.
    esm1 = runs["ethstratum-esm1"]
    notifies = [(m, n) for m, n in json_lines(esm1.relay.stream("s2c"))
                if m.get("method") == "mining.notify"]  # fmt: skip
    assert notifies and all(len(m["params"]) == 5 for m, _ in notifies)
    assert all(p.startswith("0x") and len(p) == 66 for m, _ in notifies for p in m["params"][1:4])
    assert_in_range([n for _, n in notifies], reference[("stratum", "s2c", "eth-notify")], "esm1")
    subs = [m["params"] for m, _ in json_lines(esm1.relay.stream("c2s"))
            if m.get("method") == "mining.submit"]  # fmt: skip
    assert subs and all(len(p) == 5 and p[2].startswith("0x") and len(p[2]) == 18 for p in subs)


def test_http_dialects(runs: dict[str, Run], reference: dict[Any, tuple[int, int]]) -> None:
    """getwork/GBT with long polling and eth over HTTP: real HTTP/1.1 on the wire."""
    for name, method in (("getwork", "getwork"), ("gbt", "getblocktemplate")):
        run = runs[name]
        assert run.relay.conns >= 2, "a long-polling connection beside the work connection"
        reqs = [r for c in range(1, run.relay.conns + 1)
                for r in http_messages(run.relay.stream("c2s", c))]  # fmt: skip
        resps = [r for c in range(1, run.relay.conns + 1)
                 for r in http_messages(run.relay.stream("s2c", c))]  # fmt: skip
        assert all(start.startswith("POST ") and start.endswith(" HTTP/1.1") for start, *_ in reqs)
        assert all(h["x-mining-extensions"] == "longpoll midstate rollntime submitold"
                   for _, h, _, _ in reqs)  # fmt: skip
        assert all(h["authorization"].startswith("Basic ") for _, h, _, _ in reqs)
        assert all(s.startswith("HTTP/1.1 200") and h["x-long-polling"] == "/LP"
                   for s, h, _, _ in resps)  # fmt: skip
        methods = [json.loads(b)["method"] for _, _, b, _ in reqs]
        assert method in methods
        assert ("submitblock" if name == "gbt" else "getwork") in methods
        works = [json.loads(b)["result"] for _, _, b, _ in resps]
        if name == "getwork":
            work = next(w for w in works if isinstance(w, dict))
            assert len(work["data"]) == 256 and len(work["midstate"]) == 64
            assert len(work["hash1"]) == 128 and len(work["target"]) == 64
            submits = [json.loads(b)["params"] for _, _, b, _ in reqs if json.loads(b)["params"]]
            assert submits and all(len(p[0]) == 256 for p in submits)
        else:
            tpl = next(w for w in works if isinstance(w, dict))
            assert {"previousblockhash", "transactions", "coinbasevalue", "longpollid"} <= set(tpl)
        assert run.summary["shares"] > 0
    run = runs["ethhttp"]
    reqs = http_messages(run.relay.stream("c2s"))
    resps = http_messages(run.relay.stream("s2c"))
    assert len(reqs) == len(resps) > 10
    assert all(s.startswith("POST /?miner=") for s, *_ in reqs)
    by_method: dict[str, list[int]] = defaultdict(list)
    for _, _, body, n in reqs:
        by_method[json.loads(body)["method"]].append(n)
    assert {"eth_getWork", "eth_submitHashrate", "eth_submitWork"} <= set(by_method)
    for k in ("eth_getWork", "eth_submitHashrate"):
        assert_in_range(by_method[k], reference[("ethhttp", "c2s", k)], f"eth http {k}")
    assert all(h.get("transfer-encoding") == "chunked" for _, h, _, _ in resps)
    assert_in_range([n for *_, n in resps], reference[("ethhttp", "s2c", "result")], "eth resp")


# ---------------------------------------------------------------- transports


def test_tls_really_negotiates(runs: dict[str, Run]) -> None:
    for name, sni, version in (
        ("stratum1-tls", b"btc-eu.pool.example", "TLSv1.3"),
        ("monero-tls12", b"xmr-eu1.pool.example", "TLSv1.2"),
    ):
        run = runs[name]
        c2s, s2c = run.relay.stream("c2s", 1), run.relay.stream("s2c", 1)
        assert c2s[0] == 0x16 and c2s[1] == 0x03 and c2s[5] == 0x01, "no ClientHello"
        assert sni in c2s[: 5 + int.from_bytes(c2s[3:5], "big")], "SNI missing"
        assert s2c[0] == 0x16 and s2c[5] == 0x02, "no ServerHello"
        for word in (b"mining.", b"login", b'"method"', b"jsonrpc"):
            assert word not in c2s and word not in s2c, f"{word!r} in clear inside TLS"
        assert run.summary["tls_versions"] == [version]
        assert run.summary["shares"] > 0 and run.summary["jobs"] > 0


def test_socks5_really_proxies(runs: dict[str, Run]) -> None:
    for name in ("monero-socks", "stratum1-socks-tls"):
        run = runs[name]
        c2s, s2c = run.relay.stream("c2s", 1), run.relay.stream("s2c", 1)
        assert c2s[:3] == b"\x05\x01\x00" and s2c[:2] == b"\x05\x00"
        req = c2s[3:13]
        assert req[:4] == b"\x05\x01\x00\x01" and req[4:8] == socket.inet_aton("127.0.0.1")
        assert s2c[2:4] == b"\x05\x00", "the proxy did not grant CONNECT"
        after = c2s[13:]
        if name == "monero-socks":
            assert after.startswith(b'{"id": 1, "jsonrpc": "2.0", "method": "login"')
        else:
            assert after[0] == 0x16 and b"ss.pool.example" in after[:400]
        assert run.socks_log is not None
        records = read_jsonl(run.socks_log)
        assert records and records[0]["ok"] and records[0]["bytes_up"] > 0
        # The pool saw the session, so the proxy relayed it.
        assert any(r["dir"] == "rx" for r in read_jsonl(run.pool_log))
        assert run.summary["shares"] > 0


def test_sv2_handshake_and_frames(runs: dict[str, Run]) -> None:
    run = runs["sv2"]
    with run.relay.lock:
        chunks = [c for c in run.relay.chunks if c.conn == 1]
    first_s2c = next(i for i, c in enumerate(chunks) if c.direction == "s2c")
    assert sum(len(c.data) for c in chunks[:first_s2c] if c.direction == "c2s") == 64
    second_c2s = next(i for i, c in enumerate(chunks) if i > first_s2c and c.direction == "c2s")
    assert sum(len(c.data) for c in chunks[:second_c2s] if c.direction == "s2c") == 234
    c2s, s2c = run.relay.stream("c2s"), run.relay.stream("s2c")
    # Frames after the handshake: the sizes the emulators logged add up to the wire bytes,
    # each is 6-byte header + 16 MAC + payload + 16 MAC, and SubmitSharesStandard is 24 bytes.
    log = read_jsonl(run.miner_log)
    tx = [r for r in log if r["dir"] == "tx"]
    assert tx[0]["size"] == 64 and sum(r["size"] for r in tx) == len(c2s)
    rx = [r for r in log if r["dir"] == "rx"]
    # (frames the pool sent while the miner was closing reach the wire but are never read)
    unread = len(s2c) - sum(r["size"] for r in rx)
    assert rx[0]["size"] == 234 and 0 <= unread < 3 * (6 + 16 + 48 + 16)
    submits = [r["size"] for r in tx if r["kind"] == "SubmitSharesStandard"]
    assert submits and set(submits) == {6 + 16 + 24 + 16}
    assert {r["kind"] for r in rx} >= {"SetupConnection.Success", "NewMiningJob",
                                       "SetNewPrevHash", "SubmitShares.Success"}  # fmt: skip
    # Ciphertext-like: no JSON, and byte values spread like random bytes.
    body = c2s[64:] + s2c[234:]
    assert b'{"' not in body and b"mining" not in body
    counts = [0] * 256
    for b in body:
        counts[b] += 1
    assert max(counts) < 6 * len(body) / 256 + 10


# ---------------------------------------------------------------- behaviour


def test_shares_are_poisson_at_the_configured_rate(runs: dict[str, Run]) -> None:
    run = runs["poisson"]
    rate = 2e12 / (1024 * 2**32)  # shares per protocol second
    times = run.summary["share_times"]
    n, expected = len(times), rate * 300
    assert abs(n - expected) < 5 * math.sqrt(expected), (n, expected)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    cv = statistics.pstdev(gaps) / statistics.mean(gaps)
    assert 0.7 < cv < 1.3, f"inter-share gaps CV {cv:.2f}: not exponential"
    pool_submits = [r for r in read_jsonl(run.pool_log) if r["kind"] == "mining.submit"]
    assert len(pool_submits) == n


def test_vardiff_retargets_towards_the_target_interval(runs: dict[str, Run]) -> None:
    run = runs["vardiff"]
    diffs = run.summary["difficulties"]
    assert run.summary["difficulty_changes"] >= 1
    assert diffs[0] == 64 and max(diffs) > 64, diffs
    set_diffs = [m for m, _ in json_lines(run.relay.stream("s2c"))
                 if m.get("method") == "mining.set_difficulty"]  # fmt: skip
    assert len(set_diffs) == len(diffs)


def test_vardiff_unit() -> None:
    v = Vardiff(difficulty=1024.0, target_interval=10.0, retarget_shares=4)
    v.reset(0.0)
    assert [v.on_share(t) for t in (1.0, 2.0, 3.0)] == [None, None, None]
    assert v.on_share(4.0) == 4096.0  # 4x faster than wanted: capped at a 4x step
    v.reset(100.0)
    assert v.on_idle(120.0) is None and v.on_idle(141.0) == 1024.0
    off = Vardiff(difficulty=8.0, target_interval=10.0, enabled=False)
    assert all(off.on_share(float(t)) is None for t in range(20))


def test_job_board_timing() -> None:
    """New blocks arrive as a Poisson process; updates on a jittered timer fill the gaps."""
    board = JobBoard(random.Random(3), Clock(1.0), CHAINS["bitcoin"])
    events = [board.next_event() for _ in range(4000)]
    clean_share = sum(c for _, c in events) / len(events)
    assert 0.03 < clean_share < 0.08  # P(Exp(600 s) < ~30 s) ~ 5 %
    assert 24 < statistics.mean(t for t, _ in events) < 32
    eth = JobBoard(random.Random(3), Clock(1.0), CHAINS["ethereum"])
    gaps = [eth.next_event() for _ in range(4000)]
    assert all(c for _, c in gaps) and 12 < statistics.mean(t for t, _ in gaps) < 14


def test_timing_follows_the_corpus(runs: dict[str, Run], corpus: Path, tshark: str) -> None:
    """Monero job cadence, Ethereum HTTP polling and the Poisson share model, next to the
    real sessions."""
    real = corpus_gaps(corpus, tshark)
    board = JobBoard(random.Random(1), Clock(1.0), CHAINS["monero"])
    emulated = statistics.median(board.next_event()[0] for _ in range(5000))
    assert 0.7 < emulated / statistics.median(real["monero.job"]) < 1.3
    # 60 protocol seconds of polling at the real period (wall-clock stretch under load only
    # lowers the count, so the lower bound is loose)
    polls = len(wire_sizes_http(runs["ethhttp"])["eth_getWork"])
    expected = 60 / statistics.median(real["ethhttp.getwork"])
    assert 0.5 * expected < polls < 1.15 * expected, (polls, expected)
    # Real share gaps look exponential (coefficient of variation ~1): the Poisson model.
    zec = real["zcash.submit"]
    assert 0.6 < statistics.pstdev(zec) / statistics.mean(zec) < 1.6


def wire_sizes_http(run: Run) -> dict[str, list[int]]:
    """JSON-RPC method -> request sizes, over every connection of an HTTP session."""
    out: dict[str, list[int]] = defaultdict(list)
    for conn in range(1, run.relay.conns + 1):
        for _, _, body, n in http_messages(run.relay.stream("c2s", conn)):
            out[json.loads(body)["method"]].append(n)
    return out


def test_jobs_and_clean_flags(runs: dict[str, Run]) -> None:
    notifies = [m["params"] for m, _ in json_lines(runs["poisson"].relay.stream("s2c"))
                if m.get("method") == "mining.notify"]  # fmt: skip
    # 300 protocol seconds at ~30 s per job: about ten jobs, mostly transaction updates.
    assert 5 <= len(notifies) <= 20
    assert notifies[0][8] is True and any(p[8] is False for p in notifies)


def test_reconnects_make_new_flows(runs: dict[str, Run]) -> None:
    run = runs["reconnect"]
    assert run.summary["connections"] >= 2
    assert run.relay.conns == run.summary["connections"]
    extranonces = set()
    for conn in range(1, run.relay.conns + 1):
        msgs = [m for m, _ in json_lines(run.relay.stream("c2s", conn))]
        assert msgs[0]["method"] in ("mining.configure", "mining.subscribe")
        assert run.relay.first_closer(conn) == "c2s"  # the miner hangs up and reconnects
        sub = next(m for m in msgs if m["method"] == "mining.subscribe")
        # cgminer offers its session id again on reconnect; the pool keeps its extranonce1
        assert len(sub["params"]) == (1 if conn == 1 else 2)
        replies = [m for m, _ in json_lines(run.relay.stream("s2c", conn))]
        extranonces.add(next(m for m in replies if m.get("id") == sub["id"])["result"][1])
    assert len(extranonces) == 1


def test_pool_drops_make_new_flows(runs: dict[str, Run]) -> None:
    """With --drop-mean the pool closes first (its FIN reaches the relay before the miner's)
    and the miner logs in again on a new connection."""
    run = runs["pool-drops"]
    assert run.summary["connections"] >= 2 and run.relay.conns == run.summary["connections"]
    for conn in range(1, run.relay.conns + 1):
        assert json_lines(run.relay.stream("c2s", conn))[0][0]["method"] == "login"
    # every connection but the last (which the miner's end of mining closes) ends by the pool
    assert [run.relay.first_closer(c) for c in range(1, run.relay.conns)] == ["s2c"] * (
        run.relay.conns - 1
    )


def test_keepalives(runs: dict[str, Run]) -> None:
    xmrig = runs["monero"].summary
    assert xmrig["keepalives"] >= 1
    hashrate_reports = wire_sizes(runs["ethproxy"])[("c2s", "eth_submitHashrate")]
    assert len(hashrate_reports) == runs["ethproxy"].summary["keepalives"] >= 4


def test_pool_drops_garbage_and_keeps_serving(runs: dict[str, Run]) -> None:
    upstream = runs["stratum1"].relay.upstream  # that pool is still running
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b'["not", "an", "object"]\n'):
        with socket.create_connection(upstream, timeout=5) as s:
            s.sendall(junk)
            assert s.recv(4096) == b"", "the pool answered garbage instead of hanging up"
    with socket.create_connection(upstream, timeout=5) as s:
        s.sendall(b'{"id": 1, "method": "mining.subscribe", "params": ["cgminer/4.10.0"]}\n')
        reply = json.loads(s.makefile("rb").readline())
    assert reply["id"] == 1 and reply["error"] is None and len(reply["result"]) == 3


# ---------------------------------------------------------------- the guard


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "1.1.1.1", "185.71.66.20", "2001:4860:4860::8888", "pool.example", ""]
)
def test_guard_refuses_outside_addresses(host: str) -> None:
    with pytest.raises(TargetRefused):
        check_target(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.213.1.10", "10.213.3.30", "::1", "fd00::5"])
def test_guard_admits_loopback_and_lab(host: str) -> None:
    assert check_target(host) == host


def test_miner_refuses_an_outside_pool_without_connecting() -> None:
    for target in (["--pool", "8.8.8.8:3333"], ["--pool", "127.0.0.1:3333",
                                                 "--socks", "1.1.1.1:1080"]):  # fmt: skip
        out = subprocess.run(
            [PY, "-m", "flowdet.lab.mining.miner", "--dialect", "stratum1", *target],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 2
        assert "outside loopback" in out.stderr and "Traceback" not in out.stderr
        assert out.stdout == ""  # no summary: it never mined


def test_socks_proxy_refuses_outside_targets_and_names() -> None:
    proc, port = start([PY, "-m", "flowdet.lab.mining.socks5", "--port", "0"])

    async def ask(request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        writer.write(request)
        reply = await reader.readexactly(4)
        writer.close()
        return reply

    try:
        outside = b"\x05\x01\x00\x01" + socket.inet_aton("8.8.8.8") + (53).to_bytes(2, "big")
        assert asyncio.run(ask(outside))[1] == 2  # connection not allowed by ruleset
        name = b"pool.example"
        by_name = b"\x05\x01\x00\x03" + bytes([len(name)]) + name + (3333).to_bytes(2, "big")
        assert asyncio.run(ask(by_name))[1] == 8  # address type not supported
    finally:
        stop(proc)


# ---------------------------------------------------------------- scenarios


class LoopbackLab:
    """The `Lab` protocol on loopback, no root: each lab host is its own 127.a.b.x address,
    a and b random, so the fixed pool ports of parallel scenarios (or of another test run at
    the same time) never collide; processes stopped by PID."""

    hosts = ("sandbox", "outside", "outside2")

    def __init__(self, workdir: Path, net: int) -> None:
        self._workdir = workdir
        self.addr = {h: f"127.{net >> 8}.{net & 0xFF}.{i + 1}" for i, h in enumerate(self.hosts)}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.notes: dict[str, Any] = {}

    def ip(self, host: str) -> str:
        return self.addr[host]

    def spawn(self, host: str, argv: Any, *, stdin: Any = None, stdout: Any = None,
              stderr: Any = None, env: Any = None, cwd: Path | None = None
              ) -> subprocess.Popen[bytes]:  # fmt: skip
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            cwd=cwd or self._workdir,
        )
        self.procs.append(proc)
        return proc

    def wait_port(self, host: str, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((self.addr[host], port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def workdir(self) -> Path:
        return self._workdir

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def note(self, **facts: object) -> None:
        self.notes.update(facts)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def test_scenario_registry() -> None:
    from flowdet.lab.scenarios import mining

    names = [s.name for s in mining.SCENARIOS]
    assert len(names) == len(set(names)) >= 12
    assert all(s.label == "mining" and "full" in s.profiles for s in mining.SCENARIOS)
    quick = {s.name for s in mining.SCENARIOS if "quick" in s.profiles}
    assert {"mining-stratum1-tcp", "mining-stratum1-tls", "mining-monero-tcp",
            "mining-getwork-http"} <= quick  # fmt: skip
    assert all(s.profiles >= {"standard"} for s in mining.SCENARIOS if "quick" in s.profiles)


@pytest.mark.slow
def test_every_scenario_runs_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each scenario (but the SSH one, which needs sshd: see the root test) drives real
    processes to completion and returns the Expect of the flow it made."""
    from concurrent.futures import ThreadPoolExecutor

    from flowdet.lab.scenarios import mining

    monkeypatch.setitem(mining.PACE, "quick", mining.Pace(0.01, (150.0, 200.0), (40.0, 60.0)))
    todo = [s for s in mining.SCENARIOS if s.name != "mining-over-ssh"]
    labs = []
    nets = random.SystemRandom().sample(range(0x100, 0xFF00), len(todo))
    for i, _ in enumerate(todo):
        (tmp_path / str(i)).mkdir()
        labs.append(LoopbackLab(tmp_path / str(i), nets[i]))
    try:
        with ThreadPoolExecutor(len(todo)) as pool:
            results = list(
                pool.map(
                    lambda sl: sl[0].run(sl[1], random.Random(5), "quick"),
                    zip(todo, labs, strict=True),
                )
            )
    finally:
        for lab in labs:
            lab.close()
    for scn, lab, expects in zip(todo, labs, results, strict=True):
        assert len(expects) == 1, scn.name
        (exp,) = expects
        assert (exp.client, exp.proto, exp.label) == ("sandbox", "tcp", "mining")
        notes = lab.notes
        assert notes["jobs"] > 0 and notes["connections"] >= 1, (scn.name, notes)
        if scn.name == "mining-socks5":
            assert (exp.server, exp.server_port) == ("outside", notes["proxy_port"])
        else:
            assert exp.server_port == notes["pool_port"], scn.name
            assert notes["tls"] == ("tls" in scn.name), scn.name
        if "reconnect" in scn.name:
            assert notes["connections"] >= 2, (scn.name, notes)


@pytest.mark.root
@pytest.mark.slow
def test_quick_scenarios_in_the_real_lab(root: None, tshark: str) -> None:
    """The lab's shared quick run (namespaces, WAN delay line, capture): labels.tsv names the
    mining flows and the captured bytes are what the dialect must show on the wire."""
    from lab_helpers import labels_of, quick_run, tshark_rows

    out = quick_run()
    rows = [r for r in labels_of(out) if r["scenario"].startswith("mining-")]
    by_scn: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_scn[r["scenario"]].append(r)
    assert {"mining-stratum1-tcp", "mining-stratum1-tls", "mining-monero-tcp",
            "mining-getwork-http"} <= set(by_scn)  # fmt: skip
    assert all(r["label"] == "mining" and r["client_ip"] == "10.213.1.10" for r in rows)

    def streams(row: dict[str, str]) -> tuple[bytes, bytes]:
        pkts = tshark_rows(out / row["pcap"], ["tcp.srcport", "tcp.payload"],
                           f"tcp.port == {row['client_port']} && tcp.len > 0 "
                           "&& !tcp.analysis.retransmission")  # fmt: skip
        c2s = b"".join(bytes.fromhex(p) for sp, p in pkts if sp == row["client_port"])
        s2c = b"".join(bytes.fromhex(p) for sp, p in pkts if sp != row["client_port"])
        return c2s, s2c

    # (a scenario may reconnect: several flows, each a complete session of its own)
    c_kinds: set[str] = set()
    s_kinds: set[str] = set()
    for row in by_scn["mining-stratum1-tcp"]:
        c2s, s2c = streams(row)
        c_kinds |= {kind(m) for m, _ in json_lines(c2s)}
        s_kinds |= {kind(m) for m, _ in json_lines(s2c)}
    assert {"mining.subscribe", "mining.authorize", "mining.submit"} <= c_kinds
    assert {"mining.notify", "mining.set_difficulty"} <= s_kinds
    for row in by_scn["mining-monero-tcp"]:
        c2s, s2c = streams(row)
        login = json_lines(c2s)[0][0]
        reply = next(m for m, _ in json_lines(s2c) if m.get("id") == login["id"])
        assert login["method"] == "login" and len(reply["result"]["job"]["blob"]) == 152
    get = by_scn["mining-getwork-http"]
    assert len(get) >= 2, "work connection and long-polling connection"
    reqs = http_messages(streams(get[0])[0])
    assert reqs and all("x-mining-extensions" in h for _, h, _, _ in reqs)
    tls = by_scn["mining-stratum1-tls"][0]
    sni = tshark_rows(out / tls["pcap"], ["tls.handshake.extensions_server_name"],
                      f"tcp.port == {tls['client_port']} && tls.handshake.type == 1")  # fmt: skip
    assert sni and sni[0][0] in mining_pool_names("stratum1")
    assert b"mining." not in b"".join(streams(tls))


def mining_pool_names(dialect: str) -> tuple[str, ...]:
    from flowdet.lab.scenarios.mining import POOL_NAMES

    return POOL_NAMES[dialect]
