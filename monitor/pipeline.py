"""One monitored stream: ring buffer, causal filter, online R-peak detector, events.

:class:`StreamMonitor` is the object the headless mode, the window and the
trainer share: it takes decoded wire messages (and gaps) of one stream and
returns the events that became known (beats, status changes, gaps), as
plain dictionaries following ``docs/events.md``.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from replay.errors import ConfigError
from replay.wire import AnnotationBatch, Control, Gap, SampleChunk

from .alarms import AlarmConfig, AlarmEngine
from .beats import BeatFeatures, live_front_end
from .early_run import EarlyRunRule
from .labels import BEAT_SYMBOLS, CLASS_TO_AAMI, SYMBOL_TO_CLASS
from .post_pause import PostPauseRule
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


def apply_stream_rules(
    prob: np.ndarray,
    rr: np.ndarray,
    rhythm: np.ndarray,
    post_pause: PostPauseRule | None,
    early_runs: EarlyRunRule | None,
) -> np.ndarray:
    """The per-stream rules over every beat of one recording, in the order a :class:`StreamMonitor` applies them.

    The post-pause rule (each beat's next interval read from the next beat),
    then the early-run rule from a fresh start; either may be None.  For
    scoring whole records as the live monitor labels them (``ecg-eval``,
    ``ecg-bench rules``).  ``prob`` (after the classifier's rules) is changed
    in place and returned.
    """
    if post_pause is not None:
        prob = post_pause.apply_to_record(prob, rr, rhythm)
    if early_runs is not None:
        early_runs.reset()
        prob = early_runs.process(prob, rr, rhythm)
    return prob


def _ref_aami(ref: str | None) -> str:
    """AAMI class of a reference beat symbol for the live confusion (``"-"``: no reference beat)."""
    return CLASS_TO_AAMI.get(SYMBOL_TO_CLASS.get(ref, ""), "Q") if ref else "-"


def _prob_table(classes: Sequence[str], prob: np.ndarray) -> dict[str, float]:
    """A beat event's ``prob``: each class's probability to 4 decimals."""
    return {c: round(float(p), 4) for c, p in zip(classes, prob)}


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
        beat events carry ``label`` ``"?"`` and leave at once. With a
        post-pause rule in the classifier's file (:mod:`monitor.post_pause`),
        an early beat called N that waits for its next interval leaves at
        once with its label so far and ``provisional: true``; a ``relabel``
        event follows when the rule changes it (before the next beat's
        event: the next beat's detection settles it), and the beats after it
        wait behind it (docs/events.md).

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
        #: The classifier's post-pause rule (None: none), applied before the early-run rule.
        self.post_pause = None if classifier is None else PostPauseRule.for_classifier(classifier)
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
        # classified beats waiting, in order, for the post-pause rule: (samples, probs, rr, rhythm, waits)
        self._held: list[tuple[np.ndarray, ...]] = []
        # the first held beat once its provisional event has left: (sample, event, arrival)
        self._provisional: tuple[int, dict, float] | None = None
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
        # the first beats after holes (their interval from the one before is not known)
        self._after_hole: deque[int] = deque(maxlen=_ARRIVALS_KEPT)
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
        to_alarms = events
        if self._held:
            out, final = self._advance()
            to_alarms = events + final
            events.extend(out)
        events.extend(self.alarms.process(to_alarms, self._horizon(), y, start))
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
        if self._provisional is not None:
            # nor is a beat whose label is provisional (the alarms see final labels only)
            horizon = min(horizon, self._provisional[0] - 1)
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
            elif self._last_beat is not None:
                self._after_hole.append(p)
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
            post-pause rule (:attr:`post_pause`) and early-run rule
            (:attr:`early_runs`) are applied to a copy here, so beats must
            come in stream order.

        Returns
        -------
        list of dict
            ``beat`` events with ``label``, ``aami``, ``prob`` (and ``ref`` on
            annotated replays), then alarm events.  A beat that waits for the
            post-pause rule leaves with ``provisional: true``; its ``relabel``
            event, if the rule changes its label, and the events of the beats
            behind it come from :meth:`handle` or a later call (and
            :meth:`finish_end` at the latest).
        """
        probs = np.array(probs, dtype=np.float32)
        if self.post_pause is None:
            out, final = self._label(features.sample, probs, features.rr, features.rhythm)
        else:
            waits = self.post_pause.waits(probs, features.rr, features.rhythm)
            self._held.append((features.sample, probs, features.rr, features.rhythm, waits))
            out, final = self._advance()
        out.extend(self.alarms.process(final, self._horizon()))
        return out

    def _advance(self, final: bool = False) -> tuple[list[dict], list[dict]]:
        """Events of the held beats: those now final (and ``relabel``), then the provisional event of the first that waits.

        Returns the events to write and the beats with their final labels,
        for the alarm engine (which never sees a provisional label).
        """
        out, final_beats = self._label(*self._release(final))
        if self._held and self._provisional is None:
            sample, probs, rr, rhythm, _ = (a[:1] for a in self._held[0])
            if self.early_runs is not None:
                probs = self.early_runs.peek(probs, rr, rhythm)
            ev, arrival = self._beat_event(int(sample[0]), probs[0])
            if ev is not None:
                ev["provisional"] = True
                self._provisional = (int(sample[0]), ev, arrival)
                out.append(ev)
        return out, final_beats

    def _release(self, final: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The held beats whose label is now final, in order, with the post-pause rule applied.

        A waiting beat is final when the detector has reported a later beat
        (its next interval is known), when the detector's horizon has passed
        ``min_post_ratio`` times its interval with no beat (a pause), or,
        unchanged, when the signal could not be judged since the beat (hole,
        lead-off, restart) or ``final`` (the stream ended).
        """
        rule = self.post_pause
        samples, probs, rr, rhythm, waits = (np.concatenate(parts) for parts in zip(*self._held))
        self._held = []
        post = np.full(samples.size, np.nan)
        pause = rule.pause_s(rr)
        judged = self.detector.state not in ("learning", "flat", "hole")
        horizon = self.next_index - self._delay_samples
        n_final = samples.size
        for i in np.flatnonzero(waits).tolist():  # a few beats per call
            s = int(samples[i])
            j = bisect.bisect_right(self.beats, s)
            if j < len(self.beats):
                if self.beats[j] not in self._after_hole:  # else a hole between: the pause cannot be judged
                    post[i] = (self.beats[j] - s) / self.fs
            elif s <= self._last_hole_end:
                pass  # a hole since the beat, and no beat after it: the pause cannot be judged
            elif judged and horizon > s + pause[i] * self.fs:
                post[i] = np.inf  # no beat for longer than the pause: one is certain
            elif not final and judged:
                n_final = i  # this beat and those after it wait
                break
        if n_final < samples.size:
            self._held.append(tuple(a[n_final:] for a in (samples, probs, rr, rhythm, waits)))
        k = n_final
        return samples[:k], rule.apply(probs[:k], rr[:k], rhythm[:k], post[:k]), rr[:k], rhythm[:k]

    def _label(self, samples: np.ndarray, probs: np.ndarray, rr: np.ndarray, rhythm: np.ndarray) -> tuple[list[dict], list[dict]]:
        """Events of classified beats whose label is final (the early-run rule applied here, in order).

        A beat whose provisional event has left gets a ``relabel`` event
        instead, when its final label differs.  Returns the events to write
        and the beats with their final labels (for the alarm engine).
        """
        if self.early_runs is not None and len(samples):
            probs = self.early_runs.process(probs, rr, rhythm)
        out, final = [], []
        for i, sample in enumerate(samples.tolist()):
            if self._provisional is not None and self._provisional[0] == sample:
                beat, arrival = self._provisional[1:]
                self._provisional = None
                ev = self._relabel(beat, arrival, probs[i])
                done = {k: v for k, v in beat.items() if k != "provisional"}
                if ev is not None:
                    done.update({k: ev[k] for k in ("label", "aami", "prob")})
            else:
                ev = done = self._beat_event(int(sample), probs[i])[0]
            if ev is not None:
                out.append(ev)
            if done is not None:
                final.append(done)
        return out, final

    def _beat_event(self, sample: int, prob: np.ndarray) -> tuple[dict | None, float]:
        """The event of a classified beat (None if it is not waiting for its label) and the arrival of its R wave."""
        ev = self._unlabelled.pop(sample, None)
        if ev is None:
            return None, 0.0
        classes, aami = self.classifier.classes, self.classifier.aami
        k = int(prob.argmax())
        ev["label"] = classes[k]
        ev["aami"] = aami[k]
        ev["prob"] = _prob_table(classes, prob)
        if self.ref_sample:
            ref = self._match_ref(sample)
            ev["ref"] = ref
            row = self.confusion.setdefault(_ref_aami(ref), {})
            row[aami[k]] = row.get(aami[k], 0) + 1
        arrival = ev.pop("_arrival")
        ev["latency"] = round(time.monotonic() - arrival, 6)
        return ev, arrival

    def _relabel(self, beat: dict, arrival: float, prob: np.ndarray) -> dict | None:
        """The ``relabel`` event of a provisionally labelled beat whose final label differs (None if it is the same)."""
        classes, aami = self.classifier.classes, self.classifier.aami
        k = int(prob.argmax())
        if classes[k] == beat["label"]:
            return None
        if "ref" in beat:
            row = self.confusion.setdefault(_ref_aami(beat["ref"]), {})
            row[beat["aami"]] -= 1
            row[aami[k]] = row.get(aami[k], 0) + 1
        return {
            "type": "relabel",
            "stream": self.stream,
            "sample": beat["sample"],
            "time": beat["time"],
            "label": classes[k],
            "aami": aami[k],
            "prob": _prob_table(classes, prob),
            "was": beat["label"],
            "rule": "post-pause",
            "latency": round(time.monotonic() - arrival, 6),
        }

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
        beats, final = self._advance(final=True) if self._held else ([], [])
        return beats + self.alarms.process(final + [ev], self._alarm_horizon) + [ev]

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
