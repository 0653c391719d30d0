"""Capture stage: pcap / pcapng (optionally gzip) from files, stdin or pipes -> PacketBatches.

with open_capture("trace.pcapng") as reader:
    for batch in reader:
        ...
    print(reader.stats.status)
"""

from flowdet.capture.batch import COLUMNS, PacketBatch, Status
from flowdet.capture.reader import CaptureReader, InterfaceInfo, ReadStats, open_capture

__all__ = [
    "COLUMNS",
    "CaptureReader",
    "InterfaceInfo",
    "PacketBatch",
    "ReadStats",
    "Status",
    "open_capture",
]
