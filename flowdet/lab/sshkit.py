"""Real OpenSSH inside the lab: keys, sshd and client configs, and a person at the keyboard.

Everything lives in the lab's workdir: host keys, one client key per lab host, a shared
authorized_keys (every lab host may log in to every other as root), per-host client configs
with their own known_hosts, and no agent. sshd runs as root in the foreground (`-D -e -f`)
on the lab's addresses only. Sessions get HOME and HISTFILE pointing into the workdir
(sshd's SetEnv), so shells, vim and git leave nothing in the real /root.

Algorithm choices (cipher, MAC, key exchange, host key type, compression, keepalives) come
from the scenario's seed, weighted towards what real clients negotiate, so the model sees the
packet-size variety of real SSH rather than one fixed profile.
"""

from __future__ import annotations

import fcntl
import math
import os
import random
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from flowdet.errors import LabError
from flowdet.lab.scenario import Lab

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

# (cipher, mac, weight); mac None = implicit (AEAD) or the client's default preference
CIPHERS: tuple[tuple[str | None, str | None, float], ...] = (
    (None, None, 0.30),  # OpenSSH default: chacha20-poly1305@openssh.com
    ("chacha20-poly1305@openssh.com", None, 0.10),
    ("aes128-gcm@openssh.com", None, 0.15),
    ("aes256-gcm@openssh.com", None, 0.15),
    ("aes128-ctr", "hmac-sha2-256-etm@openssh.com", 0.12),
    ("aes256-ctr", "hmac-sha2-256-etm@openssh.com", 0.10),
    ("aes128-ctr", "umac-64-etm@openssh.com", 0.04),
    ("aes256-ctr", "hmac-sha2-512-etm@openssh.com", 0.04),
)
KEXES: tuple[tuple[str | None, float], ...] = (
    (None, 0.45),  # OpenSSH 9.x default: sntrup761x25519-sha512@openssh.com
    ("curve25519-sha256", 0.35),
    ("ecdh-sha2-nistp256", 0.12),
    ("diffie-hellman-group14-sha256", 0.08),
)
HOSTKEY_SETS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("ed25519", "ecdsa", "rsa"), 0.45),  # a stock Debian server: the client picks ed25519
    (("ed25519",), 0.25),
    (("ecdsa",), 0.10),
    (("rsa",), 0.20),
)
PORTS: tuple[tuple[int, float], ...] = ((22, 0.6), (443, 0.2), (2222, 0.2))


T = TypeVar("T")


def weighted(rng: random.Random, options: Sequence[tuple[T, float]]) -> T:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


@dataclass(frozen=True, slots=True)
class SshCrypto:
    """What the client asks for first; the server accepts OpenSSH's defaults."""

    cipher: str | None
    mac: str | None
    kex: str | None
    compression: bool

    @classmethod
    def choose(cls, rng: random.Random) -> SshCrypto:
        cipher, mac = weighted(rng, [((c, m), w) for c, m, w in CIPHERS])
        return cls(cipher, mac, weighted(rng, KEXES), rng.random() < 0.25)

    def options(self) -> list[str]:
        opts = ["-o", f"Compression={'yes' if self.compression else 'no'}"]
        if self.cipher:
            opts += ["-o", f"Ciphers=^{self.cipher}"]
        if self.mac:
            opts += ["-o", f"MACs=^{self.mac}"]
        if self.kex:
            opts += ["-o", f"KexAlgorithms=^{self.kex}"]
        return opts

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def choose_port(rng: random.Random) -> int:
    return weighted(rng, PORTS)


def _keygen(path: Path, kind: str) -> None:
    args = {"ed25519": ["-t", "ed25519"], "ecdsa": ["-t", "ecdsa", "-b", "256"]}
    argv = ["ssh-keygen", "-q", "-N", "", "-C", f"lab-{path.name}", "-f", str(path)]
    argv += args.get(kind, ["-t", "rsa", "-b", "3072"])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise LabError(f"ssh-keygen {kind}: {out.stderr.strip()}")


