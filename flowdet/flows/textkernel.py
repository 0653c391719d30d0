"""Compiled row writer: a block of flow records -> the CSV or JSON lines text of its records.

Why compiled: a block of records is ~80 cells per row, and formatting cells with one Python
call each (str(), repr(), joins) was the largest single cost of `flowdet flows` after the
flow table. The sinks (flowdet.sinks) prepare every column once: integer
columns as an int64 matrix, text columns (addresses, times, Community ID, names) as one byte
buffer with offsets, float columns as indices into the text of their distinct values (each
made by repr() once). This kernel then writes row after row into one byte buffer.

Fields that are a whole number of nanoseconds in seconds (NS_FIELDS: durations and gaps) are
written here from the integer: for |ns| < 10^15 the decimal ns * 10^-9 has at most 15
significant digits, so it is exactly repr(ns / 1e9) (a decimal of <= 15 significant digits
is the shortest repr of the double nearest to it, and ns / 1e9 is that double). Python's repr
rules are kept: exponent form below 1e-4 ("1.5e-05"), ".0" for whole numbers.
"""

from __future__ import annotations

import numpy as np

from flowdet.capture.jit import compiled
from flowdet.flows.layout import SEQ_DIR_SHIFT, SEQ_FLAGS_SHIFT, SEQ_LEN_MASK

# Column kinds.
K_INT = 0  # int64 value
K_INT_NULL = 1  # int64 value, NULL_INT = empty cell
K_TEXT = 2  # bytes from the text buffer
K_FLOAT = 3  # text of a distinct float value, by index
K_NS = 4  # int64 nanoseconds, written as repr(ns / 1e9); |ns| < NS_EXACT_LIMIT
K_INTLIST = 5  # cnt[j] int64 columns as a JSON list
K_SEQ_FIRST = 6  # first_pkts as JSON (iat in K_NS text)
K_SEQ_LAST = 7  # last_pkts as JSON
NULL_INT = np.iinfo(np.int64).min
NS_EXACT_LIMIT = 10**15
INT_WIDTH = 20  # widest int64 text
NS_WIDTH = 24  # widest K_NS text
DECIMAL_WIDTH = 40  # widest shortest_decimals text: sign, 16 digits, point, 21 zeros

# Literal texts of a packet sequence, in one buffer that callers append to theirs at offset 0.
SEQ_LITERALS = b'{"dir":[' + b'],"len":[' + b'],"iat":[' + b'],"flags":['
SEQ_LIT_START = np.array([0, 8, 17, 26], np.int64)
SEQ_LIT_LEN = np.array([8, 9, 9, 11], np.int64)


