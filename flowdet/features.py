"""Flow records + payload evidence -> the feature matrix, with one documented list of names.

Training and scoring both call `featurize`; the model refuses to load when its feature list
differs from `FEATURE_NAMES`, so a column can never silently change meaning. Everything here
is a pure function of a `FlowRecord` and its `SignatureResult`, and uses only what a prefix of
a flow already shows, so checkpoint snapshots (flows still open) get the same columns as
finished flows and the model can decide early.

What the columns capture, and why (see docs/ANCHORS.md for the peers these ideas come from):

- volume and balance per direction (upload/download share, payload packets, mean message);
  mining is small-message, low-rate and long, tunnels carry whole other sessions;
- message periodicity per direction (payload inter-arrival mean, std, coefficient of
  variation, over the whole record and over the first/last 32 packets): pools push jobs on a
  timer, miners submit shares as a Poisson process (Nemea miner_detector, XMR-Ray);
- payload size distributions (log2 histograms, modal sizes in the first/last 32 packets);
- who speaks first after an idle gap (bursts_toserver / bursts_toclient): in a reverse tunnel
  the responder starts the conversations;
- bare-ACK direction (JA4SSH): in a reverse shell the bare ACKs come from the server side;
- SSH keystrokes: the exact TCP payload size of a one-byte keystroke, single and wrapped in
  a second SSH layer (reverse_ssh.bro), computed from the negotiated cipher and MAC with
  flowdet.signatures.ssh's packet arithmetic, and which side sends them first;
- the shape of the first payload packets (signed sizes), which shows the Stratum V2 Noise
  handshake, the SSH post-authentication `-R` global request and the like;
- the payload signatures' features, pinned by name (`SIGNATURE_COLUMNS`).

No addresses and no port numbers: a model that learns the lab's ports would fail on the
first pool that listens elsewhere (real pools use 25, 80, 443, 3333, 14444, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter

import numpy as np

from flowdet.errors import FlowdetError
from flowdet.flows import layout as L
from flowdet.flows.record import FlowBlock, FlowRecord
from flowdet.signatures import SIGNATURE_FEATURES, SignatureResult, inspect
from flowdet.signatures import ssh as sshsig

DIRS = ("toserver", "toclient")
SEQ_N = 32
N_EARLY = 8  # signed sizes of the first payload packets
HIST_BINS = 12
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# OpenSSH's default cipher: the keystroke sizes assumed when the KEXINIT lists were cut short.
DEFAULT_SSH_ALGS: tuple[str, str | None] = ("chacha20-poly1305@openssh.com", None)

# The signature columns the model uses, pinned by name: a recognizer that gains a feature
# does not shift the model's columns (the new one is unused until added here and retrained).
SIGNATURE_COLUMNS: tuple[str, ...] = (
    "sig_stratum_client_method",
    "sig_stratum_subscribe",
    "sig_stratum_authorize",
    "sig_stratum_submit",
    "sig_stratum_n_client_methods",
    "sig_stratum_server_notify",
    "sig_stratum_subscribe_result",
    "sig_stratum_ethereum",
    "sig_stratum_equihash",
    "sig_stratum_miner_agent",
    "sig_monero_login",
    "sig_monero_submit",
    "sig_monero_keepalive",
    "sig_monero_job",
    "sig_monero_miner_agent",
    "sig_getwork",
    "sig_getwork_mining_headers",
    "sig_eth_work",
    "sig_eth_proxy_tcp",
    "sig_eth_work_result",
    "sig_sv2_handshake_shape",
    "sig_sv2_client_first_64",
    "sig_sv2_server_first_234",
    "sig_first_toserver_entropy",
    "sig_first_toclient_entropy",
    "sig_ssh_banner",
    "sig_ssh_client_is_openssh",
    "sig_ssh_server_is_openssh",
    "sig_ssh_client_kexinit",
    "sig_ssh_server_kexinit",
    "sig_ssh_client_kex_count",
    "sig_ssh_strict_kex",
    "sig_ssh_aead",
    "sig_ssh_keystroke_size",
    "sig_tls_client_hello",
    "sig_tls_server_hello",
    "sig_tls_sni_present",
    "sig_tls_sni_poolish",
    "sig_tls_alpn_present",
    "sig_tls_alpn_http",
    "sig_tls_grease",
    "sig_tls_version",
    "sig_tls_n_ciphers",
    "sig_tls_n_extensions",
    "sig_http_request",
    "sig_http_post_json",
    "sig_http_miner_agent",
    "sig_tunnel_socks",
    "sig_tunnel_http_connect",
    "sig_tunnel_payload",
)


def _record_names() -> list[str]:
    names = ["is_tcp", "is_udp", "is_icmp", "log_duration"]
    for d in DIRS:
        names += [
            f"log_pkts_{d}",
            f"log_payload_bytes_{d}",
            f"log_payload_pkts_{d}",
            f"payload_mean_{d}",  # payload bytes per payload packet
            f"size_mean_{d}",
            f"size_std_{d}",
            f"bare_ack_share_{d}",  # bare ACKs / packets of that side
            f"psh_share_{d}",
            f"payload_rate_{d}",  # payload packets per minute
            f"log_piat_mean_{d}",
            f"log_piat_min_{d}",
            f"log_piat_max_{d}",
            f"piat_cv_{d}",  # std / mean of the gaps between payload packets: periodicity
            f"log_bursts_{d}",
        ]
        names += [f"hist_{d}_{k}" for k in range(HIST_BINS)]
        names += [f"hist_mode_{d}"]
    names += [
        "upload_byte_share",  # toserver payload bytes / all payload bytes
        "upload_pkt_share",
        "bare_ack_toclient_share",  # which side sends the bare ACKs (JA4SSH)
        "bursts_toclient_share",  # which side speaks first after idle gaps
        "log_idle_gaps",
        "log_max_gap",
        "iat_cv",
        "rst_seen",
    ]
    return names


def _seq_names(win: str) -> list[str]:
    names = [f"{win}_n", f"{win}_payload_share", f"{win}_alternation"]
    for d in DIRS:
        names += [
            f"{win}_payload_share_{d}",
            f"{win}_mode_len_{d}",
            f"{win}_mode_frac_{d}",
            f"{win}_mean_len_{d}",
            f"{win}_log_piat_mean_{d}",
            f"{win}_piat_cv_{d}",
            f"{win}_bare_acks_{d}",
            f"{win}_ks1_frac_{d}",  # share of that side's payload packets of keystroke size
            f"{win}_ks2_frac_{d}",  # ... of keystroke size inside a second SSH layer
            f"{win}_big_after_idle_{d}",  # >= 800-byte payload right after a >= 1 s silence
        ]
    names += [
        f"{win}_ks2_pairs_sc",  # toclient then toserver nested keystroke pairs (reverse shell)
        f"{win}_ks2_pairs_cs",  # toserver then toclient nested keystroke pairs (forward)
        f"{win}_ks1_pairs_sc",
        f"{win}_ks1_pairs_cs",
    ]
    return names


def _early_names() -> list[str]:
    return ["first_payload_toclient"] + [f"early_size_{i}" for i in range(N_EARLY)]


def _ssh_names() -> list[str]:
    return [
        "ssh_ks1_size",
        "ssh_ks2_size",
        "ssh_algs_known",
        "ssh_auth_seen",  # the user-auth success was found in the first 32 packets
        "ssh_post_auth_client_run",  # client packets right after it (-R: global request(s))
        "ssh_post_auth_first_delta",  # first client packet size minus a session CHANNEL_OPEN's
        "ssh_post_auth_min_replies",  # minimal server replies (REQUEST_SUCCESS) after it
    ]


FEATURE_NAMES: tuple[str, ...] = tuple(
    _record_names()
    + _seq_names("first")
    + _seq_names("last")
    + _early_names()
    + _ssh_names()
    + list(SIGNATURE_COLUMNS)
)
_N_OWN = len(FEATURE_NAMES) - len(SIGNATURE_COLUMNS)
_SIG_INDEX = np.array(
    [SIGNATURE_FEATURES.index(n) if n in SIGNATURE_FEATURES else -1 for n in SIGNATURE_COLUMNS]
)


# -- small numeric helpers ---------------------------------------------------------------------
def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def _log(a: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(np.asarray(a, dtype=np.float64), 0.0))


# -- SSH keystroke arithmetic ------------------------------------------------------------------
# OpenSSH's first MAC choice, assumed when a non-AEAD cipher was negotiated but the MAC lists
# were cut off by the payload prefix (OpenSSH 9 KEXINITs are longer than 1 KB).
DEFAULT_SSH_MAC = "umac-64-etm@openssh.com"
# What an inner session (the one inside a tunnel) usually negotiates: OpenSSH's defaults and
# the common hardened choices. A nested keystroke may have any of these inside the outer one.
INNER_SSH_ALGS: tuple[tuple[str, str | None], ...] = (
    ("chacha20-poly1305@openssh.com", None),
    ("aes128-gcm@openssh.com", None),
    ("aes256-gcm@openssh.com", None),
    ("aes128-ctr", "umac-64-etm@openssh.com"),
    ("aes128-ctr", "hmac-sha2-256-etm@openssh.com"),
    ("aes128-ctr", "hmac-sha2-256"),
)
N_KS2 = 4  # nested keystroke size candidates kept per flow (distinct values)


def negotiated_algorithms(sig: SignatureResult) -> tuple[str, str | None] | None:
    """(cipher, mac) the SSH client and server agreed on, from the signature evidence.

    mac is None for AEAD ciphers. A non-AEAD cipher whose MAC could not be read gets
    OpenSSH's default MAC.
    """
    for ev in sig.evidence:
        if ev.family == "ssh" and ev.name == "negotiated":
            cipher = str(ev.detail.get("cipher_c2s", ""))
            mac = str(ev.detail.get("mac_c2s", "")) or None
            if not cipher:
                continue
            aead = sshsig.CIPHERS.get(cipher, (0, 0))[1] > 0
            if aead:
                return cipher, None
            if mac is None or mac == "unknown" or _mac_unknown(mac):
                mac = DEFAULT_SSH_MAC
            return cipher, mac
    return None


def _mac_unknown(mac: str) -> bool:
    return sshsig.channel_data_wire_size("aes128-ctr", mac, 1) is None


def keystroke_sizes(algs: tuple[str, str | None]) -> tuple[int, int]:
    """Wire sizes of a one-byte keystroke: plain, and inside a second SSH layer.

    The inner session is assumed to use the same algorithms as the outer one (both ends are
    usually the same OpenSSH), as reverse_ssh.bro assumes; `nested_candidates` adds the
    other usual inner choices. 0 when the table does not know the cipher or MAC.
    """
    cipher, mac = algs
    single = sshsig.channel_data_wire_size(cipher, mac if mac else "none", 1)
    nested = sshsig.nested_keystroke_size((cipher, mac or "none"), (cipher, mac or "none"))
    return int(single or 0), int(nested or 0)


def nested_candidates(outer: tuple[str, str | None]) -> list[int]:
    """Distinct outer wire sizes of a nested keystroke, the same-algorithms guess first."""
    sizes = [keystroke_sizes(outer)[1]]
    for inner in INNER_SSH_ALGS:
        n = sshsig.nested_keystroke_size(
            (inner[0], inner[1] or "none"), (outer[0], outer[1] or "none")
        )
        if n and n not in sizes:
            sizes.append(int(n))
    return [x for x in sizes if x][:N_KS2]


def ssh_keystroke_columns(sigs: Sequence[SignatureResult]) -> np.ndarray:
    """Per flow: single keystroke size, nested size (same algorithms), algorithms known,
    then N_KS2 nested-size candidates (0-padded); zeros for flows without an SSH banner.
    Unknown algorithms fall back to OpenSSH's default cipher."""
    out = np.zeros((len(sigs), 3 + N_KS2), dtype=np.float64)
    banner = SIGNATURE_FEATURES.index("sig_ssh_banner")
    done: dict[int, int] = {}  # id(sig) -> row: records often share one result object
    by_algs: dict[tuple[str, str | None] | None, np.ndarray] = {}  # few distinct ones
    for i, sig in enumerate(sigs):
        if sig.features[banner] <= 0:
            continue
        j = done.setdefault(id(sig), i)
        if j != i:
            out[i] = out[j]
            continue
        algs = negotiated_algorithms(sig)
        row = by_algs.get(algs)
        if row is None:
            row = by_algs[algs] = _keystroke_row(algs)
        out[i] = row
    return out


