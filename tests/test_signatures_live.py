"""Signatures against real programs on loopback: OpenSSH and OpenSSL, captured with dumpcap.

Checks our HASSH/hasshServer and JA3/JA3S against tshark's own dissectors on fresh captures,
and the keystroke-size arithmetic (`ssh_packet_overhead`) against the packet sizes OpenSSH
really sends for each cipher/MAC pair. Servers run on 127.0.0.1 with throwaway configs and
keys in a temporary directory; every process started here is stopped by its PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from loopback import SSHD, capture, openssl_server, ssh_session, sshd, tshark_fields

from flowdet.signatures import ssh, tls
from flowdet.signatures.reference import flow_prefixes

needs_openssh = pytest.mark.skipif(
    not (Path(SSHD).exists() and shutil.which("ssh") and shutil.which("dumpcap")),
    reason="needs openssh-server, openssh-client and dumpcap",
)

# (cipher, MAC) pairs whose keystroke size the test checks on the wire.
CIPHER_MACS = [
    ("chacha20-poly1305@openssh.com", "hmac-sha2-256"),
    ("aes128-gcm@openssh.com", "hmac-sha2-256"),
    ("aes128-ctr", "hmac-sha2-256"),
    ("aes256-ctr", "hmac-sha2-256-etm@openssh.com"),
    ("aes128-ctr", "hmac-sha1"),
    ("aes128-ctr", "umac-64@openssh.com"),
]


@pytest.fixture(scope="module")
def openssh_capture(tmp_path_factory, root) -> tuple[Path, int]:
    """One capture with one session per (cipher, MAC) pair, each sending 1 then 37 bytes."""
    tmp = tmp_path_factory.mktemp("sshd")
    with sshd(tmp) as (port, key), capture(tmp / "ssh.pcapng", port) as pcap:
        for cipher, mac in CIPHER_MACS:
            ssh_session(port, key, cipher, mac, [b"x", b"y" * 36 + b"\n"])
    return pcap, port


@needs_openssh
@pytest.mark.slow
def test_hassh_matches_tshark(openssh_capture, tshark):
    pcap, port = openssh_capture
    rule = f"tcp.port=={port},ssh"
    ref_client = {
        r[0]: r[1]
        for r in tshark_fields(tshark, pcap, rule, "ssh.kex.hassh", ["tcp.stream", "ssh.kex.hassh"])
    }
    ref_server = {
        r[0]: r[1]
        for r in tshark_fields(
            tshark, pcap, rule, "ssh.kex.hasshserver", ["tcp.stream", "ssh.kex.hasshserver"]
        )
    }
    flows = flow_prefixes(pcap, tshark, max_packets=4, max_bytes=65536)
    assert len(flows) == len(CIPHER_MACS)
    for flow in flows:
        client = ssh.parse_side(b"".join(flow.toserver))
        server = ssh.parse_side(b"".join(flow.toclient))
        assert client.banner is not None and client.banner.software.startswith("OpenSSH_")
        assert client.kexinit is not None and client.kexinit.complete
        assert server.kexinit is not None and server.kexinit.complete
        assert ssh.hassh(client.kexinit)[1] == ref_client[str(flow.stream)]
        assert ssh.hassh_server(server.kexinit)[1] == ref_server[str(flow.stream)]


@needs_openssh
@pytest.mark.slow
def test_keystroke_sizes_match_openssh(openssh_capture, tshark):
    """A 1-byte and a 37-byte write show up as channel-data packets of the predicted sizes,
    in both directions (cat echoes them back), for every negotiated cipher/MAC pair."""
    pcap, port = openssh_capture
    flows = flow_prefixes(pcap, tshark, max_packets=4, max_bytes=65536)
    sizes = {}
    for line in tshark_fields(
        tshark,
        pcap,
        f"tcp.port=={port},ssh",
        "tcp.len > 0",
        ["tcp.stream", "tcp.srcport", "tcp.len"],
    ):
        sizes.setdefault(int(line[0]), []).append((int(line[1]) == port, int(line[2])))
    assert len(flows) == len(CIPHER_MACS)
    for flow, (cipher, _mac) in zip(
        sorted(flows, key=lambda f: f.stream), CIPHER_MACS, strict=True
    ):
        client = ssh.parse_side(b"".join(flow.toserver))
        server = ssh.parse_side(b"".join(flow.toclient))
        assert client.kexinit is not None and server.kexinit is not None
        negotiated = ssh.negotiate(client.kexinit.get("enc_c2s"), server.kexinit.get("enc_c2s"))
        assert negotiated == cipher
        used_mac = ssh.negotiate(client.kexinit.get("mac_c2s"), server.kexinit.get("mac_c2s"))
        one = ssh.ssh_packet_overhead(cipher, used_mac)
        big = ssh.channel_data_wire_size(cipher, used_mac, 37)
        assert one is not None and big is not None
        c2s = [n for from_server, n in sizes[flow.stream] if not from_server]
        s2c = [n for from_server, n in sizes[flow.stream] if from_server]
        assert one in c2s and big in c2s, (cipher, used_mac, one, big, c2s)
        assert one in s2c and big in s2c, (cipher, used_mac, one, big, s2c)


@pytest.fixture(scope="module")
def openssl_capture(tmp_path_factory, root) -> tuple[Path, list[str]]:
    """ClientHellos from openssl s_client (SNI + ALPN, and TLS 1.2 without SNI) and Python."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    tmp = tmp_path_factory.mktemp("tls")
    snis = ["pool.supportxmr.com", "", ""]
    with openssl_server(tmp) as port, capture(tmp / "tls.pcapng", port) as pcap:
        base = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
        subprocess.run(
            [*base, "-servername", snis[0], "-alpn", "h2,http/1.1"],
            input=b"",
            capture_output=True,
            timeout=10,
            check=False,
        )
        subprocess.run(
            [*base, "-tls1_2", "-noservername"],
            input=b"",
            capture_output=True,
            timeout=10,
            check=False,
        )
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", port)) as sock,
            ctx.wrap_socket(sock, server_hostname="localhost"),
        ):
            snis[2] = "localhost"
    return pcap, snis


@pytest.mark.slow
def test_ja3_matches_tshark(openssl_capture, tshark):
    pcap, snis = openssl_capture
    ref = {
        r[0]: r[1:]
        for r in tshark_fields(
            tshark,
            pcap,
            "tcp.port==1,tls",
            "tls.handshake.type == 1",
            ["tcp.stream", "tls.handshake.ja3", "tls.handshake.extensions_server_name"],
        )
    }
    ref_s = {
        r[0]: r[1]
        for r in tshark_fields(
            tshark,
            pcap,
            "tcp.port==1,tls",
            "tls.handshake.type == 2",
            ["tcp.stream", "tls.handshake.ja3s"],
        )
    }
    flows = flow_prefixes(pcap, tshark)
    assert len(flows) == 3
    for flow, sni in zip(sorted(flows, key=lambda f: f.stream), snis, strict=True):
        hello = tls.parse_client_hello(b"".join(flow.toserver))
        server_hello = tls.parse_server_hello(b"".join(flow.toclient))
        assert hello is not None and hello.complete and server_hello is not None
        assert tls.ja3(hello)[1] == ref[str(flow.stream)][0]
        assert tls.ja3s(server_hello)[1] == ref_s[str(flow.stream)]
        assert (hello.sni or "") == sni == ref[str(flow.stream)][1]
    first = tls.parse_client_hello(b"".join(sorted(flows, key=lambda f: f.stream)[0].toserver))
    assert first.alpn == (b"h2", b"http/1.1")
    assert tls.poolish(first.sni) == "supportxmr"
