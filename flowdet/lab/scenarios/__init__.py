"""The scenario registry: every family module exposes `SCENARIOS: list[Scenario]`.

Families are written in parallel, so a module that is missing or fails to import is skipped
and reported (`broken()`), never fatal for the others: `flowdet lab list` shows why.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from flowdet.errors import LabError
from flowdet.lab.scenario import PROFILES, Scenario

FAMILIES = ("ssh", "mining", "benign")


def _load() -> tuple[list[Scenario], dict[str, str]]:
    found: list[Scenario] = []
    problems: dict[str, str] = {}
    for family in FAMILIES:
        name = f"{__name__}.{family}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not written yet
            problems[family] = f"{type(exc).__name__}: {exc}"
            continue
        except Exception as exc:  # a family being written must not break the others
            problems[family] = f"{type(exc).__name__}: {exc}"
            continue
        scenarios = getattr(module, "SCENARIOS", None)
        if not isinstance(scenarios, list) or not all(isinstance(s, Scenario) for s in scenarios):
            problems[family] = "module has no SCENARIOS: list[Scenario]"
            continue
        found.extend(scenarios)
    return found, problems


def all_scenarios() -> list[Scenario]:
    """Every registered scenario, in family order; duplicate names are an error."""
    found, _ = _load()
    names: set[str] = set()
    for s in found:
        if s.name in names:
            raise LabError(f"two scenarios are named {s.name!r}")
        names.add(s.name)
    return found


def broken() -> dict[str, str]:
    """Families whose module exists but cannot be used, with the reason."""
    return _load()[1]


def select(profile: str, names: Iterable[str] = ()) -> list[Scenario]:
    """The scenarios of `profile`, or exactly those `names` (in the order given)."""
    if profile not in PROFILES:
        raise LabError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    every = all_scenarios()
    by_name = {s.name: s for s in every}
    wanted = list(names)
    if wanted:
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise LabError(f"unknown scenario(s): {', '.join(unknown)} (see `flowdet lab list`)")
        return [by_name[n] for n in dict.fromkeys(wanted)]
    return [s for s in every if profile in s.profiles]
