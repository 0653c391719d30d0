"""Stratum v1 and its dialects: JSON-RPC lines with ``mining.*`` methods.

A miner opens with ``mining.subscribe`` (params: its agent, sometimes a session id, host and
port), then ``mining.authorize`` (worker name, password); the pool answers the subscribe with
the subscription ids of ``mining.set_difficulty`` / ``mining.notify`` and an extranonce, then
pushes ``mining.set_difficulty`` and ``mining.notify`` jobs; the miner sends ``mining.submit``
shares. Dialects are told apart by what they add:

- EthereumStratum/1.0 (NiceHash): ``"EthereumStratum/1.0.0"`` as the second subscribe param.
- ZCash/Equihash: the pool sets a 256-bit target with ``mining.set_target``, and shares carry
  the 1344-byte Equihash solution, so a ``mining.submit`` line is ~2.8 KB of hex.
- everything else is reported as plain stratum v1 (Bitcoin and its forks).

Only methods are evidence; a JSON-RPC result is matched only when it names the stratum
subscriptions (``["mining.notify", "<id>"]``), since bare ``{"result":true}`` means nothing.
"""

from __future__ import annotations

import re
from typing import Any

from flowdet.signatures.agents import miner_agent
from flowdet.signatures.evidence import (
    Direction,
    Evidence,
    FamilyResult,
    FlowPayload,
    Strength,
    mask_account,
    printable,
)
from flowdet.signatures.jsonrpc import JsonMessage

FEATURES: tuple[str, ...] = (
    "sig_stratum_client_method",  # a miner's mining.* method was seen (normally from the initiator)
    "sig_stratum_subscribe",
    "sig_stratum_authorize",
    "sig_stratum_submit",
    "sig_stratum_n_client_methods",  # distinct miner mining.* methods
    "sig_stratum_server_notify",  # a pool pushed mining.notify/set_difficulty/set_target
    "sig_stratum_subscribe_result",  # the responder's result lists the mining.notify subscription
    "sig_stratum_ethereum",  # EthereumStratum/1.0 dialect
    "sig_stratum_equihash",  # ZCash/Equihash dialect (set_target, solution-sized submit)
    "sig_stratum_miner_agent",  # the subscribe agent names known mining software
)

# Methods a pool sends; anything else under "mining." from a pool is still counted as stratum.
SERVER_METHODS = frozenset(
    {
        "mining.notify",
        "mining.set_difficulty",
        "mining.set_target",
        "mining.set_extranonce",
        "mining.set_version_mask",
        "client.reconnect",
        "client.show_message",
        "client.get_version",
    }
)
_HEX = re.compile(r"[0-9a-fA-F]{200,}")
_HEX_BYTES = re.compile(rb"[0-9a-fA-F]{200,}")


def _strings(params: Any) -> list[str]:
    if isinstance(params, list):
        return [p for p in params if isinstance(p, str)]
    return []


def _first_str(params: Any, index: int) -> str | None:
    if isinstance(params, list) and len(params) > index and isinstance(params[index], str):
        return params[index]
    return None


def _names_subscription(value: Any, depth: int = 0) -> bool:
    """True if a subscribe result holds ["mining.notify", id] or ["mining.set_difficulty", id]."""
    if depth > 3 or not isinstance(value, list):
        return False
    if (
        len(value) >= 2
        and isinstance(value[0], str)
        and value[0] in ("mining.notify", "mining.set_difficulty")
    ):
        return True
    return any(_names_subscription(v, depth + 1) for v in value[:8])


def _describe_client(msg: JsonMessage, method: str) -> tuple[dict[str, str | int], str]:
    params = msg.params
    detail: dict[str, str | int] = {"method": method}
    extra = ""
    if method == "mining.subscribe":
        agent = _first_str(params, 0)
        protocol = _first_str(params, 1)
        if agent:
            detail["agent"] = printable(agent)
            extra = f'agent "{printable(agent)}"'
        if protocol and protocol.startswith("EthereumStratum/"):
            detail["protocol"] = printable(protocol)
            extra += f', protocol "{printable(protocol)}"' if extra else printable(protocol)
    elif method in ("mining.authorize", "mining.submit"):
        worker = _first_str(params, 0)
        if worker is not None:
            detail["worker"] = mask_account(worker)
            extra = f'worker "{mask_account(worker)}"'
        job = _first_str(params, 1)
        if method == "mining.submit" and job is not None:
            detail["job"] = printable(job, 40)
            extra += f', job "{printable(job, 40)}"'
    text = f"client sent stratum {method}" + (f" ({extra})" if extra else "")
    return detail, text


