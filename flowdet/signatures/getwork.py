"""Pull-style mining RPC: getwork, getblocktemplate, submitblock, and Ethereum's ``eth_*`` work
calls, over HTTP POST or (eth-proxy) as raw JSON lines over TCP.

Bitcoin-era miners poll ``getwork`` (and later ``getblocktemplate``, BIP 22/23) over HTTP and
announce themselves with ``X-Mining-Extensions`` (longpoll, midstate, rollntime, ...); pools
answer with ``X-Long-Polling`` (a URL to park a request on) and sometimes ``X-Stratum`` (the
stratum URL to switch to). Ethereum miners poll ``eth_getWork``, report ``eth_submitHashrate``
and send ``eth_submitWork``; the eth-proxy flavour sends the same calls as JSON lines over a
plain TCP connection, starting with ``eth_submitLogin`` and often a top-level ``"worker"``.

``eth_getWork`` and friends are also part of a full node's JSON-RPC API, so a match means
"someone is mining against this endpoint" (a pool or a solo miner with its own node) - which
is what the detector needs, but worth keeping in mind when the server is a local node.
"""

from __future__ import annotations

from flowdet.signatures.evidence import Evidence, FamilyResult, FlowPayload, mask_account, printable
from flowdet.signatures.http import looks_like_http, parse_http_stream

FEATURES: tuple[str, ...] = (
    "sig_getwork",  # getwork / getblocktemplate / submitblock from the initiator
    "sig_getwork_mining_headers",  # X-Mining-Extensions, X-Long-Polling or X-Stratum seen
    "sig_eth_work",  # eth_getWork / eth_submitWork / eth_submitHashrate / eth_submitLogin
    "sig_eth_proxy_tcp",  # those eth_* calls as JSON lines over raw TCP (eth-proxy)
    "sig_eth_work_result",  # the responder returned an eth_getWork-shaped result
)

GETWORK_METHODS = frozenset({"getwork", "getblocktemplate", "submitblock"})
ETH_WORK_METHODS = frozenset(
    {"eth_getWork", "eth_submitWork", "eth_submitHashrate", "eth_submitLogin", "eth_login"}
)
MINING_HEADERS = ("x-mining-extensions", "x-long-polling", "x-stratum", "x-mining-hashrate")


def _is_eth_work_result(result: object) -> bool:
    """eth_getWork's answer: [header hash, seed hash, boundary (, block number)] as 0x-hex."""
    return (
        isinstance(result, list)
        and 3 <= len(result) <= 4
        and all(isinstance(r, str) and r.startswith("0x") for r in result[:3])
        and all(len(r) == 66 for r in result[:2])
    )


def inspect(payload: FlowPayload) -> FamilyResult:
    features = dict.fromkeys(FEATURES, 0.0)
    evidence: list[Evidence] = []
    seen: set[str] = set()

    for msg in payload.client_messages:
        method = msg.method
        if method in GETWORK_METHODS:
            features["sig_getwork"] = 1.0
        elif method in ETH_WORK_METHODS:
            features["sig_eth_work"] = 1.0
            if msg.transport == "line":
                features["sig_eth_proxy_tcp"] = 1.0
        else:
            continue
        if method in seen:
            continue
        seen.add(method)
        detail: dict[str, str | int] = {"method": method, "transport": msg.transport}
        if msg.transport == "http":
            host = msg.header("host")
            where = "over HTTP POST" + (f' (Host "{printable(host)}")' if host else "")
            if host:
                detail["host"] = printable(host)
        else:
            where = "as a JSON line over raw TCP (eth-proxy)"
        worker = msg.obj.get("worker")
        if isinstance(worker, str) and worker:
            detail["worker"] = mask_account(worker)
            where += f', worker "{mask_account(worker)}"'
        if method == "eth_submitLogin" and isinstance(msg.params, list) and msg.params:
            detail["login"] = mask_account(str(msg.params[0]))
            where += f', login "{detail["login"]}"'
        if msg.partial:
            detail["partial"] = 1
        family_word = "getwork-style" if method in GETWORK_METHODS else "Ethereum work call"
        evidence.append(
            Evidence(
                "getwork",
                "client_method",
                "toserver",
                detail,
                f"client sent {family_word} {method} {where}",
            )
        )

    for msg in payload.server_messages:
        if features["sig_eth_work"] and _is_eth_work_result(msg.result):
            features["sig_eth_work_result"] = 1.0
            evidence.append(
                Evidence(
                    "getwork",
                    "eth_work_result",
                    "toclient",
                    {"header_hash": printable(msg.result[0], 20)},
                    "server returned eth_getWork work (header hash, seed hash, boundary)",
                )
            )
            break

    for direction, stream in (
        ("toserver", payload.client_stream),
        ("toclient", payload.server_stream),
    ):
        if not looks_like_http(stream):
            continue
        for http_msg in parse_http_stream(stream):
            for name in MINING_HEADERS:
                value = http_msg.header(name)
                if value is None or f"{direction}:{name}" in seen:
                    continue
                seen.add(f"{direction}:{name}")
                features["sig_getwork_mining_headers"] = 1.0
                side = "client" if direction == "toserver" else "server"
                evidence.append(
                    Evidence(
                        "getwork",
                        "mining_header",
                        direction,  # type: ignore[arg-type]
                        {"header": name, "value": printable(value)},
                        f'{side} sent HTTP header {name.title()}: "{printable(value, 60)}"',
                    )
                )
    return FamilyResult(tuple(evidence), features)
