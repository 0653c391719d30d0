"""Unit tests of the signature recognizers on real message samples and published test vectors.

Samples (tests/data/signatures/samples.json, provenance in its README) come from the
mining-real corpus and from local OpenSSH/OpenSSL runs; reference fingerprints there were
computed by tshark. Published vectors: HASSH's README (Cyberduck), JA4's technical details.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from flowdet.signatures import (
    SIGNATURE_FEATURES,
    FlowPayload,
    families,
    getwork,
    http,
    inspect,
    inspect_many,
    inspect_payload,
    jsonrpc,
    ssh,
    stratum,
    sv2,
    tls,
)
from flowdet.signatures.agents import miner_agent
from flowdet.signatures.evidence import mask_account, shannon_entropy

SAMPLES = json.loads((Path(__file__).parent / "data" / "signatures" / "samples.json").read_text())


def sample(name: str) -> tuple[list[bytes], list[bytes]]:
    s = SAMPLES[name]
    return [bytes.fromhex(h) for h in s["toserver"]], [bytes.fromhex(h) for h in s["toclient"]]


def names(result, family: str | None = None) -> set[tuple[str, str]]:
    return {
        (e.name, str(e.detail.get("method", "")))
        for e in result.evidence
        if family is None or e.family == family
    }


# ---------------------------------------------------------------- stratum


def test_stratum_cgminer_sample():
    r = inspect(*sample("stratum_cgminer"))
    assert r.is_mining and not r.errors
    texts = [e.text for e in r.evidence]
    assert 'client sent stratum mining.subscribe (agent "cgminer/3.7.2")' in texts
    assert 'client sent stratum mining.authorize (worker "Bitcoin")' in texts
    assert names(r, "stratum") >= {
        ("client_method", "mining.subscribe"),
        ("client_method", "mining.authorize"),
        ("subscribe_result", ""),
        ("server_method", "mining.set_difficulty"),
        ("server_method", "mining.notify"),
    }
    for feature, value in {
        "sig_stratum_client_method": 1,
        "sig_stratum_subscribe": 1,
        "sig_stratum_authorize": 1,
        "sig_stratum_submit": 0,
        "sig_stratum_n_client_methods": 2,
        "sig_stratum_server_notify": 1,
        "sig_stratum_subscribe_result": 1,
        "sig_stratum_miner_agent": 1,
        "sig_stratum_ethereum": 0,
        "sig_stratum_equihash": 0,
    }.items():
        assert r.feature(feature) == value, feature


def test_stratum_zcash_sample_is_equihash_with_cut_submit():
    toserver, toclient = sample("stratum_zcash")
    r = inspect(toserver, toclient)
    assert r.feature("sig_stratum_equihash") == 1
    assert r.feature("sig_stratum_submit") == 1
    methods = {e.detail["method"] for e in r.evidence if e.name == "client_method"}
    assert methods == {
        "mining.subscribe",
        "mining.authorize",
        "mining.extranonce.subscribe",
        "mining.submit",
    }
    submit = next(e for e in r.evidence if e.detail.get("method") == "mining.submit")
    assert submit.detail.get("partial") == 1  # the sample cuts the 2.8 KB share short
    assert submit.detail["worker"] == "kvetak.worker1"
    assert stratum.dialect({k: r.feature(k) for k in stratum.FEATURES}) == "ZCash/Equihash stratum"
    # The equihash mark must come from the cut solution or set_target, not from sheer luck:
    only_client = inspect(toserver, [])
    assert only_client.feature("sig_stratum_equihash") == 1  # from the solution-sized hex


@pytest.mark.parametrize("split_at", range(1, 70, 7))
def test_stratum_message_split_across_packets(split_at):
    line = b'{"id": 18, "method": "mining.subscribe", "params": ["cgminer/3.7.2"]}\n'
    r = inspect([line[:split_at], line[split_at:]], [])
    assert ("client_method", "mining.subscribe") in names(r)


def test_stratum_several_messages_per_packet_whitespace_crlf():
    packet = (
        b'  \r\n{"id":1,"method":"mining.subscribe","params":["bfgminer/5.5.0"]}\r\n'
        b'\t{"id":2,"method":"mining.authorize","params":["wallet.rig1","x"]}\r\n'
        b'{"id":3,"method":"mining.suggest_difficulty","params":[512]}'
    )
    r = inspect([packet], [])
    assert r.feature("sig_stratum_n_client_methods") == 3
    assert r.feature("sig_stratum_miner_agent") == 1


def test_ethereum_stratum_dialect():
    # NiceHash EthereumStratum/1.0.0: the protocol name is the second subscribe parameter.
    client = (
        b'{"id":1,"method":"mining.subscribe",'
        b'"params":["ethminer 0.19.0","EthereumStratum/1.0.0"]}\n'
    )
    server = (
        b'{"id":1,"result":[["mining.notify","ae6812eb4cd7735a302a8a9dd95cf71f",'
        b'"EthereumStratum/1.0.0"],"080c"],"error":null}\n'
        b'{"id":null,"method":"mining.set_difficulty","params":[0.5]}\n'
    )
    r = inspect([client], [server])
    assert r.feature("sig_stratum_ethereum") == 1
    sub = next(e for e in r.evidence if e.detail.get("method") == "mining.subscribe")
    assert sub.detail["protocol"] == "EthereumStratum/1.0.0"
    assert r.feature("sig_stratum_subscribe_result") == 1


def test_wallet_is_masked_in_evidence():
    wallet = (
        "47mr7jYTroxQMwdKoPQuJoc9Vs9S9qCUAL6Ek4qyNFWJdqgBZRn4RYY2"
        "QjQfqEMJZVWPscupSgaqmUn1dpdUTC4fQsu3yjN"
    )
    line = json.dumps({"id": 2, "method": "mining.authorize", "params": [f"{wallet}.rig1", "x"]})
    r = inspect([line.encode() + b"\n"], [])
    ev = next(e for e in r.evidence if e.detail.get("method") == "mining.authorize")
    assert ev.detail["worker"] == "47mr7j…3yjN.rig1"
    assert wallet not in ev.text and "47mr7j…3yjN.rig1" in ev.text
    assert mask_account("0x4b999ba68e017854ffb6b494bc2ddb9ef02bd745") == "0x4b99…d745"
    assert mask_account("kvetak.worker1") == "kvetak.worker1"


def test_server_only_stratum_is_mining_evidence():
    notify = b'{"id":null,"method":"mining.notify","params":["1f","00ab",true]}\n'
    r = inspect([b"\x00"], [notify])
    assert r.is_mining and r.feature("sig_stratum_server_notify") == 1


def test_stratum_roles_swapped_mid_flow():
    """A capture that starts mid-flow can make the pool the flow's initiator."""
    pool_side = b'{"id":null,"method":"mining.notify","params":["1f","00ab",true]}\n'
    miner_side = b'{"id":9,"method":"mining.submit","params":["w.1","1f","00","5f","01"]}\n'
    r = inspect([pool_side], [miner_side])
    assert r.is_mining
    notify = next(e for e in r.evidence if e.detail.get("method") == "mining.notify")
    assert notify.direction == "toserver" and notify.detail["roles_swapped"] == 1
    assert notify.text.startswith("initiator sent stratum mining.notify")
    submit = next(e for e in r.evidence if e.detail.get("method") == "mining.submit")
    assert submit.direction == "toclient" and "swapped" in submit.text
    assert r.feature("sig_stratum_submit") == r.feature("sig_stratum_server_notify") == 1


