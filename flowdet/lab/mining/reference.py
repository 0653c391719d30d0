"""Message sizes of real mining sessions next to the emulators': the check that keeps them honest.

`python -m flowdet.lab.mining.reference [--corpus ../shared/corpus]` reassembles every TCP
stream of corpus/mining-real with tshark, splits it into JSON lines or HTTP messages, and
prints the size range of each (family, direction, kind) beside the range the emulators
produce in short loopback sessions with the same kinds of parameters (worker names of the same
length as the capture's, the legacy Monero variant for the 2017 Monero capture). Sizes include
the newline of a JSON line, or the whole HTTP message. Bitcoin notifies are compared without
their merkle branch (68 bytes per entry), since its length follows the block's transaction
count rather than the pool or miner.

Nothing here is used by the emulators themselves; tests/test_mining_emulators.py uses the
corpus reader to check the emulators against the capture.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from flowdet.errors import LabError

BRANCH_BYTES = 68  # one merkle branch entry in a notify: 64 hex, quotes, comma, space
Sizes = dict[tuple[str, str, str], list[int]]


def kind(msg: dict[str, Any]) -> str:
    return msg["method"] if isinstance(msg.get("method"), str) else "result"


def http_messages(data: bytes) -> list[tuple[str, dict[str, str], bytes, int]]:
    """Split a byte stream into HTTP/1.1 messages (Content-Length or chunked bodies):
    (start line, lower-cased headers, body, size on the wire)."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n\r\n", pos) + 4
        lines = data[pos:end].decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(":") for ln in lines[1:] if ":" in ln)
        }
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            p = end
            while True:
                eol = data.index(b"\r\n", p)
                n = int(data[p:eol].split(b";")[0], 16)
                body += data[eol + 2 : eol + 2 + n]
                p = eol + 2 + n + 2
                if n == 0:
                    break
            nxt = p
        else:
            n = int(headers.get("content-length", "0"))
            body, nxt = data[end : end + n], end + n
        out.append((lines[0], headers, body, nxt - pos))
        pos = nxt
    return out


def notify_minus_branch(msg: dict[str, Any], size: int) -> int:
    return size - BRANCH_BYTES * len(msg["params"][4])


def _is_eth_work(result: Any) -> bool:
    return isinstance(result, list) and all(str(x).startswith("0x") for x in result)


def _family(pcap: str, msg: dict[str, Any]) -> str:
    if pcap.startswith("zec"):
        return "zcash"
    if pcap.startswith("xmr"):
        return "monero"
    if msg.get("id") == 0 and _is_eth_work(msg.get("result")):
        return "ethproxy"
    return "stratum"


def add_stream(sizes: Sizes, family: str | None, pcap: str, dirs: dict[str, bytes]) -> None:
    """Add one TCP stream's messages; `family` None means: guess it from the capture name."""
    if dirs.get("c2s", b"").startswith(b"POST"):
        for d in ("c2s", "s2c"):
            for _, _, body, n in http_messages(dirs.get(d, b"")):
                k = kind(json.loads(body)) if body.startswith(b"{") else "http"
                sizes[(family or "ethhttp", d, k)].append(n)
        return
    for d in ("c2s", "s2c"):
        for line in dirs.get(d, b"").split(b"\n"):
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            k, n = kind(msg), len(line) + 1
            fam = family or _family(pcap, msg)
            if fam == "stratum" and k == "mining.notify":
                params = msg.get("params")
                if isinstance(params, list) and len(params) == 9:
                    sizes[(fam, d, "notify-minus-branch")].append(notify_minus_branch(msg, n))
                elif isinstance(params, list) and len(params) == 5:  # ethermine-style
                    sizes[(fam, d, "eth-notify")].append(n)
                continue
            sizes[(fam, d, k)].append(n)


