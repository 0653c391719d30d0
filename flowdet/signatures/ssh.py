"""SSH: identification banners, the KEXINIT algorithm lists, HASSH, and keystroke sizes.

Both sides open with a banner line ``SSH-2.0-<software>[ <comments>]\\r\\n`` (RFC 4253 4.2;
a server may send other lines first), then an unencrypted binary packet
``uint32 packet_length, byte padding_length, payload, padding`` whose payload is
SSH_MSG_KEXINIT (20): a 16-byte cookie, ten name-lists (kex, host key, cipher c2s/s2c, MAC
c2s/s2c, compression c2s/s2c, language c2s/s2c), a boolean and a reserved uint32.

HASSH (salesforce/hassh) is the MD5 of four of those lists joined with ';':
client ``kex;enc_c2s;mac_c2s;cmp_c2s``, server (hasshServer) ``kex;enc_s2c;mac_s2c;cmp_s2c``.

Caveat for the flows stage: OpenSSH 9 clients send a KEXINIT of 1.4-1.6 KB (post-quantum kex
names and two dozen host-key algorithms). With a 1 KB payload prefix per direction the list is
cut before the compression lists, so HASSH and the negotiated cipher come out only for the
lists that fit; the parser reports what it recovered (``KexInit.complete``) and never guesses.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from flowdet.signatures.evidence import Evidence, FamilyResult, FlowPayload, printable

_NAME_CHARS = bytes(range(0x21, 0x7F))  # what a KEXINIT name-list may hold (RFC 4251 5)

FEATURES: tuple[str, ...] = (
    "sig_ssh_banner",  # either side sent an SSH identification banner
    "sig_ssh_client_is_openssh",
    "sig_ssh_server_is_openssh",
    "sig_ssh_client_kexinit",  # the initiator's KEXINIT parsed far enough for HASSH
    "sig_ssh_server_kexinit",
    "sig_ssh_client_kex_count",  # number of kex algorithms the client offers
    "sig_ssh_strict_kex",  # client offers kex-strict-c-v00@openssh.com (OpenSSH >= 9.6 et al.)
    "sig_ssh_aead",  # negotiated client-to-server cipher is an AEAD (chacha20-poly1305, gcm)
    "sig_ssh_keystroke_size",  # wire size of a 1-byte channel-data packet, c2s (0 = unknown)
)

KEXINIT = 20
MAX_BANNER = 255
MAX_PACKET = 35000  # RFC 4253 6.1: implementations must handle 35000-byte packets
LIST_NAMES = (
    "kex",
    "hostkey",
    "enc_c2s",
    "enc_s2c",
    "mac_c2s",
    "mac_s2c",
    "comp_c2s",
    "comp_s2c",
    "lang_c2s",
    "lang_s2c",
)


@dataclass(frozen=True, slots=True)
class Banner:
    raw: str
    proto: str  # "2.0", "1.99", ...
    software: str
    comments: str


@dataclass(frozen=True, slots=True)
class KexInit:
    cookie: bytes
    lists: tuple[tuple[str, ...], ...]  # name-lists in wire order, fewer than 10 if cut short
    complete: bool  # all ten lists present

    def get(self, name: str) -> tuple[str, ...] | None:
        i = LIST_NAMES.index(name)
        return self.lists[i] if i < len(self.lists) else None


def parse_banner(stream: bytes) -> tuple[Banner | None, int]:
    """The SSH identification line and the offset just after it (0 if there is none)."""
    pos = 0
    for _ in range(16):  # a server may send a few other lines before its banner
        end = stream.find(b"\n", pos, pos + MAX_BANNER + 2)
        line = stream[pos:end] if end >= 0 else stream[pos : pos + MAX_BANNER]
        if line.startswith(b"SSH-"):
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            proto, _, rest = text[4:].partition("-")
            software, _, comments = rest.partition(" ")
            if not proto or not software:
                return None, 0
            return Banner(printable(text, MAX_BANNER), proto, software, comments), (
                end + 1 if end >= 0 else len(stream)
            )
        if end < 0:
            break
        pos = end + 1
    return None, 0


def parse_kexinit(data: bytes) -> KexInit | None:
    """A KEXINIT from the binary packet at the start of `data`, or None if it is not one.

    A packet cut short by the prefix limit still yields the name-lists that fit entirely.
    """
    if len(data) < 6 + 16:
        return None
    packet_length, padding_length = struct.unpack_from(">IB", data, 0)
    if data[5] != KEXINIT or not (16 + 4 * 10 <= packet_length <= MAX_PACKET):
        return None
    if padding_length < 4 or padding_length >= packet_length:
        return None
    end = min(len(data), 4 + packet_length - padding_length)
    cookie = data[6:22]
    pos = 22
    lists: list[tuple[str, ...]] = []
    while len(lists) < 10 and pos + 4 <= end:
        (n,) = struct.unpack_from(">I", data, pos)
        if pos + 4 + n > end:
            if 4 + packet_length <= len(data):
                return None  # the whole packet is here and the list overruns it: not KEXINIT
            break
        raw = data[pos + 4 : pos + 4 + n]
        try:
            names = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
        if raw.translate(None, _NAME_CHARS):  # something outside 0x21..0x7e is left
            return None
        lists.append(tuple(names.split(",")) if names else ())
        pos += 4 + n
    if not lists:
        return None
    return KexInit(cookie, tuple(lists), len(lists) == 10)


def _hash(kex: KexInit | None, names: tuple[str, str, str, str]) -> tuple[str, str] | None:
    if kex is None:
        return None
    parts = [kex.get(n) for n in names]
    if any(p is None for p in parts):
        return None
    algorithms = ";".join(",".join(p) for p in parts if p is not None)
    return algorithms, hashlib.md5(algorithms.encode(), usedforsecurity=False).hexdigest()


def hassh(kex: KexInit | None) -> tuple[str, str] | None:
    """(hasshAlgorithms, hassh) of a client KEXINIT, or None if the lists are incomplete."""
    return _hash(kex, ("kex", "enc_c2s", "mac_c2s", "comp_c2s"))


def hassh_server(kex: KexInit | None) -> tuple[str, str] | None:
    """(hasshServerAlgorithms, hasshServer) of a server KEXINIT, or None."""
    return _hash(kex, ("kex", "enc_s2c", "mac_s2c", "comp_s2c"))


def negotiate(client: tuple[str, ...] | None, server: tuple[str, ...] | None) -> str | None:
    """RFC 4253 7.1: the first algorithm on the client's list that the server also supports."""
    if not client or not server:
        return None
    offered = set(server)
    return next((a for a in client if a in offered), None)