def test_stratum_client_namespace_alone_is_a_hint():
    r = inspect([b"{}"], [b'{"id":null,"method":"client.reconnect","params":[]}\n'])
    assert not r.is_mining
    assert [e.strength for e in r.evidence if e.family == "stratum"] == ["hint"]


@pytest.mark.parametrize(
    "client",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}\n',
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":1}}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"login","params":["alice","secret"]}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"login","params":{"user":"alice"}}\n',
        b'{"jsonrpc":"2.0","id":8,"method":"submit","params":{"form":"x"}}\n',
        b'{"jsonrpc":"2.0","id":9,"method":"job","params":{"name":"build"}}\n',
        b'{"result":true}\n{"result":[["not.mining","x"]]}\n',
        b'{"type":"subscribe","channel":"mining.news"}\n',
    ],
)
def test_other_json_rpc_is_not_mining(client):
    r = inspect([client], [client])
    assert not r.is_mining, [e.text for e in r.evidence]


# ---------------------------------------------------------------- monero


def test_monero_nanopool_sample():
    r = inspect(*sample("monero_xmrig_login"))
    assert r.is_mining
    login = next(e for e in r.evidence if e.name == "login")
    assert login.family == "monero" and login.direction == "toserver"
    assert login.detail["agent"] == "xmr/1.0"
    assert login.detail["login"] == "47mr7j…3yjN"
    job = next(e for e in r.evidence if e.name == "job")
    assert job.detail["job_id"] == "6774" and job.detail["target"] == "69ba0000"
    assert r.feature("sig_monero_login") == r.feature("sig_monero_job") == 1
    assert r.feature("sig_monero_miner_agent") == 1


