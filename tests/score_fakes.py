"""A small stand-in for flowdet.features / flowdet.model in the scoring tests.

The featurizer is real (signature features from flowdet.signatures plus a few flow
statistics); the detector is a real scikit-learn RandomForest, fitted on synthetic rows
labelled by simple rules (mining protocol evidence -> mining; SSH whose bare ACKs come from
the server side -> ssh-tunnel). So the verdict, reason and driver code runs against a real
tree ensemble, without waiting for the trained default model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flowdet.flows.record import FlowRecord
from flowdet.signatures import SIGNATURE_FEATURES, SignatureResult, inspect

FLOW_FEATURES = ("duration", "piat_mean_toclient", "bare_ack_share_toclient", "pkts")
FEATURES = SIGNATURE_FEATURES + FLOW_FEATURES
_MINING_COLS = [
    SIGNATURE_FEATURES.index(n)
    for n in ("sig_stratum_client_method", "sig_monero_login", "sig_monero_job", "sig_eth_work")
]
_SSH = SIGNATURE_FEATURES.index("sig_ssh_banner")
_ACK = len(SIGNATURE_FEATURES) + 2


def fake_featurize(records: Sequence[FlowRecord]) -> tuple[np.ndarray, list[SignatureResult]]:
    X = np.zeros((len(records), len(FEATURES)), dtype=np.float64)
    sigs = []
    k = len(SIGNATURE_FEATURES)
    for i, r in enumerate(records):
        sig = inspect(r.payload_toserver, r.payload_toclient)
        sigs.append(sig)
        X[i, :k] = sig.features
        acks = r.bare_acks_toserver + r.bare_acks_toclient
        X[i, k:] = (
            r.duration,
            r.piat_mean_toclient,
            r.bare_acks_toclient / acks if acks else 0.0,
            r.pkts_toserver + r.pkts_toclient,
        )
    return X, sigs


def _rule(X: np.ndarray) -> np.ndarray:
    mining = (X[:, _MINING_COLS] > 0).any(axis=1)
    tunnel = (X[:, _SSH] > 0) & (X[:, _ACK] > 0.7)
    return np.where(mining, 1, np.where(tunnel, 2, 0))


class FakeDetector:
    """The Detector interface the scoring code relies on, backed by a fitted forest."""

    classes = ("benign", "mining", "ssh-tunnel")
    feature_names = FEATURES

    def __init__(self, thresholds: dict[str, float] | None = None) -> None:
        from sklearn.ensemble import RandomForestClassifier

        rng = np.random.default_rng(7)
        n = 600
        X = rng.random((n, len(FEATURES)))
        X[:, : len(SIGNATURE_FEATURES)] = rng.random((n, len(SIGNATURE_FEATURES))) < 0.08
        X[: n // 4, _SSH] = 1.0
        X[: n // 8, _ACK] = 0.9
        y = _rule(X)
        self.estimator = RandomForestClassifier(n_estimators=15, random_state=0).fit(
            X, np.array(self.classes)[y]
        )
        self.thresholds = thresholds or {"mining": 0.5, "ssh-tunnel": 0.5}
        self.card = {"name": "fake-forest", "version": "test"}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        P = self.estimator.predict_proba(np.asarray(X, dtype=np.float64))
        order = [list(self.estimator.classes_).index(c) for c in self.classes]
        return P[:, order]


def fake_loader(path: str | None = None) -> FakeDetector:
    return FakeDetector()


class ConstantDetector:
    """Every record gets the same probabilities (for threshold and exit-code tests)."""

    classes = ("benign", "mining", "ssh-tunnel")
    feature_names = FEATURES

    def __init__(self, proba: Sequence[float]) -> None:
        self.proba = np.asarray(proba, dtype=np.float64)
        self.thresholds = {"mining": 0.5, "ssh-tunnel": 0.5}
        self.card = {"name": "constant"}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.tile(self.proba, (len(X), 1))
