"""Decode link, network and transport headers of a batch of records into PacketBatch columns.

Headers are variable-length chains (VLAN stacks, MPLS labels, PPPoE, IPv4 options, IPv6
extension headers), which a vectorised numpy decoder can only follow with one masked pass per
possible chain step and a gather per field. A compiled loop over the batch follows each
chain directly and touches each header byte once, so the kernel is numba-compiled: it reads
the flat record buffer and writes the columns in place, with no Python object per packet.

Every read is bounds-checked against the record's caplen: a record that ends inside a header
it announces is TRUNCATED, one whose fields contradict each other is MALFORMED, and both keep
zeroed network fields (see batch.py).
"""

from __future__ import annotations

import numpy as np

from flowdet.capture.batch import PacketBatch, Status
from flowdet.capture.jit import compiled

# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_FDDI = 10
LINKTYPE_RAW_12 = 12  # DLT_RAW on most BSDs
LINKTYPE_RAW_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_PPP_SERIAL = 50
LINKTYPE_PPP_ETHER = 51
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_PPP,
        LINKTYPE_FDDI,
        LINKTYPE_RAW_12,
        LINKTYPE_RAW_14,
        LINKTYPE_PPP_SERIAL,
        LINKTYPE_PPP_ETHER,
        LINKTYPE_RAW,
        LINKTYPE_C_HDLC,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

_OK = np.uint8(Status.OK)
_NON_IP = np.uint8(Status.NON_IP)
_TRUNC = np.uint8(Status.TRUNCATED)
_UNSUP = np.uint8(Status.UNSUPPORTED_LINK)
_MALF = np.uint8(Status.MALFORMED)
_FRAG = np.uint8(Status.FRAGMENT)

_V4_MAPPED = np.uint64(0x0000FFFF00000000)


@compiled(inline="always")
def _be16(d: np.ndarray, p: int) -> int:
    return (np.int64(d[p]) << 8) | np.int64(d[p + 1])


@compiled(inline="always")
def _be32(d: np.ndarray, p: int) -> int:
    return (
        (np.int64(d[p]) << 24)
        | (np.int64(d[p + 1]) << 16)
        | (np.int64(d[p + 2]) << 8)
        | np.int64(d[p + 3])
    )


@compiled(inline="always")
def _be64(d: np.ndarray, p: int) -> np.uint64:
    return (np.uint64(_be32(d, p)) << np.uint64(32)) | np.uint64(_be32(d, p + 4))


