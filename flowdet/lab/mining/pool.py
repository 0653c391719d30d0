"""`python -m flowdet.lab.mining.pool`: a mining pool emulator that never verifies a hash.

It accepts any worker, pushes jobs at block-like intervals, retunes difficulty with vardiff and
accepts shares (rejecting a small fraction, as real pools do for stale work). It prints
`{"listening": [host, port], "tls": bool}` once bound and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowdet.lab.certs import make_certificate, server_context
from flowdet.lab.mining.common import Clock, EventLog, run_async
from flowdet.lab.mining.dialects import DIALECTS
from flowdet.lab.mining.engine import PoolConfig, PoolContext, serve_pool


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flowdet.lab.mining.pool", description=__doc__)
    p.add_argument("--dialect", required=True, choices=sorted(DIALECTS))
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3333, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every protocol interval by this (1 = real pool timing)",
    )
    p.add_argument("--start-difficulty", type=float, help="vardiff's starting difficulty")
    p.add_argument(
        "--target-interval",
        type=float,
        default=15.0,
        help="seconds between shares that vardiff aims for",
    )
    p.add_argument("--no-vardiff", action="store_true")
    p.add_argument("--reject-rate", type=float, default=0.01)
    p.add_argument(
        "--drop-mean",
        type=float,
        help="mean protocol seconds before the pool closes a miner's connection",
    )
    p.add_argument("--spaced", action="store_true", help='JSON with spaces: {"id": 1, ...}')
    p.add_argument("--tls", action="store_true", help="stratum+ssl: TLS with a self-signed cert")
    p.add_argument("--name", default="pool.example", help="the pool's host name (TLS subject)")
    p.add_argument(
        "--cert-dir",
        type=Path,
        default=Path("."),
        help="where the self-signed certificate is made or found",
    )
    p.add_argument("--log", type=Path, help="append every application message here (JSONL)")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    dialect = DIALECTS[args.dialect]
    clock = Clock(args.time_scale)
    cfg = PoolConfig(
        seed=args.seed,
        clock=clock,
        log=EventLog(args.log, "pool", clock),
        start_difficulty=args.start_difficulty,
        target_interval=args.target_interval,
        vardiff=not args.no_vardiff,
        reject_rate=args.reject_rate,
        compact=not args.spaced,
        name=args.name,
        drop_mean=args.drop_mean,
    )
    tls = server_context(*make_certificate(args.cert_dir, [args.name])) if args.tls else None
    ctx = PoolContext(cfg, dialect.chain)

    async def run() -> None:
        if dialect.pool is not None:
            await serve_pool(ctx, dialect.pool, args.bind, args.port, tls)
        elif dialect.serve is not None:
            await dialect.serve(ctx, dialect, args.bind, args.port, tls)

    try:
        return run_async(run)
    finally:
        cfg.log.close()


if __name__ == "__main__":
    sys.exit(main())
