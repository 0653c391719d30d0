"""Stratum v1 and the dialects built on it: Bitcoin (cgminer/bmminer/sgminer), NiceHash's
EthereumStratum/1.0.0 and the ZCash Equihash variant.

Field widths follow the real protocol and the reference captures in
../shared/corpus/mining-real (cgminer.*, zec-eu.suprnova.cc): a Bitcoin `mining.notify` carries a
64-hex prevhash, a coinbase split into coinb1/coinb2 built like a real coinbase transaction
(height push, pool tag, outputs, witness commitment), a merkle branch of 32-byte hashes,
version/nbits/ntime and clean_jobs; a ZCash submit carries a 1347-byte (fd4005 + 1344) Equihash
solution. Every hash and solution is random bytes.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

from flowdet.lab.mining.common import rhex
from flowdet.lab.mining.engine import MinerSession, PoolSession
from flowdet.lab.mining.timing import Job, pow2_round

POOL_TAGS = (
    "/Mined by AntPool/",
    "/ViaBTC/Mined by rig7/",
    "/F2Pool/",
    "/slush/",
    "/BTC.com/",
    "/Foundry USA Pool #dropgold/",
    "/ckpool.org/",
    "/poolin.com/",
)


def _word_swapped_hash(r: random.Random, zero_bytes: int) -> str:
    """A block hash as stratum sends prevhash: 4-byte words of the little-endian hash, each
    byte-swapped, so the leading zeros of the displayed hash land at the end."""
    be = bytes(zero_bytes) + r.randbytes(32 - zero_bytes)
    le = be[::-1]
    return b"".join(le[i : i + 4][::-1] for i in range(0, 32, 4)).hex()


def _output(r: random.Random) -> str:
    value = r.randint(10**6, 7 * 10**8).to_bytes(8, "little").hex()
    script = r.choice(
        (
            "76a914" + rhex(r, 20) + "88ac",  # P2PKH
            "a914" + rhex(r, 20) + "87",  # P2SH
            "0014" + rhex(r, 20),  # P2WPKH
        )
    )
    return value + f"{len(script) // 2:02x}" + script


class BitcoinJobs:
    """Renders board jobs as Bitcoin `mining.notify` params in one pool's style."""

    def __init__(self, rng: random.Random, extranonce_bytes: int) -> None:
        self.rng = rng
        self.id_style = rng.choice(("hex", "counter", "time_seq"))
        self.tag = rng.choice(POOL_TAGS)
        self.merged_mining = rng.random() < 0.4
        self.extranonce_bytes = extranonce_bytes
        self.seq_base = rng.randint(0x100, 0xFFFF)

    def job_id(self, job: Job) -> str:
        n = self.seq_base + job.seq
        if self.id_style == "hex":
            return f"{n:x}"
        if self.id_style == "counter":
            return str(job.seq - 1)
        return f"{job.ntime}_{n}"

    def params(self, job: Job) -> list[Any]:
        r = random.Random(job.seed)
        prev = _word_swapped_hash(random.Random(job.block * 1_000_003 + 17), 10)
        script = "03" + job.height.to_bytes(3, "little").hex()
        script += "04" + rhex(r, 4)
        tag = self.tag.encode()
        script += f"{len(tag):02x}" + tag.hex()
        if self.merged_mining:
            script += "fabe6d6d" + rhex(r, 32) + "0100000000000000"
        suffix = rhex(r, r.randint(0, 8))
        script_len = len(script) // 2 + self.extranonce_bytes + len(suffix) // 2
        coinb1 = "01000000" + "01" + "00" * 32 + "ffffffff" + f"{script_len:02x}" + script
        outputs = [_output(r) for _ in range(r.randint(1, 2))]
        outputs.append("0000000000000000266a24aa21a9ed" + rhex(r, 32))  # witness commitment
        coinb2 = suffix + "ffffffff" + f"{len(outputs):02x}" + "".join(outputs) + "00000000"
        # Right after a new block some pools push a nearly empty template first.
        n_branch = r.randint(0, 2) if job.clean and r.random() < 0.15 else r.randint(10, 14)
        branch = [rhex(r, 32) for _ in range(n_branch)]
        nbits = "1703" + rhex(random.Random(job.block), 2)
        return [
            self.job_id(job),
            prev,
            coinb1,
            coinb2,
            branch,
            "20000000",
            nbits,
            f"{job.ntime:08x}",
            job.clean,
        ]


