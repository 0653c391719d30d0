"""`flowdet train` / `flowdet evaluate` end to end on real captures, and their input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowdet.labels import LabelError, read_labels

BENIGN_TRACES = (
    "dns53.pcap",
    "dns-edns-cookie.pcap",
    "http__get.pcap",
    "ssh__ssh.pcap",
)


def flowdet(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowdet.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def small_data(corpus, tmp_path_factory) -> tuple[Path, Path]:
    """mining-real (labels.tsv beside it) and a folder-per-label `benign/` of a few Zeek
    traces, linked (never copied) from the corpus."""
    root = tmp_path_factory.mktemp("data")
    benign = root / "benign"
    benign.mkdir()
    zeek = corpus / "zeek-traces"
    picked = [p for p in sorted(zeek.iterdir()) if p.name in BENIGN_TRACES]
    if len(picked) < 2:  # fall back to any few TCP-ish traces
        picked = sorted(zeek.glob("http*.pcap"))[:4]
    for p in picked:
        (benign / (p.stem + ".pcap")).symlink_to(p)
    return corpus / "mining-real", benign


@pytest.mark.corpus
@pytest.mark.slow
def test_train_twice_same_seed_same_metrics(small_data, tmp_path) -> None:
    mining, benign = small_data
    cards = []
    for i in (1, 2):
        out = tmp_path / f"m{i}.joblib"
        rep = tmp_path / f"r{i}.json"
        r = flowdet(
            "train", str(mining), str(benign), "-o", str(out), "--seed", "3", "--report", str(rep)
        )
        assert r.returncode == 0, r.stderr
        assert "cross-validation" in r.stderr and "confusion" in r.stderr
        card = json.loads((tmp_path / f"m{i}.card.json").read_text())
        cards.append(card)
        report = json.loads(rep.read_text())
        assert report["final"]["classes"]["mining"]["support"] >= 190
    a, b = cards
    assert a["metrics"] == b["metrics"]
    assert a["seed"] == 3 and a["thresholds"]
    data = a["data"]
    assert data["flows_per_label"]["mining"] >= 190
    assert data["flows_per_label"]["benign"] >= 4  # 'other' rows + the benign folder
    assert data["unlabelled_flows_skipped"] > 0  # mining-real's payload-less probes
    assert a["versions"]["scikit-learn"]
    assert a["command"].startswith("flowdet train")
    # the model it wrote evaluates, through the CLI, with the same report layout
    r = flowdet("evaluate", str(mining), "--model", str(tmp_path / "m1.joblib"))
    assert r.returncode == 0, r.stderr
    assert "final records" in r.stderr and "early checkpoints" in r.stderr


@pytest.mark.corpus
def test_mismatched_model_exits_2_one_line(corpus, tmp_path) -> None:
    import joblib

    from flowdet.model import DEFAULT_MODEL_PATH

    bundle = joblib.load(DEFAULT_MODEL_PATH)
    bundle["feature_names"] = bundle["feature_names"][:-3]
    bad = tmp_path / "old.joblib"
    joblib.dump(bundle, bad)
    r = flowdet("evaluate", str(corpus / "mining-real"), "--model", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "feature list does not match" in lines[0]
    assert "Traceback" not in r.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.corpus
def test_wrong_labels_exit_2_one_line(corpus, tmp_path) -> None:
    cap = str(corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng")
    cases = {
        "lacks column": "pcap\tclient_ip\tclient_port\tlabel\nx.pcap\t1.2.3.4\t5\tmining\n",
        "unknown label": (
            "pcap\tclient_ip\tclient_port\tserver_ip\tserver_port\tlabel\n"
            "xmr-eu1.nanopool.org.pcapng\t1.2.3.4\t5\t5.6.7.8\t9\tcryptojacking\n"
        ),
        "must be integers": (
            "pcap\tclient_ip\tclient_port\tserver_ip\tserver_port\tlabel\n"
            "xmr-eu1.nanopool.org.pcapng\t1.2.3.4\tfive\t5.6.7.8\t9\tmining\n"
        ),
        "no row names": (
            "pcap\tclient_ip\tclient_port\tserver_ip\tserver_port\tlabel\n"
            "other.pcap\t1.2.3.4\t5\t5.6.7.8\t9\tmining\n"
        ),
    }
    for i, (msg, text) in enumerate(cases.items()):
        labels = _write(tmp_path / f"l{i}.tsv", text)
        r = flowdet("train", cap, "--labels", str(labels), "-o", str(tmp_path / "m.joblib"))
        assert r.returncode == 2, (msg, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (msg, r.stderr)
    r = flowdet("evaluate", cap, "--labels", str(tmp_path / "missing.tsv"))
    assert r.returncode == 2 and "cannot read labels" in r.stderr


@pytest.mark.corpus
def test_label_rows_matching_no_flow_are_counted(corpus, tmp_path) -> None:
    real = (corpus / "mining-real" / "labels.tsv").read_text().splitlines()
    rows = [ln for ln in real if ln.startswith("xmr-eu1")]
    extra = "xmr-eu1.nanopool.org.pcapng\t10.9.9.9\t1111\t10.8.8.8\t2222\tmining\t\n"
    labels = _write(tmp_path / "l.tsv", "\n".join([real[0], *rows]) + "\n" + extra)
    cap = str(corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng")
    rep = tmp_path / "r.json"
    r = flowdet("evaluate", cap, "--labels", str(labels), "--report", str(rep))
    assert r.returncode == 0, r.stderr
    assert "1 label rows matched no flow" in r.stderr
    data = json.loads(rep.read_text())["data"]
    assert data["label_rows_unmatched"] == 1
    assert data["flows_per_label"] == {"mining": 1}


def test_labels_match_either_direction(tmp_path) -> None:
    lf = read_labels(
        _write(
            tmp_path / "l.tsv",
            "pcap\tclient_ip\tclient_port\tserver_ip\tserver_port\tproto\tlabel\tscenario\n"
            "a.pcap\t10.0.0.1\t40000\t10.0.0.2\t22\ttcp\tssh-tunnel\trev\n"
            "a.pcap\t10.0.0.3\t5000\t10.0.0.4\t53\tudp\tother\t\n",
        )
    )
    row = lf.lookup("a.pcap", "TCP", ("10.0.0.2", 22), ("10.0.0.1", 40000))
    assert row is not None and row.label == "ssh-tunnel" and row.scenario == "rev"
    assert row.client == ("10.0.0.1", 40000)  # the labels' client, not the flow's initiator
    udp = lf.lookup("a.pcap", "UDP", ("10.0.0.3", 5000), ("10.0.0.4", 53))
    assert udp is not None and udp.label == "benign"  # `other` means benign
    assert lf.lookup("a.pcap", "UDP", ("10.0.0.2", 22), ("10.0.0.1", 40000)) is None
    assert lf.lookup("b.pcap", "TCP", ("10.0.0.2", 22), ("10.0.0.1", 40000)) is None
    assert len(lf.unmatched()) == 0
    with pytest.raises(LabelError, match="labelled benign here and ssh-tunnel"):
        read_labels(
            _write(
                tmp_path / "dup.tsv",
                "pcap\tclient_ip\tclient_port\tserver_ip\tserver_port\tlabel\n"
                "a.pcap\t10.0.0.1\t40000\t10.0.0.2\t22\tssh-tunnel\n"
                "a.pcap\t10.0.0.2\t22\t10.0.0.1\t40000\tbenign\n",
            )
        )


def test_train_refuses_bad_output_name(tmp_path) -> None:
    r = flowdet("train", os.devnull, "-o", str(tmp_path / "model.pkl"))
    assert r.returncode == 2 and "must end in .joblib" in r.stderr
