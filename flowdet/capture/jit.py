"""Compiled kernels: an ahead-of-time build when one matches the sources, else numba's JIT.

Why: a `flowdet flows` run on a million packets spends about 0.5 s CPU before the first
packet just starting numba (importing it, its implementation registry, and loading each
cached kernel into LLVM), a third of the whole run. The kernels in flowdet.capture.walk,
flowdet.capture.decode and flowdet.flows.kernel are therefore also compiled ahead of time
by numba's pycc into one extension module (`python -m flowdet.capture.aot`, `make kernels`)
that needs only numpy at run time. It is used only when its recorded hash equals the hash
of the current kernel sources, so an edited kernel never runs stale code: until the module
is rebuilt, the same functions are compiled by numba on first use, as before. Both paths run
the same Python source through the same compiler, so results are the same (tests compare).

`@compiled` replaces `numba.njit(cache=True)` in those modules. The decorated name is a
`Kernel`; calling it runs the ahead-of-time function when there is one, else numba's
dispatcher; pycc's entry points do not check their arguments, so every call is checked
against the build's signature (flowdet.capture.aotsig) and any other dtype or layout takes
the JIT. The first JIT use in a module turns every Kernel of that module into a numba
dispatcher in the module's globals, so kernels calling each other compile as before.
FLOWDET_KERNELS=jit forces the JIT path (tests, debugging); FLOWDET_AOT_DIR=DIR takes the
build from DIR instead of the package (tests of the build).

prepare_numba: the first call of any numba-compiled function makes numba import its
implementation modules; one of them, numba.np.arraymath, imports scipy.linalg just to learn
whether np.dot can use BLAS. That import is ~40% of the cost of the first call and flowdet's
kernels use no BLAS. `prepare_numba` imports that module while scipy.linalg is marked
unavailable, so numba records "no BLAS": np.correlate/np.convolve in numba code then use a
plain loop, while np.dot and np.linalg still import scipy when they are compiled. A process
that has already imported scipy.linalg (scikit-learn does) is left as it is. The mark lasts
while numba.np.arraymath is imported (~0.1 s, once per process). A thread that imports
scipy.linalg for the first time in that window would get ImportError; the JIT path runs it
under a lock at a reader's or flow table's first kernel call, which in flowdet happens
before any worker thread imports scipy (live mode loads the model first).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_BLAS_PROBE = "numba.np.arraymath"
_SKIPPED = "scipy.linalg"

# The modules whose @compiled functions go into the ahead-of-time build, in build order.
KERNEL_MODULES = (
    "flowdet.capture.walk",
    "flowdet.capture.decode",
    "flowdet.flows.kernel",
    "flowdet.flows.textkernel",
)
# Files whose text decides whether an ahead-of-time build is current.
_HASHED = (
    "capture/walk.py",
    "capture/decode.py",
    "capture/batch.py",
    "capture/aot.py",
    "capture/aotsig.py",
    "flows/kernel.py",
    "flows/layout.py",
    "flows/textkernel.py",
)
AOT_MODULE = "flowdet.capture._aot_kernels"
AOT_HASH_FILE = Path(__file__).with_name("_aot_kernels.sha256")

_lock = threading.RLock()
_aot: Any = None  # the loaded module, False when absent or stale, None before the first look


def prepare_numba() -> None:
    """Load numba's implementation registry without the BLAS probe; idempotent and cheap."""
    if _BLAS_PROBE in sys.modules or _SKIPPED in sys.modules:
        return  # already loaded, or scipy.linalg is there anyway: nothing to save
    sys.modules[_SKIPPED] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get(_SKIPPED, 0) is None:
            del sys.modules[_SKIPPED]


