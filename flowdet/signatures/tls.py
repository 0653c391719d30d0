"""TLS: ClientHello and ServerHello in the clear, their fingerprints, and pool-like names.

Mining over TLS (stratum+ssl, xmrig's ``tls: true``) hides the JSON, but the ClientHello
still names the server (SNI) and shows the client library: miners built on OpenSSL or Go
offer no ALPN and no GREASE, browsers offer both. JA3 (salesforce/ja3) and JA4
(FoxIO-LLC/ja4, technical_details/JA4.md) are computed per their published definitions, only
from a ClientHello that is completely inside the payload prefix; a hello cut short still gives
SNI, ALPN and ciphers when they come before the cut.

Layout (RFC 8446 4.1.2 / RFC 5246 7.4.1.2): records ``type(1)=22 version(2) length(2)``,
handshake ``msg_type(1) length(3)``, then ``legacy_version(2) random(32) session_id<1>
cipher_suites<2> compression_methods<1> extensions<2>``; each extension ``type(2) data<2>``.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from flowdet.signatures.evidence import Evidence, FamilyResult, FlowPayload, printable

FEATURES: tuple[str, ...] = (
    "sig_tls_client_hello",  # the initiator's payload starts with a TLS ClientHello
    "sig_tls_server_hello",
    "sig_tls_sni_present",
    "sig_tls_sni_poolish",  # the SNI looks like a mining pool (see `poolish`): a hint only
    "sig_tls_alpn_present",
    "sig_tls_alpn_http",  # ALPN offers h2 or http/1.x
    "sig_tls_grease",  # the client uses GREASE values (Chromium/BoringSSL family)
    "sig_tls_version",  # highest offered version: 10, 11, 12, 13 (0 if unknown)
    "sig_tls_n_ciphers",
    "sig_tls_n_extensions",
)

HANDSHAKE = 22
CLIENT_HELLO = 1
SERVER_HELLO = 2
EXT_SNI = 0x0000
EXT_GROUPS = 0x000A
EXT_POINT_FORMATS = 0x000B
EXT_SIG_ALGS = 0x000D
EXT_ALPN = 0x0010
EXT_SUPPORTED_VERSIONS = 0x002B
MAX_HANDSHAKE = 1 << 16

# Known pool operators (matched anywhere in the name) and generic words (matched as whole
# labels or label parts split on '.' and '-'). Sources: the pools of the mining-real corpus,
# the ET COINMINER rule set's TLS SNI rules, and the large public pools' domains.
POOL_OPERATORS: tuple[str, ...] = (
    "2miners",
    "antpool",
    "braiins",
    "c3pool",
    "dwarfpool",
    "ethermine",
    "f2pool",
    "flexpool",
    "hashvault",
    "herominers",
    "hiveon",
    "k1pool",
    "kryptex",
    "minergate",
    "minexmr",
    "mining-dutch",
    "miningpoolhub",
    "moneroocean",
    "nanopool",
    "nicehash",
    "poolin",
    "prohashing",
    "slushpool",
    "supportxmr",
    "suprnova",
    "unmineable",
    "viabtc",
    "woolypooly",
    "zergpool",
    "zpool",
)
POOL_WORDS: tuple[str, ...] = ("pool", "mine", "miner", "miners", "mining", "stratum", "xmr")
_LABEL_SPLIT = re.compile(r"[.\-_]")


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE: 0x0a0a, 0x1a1a, ..., 0xfafa."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def poolish(name: str) -> str | None:
    """Why a server name looks like a mining pool ("nanopool", "word pool"), or None.

    A pool operator's name anywhere, or a label (or dash-separated part) that is one of the
    generic words or starts or ends with "pool"/"xmr". "minecraft.net" does not match (the
    part is "minecraft"), "carpool.example" does (ends with "pool"): it is a hint for the
    model, never a verdict.
    """
    lowered = name.lower()
    for operator in POOL_OPERATORS:
        if operator in lowered:
            return operator
    for part in _LABEL_SPLIT.split(lowered):
        if part in POOL_WORDS:
            return f"word {part}"
        if part.startswith(("pool", "xmr")) or part.endswith("pool"):
            return f"word {part}"
    return None


@dataclass(frozen=True, slots=True)
class ClientHello:
    record_version: int
    version: int  # legacy_version in the hello body
    ciphers: tuple[int, ...]
    extensions: tuple[int, ...]  # extension types in wire order
    sni: str | None
    alpn: tuple[bytes, ...]
    supported_versions: tuple[int, ...]
    sig_algs: tuple[int, ...]
    groups: tuple[int, ...]
    point_formats: tuple[int, ...]
    complete: bool  # the whole hello was inside the prefix

    @property
    def max_version(self) -> int:
        offered = [v for v in self.supported_versions if not is_grease(v)]
        return max(offered) if offered else self.version


@dataclass(frozen=True, slots=True)
class ServerHello:
    version: int
    cipher: int
    extensions: tuple[int, ...]
    selected_version: int  # from supported_versions, else the legacy version
    complete: bool


def _handshake_bytes(stream: bytes) -> tuple[bytes, bool]:
    """Handshake-layer bytes from the leading handshake records; True if no record was cut."""
    out = bytearray()
    pos = 0
    while pos + 5 <= len(stream) and len(out) < MAX_HANDSHAKE:
        ctype, major, length = (
            stream[pos],
            stream[pos + 1],
            struct.unpack_from(">H", stream, pos + 3)[0],
        )
        if ctype != HANDSHAKE or major != 3 or length == 0 or length > 18432:
            break
        fragment = stream[pos + 5 : pos + 5 + length]
        out += fragment
        if len(fragment) < length:
            return bytes(out), False
        pos += 5 + length
    return bytes(out), True


def _u8_list(data: bytes) -> tuple[int, ...]:
    return tuple(data[1 : 1 + data[0]]) if data else ()


def _u16_list(data: bytes, len_bytes: int) -> tuple[int, ...]:
    if len(data) < len_bytes:
        return ()
    n = data[0] if len_bytes == 1 else struct.unpack_from(">H", data)[0]
    body = data[len_bytes : len_bytes + n]
    return tuple(struct.unpack_from(f">{len(body) // 2}H", body)) if len(body) >= 2 else ()


def _sni(data: bytes) -> str | None:
    # server_name_list<2>: name_type(1) host_name<2>
    pos = 2
    while pos + 3 <= len(data):
        kind, n = data[pos], struct.unpack_from(">H", data, pos + 1)[0]
        name = data[pos + 3 : pos + 3 + n]
        if kind == 0 and name:
            return name.decode("ascii", "backslashreplace")
        pos += 3 + n
    return None


def _alpn(data: bytes) -> tuple[bytes, ...]:
    out = []
    pos = 2
    while pos < len(data) and len(out) < 16:
        n = data[pos]
        out.append(bytes(data[pos + 1 : pos + 1 + n]))
        pos += 1 + n
    return tuple(out)


def _record_version(stream: bytes) -> int:
    return struct.unpack_from(">H", stream, 1)[0] if len(stream) >= 3 else 0


def parse_client_hello(stream: bytes) -> ClientHello | None:
    """The ClientHello at the start of the initiator's payload, possibly cut short."""
    hs, records_whole = _handshake_bytes(stream)
    if len(hs) < 4 + 2 + 32 + 1 or hs[0] != CLIENT_HELLO:
        return None
    length = int.from_bytes(hs[1:4], "big")
    if length < 2 + 32 + 1 + 2 + 2:
        return None
    body = hs[4 : 4 + length]
    complete = len(body) == length and records_whole
    version = struct.unpack_from(">H", body, 0)[0]
    if body[0] != 3:
        return None
    pos = 34
    pos += 1 + body[pos]  # session id
    if pos + 2 > len(body):
        return ClientHello(
            _record_version(stream), version, (), (), None, (), (), (), (), (), False
        )
    n = struct.unpack_from(">H", body, pos)[0]
    raw_ciphers = body[pos + 2 : pos + 2 + n]
    ciphers = struct.unpack_from(f">{len(raw_ciphers) // 2}H", raw_ciphers)
    pos += 2 + n
    if pos < len(body):
        pos += 1 + body[pos]  # compression methods
    extensions: list[int] = []
    fields: dict[int, bytes] = {}
    if pos + 2 <= len(body):
        ext_end = min(len(body), pos + 2 + struct.unpack_from(">H", body, pos)[0])
        pos += 2
        while pos + 4 <= ext_end:
            etype, elen = struct.unpack_from(">HH", body, pos)
            data = body[pos + 4 : pos + 4 + elen]
            if len(data) < elen:
                complete = False
                break
            extensions.append(etype)
            fields.setdefault(etype, data)
            pos += 4 + elen
    return ClientHello(
        record_version=_record_version(stream),
        version=version,
        ciphers=tuple(ciphers),
        extensions=tuple(extensions),
        sni=_sni(fields[EXT_SNI]) if EXT_SNI in fields else None,
        alpn=_alpn(fields[EXT_ALPN]) if EXT_ALPN in fields else (),
        supported_versions=_u16_list(fields.get(EXT_SUPPORTED_VERSIONS, b""), 1),
        sig_algs=_u16_list(fields.get(EXT_SIG_ALGS, b""), 2),
        groups=_u16_list(fields.get(EXT_GROUPS, b""), 2),
        point_formats=_u8_list(fields.get(EXT_POINT_FORMATS, b"")),
        complete=complete,
    )


