"""The benign lab programs, run for real on loopback: servers and clients exchange traffic and
we check what actually crossed (statuses, bytes, negotiated TLS, decoded frames and packets),
with tshark as an independent dissector where a capture is possible (root).

Every test starts the real modules as subprocesses, the way the lab does, on free ports.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from loopback import wait_port

from flowdet.lab.benign import dns, mqtt, ntp, resp, websocket
from flowdet.lab.certs import make_certificate

PY = sys.executable


def _module(name: str, *args: object) -> list[str]:
    return [PY, "-m", f"flowdet.lab.benign.{name}", *map(str, args)]


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(argv: Sequence[str]) -> Iterator[int]:
    """Start a server with --port 0 and yield the port it announces on stdout."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"server did not start: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
        yield int(json.loads(line)["listening"][1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_client(argv: Sequence[str], timeout: float = 60) -> dict:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-800:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_clients(argvs: Sequence[Sequence[str]]) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for a in argvs
    ]


def finish(procs: Sequence[subprocess.Popen[str]], timeout: float = 60) -> list[dict]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr[-800:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(
        tmp_path_factory.mktemp("pki"), ["www.example.com", "api.example.org"], ["127.0.0.1"]
    )


def _tls(cert: Path, sni: str = "www.example.com") -> list[str]:
    return ["--tls", "--cafile", str(cert), "--sni", sni]


# ---------------------------------------------------------------- websocket


def test_websocket_rfc6455_examples() -> None:
    # RFC 6455 section 1.3 (handshake) and 5.7 (frames) examples.
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert websocket.encode_frame(websocket.OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    masked = bytes.fromhex("818537fa213d7f9f4d5158")
    assert websocket.encode_frame(websocket.OP_TEXT, b"Hello", bytes.fromhex("37fa213d")) == masked
    frame, used = websocket.decode_frame(masked)  # type: ignore[misc]
    assert (frame.payload, frame.masked, frame.opcode, used) == (b"Hello", True, 1, len(masked))


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_websocket_frame_lengths_round_trip(size: int) -> None:
    payload = os.urandom(size)
    wire = websocket.encode_frame(websocket.OP_BINARY, payload, os.urandom(4))
    assert websocket.decode_frame(wire[:-1] if size else wire[:1]) is None  # incomplete
    frame, used = websocket.decode_frame(wire + b"extra")  # type: ignore[misc]
    assert frame.payload == payload and used == len(wire) == websocket.frame_size(frame)


def _raw_ws(port: int, path: str, cert: Path) -> tuple[ssl.SSLSocket, bytes]:
    ctx = ssl.create_default_context(cafile=str(cert))
    sock = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="www.example.com"
    )
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: www.example.com\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101")
    assert f"Sec-WebSocket-Accept: {websocket.accept_key(key)}".encode() in head
    return sock, rest


def test_websocket_server_and_clients_over_tls(pki: tuple[Path, Path]) -> None:
    cert, key = pki
    interval = 0.25
    argv = _module("websocket", "server", "--port", 0, "--tls", "--cert", cert, "--key", key,
                   "--interval", interval, "--jitter", 0.3)  # fmt: skip
    with server(argv) as port:
        procs = start_clients([
            _module("websocket", "client", "--port", port, "--mode", mode, *_tls(cert),
                    "--interval", 0.3, "--duration", 2)
            for mode in ("chat", "ticker", "newheads", "engineio", "terminal")
        ])  # fmt: skip
        # An independent client: our own handshake check, then the server's pushes decoded
        # frame by frame, with their spacing measured.
        sock, buf = _raw_ws(port, "/notify", cert)
        arrivals, frames = [], []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            got = websocket.decode_frame(buf)
            if got is None:
                buf += sock.recv(4096)
                continue
            frame, used = got
            buf = buf[used:]
            arrivals.append(time.monotonic())
            frames.append(frame)
        # A client frame without a mask breaks RFC 6455: the server must close (1002).
        sock.sendall(websocket.encode_frame(websocket.OP_TEXT, b'{"type":"ping"}'))
        closing = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                closing += chunk
        sock.close()
        summaries = finish(procs)
    assert all(not f.masked and f.opcode == websocket.OP_TEXT for f in frames)
    events = [json.loads(f.payload) for f in frames]
    assert all("event" in e and "id" in e for e in events)
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert 4 <= len(frames) <= 16, len(frames)  # ~8 pushes at 0.25 s in 2 s
    assert interval * 0.4 <= gaps[len(gaps) // 2] <= interval * 2.5
    close = [f for f in _frames(closing) if f.opcode == websocket.OP_CLOSE]
    assert close and struct.unpack("!H", close[0].payload[:2])[0] == 1002

    by_mode = {s["mode"]: s for s in summaries}
    for s in summaries:
        assert s["handshake"] == "ok" and s["tls_version"] in ("TLSv1.2", "TLSv1.3")
        assert s["sent"] >= 3 and s["received"] >= 3 and s["errors"] == 0
    assert by_mode["chat"]["received_kinds"].get("ack", 0) >= 1
    assert by_mode["ticker"]["received_kinds"].get("ticker", 0) >= 3
    assert by_mode["newheads"]["received_kinds"].get("eth_subscription", 0) >= 3
    tty = by_mode["terminal"]
    assert set(tty["opcodes"]) == {"2"}  # ttyd framing: binary frames only
    assert tty["received_kinds"]["title"] == 1 and tty["received_kinds"]["output"] >= 3
    eio = by_mode["engineio"]["received_kinds"]
    assert eio.get("0") == 1 and eio.get("40") == 1 and eio.get("2", 0) >= 3


def _frames(buf: bytes) -> list[websocket.Frame]:
    out = []
    while (got := websocket.decode_frame(buf)) is not None:
        out.append(got[0])
        buf = buf[got[1] :]
    return out


# ---------------------------------------------------------------- line JSON


def test_linejson_ticker_feed_and_log_shipper(pki: tuple[Path, Path]) -> None:
    cert, key = pki
    argv = _module("linejson", "server", "--port", 0, "--tls", "--cert", cert, "--key", key,
                   "--interval", 0.25)  # fmt: skip
    with server(argv) as port:
        ticker, ship = finish(start_clients([
            _module("linejson", "client", "--port", port, "--mode", m, *_tls(cert),
                    "--interval", 0.3, "--duration", 2)
            for m in ("ticker", "ship")
        ]))  # fmt: skip
    assert ticker["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert ticker["received_kinds"]["ticker.update"] >= 3
    assert ticker["received_kinds"]["result"] == ticker["sent"]  # subscribe + every ping
    assert ship["received_kinds"]["ack"] == ship["sent"] >= 3


# ---------------------------------------------------------------- DNS and NTP


def test_dns_wire_format() -> None:
    q = dns.query(0x1234, "www.example.com", dns.TYPE_A)
    parsed = dns.decode_message(q)
    assert (parsed.id, parsed.flags, parsed.questions) == (
        0x1234, 0x0100, [dns.Question("www.example.com", dns.TYPE_A)],
    )  # fmt: skip
    r = dns.decode_message(dns.answer(q))  # type: ignore[arg-type]
    assert r.is_response and r.rcode == 0 and r.id == 0x1234
    cname, a = r.answers
    assert cname.rtype == dns.TYPE_CNAME and cname.rdata == b"example.com"
    assert a.rtype == dns.TYPE_A and a.name == "example.com" and a.value().startswith("198.51.100.")
    assert b"\xc0\x0c" in dns.answer(q)  # type: ignore[operator]  # owner compressed to question
    six = dns.decode_message(dns.answer(dns.query(7, "cdn.example.net", dns.TYPE_AAAA)))  # type: ignore[arg-type]
    assert six.answers[0].value().startswith("2001:db8:")
    nx = dns.decode_message(dns.answer(dns.query(8, "wpad.corp.example", dns.TYPE_A)))  # type: ignore[arg-type]
    assert nx.rcode == dns.RCODE_NXDOMAIN and not nx.answers
    assert nx.authority[0].rtype == dns.TYPE_SOA
    with pytest.raises(dns.DnsFormatError):
        dns.decode_name(b"\xc0\x00", 0)  # a pointer to itself


def test_ntp_packet_format() -> None:
    req = ntp.request(6, now=1_800_000_000.25)
    wire = req.encode()
    assert len(wire) == 48 and wire[0] == (0 << 6) | (4 << 3) | 3  # LI 0, VN 4, mode 3
    assert abs(ntp.from_ntp(req.transmit) - 1_800_000_000.25) < 1e-6
    rep = ntp.reply(ntp.NtpPacket.decode(wire), 1_800_000_000.5, b"\xc0\x00\x02\x01")
    back = ntp.NtpPacket.decode(rep.encode())
    assert (back.mode, back.version, back.stratum, back.origin) == (4, 4, 2, req.transmit)


@pytest.fixture
def capture(root: None, tshark: str, tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """dumpcap on lo for the ports the test appends to the yielded list."""
    ports: list[int] = [_free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM), _free_port()]
    ports += [_free_port(), _free_port()]
    pcap = tmp_path / "lo.pcapng"
    bpf = " or ".join(f"port {p}" for p in ports)
    proc = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", bpf, "-w", str(pcap)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 10
    while not pcap.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    yield pcap, ports
    proc.terminate()
    proc.wait(timeout=10)


def _tshark(pcap: Path, decode_as: list[str], fields: list[str], filt: str) -> list[list[str]]:
    args = ["tshark", "-r", str(pcap), "-Y", filt, "-T", "fields"]
    for d in decode_as:
        args += ["-d", d]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return [line.split("\t") for line in out.stdout.splitlines()]


def test_dns_ntp_websocket_mqtt_pgsql_as_tshark_sees_them(
    capture: tuple[Path, list[int]], tmp_path: Path
) -> None:
    pcap, (dport, nport, wport, mport, pport) = capture
    servers = [
        subprocess.Popen(_module("dns", "server", "--port", dport), stdout=subprocess.DEVNULL),
        subprocess.Popen(_module("ntp", "server", "--port", nport), stdout=subprocess.DEVNULL),
        subprocess.Popen(_module("websocket", "server", "--port", wport, "--interval", 0.3),
                         stdout=subprocess.DEVNULL),
        subprocess.Popen(_module("mqtt", "server", "--port", mport, "--interval", 0.3),
                         stdout=subprocess.DEVNULL),
        subprocess.Popen(_module("pg", "server", "--port", pport), stdout=subprocess.DEVNULL),
    ]  # fmt: skip
    try:
        time.sleep(0.6)
        d, n, w, m, pg = finish(start_clients([
            _module("dns", "client", "--port", dport, "--duration", 1.5, "--interval", 0.5),
            _module("ntp", "client", "--port", nport, "--duration", 1.5, "--interval", 0.4,
                    "--source-port", _free_port(socket.SOCK_DGRAM)),
            _module("websocket", "client", "--port", wport, "--mode", "chat", "--duration", 1.5,
                    "--interval", 0.3),
            _module("mqtt", "client", "--port", mport, "--duration", 2.5, "--interval", 1.2,
                    "--keepalive", 1),
            _module("pg", "client", "--port", pport, "--duration", 1.5, "--interval", 0.4,
                    "--health-interval", 0.5, "--connections", 2),
        ]))  # fmt: skip
    finally:
        for p in servers:
            p.terminate()
            p.wait(timeout=5)
    time.sleep(0.3)
    assert d["received"] == d["sent"] > 0 and d["errors"] == 0
    assert n["received"] == n["sent"] >= 3 and all(abs(o) < 0.5 for o in n["offsets"])

    rows = _tshark(pcap, [f"udp.port=={dport},dns"],
                   ["dns.flags.response", "dns.qry.name", "dns.qry.type", "dns.a", "dns.aaaa",
                    "_ws.expert.message"], "dns")  # fmt: skip
    queries = [r for r in rows if r[0] in ("0", "False")]
    answers = [r for r in rows if r[0] in ("1", "True")]
    assert len(queries) == d["sent"] and len(answers) == d["received"]
    assert {r[2] for r in queries} == {"1", "28"}  # A and AAAA
    seen = {a for r in answers for a in (r[3].split(",") + r[4].split(",")) if a}
    assert seen == set(d["addresses"])  # tshark reads the same addresses our client parsed
    assert not any(r[5] for r in rows), "tshark flagged a malformed DNS packet"

    rows = _tshark(pcap, [f"udp.port=={nport},ntp"],
                   ["udp.length", "ntp.flags.vn", "ntp.flags.mode", "ntp.stratum"],
                   "ntp")  # fmt: skip
    assert len(rows) == n["sent"] + n["received"]
    assert {tuple(r) for r in rows} == {("56", "4", "3", "0"), ("56", "4", "4", "2")}

    rows = _tshark(pcap, [f"tcp.port=={wport},http"],
                   ["websocket.opcode", "websocket.mask", "websocket.payload.text"],
                   "websocket")  # fmt: skip
    texts = [r for r in rows if r[0] == "1"]
    assert len(texts) == w["sent"] + w["received"]
    assert all(json.loads(r[2]) for r in texts)
    assert {r[1] for r in texts} == {"0", "1"}  # server frames unmasked, client frames masked

    rows = _tshark(pcap, [f"tcp.port=={mport},mqtt"], ["mqtt.msgtype", "mqtt.topic"], "mqtt")
    types = [t for r in rows for t in r[0].split(",")]
    assert types.count("1") == 1 and types.count("2") == 1  # CONNECT, CONNACK
    assert types.count("12") == m["pings"] >= 1
    assert sum(r[1].startswith("telemetry/") for r in rows) == m["sent"]

    rows = _tshark(pcap, [f"tcp.port=={pport},pgsql"], ["pgsql.type", "_ws.expert.message"],
                   "pgsql")  # fmt: skip
    types = [t for r in rows for t in r[0].split(",")]
    assert not any(r[1] for r in rows), "tshark flagged a malformed PostgreSQL message"
    assert types.count("Startup message") == pg["connections"] == 2
    assert types.count("Simple query") == pg["sent"] and types.count("Data row") == pg["rows"]
    assert types.count("Ready for query") == pg["received"] + pg["connections"]
    assert pg["errors"] == 0 and pg["health_checks"] >= 1


def test_dns_and_ntp_pairs_without_capture() -> None:
    with (
        server(_module("dns", "server", "--port", 0)) as dport,
        server(_module("ntp", "server", "--port", 0)) as nport,
    ):
        d, n = finish(start_clients([
            _module("dns", "client", "--port", dport, "--duration", 1.2, "--interval", 0.4),
            _module("ntp", "client", "--port", nport, "--duration", 1.2, "--interval", 0.3,
                    "--iburst"),
        ]))  # fmt: skip
        # A client that is not ours: one raw NTP request, answered in 48 bytes, mode 4.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            req = ntp.request(6)
            s.sendto(req.encode(), ("127.0.0.1", nport))
            data = s.recv(512)
    assert d["received"] == d["sent"] > 4 and d["lookups"] * 2 == d["sent"]
    assert n["received"] == n["sent"] >= 4 and n["stratum"] == 2
    rep = ntp.NtpPacket.decode(data)
    assert len(data) == 48 and rep.mode == ntp.MODE_SERVER and rep.origin == req.transmit
    # Timing: polls after the 3 iburst ones are ~0.3 s apart (loose bounds: a shared CI box).
    times = n["send_times"]
    gaps = [b - a for a, b in itertools.pairwise(times[3:])]
    assert gaps and all(0.15 < g < 2.0 for g in gaps)  # never early; late only under load
    assert 0.2 < sorted(gaps)[len(gaps) // 2] < 0.6


# ---------------------------------------------------------------- web


@pytest.fixture(scope="module")
def nginx(pki: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (Debian package nginx-light)")
    cert, key = pki
    root = tmp_path_factory.mktemp("web") / "site"
    http_port, https_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        _module("web", "server", "--root", root, "--http-port", http_port, "--https-port",
                https_port, "--cert", cert, "--key", key, "--big-mb", 6),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            time.sleep(0.05)
    yield {"http": http_port, "https": https_port, "cert": cert, "root": root}
    proc.terminate()
    proc.wait(timeout=10)


def test_nginx_browse_download_poll(nginx: dict) -> None:
    cert, http, https = nginx["cert"], nginx["http"], nginx["https"]
    big = "/dl/release-6M.tar.gz"
    argvs = [
        _module("web", "browse", "--port", http, "--duration", 1.5, "--interval", 0.4),
        _module("web", "browse", "--port", https, *_tls(cert), "--duration", 1.5,
                "--interval", 0.4, "--connections", 3),
        _module("web", "download", "--port", https, *_tls(cert), "--path", big),
        _module("web", "poll", "--port", https, *_tls(cert, "api.example.org"),
                "--duration", 1.5, "--interval", 0.3),
    ]  # fmt: skip
    if shutil.which("curl"):
        argvs.append(_module("web", "download", "--port", http, "--via", "curl", "--path", big))
        argvs.append(_module("web", "download", "--port", https, *_tls(cert), "--via", "curl",
                             "--tls-max", "1.2", "--path", big))  # fmt: skip
    browse, browse_tls, dl_tls, poll, *dl_curl = finish(start_clients(argvs))
    for b in (browse, browse_tls):
        assert b["pages"] >= 2 and b["errors"] == 0
        assert b["received"] == b["sent"] > b["pages"]  # pages and their assets
        assert set(b["status"]) <= {"200", "304"} and b["bytes_received"] > 20_000
    assert browse["tls_version"] is None
    assert browse_tls["tls_version"] in ("TLSv1.2", "TLSv1.3") and browse_tls["alpn"] == "http/1.1"
    assert browse_tls["connections"] <= 3 + 1  # keep-alive pool, not a connection per request
    size = (nginx["root"] / big.lstrip("/")).stat().st_size
    assert size == 6 << 20
    assert dl_tls["status"] == {"200": 1} and dl_tls["bytes_received"] == size
    assert dl_tls["tls_version"] in ("TLSv1.2", "TLSv1.3")
    for c in dl_curl:
        assert c["status"] == {"200": 1} and c["bytes_received"] == size
        assert c["bytes_sent"] > len(big) + len("GET  HTTP/1.1\r\n")  # curl's size_request
    assert poll["connections"] == 1 and poll["status"] == {"200": poll["sent"]}
    assert poll["sent"] >= 6  # 2 paths per poll, ~5 polls
    # The server's side of the story: nginx logged every request the clients counted.
    log = next(nginx["root"].parent.glob("site-nginx-*")) / "access.log"
    logged = log.read_text().count('"GET ')
    assert logged >= browse["sent"] + browse_tls["sent"] + poll["sent"] + 1 + len(dl_curl)


def test_browse_and_download_through_connect_proxy(nginx: dict) -> None:
    cert, https = nginx["cert"], nginx["https"]
    proxy = subprocess.Popen(
        _module("proxy", "server", "--port", 0, "--upstream", "127.0.0.1", "--allow-port", https),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = json.loads(proxy.stdout.readline())["listening"][1]  # type: ignore[union-attr]
        via = ["--proxy", f"127.0.0.1:{port}"]
        argvs = [
            _module("web", "browse", "--port", https, *_tls(cert), *via, "--duration", 1.2,
                    "--interval", 0.4, "--connections", 2),
        ]  # fmt: skip
        if shutil.which("curl"):
            argvs.append(_module("web", "download", "--port", https, *_tls(cert), *via,
                                 "--via", "curl", "--path", "/dl/release-6M.tar.gz"))  # fmt: skip
        summaries = finish(start_clients(argvs))
        # A CONNECT to a port that is not a TLS port is refused, as Squid does by default.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"CONNECT www.example.com:25 HTTP/1.1\r\nHost: www.example.com:25\r\n\r\n")
            refused = s.recv(4096)
    finally:
        proxy.terminate()
        _, err = proxy.communicate(timeout=5)
    browse = summaries[0]
    assert browse["errors"] == 0 and browse["received"] == browse["sent"] > browse["pages"] >= 2
    assert browse["tls_version"] in ("TLSv1.2", "TLSv1.3")
    tunnels = err.count(f"CONNECT www.example.com:{https}")
    assert tunnels == browse["connections"] + len(summaries) - 1  # every connection tunnelled
    for dl in summaries[1:]:
        assert dl["bytes_received"] == 6 << 20
    assert refused.startswith(b"HTTP/1.1 403")


def test_nginx_tls_handshake_and_sni(nginx: dict) -> None:
    ctx = ssl.create_default_context(cafile=str(nginx["cert"]))
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx.minimum_version = ctx.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", nginx["https"]), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="api.example.org") as tls,
        ):
            assert tls.version() == version.name.replace("_", ".").replace("TLSv1.", "TLSv1.")
            assert "api.example.org" in str(tls.getpeercert()["subjectAltName"])
            tls.sendall(b"GET /api/status.json HTTP/1.1\r\nHost: api.example.org\r\n"
                        b"Connection: close\r\n\r\n")  # fmt: skip
            body = b""
            while chunk := tls.recv(4096):
                body += chunk
        assert body.startswith(b"HTTP/1.1 200") and b'"status": "ok"' in body


# ---------------------------------------------------------------- RESP, JSON-RPC, MQTT


def test_resp_pool_and_raw_pipeline() -> None:
    with server(_module("resp", "server", "--port", 0)) as port:
        procs = start_clients([
            _module("resp", "client", "--port", port, "--connections", 3, "--duration", 1.5,
                    "--interval", 0.3, "--health-interval", 0.4)
        ])  # fmt: skip
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"".join([
                resp.encode_command("SET", "k", "v1"), resp.encode_command("GET", "k"),
                resp.encode_command("INCR", "n"), resp.encode_command("INCRBY", "n", 41),
                resp.encode_command("RPUSH", "l", "a", "b"),
                resp.encode_command("LRANGE", "l", 0, -1),
                resp.encode_command("NOSUCH"),
            ]))  # fmt: skip
            buf = b""
            values: list = []
            while len(values) < 7:
                buf += s.recv(4096)
                values, pos = [], 0
                while (got := resp.parse_value(buf, pos)) is not None:
                    values.append(got[0])
                    pos = got[1]
        (summary,) = finish(procs)
    assert values[:6] == ["OK", b"v1", 1, 42, 2, [b"a", b"b"]]
    assert isinstance(values[6], resp.RespError) and "unknown command" in str(values[6])
    assert summary["connections"] == 3 and summary["errors"] == 0
    assert summary["received"] >= summary["sent"] > 3 and summary["health_checks"] >= 1


def test_pg_pool_negotiates_tls_in_band(pki: tuple[Path, Path]) -> None:
    cert, key = pki
    with server(
        _module("pg", "server", "--port", 0, "--tls", "--cert", cert, "--key", key)
    ) as port:
        (s,) = finish(start_clients([
            _module("pg", "client", "--port", port, *_tls(cert), "--connections", 2,
                    "--duration", 1.2, "--interval", 0.3, "--health-interval", 0.4)
        ]))  # fmt: skip
        # A client that only speaks plain text still gets the SSLRequest answer it asked for.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(struct.pack("!II", 8, 80877103))
            answer = raw.recv(1)
    assert s["tls_version"] in ("TLSv1.2", "TLSv1.3") and s["connections"] == 2
    assert s["received"] == s["sent"] > 0 and s["errors"] == 0
    assert answer == b"S"


def test_jsonrpc_eth_read_only_and_service(pki: tuple[Path, Path]) -> None:
    cert, key = pki
    with (
        server(_module("jsonrpc", "server", "--port", 0, "--block-time", 0.3)) as eth,
        server(_module("jsonrpc", "server", "--port", 0, "--tls", "--cert", cert,
                       "--key", key)) as svc,
    ):  # fmt: skip
        procs = start_clients([
            _module("jsonrpc", "client", "--port", eth, "--mode", "eth", "--duration", 1.5,
                    "--interval", 0.3),
            _module("jsonrpc", "client", "--port", svc, "--mode", "service",
                    *_tls(cert, "api.example.org"), "--duration", 1.5, "--interval", 0.3),
        ])  # fmt: skip
        body = json.dumps([
            {"jsonrpc": "2.0", "id": 1, "method": "eth_getWork", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []},
        ]).encode()  # fmt: skip
        with socket.create_connection(("127.0.0.1", eth), timeout=5) as s:
            head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            s.sendall(
                head + b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            raw = b""
            while chunk := s.recv(4096):
                raw += chunk
        eth_sum, svc_sum = finish(procs)
    work, height = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert work["error"]["code"] == -32601  # not a mining node
    assert int(height["result"], 16) > 19_000_000
    methods = eth_sum["methods"]
    assert methods["eth_blockNumber"] >= 3 and methods["eth_getBlockByNumber"] >= 1
    assert not set(methods) & {"eth_getWork", "eth_submitWork", "eth_submitHashrate"}
    assert eth_sum["connections"] == 1 and eth_sum["errors"] == 0  # one keep-alive connection
    assert svc_sum["tls_version"] in ("TLSv1.2", "TLSv1.3") and svc_sum["methods"]["getStatus"] >= 3


def test_irc_client_idles_with_ping_pong_over_tls(pki: tuple[Path, Path]) -> None:
    cert, key = pki
    argv = _module("irc", "server", "--port", 0, "--tls", "--cert", cert, "--key", key,
                   "--ping", 0.3, "--chatter", 0.15)  # fmt: skip
    with server(argv) as port:
        (s,) = finish(start_clients([
            _module("irc", "client", "--port", port, *_tls(cert), "--duration", 1.5,
                    "--interval", 0.5)
        ]))  # fmt: skip
    assert s["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert s["numerics"]["001"] == 1 and s["numerics"]["376"] == 1  # welcome, end of MOTD
    assert s["numerics"]["366"] >= 1  # joined at least one channel
    assert s["pings_answered"] >= 3 and s["privmsgs_received"] >= 1
    assert s["sent"] >= 3 + s["pings_answered"]  # NICK, USER, JOIN, the PONGs, QUIT...


def test_clients_fail_with_a_clear_line_when_nobody_listens() -> None:
    port = _free_port()  # bound and closed again: nothing listens there
    argvs = [_module(m, sub, "--port", port, "--duration", 1) for m, sub in (
        ("websocket", "client"), ("linejson", "client"), ("resp", "client"), ("pg", "client"),
        ("mqtt", "client"), ("irc", "client"), ("jsonrpc", "client"), ("web", "browse"),
        ("web", "download"), ("web", "poll"),
    )]  # fmt: skip
    for argv, proc in zip(argvs, start_clients(argvs), strict=True):
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (argv, err)
        last = err.strip().splitlines()[-1]  # web clients log each failed request first
        assert "Traceback" not in err and ("refused" in last.lower() or "no request" in last), err


def test_mqtt_helpers() -> None:
    assert mqtt.encode_length(0) == b"\x00" and mqtt.encode_length(321) == b"\xc1\x02"
    assert mqtt.topic_matches("alerts/#", "alerts/system")
    assert mqtt.topic_matches("devices/+/cmd", "devices/s1/cmd")
    assert not mqtt.topic_matches("devices/+/cmd", "devices/s1/cfg")
    wire = mqtt.publish_packet("t/x", b"{}", qos=1, pid=7)
    assert wire[0] == 0x32 and mqtt.parse_publish(mqtt.Packet(3, 2, wire[2:])) == ("t/x", 7, b"{}")


# ---------------------------------------------------------------- scenarios end to end


class LoopbackLab:
    """The Lab protocol on loopback: each host is its own 127.0.N.x address, no namespaces."""

    hosts = ("sandbox", "outside", "outside2")

    def __init__(self, net: int, workdir: Path) -> None:
        self.addrs = {h: f"127.0.{net}.{10 * (i + 1)}" for i, h in enumerate(self.hosts)}
        self._workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def ip(self, host: str) -> str:
        return self.addrs[host]

    def spawn(self, host, argv, *, stdin=None, stdout=None, stderr=None, env=None, cwd=None):  # type: ignore[no-untyped-def]
        proc = subprocess.Popen(list(argv), stdin=stdin or subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr, cwd=cwd or self._workdir)  # fmt: skip
        self.procs.append(proc)
        return proc

    def wait_port(self, host: str, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
        try:
            wait_port(port, timeout, self.ip(host), proto)
        except RuntimeError as e:
            raise TimeoutError(str(e)) from None

    @property
    def workdir(self) -> Path:
        return self._workdir


@pytest.mark.slow
def test_every_benign_scenario_runs_on_loopback(
    root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each scenario, at a 2-second quick scale, with real programs on loopback addresses
    (privileged ports: root). The scenario itself checks every client's summary."""
    import random

    from flowdet.lab.scenarios import benign

    for program in ("nginx", "openssl"):
        if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
            pytest.skip(f"{program} is not installed (see APT_PKGS in the Makefile)")

    monkeypatch.setitem(benign.DURATION, "quick", 2.0)  # quick periods are < 1.6 s
    results: dict[str, object] = {}

    def run(i: int, scn: benign.Scenario) -> None:
        lab = LoopbackLab(100 + i, tmp_path / scn.name)
        lab.workdir.mkdir()
        try:
            results[scn.name] = scn.run(lab, random.Random(i), "quick")  # type: ignore[arg-type]
        except Exception as exc:
            results[scn.name] = exc
        finally:
            for p in lab.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    todo = list(enumerate(benign.SCENARIOS))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i, scn = todo.pop()
            run(i, scn)

    threads = [threading.Thread(target=worker) for _ in range(8)]  # mostly sleeping programs
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert {s.name for s in benign.SCENARIOS} == set(results)
    for name, got in results.items():
        assert not isinstance(got, Exception), f"{name}: {got!r}"
        assert got, name
        for e in got:  # type: ignore[attr-defined]
            assert e.label == "benign" and e.client == "sandbox" and e.proto in ("tcp", "udp")
    names = {s.name for s in benign.SCENARIOS if "quick" in s.profiles}
    assert names == {"benign-web-http", "benign-web-https", "benign-websocket-chat", "benign-dns"}
    ports = {(e.server_port, e.proto) for got in results.values() for e in got}  # type: ignore[attr-defined]
    assert {(80, "tcp"), (443, "tcp"), (53, "udp"), (123, "udp"), (8545, "tcp"), (3128, "tcp"),
            (6667, "tcp"), (6379, "tcp"), (1883, "tcp"), (5432, "tcp")} <= ports  # fmt: skip
