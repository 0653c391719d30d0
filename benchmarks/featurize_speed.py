"""CPU cost of the detector's stages on the ~1M-packet mix: flows, inputs, features, model.

    python benchmarks/featurize_speed.py [--repeat 2] [--model M] [--records]

CPU seconds (process time) per stage, so that other work on a shared machine disturbs the
numbers less than wall time would; run it twice and compare. Every record is featurized
(checkpoints and records outside the model's domain too, unlike `flowdet score`, which
skips those), so the numbers are per-stage costs, not a score run:

- columns: what the featurizer reads, straight from each FlowBlock's columns
  (flowdet.features.inputs_of_block and block_payloads; what `flowdet score` does);
- records (with --records): the same through FlowBlock.records() (FlowRecord objects,
  what training and `featurize(records)` use), for comparison;
- signatures: one recognizer pass per distinct pair of payload prefixes in a block;
- features: flowdet.features.featurize_inputs;
- predict: Detector.predict_proba (rows the domain gate makes benign skip the trees).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import mix_path

from flowdet.features import (
    block_payloads,
    featurize_inputs,
    inputs_of_block,
    inputs_of_records,
    signatures_of_payloads,
)
from flowdet.flows import FlowConfig, iter_flow_blocks
from flowdet.model import Detector

STAGES = ("read+flows", "columns", "records", "signatures", "features", "predict", "total")


def once(mix: Path, det: Detector, records: bool) -> dict[str, float]:
    cfg = FlowConfig().with_default_checkpoints()
    t = dict.fromkeys(STAGES[1:-1], 0.0)
    n = 0
    start = time.process_time()
    for _, blk in iter_flow_blocks([str(mix)], cfg):
        a = time.process_time()
        inputs = inputs_of_block(blk)
        pays = block_payloads(blk)
        b = time.process_time()
        if records:
            recs = blk.records()
            inputs_of_records(recs)
        c = time.process_time()
        sigs = signatures_of_payloads(pays)
        d = time.process_time()
        X = featurize_inputs(inputs, sigs)
        e = time.process_time()
        det.predict_proba(X)
        f = time.process_time()
        t["columns"] += b - a
        t["records"] += c - b
        t["signatures"] += d - c
        t["features"] += e - d
        t["predict"] += f - e
        n += len(blk)
    total = time.process_time() - start
    t["read+flows"] = total - sum(t.values())
    t["total"] = total
    t["n_records"] = n
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--model")
    ap.add_argument("--records", action="store_true", help="also time FlowBlock.records()")
    args = ap.parse_args()
    det = Detector.load(args.model)
    mix = mix_path()
    for i in range(args.repeat):
        t = once(mix, det, args.records)
        parts = ", ".join(f"{k} {t[k]:.2f}" for k in STAGES if k != "records" or args.records)
        print(f"run {i + 1}: {int(t['n_records'])} records; CPU s: {parts}")


if __name__ == "__main__":
    main()