def parse_server_hello(stream: bytes) -> ServerHello | None:
    hs, records_whole = _handshake_bytes(stream)
    if len(hs) < 4 + 2 + 32 + 1 + 3 or hs[0] != SERVER_HELLO:
        return None
    length = int.from_bytes(hs[1:4], "big")
    body = hs[4 : 4 + length]
    if body[0] != 3 or len(body) < 2 + 32 + 1:
        return None
    version = struct.unpack_from(">H", body, 0)[0]
    pos = 34
    pos += 1 + body[pos]
    if pos + 3 > len(body):
        return None
    cipher = struct.unpack_from(">H", body, pos)[0]
    pos += 3  # cipher + compression method
    extensions: list[int] = []
    selected = version
    if pos + 2 <= len(body):
        ext_end = min(len(body), pos + 2 + struct.unpack_from(">H", body, pos)[0])
        pos += 2
        while pos + 4 <= ext_end:
            etype, elen = struct.unpack_from(">HH", body, pos)
            data = body[pos + 4 : pos + 4 + elen]
            if len(data) < elen:
                break
            extensions.append(etype)
            if etype == EXT_SUPPORTED_VERSIONS and elen == 2:
                selected = struct.unpack_from(">H", data)[0]
            pos += 4 + elen
    return ServerHello(
        version, cipher, tuple(extensions), selected, len(body) == length and records_whole
    )


