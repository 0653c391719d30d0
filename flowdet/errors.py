"""Errors that end a command with a one-line message and exit code 2.

Every stage raises `FlowdetError` (or a subclass) for bad input it cannot use, so the CLI
can print one clear line instead of a traceback. Stages never print and exit on their own.
"""


class FlowdetError(Exception):
    """Bad input or environment: the CLI prints `flowdet: <message>` and exits 2."""

    exit_code = 2


class CaptureError(FlowdetError):
    """A capture that cannot be read at all (not a capture, empty, corrupt header)."""


class ModelError(FlowdetError):
    """A model file that is missing, corrupt or incompatible with this flowdet."""


class LabError(FlowdetError):
    """The lab cannot run here (not root, missing programs, namespace setup failed)."""