# Cipher -> (block size used for padding, AEAD tag length or 0)
CIPHERS: dict[str, tuple[int, int]] = {
    "chacha20-poly1305@openssh.com": (8, 16),
    "aes128-gcm@openssh.com": (16, 16),
    "aes256-gcm@openssh.com": (16, 16),
    "aes128-ctr": (16, 0),
    "aes192-ctr": (16, 0),
    "aes256-ctr": (16, 0),
    "aes128-cbc": (16, 0),
    "aes192-cbc": (16, 0),
    "aes256-cbc": (16, 0),
    "rijndael-cbc@lysator.liu.se": (16, 0),
    "3des-cbc": (8, 0),
    "3des-ctr": (8, 0),
    "blowfish-cbc": (8, 0),
    "cast128-cbc": (8, 0),
    "arcfour": (8, 0),
    "arcfour128": (8, 0),
    "arcfour256": (8, 0),
    "none": (8, 0),
}
# MAC -> tag length; "-etm@openssh.com" variants have the same length and encrypt-then-MAC.
MACS: dict[str, int] = {
    "hmac-sha1": 20,
    "hmac-sha1-96": 12,
    "hmac-sha2-256": 32,
    "hmac-sha2-512": 64,
    "hmac-md5": 16,
    "hmac-md5-96": 12,
    "hmac-ripemd160": 20,
    "hmac-ripemd160@openssh.com": 20,
    "umac-64@openssh.com": 8,
    "umac-128@openssh.com": 16,
    "none": 0,
}


def _mac_info(mac: str | None) -> tuple[int, bool] | None:
    if mac is None:
        return None  # unknown (e.g. the MAC lists were cut off); "none" means no MAC
    if mac.endswith("-etm@openssh.com"):
        base = mac.removesuffix("-etm@openssh.com")
        length = MACS.get(base, MACS.get(base + "@openssh.com"))
        return (length, True) if length is not None else None
    length = MACS.get(mac)
    return (length, False) if length is not None else None


