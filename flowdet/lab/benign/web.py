"""Web traffic against a real nginx: page browsing, large downloads and periodic polling.

The server side is Debian's nginx (HTTP/1.1 on one port, TLS 1.2/1.3 with HTTP/2 offered on
another, keep-alive, gzip, stub_status), fed a generated site: pages that reference CSS, JS,
images and fonts of realistic sizes, a JSON status endpoint and large binary files. The
clients are what a browser, a download tool and a monitoring scraper do to such a server:

- `browse`   pages, then their assets over a small pool of keep-alive connections, with
             think time between pages and conditional (If-Modified-Since) revisits, directly
             or through an HTTP CONNECT proxy (`--proxy`, see `proxy.py`);
- `download` tens of MB over HTTP/1.1 or TLS, with Python's http.client or curl(1);
- `poll`     a scraper hitting `/nginx_status` and `/api/status.json` every N seconds on one
             keep-alive TLS connection: periodic, small, long-lived, like a miner's keepalive.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

from flowdet.lab.benign.common import (
    LOOPBACK,
    Tally,
    client_context,
    client_parser,
    emit,
    jittered,
    log,
)

UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
LOREM = [
    "network",
    "flow",
    "capture",
    "packet",
    "analyst",
    "alert",
    "session",
    "server",
    "client",
    "request",
    "response",
    "cache",
    "deploy",
    "service",
    "metrics",
    "dashboard",
    "latency",
    "throughput",
    "window",
    "segment",
    "handshake",
    "certificate",
]
ASSET_RE = re.compile(rb'(?:src|href)="(/[^"]+)"')


# ---------------------------------------------------------------- site and server


def _text(rng: random.Random, nbytes: int) -> bytes:
    words: list[str] = []
    size = 0
    while size < nbytes:
        w = rng.choice(LOREM)
        words.append(w)
        size += len(w) + 1
    return " ".join(words).encode()[:nbytes]


def make_site(root: Path, seed: int, pages: int = 12, big_mb: Sequence[int] = (16, 48)) -> None:
    """Write the site nginx serves. Text assets are compressible, media is not, like the web."""
    rng = random.Random(seed)
    (root / "assets").mkdir(parents=True, exist_ok=True)
    (root / "dl").mkdir(exist_ok=True)
    (root / "api").mkdir(exist_ok=True)
    assets: list[str] = []
    kinds = (("css", 2_000, 60_000), ("js", 5_000, 400_000), ("jpg", 8_000, 350_000),
             ("png", 500, 40_000), ("woff2", 15_000, 60_000))  # fmt: skip
    for i in range(40):
        ext, lo, hi = kinds[i % len(kinds)]
        name = f"/assets/{ext}-{i:02d}.{ext}"
        size = int(rng.uniform(lo, hi))
        body = _text(rng, size) if ext in ("css", "js") else os.urandom(size)
        (root / name.lstrip("/")).write_bytes(body)
        assets.append(name)
    for p in range(pages):
        refs = rng.sample(assets, rng.randint(4, 18))
        tags = []
        for ref in refs:
            if ref.endswith(".css"):
                tags.append(f'<link rel="stylesheet" href="{ref}">')
            elif ref.endswith(".js"):
                tags.append(f'<script src="{ref}"></script>')
            elif ref.endswith(".woff2"):
                tags.append(f'<link rel="preload" as="font" href="{ref}">')
            else:
                tags.append(f'<img src="{ref}" alt="">')
        links = "".join(
            f'<a href="/page{q}.html">page {q}</a> ' for q in rng.sample(range(pages), 4)
        )
        html = (
            f"<!doctype html><html><head><title>page {p}</title>{''.join(tags[:3])}</head><body>"
            f"<p>{_text(rng, int(rng.uniform(2_000, 40_000))).decode()}</p>{''.join(tags[3:])}"
            f"<nav>{links}</nav></body></html>"
        )
        (root / f"page{p}.html").write_text(html)
    (root / "index.html").write_text((root / "page0.html").read_text())
    (root / "api" / "status.json").write_text(
        json.dumps({"status": "ok", "version": "2.14.1", "uptime": 86400, "queue": 3})
    )
    for mb in big_mb:
        path = root / "dl" / f"release-{mb}M.tar.gz"
        if not path.exists() or path.stat().st_size != mb << 20:
            with path.open("wb") as f:
                for _ in range(mb):
                    f.write(os.urandom(1 << 20))


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {run}/access.log;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    gzip on;
    gzip_types text/css application/javascript application/json;
    server_tokens off;
    {http_server}
    {https_server}
}}
"""

