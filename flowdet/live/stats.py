"""The `stats` record of `flowdet live --format jsonl`: capture health in the alert stream.

The status line and the closing summary go to stderr, which a SIEM reading the JSON lines
never sees; a detector that dropped packets must say so where its alerts are read. So
every `--stats-interval` seconds, and once at exit, the JSONL stream gets a record with
`event_type` "stats" (as Suricata's EVE has). Its fields are flat, like the alert records
(Suricata nests them under `stats.capture`, `stats.decoder`, ...; `jq` and SIEM field
mappings read flat names more easily), and counters are totals since start, so a lost
record loses nothing.

`STATS_FIELDS` is the schema: docs/live.md's table is generated from it (`flowdet live
--fields`), and a test checks that every record has exactly these fields with these types.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowdet.alerts import AlertField, field_table
from flowdet.capture.batch import Status

# Decode outcomes that are not a decoded packet, by the name used in `pkts_skipped`.
SKIP_REASONS: dict[str, Status] = {
    "non_ip": Status.NON_IP,
    "truncated": Status.TRUNCATED,
    "unsupported_link": Status.UNSUPPORTED_LINK,
    "malformed": Status.MALFORMED,
}
N_STATUS = max(int(s) for s in Status) + 1

STATS_FIELDS: tuple[AlertField, ...] = (
    AlertField("timestamp", "string", "Wall-clock time the record was written, ISO 8601 UTC"),
    AlertField("event_type", "string", '"stats"'),
    AlertField(
        "pcap_filename",
        "string",
        "The source, as in the alert records: `live:<iface>[+<iface>...]` or the file name",
    ),
    AlertField(
        "stats_event",
        "string",
        '"interval": every --stats-interval seconds; "final": once at exit, after dumpcap '
        "stopped and the open flows were flushed (the numbers of the stderr summary)",
    ),
    AlertField("uptime", "number", "Seconds since the capture started"),
    AlertField("interval", "number", "Seconds since the previous stats record (or the start)"),
    AlertField(
        "pkts_read",
        "integer",
        "Packet records read from dumpcap's pipe (or the file) by the reader thread = "
        "pkts_decoded + the sum of pkts_skipped",
    ),
    AlertField(
        "pkts_decoded",
        "integer",
        "Of pkts_read: decoded as IP (fragments after the first included)",
    ),
    AlertField("pkts_fragments", "integer", "Of pkts_decoded: IP fragments after the first"),
    AlertField(
        "pkts_skipped",
        "object",
        "Of pkts_read: not decoded, by reason: non_ip, truncated, unsupported_link, malformed "
        "(every reason present, 0 when none)",
    ),
    AlertField(
        "pkts_scored",
        "integer",
        "Of pkts_read: handed to the flow table and scoring (at the final record: all of them)",
    ),
    AlertField(
        "pkts_queued",
        "integer",
        "pkts_read - pkts_scored: read, waiting in flowdet's queue for scoring",
    ),
    AlertField(
        "dumpcap_captured",
        "integer|null",
        "dumpcap's running packet count (its own status output, updated about once a second); "
        "null with --read",
    ),
    AlertField(
        "dumpcap_unscored",
        "integer|null",
        "dumpcap_captured - pkts_scored: captured, not yet scored (in the pipe or the queue; "
        "0 when dumpcap's count lags behind); null with --read",
    ),
    AlertField(
        "dumpcap_received",
        "integer|null",
        "Packets dumpcap received, summed over the interfaces; dumpcap reports it only when it "
        "stops, so null on interval records (and with --read)",
    ),
    AlertField(
        "dumpcap_dropped",
        "integer|null",
        "Packets lost before flowdet saw them: dropped by the kernel's capture buffer, by dumpcap, "
        "flushed, and by the interface (ps_ifdrop), summed over the interfaces - the number of "
        "the summary's WARNING line. Reported by dumpcap only when it stops: null on interval "
        "records (watch behind_s and if_rx_dropped there) and with --read",
    ),
    AlertField(
        "dumpcap_interfaces",
        "array|null",
        "dumpcap's final counts per interface: objects with iface, received, dropped (kernel + "
        "dumpcap + flushed), kernel, dumpcap, flushed, ifdrop; null where dumpcap_received is",
    ),
    AlertField(
        "if_rx_packets",
        "integer|null",
        "Packets the kernel received on the interfaces since the capture started, summed "
        "(/proc/net/dev, the counters of /sys/class/net/IFACE/statistics but read in flowdet's "
        "own network namespace); null with --read or when not readable",
    ),
    AlertField(
        "if_rx_dropped",
        "integer|null",
        "Receive drops the kernel counted on the interfaces since the start (/proc/net/dev: "
        "NIC drops, also frames no protocol took - on a veth the non-IP frames - after the "
        "capture saw them); available while running; null with --read",
    ),
    AlertField(
        "behind_s",
        "number|null",
        "Seconds in total the capture reader waited on a full queue because scoring was behind "
        "the capture (then dumpcap's buffer fills and the kernel drops packets); null with "
        "--read (a file waits without loss)",
    ),
    AlertField(
        "behind_share",
        "number|null",
        "Share (0..1) of this record's interval during which scoring was behind; null with --read",
    ),
    AlertField("flows_open", "integer", "Flows in the flow table now"),
    AlertField(
        "flows_ended",
        "integer",
        "Final flow records made (fin, rst, idle, active timeout segment, evicted, eof)",
    ),
    AlertField("records_scored", "integer", "Flow records scored (checkpoints and finals)"),
    AlertField("records_written", "integer", "alert, alert_update and flow_end records written"),
    AlertField("alerts", "integer", 'Records with alert_event "alert"'),
    AlertField("alert_updates", "integer", 'Records with alert_event "alert_update"'),
    AlertField("flow_ends", "integer", 'Records with alert_event "flow_end"'),
    AlertField(
        "alerts_by_label",
        "object",
        'Records with alert_event "alert", by label (labels without one are absent)',
    ),
    AlertField(
        "final_alerts_by_label",
        "object",
        "Flows whose final record is an alert, by label (the summary's 'final:' counts)",
    ),
    AlertField(
        "retracted",
        "integer",
        "Flows whose early alert the full flow did not confirm (final label benign)",
    ),
    AlertField(
        "stopped_by",
        "string|null",
        'Why live stopped ("SIGTERM", "SIGINT", "duration", "end of input", ...); null on '
        "interval records",
    ),
)


def stats_fields_markdown() -> str:
    """The stats field table of docs/live.md (`flowdet live --fields`), from STATS_FIELDS."""
    return field_table(STATS_FIELDS)


@dataclass(slots=True)
class RxCounters:
    """An interface's receive counters in /proc/net/dev."""

    packets: int
    dropped: int


def proc_net_dev_rx(ifaces: list[str], path: str = "/proc/net/dev") -> RxCounters | None:
    """Receive packets and drops of these interfaces, summed; None when none is listed.

    /proc/net/dev is per network namespace of the reading process, where
    /sys/class/net shows the namespace sysfs was mounted in (a process moved with
    nsenter would read another namespace's interface of the same name there)."""
    try:
        with open(path) as f:
            lines = f.readlines()[2:]
    except OSError:
        return None
    packets = dropped = 0
    seen = False
    for line in lines:
        name, _, rest = line.partition(":")
        if name.strip() in ifaces:
            cols = rest.split()
            if len(cols) >= 4:
                packets += int(cols[1])
                dropped += int(cols[3])
                seen = True
    return RxCounters(packets, dropped) if seen else None
