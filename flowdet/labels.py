"""Ground-truth labels for training and evaluation: labels.tsv files and label folders.

Three sources, in this order of precedence for a capture:
1. a labels file given explicitly (`--labels FILE`), matched on the capture's file name;
2. `labels.tsv` beside the capture (the lab's layout, and ../shared/corpus/mining-real);
3. a folder named after a label (DATA/mining/*.pcap): every flow of the capture has it.

A labels file needs the columns pcap, client_ip, client_port, server_ip, server_port and
label; proto (default TCP), scenario and evidence are optional. The label `other` (the
mining-real corpus: payload, but no mining RPC) means benign. Rows match flows by 5-tuple
in either direction, because the labels' client (the first to send payload) is not always
the flow's initiator (the first to send a SYN).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flowdet.errors import FlowdetError
from flowdet.model import CLASSES

REQUIRED = ("pcap", "client_ip", "client_port", "server_ip", "server_port", "label")
ALIASES = {"other": "benign", "normal": "benign"}
LABELS_FILE = "labels.tsv"

# (ip, port) pairs sorted, so either direction of a flow gives the same key
Endpoints = tuple[tuple[str, int], tuple[str, int]]


class LabelError(FlowdetError):
    """A labels file that cannot be used (bad columns, unknown label names)."""


def normalise_label(raw: str, where: str) -> str:
    name = raw.strip().lower()
    name = ALIASES.get(name, name)
    if name not in CLASSES:
        known = ", ".join((*CLASSES, *ALIASES))
        raise LabelError(f"{where}: unknown label {raw.strip()!r} (known: {known})")
    return name


def endpoints(ip_a: str, port_a: int, ip_b: str, port_b: int) -> Endpoints:
    a, b = (ip_a, int(port_a)), (ip_b, int(port_b))
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True, slots=True)
class LabelRow:
    pcap: str
    client: tuple[str, int]
    server: tuple[str, int]
    proto: str
    label: str
    scenario: str
    line: int

    @property
    def key(self) -> tuple[str, str, Endpoints]:
        return (self.pcap, self.proto, endpoints(*self.client, *self.server))


@dataclass
class LabelFile:
    """One labels file: rows by (pcap name, proto, endpoints), and which rows were used."""

    path: Path
    rows: dict[tuple[str, str, Endpoints], LabelRow]
    used: set[tuple[str, str, Endpoints]] = field(default_factory=set)

    @property
    def pcaps(self) -> set[str]:
        return {k[0] for k in self.rows}

    def lookup(
        self, pcap: str, proto: str, src: tuple[str, int], dst: tuple[str, int]
    ) -> LabelRow | None:
        key = (pcap, proto.upper(), endpoints(*src, *dst))
        row = self.rows.get(key)
        if row is not None:
            self.used.add(key)
        return row

    def unmatched(self, pcaps: Iterable[str] | None = None) -> list[LabelRow]:
        """Rows of the given captures (all by default) that matched no flow."""
        want = set(pcaps) if pcaps is not None else None
        return [
            r
            for k, r in self.rows.items()
            if k not in self.used and (want is None or r.pcap in want)
        ]


def read_labels(path: str | os.PathLike[str]) -> LabelFile:
    """Parse a labels.tsv; LabelError (exit 2) for missing columns, bad ports, unknown labels."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelError(f"{p}: cannot read labels ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise LabelError(f"{p}: labels file is not UTF-8 text") from None
    lines = text.splitlines()
    if not lines:
        raise LabelError(f"{p}: labels file is empty (expected a header line)")
    reader = csv.reader(lines, delimiter="\t")
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise LabelError(
            f"{p}: labels file lacks column(s) {', '.join(missing)} "
            f"(needs tab-separated {', '.join(REQUIRED)}; optional proto, scenario)"
        )
    col = {name: header.index(name) for name in header}
    rows: dict[tuple[str, str, Endpoints], LabelRow] = {}
    for lineno, parts in enumerate(reader, start=2):
        if not parts or all(not x.strip() for x in parts):
            continue
        where = f"{p}:{lineno}"
        if len(parts) < len(header):
            parts = parts + [""] * (len(header) - len(parts))

        def get(name: str, parts: list[str] = parts) -> str:
            return parts[col[name]].strip() if name in col else ""

        try:
            cport, sport = int(get("client_port")), int(get("server_port"))
        except ValueError:
            raise LabelError(f"{where}: client_port/server_port must be integers") from None
        if not (0 <= cport <= 65535 and 0 <= sport <= 65535):
            raise LabelError(f"{where}: port out of range")
        pcap = os.path.basename(get("pcap"))
        if not pcap:
            raise LabelError(f"{where}: empty pcap name")
        label = normalise_label(get("label"), where)
        proto = (get("proto") or "TCP").upper()
        row = LabelRow(
            pcap,
            (get("client_ip"), cport),
            (get("server_ip"), sport),
            proto,
            label,
            get("scenario"),
            lineno,
        )
        prev = rows.get(row.key)
        if prev is not None and prev.label != row.label:
            raise LabelError(
                f"{where}: flow labelled {row.label} here and {prev.label} on line {prev.line}"
            )
        rows[row.key] = row
    return LabelFile(p, rows)


@dataclass(frozen=True, slots=True)
class CaptureLabels:
    """How one capture's flows get their labels."""

    capture: str
    file: LabelFile | None = None  # per-flow rows
    folder_label: str | None = None  # every flow has this label

    @property
    def name(self) -> str:
        return os.path.basename(self.capture)


def resolve_labels(captures: Iterable[str], labels: str | None = None) -> list[CaptureLabels]:
    """The label source of each capture (see the module docstring); files read once."""
    explicit = read_labels(labels) if labels else None
    cache: dict[Path, LabelFile] = {}
    out: list[CaptureLabels] = []
    for cap in captures:
        if explicit is not None:
            out.append(CaptureLabels(cap, explicit))
            continue
        folder = Path(cap).absolute().parent  # a symlinked capture keeps its folder label
        beside = folder / LABELS_FILE
        if beside.is_file():
            if beside not in cache:
                cache[beside] = read_labels(beside)
            out.append(CaptureLabels(cap, cache[beside]))
            continue
        fname = folder.name.lower()
        if ALIASES.get(fname, fname) in CLASSES:
            out.append(CaptureLabels(cap, folder_label=ALIASES.get(fname, fname)))
            continue
        out.append(CaptureLabels(cap))
    return out