def ja3(hello: ClientHello) -> tuple[str, str] | None:
    """(JA3 string, its MD5): version,ciphers,extensions,groups,point formats; no GREASE."""
    if not hello.complete:
        return None

    def dashed(values: tuple[int, ...]) -> str:
        return "-".join(str(v) for v in values if not is_grease(v))

    text = ",".join(
        (
            str(hello.version),
            dashed(hello.ciphers),
            dashed(hello.extensions),
            dashed(hello.groups),
            dashed(hello.point_formats),
        )
    )
    return text, hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def ja3s(hello: ServerHello) -> tuple[str, str] | None:
    if not hello.complete:
        return None
    text = f"{hello.version},{hello.cipher},{'-'.join(str(e) for e in hello.extensions)}"
    return text, hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}


def _ja4_alpn(alpn: tuple[bytes, ...]) -> str:
    if not alpn or not alpn[0]:
        return "00"
    first = alpn[0]

    def alnum(b: int) -> bool:
        return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A

    if alnum(first[0]) and alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    hexed = first.hex()
    return hexed[0] + hexed[-1]


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ja4(hello: ClientHello, transport: str = "t") -> str | None:
    """JA4 per FoxIO's JA4.md: a_b_c, with GREASE ignored everywhere."""
    if not hello.complete:
        return None
    ciphers = [c for c in hello.ciphers if not is_grease(c)]
    exts = [e for e in hello.extensions if not is_grease(e)]
    version = _JA4_VERSIONS.get(hello.max_version, "00")
    part_a = (
        f"{transport}{version}{'d' if EXT_SNI in exts else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{_ja4_alpn(hello.alpn)}"
    )
    part_b = _sha12(",".join(f"{c:04x}" for c in sorted(ciphers))) if ciphers else "0" * 12
    sorted_exts = sorted(e for e in exts if e not in (EXT_SNI, EXT_ALPN))
    if sorted_exts:
        text_c = ",".join(f"{e:04x}" for e in sorted_exts)
        sig_algs = [s for s in hello.sig_algs if not is_grease(s)]
        if sig_algs:
            text_c += "_" + ",".join(f"{s:04x}" for s in sig_algs)
        part_c = _sha12(text_c)
    else:
        part_c = "0" * 12
    return f"{part_a}_{part_b}_{part_c}"


