"""What the window knows of each stream, kept from the monitor's events (no Qt here).

The runner thread writes events through :class:`~monitor.events.EventWriter`
whose ``sink`` appends them to a :class:`collections.deque` (thread-safe
append / popleft).  The GUI thread drains that queue at every frame into one
:class:`StreamState` per stream: recent beats with their labels, counts per
class, heart rate, signal quality, losses, latency and the alarm history.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .palette import aami_of

logger = logging.getLogger(__name__)

#: Beats remembered per stream for drawing and the inspector (about 4 min at 75 bpm).
BEATS_KEPT = 300
#: Alarm events remembered in the history.
HISTORY_KEPT = 500
#: Window for "PVCs per minute", in seconds of stream time.
PVC_WINDOW_S = 60.0
#: EC57 matching window between a detected beat and a reference annotation, in seconds.
MATCH_S = 0.15

#: Quality shown for each status (status -> (text, severity 0 good .. 2 bad)).
_QUALITY = {
    "connected": ("OK", 0),
    "lead-on": ("OK", 0),
    "clean": ("OK", 0),
    "data": ("OK", 0),
    "noisy": ("NOISY SIGNAL", 1),
    "lead-off": ("LEADS OFF", 2),
    "no-data": ("NO DATA", 2),
    "end": ("Stream ended", 1),
}


@dataclass
class Beat:
    """One beat as drawn: sample, labels and probabilities."""

    sample: int
    label: str
    aami: str
    ref: str | None
    prob: dict | list | None
    hr: float | None
    latency_s: float | None


@dataclass
class StreamState:
    """The window's view of one stream, built from its events."""

    stream: str
    fs: float | None = None
    channel: str | None = None
    beats: deque = field(default_factory=lambda: deque(maxlen=BEATS_KEPT))
    counts: dict = field(default_factory=lambda: {k: 0 for k in ("N", "S", "V", "F", "Q", "?")})
    hr_bpm: float | None = None
    quality: str = "Waiting for data"
    quality_level: int = 1
    lost_messages: int = 0
    lost_samples: int = 0
    latency_s: float | None = None
    alarms: list = field(default_factory=list)
    ended: bool = False
    beats_total: int = 0
    #: Beats added since the view last drew them.
    changed: bool = True
    _v_samples: deque = field(default_factory=deque)

    def add(self, ev: dict) -> None:
        """Take one event of this stream."""
        kind = ev.get("type")
        if kind == "beat":
            self._beat(ev)
        elif kind == "relabel":
            self._relabel(ev)
        elif kind == "status":
            status = ev.get("status")
            if status == "connected":
                self.fs = float(ev.get("fs") or 0) or self.fs
                self.channel = ev.get("channel")
            if status == "end":
                self.ended = True
            if status in _QUALITY:
                self.quality, self.quality_level = _QUALITY[status]
            if status in ("lead-off", "no-data"):
                self.hr_bpm = None
        elif kind == "gap":
            self.lost_messages += int(ev.get("missing_messages") or 0)
            self.lost_samples += int(ev.get("missing_samples") or 0)
        elif kind == "alarm":
            self.alarms.append(ev)
            if len(self.alarms) > HISTORY_KEPT:
                del self.alarms[: len(self.alarms) - HISTORY_KEPT]

    def _beat(self, ev: dict) -> None:
        label = str(ev.get("label") or "?")
        aami = str(ev.get("aami") or aami_of(label))
        sample = int(ev["sample"])
        b = Beat(sample, label, aami, ev.get("ref"), ev.get("prob"), ev.get("hr"), ev.get("latency"))
        self.beats.append(b)
        self.beats_total += 1
        self.counts[aami if aami in self.counts else "?"] += 1
        self.hr_bpm = b.hr if b.hr is not None and math.isfinite(b.hr) else self.hr_bpm
        if b.latency_s is not None:
            self.latency_s = float(b.latency_s)
        if aami == "V":
            self._v_samples.append(sample)
        if self.fs:
            horizon = sample - PVC_WINDOW_S * self.fs
            while self._v_samples and self._v_samples[0] < horizon:
                self._v_samples.popleft()
        self.changed = True

    def _relabel(self, ev: dict) -> None:
        """A beat's final label, given after its provisional one (the post-pause rule)."""
        sample = int(ev["sample"])
        for b in reversed(self.beats):  # the beat is among the last few
            if b.sample == sample:
                break
            if b.sample < sample:
                return  # no longer kept
        else:
            return
        label = str(ev.get("label") or "?")
        aami = str(ev.get("aami") or aami_of(label))
        self.counts[b.aami if b.aami in self.counts else "?"] -= 1
        self.counts[aami if aami in self.counts else "?"] += 1
        if b.aami == "V" and aami != "V" and sample in self._v_samples:
            self._v_samples.remove(sample)
        elif aami == "V" and b.aami != "V":
            bisect.insort(self._v_samples, sample)
        b.label, b.aami, b.prob = label, aami, ev.get("prob", b.prob)
        self.changed = True

    def pvc_per_min(self, now_sample: int | None = None) -> float:
        """V beats in the last minute of stream time (per minute)."""
        if not self.fs:
            return 0.0
        if now_sample is not None:
            horizon = now_sample - PVC_WINDOW_S * self.fs
            return float(sum(1 for s in self._v_samples if s >= horizon))
        return float(len(self._v_samples))

    def beats_between(self, start: int, stop: int) -> list[Beat]:
        """Beats with ``start <= sample < stop``, oldest first."""
        return [b for b in self.beats if start <= b.sample < stop]

    def nearest_beat(self, sample: float, max_dist: int) -> Beat | None:
        """The remembered beat nearest ``sample`` (within ``max_dist`` samples), or None."""
        best, dist = None, max_dist + 1
        for b in self.beats:
            d = abs(b.sample - sample)
            if d < dist:
                best, dist = b, d
        return best


