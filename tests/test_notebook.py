"""The walkthrough notebook, the plotting helpers it shares with scripts/make_figures.py, and
the README's figures.

The helpers run on a small labelled sample folder made here (a mining-like session, a
reverse-shell-like keystroke session reusing its ports later, an scp-like bulk session and an
unlabelled UDP exchange), so they are checked without the committed samples; the notebook
itself runs on the committed samples in pcaps/, in a kernel of this venv's Python registered
in a temporary Jupyter path (nothing written outside tmp_path).
"""

from __future__ import annotations

import ast
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flows_synth import P, write_pcap

from flowdet import plots
from flowdet.errors import FlowdetError

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"
SAMPLES = REPO / "pcaps"
SCRIPT = REPO / "scripts" / "make_figures.py"
CLI, SRV = "10.9.0.1", "10.9.0.2"


# -- a labelled sample folder ----------------------------------------------------------------
def _session(
    t0: float, cport: int, sport: int, msgs: list[tuple[float, str, int]], close: float
) -> list[P]:
    """Handshake at t0, payload messages at t0 + dt ('c' = client, 's' = server), FIN at
    t0 + close; every payload packet is acknowledged by a bare ACK."""
    out = [
        P(t0, CLI, cport, SRV, sport, flags="S"),
        P(t0 + 0.001, SRV, sport, CLI, cport, flags="SA"),
        P(t0 + 0.002, CLI, cport, SRV, sport, flags="A"),
    ]
    seq = {"c": 1000, "s": 5000}
    for dt, who, n in msgs:
        src, sp, dst, dp = (CLI, cport, SRV, sport) if who == "c" else (SRV, sport, CLI, cport)
        out.append(P(t0 + dt, src, sp, dst, dp, flags="PA", payload=n, seq=seq[who]))
        out.append(P(t0 + dt + 0.0005, dst, dp, src, sp, flags="A"))
        seq[who] += n
    out += [
        P(t0 + close, CLI, cport, SRV, sport, flags="FA"),
        P(t0 + close + 0.001, SRV, sport, CLI, cport, flags="FA"),
        P(t0 + close + 0.002, CLI, cport, SRV, sport, flags="A"),
    ]
    return out


T0 = 1_700_000_000.0
MINING = _session(
    T0,
    41000,
    3333,
    [(0.01, "c", 120), (0.02, "s", 300), (0.05, "c", 90)]
    + [(20.0 * k, "s", 310) for k in range(1, 6)]
    + [(20.0 * k + 7.0, "c", 106) for k in range(1, 5)],
    110.0,
)
DNS = [
    P(T0 + 1.0, CLI, 5353, "10.9.0.53", 53, proto=17, payload=40),
    P(T0 + 1.01, "10.9.0.53", 53, CLI, 5353, proto=17, payload=80),
]
KEYS = [(0.05, "c", 40), (0.1, "s", 700), (0.2, "c", 1100), (0.3, "s", 1000)] + [
    (3.0 + 0.2 * k + d, who, 84) for k in range(10) for d, who in ((0.0, "s"), (0.05, "c"))
]
SHELL = _session(T0, 42000, 443, KEYS, 8.0) + _session(T0 + 60.0, 42000, 443, KEYS[:6], 4.0)
BULK = _session(
    T0,
    43000,
    22,
    [(0.05, "c", 40), (0.1, "s", 600), (0.5, "c", 200)]
    + [(1.0 + 0.002 * k, "s", 1448) for k in range(40)],
    2.0,
)
LABELS = [
    ("mining-synth-1.pcap", 41000, 3333, "mining", "mining-stratum1-tcp"),
    ("shell-synth-1.pcap", 42000, 443, "ssh-tunnel", "ssh-reverse-login"),
    ("bulk-synth-1.pcap", 43000, 22, "benign", "ssh-file-transfer"),
]