def corpus_sizes(corpus: Path, tshark: str = "tshark") -> Sizes:
    """Message sizes per (family, direction, kind) in corpus/mining-real. The client of a
    stream is the sender of its first payload, as in the corpus' labels.tsv."""
    sizes: Sizes = defaultdict(list)
    pcaps = sorted((corpus / "mining-real").glob("*.pcapng"))
    if not pcaps:
        raise LabError(f"no captures in {corpus / 'mining-real'}")
    for pcap in pcaps:
        out = subprocess.run(
            [tshark, "-r", str(pcap), "-Y", "tcp.len>0 && !tcp.analysis.retransmission",
             "-T", "fields", "-e", "tcp.stream", "-e", "ip.src", "-e", "tcp.srcport",
             "-e", "tcp.payload"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        streams: dict[str, dict[str, bytearray]] = defaultdict(lambda: defaultdict(bytearray))
        first: dict[str, str] = {}
        for line in out.splitlines():
            stream, src, sport, payload = line.split("\t")
            first.setdefault(stream, f"{src}:{sport}")
            d = "c2s" if f"{src}:{sport}" == first[stream] else "s2c"
            streams[stream][d] += bytes.fromhex(payload.replace(":", ""))
        for dirs in streams.values():
            add_stream(sizes, None, pcap.name, {d: bytes(b) for d, b in dirs.items()})
    return sizes


def corpus_gaps(corpus: Path, tshark: str = "tshark") -> dict[str, list[float]]:
    """Seconds between successive messages of a kind in the real sessions: Monero job pushes,
    Ethereum HTTP eth_getWork polls, ZCash share submissions (first packet of each)."""
    wanted = {
        "xmr-eu1.nanopool.org.pcapng": ("monero.job", b'"method":"job"'),
        "pool.eth.pp.ua.pcapng": ("ethhttp.getwork", b"eth_getWork"),
        "zec-eu.suprnova.cc.pcapng": ("zcash.submit", b'"mining.submit"'),
    }
    gaps: dict[str, list[float]] = {}
    for name, (key, marker) in wanted.items():
        out = subprocess.run(
            [tshark, "-r", str(corpus / "mining-real" / name), "-Y",
             "tcp.len>0 && !tcp.analysis.retransmission", "-T", "fields",
             "-e", "frame.time_relative", "-e", "tcp.payload"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        times = [
            float(t)
            for t, p in (ln.split("\t") for ln in out.splitlines())
            if marker in bytes.fromhex(p.replace(":", ""))
        ]
        gaps[key] = [b - a for a, b in itertools.pairwise(times)]
    return gaps


# Emulator sessions shaped like the captures: (family, dialect, pool args, miner args).
XMR_ADDR = "47mr7jYTroxQMwdKoPQuJoc9Vs9S9qCUAL6Ek4qyNFWJdqgBZRn4RYY2QjQfqEMJZVWPscupSgaqmUn1dpdUTC4fQsu3yjN"  # noqa: E501
ETH_USER = "0x4b999ba68e017854ffb6b494bc2ddb9ef02bd745.OptionalRigName"
SESSIONS = (
    ("stratum", "stratum1", ["--spaced"], ["--agent", "cgminer/3.7.2", "--user", "Bitcoin"]),
    ("stratum", "stratum1", [], ["--agent", "cgminer/4.10.0", "--user", "kvetak.worker1"]),
    ("zcash", "zcash", [], ["--agent", "equihashminer", "--user", "kvetak.worker1",
                            "--pool-name", "zec-eu.suprnova.cc",
                            "--password", "password", "--hashrate", "300"]),
    ("monero", "monero", [], ["--variant", "legacy", "--agent", "xmr/1.0", "--user", XMR_ADDR]),
    ("monero-xmrig6", "monero", [], ["--user", XMR_ADDR]),
    ("ethproxy", "ethproxy", [], ["--user", ETH_USER]),
    ("stratum", "ethstratum", [], ["--user", ETH_USER, "--variant", "esm1"]),
    ("ethhttp", "ethhttp", [], ["--user", ETH_USER, "--pool-name", "pool.eth.pp.ua"]),
)  # fmt: skip


def emulator_sizes(workdir: Path, scale: float = 0.01, duration: float = 200.0) -> Sizes:
    """Run each session of SESSIONS on loopback and read the sizes the miner logged."""
    sizes: Sizes = defaultdict(list)
    for i, (family, dialect, pool_args, miner_args) in enumerate(SESSIONS):
        plog, mlog = workdir / f"{i}-pool.jsonl", workdir / f"{i}-miner.jsonl"
        pool = subprocess.Popen(
            [sys.executable, "-m", "flowdet.lab.mining.pool", "--dialect", dialect, "--port", "0",
             "--time-scale", str(scale), "--log", str(plog), *pool_args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert pool.stdout is not None
            port = json.loads(pool.stdout.readline())["listening"][1]
            subprocess.run(
                [sys.executable, "-m", "flowdet.lab.mining.miner", "--dialect", dialect,
                 "--pool", f"127.0.0.1:{port}", "--time-scale", str(scale),
                 "--duration", str(duration), "--log", str(mlog), *miner_args],
                capture_output=True, timeout=120, check=True,
            )  # fmt: skip
        finally:
            pool.terminate()
            pool.wait(10)
        for line in mlog.read_text().splitlines():
            rec = json.loads(line)
            d = "c2s" if rec["dir"] == "tx" else "s2c"
            k, n = rec["kind"], rec["size"]
            if "branches" in rec:
                k, n = "notify-minus-branch", n - BRANCH_BYTES * rec["branches"]
            elif dialect == "ethstratum" and k == "mining.notify":
                k = "eth-notify"
            elif dialect == "ethstratum":
                continue  # only the notify has a counterpart in the corpus
            sizes[(family, d, k)].append(n)
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flowdet.lab.mining.reference", description=__doc__)
    p.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    p.add_argument("--tshark", default=shutil.which("tshark") or "tshark")
    args = p.parse_args(argv)
    real = corpus_sizes(args.corpus, args.tshark)
    with tempfile.TemporaryDirectory() as tmp:
        emu = emulator_sizes(Path(tmp))
    print("family\tdir\tkind\treal_n\treal_min\treal_max\temu_n\temu_min\temu_median\temu_max")
    for key in sorted(set(real) | set(emu)):
        r, e = sorted(real.get(key, [])), sorted(emu.get(key, []))
        cols = [*key, str(len(r)), *(map(str, (r[0], r[-1])) if r else ("-", "-")), str(len(e))]
        cols += [str(e[0]), str(e[len(e) // 2]), str(e[-1])] if e else ["-", "-", "-"]
        print("\t".join(cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
