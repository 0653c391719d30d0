"""Mining emulators for the lab: pools, miners and a SOCKS5 proxy that speak the real protocols.

A detector trained on mining traffic must see the protocols as they cross the wire: the same
JSON shapes and sizes, the same server-pushed jobs at block-like intervals, client shares
arriving as a Poisson process, vardiff, reconnects and keepalives. These programs reproduce
that without ever computing a hash (every hash, nonce and solution is random bytes of the
right length) and without ever leaving the lab: every target address passes
`common.check_target`, which only admits loopback and private lab ranges and never resolves
a name.

Run as `python -m flowdet.lab.mining.pool`, `python -m flowdet.lab.mining.miner` and
`python -m flowdet.lab.mining.socks5`. Dialects (`--dialect`):

- `stratum1`     Bitcoin stratum v1 (cgminer, bmminer, sgminer style)
- `ethstratum`   EthereumStratum/1.0.0 (NiceHash style)
- `ethproxy`     eth-proxy JSON lines over TCP (`eth_submitLogin`, `eth_getWork`, ...)
- `zcash`        Equihash stratum (`mining.set_target`, 1344-byte solutions)
- `monero`       xmrig `login` / `job` / `submit` / `keepalived`
- `getwork`      Bitcoin getwork / getblocktemplate over HTTP/1.1 with long polling
- `ethhttp`      `eth_getWork` / `eth_submitWork` / `eth_submitHashrate` over HTTP POST
- `sv2`          Stratum V2 shape: Noise NX handshake sizes, then encrypted binary frames

Both sides print one JSON line on stdout: the pool `{"listening": [host, port], ...}` once
bound, the miner a summary of what it really exchanged when it ends. With `--log FILE` every
application message is also appended to FILE as a JSON line (direction, kind, size).

Reference: ../shared/corpus/mining-real. Message layouts and sizes follow it (see
`python -m flowdet.lab.mining.reference`, which prints the real and emulated size ranges side
by side), and so do some timings: Monero pools push a job about every 60 s between blocks,
Ethereum HTTP miners poll every ~1 s and report a zero hashrate first, Equihash vardiff moves
the target a few shares after login. `--time-scale` multiplies every interval, so the lab's
quick profile compresses minutes of protocol time into seconds without changing their ratios.
"""