def shortest_decimals(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c, k) with repr(v) == the decimal c * 10^-k in fixed notation, k = -1 where not found.

    repr() gives the shortest decimal that reads back as v. For 1e-4 <= |v| < 1e16 (fixed
    notation) it is the k-fractional-digit decimal nearest to v for the smallest k at which
    that decimal reads back as v. With c an integer below 2^53 and 10^k exact (k <= 22), c /
    10^k in float64 is correctly rounded, so `c / 10**k == v` is exactly "reads back as v".
    c = rint(v * 10^k) may be off by one, so c - 1, c, c + 1 are tried; when two of them read
    back (possible where 10^-k is under one ulp), or once c reaches 2^53 (17 digits), the
    value is left to repr(). -0.0, 0.0 handled apart; nan and inf are left to repr().
    """
    v = np.asarray(values, dtype=np.float64)
    mant = np.zeros(v.shape[0], np.int64)
    exp = np.full(v.shape[0], -1, np.int64)
    a = np.abs(v)
    zero = (v == 0) & ~np.signbit(v)
    exp[zero] = 0
    todo = np.flatnonzero(np.isfinite(v) & (a >= 1e-4) & (a < 1e16))
    limit = float(2**53)
    for k in range(23):
        if todo.shape[0] == 0:
            break
        x = v[todo]
        p = 10.0**k
        c0 = np.rint(x * p)
        hits = np.zeros(todo.shape[0], np.int64)
        chosen = np.zeros(todo.shape[0])
        for delta in (-1.0, 0.0, 1.0):
            c = c0 + delta
            ok = (np.abs(c) < limit) & (c / p == x)
            hits += ok
            chosen = np.where(ok, c, chosen)
        one = hits == 1
        mant[todo[one]] = chosen[one].astype(np.int64)
        exp[todo[one]] = k
        # found (or ambiguous: repr decides), or past 16 digits: stop looking
        todo = todo[(hits == 0) & (np.abs(c0) < limit)]
    return mant, exp


@compiled(inline="always")
def _put_uint(out, o, u):
    """Decimal digits of the unsigned value u at out[o:]; returns the new end."""
    if u == 0:
        out[o] = 48
        return o + 1
    n = 0
    v = u
    while v > 0:
        v //= np.uint64(10)
        n += 1
    p = o + n
    v = u
    while v > 0:
        p -= 1
        out[p] = np.uint8(48 + np.int64(v % np.uint64(10)))
        v //= np.uint64(10)
    return o + n


@compiled(inline="always")
def _put_int(out, o, v):
    if v < 0:
        out[o] = 45  # '-'
        o += 1
        return _put_uint(out, o, np.uint64(-(v + 1)) + np.uint64(1))
    return _put_uint(out, o, np.uint64(v))


@compiled
def _put_ns(out, o, v):
    """repr(v / 1e9) for |v| < 10^15."""
    if v < 0:
        out[o] = 45
        o += 1
        v = -v
    if v == 0:
        out[o] = 48
        out[o + 1] = 46
        out[o + 2] = 48
        return o + 3
    if v < 100000:  # below 1e-4: exponent form, d[.ddd]e-XX
        digits = np.empty(5, np.uint8)
        n = 0
        x = v
        while x > 0:
            digits[n] = np.uint8(48 + x % 10)
            x //= 10
            n += 1
        # digits are reversed; drop trailing zeros of the number (leading in `digits`)
        lo = 0
        while digits[lo] == 48:
            lo += 1
        out[o] = digits[n - 1]
        o += 1
        if n - 1 > lo:
            out[o] = 46
            o += 1
            for k in range(n - 2, lo - 1, -1):
                out[o] = digits[k]
                o += 1
        e = 9 - (n - 1)  # value = d.ddd * 10^-e
        out[o] = 101  # 'e'
        out[o + 1] = 45  # '-'
        out[o + 2] = np.uint8(48 + e // 10)
        out[o + 3] = np.uint8(48 + e % 10)
        return o + 4
    ip = v // 1_000_000_000
    frac = v % 1_000_000_000
    o = _put_uint(out, o, np.uint64(ip))
    out[o] = 46
    o += 1
    if frac == 0:
        out[o] = 48
        return o + 1
    width = 9
    while frac % 10 == 0:
        frac //= 10
        width -= 1
    for k in range(width - 1, -1, -1):
        out[o + k] = np.uint8(48 + frac % 10)
        frac //= 10
    return o + width


@compiled
def _put_decimal(out, o, c, k):
    """The decimal c * 10^-k in repr's fixed notation: "12.5", "0.0012", "3.0"."""
    if c < 0:
        out[o] = 45
        o += 1
        c = -c
    if k == 0:
        o = _put_uint(out, o, np.uint64(c))
        out[o] = 46
        out[o + 1] = 48
        return o + 2
    p = np.int64(1)
    for _ in range(k):
        p *= 10
    o = _put_uint(out, o, np.uint64(c // p))
    out[o] = 46
    o += 1
    frac = c % p
    for q in range(k - 1, -1, -1):
        out[o + q] = np.uint8(48 + frac % 10)
        frac //= 10
    return o + k


@compiled(inline="always")
def _put_lit(out, o, lit, a, n):
    for q in range(n):
        out[o + q] = lit[a + q]
    return o + n


@compiled
def _put_seq(out, o, lit, seqm, seqi, i, npk, last):
    """{"dir":[..],"len":[..],"iat":[..],"flags":[..]} of the first (or last) SEQ_N packets."""
    n_seq = seqm.shape[1] // 2
    k = min(npk, n_seq)
    for part in range(4):
        o = _put_lit(out, o, lit, SEQ_LIT_START[part], SEQ_LIT_LEN[part])
        for q in range(k):
            col = n_seq + (npk - k + q) % n_seq if last else q
            if q:
                out[o] = 44
                o += 1
            m = np.int64(seqm[i, col])
            if part == 0:
                o = _put_uint(out, o, np.uint64((m >> SEQ_DIR_SHIFT) & 1))
            elif part == 1:
                o = _put_uint(out, o, np.uint64(m & SEQ_LEN_MASK))
            elif part == 2:
                o = _put_ns(out, o, seqi[i, col])
            else:
                o = _put_uint(out, o, np.uint64((m >> SEQ_FLAGS_SHIFT) & 0xFF))
    out[o] = 93  # ']'
    out[o + 1] = 125  # '}'
    return o + 2


@compiled
def format_rows(
    kinds,
    src,
    cnt,
    pre,
    post,
    lit,
    null_end,
    ints,
    fidx,
    tstart,
    tlen,
    tbuf,
    dstart,
    dlen,
    dbuf,
    dmant,
    dexp,
    seqm,
    seqi,
    npk,
    out,
):
    """Write every row; returns the length written into `out`.

    Column j: the literal pre[j] = (start, length) in `lit`, the value, the literal post[j].
    The value is kinds[j] of column src[j] of `ints` (K_INT, K_INT_NULL, K_NS; K_INTLIST:
    cnt[j] columns from src[j] as a JSON list), of tstart/tlen over tbuf (K_TEXT), of fidx
    over the distinct floats (K_FLOAT: dmant[d] * 10^-dexp[d] when dexp[d] >= 0, see
    shortest_decimals, else the text dstart/dlen in dbuf), or the packet sequences
    seqm/seqi/npk (K_SEQ_FIRST, K_SEQ_LAST). null_end = (start, length, start, length) of
    the null text and of the row end. `ints` has a row per record even without columns;
    `out` must hold the longest possible text (see flowdet.sinks).
    """
    n = ints.shape[0]
    m = kinds.shape[0]
    o = 0
    for i in range(n):
        for j in range(m):
            o = _put_lit(out, o, lit, pre[j, 0], pre[j, 1])
            k = kinds[j]
            c = src[j]
            if k == K_INT:
                o = _put_int(out, o, ints[i, c])
            elif k == K_INT_NULL:
                v = ints[i, c]
                if v == NULL_INT:
                    o = _put_lit(out, o, lit, null_end[0], null_end[1])
                else:
                    o = _put_int(out, o, v)
            elif k == K_TEXT:
                o = _put_lit(out, o, tbuf, tstart[i, c], tlen[i, c])
            elif k == K_FLOAT:
                d = fidx[i, c]
                if dexp[d] >= 0:
                    o = _put_decimal(out, o, dmant[d], dexp[d])
                else:
                    o = _put_lit(out, o, dbuf, dstart[d], dlen[d])
            elif k == K_NS:
                o = _put_ns(out, o, ints[i, c])
            elif k == K_INTLIST:
                out[o] = 91  # '['
                o += 1
                for q in range(cnt[j]):
                    if q:
                        out[o] = 44
                        o += 1
                    o = _put_int(out, o, ints[i, c + q])
                out[o] = 93
                o += 1
            else:
                o = _put_seq(out, o, lit, seqm, seqi, i, npk[i], k == K_SEQ_LAST)
            o = _put_lit(out, o, lit, post[j, 0], post[j, 1])
        o = _put_lit(out, o, lit, null_end[2], null_end[3])
    return o
