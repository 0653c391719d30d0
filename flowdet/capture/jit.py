"""Start-up of the numba runtime, without the scipy.linalg import that numba makes for BLAS.

The first call of any compiled function (even one loaded from numba's on-disk cache) makes
numba import its implementation modules; one of them, numba.np.arraymath, imports
scipy.linalg just to learn whether np.dot can use BLAS. That import is ~40% of the cost of
the first call (0.12 s CPU, 0.2-0.45 s wall on a loaded machine) and flowdet's kernels use
no BLAS. `prepare_numba` imports that module while scipy.linalg is marked unavailable, so
numba records "no BLAS": np.correlate/np.convolve in numba code then use a plain loop, while
np.dot and np.linalg still import scipy when they are compiled. A process that has already
imported scipy.linalg (scikit-learn does) is left as it is.

The mark lasts while numba.np.arraymath is imported (~0.1 s, once per process). A thread
that imports scipy.linalg for the first time in that window would get ImportError; the
callers run before any worker thread (live mode loads the model, hence scipy.linalg,
before it opens a reader), so this does not arise in flowdet itself.
"""

from __future__ import annotations

import sys

_BLAS_PROBE = "numba.np.arraymath"
_SKIPPED = "scipy.linalg"


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
