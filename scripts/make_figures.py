"""Regenerate the README's figures (docs/img/*.png) from the committed sample captures.

    .venv/bin/python scripts/make_figures.py            # pcaps/ -> docs/img/
    .venv/bin/python scripts/make_figures.py --samples DIR --out DIR

The pictures come from flowdet.plots, the helpers notebooks/walkthrough.ipynb calls, so the
README shows what the notebook shows. Exit status 2 with one line on stderr when the
samples cannot be read (no labels.tsv, no labelled flow, a broken capture).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", default=str(REPO / "pcaps"), help="captures + labels.tsv")
    ap.add_argument("--out", default=str(REPO / "docs" / "img"), help="where the PNGs go")
    ap.add_argument("--model", default=None, help="model file (default: the shipped one)")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, work without a display

    from flowdet.errors import FlowdetError
    from flowdet.model import Detector
    from flowdet.plots import write_figures

    try:
        paths = write_figures(args.samples, args.out, Detector.load(args.model))
    except FlowdetError as exc:
        print(f"make_figures: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
