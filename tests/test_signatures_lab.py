"""Signatures against the lab's pool and miner emulators (flowdet.lab.mining) on loopback.

The emulators were written from the protocol specifications by another hand than the
recognizers, so this is a cross-check of both: every dialect must be recognized from the
first payload packets tshark cuts out of a dumpcap capture, with the dialect-specific
features set. Emulated mining only: no hash is computed, nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loopback import capture, free_port, stop

from flowdet.signatures import inspect
from flowdet.signatures.reference import flow_prefixes

# dialect -> (extra miner args, features that must be 1, must the flow carry mining evidence)
DIALECTS: dict[str, tuple[list[str], list[str], bool]] = {
    "stratum1": ([], ["sig_stratum_subscribe", "sig_stratum_authorize"], True),
    "ethstratum": ([], ["sig_stratum_ethereum", "sig_stratum_subscribe"], True),
    "zcash": ([], ["sig_stratum_equihash", "sig_stratum_subscribe"], True),
    "monero": ([], ["sig_monero_login", "sig_monero_job"], True),
    "getwork": ([], ["sig_getwork", "sig_http_request"], True),
    "ethhttp": ([], ["sig_eth_work", "sig_http_request"], True),
    "ethproxy": ([], ["sig_eth_work", "sig_eth_proxy_tcp"], True),
    "sv2": ([], ["sig_sv2_client_first_64", "sig_sv2_server_first_234"], False),
}


def run_dialect(tmp: Path, dialect: str, miner_args: list[str], pool_args: list[str]) -> int:
    """Run one pool and one short miner session; return the pool's port."""
    port = free_port()
    py = sys.executable
    pool_cmd = [py, "-m", "flowdet.lab.mining.pool", "--dialect", dialect, "--bind", "127.0.0.1"]
    pool_cmd += ["--port", str(port), "--time-scale", "0.01", "--cert-dir", str(tmp), *pool_args]
    pool = subprocess.Popen(
        pool_cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert pool.stdout is not None
        listening = json.loads(pool.stdout.readline())
        assert listening["listening"][1] == port
        miner_cmd = [py, "-m", "flowdet.lab.mining.miner", "--dialect", dialect]
        miner_cmd += ["--pool", f"127.0.0.1:{port}", "--time-scale", "0.01", "--duration", "60"]
        miner = subprocess.run(
            [*miner_cmd, *miner_args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert miner.returncode == 0, miner.stderr[-500:]
    finally:
        stop(pool)
    return port


@pytest.fixture(scope="module")
def lab_capture(tmp_path_factory, root) -> tuple[Path, dict[str, int]]:
    tmp = tmp_path_factory.mktemp("labmining")
    ports: dict[str, int] = {}
    with capture(tmp / "lab.pcapng", 0, "tcp and host 127.0.0.1") as pcap:
        for dialect, (args, _, _) in DIALECTS.items():
            ports[dialect] = run_dialect(tmp, dialect, args, [])
        ports["stratum1+tls"] = run_dialect(
            tmp, "stratum1", ["--tls", "--sni", "stratum.pool.example"], ["--tls"]
        )
        socks_port = free_port()
        proxy_cmd = [sys.executable, "-m", "flowdet.lab.mining.socks5", "--bind", "127.0.0.1"]
        proxy = subprocess.Popen(
            [*proxy_cmd, "--port", str(socks_port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proxy.stdout is not None
            assert json.loads(proxy.stdout.readline())["listening"][1] == socks_port
            run_dialect(tmp, "monero", ["--socks", f"127.0.0.1:{socks_port}"], [])
        finally:
            stop(proxy)
        ports["monero+socks5"] = socks_port
    return pcap, ports


@pytest.mark.slow
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_lab_dialect_recognized(lab_capture, tshark, dialect):
    pcap, ports = lab_capture
    _, must, mining = DIALECTS[dialect]
    flows = [f for f in flow_prefixes(pcap, tshark) if f.server_port == ports[dialect]]
    assert flows, f"no {dialect} flow captured"
    for flow in flows:
        result = inspect(flow.toserver, flow.toclient)
        assert not result.errors
        assert result.is_mining == mining, [e.text for e in result.evidence]
        for name in must:
            assert result.feature(name) == 1, (dialect, name, [e.text for e in result.evidence])
        if dialect == "sv2":
            assert result.feature("sig_sv2_handshake_shape") >= 0.7


@pytest.mark.slow
def test_lab_stratum_over_tls(lab_capture, tshark):
    """Over TLS nothing of stratum shows; the ClientHello's SNI is a hint, not evidence."""
    pcap, ports = lab_capture
    flows = [f for f in flow_prefixes(pcap, tshark) if f.server_port == ports["stratum1+tls"]]
    assert flows
    for flow in flows:
        result = inspect(flow.toserver, flow.toclient)
        assert not result.is_mining
        assert result.feature("sig_tls_client_hello") == 1
        assert result.feature("sig_tls_sni_poolish") == 1
        hint = next(e for e in result.evidence if e.name == "sni_poolish")
        assert hint.detail["sni"] == "stratum.pool.example"


@pytest.mark.slow
def test_lab_monero_through_socks5(lab_capture, tshark):
    """The miner's flow goes to the SOCKS5 proxy: the handshake is unwrapped and the xmrig
    login inside is found, with the pool's address from the CONNECT request."""
    pcap, ports = lab_capture
    flows = [f for f in flow_prefixes(pcap, tshark) if f.server_port == ports["monero+socks5"]]
    assert flows
    for flow in flows:
        result = inspect(flow.toserver, flow.toclient)
        assert result.is_mining and result.feature("sig_tunnel_socks") == 1
        proxy = next(e for e in result.evidence if e.family == "tunnel")
        assert proxy.detail["kind"] == "SOCKS5" and proxy.detail["granted"] == 1
        login = next(e for e in result.evidence if e.name == "login")
        assert login.detail["tunnel"] == f"SOCKS5 tunnel to {proxy.detail['target']}"