def make_samples(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_pcap(folder / "mining-synth-1.pcap", sorted(MINING + DNS, key=lambda p: p.t))
    write_pcap(folder / "shell-synth-1.pcap", SHELL)
    write_pcap(folder / "bulk-synth-1.pcap", BULK)
    rows = ["pcap\tclient_ip\tclient_port\tserver_ip\tserver_port\tproto\tlabel\tscenario"]
    rows += [f"{p}\t{CLI}\t{cp}\t{SRV}\t{sp}\ttcp\t{lab}\t{sc}" for p, cp, sp, lab, sc in LABELS]
    (folder / "labels.tsv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def samples(synth: Path) -> plots.SampleSet:
    return plots.load_samples(synth)


# -- data helpers -----------------------------------------------------------------------------
def test_load_samples_labels_flows_and_counts_the_rest(samples: plots.SampleSet) -> None:
    # the shell capture holds two flows on one 5-tuple (ports reused after the first closed)
    assert samples.counts() == {"benign": 1, "mining": 1, "ssh-tunnel": 2}
    assert dict(samples.unlabelled) == {"mining-synth-1.pcap": 1}  # the UDP exchange
    assert samples.unmatched_rows() == []
    scen = sorted({(f.scenario, f.label) for f in samples.flows})
    assert scen == sorted({(sc, lab) for *_, lab, sc in LABELS})


def test_load_samples_refuses_folders_it_cannot_label(tmp_path: Path, synth: Path) -> None:
    with pytest.raises(FlowdetError, match=r"labels\.tsv"):
        plots.load_samples(tmp_path)
    (tmp_path / "x.pcap").write_bytes((synth / "bulk-synth-1.pcap").read_bytes())
    (tmp_path / "labels.tsv").write_text(
        "pcap\tclient_ip\tclient_port\tserver_ip\tserver_port\tlabel\n"
        "x.pcap\t10.1.1.1\t1\t10.1.1.2\t2\tmining\n"
    )
    with pytest.raises(FlowdetError, match="no flow matched"):
        plots.load_samples(tmp_path)


def test_label_rows_without_a_flow_are_listed(tmp_path: Path) -> None:
    folder = make_samples(tmp_path / "s")
    with (folder / "labels.tsv").open("a") as f:
        f.write(f"bulk-synth-1.pcap\t{CLI}\t9\t{SRV}\t22\ttcp\tbenign\tghost\n")
    got = plots.load_samples(folder)
    assert got.unmatched_rows() == [f"bulk-synth-1.pcap:{len(LABELS) + 2}"]
    assert got.counts() == {"benign": 1, "mining": 1, "ssh-tunnel": 2}


def test_packet_series_holds_exactly_the_flows_packets(samples: plots.SampleSet) -> None:
    for f in samples.flows:
        r = f.record
        (s,) = plots.packet_series(f.capture, [r])
        assert len(s) == r.pkts_toserver + r.pkts_toclient, f.scenario
        assert int(s.toserver.sum()) == r.pkts_toserver
        signed = s.signed()
        assert int(signed[signed > 0].sum()) == r.payload_bytes_toserver
        assert int(-signed[signed < 0].sum()) == r.payload_bytes_toclient
        assert s.t[0] == pytest.approx(0.0, abs=1e-6)
        assert s.t.max() == pytest.approx(r.duration, abs=1e-5)
        assert (np.abs(s.signed("ip_len")) == s.ip_len).all()


def test_packet_series_keeps_reused_ports_apart(samples: plots.SampleSet) -> None:
    shells = [f for f in samples.flows if f.label == "ssh-tunnel"]
    cap = shells[0].capture
    a, b = plots.packet_series(cap, [f.record for f in shells])  # one pass, two flows
    assert {len(a), len(b)} == {
        len(_session(0, 1, 2, KEYS, 8.0)),
        len(_session(0, 1, 2, KEYS[:6], 4)),
    }
    assert a.t.max() < 10 and b.t.max() < 10  # neither picked up the other's packets


def test_typing_window_finds_keystrokes_and_nothing_in_bulk(samples: plots.SampleSet) -> None:
    by = {f.scenario: f for f in samples.flows}
    long_shell = max(
        (f for f in samples.flows if f.label == "ssh-tunnel"), key=lambda f: f.record.duration
    )
    (s,) = plots.packet_series(long_shell.capture, [long_shell.record])
    win = plots.typing_window(s)
    assert win is not None
    assert win[0] <= 3.0 + 1e-6 < win[1]  # the first keystroke is inside, the login is not
    assert win[0] > 0.3
    for name in ("ssh-file-transfer", "mining-stratum1-tcp"):
        (s,) = plots.packet_series(by[name].capture, [by[name].record])
        assert plots.typing_window(s) is None, name


def test_pick_examples_prefers_scenarios_and_says_when_it_stands_in(
    samples: plots.SampleSet,
) -> None:
    ex = plots.pick_examples(samples)
    assert [e.flow.scenario for e in ex] == [
        "mining-stratum1-tcp",
        "ssh-reverse-login",
        "ssh-file-transfer",  # the only benign flow: stand-in for the interactive session
    ]
    assert ex[0].caption == plots.SCENARIO_CAPTIONS["mining-stratum1-tcp"]
    assert ex[1].flow.record.duration > 5  # the longer of the two shell flows
    assert ex[2].caption.startswith("stand-in")
    spec = plots.ExampleSpec("benign", ("ssh-file-transfer",))
    (only,) = plots.pick_examples(samples, [spec, plots.ExampleSpec("mining", ("nope",))])[:1]
    assert only.caption == plots.SCENARIO_CAPTIONS["ssh-file-transfer"]


def test_scored_samples_give_one_timing_row_per_attack_flow(samples: plots.SampleSet) -> None:
    from flowdet.model import Detector

    det = Detector.load()
    verdicts = plots.score_samples(samples, det)
    labelled = [v for v in verdicts if samples.label_of(v.source, v.record)]
    assert len(labelled) == len(samples.flows)
    rows = plots.alert_timings(samples, verdicts)
    attacks = [f for f in samples.flows if f.label != "benign"]
    alerted_benign = [
        v for v in labelled if v.is_alert and samples.label_of(v.source, v.record)[0] == "benign"
    ]
    assert len(rows) == len(attacks) + len(alerted_benign)
    for row in rows:
        assert row.end >= row.start
        if row.delay is not None:  # an alert: reached within the flow, at a named evaluation
            assert row.first_checkpoint
            assert row.first is not None and row.start - 1e-6 <= row.first <= row.end + 1e-6
            assert row.delay >= row.first - row.start - 1e-9
        else:
            assert row.predicted == "benign"


def test_alert_delay_waits_for_time_checkpoints() -> None:
    def row(cp: str, first: float | None) -> plots.AlertTiming:
        return plots.AlertTiming("c", "s", "mining", "mining", 100.0, 200.0, first, cp, 8, 50)

    assert row("pkts:8", 101.5).delay == pytest.approx(1.5)
    assert row("final", 200.0).delay == pytest.approx(100.0)
    # a secs:10 snapshot holds the state at start + 10 s, taken once the clock gets there
    assert row("secs:10", 101.0).delay == pytest.approx(10.0)
    assert row("secs:10", 112.0).delay == pytest.approx(12.0)
    assert row("", None).delay is None


# -- figures ------------------------------------------------------------------------------------
def test_figures_have_titles_labels_and_legends(samples: plots.SampleSet) -> None:
    from flowdet.features import FEATURE_NAMES, featurize

    ex = plots.pick_examples(samples)
    series = [plots.packet_series(e.flow.capture, [e.flow.record])[0] for e in ex]
    fig = plots.plot_packet_sizes(ex, series)
    titles = [a.get_title(loc="left") for a in fig.axes]
    assert any(t.startswith("mining: mining-stratum1-tcp") for t in titles)
    assert any(t.startswith("close-up") for t in titles)  # the reverse shell's typing
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "toserver (initiator → responder)",
        "toclient (responder → initiator)",
    ]
    assert all(a.get_ylabel() == "payload bytes" for a in fig.axes)

    X, _ = featurize(samples.records)
    fig = plots.plot_feature_distributions(X, samples.y)
    shown = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title() for a in shown] == list(plots.TELLING_FEATURES)
    with pytest.raises(FlowdetError, match="unknown feature"):
        plots.plot_feature_distributions(X, samples.y, ["no_such_feature"])

    fig = plots.plot_confusion(["mining", "benign", "benign"], ["mining", "mining", "benign"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:2] == ["1\n50%", "1\n50%"]  # benign row: one right, one called mining

    mean = np.zeros(len(FEATURE_NAMES))
    mean[[5, 9]] = [0.2, 0.5]
    std = np.zeros_like(mean)
    std[11] = 0.01  # moved the score sometimes, zero on average
    fig = plots.plot_importances(mean, std, FEATURE_NAMES, top=2)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [FEATURE_NAMES[5], FEATURE_NAMES[9]]  # the top 2, largest at the top
    fig = plots.plot_importances(mean, std, FEATURE_NAMES)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [FEATURE_NAMES[i] for i in (11, 5, 9)]  # features that never moved: out
    assert f"{len(FEATURE_NAMES) - 3} of {len(FEATURE_NAMES)} never" in fig.axes[0].get_title()


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_make_figures_writes_readable_pngs(tmp_path: Path, synth: Path) -> None:
    out = tmp_path / "img"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--samples", str(synth), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(plots.README_FIGURES)
    assert proc.stdout.split() == [str(out / n) for n in plots.README_FIGURES]
    from matplotlib.image import imread

    for name in plots.README_FIGURES:
        p = out / name
        w, h = _png_size(p)
        assert w >= 600 and h >= 250, (name, w, h)
        assert p.stat().st_size > 20_000, name
        img = imread(p)[..., :3]
        # drawn, not blank: a good share of non-white pixels, and more than two colours
        assert (img.min(axis=2) < 0.9).mean() > 0.02, name
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50, name


@pytest.mark.parametrize("case", ["no-labels", "unmatched", "broken-capture", "no-model"])
def test_make_figures_bad_input_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "s"
    make_samples(folder)
    extra: list[str] = []
    if case == "no-labels":
        (folder / "labels.tsv").unlink()
    elif case == "unmatched":
        (folder / "labels.tsv").write_text(
            "pcap\tclient_ip\tclient_port\tserver_ip\tserver_port\tlabel\n"
            "other.pcap\t10.1.1.1\t1\t10.1.1.2\t2\tmining\n"
        )
    elif case == "broken-capture":
        (folder / "bulk-synth-1.pcap").write_bytes(b"not a capture at all")
    else:
        extra = ["--model", str(tmp_path / "missing.joblib")]
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--samples",
            str(folder),
            "--out",
            str(tmp_path / "o"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("make_figures: ")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# -- the notebook -------------------------------------------------------------------------------
def _notebook() -> dict:
    import nbformat

    return nbformat.read(NOTEBOOK, as_version=4)


def test_committed_notebook_has_no_outputs() -> None:
    nb = _notebook()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for i, c in enumerate(code):
        assert c.outputs == [], f"code cell {i} has outputs: strip them before committing"
        assert c.execution_count is None, f"code cell {i} has an execution count"
    assert "widgets" not in nb.metadata


def _code_of(nb: dict) -> str:
    lines = []
    for c in nb.cells:
        if c.cell_type == "code":
            # IPython magics are not Python; the notebook uses only %matplotlib
            lines += [ln for ln in c.source.splitlines() if not ln.lstrip().startswith("%")]
    return "\n".join(lines)


def test_notebook_calls_only_public_api() -> None:
    tree = ast.parse(_code_of(_notebook()))
    flowdet_names: set[str] = {"flowdet"}
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flowdet"):
            assert not any(part.startswith("_") for part in node.module.split(".")), node.module
            for a in node.names:
                assert not a.name.startswith("_"), f"private import {node.module}.{a.name}"
                flowdet_names.add(a.asname or a.name)
                imported.append(f"{node.module}.{a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("flowdet"):
                    assert not any(p.startswith("_") for p in a.name.split(".")), a.name
                    flowdet_names.add((a.asname or a.name).split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise AssertionError(f"notebook touches a private attribute: .{node.attr}")
    # it walks the chain through the public modules the walkthrough is about
    for mod in ("flowdet.capture", "flowdet.flows", "flowdet.features", "flowdet.model"):
        assert any(i.startswith(mod + ".") for i in imported), f"no import from {mod}"
    assert "flowdet.pipeline.ScoringPipeline" in imported
    assert "plots" in flowdet_names


def test_notebook_reads_the_repos_samples_by_relative_path() -> None:
    src = _code_of(_notebook())
    assert '"pcaps"' in src
    assert not re.search(r"/work/|/tmp/|/home/|\.\./shared", src), "absolute or outside path"


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec for this interpreter in a temporary Jupyter path; IPython, matplotlib and
    Jupyter state dirs in tmp_path too, so the run leaves nothing behind."""
    from ipykernel.kernelspec import install

    name = "flowdet-test"
    install(kernel_name=name, prefix=str(tmp_path / "jp"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jp" / "share" / "jupyter"))
    for var in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.delenv("FLOWDET_SAMPLES", raising=False)  # the committed samples, nothing else
    monkeypatch.delenv("MPLBACKEND", raising=False)
    return name


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_the_committed_samples(venv_kernel: str) -> None:
    if not (SAMPLES / "labels.tsv").is_file():
        pytest.skip("pcaps/labels.tsv is not committed yet: the notebook needs the samples")
    from nbclient import NotebookClient

    nb = _notebook()
    client = NotebookClient(
        nb,
        timeout=600,  # per cell; a hung cell fails the test instead of hanging CI
        kernel_name=venv_kernel,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError when a cell raises
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5, f"{len(images)} figures rendered, expected 5"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "pipeline verdicts equal the detector's predictions" in text
    assert str(SAMPLES) in text  # it read the repo's pcaps/, not another folder


# -- the README ---------------------------------------------------------------------------------
def test_readme_shows_the_generated_figures() -> None:
    readme = (REPO / "README.md").read_text()
    m = re.search(r"^## What it looks like\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert m, "README lacks the 'What it looks like' section"
    section = m.group(1)
    assert "scripts/make_figures.py" in section  # how to regenerate them
    shown = re.findall(r"\(docs/img/([\w.-]+\.png)\)", section)
    assert sorted(shown) == sorted(plots.README_FIGURES)
    for name in shown:
        w, h = _png_size(REPO / "docs" / "img" / name)
        assert w >= 600 and h >= 400
    assert os.path.getsize(REPO / "docs" / "img" / shown[0]) > 20_000