@compiled(inline="always")
def _ethertype_chain(
    d: np.ndarray, b: int, cap: int, et: int, off: int
) -> tuple[int, int, int, int]:
    """Follow VLAN tags, MPLS labels and PPPoE to IP.

    Returns (status, l3 offset, IP version, limit on the IP length or -1 for none).
    """
    for _ in range(64):
        if et == 0x0800:
            return _OK, off, 4, -1
        if et == 0x86DD:
            return _OK, off, 6, -1
        if et == 0x8100 or et == 0x88A8 or et == 0x9100 or et == 0x9200:
            if off + 4 > cap:
                return _TRUNC, 0, 0, -1
            et = _be16(d, b + off + 2)
            off += 4
        elif et == 0x8847 or et == 0x8848:  # MPLS unicast / multicast
            bottom = False
            for _ in range(16):
                if off + 4 > cap:
                    return _TRUNC, 0, 0, -1
                bottom = (d[b + off + 2] & 1) == 1
                off += 4
                if bottom:
                    break
            if not bottom:
                return _MALF, 0, 0, -1
            if off >= cap:
                return _TRUNC, 0, 0, -1
            nib = d[b + off] >> 4
            if nib == 4:
                return _OK, off, 4, -1
            if nib == 6:
                return _OK, off, 6, -1
            if nib == 0:  # pseudowire control word, then an Ethernet frame
                off += 4
                if off + 14 > cap:
                    return _TRUNC, 0, 0, -1
                et = _be16(d, b + off + 12)
                off += 14
            else:
                return _NON_IP, 0, 0, -1
        elif et == 0x88E7:  # 802.1ah backbone I-TAG, then the customer's MAC addresses
            if off + 18 > cap:
                return _TRUNC, 0, 0, -1
            et = _be16(d, b + off + 16)
            off += 18
        elif et == 0x8926:  # VN-Tag: 4 bytes of tag, then the next ethertype
            if off + 6 > cap:
                return _TRUNC, 0, 0, -1
            et = _be16(d, b + off + 4)
            off += 6
        elif et == 0x8903:  # Cisco FabricPath: 2 bytes FTag/TTL, then the inner frame
            if off + 16 > cap:
                return _TRUNC, 0, 0, -1
            et = _be16(d, b + off + 14)
            off += 16
        elif et <= 1500:  # 802.3 length: only LLC/SNAP carries an ethertype on
            if off + 8 > cap:
                return _NON_IP, 0, 0, -1
            if d[b + off] != 0xAA or d[b + off + 1] != 0xAA or d[b + off + 2] != 0x03:
                return _NON_IP, 0, 0, -1
            et = _be16(d, b + off + 6)
            off += 8
            if et <= 1500:
                return _NON_IP, 0, 0, -1
        elif et == 0x8864:  # PPPoE session: 6-byte header, then the PPP protocol
            if off + 8 > cap:
                return _TRUNC, 0, 0, -1
            proto = _be16(d, b + off + 6)
            lim = _be16(d, b + off + 4) - 2  # the PPPoE length bounds the IP packet
            off += 8
            if proto == 0x0021:
                return _OK, off, 4, lim
            if proto == 0x0057:
                return _OK, off, 6, lim
            return _NON_IP, 0, 0, -1
        else:
            return _NON_IP, 0, 0, -1
    return _MALF, 0, 0, -1


@compiled(inline="always")
def _ppp(d: np.ndarray, b: int, cap: int, off: int) -> tuple[int, int, int, int]:
    """PPP with optional HDLC address/control and protocol-field compression."""
    if off + 2 <= cap and d[b + off] == 0xFF and d[b + off + 1] == 0x03:
        off += 2
    if off >= cap:
        return _TRUNC, 0, 0, -1
    if d[b + off] & 1:
        proto = np.int64(d[b + off])
        off += 1
    else:
        if off + 2 > cap:
            return _TRUNC, 0, 0, -1
        proto = _be16(d, b + off)
        off += 2
    if proto == 0x21:
        return _OK, off, 4, -1
    if proto == 0x57:
        return _OK, off, 6, -1
    return _NON_IP, 0, 0, -1


