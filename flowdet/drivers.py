"""Drivers: which features pushed one flow towards its label, for choosing its reasons.

Two methods, the better one that the model allows:

- ``contribution`` (tree ensembles: RandomForest, ExtraTrees, a DecisionTree or a
  HistGradientBoosting classifier, alone or as the last step of a Pipeline): the Saabas
  decomposition. Walking a tree from the root to
  the flow's leaf, each split moves the class-probability estimate; the move is credited to
  the split's feature. Averaged over trees, the contributions plus the root prior sum
  exactly to the predicted probability, so they are an honest account of this prediction
  (though, unlike SHAP, they favour features split on near the root).
- ``atypicality`` (any model whose card stores benign training statistics per feature):
  how far the value lies from the benign median, in benign interquartile ranges (or
  standard deviations). It says what is unusual about the flow, not what the model used.

Neither: no drivers, and reasons fall back to a fixed per-label order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_ESTIMATOR_ATTRS = ("estimator", "model", "pipeline", "clf", "classifier", "_estimator", "_model")


def find_estimator(detector: Any) -> Any | None:
    """The scikit-learn estimator inside a Detector, whatever attribute holds it."""
    for attr in _ESTIMATOR_ATTRS:
        est = getattr(detector, attr, None)
        if est is not None and hasattr(est, "predict_proba"):
            return est
    return None


def _tree_parts(est: Any) -> tuple[list[Any], list[Any]]:
    """(transformers to apply first, fitted trees) or ([], []) when not a tree model."""
    pre: list[Any] = []
    if hasattr(est, "steps"):  # sklearn Pipeline
        pre = [step for _, step in est.steps[:-1] if step not in (None, "passthrough")]
        est = est.steps[-1][1]
    if hasattr(est, "tree_"):
        return pre, [est]
    trees = getattr(est, "estimators_", None)
    if trees is not None and len(trees) and all(hasattr(t, "tree_") for t in trees):
        return pre, list(trees)
    return [], []


def _final(est: Any) -> Any:
    return est.steps[-1][1] if hasattr(est, "steps") else est


def tree_contributions(est: Any, x: np.ndarray, class_index: int) -> np.ndarray | None:
    """Saabas contributions of each input feature to P(class) for one row, or None."""
    pre, trees = _tree_parts(est)
    if not trees:
        return None
    xt = np.asarray(x, dtype=np.float64).reshape(1, -1)
    for step in pre:
        xt = step.transform(xt)
    xt = np.asarray(xt, dtype=np.float32)
    n_features = xt.shape[1]
    if n_features != x.shape[-1]:
        return None  # a transformer changed the columns: contributions would not map back
    total = np.zeros(n_features)
    for tree in trees:
        t = tree.tree_
        value = t.value[:, 0, :] if t.value.ndim == 3 else t.value
        value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-12)
        if class_index >= value.shape[1]:
            return None
        node = 0
        left, right, feat, thr = t.children_left, t.children_right, t.feature, t.threshold
        while left[node] != -1:
            f = feat[node]
            child = left[node] if xt[0, f] <= thr[node] else right[node]
            total[f] += value[child, class_index] - value[node, class_index]
            node = child
    return total / len(trees)


def hgb_contributions(est: Any, x: np.ndarray, class_index: int) -> np.ndarray | None:
    """Saabas contributions for a HistGradientBoostingClassifier, in raw-score (log-odds)
    units, for one row; None if `est` is not one (or uses categorical splits).

    Each boosting iteration adds one tree per class to that class's raw score; walking the
    row's path, every split's change of node value is credited to the split's feature.
    sklearn stores leaf values already multiplied by the learning rate and split-node values
    without it, so split nodes are scaled here to keep the path differences consistent; the
    root value is 0 and the contributions sum to raw score - baseline. With several classes
    the contribution to class k is taken relative to the mean of the other classes (the
    softmax only sees differences of raw scores).
    """
    pre: list[Any] = []
    if hasattr(est, "steps"):
        pre = [step for _, step in est.steps[:-1] if step not in (None, "passthrough")]
        est = est.steps[-1][1]
    predictors = getattr(est, "_predictors", None)
    if not predictors:
        return None
    xt = np.asarray(x, dtype=np.float64).reshape(1, -1)
    for step in pre:
        xt = step.transform(xt)
    row = np.asarray(xt, dtype=np.float64).ravel()
    lr = float(getattr(est, "learning_rate", 1.0))
    n_cls = len(predictors[0])
    total = np.zeros((n_cls, row.shape[0]))
    for trees in predictors:
        for k, tree in enumerate(trees):
            nodes = tree.nodes
            if nodes["is_categorical"].any():
                return None
            value = np.where(nodes["is_leaf"] == 1, nodes["value"], nodes["value"] * lr)
            node = 0
            while not nodes["is_leaf"][node]:
                f = int(nodes["feature_idx"][node])
                v = row[f]
                if np.isnan(v):
                    go_left = bool(nodes["missing_go_to_left"][node])
                else:
                    go_left = v <= nodes["num_threshold"][node]
                child = int(nodes["left"][node] if go_left else nodes["right"][node])
                total[k, f] += value[child] - value[node]
                node = child
    if n_cls == 1:  # binary: one raw score, for the positive class (classes_[1])
        return total[0] if class_index == 1 else -total[0]
    if class_index >= n_cls:
        return None
    others = np.delete(total, class_index, axis=0).mean(axis=0)
    return total[class_index] - others


def _class_index(est: Any, classes: Sequence[str], label: str) -> int | None:
    est_classes = list(getattr(_final(est), "classes_", []))
    if label in est_classes:
        return est_classes.index(label)
    if label in classes and len(est_classes) == len(classes):
        return list(classes).index(label)  # integer-coded classes in the detector's order
    return None


def benign_stats(card: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Per-feature benign statistics from a model card, in the shapes we accept."""
    for holder in (card, card.get("training", {}) if isinstance(card, Mapping) else {}):
        if not isinstance(holder, Mapping):
            continue
        for key in ("feature_stats", "benign_stats", "feature_stats_benign"):
            stats = holder.get(key)
            if isinstance(stats, Mapping):
                inner = stats.get("benign", stats)
                if isinstance(inner, Mapping):
                    return inner
    return None


