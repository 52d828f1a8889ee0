"""The monitor's event stream: one JSON object per line (docs/events.md).

The schema is a public interface: fields are added, never renamed or
repurposed. Every event has ``type`` and ``stream``; times are seconds from
the stream's first sample and ``sample`` is the index in the source stream at
the source rate.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from replay.errors import ConfigError

#: Event types written by the monitor.
EVENT_TYPES = ("beat", "status", "gap", "alarm", "summary", "relabel")
#: Values of ``status`` events' ``status`` field.
STATUSES = (
    "connected",
    "lead-off",
    "lead-on",
    "noisy",
    "clean",
    "no-data",
    "data",
    "end",
    "disconnected",
    "reconnected",
    "rate-mismatch",
    "rate-ok",
)


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf floats become null, numpy scalars plain."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return _clean(value.item())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def open_events(path: str | None, *, default_stdout: bool) -> tuple[IO[str] | None, bool]:
    """Open where events go: a file, ``-`` for stdout, or the default when ``path`` is None.

    Parameters
    ----------
    path : str or None
        The ``--events`` value.
    default_stdout : bool
        With no ``path``: stdout (headless) or nowhere (the window).

    Returns
    -------
    fp : file or None
        Line-buffered text stream (None: no event stream).
    close : bool
        Whether the caller owns ``fp`` and must close it.
    """
    if path is None:
        return (sys.stdout if default_stdout else None), False
    if path == "-":
        return sys.stdout, False
    try:
        return open(path, "w", encoding="utf-8", buffering=1), True
    except OSError as err:
        raise ConfigError(f"cannot write events to {path}: {err.strerror}") from None


class EventWriter:
    """Write events as JSON lines, flushed as soon as each is written.

    Parameters
    ----------
    fp : file object or None
        Text stream to write to; None writes no text (events are still
        counted and passed to ``sink``).
    sink : callable, optional
        Called with each list of events as they are written (the window
        takes its beat labels and alarms this way). It runs in the thread
        that writes, so it must be quick (e.g. append to a queue).
    """

    def __init__(self, fp: IO[str] | None, sink: Callable[[list[dict]], None] | None = None) -> None:
        self.fp = fp
        self.sink = sink
        self.count = 0
        #: Events written per type; alarms counted as ``"alarm_on"`` / ``"alarm_off"``.
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def _tally(self, event: dict) -> None:
        kind = event.get("type", "?")
        if kind == "alarm":
            kind = f"alarm_{event.get('state')}"
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def write(self, event: dict) -> None:
        """Write one event (and flush)."""
        line = json.dumps(_clean(event), separators=(",", ":"), allow_nan=False)
        with self._lock:
            self.count += 1
            self._tally(event)
            if self.fp is not None:
                self.fp.write(line + "\n")
                self.fp.flush()
        if self.sink is not None:
            self.sink([event])

    def write_many(self, events: list[dict]) -> None:
        """Write several events, flushing once."""
        if not events:
            return
        lines = (
            "".join(json.dumps(_clean(e), separators=(",", ":"), allow_nan=False) + "\n" for e in events)
            if self.fp is not None
            else ""
        )
        with self._lock:
            self.count += len(events)
            for e in events:
                self._tally(e)
            if self.fp is not None:
                self.fp.write(lines)
                self.fp.flush()
        if self.sink is not None:
            self.sink(list(events))