def test_monero_xmrig6_login_submit_keepalive():
    login = {
        "id": 1,
        "jsonrpc": "2.0",
        "method": "login",
        "params": {
            "login": "4AdUndXHHZ6cfufTMvppY6JwXNouMBzSkbLYfpAV5Usx3skxNgYeYTRj5Uzqt"
            "ReoS44qo9mtmXCqY45DJ852K5Jv2684Rge",
            "pass": "x",
            "agent": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0",
            "algo": ["rx/0", "cn/r"],
            "rigid": "rig7",
        },
    }
    submit = {
        "id": 2,
        "jsonrpc": "2.0",
        "method": "submit",
        "params": {"id": "1", "job_id": "6775", "nonce": "8f0b0000", "result": "ab" * 32},
    }
    keep = {"id": 3, "jsonrpc": "2.0", "method": "keepalived", "params": {"id": "1"}}
    result = {
        "id": 1,
        "jsonrpc": "2.0",
        "result": {
            "id": "1",
            "job": {
                "blob": "07" * 76,
                "job_id": "6775",
                "target": "b88d0600",
                "seed_hash": "aa" * 32,
            },
            "status": "OK",
        },
    }
    lines = [(json.dumps(m) + "\n").encode() for m in (login, submit, keep)]
    r = inspect(lines, [(json.dumps(result) + "\n").encode()])
    assert {e.name for e in r.evidence if e.family == "monero"} == {
        "login",
        "submit",
        "keepalived",
        "job",
    }
    ev = next(e for e in r.evidence if e.name == "login")
    assert ev.detail["algo"] == "rx/0,cn/r" and ev.detail["rigid"] == "rig7"
    assert "seed_hash present" in next(e.text for e in r.evidence if e.name == "job")


# ---------------------------------------------------------------- getwork / eth


def test_eth_getwork_http_sample():
    r = inspect(*sample("eth_getwork_http"))
    assert r.is_mining
    methods = {e.detail.get("method") for e in r.evidence if e.family == "getwork"}
    assert {"eth_submitHashrate", "eth_getWork"} <= methods
    assert r.feature("sig_eth_work") == 1 and r.feature("sig_eth_proxy_tcp") == 0
    assert r.feature("sig_eth_work_result") == 1  # parsed from a chunked HTTP response
    req = next(e for e in r.evidence if e.family == "http" and e.name == "request")
    assert req.detail["host"] == "pool.eth.pp.ua"
    assert "0x4b999ba68e017854ffb6b494bc2ddb9ef02bd745" not in req.text  # wallet masked


def test_getblocktemplate_with_mining_headers():
    body = b'{"id":0,"method":"getblocktemplate","params":[{"capabilities":["coinbasetxn"]}]}'
    req = (
        b"POST / HTTP/1.1\r\nHost: 10.0.0.5:8332\r\nUser-Agent: bfgminer/5.5.0\r\n"
        b"X-Mining-Extensions: longpoll midstate rollntime submitold\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    resp = b"HTTP/1.1 200 OK\r\nX-Long-Polling: /LP\r\nContent-Length: 2\r\n\r\n{}"
    r = inspect([req[:40], req[40:]], [resp])
    assert r.is_mining
    assert r.feature("sig_getwork") == r.feature("sig_getwork_mining_headers") == 1
    assert r.feature("sig_http_miner_agent") == r.feature("sig_http_post_json") == 1
    headers = {e.detail["header"] for e in r.evidence if e.name == "mining_header"}
    assert headers == {"x-mining-extensions", "x-long-polling"}


def test_eth_proxy_over_raw_tcp_and_pretty_http_body():
    login = (
        b'{"id":1,"jsonrpc":"2.0","method":"eth_submitLogin",'
        b'"params":["0x4b999ba68e017854ffb6b494bc2ddb9ef02bd745"],"worker":"rig1"}\n'
    )
    r = inspect([login], [])
    assert r.feature("sig_eth_proxy_tcp") == 1
    ev = next(e for e in r.evidence if e.family == "getwork")
    assert ev.detail["worker"] == "rig1" and ev.detail["login"] == "0x4b99…d745"
    pretty = b'{\n  "jsonrpc": "2.0",\n  "id": 3,\n  "method": "eth_getWork"\n}\n'
    req = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(pretty), pretty)
    assert inspect([req], []).feature("sig_eth_work") == 1


def test_http_parsing_keepalive_and_chunked():
    stream = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnopHTTP/1.1 200 OK\r\nContent-Le"
    )
    msgs = http.parse_http_stream(stream)
    assert [m.status for m in msgs] == [200, 404, 200]
    assert msgs[0].body == b"abcdefg" and msgs[0].complete
    assert msgs[1].body == b"nop" and msgs[1].complete
    assert not msgs[2].complete


def test_http_request_evidence():
    r = inspect(
        [b"GET /index.html HTTP/1.1\r\nHost: example.org\r\nUser-Agent: curl/8.0\r\n\r\n"], []
    )
    ev = [e for e in r.evidence if e.family == "http"]
    assert (
        ev[0].text == 'client sent HTTP GET /index.html (Host "example.org", User-Agent "curl/8.0")'
    )
    assert not r.is_mining and r.feature("sig_http_miner_agent") == 0


