"""Evidence records and the small helpers every recognizer shares.

A recognizer never decides that a flow *is* mining: it reports what it saw, in words a
person can check in Wireshark, and a few numbers for the model. The detector weighs them.
So `Evidence.strength` says how much a record proves on its own:

- ``message``: a whole protocol message was parsed (a stratum ``mining.subscribe``, an SSH
  KEXINIT). Wrong only if someone deliberately speaks the protocol.
- ``shape``: sizes and randomness fit a protocol (a 64-byte high-entropy first message for
  Stratum V2) but nothing was decoded; other protocols can have the same shape.
- ``hint``: a name that suggests something (a TLS SNI containing "pool").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from flowdet.signatures.jsonrpc import JsonMessage

Direction = Literal["toserver", "toclient"]
Strength = Literal["message", "shape", "hint"]

# Families whose protocol evidence means "this flow carries mining".
MINING_FAMILIES = frozenset({"stratum", "monero", "getwork", "sv2"})

# Bounds that keep evidence readable and parsers cheap whatever the input.
MAX_TEXT_VALUE = 80


@dataclass(frozen=True, slots=True)
class Evidence:
    """One observation about a flow's payload, with a sentence a person can verify."""

    family: str  # stratum, monero, getwork, sv2, ssh, tls, http
    name: str  # what was seen, e.g. client_method, server_notify, banner, client_hello
    direction: Direction
    detail: Mapping[str, str | int]
    text: str  # e.g. 'client sent stratum mining.subscribe (agent "cgminer/4.10.0")'
    strength: Strength = "message"

    @property
    def is_mining(self) -> bool:
        """Protocol-level proof of a mining protocol (shapes and name hints do not count)."""
        return self.family in MINING_FAMILIES and self.strength == "message"


@dataclass(frozen=True, slots=True)
class FamilyResult:
    """What one recognizer found: evidence and its named feature values."""

    evidence: tuple[Evidence, ...] = ()
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FlowPayload:
    """The payload prefixes of one flow, as the flows stage hands them over.

    `toserver` are the initiator's first payload packets, `toclient` the responder's, each
    list keeping packet boundaries. Joined streams are computed once and shared by all
    recognizers (several of them read the same JSON lines).
    """

    toserver: tuple[bytes, ...]
    toclient: tuple[bytes, ...]

    @classmethod
    def of(cls, toserver: Sequence[bytes], toclient: Sequence[bytes]) -> FlowPayload:
        return cls(tuple(bytes(p) for p in toserver), tuple(bytes(p) for p in toclient))

    @cached_property
    def client_stream(self) -> bytes:
        return b"".join(self.toserver)

    @cached_property
    def server_stream(self) -> bytes:
        return b"".join(self.toclient)

    @cached_property
    def client_messages(self) -> tuple[JsonMessage, ...]:
        from flowdet.signatures.jsonrpc import messages_from_stream

        return messages_from_stream(self.client_stream)

    @cached_property
    def server_messages(self) -> tuple[JsonMessage, ...]:
        from flowdet.signatures.jsonrpc import messages_from_stream

        return messages_from_stream(self.server_stream)

    def stream(self, direction: Direction) -> bytes:
        return self.client_stream if direction == "toserver" else self.server_stream


def printable(value: object, limit: int = MAX_TEXT_VALUE) -> str:
    """A short, single-line, printable rendering of an untrusted value for text and logs."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
    if text.isprintable():  # the common case, without a Python step per character
        out = text
    else:
        # escaping only lengthens, so the first `limit` characters decide what is shown
        out = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:limit])
        if len(text) > limit:
            out += "…"  # any marker: it only makes the length exceed `limit`
    if len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


_LONG_TOKEN = re.compile(r"[A-Za-z0-9]{20,}")


def mask_account(value: str) -> str:
    """Mask long wallet addresses inside a login or worker name, keeping the rig part.

    '47mr7jYTrox...3yjN.rig1' -> '47mr7j…3yjN.rig1': enough to match against a pool's
    dashboard or another alert, without spreading a full payout address through logs.
    """
    return _LONG_TOKEN.sub(lambda m: f"{m.group()[:6]}…{m.group()[-4:]}", printable(value, 200))


def shannon_entropy(data: bytes) -> float:
    """Bits per byte (0..8). A 64-byte random blob scores about 5.6-5.9, ASCII JSON ~4.5-5."""
    if not data:
        return 0.0
    n = len(data)
    log2 = math.log2
    return -sum([c / n * log2(c / n) for c in Counter(data).values()])


def max_entropy(n: int) -> float:
    """The highest entropy n bytes can have (log2 of the distinct values they can hold)."""
    return math.log2(min(n, 256)) if n > 0 else 0.0
