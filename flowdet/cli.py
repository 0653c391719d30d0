"""The `flowdet` command: thin click commands that parse, call a stage, and print.

Exit codes compose in shell pipelines: 0 clean, 1 alerts found, 2 usage or input error.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

import click

from flowdet import __version__
from flowdet.errors import FlowdetError

# Command name -> "module:attribute". Commands are imported only when run, so `flowdet flows`
# does not pay for scikit-learn, pyshark or the lab (about 0.13 s of start-up per run).
COMMANDS: dict[str, str] = {
    "flows": "flowdet.flows.command:flows_command",
    "score": "flowdet.score:score_command",
    "explain": "flowdet.explain:explain_command",
    "live": "flowdet.live.command:live_command",
    "interfaces": "flowdet.interfaces:interfaces_command",
    "train": "flowdet.train_cmd:train_command",
    "evaluate": "flowdet.train_cmd:evaluate_command",
    "lab": "flowdet.lab.commands:lab",
}


# Environment defaults a command sets before its modules load (numpy reads this at import):
# flows does no linear algebra, and OpenBLAS's worker threads would only spin at start-up
# (~2% of the CPU time of a 1M-packet run on 2 cores). A value set by the user wins.
COMMAND_ENV: dict[str, dict[str, str]] = {"flows": {"OPENBLAS_NUM_THREADS": "1"}}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        if "numpy" not in sys.modules:
            for key, value in COMMAND_ENV.get(cmd_name, {}).items():
                os.environ.setdefault(key, value)
        module, attr = target.split(":")
        command: click.Command = getattr(import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowdet")
def cli() -> None:
    """Find Stratum mining and SSH tunnels in packet captures and live traffic."""


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