def reply(msg_id: Any, result: Any, error: Any = None) -> dict[str, Any]:
    """A stratum response: these dialects keep JSON-RPC 1.0's `error` member, null on success."""
    return {"id": msg_id, "result": result, "error": error}


async def answer_share(pool: PoolSession, msg_id: Any, rejection: list[Any]) -> None:
    """Ethereum and ZCash stratum answer a share with `result` true, or false and their one
    rejection error; either way vardiff counts it."""
    ok = pool.accept_share()
    await pool.conn.send(reply(msg_id, ok, None if ok else rejection))
    await pool.after_share()


class Stratum1Pool(PoolSession):
    """A Bitcoin stratum v1 pool (ckpool / slush / ViaBTC style)."""

    chain = "bitcoin"
    unit = 2.0**32
    default_difficulty = 8192.0
    rounder = staticmethod(pow2_round)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extranonce2_size = self.rng.choice((4, 4, 8))
        self.jobs = BitcoinJobs(random.Random(self.ctx.cfg.seed), 4 + self.extranonce2_size)
        self.session = rhex(self.rng, self.rng.choice((4, 8)))

    async def handle(self, msg: dict[str, Any]) -> None:
        method, mid = msg.get("method"), msg.get("id")
        if method == "mining.configure":
            result = {"version-rolling": True, "version-rolling.mask": "1fffe000"}
            await self.conn.send(reply(mid, result))
        elif method == "mining.subscribe":
            params = msg.get("params") or []
            resume = params[1] if len(params) > 1 and isinstance(params[1], str) else None
            if resume in self.ctx.sessions:  # a known session: same id, same extranonce1
                self.session = resume
            extranonce1 = self.ctx.sessions.setdefault(self.session, rhex(self.rng, 4))
            subs = [["mining.set_difficulty", self.session], ["mining.notify", self.session]]
            await self.conn.send(reply(mid, [subs, extranonce1, self.extranonce2_size]))
        elif method == "mining.authorize":
            await self.conn.send(reply(mid, True))
            self.start()
            await self.push_difficulty(self.ctx.board.current, clean=True)
        elif method == "mining.extranonce.subscribe" or method == "mining.suggest_difficulty":
            await self.conn.send(reply(mid, True))
        elif method == "mining.submit":
            if self.accept_share():
                await self.conn.send(reply(mid, True))
            else:
                error = self.rng.choice(([21, "Job not found", None], [23, "Low difficulty", None]))
                await self.conn.send(reply(mid, None, error))
            await self.after_share()
        else:
            await self.conn.send(reply(mid, None, [20, "Unknown method", None]))

    def notify(self, job: Job, clean: bool | None = None) -> dict[str, Any]:
        params = self.jobs.params(job)
        if clean is not None:
            params[-1] = clean
        return {"id": None, "method": "mining.notify", "params": params}

    async def push_job(self, job: Job) -> None:
        await self.conn.send(self.notify(job))

    async def push_difficulty(self, job: Job | None, clean: bool | None = None) -> None:
        diff = self.vardiff.difficulty
        msgs: list[tuple[dict[str, Any], str]] = [
            (
                {"id": None, "method": "mining.set_difficulty", "params": [_num(diff)]},
                "mining.set_difficulty",
            )
        ]
        if job is not None:
            msgs.append((self.notify(job, clean), "mining.notify"))
        await self.conn.send_many(msgs)


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


