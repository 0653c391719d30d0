"""`flowdet live` on the lab's monitored link while real programs talk across it.

One lab instance (namespaces, WAN delay line); `flowdet live -i lan0 --format jsonl` runs in
the router namespace on the sandbox's veth; lab scenarios run across it: cleartext stratum,
stratum over TLS, a reverse SSH tunnel with a login back in, and benign HTTP and SSH. The
JSON lines are read as they are written. An alert counts only if it arrives while its
connection is still open: the scenario was still running when the line was read, and the
alert's decision time is before the flow's last packet. Benign scenarios must raise none.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flowdet.lab.topology import ADDRESSES
from flowdet.live.labtap import LiveLab, ScenarioRun, SeenRecord

pytestmark = pytest.mark.slow

ATTACKS = ["mining-stratum1-tcp", "mining-stratum1-tls", "ssh-reverse-login"]
BENIGN_SIDE_BY_SIDE = ["benign-web-http"]
BENIGN_ALONE = ["ssh-interactive"]  # its own SSH server: run after the others, not beside them


def _ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def tap(tmp_path_factory: pytest.TempPathFactory) -> tuple[LiveLab, dict[str, ScenarioRun], str]:
    if __import__("os").geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    work = tmp_path_factory.mktemp("live-lab")
    with LiveLab(work / "lab", seed=7) as ll:
        runs = dict(ll.run(ATTACKS + BENIGN_SIDE_BY_SIDE))
        runs.update(ll.run(BENIGN_ALONE))
        stderr = ll.stop_live()
    return ll, runs, stderr


def _records(ll: LiveLab, run: ScenarioRun) -> list[SeenRecord]:
    """Records of the flows this scenario made: its servers and ports, started in its run."""
    out = []
    for e in run.expects:
        for s in ll.records_for(e.server_port, ADDRESSES[e.server]):
            if run.started - 1.0 <= _ts(s.record["start"]) <= run.ended + 1.0:
                out.append(s)
    return out


def test_live_ran_and_stopped_cleanly(tap: tuple[LiveLab, dict[str, ScenarioRun], str]) -> None:
    ll, runs, stderr = tap
    failed = {n: r.error for n, r in runs.items() if r.error}
    assert not failed, failed
    assert ll.live_rc == 0, stderr
    assert "stopped by SIGTERM" in stderr and "dumpcap lan0:" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("name", ATTACKS)
def test_alert_arrives_while_the_connection_is_open(
    tap: tuple[LiveLab, dict[str, ScenarioRun], str], name: str
) -> None:
    ll, runs, stderr = tap
    run = runs[name]
    assert not run.error, run.error
    label = run.expects[0].label
    recs = _records(ll, run)
    alerts = [s for s in recs if s.record["alert_event"] == "alert"]
    assert alerts, f"{name}: no alert; records: {[s.record for s in recs]}"
    first = alerts[0]
    assert first.record["label"] == label, first.record
    assert first.record["verdict_stage"] == "early", first.record
    assert name in first.running, f"{name} had ended when its alert was read: {stderr[-2000:]}"
    ends = [
        s
        for s in recs
        if s.record["alert_event"] == "flow_end" and s.record["flow_id"] == first.record["flow_id"]
    ]
    assert ends, f"{name}: the alerted flow has no final record"
    assert _ts(first.record["timestamp"]) < _ts(ends[-1].record["end"])
    assert first.read_at < _ts(ends[-1].record["end"]) + 0.5  # read before the flow was over
    for s in alerts:
        assert s.record["label"] == label, s.record


@pytest.mark.parametrize("name", BENIGN_SIDE_BY_SIDE + BENIGN_ALONE)
def test_no_alert_for_benign_traffic(
    tap: tuple[LiveLab, dict[str, ScenarioRun], str], name: str
) -> None:
    ll, runs, _ = tap
    run = runs[name]
    assert not run.error, run.error
    alerts = [s.record for s in _records(ll, run) if s.record["event_type"] == "alert"]
    assert not alerts, [
        (r["label"], r["score"], r["verdict_checkpoint"], r["dest_port"]) for r in alerts
    ]


def test_reference_capture_agrees(tap: tuple[LiveLab, dict[str, ScenarioRun], str]) -> None:
    """flowdet live saw every packet of the link: its count equals the link capture's."""
    ll, _, stderr = tap
    from flowdet.capture import open_capture

    with open_capture(str(ll.reference)) as r:
        ref = sum(len(b) for b in r)
    line = next(ln for ln in stderr.splitlines() if "packets in" in ln)
    live = int(line.split("flowdet live: ")[1].split(" packets")[0].replace(",", ""))
    # the link capture starts before and stops after flowdet live: a few packets at the edges
    assert ref > 500 and ref - 10 <= live <= ref, (live, ref)
    assert Path(ll.jsonl).stat().st_size > 0
