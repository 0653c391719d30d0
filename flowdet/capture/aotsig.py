"""Signatures of the kernels compiled ahead of time (flowdet.capture.aot builds them).

Each fixes the dtypes, dimensions and C-contiguous layout that flowdet passes. pycc's entry
points do not check their arguments (another dtype reads the wrong memory or crashes), so
flowdet.capture.jit checks every call against these before taking the ahead-of-time code,
and sends any other call to numba's JIT. Kept apart from aot.py so that run time loads no
build machinery.
"""

from __future__ import annotations


def _a(t: str, nd: int = 1) -> str:
    """A C-contiguous array type in numba's signature syntax."""
    return f"{t}[{', '.join([':'] * (nd - 1) + ['::1'])}]"


_I = _a("i8")
_ST = f"Tuple(({_a('u8', 2)}, {_a('i8', 2)}, {_a('f8', 2)}, {_a('i4', 2)}, {_a('i8', 2)}, " + (
    f"{_a('u1', 2)}, {_I}))"
)
_OUT = (
    f"Tuple(({_a('u8', 2)}, {_a('i8', 2)}, {_a('f8', 2)}, {_a('i4', 2)}, {_a('i8', 2)}, "
    f"{_a('u1', 2)}, {_a('i1')}, {_a('i2')}))"
)
# process(): ts, ip_len, payload_len, tcp_flags, proto, sport, dport, ip_version, tcp_seq,
# rec_off, payload_off, caplen, wirelen (PacketBatch dtypes)
_PK_COLS = "i8 u4 u4 u1 u1 u2 u2 u1 u4 i8 u4 u4 u4"
_PK = "Tuple((" + ", ".join(_a(t) for t in _PK_COLS.split()) + "))"
_FR = f"UniTuple({_I}, 4)"
_DECODE_COLS = "u1 u1 u8 u8 u8 u8 u1 u2 u2 u4 u4 u4 u4 u1 u4 u4 u2 u4 u2 b1 u1 u2"

# module -> {function: signature}
SIGNATURES: dict[str, dict[str, str]] = {
    "flowdet.capture.walk": {
        "walk_pcap": f"UniTuple(i8, 4)({_a('u1')}, i8, i8, i8, b1, b1, i8, {_I}, "
        f"{_a('u4')}, {_a('u4')}, {_I})",
        "walk_pcapng": f"UniTuple(i8, 4)({_a('u1')}, i8, i8, i8, "
        + ", ".join([_I] * 8)
        + f", {_I}, {_a('u4')}, {_a('u4')}, {_I}, {_a('u2')}, {_a('u2')})",
    },
    "flowdet.capture.decode": {
        "decode_kernel": f"void({_a('u1')}, {_I}, {_a('u4')}, {_a('u4')}, {_a('u2')}, "
        + ", ".join(_a(t) for t in _DECODE_COLS.split())
        + ")",
    },
    "flowdet.flows.kernel": {
        "process": f"i8({_I}, i8, {_I}, {_a('b1')}, {_PK}, {_a('u1')}, {_FR}, {_I}, {_I}, "
        f"{_ST}, {_OUT}, {_I}, {_I}, {_I}, {_I})",
        "sweep": f"i8(i8, i8, {_ST}, {_OUT}, {_I}, {_I}, {_I}, i8, {_I})",
        "expire_slots": f"i8({_I}, i8, i1, {_ST}, {_OUT}, {_I}, {_I})",
        "init_slots": f"void({_a('i8', 2)}, {_a('f8', 2)}, {_I})",
        "batch_keys": f"void({_I}, "
        + ", ".join([_a("u8")] * 4)
        + f", {_a('u2')}, {_a('u2')}, {_a('u1')}, {_a('u1')}, {_a('u2')}, b1, {_a('i4')}, "
        f"{_a('i4')}, {_a('u8', 2)}, {_a('b1')}, {_a('u8')})",
    },
    "flowdet.flows.textkernel": {
        "format_rows": f"i8({_I}, {_I}, {_I}, {_a('i8', 2)}, {_a('i8', 2)}, {_a('u1')}, {_I}, "
        f"{_a('i8', 2)}, {_a('i8', 2)}, {_a('i8', 2)}, {_a('i8', 2)}, {_a('u1')}, {_I}, {_I}, "
        f"{_a('u1')}, {_I}, {_I}, {_a('i4', 2)}, {_a('i8', 2)}, {_I}, {_a('u1')})",
    },
}
