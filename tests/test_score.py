"""Scoring: thresholds, decisions, the incremental pipeline, alert records and sinks, exit
codes and per-alert captures - with the stand-in detector of tests/score_fakes.py (a real
RandomForest) so these run whatever state the shipped model is in."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from score_fakes import ConstantDetector, FakeDetector, fake_featurize, fake_loader

from flowdet.alerts import ALERT_FIELD_NAMES, ALERT_FIELDS, fields_markdown
from flowdet.capture import open_capture
from flowdet.community_id import community_id
from flowdet.errors import CaptureError, FlowdetError
from flowdet.pipeline import ScoringPipeline
from flowdet.score import ScoreOptions, run_score, score_capture
from flowdet.verdicts import Decider, effective_thresholds, parse_thresholds

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("benign", "mining", "ssh-tunnel")


# -- thresholds and decisions -------------------------------------------------------------


def test_parse_thresholds_accepts_labels_and_rejects_the_rest():
    assert parse_thresholds(["mining=0.8", "ssh-tunnel=0.3"], CLASSES) == {
        "mining": 0.8,
        "ssh-tunnel": 0.3,
    }
    assert parse_thresholds(["mining = 1"], CLASSES) == {"mining": 1.0}
    bad = {
        "bogus=0.5": "unknown label 'bogus'",
        "benign=0.5": "unknown label 'benign'",
        "mining": "expected LABEL=P",
        "=0.5": "expected LABEL=P",
        "mining=high": "not a number",
        "mining=0": "must be in (0, 1]",
        "mining=1.5": "must be in (0, 1]",
    }
    for spec, msg in bad.items():
        with pytest.raises(FlowdetError) as exc:
            parse_thresholds([spec], CLASSES)
        assert msg in str(exc.value), spec
        assert "\n" not in str(exc.value)
    with pytest.raises(FlowdetError, match="mining, ssh-tunnel"):
        parse_thresholds(["x=0.5"], CLASSES)  # the message lists the labels that exist


def test_effective_thresholds_override_model_and_default():
    th = effective_thresholds(CLASSES, {"mining": 0.7}, {"ssh-tunnel": 0.2})
    assert th == {"mining": 0.7, "ssh-tunnel": 0.2}
    assert effective_thresholds(CLASSES, {}, {}) == {"mining": 0.5, "ssh-tunnel": 0.5}


def test_decider_picks_most_probable_crossing_class():
    d = Decider(CLASSES, {"mining": 0.5, "ssh-tunnel": 0.3})
    P = np.array(
        [
            [0.9, 0.06, 0.04],  # nothing crosses
            [0.1, 0.6, 0.3],  # both cross: the more probable wins
            [0.35, 0.3, 0.35],  # only ssh-tunnel crosses its lower threshold
            [0.4, 0.45, 0.15],  # mining below 0.5: benign, but score 0.45
        ]
    )
    got = d.decide(P)
    assert [x.label for x in got] == ["benign", "mining", "ssh-tunnel", "benign"]
    # score = highest non-benign probability, alerts and benign flows alike
    assert [x.score for x in got] == pytest.approx([0.06, 0.6, 0.35, 0.45])
    assert [x.scored_label for x in got] == ["mining", "mining", "ssh-tunnel", "mining"]


# -- the pipeline -------------------------------------------------------------------------


def _verdict_key(v):
    return (
        v.record.flow_id,
        v.record.segment,
        v.label,
        round(v.score, 6),
        v.first_checkpoint,
        v.first_pkts,
        tuple(r.text for r in v.reasons),
    )


def _score(path, batch_packets=65536, detector=None, **kw):
    det = detector or FakeDetector()
    pipe = ScoringPipeline(det, featurize=fake_featurize, **kw)
    out = []
    with open_capture(path, batch_packets=batch_packets) as reader:
        for batch in reader:
            out.extend(pipe.feed(batch))
    out.extend(pipe.flush())
    return out, pipe


def test_pipeline_is_incremental(corpus):
    """Small batches (records emitted a few at a time, state carried across blocks) give
    the same verdicts as one big batch, and the verdict state is released at the end."""
    path = corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng"
    det = FakeDetector()
    whole, _ = _score(path, detector=det, all_flows=True)
    small, pipe = _score(path, batch_packets=5, detector=det, all_flows=True)
    assert [_verdict_key(v) for v in small] == [_verdict_key(v) for v in whole]
    assert pipe.live_state == 0
    assert pipe.stats.records > pipe.stats.flows  # checkpoints were scored too


def test_first_verdict_comes_from_the_earliest_crossing_checkpoint(corpus):
    path = corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng"
    # mining at every evaluation: the verdict is first reached at the first checkpoint
    det = ConstantDetector([0.1, 0.9, 0.0])
    verdicts, pipe = _score(path, detector=det)
    assert len(verdicts) == 1
    v = verdicts[0]
    r = v.record
    assert v.label == "mining" and v.final
    assert v.first_checkpoint == "pkts:8" and v.first_pkts == 8
    # client payload packets among the first 8, counted independently from first_pkts
    fp = r.first_pkts
    expect = sum(1 for d, n in zip(fp["dir"][:8], fp["len"][:8], strict=True) if d == 0 and n)
    assert v.first_client_payload_pkts == expect
    # the evaluation's time is the 8th packet's: start + the first 8 gaps
    assert v.first_ns / 1e9 == pytest.approx(r.start_epoch + sum(fp["iat"][:8]), abs=2e-6)
    assert pipe.stats.alerts == {"mining": 1}


def test_early_alerts_for_live_use(corpus):
    path = corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng"
    det = ConstantDetector([0.1, 0.9, 0.0])
    verdicts, pipe = _score(path, detector=det, early=True)
    assert [v.final for v in verdicts] == [False, True]  # one early alert, then the final
    assert verdicts[0].record.end_reason == "checkpoint"
    assert verdicts[0].record.checkpoint == "pkts:8"
    assert pipe.stats.early_alerts == 1


def test_benign_model_reports_nothing_and_counts_flows(corpus):
    path = corpus / "mining-real" / "cgminer.s2.pcapng"
    verdicts, pipe = _score(path, detector=ConstantDetector([0.9, 0.05, 0.05]))
    assert verdicts == []
    assert pipe.stats.flows > 10 and pipe.stats.alerts == {}


def test_feature_count_mismatch_is_a_model_error(corpus):
    from flowdet.errors import ModelError

    class Narrow(ConstantDetector):
        feature_names = ("a", "b")

    with pytest.raises(ModelError, match="expects 2 features"):
        _score(corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng", detector=Narrow([1, 0, 0]))


# -- alert records: schema ----------------------------------------------------------------

# Written by hand from docs/alerts.md, not generated from ALERT_FIELDS, so that a change of
# the record has to be made in both places.
_STR, _INT, _NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
_OPT_STR = {"type": ["string", "null"]}
_OPT_INT = {"type": ["integer", "null"]}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "timestamp": _STR,
        "event_type": {"type": "string", "enum": ["alert", "flow"]},
        "pcap_filename": _STR,
        "flow_id": {"type": "integer", "minimum": 1},
        "segment": {"type": "integer", "minimum": 0},
        "community_id": {"type": "string", "pattern": "1:"},
        "src_ip": _STR,
        "src_port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "dest_ip": _STR,
        "dest_port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "proto": _STR,
        "app_proto": _STR,
        "pkts_toserver": {"type": "integer", "minimum": 0},
        "pkts_toclient": {"type": "integer", "minimum": 0},
        "bytes_toserver": {"type": "integer", "minimum": 0},
        "bytes_toclient": {"type": "integer", "minimum": 0},
        "start": _STR,
        "end": _STR,
        "duration": {"type": "number", "minimum": 0},
        "end_reason": {
            "type": "string",
            "enum": ["fin", "rst", "idle", "active", "eof", "evicted"],
        },
        "label": {"type": "string", "enum": list(CLASSES)},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "threshold": {"type": ["number", "null"]},
        "probabilities": {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "verdict_checkpoint": _OPT_STR,
        "verdict_pkts": _OPT_INT,
        "verdict_client_payload_pkts": _OPT_INT,
        "verdict_time": _OPT_STR,
        "reasons": {"type": "array", "items": _STR},
        "reason_sources": {"type": "array", "items": _STR},
        "drivers_method": {"type": "string", "enum": ["contribution", "atypicality", "none"]},
        "drivers": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["feature", "value", "weight"],
                "properties": {"feature": _STR, "value": _NUM, "weight": _NUM},
            },
        },
        "model": _STR,
    },
}
SCHEMA["required"] = list(SCHEMA["properties"])

_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "object": dict,
    "array": list,
    "null": type(None),
}


def validate(value, schema, path="$"):
    """A small JSON Schema subset: type, enum, pattern (prefix), minimum/maximum, required,
    properties, additionalProperties, items. Returns a list of errors."""
    errs = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        ok = any(
            isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and value is True)
            for t in types
        )
        if "integer" in types and isinstance(value, float):
            ok = False if not any(t == "number" for t in types) else ok
        if not ok:
            return [f"{path}: {value!r} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not value.startswith(schema["pattern"]):
        errs.append(f"{path}: {value!r} does not start with {schema['pattern']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                errs.append(f"{path}: missing {k}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errs += validate(v, props[k], f"{path}.{k}")
            elif extra is False:
                errs.append(f"{path}: unexpected {k}")
            elif isinstance(extra, dict):
                errs += validate(v, extra, f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errs += validate(v, schema["items"], f"{path}[{i}]")
    return errs


def test_validator_catches_errors():
    good = {"feature": "x", "value": 1.0, "weight": 0.5}
    item = SCHEMA["properties"]["drivers"]["items"]
    assert validate(good, item) == []
    assert validate({**good, "value": "1"}, item)
    assert validate({"feature": "x", "value": 1.0}, item)  # missing weight
    assert validate({**good, "extra": 1}, item)
    assert validate(3.5, _INT) and validate(True, _INT) and validate(None, _STR)
    assert validate("benign-ish", SCHEMA["properties"]["label"])


def _iso(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _jsonl(sources, all_flows=True, detector=FakeDetector, **kw):
    out, err = io.StringIO(), io.StringIO()
    rc = run_score(
        [str(s) for s in sources],
        None,
        ScoreOptions(all_flows=all_flows),
        "jsonl",
        out,
        loader=fake_loader if detector is FakeDetector else (lambda _p: detector()),
        featurize=fake_featurize,
        err=err,
        **kw,
    )
    return rc, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_jsonl_records_follow_the_schema(corpus):
    rc, recs, err = _jsonl(sorted((corpus / "mining-real").glob("*.pcapng")))
    assert rc == 1, err  # the stand-in flags the stratum/xmrig flows
    assert {r["event_type"] for r in recs} == {"alert", "flow"}
    assert list(SCHEMA["properties"]) == list(ALERT_FIELD_NAMES)  # hand schema == code
    for r in recs:
        assert validate(r, SCHEMA) == [], r
        assert list(r) == list(ALERT_FIELD_NAMES)  # key order as documented
        ipaddress.ip_address(r["src_ip"]), ipaddress.ip_address(r["dest_ip"])
        # Community ID recomputed from the record's own 5-tuple
        pnum = {"TCP": 6, "UDP": 17}.get(r["proto"])
        if pnum:
            cid = community_id(r["src_ip"], r["dest_ip"], pnum, r["src_port"], r["dest_port"])
            assert r["community_id"] == cid
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert set(r["probabilities"]) == set(CLASSES)
        non_benign = max(p for c, p in r["probabilities"].items() if c != "benign")
        assert r["score"] == pytest.approx(non_benign, abs=1e-6)
        assert _iso(r["start"]) <= _iso(r["end"])
        alert = r["event_type"] == "alert"
        assert alert == (r["label"] != "benign")
        if alert:
            assert r["probabilities"][r["label"]] >= r["threshold"]
            assert r["reasons"] and len(r["reasons"]) == len(r["reason_sources"])
            assert 1 <= r["verdict_pkts"] <= r["pkts_toserver"] + r["pkts_toclient"]
            assert 0 <= r["verdict_client_payload_pkts"] <= r["verdict_pkts"]
            assert _iso(r["start"]) <= _iso(r["verdict_time"]) <= _iso(r["end"])
            assert r["timestamp"] == r["verdict_time"]
            assert r["drivers_method"] == "contribution" and r["drivers"]
            weights = [d["weight"] for d in r["drivers"]]
            assert weights == sorted(weights, reverse=True)
        else:
            assert r["verdict_pkts"] is None and r["threshold"] is None
            assert r["timestamp"] == r["end"] and r["reasons"] == []


def test_alert_reasons_name_the_evidence_and_the_server(corpus):
    rc, recs, _ = _jsonl([corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng"], all_flows=False)
    assert rc == 1 and len(recs) == 1
    r = recs[0]
    server = f"{r['dest_ip']}:{r['dest_port']}"
    assert r["label"] == "mining" and r["app_proto"] == "stratum"
    subscribe = [x for x in r["reasons"] if "mining.subscribe" in x]
    assert subscribe and subscribe[0].startswith("client sent") and subscribe[0].endswith(server)
    assert "signature:stratum" in r["reason_sources"]
    assert any(s.startswith("flow:") for s in r["reason_sources"])


def test_fields_doc_is_generated_from_code():
    doc = (REPO / "docs" / "alerts.md").read_text()
    assert fields_markdown() in doc, "docs/alerts.md is stale: run `flowdet score --fields`"
    assert len(ALERT_FIELDS) == len(set(ALERT_FIELD_NAMES))


# -- other formats ------------------------------------------------------------------------


def _run(fmt, sources, detector=FakeDetector, all_flows=False, **opts):
    out, err = io.StringIO(), io.StringIO()
    rc = run_score(
        [str(s) for s in sources],
        None,
        ScoreOptions(all_flows=all_flows, **opts),
        fmt,
        out,
        loader=lambda _p: detector(),
        featurize=fake_featurize,
        err=err,
    )
    return rc, out.getvalue(), err.getvalue()


def test_csv_has_flat_columns_and_the_same_rows_as_jsonl(corpus):
    srcs = sorted((corpus / "mining-real").glob("*.pcapng"))
    rc, text, _ = _run("csv", srcs, all_flows=True)
    _, recs, _ = _jsonl(srcs)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rc == 1 and len(rows) == len(recs)
    cols = list(rows[0])
    assert cols[: len(ALERT_FIELDS) - 3] == [f.name for f in ALERT_FIELDS if f.csv]
    assert cols[-3:] == [f"p_{c}" for c in CLASSES]
    for row, rec in zip(rows, recs, strict=True):
        assert row["community_id"] == rec["community_id"]
        assert float(row["p_mining"]) == pytest.approx(rec["probabilities"]["mining"])
        assert row["reasons"] == " | ".join(rec["reasons"])
        assert row["threshold"] == ("" if rec["threshold"] is None else str(rec["threshold"]))


def test_table_is_sorted_by_score_and_shows_reasons(corpus):
    srcs = sorted((corpus / "mining-real").glob("*.pcapng"))
    rc, text, err = _run("table", srcs)
    _, recs, _ = _jsonl(srcs, all_flows=False)
    assert rc == 1
    heads = [line for line in text.splitlines() if line.startswith("[")]
    assert len(heads) == len(recs)
    scores = [float(h.split("score ")[1].split()[0]) for h in heads]
    assert scores == sorted(scores, reverse=True)
    for rec in recs:
        assert rec["community_id"] in text
    reasons = [line for line in text.splitlines() if line.startswith("    - ")]
    assert len(reasons) == sum(len(r["reasons"]) for r in recs)
    assert "flowdet score:" in err and "alerts: mining" in err
    assert "flowdet score:" not in text  # summary on stderr only


# -- exit codes ---------------------------------------------------------------------------


def test_exit_codes(corpus, tmp_path):
    path = corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng"
    rc, text, err = _run("jsonl", [path], detector=lambda: ConstantDetector([0.9, 0.06, 0.04]))
    assert (rc, text) == (0, "") and "no alerts" in err
    rc, text, _ = _run("jsonl", [path], detector=lambda: ConstantDetector([0.1, 0.8, 0.1]))
    assert rc == 1 and len(text.splitlines()) == 1
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture\n" * 10)
    with pytest.raises(CaptureError):  # one capture: the CLI prints one line, exit 2
        _run("jsonl", [junk])
    # several captures: the unreadable one is reported, the others scored, exit 2
    rc, text, err = _run("jsonl", [junk, path], detector=lambda: ConstantDetector([0, 1, 0]))
    assert rc == 2 and len(text.splitlines()) == 1
    assert "junk.pcap" in err and "(1 unreadable)" in err


def test_unknown_threshold_label_is_an_error(corpus):
    path = corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng"
    with pytest.raises(FlowdetError, match="unknown label 'minig'"):
        run_score(
            [str(path)],
            None,
            ScoreOptions(),
            "jsonl",
            io.StringIO(),
            loader=fake_loader,
            featurize=fake_featurize,
            threshold_specs=["minig=0.5"],
        )


def test_threshold_override_changes_verdicts(corpus):
    path = corpus / "mining-real" / "xmr-eu1.nanopool.org.pcapng"
    det = lambda: ConstantDetector([0.3, 0.6, 0.1])  # noqa: E731
    out, err = io.StringIO(), io.StringIO()
    opts = ScoreOptions()
    args = ([str(path)], None, opts, "jsonl", out)
    assert run_score(*args, loader=lambda _p: det(), featurize=fake_featurize, err=err) == 1
    out2 = io.StringIO()
    rc = run_score(
        [str(path)],
        None,
        ScoreOptions(),
        "jsonl",
        out2,
        loader=lambda _p: det(),
        featurize=fake_featurize,
        threshold_specs=["mining=0.7"],
        err=err,
    )
    assert rc == 0 and out2.getvalue() == ""


# -- parallel jobs and per-alert captures -------------------------------------------------


def test_jobs_give_the_same_output_in_input_order(corpus):
    srcs = sorted((corpus / "mining-real").glob("*.pcapng"))
    _, serial, _ = _jsonl(srcs, detector=FakeDetector, jobs=1)
    _, parallel, _ = _jsonl(srcs, detector=FakeDetector, jobs=2)
    assert parallel == serial
    assert [r["pcap_filename"] for r in parallel] == sorted(
        (r["pcap_filename"] for r in parallel), key=[s.name for s in srcs].index
    )


def _tshark_rows(tshark, path):
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [tuple(line.split("\t")) for line in out.splitlines()]


def test_alert_pcaps_hold_exactly_the_flows_packets(corpus, tshark, tmp_path):
    srcs = [
        corpus / "mining-real" / "zec-eu.suprnova.cc.pcapng",
        corpus / "mining-real" / "cgminer.s2.pcapng",
    ]
    res = [
        score_capture(
            str(s), FakeDetector(), ScoreOptions(alert_pcap=str(tmp_path)), fake_featurize
        )
        for s in srcs
    ]
    extracted = [e for r in res for e in r.extracted]
    alerts = [v for r in res for v in r.verdicts if v.is_alert]
    assert len(extracted) == len(alerts) >= 5
    assert len({e.path for e in extracted}) == len(extracted)  # one file per alert
    for n, e in enumerate(extracted):
        rec = e.verdict.record
        name = Path(e.path).name
        cid = rec.community_id.removeprefix("1:").replace("/", "_").replace("+", "-")
        assert cid.rstrip("=") in name and e.verdict.label in name
        want = rec.pkts_toserver + rec.pkts_toclient
        with open_capture(e.path) as reader:
            assert sum(len(b) for b in reader) == want == e.packets
        if n % 8:
            continue  # tshark on a sample of the files keeps the test fast
        rows = _tshark_rows(tshark, e.path)  # Wireshark reads our pcapng
        assert len(rows) == want
        ends = {(rec.src_ip, str(rec.src_port)), (rec.dest_ip, str(rec.dest_port))}
        for src, sport, dst, dport in rows:
            assert {(src, sport), (dst, dport)} == ends


# -- drivers ------------------------------------------------------------------------------


def _synthetic(n=400, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[rng.random((n, 6)) < 0.05] = np.nan  # missing values take the trees' NaN branches
    y = np.where(np.nan_to_num(X[:, 0]) > 0.5, 1, np.where(np.nan_to_num(X[:, 1]) < -0.5, 2, 0))
    return X, np.array(CLASSES)[y]


class _Wrap:
    classes = CLASSES
    feature_names = tuple(f"f{i}" for i in range(6))

    def __init__(self, est):
        self.estimator = est
        self.card: dict = {}


def test_boosting_contributions_add_up_to_the_raw_scores():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from flowdet.drivers import DriverExplainer

    X, y = _synthetic()
    est = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    ex = DriverExplainer(_Wrap(est))
    assert ex.method == "contribution"
    c = ex.contributions(X[:50])
    raw = est.decision_function(X[:50])  # (n, classes): baseline + sum of tree values
    base = np.asarray(est._baseline_prediction).ravel()
    assert c.sum(axis=1) == pytest.approx(raw - base, abs=1e-6)
    # the driver list ranks the features by their push towards the row's label
    drivers = ex.drivers(X[:50], list(est.predict(X[:50])))
    firsts = Counter(d[0][0] for d in drivers if d)
    assert firsts.most_common(1)[0][0] in ("f0", "f1")  # the label's defining features


def test_forest_contributions_add_up_to_the_probabilities():
    from sklearn.ensemble import RandomForestClassifier

    from flowdet.drivers import DriverExplainer

    X, y = _synthetic()
    est = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    ex = DriverExplainer(_Wrap(est))
    c = ex.contributions(X[:50])
    prior = np.mean(
        [t.tree_.value[0, 0] / t.tree_.value[0, 0].sum() for t in est.estimators_], axis=0
    )
    assert c.sum(axis=1) + prior == pytest.approx(est.predict_proba(X[:50]), abs=1e-6)


def test_no_tree_model_means_no_contributions():
    from flowdet.drivers import DriverExplainer

    det = ConstantDetector([1, 0, 0])
    ex = DriverExplainer(det)
    assert ex.method == "none" and ex.drivers(np.zeros((2, 3)), ["mining", "mining"]) == [[], []]
    det.card = {"feature_stats": {"benign": {"a": {"q25": 0, "q50": 1, "q75": 2}}}}
    det.feature_names = ("a", "b", "c")
    ex = DriverExplainer(det)
    assert ex.method == "atypicality"
    got = ex.drivers(np.array([[9.0, 0, 0]]), ["mining"])
    assert got == [[("a", 9.0, 4.0)]]  # |9 - 1| / (2 - 0)


# -- held checkpoints and the domain gate -------------------------------------------------


def test_held_checkpoints_give_the_same_first_verdicts(corpus):
    """Offline, checkpoint records are scored only for flows that end alerted; the first
    verdict found that way equals the one of scoring every record as it comes (live mode),
    also when the held rows overflow their bound and are scored early."""
    path = corpus / "mining-real" / "cgminer.s0.pcapng"
    det = FakeDetector()
    eager, _ = _score(path, detector=det, early=True, all_flows=True)
    eager = [v for v in eager if v.final]
    held, pipe = _score(path, batch_packets=64, detector=det, all_flows=True)
    tiny, pipe2 = _score(path, batch_packets=64, detector=det, all_flows=True, max_pending=3)
    key = sorted(_verdict_key(v) for v in eager)
    assert sorted(_verdict_key(v) for v in held) == key
    assert sorted(_verdict_key(v) for v in tiny) == key
    assert sum(v.first_checkpoint.startswith(("pkts:", "secs:")) for v in held) >= 3
    assert pipe.stats.featurized < pipe2.stats.featurized  # holding saved model calls
    assert pipe._n_pending == 0 and pipe.live_state == 0


def test_domain_gate_on_columns_agrees_with_the_model(corpus):
    """Rows the pipeline skips by its column check are rows the shipped model answers
    'benign, certainly' after featurizing them (the model's gate may exclude more, e.g.
    plaintext without mining evidence: those are still given to the model)."""
    from flowdet.model import DEFAULT_MODEL_PATH, Detector, gated

    if not Path(DEFAULT_MODEL_PATH).is_file():
        pytest.skip(f"default model {DEFAULT_MODEL_PATH} not built yet (flowdet train)")
    from flowdet.features import featurize
    from flowdet.flows import FlowConfig, iter_flow_blocks

    det = Detector.load()
    pipe = ScoringPipeline(det)
    assert pipe.domain_gate
    names = ("dns-caa.pcap", "ssh__single-conn.pcap", "http__get.pcap", "ftp__ipv6.pcap")
    srcs = [corpus / "zeek-traces" / n for n in names if (corpus / "zeek-traces" / n).exists()]
    srcs.append(corpus / "mining-real" / "cgminer.s2.pcapng")
    benign = det.classes.index("benign")
    n_out = n_in = 0
    for _, blk in iter_flow_blocks(srcs, FlowConfig().with_default_checkpoints()):
        X, _ = featurize(blk.records())
        X = np.asarray(X)
        out = ~pipe.in_domain(blk)
        assert gated(X)[out].all()
        P = det.predict_proba(X)[out]
        assert np.delete(P, benign, axis=1).max(initial=0.0) == 0.0  # no alert class left
        assert P[:, benign] == pytest.approx(1.0)
        n_out += int(out.sum())
        n_in += int((~out).sum())
    assert n_out > 0 and n_in > 0


def test_alert_made_by_a_model_rule_says_so(corpus):
    """A detector whose rule lifts a probability over the threshold (the shipped model's
    evidence floor does) where its trees alone would not: the first reason says so."""

    class Floor(FakeDetector):
        def predict_proba(self, X):
            P = super().predict_proba(X)
            P[:, 1] = np.maximum(P[:, 1], 0.96)
            return P / P.sum(axis=1, keepdims=True)

    det = Floor()
    path = corpus / "mining-real" / "cgminer.s2.pcapng"
    verdicts, _ = _score(path, detector=det)
    by_rule = [v for v in verdicts if v.reasons and v.reasons[0].source == "model:rule"]
    assert by_rule and len(by_rule) < len(verdicts)  # stratum flows: the trees agree
    for v in by_rule:
        assert v.reasons[0].text.startswith("decided by the model's rule")
        assert f"P(mining) {v.proba['mining']:.2f}" in v.reasons[0].text
