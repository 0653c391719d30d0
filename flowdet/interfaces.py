"""Capture interfaces and the capture program: `flowdet interfaces`, and the checks `live` runs.

dumpcap is the program that captures (Wireshark's own privilege-separated capture engine);
it is found through pyshark's lookup (PATH, then Wireshark's usual install places), so
flowdet finds the same dumpcap that tshark and pyshark use. Listing interfaces does not need
capture permission, so permission is checked separately by asking dumpcap for the link
types of an interface, which opens it like a capture would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import click

from flowdet.errors import FlowdetError

_TIMEOUT_S = 20.0


class CaptureSetupError(FlowdetError):
    """dumpcap is missing, cannot capture here, or refused an interface."""


@dataclass(frozen=True, slots=True)
class Interface:
    index: int
    name: str
    description: str
    addresses: tuple[str, ...]
    loopback: bool


def find_dumpcap() -> str:
    """Path of dumpcap (pyshark's lookup first, then PATH); CaptureSetupError when absent."""
    path: str | None = None
    try:
        from pyshark.tshark.tshark import get_process_path

        found = get_process_path(process_name="dumpcap")
        if found and os.access(found, os.X_OK):
            path = found
    except Exception:  # pyshark raises its own not-found type; fall back to PATH either way
        path = None
    path = path or shutil.which("dumpcap")
    if not path:
        raise CaptureSetupError(
            "dumpcap not found: install Wireshark's capture tool (Debian: apt-get install "
            "tshark, which brings dumpcap)"
        )
    return path


def first_error_line(text: str) -> str:
    """dumpcap's reason in one line: the first line that says what went wrong."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    for ln in lines:
        low = ln.lower()
        if ln.startswith("dumpcap:") or "permission" in low or "no such" in low:
            return ln.removeprefix("dumpcap: ").strip()
    return lines[0] if lines else "no message"


def parse_machine_list(text: str) -> list[Interface]:
    """`dumpcap -D -M` lines: `N. name<TAB>vendor<TAB>friendly<TAB>type<TAB>addrs<TAB>kind`."""
    out: list[Interface] = []
    for line in text.splitlines():
        head, dot, rest = line.partition(". ")
        if not dot or not head.strip().isdigit():
            continue
        cols = rest.split("\t")
        cols += [""] * (6 - len(cols))
        name, _vendor, friendly, _iftype, addrs, kind = cols[:6]
        out.append(
            Interface(
                index=int(head),
                name=name,
                description=friendly,
                addresses=tuple(a for a in addrs.split(",") if a),
                loopback=kind.strip() == "loopback",
            )
        )
    return out


def list_interfaces(dumpcap: str | None = None) -> list[Interface]:
    dumpcap = dumpcap or find_dumpcap()
    try:
        proc = subprocess.run(
            [dumpcap, "-D", "-M"], capture_output=True, text=True, timeout=_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CaptureSetupError(f"dumpcap -D failed: {exc}") from None
    if proc.returncode != 0:
        raise CaptureSetupError(f"dumpcap cannot list interfaces: {first_error_line(proc.stderr)}")
    return parse_machine_list(proc.stdout)


def check_can_capture(iface: str, dumpcap: str | None = None, prefix: str = "") -> None:
    """Open `iface` the way a capture would (dumpcap -L); CaptureSetupError with the reason."""
    dumpcap = dumpcap or find_dumpcap()
    try:
        proc = subprocess.run(
            [dumpcap, "-L", "-i", iface], capture_output=True, text=True, timeout=_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CaptureSetupError(f"{prefix}dumpcap -L -i {iface} failed: {exc}") from None
    if proc.returncode != 0:
        raise CaptureSetupError(
            f"{prefix}cannot capture on {iface}: {describe_failure(proc.stderr)}"
        )


def describe_failure(stderr: str) -> str:
    """dumpcap's stderr -> one line, with the fix for the common permission problem."""
    reason = first_error_line(stderr)
    low = stderr.lower()
    if "not permitted" in low or "permission" in low:
        return (
            f"{reason} (no permission to capture: run as root, or give dumpcap "
            "cap_net_raw,cap_net_admin / add the user to the wireshark group)"
        )
    return reason


@click.command("interfaces")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Also check that capturing is permitted (opens the first interface).",
)
def interfaces_command(check: bool) -> int:
    """List the interfaces `flowdet live -i` can capture on (from dumpcap -D).

    One line per interface: index, name, description, addresses. Exit status 2 with a
    one-line reason when dumpcap is missing or lacks permission to capture.
    """
    dumpcap = find_dumpcap()
    ifaces = list_interfaces(dumpcap)
    if not ifaces:
        raise CaptureSetupError("dumpcap lists no capture interfaces")
    if check:
        probe = next((i.name for i in ifaces if i.loopback), ifaces[0].name)
        check_can_capture(probe, dumpcap)
    for i in ifaces:
        desc = f" ({i.description})" if i.description else ""
        addrs = f"  {', '.join(i.addresses)}" if i.addresses else ""
        click.echo(f"{i.index}. {i.name}{desc}{addrs}")
    sys.stdout.flush()
    return 0
