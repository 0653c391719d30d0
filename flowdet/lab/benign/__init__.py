"""Benign hard negatives for the lab: real programs whose traffic resembles mining or tunnels.

A cryptominer's flow is long-lived, periodic and made of small JSON messages; an SSH tunnel is a
long-lived encrypted session with small interactive bursts. Plenty of innocent traffic shares
those shapes (websocket chat, JSON-RPC price tickers, log shippers, heartbeats, Ethereum node
queries, metrics scrapes over TLS), so the model must see it labelled `benign` to learn what
actually separates the classes. Each module here is one protocol family with a `server` and a
`client` (or a server wrapper around a real Debian program such as nginx), runnable as
`python -m flowdet.lab.benign.<module> {server,client} ...`. Clients print one JSON summary
line on stdout when they finish so that scenarios and tests can check the traffic really
happened.

Modules: `web` (nginx over HTTP and TLS: browsing, large downloads, metrics-style polling),
`proxy` (HTTP CONNECT forward proxy), `websocket` (RFC 6455 chat, notifications, Engine.IO
heartbeats, JSON-RPC ticker and eth_subscribe feeds, a ttyd-style web terminal), `linejson`
(newline-delimited JSON log shipper and ticker feed), `dns`, `ntp`, `resp` (Redis protocol),
`pg` (PostgreSQL v3), `jsonrpc` (Ethereum-style read-only JSON-RPC over HTTP), `mqtt` (MQTT
3.1.1 keepalive and publish) and `irc`. `common` holds the shared plumbing (arguments, TLS,
summaries).
"""
