"""CPU cost of the detector's stages on the ~1M-packet mix: flows, records, features, model.

    python benchmarks/featurize_speed.py [--repeat 2] [--model M]

CPU seconds (process time) per stage, so that other work on a shared machine disturbs the
numbers less than wall time would; run it twice and compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import mix_path

from flowdet.features import featurize, signatures_of
from flowdet.flows import FlowConfig, iter_flow_blocks
from flowdet.model import Detector


def once(mix: Path, det: Detector) -> dict[str, float]:
    cfg = FlowConfig().with_default_checkpoints()
    t = {"records": 0.0, "signatures": 0.0, "features": 0.0, "predict": 0.0}
    n = 0
    start = time.process_time()
    for _, blk in iter_flow_blocks([str(mix)], cfg):
        a = time.process_time()
        recs = blk.records()
        b = time.process_time()
        sigs = signatures_of(recs)
        c = time.process_time()
        X, _ = featurize(recs, sigs)
        d = time.process_time()
        det.predict_proba(X)
        e = time.process_time()
        t["records"] += b - a
        t["signatures"] += c - b
        t["features"] += d - c
        t["predict"] += e - d
        n += len(recs)
    total = time.process_time() - start
    t["read+flows"] = total - sum(t.values())
    t["total"] = total
    t["n_records"] = n
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--model")
    args = ap.parse_args()
    det = Detector.load(args.model)
    mix = mix_path()
    for i in range(args.repeat):
        t = once(mix, det)
        parts = ", ".join(
            f"{k} {t[k]:.1f}"
            for k in ("read+flows", "records", "signatures", "features", "predict", "total")
        )
        print(f"run {i + 1}: {int(t['n_records'])} records; CPU s: {parts}")


if __name__ == "__main__":
    main()
