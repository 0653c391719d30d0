"""Flow table settings: timeouts, the flow cap and prefix checkpoints.

Defaults follow the peers a user will compare flowdet with: Zeek's 5-minute TCP inactivity
timeout and 5-second close/reset delay, nfstream's 120 s idle and 1800 s active timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowdet.errors import FlowdetError

NS = 1_000_000_000

DEFAULT_CHECKPOINT_PACKETS: tuple[int, ...] = (8, 16, 32, 64, 128)
DEFAULT_CHECKPOINT_SECONDS: tuple[float, ...] = (10.0, 60.0, 300.0)
DEFAULT_PAYLOAD_BYTES = 2048
MAX_PAYLOAD_BYTES = 65536


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """How flows end and when snapshots are taken; every duration is in seconds.

    Checkpoints are off unless listed: `flowdet flows` emits finished flows only, the
    detector turns on `DEFAULT_CHECKPOINT_PACKETS` / `DEFAULT_CHECKPOINT_SECONDS`.
    """

    idle_timeout_tcp: float = 300.0
    idle_timeout_other: float = 120.0  # UDP, ICMP and every other protocol
    active_timeout: float = 1800.0
    tcp_linger: float = 5.0  # after FIN both ways or RST, absorb final ACKs/retransmissions
    max_flows: int = 500_000  # concurrent flows; beyond it the longest-idle are evicted
    gap_threshold: float = 1.0  # silence that counts as an idle gap and starts a burst
    checkpoint_packets: tuple[int, ...] = field(default=())
    checkpoint_seconds: tuple[float, ...] = field(default=())
    fragment_timeout: float = 60.0  # how long a first fragment waits for the others
    # payload bytes kept per direction (first PAYLOAD_MESSAGES packets): 2048 holds an
    # OpenSSH 9 KEXINIT (HASSH) and large TLS ClientHellos, which 1024 cut short
    payload_bytes: int = DEFAULT_PAYLOAD_BYTES
    # the outermost VLAN id is part of the flow key (Suricata's vlan.use-for-tracking);
    # False merges the VLANs of a 5-tuple, e.g. for captures with asymmetric tagging
    vlan_in_key: bool = True
    # snapshots only of TCP flows that have carried payload: the detector's domain gate calls
    # every other record benign unread, so a scorer with the gate need not have them made
    # (on a busy link most snapshots are of UDP and payload-less flows); a skipped time
    # checkpoint counts as taken, so a later snapshot is never mislabelled with it
    checkpoints_in_domain_only: bool = False

    def __post_init__(self) -> None:
        for name in (
            "idle_timeout_tcp",
            "idle_timeout_other",
            "active_timeout",
            "gap_threshold",
            "fragment_timeout",
        ):
            if not getattr(self, name) > 0:
                raise FlowdetError(f"flow setting {name} must be > 0, got {getattr(self, name)}")
        if self.tcp_linger < 0:
            raise FlowdetError(f"flow setting tcp_linger must be >= 0, got {self.tcp_linger}")
        if self.max_flows < 1:
            raise FlowdetError(f"flow setting max_flows must be >= 1, got {self.max_flows}")
        if not 0 <= self.payload_bytes <= MAX_PAYLOAD_BYTES:
            raise FlowdetError(
                f"flow setting payload_bytes must be 0..{MAX_PAYLOAD_BYTES}, "
                f"got {self.payload_bytes}"
            )
        if any(p < 1 for p in self.checkpoint_packets):
            raise FlowdetError("packet checkpoints must be >= 1")
        if any(not s > 0 for s in self.checkpoint_seconds):
            raise FlowdetError("time checkpoints must be > 0 seconds")
        if len(self.checkpoint_seconds) > 62:
            raise FlowdetError("at most 62 time checkpoints")

    def with_default_checkpoints(self) -> FlowConfig:
        """The same settings with the detector's default checkpoints switched on."""
        from dataclasses import replace

        return replace(
            self,
            checkpoint_packets=DEFAULT_CHECKPOINT_PACKETS,
            checkpoint_seconds=DEFAULT_CHECKPOINT_SECONDS,
        )

    @property
    def checkpoint_names(self) -> list[str]:
        """Names in kernel order: packet checkpoints first, then time checkpoints."""
        return [f"pkts:{p}" for p in self.checkpoint_packets] + [
            f"secs:{_fmt_seconds(s)}" for s in self.checkpoint_seconds
        ]


def _fmt_seconds(s: float) -> str:
    return str(int(s)) if float(s).is_integer() else repr(float(s))


def parse_checkpoints(spec: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Parse `8,16,32p,10s,60s` style lists: bare or `p` = packets, `s` = seconds.

    Also accepts the record names themselves (`pkts:16`, `secs:60`).
    """
    pkts: list[int] = []
    secs: list[float] = []
    for raw in spec.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        try:
            if item.startswith("pkts:"):
                pkts.append(int(item[5:]))
            elif item.startswith("secs:"):
                secs.append(float(item[5:]))
            elif item.endswith("s"):
                secs.append(float(item[:-1]))
            elif item.endswith("p"):
                pkts.append(int(item[:-1]))
            else:
                pkts.append(int(item))
        except ValueError:
            raise FlowdetError(
                f"bad checkpoint {raw.strip()!r} (use e.g. 16 or 16p or 60s)"
            ) from None
    return tuple(sorted(set(pkts))), tuple(sorted(set(secs)))
