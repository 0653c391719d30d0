"""Reasons: why a flow was flagged, in sentences a person can check in Wireshark.

Two sources:

- payload evidence from the signatures (`Evidence.text`, e.g. 'client sent stratum
  mining.subscribe (agent "cgminer/4.9") to 198.51.100.7:3333'), the most checkable;
- descriptions computed from the flow record itself: message periodicity per side, packet
  sizes and rate, who breaks silences, which side sends the bare ACKs, keystroke-sized
  packets (JA4SSH / reverse_ssh.bro ideas), byte volumes.

Which descriptions are shown is decided by what drove the verdict: `drivers` maps model
feature names to how much each pushed this flow towards its label (per-feature
contributions of a tree ensemble, or how atypical of benign training flows the value is;
see flowdet.pipeline.drivers_for). Each describer declares the feature names it speaks
for (a regular expression); describers are ranked by the summed drivers of their features,
and the top ones that have something true to say are kept. Without drivers, a fixed
per-label order is used. A describer only ever states what the record shows, so a reason
can be wrong about *why* the model decided, never about the flow.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flowdet.flows.record import FlowRecord
from flowdet.signatures import FAMILIES, MINING_FAMILIES, SignatureResult
from flowdet.signatures.ssh import channel_data_wire_size

MAX_REASONS = 6

# Inner SSH sessions usually negotiate one of these: the sizes of a keystroke nested in the
# outer session are computed for each (reverse_ssh.bro's idea, with OpenSSH defaults).
_INNER_CIPHERS: tuple[tuple[str, str | None], ...] = (
    ("chacha20-poly1305@openssh.com", None),
    ("aes128-gcm@openssh.com", None),
    ("aes256-gcm@openssh.com", None),
    ("aes128-ctr", "hmac-sha2-256-etm@openssh.com"),
    ("aes256-ctr", "hmac-sha2-512-etm@openssh.com"),
    ("aes128-ctr", "hmac-sha2-256"),
    ("aes128-ctr", "hmac-sha1"),
)


@dataclass(frozen=True, slots=True)
class Reason:
    """One sentence about a flow; `source` says where it comes from (for filtering in jq)."""

    text: str
    source: str  # "signature:<family>" or "flow:<describer>"
    weight: float = 0.0  # summed drivers of the features it speaks for (0 = not ranked)


# -- formatting ---------------------------------------------------------------------------


def fmt_secs(s: float) -> str:
    """Seconds as a person reads them: 0.35 s, 31 s, 4 min 5 s, 2 h 3 min."""
    if s < 1:
        return f"{s:.2g} s"
    if s < 100:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 3600:
        m, r = divmod(round(s), 60)
        return f"{m} min {r} s" if r else f"{m} min"
    h, r = divmod(round(s), 3600)
    return f"{h} h {r // 60} min"


def fmt_bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n:.1f} TB"


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _side(direction: str) -> str:
    return "client" if direction == "toserver" else "server"


# -- signature evidence -------------------------------------------------------------------


def _relevant_families(label: str) -> frozenset[str]:
    if label == "mining":
        return MINING_FAMILIES | {"tls", "http"}
    if label == "ssh-tunnel":
        return frozenset({"ssh"})
    return frozenset()


# TLS / HTTP evidence that speaks about mining: a pool-like SNI (which also names the server,
# checkable as tls.handshake.extensions_server_name), the ClientHello that carries it, and
# a miner User-Agent.
_MINING_HINTS = frozenset({"client_hello", "sni_poolish", "miner_user_agent", "request"})


def evidence_reasons(rec: FlowRecord, sig: SignatureResult | None, label: str) -> list[Reason]:
    """Signature evidence worth showing for `label`: message-level first, hints after.

    Client-side sentences get ' to <server>', server-side ' from <server>', so the line can
    be typed into a Wireshark filter as it stands.
    """
    if sig is None:
        return []
    fams = _relevant_families(label)
    server = _endpoint(rec.dest_ip, rec.dest_port)
    out: list[Reason] = []
    seen: set[str] = set()
    order = {"message": 0, "shape": 1, "hint": 2}
    for ev in sorted(sig.evidence, key=lambda e: order.get(e.strength, 3)):
        if ev.family not in fams:
            continue
        if ev.family in ("tls", "http") and ev.name not in _MINING_HINTS:
            continue  # a ClientHello or an HTTP request proves nothing about mining alone
        if ev.text in seen:
            continue
        seen.add(ev.text)
        text = ev.text
        if ev.family == "ssh" and ev.name == "kexinit":
            continue  # fingerprints go to explain; banners and the negotiation stay
        if text.startswith("client and server"):
            pass
        elif text.startswith("client ") and " to " not in text:
            text = f"{text} to {server}"
        elif text.startswith("server ") and " from " not in text:
            text = f"{text} from {server}"
        out.append(Reason(text, f"signature:{ev.family}"))
    return out


# -- flow-record describers ---------------------------------------------------------------


def describe_periodic_server(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """Server job pushes: mining pools send work every few seconds to minutes."""
    return _periodic(rec, "toclient")


def describe_periodic_client(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """Client share submissions (Poisson-like) or keep-alives."""
    return _periodic(rec, "toserver")


def _periodic(rec: FlowRecord, d: str) -> str | None:
    n = getattr(rec, f"payload_pkts_{d}")
    mean = getattr(rec, f"piat_mean_{d}")
    std = getattr(rec, f"piat_std_{d}")
    if n < 3 or mean < 0.5:
        return None
    size = getattr(rec, f"payload_bytes_{d}") / max(n, 1)
    verb = "pushes" if d == "toclient" else "sends"
    regular = " (regular)" if std < 0.25 * mean else (" (irregular)" if std > mean else "")
    return (
        f"{_side(d)} {verb} ~{size:.0f}-byte messages every {fmt_secs(mean)} ± {fmt_secs(std)}"
        f"{regular}, {n} payload packets"
    )


def describe_sizes_rate(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """Small packets at a low rate over a long time: Nemea's miner_detector criteria."""
    pkts = rec.pkts_toserver + rec.pkts_toclient
    if pkts < 4 or rec.duration <= 0:
        return None
    rate = pkts / rec.duration
    return (
        f"mean packet {rec.size_mean_toserver:.0f} B to the server, "
        f"{rec.size_mean_toclient:.0f} B to the client; {pkts:,} packets in "
        f"{fmt_secs(rec.duration)} ({rate:.2g} packets/s)"
    )


