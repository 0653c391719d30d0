"""Stratum V2: the shape of its Noise NX handshake, since everything after it is encrypted.

Per the sv2-spec (04-Protocol-Security.md, "Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256"):

1. ``-> e``: the initiator sends its ephemeral public key, 64 bytes of ElligatorSwift
   encoding (BIP 324), designed to be indistinguishable from random bytes. Nothing else.
2. ``<- e, ee, s, es, SIGNATURE_NOISE_MESSAGE``: the responder sends its ephemeral key (64),
   its static key encrypted (64 + 16 MAC) and the encrypted 74-byte signature message
   (+ 16 MAC): 64 + 80 + 90 = 234 bytes. (The spec's summary table says 170, the length
   from the older 32-byte-key draft; its own step list adds up to 234.)
3. Then encrypted frames: a 6-byte header encrypted alone (22 bytes with its MAC) followed by
   the payload plus a 16-byte MAC. The first is the client's SetupConnection (a few dozen
   bytes of strings, so at least 22 + 16 + 1 = 39 bytes); a SetupConnection.Success
   (used_version u16 + flags u32) comes back as exactly 22 + 6 + 16 = 44 bytes.

So the recognizer scores sizes and randomness of the first packets, on any port. It cannot
decode anything, and **any protocol whose initiator opens with 64 random-looking bytes fits
step 1** - obfuscated transports (obfs4-like pluggable transports, Shadowsocks-style salt +
ciphertext, BitTorrent message stream encryption with short padding), custom C2 implants,
other Noise-based protocols with 64-byte messages. Steps 2 and 3 make a coincidence less
likely but not impossible. That is why this yields a score feature and ``shape`` evidence,
never a verdict: the detector has to combine it with flow behaviour (long-lived, periodic
server pushes, small client submissions).
"""

from __future__ import annotations

from flowdet.signatures.evidence import Evidence, FamilyResult, FlowPayload, shannon_entropy

FEATURES: tuple[str, ...] = (
    "sig_sv2_handshake_shape",  # 0..1 score, see `shape_score`
    "sig_sv2_client_first_64",  # the initiator's first payload packet is 64 random-looking bytes
    "sig_sv2_server_first_234",  # the responder's first payload packet is 234 random-looking bytes
    "sig_first_toserver_entropy",  # bits per byte of the initiator's first payload packet
    "sig_first_toclient_entropy",  # bits per byte of the responder's first payload packet
)

CLIENT_HELLO_LEN = 64
SERVER_HELLO_LEN = 234
SETUP_SUCCESS_LEN = 22 + 6 + 16
MIN_FRAME_LEN = 22 + 16 + 1
# Uniform random bytes: 64 of them average 5.66 bits/byte (stdev ~0.1), 234 of them ~7.1.
# ASCII text of those lengths stays under ~4.9 and ~5.5, so these cut-offs leave margin.
MIN_ENTROPY_64 = 5.2
MIN_ENTROPY_234 = 6.5
MIN_ENTROPY_FRAME = 4.5  # short frames have little room for entropy: 39 random bytes ~ 5.0
MAX_PRINTABLE_SHARE = 0.7  # random bytes are ~37% printable ASCII


def _random_looking(data: bytes, min_entropy: float) -> bool:
    if not data:
        return False
    printable = sum(1 for b in data if 0x20 <= b < 0x7F or b in (9, 10, 13))
    return shannon_entropy(data) >= min_entropy and printable / len(data) <= MAX_PRINTABLE_SHARE


def shape_score(
    toserver: tuple[bytes, ...], toclient: tuple[bytes, ...]
) -> tuple[float, list[str]]:
    """0..1: 0.4 for the 64-byte client key, +0.3 for the 234-byte reply, +0.15 each for a
    following client frame and a 44-byte SetupConnection.Success. 0 without the first step."""
    steps: list[str] = []
    if not toserver or len(toserver[0]) != CLIENT_HELLO_LEN:
        return 0.0, steps
    if not _random_looking(toserver[0], MIN_ENTROPY_64):
        return 0.0, steps
    score = 0.4
    steps.append("client_key_64")
    if (
        toclient
        and len(toclient[0]) == SERVER_HELLO_LEN
        and _random_looking(toclient[0], MIN_ENTROPY_234)
    ):
        score += 0.3
        steps.append("server_reply_234")
    if (
        len(toserver) > 1
        and len(toserver[1]) >= MIN_FRAME_LEN
        and _random_looking(toserver[1], MIN_ENTROPY_FRAME)
    ):
        score += 0.15
        steps.append("client_frame")
    if (
        len(toclient) > 1
        and len(toclient[1]) == SETUP_SUCCESS_LEN
        and _random_looking(toclient[1], MIN_ENTROPY_FRAME)
    ):
        score += 0.15
        steps.append("setup_success_44")
    return round(score, 2), steps


def inspect(payload: FlowPayload) -> FamilyResult:
    features = dict.fromkeys(FEATURES, 0.0)
    if payload.toserver:
        features["sig_first_toserver_entropy"] = round(shannon_entropy(payload.toserver[0]), 3)
    if payload.toclient:
        features["sig_first_toclient_entropy"] = round(shannon_entropy(payload.toclient[0]), 3)
    score, steps = shape_score(payload.toserver, payload.toclient)
    features["sig_sv2_handshake_shape"] = score
    features["sig_sv2_client_first_64"] = float("client_key_64" in steps)
    features["sig_sv2_server_first_234"] = float("server_reply_234" in steps)
    if not steps:
        return FamilyResult((), features)
    text = (
        "client's first payload is 64 random-looking bytes "
        f"({features['sig_first_toserver_entropy']:.1f} bits/byte), the shape of a Stratum V2 "
        "Noise NX ephemeral key"
    )
    if "server_reply_234" in steps:
        text += "; server answered 234 bytes, the size of the Noise NX reply"
    if "setup_success_44" in steps:
        text += "; then a 44-byte frame, the size of an encrypted SetupConnection.Success"
    text += " (shape only: other protocols can look the same)"
    evidence = Evidence(
        "sv2",
        "handshake_shape",
        "toserver",
        {"score": int(score * 100), "steps": ",".join(steps)},
        text,
        strength="shape",
    )
    return FamilyResult((evidence,), features)