@compiled(inline="always")
def _link(d: np.ndarray, b: int, cap: int, lt: int) -> tuple[int, int, int, int]:
    """Strip the link layer: (status, l3 offset, IP version or 0 = from the nibble, limit)."""
    if lt == 1:
        if cap < 14:
            return _TRUNC, 0, 0, -1
        return _ethertype_chain(d, b, cap, _be16(d, b + 12), 14)
    if lt == 10:  # FDDI: frame control + two addresses, then LLC/SNAP
        if cap < 13:
            return _TRUNC, 0, 0, -1
        return _ethertype_chain(d, b, cap, 0, 13)
    if lt == 113:
        if cap < 16:
            return _TRUNC, 0, 0, -1
        return _ethertype_chain(d, b, cap, _be16(d, b + 14), 16)
    if lt == 276:
        if cap < 20:
            return _TRUNC, 0, 0, -1
        return _ethertype_chain(d, b, cap, _be16(d, b), 20)
    if lt == 101 or lt == 12 or lt == 14:
        return _OK, 0, 0, -1
    if lt == 228:
        return _OK, 0, 4, -1
    if lt == 229:
        return _OK, 0, 6, -1
    if lt == 0 or lt == 108:
        if cap < 4:
            return _TRUNC, 0, 0, -1
        fam = np.int64(d[b]) | (np.int64(d[b + 1]) << 8)
        fam |= (np.int64(d[b + 2]) << 16) | (np.int64(d[b + 3]) << 24)
        if fam > 0xFFFF:  # written in the other byte order
            fam = _be32(d, b)
        if fam == 2:
            return _OK, 4, 4, -1
        if fam == 10 or fam == 24 or fam == 28 or fam == 30:
            return _OK, 4, 6, -1
        return _NON_IP, 0, 0, -1
    if lt == 9 or lt == 50 or lt == 104:
        if cap >= 2 and (d[b] == 0x0F or d[b] == 0x8F) and d[b + 1] == 0x00:  # Cisco HDLC
            if cap < 4:
                return _TRUNC, 0, 0, -1
            return _ethertype_chain(d, b, cap, _be16(d, b + 2), 4)
        if lt == 104:
            return _NON_IP, 0, 0, -1
        return _ppp(d, b, cap, 0)
    if lt == 51:
        if cap < 6:
            return _TRUNC, 0, 0, -1
        return _ppp(d, b, cap, 6)
    return _UNSUP, 0, 0, -1


@compiled(inline="always")
def _outer_vlan(d: np.ndarray, b: int, cap: int, lt: int) -> int:
    """VLAN id of the first 802.1Q/802.1ad tag right after the link header, else 0."""
    if lt == 1:  # Ethernet: ethertype at 12, tag control at 14
        et_at, tci_at = 12, 14
    elif lt == 113:  # Linux SLL
        et_at, tci_at = 14, 16
    elif lt == 276:  # Linux SLL2: protocol type first, 20-byte header
        et_at, tci_at = 0, 20
    else:
        return 0
    if cap < tci_at + 4:  # the whole tag, as the ethertype chain requires
        return 0
    et = _be16(d, b + et_at)
    if et == 0x8100 or et == 0x88A8 or et == 0x9100 or et == 0x9200:
        return _be16(d, b + tci_at) & 0x0FFF
    return 0