def describe_bursts(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """Who speaks first after a silence: a server that drives the session is unusual."""
    total = rec.bursts_toserver + rec.bursts_toclient
    if total < 3:
        return None
    who, n = (
        ("server", rec.bursts_toclient)
        if rec.bursts_toclient >= rec.bursts_toserver
        else ("client", rec.bursts_toserver)
    )
    return f"the {who} spoke first after {n} of {total} silences longer than 1 s"


def describe_bare_acks(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """JA4SSH: in a reverse shell the bare ACKs come from the server side."""
    total = rec.bare_acks_toserver + rec.bare_acks_toclient
    if total < 10:
        return None
    if rec.bare_acks_toclient >= rec.bare_acks_toserver:
        who, n, other = "server", rec.bare_acks_toclient, "client"
    else:
        who, n, other = "client", rec.bare_acks_toserver, "server"
    return (
        f"bare ACKs come from the {who} side: {n} of {total} (the {other} sends most of the data)"
    )


def _negotiated(sig: SignatureResult | None) -> tuple[str, str | None] | None:
    if sig is None:
        return None
    for ev in sig.evidence:
        if ev.family == "ssh" and ev.name == "negotiated":
            cipher = str(ev.detail.get("cipher_c2s", ""))
            mac = str(ev.detail.get("mac_c2s", "")) or None
            if cipher:
                return cipher, mac
    return None


def keystroke_sizes(sig: SignatureResult | None) -> tuple[int | None, dict[int, str]]:
    """(size of a 1-byte keystroke in this SSH session, {nested keystroke size: inner cipher})."""
    neg = _negotiated(sig)
    if neg is None:
        return None, {}
    cipher, mac = neg
    single = channel_data_wire_size(cipher, mac, 1)
    nested: dict[int, str] = {}
    for inner in _INNER_CIPHERS:
        inner_size = channel_data_wire_size(inner[0], inner[1], 1)
        if inner_size is None:
            continue
        outer = channel_data_wire_size(cipher, mac, inner_size)
        if outer is not None:
            nested.setdefault(outer, inner[0])
    return single, nested


def _seq_payloads(rec: FlowRecord) -> list[tuple[int, int]]:
    """(dir, payload len) of the packets in first_pkts and last_pkts, without overlap."""
    first = list(zip(rec.first_pkts["dir"], rec.first_pkts["len"], strict=True))
    last = list(zip(rec.last_pkts["dir"], rec.last_pkts["len"], strict=True))
    total = rec.pkts_toserver + rec.pkts_toclient - rec.frags_toserver - rec.frags_toclient
    if total <= len(first):
        return first
    overlap = max(0, len(first) + len(last) - total)
    return first + last[overlap:]


def _windows(rec: FlowRecord) -> list[list[tuple[int, int, float]]]:
    """The first and last packet windows as (dir, payload len, time since window start);
    the last window is left out when it is the same packets as the first."""
    out = []
    total = rec.pkts_toserver + rec.pkts_toclient - rec.frags_toserver - rec.frags_toclient
    for name in ("first_pkts", "last_pkts"):
        if name == "last_pkts" and total <= len(rec.first_pkts["len"]):
            break
        w = getattr(rec, name)
        t, rows = 0.0, []
        for i, (d, n, gap) in enumerate(zip(w["dir"], w["len"], w["iat"], strict=True)):
            t += gap if i else 0.0
            rows.append((d, n, t))
        out.append(rows)
    return out


def typed_pairs(rec: FlowRecord, size: int) -> tuple[int, int, int]:
    """(pairs typed by the initiator, pairs typed by the responder, packets of `size`).

    A typed keystroke is a `size`-byte payload from one side answered by a payload from the
    other side (the echo, often but not always of the same size) sooner than the keystroke
    followed the packet before it: the echo comes after a round trip, the next keystroke
    after a human pause. Alternating keystroke/echo streams are so attributed to the side
    that types.
    """
    typed = [0, 0]
    count = 0
    for rows in _windows(rec):
        pay = [(d, n, t) for d, n, t in rows if n > 0]
        count += sum(1 for _, n, _ in pay if n == size)
        for k in range(1, len(pay) - 1):
            d, n, t = pay[k]
            d2, _, t2 = pay[k + 1]
            if n == size and d2 != d and (t2 - t) < (t - pay[k - 1][2]):
                typed[d] += 1
    return typed[0], typed[1], count


def describe_keystrokes(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """Keystroke-sized packets and who types them: typing from the responder (the outside
    host) into a session the inside host opened is the mark of a reverse tunnel."""
    single, nested = keystroke_sizes(sig)
    cands = [(s, f"a keystroke inside a nested {c} session") for s, c in nested.items()]
    if single is not None:
        cands.append((single, "a 1-byte keystroke in this session"))
    best: tuple[int, int, int, int, str] | None = None  # (pairs, dir, size, count, kind)
    for size, kind in cands:
        by_init, by_resp, count = typed_pairs(rec, size)
        for d, pairs in ((0, by_init), (1, by_resp)):
            if pairs >= 3 and (best is None or pairs > best[0]):
                best = (pairs, d, size, count, kind)
    if best is None:
        return None
    pairs, d, size, count, kind = best
    who = (
        "typed from the outside host (the responder), each echoed by the initiator"
        if d == 1
        else "typed from the initiator side, each echoed by the responder"
    )
    return (
        f"keystroke-sized packets ({size} B = {kind}) {who}: {pairs} keystroke/echo pairs "
        f"among the first and last 32 packets"
    )


def describe_modal_sizes(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """JA4SSH-style modal payload size per side, over the packets the record keeps."""
    seq = [(d, n) for d, n in _seq_payloads(rec) if n > 0]
    if len(seq) < 8:
        return None
    c = Counter(n for d, n in seq if d == 0).most_common(1)
    s = Counter(n for d, n in seq if d == 1).most_common(1)
    if not c or not s:
        return None
    return (
        f"modal payload sizes: client {c[0][0]} B ({c[0][1]}x), server {s[0][0]} B "
        f"({s[0][1]}x); bare ACKs client {rec.bare_acks_toserver}, server "
        f"{rec.bare_acks_toclient}"
    )


def describe_volume(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    up, down = rec.payload_bytes_toserver, rec.payload_bytes_toclient
    if up + down < 1000:
        return None
    ratio = (up + 1) / (down + 1)
    if 1 / 3 <= ratio <= 3:
        return None
    return (
        f"the initiator sent {fmt_bytes(up)} of payload, the responder {fmt_bytes(down)} "
        f"({'upload' if ratio > 1 else 'download'}-heavy)"
    )


def describe_second_handshake(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """A second SSH banner or KEXINIT-sized exchange after the outer key exchange: an
    inner SSH session inside the channel (packetStrider's reverse-session mark)."""
    if sig is None or not any(e.family == "ssh" for e in sig.evidence):
        return None
    fp = rec.first_pkts
    seq = [(d, n) for d, n in zip(fp["dir"], fp["len"], strict=True) if n > 0]
    if len(seq) < 12:
        return None
    # outer: banners, KEXINITs and the key exchange are the first 6-8 payload packets; an
    # inner handshake shows later as a pair of large packets, one each way
    later = seq[8:]
    big = [(i, d, n) for i, (d, n) in enumerate(later) if n >= 900]
    for i, d, n in big:
        for _j, d2, n2 in big:
            if _j > i and d2 != d and _j - i <= 4:
                first, second = ("server", "client") if d == 1 else ("client", "server")
                return (
                    f"large packets after the key exchange: {n} B from the {first}, then "
                    f"{n2} B from the {second} (payload packets {i + 9} and {_j + 9}), as a "
                    f"second SSH handshake inside the session would send, {first} side first"
                )
    return None


def _bin_text(k: int) -> str:
    lo = 1 << k
    if k == 0:
        return "1 B"
    return f"{lo}+ B" if k >= 11 else f"{lo}-{(lo << 1) - 1} B"


def describe_size_bins(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """The dominant payload size range per side (the log2 histogram the model sees)."""
    parts = []
    for d, who in (("toserver", "client"), ("toclient", "server")):
        hist = getattr(rec, f"payload_hist_{d}")
        n = sum(hist)
        if n < 2:
            continue
        k = max(range(len(hist)), key=lambda i: hist[i])
        parts.append(f"{who} {_bin_text(k)} ({hist[k]} of {n})")
    if not parts:
        return None
    return "most payloads are " + ", ".join(parts)


def describe_first_payloads(rec: FlowRecord, sig: SignatureResult | None) -> str | None:
    """Sizes of the first payload packets, client + / server -, in order: protocol
    handshakes (a 64/234-byte Noise handshake, a JSON login, an SSH banner) show here."""
    fp = rec.first_pkts
    sizes = [
        f"{'C' if d == 0 else 'S'}{n}" for d, n in zip(fp["dir"], fp["len"], strict=True) if n > 0
    ][:8]
    if len(sizes) < 2:
        return None
    return "first payload packets (C = client, S = server, bytes): " + " ".join(sizes)


Describer = Callable[[FlowRecord, SignatureResult | None], str | None]

# name -> (describer, regex of the model feature names it speaks for)
DESCRIBERS: dict[str, tuple[Describer, str]] = {
    "server_period": (describe_periodic_server, r"piat.*toclient|payload_rate_toclient|period"),
    "client_period": (describe_periodic_client, r"piat.*toserver|payload_rate_toserver"),
    "sizes_rate": (
        describe_sizes_rate,
        r"size_mean|size_std|duration|payload_mean|mean_len|log_pkts|payload_rate|iat_cv",
    ),
    "bursts": (describe_bursts, r"burst|idle|max_gap"),
    "bare_acks": (describe_bare_acks, r"bare_ack"),
    "keystrokes": (describe_keystrokes, r"ks1|ks2|keystroke"),
    "second_handshake": (describe_second_handshake, r"big_after_idle|handshake|inner"),
    "modal_sizes": (describe_modal_sizes, r"mode_len|mode_frac|hist_mode|alternation"),
    "size_bins": (describe_size_bins, r"hist_to"),
    "first_payloads": (describe_first_payloads, r"early_size|first_payload"),
    "volume": (describe_volume, r"upload_|log_payload_bytes|ratio"),
}

# Without drivers: what usually matters for each label, most telling first.
DEFAULT_ORDER: dict[str, tuple[str, ...]] = {
    "mining": ("server_period", "client_period", "sizes_rate", "bursts"),
    "ssh-tunnel": (
        "keystrokes",
        "second_handshake",
        "bare_acks",
        "bursts",
        "modal_sizes",
        "volume",
    ),
}


_FAMILY_FEATURES = {family: frozenset(names) for family, _, names in FAMILIES}


def _family_weight(reason: Reason, drivers: Mapping[str, float]) -> float:
    names = _FAMILY_FEATURES.get(reason.source.split(":", 1)[1], frozenset())
    return round(sum(v for f, v in drivers.items() if v > 0 and f in names), 4)


def flow_reasons(
    rec: FlowRecord,
    sig: SignatureResult | None,
    label: str,
    drivers: Mapping[str, float] | None = None,
    max_reasons: int = MAX_REASONS,
) -> list[Reason]:
    """Evidence sentences first, then flow descriptions ranked by drivers; at most
    `max_reasons` in all (evidence takes at most half when descriptions exist)."""
    ev = evidence_reasons(rec, sig, label)
    if drivers:
        weights = {
            name: sum(v for f, v in drivers.items() if v > 0 and re.search(rx, f))
            for name, (_, rx) in DESCRIBERS.items()
        }
        order = sorted(
            (n for n in DESCRIBERS if weights[n] > 0), key=lambda n: weights[n], reverse=True
        )
        # describers no driver speaks for still follow, in the label's default order
        order += [n for n in DEFAULT_ORDER.get(label, ()) if n not in order]
    else:
        weights = {}
        order = list(DEFAULT_ORDER.get(label, tuple(DESCRIBERS)))
    desc: list[Reason] = []
    for name in order:
        text = DESCRIBERS[name][0](rec, sig)
        if text:
            desc.append(Reason(text, f"flow:{name}", round(weights.get(name, 0.0), 4)))
    if drivers:
        ev = [Reason(r.text, r.source, _family_weight(r, drivers)) for r in ev]
    n_ev = min(len(ev), max(max_reasons - len(desc), (max_reasons + 1) // 2))
    return ev[:n_ev] + desc[: max_reasons - n_ev]
