"""Record walkers: find each packet record in a buffer of pcap or pcapng bytes.

The walk is inherently sequential (each record's length says where the next one starts), so
a Python loop over records caps the reader at well under a million packets/s. These walkers
are compiled with numba and only fill flat arrays (data offset, lengths, timestamp,
interface, link type); the Python side never touches individual records.

Each walker stops at the end of the buffer, at `max_n` records, or at a framing error, and
returns `(n, pos, code, aux)`: `pos` is where the next walk resumes, so a record split
across two reads is simply retried once more bytes have arrived.
"""

from __future__ import annotations

import numpy as np

from flowdet.capture.jit import compiled

# Walk result codes.
FULL = 0  # stopped because max_n records were found
NEED_MORE = 1  # the next record/block is not complete in the buffer
ERR_BLOCK_LEN = 2  # pcapng block total length is invalid (aux = the length)
ERR_SHB = 3  # pcapng section header is invalid (bad byte-order magic or version)
ERR_CAPLEN = 4  # classic pcap record claims an absurd caplen (aux = caplen)
ERR_TRAILER = 5  # pcapng trailing block length differs from the leading one (aux = trailer)

# Wireshark refuses records larger than this for the usual link types (WTAP_MAX_PACKET_SIZE).
MAX_CAPLEN = 262144
# Larger pcapng blocks are treated as framing errors rather than read into memory.
MAX_BLOCK = 16 * 1024 * 1024
# Interfaces kept across all sections of one pcapng stream.
MAX_IFACES = 4096

SHB_TYPE = 0x0A0D0D0A

# Counter slots filled by walk_pcapng (ReadStats reports them by name).
C_SHB, C_IDB, C_EPB, C_SPB, C_OPB, C_ISB, C_NRB, C_OTHER, C_UNKNOWN = range(9)
C_BAD_IFACE, C_IFACE_OVERFLOW, C_BAD_PACKET_BLOCK, C_BIG_CAPLEN = range(9, 13)
N_COUNTERS = 13
COUNTER_NAMES = (
    "section_header_blocks",
    "interface_description_blocks",
    "enhanced_packet_blocks",
    "simple_packet_blocks",
    "obsolete_packet_blocks",
    "interface_statistics_blocks",
    "name_resolution_blocks",
    "other_known_blocks",
    "unknown_blocks",
    "packets_on_undefined_interface",
    "interfaces_beyond_limit",
    "packet_blocks_with_bad_caplen",
    "packets_with_absurd_caplen",
)
# Counters that mean a packet record was present but could not be turned into a row.
LOST_PACKET_COUNTERS = (C_BAD_IFACE, C_BAD_PACKET_BLOCK, C_BIG_CAPLEN)

# State slots for walk_pcapng (persist across calls within one stream).
S_BIG, S_IF_BASE, S_IF_COUNT, S_LAST_TS, S_IF_TOTAL, S_SECTIONS = range(6)
N_STATE = 6


@compiled(inline="always")
def _u16(b: np.ndarray, p: int, big: bool) -> int:
    if big:
        return (np.int64(b[p]) << 8) | np.int64(b[p + 1])
    return np.int64(b[p]) | (np.int64(b[p + 1]) << 8)


@compiled(inline="always")
def _u32(b: np.ndarray, p: int, big: bool) -> int:
    if big:
        return (
            (np.int64(b[p]) << 24)
            | (np.int64(b[p + 1]) << 16)
            | (np.int64(b[p + 2]) << 8)
            | np.int64(b[p + 3])
        )
    return (
        np.int64(b[p])
        | (np.int64(b[p + 1]) << 8)
        | (np.int64(b[p + 2]) << 16)
        | (np.int64(b[p + 3]) << 24)
    )


@compiled
def walk_pcap(
    buf: np.ndarray,
    pos: int,
    end: int,
    max_n: int,
    big: bool,
    nano: bool,
    hdr_len: int,
    out_off: np.ndarray,
    out_cap: np.ndarray,
    out_wire: np.ndarray,
    out_ts: np.ndarray,
) -> tuple[int, int, int, int]:
    """Classic pcap: 16-byte record headers (24 for the Kuznetzov variant)."""
    n = 0
    frac_mul = 1 if nano else 1000
    while n < max_n:
        if end - pos < hdr_len:
            return n, pos, NEED_MORE, 0
        sec = _u32(buf, pos, big)
        frac = _u32(buf, pos + 4, big)
        cap = _u32(buf, pos + 8, big)
        wire = _u32(buf, pos + 12, big)
        if cap > MAX_CAPLEN:
            return n, pos, ERR_CAPLEN, cap
        if end - pos - hdr_len < cap:
            return n, pos, NEED_MORE, cap
        out_off[n] = pos + hdr_len
        out_cap[n] = cap
        out_wire[n] = wire
        out_ts[n] = sec * 1_000_000_000 + frac * frac_mul
        pos += hdr_len + cap
        n += 1
    return n, pos, FULL, 0


