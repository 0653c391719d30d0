"""flowdet run by an unprivileged user from a root-owned install, as a service account would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "pcaps" / "benign-dns-2026.pcapng"


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder `nobody` can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="flowdet-unpriv-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["HOME"] = "/nonexistent"
    argv = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable]
    return subprocess.run(
        [*argv, "-m", "flowdet.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=300,
    )


def test_flows_as_nobody_with_no_writable_home(root: None, public_dir: Path) -> None:
    """numba must find a cache folder even when neither the package nor $HOME is writable."""
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} is not in this checkout")
    capture = public_dir / "sample.pcapng"
    shutil.copy(SAMPLE, capture)
    capture.chmod(0o644)
    proc = _as_nobody("flows", str(capture))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("flow_id,")
    assert len(lines) > 1


def test_capture_behind_an_unreadable_folder_is_one_line(root: None, public_dir: Path) -> None:
    hidden = public_dir / "hidden"
    hidden.mkdir(mode=0o700)
    capture = hidden / "x.pcapng"
    capture.write_bytes(SAMPLE.read_bytes() if SAMPLE.exists() else b"\0" * 64)
    proc = _as_nobody("flows", str(capture))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"flowdet: {capture}: cannot open: Permission denied"
    )