def reference_between(ref_sample: list, ref_symbol: list, start: int, stop: int) -> tuple[np.ndarray, list[str]]:
    """Reference beat annotations with ``start <= sample < stop``.

    ``ref_sample`` / ``ref_symbol`` are a stream monitor's lists (growing in
    another thread: they are read up to their common length at call time).
    Non-beat annotation codes are left out.
    """
    n = min(len(ref_sample), len(ref_symbol))
    lo = bisect.bisect_left(ref_sample, start, 0, n)
    hi = bisect.bisect_left(ref_sample, stop, lo, n)
    samples, symbols = [], []
    for i in range(lo, hi):
        sym = ref_symbol[i]
        if aami_of(sym) != "?":
            samples.append(ref_sample[i])
            symbols.append(sym)
    return np.asarray(samples, dtype=np.int64), symbols


def match_reference(beat_sample: int, ref_samples: np.ndarray, ref_symbols: list[str], tol: int) -> str | None:
    """Symbol of the reference beat within ``tol`` samples of ``beat_sample``, else None."""
    if ref_samples.size == 0:
        return None
    i = int(np.searchsorted(ref_samples, beat_sample))
    best, dist = None, tol + 1
    for j in (i - 1, i):
        if 0 <= j < ref_samples.size:
            d = abs(int(ref_samples[j]) - beat_sample)
            if d < dist:
                best, dist = ref_symbols[j], d
    return best


class Feed:
    """Events from the runner thread to the GUI thread.

    ``Feed.sink`` is given to :class:`~monitor.events.EventWriter`; it only
    appends to a deque, so it is safe (and quick) in the runner thread.
    :meth:`drain` runs in the GUI thread.
    """

    def __init__(self) -> None:
        self.queue: deque[dict] = deque()
        self.streams: dict[str, StreamState] = {}
        #: Every alarm event of every stream, oldest first (bounded).
        self.alarm_history: deque[dict] = deque(maxlen=HISTORY_KEPT)
        self.summary: dict | None = None
        self.events_seen = 0

    def sink(self, events: list[dict]) -> None:
        """EventWriter sink (runner thread): queue the events."""
        self.queue.extend(events)

    def state(self, stream: str) -> StreamState:
        """The state of ``stream`` (created on first use)."""
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = StreamState(stream)
        return st

    def drain(self, limit: int = 100000) -> list[dict]:
        """Apply queued events (GUI thread); return the alarm events among them."""
        alarms = []
        q = self.queue
        for _ in range(min(limit, len(q))):
            ev = q.popleft()
            self.events_seen += 1
            if ev.get("type") == "summary":
                self.summary = ev
                continue
            stream = ev.get("stream")
            if stream is None:
                continue
            self.state(stream).add(ev)
            if ev.get("type") == "alarm":
                self.alarm_history.append(ev)
                alarms.append(ev)
        return alarms