@compiled
def ts_to_ns(ts: int, pow2: bool, exp: int, offset_s: int) -> int:
    """A pcapng timestamp in units of 10^-exp or 2^-exp seconds, as ns since the epoch.

    The 64-bit count is unsigned (a present-day time in 10^-10 s units exceeds 2^63), so the
    split into seconds and fraction is done in uint64.
    """
    u = np.uint64(ts)
    billion = np.uint64(1_000_000_000)
    if pow2:
        if exp > 63:
            exp = 63
        e = np.uint64(exp)
        sec = u >> e
        frac = u & ((np.uint64(1) << e) - np.uint64(1))
        # Keep frac * 10^9 inside 64 bits: drop sub-nanosecond bits first for fine resolutions.
        shift = np.uint64(exp - 30) if exp > 30 else np.uint64(0)
        frac_ns = ((frac >> shift) * billion) >> (e - shift)
    else:
        if exp > 19:
            exp = 19
        unit = np.uint64(1)
        for _ in range(exp):
            unit *= np.uint64(10)
        sec = u // unit
        frac = u - sec * unit
        if exp <= 9:
            scale = np.uint64(1)
            for _ in range(9 - exp):
                scale *= np.uint64(10)
            frac_ns = frac * scale
        else:
            scale = np.uint64(1)
            for _ in range(exp - 9):
                scale *= np.uint64(10)
            frac_ns = frac // scale
    return (np.int64(sec) + offset_s) * 1_000_000_000 + np.int64(frac_ns)


@compiled
def _parse_idb_options(
    buf: np.ndarray,
    p: int,
    stop: int,
    big: bool,
    slot: int,
    if_tsres: np.ndarray,
    if_tsoff: np.ndarray,
) -> None:
    while p + 4 <= stop:
        code = _u16(buf, p, big)
        olen = _u16(buf, p + 2, big)
        v = p + 4
        if code == 0 or v + olen > stop:
            return
        if code == 9 and olen >= 1:
            if_tsres[slot] = buf[v]
        elif code == 14 and olen >= 8:
            hi = _u32(buf, v + 4, big) if not big else _u32(buf, v, big)
            lo = _u32(buf, v, big) if not big else _u32(buf, v + 4, big)
            if_tsoff[slot] = (hi << 32) | lo
        p = v + ((olen + 3) & ~3)


