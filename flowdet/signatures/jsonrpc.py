"""JSON-RPC messages in a payload prefix, whether line-delimited over TCP or in HTTP bodies.

Stratum v1, its dialects, the xmrig protocol and eth-proxy all send one JSON object per line;
getwork and ``eth_*`` calls send them as HTTP POST bodies. One parser serves all recognizers:
it joins the packets of a direction (a message may be split over packets, one packet may hold
several messages), splits lines, and decodes each. The prefix ends mid-message more often than
not (a ZCash ``mining.submit`` alone is 2.8 KB), so a line cut short is still mined for its
``"method"`` and leading parameters with anchored patterns, and marked ``partial``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from flowdet.signatures.http import looks_like_http, parse_http_stream

MAX_MESSAGES = 64
_STRIP = b" \t\r\n\x00"

_METHOD = re.compile(rb'"method"\s*:\s*"([^"\\]{1,100})"')
_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,20}|null|"[^"\\]{0,64}")')
_PARAMS_LIST = re.compile(rb'"params"\s*:\s*\[')
_PARAMS_OBJ = re.compile(rb'"params"\s*:\s*\{')
_RESULT_OBJ = re.compile(rb'"result"\s*:\s*\{')
_LIST_ITEM = re.compile(rb'\s*(?:"([^"\\]{0,512})"|(null|true|false|-?\d{1,20}))\s*(,|\])')
_KEY_STRING = re.compile(rb'"([A-Za-z_][A-Za-z0-9_]{0,31})"\s*:\s*"([^"\\]{0,512})"')


@dataclass(frozen=True, slots=True)
class JsonMessage:
    """One JSON-RPC object. For a partial one, `obj` holds only what could be recovered."""

    obj: dict[str, Any]
    partial: bool = False
    transport: Literal["line", "http"] = "line"
    http_headers: tuple[tuple[str, str], ...] = field(default=())
    raw: bytes = b""  # the cut line, kept for partial messages only

    @property
    def method(self) -> str | None:
        m = self.obj.get("method")
        return m if isinstance(m, str) else None

    @property
    def params(self) -> Any:
        return self.obj.get("params")

    @property
    def result(self) -> Any:
        return self.obj.get("result")

    def header(self, name: str) -> str | None:
        for key, value in self.http_headers:
            if key == name:
                return value
        return None


def _partial(line: bytes) -> dict[str, Any] | None:
    """What anchored patterns recover from a JSON object cut short; None if nothing useful."""
    obj: dict[str, Any] = {}
    if (m := _METHOD.search(line)) is not None:
        obj["method"] = m.group(1).decode("utf-8", "replace")
    if (m := _ID.search(line)) is not None:
        obj["id"] = m.group(1).decode("utf-8", "replace").strip('"')
    if (m := _PARAMS_LIST.search(line)) is not None:
        items: list[Any] = []
        pos = m.end()
        while len(items) < 16 and (item := _LIST_ITEM.match(line, pos)) is not None:
            if item.group(1) is not None:
                items.append(item.group(1).decode("utf-8", "replace"))
            else:
                items.append(item.group(2).decode())
            pos = item.end()
            if item.group(3) == b"]":
                break
        obj["params"] = items
    elif (m := _PARAMS_OBJ.search(line)) is not None:
        obj["params"] = _string_pairs(line[m.end() :])
    if (m := _RESULT_OBJ.search(line)) is not None:
        obj["result"] = _string_pairs(line[m.end() :])
    return obj if ("method" in obj or "result" in obj) else None


def _string_pairs(data: bytes) -> dict[str, Any]:
    """Flat "key": "string" pairs of a (possibly nested, possibly cut) object."""
    return {
        k.decode(): v.decode("utf-8", "replace")
        for k, v in _KEY_STRING.findall(data)[:32]
        if k.decode() != "method"
    }


def _decode(chunk: bytes) -> list[dict[str, Any]] | None:
    try:
        value = json.loads(chunk)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):  # a JSON-RPC batch
        return [v for v in value if isinstance(v, dict)]
    return None


def messages_from_lines(
    data: bytes,
    transport: Literal["line", "http"] = "line",
    headers: tuple[tuple[str, str], ...] = (),
) -> list[JsonMessage]:
    out: list[JsonMessage] = []
    for raw in data.split(b"\n"):
        line = raw.strip(_STRIP)
        if not line or line[:1] not in (b"{", b"["):
            continue
        decoded = _decode(line)
        if decoded is not None:
            out.extend(JsonMessage(obj, False, transport, headers) for obj in decoded)
        elif line[:1] == b"{" and (obj := _partial(line)) is not None:
            out.append(JsonMessage(obj, True, transport, headers, line))
        if len(out) >= MAX_MESSAGES:
            break
    return out[:MAX_MESSAGES]


def messages_from_stream(stream: bytes) -> tuple[JsonMessage, ...]:
    """JSON-RPC messages of one direction: HTTP bodies if it speaks HTTP, else JSON lines."""
    stream = stream.lstrip(_STRIP)
    if looks_like_http(stream):
        out: list[JsonMessage] = []
        for msg in parse_http_stream(stream):
            whole = _decode(msg.body.strip(_STRIP)) if msg.body.strip(_STRIP) else None
            if whole is not None:  # one body, perhaps pretty-printed over several lines
                out.extend(JsonMessage(obj, False, "http", msg.headers) for obj in whole)
            else:
                out.extend(messages_from_lines(msg.body, "http", msg.headers))
        return tuple(out[:MAX_MESSAGES])
    return tuple(messages_from_lines(stream))
