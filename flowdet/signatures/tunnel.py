"""Proxy handshakes in front of the real protocol: SOCKS4/4a, SOCKS5 and HTTP CONNECT.

Miners hide pool connections behind proxies (xmrig ``--proxy``, Tor's SOCKS port, corporate
HTTP proxies), so the monitored flow goes to the proxy and starts with its handshake; the
stratum or TLS bytes come after it. `unwrap` recognises the handshake, reports where the
tunnel leads, and returns the payload packets that follow it, so that every other
recognizer can look at the tunnelled protocol as if the proxy were not there.

Handshakes (RFC 1928 for SOCKS5; SOCKS4 and 4a per their de-facto specs):

- SOCKS5: client ``05 n methods...``, server ``05 m``; client ``05 cmd 00 atyp addr port``
  (atyp 1 = IPv4, 3 = length-prefixed domain, 4 = IPv6); server ``05 rep 00 atyp addr port``.
  A username/password sub-negotiation (method 02) is skipped when present.
- SOCKS4: client ``04 cmd port ip userid 00`` (4a: ip 0.0.0.x, then ``domain 00``); server
  ``00 rep port ip`` (8 bytes).
- HTTP CONNECT: ``CONNECT host:port HTTP/1.x`` request and a ``2xx`` response, each ending
  with an empty line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from flowdet.signatures.evidence import Evidence, FamilyResult, FlowPayload, printable

FEATURES: tuple[str, ...] = (
    "sig_tunnel_socks",  # the flow opens with a SOCKS4/4a/5 CONNECT handshake
    "sig_tunnel_http_connect",  # the flow opens with an HTTP CONNECT request
    "sig_tunnel_payload",  # bytes follow the handshake (something is tunnelled)
)

_CONNECT = re.compile(rb"CONNECT ([\x21-\x7e]{1,300}) HTTP/1\.[01]\r?\n")
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


@dataclass(frozen=True, slots=True)
class Tunnel:
    kind: str  # "SOCKS5", "SOCKS4", "SOCKS4a", "HTTP CONNECT"
    target: str  # host:port the client asked for
    client_skip: int  # bytes of handshake at the start of the client stream
    server_skip: int  # bytes of handshake at the start of the server stream (may be cut)
    granted: bool | None  # the proxy's answer: True ok, False refused, None not seen


def _socks5(c: bytes, s: bytes) -> Tunnel | None:
    if len(c) < 3 or c[0] != 5 or not 1 <= c[1] <= 9 or len(c) < 2 + c[1]:
        return None
    pos = 2 + c[1]
    spos = 2 if s[:1] == b"\x05" else 0
    if spos and s[1:2] == b"\x02":  # username/password (RFC 1929): 01 ulen user plen pass
        if len(c) < pos + 2 or c[pos] != 1:
            return None
        ulen = c[pos + 1]
        plen_at = pos + 2 + ulen
        if len(c) <= plen_at:
            return None
        pos = plen_at + 1 + c[plen_at]
        spos += 2  # 01 status
    if len(c) < pos + 4 or c[pos] != 5 or c[pos + 1] not in (1, 2, 3) or c[pos + 2] != 0:
        return None
    atyp, apos = c[pos + 3], pos + 4
    if atyp == 1 and len(c) >= apos + 6:
        host, end = str(ipaddress.IPv4Address(c[apos : apos + 4])), apos + 4
    elif atyp == 4 and len(c) >= apos + 18:
        host, end = f"[{ipaddress.IPv6Address(c[apos : apos + 16])}]", apos + 16
    elif atyp == 3 and len(c) > apos and len(c) >= apos + 1 + c[apos] + 2 and c[apos]:
        host, end = c[apos + 1 : apos + 1 + c[apos]].decode("ascii", "replace"), apos + 1 + c[apos]
    else:
        return None
    port = int.from_bytes(c[end : end + 2], "big")
    granted = None
    if len(s) >= spos + 4 and s[spos] == 5:
        granted = s[spos + 1] == 0
        ratyp = s[spos + 3]
        rlen = {1: 4, 4: 16}.get(ratyp, 1 + s[spos + 4] if len(s) > spos + 4 else 0)
        spos += 4 + rlen + 2
    return Tunnel("SOCKS5", f"{printable(host, 255)}:{port}", end + 2, min(spos, len(s)), granted)


def _socks4(c: bytes, s: bytes) -> Tunnel | None:
    if len(c) < 9 or c[0] != 4 or c[1] not in (1, 2):
        return None
    end = c.find(b"\x00", 8, 8 + 256)
    if end < 0:
        return None
    port = int.from_bytes(c[2:4], "big")
    kind, host = "SOCKS4", str(ipaddress.IPv4Address(c[4:8]))
    if c[4:7] == b"\x00\x00\x00" and c[7] != 0:  # SOCKS4a: the domain follows the user id
        dend = c.find(b"\x00", end + 1, end + 1 + 256)
        if dend < 0:
            return None
        kind, host, end = "SOCKS4a", c[end + 1 : dend].decode("ascii", "replace"), dend
    granted = (s[1] == 0x5A) if len(s) >= 8 and s[0] == 0 else None
    return Tunnel(kind, f"{printable(host, 255)}:{port}", end + 1, 8 if granted else 0, granted)


def _http_connect(c: bytes, s: bytes) -> Tunnel | None:
    m = _CONNECT.match(c)
    if m is None:
        return None
    end = c.find(b"\r\n\r\n")
    cskip = end + 4 if end >= 0 else len(c)
    granted, sskip = None, 0
    if (st := _STATUS.match(s)) is not None:
        granted = st.group(1).startswith(b"2")
        send = s.find(b"\r\n\r\n")
        sskip = send + 4 if send >= 0 else len(s)
    return Tunnel("HTTP CONNECT", m.group(1).decode("latin-1"), cskip, sskip, granted)


def find_tunnel(client: bytes, server: bytes) -> Tunnel | None:
    """The proxy handshake at the start of the flow, if there is one."""
    if client[:1] == b"\x05":
        return _socks5(client, server)
    if client[:1] == b"\x04":
        return _socks4(client, server)
    if client[:8] == b"CONNECT ":
        return _http_connect(client, server)
    return None


def _skip(packets: tuple[bytes, ...], n: int) -> tuple[bytes, ...]:
    """The packets after the first `n` bytes, keeping the boundaries that remain."""
    out = []
    for p in packets:
        if n >= len(p):
            n -= len(p)
            continue
        out.append(p[n:])
        n = 0
    return tuple(out)


def unwrap(payload: FlowPayload) -> tuple[Tunnel, FlowPayload] | None:
    """(tunnel, the tunnelled payload) when the flow starts with a proxy handshake."""
    tunnel = find_tunnel(payload.client_stream, payload.server_stream)
    if tunnel is None:
        return None
    inner = FlowPayload(
        _skip(payload.toserver, tunnel.client_skip), _skip(payload.toclient, tunnel.server_skip)
    )
    return tunnel, inner


def inspect(payload: FlowPayload) -> FamilyResult:
    features = dict.fromkeys(FEATURES, 0.0)
    found = unwrap(payload)
    if found is None:
        return FamilyResult((), features)
    tunnel, inner = found
    features[
        "sig_tunnel_socks" if tunnel.kind.startswith("SOCKS") else "sig_tunnel_http_connect"
    ] = 1.0
    carried = bool(inner.toserver or inner.toclient)
    features["sig_tunnel_payload"] = float(carried)
    answer = {True: "granted", False: "refused", None: "no answer seen"}[tunnel.granted]
    article = "an" if tunnel.kind.startswith("HTTP") else "a"
    text = f"client opened {article} {tunnel.kind} tunnel to {tunnel.target} ({answer})"
    if carried:
        text += "; the bytes after the handshake are inspected as the tunnelled flow"
    detail: dict[str, str | int] = {"kind": tunnel.kind, "target": tunnel.target}
    if tunnel.granted is not None:
        detail["granted"] = int(tunnel.granted)
    return FamilyResult((Evidence("tunnel", "proxy", "toserver", detail, text),), features)
