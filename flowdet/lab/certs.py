"""Throwaway TLS for the lab's emulators: self-signed certificates and server contexts.

The benign servers and the mining pools both terminate real TLS (the handshake is part of
what the model sees), with P-256 certificates made by openssl(1) in the run's scratch
directory. Clients that verify use the certificate itself as their CA file.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path

from flowdet.errors import LabError


def make_certificate(
    directory: Path, names: Sequence[str], ips: Sequence[str] = ()
) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for `names` (the first is the subject) and `ips`, via
    openssl(1); one already made in `directory` for the same first name is reused."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = names[0].replace("*", "wild")
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    if cert.exists() and key.exists():
        return cert, key
    san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for a in ips])
    cmd = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "30", "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={san}",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f"openssl could not make a certificate for {names[0]}: {exc}") from exc
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2 or later, as current servers and pools offer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx
