"""The live tap: score flows on an interface (dumpcap) while their connections are open.

    flowdet live -i eth0 --format jsonl -o alerts.jsonl --alert-pcap alerts/

Modules: `dumpcap` (the capture process), `loop` (sources, the reader thread, the clock,
status and summary), `events` (early/updated/final alert events on top of
flowdet.pipeline), `sinks` (terminal, JSON lines, --on-alert, --alert-pcap), `command`
(the click command). docs/live.md describes the behaviour and the extra record fields.
"""