def _center_scale(st: Any) -> tuple[float, float] | None:
    if not isinstance(st, Mapping):
        return None
    if "q50" in st or "median" in st:
        c = float(st.get("q50", st.get("median")))
        if "q25" in st and "q75" in st:
            s = float(st["q75"]) - float(st["q25"])
        else:
            s = float(st.get("iqr", st.get("std", 0.0)))
    elif "mean" in st:
        c, s = float(st["mean"]), float(st.get("std", 0.0))
    else:
        return None
    return c, s


def atypicality(
    stats: Mapping[str, Any], names: Sequence[str], x: np.ndarray
) -> dict[str, float] | None:
    out: dict[str, float] = {}
    for name, v in zip(names, np.asarray(x, dtype=np.float64).ravel().tolist(), strict=True):
        cs = _center_scale(stats.get(name))
        if cs is None:
            continue
        c, s = cs
        scale = s if s > 0 else max(abs(c) * 0.1, 1e-9)
        out[name] = abs(v - c) / scale
    return out or None


def drivers_for(
    detector: Any, x: np.ndarray, label: str, top: int = 8
) -> tuple[str, list[tuple[str, float, float]]]:
    """(method, [(feature, value, weight)...]) for one row, strongest first; ("none", [])
    when the model allows neither method."""
    names = list(detector.feature_names)
    x = np.asarray(x, dtype=np.float64).ravel()
    est = find_estimator(detector)
    weights: dict[str, float] | None = None
    method = "none"
    if est is not None:
        ci = _class_index(est, detector.classes, label)
        contrib = None
        if ci is not None:
            contrib = tree_contributions(est, x, ci)
            if contrib is None:
                contrib = hgb_contributions(est, x, ci)
        if contrib is not None and len(contrib) == len(names):
            weights = dict(zip(names, contrib.tolist(), strict=True))
            method = "contribution"
    if weights is None:
        stats = benign_stats(getattr(detector, "card", {}) or {})
        if stats is not None:
            weights = atypicality(stats, names, x)
            method = "atypicality" if weights else "none"
    if not weights:
        return "none", []
    index = {n: i for i, n in enumerate(names)}
    ranked = sorted((kv for kv in weights.items() if kv[1] > 0), key=lambda kv: -kv[1])[:top]
    return method, [(n, float(x[index[n]]), float(w)) for n, w in ranked]
