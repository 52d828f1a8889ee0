"""Run the monitor: sources -> ZeroMQ -> receiver -> one StreamMonitor per stream.

:class:`MonitorRunner` is shared by the headless command, the window and the
benchmarks. Replay and simulator sources are published by threads of this
process over ``inproc://`` endpoints, so even a local replay goes through the
wire protocol exactly as a remote sensor would; ``zmq:`` sources connect to
an outside publisher.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import zmq

from replay.errors import ConfigError, SourceError
from replay.publisher import Publisher, replay
from replay.receiver import BadMessage, Receiver, Timeout
from replay.serial_source import SerialOptions, start_serial_publisher, stream_name_for_port
from replay.sources import SourceSpec, load_source_record, parse_source
from replay.wire import AnnotationBatch, SampleChunk, check_stream_name

from .alarms import AlarmConfig
from .beats import BeatFeatures
from .events import EventWriter
from .pipeline import StreamMonitor
from .recorder import StreamRecorder, check_record_dir

logger = logging.getLogger(__name__)

_inproc_ids = itertools.count()


@dataclass
class RunnerConfig:
    """Settings of a monitor run (the command-line options, in units).

    Attributes
    ----------
    sources : list of str
        Source specifications (``replay:100``, ``sim:72``, ``zmq:tcp://...``).
    speed : float
        Replay speed: 1 real time, N times, ``inf`` as fast as possible (lossless).
    data_dir : str, optional
        Data directory for record names.
    channel : str or int, optional
        Lead to monitor (name or index); default the first.
    start_s : float
        Start this many seconds into replayed records.
    duration_s : float, optional
        Monitor only this many seconds of signal per stream.
    chunk_s : float, optional
        Seconds per message of replayed sources; default 0.1 s at a finite
        speed, 1 s at ``speed=inf`` (offline analysis: fewer, larger messages).
    no_data_s : float
        Seconds of silence after which a ``no-data`` status is reported.
    idle_exit_s : float, optional
        Stop after this long without any message (``zmq:`` sources); None: wait.
    notch_hz : float, optional
        Mains notch (50 or 60 Hz).
    buffer_s : float
        Seconds kept in each stream's ring buffers.
    alarm_config : AlarmConfig, optional
        Alarm limits; default the bedside defaults.
    serial : SerialOptions, optional
        Settings of ``serial:`` sources (rate, format, calibration).
    curve : dict
        CURVE keyword arguments of the receiver (``curve_client_key``,
        ``curve_server_public``) for encrypted ``zmq:`` sources.
    weights : str, optional
        Model weights file; default the shipped ``assets/model.pt``.
    classify : bool
        Classify beats (False: every beat is labelled ``"?"``).
    threads : int
        Torch threads for classification (1 lets many streams share the cores).
    record_to : str, optional
        Directory where each stream is recorded as a WFDB record with the
        beat labels and alarms as annotations (docs/recording.md).
    """

    sources: list[str]
    speed: float = 1.0
    data_dir: str | None = None
    channel: str | int | None = None
    start_s: float = 0.0
    duration_s: float | None = None
    chunk_s: float | None = None
    no_data_s: float = 5.0
    idle_exit_s: float | None = None
    notch_hz: float | None = None
    buffer_s: float = 60.0
    alarm_config: AlarmConfig | None = None
    serial: SerialOptions | None = None
    curve: dict = field(default_factory=dict)
    weights: str | None = None
    classify: bool = True
    threads: int = 1

    @property
    def replay_chunk_s(self) -> float:
        """Seconds per replayed message (see ``chunk_s``)."""
        if self.chunk_s is not None:
            return self.chunk_s
        return 1.0 if math.isinf(self.speed) else 0.1
    record_to: str | None = None


@dataclass
class _Replay:
    spec: SourceSpec
    stream: str
    record: object
    endpoint: str
    publisher: Publisher | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = None


@dataclass
class RunSummary:
    """Totals of a run, written as the final ``summary`` event."""

    streams: int = 0
    beats: int = 0
    gaps: int = 0
    missing_messages: int = 0
    missing_samples: int = 0
    bad_messages: int = 0
    alarms: int = 0
    runtime_s: float = 0.0
    signal_s: float = 0.0
    per_stream: dict = field(default_factory=dict)

    @property
    def x_realtime(self) -> float:
        """Seconds of signal monitored per second of run time (all streams)."""
        return self.signal_s / self.runtime_s if self.runtime_s > 0 else math.inf

    def event(self) -> dict:
        """The ``summary`` event."""
        return {
            "type": "summary",
            "streams": self.streams,
            "beats": self.beats,
            "gaps": self.gaps,
            "missing_messages": self.missing_messages,
            "missing_samples": self.missing_samples,
            "bad_messages": self.bad_messages,
            "alarms": self.alarms,
            "runtime": round(self.runtime_s, 3),
            "signal": round(self.signal_s, 3),
            "x_realtime": round(self.x_realtime, 1),
            "per_stream": self.per_stream,
        }


class MonitorRunner:
    """Own the sources, the receiver and one :class:`StreamMonitor` per stream.

    Parameters
    ----------
    config : RunnerConfig
        What to monitor and how.
    writer : EventWriter
        Where events go.
    context : zmq.Context, optional
        ZeroMQ context (shared with the in-process replay threads).
    records : list of Record, optional
        Records already loaded, replayed like ``replay:`` sources (their
        stream names are the record names).
    """

    def __init__(
        self,
        config: RunnerConfig,
        writer: EventWriter,
        context: zmq.Context | None = None,
        *,
        records: list | None = None,
    ) -> None:
        if not config.sources and not records:
            raise ConfigError("give at least one --source (e.g. replay:100 or sim:72)")
        self.config = config
        self.writer = writer
        self._ctx = context or zmq.Context.instance()
        self.stop_event = threading.Event()
        self.monitors: dict[str, StreamMonitor] = {}
        self._replays: list[_Replay] = []
        self._endpoints: list[str] = []
        self._serials: list[tuple[str, str, str]] = []
        self._serial_threads: list = []
        self._remote = False
        names: set[str] = set()
        for text in config.sources:
            spec = parse_source(text)
            if spec.kind in ("replay", "sim"):
                record = load_source_record(
                    spec,
                    config.data_dir,
                    start_s=config.start_s,
                    duration_s=config.duration_s,
                )
                stream = _unique(_stream_name(record.name), names)
                endpoint = f"inproc://ecg-replay-{next(_inproc_ids)}"
                self._replays.append(_Replay(spec, stream, record, endpoint))
                self._endpoints.append(endpoint)
            elif spec.kind == "zmq":
                self._endpoints.append(spec.argument)
                self._remote = True
            elif spec.kind == "serial":
                if config.serial is None:
                    raise ConfigError(f"source {spec}: serial sources need --fs HZ (the sensor's rate)")
                stream = _unique(stream_name_for_port(spec.argument), names)
                endpoint = f"inproc://ecg-serial-{next(_inproc_ids)}"
                self._serials.append((spec.argument, stream, endpoint))
                self._endpoints.append(endpoint)
                self._remote = True  # a live sensor ends only on stop or --duration
        for record in records or []:
            # records already in memory (benchmarks, trainer): replayed like replay: sources
            stream = _unique(_stream_name(record.name), names)
            endpoint = f"inproc://ecg-replay-{next(_inproc_ids)}"
            self._replays.append(_Replay(SourceSpec("replay", record.name), stream, record, endpoint))
            self._endpoints.append(endpoint)
        self.summary = RunSummary()
        self.receiver: Receiver | None = None
        self.classifier = load_classifier(config.weights, threads=config.threads) if config.classify else None
        #: One WFDB recorder per stream with ``record_to``; fed every beat and alarm the writer writes.
        self.recorders: dict[str, StreamRecorder] = {}
        if config.record_to is not None:
            check_record_dir(config.record_to)
            downstream = writer.sink

            def sink(events: list[dict]) -> None:
                for ev in events:
                    rec = self.recorders.get(ev.get("stream"))
                    if rec is not None and ev.get("type") in ("beat", "relabel", "alarm"):
                        rec.write_events([ev])
                if downstream is not None:
                    downstream(events)

            writer.sink = sink

    # ------------------------------------------------------------ lifecycle
    def _start_replays(self) -> None:
        lossless = math.isinf(self.config.speed)
        for r in self._replays:
            r.publisher = Publisher(r.endpoint, lossless=lossless, context=self._ctx)
        for port, stream, endpoint in self._serials:
            # opens the port now: a missing port raises here, in the caller's thread
            self._serial_threads.append(
                start_serial_publisher(
                    port, self.config.serial, endpoint, context=self._ctx, stop=self.stop_event, stream=stream
                )
            )
        self.receiver = Receiver(self._endpoints, context=self._ctx, **self.config.curve)
        for r in self._replays:

            def body(r=r):
                try:
                    if not r.publisher.wait_for_subscribers(r.stream, 1, 10.0, self.stop_event):
                        raise SourceError(f"the monitor did not subscribe to {r.stream} in 10 s")
                    replay(
                        r.record,
                        r.publisher,
                        stream=r.stream,
                        speed=self.config.speed,
                        chunk_s=self.config.replay_chunk_s,
                        stop=self.stop_event,
                    )
                except BaseException as err:  # reported by the main loop
                    r.error = err
                finally:
                    r.publisher.close(linger_s=1.0)

            r.thread = threading.Thread(target=body, name=f"replay-{r.stream}", daemon=True)
            r.thread.start()

    def _monitor_for(self, msg) -> StreamMonitor | None:
        mon = self.monitors.get(msg.stream)
        if mon is None and isinstance(msg, SampleChunk):
            mon = StreamMonitor(
                msg.stream,
                msg.fs,
                msg.channels,
                self.config.channel,
                buffer_s=self.config.buffer_s,
                notch_hz=self.config.notch_hz,
                alarm_config=self.config.alarm_config,
                classifier=self.classifier,
            )
            self.monitors[msg.stream] = mon
            if self.config.record_to is not None:
                self.recorders[msg.stream] = StreamRecorder(self.config.record_to, msg.stream, msg.fs, msg.channels)
        return mon

    def _classify(self) -> None:
        """Classify every beat ready in any stream in one batch; write their events."""
        if self.classifier is not None:
            ready = [(m, m.take_ready()) for m in self.monitors.values()]
            ready = [(m, f) for m, f in ready if f is not None]
            if ready:
                batch = BeatFeatures.concatenate([f for _, f in ready], *self.classifier.input_shape, self.classifier.n_rr)
                probs = self.classifier.predict_proba(batch.windows, batch.rr, rhythm=batch.rhythm)
                i = 0
                for m, f in ready:
                    self.writer.write_many(m.label_beats(f, probs[i : i + len(f)]))
                    i += len(f)
        for m in self.monitors.values():
            if m.end_pending:
                self.writer.write_many(m.finish_end())

    def _all_ended(self) -> bool:
        """True when every replayed stream ended and, for zmq sources, every stream seen."""
        replayed = {r.stream for r in self._replays}
        if any(s not in self.monitors or not self.monitors[s].ended for s in replayed):
            return False
        if self._remote:
            return bool(self.monitors) and all(m.ended for m in self.monitors.values())
        return True

    def run(self) -> RunSummary:
        """Monitor until every replayed stream ends, or :attr:`stop_event` is set.

        Returns
        -------
        RunSummary
        """
        t0 = time.monotonic()
        cfg = self.config
        no_data_reported = False
        duration_samples: dict[str, int] = {}
        try:
            self._start_replays()
            rx = self.receiver
            while not self.stop_event.is_set():
                batch = rx.poll(0.1)
                for rec in self.recorders.values():
                    rec.tick()
                for r in [*self._replays, *self._serial_threads]:
                    if r.error is not None:
                        raise r.error
                if not batch:
                    if rx.idle_s >= cfg.no_data_s and not no_data_reported and self.monitors:
                        no_data_reported = True
                        for m in self.monitors.values():
                            if not m.ended:
                                self.writer.write_many(m.external_status("no-data", idle=round(rx.idle_s, 1)))
                    if cfg.idle_exit_s is not None and rx.idle_s >= cfg.idle_exit_s:
                        logger.warning("no message for %.1f s; stopping", rx.idle_s)
                        break
                    if self._all_ended():
                        break
                    continue
                if no_data_reported:
                    no_data_reported = False
                    for m in self.monitors.values():
                        if not m.ended:
                            self.writer.write_many(m.external_status("data"))
                arrival = rx.last_arrival
                for ev in coalesce(batch):
                    if isinstance(ev, (BadMessage, Timeout)):
                        continue
                    mon = self._monitor_for(ev)
                    if mon is None or mon.ended:
                        continue
                    if isinstance(ev, SampleChunk) and cfg.duration_s is not None and self._remote:
                        limit = duration_samples.setdefault(
                            ev.stream, ev.start + int(round(cfg.duration_s * ev.fs))
                        )
                        if ev.start >= limit:
                            self.writer.write_many(mon.end())
                            self._classify()
                            continue
                    if isinstance(ev, SampleChunk) and ev.stream in self.recorders:
                        self.recorders[ev.stream].write_samples(ev.start, ev.data)
                    events = mon.handle(ev, arrival)
                    if events:
                        self.writer.write_many(events)
                self._classify()
                if self._all_ended():
                    break
        finally:
            self.stop_event.set()
            for r in self._replays:
                if r.thread is not None:
                    r.thread.join(timeout=5.0)
                elif r.publisher is not None:
                    r.publisher.close(linger_s=0)
            for th in self._serial_threads:
                th.join(timeout=5.0)
            for m in self.monitors.values():
                if not m.ended:
                    self.writer.write_many(m.end(interrupted=True))
            self._classify()
            for rec in self.recorders.values():
                rec.close()
            self.summary = self._summarise(time.monotonic() - t0)
            if self.receiver is not None:
                self.receiver.close()
        return self.summary

    def _summarise(self, runtime_s: float) -> RunSummary:
        s = RunSummary(streams=len(self.monitors), runtime_s=runtime_s)
        if self.receiver is None:
            return s
        st = self.receiver.stats
        s.bad_messages = st.bad_messages
        s.alarms = self.writer.counts.get("alarm_on", 0)
        s.missing_messages = st.missing_messages
        for name, m in self.monitors.items():
            s.beats += len(m.beats)
            s.gaps += m.gaps
            s.missing_samples += m.missing_samples
            s.signal_s += m.samples_seen / m.fs
            s.per_stream[name] = {
                **({"confusion": m.confusion} if m.confusion else {}),
                "beats": len(m.beats),
                "gaps": m.gaps,
                "missing_samples": m.missing_samples,
                "signal": round(m.samples_seen / m.fs, 3),
            }
        return s


def load_classifier(weights: str | None, threads: int = 1):
    """Load the beat classifier: ``weights`` or the shipped default.

    Returns None (beats are labelled ``"?"``, with a warning) when no weights
    are given and none are shipped. A given file that is missing or malformed
    raises :class:`ConfigError` (from :func:`monitor.model.load_model`).
    """
    from .model import Classifier
    from .resources import asset

    path = weights
    if path is None:
        default = asset("model.pt")
        if not default.exists():
            logger.warning("no model weights shipped (%s); beats are labelled '?'", default)
            return None
        path = str(default)
    return Classifier.from_file(path, threads=threads)


def coalesce(batch: list) -> list:
    """Merge runs of contiguous sample chunks of a stream within one received batch.

    Filter and detector give the same result whatever the chunking, so a
    monitor that fell behind (or runs at ``--speed max``) processes what is
    queued as one block instead of message by message. Annotations do not
    interrupt a run: they follow the merged samples they came after. Gaps
    and control messages end a run, so the order of events is kept.
    """
    out: list = []
    run: dict[str, list[SampleChunk]] = {}
    held: dict[str, list[AnnotationBatch]] = {}

    def flush(stream: str) -> None:
        chunks = run.pop(stream, None)
        notes = held.pop(stream, [])
        if not chunks:
            out.extend(notes)
            return
        if len(chunks) == 1:
            out.append(chunks[0])
            out.extend(notes)
            return
        first = chunks[0]
        header = first.header
        source_events = [e for c in chunks for e in (c.header.get("source_events") or [])]
        if source_events:
            header = dict(header, source_events=source_events)
        out.append(
            dataclasses.replace(
                first,
                data=np.concatenate([c.data for c in chunks]),
                has_nan=any(c.has_nan for c in chunks),
                seq=chunks[-1].seq,
                header=header,
            )
        )
        out.extend(notes)

    for ev in batch:
        if isinstance(ev, SampleChunk):
            chunks = run.get(ev.stream)
            if chunks and (
                chunks[-1].stop != ev.start or chunks[-1].fs != ev.fs or chunks[-1].channels != ev.channels
            ):
                flush(ev.stream)
            run.setdefault(ev.stream, []).append(ev)
        elif isinstance(ev, AnnotationBatch):
            if ev.stream in run:
                held.setdefault(ev.stream, []).append(ev)  # after the samples they annotate
            else:
                out.append(ev)
        else:
            stream = getattr(ev, "stream", None)
            if stream is not None:
                flush(stream)
            out.append(ev)
    for stream in list(run):
        flush(stream)
    return out


def _stream_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:60] or "stream"
    return check_stream_name(cleaned)


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate = f"{name}-{k}"
        k += 1
    taken.add(candidate)
    return candidate
