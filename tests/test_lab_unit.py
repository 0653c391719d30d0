"""Lab parts that need no namespaces: label resolution, the registry, the delay line's queue."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest
from capture_fab import eth, ipv4, pcap, tcp, udp

from flowdet.errors import LabError
from flowdet.lab import labels, scenarios, tools
from flowdet.lab.delayline import Direction, LinkSpec
from flowdet.lab.scenario import Expect, Scenario
from flowdet.lab.topology import Wan

REPO = Path(__file__).resolve().parent.parent
IPS = {"sandbox": "10.213.1.10", "outside": "10.213.2.20", "outside2": "10.213.3.30"}
SYN, SYNACK, ACK = 0x02, 0x12, 0x10


def _capture(tmp_path: Path) -> Path:
    s, o, o2 = IPS["sandbox"], IPS["outside"], IPS["outside2"]
    frames = [
        # sandbox -> outside:22, SYN, SYN/ACK (answer), data
        eth(ipv4(s, o, 6, tcp(40000, 22, flags=SYN))),
        eth(ipv4(o, s, 6, tcp(22, 40000, flags=SYNACK))),
        eth(ipv4(s, o, 6, tcp(40000, 22, b"SSH-2.0-x\r\n", flags=ACK | 0x08))),
        # a second flow to the same service, and a SYN retransmission of it
        eth(ipv4(s, o, 6, tcp(40002, 22, flags=SYN))),
        eth(ipv4(s, o, 6, tcp(40002, 22, flags=SYN))),
        # inbound: outside2 -> sandbox:2222
        eth(ipv4(o2, s, 6, tcp(51000, 2222, flags=SYN))),
        # udp: sandbox asks outside:53, outside answers
        eth(ipv4(s, o, 17, udp(33333, 53, b"q" * 20))),
        eth(ipv4(o, s, 17, udp(53, 33333, b"a" * 40))),
        # a flow no Expect claims
        eth(ipv4(s, o2, 6, tcp(45000, 8080, flags=SYN))),
    ]
    path = tmp_path / "t.pcap"
    path.write_bytes(
        pcap([(1_700_000_000_000_000_000 + i * 1000, f) for i, f in enumerate(frames)])
    )
    return path


def test_resolve_labels_every_flow_of_an_expect(tmp_path: Path, tshark: str) -> None:
    cap = _capture(tmp_path)
    expects = [
        Expect("sandbox", "outside", 22, "tcp", "ssh-tunnel"),
        Expect("outside2", "sandbox", 2222, "tcp", "benign"),
        Expect("sandbox", "outside", 53, "udp", "benign"),
    ]
    rows, unclaimed, errors = labels.resolve(cap, "scn", expects, IPS.__getitem__)
    assert errors == []
    got = {
        (r.flow.client_ip, r.flow.client_port, r.flow.server_port, r.flow.proto, r.label)
        for r in rows
    }
    assert got == {
        ("10.213.1.10", 40000, 22, "tcp", "ssh-tunnel"),
        ("10.213.1.10", 40002, 22, "tcp", "ssh-tunnel"),
        ("10.213.3.30", 51000, 2222, "tcp", "benign"),
        ("10.213.1.10", 33333, 53, "udp", "benign"),
    }
    assert [(f.server_ip, f.server_port) for f in unclaimed] == [("10.213.3.30", 8080)]


def test_resolve_reports_an_expect_without_flow(tmp_path: Path, tshark: str) -> None:
    cap = _capture(tmp_path)
    # right port, wrong direction: the capture says outside2 initiated, so this is no match
    expects = [Expect("sandbox", "outside2", 2222, "tcp", "benign")]
    rows, _, errors = labels.resolve(cap, "scn", expects, IPS.__getitem__)
    assert rows == []
    assert len(errors) == 1 and "no such flow" in errors[0] and "2222" in errors[0]


def test_labels_tsv_header_once(tmp_path: Path) -> None:
    out = tmp_path / "labels.tsv"
    row = labels.LabelRow(
        "a.pcapng", labels.Flow("1.1.1.1", 5, "2.2.2.2", 22, "tcp"), "benign", "s"
    )
    labels.append_tsv(out, [row])
    labels.append_tsv(out, [row])
    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == list(labels.COLUMNS)
    assert lines[1:] == ["a.pcapng\t1.1.1.1\t5\t2.2.2.2\t22\ttcp\tbenign\ts"] * 2
    other = labels.LabelRow("b.pcapng", row.flow, "mining", "t")
    labels.append_tsv(out, [other])
    assert labels.drop_pcap(out, ["a.pcapng"]) == 2  # a re-run replaces a capture's rows
    assert out.read_text().splitlines()[1:] == [other.tsv()]


def test_registry_is_tolerant_of_broken_families(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenarios, "FAMILIES", ("ssh", "no_such_family", "unit_broken"))
    broken = types.ModuleType("flowdet.lab.scenarios.unit_broken")
    broken.SCENARIOS = "not a list"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, broken.__name__, broken)
    found = scenarios.all_scenarios()
    assert found and all(s.name.startswith("ssh-") for s in found)
    assert "unit_broken" in scenarios.broken()
    assert "no_such_family" not in scenarios.broken()  # not written yet: silently absent


def test_registry_select() -> None:
    quick = scenarios.select("quick")
    names = {s.name for s in quick}
    assert {"ssh-reverse-login", "ssh-reverse-web", "ssh-dynamic-socks"} <= names
    assert all("quick" in s.profiles for s in quick)
    assert [s.name for s in scenarios.select("quick", ["ssh-git", "ssh-git"])] == ["ssh-git"]
    with pytest.raises(LabError, match="unknown scenario"):
        scenarios.select("quick", ["nope"])
    with pytest.raises(LabError, match="unknown profile"):
        scenarios.select("huge")


def test_every_scenario_is_well_formed() -> None:
    for s in scenarios.all_scenarios():
        assert isinstance(s, Scenario)
        assert s.label in ("benign", "mining", "ssh-tunnel"), s.name
        assert "full" in s.profiles, f"{s.name}: full should include everything"
        assert s.description


def test_require_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tools.which
    monkeypatch.setattr(tools, "which", lambda p: None if p == "sshd" else real(p))
    with pytest.raises(LabError) as err:
        tools.require(["ip", "sshd", "no-such-program-xyz"])
    msg = str(err.value)
    assert "sshd (Debian package openssh-server)" in msg
    assert "no-such-program-xyz" in msg
    assert "\n" not in msg


def test_wan_choices_are_plausible_and_seeded() -> None:
    a = [Wan.choose(random.Random(f"7:x:{i}")) for i in range(200)]
    b = [Wan.choose(random.Random(f"7:x:{i}")) for i in range(200)]
    assert a == b
    assert all(20 <= w.rtt_ms <= 150 and 0 <= w.loss <= 0.005 for w in a)
    assert all(0 < w.jitter_ms < w.rtt_ms / 2 and 10 <= w.rate_mbps <= 100 for w in a)
    assert len({w.rtt_ms for w in a}) > 100
    assert all(30 <= w.ttl <= 250 and 1400 <= w.mtu <= 1500 for w in a)
    assert len({w.ttl for w in a}) > 10 and len({w.mtu for w in a}) > 2


def _direction(**kw: float) -> tuple[Direction, int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    spec = LinkSpec("a", "x", "b", "y", **{"delay_ms": 50.0, "jitter_ms": 5.0, "loss": 0.0,
                                            "rate_bps": 8e6, **kw})  # fmt: skip
    return Direction(-1, w, spec, random.Random(3)), r, w


def test_delay_line_delays_in_order_without_reordering() -> None:
    d, r, w = _direction()
    t0 = 1000.0
    for i in range(50):
        d.admit(bytes([i]) * 100, t0 + i * 0.001)
    releases = [t for t, _ in d.pending]
    assert releases == sorted(releases)  # jitter stretches gaps, never reorders
    assert min(releases) >= t0 + 0.050
    assert d.flush(t0) == releases[0]  # nothing due yet: tells when the next one is
    with pytest.raises(BlockingIOError):
        os.read(r, 100)
    d.flush(releases[-1])
    got = os.read(r, 10**6)
    assert got == b"".join(bytes([i]) * 100 for i in range(50))
    assert d.counts["forwarded"] == 50
    os.close(r), os.close(w)


def test_delay_line_bottleneck_queue_and_loss() -> None:
    # 1 Mbit/s, 100 ms buffer: 1000-byte packets take 8 ms each, so about 12 fit the queue
    d, r, w = _direction(rate_bps=1e6, queue_ms=100.0, jitter_ms=0.0)
    for _ in range(40):
        d.admit(b"x" * 1000, 5.0)
    assert 10 <= len(d.pending) <= 14
    assert d.counts["queue_drops"] == 40 - len(d.pending)
    gaps = [b[0] - a[0] for a, b in zip(d.pending, list(d.pending)[1:], strict=False)]
    assert all(abs(g - 0.008) < 1e-9 for g in gaps)  # serialisation at the bottleneck rate
    lossy, r2, w2 = _direction(loss=0.1, rate_bps=1e12)
    for i in range(5000):
        lossy.admit(b"y", 5.0 + i * 1e-3)
    assert 350 < lossy.counts["lost"] < 650
    for fd in (r, w, r2, w2):
        os.close(fd)


def test_not_root_is_one_line_exit_2() -> None:
    """The real thing: the CLI run as `nobody` (setpriv), not a patched geteuid."""
    if os.geteuid() != 0:
        argv = [str(REPO / ".venv/bin/flowdet")]
    else:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is not installed")
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                sys.executable, "-m", "flowdet.cli"]  # fmt: skip
    # pytest's tmp_path is private to root; numba's JIT cache must be writable for nobody
    with tempfile.TemporaryDirectory(prefix="flowdet-nobody-") as tmp:
        Path(tmp).chmod(0o777)
        outdir = Path(tmp) / "out"
        out = subprocess.run(
            [*argv, "lab", "generate", str(outdir), "--scenario", "ssh-git"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**os.environ, "NUMBA_CACHE_DIR": tmp},
        )
        created = outdir.exists()
    if "flowdet:" not in out.stderr and out.returncode != 2:
        pytest.skip(f"cannot run Python as nobody here: {out.stderr.strip()[-200:]}")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowdet: ") and "root" in lines[0]
    assert "Traceback" not in out.stderr
    assert not created


def test_lab_list_runs_without_root() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flowdet.cli", "lab", "list", "--profile", "quick"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert {"ssh-reverse-login", "ssh-git"} <= {r[0] for r in rows}
    assert all(len(r) == 4 and r[1] in ("benign", "mining", "ssh-tunnel") for r in rows)
