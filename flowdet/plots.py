"""Pictures of what the detector sees, shared by notebooks/walkthrough.ipynb and
scripts/make_figures.py so the README's figures come from the code the notebook runs.

Two layers:
- data helpers (numpy, no matplotlib): labelled sample flows from a folder with a
  labels.tsv (`load_samples`), the packets of chosen flows as signed size series
  (`packet_series`), the scoring chain run over every sample capture (`score_samples`) and
  the per-flow alert timing it yields (`alert_timings`);
- figure builders, each returning a `matplotlib.figure.Figure` built without pyplot, so
  nothing is registered in pyplot's global figure list and a script can build any number
  of them without a display.

Signed sizes follow the classic traffic-analysis view: toserver (initiator -> responder)
positive, toclient negative, so a periodic job push and the share submissions it triggers,
the keystroke/echo pairs of an interactive shell and the one-way bulk of a copy look
different at a glance.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from flowdet.capture import open_capture
from flowdet.errors import FlowdetError
from flowdet.flows import FlowConfig, FlowRecord, expand_sources, iter_flows
from flowdet.labels import LABELS_FILE, LabelFile, read_labels

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from flowdet.pipeline import Verdict

CLASS_ORDER: tuple[str, ...] = ("benign", "mining", "ssh-tunnel")
# Colour-blind-safe (Okabe-Ito) colours per class, the same in every figure.
CLASS_COLORS: dict[str, str] = {"benign": "#0072B2", "mining": "#E69F00", "ssh-tunnel": "#CC3311"}
DIR_COLORS: dict[str, str] = {"toserver": "#009E73", "toclient": "#7A3E9D"}

# A few features that separate the classes in ways a person can check in Wireshark, with
# what each one measures (flowdet/features.py and docs/model.md have the whole list).
TELLING_FEATURES: dict[str, str] = {
    "log_piat_mean_toclient": "server message period, ln(1 + s)",
    "log_piat_mean_toserver": "client message period, ln(1 + s)",
    "piat_cv_toclient": "server message gaps: std / mean",
    "bursts_toclient_share": "share of silences the server breaks",
    "upload_byte_share": "client share of payload bytes",
    "last_ks2_frac_toclient": "server packets of nested-keystroke size",
}


# -- data ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class LabelledFlow:
    """A final flow record of a sample capture with its ground-truth label."""

    capture: str  # path of the capture
    label: str
    scenario: str
    record: FlowRecord


@dataclass(slots=True)
class SampleSet:
    """The labelled flows of a sample folder and what could not be labelled (counted)."""

    folder: str
    captures: list[str]
    flows: list[LabelledFlow]
    labels: LabelFile
    unlabelled: Counter[str] = field(default_factory=Counter)  # capture name -> flows

    @property
    def records(self) -> list[FlowRecord]:
        return [f.record for f in self.flows]

    @property
    def y(self) -> np.ndarray:
        """True labels, one per flow (object array of str)."""
        return np.array([f.label for f in self.flows], dtype=object)

    def counts(self) -> dict[str, int]:
        c = Counter(f.label for f in self.flows)
        return {k: c[k] for k in CLASS_ORDER if c[k]}

    def unmatched_rows(self) -> list[str]:
        """Label rows of these captures that matched no flow, as `pcap:line` strings."""
        names = {os.path.basename(c) for c in self.captures}
        return [f"{r.pcap}:{r.line}" for r in self.labels.unmatched(names)]

    def label_of(self, capture: str, rec: FlowRecord) -> tuple[str, str] | None:
        """(label, scenario) of a flow of `capture`, or None when no row names it."""
        row = self.labels.lookup(
            os.path.basename(capture), rec.proto, (rec.src_ip, rec.src_port),
            (rec.dest_ip, rec.dest_port),
        )  # fmt: skip
        return None if row is None else (row.label, row.scenario)


def load_samples(folder: str | os.PathLike[str], config: FlowConfig | None = None) -> SampleSet:
    """Final flow records of every capture in `folder`, labelled from its labels.tsv.

    Flows without a label row (the lab's own lookups and the like) are skipped and counted
    per capture in `unlabelled`, and label rows that match no flow are listed by
    `SampleSet.unmatched_rows`: nothing is dropped silently.
    """
    root = Path(folder)
    labels_path = root / LABELS_FILE
    if not labels_path.is_file():
        raise FlowdetError(f"{root}: no {LABELS_FILE} (sample folders hold captures + labels)")
    labels = read_labels(labels_path)
    captures = expand_sources([root])
    out = SampleSet(str(root), captures, [], labels)
    for cap in captures:
        for rec in iter_flows([cap], config):
            got = out.label_of(cap, rec)
            if got is None:
                out.unlabelled[os.path.basename(cap)] += 1
                continue
            out.flows.append(LabelledFlow(cap, got[0], got[1], rec))
    if not out.flows:
        raise FlowdetError(f"{root}: no flow matched a row of {LABELS_FILE}")
    return out


@dataclass(slots=True)
class PacketSeries:
    """The packets of one flow as columns; time in seconds since the flow's first packet."""

    t: np.ndarray  # float64 seconds
    toserver: np.ndarray  # bool: sent by the initiator
    ip_len: np.ndarray  # int64 IP total length
    payload: np.ndarray  # int64 transport payload length

    def signed(self, what: str = "payload") -> np.ndarray:
        """Sizes with toserver positive and toclient negative (`payload` or `ip_len`)."""
        v = self.payload if what == "payload" else self.ip_len
        return np.where(self.toserver, v, -v)

    def __len__(self) -> int:
        return int(self.t.shape[0])


def _addr(ip: str) -> tuple[int, int]:
    """(hi, lo) halves as PacketBatch stores them (IPv4 as IPv4-mapped IPv6)."""
    a = ipaddress.ip_address(ip)
    v = int(ipaddress.IPv6Address(f"::ffff:{a}")) if a.version == 4 else int(a)
    return v >> 64, v & ((1 << 64) - 1)


def packet_series(
    capture: str | os.PathLike[str], records: Sequence[FlowRecord]
) -> list[PacketSeries]:
    """The packets of each record (same capture), read in one pass over the capture.

    A packet belongs to a record when its 5-tuple matches either direction and its time
    lies within the record's first and last packet, so an earlier or later flow on the
    same ports (port reuse) is not mixed in. Non-first fragments carry no ports and are
    left out.
    """
    want = []
    for r in records:
        shi, slo = _addr(r.src_ip)
        dhi, dlo = _addr(r.dest_ip)
        start = round(r.start_epoch * 1e9)
        end = round(r.end_epoch * 1e9)
        want.append((shi, slo, r.src_port, dhi, dlo, r.dest_port, r.proto_num, start, end))
    parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in records]
    with open_capture(capture) as reader:
        for b in reader:
            for k, (shi, slo, sp, dhi, dlo, dp, proto, start, end) in enumerate(want):
                base = (b.proto == proto) & (b.ts_ns >= start - 1000) & (b.ts_ns <= end + 1000)
                if not base.any():
                    continue
                fwd = (b.src_hi == shi) & (b.src_lo == slo) & (b.sport == sp)
                fwd &= (b.dst_hi == dhi) & (b.dst_lo == dlo) & (b.dport == dp)
                rev = (b.src_hi == dhi) & (b.src_lo == dlo) & (b.sport == dp)
                rev &= (b.dst_hi == shi) & (b.dst_lo == slo) & (b.dport == sp)
                m = base & (fwd | rev)
                if m.any():
                    parts[k].append(
                        (b.ts_ns[m], fwd[m], b.ip_len[m].astype(np.int64),
                         b.payload_len[m].astype(np.int64))
                    )  # fmt: skip
    out = []
    for k, r in enumerate(records):
        if parts[k]:
            ts, fw, il, pl = (np.concatenate(c) for c in zip(*parts[k], strict=True))
        else:
            ts = np.zeros(0, np.int64)
            fw = np.zeros(0, bool)
            il = pl = np.zeros(0, np.int64)
        t0 = round(r.start_epoch * 1e9)
        out.append(PacketSeries((ts - t0) / 1e9, fw, il, pl))
    return out


