"""Names of mining software as they appear in user agents and stratum subscribe params.

Miners announce themselves: cgminer sends ``mining.subscribe ["cgminer/3.7.2"]``, xmrig puts
``"agent": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0"`` in its ``login``, getwork
clients send ``User-Agent: ethminer/0.19``. The list below is the prefixes of the programs
we know (open-source miners and the common closed ones); matching is case-insensitive on the
product token at the start of the agent string, so "Mozilla/5.0 (... cgminer)" does not match
but "sgminer/5.6.1-nicehash-51" does.
"""

from __future__ import annotations

import re

KNOWN_MINER_AGENTS: tuple[str, ...] = (
    "bfgminer",
    "bminer",
    "bzminer",
    "ccminer",
    "cgminer",
    "claymore",
    "cpuminer",
    "cryptodredge",
    "equihashminer",
    "ethminer",
    "ewbf",
    "excavator",
    "gminer",
    "kawpowminer",
    "lolminer",
    "minerd",
    "miniz",
    "nanominer",
    "nbminer",
    "nheqminer",
    "nicehash",
    "phoenixminer",
    "rigel",
    "sgminer",
    "srbminer",
    "t-rex",
    "teamredminer",
    "trex",
    "wildrig",
    "xmr-stak",
    "xmrig",
    "xmr",  # "xmr/1.0" in the nanopool capture of the mining-real corpus
    "z-enemy",
    "zjazz",
)

_PRODUCT = re.compile(r"\s*([A-Za-z][A-Za-z0-9_.-]*)")
_VERSION_SPLIT = re.compile(r"[/ _]|(?<=[a-z])-(?=\d)|(?<=[a-z])(?=\d)", re.IGNORECASE)


def miner_agent(agent: str) -> str | None:
    """The known miner product at the start of an agent string, or None."""
    m = _PRODUCT.match(agent)
    if m is None:
        return None
    token = m.group(1).lower()
    product = _VERSION_SPLIT.split(token, maxsplit=1)[0].rstrip(".-_")
    if product in KNOWN_MINER_AGENTS:
        return product
    for known in KNOWN_MINER_AGENTS:
        # "sgminer-5.6.1" / "xmrig-proxy" / "xmr-stak-rx": the product followed by a separator
        if token.startswith(known) and token[len(known) : len(known) + 1] in {"-", ".", "_"}:
            return known
    return None
