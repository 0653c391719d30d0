"""Compiled CSV row writer: a block of flow records -> the bytes csv.writer would write.

Why compiled: a block of records is ~80 cells per row, and formatting cells with one Python
call each (str(), repr(), joins) was the largest single cost of `flowdet flows` after the
flow table. The sink (flowdet.sinks.CsvFlowSink) prepares every column once: integer
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

# Column kinds.
K_INT = 0  # int64 value
K_INT_NULL = 1  # int64 value, NULL_INT = empty cell
K_TEXT = 2  # bytes from the text buffer
K_FLOAT = 3  # text of a distinct float value, by index
K_NS = 4  # int64 nanoseconds, written as repr(ns / 1e9); |ns| < NS_EXACT_LIMIT
NULL_INT = np.iinfo(np.int64).min
NS_EXACT_LIMIT = 10**15
INT_WIDTH = 20  # widest int64 text
NS_WIDTH = 24  # widest K_NS text


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
def format_csv(kinds, src, ints, fidx, tstart, tlen, tbuf, dstart, dlen, dbuf, out):
    """Write every row, cells separated by ',' and rows ended by '\\n'; returns the length.

    Column j of the output is kinds[j] taken from column src[j] of `ints` (K_INT, K_INT_NULL,
    K_NS), of tstart/tlen over tbuf (K_TEXT) or of fidx over dstart/dlen/dbuf (K_FLOAT).
    `ints` has a row per record even without columns. `out` must hold the longest
    possible text (see CsvFlowSink).
    """
    n = ints.shape[0]
    m = kinds.shape[0]
    o = 0
    for i in range(n):
        for j in range(m):
            k = kinds[j]
            c = src[j]
            if k == K_INT:
                o = _put_int(out, o, ints[i, c])
            elif k == K_INT_NULL:
                v = ints[i, c]
                if v != NULL_INT:
                    o = _put_int(out, o, v)
            elif k == K_TEXT:
                a = tstart[i, c]
                for q in range(tlen[i, c]):  # not a slice copy: views cost refcounting
                    out[o] = tbuf[a + q]
                    o += 1
            elif k == K_FLOAT:
                d = fidx[i, c]
                a = dstart[d]
                for q in range(dlen[d]):
                    out[o] = dbuf[a + q]
                    o += 1
            else:
                o = _put_ns(out, o, ints[i, c])
            out[o] = 10 if j == m - 1 else 44
            o += 1
    return o
