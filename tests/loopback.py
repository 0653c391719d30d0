"""Real programs on 127.0.0.1 for tests and sample builders: dumpcap, a throwaway sshd and
ssh client, openssl s_server, and tshark's fields as the independent reference.

Every process started here is stopped by its PID; keys, configs and certificates live in
the caller's temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 5.0, ip: str = "127.0.0.1", proto: str = "tcp") -> None:
    """Wait for a listener (TCP) or a bound socket (UDP) on ip:port without connecting to it.

    A probe connection would leave packets (the server's banner, its FIN) that a capture
    started right after can pick up as an extra flow seen from the server's side. Only
    listening (TCP 0A) or bound (UDP 07) sockets count: TIME_WAIT leftovers of an earlier
    run on the same address would otherwise pass for a server.
    """
    want = f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"
    state = "0A" if proto == "tcp" else "07"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = (line.split() for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:])
        if any(r[1] == want and r[3] == state for r in rows):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing on {proto}/{port} at {ip}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def read_until(fd: int, marker: bytes, timeout: float = 15.0) -> bytes:
    """Read from a pipe until `marker` shows up (or fail after `timeout` seconds)."""
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"waited for {marker!r}, got {got[-200:]!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise EOFError(f"pipe closed before {marker!r}; got {got[-200:]!r}")
        got += chunk
    return got


@contextlib.contextmanager
def capture(path: Path, port: int, bpf: str | None = None) -> Iterator[Path]:
    """dumpcap on loopback for one TCP port (or a BPF filter); stops by PID on exit.

    Waits for dumpcap's "Capturing on" line, so no packet of the test is sent before the
    capture runs (a fixed sleep was not enough on a loaded machine)."""
    proc = subprocess.Popen(
        ["dumpcap", "-i", "lo", "-f", bpf or f"tcp port {port}", "-w", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        read_until(proc.stderr.fileno(), b"Capturing on")
        time.sleep(0.2)
        yield path
        time.sleep(0.5)
    finally:
        stop(proc)


@contextlib.contextmanager
def sshd(tmp: Path) -> Iterator[tuple[int, Path]]:
    """A throwaway sshd on 127.0.0.1 accepting one generated key for root: (port, key)."""
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True
        )
    (tmp / "authorized_keys").write_text((tmp / "client.pub").read_text())
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host'}\n"
        f"PidFile {tmp / 'sshd.pid'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
        "Ciphers +aes128-ctr,aes256-ctr,aes128-gcm@openssh.com\n"
        "MACs +hmac-sha1,hmac-sha2-256,hmac-sha2-256-etm@openssh.com,umac-64@openssh.com\n"
    )
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port, tmp / "client"
    finally:
        stop(proc)


def ssh_session(port: int, key: Path, cipher: str, mac: str, chunks: list[bytes]) -> None:
    """Log in, run `cat`, and write each chunk as its own channel-data message, waiting for
    each echo before the next write so that no two chunks share a packet."""
    cmd = ["ssh", "-T", "-p", str(port), "-i", str(key), "-o", "BatchMode=yes"]
    cmd += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    cmd += ["-o", f"Ciphers={cipher}", "-o", f"MACs={mac}", "root@127.0.0.1", "echo ready; cat"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        out = proc.stdout.fileno()
        read_until(out, b"ready\n")  # key exchange and authentication are done
        for chunk in chunks:
            proc.stdin.write(chunk)
            proc.stdin.flush()
            read_until(out, chunk)
        proc.stdin.close()
        proc.wait(15)
    finally:
        stop(proc)


def tshark_fields(
    tshark: str, pcap: Path, rule: str, filt: str, fields: list[str]
) -> list[list[str]]:
    cmd = [tshark, "-n", "-r", str(pcap), "-d", rule, "-Y", filt, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


@contextlib.contextmanager
def openssl_server(tmp: Path) -> Iterator[int]:
    """openssl s_server on 127.0.0.1 with a throwaway P-256 certificate for localhost,
    offering ALPN h2 and http/1.1: its port, once it listens."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp / "k"),
            "-out",
            str(tmp / "c"),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-key",
            str(tmp / "k"),
            "-cert",
            str(tmp / "c"),
            "-alpn",
            "h2,http/1.1",
            "-quiet",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port
    finally:
        stop(server)