@compiled
def walk_pcapng(
    buf: np.ndarray,
    pos: int,
    end: int,
    max_n: int,
    state: np.ndarray,
    if_link: np.ndarray,
    if_snap: np.ndarray,
    if_tsres: np.ndarray,
    if_tsoff: np.ndarray,
    if_sect: np.ndarray,
    if_local: np.ndarray,
    counters: np.ndarray,
    out_off: np.ndarray,
    out_cap: np.ndarray,
    out_wire: np.ndarray,
    out_ts: np.ndarray,
    out_if: np.ndarray,
    out_link: np.ndarray,
) -> tuple[int, int, int, int]:
    """pcapng: SHB (either byte order, several per stream), IDB, EPB, SPB, OPB; others skipped.

    Interface ids in `out_if` are global across sections (section k's interface j is
    `state[S_IF_BASE] + j` at the time of that section), so they stay unique per stream.
    """
    n = 0
    while n < max_n:
        if end - pos < 12:
            return n, pos, NEED_MORE, 0
        btype = _u32(buf, pos, False)  # SHB's type is a palindrome; checked before byte order
        if btype == SHB_TYPE:
            bom = _u32(buf, pos + 8, True)
            if bom == 0x1A2B3C4D:
                big = True
            elif bom == 0x4D3C2B1A:
                big = False
            else:
                return n, pos, ERR_SHB, 0
            blen = _u32(buf, pos + 4, big)
            if blen < 28 or blen % 4 != 0 or blen > MAX_BLOCK:
                return n, pos, ERR_BLOCK_LEN, blen
            if end - pos < blen:
                return n, pos, NEED_MORE, blen
            if _u32(buf, pos + blen - 4, big) != blen:
                return n, pos, ERR_TRAILER, _u32(buf, pos + blen - 4, big)
            if _u16(buf, pos + 12, big) != 1:
                return n, pos, ERR_SHB, _u16(buf, pos + 12, big)
            state[S_BIG] = 1 if big else 0
            state[S_IF_BASE] = state[S_IF_TOTAL]
            state[S_IF_COUNT] = 0
            state[S_SECTIONS] += 1
            counters[C_SHB] += 1
            pos += blen
            continue
        big = state[S_BIG] == 1
        btype = _u32(buf, pos, big)
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK:
            return n, pos, ERR_BLOCK_LEN, blen
        if end - pos < blen:
            return n, pos, NEED_MORE, blen
        trailer = _u32(buf, pos + blen - 4, big)
        if trailer != blen:
            return n, pos, ERR_TRAILER, trailer
        body_end = pos + blen - 4
        if btype == 1:  # interface description
            counters[C_IDB] += 1
            if blen >= 20:
                slot = state[S_IF_TOTAL]
                if slot < MAX_IFACES:
                    if_link[slot] = _u16(buf, pos + 8, big)
                    if_snap[slot] = _u32(buf, pos + 12, big)
                    if_tsres[slot] = 6
                    if_tsoff[slot] = 0
                    if_sect[slot] = state[S_SECTIONS] - 1
                    if_local[slot] = state[S_IF_COUNT]
                    _parse_idb_options(buf, pos + 16, body_end, big, slot, if_tsres, if_tsoff)
                    state[S_IF_TOTAL] += 1
                else:
                    counters[C_IFACE_OVERFLOW] += 1
                state[S_IF_COUNT] += 1
            else:
                counters[C_BAD_PACKET_BLOCK] += 1
        elif btype == 6 or btype == 2 or btype == 3:
            if btype == 3:
                counters[C_SPB] += 1
                local_if = 0
                hdr = 12
                if blen < 16:
                    counters[C_BAD_PACKET_BLOCK] += 1
                    pos += blen
                    continue
                wire = _u32(buf, pos + 8, big)
            else:
                counters[C_EPB if btype == 6 else C_OPB] += 1
                hdr = 28
                if blen < 32:
                    counters[C_BAD_PACKET_BLOCK] += 1
                    pos += blen
                    continue
                local_if = _u32(buf, pos + 8, big) if btype == 6 else _u16(buf, pos + 8, big)
                wire = _u32(buf, pos + 24, big)
            slot = state[S_IF_BASE] + local_if
            if local_if >= state[S_IF_COUNT] or slot >= state[S_IF_TOTAL]:
                counters[C_BAD_IFACE] += 1
                pos += blen
                continue
            room = body_end - (pos + hdr)
            if btype == 3:
                cap = wire
                if if_snap[slot] > 0 and cap > if_snap[slot]:
                    cap = if_snap[slot]
                if cap > room:
                    cap = room
                ts = state[S_LAST_TS]
            else:
                cap = _u32(buf, pos + 20, big)
                if cap > room:
                    counters[C_BAD_PACKET_BLOCK] += 1
                    pos += blen
                    continue
                raw = (_u32(buf, pos + 12, big) << 32) | _u32(buf, pos + 16, big)
                res = if_tsres[slot]
                ts = ts_to_ns(raw, (res & 0x80) != 0, res & 0x7F, if_tsoff[slot])
                state[S_LAST_TS] = ts
            if cap > MAX_CAPLEN:
                counters[C_BIG_CAPLEN] += 1
                pos += blen
                continue
            out_off[n] = pos + hdr
            out_cap[n] = cap
            out_wire[n] = wire
            out_ts[n] = ts
            out_if[n] = slot
            out_link[n] = if_link[slot]
            n += 1
        elif btype == 5:
            counters[C_ISB] += 1
        elif btype == 4:
            counters[C_NRB] += 1
        elif (
            btype == 7  # IRIG timestamp
            or btype == 8  # ARINC 429
            or btype == 9  # systemd journal export
            or btype == 10  # decryption secrets
            or btype == 0x0BAD
            or btype == 0x40000BAD  # custom blocks
        ):
            counters[C_OTHER] += 1
        else:
            counters[C_UNKNOWN] += 1
        pos += blen
    return n, pos, FULL, 0
