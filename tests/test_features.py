"""Features: hand-built flows with known timing and sizes, SSH keystroke sizes, a real capture."""

from __future__ import annotations

import numpy as np
import pytest
from flows_synth import P, make_batch

from flowdet.features import (
    FEATURE_NAMES,
    SEQ_N,
    SIGNATURE_COLUMNS,
    featurize,
    keystroke_sizes,
    sequence_features,
)
from flowdet.flows import FlowConfig, FlowTable, iter_flows
from flowdet.signatures import SIGNATURE_FEATURES
from flowdet.signatures.ssh import channel_data_wire_size

CLI, SRV = "10.0.0.1", "10.0.0.2"


def _records(pkts: list[P], config: FlowConfig | None = None) -> list:
    table = FlowTable(config or FlowConfig())
    blocks = [table.update(make_batch(pkts)), table.flush()]
    return [r for b in blocks for r in b.records()]


def _handshake(t0: float = 0.0) -> list[P]:
    return [
        P(t0, CLI, 40000, SRV, 3333, flags="S"),
        P(t0 + 0.01, SRV, 3333, CLI, 40000, flags="SA"),
        P(t0 + 0.02, CLI, 40000, SRV, 3333, flags="A"),
    ]


def _col(X: np.ndarray, name: str, row: int = 0) -> float:
    return float(X[row, FEATURE_NAMES.index(name)])


def test_feature_names_unique_and_include_signatures() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert FEATURE_NAMES[-len(SIGNATURE_COLUMNS) :] == SIGNATURE_COLUMNS
    assert set(SIGNATURE_COLUMNS) <= set(SIGNATURE_FEATURES)
    # no raw ports or addresses
    assert not [n for n in FEATURE_NAMES if "port" in n or n.endswith("_ip")]


def test_periodic_server_pushes_and_jittered_client() -> None:
    """Server sends 100-byte jobs exactly every 30 s; client submits 60-byte shares at
    gaps 5, 15, 5, 15 ... (30 gaps): the server's message period is 30 s with CV 0, the
    client's mean gap is 10 s with CV 0.5."""
    pkts = _handshake()
    t, seq = 1.0, 1
    for i in range(12):
        pkts.append(P(t + 30 * i, SRV, 3333, CLI, 40000, flags="PA", payload=100, seq=seq))
        seq += 100
    ct, cseq = 1.5, 1
    for i in range(31):
        pkts.append(P(ct, CLI, 40000, SRV, 3333, flags="PA", payload=60, seq=cseq))
        cseq += 60
        ct += 5 if i % 2 == 0 else 15
    pkts.sort(key=lambda p: p.t)
    recs = _records(pkts)
    assert len(recs) == 1
    X, sigs = featurize(recs)
    assert X.shape == (1, len(FEATURE_NAMES)) and len(sigs) == 1
    assert _col(X, "log_piat_mean_toclient") == pytest.approx(np.log1p(30.0), rel=1e-4)
    assert _col(X, "piat_cv_toclient") == pytest.approx(0.0, abs=1e-6)
    assert _col(X, "log_piat_mean_toserver") == pytest.approx(np.log1p(10.0), rel=1e-3)
    assert _col(X, "piat_cv_toserver") == pytest.approx(0.5, rel=1e-3)
    # sizes: every client payload is 60 bytes (log2 bin 5), every server one 100 (bin 6)
    assert _col(X, "hist_toserver_5") == pytest.approx(1.0)
    assert _col(X, "hist_toclient_6") == pytest.approx(1.0)
    assert _col(X, "hist_mode_toclient") == 6
    assert _col(X, "payload_mean_toserver") == pytest.approx(60.0)
    assert _col(X, "upload_pkt_share") == pytest.approx(31 / 43)
    # the first payload came from the server (t=1.0 before the client's 1.5)
    assert _col(X, "first_payload_toclient") == 1
    assert _col(X, "early_size_0") == -100 and _col(X, "early_size_1") == 60
    # window statistics on the first 32 packets: server pushes modal size 100
    assert _col(X, "first_mode_len_toclient") == 100
    assert _col(X, "first_mode_len_toserver") == 60
    # every silence (> 1 s) is broken by a payload packet; they come from both sides
    assert 0 < _col(X, "bursts_toclient_share") < 1