def score_samples(samples: SampleSet, detector: Any) -> list[Verdict]:
    """Final verdicts on every flow of every sample capture (benign ones too), one
    ScoringPipeline per capture as `flowdet score` runs them."""
    from flowdet.pipeline import ScoringPipeline

    out: list[Verdict] = []
    for cap in samples.captures:
        pipe = ScoringPipeline(detector, all_flows=True, source=cap)
        with open_capture(cap) as reader:
            for batch in reader:
                out.extend(pipe.feed(batch))
        out.extend(pipe.flush())
    return out


@dataclass(slots=True)
class AlertTiming:
    """When, within its flow, a flow's verdict was first reached (alerts and true positives)."""

    capture: str
    scenario: str
    label: str  # ground truth
    predicted: str
    start: float  # epoch seconds: the flow's first packet
    end: float  # the flow's last packet
    first: float | None  # epoch seconds of the evaluation that first crossed the threshold
    first_checkpoint: str  # "pkts:16", "secs:10", "final" or "" (no alert)
    first_pkts: int | None
    pkts: int

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def delay(self) -> float | None:
        """Seconds from the flow's first packet to the moment the alert could be raised.

        For a packet checkpoint or the final record that is the time of its last packet
        (`first`); a `secs:T` snapshot holds the state at start + T and is taken only once
        the clock passes that instant, so the alert comes no earlier than T.
        """
        if self.first is None:
            return None
        d = self.first - self.start
        if self.first_checkpoint.startswith("secs:"):
            d = max(d, float(self.first_checkpoint[5:]))
        return d


