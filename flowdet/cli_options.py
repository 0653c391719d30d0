"""Click options that mean the same thing in several commands, declared once.

Only click and the standard library are imported here: `flowdet flows` loads this module,
and must not pay for scikit-learn, numba or pyshark. An option whose type or default differs
between commands (--format, train's and evaluate's --model) stays with its command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_HELP = "Write records here instead of stdout."
PROGRESS_HELP = "Progress line on stderr [default: only when stderr is a terminal]."


def output_option(help: str = OUTPUT_HELP) -> Callable[[F], F]:
    """-o/--output: a file for the records, '-' (the default) for stdout.

    A command passes its own help only to add what it does differently (live flushes per
    record)."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, writable=True),
        default="-",
        help=help,
    )


def progress_option(help: str = PROGRESS_HELP) -> Callable[[F], F]:
    """--progress/--no-progress: None unless given, so the command can follow the terminal."""
    return click.option("--progress/--no-progress", default=None, help=help)


def fields_option(help: str) -> Callable[[F], F]:
    """--fields: print the command's record fields and exit (each command has its own)."""
    return click.option("--fields", "show_fields", is_flag=True, help=help)


def alert_pcap_option(help: str) -> Callable[[F], F]:
    """--alert-pcap DIR: alerted flows' packets written under DIR (the command says how)."""
    return click.option(
        "--alert-pcap", type=click.Path(file_okay=False), default=None, metavar="DIR", help=help
    )


def model_option() -> Callable[[F], F]:
    """--model for the commands that score: None means the shipped model."""
    return click.option("--model", default=None, metavar="M", help="Model file [default: shipped].")


def threshold_option() -> Callable[[F], F]:
    """--threshold LABEL=P (repeatable), parsed by flowdet.verdicts.parse_thresholds."""
    return click.option(
        "--threshold",
        "thresholds",
        multiple=True,
        metavar="LABEL=P",
        help="Override the model's threshold for a label (repeatable), e.g. mining=0.8.",
    )