@pytest.mark.parametrize(
    ("agent", "product"),
    [
        ("cgminer/3.7.2", "cgminer"),
        ("XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0", "xmrig"),
        ("xmr-stak/2.10.8/ (Linux) ", "xmr-stak"),
        ("sgminer-5.6.1-nicehash-51", "sgminer"),
        ("ethminer 0.19.0", "ethminer"),
        ("lolMiner 1.76", "lolminer"),
        ("xmrig-proxy/6.21.0", "xmrig"),
        ("Mozilla/5.0 (cgminer)", None),
        ("curl/8.0", None),
        ("minecraft/1.20", None),
        ("", None),
    ],
)
def test_miner_agent(agent, product):
    assert miner_agent(agent) == product


# ---------------------------------------------------------------- stratum v2 shape


def _rand(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def test_sv2_full_handshake_shape():
    rng = random.Random(7)
    r = inspect([_rand(rng, 64), _rand(rng, 97)], [_rand(rng, 234), _rand(rng, 44)])
    assert r.feature("sig_sv2_handshake_shape") == 1.0
    ev = next(e for e in r.evidence if e.family == "sv2")
    assert ev.strength == "shape" and not ev.is_mining
    assert not r.is_mining  # a shape is a feature, never a verdict
    assert "64 random-looking bytes" in ev.text and "234 bytes" in ev.text


def test_sv2_shape_partial_and_negative():
    rng = random.Random(8)
    assert inspect([_rand(rng, 64)], []).feature("sig_sv2_handshake_shape") == pytest.approx(0.4)
    assert inspect([_rand(rng, 63)], [_rand(rng, 234)]).feature("sig_sv2_handshake_shape") == 0
    text64 = b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.10.0"]}\n'[:64]
    assert len(text64) == 64
    assert inspect([text64], []).feature("sig_sv2_client_first_64") == 0
    assert inspect([bytes(64)], []).feature("sig_sv2_handshake_shape") == 0


def test_sv2_entropy_cutoffs_hold_for_random_keys():
    """Every one of 5,000 random 64-byte keys and 234-byte replies passes; text never does."""
    rng = random.Random(11)
    for _ in range(5000):
        assert sv2._random_looking(rng.randbytes(64), sv2.MIN_ENTROPY_64)
        assert sv2._random_looking(rng.randbytes(234), sv2.MIN_ENTROPY_234)
    for raw in SAMPLES.values():
        for h in raw["toserver"]:
            head = bytes.fromhex(h)[:64]
            if len(head) == 64 and head[:1] in (b"{", b"P", b"G"):  # JSON and HTTP text
                assert not sv2._random_looking(head, sv2.MIN_ENTROPY_64)
    assert shannon_entropy(b"") == 0 and shannon_entropy(bytes(range(256))) == 8


def test_sv2_false_positive_is_explicit():
    """Any protocol that opens with 64 random bytes gets the same first-step score: documented
    in sv2's docstring, and the reason the recognizer yields shape evidence only."""
    assert "any protocol whose initiator opens with 64 random-looking bytes" in sv2.__doc__.replace(
        "\n", " "
    )
    rng = random.Random(9)
    obfuscated = inspect([_rand(rng, 64), _rand(rng, 300)], [_rand(rng, 512)])
    assert obfuscated.feature("sig_sv2_handshake_shape") == pytest.approx(0.55)
    assert not obfuscated.is_mining


# ---------------------------------------------------------------- ssh


def _kexinit_packet(lists: list[str], cookie: bytes = b"\x11" * 16) -> bytes:
    payload = bytes([20]) + cookie
    for value in lists:
        payload += struct.pack(">I", len(value)) + value.encode()
    payload += b"\x00" + b"\x00\x00\x00\x00"
    padding = 8 - ((5 + len(payload)) % 8)
    if padding < 4:
        padding += 8
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + bytes(padding)


# HASSH README, "Example 1": Cyberduck 6.7.1's lists and its published hassh.
CYBERDUCK = {
    "kex": "curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp521,"
    "ecdh-sha2-nistp384,ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha1,"
    "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,"
    "diffie-hellman-group15-sha512,diffie-hellman-group16-sha512,diffie-hellman-group17-sha512,"
    "diffie-hellman-group18-sha512,diffie-hellman-group14-sha256@ssh.com,"
    "diffie-hellman-group15-sha256,diffie-hellman-group15-sha256@ssh.com,"
    "diffie-hellman-group15-sha384@ssh.com,diffie-hellman-group16-sha256,"
    "diffie-hellman-group16-sha384@ssh.com,diffie-hellman-group16-sha512@ssh.com,"
    "diffie-hellman-group18-sha512@ssh.com",
    "enc": "aes128-cbc,aes128-ctr,aes192-cbc,aes192-ctr,aes256-cbc,aes256-ctr,blowfish-cbc,"
    "blowfish-ctr,cast128-cbc,cast128-ctr,idea-cbc,idea-ctr,serpent128-cbc,serpent128-ctr,"
    "serpent192-cbc,serpent192-ctr,serpent256-cbc,serpent256-ctr,3des-cbc,3des-ctr,"
    "twofish128-cbc,twofish128-ctr,twofish192-cbc,twofish192-ctr,twofish256-cbc,"
    "twofish256-ctr,twofish-cbc,arcfour,arcfour128,arcfour256",
    "mac": "hmac-sha1,hmac-sha1-96,hmac-md5,hmac-md5-96,hmac-sha2-256,hmac-sha2-512",
    "comp": "zlib@openssh.com,zlib,none",
}


def test_hassh_published_cyberduck_value():
    c = CYBERDUCK
    packet = _kexinit_packet(
        [c["kex"], "ssh-rsa", c["enc"], c["enc"], c["mac"], c["mac"], c["comp"], c["comp"], "", ""]
    )
    stream = b"SSH-2.0-Cyberduck/6.7.1.28683 (Mac OS X/10.13.6) (x86_64)\r\n" + packet
    side = ssh.parse_side(stream)
    assert side.banner.software == "Cyberduck/6.7.1.28683"
    assert side.banner.comments == "(Mac OS X/10.13.6) (x86_64)"
    assert side.kexinit.complete and side.kexinit.cookie == b"\x11" * 16
    assert ssh.hassh(side.kexinit)[1] == "8a8ae540028bf433cd68356c1b9e8d5b"


def test_openssh_sample_hassh_matches_tshark():
    toserver, toclient = sample("openssh_session")
    ref = SAMPLES["openssh_session"]["reference"]
    client, server = ssh.parse_side(b"".join(toserver)), ssh.parse_side(b"".join(toclient))
    assert ssh.hassh(client.kexinit)[1] == ref["hassh"]
    assert ssh.hassh_server(server.kexinit)[1] == ref["hasshServer"]
    r = inspect(toserver, toclient)
    assert r.feature("sig_ssh_banner") == r.feature("sig_ssh_client_is_openssh") == 1
    assert r.feature("sig_ssh_client_kexinit") == r.feature("sig_ssh_server_kexinit") == 1
    assert r.feature("sig_ssh_keystroke_size") == 36  # chacha20-poly1305 negotiated
    assert r.feature("sig_ssh_aead") == 1
    assert not r.is_mining
    kex = next(e for e in r.evidence if e.name == "kexinit" and e.direction == "toserver")
    assert kex.detail["hassh"] == ref["hassh"]


def test_ssh_kexinit_cut_by_prefix_limit():
    """1 KB per direction cuts OpenSSH 9's KEXINIT: no HASSH, no guessing, lists so far kept."""
    toserver, toclient = sample("openssh_session")
    full = b"".join(toserver)
    cut = ssh.parse_side(full[:700])
    assert cut.kexinit is not None and not cut.kexinit.complete
    assert ssh.hassh(cut.kexinit) is None
    assert cut.kexinit.lists[0] == ssh.parse_side(full).kexinit.lists[0]
    r = inspect([full[:700]], toclient)
    assert r.feature("sig_ssh_client_kexinit") == 0
    assert any("cut short" in e.text for e in r.evidence)


def test_ssh_banner_after_other_lines_and_negotiation():
    stream = b"Welcome\r\nno shells here\r\nSSH-2.0-dropbear_2022.83\r\n"
    banner, offset = ssh.parse_banner(stream)
    assert banner.software == "dropbear_2022.83" and offset == len(stream)
    assert ssh.parse_banner(b"HTTP/1.1 200 OK\r\n")[0] is None
    assert ssh.negotiate(("a", "b", "c"), ("c", "b")) == "b"
    assert ssh.negotiate(("a",), ("b",)) is None


@pytest.mark.parametrize(
    ("cipher", "mac", "size"),
    [
        # see ssh.ssh_packet_overhead's docstring for the arithmetic
        ("chacha20-poly1305@openssh.com", None, 36),
        ("aes128-gcm@openssh.com", "hmac-sha2-256", 36),
        ("aes128-ctr", "hmac-sha2-256", 64),
        ("aes256-ctr", "hmac-sha2-256-etm@openssh.com", 52),
        ("aes128-ctr", "hmac-sha1", 52),
        ("aes128-ctr", "umac-64@openssh.com", 40),
        ("aes128-ctr", "hmac-sha2-512-etm@openssh.com", 84),
        ("3des-cbc", "hmac-md5", 40),
        ("aes128-ctr", None, None),  # MAC unknown: no guess
        ("rot13", "hmac-sha1", None),
    ],
)
def test_keystroke_wire_size(cipher, mac, size):
    assert ssh.ssh_packet_overhead(cipher, mac) == size


def test_nested_keystroke_size():
    inner = ("chacha20-poly1305@openssh.com", None)
    assert ssh.nested_keystroke_size(inner, inner) == ssh.channel_data_wire_size(
        "chacha20-poly1305@openssh.com", None, 36
    )
    assert ssh.channel_data_wire_size("chacha20-poly1305@openssh.com", None, 36) == 76


# ---------------------------------------------------------------- tls


def _client_hello(
    ciphers: list[int], exts: list[tuple[int, bytes]], version: int = 0x0303
) -> bytes:
    ext_bytes = b"".join(struct.pack(">HH", t, len(d)) + d for t, d in exts)
    body = struct.pack(">H", version) + bytes(32) + b"\x00"
    body += struct.pack(">H", 2 * len(ciphers)) + struct.pack(f">{len(ciphers)}H", *ciphers)
    body += b"\x01\x00" + struct.pack(">H", len(ext_bytes)) + ext_bytes
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def _ja4_vector_hello(ciphers_hex: str, exts_hex: str, sigs_hex: str, grease: bool) -> bytes:
    sigs = [int(x, 16) for x in sigs_hex.split(",")]
    bodies = {
        0x0000: b"\x00\x0e\x00\x00\x0bexample.com",
        0x0010: b"\x00\x0c\x02h2\x08http/1.1",
        0x002B: b"\x06\x1a\x1a\x03\x04\x03\x03" if grease else b"\x04\x03\x04\x03\x03",
        0x000D: struct.pack(">H", 2 * len(sigs)) + struct.pack(f">{len(sigs)}H", *sigs),
    }
    exts = [(int(x, 16), bodies.get(int(x, 16), b"")) for x in exts_hex.split(",")]
    ciphers = [int(x, 16) for x in ciphers_hex.split(",")]
    if grease:  # GREASE must be ignored everywhere
        ciphers.insert(0, 0x2A2A)
        exts.insert(0, (0xDADA, b""))
        exts.append((0x1A1A, b"\x00"))
    return _client_hello(ciphers, exts)


# (JA4_ro lists, expected JA4): the worked example of FoxIO's JA4.md, and a Chrome 143 hello's
# JA4 and JA4_ro as reported by tls.browserleaks.com (quoted in service0427/v2_cp_app, tls.md).
JA4_VECTORS = [
    (
        "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
        "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015",
        "0403,0804,0401,0503,0805,0501,0806,0601",
        "t13d1516h2_8daaf6152771_e5627efa2ab1",
    ),
    (
        "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
        "002d,0033,0010,fe0d,0017,44cd,0000,000b,000a,002b,ff01,0023,0012,0005,000d,001b",
        "0403,0804,0401,0503,0805,0501,0806,0601",
        "t13d1516h2_8daaf6152771_d8a2da3f94cd",
    ),
]


@pytest.mark.parametrize("grease", [False, True])
@pytest.mark.parametrize(("ciphers", "exts", "sigs", "expected"), JA4_VECTORS)
def test_ja4_published_vectors(ciphers, exts, sigs, expected, grease):
    hello = tls.parse_client_hello(_ja4_vector_hello(ciphers, exts, sigs, grease))
    assert hello is not None and hello.complete
    assert hello.sni == "example.com" and hello.alpn == (b"h2", b"http/1.1")
    assert tls.ja4(hello) == expected


def test_ja4_alpn_rules():
    assert tls._ja4_alpn(()) == "00"
    assert tls._ja4_alpn((b"http/1.1",)) == "h1"
    assert tls._ja4_alpn((b"\xab",)) == "ab"
    assert tls._ja4_alpn((b"\xab\xcd",)) == "ad"
    assert tls._ja4_alpn((b"0\xab\xcd1",)) == "01"
    assert tls._ja4_alpn((b"x",)) == "xx"


def test_openssl_sample_matches_tshark_ja3():
    toserver, toclient = sample("openssl_client_hello")
    ref = SAMPLES["openssl_client_hello"]["reference"]
    hello = tls.parse_client_hello(b"".join(toserver))
    assert tls.ja3(hello)[1] == ref["ja3"]
    assert tls.ja3s(tls.parse_server_hello(b"".join(toclient)))[1] == ref["ja3s"]
    r = inspect(toserver, toclient)
    assert r.feature("sig_tls_client_hello") == r.feature("sig_tls_server_hello") == 1
    assert r.feature("sig_tls_sni_poolish") == 1 and r.feature("sig_tls_version") == 13
    assert r.feature("sig_tls_alpn_http") == 1 and r.feature("sig_tls_grease") == 0
    hint = next(e for e in r.evidence if e.name == "sni_poolish")
    assert hint.strength == "hint" and hint.detail["match"] == "nanopool"
    assert not r.is_mining  # a pool-like name is a hint, not proof


def test_windows_client_hello_from_corpus():
    toserver, toclient = sample("tls_windows_update")
    r = inspect(toserver, toclient)
    hello = next(e for e in r.evidence if e.name == "client_hello")
    assert hello.detail["sni"] == "array609-prod.do.dsp.mp.microsoft.com"
    assert hello.detail["alpn"] == "h2,http/1.1" and hello.detail["version"] == "1.2"
    assert r.feature("sig_tls_sni_poolish") == 0 and not r.is_mining
    server = next(e for e in r.evidence if e.name == "server_hello")
    assert server.detail["cipher"] == "0xc02f"


def test_truncated_client_hello_keeps_what_fits():
    full = b"".join(sample("openssl_client_hello")[0])
    whole = tls.parse_client_hello(full)
    sni_end = full.find(b"xmr-eu1.nanopool.org") + len(b"xmr-eu1.nanopool.org")
    for cut in range(10, len(full)):
        hello = tls.parse_client_hello(full[:cut])
        if hello is None:
            continue
        assert not hello.complete and tls.ja3(hello) is None and tls.ja4(hello) is None
        assert hello.ciphers == whole.ciphers[: len(hello.ciphers)]
        if cut >= sni_end + 8:
            assert hello.sni == "xmr-eu1.nanopool.org"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("xmr-eu1.nanopool.org", "nanopool"),
        ("eu1.ethermine.org", "ethermine"),
        ("pool.supportxmr.com", "supportxmr"),
        ("zec-eu.suprnova.cc", "suprnova"),
        ("pool.eth.pp.ua", "word pool"),
        ("stratum.example.net", "word stratum"),
        ("xmrpool.eu", "word xmrpool"),
        ("btc-mining.example.com", "word mining"),
        ("minecraft.net", None),
        ("examine.com", None),
        ("www.google.com", None),
        ("array609-prod.do.dsp.mp.microsoft.com", None),
        ("spoolsv.example.org", None),
    ],
)
def test_poolish(name, match):
    assert tls.poolish(name) == match