@compiled
def decode_kernel(
    d: np.ndarray,
    rec_off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    linktype: np.ndarray,
    status: np.ndarray,
    ip_version: np.ndarray,
    src_hi: np.ndarray,
    src_lo: np.ndarray,
    dst_hi: np.ndarray,
    dst_lo: np.ndarray,
    proto_out: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    ip_len: np.ndarray,
    l4_off: np.ndarray,
    payload_off: np.ndarray,
    payload_len: np.ndarray,
    tcp_flags: np.ndarray,
    tcp_seq: np.ndarray,
    tcp_ack: np.ndarray,
    tcp_win: np.ndarray,
    ip_id_out: np.ndarray,
    frag_off_out: np.ndarray,
    more_frags: np.ndarray,
    ttl_out: np.ndarray,
    vlan_out: np.ndarray,
) -> None:
    """Fill the network columns of rows 0..n-1 in place (columns must arrive zeroed)."""
    n = rec_off.shape[0]
    for i in range(n):
        b = rec_off[i]
        cap = np.int64(caplen[i])
        wire = np.int64(wirelen[i])
        if wire < cap:
            wire = cap
        vlan_out[i] = _outer_vlan(d, b, cap, np.int64(linktype[i]))
        st, l3, ver, lim = _link(d, b, cap, np.int64(linktype[i]))
        if st != _OK:
            status[i] = st
            continue
        if l3 >= cap:
            status[i] = _TRUNC
            continue
        nib = d[b + l3] >> 4
        if ver == 0:
            ver = nib
        if nib != ver or (ver != 4 and ver != 6):
            status[i] = _MALF
            continue
        avail = wire - l3  # bytes of the IP packet that were on the wire
        if 0 <= lim < avail:
            avail = lim
        s_hi = np.uint64(0)
        s_lo = np.uint64(0)
        t_hi = np.uint64(0)
        t_lo = np.uint64(0)
        fo = 0
        mf = False
        ident = 0
        if ver == 4:
            if l3 + 20 > cap:
                status[i] = _TRUNC
                continue
            ihl = (d[b + l3] & 15) * 4
            if ihl < 20:
                status[i] = _MALF
                continue
            if l3 + ihl > cap:
                status[i] = _TRUNC
                continue
            tot = _be16(d, b + l3 + 2)
            if tot == 0:  # TCP segmentation offload: the length is left for the NIC
                tot = avail
            if tot < ihl:
                status[i] = _MALF
                continue
            if tot > avail:
                tot = avail
            ident = _be16(d, b + l3 + 4)
            fl = _be16(d, b + l3 + 6)
            fo = fl & 0x1FFF
            mf = (fl & 0x2000) != 0
            hl = d[b + l3 + 8]
            pr = np.int64(d[b + l3 + 9])
            s_lo = _V4_MAPPED | np.uint64(_be32(d, b + l3 + 12))
            t_lo = _V4_MAPPED | np.uint64(_be32(d, b + l3 + 16))
            p = l3 + ihl
            l3_end = l3 + tot
            # IPv4 AH sits between IP and the transport (only when not a later fragment).
            bad = 0
            if fo == 0:
                for _ in range(4):
                    if pr != 51:
                        break
                    if p + 2 > cap:
                        bad = _TRUNC
                        break
                    pr = np.int64(d[b + p])
                    p += (np.int64(d[b + p + 1]) + 2) * 4
                    if p > l3_end:
                        bad = _MALF
                        break
            if bad:
                status[i] = bad
                continue
        else:
            if l3 + 40 > cap:
                status[i] = _TRUNC
                continue
            plen = _be16(d, b + l3 + 4)
            pr = np.int64(d[b + l3 + 6])
            hl = d[b + l3 + 7]
            tot = 40 + plen
            if plen == 0 and pr == 0:  # possibly a jumbogram: trust the frame
                tot = avail
            if tot > avail:
                tot = avail
            s_hi = _be64(d, b + l3 + 8)
            s_lo = _be64(d, b + l3 + 16)
            t_hi = _be64(d, b + l3 + 24)
            t_lo = _be64(d, b + l3 + 32)
            p = l3 + 40
            l3_end = l3 + tot
            bad = 0
            for _ in range(32):
                if pr == 0 or pr == 43 or pr == 60 or pr == 135 or pr == 139 or pr == 140:
                    if p + 2 > cap:
                        bad = _TRUNC
                        break
                    pr = np.int64(d[b + p])
                    p += (np.int64(d[b + p + 1]) + 1) * 8
                elif pr == 44:
                    if p + 8 > cap:
                        bad = _TRUNC
                        break
                    fw = _be16(d, b + p + 2)
                    fo = fw >> 3
                    mf = (fw & 1) != 0
                    ident = _be32(d, b + p + 4)
                    pr = np.int64(d[b + p])
                    p += 8
                    if fo != 0:
                        break
                elif pr == 51:
                    if p + 2 > cap:
                        bad = _TRUNC
                        break
                    pr = np.int64(d[b + p])
                    p += (np.int64(d[b + p + 1]) + 2) * 4
                else:
                    break
                if p > l3_end:
                    bad = _MALF
                    break
            if bad:
                status[i] = bad
                continue
        if p > l3_end:
            status[i] = _MALF
            continue
        l4len = l3_end - p
        st = _OK
        sp = 0
        dp = 0
        flags = 0
        seq = 0
        ack = 0
        win = 0
        poff = p
        plen4 = l4len
        if fo != 0:
            st = _FRAG
        elif pr == 6:
            if p + 20 > cap:
                st = _TRUNC
            else:
                doff = (np.int64(d[b + p + 12]) >> 4) * 4
                if doff > l4len and mf and l4len >= 20:
                    doff = l4len  # first fragment cut inside the TCP options: ports are here
                if doff < 20 or doff > l4len:
                    st = _MALF
                else:
                    sp = _be16(d, b + p)
                    dp = _be16(d, b + p + 2)
                    seq = _be32(d, b + p + 4)
                    ack = _be32(d, b + p + 8)
                    flags = d[b + p + 13]
                    win = _be16(d, b + p + 14)
                    poff = p + doff
                    plen4 = l4len - doff
        elif pr == 17 or pr == 136:
            if p + 8 > cap:
                st = _TRUNC
            elif l4len < 8:
                st = _MALF
            else:
                sp = _be16(d, b + p)
                dp = _be16(d, b + p + 2)
                poff = p + 8
                plen4 = l4len - 8
        elif pr == 132:
            if p + 12 > cap:
                st = _TRUNC
            elif l4len < 12:
                st = _MALF
            else:
                sp = _be16(d, b + p)
                dp = _be16(d, b + p + 2)
                poff = p + 12
                plen4 = l4len - 12
        elif pr == 1 or pr == 58:
            if p + 4 > cap:
                st = _TRUNC
            elif l4len < 4:
                st = _MALF
            else:
                sp = d[b + p]
                dp = d[b + p + 1]
                h = 8 if l4len >= 8 else l4len
                poff = p + h
                plen4 = l4len - h
        if st != _OK and st != _FRAG:
            status[i] = st
            continue
        status[i] = st
        ip_version[i] = ver
        src_hi[i] = s_hi
        src_lo[i] = s_lo
        dst_hi[i] = t_hi
        dst_lo[i] = t_lo
        proto_out[i] = pr
        sport[i] = sp
        dport[i] = dp
        ip_len[i] = tot
        l4_off[i] = p
        payload_off[i] = poff
        payload_len[i] = plen4
        tcp_flags[i] = flags
        tcp_seq[i] = seq
        tcp_ack[i] = ack
        tcp_win[i] = win
        ip_id_out[i] = ident
        frag_off_out[i] = fo
        more_frags[i] = mf
        ttl_out[i] = hl