def message_wire_size(cipher: str, mac: str | None, payload_len: int) -> int | None:
    """TCP payload bytes of one encrypted SSH binary packet whose payload is `payload_len`.

    The arithmetic (RFC 4253 6, as OpenSSH's packet.c and Dropbear's packet.c do it): the
    packet is 4 (packet_length) + 1 (padding_length) + payload + padding, where padding is at
    least 4 bytes and makes the encrypted part a multiple of the cipher block size (at least
    8). With an AEAD cipher or an encrypt-then-MAC MAC the 4-byte length field is not part of
    the encrypted part, so it is left out of the multiple. The MAC (or AEAD tag) follows.
    `mac` is ignored for AEAD ciphers; pass "none" for no MAC, None if unknown. None for a
    cipher or MAC this table does not know.
    """
    spec = CIPHERS.get(cipher)
    if spec is None or payload_len < 1:
        return None
    block, tag = spec
    if tag:
        mac_len, aad = tag, 4  # AEAD: the MAC negotiation result is ignored
    else:
        info = _mac_info(mac)
        if info is None:
            return None
        mac_len, etm = info
        aad = 4 if etm else 0
    unpadded = 4 + 1 + payload_len
    padding = block - ((unpadded - aad) % block)
    if padding < 4:
        padding += block
    return unpadded + padding + mac_len


def channel_data_wire_size(cipher: str, mac: str | None, data_len: int) -> int | None:
    """TCP payload bytes of one SSH_MSG_CHANNEL_DATA packet carrying `data_len` bytes:
    payload = 1 (message type) + 4 (recipient channel) + 4 (string length) + data_len,
    framed by `message_wire_size`."""
    if data_len < 0:
        return None
    return message_wire_size(cipher, mac, 9 + data_len)


def userauth_success_wire_size(cipher: str, mac: str | None) -> int | None:
    """TCP payload bytes of SSH_MSG_USERAUTH_SUCCESS (RFC 4252 5.1: the message type alone).

    This is how a passive observer finds the end of user authentication whatever the key
    type or client: the signed request before it is 228 bytes from Dropbear with ed25519 and
    chacha20-poly1305, 600-1000 from OpenSSH with RSA, so no size threshold on the request
    fits all, while the success has one size per cipher/MAC. chacha20-poly1305: 6 bytes, the
    2 after the length padded by 6 to 8, + 16-byte tag = 28; aes128-gcm: 2 padded to 16,
    + 4 + 16 = 36; aes128-ctr + hmac-sha2-256: 6 padded to 16 + 32 = 48; aes256-ctr +
    hmac-sha2-512-etm: 20 + 64 = 84. USERAUTH_FAILURE, PK_OK, SERVICE_ACCEPT and EXT_INFO
    carry at least 6 bytes of payload more, so before the success no server packet has its
    size (payloads of 2-3 bytes share it under chacha20; none is sent before auth).
    """
    return message_wire_size(cipher, mac, 1)


def ssh_packet_overhead(cipher: str, mac: str | None) -> int | None:
    """Bytes on the wire (TCP payload) for a 1-byte channel-data message: one keystroke.

    Worked through `channel_data_wire_size`: the packet before padding is 4 + 1 + 10 = 15.
    chacha20-poly1305 (8-byte blocks, length outside): 11 padded by 5 to 16, so 20 + 16-byte
    tag = 36. aes128-gcm (16-byte blocks, length outside): also 11 + 5 -> 36.
    aes128-ctr + hmac-sha2-256: all 15 encrypted, padding 1 is under the minimum of 4, so 17
    -> 32, + 32-byte MAC = 64. aes128-ctr + hmac-sha2-256-etm: 11 + 5 -> 20, + 32 = 52.
    """
    return channel_data_wire_size(cipher, mac, 1)


def nested_keystroke_size(
    inner: tuple[str, str | None], outer: tuple[str, str | None]
) -> int | None:
    """A keystroke in an SSH session carried inside another SSH connection's channel (a -R or
    -L tunnel): the inner packet becomes the outer channel data (reverse_ssh.bro's idea)."""
    inner_size = channel_data_wire_size(inner[0], inner[1], 1)
    if inner_size is None:
        return None
    return channel_data_wire_size(outer[0], outer[1], inner_size)


@dataclass(frozen=True, slots=True)
class SshSide:
    banner: Banner | None
    kexinit: KexInit | None


def parse_side(stream: bytes) -> SshSide:
    banner, offset = parse_banner(stream)
    if banner is None:
        return SshSide(None, None)
    return SshSide(banner, parse_kexinit(stream[offset:]))