def _keystroke_row(algs: tuple[str, str | None] | None) -> np.ndarray:
    """ssh_keystroke_columns' row for the negotiated algorithms (None: not visible)."""
    row = np.zeros(3 + N_KS2, dtype=np.float64)
    known = algs is not None
    s1, s2 = keystroke_sizes(algs) if algs is not None else (0, 0)
    if not s1 or algs is None:
        algs = DEFAULT_SSH_ALGS
        s1, s2 = keystroke_sizes(algs)
        known = False
    cands = nested_candidates(algs)
    row[:3] = (s1, s2, float(known))
    row[3 : 3 + len(cands)] = cands
    return row


def auth_success_size(sig: SignatureResult) -> int:
    """Wire size of the server's SSH_MSG_USERAUTH_SUCCESS for the algorithms it negotiated
    toclient (`sshsig.userauth_success_wire_size`); 0 when they are not visible (the KEXINITs
    cut off, no MAC list) and the size must not be guessed."""
    for ev in sig.evidence:
        if ev.family == "ssh" and ev.name == "negotiated":
            return int(ev.detail.get("auth_success_wire_size", 0) or 0)
    return 0


# Without the negotiated algorithms: the success is a small server packet right after a large
# client one (a signed publickey request: 228 bytes from Dropbear with ed25519, more with
# ecdsa/rsa or from OpenSSH; the key exchange packets before it are answered by large ones).
_AUTH_REQUEST_MIN = 160
_AUTH_SUCCESS_MAX = 64
_KEX_PACKETS = 6  # banners, KEXINITs, the ECDH pair: never the auth success