def alert_timings(samples: SampleSet, verdicts: Iterable[Verdict]) -> list[AlertTiming]:
    """One row per labelled flow that is an attack or was alerted, in scenario order.

    Benign flows that stayed benign are left out: they have nothing to show on a timeline.
    """
    rows: list[AlertTiming] = []
    for v in verdicts:
        rec = v.record
        got = samples.label_of(v.source, rec)
        if got is None:
            continue
        label, scenario = got
        if label == "benign" and not v.is_alert:
            continue
        rows.append(
            AlertTiming(
                capture=os.path.basename(v.source),
                scenario=scenario,
                label=label,
                predicted=v.label,
                start=rec.start_epoch,
                end=rec.end_epoch,
                first=None if v.first_ns is None else v.first_ns / 1e9,
                first_checkpoint=v.first_checkpoint,
                first_pkts=v.first_pkts,
                pkts=rec.pkts_toserver + rec.pkts_toclient,
            )
        )
    rows.sort(key=lambda r: (CLASS_ORDER.index(r.label), r.scenario, r.start))
    return rows


def in_model_domain(X: np.ndarray) -> np.ndarray:
    """Rows the detector can call mining or a tunnel at all: TCP flows that carried payload
    (the pipeline's domain gate; everything else is benign without asking the model)."""
    from flowdet.features import FEATURE_NAMES

    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    tcp = X[:, col["is_tcp"]] > 0
    payload = (X[:, col["log_payload_pkts_toserver"]] > 0) | (
        X[:, col["log_payload_pkts_toclient"]] > 0
    )
    return tcp & payload


