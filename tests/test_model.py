"""Model bundle: save/load round trip, refusal of unusable files, decision rule, CV grouping."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from flowdet.dataset import Dataset
from flowdet.errors import ModelError
from flowdet.features import FEATURE_NAMES
from flowdet.model import CLASSES, DEFAULT_MODEL_PATH, Detector, card_path, decide
from flowdet.training import class_metrics, cv_splits, fit_estimator


def _tiny_detector(seed: int = 0) -> tuple[Detector, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(90, len(FEATURE_NAMES))).astype(np.float32)
    y = np.array(CLASSES * 30, dtype=object)
    X[y == "mining", 5] += 5  # make the classes learnable
    X[y == "ssh-tunnel", 6] += 5
    # inside the detector's domain (TCP with payload, SSH: both alert classes possible),
    # see test_gate for the outside
    for i, name in enumerate(FEATURE_NAMES):
        if name.startswith(("sig_", "early_size_")):
            X[:, i] = 0.0
    for name in ("is_tcp", "log_payload_pkts_toserver", "log_payload_pkts_toclient"):
        X[:, FEATURE_NAMES.index(name)] = 1.0
    X[:, FEATURE_NAMES.index("sig_ssh_banner")] = 1.0
    est = fit_estimator(X, y, np.ones(len(y)), seed)
    card = {"thresholds": {"mining": 0.6, "ssh-tunnel": 0.7}, "note": "test"}
    return Detector(est, CLASSES, FEATURE_NAMES, card), X


def test_save_load_round_trip(tmp_path) -> None:
    det, X = _tiny_detector()
    path = tmp_path / "m.joblib"
    det.save(path)
    assert card_path(path) == tmp_path / "m.card.json"
    card = json.loads(card_path(path).read_text())
    assert card["feature_names"] == list(FEATURE_NAMES)
    assert card["classes"] == list(CLASSES)
    assert card["thresholds"] == {"mining": 0.6, "ssh-tunnel": 0.7}
    back = Detector.load(path)
    assert back.classes == CLASSES and back.feature_names == FEATURE_NAMES
    assert back.thresholds == {"mining": 0.6, "ssh-tunnel": 0.7}
    p1, p2 = det.predict_proba(X), back.predict_proba(X)
    assert p1.shape == (len(X), 3)
    assert np.allclose(p1, p2)
    assert np.allclose(p1.sum(axis=1), 1.0)
    # the classes are learnable: most rows get their own class
    pred = back.predict(X)
    truth = np.array(CLASSES * 30, dtype=object)
    assert (pred == truth).mean() > 0.9


def test_feature_list_mismatch_is_refused(tmp_path) -> None:
    det, _ = _tiny_detector()
    path = tmp_path / "m.joblib"
    det.save(path)
    bundle = joblib.load(path)
    bundle["feature_names"] = [*bundle["feature_names"][:-1], "a_feature_from_the_future"]
    joblib.dump(bundle, path)
    with pytest.raises(ModelError, match="feature list does not match"):
        Detector.load(path)
    bundle["feature_names"] = list(reversed(FEATURE_NAMES))
    joblib.dump(bundle, path)
    with pytest.raises(ModelError, match="another order"):
        Detector.load(path)


def test_missing_corrupt_and_foreign_files_are_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        Detector.load(tmp_path / "nope.joblib")
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"this is not a pickle at all\n" * 10)
    with pytest.raises(ModelError, match="not a readable flowdet model") as exc:
        Detector.load(bad)
    assert "\n" not in str(exc.value)
    foreign = tmp_path / "foreign.joblib"
    joblib.dump({"weights": [1, 2, 3]}, foreign)
    with pytest.raises(ModelError, match="not a flowdet model bundle"):
        Detector.load(foreign)
    det, _ = _tiny_detector()
    old = tmp_path / "old.joblib"
    det.save(old)
    bundle = joblib.load(old)
    bundle["format"] = 0
    joblib.dump(bundle, old)
    with pytest.raises(ModelError, match="format"):
        Detector.load(old)


def test_shipped_default_model_loads() -> None:
    assert DEFAULT_MODEL_PATH.is_file(), "the default model ships inside the package"
    det = Detector.load()
    assert det.feature_names == FEATURE_NAMES
    assert set(det.classes) == set(CLASSES)
    assert set(det.thresholds) == {"mining", "ssh-tunnel"}
    assert card_path(DEFAULT_MODEL_PATH).is_file()
    card = json.loads(card_path(DEFAULT_MODEL_PATH).read_text())
    assert card["feature_names"] == list(FEATURE_NAMES)
    assert card["data"]["flows"] > 0 and "metrics" in card


def test_gate_moves_impossible_classes_to_benign() -> None:
    det, X = _tiny_detector()
    pred = det.predict(X)
    mining_rows = np.flatnonzero(pred == "mining")[:4]
    tunnel_row = np.flatnonzero(pred == "ssh-tunnel")[0]
    assert len(mining_rows) == 4
    Xg = X[[*mining_rows, tunnel_row]].copy()
    col = FEATURE_NAMES.index
    Xg[0, col("is_tcp")] = 0.0  # e.g. UDP
    Xg[1, col("log_payload_pkts_toserver")] = 0.0  # no payload yet
    Xg[1, col("log_payload_pkts_toclient")] = 0.0
    Xg[2, col("sig_ssh_banner")] = 0.0  # clear text, no mining message seen
    Xg[3, col("sig_ssh_banner")] = 0.0  # clear text, but a stratum message seen
    Xg[3, col("sig_stratum_client_method")] = 1.0
    Xg[4, col("sig_ssh_banner")] = 0.0  # a "tunnel" that is not SSH
    Xg[4, col("sig_tls_client_hello")] = 1.0
    p_before = det.estimator.predict_proba(Xg)
    p = det.predict_proba(Xg)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(p[:3, 1], 0.0) and np.allclose(p[:2, 2], 0.0)
    assert p[3, 1] == pytest.approx(p_before[3, 1])  # evidence: mining stays possible
    assert p[4, 2] == 0.0 and p[4, 0] == pytest.approx(p_before[4, 0] + p_before[4, 2])


def test_decision_rule() -> None:
    proba = np.array(
        [
            [0.5, 0.3, 0.2],  # nothing over threshold -> benign
            [0.2, 0.45, 0.35],  # mining over 0.4
            [0.1, 0.45, 0.45],  # both over: the higher wins (tie -> first listed)
            [0.05, 0.41, 0.54],  # both over: ssh-tunnel higher
            [0.7, 0.0, 0.3],  # ssh-tunnel exactly at its threshold
        ]
    )
    got = decide(proba, CLASSES, {"mining": 0.4, "ssh-tunnel": 0.3}).tolist()
    assert got == ["benign", "mining", "mining", "ssh-tunnel", "ssh-tunnel"]


def test_class_metrics_against_hand_count() -> None:
    y = np.array(["benign"] * 6 + ["mining"] * 3 + ["ssh-tunnel"], dtype=object)
    p = np.array(
        ["benign"] * 5 + ["mining"] + ["mining", "mining", "benign"] + ["ssh-tunnel"],
        dtype=object,
    )
    m = class_metrics(y, p)
    assert m["confusion"]["matrix"] == [[5, 1, 0], [1, 2, 0], [0, 0, 1]]
    mining = m["classes"]["mining"]
    assert mining["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert mining["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert mining["fpr"] == pytest.approx(1 / 7, abs=1e-4)
    assert m["classes"]["benign"]["fpr"] == pytest.approx(1 / 4, abs=1e-4)


def _synthetic_dataset(n_groups: int = 12, flows_per_group: int = 5) -> Dataset:
    rng = np.random.default_rng(3)
    flows, flow_idx = [], []
    for g in range(n_groups):
        label = CLASSES[g % 3]
        for _ in range(flows_per_group):
            k = len(flows)
            flows.append({"group": f"g{g}", "label": label, "scenario": f"g{g}"})
            flow_idx += [k] * int(rng.integers(1, 6))  # checkpoints + final
    flow = np.array(flow_idx)
    y = np.array([flows[k]["label"] for k in flow], dtype=object)
    n = len(flow)
    return Dataset(
        X=rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32),
        y=y,
        flow=flow,
        final=np.ones(n, bool),
        checkpoint=np.array([""] * n, dtype=object),
        client_payload_pkts=np.zeros(n, np.int64),
        elapsed=np.zeros(n),
        flows=flows,
    )


def test_cv_grouping_leaks_nothing() -> None:
    ds = _synthetic_dataset()
    splits = cv_splits(ds, 4, seed=7)
    assert len(splits) == 4
    seen_test = np.zeros(len(ds), int)
    groups = ds.groups
    for tr, te in splits:
        assert not set(groups[tr].tolist()) & set(groups[te].tolist())
        assert not set(ds.flow[tr].tolist()) & set(ds.flow[te].tolist())
        assert set(ds.y[te].tolist()) == set(CLASSES)  # stratified: each fold has each class
        seen_test[te] += 1
    assert (seen_test == 1).all()  # every row is tested exactly once


def test_weights_balance_flows_groups_and_classes() -> None:
    ds = _synthetic_dataset()
    ds.X[:, FEATURE_NAMES.index("sig_ssh_banner")] = 0.0  # no SSH: classes balanced alone
    ds.flows[0]["group"] = "solo"  # a group of one flow
    w = ds.weights()
    per_flow = np.bincount(ds.flow, weights=w)
    groups = np.array([f["group"] for f in ds.flows])
    # flows of one group weigh the same whatever their number of records
    for g in set(groups.tolist()):
        vals = per_flow[groups == g]
        assert np.allclose(vals, vals[0])
    # a flow of a 5-flow group weighs 1/sqrt(5) of the lone flow (same class)
    same = np.flatnonzero((ds.flow_labels == ds.flows[0]["label"]) & (groups == "g0"))
    assert per_flow[same[0]] == pytest.approx(per_flow[0] / np.sqrt(4), rel=1e-9)
    totals = [w[ds.y == c].sum() for c in CLASSES]
    assert np.allclose(totals, totals[0])


def test_benign_ssh_flows_weigh_at_least_a_share_of_the_tunnel_class() -> None:
    from flowdet.dataset import BENIGN_SSH_SHARE

    ds = _synthetic_dataset()
    banner = FEATURE_NAMES.index("sig_ssh_banner")
    ds.X[:, banner] = 0.0
    plain = ds.weights()
    benign_flows = np.flatnonzero(ds.flow_labels == "benign")
    ssh_flows = benign_flows[:2]  # two benign flows are SSH (their final record says so)
    last = np.array([np.flatnonzero(ds.flow == k)[-1] for k in ssh_flows])
    ds.X[last, banner] = 1.0
    w = ds.weights()
    ssh_rows = np.isin(ds.flow, ssh_flows)
    tunnel = w[ds.y == "ssh-tunnel"].sum()
    assert w[ssh_rows].sum() == pytest.approx(BENIGN_SSH_SHARE * tunnel, rel=1e-9)
    assert w[ssh_rows].sum() > plain[ssh_rows].sum()
    # within those flows the proportions stay; everything else is unchanged
    assert np.allclose(w[ssh_rows] / plain[ssh_rows], w[ssh_rows][0] / plain[ssh_rows][0])
    assert np.array_equal(w[~ssh_rows], plain[~ssh_rows])
    # already as heavy as the tunnel class (every benign flow is SSH): never lowered
    ds.X[np.isin(ds.flow, benign_flows), banner] = 1.0
    assert np.allclose(ds.weights(), plain, rtol=1e-12)


def test_short_tunnel_prefixes_are_not_fitted() -> None:
    from flowdet.training import TUNNEL_MIN_PKTS, fit_rows, fit_weights

    ds = _synthetic_dataset()
    n = len(ds)
    ds.final = np.arange(n) % 3 == 0
    pk = np.where(np.arange(n) % 2 == 0, 8, TUNNEL_MIN_PKTS)  # handshake-only vs longer
    ds.X[:, FEATURE_NAMES.index("log_pkts_toserver")] = np.log1p(pk / 2)
    ds.X[:, FEATURE_NAMES.index("log_pkts_toclient")] = np.log1p(pk / 2)
    ssh = np.arange(n) % 5 < 2
    ds.X[:, FEATURE_NAMES.index("sig_ssh_banner")] = ssh  # some flows' rows are SSH
    rows = fit_rows(ds)
    non_benign_ssh = (ds.y == "ssh-tunnel") | ((ds.y == "mining") & ssh)
    short_tunnel_ckpt = non_benign_ssh & ~ds.final & (pk < TUNNEL_MIN_PKTS)
    assert (short_tunnel_ckpt & (ds.y == "mining")).any()
    assert short_tunnel_ckpt.any()
    assert not rows[short_tunnel_ckpt].any()
    assert rows[~short_tunnel_ckpt].all()
    w = fit_weights(ds, rows)
    assert (w[~rows] == 0).all() and (w[rows] > 0).all()


def test_parsed_mining_message_sets_a_probability_floor() -> None:
    from flowdet.model import EVIDENCE_FLOOR, apply_gate

    X = np.zeros((2, len(FEATURE_NAMES)), np.float32)
    for name in ("is_tcp", "log_payload_pkts_toserver", "log_payload_pkts_toclient"):
        X[:, FEATURE_NAMES.index(name)] = 1.0
    X[0, FEATURE_NAMES.index("sig_eth_work")] = 1.0  # the client sent eth_getWork
    X[0, FEATURE_NAMES.index("sig_ssh_banner")] = 1.0  # (inside SSH: all classes possible)
    proba = np.array([[0.7, 0.1, 0.2], [0.7, 0.1, 0.2]])
    out = apply_gate(X, proba, CLASSES)
    assert out[0, 1] == pytest.approx(EVIDENCE_FLOOR)
    assert out[0].sum() == pytest.approx(1.0)
    assert out[0, 0] / out[0, 2] == pytest.approx(0.7 / 0.2)  # the others keep their ratio
    # row 1: clear text, no mining message: mining impossible, ssh-tunnel too (no SSH)
    assert out[1].tolist() == pytest.approx([1.0, 0.0, 0.0])