class Stratum1Miner(MinerSession):
    """cgminer / bmminer / sgminer speaking Bitcoin stratum v1."""

    unit = 2.0**32

    async def handshake(self) -> None:
        agent = self.cfg.agent or "cgminer/4.10.0"
        self.version_rolling = agent.startswith(("bmminer", "cgminer/4"))
        if self.version_rolling:
            cfg_params = [
                ["version-rolling"],
                {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2},
            ]
            await self.request(
                {"id": self.next_id(), "method": "mining.configure", "params": cfg_params}
            )
        # cgminer offers its previous session id on reconnect, to keep its extranonce1.
        params = [agent, self.tally.session] if self.tally.session else [agent]
        res = await self.request(
            {"id": self.next_id(), "method": "mining.subscribe", "params": params}
        )
        result = res.get("result") or [None, "00000000", 4]
        self.extranonce2_size = int(result[2]) if len(result) > 2 else 4
        with contextlib.suppress(IndexError, TypeError):
            self.tally.session = str(result[0][0][1])
        if self.rng.random() < 0.5:
            await self.send(
                {"id": self.next_id(), "method": "mining.extranonce.subscribe", "params": []}
            )
        if agent.startswith("bmminer") and self.rng.random() < 0.3:  # --suggest-diff
            suggest = self.rng.choice((512, 1024, 2048, 8192))
            await self.send(
                {"id": self.next_id(), "method": "mining.suggest_difficulty", "params": [suggest]}
            )
        auth = {
            "id": self.next_id(),
            "method": "mining.authorize",
            "params": [self.cfg.user, self.cfg.password],
        }
        await self.send(auth)

    async def on_push(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method == "mining.set_difficulty":
            self.new_difficulty(float(msg["params"][0]))
        elif method == "mining.notify":
            p = msg["params"]
            self.new_job({"id": p[0], "ntime": p[7]}, bool(p[8]))

    async def submit(self) -> None:
        mid = self.next_id()
        ntime = int(self.job["ntime"], 16) + self.rng.randint(0, 3)
        params = [
            self.cfg.user,
            self.job["id"],
            rhex(self.rng, self.extranonce2_size),
            f"{ntime:08x}",
            rhex(self.rng, 4),
        ]
        if self.version_rolling:
            params.append(f"{self.rng.getrandbits(29) & 0x1FFFE000:08x}")
        await self.send_share({"id": mid, "method": "mining.submit", "params": params})


class EthStratumPool(PoolSession):
    """NiceHash's EthereumStratum/1.0.0: extranonce in the subscribe result, a difficulty in
    units of 2**32 hashes, and notify carrying seedhash and headerhash.

    A miner that subscribes without "EthereumStratum/1.0.0" gets the older Ethereum stratum
    of ethermine-style pools (Claymore "-esm 1", seen in ../shared/corpus/mining-real/
    cgminer.s2): a Bitcoin-shaped subscribe result and a notify of job id and 0x-prefixed
    header, seed and target."""

    chain = "ethereum"
    unit = 2.0**32
    default_difficulty = 0.5
    rounder = staticmethod(lambda x: float(f"{x:.3g}"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extranonce = rhex(self.rng, self.rng.choice((2, 3)))
        self.seedhash = rhex(random.Random(self.ctx.cfg.seed), 32)
        self.nicehash = True

    async def handle(self, msg: dict[str, Any]) -> None:
        method, mid = msg.get("method"), msg.get("id")
        if method == "mining.subscribe":
            self.nicehash = "EthereumStratum/1.0.0" in (msg.get("params") or [])
            if self.nicehash:
                result: list[Any] = [
                    ["mining.notify", rhex(self.rng, 16), "EthereumStratum/1.0.0"],
                    self.extranonce,
                ]
            else:
                sid = "deadbeefcafebabe" + rhex(self.rng, 8)
                subs = [["mining.set_difficulty", sid], ["mining.notify", sid]]
                result = [subs, rhex(self.rng, 4), 4]
            await self.conn.send(reply(mid, result))
        elif method == "mining.authorize":
            await self.conn.send(reply(mid, True))
            self.start()
            await self.push_difficulty(self.ctx.board.current)
        elif method == "mining.submit":
            await answer_share(self, mid, [21, "Stale share", None])
        else:
            await self.conn.send(reply(mid, True))

    def notify(self, job: Job) -> dict[str, Any]:
        header = rhex(random.Random(job.seed), 32)
        if self.nicehash:
            params = [f"{job.seed & 0xFFFFFFFF:08x}", self.seedhash, header, job.clean]
        else:
            target = int(2**256 / (self.vardiff.difficulty * self.unit))
            params = [f"{job.seed & 0xFFFF:x}", "0x" + header, "0x" + self.seedhash,
                      f"0x{target:064x}", job.clean]  # fmt: skip
        return {"id": None, "method": "mining.notify", "params": params}

    async def push_job(self, job: Job) -> None:
        await self.conn.send(self.notify(job))

    async def push_difficulty(self, job: Job | None) -> None:
        if not self.nicehash:  # the target travels in every notify
            await self.push_job(job or self.ctx.board.current)
            return
        msgs: list[tuple[dict[str, Any], str]] = [
            (
                {
                    "id": None,
                    "method": "mining.set_difficulty",
                    "params": [self.vardiff.difficulty],
                },
                "mining.set_difficulty",
            )
        ]
        if job is not None:
            msgs.append((self.notify(job), "mining.notify"))
        await self.conn.send_many(msgs)


class EthStratumMiner(MinerSession):
    """ethminer / NiceHash miners in EthereumStratum/1.0.0 mode, or (`variant` "esm1") the
    older ethermine-style Ethereum stratum."""

    unit = 2.0**32

    async def handshake(self) -> None:
        agent = self.cfg.agent or "ethminer/0.19.0"
        self.nicehash = self.cfg.variant != "esm1"
        params = [agent, "EthereumStratum/1.0.0"] if self.nicehash else [agent]
        res = await self.request(
            {"id": self.next_id(), "method": "mining.subscribe", "params": params}
        )
        result = res.get("result") or [None, "0000"]
        self.extranonce = str(result[1]) if len(result) > 1 and self.nicehash else ""
        if self.nicehash:
            await self.send(
                {"id": self.next_id(), "method": "mining.extranonce.subscribe", "params": []}
            )
        await self.send(
            {
                "id": self.next_id(),
                "method": "mining.authorize",
                "params": [self.cfg.user, self.cfg.password],
            }
        )

    async def on_push(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method == "mining.set_difficulty":
            self.new_difficulty(float(msg["params"][0]))
        elif method == "mining.notify":
            p = msg["params"]
            if self.nicehash:
                self.new_job({"id": p[0]}, bool(p[3]))
            else:
                self.new_difficulty(2**256 / max(int(p[3], 16), 1) / self.unit)
                self.new_job({"id": p[0], "header": p[1]}, bool(p[4]))

    async def submit(self) -> None:
        if self.nicehash:
            params = [self.cfg.user, self.job["id"], rhex(self.rng, 8)[len(self.extranonce) :]]
        else:
            params = [self.cfg.user, self.job["id"], "0x" + rhex(self.rng, 8),
                      self.job["header"], "0x" + rhex(self.rng, 32)]  # fmt: skip
        await self.send_share({"id": self.next_id(), "method": "mining.submit", "params": params})


# Share difficulty 1 in this emulation: targets then start with "00" like real pools' (the
# reference capture's 003c3c... is difficulty ~4.25 on this scale).
ZCASH_POW_LIMIT = 2**248 - 1


class ZcashPool(PoolSession):
    """ZCash Equihash stratum (suprnova / flypool style): nonce1 in the subscribe result,
    `mining.set_target` with a 256-bit target instead of a difficulty."""

    chain = "zcash"
    unit = 256.0  # solutions per difficulty-1 share: ~300 Sol/s at difficulty 4 gives a share
    # every ~3.4 s, as in the reference capture
    default_difficulty = 4.0
    rounder = staticmethod(lambda x: float(f"{x:.3g}"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nonce1 = rhex(self.rng, self.rng.choice((4, 8, 16)))

    async def handle(self, msg: dict[str, Any]) -> None:
        method, mid = msg.get("method"), msg.get("id")
        if method == "mining.subscribe":
            await self.conn.send(reply(mid, [None, self.nonce1]))
        elif method == "mining.authorize":
            self.start()
            target = self.target_msg()
            notify = self.notify(self.ctx.board.current)
            await self.conn.send_many(
                [
                    (target, "mining.set_target"),
                    (notify, "mining.notify"),
                    (reply(mid, True), "result"),
                ]
            )
        elif method == "mining.submit":
            await answer_share(self, mid, [23, "Low difficulty share", None])
        else:
            await self.conn.send(reply(mid, True))

    def target_msg(self) -> dict[str, Any]:
        target = min(ZCASH_POW_LIMIT, int(ZCASH_POW_LIMIT / self.vardiff.difficulty))
        return {"id": None, "method": "mining.set_target", "params": [f"{target:064x}"]}

    def notify(self, job: Job) -> dict[str, Any]:
        r = random.Random(job.seed)
        prev = _word_swapped_hash(random.Random(job.block * 7 + 3), 4)
        params = [
            f"{(job.seq + 0x39F0) & 0xFFFF:x}",
            "04000000",
            prev,
            rhex(r, 32),
            "00" * 32,
            job.ntime.to_bytes(4, "little").hex(),
            "1c" + rhex(random.Random(job.block), 3),
            job.clean,
        ]
        return {"id": None, "method": "mining.notify", "params": params}

    async def push_job(self, job: Job) -> None:
        await self.conn.send(self.notify(job))

    async def push_difficulty(self, job: Job | None) -> None:
        await self.conn.send(self.target_msg())
        if job is not None:
            await self.conn.send(self.notify(job))


class ZcashMiner(MinerSession):
    """nheqminer / EWBF style Equihash miner."""

    unit = ZcashPool.unit

    async def handshake(self) -> None:
        agent = self.cfg.agent or "nheqminer/0.5c"
        self.nheqminer = not self.cfg.compact and agent.startswith(("nheqminer", "equihash"))
        res = await self.request(
            {
                "id": self.next_id(),
                "method": "mining.subscribe",
                "params": [agent, None, self.cfg.name, str(self.cfg.port)],
            }
        )
        result = res.get("result") or [None, "00000000"]
        self.nonce1 = str(result[1])
        # nheqminer (as in the reference capture) writes the params of authorize and submit
        # without spaces inside an otherwise spaced object, sends authorize and
        # extranonce.subscribe in one write, and numbers every submit 4.
        self.conn.mixed = self.nheqminer
        auth = {
            "id": self.next_id(),
            "method": "mining.authorize",
            "params": [self.cfg.user, self.cfg.password],
        }
        extranonce = {"id": 5, "method": "mining.extranonce.subscribe", "params": []}
        await self.conn.send_many(
            [(auth, "mining.authorize"), (extranonce, "mining.extranonce.subscribe")]
        )

    async def on_push(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method == "mining.set_target":
            target = int(msg["params"][0], 16)
            self.new_difficulty(ZCASH_POW_LIMIT / max(target, 1))
        elif method == "mining.notify":
            p = msg["params"]
            self.new_job({"id": p[0], "time": p[5]}, bool(p[7]))

    async def submit(self) -> None:
        nonce2 = rhex(self.rng, 32 - len(self.nonce1) // 2)
        solution = "fd4005" + rhex(self.rng, 1344)
        params = [self.cfg.user, self.job["id"], self.job["time"], nonce2, solution]
        mid = 4 if self.nheqminer else self.next_id()
        await self.send_share({"id": mid, "method": "mining.submit", "params": params})
