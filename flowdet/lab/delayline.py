"""A userspace WAN between two network namespaces: TUN devices joined by a delay line.

The lab's kernel has no netem, so latency, jitter, loss and a bandwidth bottleneck are made
here: one process holds a TUN file descriptor in each namespace of a link (opened after
setns(), so each device is born in its own namespace and vanishes when this process exits),
reads whole IP packets from one side and writes them to the other once their time has come.

Why this shape: release times in one direction never go backwards (jitter stretches gaps
instead of reordering packets, like a real path mostly does); a packet first waits its turn
on the bottleneck (serialisation at `rate_bps`, tail-dropped past `queue_ms` of backlog),
then travels the one-way delay. The process exits when its stdin closes, so a runner that
dies without cleaning up cannot leave it spinning.

Run as `python -m flowdet.lab.delayline` with a JSON list of `LinkSpec`s on stdin (one line);
it answers `ready` on stdout once every device exists.
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
import json
import os
import random
import resource
import selectors
import struct
import sys
import time
from dataclasses import asdict, dataclass

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MAX_PACKET = 65536


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One bidirectional WAN link: `a_dev` in namespace `a_ns` <-> `b_dev` in `b_ns`."""

    a_ns: str  # namespace name (as in /run/netns)
    a_dev: str
    b_ns: str
    b_dev: str
    delay_ms: float  # one-way base delay, each direction
    jitter_ms: float  # standard deviation of the per-packet extra delay
    loss: float  # probability that a packet is dropped, each direction
    rate_bps: float  # bottleneck rate, each direction
    queue_ms: float = 200.0  # bottleneck buffer, as time at `rate_bps`
    seed: int = 0
    name: str = ""  # for the counters: "<name>:in" (a -> b) and "<name>:out" (b -> a)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _setns(ns_name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns_name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns_name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tun(ns_name: str, dev: str) -> int:
    """A non-persistent TUN device `dev` created inside namespace `ns_name`."""
    _setns(ns_name)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Direction:
    """Packets in flight from one TUN fd to another."""

    def __init__(self, src: int, dst: int, spec: LinkSpec, rng: random.Random) -> None:
        self.src, self.dst = src, dst
        self.delay = spec.delay_ms / 1000.0
        self.jitter = spec.jitter_ms / 1000.0
        self.loss = spec.loss
        self.rate = spec.rate_bps
        self.queue = spec.queue_ms / 1000.0
        self.rng = rng
        self.pending: collections.deque[tuple[float, bytes]] = collections.deque()
        self.link_free = 0.0  # when the bottleneck finishes its current packet
        self.last_release = 0.0
        self.counts = {"forwarded": 0, "lost": 0, "queue_drops": 0, "write_drops": 0}

    def admit(self, packet: bytes, now: float) -> None:
        start = max(now, self.link_free)
        if start - now > self.queue:
            self.counts["queue_drops"] += 1
            return
        self.link_free = start + len(packet) * 8.0 / self.rate
        if self.rng.random() < self.loss:
            self.counts["lost"] += 1
            return
        extra = abs(self.rng.gauss(0.0, self.jitter)) if self.jitter > 0 else 0.0
        release = max(self.link_free + self.delay + extra, self.last_release)
        self.last_release = release
        self.pending.append((release, packet))

    def flush(self, now: float) -> float | None:
        """Write every packet that is due; return when the next one is."""
        while self.pending and self.pending[0][0] <= now:
            _, packet = self.pending.popleft()
            try:
                os.write(self.dst, packet)
                self.counts["forwarded"] += 1
            except (BlockingIOError, OSError):
                self.counts["write_drops"] += 1
        return self.pending[0][0] if self.pending else None


def run(specs: list[LinkSpec]) -> dict[str, dict[str, float]]:
    directions: dict[int, Direction] = {}
    names: dict[int, str] = {}
    for i, spec in enumerate(specs):
        fa = open_tun(spec.a_ns, spec.a_dev)
        fb = open_tun(spec.b_ns, spec.b_dev)
        directions[fa] = Direction(fa, fb, spec, random.Random(spec.seed * 2 + 1 + i * 1000))
        directions[fb] = Direction(fb, fa, spec, random.Random(spec.seed * 2 + 2 + i * 1000))
        names[fa], names[fb] = f"{spec.name or i}:in", f"{spec.name or i}:out"
    sel = selectors.DefaultSelector()
    for fd in directions:
        sel.register(fd, selectors.EVENT_READ)
    stdin = sys.stdin.fileno()
    sel.register(stdin, selectors.EVENT_READ)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        now = time.monotonic()
        nexts = [t for d in directions.values() if (t := d.flush(now)) is not None]
        timeout = max(0.0, min(nexts) - time.monotonic()) if nexts else None
        for key, _ in sel.select(timeout):
            fd = key.fd
            if fd == stdin:
                if not os.read(stdin, 4096):  # the runner closed our stdin: we are done
                    counts: dict[str, dict[str, float]] = {
                        names[k]: dict(d.counts) for k, d in directions.items()
                    }
                    usage = resource.getrusage(resource.RUSAGE_SELF)
                    counts["cpu"] = {"user_s": usage.ru_utime, "system_s": usage.ru_stime}
                    return counts
                continue
            d = directions[fd]
            now = time.monotonic()
            for _ in range(256):  # bounded burst so one busy side cannot starve the others
                try:
                    packet = os.read(fd, MAX_PACKET)
                except BlockingIOError:
                    break
                d.admit(packet, now)


def main() -> None:
    specs = [LinkSpec(**item) for item in json.loads(sys.stdin.readline())]
    try:
        counts = run(specs)
    except KeyboardInterrupt:
        return
    sys.stderr.write(json.dumps(counts) + "\n")


if __name__ == "__main__":
    main()
