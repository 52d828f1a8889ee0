"""Receive wire-protocol streams from a ZeroMQ publisher.

:class:`Receiver` subscribes to an endpoint (any publisher that speaks
``docs/protocol.md``: ``ecg-replay``, the serial bridge, a sensor), decodes
every message with :mod:`replay.wire`, follows ``seq`` per topic, and hands
out what became known: sample chunks, annotations, control messages, gaps,
malformed messages (counted and logged, never raised) and time-outs.

Examples
--------
>>> rx = Receiver("tcp://127.0.0.1:5555")            # doctest: +SKIP
>>> for ev in rx.events(idle_timeout_s=5):           # doctest: +SKIP
...     if isinstance(ev, SampleChunk): print(ev.start, ev.n)
...     elif isinstance(ev, Control) and ev.eos: break
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import zmq

from . import wire
from .errors import ConfigError, SourceError, WireFormatError
from .publisher import check_endpoint
from .wire import AnnotationBatch, Control, Gap, SampleChunk

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadMessage:
    """A message that broke the protocol; it was dropped and counted."""

    error: str
    n_frames: int


@dataclass(frozen=True)
class Timeout:
    """Nothing arrived for ``idle_s`` seconds."""

    idle_s: float


Event = Union[SampleChunk, AnnotationBatch, Control, Gap, BadMessage, Timeout]


@dataclass
class ReceiverStats:
    """Counters of a receiver, over its lifetime."""

    messages: int = 0
    sample_messages: int = 0
    samples: int = 0
    bytes: int = 0
    bad_messages: int = 0
    gaps: int = 0
    missing_messages: int = 0
    missing_samples: int = 0
    nan_messages: int = 0
    ended: set = field(default_factory=set)


class Receiver:
    """Subscribe to a wire-protocol publisher and decode what arrives.

    Parameters
    ----------
    endpoint : str or list of str
        ZeroMQ endpoint(s) to connect to (``tcp://127.0.0.1:5555``,
        ``ipc:///tmp/ecg``, ``inproc://name``); one socket serves them all.
    streams : list of str, optional
        Stream names to receive; default: every stream on the endpoint.
        Subscriptions are topic prefixes, so the receiver also filters on the
        exact stream name.
    kinds : tuple of str
        Message kinds to subscribe to (``"ecg"``, ``"ann"``, ``"ctl"``).
    context : zmq.Context, optional
        Context to use (needed for ``inproc://``).
    rcvhwm : int
        Receive high-water mark in messages: how far the receiver may fall
        behind before the publisher drops messages (lossy mode) or waits
        (lossless mode).
    bind : bool
        Bind instead of connect (a sensor that connects to the monitor).
    curve_client_key : path, optional
        This client's CURVE secret key file (``NAME.key_secret``, from
        ``ecg-keys``); with ``curve_server_public``, the connection is
        encrypted and the publisher can check who subscribes. It applies to
        every tcp/ipc endpoint of this socket (``inproc://`` ones carry no
        security), so CURVE and plain publishers need separate receivers.
    curve_server_public : path, optional
        The publisher's CURVE public key file (``NAME.key``).
    """

    def __init__(
        self,
        endpoint: str | list[str],
        streams: list[str] | None = None,
        *,
        kinds: tuple[str, ...] = wire.KINDS,
        context: zmq.Context | None = None,
        rcvhwm: int = 100_000,
        bind: bool = False,
        curve_client_key: str | os.PathLike | None = None,
        curve_server_public: str | os.PathLike | None = None,
    ) -> None:
        endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        for e in endpoints:
            check_endpoint(e, allow_wildcard=not bind)
        for k in kinds:
            if k not in wire.KINDS:
                raise ValueError(f"kinds must be among {wire.KINDS}, got {k!r}")
        curve = None
        if (curve_client_key is None) != (curve_server_public is None):
            raise ConfigError(
                "curve_client_key (--curve-client-key) and curve_server_public "
                "(--curve-server-public) go together; give both"
            )
        if curve_client_key is not None:
            if bind:
                raise ConfigError("a binding receiver cannot be a CURVE client; connect to the publisher")
            from .keys import CurveClient

            curve = CurveClient(curve_client_key, curve_server_public)
        self.endpoint = endpoint
        self.streams = None if streams is None else {wire.check_stream_name(s) for s in streams}
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        if curve is not None:
            curve.apply(self._sock)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, int(rcvhwm))
        if self.streams is None:
            prefixes = [f"{k}.".encode() for k in kinds]
        else:
            prefixes = [wire.topic(k, s) for k in kinds for s in sorted(self.streams)]
        for p in prefixes:
            self._sock.setsockopt(zmq.SUBSCRIBE, p)
        for e in endpoints:
            try:
                if bind:
                    self._sock.bind(e)
                else:
                    self._sock.connect(e)
            except zmq.ZMQError as err:
                self._sock.close(0)
                raise SourceError(f"cannot {'bind' if bind else 'connect to'} {e}: {err}") from None
        self._tracker = wire.StreamTracker()
        self.stats = ReceiverStats()
        self._last_rx = time.monotonic()
        self._bad_logged = 0
        #: Monotonic arrival time of the message most recently decoded.
        self.last_arrival = self._last_rx

    @property
    def idle_s(self) -> float:
        """Seconds since the last message arrived."""
        return time.monotonic() - self._last_rx

    def _handle(self, frames: list[bytes], out: list[Event]) -> None:
        self.stats.messages += 1
        self.stats.bytes += sum(len(f) for f in frames)
        try:
            msg = wire.decode(frames)
            if self.streams is not None and msg.stream not in self.streams:
                return
            gap = self._tracker.check(msg)
        except WireFormatError as err:
            self.stats.bad_messages += 1
            if self._bad_logged < 10 or self._bad_logged % 1000 == 0:
                logger.warning("dropped malformed message (%d so far): %s", self.stats.bad_messages, err)
            self._bad_logged += 1
            out.append(BadMessage(str(err), len(frames)))
            return
        if gap is not None:
            self.stats.gaps += 1
            self.stats.missing_messages += gap.missing_messages
            self.stats.missing_samples += gap.missing_samples
            out.append(gap)
        if isinstance(msg, SampleChunk):
            self.stats.sample_messages += 1
            self.stats.samples += msg.n
            self.stats.nan_messages += msg.has_nan
        elif isinstance(msg, Control):
            if msg.eos:
                self.stats.ended.add(msg.stream)
            else:
                self.stats.ended.discard(msg.stream)
        out.append(msg)

    def poll(self, timeout_s: float = 0.1, max_messages: int = 1000) -> list[Event]:
        """Return the events of the messages that arrive within ``timeout_s``.

        Waits at most ``timeout_s`` seconds for a first message, then takes
        whatever else is already queued (at most ``max_messages``) without
        waiting. Returns an empty list when nothing arrived.
        """
        out: list[Event] = []
        if not self._sock.poll(int(max(timeout_s, 0) * 1000), zmq.POLLIN):
            return out
        for _ in range(max_messages):
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            self._handle(frames, out)
        now = time.monotonic()
        self._last_rx = now
        self.last_arrival = now
        return out

    def events(self, idle_timeout_s: float | None = None, poll_s: float = 0.1) -> Iterator[Event]:
        """Yield events forever; a :class:`Timeout` after each ``idle_timeout_s`` of silence."""
        reported = False
        while True:
            batch = self.poll(poll_s)
            if batch:
                reported = False
                yield from batch
            elif idle_timeout_s is not None and self.idle_s >= idle_timeout_s and not reported:
                reported = True
                yield Timeout(self.idle_s)

    def close(self) -> None:
        """Close the socket."""
        if not self._sock.closed:
            self._sock.close(0)

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ReceivedStream:
    """A whole stream gathered by :func:`receive_stream`.

    ``signal`` is (n, channels) float32 in mV with NaN where samples were
    missed (gaps are holes, never shifted samples).
    """

    stream: str
    fs: float
    channels: tuple[str, ...]
    signal: np.ndarray
    ann_sample: np.ndarray
    ann_symbol: list[str]
    ann_aux: list[str]
    eos: bool
    stats: ReceiverStats


def receive_stream(
    receiver: Receiver,
    stream: str | None = None,
    idle_timeout_s: float = 5.0,
    max_samples: int = 100_000_000,
) -> ReceivedStream:
    """Collect one stream until its end-of-stream message (or a time-out).

    Parameters
    ----------
    receiver : Receiver
        A connected receiver.
    stream : str, optional
        The stream to keep; default: the first one seen.
    idle_timeout_s : float
        Give up after this many seconds without a message.
    max_samples : int
        Refuse to assemble a stream longer than this (a sender claiming a
        huge ``start`` must not exhaust memory).

    Returns
    -------
    ReceivedStream
    """
    pieces: list[tuple[int, np.ndarray]] = []
    fs = 0.0
    channels: tuple[str, ...] = ()
    ann_s: list[np.ndarray] = []
    ann_sym: list[str] = []
    ann_aux: list[str] = []
    eos = False
    for ev in receiver.events(idle_timeout_s=idle_timeout_s):
        if isinstance(ev, Timeout):
            logger.warning("no message for %.1f s; stopping", ev.idle_s)
            break
        if isinstance(ev, (Gap, BadMessage)):
            continue
        if stream is None:
            stream = ev.stream
        if ev.stream != stream:
            continue
        if isinstance(ev, SampleChunk):
            fs, channels = ev.fs, ev.channels
            pieces.append((ev.start, ev.data))
        elif isinstance(ev, AnnotationBatch):
            ann_s.append(ev.sample)
            ann_sym.extend(ev.symbol)
            ann_aux.extend(ev.aux)
        elif isinstance(ev, Control) and ev.eos:
            eos = True
            break
    if pieces:
        first = pieces[0][0]
        n = pieces[-1][0] + pieces[-1][1].shape[0] - first
        if n > max_samples:
            raise SourceError(
                f"stream {stream} spans {n} samples from its first message, more than "
                f"max_samples={max_samples}"
            )
        signal = np.full((n, len(channels)), np.nan, dtype=np.float32)
        for start, data in pieces:
            signal[start - first : start - first + data.shape[0]] = data
    else:
        signal = np.zeros((0, 0), dtype=np.float32)
    return ReceivedStream(
        stream or "",
        fs,
        channels,
        signal,
        np.concatenate(ann_s) if ann_s else np.zeros(0, np.int64),
        ann_sym,
        ann_aux,
        eos,
        receiver.stats,
    )
