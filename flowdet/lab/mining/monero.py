"""Monero pools and xmrig-style miners: JSON-RPC `login`, `job` pushes, `submit`, `keepalived`.

Shapes follow xmrig 6 and the reference capture ../shared/corpus/mining-real/
xmr-eu1.nanopool.org.pcapng: a 76-byte hashing blob, a compact 32-bit target (or 64-bit for
high difficulty), algo, height and the RandomX seed hash; the login carries agent, rigid and
the list of algorithms the miner supports. Also the eth-proxy dialect, which shares the
`jsonrpc` style: `eth_submitLogin` / `eth_getWork` / `eth_submitWork` / `eth_submitHashrate`.
"""

from __future__ import annotations

import random
from typing import Any

from flowdet.lab.mining.common import rhex
from flowdet.lab.mining.engine import MinerSession, PoolSession
from flowdet.lab.mining.timing import Job, int_round

XMRIG_ALGOS = [
    "cn/1", "cn/2", "cn/r", "cn/fast", "cn/half", "cn/xao", "cn/rto", "cn/rwz", "cn/zls",
    "cn/double", "cn/ccx", "cn-lite/1", "cn-heavy/0", "cn-heavy/tube", "cn-heavy/xhv",
    "cn-pico", "cn-pico/tlo", "cn/upx2", "rx/0", "rx/wow", "rx/arq", "rx/graft", "rx/sfx",
    "rx/keva", "argon2/chukwa", "argon2/chukwav2", "argon2/ninja", "ghostrider",
]  # fmt: skip

MONERO_ADDRESS_CHARS = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def monero_address(rng: random.Random) -> str:
    """A 95-character base58 string shaped like a Monero primary address (not a real one)."""
    return "4" + rng.choice("456789AB") + "".join(rng.choices(MONERO_ADDRESS_CHARS, k=93))


def compact_target(difficulty: float) -> str:
    """xmrig's target: 0xFFFFFFFF / difficulty as 4 little-endian bytes (8 for huge ones)."""
    if difficulty > 0xFFFFFFFF // 2:
        return max(1, int(0xFFFFFFFFFFFFFFFF / difficulty)).to_bytes(8, "little").hex()
    return max(1, int(0xFFFFFFFF / difficulty)).to_bytes(4, "little").hex()


def target_difficulty(target: str) -> float:
    value = int.from_bytes(bytes.fromhex(target), "little")
    top = 0xFFFFFFFF if len(target) <= 8 else 0xFFFFFFFFFFFFFFFF
    return top / max(value, 1)


