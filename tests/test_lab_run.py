"""The lab for real: namespaces, the TUN WAN, OpenSSH, dumpcap, checked with tshark.

One quick-profile run (every registered scenario, loopback captured too) is shared by the
capture checks; tshark is the independent reader. The interrupt tests kill a run halfway and
then look for anything the lab left behind: namespaces, links, processes, temp dirs.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import lab_helpers
import pytest

from flowdet.lab.procs import ProcessTable, StateFile, alive
from flowdet.lab.topology import Topology, Wan, ns_exists, ns_pids

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
FLOWDET = [sys.executable, "-m", "flowdet.cli"]
SEED = lab_helpers.QUICK_SEED
TUNNEL_LOGINS = ("ssh-reverse-login", "ssh-reverse-idle", "ssh-background-tunnels")


def tshark_rows(
    pcap: Path, fields: list[str], dfilter: str = "", ssh_ports: Iterable[int] = ()
) -> list[list[str]]:
    return lab_helpers.tshark_rows(
        pcap, fields, dfilter, [f"tcp.port=={p},ssh" for p in sorted(set(ssh_ports))]
    )


@pytest.fixture(scope="module")
def quick_run(root: None, tshark: str) -> Path:
    return lab_helpers.quick_run()


def _labels(out: Path) -> list[dict[str, str]]:
    return lab_helpers.labels_of(out)


def _manifest(out: Path) -> dict:  # type: ignore[type-arg]
    return lab_helpers.manifest_of(out)


def test_every_scenario_ran_and_is_labelled(quick_run: Path) -> None:
    from flowdet.lab import scenarios

    run = _manifest(quick_run)
    expected = {s.name: s.label for s in scenarios.select("quick")}
    got = {s["name"]: s for s in run["scenarios"]}
    assert set(got) == set(expected)
    rows = _labels(quick_run)
    by_pcap = defaultdict(list)
    for r in rows:
        by_pcap[r["pcap"]].append(r)
    for name, label in expected.items():
        s = got[name]
        assert s["status"] == "ok", (name, s["error"])
        assert (quick_run / s["pcap"]).stat().st_size > 0
        assert by_pcap[s["pcap"]], f"{name}: no labelled flow"
        assert {r["label"] for r in by_pcap[s["pcap"]]} == {label}
        assert {r["scenario"] for r in by_pcap[s["pcap"]]} == {name}
    for s in run["scenarios"]:
        if s["name"].startswith("ssh-"):
            assert s["flows_unlabelled"] == [], s["name"]  # every SSH flow is accounted for
    assert run["seed"] == SEED and run["profile"] == "quick"
    assert run["versions"]["openssh"].startswith("OpenSSH_")
    assert all(20 <= w["rtt_ms"] <= 150 for s in run["scenarios"] for w in s["wan"].values())


def test_labelled_five_tuples_exist_in_their_captures(quick_run: Path) -> None:
    rows = _labels(quick_run)
    assert rows
    seen: dict[str, set[tuple[str, str, str, str, str]]] = {}
    for pcap in {r["pcap"] for r in rows}:
        pkts = tshark_rows(
            quick_run / pcap,
            ["ip.src", "tcp.srcport", "udp.srcport", "ip.dst", "tcp.dstport", "udp.dstport"],
            "(tcp || udp) && !icmp",
        )
        seen[pcap] = {
            (src, sp_t or sp_u, dst, dp_t or dp_u, "tcp" if sp_t else "udp")
            for src, sp_t, sp_u, dst, dp_t, dp_u in pkts
        }
    for r in rows:
        fwd = (r["client_ip"], r["client_port"], r["server_ip"], r["server_port"], r["proto"])
        back = (r["server_ip"], r["server_port"], r["client_ip"], r["client_port"], r["proto"])
        assert fwd in seen[r["pcap"]], f"{r['pcap']}: no packet client->server for {fwd}"
        assert back in seen[r["pcap"]], f"{r['pcap']}: no answer server->client for {fwd}"
    # a TCP flow's client really initiated it: its SYN (no ACK) comes from the client side
    for pcap in {r["pcap"] for r in rows if r["proto"] == "tcp"}:
        syns = tshark_rows(
            quick_run / pcap,
            ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport"],
            "tcp.flags.syn == 1 && tcp.flags.ack == 0",
        )
        initiators = {tuple(s) for s in syns}
        for r in rows:
            if r["pcap"] == pcap and r["proto"] == "tcp":
                key = (r["client_ip"], r["client_port"], r["server_ip"], r["server_port"])
                assert key in initiators


def _ssh_flows(out: Path, pcap: str, ports: set[int]) -> dict[tuple[str, str], dict[str, object]]:
    """Per TCP flow (client ip:port, server ip:port): banners and cleartext message codes."""
    flows: dict[tuple[str, str], dict[str, object]] = {}
    rows = tshark_rows(
        out / pcap,
        ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "ssh.protocol", "ssh.message_code",
         "frame.time_epoch"],
        "ssh",
        ssh_ports=ports,
    )  # fmt: skip
    for src, sport, dst, dport, banner, code, ts in rows:
        to_server = int(dport) in ports
        key = (
            (f"{src}:{sport}", f"{dst}:{dport}")
            if to_server
            else (f"{dst}:{dport}", f"{src}:{sport}")
        )
        f = flows.setdefault(key, {"c_banner": "", "s_banner": "", "c_codes": set(),
                                   "s_codes": set(), "s_newkeys": None})  # fmt: skip
        side = "c" if to_server else "s"
        if banner:
            f[f"{side}_banner"] = banner
        for c in filter(None, code.split(",")):  # one segment may hold several messages
            f[f"{side}_codes"].add(int(c))  # type: ignore[union-attr]
            if int(c) == 21 and not to_server and f["s_newkeys"] is None:
                f["s_newkeys"] = float(ts)
    return flows


def test_ssh_flows_carry_openssh_banners_and_key_exchange(quick_run: Path) -> None:
    rows = [r for r in _labels(quick_run) if r["scenario"].startswith("ssh-")]
    assert {r["label"] for r in rows} == {"ssh-tunnel", "benign"}
    for pcap in {r["pcap"] for r in rows}:
        mine = [r for r in rows if r["pcap"] == pcap]
        flows = _ssh_flows(quick_run, pcap, {int(r["server_port"]) for r in mine})
        for r in mine:
            key = (f"{r['client_ip']}:{r['client_port']}", f"{r['server_ip']}:{r['server_port']}")
            f = flows.get(key)
            assert f is not None, f"{pcap}: tshark sees no SSH in {key}"
            # the client is OpenSSH, or Dropbear's dbclient in some runs
            assert str(f["c_banner"]).startswith(("SSH-2.0-OpenSSH_", "SSH-2.0-dropbear")), f
            assert str(f["s_banner"]).startswith("SSH-2.0-OpenSSH_"), (pcap, f)
            # KEXINIT and NEWKEYS both ways; ECDH/hybrid or DH init from the client, reply back
            assert {20, 21, 30} <= f["c_codes"], (pcap, key, f)  # type: ignore[operator]
            assert {20, 21, 31} <= f["s_codes"], (pcap, key, f)  # type: ignore[operator]


def _outer_window(out: Path, scenario: str) -> tuple[float, float, float]:
    """(first server NEWKEYS, first packet, last packet) of the scenario's first tunnel flow."""
    row = next(r for r in _labels(out) if r["scenario"] == scenario)
    port = int(row["server_port"])
    flows = _ssh_flows(out, row["pcap"], {port})
    key = (f"{row['client_ip']}:{row['client_port']}", f"{row['server_ip']}:{port}")
    times = [
        float(t[0])
        for t in tshark_rows(
            out / row["pcap"],
            ["frame.time_epoch"],
            f"tcp.port == {row['client_port']} && tcp.port == {port}",
        )
    ]
    newkeys = flows[key]["s_newkeys"]
    assert isinstance(newkeys, float)
    return newkeys, min(times), max(times)


