"""Mining over HTTP/1.1: Bitcoin getwork and getblocktemplate with long polling, and Ethereum
`eth_getWork` / `eth_submitWork` / `eth_submitHashrate` POSTs.

getwork-era miners (cgminer 2.x, bfgminer, poclbm) keep one keep-alive connection for work and
shares and hold a second one open on the pool's `X-Long-Polling` URL, which answers only when a
block is found; they announce `X-Mining-Extensions`. Ethereum HTTP miners poll the pool every
second, as in ../shared/corpus/mining-real/pool.eth.pp.ua.pcapng (nginx-fronted pool, chunked
responses). Both ends here parse real HTTP/1.1 framing (Content-Length and chunked bodies).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import random
import ssl
from typing import Any

from flowdet.errors import LabError
from flowdet.lab.mining.common import EventLog, close_writer, open_stream, rhex, set_keepalive
from flowdet.lab.mining.engine import MinerConfig, PoolContext, Tally, note_tls, run_server
from flowdet.lab.mining.monero import eth_target
from flowdet.lab.mining.timing import Job, ShareClock, Vardiff

HASH1 = "00000000000000000000000000000000000000000000000000000000000000000000008000000000000000000000000000000000000000000000000000010000"  # noqa: E501
DIFF1_TARGET = 0xFFFF << 208
MAX_BODY = 1 << 22
# The SHA-256 padding of an 80-byte header that getwork's 128-byte `data` carries.
SHA256_PADDING = "00000080" + "00" * 40 + "80020000"
COINBASE_INPUT = "01000000" + "01" + "00" * 32 + "ffffffff"


async def read_message(
    reader: asyncio.StreamReader,
) -> tuple[str, dict[str, str], bytes, int] | None:
    """One HTTP/1.1 request or response: (start line, lower-cased headers, body, wire size)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise LabError("HTTP header too long") from exc
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    size = len(head)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            n = int(size_line.split(b";")[0].strip() or b"0", 16)
            chunk = await reader.readexactly(n + 2)
            size += len(size_line) + len(chunk)
            if n == 0:
                break
            body += chunk[:-2]
            if len(body) > MAX_BODY:
                raise LabError("HTTP body too large")
    else:
        n = int(headers.get("content-length", "0") or 0)
        if n > MAX_BODY:
            raise LabError("HTTP body too large")
        body = bytearray(await reader.readexactly(n))
        size += n
    return lines[0], headers, bytes(body), size


