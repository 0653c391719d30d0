"""JSON-RPC 2.0 over HTTP that is not mining: an Ethereum node's read API and a service API.

Mining over HTTP (getwork, `eth_getWork`/`eth_submitWork`/`eth_submitHashrate`) is a
keep-alive connection polling a JSON-RPC endpoint every few seconds. So is a wallet, a block
explorer's indexer or a dapp backend watching a node with `eth_blockNumber`, `eth_getBalance`
and `eth_getBlockByNumber` on port 8545, and so is an internal service polled with
`getStatus`/`listItems`. Those are the hard negatives here. For label clarity the client never
calls a work method, and the server answers them with -32601 (method not found), as a node
without mining enabled would.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import random
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from flowdet.lab.benign.common import (
    Tally,
    client_context,
    client_parser,
    dispatch,
    emit,
    jittered,
    server_parser,
    server_tls,
)

WORK_METHODS = frozenset({"eth_getWork", "eth_submitWork", "eth_submitHashrate", "getwork",
                          "getblocktemplate", "submitblock"})  # fmt: skip
ETH_READ = ("eth_blockNumber", "eth_getBalance", "eth_getBlockByNumber", "eth_chainId",
            "net_version", "eth_gasPrice", "eth_call", "eth_getTransactionCount",
            "eth_syncing", "web3_clientVersion", "eth_feeHistory")  # fmt: skip
SERVICE = ("getStatus", "listItems", "getItem", "health")


class Chain:
    """A node's view of a chain that grows a block every `block_time` seconds."""

    def __init__(self, seed: int, block_time: float) -> None:
        self.rng = random.Random(seed)
        self.start, self.block_time = time.monotonic(), block_time
        self.base = 19_000_000 + self.rng.randint(0, 999_999)
        self.lock = threading.Lock()

    def height(self) -> int:
        return self.base + int((time.monotonic() - self.start) / self.block_time)

    def h(self, n: int) -> str:
        with self.lock:
            return "0x" + self.rng.randbytes(n).hex()

    def call(self, method: str, params: list[Any]) -> Any:
        if method == "eth_blockNumber":
            return hex(self.height())
        if method == "eth_chainId":
            return "0x1"
        if method == "net_version":
            return "1"
        if method == "web3_clientVersion":
            return "Geth/v1.13.15-stable/linux-amd64/go1.22.2"
        if method == "eth_syncing":
            return False
        if method == "eth_gasPrice":
            return hex(self.rng.randint(5, 80) * 10**9)
        if method == "eth_getBalance":
            return hex(self.rng.randint(0, 10**21))
        if method == "eth_getTransactionCount":
            return hex(self.rng.randint(0, 3000))
        if method == "eth_call":
            return "0x" + self.rng.randbytes(32).hex()
        if method == "eth_feeHistory":
            return {"oldestBlock": hex(self.height() - 4),
                    "baseFeePerGas": [hex(self.rng.randint(5, 60) * 10**9) for _ in range(5)],
                    "gasUsedRatio": [round(self.rng.random(), 3) for _ in range(4)]}  # fmt: skip
        if method == "eth_getBlockByNumber":
            tag = params[0] if params else "latest"
            n = self.height() if tag == "latest" else int(tag, 16)
            txs = [self.h(32) for _ in range(self.rng.randint(50, 250))]
            return {
                "number": hex(n), "hash": self.h(32), "parentHash": self.h(32),
                "miner": self.h(20), "stateRoot": self.h(32), "gasLimit": hex(30_000_000),
                "gasUsed": hex(self.rng.randint(8_000_000, 29_000_000)),
                "timestamp": hex(int(time.time())), "size": hex(self.rng.randint(20_000, 150_000)),
                "baseFeePerGas": hex(self.rng.randint(5, 60) * 10**9),
                "transactions": txs if not (len(params) > 1 and params[1]) else [],
            }  # fmt: skip
        raise LookupError(method)

    def service(self, method: str, params: Any) -> Any:
        if method in ("getStatus", "health"):
            return {"status": "ok", "version": "3.2.0", "queue": self.rng.randint(0, 40),
                    "uptime": int(time.monotonic() - self.start)}  # fmt: skip
        if method == "listItems":
            page = (params or {}).get("page", 1) if isinstance(params, dict) else 1
            return {"page": page, "items": [{"id": self.rng.randint(1, 10**6),
                    "name": f"item-{self.rng.randint(1, 999)}", "price": self.rng.randint(1, 500)}
                    for _ in range(self.rng.randint(5, 25))]}  # fmt: skip
        if method == "getItem":
            return {"id": (params or {}).get("id") if isinstance(params, dict) else None,
                    "stock": self.rng.randint(0, 99)}  # fmt: skip
        raise LookupError(method)


def _dispatch(chain: Chain, req: Any) -> dict[str, Any] | None:
    if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or "method" not in req:
        return {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32600, "message": "Invalid Request"},
        }
    rid, method, params = req.get("id"), str(req["method"]), req.get("params") or []
    try:
        if method in WORK_METHODS:
            raise LookupError(method)  # not a mining node
        result = chain.call(method, params) if method.startswith(("eth_", "net_", "web3_")) else (
            chain.service(method, params))  # fmt: skip
    except LookupError:
        err = f"the method {method} does not exist/is not available"
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": err}}
    except (ValueError, TypeError, IndexError) as exc:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": str(exc)}}
    return None if rid is None else {"jsonrpc": "2.0", "id": rid, "result": result}