# What to look for in each scenario's picture (signed sizes: up = toserver, down = toclient).
SCENARIO_CAPTIONS: dict[str, str] = {
    "mining-stratum1-tcp": "the pool pushes a job on a timer (down), the miner submits shares (up)",
    "mining-monero-tcp": "the pool pushes a job on a timer (down), the miner submits shares (up)",
    "mining-stratum1-tls": "Stratum inside TLS: the same timer-driven jobs (down) and shares (up)",
    "mining-zcash": "the pool pushes a job on a timer (down), the miner submits shares (up)",
    "ssh-reverse-login": "reverse shell: keystrokes arrive from the server side (down), "
    "each echoed back (up)",
    "ssh-reverse-idle": "idle reverse tunnel: keep-alives, then a burst when someone uses it",
    "ssh-reverse-web": "reverse tunnel carrying web requests: bursts started by the server side",
    "ssh-interactive": "interactive SSH: the client types (up), the server echoes (down)",
    "ssh-inbound-admin": "interactive SSH: the client types (up), the server echoes (down)",
    "ssh-file-transfer": "scp: after the handshake, one-way bulk at full segment size",
    "ssh-multiplexed": "ControlMaster: several sessions (commands, a small scp) in one connection",
    "benign-web-download": "downloads: a small request up, bulk down at full segment size",
    "benign-web-https": "HTTPS browsing and downloads: small requests up, bulk responses down",
}


@dataclass(frozen=True, slots=True)
class ExampleSpec:
    """Which flow to show for a class: the first of `scenarios` present, else the class's
    flow with the most payload packets. `zoom` adds a close-up of the first typing burst."""

    label: str
    scenarios: tuple[str, ...]
    zoom: bool = False


DEFAULT_EXAMPLES: tuple[ExampleSpec, ...] = (
    ExampleSpec("mining", ("mining-stratum1-tcp", "mining-monero-tcp", "mining-stratum1-tls")),
    ExampleSpec(
        "ssh-tunnel", ("ssh-reverse-login", "ssh-reverse-web", "ssh-reverse-idle"), zoom=True
    ),
    ExampleSpec("benign", ("ssh-interactive", "ssh-inbound-admin"), zoom=True),
    ExampleSpec(
        "benign",
        ("ssh-file-transfer", "benign-web-download", "benign-web-https", "ssh-multiplexed"),
    ),
)


@dataclass(slots=True)
class Example:
    flow: LabelledFlow
    caption: str
    zoom: bool = False


def pick_examples(
    samples: SampleSet, specs: Sequence[ExampleSpec] = DEFAULT_EXAMPLES
) -> list[Example]:
    """One flow per spec (see ExampleSpec); a spec whose class has no flow is skipped."""
    out: list[Example] = []
    used: set[int] = set()
    for spec in specs:
        cands = [
            (i, f) for i, f in enumerate(samples.flows) if f.label == spec.label and i not in used
        ]
        if not cands:
            continue

        def size(item: tuple[int, LabelledFlow]) -> int:
            r = item[1].record
            return r.payload_pkts_toserver + r.payload_pkts_toclient

        pick = None
        for sc in spec.scenarios:
            same = [c for c in cands if c[1].scenario == sc]
            if same:
                pick = max(same, key=size)
                break
        if pick is None:
            pick = max(cands, key=size)
        used.add(pick[0])
        flow = pick[1]
        caption = SCENARIO_CAPTIONS.get(flow.scenario, "")
        if flow.scenario not in spec.scenarios:
            caption = f"stand-in: no {' / '.join(spec.scenarios)} flow among the samples"
        out.append(Example(flow, caption, spec.zoom))
    return out


def typing_window(
    s: PacketSeries, seconds: float = 4.0, small: int = 128, skip: float = 2.0
) -> tuple[float, float] | None:
    """A close-up window on the first typing burst after the first `skip` seconds
    (handshake, login), or None: the first run of >= 10 consecutive payload packets that are
    all small (<= `small` bytes), less than 1.5 s apart, and change direction >= 6 times.
    Login chatter and command output hold big packets, so they break runs."""
    pay = (s.payload > 0) & (s.t >= skip)
    t, d, sm = s.t[pay], s.toserver[pay].astype(np.int8), s.payload[pay] <= small
    i, n = 0, len(t)
    while i < n:
        if not sm[i]:
            i += 1
            continue
        j = i + 1
        while j < n and sm[j] and t[j] - t[j - 1] < 1.5:
            j += 1
        if j - i >= 10 and (np.diff(d[i:j]) != 0).sum() >= 6:
            lo = max(t[i] - 0.05 * seconds, 0.0)
            return lo, max(min(lo + seconds, t[j - 1] + 0.05 * seconds), lo + 1.0)
        i = j
    return None