def decode_into(batch: PacketBatch) -> None:
    """Fill the network columns of a batch whose record columns (rec_off, caplen, ...) are set."""
    if len(batch) == 0:
        return
    decode_kernel(
        batch.data,
        batch.rec_off,
        batch.caplen,
        batch.wirelen,
        batch.linktype,
        batch.status,
        batch.ip_version,
        batch.src_hi,
        batch.src_lo,
        batch.dst_hi,
        batch.dst_lo,
        batch.proto,
        batch.sport,
        batch.dport,
        batch.ip_len,
        batch.l4_off,
        batch.payload_off,
        batch.payload_len,
        batch.tcp_flags,
        batch.tcp_seq,
        batch.tcp_ack,
        batch.tcp_win,
        batch.ip_id,
        batch.frag_off,
        batch.more_frags,
        batch.ttl,
        batch.vlan,
    )


def decode_records(
    data: np.ndarray,
    rec_off: np.ndarray,
    caplen: np.ndarray,
    linktype: np.ndarray | int,
    wirelen: np.ndarray | None = None,
) -> PacketBatch:
    """Decode records already located in `data` (used by tests and by the reader)."""
    n = int(rec_off.shape[0])
    batch = PacketBatch.empty(n, data=np.ascontiguousarray(data, dtype=np.uint8))
    batch.rec_off[:] = rec_off
    batch.caplen[:] = caplen
    batch.wirelen[:] = caplen if wirelen is None else wirelen
    batch.linktype[:] = linktype
    if n:
        end = batch.rec_off.astype(np.int64) + batch.caplen
        if int(batch.rec_off.min()) < 0 or int(end.max()) > batch.data.shape[0]:
            raise ValueError("records extend beyond the data buffer")
    decode_into(batch)
    return batch
