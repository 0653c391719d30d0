"""What every program the lab emulates shares, benign or mining: how it talks back to the
runner and how it ends.

The runner (or a test) reads single JSON lines on stdout: `{"listening": ...}` once a server
is bound, a client's summary at its end. It stops programs by PID, so SIGTERM (or SIGINT) is
a normal end, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed: the only channel back to the runner."""
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def run_until_signal(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` until it returns or SIGTERM/SIGINT arrives; a signal cancels it and returns
    normally. Other exceptions propagate: each family decides what a failure prints."""

    async def wrapper() -> None:
        task = asyncio.ensure_future(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(wrapper())