# -- figures -------------------------------------------------------------------------------------
def _figure(**kw: Any) -> Figure:
    """A Figure outside pyplot's registry (no global state; Agg renders it in any process)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise FlowdetError("plots need matplotlib: pip install 'flowdet[notebook]'") from None
    return Figure(layout="constrained", **kw)


def _class_legend(ax: Axes, classes: Sequence[str], alpha: float = 1.0, **kw: Any) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=CLASS_COLORS.get(c, "grey"), alpha=alpha, label=c) for c in classes]
    ax.legend(handles=handles, **kw)


def plot_packet_sizes(
    examples: Sequence[Example], series: Sequence[PacketSeries], what: str = "payload"
) -> Figure:
    """One row per example flow: signed packet sizes against time since the flow began, and
    for examples with `zoom` a close-up of the first typing burst beside it.

    Only packets that carry payload are drawn (with what="payload"): bare ACKs would sit
    on the zero line. The size axis is symlog so 36-byte keystrokes and 1448-byte
    segments are both readable.
    """
    if len(examples) != len(series) or not examples:
        raise ValueError("need one packet series per example, at least one")
    n = len(examples)
    fig = _figure(figsize=(12, 2.9 * n))
    grid = fig.add_gridspec(n, 3)
    first_ax = None
    for row, (ex, s) in enumerate(zip(examples, series, strict=True)):
        win = typing_window(s) if ex.zoom else None
        ax = fig.add_subplot(grid[row, :2] if win else grid[row, :])
        first_ax = first_ax or ax
        _draw_sizes(ax, s, what)
        f, r = ex.flow, ex.flow.record
        head = f"{f.label}: {f.scenario or os.path.basename(f.capture)}"
        ax.set_title(
            f"{head}  ({r.pkts_toserver + r.pkts_toclient} packets, {r.duration:.0f} s)\n"
            f"{ex.caption}",
            loc="left",
            fontsize=10,
        )
        if win:
            ax.axvspan(*win, color="#999999", alpha=0.25, linewidth=0)
            zx = fig.add_subplot(grid[row, 2], sharey=ax)
            _draw_sizes(zx, s, what)
            zx.set_xlim(*win)
            zx.set_title(f"close-up {win[0]:.1f}-{win[1]:.1f} s: typing", loc="left", fontsize=10)
            zx.tick_params(labelleft=False)
        if row == n - 1:
            ax.set_xlabel("seconds since the flow's first packet")
    if first_ax is not None:  # one legend for all rows, below them: it never hides a packet
        handles, labels = first_ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle(
        "Packet sizes over time by direction (up: to the server, down: to the client)",
        fontsize=12,
    )
    return fig


def _draw_sizes(ax: Axes, s: PacketSeries, what: str) -> None:
    v = s.signed(what)
    keep = v != 0 if what == "payload" else np.ones(len(s), bool)
    for d, sel in (("toserver", s.toserver), ("toclient", ~s.toserver)):
        m = keep & sel
        ax.vlines(s.t[m], 0, v[m], color=DIR_COLORS[d], linewidth=0.8, alpha=0.7)
        arrow = "initiator → responder" if d == "toserver" else "responder → initiator"
        ax.plot(s.t[m], v[m], "o", ms=2.5, color=DIR_COLORS[d], label=f"{d} ({arrow})")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_yscale("symlog", linthresh=10)
    lim = max(100, int(np.abs(v[keep]).max()) if keep.any() else 100) * 1.6
    ax.set_ylim(-lim, lim)
    ax.set_ylabel("payload bytes" if what == "payload" else "IP bytes")
    ax.grid(axis="y", alpha=0.3)


def plot_feature_distributions(
    X: np.ndarray,
    y: Sequence[str],
    features: Sequence[str] | dict[str, str] = tuple(TELLING_FEATURES),
    ncols: int = 3,
) -> Figure:
    """Per feature, each class's values as a box (quartiles) over the individual flows."""
    from flowdet.features import FEATURE_NAMES

    y = np.asarray(y, dtype=object)
    names = list(features)
    desc = features if isinstance(features, dict) else TELLING_FEATURES
    missing = [n for n in names if n not in FEATURE_NAMES]
    if missing:
        raise FlowdetError(f"unknown feature(s): {', '.join(missing)}")
    classes = [c for c in CLASS_ORDER if (y == c).any()]
    nrows = -(-len(names) // ncols)
    fig = _figure(figsize=(4.2 * ncols, 3.3 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    for ax, name in zip(axes, names, strict=False):
        j = FEATURE_NAMES.index(name)
        data = [X[y == c, j] for c in classes]
        bp = ax.boxplot(
            data, showfliers=False, widths=0.55, patch_artist=True,
            medianprops={"color": "black", "linewidth": 1.5},
        )  # fmt: skip
        for patch, c in zip(bp["boxes"], classes, strict=True):
            patch.set_facecolor(CLASS_COLORS[c])
            patch.set_alpha(0.35)
        for k, (vals, c) in enumerate(zip(data, classes, strict=True), start=1):
            x = k + rng.uniform(-0.18, 0.18, len(vals))
            ax.plot(x, vals, "o", ms=3, color=CLASS_COLORS[c], alpha=0.8)
        ax.set_xticks(range(1, len(classes) + 1))
        ax.set_xticklabels([f"{c}\n(n={len(d)})" for c, d in zip(classes, data, strict=True)])
        ax.set_title(name, fontsize=10)
        if name in desc:
            ax.set_ylabel(desc[name], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("Feature values per class (one point per flow)", fontsize=12)
    return fig


def plot_confusion(
    y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str] = CLASS_ORDER
) -> Figure:
    """Counts of true (rows) against predicted (columns) labels; colour is the row share,
    so a small class's misses are as visible as a big class's."""
    from sklearn.metrics import confusion_matrix

    classes = list(classes)
    cm = confusion_matrix(list(y_true), list(y_pred), labels=classes)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure(figsize=(5.6, 4.6))
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                color="white" if share[i, j] > 0.6 else "black", fontsize=10,
            )  # fmt: skip
    ax.set_xticks(range(len(classes)), labels=classes)
    ax.set_yticks(
        range(len(classes)), labels=[f"{c} ({n})" for c, n in zip(classes, cm.sum(1), strict=True)]
    )
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label (flows)")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"Confusion matrix, {cm.sum()} flows (accuracy {acc:.0%})", fontsize=11)
    fig.colorbar(im, ax=ax, label="share of the true class", shrink=0.8)
    return fig


def plot_importances(
    importances_mean: np.ndarray,
    importances_std: np.ndarray,
    feature_names: Sequence[str],
    top: int = 15,
    metric: str = "balanced accuracy",
) -> Figure:
    """The `top` features by permutation importance (mean drop of the score, ± std).

    Features whose shuffling never changed a verdict (mean and std 0) are left out and
    counted in the title: on a small sample most columns are such, and a wall of empty
    bars would hide the few that matter.
    """
    mean = np.asarray(importances_mean, dtype=float)
    std = np.asarray(importances_std, dtype=float)
    moved = np.flatnonzero((mean != 0) | (std != 0))
    order = moved[np.argsort(-mean[moved], kind="stable")][:top][::-1]
    fig = _figure(figsize=(7.5, 0.32 * max(len(order), 3) + 1.6))
    ax = fig.subplots()
    ax.barh(range(len(order)), mean[order], xerr=std[order], color="#56B4E9", ecolor="#333333")
    ax.set_yticks(range(len(order)), labels=[feature_names[i] for i in order], fontsize=9)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(f"drop in {metric} when the feature is shuffled (mean ± std over repeats)")
    still = len(mean) - len(moved)
    ax.set_title(
        f"Permutation importance: top {len(order)} of {len(moved)} features that moved the "
        f"score\n({still} of {len(mean)} never changed a verdict on these flows)",
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_alert_timeline(rows: Sequence[AlertTiming]) -> Figure:
    """Per flow, a bar from its first to its last packet and a mark where the alert was
    first reached; the axis is symlog so a 0.1 s decision and a 10 min flow both show."""
    if not rows:
        raise ValueError("no flows to show")
    fig = _figure(figsize=(11, 0.38 * len(rows) + 1.8))
    ax = fig.subplots()
    for i, r in enumerate(rows):
        ax.barh(i, r.duration, left=0, height=0.55, color=CLASS_COLORS.get(r.label, "grey"),
                alpha=0.35)  # fmt: skip
        if r.delay is not None:
            ax.plot(
                max(r.delay, 0.0), i, "D", ms=7, color=CLASS_COLORS.get(r.predicted, "grey"),
                markeredgecolor="black",
            )  # fmt: skip
            note = f"{r.predicted} at {r.first_checkpoint} ({r.first_pkts} pkts, {r.delay:.1f} s)"
        else:
            note = f"no alert ({r.predicted})"
        ax.text(r.duration * 1.08 + 0.05, i, note, va="center", fontsize=8)
    ax.set_yticks(
        range(len(rows)),
        labels=[f"{r.scenario or r.capture} [{r.label}]" for r in rows],
        fontsize=8,
    )
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1.0)
    xmax = max(r.duration for r in rows)
    ax.set_xlim(0, xmax * 30 + 10)  # room for the notes
    ax.set_xlabel("seconds since the flow's first packet (symlog: linear below 1 s)")
    ax.set_title(
        "When each alert was first reached within its flow (bar: flow, ◆: first alert, colour "
        "= predicted class)",
        fontsize=11,
    )
    ax.grid(axis="x", alpha=0.3)
    _class_legend(ax, CLASS_ORDER, 0.35, loc="lower right", fontsize=8, title="bar: true class")
    return fig


class FittedDetector(ClassifierMixin, BaseEstimator):
    """A fitted Detector in the shape scikit-learn's model-inspection tools accept.

    `sklearn.inspection.permutation_importance` insists on a classifier with `fit`; the
    detector is already fitted and must stay the shipped one, so `fit` changes nothing.
    Predictions go through `Detector.predict`, domain gate and thresholds included, so the
    importances describe the verdicts flowdet gives, not the raw estimator's argmax.
    """

    def __init__(self, detector: Any = None) -> None:
        self.detector = detector

    @property
    def classes_(self) -> np.ndarray:
        return np.array(self.detector.classes, dtype=object)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> FittedDetector:
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.detector.predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.detector.predict_proba(X)


# -- the README's figures ------------------------------------------------------------------------
README_FIGURES: tuple[str, ...] = ("packet-sizes.png", "features.png", "alert-timeline.png")


def write_figures(
    samples_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    detector: Any = None,
    dpi: int = 110,
) -> list[Path]:
    """Build the README's figures from the samples and write them as PNGs into `out_dir`.

    The same helpers the walkthrough notebook calls, in the same order, so the pictures in
    the README are the notebook's pictures.
    """
    from flowdet.features import featurize
    from flowdet.model import Detector

    samples = load_samples(samples_dir)
    det = detector if detector is not None else Detector.load()
    examples = pick_examples(samples)
    series: list[PacketSeries] = []
    for ex in examples:
        series += packet_series(ex.flow.capture, [ex.flow.record])
    X, _ = featurize(samples.records)
    dom = in_model_domain(X)
    timings = alert_timings(samples, score_samples(samples, det))
    figs = {
        "packet-sizes.png": plot_packet_sizes(examples, series),
        "features.png": plot_feature_distributions(X[dom], samples.y[dom]),
        "alert-timeline.png": plot_alert_timeline(timings),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in README_FIGURES:
        path = out / name
        figs[name].savefig(path, dpi=dpi, metadata={"Software": None})
        written.append(path)
    return written
