"""Where SSH user authentication ends (`find_auth_success`), on real clients and captures.

The post-auth columns (`ssh_auth_seen` and the three after it) hang on finding the server's
SSH_MSG_USERAUTH_SUCCESS. A size threshold on the request before it (>= 250 bytes) missed
every Dropbear client with an ed25519 key (228 bytes under chacha20-poly1305); the rule now
looks for the success's exact wire size under the negotiated toclient cipher/MAC.

Sequences below are signed payload sizes (+ toserver, - toclient) read from the lab's and
Zeek's captures named beside them; the live test makes fresh ones with OpenSSH's ssh and
Dropbear's dbclient against a throwaway sshd on 127.0.0.1, every key type, several ciphers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from loopback import SSHD, capture, free_port, stop, tshark_fields, wait_port

from flowdet.features import (
    FEATURE_NAMES,
    featurize,
    find_auth_success,
    post_auth_features,
    session_open_size,
)
from flowdet.flows import FlowConfig, iter_flow_blocks
from flowdet.signatures import ssh as sshsig


def _pay(signed: list[int]) -> list[tuple[int, int]]:
    return [(0 if v > 0 else 1, abs(v)) for v in signed]


def _seq(signed: list[int]) -> dict[str, list]:
    pay = _pay(signed)
    return {"dir": [d for d, _ in pay], "len": [n for _, n in pay]}


# lab-dbneg ssh-interactive-400: dbclient 2022.83, ed25519 key, chacha20-poly1305; sshd's log
# says "Postponed publickey" (the 140-byte query, PK_OK 100) then "Accepted publickey ED25519"
DROPBEAR_ED25519 = [738, -41, -1088, 48, -524, 120, -44, -44, 140, -100, 228, -28, 52, -300, -36]
# lab-revq ssh-reverse-login-106: dbclient -N -R, ed25519: the global request (68) follows
DROPBEAR_REVERSE = [738, -41, -1096, 48, -596, 120, -44, -44, 140, -100, 228, -28, 68, -340, -36]
# lab-revq ssh-reverse-login-146: dbclient with an RSA key (query 500, signed request 908)
DROPBEAR_RSA = [738, -41, -1136, 48, -524, 120, -44, -44, 500, -460, 908, -28, 68, -820, -36]
# lab-heldout-rev443 ssh-reverse-login-558: OpenSSH, aes256-ctr + hmac-sha2-512-etm: the
# success is 84 bytes, over the old 64-byte cap
OPENSSH_ETM512 = [41, -41, 1448, 112, -1104, 1208, -1448, -844, 16, 100, -100, 116, -100, 196]
OPENSSH_ETM512 += [-148, 708, -84, 116, -972, 216, -84]
# zeek-traces ssh__ssh.pcap (OpenSSH_6.7, chacha20-poly1305): a publickey refused
# (636 -> FAILURE 44), then a password accepted (148 -> 28)
ZEEK_PASSWORD = [21, -21, -304, 1448, 376, 48, -520, 16, 44, -44, 68, -44, 364, -324, 636, -44]
ZEEK_PASSWORD += [148, -28]
# zeek-traces ssh__sshguess.pcap (OpenSSH_6.2, aes128-ctr + hmac-sha1-etm): guessing, no
# success (every answer is a 56-byte FAILURE)
ZEEK_GUESS = [21, -32, 1448, 144, -952, 24, -280, 272, -848, 16, 56, -56, 72, -56, 376, -56, 152]


def test_success_wire_sizes_seen_in_captures() -> None:
    """userauth_success_wire_size against the success sizes the captures above show."""
    size = sshsig.userauth_success_wire_size
    assert size("chacha20-poly1305@openssh.com", None) == 28  # lab, Dropbear and OpenSSH
    assert size("aes128-gcm@openssh.com", None) == 36  # lab-revq ssh-reverse-login-101
    assert size("aes256-ctr", "hmac-sha2-512-etm@openssh.com") == 84  # OPENSSH_ETM512
    assert size("aes128-ctr", "hmac-md5") == 32  # zeek ssh__ssh.pcap, OpenSSH_6.2
    assert size("arcfour256", "hmac-md5-etm@openssh.com") == 28  # zeek ssh__ssh.pcap
    assert size("aes128-ctr", None) is None  # MAC unknown: no guess
    # channel data keeps its arithmetic (ssh_packet_overhead's worked examples)
    assert sshsig.channel_data_wire_size("aes128-ctr", "hmac-sha2-256", 1) == 64


@pytest.mark.parametrize(
    ("signed", "size", "want"),
    [
        (DROPBEAR_ED25519, 28, 11),
        (DROPBEAR_REVERSE, 28, 11),
        (DROPBEAR_RSA, 28, 11),
        (OPENSSH_ETM512, 84, 16),
        (ZEEK_PASSWORD, 28, 17),
        (ZEEK_GUESS, 40, None),
    ],
)
def test_success_found_by_exact_size(signed: list[int], size: int, want: int | None) -> None:
    assert find_auth_success(_pay(signed), size) == want


def test_without_algorithms_the_size_rule_still_sees_dropbear() -> None:
    """KEXINITs cut off: a small answer to a >= 160-byte request (Dropbear ed25519's 228),
    never a key-exchange packet; a refused key then misplaces it, which the exact size avoids."""
    assert find_auth_success(_pay(DROPBEAR_ED25519)) == 11
    assert find_auth_success(_pay(OPENSSH_ETM512)) is None  # 84 > 64: needs the exact size
    assert find_auth_success(_pay(ZEEK_PASSWORD)) == 15  # the FAILURE after the refused key


def test_post_auth_columns_for_dropbear() -> None:
    """Session vs -R from Dropbear: one client packet after the success either way, but
    the channel open is exactly a CHANNEL_OPEN's size (52 under chacha20-poly1305) and the
    tcpip-forward request 16 over it; OpenSSH's -R under aes256-ctr + hmac-sha2-512-etm
    (CHANNEL_OPEN 100) is 116, also 16 over, and gets one 84-byte REQUEST_SUCCESS."""
    seqs = [_seq(DROPBEAR_ED25519), _seq(DROPBEAR_REVERSE), _seq(OPENSSH_ETM512)]
    opens = [
        session_open_size(("chacha20-poly1305@openssh.com", None)),
        session_open_size(("chacha20-poly1305@openssh.com", None)),
        session_open_size(("aes256-ctr", "hmac-sha2-512-etm@openssh.com")),
    ]
    assert opens == [52, 52, 100]
    got = post_auth_features(
        seqs, np.array([True, True, True]), np.array([28, 28, 84]), np.array(opens)
    )
    assert got[0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert got[1].tolist() == [1.0, 1.0, 16.0, 0.0]
    assert got[2].tolist() == [1.0, 1.0, 16.0, 1.0]


def test_first_delta_does_not_depend_on_the_cipher() -> None:
    """A session opened under aes128-ctr + hmac-md5 (zeek-traces ssh__ssh.pcap, paramiko:
    success 32, CHANNEL_OPEN 64) has the same delta as Dropbear's under chacha20-poly1305:
    0. Measured as wire bytes over the success it was 32, an OpenSSH -R under chacha20."""
    zeek = [21, -25, 1448, 144, -440, 24, -152, 144, -448, -16, 16, 48, -48, 64, -32, 64, -48]
    got = post_auth_features(
        [_seq(zeek), _seq(DROPBEAR_ED25519)],
        np.array([True, True]),
        np.array([32, 28]),
        np.array([session_open_size(("aes128-ctr", "hmac-md5")), 52]),
    )
    assert got[:, 2].tolist() == [0.0, 0.0]


def _final_records(pcap: Path) -> list:
    last = {}
    for _, blk in iter_flow_blocks([pcap], FlowConfig()):
        for r in blk.records():
            last[r.flow_id] = r
    return list(last.values())


def _auth_seen(pcap: Path) -> list[float]:
    recs = _final_records(pcap)
    X, _ = featurize(recs)
    return X[:, FEATURE_NAMES.index("ssh_auth_seen")].tolist()


def test_zeek_traces_success_and_guessing(corpus: Path) -> None:
    """Real captures end to end (featurize): the curve25519 login is found, none of the
    password-guessing connections is (the old rule took their FAILUREs for a success)."""
    traces = corpus / "zeek-traces"
    assert _auth_seen(traces / "ssh__ssh_kex_curve25519.pcap") == [1.0]
    guesses = _auth_seen(traces / "ssh__sshguess.pcap")
    assert len(guesses) >= 5 and set(guesses) == {0.0}


# -- live: OpenSSH and Dropbear clients against a throwaway sshd ------------------------------
needs_clients = pytest.mark.skipif(
    not (
        Path(SSHD).exists()
        and shutil.which("ssh")
        and shutil.which("dbclient")
        and shutil.which("dropbearkey")
        and shutil.which("dumpcap")
    ),
    reason="needs openssh-server, openssh-client, dropbear-bin and dumpcap",
)
# (client, key type, cipher, MAC): every key type from each client, AEAD, CTR+MAC and ETM
SESSIONS = [
    ("dbclient", "ed25519", "chacha20-poly1305@openssh.com", "hmac-sha2-256"),
    ("dbclient", "ecdsa", "aes128-ctr", "hmac-sha2-256"),
    ("dbclient", "rsa", "aes256-ctr", "hmac-sha1"),
    ("ssh", "ed25519", "aes128-gcm@openssh.com", "hmac-sha2-256"),
    ("ssh", "ecdsa", "chacha20-poly1305@openssh.com", "hmac-sha2-256"),
    ("ssh", "rsa", "aes256-ctr", "hmac-sha2-512-etm@openssh.com"),
]


def _keys(tmp: Path) -> dict[tuple[str, str], Path]:
    """A key per client and type; sshd's authorized_keys holds all their public halves."""
    keys, pubs = {}, []
    for kind in ("ed25519", "ecdsa", "rsa"):
        path = tmp / f"ssh-{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
        keys[("ssh", kind)] = path
        pubs.append(path.with_suffix(".pub").read_text().strip())
        db = tmp / f"db-{kind}"
        out = subprocess.run(
            ["dropbearkey", "-t", kind, "-f", str(db)], capture_output=True, text=True, check=True
        ).stdout
        pubs.append(next(line for line in out.splitlines() if line.startswith(("ssh-", "ecdsa"))))
        keys[("dbclient", kind)] = db
    (tmp / "authorized_keys").write_text("\n".join(pubs) + "\n")
    return keys


def _login(client: str, port: int, key: Path, cipher: str, mac: str, home: Path) -> None:
    if client == "ssh":
        cmd = ["ssh", "-T", "-p", str(port), "-i", str(key), "-o", "BatchMode=yes"]
        cmd += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        cmd += ["-o", f"Ciphers={cipher}", "-o", f"MACs={mac}"]
    else:
        cmd = ["dbclient", "-y", "-y", "-p", str(port), "-i", str(key), "-c", cipher, "-m", mac]
    proc = subprocess.Popen(
        [*cmd, "root@127.0.0.1", "echo authenticated"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HOME": str(home)},
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 0 and b"authenticated" in out, (client, cipher, err[-300:])


@pytest.fixture(scope="module")
def live_logins(tmp_path_factory, root) -> tuple[Path, int, str]:
    """One capture of the SESSIONS, one connection each, in order; and sshd's log."""
    tmp = tmp_path_factory.mktemp("sshd-auth")
    keys = _keys(tmp)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "host")])
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host'}\n"
        f"PidFile {tmp / 'sshd.pid'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n"
        "Ciphers +aes128-ctr,aes256-ctr,aes128-gcm@openssh.com\n"
        "MACs +hmac-sha1,hmac-sha2-256,hmac-sha2-512-etm@openssh.com\n"
    )
    log = tmp / "sshd.log"
    sshd = subprocess.Popen(
        [SSHD, "-D", "-f", str(tmp / "sshd_config"), "-E", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        with capture(tmp / "auth.pcapng", port) as pcap:
            for client, kind, cipher, mac in SESSIONS:
                _login(client, port, keys[(client, kind)], cipher, mac, tmp)
    finally:
        stop(sshd)
    return pcap, port, log.read_text()


@needs_clients
@pytest.mark.slow
def test_live_auth_end_for_openssh_and_dropbear(live_logins, tshark: str) -> None:
    """Every login of SESSIONS gets ssh_auth_seen = 1, at a toclient packet of the predicted
    success size that comes after both NEWKEYS (tshark decodes those, message code 21) and
    answers the request sshd logged as accepted; Dropbear's next packet is its session
    CHANNEL_OPEN (24-byte payload) at the size the arithmetic predicts."""
    pcap, port, log = live_logins
    accepted = [line for line in log.splitlines() if "Accepted publickey" in line]
    assert len(accepted) == len(SESSIONS), log[-2000:]
    kinds = {"ed25519": "ED25519", "ecdsa": "ECDSA", "rsa": "RSA"}
    assert all(kinds[k] in line for line, (_, k, _, _) in zip(accepted, SESSIONS, strict=True))

    rule = f"tcp.port=={port},ssh"
    pkts: dict[int, list[tuple[int, int, int]]] = {}  # stream -> (frame, dir, tcp.len)
    for stream, frame, sport, n in tshark_fields(
        tshark, pcap, rule, "tcp.len > 0", ["tcp.stream", "frame.number", "tcp.srcport", "tcp.len"]
    ):
        pkts.setdefault(int(stream), []).append((int(frame), int(sport == str(port)), int(n)))
    newkeys: dict[int, int] = {}  # stream -> last frame holding a NEWKEYS
    for stream, frame, codes in tshark_fields(
        tshark, pcap, rule, "ssh.message_code", ["tcp.stream", "frame.number", "ssh.message_code"]
    ):
        if "21" in codes.split(","):
            newkeys[int(stream)] = max(newkeys.get(int(stream), 0), int(frame))
    assert len(pkts) == len(SESSIONS)

    recs = sorted(_final_records(pcap), key=lambda r: r.start_epoch)
    X, sigs = featurize(recs)
    assert X[:, FEATURE_NAMES.index("ssh_auth_seen")].tolist() == [1.0] * len(SESSIONS)
    small_requests = 0
    for rec, sig, stream, (client, _kind, cipher, mac) in zip(
        recs, sigs, sorted(pkts), SESSIONS, strict=True
    ):
        seq = pkts[stream]
        pay = [(d, n) for _, d, n in seq]
        mine = [
            (d, n)
            for d, n in zip(rec.first_pkts["dir"], rec.first_pkts["len"], strict=True)
            if n > 0
        ]
        assert mine == pay[: len(mine)]  # flowdet's packets are tshark's
        aead = sshsig.CIPHERS[cipher][1] > 0
        want = sshsig.userauth_success_wire_size(cipher, None if aead else mac)
        neg = next(e for e in sig.evidence if e.name == "negotiated").detail
        assert neg["auth_success_wire_size"] == want
        k = find_auth_success(pay, int(want or 0))
        assert k is not None and pay[k] == (1, want), (client, cipher, pay)
        assert seq[k][0] > newkeys[stream], (client, cipher, seq, newkeys[stream])
        request = next(n for d, n in reversed(pay[:k]) if d == 0)
        small_requests += request < 250
        if client == "dbclient":
            nxt = next(n for d, n in pay[k + 1 :] if d == 0)
            assert nxt == sshsig.message_wire_size(cipher, None if aead else mac, 24)
    assert small_requests >= 1  # the case the old >= 250-byte rule missed is covered