def test_bare_ack_side_and_keystroke_pairs_on_windows() -> None:
    """sequence_features on a hand-made window: a reverse-shell pattern of nested keystrokes
    toclient then toserver, bare ACKs only from the responder."""
    ks1, ks2 = 36, 76
    n = 1
    valid = np.zeros((n, SEQ_N), bool)
    d = np.zeros((n, SEQ_N), np.int64)
    ln = np.zeros((n, SEQ_N), np.int64)
    iat = np.zeros((n, SEQ_N))
    fl = np.zeros((n, SEQ_N), np.int64)
    rows = []
    for _ in range(10):
        rows += [(1, ks2, 0.3, 0x18), (0, ks2, 0.05, 0x18), (1, 0, 0.04, 0x10)]
    for j, (dd, ll, ii, ff) in enumerate(rows[:SEQ_N]):
        valid[0, j], d[0, j], ln[0, j], iat[0, j], fl[0, j] = True, dd, ll, ii, ff
    cols = sequence_features((valid, d, ln, iat, fl), np.array([[ks1, ks2]], float))
    from flowdet.features import _seq_names

    names = _seq_names("w")
    got = dict(zip(names, cols[0].tolist(), strict=True))
    assert got["w_ks2_pairs_sc"] == 10  # toclient keystroke answered by toserver echo
    assert got["w_ks2_pairs_cs"] == 9  # echo followed by the next keystroke 0.34 s later
    assert got["w_ks2_frac_toserver"] == 1.0 and got["w_ks2_frac_toclient"] == 1.0
    assert got["w_ks1_frac_toserver"] == 0.0
    assert got["w_bare_acks_toclient"] == 10 and got["w_bare_acks_toserver"] == 0
    assert got["w_alternation"] == pytest.approx(1.0)
    assert got["w_n"] == 30


@pytest.mark.parametrize(
    ("cipher", "mac", "single", "nested"),
    [
        # worked by hand in flowdet.signatures.ssh.ssh_packet_overhead; nested: 36-byte inner
        # packet as channel data: 4+1+9+36 = 50, 46 % 8 = 6 -> padding 2 < 4 -> 10, 60 + 16
        ("chacha20-poly1305@openssh.com", None, 36, 76),
        ("aes128-gcm@openssh.com", None, 36, 84),
        ("aes128-ctr", "hmac-sha2-256", 64, 128),
        ("aes128-ctr", "hmac-sha2-256-etm@openssh.com", 52, 116),
    ],
)
def test_keystroke_sizes(cipher: str, mac: str | None, single: int, nested: int) -> None:
    s, n = keystroke_sizes((cipher, mac))
    assert s == single
    assert n == nested
    # the nested size is the outer packet carrying the inner packet as channel data
    assert n == channel_data_wire_size(cipher, mac or "none", s)


def test_checkpoint_records_featurize_like_finals() -> None:
    pkts = _handshake()
    for i in range(40):
        pkts.append(P(1.0 + i, CLI, 40000, SRV, 3333, flags="PA", payload=50, seq=1 + 50 * i))
        pkts.append(P(1.1 + i, SRV, 3333, CLI, 40000, flags="PA", payload=80, seq=1 + 80 * i))
    recs = _records(pkts, FlowConfig().with_default_checkpoints())
    kinds = [r.end_reason for r in recs]
    assert kinds.count("checkpoint") >= 4 and kinds[-1] != "checkpoint"
    X, _ = featurize(recs)
    assert X.shape == (len(recs), len(FEATURE_NAMES))
    assert np.isfinite(X).all()
    # the packet counters grow from one snapshot to the next
    lp = X[:, FEATURE_NAMES.index("log_pkts_toserver")]
    assert (np.diff(lp) >= 0).all() and lp[-1] > lp[0]


