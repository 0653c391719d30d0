"""Rebuild samples.json: short real message samples for tests/test_signatures.py.

Run from the repo root as root (dumpcap on loopback, a throwaway sshd):
    .venv/bin/python tests/data/signatures/make_samples.py

- mining samples: the first payload packets of single flows of ../shared/corpus/mining-real,
  each packet cut to MAX_SNIPPET bytes (individual messages, never whole captures);
- ssh samples: banner + KEXINIT of a local OpenSSH client and server (fresh keys, loopback),
  with tshark's ssh.kex.hassh / hasshserver as the independent reference values;
- tls samples: ClientHello/ServerHello of local openssl s_client/s_server and Python's ssl,
  with tshark's tls.handshake.ja3 / ja3s as the reference values.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from loopback import capture, openssl_server, ssh_session, sshd, tshark_fields  # noqa: E402

from flowdet.signatures.reference import flow_prefixes  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "mining-real"
MAX_SNIPPET = 600
# (sample name, capture, client port): one flow per mining dialect of the corpus.
CORPUS_FLOWS = [
    ("stratum_cgminer", "cgminer.s0.pcapng", 60642),
    ("stratum_zcash", "zec-eu.suprnova.cc.pcapng", 55566),
    ("monero_xmrig_login", "xmr-eu1.nanopool.org.pcapng", 55758),
    ("eth_getwork_http", "pool.eth.pp.ua.pcapng", 49417),
    ("tls_windows_update", "cgminer.s0.pcapng", 60659),
]


def corpus_samples(tshark: str) -> dict[str, dict]:
    out = {}
    for name, pcap, port in CORPUS_FLOWS:
        flow = next(f for f in flow_prefixes(CORPUS / pcap, tshark) if f.client_port == port)
        out[name] = {
            "provenance": f"../shared/corpus/mining-real/{pcap}, TCP flow from client port "
            f"{port}: first payload packets per direction, each cut to {MAX_SNIPPET} bytes",
            "toserver": [p[:MAX_SNIPPET].hex() for p in flow.toserver],
            "toclient": [p[:MAX_SNIPPET].hex() for p in flow.toclient],
        }
    return out


def ssh_samples(tshark: str, tmp: Path) -> dict[str, dict]:
    with sshd(tmp) as (port, key), capture(tmp / "ssh.pcapng", port) as pcap:
        ssh_session(port, key, "chacha20-poly1305@openssh.com", "hmac-sha2-256", [b"x"])
    rule = f"tcp.port=={port},ssh"
    hassh = tshark_fields(tshark, pcap, rule, "ssh.kex.hassh", ["ssh.kex.hassh"])[0][0]
    server = tshark_fields(tshark, pcap, rule, "ssh.kex.hasshserver", ["ssh.kex.hasshserver"])
    flow = flow_prefixes(pcap, tshark, max_packets=2, max_bytes=65536)[0]
    version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {
        "openssh_session": {
            "provenance": f"local {version} client and sshd on 127.0.0.1 (throwaway keys): "
            "banner and KEXINIT packets of both sides; reference values from tshark",
            "toserver": [p.hex() for p in flow.toserver],
            "toclient": [p.hex() for p in flow.toclient],
            "reference": {"hassh": hassh, "hasshServer": server[0][0]},
        }
    }


def tls_samples(tshark: str, tmp: Path) -> dict[str, dict]:
    with openssl_server(tmp) as port, capture(tmp / "tls.pcapng", port) as pcap:
        subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                "xmr-eu1.nanopool.org",
                "-alpn",
                "h2,http/1.1",
            ],
            input=b"",
            capture_output=True,
            timeout=10,
            check=False,
        )
    rule = "tcp.port==1,tls"
    ja3 = tshark_fields(tshark, pcap, rule, "tls.handshake.type==1", ["tls.handshake.ja3"])
    ja3s = tshark_fields(tshark, pcap, rule, "tls.handshake.type==2", ["tls.handshake.ja3s"])
    flow = flow_prefixes(pcap, tshark, max_packets=1, max_bytes=65536)[0]
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    return {
        "openssl_client_hello": {
            "provenance": f"local {version.strip()} s_client -servername xmr-eu1.nanopool.org "
            "-alpn h2,http/1.1 against s_server on 127.0.0.1: first packet per direction "
            "(ServerHello record only); reference values from tshark",
            "toserver": [flow.toserver[0].hex()],
            "toclient": [flow.toclient[0].hex()],
            "reference": {"ja3": ja3[0][0], "ja3s": ja3s[0][0]},
        }
    }


def main() -> None:
    tshark = shutil.which("tshark")
    assert tshark, "tshark is needed"
    samples: dict[str, dict] = {}
    samples |= corpus_samples(tshark)
    with tempfile.TemporaryDirectory() as tmp:
        samples |= ssh_samples(tshark, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        samples |= tls_samples(tshark, Path(tmp))
    out = Path(__file__).with_name("samples.json")
    out.write_text(json.dumps(samples, indent=1) + "\n")
    print(f"wrote {len(samples)} samples to {out}")


if __name__ == "__main__":
    main()
