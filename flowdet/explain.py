"""`flowdet explain`: one flow, dissected by Wireshark beside flowdet's verdict and reasons.

flowdet's recognizers are fast and small; Wireshark's dissectors are the reference an
analyst trusts. `explain` finds the flow (by Community ID or flow id), scores the capture
to get the flow's verdict, then has tshark (through pyshark) dissect the flow's first
packets - selected by a display filter on the 5-tuple and the flow's time span, so the
same filter can be pasted into Wireshark - and prints what Wireshark sees: SSH banners,
KEXINIT algorithms and HASSH, TLS SNI and ALPN, HTTP requests, and the JSON-RPC methods,
worker names and jobs of stratum-like payloads (parsed from the reassembled TCP payload,
since Wireshark has no stratum dissector).

pyshark costs about a millisecond per packet and tshark reads the whole file to apply a
display filter, so the dissection is bounded twice: at most `--packets` packets are kept,
and tshark is stopped after `--timeout` seconds whatever it has done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import click

from flowdet.errors import FlowdetError, ModelError
from flowdet.pipeline import Featurizer, Verdict
from flowdet.signatures.evidence import mask_account, printable

DEFAULT_PACKETS = 40
DEFAULT_TIMEOUT = 30.0


@dataclass(slots=True)
class WiresharkView:
    """What tshark showed for the flow's first packets."""

    display_filter: str
    packets: list[str] = field(default_factory=list)  # one summary line per packet
    evidence: list[str] = field(default_factory=list)
    timed_out: bool = False
    error: str | None = None
    tshark: str = ""


# -- finding the flow ---------------------------------------------------------------------


def find_flow(
    capture: str,
    detector: Any | None,
    *,
    community_id: str | None = None,
    flow_id: int | None = None,
    featurize: Featurizer | None = None,
) -> list[Verdict]:
    """Every final record of the wanted flow (several if active timeouts split it or its
    5-tuple was reused), with verdicts when a detector is given (else label 'unscored')."""
    return _find(capture, detector, community_id, flow_id, featurize)[0]


def _find(
    capture: str,
    detector: Any | None,
    community_id: str | None,
    flow_id: int | None,
    featurize: Featurizer | None,
) -> tuple[list[Verdict], Any]:
    if (community_id is None) == (flow_id is None):
        raise FlowdetError("explain: give exactly one of --community-id or --flow-id")

    def wanted(v: Verdict) -> bool:
        if flow_id is not None:
            return v.record.flow_id == flow_id
        return v.record.community_id == community_id

    if detector is not None:
        return _score_one_flow(capture, detector, community_id, flow_id, featurize)
    from flowdet.flows import FlowConfig, iter_flow_blocks
    from flowdet.flows import layout as L

    out: list[Verdict] = []
    for _, blk in iter_flow_blocks([capture], FlowConfig()):
        for i, rec in enumerate(blk.records()):
            v = Verdict(
                record=rec,
                label="unscored",
                score=0.0,
                proba={},
                threshold=None,
                final=True,
                source=os.path.basename(capture),
                start_ns=int(blk.s[i, L.START]),
                end_ns=int(blk.s[i, L.LAST]),
                key=tuple(int(k) for k in blk.key[i].tolist()),
            )
            if wanted(v):
                from flowdet.signatures import inspect

                v.signature = inspect(rec.payload_toserver, rec.payload_toclient)
                out.append(v)
    return out, None


def _score_one_flow(
    capture: str,
    detector: Any,
    community_id: str | None,
    flow_id: int | None,
    featurize: Featurizer | None,
) -> tuple[list[Verdict], Any]:
    """Run the scoring pipeline over the capture but hand it only the wanted flow's records
    (checkpoints included), so a big capture costs a flows pass, not a scoring pass."""
    import numpy as np

    from flowdet.capture import open_capture
    from flowdet.flows import layout as L
    from flowdet.pipeline import ScoringPipeline

    pipe = ScoringPipeline(detector, featurize=featurize, all_flows=True)
    pipe.source = os.path.basename(capture)
    ids: set[int] = set()  # flow ids already known to carry the community id

    def only_wanted(blk):
        fid = blk.s[:, L.FLOW_ID]
        if flow_id is not None:
            return blk.take(np.flatnonzero(fid == flow_id))
        new = np.flatnonzero(~np.isin(fid, list(ids))) if ids else np.arange(len(blk))
        if len(new):
            cids = blk.take(new).columns(["community_id"])["community_id"]
            ids.update(
                int(fid[i]) for i, c in zip(new.tolist(), cids, strict=True) if c == community_id
            )
        return blk.take(np.flatnonzero(np.isin(fid, list(ids)))) if ids else blk.take(new[:0])

    out: list[Verdict] = []
    with open_capture(capture) as reader:
        for batch in reader:
            out.extend(pipe.consume(only_wanted(pipe.table.update(batch))))
        out.extend(pipe.consume(only_wanted(pipe.table.flush())))
    return out, pipe


