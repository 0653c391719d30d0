"""Labelled captures -> a training/evaluation set: features of every flow and of its prefixes.

Flows run with the detector's checkpoints on (`FlowConfig.with_default_checkpoints`), so each
flow gives its checkpoint snapshots (pkts:8 ... secs:300) and its final record(s). Training on
all of them teaches the model to decide on a prefix as well as on a whole flow; per-record
weights (1 / records of the flow) keep a long flow with many checkpoints from counting more
than a short one. `flow` ties a flow's records together so cross-validation never splits
them; `group` (the lab scenario, else the capture) keeps one scenario's flows together too.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowdet.errors import CaptureError, FlowdetError
from flowdet.features import FEATURE_NAMES, featurize
from flowdet.flows import FlowConfig, FlowRecord, expand_sources, iter_flow_blocks
from flowdet.labels import CaptureLabels, resolve_labels
from flowdet.model import BENIGN

TUNNEL = "ssh-tunnel"
_SSH_BANNER = FEATURE_NAMES.index("sig_ssh_banner")
# Benign SSH flows (an SSH banner seen: shells, scp, git, ControlMaster sessions) are the hard
# negatives of the ssh-tunnel class: the same protocol, clients and handshakes. Balanced with
# every other benign flow they weighed 2% of the tunnel class (zeek-traces' 4,293 flows make
# most of the benign total); with 25 more reverse logins in training, both held-out
# ControlMaster sessions were flagged (P(ssh-tunnel) 0.93-0.99), and with a few more of them
# in training too, this share still took their P from 0.25-0.36 to 0.06-0.10. Raised, never
# lowered, to this share of the ssh-tunnel class's total weight.
BENIGN_SSH_SHARE = 1.0

Progress = Callable[[str], None]


def stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Dataset:
    """Rows are flow records (checkpoints and finals) of labelled flows; see module doc."""

    X: np.ndarray  # float32 (n, len(FEATURE_NAMES))
    y: np.ndarray  # str label per row
    flow: np.ndarray  # int64 flow index per row (into `flows`)
    final: np.ndarray  # bool: a final record (not a checkpoint snapshot)
    checkpoint: np.ndarray  # str checkpoint name ("" for finals)
    client_payload_pkts: np.ndarray  # payload packets sent by the labels' client so far
    elapsed: np.ndarray  # seconds from the flow's first packet to the record's last packet
    flows: list[dict[str, Any]]  # per flow: capture, scenario, group, 5-tuple, label
    summary: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def groups(self) -> np.ndarray:
        """CV group of each row: the flow's scenario (lab) or its capture."""
        g = np.array([f["group"] for f in self.flows], dtype=object)
        return g[self.flow] if len(self.flows) else np.zeros(0, dtype=object)

    @property
    def flow_labels(self) -> np.ndarray:
        return np.array([f["label"] for f in self.flows], dtype=object)

    def subset(self, rows: np.ndarray) -> Dataset:
        """The given rows (bool mask or indices), with flows renumbered."""
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        keep = np.unique(self.flow[idx])
        remap = np.full(len(self.flows), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        return Dataset(
            X=self.X[idx],
            y=self.y[idx],
            flow=remap[self.flow[idx]],
            final=self.final[idx],
            checkpoint=self.checkpoint[idx],
            client_payload_pkts=self.client_payload_pkts[idx],
            elapsed=self.elapsed[idx],
            flows=[self.flows[k] for k in keep.tolist()],
            summary=dict(self.summary),
        )

    def flow_attr(self, name: str) -> np.ndarray:
        """A per-flow attribute (capture, scenario, group, label ...) for every row."""
        vals = np.array([f[name] for f in self.flows], dtype=object)
        return vals[self.flow] if len(self.flows) else np.zeros(0, dtype=object)

    def weights(self) -> np.ndarray:
        """Sample weights: a flow's records share its weight (so long flows with many
        checkpoints do not dominate); a flow weighs 1 / sqrt(flows in its group), which damps
        a capture or scenario with hundreds of similar flows (cgminer's probes, git's many
        short sessions) without letting one flow weigh as much as a whole capture; then each
        class sums to the same total; then benign SSH flows are raised to weigh, in all, at
        least BENIGN_SSH_SHARE of the ssh-tunnel class (see there)."""
        n_flows = len(self.flows)
        per_flow = np.bincount(self.flow, minlength=n_flows).astype(np.float64)
        groups = np.array([f["group"] for f in self.flows], dtype=object)
        _, ginv, gcount = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
        flow_w = 1.0 / np.sqrt(gcount[ginv].astype(np.float64))
        w = flow_w[self.flow] / per_flow[self.flow]
        labels = self.flow_labels
        present = sorted(set(labels.tolist()))
        for c in present:
            total = float(flow_w[labels == c].sum())
            w[self.y == c] *= n_flows / (len(present) * total)
        if TUNNEL in present and BENIGN in present:
            ssh_flow = np.zeros(n_flows, dtype=bool)
            ssh_flow[self.flow[self.X[:, _SSH_BANNER] > 0]] = True
            rows = ssh_flow[self.flow] & (self.y == BENIGN)
            have = float(w[rows].sum())
            want = BENIGN_SSH_SHARE * float(w[self.y == TUNNEL].sum())
            if 0.0 < have < want:
                w[rows] *= want / have
        return w


def concat(parts: list[Dataset]) -> Dataset:
    """Several datasets as one (flows renumbered; summaries merged shallowly)."""
    offs = np.cumsum([0] + [len(p.flows) for p in parts[:-1]])
    summary: dict[str, Any] = {"parts": [p.summary for p in parts]}
    for key in ("captures", "flows", "records", "unlabelled_flows_skipped", "groups"):
        summary[key] = int(sum(p.summary.get(key, 0) for p in parts))
    per: Counter[str] = Counter()
    for p in parts:
        per.update(p.summary.get("flows_per_label", {}))
    summary["flows_per_label"] = dict(sorted(per.items()))
    return Dataset(
        X=np.concatenate([p.X for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        flow=np.concatenate([p.flow + o for p, o in zip(parts, offs, strict=True)]),
        final=np.concatenate([p.final for p in parts]),
        checkpoint=np.concatenate([p.checkpoint for p in parts]),
        client_payload_pkts=np.concatenate([p.client_payload_pkts for p in parts]),
        elapsed=np.concatenate([p.elapsed for p in parts]),
        flows=[f for p in parts for f in p.flows],
        summary=summary,
    )


def build_dataset(
    data: Iterable[str],
    labels: str | None = None,
    unlabelled_as_benign: bool = False,
    config: FlowConfig | None = None,
    progress: Progress | None = stderr_progress,
    what: str = "train",
    benign: Iterable[str] = (),
) -> Dataset:
    """Read captures (files or folders), label their flows, featurize every record.

    `benign` captures (files or folders) have every flow labelled benign (real traffic known
    to hold no mining and no tunnel, e.g. ../shared/corpus/zeek-traces).

    Flows without a label are skipped and counted (or labelled benign when asked); label rows
    that match no flow are counted and reported as a warning; unreadable captures are
    skipped with a warning and counted.
    """
    config = config or FlowConfig().with_default_checkpoints()
    captures = expand_sources(list(data))
    sources = resolve_labels(captures, labels)
    benign_caps = expand_sources(list(benign)) if benign else []
    sources += [CaptureLabels(c, folder_label=BENIGN) for c in benign_caps]
    if labels:
        named = sources[0].file.pcaps if sources and sources[0].file else set()
        if not named & {s.name for s in sources}:
            raise FlowdetError(f"{labels}: no row names any of the given captures")
    Xs: list[np.ndarray] = []
    ys: list[str] = []
    flow_idx: list[int] = []
    finals: list[bool] = []
    ckpts: list[str] = []
    cpp: list[int] = []
    ends: list[float] = []
    flows: list[dict[str, Any]] = []
    starts: dict[int, float] = {}
    skipped_unlabelled: Counter[str] = Counter()
    bad_captures: list[str] = []
    for i, src in enumerate(sources, start=1):
        before = len(flows)
        try:
            n_rec = _read_capture(
                src,
                config,
                unlabelled_as_benign,
                flows,
                starts,
                (Xs, ys, flow_idx, finals, ckpts, cpp, ends),
                skipped_unlabelled,
            )
        except CaptureError as exc:
            bad_captures.append(f"{src.name}: {exc}")
            if progress:
                progress(f"{what}: [{i}/{len(sources)}] {src.name}: skipped ({exc})")
            continue
        # one line per capture for a few, else one per tenth of the way
        step = max(1, len(sources) // 10) if len(sources) > 40 else 1
        if progress and (i % step == 0 or i == len(sources)):
            progress(
                f"{what}: [{i}/{len(sources)}] {src.name}: {len(flows) - before} labelled flows, "
                f"{n_rec} records, {skipped_unlabelled[src.name]} unlabelled flows skipped"
            )
    unmatched = _unmatched_rows(sources)
    if progress and unmatched:
        progress(
            f"{what}: warning: {len(unmatched)} label rows matched no flow (e.g. {unmatched[0]})"
        )
    if progress and bad_captures:
        progress(f"{what}: warning: {len(bad_captures)} captures could not be read")
    X = np.concatenate(Xs) if Xs else np.zeros((0, len(FEATURE_NAMES)), np.float32)
    flow_arr = np.array(flow_idx, dtype=np.int64)
    first_start = np.array([starts[k] for k in range(len(flows))])
    elapsed = np.array(ends) - (first_start[flow_arr] if len(flow_arr) else 0.0)
    labels_per_flow = Counter(f["label"] for f in flows)
    summary = {
        "captures": len(sources),
        "captures_unreadable": bad_captures,
        "flows": len(flows),
        "records": len(ys),
        "flows_per_label": dict(sorted(labels_per_flow.items())),
        "records_per_label": dict(sorted(Counter(ys).items())),
        "unlabelled_flows_skipped": int(sum(skipped_unlabelled.values())),
        "unlabelled_as_benign": unlabelled_as_benign,
        "label_rows_unmatched": len(unmatched),
        "scenarios": dict(sorted(Counter(f["scenario"] for f in flows if f["scenario"]).items())),
        "groups": len({f["group"] for f in flows}),
        "checkpoints": list(config.checkpoint_names),
    }
    return Dataset(
        X=X,
        y=np.array(ys, dtype=object),
        flow=flow_arr,
        final=np.array(finals, dtype=bool),
        checkpoint=np.array(ckpts, dtype=object),
        client_payload_pkts=np.array(cpp, dtype=np.int64),
        elapsed=elapsed,
        flows=flows,
        summary=summary,
    )


def _unmatched_rows(sources: list[CaptureLabels]) -> list[str]:
    seen_files: dict[int, tuple[Any, set[str]]] = {}
    for s in sources:
        if s.file is not None:
            seen_files.setdefault(id(s.file), (s.file, set()))[1].add(s.name)
    out: list[str] = []
    for lf, names in seen_files.values():
        for r in lf.unmatched(names):
            out.append(
                f"{lf.path.name}:{r.line} {r.pcap} {r.proto} {r.client[0]}:{r.client[1]} -> "
                f"{r.server[0]}:{r.server[1]}"
            )
    return out


def _read_capture(
    src: CaptureLabels,
    config: FlowConfig,
    unlabelled_as_benign: bool,
    flows: list[dict[str, Any]],
    starts: dict[int, float],
    out: tuple[list, ...],
    skipped: Counter[str],
) -> int:
    Xs, ys, flow_idx, finals, ckpts, cpp, ends = out
    local: dict[int, int] = {}  # table flow_id -> index into flows
    dropped: set[int] = set()
    n_rec = 0
    for _, blk in iter_flow_blocks([src.capture], config):
        recs = blk.records()
        keep: list[FlowRecord] = []
        for r in recs:
            k = local.get(r.flow_id)
            if k is None:
                if r.flow_id in dropped:
                    continue
                info = _label_flow(src, r, unlabelled_as_benign)
                if info is None:
                    dropped.add(r.flow_id)
                    skipped[src.name] += 1
                    continue
                k = len(flows)
                local[r.flow_id] = k
                flows.append(info)
                starts[k] = r.start_epoch
            info = flows[k]
            starts[k] = min(starts[k], r.start_epoch)
            keep.append(r)
            ys.append(info["label"])
            flow_idx.append(k)
            is_final = r.end_reason != "checkpoint"
            finals.append(is_final)
            ckpts.append(r.checkpoint)
            cpp.append(
                r.payload_pkts_toserver if info["client_is_initiator"] else r.payload_pkts_toclient
            )
            ends.append(r.end_epoch)
        if keep:
            X, _ = featurize(keep)
            Xs.append(X)
            n_rec += len(keep)
    return n_rec


def _label_flow(
    src: CaptureLabels, r: FlowRecord, unlabelled_as_benign: bool
) -> dict[str, Any] | None:
    label: str | None = None
    scenario = ""
    client_is_initiator = True
    if src.file is not None:
        row = src.file.lookup(src.name, r.proto, (r.src_ip, r.src_port), (r.dest_ip, r.dest_port))
        if row is not None:
            label, scenario = row.label, row.scenario
            client_is_initiator = row.client == (r.src_ip, r.src_port)
    elif src.folder_label is not None:
        label = src.folder_label
    if label is None:
        if not unlabelled_as_benign:
            return None
        label = BENIGN
    return {
        "capture": src.name,
        "path": os.fspath(src.capture),
        "scenario": scenario,
        "group": scenario or src.name,
        "label": label,
        "client_is_initiator": client_is_initiator,
        "proto": r.proto,
        "src_ip": r.src_ip,
        "src_port": r.src_port,
        "dest_ip": r.dest_ip,
        "dest_port": r.dest_port,
        "flow_id": r.flow_id,
    }
