"""Helpers for tests of lab captures: one shared quick run, tshark as an independent reader.

Any family's tests can check their scenarios in the same quick-profile run the lab's own
tests use (it runs once per test session, whoever asks first):

    from lab_helpers import quick_run, labels_of, tshark_rows

    def test_stratum_tls(root, tshark):
        out = quick_run()
        rows = [r for r in labels_of(out) if r["scenario"] == "mining-stratum1-tls"]
        hellos = tshark_rows(out / rows[0]["pcap"], ["tls.handshake.extensions_server_name"],
                             "tls.handshake.type == 1")
"""

from __future__ import annotations

import atexit
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FLOWDET = [sys.executable, "-m", "flowdet.cli"]
QUICK_SEED = 7
_runs: dict[str, Path] = {}


def quick_run() -> Path:
    """OUTDIR of `flowdet lab generate --profile quick --capture-loopback --seed 7`, made once.

    Needs root (use the `root` fixture first). Fails the calling test if the run fails.
    """
    if "quick" not in _runs:
        out = Path(tempfile.mkdtemp(prefix="flowdet-lab-quick-"))
        atexit.register(shutil.rmtree, out, True)
        proc = subprocess.run(
            [
                *FLOWDET,
                "lab",
                "generate",
                str(out),
                "--profile",
                "quick",
                "--seed",
                str(QUICK_SEED),
                "--capture-loopback",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=REPO,
        )
        (out / "generate.stderr").write_text(proc.stderr)
        # 1 = some scenario failed: the run is still there to check, and the lab's own test
        # of statuses reports which; anything else means no usable run at all
        if proc.returncode not in (0, 1):
            raise AssertionError(f"lab quick run failed ({proc.returncode}): {proc.stderr[-3000:]}")
        _runs["quick"] = out
    return _runs["quick"]


def labels_of(out: Path) -> list[dict[str, str]]:
    with open(out / "labels.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def manifest_of(out: Path) -> dict[str, Any]:
    """The last run recorded in OUTDIR/manifest.json."""
    return dict(json.loads((out / "manifest.json").read_text())["runs"][-1])


def tshark_rows(
    pcap: Path, fields: list[str], dfilter: str = "", decode_as: Iterable[str] = ()
) -> list[list[str]]:
    """tshark -T fields, one list per packet; repeated fields are joined with ','.

    `decode_as` takes tshark -d specs such as "tcp.port==2222,ssh" or "tcp.port==3333,tls".
    """
    argv = ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a"]  # fmt: skip
    for spec in decode_as:
        argv += ["-d", spec]
    if dfilter:
        argv += ["-Y", dfilter]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines()]