@dataclass(slots=True)
class WhyNot:
    """For a benign verdict: the closest alert class and what pushed the flow towards it."""

    label: str
    probability: float
    threshold: float
    in_domain: bool
    drivers_method: str = "none"
    drivers: list[tuple[str, float, float]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def why_not(pipe: Any, v: Verdict) -> WhyNot | None:
    """Drivers and statements towards the most probable alert class of a benign flow, so
    an analyst sees how close it came and on what (nothing is claimed about the label)."""
    from flowdet.reasons import flow_reasons

    if v.label != "benign" or pipe is None:
        return None
    cls = max((c for c in v.proba if c != "benign"), key=lambda c: v.proba[c], default=None)
    if cls is None:
        return None
    proto_tcp = v.record.proto_num == 6
    payload = v.record.payload_pkts_toserver + v.record.payload_pkts_toclient > 0
    out = WhyNot(
        cls, v.proba[cls], pipe.thresholds[cls], (proto_tcp and payload) or not pipe.domain_gate
    )
    if not out.in_domain:
        return out
    X, sigs = pipe.featurize([v.record])
    d = pipe.explainer.drivers(X, [cls])[0]
    out.drivers_method, out.drivers = (pipe.explainer.method if d else "none"), d
    weights = {n: w for n, _, w in d}
    out.reasons = [r.text for r in flow_reasons(v.record, sigs[0], cls, weights or None)]
    return out


# -- the display filter -------------------------------------------------------------------


def display_filter(v: Verdict, with_time: bool = True) -> str:
    """A Wireshark display filter for the flow: both addresses, both ports, its time span."""
    r = v.record
    ipf = "ipv6.addr" if r.ip_version == 6 else "ip.addr"
    parts = [f"{ipf}=={r.src_ip}", f"{ipf}=={r.dest_ip}"]
    proto = r.proto.lower()
    if proto in ("tcp", "udp", "sctp"):
        parts += [f"{proto}.port=={r.src_port}", f"{proto}.port=={r.dest_port}"]
    elif proto in ("icmp", "ipv6-icmp"):
        parts.append("icmp" if proto == "icmp" else "icmpv6")
    else:
        parts.append(f"{'ipv6.nxt' if r.ip_version == 6 else 'ip.proto'}=={r.proto_num}")
    if with_time:
        start = v.start_ns / 1e9 - 1e-6
        end = v.end_ns / 1e9 + 1e-6
        parts += [f"frame.time_epoch>={start:.6f}", f"frame.time_epoch<={end:.6f}"]
    return " && ".join(parts)


# -- dissection ---------------------------------------------------------------------------


class _Enough(Exception):
    """Raised from the packet callback to stop tshark after the packet limit."""


def _fields(layer: Any) -> dict[str, str]:
    return dict(getattr(layer, "_all_fields", {}) or {})


def _hex_bytes(value: str) -> bytes:
    try:
        return bytes.fromhex(value.replace(":", ""))
    except ValueError:
        return b""


_JSON_START = re.compile(rb"[{\[]")


def json_messages(stream: bytes) -> Iterator[Any]:
    """JSON values in a reassembled payload stream: one per line (stratum, xmrig), or the
    body after an HTTP header block (getwork / eth over HTTP)."""
    for line in stream.split(b"\n"):
        line = line.strip()
        if not line:
            continue
        m = _JSON_START.search(line)
        if m is None:
            continue
        try:
            yield json.loads(line[m.start() :].decode("utf-8", "replace"))
        except ValueError:
            continue


def describe_json(msg: Any, side: str) -> str | None:
    """One line per JSON-RPC message: method, worker/login, agent, job id."""
    if not isinstance(msg, dict):
        return None
    method = msg.get("method")
    params = msg.get("params")
    if isinstance(method, str):
        text = f"{side} JSON-RPC method {printable(method, 60)}"
        extra = []
        if isinstance(params, list) and params:
            first = params[0]
            if method in ("mining.authorize", "eth_submitLogin", "mining.submit") and isinstance(
                first, str
            ):
                extra.append(f'worker "{mask_account(first)}"')
            elif method == "mining.subscribe" and isinstance(first, str):
                extra.append(f'agent "{printable(first, 60)}"')
            elif method == "mining.notify" and isinstance(first, str | int):
                extra.append(f'job "{printable(first, 40)}"')
            elif method in ("mining.set_difficulty",):
                extra.append(f"difficulty {printable(first, 40)}")
        elif isinstance(params, dict):
            if "login" in params:
                extra.append(f'login "{mask_account(str(params["login"]))}"')
            if "agent" in params:
                extra.append(f'agent "{printable(params["agent"], 60)}"')
            if "job_id" in params:
                extra.append(f'job "{printable(params["job_id"], 40)}"')
        return text + (f" ({', '.join(extra)})" if extra else "")
    result = msg.get("result")
    if isinstance(result, dict) and isinstance(result.get("job"), dict):
        job = result["job"]
        return f'{side} JSON-RPC result with job "{printable(job.get("job_id", ""), 40)}"'
    if "result" in msg:
        return f"{side} JSON-RPC result (id {printable(msg.get('id'), 20)})"
    return None


def _packet_line(pkt: Any, client_ip: str, t0: float) -> tuple[str, str]:
    """(summary line, 'client'/'server') for one pyshark packet."""
    ip = getattr(pkt, "ip", None) or getattr(pkt, "ipv6", None)
    src = str(getattr(ip, "src", "")) if ip is not None else ""
    side = "client" if src == client_ip else "server"
    arrow = "C->S" if side == "client" else "S->C"
    t = float(pkt.sniff_timestamp) - t0
    plen = ""
    tcp = getattr(pkt, "tcp", None)
    flags = ""
    if tcp is not None:
        plen = str(getattr(tcp, "len", ""))
        flags = str(_fields(tcp).get("tcp.flags.str", "")).replace("·", "").strip()
    udp = getattr(pkt, "udp", None)
    if udp is not None:
        plen = str(int(getattr(udp, "length", 8)) - 8)
    line = (
        f"{pkt.number:>6} {t:>10.6f}  {arrow}  len {plen:>5}  {flags:<6} "
        f"{pkt.highest_layer}".rstrip()
    )
    return line, side


def _ssh_evidence(layer: Any, side: str, out: list[str]) -> None:
    f = _fields(layer)
    if f.get("ssh.protocol"):
        out.append(f"{side} SSH banner {printable(f['ssh.protocol'], 120)}")
    if f.get("ssh.kex_algorithms"):
        parts = [f"kex {printable(f['ssh.kex_algorithms'], 200)}"]
        for key, name in (
            ("ssh.encryption_algorithms_client_to_server", "ciphers c2s"),
            ("ssh.mac_algorithms_client_to_server", "MACs c2s"),
        ):
            if f.get(key):
                parts.append(f"{name} {printable(f[key], 200)}")
        h = f.get("ssh.kex.hassh") or f.get("ssh.kex.hasshserver")
        if h:
            parts.append(f"{'HASSH' if side == 'client' else 'HASSHServer'} {h}")
        out.append(f"{side} SSH KEXINIT: " + "; ".join(parts))


def _tls_evidence(layer: Any, side: str, out: list[str]) -> None:
    f = _fields(layer)
    sni = f.get("tls.handshake.extensions_server_name")
    alpn = f.get("tls.handshake.extensions_alpn_str")
    if sni:
        out.append(f"{side} TLS ClientHello SNI {printable(sni, 120)}")
    if alpn:
        out.append(f"{side} TLS ALPN {printable(alpn, 60)}")
    ja3 = f.get("tls.handshake.ja3")
    if ja3:
        out.append(f"{side} TLS JA3 {ja3}")


def _http_evidence(layer: Any, side: str, out: list[str]) -> None:
    f = _fields(layer)
    method, uri = f.get("http.request.method"), f.get("http.request.uri")
    if method:
        host = f.get("http.host", "")
        ua = f.get("http.user_agent", "")
        text = f"{side} HTTP {printable(method, 10)} {printable(uri or '', 80)} Host {host}"
        if ua:
            text += f' User-Agent "{printable(ua, 80)}"'
        out.append(text)


def dissect(
    capture: str, v: Verdict, *, packets: int = DEFAULT_PACKETS, timeout: float = DEFAULT_TIMEOUT
) -> WiresharkView:
    """tshark's view of the flow's first `packets` packets, within `timeout` seconds."""
    import pyshark

    view = WiresharkView(display_filter(v))
    client_ip = v.record.src_ip
    streams: dict[str, list[tuple[int, bytes]]] = {"client": [], "server": []}
    seen_seq: set[tuple[str, int]] = set()
    t0 = v.start_ns / 1e9
    ev: list[str] = []

    def on_packet(pkt: Any) -> None:
        line, side = _packet_line(pkt, client_ip, t0)
        view.packets.append(line)
        for layer in pkt.layers:
            name = layer.layer_name
            if name == "ssh":
                _ssh_evidence(layer, side, ev)
            elif name == "tls":
                _tls_evidence(layer, side, ev)
            elif name == "http":
                _http_evidence(layer, side, ev)
        tcp = getattr(pkt, "tcp", None)
        if tcp is not None:
            f = _fields(tcp)
            payload = f.get("tcp.payload")
            if payload:
                seq = int(f.get("tcp.seq_raw", f.get("tcp.seq", 0)) or 0)
                if (side, seq) not in seen_seq:  # skip retransmissions
                    seen_seq.add((side, seq))
                    streams[side].append((int(pkt.number), _hex_bytes(payload)))
        if len(view.packets) >= packets:
            raise _Enough

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # pyshark's child-watcher noise
    try:
        cap = pyshark.FileCapture(capture, display_filter=view.display_filter, keep_packets=False)
    except Exception as exc:  # TSharkNotFoundException and the like
        view.error = f"{type(exc).__name__}: {exc}"
        return view
    try:
        cap.apply_on_packets(on_packet, timeout=timeout)
    except _Enough:
        pass
    except TimeoutError:
        view.timed_out = True
    except Exception as exc:
        view.error = f"{type(exc).__name__}: {printable(str(exc), 200)}"
    finally:
        with contextlib.suppress(Exception):
            cap.close()
    for side in ("client", "server"):
        data = b"".join(p for _, p in streams[side])
        for msg in json_messages(data):
            line = describe_json(msg, side)
            if line:
                ev.append(line)
    # keep first occurrences in order (KEXINIT is dissected once per packet)
    view.evidence = list(dict.fromkeys(ev))
    return view


# -- rendering ----------------------------------------------------------------------------


def render_explain(
    v: Verdict, view: WiresharkView | None, others: int = 0, wn: WhyNot | None = None
) -> str:
    from flowdet.alerts import render_verdict

    lines = []
    if v.label == "unscored":
        r = v.record
        lines.append(
            f"flow {r.flow_id} in {v.source}  {r.community_id}\n"
            f"    {r.src_ip}:{r.src_port} -> {r.dest_ip}:{r.dest_port} {r.proto}  "
            f"{r.pkts_toserver + r.pkts_toclient:,} packets  {r.start} .. {r.end}\n"
            "    (no verdict: no model could be loaded)"
        )
    else:
        lines.append("flowdet verdict:")
        lines.append(render_verdict(v).rstrip("\n"))
    if wn is not None and not wn.in_domain:
        lines.append(
            "not an alert: outside the model's domain (not TCP, or no payload), benign "
            "without scoring"
        )
    elif wn is not None:
        lines.append(
            f"not an alert: closest class {wn.label} at {wn.probability:.2f} "
            f"(threshold {wn.threshold:.2f}); what pushed it that way:"
        )
        lines += [f"    - {text}" for text in wn.reasons]
        if wn.drivers:
            lines.append(f"model drivers towards {wn.label} ({wn.drivers_method}):")
            lines += [f"    {n} = {x:.4g}  (+{w:.3g})" for n, x, w in wn.drivers]
    if v.drivers:
        lines.append(f"model drivers ({v.drivers_method}, strongest first):")
        lines += [f"    {name} = {value:.4g}  (+{w:.3g})" for name, value, w in v.drivers]
    if others:
        lines.append(f"    ({others} more record(s) of this flow id/community id not shown)")
    sig = v.signature
    if sig is not None and sig.evidence:
        lines.append("flowdet payload evidence:")
        lines += [f"    - {e.text}" for e in sig.evidence]
    if view is not None:
        lines.append(f"Wireshark ({view.tshark or 'tshark'} via pyshark), display filter:")
        lines.append(f"    {view.display_filter}")
        if view.error:
            lines.append(f"    dissection failed: {view.error}")
        n = len(view.packets)
        lines.append(f"first {n} packet{'s' if n != 1 else ''}:" if n else "no packets matched")
        lines += [f"  {p}" for p in view.packets]
        if view.timed_out:
            lines.append("    (tshark stopped at the timeout; more packets may exist)")
        lines.append("Wireshark evidence:" if view.evidence else "Wireshark evidence: none")
        lines += [f"    - {e}" for e in view.evidence]
    return "\n".join(lines) + "\n"


def _tshark_version() -> str:
    import shutil
    import subprocess

    exe = shutil.which("tshark")
    if exe is None:
        return ""
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "tshark"
    first = out.splitlines()[0] if out else "tshark"
    m = re.match(r"TShark \(Wireshark\) (\S+)", first)
    return f"tshark {m.group(1)}" if m else "tshark"


def explain_flow(
    capture: str,
    *,
    community_id: str | None = None,
    flow_id: int | None = None,
    detector: Any | None = None,
    featurize: Featurizer | None = None,
    packets: int = DEFAULT_PACKETS,
    timeout: float = DEFAULT_TIMEOUT,
    out: TextIO,
) -> int:
    """Find, score, dissect and print one flow; exit code 0, or 2 if it is not found or
    Wireshark could not dissect it."""
    found, pipe = _find(capture, detector, community_id, flow_id, featurize)
    if not found:
        what = f"community id {community_id}" if community_id else f"flow id {flow_id}"
        raise FlowdetError(f"{os.path.basename(capture)}: no flow with {what}")
    v = max(found, key=lambda x: x.score)
    view = dissect(capture, v, packets=packets, timeout=timeout)
    view.tshark = _tshark_version()
    out.write(render_explain(v, view, len(found) - 1, why_not(pipe, v)))
    out.flush()
    if view.error:
        raise FlowdetError(f"Wireshark dissection failed: {view.error}")
    return 0


@click.command("explain")
@click.argument("capture", metavar="CAPTURE")
@click.option("--community-id", default=None, metavar="ID", help="The flow's Community ID.")
@click.option("--flow-id", type=int, default=None, metavar="N", help="The flow's flow_id.")
@click.option("--model", default=None, metavar="M", help="Model file [default: shipped].")
@click.option(
    "--packets",
    type=click.IntRange(1, 10000),
    default=DEFAULT_PACKETS,
    show_default=True,
    help="Dissect at most this many of the flow's first packets.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.5, 3600),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Stop tshark after this many seconds.",
)
def explain_command(
    capture: str,
    community_id: str | None,
    flow_id: int | None,
    model: str | None,
    packets: int,
    timeout: float,
) -> int:
    """Show one flow as Wireshark dissects it, beside flowdet's verdict and reasons.

    Pick the flow by --community-id (as in `flowdet score` output, Zeek's conn.log or
    Suricata's EVE) or by --flow-id (flow_id in `flowdet score` / `flowdet flows` output
    for this capture). Prints the verdict, the reasons, flowdet's payload evidence, the
    display filter (paste it into Wireshark), the first packets and what Wireshark's
    dissectors show: SSH banners, algorithms and HASSH; TLS SNI and ALPN; HTTP requests;
    JSON-RPC methods, worker names and jobs of stratum-like payloads.

    Without a usable default model the flow is still dissected, without a verdict; a model
    given with --model must load. Exit status: 0 shown; 2 flow not found, unreadable
    capture, unusable --model, or tshark failure.
    """
    from flowdet.score import load_detector

    if (community_id is None) == (flow_id is None):
        raise FlowdetError("explain: give exactly one of --community-id or --flow-id")
    detector = None
    try:
        detector = load_detector(model)
    except ModelError as exc:
        if model is not None:
            raise
        click.echo(f"flowdet: note: {exc}; showing the flow without a verdict", err=True)
    import sys

    return explain_flow(
        capture,
        community_id=community_id,
        flow_id=flow_id,
        detector=detector,
        packets=packets,
        timeout=timeout,
        out=sys.stdout,
    )
