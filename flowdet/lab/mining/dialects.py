"""Which classes make up each dialect, and each dialect's usual ports and software."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowdet.lab.mining import http, monero, stratum, sv2
from flowdet.lab.mining.engine import MinerSession, PoolSession


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    chain: str
    unit: float  # hashes per difficulty-1 share
    pool: type[PoolSession] | None  # newline-delimited JSON dialects
    miner: type[MinerSession] | None
    agents: tuple[str, ...]  # user agents / software names seen in the wild
    ports: tuple[int, ...]  # usual plain-TCP pool ports
    tls_ports: tuple[int, ...]
    default_hashrate: float
    keepalive: float | None = None  # application keepalive / report period, protocol seconds
    # Dialects that are not newline-delimited JSON bring their own server and connection:
    serve: Callable[..., Any] | None = None  # async serve(ctx, dialect, bind, port, tls)
    connector: Callable[[Any], Any] | None = None  # connector(dialect) -> connect_once


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect(
            "stratum1", "bitcoin", 2.0**32, stratum.Stratum1Pool, stratum.Stratum1Miner,
            ("cgminer/4.10.0", "bmminer/2.0.0", "sgminer/5.6.1", "cgminer/3.7.2",
             "bfgminer/5.5.0", "NiceHash/1.0.0"),
            (3333, 3334, 25, 1800, 8888), (443, 3443, 4443, 25443), 14e12,
        ),
        Dialect(
            "ethstratum", "ethereum", 2.0**32, stratum.EthStratumPool, stratum.EthStratumMiner,
            ("ethminer/0.19.0", "EthminerX/0.18.0", "NiceHashMiner/3.0.6", "lolMiner/1.48"),
            (3353, 4444, 3333, 9999), (443, 5555, 14444), 120e6,
        ),
        Dialect(
            "ethproxy", "ethereum", 1.0, monero.EthProxyPool, monero.EthProxyMiner,
            ("Claymore/15.0", "PhoenixMiner/6.2c"),
            (4444, 8008, 9999, 14444), (5555, 443), 120e6, keepalive=30.0,
        ),
        Dialect(
            "zcash", "zcash", stratum.ZcashPool.unit, stratum.ZcashPool, stratum.ZcashMiner,
            ("nheqminer/0.5c", "equihashminer", "EWBF-Miner/0.6", "lolMiner/1.48"),
            (2142, 3357, 3333, 4444), (443, 3443), 300.0,
        ),
        Dialect(
            "monero", "monero", 1.0, monero.MoneroPool, monero.MoneroMiner,
            ("XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0",
             "XMRig/6.20.0 (Windows NT 10.0; Win64; x64) libuv/1.44.2 msvc/2019",
             "XMRig/6.18.1 (Linux x86_64) libuv/1.42.0 gcc/11.2.0"),
            (14444, 3333, 4444, 5555, 10128, 80), (14433, 443, 9000, 20128), 8000.0,
            keepalive=60.0,
        ),
        Dialect(
            "getwork", "bitcoin", 2.0**32, None, None,
            ("cgminer/2.7.2", "bfgminer/3.10.0", "poclbm/20120920", "cpuminer/2.5.1"),
            (8332, 8337, 80, 9332), (443, 8443), 1e9,
            serve=http.serve, connector=http.connector,
        ),
        Dialect(
            "ethhttp", "ethereum", 1.0, None, None,
            ("ethminer/0.19.0", "Genoil-ethminer/0.9.41"),
            (80, 8545, 8080, 8088), (443,), 30e6, keepalive=1.0,
            serve=http.serve, connector=http.connector,
        ),
        Dialect(
            "sv2", "bitcoin", 2.0**32, None, None,
            ("braiins-os/22.08", "SRI-mining-device/0.1"),
            (34255, 3336, 3333), (), 100e12,
            serve=sv2.serve, connector=sv2.connector,
        ),
    )
}  # fmt: skip
