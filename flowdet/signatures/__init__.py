"""Payload signatures: protocol evidence from the first payload bytes of each flow direction.

The flows stage hands over, per flow, the initiator's and the responder's first payload
packets (a few packets, about 1 KB per direction, packet boundaries kept). `inspect` runs
one small recognizer per protocol family over them and returns human-checkable `Evidence`
plus a fixed-length feature vector named by `SIGNATURE_FEATURES`, for the model.

Families: stratum (v1 and dialects), monero (xmrig login/job/submit), getwork
(getwork/getblocktemplate and eth_* work calls), sv2 (Stratum V2 handshake shape), ssh
(banners, KEXINIT, HASSH, keystroke sizes), tls (ClientHello/ServerHello, SNI, JA3/JA4),
http (request line, Host, User-Agent), tunnel (SOCKS and HTTP CONNECT handshakes, unwrapped so
the other families see the tunnelled protocol).
"""

from flowdet.signatures.evidence import MINING_FAMILIES, Evidence, FlowPayload
from flowdet.signatures.families import (
    FAMILIES,
    SIGNATURE_FEATURES,
    SignatureResult,
    inspect,
    inspect_many,
    inspect_payload,
)

__all__ = [
    "FAMILIES",
    "MINING_FAMILIES",
    "SIGNATURE_FEATURES",
    "Evidence",
    "FlowPayload",
    "SignatureResult",
    "inspect",
    "inspect_many",
    "inspect_payload",
]