def test_grease():
    assert all(tls.is_grease(v) for v in (0x0A0A, 0x1A1A, 0xFAFA))
    assert not any(tls.is_grease(v) for v in (0x0A1A, 0x1301, 0x0000, 0xAAAA + 1))


# ---------------------------------------------------------------- API


def test_feature_names_are_stable_and_complete():
    assert len(SIGNATURE_FEATURES) == len(set(SIGNATURE_FEATURES))
    assert all(n.startswith("sig_") for n in SIGNATURE_FEATURES)
    declared = [n for _, _, ns in families.FAMILIES for n in ns]
    assert list(SIGNATURE_FEATURES) == declared
    for module in (stratum, getwork, sv2, ssh, tls, http):
        assert set(module.FEATURES) <= set(SIGNATURE_FEATURES)
    r = inspect([], [])
    assert r.features.shape == (len(SIGNATURE_FEATURES),) and r.features.dtype == np.float32
    assert not r.features.any() and r.evidence == ()


def test_inspect_many_matches_inspect():
    flows = [sample(n) for n in SAMPLES]
    flows.append(([], []))
    matrix, evidence, failures = inspect_many(flows)
    assert matrix.shape == (len(flows), len(SIGNATURE_FEATURES)) and failures == 0
    for i, (toserver, toclient) in enumerate(flows):
        one = inspect(toserver, toclient)
        np.testing.assert_array_equal(matrix[i], one.features)
        assert evidence[i] == one.evidence


