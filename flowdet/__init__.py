"""flowdet: find Stratum mining and SSH tunnels in network flows."""

__version__ = "0.1.0"
