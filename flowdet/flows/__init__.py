"""The flows stage: packet batches -> bidirectional flow records.

    table = FlowTable(FlowConfig())
    for batch in reader:
        for rec in table.update(batch).records(): ...
    table.flush()

or, from captures straight to records, `iter_flows(paths, config)`. The rules (initiator,
timeouts, checkpoints, fragments, ordering) are in flowdet.flows.table's docstring and
docs/flows.md.
"""

from flowdet.flows.config import (
    DEFAULT_CHECKPOINT_PACKETS,
    DEFAULT_CHECKPOINT_SECONDS,
    FlowConfig,
    parse_checkpoints,
)
from flowdet.flows.record import CSV_FIELDS, RECORD_FIELDS, FlowBlock, FlowRecord, fields_markdown
from flowdet.flows.stream import expand_sources, iter_flow_blocks, iter_flows
from flowdet.flows.table import FlowStats, FlowTable

__all__ = [
    "CSV_FIELDS",
    "DEFAULT_CHECKPOINT_PACKETS",
    "DEFAULT_CHECKPOINT_SECONDS",
    "RECORD_FIELDS",
    "FlowBlock",
    "FlowConfig",
    "FlowRecord",
    "FlowStats",
    "FlowTable",
    "expand_sources",
    "fields_markdown",
    "iter_flow_blocks",
    "iter_flows",
    "parse_checkpoints",
]
