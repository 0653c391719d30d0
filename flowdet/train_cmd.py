"""`flowdet train` and `flowdet evaluate`: thin click commands over flowdet.training."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from flowdet.errors import FlowdetError


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def _write_report(path: str | None, rep: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(rep, indent=2) + "\n")
        _log(f"report written to {path}")


def _parse_thresholds(items: tuple[str, ...]) -> dict[str, float] | None:
    if not items:
        return None
    from flowdet.model import DEFAULT_THRESHOLDS

    out = dict(DEFAULT_THRESHOLDS)
    for item in items:
        name, sep, value = item.partition("=")
        try:
            v = float(value)
        except ValueError:
            v = -1.0
        if not sep or name not in out or not 0.0 < v <= 1.0:
            raise FlowdetError(
                f"bad --threshold {item!r} (use CLASS=P with CLASS one of "
                f"{', '.join(out)} and 0 < P <= 1)"
            )
        out[name] = v
    return out


_DATA_HELP = """
DATA are capture files or folders (searched recursively). Labels come from, in order: the
file given with --labels (rows matched on the capture's file name), a labels.tsv beside each
capture (the lab's layout; the mining-real corpus's `other` means benign), or a folder named
after a label (DATA/mining/*.pcap). A labels file needs the tab-separated columns pcap,
client_ip, client_port, server_ip, server_port, label (proto and scenario optional); rows
match flows by 5-tuple in either direction. Flows without a label are skipped and counted,
unless --unlabelled-benign.
"""


@click.command(
    "train",
    help="Train a detector on labelled captures; write the model and its JSON model card.\n"
    + _DATA_HELP
    + """
Every flow is read with the detector's checkpoints on (pkts:8,16,32,64,128, secs:10,60,300)
and the model is trained on each checkpoint snapshot and the final record, weighted so that
each flow counts once, a scenario of many flows does not drown the others, and each class
weighs the same (SSH-tunnel prefixes under 32 packets, only handshake, are not fitted). The
report (stderr, and --report as JSON)
comes from grouped cross-validation: a lab scenario (or a capture) is never in the training
and the test folds at once. Same data and --seed give the same model card metrics.

\b
Example (the default model; see flowdet/models/README.md):
  flowdet train /work/data/lab-standard /work/data/lab-ssh3 /work/data/lab-ssh4 \\
      /work/data/lab-extra /work/data/lab-mos9 /work/data/lab-mos10 \\
      /work/data/lab-mos11 ../shared/corpus/mining-real \\
      --benign ../shared/corpus/zeek-traces -o flowdet/models/default.joblib --seed 1
""",
)
@click.argument("data", nargs=-1, required=True)
@click.option("--labels", "labels", type=click.Path(), help="labels.tsv for all DATA")
@click.option("-o", "--output", required=True, type=click.Path(), help="model file (.joblib)")
@click.option("--seed", default=0, show_default=True, help="seed for CV folds and the model")
@click.option("--folds", default=5, show_default=True, help="cross-validation folds (at most)")
@click.option("--report", "report_path", type=click.Path(), help="also write the report as JSON")
@click.option(
    "--unlabelled-benign", is_flag=True, help="treat flows missing from the labels as benign"
)
@click.option(
    "--benign",
    "benign",
    multiple=True,
    type=click.Path(),
    help="captures or folders whose every flow is benign (repeatable)",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="CLASS=P",
    help="decision threshold stored in the card (default mining=0.5, ssh-tunnel=0.5)",
)
def train_command(
    data: tuple[str, ...],
    labels: str | None,
    output: str,
    seed: int,
    folds: int,
    report_path: str | None,
    unlabelled_benign: bool,
    benign: tuple[str, ...],
    thresholds: tuple[str, ...],
) -> None:
    from flowdet.dataset import build_dataset
    from flowdet.training import format_report, train

    th = _parse_thresholds(thresholds)
    if not output.endswith(".joblib"):
        raise FlowdetError(f"model file {output!r} must end in .joblib")
    ds = build_dataset(data, labels, unlabelled_benign, progress=_log, benign=benign)
    _log(
        f"train: {ds.summary['flows']} labelled flows "
        f"({', '.join(f'{k} {v}' for k, v in ds.summary['flows_per_label'].items())}), "
        f"{len(ds)} records, {ds.summary['groups']} groups; "
        f"{ds.summary['unlabelled_flows_skipped']} unlabelled flows skipped"
    )
    cmd = "flowdet train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    det, rep = train(ds, seed=seed, n_splits=folds, thresholds=th, command=cmd, log=_log)
    det.save(output)
    _log(format_report(rep, f"cross-validation ({rep['cv']['folds']} grouped folds)"))
    _log(f"model written to {output} (card: {Path(output).name.removesuffix('.joblib')}.card.json)")
    _write_report(report_path, {"data": ds.summary, **rep})


@click.command(
    "evaluate",
    help="Measure a model on labelled captures: precision, recall, F1, false-positive rate "
    "and confusion matrix, on final records and on early checkpoints.\n" + _DATA_HELP,
)
@click.argument("data", nargs=-1, required=True)
@click.option("--labels", "labels", type=click.Path(), help="labels.tsv for all DATA")
@click.option("--model", "model_path", type=click.Path(), help="model file (default: shipped)")
@click.option("--report", "report_path", type=click.Path(), help="also write the report as JSON")
@click.option(
    "--unlabelled-benign", is_flag=True, help="treat flows missing from the labels as benign"
)
@click.option("--threshold", "thresholds", multiple=True, metavar="CLASS=P")
def evaluate_command(
    data: tuple[str, ...],
    labels: str | None,
    model_path: str | None,
    report_path: str | None,
    unlabelled_benign: bool,
    thresholds: tuple[str, ...],
) -> None:
    from flowdet.dataset import build_dataset
    from flowdet.model import Detector
    from flowdet.training import format_report, report

    det = Detector.load(model_path)
    th = _parse_thresholds(thresholds) or det.thresholds
    ds = build_dataset(data, labels, unlabelled_benign, progress=_log, what="evaluate")
    if len(ds) == 0:
        raise FlowdetError("no labelled flows in DATA: nothing to evaluate")
    proba = det.predict_proba(ds.X)
    rep = report(ds, proba, th)
    _log(format_report(rep, f"evaluation of {model_path or 'the default model'}"))
    _write_report(report_path, {"data": ds.summary, **rep})
