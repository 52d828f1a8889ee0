"""Helpers shared by the command-line tools: errors, logging, speeds, signals."""

from __future__ import annotations

import _thread
import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable

from . import __version__
from .errors import EcgMonitorError

LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_speed(text: str) -> float:
    """Parse ``--speed``: ``max`` (as fast as possible, lossless) or a factor > 0."""
    if text.strip().lower() in ("max", "inf"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"speed must be a number > 0 (1 = real time) or 'max', got {text!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"speed must be > 0 or 'max', got {text!r}")
    return value


def non_negative_seconds(text: str) -> float:
    """Parse a duration or offset in seconds (>= 0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number), got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """Parse a duration in seconds (> 0)."""
    value = non_negative_seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected seconds > 0, got 0")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--version`` and ``--log-level`` to a parser."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=LOG_LEVELS,
        help="verbosity of log messages on stderr (default: warning)",
    )


def setup_logging(level: str) -> None:
    """Send log records to stderr at ``level``, once for the process."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def install_stop_handlers(stop: threading.Event) -> None:
    """Make SIGINT (Ctrl-C) and SIGTERM set ``stop`` so work ends cleanly.

    Python runs the handler in the main thread between two bytecodes, which
    may be inside ``stop.wait()`` while that thread holds the event's own
    (non-reentrant) lock; ``stop.set()`` there would wait for that lock
    forever. The handler therefore sets the event from a new low-level thread
    (``_thread.start_new_thread`` takes no lock of the ``threading`` module),
    which gets the lock as soon as the main thread lets it go.
    """

    def handler(signum, frame):  # noqa: ARG001
        _thread.start_new_thread(stop.set, ())

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def run_main(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body; project errors become one line on stderr and exit 2."""
    try:
        return body()
    except EcgMonitorError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output closed early (e.g. piped into head); not an error of ours
        return 0