def _describe_server(msg: JsonMessage, method: str) -> tuple[dict[str, str | int], str]:
    params = msg.params
    detail: dict[str, str | int] = {"method": method}
    extra = ""
    if method == "mining.notify":
        job = _first_str(params, 0)
        if job is not None:
            detail["job"] = printable(job, 40)
            extra = f'job "{printable(job, 40)}"'
    elif method == "mining.set_difficulty" and isinstance(params, list) and params:
        detail["difficulty"] = printable(params[0], 30)
        extra = f"difficulty {printable(params[0], 30)}"
    elif method == "mining.set_target":
        target = _first_str(params, 0)
        if target is not None:
            detail["target"] = printable(target, 64)
            extra = f"target {printable(target, 24)}"
    text = f"server sent stratum {method}" + (f" ({extra})" if extra else "")
    return detail, text


def _client_features(msg: JsonMessage, method: str, features: dict[str, float]) -> None:
    params = msg.params
    if method == "mining.subscribe":
        features["sig_stratum_subscribe"] = 1.0
        agent = _first_str(params, 0)
        if agent and miner_agent(agent):
            features["sig_stratum_miner_agent"] = 1.0
        if any(s.startswith("EthereumStratum/") for s in _strings(params)):
            features["sig_stratum_ethereum"] = 1.0
    elif method == "mining.authorize":
        features["sig_stratum_authorize"] = 1.0
    elif method == "mining.submit":
        features["sig_stratum_submit"] = 1.0
        # An Equihash solution: 2.7 KB of hex, usually cut by the prefix limit.
        if any(_HEX.fullmatch(s) for s in _strings(params)) or _HEX_BYTES.search(msg.raw):
            features["sig_stratum_equihash"] = 1.0


def _subscribe_result(msg: JsonMessage, direction: Direction) -> Evidence:
    who = "server" if direction == "toclient" else "initiator"
    return Evidence(
        "stratum",
        "subscribe_result",
        direction,
        {"id": printable(msg.obj.get("id"), 20)},
        f"{who} answered with stratum subscriptions (mining.notify / mining.set_difficulty ids)",
    )


def inspect(payload: FlowPayload) -> FamilyResult:
    """Stratum v1 methods from both sides, the dialect, the agent and the worker.

    A pool's method (mining.notify, ...) from the initiator, or a miner's method from the
    responder, means the capture began mid-flow and the flow's roles came out swapped: still
    stratum, reported with the side that really sent it and a note, and counted in the same
    features as if the roles were right.
    """
    features = dict.fromkeys(FEATURES, 0.0)
    evidence: list[Evidence] = []
    seen: set[tuple[Direction, str]] = set()
    client_methods: set[str] = set()
    streams: tuple[tuple[Direction, tuple[JsonMessage, ...]], ...] = (
        ("toserver", payload.client_messages),
        ("toclient", payload.server_messages),
    )
    for direction, messages in streams:
        for msg in messages:
            method = msg.method
            if method is None:
                if not features["sig_stratum_subscribe_result"] and _names_subscription(msg.result):
                    features["sig_stratum_subscribe_result"] = 1.0
                    evidence.append(_subscribe_result(msg, direction))
                continue
            if method in SERVER_METHODS:
                if method in ("mining.notify", "mining.set_difficulty", "mining.set_target"):
                    features["sig_stratum_server_notify"] = 1.0
                if method == "mining.set_target":
                    features["sig_stratum_equihash"] = 1.0
                name, (detail, text) = "server_method", _describe_server(msg, method)
                swapped = direction == "toserver"
            elif method.startswith("mining."):
                client_methods.add(method)
                _client_features(msg, method, features)
                name, (detail, text) = "client_method", _describe_client(msg, method)
                swapped = direction == "toclient"
            else:
                continue
            if (direction, method) in seen:
                continue
            seen.add((direction, method))
            if msg.partial:
                detail["partial"] = 1
            if swapped:
                detail["roles_swapped"] = 1
                text = text.replace("client sent", "responder sent", 1).replace(
                    "server sent", "initiator sent", 1
                )
                text += " - the roles look swapped (capture started mid-flow?)"
            # client.reconnect / client.show_message alone are stratum-flavoured names, not proof
            strength: Strength = "message" if method.startswith("mining.") else "hint"
            evidence.append(Evidence("stratum", name, direction, detail, text, strength))

    if client_methods:
        features["sig_stratum_client_method"] = 1.0
        features["sig_stratum_n_client_methods"] = float(len(client_methods))
    return FamilyResult(tuple(evidence), features)


def dialect(features: dict[str, float]) -> str:
    """A human name for the dialect the features point at (for reasons and explain)."""
    if features.get("sig_stratum_ethereum"):
        return "EthereumStratum/1.0"
    if features.get("sig_stratum_equihash"):
        return "ZCash/Equihash stratum"
    return "stratum v1"