def find_auth_success(pay: Sequence[tuple[int, int]], success_size: int = 0) -> int | None:
    """Index into `pay` ((dir, size) of payload packets, 0 = toserver) of the server's
    USERAUTH_SUCCESS, or None.

    With `success_size` known: the first toclient packet of exactly that size after the key
    exchange whose last toserver packet before it was larger (the request it answers; a
    server packet may slip in between, as OpenSSH's host-key announcement does in captures
    that reorder). That holds for any client, key type and auth method (publickey,
    password, none) and skips failed attempts, whose USERAUTH_FAILURE is larger. Without it:
    the first toclient packet of at most 64 bytes right after a toserver one of 160 or more.
    """
    last_c = 0
    for j, (d, n) in enumerate(pay):
        if d == 0:
            last_c = n
            continue
        if j < _KEX_PACKETS:
            continue
        if success_size:
            if n == success_size and last_c > n:
                return j
        elif n <= _AUTH_SUCCESS_MAX and pay[j - 1][0] == 0 and pay[j - 1][1] >= _AUTH_REQUEST_MIN:
            return j
    return None


# SSH_MSG_CHANNEL_OPEN "session": type, string "session", sender channel, window, max packet
_SESSION_OPEN_PAYLOAD = 1 + 4 + 7 + 4 + 4 + 4
# Its wire size minus the success's under chacha20-poly1305 (52 - 28), for rows whose
# toserver algorithms are not visible
_OPEN_OVER_SUCCESS = 24