class MoneroPool(PoolSession):
    chain = "monero"
    unit = 1.0
    default_difficulty = 120_000.0
    rounder = staticmethod(int_round)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rpc_id = (
            rhex(self.rng, 16) if self.rng.random() < 0.5 else str(self.rng.randint(1, 10**6))
        )
        self.seed_hash = rhex(random.Random(self.ctx.cfg.seed), 32)
        self.algo = "rx/0"
        self.legacy = False  # a miner without algo negotiation gets 2017-era CryptoNight jobs

    def job_body(self, job: Job) -> dict[str, Any]:
        r = random.Random(job.seed)
        blob = "1010" + rhex(r, 6) + rhex(random.Random(job.block), 32) + "00000000" + rhex(r, 32)
        blob += rhex(r, 76 - len(blob) // 2)
        body: dict[str, Any] = {
            "blob": blob,
            "job_id": str(job.seq + 6773) if self.legacy else rhex(r, self.rng.choice((4, 12, 16))),
            "target": compact_target(self.vardiff.difficulty),
        }
        if not self.legacy:
            body.update(algo=self.algo, height=job.height, seed_hash=self.seed_hash)
        return body

    async def handle(self, msg: dict[str, Any]) -> None:
        method, mid = msg.get("method"), msg.get("id")
        if method == "login":
            self.start()
            params = msg.get("params") or {}
            self.legacy = not (isinstance(params, dict) and "algo" in params)
            job = self.job_body(self.ctx.board.current)
            if self.legacy:
                self.rpc_id = str(self.rng.randint(1, 999))
                result = {"id": self.rpc_id, "job": job, "status": "OK"}
                reply = {"id": mid, "jsonrpc": "2.0", "result": result, "error": None}
            else:
                extensions = ["algo", "nicehash", "connect", "tls", "keepalive"]
                result = {"id": self.rpc_id, "job": job, "extensions": extensions, "status": "OK"}
                reply = {"id": mid, "jsonrpc": "2.0", "error": None, "result": result}
            await self.conn.send(reply)
        elif method == "submit":
            if self.accept_share():
                reply = {"id": mid, "jsonrpc": "2.0", "error": None, "result": {"status": "OK"}}
            else:
                error = {"code": -1, "message": "Low difficulty share"}
                reply = {"id": mid, "jsonrpc": "2.0", "error": error}
            await self.conn.send(reply)
            await self.after_share()
        elif method == "keepalived":
            result = {"status": "KEEPALIVED"}
            await self.conn.send({"id": mid, "jsonrpc": "2.0", "error": None, "result": result})
        else:
            error = {"code": -1, "message": "Invalid method"}
            await self.conn.send({"id": mid, "jsonrpc": "2.0", "error": error})

    async def push_job(self, job: Job) -> None:
        body = self.job_body(job)
        await self.conn.send({"jsonrpc": "2.0", "method": "job", "params": body})

    async def push_difficulty(self, job: Job | None) -> None:
        # Monero pools carry the difficulty in every job's target: a retarget is a new job.
        await self.push_job(job or self.ctx.board.current)


class MoneroMiner(MinerSession):
    """xmrig 6 (`variant` "xmrig", the default) or an older miner without algo negotiation
    (`variant` "legacy", like the 2017 reference capture)."""

    unit = 1.0

    async def handshake(self) -> None:
        params: dict[str, Any] = {"login": self.cfg.user, "pass": self.cfg.password}
        if self.cfg.variant == "legacy":
            params["agent"] = self.cfg.agent or "xmr-stak-cpu/1.3.0-1.5.0"
            msg = {"method": "login", "params": params, "id": 1}
        else:
            params["agent"] = (
                self.cfg.agent or "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0"
            )
            params["algo"] = XMRIG_ALGOS
            params["rigid"] = self.rng.choice(("", "rig1", "worker-01", "srv2"))
            msg = {"id": 1, "jsonrpc": "2.0", "method": "login", "params": params}
        self.ids = iter(range(2, 1 << 31))
        res = await self.request(msg, "login")
        if res.get("error"):
            raise ConnectionError(f"pool refused login: {res['error']}")
        result = res["result"]
        self.rpc_id = result["id"]
        self.take_job(result["job"])

    def take_job(self, job: dict[str, Any]) -> None:
        self.new_difficulty(target_difficulty(job["target"]))
        self.new_job(job, True)

    async def on_push(self, msg: dict[str, Any]) -> None:
        if msg.get("method") == "job":
            self.take_job(msg["params"])

    async def submit(self) -> None:
        params = {
            "id": self.rpc_id,
            "job_id": self.job["job_id"],
            "nonce": rhex(self.rng, 4),
            "result": rhex(self.rng, 32),
        }
        if self.cfg.variant != "legacy":
            params["algo"] = self.job.get("algo", "rx/0")
        msg = {"id": self.next_id(), "jsonrpc": "2.0", "method": "submit", "params": params}
        await self.send_share(msg)

    async def keepalive_loop(self) -> None:
        if self.cfg.variant != "legacy":  # `keepalived` came with xmrig; older miners lack it
            await super().keepalive_loop()

    async def keepalive(self) -> None:
        msg = {
            "id": self.next_id(),
            "jsonrpc": "2.0",
            "method": "keepalived",
            "params": {"id": self.rpc_id},
        }
        await self.send(msg)


# ---------------------------------------------------------------- eth-proxy over TCP


def eth_target(difficulty: float) -> str:
    return f"0x{int(2**256 / max(difficulty, 1.0)):064x}"


class EthProxyPool(PoolSession):
    """An eth-proxy style pool (Claymore 'ESM 0', ethermine/nanopool proxy port): work is a
    [header, seed, target] triple, pushed as a result with id 0 on every new block."""

    chain = "ethereum"
    unit = 1.0
    default_difficulty = 4e9
    rounder = staticmethod(lambda x: float(f"{x:.3g}"))

    def work(self, job: Job) -> list[str]:
        seed = rhex(random.Random(self.ctx.cfg.seed), 32)
        header = rhex(random.Random(job.seed), 32)
        return ["0x" + header, "0x" + seed, eth_target(self.vardiff.difficulty)]

    async def handle(self, msg: dict[str, Any]) -> None:
        method, mid = msg.get("method"), msg.get("id")
        if method == "eth_submitLogin":
            self.start()
            await self.conn.send({"id": mid, "jsonrpc": "2.0", "result": True})
        elif method == "eth_getWork":
            work = self.work(self.ctx.board.current)
            await self.conn.send({"id": mid, "jsonrpc": "2.0", "result": work})
        elif method == "eth_submitWork":
            ok = self.accept_share()
            await self.conn.send({"id": mid, "jsonrpc": "2.0", "result": ok})
            await self.after_share()
        else:  # eth_submitHashrate and anything else
            await self.conn.send({"id": mid, "jsonrpc": "2.0", "result": True})

    async def push_job(self, job: Job) -> None:
        await self.conn.send({"id": 0, "jsonrpc": "2.0", "result": self.work(job)}, "work")

    async def push_difficulty(self, job: Job | None) -> None:
        await self.push_job(job or self.ctx.board.current)


class EthProxyMiner(MinerSession):
    """Claymore / PhoenixMiner in eth-proxy mode over a plain TCP connection."""

    unit = 1.0

    async def handshake(self) -> None:
        self.worker = self.cfg.user.rpartition(".")[2] or "rig1"
        login = {
            "worker": "eth1.0",
            "jsonrpc": "2.0",
            "params": [self.cfg.user, self.cfg.password],
            "id": self.next_id(),
            "method": "eth_submitLogin",
        }
        res = await self.request(login)
        if res.get("result") is not True:
            raise ConnectionError("pool refused eth_submitLogin")
        get = {
            "worker": "",
            "jsonrpc": "2.0",
            "params": [],
            "id": self.next_id(),
            "method": "eth_getWork",
        }
        res = await self.request(get)
        self.take_work(res["result"])
        self.hashrate_id = "0x" + rhex(self.rng, 32)

    def take_work(self, work: list[str]) -> None:
        self.new_difficulty(2**256 / max(int(work[2], 16), 1))
        self.new_job(work, True)

    async def on_push(self, msg: dict[str, Any]) -> None:
        if msg.get("id") == 0 and isinstance(msg.get("result"), list):
            self.take_work(msg["result"])

    async def submit(self) -> None:
        params = ["0x" + rhex(self.rng, 8), self.job[0], "0x" + rhex(self.rng, 32)]
        msg = {"id": self.next_id(), "jsonrpc": "2.0", "method": "eth_submitWork",
               "params": params, "worker": self.worker}  # fmt: skip
        await self.send_share(msg)

    async def keepalive_loop(self) -> None:
        """Claymore reports its hashrate on a timer, busy or not."""
        period = self.cfg.keepalive or 30.0
        while True:
            await self.cfg.clock.sleep(period * (1 + self.rng.uniform(-0.05, 0.05)))
            rate = int(self.cfg.hashrate * self.rng.uniform(0.97, 1.03))
            msg = {"id": self.next_id(), "jsonrpc": "2.0", "method": "eth_submitHashrate",
                   "params": [hex(rate), self.hashrate_id], "worker": self.worker}  # fmt: skip
            await self.send(msg)
            self.tally.keepalives += 1