def test_recognizer_failure_is_counted_not_raised(monkeypatch):
    def broken(payload):
        raise ValueError("boom")

    fams = list(families.FAMILIES)
    fams[0] = ("stratum", broken, stratum.FEATURES)
    monkeypatch.setattr(families, "FAMILIES", tuple(fams))
    toserver, toclient = sample("monero_xmrig_login")
    r = inspect_payload(FlowPayload.of(toserver, toclient))
    assert r.errors == ("stratum: ValueError: boom",)
    assert r.feature("sig_monero_login") == 1  # the other families still ran
    _, _, failures = inspect_many([(toserver, toclient), ([], [])])
    assert failures == 1


def test_evidence_text_is_one_printable_line():
    hostile = (
        b'{"id":1,"method":"mining.subscribe","params":["evil\\u0000\\n\\u001b[31m'
        + b"A" * 300
        + b'"]}\n'
    )
    for toserver, toclient in [sample(n) for n in SAMPLES] + [([hostile], [])]:
        for ev in inspect(toserver, toclient).evidence:
            assert ev.text.isprintable(), ev.text
            assert all(isinstance(v, (str, int)) for v in ev.detail.values())


def test_jsonrpc_partial_recovery():
    cut = (
        b'{"id": 4, "method": "mining.submit", "params": ["w.1","39f2","16ee7c58","4304","fd4005'
        + b"ab" * 200
    )
    (msg,) = jsonrpc.messages_from_stream(cut)
    assert msg.partial and msg.method == "mining.submit"
    assert msg.params[:4] == ["w.1", "39f2", "16ee7c58", "4304"]
    assert jsonrpc.messages_from_stream(b'{"no": "method"') == ()


