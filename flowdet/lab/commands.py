"""`flowdet lab`: make labelled captures from real programs in network namespaces."""

from __future__ import annotations

import json
from pathlib import Path

import click

from flowdet.errors import LabError
from flowdet.lab.scenario import PROFILES


@click.group("lab")
def lab() -> None:
    """Generate labelled captures from real programs (OpenSSH, miners' emulators, servers).

    Every scenario runs in its own network namespaces: a monitored host `sandbox` and the
    outside hosts `outside` and `outside2`, joined through a router and a userspace WAN
    (20-150 ms RTT, jitter, a little loss). The capture is taken next to the sandbox. Needs
    root; traffic never leaves the lab's namespaces.
    """


@lab.command("list")
@click.option("--profile", type=click.Choice(PROFILES), help="only the scenarios of this profile")
def list_cmd(profile: str | None) -> None:
    """List the registered scenarios: name, label, profiles, description."""
    from flowdet.lab import scenarios

    for s in scenarios.all_scenarios():
        if profile and profile not in s.profiles:
            continue
        profs = ",".join(p for p in PROFILES if p in s.profiles)
        click.echo(f"{s.name}\t{s.label}\t{profs}\t{s.description}")
    for family, why in scenarios.broken().items():
        click.echo(f"flowdet: scenario family {family!r} skipped: {why}", err=True)


@lab.command("generate")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default="quick",
    show_default=True,
    help="quick: seconds per scenario (CI); standard: < 30 min in all; full: long sessions",
)
@click.option(
    "--scenario",
    "names",
    multiple=True,
    metavar="NAME",
    help="run only this scenario (repeatable; see `flowdet lab list`)",
)
@click.option("--seed", type=int, default=1, show_default=True, help="seed for every choice")
@click.option("--jobs", type=int, help="scenarios run side by side (default by profile)")
@click.option(
    "--capture-loopback",
    is_flag=True,
    help="also capture the sandbox's loopback to <scenario>-<seed>.lo.pcapng "
    "(shows the inner end of tunnels in clear; for tests)",
)
@click.option("--keep-logs", is_flag=True, help="keep every program's log under OUTDIR/logs")
def generate(
    outdir: Path,
    profile: str,
    names: tuple[str, ...],
    seed: int,
    jobs: int | None,
    capture_loopback: bool,
    keep_logs: bool,
) -> int:
    """Run scenarios into OUTDIR: one <scenario>-<seed>.pcapng each, labels.tsv, manifest.json.

    Exit status: 0 if every scenario ran and every expected flow was found in its capture,
    1 if some scenario failed (the others still run and are labelled), 2 if the lab cannot
    run here (not root, a program missing), 130 if interrupted (everything is cleaned up).
    """
    from flowdet.lab import scenarios
    from flowdet.lab.runner import Runner

    if jobs is not None and jobs < 1:
        raise LabError("--jobs must be at least 1")
    chosen = scenarios.select(profile, names)
    for family, why in scenarios.broken().items():
        click.echo(f"flowdet: scenario family {family!r} skipped: {why}", err=True)
    if not chosen:
        raise LabError(f"no scenarios to run for profile {profile!r}")
    runner = Runner(
        outdir,
        chosen,
        profile=profile,
        seed=seed,
        jobs=jobs,
        capture_loopback=capture_loopback,
        keep_logs=keep_logs,
        progress=lambda msg: click.echo(f"lab: {msg}", err=True),
    )
    report = runner.run()
    for r in report.failed:
        click.echo(f"flowdet: scenario {r.name} failed: {r.error}", err=True)
    ok = len(report.results) - len(report.failed)
    click.echo(
        f"lab: {ok}/{len(report.results)} scenarios ok; captures, labels.tsv and "
        f"manifest.json in {outdir}",
        err=True,
    )
    return 1 if report.failed else 0


@lab.command("cleanup")
@click.argument("outdir", type=click.Path(file_okay=False, exists=True, path_type=Path))
def cleanup(outdir: Path) -> None:
    """Finish the teardown of a run that was killed (SIGKILL, power loss) from its state file."""
    from flowdet.lab import tools
    from flowdet.lab.runner import STATE_FILE
    from flowdet.lab.topology import cleanup_state

    tools.require_root()
    path = outdir / STATE_FILE
    if not path.exists():
        raise LabError(f"no lab state file in {outdir}")
    try:
        done = cleanup_state(path)
    except (ValueError, json.JSONDecodeError) as exc:
        raise LabError(f"unreadable lab state file {path}: {exc}") from exc
    for item in done:
        click.echo(f"removed {item}")
    click.echo(f"lab: {len(done)} leftovers removed", err=True)