def inspect(payload: FlowPayload) -> FamilyResult:
    features = dict.fromkeys(FEATURES, 0.0)
    if not (payload.client_stream[:4] == b"SSH-" or b"SSH-" in payload.server_stream[:1024]):
        return FamilyResult((), features)
    client = parse_side(payload.client_stream)
    server = parse_side(payload.server_stream)
    evidence: list[Evidence] = []
    for side, direction, who in ((client, "toserver", "client"), (server, "toclient", "server")):
        if side.banner is None:
            continue
        features["sig_ssh_banner"] = 1.0
        if side.banner.software.startswith("OpenSSH"):
            features[f"sig_ssh_{who}_is_openssh"] = 1.0
        evidence.append(
            Evidence(
                "ssh",
                "banner",
                direction,  # type: ignore[arg-type]
                {
                    "proto": printable(side.banner.proto, 10),
                    "software": printable(side.banner.software),
                    "comments": printable(side.banner.comments),
                },
                f'{who} SSH banner "{side.banner.raw}"',
            )
        )
        kex = side.kexinit
        if kex is None:
            continue
        fp = hassh(kex) if who == "client" else hassh_server(kex)
        label = "hassh" if who == "client" else "hasshServer"
        detail: dict[str, str | int] = {"lists": len(kex.lists), "complete": int(kex.complete)}
        for name, values in zip(LIST_NAMES, kex.lists, strict=False):
            detail[name] = printable(",".join(values), 2000)
        if fp is not None:
            features[f"sig_ssh_{who}_kexinit"] = 1.0
            detail[label] = fp[1]
            detail[label + "Algorithms"] = printable(fp[0], 4000)
            text = f"{who} KEXINIT with {label} {fp[1]}"
        else:
            text = f"{who} KEXINIT cut short after {len(kex.lists)} of 10 name-lists (no {label})"
        if kex.get("kex"):
            text += f", {len(kex.get('kex') or ())} kex algorithms"
        evidence.append(Evidence("ssh", "kexinit", direction, detail, text))  # type: ignore[arg-type]

    ckex = client.kexinit
    if ckex is not None and ckex.get("kex"):
        kex_names = ckex.get("kex") or ()
        features["sig_ssh_client_kex_count"] = float(len(kex_names))
        features["sig_ssh_strict_kex"] = float("kex-strict-c-v00@openssh.com" in kex_names)
    skex = server.kexinit
    if ckex is not None and skex is not None:
        cipher = negotiate(ckex.get("enc_c2s"), skex.get("enc_c2s"))
        mac = negotiate(ckex.get("mac_c2s"), skex.get("mac_c2s"))
        cipher_s2c = negotiate(ckex.get("enc_s2c"), skex.get("enc_s2c"))
        mac_s2c = negotiate(ckex.get("mac_s2c"), skex.get("mac_s2c"))
        if cipher is not None:
            aead = CIPHERS.get(cipher, (0, 0))[1] > 0
            features["sig_ssh_aead"] = float(aead)
            size = ssh_packet_overhead(cipher, None if aead else mac)
            features["sig_ssh_keystroke_size"] = float(size or 0)
            mac_text = "its built-in MAC" if aead else (mac or "an unknown MAC")
            # mac_c2s: "" = implicit in the AEAD cipher; "unknown" = the MAC lists were cut off
            detail = {"cipher_c2s": cipher, "mac_c2s": "" if aead else (mac or "unknown")}
            if cipher_s2c is not None:
                # toclient: what the server's own messages (USERAUTH_SUCCESS) are framed with
                aead_s2c = CIPHERS.get(cipher_s2c, (0, 0))[1] > 0
                detail["cipher_s2c"] = cipher_s2c
                detail["mac_s2c"] = "" if aead_s2c else (mac_s2c or "unknown")
                ok = userauth_success_wire_size(cipher_s2c, None if aead_s2c else mac_s2c)
                if ok is not None:
                    detail["auth_success_wire_size"] = ok
            text = f"client and server agree on {cipher} with {mac_text}"
            if size is not None:
                detail["keystroke_wire_size"] = size
                text += f": a 1-byte keystroke is a {size}-byte TCP payload"
            evidence.append(Evidence("ssh", "negotiated", "toserver", detail, text))
    return FamilyResult(tuple(evidence), features)
