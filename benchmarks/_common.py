"""Helpers shared by the benchmarks: the benchmark input and per-process time and peak RSS.

Peers are measured as whole processes (start-up included), so flowdet is too: each run is a
fresh subprocess, and its peak RSS comes from wait4(), which reports that child alone.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MAKE_MIX = SHARED / "bench" / "make_mix.sh"
DEFAULT_MIX_DIR = Path(os.environ.get("FLOWDET_BENCH_DIR", "/tmp/flowdet-bench"))


def mix_path(copies: int = 14, directory: Path = DEFAULT_MIX_DIR) -> Path:
    """The ~1M-packet benchmark capture (built once with ../shared/bench/make_mix.sh)."""
    name = "mix.pcap" if copies == 14 else f"mix-{copies}.pcap"
    out = directory / name
    if out.is_file() and out.stat().st_size > 0:
        return out
    if not MAKE_MIX.is_file():
        raise SystemExit(f"benchmark input builder not found: {MAKE_MIX} (../shared is absent)")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{name}.{os.getpid()}.tmp")
    print(f"building {out} with {MAKE_MIX.name} ({copies} copies)...", file=sys.stderr)
    subprocess.run(
        ["bash", str(MAKE_MIX), str(tmp), str(copies)], check=True, stdout=subprocess.DEVNULL
    )
    tmp.replace(out)  # atomic: a concurrent benchmark never sees a half-written file
    return out


@dataclass(slots=True)
class Run:
    """One measured process."""

    seconds: float  # wall clock
    cpu_seconds: float  # user + system: less disturbed by other work on a shared machine
    peak_rss_mb: float
    returncode: int
    stdout: bytes


def measure(cmd: list[str], stdout_to_devnull: bool = False, env: dict | None = None) -> Run:
    """Wall time and peak RSS of one subprocess (its own, not the parent's)."""
    out = subprocess.DEVNULL if stdout_to_devnull else subprocess.PIPE
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
    data = b""
    if proc.stdout is not None:
        data = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stdout is not None:
        proc.stdout.close()
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, cpu, usage.ru_maxrss / 1024.0, proc.returncode, data)


def repeat(cmd: list[str], n: int, **kw) -> list[Run]:
    return [measure(cmd, **kw) for _ in range(n)]


def median_run(runs: list[Run]) -> Run:
    """The run with the median time (CPU is shared with other work: repeat, take the median)."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    return ordered[len(ordered) // 2]


def median(values: list[float]) -> float:
    return statistics.median(values)
