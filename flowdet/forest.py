"""Gradient-boosted trees as plain numpy arrays, evaluated without scikit-learn.

Scoring a capture used to unpickle a scikit-learn HistGradientBoostingClassifier, and
importing scikit-learn (with scipy and pandas behind it) cost about a second of every
`flowdet score` run, more than the trees themselves on a 1M-packet capture. A fitted
model's trees are only arrays - per node: feature, threshold, where NaN goes, children,
leaf value - so `Forest.from_hgb` copies them out once (at `flowdet train` or when a model
is converted) and `Forest.predict_proba` walks them with a small compiled kernel.

The arithmetic is scikit-learn's, in the same order, so the probabilities are the same
numbers (tested to be bit-identical on random and real rows): float32 features compared
in float64 with `x <= threshold`, NaN routed by the node's `missing_go_to_left`, raw score
per class = baseline + leaf values summed tree by tree in fitting order, then softmax
(several classes: `exp(raw - max) / sum`) or the logistic function (two classes: one raw
score for the second class). Categorical splits are not supported: `from_hgb` refuses a
model that has any (flowdet's features are all numeric).

`to_arrays` / `from_arrays` give the dict of arrays a model bundle stores (format 2 in
flowdet.model), so loading a model needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from flowdet.errors import ModelError

KIND = "hist_gradient_boosting"
# The per-node fields of scikit-learn's predictor records that flowdet.drivers reads.
_NODE_DTYPE = np.dtype(
    [
        ("value", np.float64),
        ("feature_idx", np.int64),
        ("num_threshold", np.float64),
        ("missing_go_to_left", np.uint8),
        ("left", np.uint32),
        ("right", np.uint32),
        ("is_leaf", np.uint8),
        ("is_categorical", np.uint8),
    ]
)


@dataclass(frozen=True, slots=True)
class TreeNodes:
    """One tree's nodes as a structured array with scikit-learn's field names (children
    index into this tree), the shape flowdet.drivers walks for its contributions."""

    nodes: np.ndarray


@dataclass(eq=False)
class Forest:
    """Fitted boosted trees as flat arrays (all trees in one node table).

    Node arrays are indexed by global node id; `roots[t]` is tree t's root and
    `tree_class[t]` the raw-score column it adds to. Trees are in fitting order (iteration
    by iteration, one tree per raw-score column each), which fixes the order of the sums.
    """

    classes: tuple[str, ...]
    baseline: np.ndarray  # (n_raw,) float64: the raw score before any tree
    learning_rate: float
    roots: np.ndarray  # (n_trees,) int32
    tree_class: np.ndarray  # (n_trees,) int32
    feature: np.ndarray  # (n_nodes,) int32
    threshold: np.ndarray  # (n_nodes,) float64
    missing_left: np.ndarray  # (n_nodes,) bool
    left: np.ndarray  # (n_nodes,) int32, global ids; -1 at leaves
    right: np.ndarray  # (n_nodes,) int32
    is_leaf: np.ndarray  # (n_nodes,) bool
    value: np.ndarray  # (n_nodes,) float64: leaf values (learning rate included); split
    # nodes keep scikit-learn's value without it (only flowdet.drivers reads those)
    n_features: int

    def __post_init__(self) -> None:
        n_raw = 1 if len(self.classes) == 2 else len(self.classes)
        if len(self.classes) < 2 or self.baseline.shape != (n_raw,):
            raise ModelError(
                f"forest has {len(self.classes)} classes and {self.baseline.shape} baseline"
            )
        n = len(self.feature)
        for name in ("threshold", "missing_left", "left", "right", "is_leaf", "value"):
            if getattr(self, name).shape != (n,):
                raise ModelError(f"forest node array {name} does not have {n} entries")
        inner = ~self.is_leaf
        kids = np.concatenate([self.left[inner], self.right[inner]])
        if (
            len(self.roots) != len(self.tree_class)
            or (len(self.roots) and (self.roots.min() < 0 or self.roots.max() >= n))
            or (len(kids) and (kids.min() < 0 or kids.max() >= n))
            or (inner.any() and (self.feature[inner].min() < 0))
            or (inner.any() and self.feature[inner].max() >= self.n_features)
            or (
                len(self.tree_class)
                and not 0 <= self.tree_class.min() <= self.tree_class.max() < n_raw
            )
        ):
            raise ModelError("forest arrays are inconsistent (node or feature index out of range)")

    # -- the scikit-learn estimator interface flowdet uses ------------------------------------
    @property
    def classes_(self) -> np.ndarray:
        return np.array(self.classes, dtype=object)

    @property
    def n_trees_per_iteration_(self) -> int:
        return len(self.baseline)

    def raw_predict(self, X: np.ndarray) -> np.ndarray:
        """(rows, n_raw) raw scores, as HistGradientBoostingClassifier._raw_predict."""
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ModelError(
                f"feature matrix has shape {X.shape}, the forest expects {self.n_features} columns"
            )
        out = np.empty((X.shape[0], len(self.baseline)), dtype=np.float64)
        _raw_scores(
            np.ascontiguousarray(X),
            self.baseline,
            self.roots,
            self.tree_class,
            self.feature,
            self.threshold,
            self.missing_left,
            self.left,
            self.right,
            self.is_leaf,
            self.value,
            out,
        )
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in `classes` order (scikit-learn's arithmetic)."""
        raw = self.raw_predict(X)
        if len(self.classes) == 2:  # one raw score: P(classes[1]), scipy.special.expit
            r = raw[:, 0]
            e = np.exp(-np.abs(r))
            p1 = np.where(r >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            proba = np.empty((len(raw), 2))
            proba[:, 1] = p1
            proba[:, 0] = 1 - p1
            return proba
        raw -= raw.max(axis=1).reshape(-1, 1)
        np.exp(raw, out=raw)
        raw /= raw.sum(axis=1).reshape(-1, 1)
        return raw

    @property
    def predictors(self) -> list[list[TreeNodes]]:
        """Per iteration, one TreeNodes per raw-score column (scikit-learn's layout)."""
        k = len(self.baseline)
        trees = [self._tree_nodes(t) for t in range(len(self.roots))]
        return [trees[i : i + k] for i in range(0, len(trees), k)]

    # flowdet.drivers finds a HistGradientBoosting model by this scikit-learn attribute name
    _predictors = predictors

    def _tree_nodes(self, t: int) -> TreeNodes:
        start = int(self.roots[t])
        end = int(self.roots[t + 1]) if t + 1 < len(self.roots) else len(self.feature)
        sl = slice(start, end)
        nodes = np.zeros(end - start, dtype=_NODE_DTYPE)
        nodes["value"] = self.value[sl]
        nodes["feature_idx"] = self.feature[sl]
        nodes["num_threshold"] = self.threshold[sl]
        nodes["missing_go_to_left"] = self.missing_left[sl]
        leaf = self.is_leaf[sl]
        nodes["left"] = np.where(leaf, 0, self.left[sl] - start)
        nodes["right"] = np.where(leaf, 0, self.right[sl] - start)
        nodes["is_leaf"] = leaf
        return TreeNodes(nodes)

    # -- conversion and storage ---------------------------------------------------------------
    @classmethod
    def from_hgb(cls, est: Any) -> Forest:
        """Copy the trees out of a fitted HistGradientBoostingClassifier."""
        predictors = getattr(est, "_predictors", None)
        baseline = getattr(est, "_baseline_prediction", None)
        if type(est).__name__ != "HistGradientBoostingClassifier" or not predictors:
            raise ModelError(
                f"cannot export a {type(est).__name__}: not a fitted HistGradientBoostingClassifier"
            )
        baseline = np.asarray(baseline, dtype=np.float64).reshape(-1)
        classes = tuple(str(c) for c in est.classes_)
        trees = [tree for iteration in predictors for tree in iteration]
        if any(t.nodes["is_categorical"].any() for t in trees):
            raise ModelError("the model has categorical splits, which flowdet.forest does not read")
        roots, parts = [], []
        base = 0
        for tree in trees:
            roots.append(base)
            parts.append((tree.nodes, base))
            base += len(tree.nodes)
        allnodes = np.concatenate([n for n, _ in parts])
        offs = np.concatenate([np.full(len(n), b, dtype=np.int64) for n, b in parts])
        leaf = allnodes["is_leaf"].astype(bool)
        k = len(baseline)
        return cls(
            classes=classes,
            baseline=baseline,
            learning_rate=float(est.learning_rate),
            roots=np.asarray(roots, dtype=np.int32),
            tree_class=(np.arange(len(trees)) % k).astype(np.int32),
            feature=np.where(leaf, 0, allnodes["feature_idx"]).astype(np.int32),
            threshold=allnodes["num_threshold"].astype(np.float64),
            missing_left=allnodes["missing_go_to_left"].astype(bool),
            left=np.where(leaf, -1, allnodes["left"].astype(np.int64) + offs).astype(np.int32),
            right=np.where(leaf, -1, allnodes["right"].astype(np.int64) + offs).astype(np.int32),
            is_leaf=leaf,
            value=allnodes["value"].astype(np.float64),
            n_features=int(est.n_features_in_),
        )

    def to_arrays(self) -> dict[str, Any]:
        """The bundle's "forest" entry: plain Python values and numpy arrays only."""
        return {
            "kind": KIND,
            "classes": list(self.classes),
            "baseline": self.baseline,
            "learning_rate": self.learning_rate,
            "n_features": self.n_features,
            "roots": self.roots,
            "tree_class": self.tree_class,
            "feature": self.feature,
            "threshold": self.threshold,
            "missing_left": self.missing_left,
            "left": self.left,
            "right": self.right,
            "is_leaf": self.is_leaf,
            "value": self.value,
        }

    @classmethod
    def from_arrays(cls, d: Any) -> Forest:
        """Inverse of `to_arrays`; ModelError when an entry is missing or of the wrong kind."""
        if not isinstance(d, dict) or d.get("kind") != KIND:
            raise ModelError("the bundle's forest is missing or of an unknown kind")
        try:
            return cls(
                classes=tuple(str(c) for c in d["classes"]),
                baseline=np.asarray(d["baseline"], dtype=np.float64).reshape(-1),
                learning_rate=float(d["learning_rate"]),
                roots=np.asarray(d["roots"], dtype=np.int32),
                tree_class=np.asarray(d["tree_class"], dtype=np.int32),
                feature=np.asarray(d["feature"], dtype=np.int32),
                threshold=np.asarray(d["threshold"], dtype=np.float64),
                missing_left=np.asarray(d["missing_left"], dtype=bool),
                left=np.asarray(d["left"], dtype=np.int32),
                right=np.asarray(d["right"], dtype=np.int32),
                is_leaf=np.asarray(d["is_leaf"], dtype=bool),
                value=np.asarray(d["value"], dtype=np.float64),
                n_features=int(d["n_features"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"the bundle's forest is incomplete ({type(exc).__name__}: {exc})"
            ) from None


def probe_rows(forest: Forest, n_random: int = 256, seed: int = 0) -> np.ndarray:
    """Rows that take every split both ways and the NaN way: for each split node, copies of
    a base row with its feature at the threshold, just above it, and NaN; plus random rows
    drawn from the thresholds. Used to check an export against the estimator it came from
    when its training rows are not at hand."""
    rng = np.random.default_rng(seed)
    inner = np.flatnonzero(~forest.is_leaf)
    feats, thr = forest.feature[inner], forest.threshold[inner]
    per_feature = [thr[feats == f] for f in range(forest.n_features)]
    rand = np.zeros((n_random, forest.n_features), dtype=np.float32)
    for f, t in enumerate(per_feature):
        if len(t):
            rand[:, f] = rng.choice(t, n_random) + rng.choice([-1e-3, 0.0, 1e-3], n_random)
    rand[rng.random(rand.shape) < 0.05] = np.nan
    base = rand[rng.integers(0, n_random, len(inner))]
    rows = np.arange(len(inner))
    at, above, nan = base.copy(), base.copy(), base.copy()
    at[rows, feats] = thr.astype(np.float32)
    above[rows, feats] = np.nextafter(thr.astype(np.float32), np.float32(np.inf))
    nan[rows, feats] = np.nan
    return np.concatenate([rand, at, above, nan])


def check_export(forest: Forest, est: Any, X: np.ndarray, tol: float = 1e-6) -> float:
    """Max |P_forest - P_estimator| on X; ModelError if above `tol` (an export that does not
    reproduce the estimator must never be saved)."""
    X = np.asarray(X, dtype=np.float32)
    if not len(X):
        return 0.0
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        want = np.asarray(est.predict_proba(X), dtype=np.float64)
    got = forest.predict_proba(X)
    diff = float(np.max(np.abs(got - want))) if want.shape == got.shape else float("inf")
    if not diff <= tol:
        raise ModelError(
            f"the exported trees do not reproduce the estimator (max |dP| {diff:.3g} on "
            f"{len(X)} rows): model not saved"
        )
    return diff


@numba.njit(cache=True, nogil=True)
def _raw_scores(
    X,
    baseline,
    roots,
    tree_class,
    feature,
    threshold,
    missing_left,
    left,
    right,
    is_leaf,
    value,
    out,
):  # pragma: no cover - compiled
    """out[r, k] = baseline[k] + sum of the leaf values of class k's trees, in tree order.
    A Python or numpy loop over trees and depths is ~10x slower (measured: see
    docs/model.md); rows are independent, trees are walked one row at a time so each
    row's features stay in cache."""
    n_raw = baseline.shape[0]
    for r in range(X.shape[0]):
        for k in range(n_raw):
            out[r, k] = 0.0 + baseline[k]
        for t in range(roots.shape[0]):
            node = roots[t]
            while not is_leaf[node]:
                x = X[r, feature[node]]
                if np.isnan(x):
                    node = left[node] if missing_left[node] else right[node]
                elif x <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            out[r, tree_class[t]] += value[node]
