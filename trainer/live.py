"""Run a loaded record through the monitor's live path, for benchmarks and evaluation.

The record is replayed over ZeroMQ at ``--speed max`` (lossless) into
:class:`~monitor.runner.MonitorRunner`, exactly as
``ecg-monitor --source replay:NAME --headless --speed max`` does, so what a
benchmark scores is what the monitor does live.
"""

from __future__ import annotations

import math
import time

from monitor.events import EventWriter
from monitor.runner import MonitorRunner, RunnerConfig


def run_live(record, *, classify: bool = False, weights: str | None = None) -> tuple[list[dict], float]:
    """Monitor ``record`` live; return its beat events and the run time.

    Parameters
    ----------
    record : replay.wfdb_source.Record
        The record (its first channel is monitored).
    classify : bool
        Classify beats (the shipped model, or ``weights``).
    weights : str, optional
        Classifier weights file.

    Returns
    -------
    beats : list of dict
        The ``beat`` events, in order.
    seconds : float
        Wall-clock seconds of the run (transport included).
    """
    beats: list[dict] = []

    def sink(events: list[dict]) -> None:
        beats.extend(e for e in events if e.get("type") == "beat")

    runner = MonitorRunner(
        RunnerConfig(sources=[], speed=math.inf, classify=classify, weights=weights),
        EventWriter(None, sink),
        records=[record],
    )
    t0 = time.perf_counter()
    runner.run()
    return beats, time.perf_counter() - t0
