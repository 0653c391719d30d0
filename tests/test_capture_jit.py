"""prepare_numba: numba's runtime without the scipy.linalg import, and nothing broken by it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from flowdet.capture.jit import prepare_numba
prepare_numba()
assert "numba.np.arraymath" in sys.modules
assert "scipy.linalg" not in sys.modules, "scipy.linalg was imported"
prepare_numba()  # second call: no-op
import numpy as np
import numba
@numba.njit
def f(a, b):
    return np.dot(a, b), np.convolve(a, b)
d, c = f(np.arange(3.0), np.ones(3))
assert d == 3.0 and c.tolist() == [0.0, 1.0, 3.0, 3.0, 2.0]
import scipy.linalg  # later imports work as usual
assert scipy.linalg.cython_blas is not None
print("ok")
"""


def test_prepare_numba_skips_scipy_and_keeps_numba_and_scipy_working():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_prepare_numba_leaves_a_process_with_scipy_alone():
    script = (
        "import sys, scipy.linalg\n"
        "from flowdet.capture.jit import prepare_numba\n"
        "prepare_numba()\n"
        "from numba.np import arraymath\n"
        "assert arraymath._HAVE_BLAS\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