def render(start: str, headers: list[tuple[str, str]], body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        headers = [*headers, ("Transfer-Encoding", "chunked")]
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        headers = [*headers, ("Content-Length", str(len(body)))]
        payload = body
    head = start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + payload


def rpc_kind(body: bytes) -> str:
    try:
        msg = json.loads(body)
    except ValueError:
        return "http"
    if isinstance(msg, dict):
        if isinstance(msg.get("method"), str):
            return str(msg["method"])
        if "result" in msg:
            return "result"
    return "http"


# ---------------------------------------------------------------- work rendering


def getwork_result(job: Job, target: int) -> dict[str, Any]:
    r = random.Random(job.seed)
    prev = rhex(random.Random(job.block * 1_000_003 + 17), 32)
    header = "20000000" + prev + rhex(r, 32) + f"{job.ntime:08x}" + "1703" + rhex(r, 2)
    data = header + "00000000" + SHA256_PADDING
    le_target = target.to_bytes(32, "little").hex()
    return {"midstate": rhex(r, 32), "data": data, "hash1": HASH1, "target": le_target}


def gbt_result(job: Job, target: int, longpollid: str) -> dict[str, Any]:
    r = random.Random(job.seed)
    txs = []
    for _ in range(r.randint(3, 25)):
        data = rhex(r, r.randint(190, 520))
        txs.append(
            {"data": data, "txid": rhex(r, 32), "hash": rhex(r, 32), "depends": [],
             "fee": r.randint(500, 60_000), "sigops": r.choice((1, 4, 8)), "weight": len(data) * 2}
        )  # fmt: skip
    return {
        "capabilities": ["proposal"],
        "version": 536870912,
        "rules": ["csv", "!segwit", "taproot"],
        "previousblockhash": rhex(random.Random(job.block * 1_000_003 + 17), 32),
        "transactions": txs,
        "coinbaseaux": {"flags": ""},
        "coinbasevalue": 312_500_000 + sum(t["fee"] for t in txs),
        "longpollid": longpollid,
        "target": f"{target:064x}",
        "mintime": job.ntime - 3600,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 80000,
        "sizelimit": 4000000,
        "weightlimit": 4000000,
        "curtime": job.ntime,
        "bits": "1703" + rhex(random.Random(job.block), 2),
        "height": job.height,
    }


# ---------------------------------------------------------------- pool


class HttpPool:
    """One pool process: getwork/GBT (Bitcoin) or eth-over-HTTP, chosen by the dialect."""

    def __init__(self, ctx: PoolContext, dialect: str) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.dialect = dialect
        self.rng = random.Random(ctx.cfg.seed ^ 0x477)
        self.server = self.rng.choice(("Eloipool", "ghash.io", "Simplecoin", "nginx"))
        # Pools of the stratum transition advertised it to getwork miners.
        self.stratum_hint = self.rng.random() < 0.5
        self.vardiff = Vardiff(
            difficulty=self.cfg.start_difficulty or (1.0 if dialect == "getwork" else 4e9),
            target_interval=self.cfg.target_interval,
            enabled=False,  # getwork pools handed out fixed-difficulty work
        )
        self.new_block = asyncio.Event()

    def target(self) -> int:
        return int(DIFF1_TARGET / max(self.vardiff.difficulty, 1e-9))

    async def watch_blocks(self) -> None:
        q = self.ctx.board.subscribe()
        while True:
            job = await q.get()
            if job.clean:
                self.new_block.set()
                self.new_block = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = next(self.ctx.conn_ids)
        log = self.cfg.log
        try:
            while (req := await read_message(reader)) is not None:
                start, _, body, size = req
                log.record(conn_id, "rx", rpc_kind(body), size, path=start.split(" ")[1:2])
                msg = json.loads(body) if body else {}
                if self.dialect == "ethhttp":
                    out, kind = self.eth_reply(msg), "result"
                    data = render("HTTP/1.1 200 OK", self.eth_headers(), out, chunked=True)
                else:
                    out, kind = await self.btc_reply(start, msg)
                    data = render("HTTP/1.1 200 OK", self.btc_headers(), out)
                writer.write(data)
                await writer.drain()
                log.record(conn_id, "tx", kind, len(data))
        except (ConnectionError, ValueError, LabError, asyncio.IncompleteReadError) as exc:
            if not isinstance(exc, ConnectionError):
                body = render("HTTP/1.1 400 Bad Request", [("Connection", "close")], b"")
                writer.write(body)
        finally:
            await close_writer(writer)

    def eth_headers(self) -> list[tuple[str, str]]:
        return [
            ("Server", "nginx"),
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", "text/html"),
            ("Connection", "keep-alive"),
            ("Vary", "Accept-Encoding"),
        ]

    def btc_headers(self) -> list[tuple[str, str]]:
        return [
            ("Server", self.server),
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", "application/json"),
            ("X-Long-Polling", "/LP"),
            ("X-Roll-NTime", "expire=120"),
        ] + ([("X-Stratum", f"stratum+tcp://{self.cfg.name}:3333")] if self.stratum_hint else [])

    def eth_reply(self, msg: dict[str, Any]) -> bytes:
        method = msg.get("method")
        mid = msg.get("id", 1)
        if method == "eth_getWork":
            job = self.ctx.board.current
            seed = rhex(random.Random(self.cfg.seed), 32)
            work = ["0x" + rhex(random.Random(job.seed), 32), "0x" + seed,
                    eth_target(self.vardiff.difficulty)]  # fmt: skip
            out: dict[str, Any] = {"id": mid, "jsonrpc": "2.0", "result": work}
        else:
            ok = method != "eth_submitWork" or self.rng.random() >= self.cfg.reject_rate
            out = {"id": mid if method != "eth_submitHashrate" else 73, "jsonrpc": "2.0",
                   "result": ok}  # fmt: skip
        return json.dumps(out, separators=(",", ":")).encode()

    async def btc_reply(self, start: str, msg: dict[str, Any]) -> tuple[bytes, str]:
        method, mid, params = msg.get("method"), msg.get("id", 0), msg.get("params") or []
        longpoll = " /LP" in start or (
            method == "getblocktemplate" and params and "longpollid" in params[0]
        )
        if longpoll:
            await self.new_block.wait()
        job = self.ctx.board.current
        kind = "result"
        if method == "getwork" and not params:
            result: Any = getwork_result(job, self.target())
            kind = "work"
        elif method == "getblocktemplate":
            result = gbt_result(job, self.target(), f"{job.block:08x}{job.seq:08x}")
            kind = "template"
        elif method in ("getwork", "submitblock"):
            ok = self.rng.random() >= self.cfg.reject_rate
            result = ok if method == "getwork" else (None if ok else "rejected")
        else:
            result = None
        out = {"result": result, "error": None, "id": mid}
        return json.dumps(out, separators=(", ", ": ")).encode(), kind


async def serve(ctx: PoolContext, dialect: Any, bind: str, port: int, tls: ssl.SSLContext | None):
    pool = HttpPool(ctx, dialect.name)
    watcher = asyncio.create_task(pool.watch_blocks())
    try:
        await run_server(ctx, pool.handle, bind, port, tls)
    finally:
        watcher.cancel()


# ---------------------------------------------------------------- miner


class HttpClient:
    """One keep-alive HTTP connection that logs each request and response."""

    def __init__(
        self, cfg: MinerConfig, conn_id: int, tally: Tally, host_header: str, path: str
    ) -> None:
        self.cfg = cfg
        self.conn_id = conn_id
        self.tally = tally
        self.host_header = host_header
        self.path = path
        self.lock = asyncio.Lock()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await open_stream(
            self.cfg.host, self.cfg.port, tls=self.cfg.tls, sni=self.cfg.sni, socks=self.cfg.socks
        )
        if self.cfg.tcp_keepalive:
            set_keepalive(self.writer, self.cfg.clock.real(self.cfg.tcp_keepalive))
        note_tls(self.writer, self.tally)

    async def close(self) -> None:
        if self.writer is not None:
            await close_writer(self.writer)

    async def post(
        self, body: dict[str, Any], headers: list[tuple[str, str]], path: str | None = None
    ) -> dict[str, Any]:
        log: EventLog = self.cfg.log
        async with self.lock:
            if self.writer is None or self.reader is None:
                await self.open()
            assert self.writer is not None and self.reader is not None
            raw = json.dumps(body, separators=(",", ":") if self.cfg.compact else (", ", ": "))
            data = render(f"POST {path or self.path} HTTP/1.1", headers, raw.encode())
            self.writer.write(data)
            await self.writer.drain()
            self.tally.bytes_sent += len(data)
            log.record(self.conn_id, "tx", str(body.get("method")), len(data))
            resp = await read_message(self.reader)
            if resp is None:
                raise ConnectionError("pool closed the HTTP connection")
            _, _, rbody, size = resp
            self.tally.bytes_received += size
            log.record(self.conn_id, "rx", rpc_kind(rbody), size)
            out = json.loads(rbody)
            if not isinstance(out, dict):
                raise LabError("pool answered with JSON that is not an object")
            return out


def connector(dialect: Any) -> Any:
    return _eth_session if dialect.name == "ethhttp" else _getwork_session


async def _eth_session(
    cfg: MinerConfig, rng: random.Random, shares: ShareClock, tally: Tally, conn_id: int
) -> None:
    """Poll eth_getWork and report the hashrate every second; eth_submitWork on each share."""
    addr, _, rig = cfg.user.partition(".")
    path = f"/?miner={max(1, int(cfg.hashrate / 1e6))}@{addr}@{rig or 'OptionalRigName'}"
    host = cfg.name
    headers = [("Host", host), ("Accept", "*/*"), ("Content-Type", "application/json"),
               ("charsets", "utf-8")]  # fmt: skip
    client = HttpClient(cfg, conn_id, tally, host, path)
    hashrate_id = "0x" + rhex(rng, 32)
    work: list[str] = []

    async def poll() -> None:
        # A timer, not a sleep after each round: the real miner polls every ~1.05 s whatever
        # the round trips take (and compressed time must not be stretched by them).
        period = cfg.keepalive or 1.0
        reported = 0
        while True:
            started = cfg.clock.now()
            rate = 0 if reported < 3 else int(cfg.hashrate * rng.uniform(0.95, 1.05))
            body = {"id": 1, "jsonrpc": "2.0", "method": "eth_submitHashrate",
                    "params": [hex(rate), hashrate_id]}  # fmt: skip
            await client.post(body, headers)
            reported += 1
            res = await client.post({"id": 1, "jsonrpc": "2.0", "method": "eth_getWork"}, headers)
            result = res.get("result")
            if isinstance(result, list) and len(result) == 3:
                if not work or result[0] != work[0]:
                    tally.jobs += 1
                    new_diff = 2**256 / max(int(result[2], 16), 1)
                    if shares.difficulty and new_diff != shares.difficulty:
                        tally.difficulty_changes += 1
                    shares.set_difficulty(new_diff)
                work[:] = result
            await cfg.clock.sleep(started + period * rng.uniform(1.0, 1.1) - cfg.clock.now())

    async def submit() -> None:
        while not work:
            await asyncio.sleep(cfg.clock.real(0.2))
        while True:
            await shares.wait_share(cfg.clock)
            tally.shares += 1
            tally.share_times.append(round(cfg.clock.now(), 4))
            body = {"id": 1, "jsonrpc": "2.0", "method": "eth_submitWork",
                    "params": ["0x" + rhex(rng, 8), work[0], "0x" + rhex(rng, 32)]}  # fmt: skip
            res = await client.post(body, headers)
            ok = res.get("result") is True
            tally.accepted += int(ok)
            tally.rejected += int(not ok)

    await _run_all(client, poll(), submit())


async def _getwork_session(
    cfg: MinerConfig, rng: random.Random, shares: ShareClock, tally: Tally, conn_id: int
) -> None:
    """getwork (variant "getwork", default) or getblocktemplate (variant "gbt") with a second
    connection held open for long polling."""
    gbt = cfg.variant == "gbt"
    host = f"{cfg.name}:{cfg.port}"
    auth = base64.b64encode(f"{cfg.user}:{cfg.password}".encode()).decode()
    agent = cfg.agent or "cgminer/2.7.2"
    headers = [
        ("Authorization", f"Basic {auth}"),
        ("Host", host),
        ("Accept", "*/*"),
        ("Accept-Encoding", "deflate, gzip"),
        ("Content-Type", "application/json"),
        ("User-Agent", agent.replace("/", " ", 1)),
        ("X-Mining-Extensions", "longpoll midstate rollntime submitold"),
    ]
    if agent.startswith("bfgminer"):
        headers.append(("X-Mining-Hashrate", str(int(cfg.hashrate))))
    main = HttpClient(cfg, conn_id, tally, host, "/")
    lp = HttpClient(cfg, conn_id * 1000, tally, host, "/LP")
    state: dict[str, Any] = {}
    got_work = asyncio.Event()
    ids = iter(range(1, 1 << 31))

    def request_body(longpollid: str | None = None) -> dict[str, Any]:
        if not gbt:
            return {"method": "getwork", "params": [], "id": next(ids)}
        caps: dict[str, Any] = {"capabilities": ["coinbasetxn", "workid", "coinbase/append",
                                                 "longpoll"]}  # fmt: skip
        if longpollid:
            caps["longpollid"] = longpollid
        return {"id": next(ids), "method": "getblocktemplate", "params": [caps]}

    def take(res: dict[str, Any]) -> None:
        result = res.get("result")
        if not isinstance(result, dict) or "target" not in result:
            raise LabError(f"pool sent no work: {str(res)[:80]}")
        raw = bytes.fromhex(result["target"])
        target = int.from_bytes(raw, "big" if gbt else "little")
        state["work"] = result
        state["lpid"] = result.get("longpollid")
        tally.jobs += 1
        shares.set_difficulty(DIFF1_TARGET / max(target, 1))
        got_work.set()

    async def refresh() -> None:
        scantime = rng.choice((30.0, 60.0))
        while True:
            take(await main.post(request_body(), headers))
            await cfg.clock.sleep(scantime * rng.uniform(0.95, 1.05))

    async def longpoll() -> None:
        await got_work.wait()
        while True:
            body = request_body(state.get("lpid") if gbt else None)
            res = await lp.post(body, headers, "/" if gbt else "/LP")
            tally.clean_jobs += 1
            take(res)

    async def submit() -> None:
        await got_work.wait()
        while True:
            await shares.wait_share(cfg.clock)
            tally.shares += 1
            tally.share_times.append(round(cfg.clock.now(), 4))
            work = state["work"]
            if gbt:
                header = "20000000" + work["previousblockhash"] + rhex(rng, 32)
                header += f"{work['curtime']:08x}" + work["bits"] + rhex(rng, 4)
                coinbase = COINBASE_INPUT + rhex(rng, rng.randint(60, 90))
                block = header + "01" + coinbase
                params = [block, {"workid": state.get("lpid")}]
                body = {"id": next(ids), "method": "submitblock", "params": params}
            else:
                data = work["data"][:152] + rhex(rng, 4) + work["data"][160:]
                body = {"method": "getwork", "params": [data], "id": next(ids)}
            res = await main.post(body, headers)
            ok = res.get("error") is None and res.get("result") in (True, None)
            tally.accepted += int(ok)
            tally.rejected += int(not ok)

    try:
        await _run_all(main, refresh(), longpoll(), submit())
    finally:
        await lp.close()


async def _run_all(client: HttpClient, *coros: Any) -> None:
    """Run a session's loops until one fails or the caller cancels, then close."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when="FIRST_EXCEPTION")
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
