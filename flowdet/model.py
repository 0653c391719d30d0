"""The fitted detector: boosted trees, its feature list, thresholds and model card.

A model file is a joblib bundle (format 2: the trees as plain arrays, see flowdet.forest,
+ the card); the same card is written beside it as `<name>.card.json` so a person can read
what a model was trained on without unpickling it. Format 2 holds only plain Python values,
written as joblib writes a zlib-compressed pickle of them (`joblib.load` reads it), and
read here with zlib and a pickle reader that refuses any class, so loading the model needs
neither scikit-learn nor joblib; other files (an older format, a foreign or hand-made one)
go through joblib.load as before, and are refused after reading if they are not format 2.
scikit-learn is imported by `flowdet train`, never by `flowdet score`. A Detector built in
memory around a fitted scikit-learn HistGradientBoostingClassifier works as well; `save`
exports its trees and refuses to write them unless they reproduce the estimator's
probabilities.

`Detector.load` refuses, with a one-line `ModelError`, a file that is missing, corrupt, of
another bundle format, or whose feature list differs from `flowdet.features.FEATURE_NAMES`
(a column that changed meaning would silently give wrong verdicts).

Decision rule (shared with flowdet.score through `Detector.decide`): a flow gets the
non-benign class with the highest probability among those at or above their threshold
(`card["thresholds"]`), otherwise `benign`.

Domain gate (`gate_masks`): the model is only asked where its classes are possible, so a
tree model never extrapolates to traffic it has not seen (ICMP, LDAP, SMB ... are absent
from the lab). A class's probability moves to benign when:
- mining: the flow is not TCP or has no payload yet, or its payload is in clear text (no
  TLS/SSH/SOCKS/CONNECT, not random-looking) and no signature found a mining protocol
  message in it: plaintext mining protocols are parsed by the signatures, so a plaintext
  flow without that evidence is not mining (nDPI and the ET rules rely on the same fact);
- ssh-tunnel: not TCP, no payload, or neither an SSH banner nor a random-looking stream.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowdet.errors import ModelError
from flowdet.features import FEATURE_NAMES
from flowdet.forest import Forest, check_export, probe_rows

# 1: a pickled scikit-learn estimator; 2: the trees as arrays (flowdet.forest)
BUNDLE_FORMAT = 2
# Largest |P(export) - P(estimator)| accepted when the trees are exported (measured: 0).
EXPORT_TOLERANCE = 1e-6
CLASSES: tuple[str, ...] = ("benign", "mining", "ssh-tunnel")
BENIGN = "benign"
DEFAULT_THRESHOLDS: dict[str, float] = {"mining": 0.5, "ssh-tunnel": 0.5}

# The shipped model lives inside the package, so editable installs and wheels find it alike.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "default.joblib"


def card_path(path: str | os.PathLike[str]) -> Path:
    """models/NAME.joblib -> models/NAME.card.json."""
    p = Path(path)
    stem = p.name[: -len(".joblib")] if p.name.endswith(".joblib") else p.name
    return p.with_name(stem + ".card.json")


@dataclass
class Detector:
    """A fitted model bundle: `predict_proba` columns follow `classes`.

    `estimator` is a flowdet.forest.Forest (what `load` gives) or, before `save`, a fitted
    scikit-learn HistGradientBoostingClassifier."""

    estimator: Any
    classes: tuple[str, ...]
    feature_names: tuple[str, ...] = FEATURE_NAMES
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-class probability thresholds of the decision rule (non-benign classes)."""
        th = dict(DEFAULT_THRESHOLDS)
        th.update({k: float(v) for k, v in self.card.get("thresholds", {}).items()})
        return {k: v for k, v in th.items() if k in self.classes and k != BENIGN}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, one column per `classes` entry (order fixed by the bundle)."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ModelError(
                f"feature matrix has shape {X.shape}, the model expects "
                f"{len(self.feature_names)} columns"
            )
        if X.shape[0] == 0:
            return np.zeros((0, len(self.classes)))
        # Rows where the gate rules out every alert class are benign whatever the trees say:
        # skip them (on the 1M-packet mix most flows are; predict CPU 3.6 s -> see docs).
        out = np.zeros((X.shape[0], len(self.classes)))
        if BENIGN in self.classes:
            ask = ~gated(X)
            out[~ask, self.classes.index(BENIGN)] = 1.0
        else:
            ask = np.ones(X.shape[0], bool)
        if ask.any():
            proba = _estimator_proba(self.estimator, X[ask])
            for j, c in enumerate(self.estimator.classes_):
                out[ask, self.classes.index(str(c))] = proba[:, j]
        return apply_gate(X, out, self.classes)

    @property
    def gate_features(self) -> tuple[str, ...]:
        """The feature columns `undecided` reads (the domain gate, the evidence floor)."""
        return GATE_FEATURES

    def undecided(self, X: np.ndarray) -> np.ndarray:
        """Rows whose probabilities need the trees: elsewhere the domain gate alone makes
        them P(benign) = 1, whatever the other columns hold (only `gate_features` are
        read), so a caller may leave those columns out for the other rows."""
        X = np.asarray(X)
        if BENIGN not in self.classes:
            return np.ones(X.shape[0], dtype=bool)
        return ~gated(X)

    def decide(
        self, proba: np.ndarray, thresholds: Mapping[str, float] | None = None
    ) -> np.ndarray:
        """Labels (array of str) from probabilities with the per-class thresholds."""
        th = dict(self.thresholds if thresholds is None else thresholds)
        return decide(proba, self.classes, th)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.decide(self.predict_proba(X))

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], check_rows: np.ndarray | None = None) -> None:
        """Write the bundle (zlib-compressed pickle of plain values, as joblib.dump with
        compress=3 writes it) and the JSON card beside it.

        A scikit-learn estimator is exported to a Forest first and checked against it on
        `check_rows` (e.g. the training rows) and on rows that take every split both ways
        (flowdet.forest.probe_rows); ModelError, and nothing written, if they differ."""
        if not isinstance(self.estimator, Forest):
            self.estimator, check = export_forest(self.estimator, check_rows)
            self.card = {**self.card, "predictor": check}
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        card = dict(self.card)
        card["format"] = BUNDLE_FORMAT
        card["classes"] = list(self.classes)
        card["feature_names"] = list(self.feature_names)
        card.setdefault("thresholds", self.thresholds)
        self.card = card
        bundle = {
            "format": BUNDLE_FORMAT,
            "forest": self.estimator.to_arrays(),
            "classes": list(self.classes),
            "feature_names": list(self.feature_names),
            "card": card,
        }
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(zlib.compress(pickle.dumps(bundle, protocol=4), 3))
        os.replace(tmp, p)
        card_path(p).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Detector:
        """Load a bundle (None: the shipped default model); ModelError if unusable."""
        p = Path(path) if path is not None else DEFAULT_MODEL_PATH
        if not p.is_file():
            what = "default model" if path is None else "model"
            raise ModelError(f"{what} {p} not found")
        try:
            bundle = _read_bundle(p)
        except Exception as exc:
            raise ModelError(
                f"{p}: not a readable flowdet model ({type(exc).__name__}: {_one_line(exc)})"
            ) from None
        if not isinstance(bundle, dict) or not ({"estimator", "forest"} & set(bundle)):
            raise ModelError(f"{p}: not a flowdet model bundle")
        if bundle.get("format") != BUNDLE_FORMAT:
            raise ModelError(
                f"{p}: model bundle format {bundle.get('format')!r}, this flowdet reads "
                f"format {BUNDLE_FORMAT}: retrain it with `flowdet train`"
            )
        names = tuple(bundle.get("feature_names") or ())
        if names != FEATURE_NAMES:
            diff = _feature_diff(names, FEATURE_NAMES)
            raise ModelError(
                f"{p}: the model's feature list does not match this flowdet ({diff}): "
                "retrain it with `flowdet train`"
            )
        classes = tuple(str(c) for c in bundle.get("classes") or ())
        try:
            forest = Forest.from_arrays(bundle.get("forest"))
        except ModelError as exc:
            raise ModelError(f"{p}: model bundle has no usable trees ({exc})") from None
        if not classes or set(forest.classes) - set(classes):
            raise ModelError(f"{p}: the trees' classes do not match the bundle's classes")
        if forest.n_features != len(names):
            raise ModelError(
                f"{p}: the trees read {forest.n_features} features, the bundle lists "
                f"{len(names)}: retrain it with `flowdet train`"
            )
        return cls(forest, classes, names, dict(bundle.get("card") or {}))


