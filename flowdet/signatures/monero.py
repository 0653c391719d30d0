"""The xmrig (CryptoNote / Monero) pool protocol: ``login``, ``job``, ``submit``, ``keepalived``.

The miner logs in with ``{"method":"login","params":{"login":<wallet[.worker]>,"pass":..,
"agent":"XMRig/6.x ...","algo":[...],"rigid":..}}``; the pool answers with a ``result`` that
carries the first job (``blob``, ``job_id``, ``target``, and since RandomX a ``seed_hash``),
then pushes ``{"method":"job","params":{"blob":..}}``. Shares are
``{"method":"submit","params":{"id","job_id","nonce","result"}}``.

``login``/``submit``/``job`` are common method names in other JSON-RPC services, so each is
accepted only with the parameter shape the protocol gives it: a login needs a params object
with a ``login`` key and at least one of pass/agent/algo/rigid; a submit needs ``job_id`` and
``nonce``; a job needs ``blob`` and ``job_id``.
"""

from __future__ import annotations

from typing import Any

from flowdet.signatures.agents import miner_agent
from flowdet.signatures.evidence import Evidence, FamilyResult, FlowPayload, mask_account, printable
from flowdet.signatures.jsonrpc import JsonMessage

FEATURES: tuple[str, ...] = (
    "sig_monero_login",  # the initiator sent an xmrig-style login
    "sig_monero_submit",
    "sig_monero_keepalive",
    "sig_monero_job",  # the responder sent a job (notification or in the login result)
    "sig_monero_miner_agent",  # the login agent names known mining software
)

_LOGIN_KEYS = ("pass", "agent", "algo", "rigid")


def _params(msg: JsonMessage) -> dict[str, Any]:
    return msg.params if isinstance(msg.params, dict) else {}


def _job_of(msg: JsonMessage) -> dict[str, Any] | None:
    """The job object of a `job` notification or of a login result, if it has the shape."""
    if msg.method == "job":
        job = _params(msg)
    elif isinstance(msg.result, dict):
        job = msg.result.get("job", msg.result if msg.partial else None)
    else:
        return None
    if isinstance(job, dict) and "blob" in job and "job_id" in job:
        return job
    return None


def inspect(payload: FlowPayload) -> FamilyResult:
    features = dict.fromkeys(FEATURES, 0.0)
    evidence: list[Evidence] = []
    seen: set[str] = set()

    for msg in payload.client_messages:
        method, params = msg.method, _params(msg)
        if method == "login" and "login" in params and any(k in params for k in _LOGIN_KEYS):
            features["sig_monero_login"] = 1.0
            agent = params.get("agent")
            detail: dict[str, str | int] = {"login": mask_account(str(params["login"]))}
            text = f'client sent xmrig login (login "{detail["login"]}"'
            if isinstance(agent, str):
                detail["agent"] = printable(agent)
                text += f', agent "{printable(agent)}"'
                if miner_agent(agent):
                    features["sig_monero_miner_agent"] = 1.0
            algo = params.get("algo")
            if isinstance(algo, list) and algo:
                detail["algo"] = printable(",".join(str(a) for a in algo[:6]))
            if isinstance(params.get("rigid"), str) and params["rigid"]:
                detail["rigid"] = printable(params["rigid"], 40)
            name, text = "login", text + ")"
        elif method == "submit" and "job_id" in params and "nonce" in params:
            features["sig_monero_submit"] = 1.0
            name = "submit"
            detail = {"job_id": printable(params["job_id"], 40)}
            text = f'client sent xmrig submit (job "{detail["job_id"]}")'
        elif method == "keepalived":
            features["sig_monero_keepalive"] = 1.0
            name, detail, text = "keepalived", {}, "client sent xmrig keepalived"
        else:
            continue
        if msg.partial:
            detail["partial"] = 1
        if name not in seen:
            seen.add(name)
            evidence.append(Evidence("monero", name, "toserver", detail, text))

    for msg in payload.server_messages:
        job = _job_of(msg)
        if job is None:
            continue
        features["sig_monero_job"] = 1.0
        if "job" in seen:
            continue
        seen.add("job")
        detail = {"job_id": printable(job.get("job_id"), 40)}
        for key in ("target", "algo", "seed_hash", "height"):
            if key in job:
                detail[key] = printable(job[key], 64)
        where = "job notification" if msg.method == "job" else "job in its login result"
        extra = ", seed_hash present (RandomX)" if "seed_hash" in job else ""
        text = (
            f'server sent xmrig {where} (job "{detail["job_id"]}", blob of '
            f"{len(str(job.get('blob', ''))) // 2} bytes{extra})"
        )
        evidence.append(Evidence("monero", "job", "toclient", detail, text))
    return FamilyResult(tuple(evidence), features)