class SshWorld:
    """Keys, configs and servers for OpenSSH across one lab's hosts."""

    def __init__(self, lab: Lab, rng: random.Random) -> None:
        self.lab = lab
        self.rng = rng
        self.dir = lab.workdir / "ssh"
        self.dir.mkdir(exist_ok=True)
        self.authorized = self.dir / "authorized_keys"
        self.authorized.touch()
        self.servers: dict[tuple[str, int], dict[str, object]] = {}
        self.keys: dict[str, Path] = {}
        for host in lab.hosts:
            self._client_files(host)

    def home(self, host: str) -> Path:
        path = self.lab.workdir / "home" / host
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _client_files(self, host: str) -> None:
        d = self.dir / host
        d.mkdir(exist_ok=True)
        kind = weighted(self.rng, [("ed25519", 0.7), ("ecdsa", 0.1), ("rsa", 0.2)])
        key = d / f"id_{kind}"
        _keygen(key, kind)
        self.keys[host] = key
        with open(self.authorized, "a") as f:
            f.write(Path(f"{key}.pub").read_text())
        (d / "ssh_config").write_text(
            "Host *\n"
            "    User root\n"
            f"    IdentityFile {key}\n"
            "    IdentitiesOnly yes\n"
            "    IdentityAgent none\n"
            f"    UserKnownHostsFile {d / 'known_hosts'}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking accept-new\n"
            "    UpdateHostKeys no\n"
            "    BatchMode yes\n"
            "    EscapeChar none\n"
            "    AddressFamily inet\n"
            "    ConnectTimeout 20\n"
            "    LogLevel ERROR\n"
        )

    def config(self, host: str) -> Path:
        return self.dir / host / "ssh_config"

    def start_sshd(
        self,
        host: str,
        port: int,
        *,
        address: str | None = None,
        client_alive: int = 0,
        extra: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """sshd in `host` on `address`:`port` (default: the host's lab address)."""
        address = address or self.lab.ip(host)
        d = self.dir / f"sshd-{host}-{port}"
        d.mkdir(exist_ok=True)
        kinds = weighted(self.rng, HOSTKEY_SETS)
        for kind in kinds:
            _keygen(d / f"ssh_host_{kind}_key", kind)
        home = self.home(host)
        lines = [
            f"ListenAddress {address}:{port}",
            *(f"HostKey {d / f'ssh_host_{k}_key'}" for k in kinds),
            "PidFile none",
            f"AuthorizedKeysFile {self.authorized}",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "AllowTcpForwarding yes",
            "GatewayPorts no",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel VERBOSE",
            f"SetEnv HOME={home} HISTFILE={home}/.bash_history",
            f"Subsystem sftp {SFTP_SERVER}",
            *extra,
        ]
        if client_alive:
            lines += [f"ClientAliveInterval {client_alive}", "ClientAliveCountMax 3"]
        cfg = d / "sshd_config"
        cfg.write_text("\n".join(lines) + "\n")
        proc = self.lab.spawn(host, [SSHD, "-D", "-e", "-f", str(cfg)])
        self.lab.wait_port(host, port)
        self.servers[(host, port)] = {"hostkeys": list(kinds), "address": address}
        return proc

    def ssh(
        self,
        host: str,
        dest: str,
        port: int,
        crypto: SshCrypto,
        *args: str,
        options: Sequence[str] = (),
    ) -> list[str]:
        """argv of an ssh client in `host` to root@`dest`:`port`; `args` end the command."""
        return [
            "ssh",
            "-F",
            str(self.config(host)),
            "-p",
            str(port),
            *crypto.options(),
            *options,
            f"root@{dest}",
            *args,
        ]

    def dbclient(
        self,
        host: str,
        dest: str,
        port: int,
        *args: str,
        options: Sequence[str] = (),
    ) -> list[str]:
        """argv of Dropbear's client (as small implants and routers carry) to root@`dest`.

        Its KEXINIT, banner and packet sizes differ from OpenSSH's, so a model cannot equate
        "tunnel" with one client's fingerprint. Uses the host's client key, converted.
        """
        key = self.dir / host / "id_dropbear"
        if not key.exists():
            out = subprocess.run(
                ["dropbearconvert", "openssh", "dropbear", str(self.keys[host]), str(key)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if out.returncode != 0:
                raise LabError(f"dropbearconvert: {out.stderr.strip()[-200:]}")
        return ["dbclient", "-y", "-i", str(key), "-p", str(port), *options, f"root@{dest}", *args]

    def ssh_command(self, host: str, port: int, crypto: SshCrypto) -> str:
        """The ssh command line for rsync -e and GIT_SSH_COMMAND."""
        return " ".join(["ssh", "-F", str(self.config(host)), "-p", str(port), *crypto.options()])


def open_pty(rows: int = 40, cols: int = 132) -> tuple[int, int]:
    """(master, slave) of a new pty with a window size, as a terminal emulator sets one."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return master, slave


def wait(proc: subprocess.Popen[bytes], timeout: float, what: str) -> int:
    """Wait for a client; a hang or failure is a scenario error, not a silent gap."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} did not finish within {timeout:.0f} s") from None
    return rc


def check(proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    rc = wait(proc, timeout, what)
    if rc != 0:
        raise LabError(f"{what} failed with exit status {rc}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """End a client by SIGTERM (ssh closes its connection with FIN, as on Ctrl-C)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# (query a program sends its terminal, what xterm answers)
TERMINAL_ANSWERS: tuple[tuple[bytes, bytes], ...] = (
    (b"\x1b[6n", b"\x1b[2;1R"),  # cursor position report
    (b"\x1b[>c", b"\x1b[>41;380;0c"),  # secondary device attributes
    (b"\x1b[c", b"\x1b[?64;1;2;6;9;15;18;21;22c"),  # primary device attributes
    (b"\x1b]10;?", b"\x1b]10;rgb:ffff/ffff/ffff\x07"),  # foreground colour
    (b"\x1b]11;?", b"\x1b]11;rgb:0000/0000/0000\x07"),  # background colour
)


# xterm's alternate screen: full-screen programs (vim, less, top) switch to it on start and
# back on exit, so the last of the two in the output tells whether one is still open.
ALT_SCREEN_ON = b"\x1b[?1049h"
ALT_SCREEN_OFF = b"\x1b[?1049l"


class Terminal:
    """An interactive `ssh -tt` session typed into like a person would.

    Keys go one write at a time (one SSH channel packet each, echoed by the remote pty),
    80-300 ms apart with a log-normal spread, with occasional typos fixed by backspace,
    tab completion and history recall; output is drained in a thread so the remote never
    stalls on a full pipe.
    """

    def __init__(
        self,
        lab: Lab,
        proc: subprocess.Popen[bytes],
        rng: random.Random,
        pty_master: int | None = None,
    ) -> None:
        """Drive `proc` through its stdin/stdout pipes, or through `pty_master` when the
        client insists on a real terminal (Dropbear's dbclient sets raw mode on stdin)."""
        if pty_master is None and (proc.stdin is None or proc.stdout is None):
            raise LabError("Terminal needs a process with stdin and stdout pipes, or a pty")
        self.lab = lab
        self.proc = proc
        self.rng = rng
        self.pty = pty_master
        self._out = bytearray()
        self._lock = threading.Lock()
        self._wlock = threading.Lock()
        self._last_output = time.monotonic()
        self.keys = 0
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _read(self) -> bytes:
        if self.pty is not None:
            return os.read(self.pty, 4096)
        assert self.proc.stdout is not None
        return self.proc.stdout.read1(4096)

    def _drain(self) -> None:
        while True:
            try:
                chunk = self._read()
            except (OSError, ValueError):  # EIO once the pty's other end is closed
                return
            if not chunk:
                return
            with self._lock:
                self._out += chunk
                del self._out[:-65536]
                self._last_output = time.monotonic()
            self._answer(chunk)

    def _answer(self, chunk: bytes) -> None:
        """Answer the queries a full-screen program sends its terminal, as xterm would.

        vim asks for the cursor position, the terminal version and colours on start; a
        terminal that stays silent leaves it waiting and eating keystrokes, and the answers
        are real client->server traffic of any interactive session.
        """
        replies = [reply for query, reply in TERMINAL_ANSWERS if query in chunk]
        for reply in replies:
            try:
                self._send(reply)
            except (OSError, ValueError, LabError):
                return

    @property
    def output(self) -> str:
        with self._lock:
            return self._out.decode(errors="replace")

    def _send(self, data: bytes) -> None:
        with self._wlock:
            if self.pty is not None:
                os.write(self.pty, data)
            else:
                assert self.proc.stdin is not None
                self.proc.stdin.write(data)
                self.proc.stdin.flush()

    def _write(self, data: bytes) -> None:
        if self.proc.poll() is not None:
            raise LabError(f"interactive ssh exited early (status {self.proc.returncode})")
        try:
            self._send(data)
        except (BrokenPipeError, OSError) as exc:
            raise LabError(f"interactive ssh closed its input: {exc}") from None
        self.keys += 1

    def key_delay(self) -> float:
        return min(0.30, max(0.08, self.rng.lognormvariate(math.log(0.14), 0.35)))

    def press(self, data: bytes) -> None:
        self._write(data)
        self.lab.sleep(self.key_delay())

    def type(self, text: str, enter: bool = True) -> None:
        for ch in text:
            if ch.isalpha() and self.rng.random() < 0.03:
                self.press(self.rng.choice("asdfghjkl").encode())  # a typo, noticed
                self.lab.sleep(self.rng.uniform(0.15, 0.5))
                self.press(b"\x7f")
            self.press(ch.encode())
        if enter:
            self.press(b"\r")

    def think(self, lo: float, hi: float) -> None:
        self.lab.sleep(self.rng.uniform(lo, hi))

    def settle(self, quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Wait until the remote has been quiet for `quiet` seconds (output done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = time.monotonic() - self._last_output
            if idle >= quiet:
                return
            self.lab.sleep(0.05)

    def full_screen(self) -> bool:
        """Whether a full-screen program (vim) holds the terminal, as the screen shows."""
        with self._lock:
            return self._out.rfind(ALT_SCREEN_ON) > self._out.rfind(ALT_SCREEN_OFF)

    def wait_full_screen(self, state: bool, timeout: float) -> bool:
        """Wait until full_screen() is `state`; False when it is not after `timeout` s."""
        deadline = time.monotonic() + timeout
        while self.full_screen() != state:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            self.lab.sleep(0.05)
        return True

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"interactive ssh: no {text!r} in the output after {timeout:.0f} s")
            self.lab.sleep(0.05)

    def run(self, command: str) -> None:
        self.type(command)
        self.settle()

    def close(self, timeout: float = 20.0) -> int:
        """Type `exit` and wait; the client's exit status, 0 when the shell logged out.

        `exit` hands back the status of the last command typed (1 after a grep that found
        nothing), and ssh passes it on: a session that ended with the shell's `logout` ended
        as typed, whatever that status (seen failing ssh-reverse-login after `grep -n lab`).
        """
        try:
            if self.proc.poll() is None:
                if self.full_screen():  # `exit` typed into vim is text, and the session hangs
                    self.press(b"\x1b")
                    self.type(":q!")
                    self.wait_full_screen(False, 10.0)
                self.type("exit")
            rc = wait(self.proc, timeout, "interactive ssh session")
        finally:  # the transcript is the first thing to read when a session misbehaves
            logs = self.lab.workdir / "logs"
            if logs.is_dir():
                (logs / f"terminal-{self.proc.pid}.log").write_text(self.output)
        self._reader.join(2.0)
        if self.pty is not None:
            os.close(self.pty)
            self.pty = None
        if rc != 0 and self.output.rstrip().endswith("logout"):
            return 0
        return rc


# Commands a person types in a shell; `{f}` is a scratch file name.
COMMANDS = (
    "ls",
    "ls -la",
    "pwd",
    "id",
    "whoami",
    "uname -a",
    "uptime",
    "date",
    "df -h",
    "free -m",
    "ps aux | head -20",
    "ps -ef | grep ssh",
    "cat /etc/os-release",
    "ip -br addr",
    "ss -tan | head",
    "env | sort | head -15",
    "head -20 /etc/passwd",
    "ls -la /etc | tail -15",
    "wc -l /etc/services",
    "cat {f}",
    "tail -5 {f}",
    "grep -n lab {f}",
    "echo $SHELL",
    "history | tail -5",
    "du -sh .",
    "top -b -n 1 | head -12",
)

NOTES = (
    "check the backup job tonight",
    "lab host notes",
    "rotate logs on friday",
    "todo: update packages",
    "port 8080 is the staging service",
    "remember to clean /tmp",
)


def shell_session(
    term: Terminal,
    rng: random.Random,
    commands: int,
    pause: tuple[float, float],
    home: Path,
    edit: bool = True,
) -> None:
    """A human shell session: cd home, look around, maybe edit a file in vi and reread it.

    `home` is the server's session HOME (sshd SetEnv), where a scratch file is placed first.
    """
    fname = rng.choice(["notes.txt", "todo.md", "deploy.sh", "config.ini", "readme"])
    (home / fname).write_text("\n".join(rng.sample(NOTES, 3)) + "\n")
    term.settle(quiet=0.6, timeout=15)
    term.run("cd")
    did_vi = not edit
    last_vi = False
    for i in range(commands):
        term.think(*pause)
        roll = rng.random()
        if not did_vi and (roll < 0.2 or i == commands - 1):
            did_vi = last_vi = True
            vi_edit(term, rng, fname, pause)
            continue
        if roll < 0.3 and not last_vi:  # (recalling `vi` would leave the editor open)
            term.press(b"\x1b[A")  # history recall, then run it again
            term.settle(quiet=0.3)
            term.press(b"\r")
            term.settle()
        elif roll < 0.4:
            stem = fname[: max(2, len(fname) // 2)]
            term.type(f"cat {stem}", enter=False)
            term.press(b"\t")  # tab completion
            term.settle(quiet=0.3)
            term.press(b"\r")
            term.settle()
        else:
            term.run(rng.choice(COMMANDS).format(f=fname))
        last_vi = False


def vi_edit(term: Terminal, rng: random.Random, fname: str, pause: tuple[float, float]) -> None:
    """Append a line or two in vi and write the file, looking at the screen like a person:
    type only once the editor is up (a slow start on a loaded host swallowed keys), and if it
    is still open after `:wq`, escape and write again, so the shell, not vim, gets what follows.
    """
    term.run(f"vi {fname}")
    term.wait_full_screen(True, 20.0)
    term.think(pause[0] / 2, pause[1] / 2)
    term.press(b"G")
    term.press(b"o")  # open a line below the last
    for _ in range(rng.randint(1, 2)):
        term.type(rng.choice(NOTES), enter=False)
        term.press(b"\r")
    term.press(b"\x1b")
    term.think(0.2, 0.8)
    term.type(":wq")
    term.settle()
    for _ in range(3):
        if term.wait_full_screen(False, 10.0):
            return
        term.press(b"\x1b")
        term.type(":wq")
        term.settle()
    raise LabError(f"vi {fname} did not exit after :wq (transcript in the logs)")