@pytest.mark.parametrize("scenario", TUNNEL_LOGINS)
def test_reverse_tunnel_carries_a_second_ssh_handshake(quick_run: Path, scenario: str) -> None:
    """The inner SSH session of a -R tunnel, seen in clear on the sandbox's loopback (where
    the tunnel's end connects to the sandbox's sshd), starts inside the outer flow's lifetime,
    after the outer key exchange."""
    newkeys, _first, last = _outer_window(quick_run, scenario)
    lo = quick_run / f"{scenario}-{SEED}.lo.pcapng"
    inner = _ssh_flows(quick_run, lo.name, {22})
    inner = {k: v for k, v in inner.items() if k[1] == "127.0.0.1:22"}
    assert inner, f"{scenario}: no inner SSH connection on the sandbox's loopback"
    for f in inner.values():
        assert str(f["c_banner"]).startswith("SSH-2.0-OpenSSH_")
        assert str(f["s_banner"]).startswith("SSH-2.0-OpenSSH_")
        assert {20, 21} <= f["c_codes"]  # type: ignore[operator]
    syns = [
        float(t[0])
        for t in tshark_rows(
            lo,
            ["frame.time_epoch"],
            "tcp.dstport == 22 && tcp.flags.syn == 1 && tcp.flags.ack == 0",
        )
    ]
    assert syns and all(newkeys < t < last for t in syns), (newkeys, syns, last)
    # and causally: the outside's request to open the forwarded channel crosses the monitored
    # link (outside -> sandbox, inside the outer flow) just before each inner connection starts
    rows = [r for r in _labels(quick_run) if r["scenario"] == scenario]
    opens = [
        float(t[0])
        for r in rows
        for t in tshark_rows(
            quick_run / r["pcap"],
            ["frame.time_epoch"],
            f"ip.src == {r['server_ip']} && tcp.srcport == {r['server_port']} && "
            f"tcp.dstport == {r['client_port']} && tcp.len > 0",
        )
    ]
    for t in syns:
        assert any(t - 0.5 < o <= t for o in opens), f"no channel open before inner SYN at {t}"


@pytest.mark.parametrize("scenario", ["ssh-reverse-web", "ssh-reverse-socks"])
def test_reverse_tunnel_serves_http_from_inside(quick_run: Path, scenario: str) -> None:
    """The outside's requests come out of the tunnel on the sandbox's loopback (a -R to a
    web server; a reverse SOCKS proxy), within the outer flow's lifetime."""
    newkeys, _first, last = _outer_window(quick_run, scenario)
    gets = tshark_rows(
        quick_run / f"{scenario}-{SEED}.lo.pcapng",
        ["frame.time_epoch", "ip.dst", "http.request.uri"],
        "http.request.method == GET",
    )
    assert gets
    assert all(newkeys < float(t) < last and dst == "127.0.0.1" for t, dst, _ in gets)


def test_benign_ssh_has_no_inner_session(quick_run: Path) -> None:
    """The loopback check above must be able to fail: a plain interactive session has none."""
    lo = quick_run / f"ssh-interactive-{SEED}.lo.pcapng"
    assert tshark_rows(lo, ["frame.number"], "tcp.port == 22") == []


def test_captures_are_wire_sized_with_full_snaplen(quick_run: Path) -> None:
    run = _manifest(quick_run)
    for s in [s for s in run["scenarios"] if s["status"] == "ok"]:
        lens = tshark_rows(quick_run / s["pcap"], ["frame.len", "frame.cap_len"])
        assert lens
        assert all(a == b for a, b in lens), f"{s['pcap']}: truncated frames"
        assert max(int(a) for a, _ in lens) <= 1514, f"{s['pcap']}: offloaded super-packets"


def _lab_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return [ln for ln in out.stdout.splitlines() if re.search(r"\b(wan-\w+|lan0)[@:]", ln)]


