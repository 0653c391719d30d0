"""The shared CLI options: commands built from them still line up with what they feed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from flows_synth import tcp_session, write_pcap

from flowdet.flows.command import flows_command
from flowdet.flows.config import FlowConfig
from flowdet.live.command import LiveSettings, live_command

# flows_command's own parameters; every other one is a FlowConfig field
FLOWS_OWN = {"captures", "fmt", "output", "checkpoints", "progress", "show_fields"}
HEAVY = ("sklearn", "numba", "pyshark")


def test_live_settings_are_exactly_the_live_options():
    # live_command builds LiveSettings(**options): a new option without a field (or a field
    # without an option) would fail only when live runs
    options = {p.name for p in live_command.params} - {"show_fields"}
    assert options == {f.name for f in dataclasses.fields(LiveSettings)}


def test_flows_table_options_are_flowconfig_fields_with_its_defaults():
    table = {p.name: p for p in flows_command.params if p.name not in FLOWS_OWN}
    fields = {f.name: f for f in dataclasses.fields(FlowConfig)}
    assert set(table) <= set(fields)
    assert {"idle_timeout_tcp", "max_flows", "vlan_in_key", "payload_bytes"} <= set(table)
    for name, param in table.items():
        assert param.default == fields[name].default, name


def test_flows_run_imports_no_scoring_or_dissector_modules(tmp_path: Path):
    path = tmp_path / "one.pcap"
    write_pcap(path, tcp_session(1.0, "10.0.0.1", 40000, "10.0.0.2", 80, [(100, 1500)]))
    code = (
        "import json, sys\n"
        "from flowdet.cli import cli\n"
        f"rc = cli.main(['flows', '--format', 'jsonl', {str(path)!r}], standalone_mode=False)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1  # the one flow record
    report = json.loads(res.stderr.strip().splitlines()[-1])
    assert report == {"rc": 0, "heavy": []}
