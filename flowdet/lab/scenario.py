"""The contract between the lab's runner and its scenarios.

A scenario is a function that drives real programs across the lab's hosts and says which
connections it made and what they are. The runner owns everything around it: namespaces,
the WAN-like delay line, the capture, cleanup by PID, and turning `Expect`s into rows of
`labels.tsv` by finding the matching flows in the scenario's own capture (client ports are
ephemeral, so the capture, not the scenario, is the authority on them).
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

LABELS = ("benign", "mining", "ssh-tunnel")
PROFILES = ("quick", "standard", "full")


@dataclass(frozen=True, slots=True)
class Expect:
    """Every flow from `client` to `server`:`server_port`/`proto` in this capture gets `label`."""

    client: str  # host name, e.g. "sandbox"
    server: str  # host name, e.g. "outside"
    server_port: int
    proto: str  # "tcp" or "udp"
    label: str  # one of LABELS


class Lab(Protocol):
    """What a scenario may ask of the running lab."""

    hosts: Sequence[str]  # "sandbox" (inside, the monitored host), "outside", "outside2"

    def ip(self, host: str) -> str:
        """The host's address on the monitored link."""
        ...

    def spawn(
        self,
        host: str,
        argv: Sequence[str],
        *,
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a program inside `host`'s namespace; the lab stops it by PID at teardown."""
        ...

    def wait_port(self, host: str, port: int, proto: str = "tcp", timeout: float = 10.0) -> None:
        """Block until something listens on `port` in `host`, or raise LabError."""
        ...

    @property
    def workdir(self) -> Path:
        """A scratch directory for keys, configs and certificates; removed at teardown."""
        ...

    # Added after the first version (additive; scenarios need not use them):

    def sleep(self, seconds: float) -> None:
        """time.sleep that raises LabError at once if the run is interrupted or over budget,
        so long waits in standard/full profiles do not hold up teardown."""
        ...

    def note(self, **facts: object) -> None:
        """Record JSON-able facts about this run (cipher, port, rates) in manifest.json."""
        ...


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, labelled piece of traffic. `run` returns once its traffic is done."""

    name: str
    label: str
    description: str
    profiles: frozenset[str]  # profiles that include it; "full" should include everything
    run: Callable[[Lab, random.Random, str], list[Expect]] = field(repr=False)
    # run(lab, rng, profile) -> expectations; profile scales durations (quick: seconds)
