"""flowdet.forest: exported boosted trees give scikit-learn's probabilities without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from flowdet.errors import ModelError
from flowdet.forest import Forest, check_export, probe_rows

REPO = Path(__file__).resolve().parents[1]


def _fit(X: np.ndarray, y: np.ndarray, **kw: object):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    params = {"max_iter": 40, "max_leaf_nodes": 15, "random_state": 0, **kw}
    with threadpool_limits(limits=1, user_api="openmp"):
        return HistGradientBoostingClassifier(**params).fit(X, y)


def _sk_proba(est, X: np.ndarray) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return est.predict_proba(X)


def _random_data(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    if n_classes == 3:
        y[X[:, 2] > 0.8] = 2
    # missing values in training too, so splits learn to send NaN left for some nodes and
    # right for others
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:, 3] = np.round(X[:, 3])  # ties at thresholds
    return X, np.array(["benign", "mining", "ssh-tunnel"])[y]


@pytest.mark.parametrize("n_classes", [3, 2])
def test_random_data_same_probabilities_as_sklearn(n_classes: int) -> None:
    X, y = _random_data(600, n_classes, seed=n_classes)
    est = _fit(X, y)
    forest = Forest.from_hgb(est)
    assert forest.classes == tuple(est.classes_.tolist())
    assert forest.missing_left[~forest.is_leaf].any()
    assert not forest.missing_left[~forest.is_leaf].all()
    rng = np.random.default_rng(9)
    Xt = rng.normal(size=(500, 12)).astype(np.float32)
    Xt[rng.random(Xt.shape) < 0.2] = np.nan
    Xt[:, 3] = np.round(Xt[:, 3])
    for rows in (X, Xt, probe_rows(forest)):
        want, got = _sk_proba(est, rows), forest.predict_proba(rows)
        assert got.shape == want.shape
        if n_classes == 3:
            assert np.array_equal(got, want)  # same arithmetic in the same order
        else:
            assert np.abs(got - want).max() < 1e-12
    # float64 input walks the same way
    assert np.array_equal(forest.raw_predict(Xt.astype(np.float64)), forest.raw_predict(Xt))


def test_nan_follows_missing_go_to_left() -> None:
    X, y = _random_data(600, 3, seed=5)
    forest = Forest.from_hgb(_fit(X, y))
    inner = np.flatnonzero(~forest.is_leaf)
    root = int(forest.roots[0])
    assert root in inner
    row = np.zeros((1, X.shape[1]), np.float32)
    row[0, forest.feature[root]] = np.nan
    # flip where NaN goes at the first tree's root: that tree's leaf changes, so the raw
    # score moves unless both subtrees happen to give the same leaf value
    d = forest.to_arrays()
    d["missing_left"] = forest.missing_left.copy()  # numpy arrays are accepted too
    d["missing_left"][root] = not d["missing_left"][root]
    flipped = Forest.from_arrays(d)
    before, after = forest.raw_predict(row), flipped.raw_predict(row)
    assert not np.array_equal(before, after)
    row[0, forest.feature[root]] = 0.0  # no NaN left in the row: missing_left is not read
    assert np.array_equal(forest.raw_predict(row), flipped.raw_predict(row))


def test_real_features_same_probabilities(tmp_path) -> None:
    """Rows featurized from the shipped sample captures, through `train`, save and load."""
    from flowdet.dataset import build_dataset
    from flowdet.model import Detector
    from flowdet.training import fit_estimator, train

    ds = build_dataset([str(REPO / "pcaps")], progress=None)
    assert len(ds) > 50 and len(set(ds.y.tolist())) == 3
    est = fit_estimator(ds.X, ds.y, np.ones(len(ds)), seed=0)
    forest = Forest.from_hgb(est)
    assert np.array_equal(forest.predict_proba(ds.X), _sk_proba(est, ds.X))
    det, _ = train(ds, seed=0, n_splits=0, command="test")
    assert isinstance(det.estimator, Forest)
    assert det.card["predictor"]["max_abs_diff"] == 0.0
    assert det.card["predictor"]["rows_checked"] >= len(ds)
    path = tmp_path / "m.joblib"
    det.save(path)
    back = Detector.load(path)
    assert isinstance(back.estimator, Forest)
    assert np.array_equal(back.predict_proba(ds.X), det.predict_proba(ds.X))


def test_arrays_round_trip_and_bad_arrays_refused() -> None:
    X, y = _random_data(300, 3, seed=1)
    forest = Forest.from_hgb(_fit(X, y, max_iter=5))
    d = forest.to_arrays()
    back = Forest.from_arrays(d)
    assert np.array_equal(back.predict_proba(X), forest.predict_proba(X))
    with pytest.raises(ModelError, match="unknown kind"):
        Forest.from_arrays({**d, "kind": "random_forest"})
    with pytest.raises(ModelError, match="incomplete"):
        Forest.from_arrays({k: v for k, v in d.items() if k != "threshold"})
    assert all(
        isinstance(v, (str, int, float, list, dict)) for v in d.values()
    )  # plain values only: no class to unpickle
    bad_child = forest.left.copy()
    bad_child[np.flatnonzero(~forest.is_leaf)[0]] = len(bad_child) + 5
    with pytest.raises(ModelError, match="inconsistent"):
        Forest.from_arrays({**d, "left": bad_child})
    with pytest.raises(ModelError, match="inconsistent"):
        Forest.from_arrays({**d, "n_features": 2})
    with pytest.raises(ModelError, match="expects 12 columns"):
        forest.predict_proba(X[:, :5])


def test_export_check_catches_a_wrong_tree() -> None:
    X, y = _random_data(300, 3, seed=2)
    est = _fit(X, y, max_iter=10)
    forest = Forest.from_hgb(est)
    assert check_export(forest, est, X) == 0.0
    forest.value[forest.is_leaf] *= 1.01
    with pytest.raises(ModelError, match="do not reproduce"):
        check_export(forest, est, X)


def test_categorical_and_foreign_estimators_refused() -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 4, 200), rng.normal(size=200)]).astype(np.float32)
    y = np.where(X[:, 0] >= 2, "mining", "benign")
    est = _fit(X, y, max_iter=5, categorical_features=[0])
    with pytest.raises(ModelError, match="categorical"):
        Forest.from_hgb(est)
    with pytest.raises(ModelError, match="RandomForestClassifier"):
        Forest.from_hgb(RandomForestClassifier(n_estimators=2).fit(X, y))


def test_drivers_read_the_exported_trees() -> None:
    """flowdet.drivers explains a Forest exactly as the estimator it came from."""
    from flowdet.drivers import DriverExplainer

    X, y = _random_data(400, 3, seed=4)
    X = np.nan_to_num(X)
    est = _fit(X, y)

    class _Det:
        classes = ("benign", "mining", "ssh-tunnel")
        feature_names = tuple(f"f{i}" for i in range(X.shape[1]))
        card: ClassVar[dict] = {}

        def __init__(self, e: object) -> None:
            self.estimator = e

    a = DriverExplainer(_Det(est)).contributions(X[:50])
    b = DriverExplainer(_Det(Forest.from_hgb(est))).contributions(X[:50])
    assert a is not None and b is not None
    assert np.array_equal(a, b)


def test_loading_the_default_model_imports_no_sklearn() -> None:
    """Loading and running the model needs numpy (and joblib) only: no scikit-learn, scipy,
    pandas or numba start-up in `flowdet score`'s model stage."""
    code = (
        "import sys, numpy as np\n"
        "from flowdet.model import Detector\n"
        "from flowdet.features import FEATURE_NAMES\n"
        "d = Detector.load()\n"
        "d.predict_proba(np.ones((3, len(FEATURE_NAMES)), np.float32))\n"
        "heavy = ('sklearn', 'scipy', 'pandas', 'numba', 'joblib')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == ""


def test_format_1_bundle_is_refused_with_retrain(tmp_path) -> None:
    """A bundle of the former format (a pickled scikit-learn estimator) gets the one-line
    ModelError telling the user to retrain."""
    import joblib

    from flowdet.features import FEATURE_NAMES
    from flowdet.model import Detector

    X, y = _random_data(200, 3, seed=6)
    est = _fit(X, y, max_iter=3)
    old = tmp_path / "old.joblib"
    joblib.dump(
        {
            "format": 1,
            "estimator": est,
            "classes": ["benign", "mining", "ssh-tunnel"],
            "feature_names": list(FEATURE_NAMES),
            "card": {},
        },
        old,
    )
    with pytest.raises(ModelError, match=r"format 1, .* reads format 2: retrain it") as exc:
        Detector.load(old)
    assert "\n" not in str(exc.value)
