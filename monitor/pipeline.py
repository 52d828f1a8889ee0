"""One monitored stream: ring buffer, causal filter, online R-peak detector, events.

:class:`StreamMonitor` is the object the headless mode, the window and the
trainer share: it takes decoded wire messages (and gaps) of one stream and
returns the events that became known (beats, status changes, gaps), as
plain dictionaries following ``docs/events.md``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from replay.errors import ConfigError
from replay.wire import AnnotationBatch, Control, Gap, SampleChunk

from .alarms import AlarmConfig, AlarmEngine
from .beats import BeatFeatures, live_front_end
from .early_run import EarlyRunRule
from .labels import BEAT_SYMBOLS, CLASS_TO_AAMI, SYMBOL_TO_CLASS
from .ringbuffer import RingBuffer

if TYPE_CHECKING:
    from .model import Classifier

logger = logging.getLogger(__name__)

#: Number of recent RR intervals whose median gives the heart rate.
HR_BEATS = 8
#: Statuses a source may report in ``source_events`` that become status events.
SOURCE_STATUSES = ("disconnected", "reconnected", "rate-mismatch", "rate-ok")
#: Recent messages whose arrival time is remembered (latency of beats).
_ARRIVALS_KEPT = 256
#: Largest gap, in seconds, fed to the detector in one block.
_GAP_BLOCK_S = 10.0


def resolve_channel(channel: str | int | None, channels: tuple[str, ...] | list[str], where: str) -> int:
    """Return the column index of ``channel`` (name or index; None = first).

    Raises
    ------
    ConfigError
        If the stream has no such channel (the message lists those it has).
    """
    channels = list(channels)
    if channel is None:
        return 0
    if isinstance(channel, str) and channel.lstrip("-").isdigit():
        channel = int(channel)
    if isinstance(channel, int) and not isinstance(channel, bool):
        if -len(channels) <= channel < len(channels):
            return channel % len(channels)
        raise ConfigError(
            f"{where}: channel index {channel} out of range; it has {len(channels)} "
            f"channel(s): {', '.join(channels)}"
        )
    if channel in channels:
        return channels.index(channel)
    lower = [c.lower() for c in channels]
    if str(channel).lower() in lower:
        return lower.index(str(channel).lower())
    raise ConfigError(f"{where}: no channel {channel!r}; it has {', '.join(channels)}")


class StreamMonitor:
    """Follow one stream: buffer, filter, detect beats, report events.

    Parameters
    ----------
    stream : str
        Stream name (as in the wire protocol).
    fs : float
        Sampling rate of the stream in Hz.
    channels : sequence of str
        Lead names of the stream.
    channel : str or int, optional
        Lead to monitor (name or index; default the first, MLII on MIT-BIH).
    buffer_s : float
        Seconds of signal kept in the ring buffers (30 to 3600).
    notch_hz : float, optional
        Mains frequency to notch (50 or 60 Hz) in the display/classification
        filter.
    alarm_config : AlarmConfig, optional
        Alarm limits (default: :class:`~monitor.alarms.AlarmConfig` defaults).
    classifier : Classifier, optional
        Beat classifier. With one, beat events wait until the beat's window
        (and RR features) are complete; :meth:`take_ready` hands out the
        features of such beats, the caller classifies them (batched over
        streams) and :meth:`label_beats` returns their events. Without one,
        beat events carry ``label`` ``"?"`` and leave at once.

    Attributes
    ----------
    raw : RingBuffer
        The received samples of the monitored lead (mV).
    filtered : RingBuffer
        The band-passed lead (0.5-40 Hz causal Butterworth, mV).
    beats : list of int
        Every beat sample index decided so far.
    """

    def __init__(
        self,
        stream: str,
        fs: float,
        channels: tuple[str, ...] | list[str],
        channel: str | int | None = None,
        *,
        buffer_s: float = 60.0,
        notch_hz: float | None = None,
        alarm_config: AlarmConfig | None = None,
        classifier: Classifier | None = None,
    ) -> None:
        self.stream = stream
        self.fs = float(fs)
        self.channels = tuple(channels)
        self.channel_index = resolve_channel(channel, self.channels, f"stream {stream}")
        self.channel_name = self.channels[self.channel_index]
        if not 30.0 <= buffer_s <= 3600.0:
            raise ConfigError(f"buffer_s must be 30 to 3600 s, got {buffer_s} s")
        self.buffer_s = float(buffer_s)
        self.filter, self.detector = live_front_end(self.fs, notch_hz)
        self.classifier = classifier
        self.featurizer = None if classifier is None else classifier.make_featurizer(self.fs)
        #: The classifier's early-run rule for this stream (None: none), applied in :meth:`label_beats`.
        self.early_runs = None if classifier is None else EarlyRunRule.for_classifier(classifier)
        self.raw = RingBuffer(self.fs, buffer_s)
        self.filtered = RingBuffer(self.fs, buffer_s)
        self.alarms = AlarmEngine(self.fs, stream, alarm_config or AlarmConfig())
        self._delay_samples = int(round(self.detector.delay_s * self.fs))
        logger.info(
            "stream %s: lead %s at %g Hz; %s; detector delay %.3f s",
            stream,
            self.channel_name,
            self.fs,
            self.filter.describe(),
            self.detector.delay_s,
        )
        self.reset()

    def reset(self) -> None:
        """Forget the stream's past (a new start of the same stream)."""
        self.filter.reset()
        self.detector.reset()
        self.alarms.reset()
        if self.featurizer is not None:
            self.featurizer.reset()
        if self.early_runs is not None:
            self.early_runs.reset()
        # beats detected but not yet classified: sample -> partial beat event
        self._unlabelled: dict[int, dict] = {}
        self._ready: list[BeatFeatures] = []
        self._end_event: dict | None = None
        self._ref_beats: deque[tuple[int, str]] = deque()
        #: Live confusion of replayed annotated records: ref AAMI class -> predicted AAMI -> count.
        self.confusion: dict[str, dict[str, int]] = {}
        self.raw.reset()
        self.filtered.reset()
        self.origin: int | None = None
        self.next_index = 0
        self._alarm_horizon = 0
        self.beats: list[int] = []
        self._rr: deque[float] = deque(maxlen=HR_BEATS)
        self._last_beat: int | None = None
        self._last_hole_end = -1
        self._state = "learning"
        self._lead_off = False
        self._noisy = False
        # (stop index, monotonic arrival) of recent messages, for beat latency
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=_ARRIVALS_KEPT)
        self.ref_sample: list[int] = []
        self.ref_symbol: list[str] = []
        self._ref_next = 0
        self.ended = False
        self.gaps = 0
        self.missing_samples = 0

    # ---------------------------------------------------------------- helpers
    def _status(self, status: str, sample: int, **extra) -> dict:
        ev = {
            "type": "status",
            "stream": self.stream,
            "status": status,
            "sample": int(sample),
            "time": round(sample / self.fs, 4),
        }
        ev.update(extra)
        return ev

    def _feed(self, start: int, x: np.ndarray, arrival: float, in_gap: bool = False) -> list[dict]:
        """Run filter and detector on samples ``x`` beginning at absolute ``start``."""
        events: list[dict] = []
        y = self.filter.process(x)
        self.raw.write(start, x)
        self.filtered.write(start, y)
        peaks = self.detector.process(x)
        self.next_index = start + x.shape[0]
        if peaks.size:
            events.extend(self._beats(peaks + self.origin, arrival))
        if self.featurizer is not None:
            ready = self.featurizer.process(y, peaks + self.origin, start)
            if len(ready):
                self._ready.append(ready)
        state = self.detector.state
        if state != self._state:
            since = self.origin + int(getattr(self.detector, "state_since", self.next_index - self.origin))
            events.extend(self._state_change(state, since, in_gap))
            self._state = state
        events.extend(self.alarms.process(events, self._horizon(), y, start))
        return events

    def _horizon(self) -> int:
        """Stream index up to which the detector's beats are final, for time-based alarms.

        While the detector learns its thresholds, or the lead is flat or
        missing, it has no opinion on whether beats happen, so the horizon
        stays where it was: no asystole or pause is inferred from a stretch
        the detector could not judge (a hole, a lead-off, a restart).
        """
        if self.detector.state in ("learning", "flat", "hole"):
            return self._alarm_horizon
        horizon = self.next_index - self._delay_samples
        if self._unlabelled:
            # beats waiting for their label are not given to the alarms yet
            horizon = min(horizon, next(iter(self._unlabelled)) - 1)
        self._alarm_horizon = max(self._alarm_horizon, horizon)
        return self._alarm_horizon

    def _state_change(self, new: str, sample: int, in_gap: bool) -> list[dict]:
        """Status events for a detector state change (see docs/events.md)."""
        out = []
        if self._lead_off and new not in ("flat", "hole"):
            self._lead_off = False
            out.append(self._status("lead-on", sample))
        if self._noisy and new != "noisy":
            self._noisy = False
            out.append(self._status("clean", sample))
        if new == "flat" and not self._lead_off:
            self._lead_off = True
            out.append(self._status("lead-off", sample, reason="flat or saturated signal"))
        elif new == "hole" and not in_gap and not self._lead_off:
            # NaN samples sent by the source itself (a sensor's lost samples / lead-off)
            self._lead_off = True
            out.append(self._status("lead-off", sample, reason="no valid samples (NaN)"))
        elif new == "noisy" and not self._noisy:
            self._noisy = True
            out.append(self._status("noisy", sample))
        return out

    def _arrival_of(self, sample: int, default: float) -> float:
        """Arrival time of the message that held ``sample`` (``default`` if forgotten)."""
        for stop, t in self._arrivals:
            if sample < stop:
                return t
        return default

    def _beats(self, peaks: np.ndarray, arrival: float) -> list[dict]:
        out = []
        now = time.monotonic()
        for p in peaks.tolist():
            rr = None
            if self._last_beat is not None and self._last_beat > self._last_hole_end:
                rr = (p - self._last_beat) / self.fs
                self._rr.append(rr)
            self._last_beat = p
            self.beats.append(p)
            hr = 60.0 / float(np.median(self._rr)) if self._rr else None
            out.append(
                {
                    "type": "beat",
                    "stream": self.stream,
                    "sample": int(p),
                    "time": round(p / self.fs, 4),
                    "rr": None if rr is None else round(rr, 4),
                    "hr": None if hr is None else round(hr, 1),
                    "label": "?",
                    "latency": round(now - self._arrival_of(p, arrival), 6),
                }
            )
        if self.featurizer is None:
            return out
        for ev in out:
            ev["_arrival"] = self._arrival_of(ev["sample"], arrival)
            self._unlabelled[ev["sample"]] = ev
        return []

    # ---------------------------------------------------------------- classification
    def take_ready(self) -> BeatFeatures | None:
        """Features of the beats ready to classify (None when there are none)."""
        if not self._ready:
            return None
        f = self.featurizer
        ready = BeatFeatures.concatenate(self._ready, f.n_channels, f.n_window, len(f.rr_names))
        self._ready = []
        return ready

    def label_beats(self, features: BeatFeatures, probs: np.ndarray) -> list[dict]:
        """Beat events (and the alarms they cause) of classified beats.

        Parameters
        ----------
        features : BeatFeatures
            What :meth:`take_ready` returned.
        probs : numpy.ndarray, shape (len(features), n_classes)
            Class probabilities from the classifier, in its class order
            (:meth:`~monitor.model.Classifier.predict_proba`); the stream's
            early-run rule (:attr:`early_runs`) is applied to a copy here,
            so beats must come in stream order.

        Returns
        -------
        list of dict
            ``beat`` events with ``label``, ``aami``, ``prob`` (and ``ref`` on
            annotated replays), then alarm events.
        """
        classes = self.classifier.classes
        aami = self.classifier.aami
        if self.early_runs is not None:
            probs = self.early_runs.process(np.array(probs, dtype=np.float32), features.rr, features.rhythm)
        best = probs.argmax(axis=1)
        now = time.monotonic()
        out = []
        for i, sample in enumerate(features.sample.tolist()):
            ev = self._unlabelled.pop(int(sample), None)
            if ev is None:
                continue
            k = int(best[i])
            ev["label"] = classes[k]
            ev["aami"] = aami[k]
            ev["prob"] = {c: round(float(p), 4) for c, p in zip(classes, probs[i])}
            if self.ref_sample:
                ref = self._match_ref(int(sample))
                ev["ref"] = ref
                ref_aami = CLASS_TO_AAMI.get(SYMBOL_TO_CLASS.get(ref, ""), "Q") if ref else "-"
                row = self.confusion.setdefault(ref_aami, {})
                row[aami[k]] = row.get(aami[k], 0) + 1
            ev["latency"] = round(now - ev.pop("_arrival"), 6)
            out.append(ev)
        out.extend(self.alarms.process(out, self._horizon()))
        return out

    def _match_ref(self, sample: int) -> str | None:
        """The reference beat symbol within 150 ms of ``sample`` (nearest), if any."""
        while self._ref_next < len(self.ref_sample):
            i = self._ref_next
            if self.ref_symbol[i] in BEAT_SYMBOLS:
                self._ref_beats.append((self.ref_sample[i], self.ref_symbol[i]))
            self._ref_next += 1
        tol = 0.15 * self.fs
        while self._ref_beats and self._ref_beats[0][0] < sample - tol:
            self._ref_beats.popleft()
        best = None
        for s, sym in self._ref_beats:
            if s > sample + tol:
                break
            if best is None or abs(s - sample) < abs(best[0] - sample):
                best = (s, sym)
        if best is None:
            return None
        self._ref_beats.remove(best)
        return best[1]

    @property
    def end_pending(self) -> bool:
        """The stream ended and its end event waits for the last labels."""
        return self._end_event is not None

    def finish_end(self) -> list[dict]:
        """The end status (after the last labelled beats), once."""
        ev, self._end_event = self._end_event, None
        if ev is None:
            return []
        ev["beats"] = len(self.beats)
        return self.alarms.process([ev], self._alarm_horizon) + [ev]

    def external_status(self, status: str, **extra) -> list[dict]:
        """A status found outside the signal (``no-data``, ``data``); returns its events.

        The status event is passed to the alarm engine too, so that a
        ``no_data`` technical alarm suppresses the physiological alarms.
        """
        ev = self._status(status, self.next_index, **extra)
        return [ev] + self.alarms.process([ev], self._alarm_horizon)

    # ---------------------------------------------------------------- input
    def handle(self, msg, arrival: float | None = None) -> list[dict]:
        """Process one decoded message or gap of this stream; return new events.

        Parameters
        ----------
        msg : SampleChunk, AnnotationBatch, Control or Gap
            What the receiver produced for this stream.
        arrival : float, optional
            ``time.monotonic()`` when the message arrived (for latency).
        """
        arrival = time.monotonic() if arrival is None else arrival
        if isinstance(msg, SampleChunk):
            return self._chunk(msg, arrival)
        if isinstance(msg, Gap):
            return self._gap(msg)
        if isinstance(msg, AnnotationBatch):
            self.ref_sample.extend(msg.sample.tolist())
            self.ref_symbol.extend(msg.symbol)
            return []
        if isinstance(msg, Control):
            if msg.eos:
                return self.end(msg.header.get("interrupted", False))
            return []
        return []

    def _chunk(self, msg: SampleChunk, arrival: float) -> list[dict]:
        events: list[dict] = []
        if msg.fs != self.fs or msg.channels != self.channels:
            raise ConfigError(
                f"stream {self.stream} changed format mid-stream "
                f"({self.fs:g} Hz {list(self.channels)} -> {msg.fs:g} Hz {list(msg.channels)})"
            )
        if self.origin is None:
            self.origin = msg.start
            self.next_index = msg.start
            self._alarm_horizon = msg.start
            events.append(
                self._status(
                    "connected",
                    msg.start,
                    fs=self.fs,
                    channels=list(self.channels),
                    channel=self.channel_name,
                )
            )
        if msg.start > self.next_index:
            # the receiver reported the gap; feed the hole so indices stay aligned
            events.extend(self._fill_hole(self.next_index, msg.start, arrival))
        notes = msg.header.get("source_events")
        if isinstance(notes, list):
            events.extend(self._source_events(notes))
        self._arrivals.append((msg.stop, arrival))
        x = np.ascontiguousarray(msg.data[:, self.channel_index], dtype=np.float64)
        if msg.has_nan:
            nan = np.isnan(x)
            if nan.any():
                self._last_hole_end = max(self._last_hole_end, msg.start + int(np.flatnonzero(nan)[-1]))
        events.extend(self._feed(msg.start, x, arrival))
        return events

    def _source_events(self, notes: list) -> list[dict]:
        """Status events a source reported in its sample headers (``source_events``).

        Serial sources report ``disconnected``, ``reconnected``,
        ``rate-mismatch`` and ``rate-ok`` this way; their lead-off is already
        visible as NaN samples and is reported from the signal instead.
        """
        out = []
        for note in notes:
            if not isinstance(note, dict) or note.get("status") not in SOURCE_STATUSES:
                continue
            sample = note.get("sample")
            sample = sample if isinstance(sample, int) and not isinstance(sample, bool) else self.next_index
            extra = {k: v for k, v in note.items() if k not in ("status", "sample", "type", "stream", "time")}
            out.append(self._status(note["status"], sample, source=True, **extra))
        return out

    def _fill_hole(self, start: int, stop: int, arrival: float) -> list[dict]:
        events = []
        block = max(1, int(_GAP_BLOCK_S * self.fs))
        for a in range(start, stop, block):
            b = min(stop, a + block)
            events.extend(self._feed(a, np.full(b - a, np.nan), arrival, in_gap=True))
        self._last_hole_end = stop
        self._rr.clear()
        return events

    def _gap(self, gap: Gap) -> list[dict]:
        if gap.kind != "ecg":
            return []
        self.gaps += 1
        self.missing_samples += gap.missing_samples
        return [
            {
                "type": "gap",
                "stream": self.stream,
                "sample": int(gap.start),
                "time": round(gap.start / self.fs, 4),
                "missing_messages": int(gap.missing_messages),
                "missing_samples": int(gap.missing_samples),
                "duration": round(gap.missing_samples / self.fs, 4),
            }
        ]

    def end(self, interrupted: bool = False) -> list[dict]:
        """The stream ended: report it (once)."""
        if self.ended:
            return []
        self.ended = True
        self._end_event = self._status("end", self.next_index, beats=len(self.beats), interrupted=bool(interrupted))
        if self.featurizer is not None:
            rest = self.featurizer.flush()
            if len(rest):
                self._ready.append(rest)
            return []  # the caller classifies what is ready, then calls finish_end()
        return self.finish_end()

    # ---------------------------------------------------------------- results
    @property
    def heart_rate_bpm(self) -> float | None:
        """Heart rate from the median of the last RR intervals, in bpm."""
        return 60.0 / float(np.median(self._rr)) if self._rr else None

    @property
    def samples_seen(self) -> int:
        """Samples (per channel) covered so far, holes included."""
        return 0 if self.origin is None else self.next_index - self.origin
