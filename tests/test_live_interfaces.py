"""`flowdet interfaces` and the capture checks: real dumpcap, run as root and as nobody."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from flowdet import interfaces as ifs
from flowdet.errors import FlowdetError

REPO = Path(__file__).resolve().parent.parent


def _cli(args: list[str], as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "flowdet.cli"]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="flowdet-nobody-") as tmp:
        if as_nobody:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("setpriv (util-linux) is not installed")
            argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
            Path(tmp).chmod(0o777)
            env["NUMBA_CACHE_DIR"] = tmp  # numba's JIT cache must be writable for nobody
        out = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=120, cwd=REPO, env=env
        )
    if as_nobody and "flowdet" not in out.stderr and "Usage" not in out.stdout:
        pytest.skip(f"cannot run Python as nobody here: {out.stderr.strip()[-200:]}")
    return out


def test_parse_machine_readable_list() -> None:
    text = (
        "1. eth0\t\t\t0\t192.0.2.2,fe80::1\tnetwork\t\n"
        "2. any\t\t\t0\t\tnetwork\t\n"
        "3. lo\t\tLoopback\t0\t127.0.0.1,::1\tloopback\t\n"
        "garbage line\n"
    )
    got = ifs.parse_machine_list(text)
    assert [(i.index, i.name, i.loopback) for i in got] == [
        (1, "eth0", False),
        (2, "any", False),
        (3, "lo", True),
    ]
    assert got[0].addresses == ("192.0.2.2", "fe80::1") and got[2].description == "Loopback"


def test_dumpcap_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyshark.tshark.tshark as pt

    def not_found(*_a: object, **_k: object) -> str:
        raise pt.TSharkNotFoundException("not found")

    monkeypatch.setattr(pt, "get_process_path", not_found)
    monkeypatch.setattr(ifs.shutil, "which", lambda _name: None)
    with pytest.raises(FlowdetError, match=r"dumpcap not found.*apt-get install tshark"):
        ifs.find_dumpcap()


@pytest.mark.usefixtures("root")
def test_interfaces_lists_loopback_as_root() -> None:
    out = _cli(["interfaces"])
    assert out.returncode == 0, out.stderr
    names = [ln.split()[1] for ln in out.stdout.splitlines() if ln.strip()]
    assert "lo" in names
    assert out.stderr == ""


def test_no_permission_is_one_line_exit_2() -> None:
    out = _cli(["interfaces"], as_nobody=os.geteuid() == 0)
    if out.returncode == 0:
        pytest.skip("this user may capture (dumpcap has capabilities here)")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowdet: "), out.stderr
    assert "permission" in lines[0].lower() and "Traceback" not in out.stderr


@pytest.mark.usefixtures("root")
def test_live_without_permission_is_one_line_exit_2() -> None:
    out = _cli(["live", "-i", "lo", "--duration", "5"], as_nobody=True)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowdet: live: "), out.stderr
    assert "permission" in lines[0].lower()
