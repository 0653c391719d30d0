"""The programs the lab drives, the Debian packages that ship them, and their versions.

The lab refuses to start rather than fail halfway: every missing program is named together
with the package to install, in one line, so `apt-get install` is the whole fix.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable

from flowdet.errors import LabError

# program -> Debian package that ships it
PACKAGES: dict[str, str] = {
    "ip": "iproute2",
    "ss": "iproute2",
    "ethtool": "ethtool",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "scp": "openssh-client",
    "sftp": "openssh-client",
    "dumpcap": "wireshark-common",
    "tcpdump": "tcpdump",
    "tshark": "tshark",
    "rsync": "rsync",
    "git": "git",
    "dbclient": "dropbear-bin",
    "dropbearconvert": "dropbear-bin",
    "curl": "curl",
    "openssl": "openssl",
}

CORE = ("ip", "ss", "ethtool", "tshark", "sshd", "ssh", "ssh-keygen")
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def which(program: str) -> str | None:
    """Like shutil.which, but also looks in the sbin directories a non-login PATH may lack."""
    found = shutil.which(program)
    if found:
        return found
    for d in SBIN:
        path = os.path.join(d, program)
        if os.access(path, os.X_OK):
            return path
    return None


def require(programs: Iterable[str]) -> dict[str, str]:
    """Absolute paths of `programs`, or one LabError naming every missing one and its package."""
    paths: dict[str, str] = {}
    missing: list[str] = []
    for prog in programs:
        path = which(prog)
        if path is None:
            missing.append(f"{prog} (Debian package {PACKAGES.get(prog, prog)})")
        else:
            paths[prog] = path
    if missing:
        raise LabError("the lab needs programs that are not installed: " + ", ".join(missing))
    return paths


def capture_program() -> tuple[str, str]:
    """('dumpcap', path), or ('tcpdump', path) as the fallback, or LabError."""
    for prog in ("dumpcap", "tcpdump"):
        path = which(prog)
        if path:
            return prog, path
    raise LabError(
        "the lab needs a capture program: dumpcap (Debian package wireshark-common) "
        "or tcpdump (Debian package tcpdump)"
    )


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "`flowdet lab` needs root (it creates network namespaces, veth pairs and TUN "
            "devices and captures on them); run it as root or with sudo"
        )
    if not os.path.exists("/dev/net/tun"):
        raise LabError("the lab needs /dev/net/tun (kernel TUN support) for its WAN delay line")


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def versions() -> dict[str, str]:
    """Versions of everything that shaped the captures, for manifest.json."""
    found: dict[str, str] = {
        "python": sys.version.split()[0],
        "kernel": platform.release(),
    }
    probes = {
        "openssh": ["ssh", "-V"],
        "dumpcap": ["dumpcap", "--version"],
        "tcpdump": ["tcpdump", "--version"],
        "tshark": ["tshark", "--version"],
        "iproute2": ["ip", "-V"],
        "rsync": ["rsync", "--version"],
        "git": ["git", "--version"],
        "curl": ["curl", "--version"],
        "openssl": ["openssl", "version"],
        "dropbear": ["dbclient", "-V"],
    }
    for name, argv in probes.items():
        path = which(argv[0])
        if path:
            found[name] = _first_line([path, *argv[1:]])
    return found