def test_md5_helpers_are_plain_md5():
    # HASSH and JA3 are defined as MD5 hex digests; make sure we do not salt or truncate
    kex = ssh.parse_side(
        b"SSH-2.0-x\r\n" + _kexinit_packet(["a", "h", "b", "b", "c", "c", "d", "d", "", ""])
    ).kexinit
    assert ssh.hassh(kex) == ("a;b;c;d", hashlib.md5(b"a;b;c;d").hexdigest())


# ---------------------------------------------------------------- proxy tunnels

STRATUM_SUBSCRIBE = b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.10.0"]}\n'


@pytest.mark.parametrize(
    ("client", "server", "kind", "target"),
    [
        # SOCKS5, no auth, IPv4 (RFC 1928): greeting, CONNECT, then the tunnelled bytes
        (
            [b"\x05\x01\x00", b"\x05\x01\x00\x01\x7f\x00\x36\x03\x38\x6c" + STRATUM_SUBSCRIBE],
            [b"\x05\x00", b"\x05\x00\x00\x01" + bytes(6)],
            "SOCKS5",
            "127.0.54.3:14444",
        ),
        # SOCKS5 with a domain name and username/password auth (RFC 1929), all coalesced
        (
            [
                b"\x05\x02\x00\x02"
                + b"\x01\x04user\x04pass"
                + b"\x05\x01\x00\x03\x0cpool.example"
                + b"\x0d\x05",
                STRATUM_SUBSCRIBE,
            ],
            [b"\x05\x02\x01\x00\x05\x00\x00\x01" + bytes(6)],
            "SOCKS5",
            "pool.example:3333",
        ),
        # SOCKS5 to IPv6
        (
            [b"\x05\x01\x00\x05\x01\x00\x04" + bytes(15) + b"\x01\x0d\x05" + STRATUM_SUBSCRIBE],
            [],
            "SOCKS5",
            "[::1]:3333",
        ),
        # SOCKS4 and SOCKS4a (domain after the user id, IP 0.0.0.1)
        (
            [b"\x04\x01\x0d\x05\x0a\x00\x00\x05rig\x00" + STRATUM_SUBSCRIBE],
            [b"\x00\x5a" + bytes(6)],
            "SOCKS4",
            "10.0.0.5:3333",
        ),
        (
            [b"\x04\x01\x0d\x05\x00\x00\x00\x01\x00pool.example\x00", STRATUM_SUBSCRIBE],
            [b"\x00\x5a" + bytes(6)],
            "SOCKS4a",
            "pool.example:3333",
        ),
        # HTTP CONNECT through a web proxy
        (
            [
                b"CONNECT pool.example:3333 HTTP/1.1\r\nHost: pool.example:3333\r\n\r\n",
                STRATUM_SUBSCRIBE,
            ],
            [b"HTTP/1.1 200 Connection established\r\n\r\n"],
            "HTTP CONNECT",
            "pool.example:3333",
        ),
    ],
)
def test_stratum_through_proxy_tunnels(client, server, kind, target):
    r = inspect(client, server)
    assert not r.errors
    proxy = next(e for e in r.evidence if e.family == "tunnel")
    assert (proxy.detail["kind"], proxy.detail["target"]) == (kind, target)
    assert r.is_mining
    sub = next(e for e in r.evidence if e.detail.get("method") == "mining.subscribe")
    assert sub.text.startswith(f"inside the {kind} tunnel to {target}: client sent stratum")
    assert r.feature("sig_tunnel_payload") == 1
    assert r.feature("sig_tunnel_socks" if kind.startswith("SOCKS") else "sig_tunnel_http_connect")


def test_tunnel_keeps_packet_boundaries_for_sv2_shape():
    rng = random.Random(5)
    client = [b"\x05\x01\x00", b"\x05\x01\x00\x01\x0a\x00\x00\x05\x0d\x05", rng.randbytes(64)]
    server = [b"\x05\x00", b"\x05\x00\x00\x01" + bytes(6), rng.randbytes(234)]
    r = inspect(client, server)
    assert r.feature("sig_sv2_handshake_shape") == pytest.approx(0.7)


@pytest.mark.parametrize(
    "client",
    [
        [b"\x05\x01\x00"],  # greeting only: no CONNECT yet
        [b"\x05" + bytes(40)],
        [b"\x04\x09garbage"],
        [b"CONNECTION: close\r\n"],
    ],
)
def test_not_a_tunnel(client):
    r = inspect(client, [])
    assert not any(e.family == "tunnel" for e in r.evidence)
    assert r.feature("sig_tunnel_socks") == r.feature("sig_tunnel_http_connect") == 0
