"""Ctrl-C and SIGTERM, honoured even when Python swallows the exception.

A signal that lands inside a finaliser or a garbage-collection callback (JAX installs one)
raises `KeyboardInterrupt` there, where Python prints "Exception ignored" and carries on:
the run would then finish as if nobody had asked it to stop. `installed()` records every
such request; long loops call `raise_if_requested()` at a safe point (after a checkpoint),
and `ddrl.run` checks once more before it writes a summary.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

_requested: list[int] = []


def _handle(signum: int, frame: Any) -> None:
    _requested.append(signum)
    raise KeyboardInterrupt


def requested() -> bool:
    """Whether a stop was asked for since `installed()` was entered."""
    return bool(_requested)


def raise_if_requested() -> None:
    """Raise `KeyboardInterrupt` if a stop was asked for, even one whose exception was lost."""
    if _requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """SIGINT and SIGTERM both stop the run as Ctrl-C does, and are remembered."""
    _requested.clear()
    previous = {sig: signal.signal(sig, _handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested.clear()  # outside `installed()` nothing is pending
