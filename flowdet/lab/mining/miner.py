"""`python -m flowdet.lab.mining.miner`: a miner emulator that never computes a hash.

It connects only to the address it is given (after the lab-range guard), speaks the chosen
dialect, finds "shares" as a Poisson process of rate hashrate / (difficulty x unit) and
submits random nonces and solutions of the real sizes. Ends after `--duration` protocol
seconds and prints a JSON summary of what it really exchanged.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from flowdet.lab.emulators import emit
from flowdet.lab.mining.common import (
    Clock,
    EventLog,
    check_target,
    client_tls,
    parse_endpoint,
    run_async,
)
from flowdet.lab.mining.dialects import DIALECTS
from flowdet.lab.mining.engine import MinerConfig, json_connector, run_miner


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flowdet.lab.mining.miner", description=__doc__)
    p.add_argument("--dialect", required=True, choices=sorted(DIALECTS))
    p.add_argument("--pool", required=True, help="HOST:PORT of the pool (an IP in the lab)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every protocol interval by this (1 = real pool timing)",
    )
    p.add_argument("--duration", type=float, default=300.0, help="protocol seconds of mining")
    p.add_argument("--hashrate", type=float, help="hashes (or solutions) per second")
    p.add_argument("--user", default="wallet.rig1")
    p.add_argument("--password", default="x")
    p.add_argument("--agent", default="", help="user agent; the dialect's usual one if empty")
    p.add_argument("--variant", default="", help="a dialect's sub-style (see the dialect)")
    p.add_argument("--compact", action="store_true", help="JSON without spaces")
    p.add_argument("--tls", action="store_true", help="stratum+ssl")
    p.add_argument("--tls-max", choices=("1.2", "1.3"), default="1.3")
    p.add_argument(
        "--pool-name",
        help="the pool's DNS name as the miner was configured with "
        "it (Host headers, subscribe parameters, default SNI); never resolved",
    )
    p.add_argument("--sni", help="TLS server name if not --pool-name")
    p.add_argument("--socks", help="HOST:PORT of a SOCKS5 proxy to go through")
    p.add_argument(
        "--reconnect-mean",
        type=float,
        help="mean protocol seconds between reconnects (new connections)",
    )
    p.add_argument("--reconnect-delay", type=float, default=5.0)
    p.add_argument("--keepalive", type=float, help="application keepalive / report period")
    p.add_argument("--tcp-keepalive", type=float, help="TCP keepalive idle time")
    p.add_argument("--log", type=Path, help="append every application message here (JSONL)")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    dialect = DIALECTS[args.dialect]
    host, port = parse_endpoint(args.pool)
    socks = parse_endpoint(args.socks) if args.socks else None
    try:
        check_target(host)
        if socks:
            check_target(socks[0])
    except Exception as exc:
        print(f"flowdet: {exc}", file=sys.stderr)
        return 2
    clock = Clock(args.time_scale)
    cfg = MinerConfig(
        host=host,
        port=port,
        seed=args.seed,
        clock=clock,
        log=EventLog(args.log, "miner", clock),
        hashrate=args.hashrate or dialect.default_hashrate,
        user=args.user,
        password=args.password,
        agent=args.agent,
        compact=args.compact,
        duration=args.duration,
        reconnect_mean=args.reconnect_mean,
        reconnect_delay=args.reconnect_delay,
        keepalive=args.keepalive if args.keepalive is not None else dialect.keepalive,
        tcp_keepalive=args.tcp_keepalive,
        tls=client_tls(args.tls_max) if args.tls else None,
        sni=args.sni or args.pool_name,
        pool_name=args.pool_name,
        socks=socks,
        variant=args.variant,
    )
    if dialect.miner is not None:
        connect_once = json_connector(dialect.miner)
    else:
        assert dialect.connector is not None, dialect.name
        connect_once = dialect.connector(dialect)

    async def run() -> None:
        tally = await run_miner(cfg, connect_once, dialect.unit)
        summary = asdict(tally)
        summary.update(dialect=dialect.name, role="miner", rate_unit=dialect.unit)
        emit(summary)

    try:
        return run_async(run)
    finally:
        cfg.log.close()


if __name__ == "__main__":
    sys.exit(main())
