"""SSH scenarios with real OpenSSH: tunnels (`ssh-tunnel`) and everyday use (`benign`).

The monitored host is `sandbox`. Tunnels are what an intruder or an over-eager admin sets up
from inside: reverse `-R` tunnels that let someone outside log in to (or reach a service on)
the sandbox, local `-L` and dynamic `-D` forwards that carry other traffic, and background
`-f -N` tunnels started by a script. Benign SSH is what the same people do all day:
interactive shells, one-shot remote commands, file transfers, git. Both sides of the label
run the same OpenSSH with the same seeded variety of ciphers, key exchanges, host keys,
ports and keepalives, so the model must learn the tunnel's behaviour, not the setup.

Every flow that crosses the monitored link belongs to one Expect; inner connections of a
tunnel (outside's loopback, sandbox's loopback) never cross it.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flowdet.errors import LabError
from flowdet.lab import tools
from flowdet.lab.scenario import Expect, Lab, Scenario
from flowdet.lab.sshkit import (
    SshCrypto,
    SshWorld,
    Terminal,
    check,
    choose_port,
    open_pty,
    shell_session,
    stop,
    wait,
)

ALL = frozenset({"quick", "standard", "full"})
RunFn = Callable[[Lab, random.Random, str], list[Expect]]
PY = "python3"


@dataclass(frozen=True, slots=True)
class Pace:
    """How long things take in a profile (seconds unless named otherwise)."""

    commands: tuple[int, int]  # commands typed per interactive session
    pause: tuple[float, float]  # think time between commands
    gap: tuple[float, float]  # between setting up a tunnel and using it
    idle: tuple[float, float]  # an idle tunnel living on keepalives
    keepalive: tuple[int, int]  # ServerAliveInterval
    file_kb: tuple[int, int]  # transferred file sizes
    repeats: tuple[int, int]  # fetches, remote commands, git rounds
    timeout: float  # for any single client to finish


PACE = {
    "quick": Pace((2, 3), (0.3, 0.9), (0.3, 1.0), (5.0, 7.0), (2, 3), (32, 384), (2, 3), 60.0),
    "standard": Pace(
        (5, 12), (1.0, 5.0), (2.0, 15.0), (60.0, 120.0), (10, 30), (256, 8192), (4, 10), 600.0
    ),
    "full": Pace(
        (15, 40), (1.5, 8.0), (5.0, 60.0), (300.0, 900.0), (15, 60), (1024, 65536), (8, 25), 3600.0
    ),
}

FORWARD_PORTS = (2222, 2200, 8022, 10022, 4444, 20022, 9001, 31337)


def _pace(profile: str) -> Pace:
    return PACE.get(profile, PACE["quick"])


def _keepalive(rng: random.Random, pace: Pace, always: bool = False) -> list[str]:
    if not always and rng.random() < 0.4:
        return []
    return [
        "-o",
        f"ServerAliveInterval={rng.randint(*pace.keepalive)}",
        "-o",
        "ServerAliveCountMax=3",
    ]


def _interactive(
    lab: Lab,
    world: SshWorld,
    host: str,
    dest: str,
    port: int,
    crypto: SshCrypto,
    rng: random.Random,
    options: Sequence[str] = (),
    dropbear: bool = False,
) -> Terminal:
    if dropbear:  # dbclient wants a real terminal on stdin
        argv = world.dbclient(host, dest, port, options=["-t", *_dropbear_keepalive(options)])
        master, slave = open_pty()
        try:
            proc = lab.spawn(host, argv, stdin=slave, stdout=slave, stderr=slave)
        finally:
            os.close(slave)
        return Terminal(lab, proc, rng, pty_master=master)
    argv = world.ssh(host, dest, port, crypto, options=["-tt", *options])
    proc = lab.spawn(
        host,
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return Terminal(lab, proc, rng)


def _web_root(lab: Lab, host: str, rng: random.Random, pace: Pace) -> tuple[Path, list[str]]:
    """A directory of files for http.server: a page, some JSON, a binary of seeded size."""
    root = lab.workdir / f"www-{host}"
    root.mkdir(exist_ok=True)
    names = []
    (root / "index.html").write_text(
        "<html><head><title>intranet</title></head><body>"
        + "".join(f"<p>item {i}: {rng.random():.6f}</p>" for i in range(rng.randint(5, 60)))
        + "</body></html>\n"
    )
    names.append("index.html")
    (root / "status.json").write_text(
        "{"
        + ",".join(f'"k{i}": {rng.randint(0, 10**6)}' for i in range(rng.randint(3, 40)))
        + "}\n"
    )
    names.append("status.json")
    for i in range(2):
        name = f"blob{i}.bin"
        (root / name).write_bytes(rng.randbytes(1024 * rng.randint(*pace.file_kb)))
        names.append(name)
    return root, names


def _web_server(lab: Lab, host: str, address: str, port: int, root: Path) -> None:
    lab.spawn(host, [PY, "-m", "http.server", str(port), "--bind", address], cwd=root)
    lab.wait_port(host, port)


def _fetch(lab: Lab, host: str, url: str, pace: Pace, socks: str | None = None) -> None:
    argv = ["curl", "-sS", "-o", "/dev/null", "--max-time", str(int(pace.timeout)), "-f"]
    if socks:
        argv += ["--socks5-hostname", socks]
    check(lab.spawn(host, [*argv, url]), pace.timeout + 5, f"curl {url}")


def _tunnel(lab: Lab, world: SshWorld, crypto: SshCrypto, port: int, forward: list[str],
            extra: list[str], dropbear: bool = False) -> subprocess.Popen[bytes]:  # fmt: skip
    """`ssh -N` (or Dropbear's `dbclient -N`) from the sandbox to outside, holding forwards."""
    if dropbear:
        argv = world.dbclient("sandbox", lab.ip("outside"), port,
                              options=["-N", *forward, *_dropbear_keepalive(extra)])  # fmt: skip
    else:
        options = ["-N", "-o", "ExitOnForwardFailure=yes", *forward, *extra]
        argv = world.ssh("sandbox", lab.ip("outside"), port, crypto, options=options)
    return lab.spawn("sandbox", argv)


def _dropbear(rng: random.Random, share: float = 0.25) -> bool:
    """Whether this run's client is Dropbear's; the roll is made even where it is missing so
    a seed means the same traffic on every machine that has it."""
    roll = rng.random()
    return (
        roll < share
        and tools.which("dbclient") is not None
        and (tools.which("dropbearconvert") is not None)
    )


def _dropbear_keepalive(ssh_options: Sequence[str]) -> list[str]:
    for opt in ssh_options:
        if opt.startswith("ServerAliveInterval="):
            return ["-K", opt.split("=", 1)[1]]
    return []


def _common(lab: Lab, rng: random.Random, **facts: object) -> tuple[SshWorld, SshCrypto, int]:
    world = SshWorld(lab, rng)
    crypto = SshCrypto.choose(rng)
    port = choose_port(rng)
    world.start_sshd("outside", port, client_alive=rng.choice([0, 0, 0, 30, 60]))
    lab.note(ssh_port=port, crypto=crypto.to_json(), **facts)
    return world, crypto, port


def _ssh_tunnel(port: int) -> list[Expect]:
    return [Expect("sandbox", "outside", port, "tcp", "ssh-tunnel")]


# --- ssh-tunnel ----------------------------------------------------------------------


def reverse_login(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """-R back to the sandbox's sshd, then someone outside logs in through it and types."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    world.start_sshd("sandbox", 22, address="127.0.0.1")
    fwd = rng.choice(FORWARD_PORTS)
    keepalive = _keepalive(rng, pace)
    forward = ["-R", f"127.0.0.1:{fwd}:127.0.0.1:22"]
    # mostly `-N`; sometimes the tunnel rides on a shell the sandbox user works in first
    outer_shell = rng.random() < 0.3
    dropbear = _dropbear(rng) and not outer_shell
    outer: Terminal | None = None
    if outer_shell:
        outer = _interactive(lab, world, "sandbox", lab.ip("outside"), port, crypto, rng,
                             options=[*forward, *keepalive])  # fmt: skip
        shell_session(outer, rng, 1, pace.pause, world.home("outside"), edit=False)
    else:
        tunnel = _tunnel(lab, world, crypto, port, forward, keepalive, dropbear)
    lab.wait_port("outside", fwd, timeout=pace.timeout)
    lab.sleep(rng.uniform(*pace.gap))
    inner = SshCrypto.choose(rng)
    term = _interactive(lab, world, "outside", "127.0.0.1", fwd, inner, rng)
    shell_session(term, rng, rng.randint(*pace.commands), pace.pause, world.home("sandbox"),
                  edit=profile != "quick" or rng.random() < 0.3)  # fmt: skip
    if term.close(pace.timeout) != 0:
        raise LabError("the reverse login session ended with an error")
    lab.sleep(rng.uniform(*pace.gap))
    if outer is not None:
        outer.close(pace.timeout)
    else:
        stop(tunnel)
    lab.note(forward_port=fwd, inner_crypto=inner.to_json(), keys_typed=term.keys,
             keepalive=keepalive[1:2], outer_shell=outer_shell, dropbear=dropbear)  # fmt: skip
    return _ssh_tunnel(port)


def reverse_web(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """-R exposes a web service inside the sandbox; the outside fetches from it."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    root, names = _web_root(lab, "sandbox", rng, pace)
    web_port = rng.choice([8000, 8080, 8888, 3000, 5000])
    _web_server(lab, "sandbox", "127.0.0.1", web_port, root)
    fwd = rng.choice([8080, 8000, 9090, 18080, 8443, 4443])
    keepalive = _keepalive(rng, pace)
    dropbear = _dropbear(rng)
    forward = ["-R", f"127.0.0.1:{fwd}:127.0.0.1:{web_port}"]
    tunnel = _tunnel(lab, world, crypto, port, forward, keepalive, dropbear)
    lab.wait_port("outside", fwd, timeout=pace.timeout)
    fetches = rng.randint(*pace.repeats) + 1
    for _ in range(fetches):
        lab.sleep(rng.uniform(*pace.gap))
        _fetch(lab, "outside", f"http://127.0.0.1:{fwd}/{rng.choice(names)}", pace)
    lab.sleep(rng.uniform(*pace.gap))
    stop(tunnel)
    lab.note(forward_port=fwd, fetches=fetches, dropbear=dropbear)
    return _ssh_tunnel(port)


def reverse_socks(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """`-R PORT` with no target: a reverse SOCKS proxy (OpenSSH >= 7.6), through which the
    outside reaches services that only the sandbox can reach: pivoting into the inside."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    targets = []
    for web_port in rng.sample([80, 3000, 8000, 8080, 9200], 2):  # "internal" services
        root, names = _web_root(lab, "sandbox", rng, pace)
        _web_server(lab, "sandbox", "127.0.0.1", web_port, root)
        targets += [f"http://127.0.0.1:{web_port}/{n}" for n in names]
    socks = rng.choice([1080, 1081, 9050, 10800])
    keepalive = _keepalive(rng, pace)
    tunnel = _tunnel(lab, world, crypto, port, ["-R", f"127.0.0.1:{socks}"], keepalive)
    lab.wait_port("outside", socks, timeout=pace.timeout)
    fetches = rng.randint(*pace.repeats) + 1
    for _ in range(fetches):
        lab.sleep(rng.uniform(*pace.gap))
        _fetch(lab, "outside", rng.choice(targets), pace, socks=f"127.0.0.1:{socks}")
    lab.sleep(rng.uniform(*pace.gap))
    stop(tunnel)
    lab.note(socks_port=socks, fetches=fetches)
    return _ssh_tunnel(port)


def reverse_idle(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """An idle -R kept alive by ServerAliveInterval, then a burst of use through it."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    world.start_sshd("sandbox", 22, address="127.0.0.1")
    fwd = rng.choice(FORWARD_PORTS)
    keepalive = _keepalive(rng, pace, always=True)
    tunnel = _tunnel(lab, world, crypto, port, ["-R", f"127.0.0.1:{fwd}:127.0.0.1:22"], keepalive)
    lab.wait_port("outside", fwd, timeout=pace.timeout)
    idle = rng.uniform(*pace.idle)
    lab.sleep(idle)
    burst = rng.choice(["login", "commands"])
    inner = SshCrypto.choose(rng)
    if burst == "login":
        term = _interactive(lab, world, "outside", "127.0.0.1", fwd, inner, rng)
        shell_session(term, rng, rng.randint(*pace.commands), pace.pause,
                      world.home("sandbox"), edit=profile != "quick")  # fmt: skip
        term.close(pace.timeout)
    else:
        for cmd in rng.sample(["uname -a", "id", "ls -la /etc | head", "ps aux | head"], 2):
            argv = world.ssh("outside", "127.0.0.1", fwd, inner, cmd)
            check(lab.spawn("outside", argv), pace.timeout, f"reverse command {cmd!r}")
    lab.sleep(rng.uniform(*pace.gap))
    stop(tunnel)
    lab.note(forward_port=fwd, idle_s=round(idle, 1), keepalive=keepalive[1], burst=burst)
    return _ssh_tunnel(port)


def local_forward(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """-L from the sandbox to a web server behind the outside host (on outside2)."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    root, names = _web_root(lab, "outside2", rng, pace)
    web_port = rng.choice([80, 8080, 8000])
    _web_server(lab, "outside2", lab.ip("outside2"), web_port, root)
    lport = rng.choice([8080, 8081, 9000, 5432, 3306, 13389])
    keepalive = _keepalive(rng, pace)
    dropbear = _dropbear(rng)
    forward = ["-L", f"127.0.0.1:{lport}:{lab.ip('outside2')}:{web_port}"]
    tunnel = _tunnel(lab, world, crypto, port, forward, keepalive, dropbear)
    lab.wait_port("sandbox", lport, timeout=pace.timeout)
    fetches = rng.randint(*pace.repeats) + 1
    for _ in range(fetches):
        lab.sleep(rng.uniform(*pace.gap))
        _fetch(lab, "sandbox", f"http://127.0.0.1:{lport}/{rng.choice(names)}", pace)
    lab.sleep(rng.uniform(*pace.gap))
    stop(tunnel)
    lab.note(local_port=lport, fetches=fetches, dropbear=dropbear)
    return _ssh_tunnel(port)


def dynamic_socks(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """-D: a SOCKS proxy on the sandbox; curl fetches outside web servers through it."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    targets = []
    for host in ("outside2", "outside"):
        root, names = _web_root(lab, host, rng, pace)
        web_port = rng.choice([80, 8080])
        _web_server(lab, host, lab.ip(host), web_port, root)
        targets += [f"http://{lab.ip(host)}:{web_port}/{n}" for n in names]
    socks = rng.choice([1080, 1081, 9050, 8888])
    keepalive = _keepalive(rng, pace)
    tunnel = _tunnel(lab, world, crypto, port, ["-D", f"127.0.0.1:{socks}"], keepalive)
    lab.wait_port("sandbox", socks, timeout=pace.timeout)
    fetches = rng.randint(*pace.repeats) + 1
    for _ in range(fetches):
        lab.sleep(rng.uniform(*pace.gap))
        _fetch(lab, "sandbox", rng.choice(targets), pace, socks=f"127.0.0.1:{socks}")
    lab.sleep(rng.uniform(*pace.gap))
    stop(tunnel)
    lab.note(socks_port=socks, fetches=fetches)
    return _ssh_tunnel(port)


def background_tunnels(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """A script starts `ssh -f -N` tunnels (-R to the sandbox's sshd, -L to a web server),
    the outside runs automated commands through the reverse one, the script closes both."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    world.start_sshd("sandbox", 22, address="127.0.0.1")
    root, names = _web_root(lab, "outside2", rng, pace)
    _web_server(lab, "outside2", lab.ip("outside2"), 80, root)
    fwd = rng.choice(FORWARD_PORTS)
    lport = rng.choice([8080, 9000, 18080])
    keepalive = " ".join(_keepalive(rng, pace))
    ssh = world.ssh_command("sandbox", port, crypto) + " " + keepalive
    dest = f"root@{lab.ip('outside')}"
    fetches = rng.randint(*pace.repeats)
    hold = rng.uniform(*pace.gap) * 2
    script = lab.workdir / "tunnels.sh"
    script.write_text(
        "#!/bin/sh\n"
        "# keep a way back in, and a way to the intranet box\n"
        "set -e\n"
        f"cd {lab.workdir}\n"
        f"{ssh} -f -N -M -S ./ctl-r -o ExitOnForwardFailure=yes "
        f"-R 127.0.0.1:{fwd}:127.0.0.1:22 {dest}\n"
        f"{ssh} -f -N -M -S ./ctl-l -o ExitOnForwardFailure=yes "
        f"-L 127.0.0.1:{lport}:{lab.ip('outside2')}:80 {dest}\n"
        f"for i in $(seq {fetches}); do\n"
        f"  curl -sS -f -o /dev/null http://127.0.0.1:{lport}/{rng.choice(names)}\n"
        f"  sleep {rng.uniform(*pace.gap):.2f}\n"
        "done\n"
        f"sleep {hold:.2f}\n"
        "touch ./tunnels-done\n"
        "while [ ! -e ./reverse-done ]; do sleep 0.2; done\n"
        f"{ssh} -S ./ctl-r -O exit {dest} 2>/dev/null || true\n"
        f"{ssh} -S ./ctl-l -O exit {dest} 2>/dev/null || true\n"
    )
    script.chmod(0o755)
    runner = lab.spawn("sandbox", ["/bin/sh", str(script)])
    lab.wait_port("outside", fwd, timeout=pace.timeout)
    inner = SshCrypto.choose(rng)
    commands = rng.sample(["uptime", "id", "hostname", "df -h /", "cat /etc/os-release"], 3)
    for cmd in commands:  # automated: no think time beyond a scheduler's
        argv = world.ssh("outside", "127.0.0.1", fwd, inner, cmd)
        check(lab.spawn("outside", argv), pace.timeout, f"reverse command {cmd!r}")
        lab.sleep(rng.uniform(0.1, 0.5))
    (lab.workdir / "reverse-done").touch()
    rc = wait(runner, pace.timeout * 2 + hold, "the tunnel script")
    if rc != 0:
        raise LabError(f"the tunnel script failed with exit status {rc}")
    lab.note(forward_port=fwd, local_port=lport, fetches=fetches, reverse_commands=commands)
    return _ssh_tunnel(port)


# --- benign --------------------------------------------------------------------------


def interactive(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """An admin on the sandbox logs in to an outside server and works in a shell."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    keepalive = _keepalive(rng, pace)
    dropbear = _dropbear(rng)
    term = _interactive(lab, world, "sandbox", lab.ip("outside"), port, crypto, rng,
                        options=keepalive, dropbear=dropbear)  # fmt: skip
    lo, hi = pace.commands
    shell_session(term, rng, rng.randint(lo + 1, hi + 2), pace.pause, world.home("outside"),
                  edit=profile != "quick" or rng.random() < 0.5)  # fmt: skip
    if term.close(pace.timeout) != 0:
        raise LabError("the interactive session ended with an error")
    lab.note(keys_typed=term.keys, keepalive=keepalive[1:2], dropbear=dropbear)
    return [Expect("sandbox", "outside", port, "tcp", "benign")]


def inbound_admin(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """Someone outside logs in to the sandbox's own sshd (a normal inbound admin session)."""
    pace = _pace(profile)
    world = SshWorld(lab, rng)
    crypto = SshCrypto.choose(rng)
    port = choose_port(rng)
    world.start_sshd("sandbox", port)
    lab.note(ssh_port=port, crypto=crypto.to_json())
    term = _interactive(lab, world, "outside", lab.ip("sandbox"), port, crypto, rng)
    shell_session(term, rng, rng.randint(*pace.commands) + 1, pace.pause,
                  world.home("sandbox"), edit=profile != "quick" or rng.random() < 0.3)  # fmt: skip
    if term.close(pace.timeout) != 0:
        raise LabError("the inbound session ended with an error")
    lab.note(keys_typed=term.keys)
    return [Expect("outside", "sandbox", port, "tcp", "benign")]


def remote_commands(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """One-shot `ssh host cmd` calls, as a monitoring or deployment script makes them."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    port2 = choose_port(rng)
    world.start_sshd("outside2", port2)
    for host in ("outside", "outside2"):  # commands go to both servers
        lines = rng.randint(100, 2000)
        (world.home(host) / "app.log").write_text(
            "".join(f"2026-11-27 {10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d} INFO "
                    f"request {i} ok\n" for i in range(lines))
        )  # fmt: skip
    commands = [
        "uptime",
        "df -h /",
        "free -m",
        "cat /proc/loadavg",
        "tail -n 50 $HOME/app.log",
        "ls -la $HOME",
        "systemctl is-active ssh || true",
        "ps aux --sort=-%cpu | head -5",
        "sha256sum $HOME/app.log",
    ]
    runs = rng.randint(*pace.repeats) + 2
    dropbear = _dropbear(rng)
    used_second = False
    for i in range(runs):
        second = i % 3 == 2
        used_second |= second
        host, p = ("outside2", port2) if second else ("outside", port)
        cmd = rng.choice(commands)
        if dropbear:
            argv = world.dbclient("sandbox", lab.ip(host), p, cmd)
        else:
            argv = world.ssh("sandbox", lab.ip(host), p, crypto, cmd)
        check(lab.spawn("sandbox", argv), pace.timeout, "remote command")
        lab.sleep(rng.uniform(*pace.gap))
    lab.note(runs=runs, ssh_port2=port2, dropbear=dropbear)
    expects = [Expect("sandbox", "outside", port, "tcp", "benign")]
    if used_second:
        expects.append(Expect("sandbox", "outside2", port2, "tcp", "benign"))
    return expects


def file_transfer(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """scp, sftp and rsync, uploads and downloads, with seeded file sizes."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    home_s, home_o = world.home("sandbox"), world.home("outside")
    (home_s / "out").mkdir(exist_ok=True)
    (home_o / "srv").mkdir(exist_ok=True)
    for d, tag in ((home_s / "out", "up"), (home_o / "srv", "down")):
        for i in range(3):
            data = rng.randbytes(1024 * rng.randint(*pace.file_kb))
            if i == 1:  # text compresses: matters for Compression=yes and rsync -z
                data = b"\n".join(b"line %d %s" % (j, tag.encode()) for j in range(len(data) // 16))
            (d / f"{tag}{i}.dat").write_bytes(data)
    ip = lab.ip("outside")
    scp = ["scp", "-F", str(world.config("sandbox")), "-P", str(port), *crypto.options()]
    ssh_e = world.ssh_command("sandbox", port, crypto)
    ops = {
        "scp-up": [*scp, str(home_s / "out" / "up0.dat"), f"root@{ip}:{home_o}/"],
        "scp-down": [*scp, f"root@{ip}:{home_o}/srv/down0.dat", str(home_s) + "/"],
        "scp-legacy-up": [*scp, "-O", str(home_s / "out" / "up1.dat"), f"root@{ip}:{home_o}/"],
        "sftp": [
            "sftp", "-F", str(world.config("sandbox")), "-P", str(port), *crypto.options(),
            "-b", "-", f"root@{ip}",
        ],
        "rsync-up": ["rsync", "-az", "-e", ssh_e, f"{home_s}/out/", f"root@{ip}:{home_o}/in/"],
        "rsync-down": ["rsync", "-az", "-e", ssh_e, f"root@{ip}:{home_o}/srv/", f"{home_s}/srv/"],
    }  # fmt: skip
    sftp_batch = (
        f"cd {home_o}/srv\nls -l\nget down1.dat {home_s}/\nput {home_s}/out/up2.dat\nbye\n"
    ).encode()
    chosen = rng.sample(sorted(ops), k=min(len(ops), rng.randint(3, 5)))
    for name in chosen:
        stdin = subprocess.PIPE if name == "sftp" else None
        proc = lab.spawn("sandbox", ops[name], stdin=stdin)
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(sftp_batch)
            proc.stdin.close()
        check(proc, pace.timeout, name)
        lab.sleep(rng.uniform(*pace.gap))
    lab.note(operations=chosen)
    return [Expect("sandbox", "outside", port, "tcp", "benign")]


def git_over_ssh(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """git clone, commit, push, pull against a bare repository over ssh."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    home_o, home_s = world.home("outside"), world.home("sandbox")
    bare = home_o / "project.git"
    env = {
        "GIT_SSH_COMMAND": world.ssh_command("sandbox", port, crypto),
        "GIT_AUTHOR_NAME": "Lab Dev",
        "GIT_AUTHOR_EMAIL": "dev@lab.invalid",
        "GIT_COMMITTER_NAME": "Lab Dev",
        "GIT_COMMITTER_EMAIL": "dev@lab.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    check(
        lab.spawn("outside", ["git", "init", "-q", "--bare", "-b", "main", str(bare)]),
        30,
        "git init",
    )
    # seed the remote with some history, as a real project has
    seed_dir = home_o / "seed"
    check(lab.spawn("outside", ["git", "init", "-q", "-b", "main", str(seed_dir)]), 30, "git init")
    for i in range(rng.randint(3, 12)):
        (seed_dir / f"mod{i}.py").write_text(
            "".join(
                f"def f{j}(x):\n    return x * {rng.randint(1, 99)}\n\n"
                for j in range(rng.randint(5, 80))
            )
        )
    for argv in (["git", "add", "-A"], ["git", "commit", "-qm", "initial import"],
                 ["git", "push", "-q", str(bare), "main"]):  # fmt: skip
        check(lab.spawn("outside", argv, cwd=seed_dir, env=env), 60, " ".join(argv[:2]))
    url = f"root@{lab.ip('outside')}:{bare}"
    work = home_s / "project"
    check(
        lab.spawn("sandbox", ["git", "clone", "-q", url, str(work)], env=env),
        pace.timeout,
        "git clone",
    )
    rounds = rng.randint(*pace.repeats)
    for r in range(rounds):
        lab.sleep(rng.uniform(*pace.gap))
        target = work / f"mod{rng.randint(0, 2)}.py"
        with open(target, "a") as f:
            f.write(f"\n# change {r}: {rng.random():.8f}\n")
        steps = [
            ["git", "add", "-A"],
            ["git", "commit", "-qm", f"change {r}"],
            ["git", "pull", "-q", "--rebase", "origin", "main"],
            ["git", "push", "-q", "origin", "main"],
        ]
        if rng.random() < 0.4:
            steps.append(["git", "fetch", "-q", "origin"])
        for argv in steps:
            check(lab.spawn("sandbox", argv, cwd=work, env=env), pace.timeout, " ".join(argv[:2]))
    lab.note(rounds=rounds)
    return [Expect("sandbox", "outside", port, "tcp", "benign")]


def idle_shell(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """A shell left open on keepalives (ServerAliveInterval), then picked up again: the
    benign twin of the idle reverse tunnel, so idleness and keepalives alone mean nothing."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    keepalive = _keepalive(rng, pace, always=True)
    proc = lab.spawn(
        "sandbox",
        world.ssh("sandbox", lab.ip("outside"), port, crypto, options=["-tt", *keepalive]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    term = Terminal(lab, proc, rng)
    home = world.home("outside")
    shell_session(term, rng, rng.randint(*pace.commands), pace.pause, home, edit=False)
    idle = rng.uniform(*pace.idle)
    lab.sleep(idle)
    shell_session(term, rng, rng.randint(*pace.commands), pace.pause, home,
                  edit=profile != "quick")  # fmt: skip
    if term.close(pace.timeout) != 0:
        raise LabError("the idle shell ended with an error")
    lab.note(idle_s=round(idle, 1), keepalive=keepalive[1], keys_typed=term.keys)
    return [Expect("sandbox", "outside", port, "tcp", "benign")]


def multiplexed(lab: Lab, rng: random.Random, profile: str) -> list[Expect]:
    """One ControlMaster connection carrying many sessions (commands, a shell, scp), as
    ansible and ssh-heavy admins use it: many channels in one flow, yet no forwarding."""
    pace = _pace(profile)
    world, crypto, port = _common(lab, rng)
    ctl = lab.workdir / "cm-%C"
    mux = ["-o", "ControlMaster=no", "-o", f"ControlPath={ctl}"]
    ip = lab.ip("outside")
    master_opts = ["-o", "ControlMaster=yes", "-o", f"ControlPath={ctl}"]
    master = lab.spawn("sandbox", world.ssh("sandbox", ip, port, crypto, "-N", options=master_opts))
    # the master is up once a client can use its socket
    deadline = pace.timeout
    while deadline > 0:
        probe = lab.spawn(
            "sandbox", world.ssh("sandbox", ip, port, crypto, options=[*mux, "-O", "check"])
        )
        if wait(probe, 10, "ssh -O check") == 0:
            break
        lab.sleep(0.2)
        deadline -= 0.2
    (world.home("sandbox") / "play.yml").write_text("- hosts: all\n  tasks: []\n" * 20)
    cmds = [
        "uname -a",
        "cat /etc/os-release",
        "df -h",
        "python3 -c 'import sys; print(sys.version)'",
        "ls -la /etc/ssh",
        "test -d /var/tmp && echo ok",
        "id -u",
        "uptime",
    ]
    playbook = str(world.home("sandbox") / "play.yml")
    runs = rng.randint(*pace.repeats) + 2
    for i in range(runs):
        if i == runs // 2:
            scp = ["scp", "-F", str(world.config("sandbox")), "-P", str(port), *crypto.options(),
                   *mux, playbook, f"root@{ip}:{world.home('outside')}/"]  # fmt: skip
            check(lab.spawn("sandbox", scp), pace.timeout, "scp over the master")
        else:
            argv = world.ssh("sandbox", ip, port, crypto, rng.choice(cmds), options=mux)
            check(lab.spawn("sandbox", argv), pace.timeout, "command over the master")
        lab.sleep(rng.uniform(0.05, 0.6))  # a tool's pace, not a person's
    close = world.ssh("sandbox", ip, port, crypto, options=[*mux, "-O", "exit"])
    check(lab.spawn("sandbox", close), pace.timeout, "ssh -O exit")
    wait(master, pace.timeout, "the ssh master")
    lab.note(sessions=runs)
    return [Expect("sandbox", "outside", port, "tcp", "benign")]


def _scn(name: str, label: str, run: RunFn, description: str) -> Scenario:
    return Scenario(name=name, label=label, description=description, profiles=ALL, run=run)


SCENARIOS: list[Scenario] = [
    _scn("ssh-reverse-login", "ssh-tunnel", reverse_login,
         "-R to the sandbox's sshd, then an interactive login back in from outside"),
    _scn("ssh-reverse-web", "ssh-tunnel", reverse_web,
         "-R exposing a web server inside the sandbox, fetched from outside"),
    _scn("ssh-reverse-socks", "ssh-tunnel", reverse_socks,
         "-R reverse SOCKS proxy: the outside reaches the sandbox's internal web services"),
    _scn("ssh-reverse-idle", "ssh-tunnel", reverse_idle,
         "idle -R held by ServerAliveInterval keepalives, then a burst of use"),
    _scn("ssh-local-forward", "ssh-tunnel", local_forward,
         "-L from the sandbox to a web server behind the outside host"),
    _scn("ssh-dynamic-socks", "ssh-tunnel", dynamic_socks,
         "-D SOCKS proxy carrying HTTP fetches (curl --socks5-hostname)"),
    _scn("ssh-background-tunnels", "ssh-tunnel", background_tunnels,
         "a script's ssh -f -N -R/-L tunnels, automated commands through the reverse one"),
    _scn("ssh-interactive", "benign", interactive,
         "an interactive shell on an outside server, typed like a person"),
    _scn("ssh-inbound-admin", "benign", inbound_admin,
         "an interactive login from outside to the sandbox's own sshd"),
    _scn("ssh-remote-commands", "benign", remote_commands,
         "one-shot ssh host command calls, as a monitoring script makes them"),
    _scn("ssh-file-transfer", "benign", file_transfer,
         "scp (sftp and legacy protocol), sftp batch and rsync, both ways"),
    _scn("ssh-git", "benign", git_over_ssh,
         "git clone, commit, pull --rebase and push over ssh"),
    _scn("ssh-idle-shell", "benign", idle_shell,
         "a shell idle on ServerAliveInterval keepalives, then used again"),
    _scn("ssh-multiplexed", "benign", multiplexed,
         "ControlMaster: commands, and scp as sessions over one connection"),
]  # fmt: skip
