"""flowdet: find Stratum mining and SSH tunnels in network flows."""

import os
import tempfile

__version__ = "0.1.0"


def _ensure_numba_cache_dir() -> None:
    """Give numba a writable cache before any module imports it.

    numba caches compiled kernels beside the sources, or else under the user's home. A
    system-wide install run by a user without a writable home (a service account, `nobody`)
    has neither, and numba then fails with "no locator available" at the first compiled
    call. Only in that case point NUMBA_CACHE_DIR at a per-user folder under the temp dir.
    """
    if "NUMBA_CACHE_DIR" in os.environ or os.access(os.path.dirname(__file__), os.W_OK):
        return
    home_cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    parent = home_cache if os.access(os.path.dirname(home_cache) or "/", os.W_OK) else None
    if parent is None or not (os.path.isdir(parent) and os.access(parent, os.W_OK)):
        parent = os.path.join(tempfile.gettempdir(), f"flowdet-{os.getuid()}")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(parent, "flowdet-numba")


_ensure_numba_cache_dir()