def _version_name(v: int) -> str:
    return {0x0304: "1.3", 0x0303: "1.2", 0x0302: "1.1", 0x0301: "1.0", 0x0300: "SSL 3.0"}.get(
        v, f"0x{v:04x}"
    )


def _version_number(v: int) -> float:
    return {0x0304: 13.0, 0x0303: 12.0, 0x0302: 11.0, 0x0301: 10.0, 0x0300: 3.0}.get(v, 0.0)


def inspect(payload: FlowPayload) -> FamilyResult:
    features = dict.fromkeys(FEATURES, 0.0)
    evidence: list[Evidence] = []
    client = payload.client_stream
    hello = parse_client_hello(client) if client[:1] == b"\x16" else None
    if hello is not None:
        features["sig_tls_client_hello"] = 1.0
        features["sig_tls_version"] = _version_number(hello.max_version)
        features["sig_tls_n_ciphers"] = float(sum(1 for c in hello.ciphers if not is_grease(c)))
        features["sig_tls_n_extensions"] = float(
            sum(1 for e in hello.extensions if not is_grease(e))
        )
        features["sig_tls_grease"] = float(
            any(is_grease(v) for v in hello.ciphers + hello.extensions)
        )
        alpn = [printable(a, 40) for a in hello.alpn]
        detail: dict[str, str | int] = {
            "version": _version_name(hello.max_version),
            "ciphers": len(hello.ciphers),
            "complete": int(hello.complete),
        }
        parts = [f"offers TLS {_version_name(hello.max_version)}"]
        if hello.sni is not None:
            features["sig_tls_sni_present"] = 1.0
            detail["sni"] = printable(hello.sni, 253)
            parts.insert(0, f'SNI "{printable(hello.sni)}"')
        if alpn:
            features["sig_tls_alpn_present"] = 1.0
            features["sig_tls_alpn_http"] = float(
                any(a in ("h2", "http/1.1", "http/1.0", "h3") for a in alpn)
            )
            detail["alpn"] = ",".join(alpn)
            parts.append("ALPN " + ",".join(alpn))
        else:
            parts.append("no ALPN")
        if (j3 := ja3(hello)) is not None:
            detail["ja3"], detail["ja3_string"] = j3[1], printable(j3[0], 4000)
        if (j4 := ja4(hello)) is not None:
            detail["ja4"] = j4
            parts.append(f"JA4 {j4}")
        elif not hello.complete:
            parts.append("cut short by the payload prefix")
        evidence.append(
            Evidence(
                "tls",
                "client_hello",
                "toserver",
                detail,
                "client sent TLS ClientHello (" + ", ".join(parts) + ")",
            )
        )
        if hello.sni is not None and (why := poolish(hello.sni)) is not None:
            features["sig_tls_sni_poolish"] = 1.0
            evidence.append(
                Evidence(
                    "tls",
                    "sni_poolish",
                    "toserver",
                    {"sni": printable(hello.sni, 253), "match": why},
                    f'TLS SNI "{printable(hello.sni)}" looks like a mining pool name ({why})',
                    strength="hint",
                )
            )
    server = payload.server_stream
    shello = parse_server_hello(server) if server[:1] == b"\x16" else None
    if shello is not None:
        features["sig_tls_server_hello"] = 1.0
        detail = {
            "version": _version_name(shello.selected_version),
            "cipher": f"0x{shello.cipher:04x}",
        }
        if (j3s := ja3s(shello)) is not None:
            detail["ja3s"] = j3s[1]
        evidence.append(
            Evidence(
                "tls",
                "server_hello",
                "toclient",
                detail,
                f"server sent TLS ServerHello (TLS {detail['version']}, cipher {detail['cipher']})",
            )
        )
    return FamilyResult(tuple(evidence), features)