def session_open_size(algs: tuple[str, str | None] | None) -> int:
    """Wire size of a session CHANNEL_OPEN under the toserver algorithms; 0 if unknown."""
    if algs is None:
        return 0
    return int(sshsig.message_wire_size(algs[0], algs[1] or "none", _SESSION_OPEN_PAYLOAD) or 0)


def post_auth_features(
    seqs: Sequence[dict[str, list]],
    is_ssh: np.ndarray,
    success_sizes: np.ndarray | None = None,
    open_sizes: np.ndarray | None = None,
) -> np.ndarray:
    """What the client does right after SSH user authentication succeeds.

    The success message is found by `find_auth_success` (its exact wire size per row in
    `success_sizes`, 0 or absent where the algorithms are not visible). Then an interactive
    or command session opens one `session` channel (one client packet, the server answers
    with its host keys and the channel confirmation), while `-R` sends a `tcpip-forward`
    global request the server answers with a minimal REQUEST_SUCCESS, the size of the auth
    success itself (packetStrider / Corelight's RSP idea). Columns: found, client packets
    before the server's next packet, size of the first client packet minus the wire size of a
    session CHANNEL_OPEN under the negotiated toserver algorithms (`open_sizes`; where they
    are unknown, the success size + 24 as under chacha20-poly1305), so 0 is a session opened
    whatever the cipher and a `-R` request is a few bytes over it,
    minimal-size server replies among the next 6 payload packets.
    """
    out = np.zeros((len(seqs), 4))
    for i in np.flatnonzero(is_ssh).tolist():
        sq = seqs[i]
        pay = [(d, n) for d, n in zip(sq["dir"], sq["len"], strict=False) if n > 0]
        size = int(success_sizes[i]) if success_sizes is not None else 0
        k = find_auth_success(pay, size)
        if k is None:
            continue
        ok_size = pay[k][1]
        open_size = int(open_sizes[i]) if open_sizes is not None else 0
        after = pay[k + 1 : k + 7]
        run = 0
        for d, _ in after:
            if d != 0:
                break
            run += 1
        first_c = next((n for d, n in after if d == 0), 0)
        out[i] = (
            1.0,
            float(run),
            float(first_c - (open_size or ok_size + _OPEN_OVER_SUCCESS)) if first_c else 0.0,
            float(sum(1 for d, n in after if d == 1 and n == ok_size)),
        )
    return out


# -- packet sequences --------------------------------------------------------------------------
def pad_sequences(seqs: Sequence[dict[str, list]]) -> tuple[np.ndarray, ...]:
    """first_pkts/last_pkts dicts -> (valid, dir, len, iat, flags) arrays of shape (n, 32)."""
    n = len(seqs)
    counts = np.fromiter((min(len(q["len"]), SEQ_N) for q in seqs), dtype=np.int64, count=n)
    valid = np.arange(SEQ_N)[None, :] < counts[:, None]
    total = int(counts.sum())
    out = []
    for key, dtype in (
        ("dir", np.int64),
        ("len", np.int64),
        ("iat", np.float64),
        ("flags", np.int64),
    ):
        arr = np.zeros((n, SEQ_N), dtype)
        flat = np.fromiter(
            chain.from_iterable(q[key][:SEQ_N] for q in seqs), dtype=dtype, count=total
        )
        arr[valid] = flat  # row-major order matches the concatenation
        out.append(arr)
    return (valid, *out)