def test_featurize_accepts_a_flow_block() -> None:
    pkts = [*_handshake(), P(1.0, CLI, 40000, SRV, 3333, flags="PA", payload=10, seq=1)]
    table = FlowTable(FlowConfig())
    table.update(make_batch(pkts))
    blk = table.flush()
    Xb, _ = featurize(blk)
    Xr, _ = featurize(blk.records())
    assert np.array_equal(Xb, Xr)
    Xe, se = featurize([])
    assert Xe.shape == (0, len(FEATURE_NAMES)) and se == []


@pytest.mark.corpus
def test_featurize_real_mining_capture(corpus) -> None:
    recs = list(iter_flows([corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng"]))
    X, sigs = featurize(recs)
    assert X.shape == (len(recs), len(FEATURE_NAMES)) and np.isfinite(X).all()
    i = int(np.argmax([r.payload_pkts_toserver for r in recs]))
    assert sigs[i].is_mining
    assert _col(X, "sig_stratum_subscribe", i) == 1.0
    assert _col(X, "sig_stratum_equihash", i) == 1.0
    # ZCash Equihash submits carry a 1344-byte solution: the client's histogram reaches the
    # 1024..2047 bin (10)
    assert _col(X, f"hist_toserver_{10}", i) > 0
    assert _col(X, "ssh_ks1_size", i) == 0.0


def _seq(signed: list[int]) -> dict[str, list]:
    return {
        "dir": [0 if v > 0 else 1 for v in signed],
        "len": [abs(v) for v in signed],
        "iat": [0.01] * len(signed),
        "flags": [0x18] * len(signed),
    }


def test_post_auth_shapes_from_lab_sessions() -> None:
    """Signed payload sizes as the lab's OpenSSH flows show them (first_pkts, ACKs omitted):
    after the signed publickey request (>= 250 bytes) and the 28-byte success, a session
    opens one channel (client 112: the 52-byte CHANNEL_OPEN under chacha20-poly1305 and 60
    more), `-R` sends two global-request sized packets (60, 8 over a CHANNEL_OPEN) and gets
    a 28-byte REQUEST_SUCCESS. No algorithms given: the CHANNEL_OPEN is taken as the
    success + 24, its size under chacha20-poly1305."""
    handshake = [41, -41, 1448, 112, -1136, 272, -748, 16, 44, -44, 60, -44, 492, -460, 988, -28]
    reverse = _seq([*handshake, 60, 60, -964, -28, -92])
    session = _seq([*handshake, 112, -988, -52, 136, -108])
    nossh = _seq([*handshake, 60, 60, -964, -28])
    from flowdet.features import post_auth_features

    got = post_auth_features([reverse, session, nossh], np.array([True, True, False]))
    assert got[0].tolist() == [1.0, 2.0, 8.0, 1.0]
    assert got[1].tolist() == [1.0, 1.0, 60.0, 0.0]
    assert got[2].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_unknown_mac_falls_back_to_openssh_default() -> None:
    from flowdet.features import DEFAULT_SSH_MAC, negotiated_algorithms, nested_candidates
    from flowdet.signatures import SignatureResult
    from flowdet.signatures.evidence import Evidence

    ev = Evidence("ssh", "negotiated", "toserver", {"cipher_c2s": "aes128-ctr", "mac_c2s": ""}, "")
    sig = SignatureResult((ev,), np.zeros(len(SIGNATURE_FEATURES), np.float32))
    assert negotiated_algorithms(sig) == ("aes128-ctr", DEFAULT_SSH_MAC)
    # aes128-ctr + umac-64-etm: 11 encrypted bytes padded to 16, + 4 length + 8 MAC = 28
    assert keystroke_sizes(("aes128-ctr", DEFAULT_SSH_MAC))[0] == 28
    cands = nested_candidates(("chacha20-poly1305@openssh.com", None))
    assert cands[0] == 76 and len(set(cands)) == len(cands) and len(cands) <= 4
