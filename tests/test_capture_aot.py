"""The ahead-of-time kernel build: same records as numba's JIT, and never used when stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import capture_fab as fab
import pytest

from flowdet.capture import jit

# Every record field of every capture, from the flows stage and the reader's statistics.
SCRIPT = """
import hashlib, json, sys
from flowdet.capture import jit, open_capture
from flowdet.flows import FlowConfig, FlowTable
from flowdet.sinks import JsonlFlowSink
import io
digest = hashlib.sha256()
for cfg in (FlowConfig(), FlowConfig(max_flows=3).with_default_checkpoints()):
    table = FlowTable(cfg)
    for path in sys.argv[1:]:
        out = io.StringIO()
        sink = JsonlFlowSink(out)
        with open_capture(path) as reader:
            for batch in reader:
                sink.write(table.update(batch))
            sink.write(table.flush())
        digest.update(out.getvalue().encode())
        st = reader.stats
        digest.update(json.dumps([st.records, st.status, st.blocks, st.warnings]).encode())
print(json.dumps({
    "kernels": jit.kernels_in_use(),
    "digest": digest.hexdigest(),
    "numba": "numba" in sys.modules,
}))
"""


def _run(env: dict[str, str], captures: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *captures],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


REPO = Path(__file__).resolve().parent.parent


def _mixed_pcap(path: Path) -> Path:
    """TCP with handshake, payload and FIN, UDP, ICMP, IPv6, VLAN, fragments, junk frames."""
    recs = []
    t = 1_700_000_000 * 10**9
    for i in range(200):
        sp = 40000 + i % 17
        c2s = i % 3 != 1
        src, dst = ("10.0.0.1", "10.0.0.2") if c2s else ("10.0.0.2", "10.0.0.1")
        ports = (sp, 443) if c2s else (443, sp)
        flags = 0x02 if i < 17 else (0x11 if i > 180 else 0x18)
        seg = fab.tcp(*ports, payload=bytes([i % 256]) * (i % 50), flags=flags, seq=i)
        recs.append((t + i * 7_000_000, fab.eth(fab.ipv4(src, dst, 6, seg))))
        if i % 5 == 0:
            dns = fab.udp(5353 + i % 3, 53, b"q" * (i % 30))
            recs.append((t + i * 7_000_000 + 1, fab.eth(fab.ipv4("10.0.0.3", "8.8.8.8", 17, dns))))
        if i % 11 == 0:
            ping = fab.icmp(8, 0, b"ping")
            recs.append((t + i * 9_000_000, fab.eth(fab.ipv4("10.0.0.1", "10.0.0.9", 1, ping))))
            v6 = fab.ipv6("fe80::1", "fe80::2", 17, fab.udp(546, 547, b"x" * i))
            recs.append((t + i * 9_000_000 + 5, fab.eth(v6, 0x86DD, ((0x8100, 7),))))
        if i % 23 == 0:
            body = fab.udp(7000, 7001, b"f" * 64)
            first = fab.ipv4("10.0.0.5", "10.0.0.6", 17, body[:40], ident=i, mf=True)
            rest = fab.ipv4("10.0.0.5", "10.0.0.6", 17, body[40:], ident=i, frag_off=5)
            recs += [(t + i * 8_000_000, fab.eth(first)), (t + i * 8_000_000 + 3, fab.eth(rest))]
            recs.append((t + i * 8_000_000 + 4, fab.eth(b"\x00" * 28, 0x0806)))
            recs.append((t + i * 8_000_000 + 6, fab.eth(b"\x45\x00")))
    path.write_bytes(fab.pcap(recs))
    return path


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ahead-of-time build for this module's tests (~30-60 s CPU)."""
    from flowdet.capture import aot

    where = tmp_path_factory.mktemp("aot")
    so = aot.build(where)
    assert so.exists()
    return where


@pytest.mark.slow
def test_aot_build_gives_the_jit_records(tmp_path: Path, build: Path) -> None:
    sample_pcaps = sorted((REPO / "pcaps").glob("*.pcapng"))
    assert sample_pcaps, "the shipped sample captures are missing"
    sample_pcaps.append(_mixed_pcap(tmp_path / "mixed.pcap"))
    assert (build / jit.AOT_HASH_FILE.name).read_text().strip() == jit.source_hash()
    caps = [str(p) for p in sample_pcaps]
    built = _run({"FLOWDET_AOT_DIR": str(build), "FLOWDET_KERNELS": ""}, caps)
    jitted = _run({"FLOWDET_KERNELS": "jit"}, caps)
    assert built["kernels"] == "aot"
    assert not built["numba"]  # every call matched the build's signatures: no JIT fallback
    assert jitted["kernels"] == "jit"
    assert built["digest"] == jitted["digest"]
    # a build whose recorded hash is not that of the sources is never used
    hash_file = build / jit.AOT_HASH_FILE.name
    recorded = hash_file.read_text()
    hash_file.write_text("0" * 64 + "\n")
    try:
        stale = _run({"FLOWDET_AOT_DIR": str(build), "FLOWDET_KERNELS": ""}, caps)
    finally:
        hash_file.write_text(recorded)
    assert stale["kernels"] == "jit"
    assert stale["digest"] == jitted["digest"]


STRIDED = """
import json, sys
import numpy as np
from flowdet.capture import jit, walk
buf = np.zeros(400, np.uint8)
view = buf[1::2]  # not contiguous: pycc would read it as if it were
view[8] = 5  # caplen of the first record
out = [np.empty(4, np.int64), np.empty(4, np.uint32), np.empty(4, np.uint32), np.empty(4, np.int64)]
got = walk.walk_pcap(view, 0, 100, 1, False, False, 16, *out)
ref = walk.walk_pcap(np.ascontiguousarray(view), 0, 100, 1, False, False, 16, *out)
print(json.dumps({"kernels": jit.kernels_in_use(), "got": list(got), "ref": list(ref)}))
"""


@pytest.mark.slow
def test_calls_unlike_the_build_take_the_jit(build: Path) -> None:
    """pycc entry points do not check arguments: a strided array must not reach them."""
    out = subprocess.run(
        [sys.executable, "-c", STRIDED],
        capture_output=True,
        text=True,
        env={**os.environ, "FLOWDET_AOT_DIR": str(build), "FLOWDET_KERNELS": ""},
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["kernels"] == "aot"
    assert res["got"] == res["ref"] == [1, 21, 0, 0]