def make_handler(chain: Chain) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as geth's HTTP server
        server_version = "Geth"
        disable_nagle_algorithm = True  # Go's net/http sets TCP_NODELAY too
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            try:
                req = json.loads(self.rfile.read(n))
                if isinstance(req, list):
                    body: Any = [r for r in (_dispatch(chain, x) for x in req) if r is not None]
                else:
                    body = _dispatch(chain, req)
            except ValueError:
                body = {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": -32700, "message": "parse error"},
                }
            data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def serve(argv: Sequence[str]) -> int:
    p = server_parser("JSON-RPC 2.0 over HTTP: Ethereum read API + service", 8545)
    p.add_argument("--block-time", type=float, default=12.0)
    args = p.parse_args(argv)
    chain = Chain(args.seed, args.block_time)
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer((args.bind, args.port), make_handler(chain))
    srv.daemon_threads = True
    tls = server_tls(args)
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    host, port = srv.server_address[:2]
    emit({"listening": [host, port], "kind": "jsonrpc", "tls": args.tls})
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    with contextlib.suppress(KeyboardInterrupt):
        srv.serve_forever()
    srv.server_close()
    return 0


class _RpcClient:
    def __init__(self, args: argparse.Namespace, tally: Tally) -> None:
        self.args, self.tally, self.t0 = args, tally, time.monotonic()
        self.conn: http.client.HTTPConnection | None = None
        self.next_id = 1
        self.ctx = client_context(args.cafile, ("http/1.1",)) if args.tls else None

    def _connect(self) -> http.client.HTTPConnection:
        a = self.args
        if self.ctx is not None:
            sock = socket.create_connection((a.server, a.port), 10)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                a.sni or a.server, a.port, context=self.ctx, timeout=10
            )
            conn.sock = self.ctx.wrap_socket(sock, server_hostname=a.sni or a.server)
            assert isinstance(conn.sock, ssl.SSLSocket)
            self.tally.extra["tls_version"] = conn.sock.version()
        else:
            conn = http.client.HTTPConnection(a.server, a.port, timeout=10)
            conn.connect()
        self.tally.connections += 1
        return conn

    def call(self, *calls: tuple[str, list[Any] | dict[str, Any]]) -> list[dict[str, Any]]:
        reqs = []
        for method, params in calls:
            assert method not in WORK_METHODS, "benign traffic must never ask for work"
            reqs.append({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
            self.next_id += 1
        body = json.dumps(reqs if len(reqs) > 1 else reqs[0], separators=(",", ":")).encode()
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = self._connect()
                headers = {"Content-Type": "application/json", "User-Agent": "web3.py/6.15.1"}
                self.conn.request("POST", "/", body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt:
                    raise
        self.tally.record_send(self.t0, len(body))
        self.tally.bytes_received += len(data)
        out = json.loads(data)
        out = out if isinstance(out, list) else [out]
        for r in out:
            self.tally.received += 1
            if "error" in r:
                self.tally.errors += 1
        for method, _ in calls:
            self.tally.extra["methods"][method] = self.tally.extra["methods"].get(method, 0) + 1
        return out


def run_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    tally = Tally(extra={"methods": {}, "mode": args.mode})
    rpc = _RpcClient(args, tally)
    deadline = rpc.t0 + args.duration
    addrs = ["0x" + rng.randbytes(20).hex() for _ in range(rng.randint(2, 6))]
    last_block = -1
    if args.mode == "eth":
        rpc.call(("web3_clientVersion", []), ("eth_chainId", []), ("net_version", []))
    while True:
        if args.mode == "eth":
            (res,) = rpc.call(("eth_blockNumber", []))
            height = int(res["result"], 16)
            if height != last_block:
                rpc.call(("eth_getBlockByNumber", [hex(height), False]))
                last_block = height
            if rng.random() < 0.3:
                rpc.call(*[("eth_getBalance", [a, "latest"]) for a in addrs])
            if rng.random() < 0.15:
                rpc.call(("eth_gasPrice", []), ("eth_feeHistory", [4, "latest", [25, 75]]))
            if rng.random() < 0.1:
                rpc.call(("eth_call", [{"to": rng.choice(addrs), "data": "0x70a08231" + "00" * 32},
                                       "latest"]))  # fmt: skip
        else:
            rpc.call(("getStatus", []))
            if rng.random() < 0.3:
                rpc.call(("listItems", {"page": rng.randint(1, 20), "limit": 25}))
            if rng.random() < 0.2:
                rpc.call(("getItem", {"id": rng.randint(1, 10**6)}))
        wait = jittered(rng, args.interval, 0.2)
        if time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
    if rpc.conn is not None:
        rpc.conn.close()
    emit(tally.summary("jsonrpc"))


def client(argv: Sequence[str]) -> int:
    p = client_parser("JSON-RPC over HTTP poller (Ethereum read API or service API)", 8545)
    p.add_argument("--mode", choices=("eth", "service"), default="eth")
    p.add_argument("--interval", type=float, default=4.0)
    args = p.parse_args(argv)
    try:
        run_client(args)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        sys.stderr.write(f"jsonrpc client: {type(exc).__name__}: {exc}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("jsonrpc", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