SERVER_BLOCK = """server {{
        listen {listen};
        server_name {names};
        root {root};
        {tls}
        location / {{ try_files $uri $uri/ =404; }}
        location = /nginx_status {{ stub_status; }}
        location /api/ {{ add_header Cache-Control no-store; }}
    }}"""


def nginx_config(
    root: Path, run: Path, bind: str, http_port: int, https_port: int,
    cert: Path | None, key: Path | None, names: str,
) -> str:  # fmt: skip
    host = f"[{bind}]" if ":" in bind else bind
    http_server = (
        SERVER_BLOCK.format(listen=f"{host}:{http_port}", names=names, root=root, tls="")
        if http_port
        else ""
    )
    https_server = ""
    if https_port:
        if cert is None or key is None:
            raise SystemExit("an HTTPS port needs --cert and --key")
        tls = (
            f"ssl_certificate {cert}; ssl_certificate_key {key}; "
            "ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:tls:1m;"
        )
        https_server = SERVER_BLOCK.format(
            listen=f"{host}:{https_port} ssl http2", names=names, root=root, tls=tls
        )
    return NGINX_CONF.format(
        user="user root;" if os.geteuid() == 0 else "",
        run=run, http_server=http_server, https_server=https_server,
    )  # fmt: skip


def serve(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(description="generate a site and exec nginx on it")
    p.add_argument("--root", type=Path, required=True, help="site directory (made if missing)")
    p.add_argument("--bind", default=LOOPBACK)
    p.add_argument("--http-port", type=int, default=80, help="0 disables plain HTTP")
    p.add_argument("--https-port", type=int, default=443, help="0 disables TLS")
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--names", default="www.example.com static.example.net")
    p.add_argument("--big-mb", default="16,48", help="sizes of the large files, MB")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        sys.stderr.write("web server: nginx is not installed (Debian package nginx-light)\n")
        return 2
    root = args.root.resolve()
    run = root.parent / f"{root.name}-nginx-{args.http_port}-{args.https_port}"
    run.mkdir(parents=True, exist_ok=True)
    make_site(root, args.seed, big_mb=[int(x) for x in args.big_mb.split(",") if x])
    conf = run / "nginx.conf"
    conf.write_text(
        nginx_config(root, run, args.bind, args.http_port, args.https_port,
                     args.cert and args.cert.resolve(), args.key and args.key.resolve(), args.names)
    )  # fmt: skip
    emit({"exec": nginx, "conf": str(conf), "kind": "web"})
    # exec, so the PID the lab holds is nginx's master and stopping it stops the workers.
    os.execv(nginx, [nginx, "-e", str(run / "error.log"), "-p", str(run), "-c", str(conf)])
    return 0  # not reached


# ---------------------------------------------------------------- clients


class _Conn(http.client.HTTPSConnection):
    """HTTPS to an address with the certificate name as SNI and Host, like a browser after DNS."""

    def __init__(
        self, addr: str, port: int, sni: str, ctx: ssl.SSLContext, proxy: str | None = None
    ) -> None:
        super().__init__(sni, port, context=ctx, timeout=15)
        self._addr = addr
        self._ctx = ctx
        self._proxy = proxy

    def connect(self) -> None:
        if self._proxy:  # a browser behind a forward proxy: CONNECT, then TLS end to end
            phost, _, pport = self._proxy.rpartition(":")
            sock = socket.create_connection((phost, int(pport)), self.timeout)
            sock.sendall(
                f"CONNECT {self.host}:{self.port} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"User-Agent: {UA}\r\nProxy-Connection: keep-alive\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise http.client.HTTPException("proxy closed the connection")
                head += chunk
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status + b" ":
                sock.close()
                raise http.client.HTTPException(f"proxy refused: {status.decode('latin-1')}")
        else:
            sock = socket.create_connection((self._addr, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


class Client:
    """A keep-alive connection factory plus the tally every request updates."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tally = Tally(extra={"status": {}, "tls_version": None, "alpn": None})
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.ctx = client_context(args.cafile, ("http/1.1",)) if args.tls else None

    def connect(self) -> http.client.HTTPConnection:
        if self.ctx is not None:
            conn: http.client.HTTPConnection = _Conn(
                self.args.server,
                self.args.port,
                self.args.sni or self.args.server,
                self.ctx,
                self.args.proxy,
            )
        else:
            conn = http.client.HTTPConnection(self.args.server, self.args.port, timeout=15)
        conn.connect()
        with self.lock:
            self.tally.connections += 1
            if isinstance(conn.sock, ssl.SSLSocket):
                self.tally.extra["tls_version"] = conn.sock.version()
                self.tally.extra["alpn"] = conn.sock.selected_alpn_protocol()
        return conn

    def get(
        self, conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        hdrs = {"User-Agent": UA, "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
                "Accept-Language": "en-US,en;q=0.9", **(headers or {})}  # fmt: skip
        conn.request("GET", path, headers=hdrs)
        host = conn.host if conn.port in (80, 443) else f"{conn.host}:{conn.port}"
        request_size = len(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n") + sum(
            len(f"{k}: {v}\r\n") for k, v in hdrs.items()
        )
        resp = conn.getresponse()
        size = 0
        chunks: list[bytes] = []
        while chunk := resp.read(1 << 16):
            size += len(chunk)
            if size <= 1 << 20:
                chunks.append(chunk)
        body = b"".join(chunks)
        if resp.getheader("Content-Encoding") == "gzip" and size <= 1 << 20:
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)  # only to read links from it
        with self.lock:
            self.tally.record_send(self.t0, request_size)
            self.tally.received += 1
            self.tally.bytes_received += size
            st = self.tally.extra["status"]
            st[str(resp.status)] = st.get(str(resp.status), 0) + 1
        return resp.status, body, resp


def _fetch(client: Client, box: list, path: str, cache: dict[str, str]) -> bytes:  # type: ignore[type-arg]
    """GET on the connection in `box`, reconnecting once if the server closed it while idle."""
    for attempt in range(2):
        try:
            if box[0] is None:
                box[0] = client.connect()
            headers = {"If-Modified-Since": cache[path]} if path in cache else {}
            status, body, resp = client.get(box[0], path, headers)
            if status == 200 and (lm := resp.getheader("Last-Modified")):
                cache[path] = lm
            return body
        except (http.client.HTTPException, OSError) as exc:
            if box[0] is not None:
                box[0].close()
            box[0] = None
            if attempt:
                with client.lock:
                    client.tally.errors += 1
                log(f"web: {path}: {exc!r}")
    return b""


def _fetch_all(client: Client, box: list, paths: list[str], cache: dict[str, str]) -> None:  # type: ignore[type-arg]
    for path in paths:
        _fetch(client, box, path, cache)


def browse(args: argparse.Namespace) -> Tally:
    rng = random.Random(args.seed)
    client = Client(args)
    deadline = client.t0 + args.duration
    pool: list[list] = [[None] for _ in range(args.connections)]  # type: ignore[type-arg]
    cache: dict[str, str] = {}
    page = "/index.html"
    visited: list[str] = []
    while True:
        # Pages are never cached (like dynamic HTML); assets are revalidated with a 304.
        body = _fetch(client, pool[0], page, {})
        refs = [m.decode() for m in ASSET_RE.findall(body)]
        assets = [r for r in refs if r.startswith("/assets/")]
        links = [r for r in refs if r.endswith(".html")]
        threads = []
        for i in range(len(pool)):
            share = assets[i :: len(pool)]
            if share:
                t = threading.Thread(target=_fetch_all, args=(client, pool[i], share, cache))
                t.start()
                threads.append(t)
        for t in threads:
            t.join()
        if rng.random() < 0.3:
            _fetch(client, pool[0], "/api/status.json", {})
        visited.append(page)
        think = jittered(rng, args.interval, 0.7)
        if time.monotonic() + think >= deadline:
            break
        time.sleep(think)
        page = rng.choice(links) if links else "/index.html"
    for box in pool:
        if box[0] is not None:
            box[0].close()
    client.tally.extra["pages"] = len(visited)
    emit(client.tally.summary("web-browse"))
    return client.tally


def download(args: argparse.Namespace) -> Tally:
    client = Client(args)
    rng = random.Random(args.seed)
    deadline = client.t0 + args.duration
    files = args.path
    n = 0
    while True:
        path = files[n % len(files)]
        if args.via == "curl" and shutil.which("curl"):
            _curl(client, path)
        else:
            conn = client.connect()
            try:
                client.get(conn, path)
            finally:
                conn.close()
        n += 1
        pause = jittered(rng, args.interval, 0.5)
        if n >= args.count or time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
    client.tally.extra["via"] = args.via
    emit(client.tally.summary("web-download"))
    return client.tally


def _curl(client: Client, path: str) -> None:
    a = client.args
    host = a.sni or a.server
    scheme = "https" if a.tls else "http"
    # A slow delay line shared by parallel downloads can take minutes: bounded, not short.
    cmd = ["curl", "-sS", "--http1.1", "-o", os.devnull, "--max-time", "900",
           "-w", "%{http_code} %{size_download} %{size_request}\n"]  # fmt: skip
    if a.tls:
        cmd += ["--cacert", str(a.cafile), "--resolve", f"{host}:{a.port}:{a.server}"]
        if a.tls_max:
            cmd += ["--tls-max", a.tls_max]
    cmd.append(f"{scheme}://{host}:{a.port}{path}")
    if a.rate:
        cmd += ["--limit-rate", a.rate]
    if a.proxy:
        cmd += ["--proxy", f"http://{a.proxy}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=960)
    parts = out.stdout.split()
    client.tally.connections += 1
    client.tally.record_send(client.t0, int(parts[2]) if len(parts) > 2 else 0)
    if out.returncode != 0 or len(parts) < 3:
        client.tally.errors += 1
        log(f"web download: curl failed ({out.returncode}): {out.stderr.strip()[:200]}")
        return
    client.tally.received += 1
    client.tally.bytes_received += int(parts[1])
    st = client.tally.extra["status"]
    st[parts[0]] = st.get(parts[0], 0) + 1


def poll(args: argparse.Namespace) -> Tally:
    """A monitoring scraper: same endpoints, fixed interval, one keep-alive connection."""
    rng = random.Random(args.seed)
    client = Client(args)
    deadline = client.t0 + args.duration
    box: list = [None]  # type: ignore[type-arg]
    while True:
        _fetch_all(client, box, list(args.path), {})
        wait = jittered(rng, args.interval, 0.05)
        if time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
    if box[0] is not None:
        box[0].close()
    emit(client.tally.summary("web-poll"))
    return client.tally


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["server"]:
        return serve(argv[1:])
    modes = {"browse": browse, "download": download, "poll": poll}
    if not argv or argv[0] not in modes:
        sys.stderr.write("usage: python -m flowdet.lab.benign.web {server,browse,download,poll}\n")
        return 2
    p = client_parser(f"web {argv[0]} client", 80)
    p.add_argument("--interval", type=float, default=8.0, help="mean seconds between pages/polls")
    p.add_argument("--connections", type=int, default=4, help="browse: keep-alive pool size")
    p.add_argument("--path", action="append", help="download/poll: paths (repeatable)")
    p.add_argument("--count", type=int, default=1, help="download: how many files")
    p.add_argument("--via", choices=("python", "curl"), default="python")
    p.add_argument("--rate", help="download via curl: --limit-rate, e.g. 20M")
    p.add_argument("--tls-max", help="download via curl: highest TLS version, e.g. 1.2")
    p.add_argument("--proxy", help="HOST:PORT of an HTTP CONNECT proxy (with --tls)")
    args = p.parse_args(argv[1:])
    if args.proxy and not args.tls:
        p.error("--proxy needs --tls (the proxy only CONNECTs to TLS ports)")
    if args.path is None:
        args.path = (
            ["/dl/release-16M.tar.gz"] if argv[0] == "download"
            else ["/nginx_status", "/api/status.json"]
        )  # fmt: skip
    try:
        tally = modes[argv[0]](args)
    except (OSError, http.client.HTTPException, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"web {argv[0]}: {type(exc).__name__}: {exc}\n")
        return 1
    if tally.received == 0:  # single failures are a browser's life; none at all is a failure
        sys.stderr.write(f"web {argv[0]}: no request succeeded ({tally.errors} failed)\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
