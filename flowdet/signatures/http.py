"""HTTP/1.x messages at the start of a flow: request line, headers, body.

Getwork, getblocktemplate and ``eth_*`` work calls travel as JSON-RPC in HTTP POST bodies,
so the mining recognizers need the bodies, and the detector's reasons want the request line,
Host and User-Agent. Only the payload prefix is seen (about 1 KB), so a message may end
early: parsing goes as far as the bytes allow and says so (``complete=False``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flowdet.signatures.agents import miner_agent
from flowdet.signatures.evidence import Evidence, FamilyResult, FlowPayload, mask_account, printable

FEATURES: tuple[str, ...] = (
    "sig_http_request",  # the initiator's payload starts with an HTTP/1.x request
    "sig_http_post_json",  # a POST whose body (or Content-Type) is JSON
    "sig_http_miner_agent",  # User-Agent names known mining software
)

_METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"PATCH", b"CONNECT")
_HTTP_STARTS = (b"HTTP/", *(m + b" " for m in _METHODS))  # one startswith() call
_REQUEST_LINE = re.compile(rb"([A-Z]{3,7}) ([\x21-\x7e]{1,2048}) HTTP/(\d\.\d)\r?")
_STATUS_LINE = re.compile(rb"HTTP/(\d\.\d) (\d{3})(?: [^\r\n]*)?\r?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[^\r\n]*\r?\n")
MAX_MESSAGES = 16


@dataclass(frozen=True, slots=True)
class HttpMessage:
    """One request or response; `body` is de-chunked and may be cut short."""

    is_request: bool
    method: str  # requests only
    target: str  # requests only
    status: int  # responses only
    headers: tuple[tuple[str, str], ...]  # (lower-case name, value) in wire order
    body: bytes
    complete: bool  # headers and body were fully inside the prefix

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


def looks_like_http(stream: bytes) -> bool:
    """Cheap test before parsing: a request method or a status line at the very start."""
    return stream.startswith(_HTTP_STARTS)


def _dechunk(data: bytes) -> tuple[bytes, bytes, bool]:
    """(body, rest after the last chunk, complete) for a chunked transfer-coding."""
    out = bytearray()
    pos = 0
    while True:
        m = _CHUNK_SIZE.match(data, pos)
        if m is None:
            return bytes(out), b"", False
        size = int(m.group(1), 16)
        pos = m.end()
        if size == 0:
            end = data.find(b"\n", pos)  # trailer section ends with an empty line
            return bytes(out), (data[end + 1 :] if end >= 0 else b""), end >= 0
        out += data[pos : pos + size]
        if pos + size > len(data):
            return bytes(out), b"", False
        pos += size
        if data.startswith(b"\r\n", pos):
            pos += 2
        elif data.startswith(b"\n", pos):
            pos += 1


def parse_http_stream(stream: bytes) -> tuple[HttpMessage, ...]:
    """All HTTP/1.x messages at the start of `stream` (keep-alive: one after another)."""
    messages: list[HttpMessage] = []
    rest = stream
    while rest and len(messages) < MAX_MESSAGES and looks_like_http(rest):
        head_end = rest.find(b"\r\n\r\n")
        sep = 4
        if head_end < 0:
            head_end, sep = rest.find(b"\n\n"), 2
        complete_head = head_end >= 0
        head = rest[:head_end] if complete_head else rest
        after = rest[head_end + sep :] if complete_head else b""
        lines = head.split(b"\n")
        first = lines[0].rstrip(b"\r")
        req = _REQUEST_LINE.fullmatch(first)
        status = _STATUS_LINE.fullmatch(first)
        if req is None and status is None:
            break
        headers: list[tuple[str, str]] = []
        for raw in lines[1:]:
            name, colon, value = raw.rstrip(b"\r").partition(b":")
            if colon:
                headers.append(
                    (
                        name.strip().decode("latin-1").lower(),
                        value.strip().decode("latin-1"),
                    )
                )
        hdr = dict(headers)
        body, remaining, complete = b"", b"", complete_head
        if complete_head:
            if "chunked" in hdr.get("transfer-encoding", "").lower():
                body, remaining, complete = _dechunk(after)
            elif hdr.get("content-length", "").strip().isdigit():
                length = int(hdr["content-length"].strip())
                body, remaining = after[:length], after[length:]
                complete = len(after) >= length
            elif req is not None:
                remaining = after  # a request without a length has no body
            else:
                body = after  # a response without a length runs to the end of the stream
        messages.append(
            HttpMessage(
                is_request=req is not None,
                method=req.group(1).decode() if req else "",
                target=req.group(2).decode("latin-1") if req else "",
                status=int(status.group(2)) if status else 0,
                headers=tuple(headers),
                body=body,
                complete=complete,
            )
        )
        if not complete:
            break
        rest = remaining.lstrip(b"\r\n")
    return tuple(messages)


def inspect(payload: FlowPayload) -> FamilyResult:
    """The first request's line, Host and User-Agent, as context for other evidence."""
    features = dict.fromkeys(FEATURES, 0.0)
    if not looks_like_http(payload.client_stream):
        return FamilyResult((), features)
    requests = [m for m in parse_http_stream(payload.client_stream) if m.is_request]
    if not requests:
        return FamilyResult((), features)
    first = requests[0]
    features["sig_http_request"] = 1.0
    detail: dict[str, str | int] = {"method": first.method, "target": mask_account(first.target)}
    parts = []
    for key in ("host", "user-agent"):
        value = first.header(key)
        if value is not None:
            detail[key] = printable(value)
            parts.append(f'{key.title()} "{printable(value)}"')
    text = f"client sent HTTP {first.method} {printable(mask_account(first.target), 60)}"
    if parts:
        text += " (" + ", ".join(parts) + ")"
    evidence = [Evidence("http", "request", "toserver", detail, text)]
    for req in requests:
        ctype = (req.header("content-type") or "").lower()
        if req.method == "POST" and ("json" in ctype or req.body.lstrip()[:1] in (b"{", b"[")):
            features["sig_http_post_json"] = 1.0
        agent = req.header("user-agent")
        if agent and (product := miner_agent(agent)) is not None:
            features["sig_http_miner_agent"] = 1.0
            evidence.append(
                Evidence(
                    "http",
                    "miner_user_agent",
                    "toserver",
                    {"user-agent": printable(agent), "product": product},
                    f'client HTTP User-Agent "{printable(agent)}" names mining software '
                    f"({product})",
                    strength="hint",
                )
            )
            break
    return FamilyResult(tuple(evidence), features)
