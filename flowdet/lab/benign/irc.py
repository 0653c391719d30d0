"""IRC (RFC 1459/2812 subset): a small server with channel chatter and a client that idles in it.

An IRC client sits in its channels for days on one TCP (or TLS, 6697) connection: the server
PINGs every couple of minutes and gets a PONG, other people's lines arrive at random, and the
user says something now and then. Line-based, long-lived, periodic keepalive, small messages:
benign, and the ancestor of botnet C2 that detectors learned to distrust, so worth having.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Sequence

from flowdet.lab.benign.common import (
    Tally,
    client_parser,
    dispatch,
    emit,
    hang_up,
    jittered,
    open_tcp,
    paced,
    peer_task,
    run_async,
    serve_tcp,
    server_parser,
    server_tls,
)

SERVER_NAME = "irc.example.net"
CHANNELS = ("#ops", "#dev", "#random", "#flowdet", "#linux")
CHATTER = (
    "anyone seen the build break?", "lunch?", "deploying in 5", "lol", "ack",
    "the graphs look fine to me", "rebooting the staging box", "brb", "thanks!",
    "PR is up for review", "who broke main", "coffee time",
)  # fmt: skip


class Server:
    def __init__(self, chatter: float, ping: float, seed: int) -> None:
        self.chatter, self.ping, self.rng = chatter, ping, random.Random(seed)
        self.members: dict[str, set[asyncio.StreamWriter]] = {}

    @staticmethod
    def _send(writer: asyncio.StreamWriter, line: str) -> None:
        writer.write(line.encode() + b"\r\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rng = random.Random(self.rng.random())
        nick = user = ""
        joined: set[str] = set()
        tasks: list[asyncio.Task[None]] = []
        try:
            while raw := await asyncio.wait_for(reader.readline(), timeout=self.ping * 3):
                line = raw.decode(errors="replace").rstrip("\r\n")
                cmd, _, rest = line.partition(" ")
                cmd = cmd.upper()
                if cmd == "NICK":
                    nick = rest.strip()
                elif cmd == "USER":
                    user = rest.split(" ")[0]
                    self._welcome(writer, nick, user)
                    tasks.append(peer_task(self._pinger(writer, rng)))
                    tasks.append(peer_task(self._chatter(writer, rng, joined)))
                elif cmd == "PING":
                    self._send(writer, f":{SERVER_NAME} PONG {SERVER_NAME} {rest}")
                elif cmd == "PONG":
                    pass
                elif cmd == "JOIN":
                    for chan in rest.split(","):
                        joined.add(chan)
                        self.members.setdefault(chan, set()).add(writer)
                        self._send(writer, f":{nick}!{user}@sandbox JOIN {chan}")
                        self._send(writer, f":{SERVER_NAME} 332 {nick} {chan} :welcome to {chan}")
                        names = " ".join([nick, *rng.sample(("alice", "bob", "carol", "dave",
                                                             "erin", "@ops"), 4)])  # fmt: skip
                        self._send(writer, f":{SERVER_NAME} 353 {nick} = {chan} :{names}")
                        self._send(writer, f":{SERVER_NAME} 366 {nick} {chan} :End of /NAMES list.")
                elif cmd == "PRIVMSG":
                    target = rest.split(" ", 1)[0]
                    for other in self.members.get(target, set()) - {writer}:
                        self._send(other, f":{nick}!{user}@sandbox PRIVMSG {rest}")
                elif cmd == "QUIT":
                    self._send(writer, f"ERROR :Closing Link: {nick} (Quit: {rest.lstrip(':')})")
                    break
                else:
                    self._send(writer, f":{SERVER_NAME} 421 {nick} {cmd} :Unknown command")
                await writer.drain()
        finally:
            for t in tasks:
                t.cancel()
            for chan in joined:
                self.members.get(chan, set()).discard(writer)

    def _welcome(self, writer: asyncio.StreamWriter, nick: str, user: str) -> None:
        s = f":{SERVER_NAME}"
        for line in (
            f"{s} 001 {nick} :Welcome to the ExampleNet IRC Network {nick}!{user}@sandbox",
            f"{s} 002 {nick} :Your host is {SERVER_NAME}, running version solanum-1.0",
            f"{s} 003 {nick} :This server was created Mon Nov 2 2026",
            f"{s} 004 {nick} {SERVER_NAME} solanum-1.0 DGIQRSZaghilopsuwz CFILMPQRSTbcefgijklmn",
            f"{s} 005 {nick} CHANTYPES=# NICKLEN=16 NETWORK=ExampleNet :are supported",
            f"{s} 375 {nick} :- {SERVER_NAME} Message of the Day -",
            f"{s} 372 {nick} :- Be nice. Logs are kept for 7 days.",
            f"{s} 376 {nick} :End of /MOTD command.",
        ):
            self._send(writer, line)

    async def _pinger(self, writer: asyncio.StreamWriter, rng: random.Random) -> None:
        while True:
            await asyncio.sleep(jittered(rng, self.ping, 0.05))
            self._send(writer, f"PING :{SERVER_NAME}")
            await writer.drain()

    async def _chatter(
        self, writer: asyncio.StreamWriter, rng: random.Random, joined: set[str]
    ) -> None:
        while True:
            await asyncio.sleep(rng.expovariate(1 / self.chatter))
            if joined:
                who = rng.choice(("alice", "bob", "carol", "dave", "erin"))
                chan = rng.choice(sorted(joined))
                self._send(
                    writer, f":{who}!~{who}@example.org PRIVMSG {chan} :{rng.choice(CHATTER)}"
                )
                await writer.drain()


def serve(argv: Sequence[str]) -> int:
    p = server_parser("IRC server with simulated channel chatter", 6667)
    p.add_argument("--chatter", type=float, default=20.0, help="mean seconds between others' lines")
    p.add_argument("--ping", type=float, default=120.0, help="seconds between server PINGs")
    args = p.parse_args(argv)
    tls = server_tls(args)
    srv = Server(args.chatter, args.ping, args.seed)
    return run_async(lambda: serve_tcp(srv.handle, args.bind, args.port, tls, "irc"))


async def run_client(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    tally = Tally(extra={"numerics": {}, "pings_answered": 0, "privmsgs_received": 0})
    t0 = time.monotonic()
    reader, writer = await open_tcp(args, tally)
    nick = f"user{rng.randint(100, 999)}"
    welcomed = asyncio.Event()

    async def send(line: str) -> None:
        data = line.encode() + b"\r\n"
        writer.write(data)
        await writer.drain()
        tally.record_send(t0, len(data))

    async def receive() -> None:
        while raw := await reader.readline():
            tally.received += 1
            tally.bytes_received += len(raw)
            parts = raw.decode(errors="replace").split(" ")
            if parts[0] == "PING":
                await send(f"PONG {parts[1].strip()}")
                tally.extra["pings_answered"] += 1
            elif len(parts) > 1 and parts[1].isdigit():
                tally.extra["numerics"][parts[1]] = tally.extra["numerics"].get(parts[1], 0) + 1
                if parts[1] == "001":
                    welcomed.set()
            elif len(parts) > 1 and parts[1] == "PRIVMSG":
                tally.extra["privmsgs_received"] += 1

    receiver = asyncio.create_task(receive())
    await send(f"NICK {nick}")
    await send(f"USER {nick} 0 * :flowdet lab user")
    await asyncio.wait_for(welcomed.wait(), timeout=10)
    chans = rng.sample(CHANNELS, rng.randint(1, 3))
    await send(f"JOIN {','.join(chans)}")
    deadline = t0 + args.duration
    async for _ in paced(deadline, lambda: rng.expovariate(1 / args.interval), receiver.done):
        await send(f"PRIVMSG {rng.choice(chans)} :{rng.choice(CHATTER)}")
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    await send("QUIT :Leaving")
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        await asyncio.wait_for(receiver, timeout=3)
    receiver.cancel()
    await hang_up(writer)
    emit(tally.summary("irc"))


def client(argv: Sequence[str]) -> int:
    p = client_parser("IRC client idling in channels", 6667)
    p.add_argument("--interval", type=float, default=60.0, help="mean seconds between own lines")
    args = p.parse_args(argv)
    return run_async(lambda: run_client(args))


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("irc", argv, server=serve, client=client)


if __name__ == "__main__":
    sys.exit(main())
