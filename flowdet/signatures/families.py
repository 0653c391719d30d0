"""All recognizers together: one call per flow, a fixed feature vector, and the evidence.

Signatures run once per flow on its payload prefixes, not per packet, so plain Python per
flow is affordable; `inspect_many` only adds a cheap pre-filter (most flows of a busy link
start with bytes no recognizer wants: skip the JSON, TLS and SSH parsers for them) and
fills one numpy matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from flowdet.signatures import getwork, http, monero, ssh, stratum, sv2, tls, tunnel
from flowdet.signatures.evidence import Evidence, FamilyResult, FlowPayload

Recognizer = Callable[[FlowPayload], FamilyResult]

# Order fixes the feature columns: append new families at the end, never reorder.
FAMILIES: tuple[tuple[str, Recognizer, tuple[str, ...]], ...] = (
    ("stratum", stratum.inspect, stratum.FEATURES),
    ("monero", monero.inspect, monero.FEATURES),
    ("getwork", getwork.inspect, getwork.FEATURES),
    ("sv2", sv2.inspect, sv2.FEATURES),
    ("ssh", ssh.inspect, ssh.FEATURES),
    ("tls", tls.inspect, tls.FEATURES),
    ("http", http.inspect, http.FEATURES),
    ("tunnel", tunnel.inspect, tunnel.FEATURES),  # runs first, on the outer payload
)

SIGNATURE_FEATURES: tuple[str, ...] = tuple(name for _, _, names in FAMILIES for name in names)
_COLUMN = {name: i for i, name in enumerate(SIGNATURE_FEATURES)}
assert len(_COLUMN) == len(SIGNATURE_FEATURES), "duplicate signature feature name"

# First bytes after which a JSON-RPC recognizer has something to read.
_JSONISH = (b"{", b"[")


@dataclass(frozen=True, slots=True)
class SignatureResult:
    """Evidence for one flow, and its feature vector in `SIGNATURE_FEATURES` order.

    `errors` lists recognizers that failed on this input ("family: ExceptionType: message").
    They should never fail - the property tests feed them arbitrary bytes - but if one does
    in the field, the flow keeps the other families' results and the failure is counted here
    instead of ending the run.
    """

    evidence: tuple[Evidence, ...]
    features: np.ndarray  # float32, shape (len(SIGNATURE_FEATURES),)
    errors: tuple[str, ...] = ()

    @property
    def mining_evidence(self) -> tuple[Evidence, ...]:
        return tuple(e for e in self.evidence if e.is_mining)

    @property
    def is_mining(self) -> bool:
        return any(e.is_mining for e in self.evidence)

    def feature(self, name: str) -> float:
        return float(self.features[_COLUMN[name]])


def _wanted(payload: FlowPayload) -> frozenset[str]:
    """Which families can possibly match, from the first bytes alone."""
    c = payload.client_stream.lstrip(b" \t\r\n\x00")
    s = payload.server_stream.lstrip(b" \t\r\n\x00")
    out = {"sv2"}  # sizes and entropy only: always cheap
    jsonish = c[:1] in _JSONISH or s[:1] in _JSONISH or b'"method"' in c or b'"method"' in s
    if jsonish or b'"result"' in s or http.looks_like_http(c):
        out |= {"stratum", "monero", "getwork"}
    if http.looks_like_http(s):
        out.add("getwork")
    if http.looks_like_http(c):
        out.add("http")
    if c[:4] == b"SSH-" or b"SSH-" in s[:1024]:
        out.add("ssh")
    if c[:1] == b"\x16" or s[:1] == b"\x16":
        out.add("tls")
    return frozenset(out)


T = TypeVar("T")


def _run(
    family: str, fn: Callable[[FlowPayload], T], payload: FlowPayload, errors: list[str]
) -> T | None:
    try:
        return fn(payload)
    except Exception as exc:  # counted in `errors`, see SignatureResult
        errors.append(f"{family}: {type(exc).__name__}: {exc}")
        return None


def _store(family: str, names: tuple[str, ...], result: FamilyResult, out: np.ndarray) -> None:
    for name, value in result.features.items():
        if name not in names:
            raise KeyError(f"{family} returned undeclared feature {name!r}")
        out[_COLUMN[name]] = value


def inspect_payload(payload: FlowPayload, out: np.ndarray | None = None) -> SignatureResult:
    """Run every recognizer that can match; write features into `out` if given.

    A proxy handshake (SOCKS, HTTP CONNECT) at the start of the flow is reported by the
    tunnel family, and every other family then looks at the bytes after it, with its
    evidence saying that it was seen inside the tunnel.
    """
    features = out if out is not None else np.zeros(len(SIGNATURE_FEATURES), dtype=np.float32)
    evidence: list[Evidence] = []
    errors: list[str] = []
    via = ""  # "SOCKS5 tunnel to host:port" when the flow is a proxy tunnel
    if payload.client_stream[:1] in (b"\x04", b"\x05") or payload.client_stream[:8] == b"CONNECT ":
        found = _run("tunnel", tunnel.unwrap, payload, errors)
        if found is not None:
            result = _run("tunnel", tunnel.inspect, payload, errors)
            if result is not None:
                evidence.extend(result.evidence)
                _store("tunnel", tunnel.FEATURES, result, features)
            via, payload = f"{found[0].kind} tunnel to {found[0].target}", found[1]
    wanted = _wanted(payload)
    for family, recognizer, names in FAMILIES:
        if family not in wanted:
            continue
        result = _run(family, recognizer, payload, errors)
        if result is None:
            continue
        if via:
            evidence.extend(
                replace(e, text=f"inside the {via}: {e.text}", detail={**e.detail, "tunnel": via})
                for e in result.evidence
            )
        else:
            evidence.extend(result.evidence)
        _store(family, names, result, features)
    return SignatureResult(tuple(evidence), features, tuple(errors))


def inspect(toserver: Sequence[bytes], toclient: Sequence[bytes]) -> SignatureResult:
    """Evidence and features for one flow from its first payload packets per direction.

    `toserver` holds the initiator's payloads, `toclient` the responder's, in order, one
    bytes object per packet (packet boundaries matter for the Stratum V2 shape).
    """
    return inspect_payload(FlowPayload.of(toserver, toclient))


def inspect_many(
    flows: Iterable[tuple[Sequence[bytes], Sequence[bytes]]],
) -> tuple[np.ndarray, list[tuple[Evidence, ...]], int]:
    """Many flows at once: (feature matrix n x k, evidence per flow, number of failures).

    The failure count is the number of flows where some recognizer raised (see
    `SignatureResult.errors`); callers report it in their run summary.
    """
    flows = list(flows)
    matrix = np.zeros((len(flows), len(SIGNATURE_FEATURES)), dtype=np.float32)
    evidence: list[tuple[Evidence, ...]] = []
    failures = 0
    for i, (toserver, toclient) in enumerate(flows):
        result = inspect_payload(FlowPayload.of(toserver, toclient), out=matrix[i])
        evidence.append(result.evidence)
        failures += bool(result.errors)
    return matrix, evidence, failures