def _prev_index(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the previous True position in its row (-1 if none)."""
    n, m = mask.shape
    idx = np.where(mask, np.arange(m)[None, :], -1)
    last = np.maximum.accumulate(idx, axis=1)
    return np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)


def _gap_stats(t: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and coefficient of variation of the gaps between consecutive masked packets."""
    prev = _prev_index(mask)
    ok = mask & (prev >= 0)
    tp = np.take_along_axis(t, np.maximum(prev, 0), axis=1)
    gaps = np.where(ok, t - tp, 0.0)
    cnt = ok.sum(axis=1)
    mean = _div(gaps.sum(axis=1), cnt)
    var = _div((np.where(ok, gaps - mean[:, None], 0.0) ** 2).sum(axis=1), cnt)
    return mean, _div(np.sqrt(var), mean)


def _mode(ln: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent length among masked packets (ties: the smallest) and its share."""
    n, m = ln.shape
    big = np.iinfo(np.int64).max
    srt = np.sort(np.where(mask, ln, big), axis=1)
    j = np.arange(m)[None, :]
    new_run = np.ones((n, m), bool)
    new_run[:, 1:] = srt[:, 1:] != srt[:, :-1]
    start = np.maximum.accumulate(np.where(new_run, j, 0), axis=1)
    run_len = np.where(srt != big, j - start + 1, 0)
    best = run_len.argmax(axis=1)  # first maximum: the smallest length among ties
    rows = np.arange(n)
    count = run_len[rows, best]
    total = mask.sum(axis=1)
    return np.where(count > 0, srt[rows, best], 0).astype(np.float64), _div(count, total)


def sequence_features(seq: tuple[np.ndarray, ...], ks: np.ndarray) -> np.ndarray:
    """Columns of `_seq_names` for one window of up to 32 packets per flow.

    `ks` holds each flow's single keystroke size, then its nested keystroke size candidates
    (0 = none, not SSH).
    """
    valid, d, ln, iat, fl = seq
    n = valid.shape[0]
    t = np.cumsum(np.where(valid, iat, 0.0), axis=1)
    pay = valid & (ln > 0)
    cnt = valid.sum(axis=1)
    npay = pay.sum(axis=1)
    prev_any = _prev_index(pay)
    ok = pay & (prev_any >= 0)
    dprev = np.take_along_axis(d, np.maximum(prev_any, 0), axis=1)
    lprev = np.take_along_axis(ln, np.maximum(prev_any, 0), axis=1)
    tprev = np.take_along_axis(t, np.maximum(prev_any, 0), axis=1)
    cols: list[np.ndarray] = [
        cnt.astype(np.float64),
        _div(npay, cnt),
        _div((ok & (d != dprev)).sum(axis=1), ok.sum(axis=1)),
    ]
    bare = valid & (ln == 0) & ((fl & TCP_ACK) != 0) & ((fl & (TCP_SYN | TCP_FIN | TCP_RST)) == 0)
    # gap before each payload packet, from the previous packet of either side
    prev_pkt_t = np.concatenate([np.zeros((n, 1)), t[:, :-1]], axis=1)
    after_idle = valid & (t - prev_pkt_t >= 1.0) & (np.arange(SEQ_N)[None, :] > 0)
    ks1 = ks[:, 0:1]
    is1 = pay & (ln == ks1) & (ks1 > 0)
    is2 = np.zeros_like(pay)
    for c in range(1, ks.shape[1]):
        kc = ks[:, c : c + 1]
        is2 |= pay & (ln == kc) & (kc > 0)
    for side in (0, 1):
        m = pay & (d == side)
        nm = m.sum(axis=1)
        mode_len, mode_frac = _mode(ln, m)
        gap_mean, gap_cv = _gap_stats(t, m)
        cols += [
            _div(nm, npay),
            mode_len,
            mode_frac,
            _div(np.where(m, ln, 0).sum(axis=1), nm),
            _log(gap_mean),
            gap_cv,
            (bare & (d == side)).sum(axis=1).astype(np.float64),
            _div((is1 & (d == side)).sum(axis=1), nm),
            _div((is2 & (d == side)).sum(axis=1), nm),
            (m & after_idle & (ln >= 800)).sum(axis=1).astype(np.float64),
        ]
    prev_is2 = np.take_along_axis(is2, np.maximum(prev_any, 0), axis=1) & ok
    prev_is1 = np.take_along_axis(is1, np.maximum(prev_any, 0), axis=1) & ok
    close = (t - tprev) < 2.0  # an echo follows its keystroke within a round trip or two
    del lprev
    cols += [
        (is2 & prev_is2 & (dprev == 1) & (d == 0) & close).sum(axis=1).astype(np.float64),
        (is2 & prev_is2 & (dprev == 0) & (d == 1) & close).sum(axis=1).astype(np.float64),
        (is1 & prev_is1 & (dprev == 1) & (d == 0) & close).sum(axis=1).astype(np.float64),
        (is1 & prev_is1 & (dprev == 0) & (d == 1) & close).sum(axis=1).astype(np.float64),
    ]
    return np.stack(cols, axis=1)


def early_features(seq: tuple[np.ndarray, ...]) -> np.ndarray:
    """Who sent the first payload, and the signed sizes (+ toserver, - toclient) of the first
    payload packets: the handshake shape of the protocol inside."""
    valid, d, ln, _, _ = seq
    n = valid.shape[0]
    pay = valid & (ln > 0)
    out = np.zeros((n, 1 + N_EARLY))
    order = np.argsort(~pay, axis=1, kind="stable")  # payload packets first, in order
    dd = np.take_along_axis(d, order, axis=1)[:, :N_EARLY]
    ll = np.take_along_axis(ln, order, axis=1)[:, :N_EARLY]
    pp = np.take_along_axis(pay, order, axis=1)[:, :N_EARLY]
    out[:, 0] = np.where(pay.any(axis=1), dd[:, 0], -1)
    out[:, 1:] = np.where(pp, np.where(dd == 0, ll, -ll), 0)
    return out


# -- whole-record statistics -------------------------------------------------------------------
_PER_DIR = (
    "pkts",
    "payload_bytes",
    "payload_pkts",
    "bare_acks",
    "psh",
    "size_mean",
    "size_std",
    "piat_mean",
    "piat_std",
    "piat_min",
    "piat_max",
    "bursts",
    "rst",
)
# The FlowRecord counters `record_features` reads (besides the two payload histograms):
# what a caller that builds records for featurizing only must fill in.
RECORD_SCALARS: tuple[str, ...] = (
    "proto_num",
    "duration",
    "idle_gaps",
    "max_gap",
    "iat_std",
    "iat_mean",
    *(f"{k}_{d}" for d in DIRS for k in _PER_DIR),
)
_SCALARS = RECORD_SCALARS  # the former private name
RECORD_HISTS: tuple[str, ...] = tuple(f"payload_hist_{d}" for d in DIRS)
# Every FlowRecord field `featurize` reads: RECORD_SCALARS, the payload histograms, the
# first/last packet sequences and the payload prefixes (for the signatures).
FEATURIZER_FIELDS: tuple[str, ...] = (
    *RECORD_SCALARS,
    *RECORD_HISTS,
    "first_pkts",
    "last_pkts",
    "payload_toserver",
    "payload_toclient",
)
_GET_SCALARS = attrgetter(*RECORD_SCALARS)


def record_features(records: Sequence[FlowRecord]) -> np.ndarray:
    """Columns of `_record_names` from the records' accumulated counters."""
    table = np.array([_GET_SCALARS(r) for r in records], dtype=np.float64)
    table = table.reshape(len(records), len(RECORD_SCALARS))
    hists = [
        np.array([getattr(r, f"payload_hist_{d}") for r in records], dtype=np.float64).reshape(
            len(records), HIST_BINS
        )
        for d in DIRS
    ]
    return _record_columns(table, hists)


def _record_columns(table: np.ndarray, hists: Sequence[np.ndarray]) -> np.ndarray:
    """`record_features` from the RECORD_SCALARS table (rows x scalars, float64) and the
    two payload histograms (rows x HIST_BINS, float64)."""
    records = table  # only its length is used by _col
    col = {name: table[:, i] for i, name in enumerate(RECORD_SCALARS)}

    def _col(_records: object, name: str, dtype: type = np.float64) -> np.ndarray:
        return col[name].astype(dtype) if dtype is not np.float64 else col[name]

    proto = _col(records, "proto_num", np.int64)
    dur = _col(records, "duration")
    cols: list[np.ndarray] = [
        (proto == 6).astype(np.float64),
        (proto == 17).astype(np.float64),
        ((proto == 1) | (proto == 58)).astype(np.float64),
        _log(dur),
    ]
    per: dict[str, dict[str, np.ndarray]] = {}
    for d in DIRS:
        c = {
            k: _col(records, f"{k}_{d}")
            for k in (
                "pkts",
                "payload_bytes",
                "payload_pkts",
                "bare_acks",
                "psh",
                "size_mean",
                "size_std",
                "piat_mean",
                "piat_std",
                "piat_min",
                "piat_max",
                "bursts",
            )
        }
        per[d] = c
        hist = hists[DIRS.index(d)]
        hsum = hist.sum(axis=1, keepdims=True)
        cols += [
            _log(c["pkts"]),
            _log(c["payload_bytes"]),
            _log(c["payload_pkts"]),
            _div(c["payload_bytes"], c["payload_pkts"]),
            c["size_mean"],
            c["size_std"],
            _div(c["bare_acks"], c["pkts"]),
            _div(c["psh"], c["pkts"]),
            _div(c["payload_pkts"] * 60.0, dur),
            _log(c["piat_mean"]),
            _log(c["piat_min"]),
            _log(c["piat_max"]),
            _div(c["piat_std"], c["piat_mean"]),
            _log(c["bursts"]),
        ]
        cols += list((_div(hist, hsum)).T)
        cols.append(np.where(hsum[:, 0] > 0, hist.argmax(axis=1), -1).astype(np.float64))
    s, c = per["toserver"], per["toclient"]
    cols += [
        _div(s["payload_bytes"], s["payload_bytes"] + c["payload_bytes"]),
        _div(s["payload_pkts"], s["payload_pkts"] + c["payload_pkts"]),
        _div(c["bare_acks"], s["bare_acks"] + c["bare_acks"]),
        _div(c["bursts"], s["bursts"] + c["bursts"]),
        _log(_col(records, "idle_gaps")),
        _log(_col(records, "max_gap")),
        _div(_col(records, "iat_std"), _col(records, "iat_mean")),
        ((_col(records, "rst_toserver") + _col(records, "rst_toclient")) > 0).astype(np.float64),
    ]
    return np.stack(cols, axis=1)


def signatures_of(records: Sequence[FlowRecord]) -> list[SignatureResult]:
    """The payload evidence of each record, one recognizer pass per distinct payload prefix.

    A flow's checkpoint snapshots and its final record usually hold the same prefixes (they
    stop growing after 4 packets or 1 KB per side), and the recognizers are the costliest
    part of featurizing, so records with identical prefixes share one (immutable) result.
    """
    return signatures_of_payloads([(r.payload_toserver, r.payload_toclient) for r in records])


def signatures_of_payloads(
    payloads: Sequence[tuple[list[bytes], list[bytes]]],
    memo: dict[tuple[tuple[bytes, ...], tuple[bytes, ...]], SignatureResult] | None = None,
    keep: int | None = None,
) -> list[SignatureResult]:
    """`signatures_of` from (payload_toserver, payload_toclient) pairs (block_payloads):
    one recognizer pass per distinct pair. A caller's `memo` carries the results over to
    later calls, at most `keep` pairs of them, oldest dropped first."""
    seen = {} if memo is None else memo
    out: list[SignatureResult] = []
    for ps, pc in payloads:
        key = (tuple(ps), tuple(pc))
        sig = seen.get(key)
        if sig is None:
            sig = seen[key] = inspect(ps, pc)
            if keep is not None and len(seen) > keep:
                del seen[next(iter(seen))]
        out.append(sig)
    return out


@dataclass(slots=True)
class FeatureInputs:
    """What `featurize` computes the columns from, as arrays: built from FlowRecords
    (`inputs_of_records`) or straight from a FlowBlock's columns (`inputs_of_block`, no
    Python object per record); both give the same arrays, hence the same features."""

    scalars: np.ndarray  # rows x RECORD_SCALARS, float64
    hists: tuple[np.ndarray, np.ndarray]  # toserver, toclient: rows x HIST_BINS, float64
    first: tuple[np.ndarray, ...]  # pad_sequences of first_pkts: valid, dir, len, iat, flags
    last: tuple[np.ndarray, ...]  # ... of last_pkts
    first_seqs: Sequence[dict[str, list]]  # first_pkts per row (read for SSH rows only)

    def __len__(self) -> int:
        return int(self.scalars.shape[0])


def inputs_of_records(records: Sequence[FlowRecord]) -> FeatureInputs:
    n = len(records)
    table = np.array([_GET_SCALARS(r) for r in records], dtype=np.float64)
    hists = tuple(
        np.array([getattr(r, name) for r in records], dtype=np.float64).reshape(n, HIST_BINS)
        for name in RECORD_HISTS
    )
    first_seqs = [r.first_pkts for r in records]
    return FeatureInputs(
        table.reshape(n, len(RECORD_SCALARS)),
        hists,  # type: ignore[arg-type]
        pad_sequences(first_seqs),
        pad_sequences([r.last_pkts for r in records]),
        first_seqs,
    )


def inputs_of_block(block: FlowBlock) -> FeatureInputs:
    """FeatureInputs from a FlowBlock's columns: the values FlowBlock.records() would give,
    without building a record per row (the costliest part of scoring a busy capture)."""
    cols = block.column_arrays([*RECORD_SCALARS, *RECORD_HISTS])
    n = len(block)
    table = np.empty((n, len(RECORD_SCALARS)), dtype=np.float64)
    for i, name in enumerate(RECORD_SCALARS):
        table[:, i] = cols[name]
    hists = tuple(np.asarray(cols[name], dtype=np.float64) for name in RECORD_HISTS)
    first, last = block_sequences(block)
    return FeatureInputs(table, hists, first, last, _PaddedSeqs(first))  # type: ignore[arg-type]


def block_sequences(block: FlowBlock) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """pad_sequences of the first and of the last packets of every row, straight from the
    block's packet-sequence columns (as FlowBlock decodes them into first_pkts/last_pkts:
    the first SEQ_N packets, and a ring holding the last SEQ_N)."""
    n_seq = L.SEQ_N
    if n_seq != SEQ_N:  # pragma: no cover - a layout change must be handled here
        raise FlowdetError(f"flow sequences hold {n_seq} packets, features read {SEQ_N}")
    npk = block.s[:, L.NPK]
    k = np.minimum(npk, n_seq)
    j = np.arange(n_seq)
    valid = j[None, :] < k[:, None]
    meta = block.seqm.astype(np.int64)
    ring = np.where(valid, n_seq + (npk[:, None] - k[:, None] + j[None, :]) % n_seq, n_seq)
    out = []
    for m, iat in (
        (meta[:, :n_seq], block.seqi[:, :n_seq]),
        (np.take_along_axis(meta, ring, axis=1), np.take_along_axis(block.seqi, ring, axis=1)),
    ):
        out.append(
            (
                valid,
                np.where(valid, (m >> L.SEQ_DIR_SHIFT) & 0x1, 0),
                np.where(valid, m & L.SEQ_LEN_MASK, 0),
                np.where(valid, iat / 1e9, 0.0),
                np.where(valid, (m >> L.SEQ_FLAGS_SHIFT) & 0xFF, 0),
            )
        )
    return out[0], out[1]


class _PaddedSeqs(Sequence):
    """first_pkts-like dicts (dir and len only) of padded sequences, made on demand: only
    SSH rows are looked at (post_auth_features)."""

    def __init__(self, seq: tuple[np.ndarray, ...]) -> None:
        self.valid, self.dir, self.len = seq[0], seq[1], seq[2]

    def __len__(self) -> int:
        return int(self.valid.shape[0])

    def __getitem__(self, i):  # type: ignore[override]
        v = self.valid[i]
        return {"dir": self.dir[i][v].tolist(), "len": self.len[i][v].tolist()}


def block_payloads(block: FlowBlock) -> list[tuple[list[bytes], list[bytes]]]:
    """(payload_toserver, payload_toclient) of every row, as FlowBlock.records() gives them."""
    s, pay = block.s, block.pay
    width = pay.shape[1]
    half = width // 2
    raw = np.ascontiguousarray(pay).tobytes()  # one copy; slicing bytes is cheap
    counts = s[:, L.PAY_N : L.PAY_N + 2].tolist()
    lens = s[:, L.PAY_LEN : L.PAY_LEN + 2 * L.PAY_MSGS].tolist()
    out = []
    row = 0
    for cnt, ln in zip(counts, lens, strict=True):
        both = []
        for d in (0, 1):
            pos = row + d * half
            msgs = []
            for m in ln[d * L.PAY_MSGS : d * L.PAY_MSGS + cnt[d]]:
                msgs.append(raw[pos : pos + m])
                pos += m
            both.append(msgs)
        out.append((both[0], both[1]))
        row += width
    return out


def featurize(
    records: Sequence[FlowRecord] | FlowBlock,
    signatures: Sequence[SignatureResult] | None = None,
) -> tuple[np.ndarray, list[SignatureResult]]:
    """Feature matrix (n x len(FEATURE_NAMES), float32) and each record's SignatureResult.

    Pass `signatures` when they are already computed for these records (same order). A
    FlowBlock is featurized from its columns (same values as its records).
    """
    if isinstance(records, FlowBlock):
        if signatures is None:
            signatures = signatures_of_payloads(block_payloads(records))
        inputs = inputs_of_block(records)
    else:
        if signatures is None:
            signatures = signatures_of(records)
        inputs = inputs_of_records(records) if len(records) else None
    sigs = list(signatures)
    n = len(inputs) if inputs is not None else 0
    if len(sigs) != n:
        raise ValueError(f"{len(sigs)} signature results for {n} records")
    X = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0 or inputs is None:
        return X, sigs
    return featurize_inputs(inputs, sigs), sigs


def featurize_inputs(
    inputs: FeatureInputs,
    sigs: Sequence[SignatureResult],
    rows: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """The feature matrix of `featurize` from FeatureInputs and the signature results.

    `rows` (bool per row, or a function of the matrix holding only the cheap columns that
    returns it; default all): the rows that get every column. The others get only the
    CHEAP_COLUMNS (whole-record counters, handshake shape, signatures) and zeros elsewhere:
    for a caller that decides those rows from the cheap columns alone (the model's domain
    gate, see flowdet.pipeline). Each row's values do not depend on the other rows, so a
    row in `rows` gets the same bits either way.
    """
    n = len(inputs)
    X = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return X
    if (_SIG_INDEX < 0).any():
        gone = [n for n, i in zip(SIGNATURE_COLUMNS, _SIG_INDEX.tolist(), strict=True) if i < 0]
        raise FlowdetError(f"signature feature(s) {', '.join(gone)} no longer exist")

    def put(cols: slice, values: np.ndarray, where: np.ndarray | slice = slice(None)) -> None:
        X[where, cols] = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)

    put(_COLS["record"], _record_columns(inputs.scalars, inputs.hists))
    put(_COLS["early"], early_features(inputs.first))
    X[:, _N_OWN:] = np.stack([s.features for s in sigs])[:, _SIG_INDEX]
    if callable(rows):
        rows = np.asarray(rows(X), dtype=bool)
    full = np.arange(n) if rows is None else np.flatnonzero(rows)
    if not len(full):
        return X
    fsigs = sigs if rows is None else [sigs[i] for i in full.tolist()]
    ssh = ssh_keystroke_columns(fsigs)
    ks = np.concatenate([ssh[:, :1], ssh[:, 3:]], axis=1)
    first = inputs.first if rows is None else tuple(a[full] for a in inputs.first)
    last = inputs.last if rows is None else tuple(a[full] for a in inputs.last)
    seqs = inputs.first_seqs if rows is None else _Rows(inputs.first_seqs, full)
    put(_COLS["first"], sequence_features(first, ks), full)
    put(_COLS["last"], sequence_features(last, ks), full)
    put(_COLS["ssh"], ssh[:, :3], full)
    is_ssh = ssh[:, 0] > 0
    ok_sizes = np.zeros(len(fsigs), dtype=np.int64)
    open_sizes = np.zeros(len(fsigs), dtype=np.int64)
    for i in np.flatnonzero(is_ssh).tolist():
        ok_sizes[i] = auth_success_size(fsigs[i])
        open_sizes[i] = session_open_size(negotiated_algorithms(fsigs[i]))
    put(_COLS["post_auth"], post_auth_features(seqs, is_ssh, ok_sizes, open_sizes), full)
    return X


class _Rows(Sequence):
    """seqs[rows[i]] as item i."""

    def __init__(self, seqs: Sequence, rows: np.ndarray) -> None:
        self.seqs, self.rows = seqs, rows.tolist()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):  # type: ignore[override]
        return self.seqs[self.rows[i]]


def _column_slices() -> dict[str, slice]:
    widths = {
        "record": len(_record_names()),
        "first": len(_seq_names("first")),
        "last": len(_seq_names("last")),
        "early": len(_early_names()),
        "ssh": 3,
        "post_auth": 4,
    }
    out, at = {}, 0
    for name, w in widths.items():
        out[name] = slice(at, at + w)
        at += w
    assert at == _N_OWN and _ssh_names()[3] == "ssh_auth_seen"
    return out


_COLS = _column_slices()
# Columns every row gets from featurize_inputs, also outside its `rows`.
CHEAP_COLUMNS: frozenset[str] = frozenset([*_record_names(), *_early_names(), *SIGNATURE_COLUMNS])


def feature_table_markdown() -> str:
    """The feature list for the docs, in column order."""
    return "\n".join(f"{i}. `{name}`" for i, name in enumerate(FEATURE_NAMES))
