"""The traffic lab: labelled captures from real programs in network namespaces.

`scenario.py` is the contract between the runner and the scenarios; `runner.py` runs them,
`topology.py` builds the namespaces and the WAN, `scenarios/` registers every family.
"""