def source_hash() -> str:
    """sha256 over the kernel sources (and the build's signatures), as the build records it."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for rel in _HASHED:
        h.update(rel.encode() + b"\0")
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def aot_module() -> Any:
    """The ahead-of-time kernel module if it is built and current, else None."""
    global _aot
    if _aot is None:
        with _lock:
            if _aot is None:
                _aot = _load_aot() or False
    return _aot or None


def _load_aot() -> Any:
    if os.environ.get("FLOWDET_KERNELS", "").lower() == "jit":
        return None
    where = os.environ.get("FLOWDET_AOT_DIR")  # a build elsewhere (tests of the build)
    hash_file = Path(where) / AOT_HASH_FILE.name if where else AOT_HASH_FILE
    try:
        recorded = hash_file.read_text().strip()
    except OSError:
        return None
    if recorded != source_hash():
        return None
    try:
        if not where:
            return importlib.import_module(AOT_MODULE)
        name = AOT_MODULE.rsplit(".", 1)[1]
        found = [p for p in Path(where).glob(name + ".*") if p.suffix in (".so", ".pyd")]
        spec = importlib.util.spec_from_file_location(name, found[0]) if found else None
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except ImportError:  # built for another numpy or Python: fall back to the JIT
        return None


def kernels_in_use() -> str:
    """'aot' or 'jit': which path kernels take in this process (benchmarks report it)."""
    return "aot" if aot_module() is not None else "jit"


class Kernel:
    """A compiled function: the ahead-of-time build when present, else numba.njit on use."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self.py_func = fn
        self.options = options
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__
        self.__wrapped__ = fn
        self._impl: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        impl = self._impl
        if impl is None:
            impl = self._resolve()
        return impl(*args)

    def _resolve(self) -> Callable[..., Any]:
        aot = aot_module()
        fast = getattr(aot, self.__name__, None) if aot is not None else None
        spec = _arg_spec(self.__module__, self.__name__) if fast is not None else None
        if fast is None or spec is None:
            self._impl = jit_dispatcher(self)
            return self._impl

        def call(*args: Any) -> Any:
            # pycc's entry points take any array as the declared type: check, or crash
            if _matches(spec, args):
                return fast(*args)
            return jit_dispatcher(self)(*args)

        self._impl = call
        return call

    def __repr__(self) -> str:
        return f"<flowdet kernel {self.__module__}.{self.__name__}>"


# numba type names of the signatures -> numpy dtypes
_DTYPES = {
    "u1": "uint8",
    "u2": "uint16",
    "u4": "uint32",
    "u8": "uint64",
    "i1": "int8",
    "i2": "int16",
    "i4": "int32",
    "i8": "int64",
    "f8": "float64",
    "b1": "bool",
}


def _parse_type(sig: str, i: int) -> tuple[Any, int]:
    """One type of a numba signature string at sig[i:]: ("a", dtype, ndim), ("t", [items])
    or ("s", name); returns it and the index after it."""
    if sig.startswith("Tuple((", i):
        items: list[Any] = []
        i += 7
        while True:
            t, i = _parse_type(sig, i)
            items.append(t)
            if sig.startswith("))", i):
                return ("t", items), i + 2
            i += 2  # ", "
    if sig.startswith("UniTuple(", i):
        t, i = _parse_type(sig, i + 9)
        end = sig.index(")", i)
        return ("t", [t] * int(sig[i + 2 : end])), end + 1
    j = i
    while j < len(sig) and sig[j].isalnum():
        j += 1
    name = sig[i:j]
    if j < len(sig) and sig[j] == "[":
        end = sig.index("]", j)
        import numpy as np

        return ("a", np.dtype(_DTYPES[name]), sig[j:end].count(",") + 1), end + 1
    return ("s", name), j


def _arg_spec(module: str, name: str) -> Any:
    """The argument types of a kernel's ahead-of-time signature, or None if it has none."""
    from flowdet.capture.aotsig import SIGNATURES

    sig = SIGNATURES.get(module, {}).get(name)
    if sig is None:
        return None
    _, i = _parse_type(sig, 0)  # the return type
    return _parse_type("Tuple(" + sig[i:] + ")", 0)[0]


def _matches(spec: Any, value: Any) -> bool:
    kind = spec[0]
    if kind == "a":
        return (
            type(value).__name__ == "ndarray"
            and value.dtype == spec[1]
            and value.ndim == spec[2]
            and value.flags.c_contiguous
        )
    if kind == "t":
        items = spec[1]
        return (
            isinstance(value, tuple)
            and len(value) == len(items)
            and all(_matches(t, v) for t, v in zip(items, value, strict=True))
        )
    import numpy as np

    if spec[1] == "b1":
        return isinstance(value, (bool, np.bool_))
    return isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_)


def compiled(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`numba.njit(cache=True, **options)`, deferred: see the module docstring."""
    if fn is None:
        return lambda f: Kernel(f, options)
    return Kernel(fn, options)


def jit_dispatcher(k: Kernel) -> Any:
    """The numba dispatcher of `k`, turning every Kernel of its module into one first."""
    with _lock:
        module = sys.modules[k.__module__]
        jitted = module.__dict__.get("__numba_dispatchers__")
        if jitted is None:
            prepare_numba()
            import numba

            jitted = {}
            for name, obj in list(module.__dict__.items()):
                if isinstance(obj, Kernel):
                    jitted[name] = numba.njit(cache=True, **obj.options)(obj.py_func)
            # module globals become dispatchers, so numba resolves calls between kernels
            module.__dict__.update(jitted)
            module.__dict__["__numba_dispatchers__"] = jitted
        disp = jitted[k.__name__]
    return disp
