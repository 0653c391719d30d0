"""Verdicts: class probabilities -> a label and a score, with per-class thresholds.

A record is labelled with a non-benign class when that class's probability reaches its
threshold; when several do, the most probable wins. Otherwise it is `benign`. The `score`
is always the highest non-benign probability, for alerts and benign flows alike, so one
sort key ranks everything by suspicion (a benign flow at 0.45 is closer to an alert than
one at 0.01) and `--all-flows` output can be re-thresholded with jq.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flowdet.errors import FlowdetError

BENIGN = "benign"
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one record's probabilities."""

    label: str
    score: float  # highest non-benign probability
    scored_label: str  # the non-benign class that score belongs to

    @property
    def is_alert(self) -> bool:
        return self.label != BENIGN


def parse_thresholds(specs: Iterable[str], classes: Sequence[str]) -> dict[str, float]:
    """`LABEL=P` strings -> {label: p}; unknown labels, benign and P outside (0, 1] are errors.

    Errors are FlowdetError (exit 2) naming the offending spec and the labels that exist.
    """
    known = [c for c in classes if c != BENIGN]
    out: dict[str, float] = {}
    for spec in specs:
        label, sep, value = spec.partition("=")
        label = label.strip()
        if not sep or not label:
            raise FlowdetError(f"--threshold {spec!r}: expected LABEL=P, e.g. mining=0.8")
        if label not in known:
            raise FlowdetError(
                f"--threshold {spec!r}: unknown label {label!r} (the model's labels: "
                f"{', '.join(known) or 'none'})"
            )
        try:
            p = float(value)
        except ValueError:
            raise FlowdetError(f"--threshold {spec!r}: {value!r} is not a number") from None
        if not 0.0 < p <= 1.0:
            raise FlowdetError(f"--threshold {spec!r}: P must be in (0, 1], got {p}")
        out[label] = p
    return out


def effective_thresholds(
    classes: Sequence[str], model_thresholds: Mapping[str, float], overrides: Mapping[str, float]
) -> dict[str, float]:
    """One threshold per non-benign class: override, else the model's, else 0.5."""
    out = {}
    for c in classes:
        if c == BENIGN:
            continue
        out[c] = float(overrides.get(c, model_thresholds.get(c, DEFAULT_THRESHOLD)))
    return out


class Decider:
    """Vectorised decisions for a fixed class list and thresholds (one per pipeline)."""

    def __init__(self, classes: Sequence[str], thresholds: Mapping[str, float]) -> None:
        self.classes = tuple(classes)
        if BENIGN not in self.classes:
            raise FlowdetError(f"model classes {self.classes} lack {BENIGN!r}")
        self.thresholds = dict(thresholds)
        self._alert_cols = np.array(
            [i for i, c in enumerate(self.classes) if c != BENIGN], dtype=np.int64
        )
        self._thr = np.array([self.thresholds[self.classes[i]] for i in self._alert_cols])
        self._benign = self.classes.index(BENIGN)

    def label_index(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: (label column, score, column of the score's class) for an (n, k) matrix."""
        n = proba.shape[0]
        if not len(self._alert_cols):
            z = np.zeros(n)
            return np.full(n, self._benign), z, np.full(n, self._benign)
        sub = proba[:, self._alert_cols]
        best = np.argmax(sub, axis=1)
        score = sub[np.arange(n), best]
        crossing = np.where(sub >= self._thr[None, :], sub, -1.0)
        cbest = np.argmax(crossing, axis=1)
        alert = crossing[np.arange(n), cbest] >= 0
        label = np.where(alert, self._alert_cols[cbest], self._benign)
        return label, score, self._alert_cols[best]

    def decide(self, proba: np.ndarray) -> list[Decision]:
        lab, score, sc = self.label_index(np.asarray(proba, dtype=np.float64))
        names = self.classes
        return [
            Decision(names[a], float(s), names[b])
            for a, s, b in zip(lab.tolist(), score.tolist(), sc.tolist(), strict=True)
        ]
