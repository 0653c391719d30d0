"""The `flowdet` command: thin click commands that parse, call a stage, and print.

Exit codes compose in shell pipelines: 0 clean, 1 alerts found, 2 usage or input error.
"""

from __future__ import annotations

import sys

import click

from flowdet import __version__
from flowdet.errors import FlowdetError
from flowdet.explain import explain_command
from flowdet.flows.command import flows_command
from flowdet.interfaces import interfaces_command
from flowdet.lab.commands import lab as lab_command
from flowdet.live.command import live_command
from flowdet.score import score_command
from flowdet.train_cmd import evaluate_command, train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowdet")
def cli() -> None:
    """Find Stratum mining and SSH tunnels in packet captures and live traffic."""


cli.add_command(lab_command)
cli.add_command(flows_command)
cli.add_command(score_command)
cli.add_command(explain_command)
cli.add_command(train_command)
cli.add_command(evaluate_command)
cli.add_command(live_command)
cli.add_command(interfaces_command)


def main() -> None:
    """Console entry point: turn FlowdetError into one line on stderr and exit code 2."""
    try:
        rv = cli.main(standalone_mode=False)
    except FlowdetError as exc:
        click.echo(f"flowdet: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("flowdet: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        click.echo("flowdet: interrupted", err=True)
        sys.exit(130)
    # ctx.exit(n) and commands returning an int set the exit code (1 = alerts found).
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