def _assert_nothing_left(out: Path, extra_pids: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    state = json.loads((out / ".lab-state.json").read_text())
    assert state["labs"]
    for lab_id, lab in state["labs"].items():
        assert lab["torn_down"], lab_id
        assert not lab.get("problems"), lab["problems"]
        assert lab["namespaces"] and not [ns for ns in lab["namespaces"] if ns_exists(ns)]
        assert lab["pids"] and not [p for p in lab["pids"] if alive(p)]
        assert not Path(lab["workdir"]).exists()
    assert not [p for p in extra_pids if alive(p)]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [lab_id for lab_id in state["labs"] if lab_id in listed]
    assert _lab_links() == []


def test_nothing_left_after_a_run(quick_run: Path) -> None:
    _assert_nothing_left(quick_run)


def _daemonised_ssh(state: dict) -> set[int]:  # type: ignore[type-arg]
    """PIDs of `ssh -f` processes (new session, not in any recorded group) in the lab."""
    found = set()
    for lab in state["labs"].values():
        for ns in lab["namespaces"]:
            if not ns_exists(ns):
                continue
            for pid in ns_pids(ns):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmd and cmd[0].endswith(b"ssh") and b"-f" in cmd:
                    found.add(pid)
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_nothing(root: None, tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "lab"
    proc = subprocess.Popen(
        [
            *FLOWDET,
            "lab",
            "generate",
            str(out),
            "--jobs",
            "2",
            "--scenario",
            "ssh-background-tunnels",
            "--scenario",
            "ssh-reverse-idle",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        start_new_session=True,
        # a shell's background job starts with SIGINT ignored, and so would the lab
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    in_lab: set[int] = set()
    daemons: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        # halfway: both labs up, and the script's `ssh -f` tunnels have daemonised
        while time.monotonic() < deadline and proc.poll() is None:
            state_file = out / ".lab-state.json"
            if state_file.exists():
                try:
                    state = json.loads(state_file.read_text())
                except ValueError:
                    state = {"labs": {}}
                daemons = _daemonised_ssh(state)
                if len(state["labs"]) == 2 and daemons:
                    in_lab = {
                        pid
                        for lab in state["labs"].values()
                        for ns in lab["namespaces"]
                        if ns_exists(ns)
                        for pid in ns_pids(ns)
                    }
                    break
            time.sleep(0.2)
        assert daemons, "the run never reached the daemonised tunnels"
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the test itself failed or was interrupted: leave no mess
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if (out / ".lab-state.json").exists():
                subprocess.run(
                    [*FLOWDET, "lab", "cleanup", str(out)], capture_output=True, timeout=60
                )
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    _assert_nothing_left(out, in_lab | daemons)
    run = _manifest(out)
    assert run["interrupted"] is True
    assert {s["status"] for s in run["scenarios"]} <= {"interrupted", "ok"}


def _ping_avg_ms(topo: Topology, dest: str) -> tuple[float, int]:
    out = subprocess.run(
        topo.exec_argv("sandbox", ["ping", "-n", "-q", "-c", "15", "-i", "0.2", dest]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"= [\d.]+/([\d.]+)/", out.stdout)
    received = re.search(r"(\d+) received", out.stdout)
    assert m and received, out.stdout + out.stderr
    return float(m.group(1)), int(received.group(1))


def test_wan_delay_is_what_ping_measures(root: None, tmp_path: Path) -> None:
    if shutil.which("ping") is None:
        pytest.skip("ping is not installed (Debian package iputils-ping)")
    state = StateFile(tmp_path / "state.json")
    procs = ProcessTable(state, "rtt-test")
    wan = {"outside": Wan(80.0, 1.0, 0.0, 50.0), "outside2": Wan(30.0, 1.0, 0.0, 50.0)}
    topo = Topology(procs, state, wan, seed=1)
    try:
        topo.up()
        far, got_far = _ping_avg_ms(topo, "10.213.2.20")
        near, got_near = _ping_avg_ms(topo, "10.213.3.30")
    finally:
        procs.close()
        topo.stop_delayline()
        procs.stop()
        problems = topo.down()
    assert problems == []
    assert got_far == 15 and got_near == 15
    # base RTT plus |N(0, 1 ms)| each way, plus scheduling: never less, rarely much more
    assert 80.0 <= far <= 95.0, far
    assert 30.0 <= near <= 45.0, near
    assert topo.delayline_counts["outside:in"]["forwarded"] == 15
    assert not [ns for ns in topo.ns.values() if ns_exists(ns)]
    assert _lab_links() == []


@pytest.mark.parametrize("finish", ["cleanup", "rerun"])
def test_killed_run_is_finished_later(root: None, tmp_path: Path, finish: str) -> None:
    """SIGKILL leaves everything up; `flowdet lab cleanup`, or the next run into the same
    OUTDIR, finishes the job from the state file."""
    out = tmp_path / "lab"
    proc = subprocess.Popen(
        [*FLOWDET, "lab", "generate", str(out), "--scenario", "ssh-reverse-idle"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        start_new_session=True,
    )
    state_file = out / ".lab-state.json"
    in_lab: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not in_lab:
            if state_file.exists() and list(out.glob("ssh-reverse-idle-*.pcapng")):
                state = json.loads(state_file.read_text())
                in_lab = {
                    pid
                    for lab in state["labs"].values()
                    for ns in lab["namespaces"]
                    if ns_exists(ns)
                    for pid in ns_pids(ns)
                }
                if len(in_lab) < 4:  # delay line, capture, sshd, ssh at least
                    in_lab = set()
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert in_lab
    state = json.loads(state_file.read_text())
    assert any(ns_exists(ns) for lab in state["labs"].values() for ns in lab["namespaces"])
    if finish == "cleanup":
        done = subprocess.run(
            [*FLOWDET, "lab", "cleanup", str(out)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "namespace fdlab-" in done.stdout
    else:
        again = subprocess.run(
            [*FLOWDET, "lab", "generate", str(out), "--scenario", "ssh-multiplexed"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert again.returncode == 0, again.stderr
        assert "removed leftovers of an earlier, killed run" in again.stderr
    deadline = time.monotonic() + 5  # the delay line exits on its own once its stdin is gone
    while time.monotonic() < deadline and [p for p in in_lab if alive(p)]:
        time.sleep(0.1)
    assert not [p for p in in_lab if alive(p)]
    for lab in state["labs"].values():
        assert not [ns for ns in lab["namespaces"] if ns_exists(ns)]
        assert not Path(lab["workdir"]).exists()
    assert _lab_links() == []


def test_failing_scenarios_are_reported_and_cleaned_up(
    root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scenario that raises, one whose Expect matches nothing, one over its time budget:
    each is reported, the next still runs, and none leaves anything behind."""
    from flowdet.lab import runner
    from flowdet.lab.scenario import Expect, Scenario

    spawned: list[int] = []

    def raises(lab, rng, profile):  # type: ignore[no-untyped-def]
        spawned.append(lab.spawn("sandbox", ["sleep", "300"]).pid)
        raise RuntimeError("scenario bug")

    def no_flow(lab, rng, profile):  # type: ignore[no-untyped-def]
        return [Expect("sandbox", "outside", 22, "tcp", "benign")]

    def too_long(lab, rng, profile):  # type: ignore[no-untyped-def]
        spawned.append(lab.spawn("outside", ["sleep", "300"]).pid)
        lab.sleep(300)
        return []

    def fine(lab, rng, profile):  # type: ignore[no-untyped-def]
        p = lab.spawn("sandbox", ["ping", "-c", "1", "-W", "5", lab.ip("outside2")])
        assert p.wait(10) == 0
        lab.spawn(
            "outside", [sys.executable, "-m", "http.server", "8080", "--bind", lab.ip("outside")]
        )
        lab.wait_port("outside", 8080)
        url = f"http://{lab.ip('outside')}:8080/"
        assert lab.spawn("sandbox", ["curl", "-sf", "-o", "/dev/null", url]).wait(20) == 0
        return [Expect("sandbox", "outside", 8080, "tcp", "benign")]

    monkeypatch.setitem(runner.BUDGET_S, "quick", 3.0)
    every = frozenset({"quick", "standard", "full"})
    scns = [Scenario(n, "benign", n, every, f) for n, f in
            (("t-raises", raises), ("t-no-flow", no_flow), ("t-too-long", too_long),
             ("t-fine", fine))]  # fmt: skip
    out = tmp_path / "lab"
    report = runner.Runner(out, scns, jobs=2).run()
    status = {r.name: (r.status, r.error or "") for r in report.results}
    assert status["t-fine"] == ("ok", "")
    assert status["t-raises"][0] == "failed" and "scenario bug" in status["t-raises"][1]
    assert status["t-no-flow"][0] == "failed" and "no such flow" in status["t-no-flow"][1]
    assert status["t-too-long"][0] == "failed" and "time budget" in status["t-too-long"][1]
    assert [r.name for r in report.failed] == ["t-raises", "t-no-flow", "t-too-long"]
    rows = (out / "labels.tsv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split("\t")[-1] == "t-fine"  # failed ones add no rows
    assert (out / "logs" / "t-raises-1").is_dir()  # their program logs are kept for a look
    _assert_nothing_left(out, set(spawned))


def test_tcpdump_fallback_writes_pcap_that_labels_resolve(
    root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (Debian package tcpdump)")
    from flowdet.lab import runner, tools
    from flowdet.lab.scenario import Expect, Scenario

    monkeypatch.setattr(tools, "capture_program", lambda: ("tcpdump", shutil.which("tcpdump")))

    def http_fetch(lab, rng, profile):  # type: ignore[no-untyped-def]
        lab.spawn(
            "outside2", [sys.executable, "-m", "http.server", "80", "--bind", lab.ip("outside2")]
        )
        lab.wait_port("outside2", 80)
        url = f"http://{lab.ip('outside2')}/"
        assert lab.spawn("sandbox", ["curl", "-sf", "-o", "/dev/null", url]).wait(20) == 0
        return [Expect("sandbox", "outside2", 80, "tcp", "benign")]

    every = frozenset({"quick", "standard", "full"})
    out = tmp_path / "lab"
    report = runner.Runner(out, [Scenario("t-tcpdump", "benign", "x", every, http_fetch)]).run()
    assert [(r.status, r.pcap) for r in report.results] == [("ok", "t-tcpdump-1.pcap")]
    assert (out / "t-tcpdump-1.pcap").read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    rows = (out / "labels.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["t-tcpdump-1.pcap"]
    lens = tshark_rows(out / "t-tcpdump-1.pcap", ["frame.len", "frame.cap_len"])
    assert lens and all(a == b for a, b in lens)


def test_missing_scenario_program_names_its_package(root: None, tmp_path: Path) -> None:
    from flowdet.lab import runner
    from flowdet.lab.scenario import Scenario

    def needs_missing(lab, rng, profile):  # type: ignore[no-untyped-def]
        lab.spawn("sandbox", ["no-such-lab-program", "--x"])
        return []

    every = frozenset({"quick", "standard", "full"})
    report = runner.Runner(
        tmp_path / "lab", [Scenario("t-miss", "benign", "x", every, needs_missing)]
    ).run()
    (res,) = report.results
    assert res.status == "failed"
    assert "no-such-lab-program (Debian package" in (res.error or "")


def test_dropbear_clients_make_real_dropbear_sessions(
    root: None, tshark: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Dropbear forced, tunnels and sessions still work and the wire says dropbear."""
    if shutil.which("dbclient") is None:
        pytest.skip("dbclient is not installed (Debian package dropbear-bin)")
    from flowdet.lab import runner, scenarios
    from flowdet.lab.scenarios import ssh

    monkeypatch.setattr(ssh, "_dropbear", lambda rng, share=0.25: True)
    chosen = scenarios.select(
        "quick", ["ssh-interactive", "ssh-reverse-web", "ssh-remote-commands"]
    )
    out = tmp_path / "lab"
    report = runner.Runner(out, chosen, jobs=3).run()
    assert [(r.name, r.status, r.notes.get("dropbear")) for r in report.results] == [
        ("ssh-interactive", "ok", True),  # through a pty: dbclient wants a terminal
        ("ssh-reverse-web", "ok", True),
        ("ssh-remote-commands", "ok", True),
    ]
    for r in lab_helpers.labels_of(out):
        flows = _ssh_flows(out, r["pcap"], {int(r["server_port"])})
        f = flows[(f"{r['client_ip']}:{r['client_port']}", f"{r['server_ip']}:{r['server_port']}")]
        assert str(f["c_banner"]).startswith("SSH-2.0-dropbear_"), f
        assert str(f["s_banner"]).startswith("SSH-2.0-OpenSSH_"), f
        assert {20, 21, 30} <= f["c_codes"] and {20, 21, 31} <= f["s_codes"]  # type: ignore[operator]


def test_a_seed_repeats_its_choices(root: None, tmp_path: Path) -> None:
    """Same seed, same scenario: the same WAN, ciphers, ports and workload; another seed
    changes them (client ports and timings are the kernel's and the clock's, not ours)."""
    from flowdet.lab import runner, scenarios

    chosen = scenarios.select("quick", ["ssh-multiplexed"])

    def choices(out: Path, seed: int) -> tuple[dict, dict]:  # type: ignore[type-arg]
        (res,) = runner.Runner(out, chosen, seed=seed).run().results
        assert res.status == "ok", res.error
        return res.wan, res.notes

    wan, notes = choices(tmp_path / "a", 5)
    assert choices(tmp_path / "b", 5) == (wan, notes)
    assert notes["ssh_port"] in (22, 443, 2222) and "crypto" in notes
    other_seed = Wan.choose(random.Random("6:ssh-multiplexed:wan")).to_json()
    assert other_seed != wan["outside"]  # another seed, another path