def export_forest(est: Any, check_rows: np.ndarray | None = None) -> tuple[Forest, dict[str, Any]]:
    """A fitted HistGradientBoostingClassifier's trees as a Forest, checked against the
    estimator on `check_rows` and on probe rows; also the card's "predictor" entry saying
    what was checked. ModelError if the export does not reproduce the estimator."""
    forest = Forest.from_hgb(est)
    probes = probe_rows(forest)
    rows = (
        probes
        if check_rows is None
        else np.concatenate([np.asarray(check_rows, dtype=np.float32), probes])
    )
    diff = check_export(forest, est, rows, EXPORT_TOLERANCE)
    return forest, {
        "kind": "flowdet.forest (trees exported from the estimator, no scikit-learn at scoring)",
        "trees": len(forest.roots),
        "nodes": len(forest.feature),
        "rows_checked": len(rows),
        "max_abs_diff": diff,
    }


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain Python values only: any class reference means "not ours"."""

    def find_class(self, module: str, name: str) -> Any:
        raise _NotPlain(f"{module}.{name}")


class _NotPlain(Exception):
    pass


def _read_bundle(p: Path) -> Any:
    """The unpickled bundle: plain values read with zlib + pickle (format 2), anything else
    (an older format, a foreign or hand-made file) with joblib."""
    raw = p.read_bytes()
    try:
        data = zlib.decompress(raw) if raw[:1] == b"\x78" else raw
        return _PlainUnpickler(io.BytesIO(data)).load()
    except Exception:  # not a plain pickle: let joblib read it (or say why it cannot)
        pass
    import joblib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's version warning: format checked after
        return joblib.load(p)


def _estimator_proba(est: Any, X: np.ndarray) -> np.ndarray:
    if isinstance(est, Forest):
        return est.predict_proba(X)
    with single_threaded():
        return est.predict_proba(X)


def _cols(*names: str) -> np.ndarray:
    return np.array([FEATURE_NAMES.index(n) for n in names], dtype=np.int64)


_GATE_COLS = _cols("is_tcp", "log_payload_pkts_toserver", "log_payload_pkts_toclient")
# Protocol-level mining evidence from the payload signatures.
_MINING_EVIDENCE = _cols(
    "sig_stratum_client_method",
    "sig_stratum_server_notify",
    "sig_stratum_subscribe_result",
    "sig_stratum_miner_agent",
    "sig_monero_login",
    "sig_monero_submit",
    "sig_monero_job",
    "sig_monero_miner_agent",
    "sig_getwork",
    "sig_getwork_mining_headers",
    "sig_eth_work",
    "sig_eth_proxy_tcp",
    "sig_eth_work_result",
    "sig_http_miner_agent",
    "sig_sv2_handshake_shape",
)
# The payload is hidden from the signatures: encrypted (TLS, SSH) or relayed (SOCKS, CONNECT).
_OPAQUE = _cols(
    "sig_tls_client_hello",
    "sig_tls_server_hello",
    "sig_ssh_banner",
    "sig_tunnel_socks",
    "sig_tunnel_http_connect",
)
_SSH = FEATURE_NAMES.index("sig_ssh_banner")
_ENTROPY = FEATURE_NAMES.index("sig_first_toserver_entropy")
_EARLY = _cols(*(f"early_size_{i}" for i in range(8)))


def _random_looking(X: np.ndarray) -> np.ndarray:
    """The initiator's first payload packet looks random: >= 85% of the entropy its length
    allows, and >= 16 bytes (an encrypted stream seen mid-flow, Stratum V2, obfuscation)."""
    early = X[:, _EARLY]
    pos = early > 0
    first = np.where(pos.any(axis=1), early[np.arange(len(X)), pos.argmax(axis=1)], 0.0)
    cap = np.log2(np.clip(first, 1.0, 256.0))
    return (first >= 16) & (X[:, _ENTROPY] >= 0.85 * cap)


def gate_masks(X: np.ndarray) -> dict[str, np.ndarray]:
    """Per class, the rows where that class is impossible (see the module doc)."""
    tcp, ps, pc = (X[:, i] for i in _GATE_COLS)
    outside = (tcp < 0.5) | ((ps <= 0) & (pc <= 0))
    evidence = (X[:, _MINING_EVIDENCE] > 0).any(axis=1)
    rnd = _random_looking(X)
    opaque = (X[:, _OPAQUE] > 0).any(axis=1) | rnd
    return {
        "mining": outside | ~(evidence | opaque),
        "ssh-tunnel": outside | ~((X[:, _SSH] > 0) | rnd),
    }


def gated(X: np.ndarray) -> np.ndarray:
    """Rows where no alert class is possible."""
    m = gate_masks(X)
    return m["mining"] & m["ssh-tunnel"]


# Parsed mining protocol messages (Evidence strength "message", not names or shapes).
_MINING_MESSAGES = _cols(
    "sig_stratum_client_method",
    "sig_stratum_server_notify",
    "sig_stratum_subscribe_result",
    "sig_monero_login",
    "sig_monero_submit",
    "sig_monero_job",
    "sig_getwork",
    "sig_eth_work",
    "sig_eth_work_result",
)
EVIDENCE_FLOOR = 0.95
GATE_FEATURES: tuple[str, ...] = tuple(
    FEATURE_NAMES[i]
    for i in sorted(
        {
            *_GATE_COLS.tolist(),
            *_MINING_EVIDENCE.tolist(),
            *_OPAQUE.tolist(),
            _SSH,
            _ENTROPY,
            *_EARLY.tolist(),
            *_MINING_MESSAGES.tolist(),
        }
    )
)


def apply_gate(X: np.ndarray, proba: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Probabilities with impossible classes set to 0 (their mass moved to benign), and the
    evidence floor: a flow in which the signatures parsed a mining protocol message gets
    P(mining) >= EVIDENCE_FLOOR, the other classes scaled down to make room.

    Why a floor: a parsed `mining.subscribe`, xmrig `login` or `eth_getWork` is proof a
    trained model may not have seen in that form (leave-one-capture-out on mining-real: the
    only Ethereum-getwork-over-HTTP capture is missed without it); none of the 4,400 benign
    lab and Zeek-corpus flows carries such a message.
    """
    if BENIGN not in classes:
        return proba
    proba = np.array(proba, dtype=np.float64, copy=True)
    if "mining" in classes:
        j = classes.index("mining")
        ev = (X[:, _MINING_MESSAGES] > 0).any(axis=1) & (proba[:, j] < EVIDENCE_FLOOR)
        if ev.any():
            rest = 1.0 - proba[ev, j]
            scale = np.where(rest > 0, (1.0 - EVIDENCE_FLOOR) / np.maximum(rest, 1e-12), 0.0)
            proba[ev] *= scale[:, None]
            proba[ev, j] = EVIDENCE_FLOOR
    b = classes.index(BENIGN)
    for c, mask in gate_masks(X).items():
        if c in classes and mask.any():
            j = classes.index(c)
            proba[mask, b] += proba[mask, j]
            proba[mask, j] = 0.0
    return proba


def single_threaded() -> Any:
    """Keep scikit-learn's OpenMP to one thread: on a busy 2-core machine its thread pool
    oversubscribes and a fit that takes seconds takes minutes (measured: 6 s vs 88 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def decide(
    proba: np.ndarray, classes: tuple[str, ...], thresholds: Mapping[str, float]
) -> np.ndarray:
    """The decision rule: best non-benign class at or above its threshold, else benign."""
    proba = np.asarray(proba, dtype=np.float64)
    n = proba.shape[0]
    score = np.full(n, -1.0)
    label = np.full(n, BENIGN if BENIGN in classes else classes[0], dtype=object)
    for j, c in enumerate(classes):
        if c == BENIGN:
            continue
        th = float(thresholds.get(c, 0.5))
        p = proba[:, j]
        better = (p >= th) & (p > score)
        label[better] = c
        score[better] = p[better]
    return label


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:160]


def _feature_diff(have: tuple[str, ...], want: tuple[str, ...]) -> str:
    missing = [n for n in want if n not in set(have)]
    extra = [n for n in have if n not in set(want)]
    if not missing and not extra:
        return "same names in another order"
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unknown, e.g. {extra[0]}")
    return "; ".join(parts)
