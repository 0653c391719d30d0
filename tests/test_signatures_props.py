"""Property tests: every signature parser takes arbitrary bytes without raising.

Payload prefixes come from the network: cut anywhere, corrupted, or hostile. Each parser is
fed random bytes, random lists of packets, and real samples that are cut, spliced and bit-
flipped; none may raise, and `inspect` must report no recognizer errors. Message-level
recognizers must not depend on where TCP happened to split the stream.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdet.signatures import SIGNATURE_FEATURES, http, inspect, jsonrpc, ssh, sv2, tls, tunnel
from flowdet.signatures.agents import miner_agent
from flowdet.signatures.evidence import mask_account, printable, shannon_entropy

SAMPLES = json.loads((Path(__file__).parent / "data" / "signatures" / "samples.json").read_text())
REAL_STREAMS = [
    b"".join(bytes.fromhex(h) for h in s[d])
    for s in SAMPLES.values()
    for d in ("toserver", "toclient")
]
PREFIXES = [
    b"{",
    b'{"method":"mining.',
    b"SSH-2.0-",
    b"\x16\x03\x01",
    b"\x16\x03\x03",
    b"POST / HTTP/1.1\r\n",
    b"\x05\x01\x00\x05\x01\x00\x03",
    b"\x04\x01\x0d\x05\x00\x00\x00\x01u\x00",
    b"CONNECT h:1 HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n",
]

# SIG_EXAMPLES=5000 for a longer hunt; 300 keeps CI quick.
settings.register_profile(
    "signatures",
    max_examples=int(os.environ.get("SIG_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("signatures")

packets = st.lists(st.binary(max_size=300), max_size=5)


@st.composite
def mutated_real(draw) -> bytes:
    """A real stream, cut, with a few bytes replaced, maybe with a protocol prefix glued on."""
    data = bytearray(draw(st.sampled_from(REAL_STREAMS)))
    cut = draw(st.integers(0, len(data)))
    data = data[:cut]
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = bytearray(draw(st.sampled_from(PREFIXES))) + data
    return bytes(data)


any_stream = st.one_of(
    st.binary(max_size=1200),
    mutated_real(),
    st.sampled_from(PREFIXES).flatmap(lambda p: st.binary(max_size=400).map(lambda b: p + b)),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return [p for p in out if p]


@PROFILE
@given(toserver=packets, toclient=packets)
def test_inspect_random_packets(toserver, toclient):
    r = inspect(toserver, toclient)
    assert r.errors == ()
    assert r.features.shape == (len(SIGNATURE_FEATURES),)
    assert all(math.isfinite(v) for v in r.features.tolist())
    for ev in r.evidence:
        assert ev.text.isprintable()


@PROFILE
@given(a=any_stream, b=any_stream, cuts=st.lists(st.integers(0, 2000), max_size=3))
def test_inspect_mutated_real_streams(a, b, cuts):
    r = inspect(split(a, cuts), split(b, cuts))
    assert r.errors == ()
    assert np.isfinite(r.features).all()


@PROFILE
@given(data=any_stream)
def test_each_parser_on_arbitrary_bytes(data):
    ssh.parse_banner(data)
    ssh.parse_kexinit(data)
    side = ssh.parse_side(data)
    if side.kexinit is not None:
        ssh.hassh(side.kexinit)
        ssh.hassh_server(side.kexinit)
        assert len(side.kexinit.lists) <= 10
    hello = tls.parse_client_hello(data)
    if hello is not None:
        tls.ja3(hello)
        tls.ja4(hello)
        if hello.sni is not None:
            tls.poolish(hello.sni)
    server_hello = tls.parse_server_hello(data)
    if server_hello is not None:
        tls.ja3s(server_hello)
    for msg in http.parse_http_stream(data):
        msg.header("host")
    msgs = jsonrpc.messages_from_stream(data)
    assert len(msgs) <= jsonrpc.MAX_MESSAGES
    sv2.shape_score((data,), (data,))
    tunnel.find_tunnel(data, data)
    tunnel.find_tunnel(data, b"\x05\x00\x05\x00\x00\x03\x04abcd\x00\x01" + data)
    assert 0.0 <= shannon_entropy(data) <= 8.0


@PROFILE
@given(text=st.text(max_size=300))
def test_text_helpers(text):
    assert printable(text).isprintable()
    assert len(printable(text)) <= 80
    mask_account(text)
    miner_agent(text)
    tls.poolish(text)


@PROFILE
@given(
    name=st.sampled_from(
        ["stratum_cgminer", "stratum_zcash", "monero_xmrig_login", "eth_getwork_http"]
    ),
    cuts=st.lists(st.integers(0, 5000), max_size=6),
)
def test_mining_evidence_does_not_depend_on_packet_boundaries(name, cuts):
    sample = SAMPLES[name]
    toserver = b"".join(bytes.fromhex(h) for h in sample["toserver"])
    toclient = b"".join(bytes.fromhex(h) for h in sample["toclient"])

    def mining(result):
        return {
            (e.family, e.name, e.direction, str(e.detail.get("method")))
            for e in result.mining_evidence
        }

    whole = inspect([toserver], [toclient])
    assert whole.is_mining
    assert mining(inspect(split(toserver, cuts), split(toclient, cuts))) == mining(whole)


@PROFILE
@given(
    cipher=st.sampled_from(sorted(ssh.CIPHERS)),
    mac=st.sampled_from(
        sorted(ssh.MACS)
        + [m + "-etm@openssh.com" for m in ("hmac-sha1", "hmac-sha2-256", "hmac-sha2-512")]
    ),
    n=st.integers(0, 40000),
)
def test_channel_data_size_invariants(cipher, mac, n):
    """RFC 4253 6: padding 4..255, the encrypted part a multiple of the block size."""
    size = ssh.channel_data_wire_size(cipher, mac, n)
    assert size is not None
    block, tag = ssh.CIPHERS[cipher]
    mac_len, etm = (tag, True) if tag else ssh._mac_info(mac)
    body = size - mac_len
    padding = body - (4 + 1 + 9 + n)
    assert 4 <= padding < 4 + block
    assert (body - (4 if etm else 0)) % block == 0
