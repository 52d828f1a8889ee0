"""Publish ECG samples over ZeroMQ in the wire protocol, and replay records.

:class:`Publisher` owns one XPUB socket and the per-topic ``seq`` counters of
the streams it sends; :func:`replay` paces a :class:`~replay.wfdb_source.Record`
through it at real time, N times real time, or as fast as the subscribers
take it (``speed=math.inf``), which is then lossless.

Two delivery modes:

* **lossy** (real time): a subscriber that falls behind its receive buffer
  loses whole messages, as ZeroMQ PUB sockets do, and knows it from ``seq``;
* **lossless** (``--speed max``): the socket is set with ``ZMQ_XPUB_NODROP``,
  so a full subscriber queue makes the publisher wait (back-pressure) instead
  of dropping. ``wait_subscribers`` avoids the slow-joiner loss: nothing is
  sent until that many subscriptions to the stream's samples have arrived.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import zmq

from . import wire
from ._validate import check_range, ensure_int
from .errors import ConfigError, SourceError

if TYPE_CHECKING:
    from .wfdb_source import Record

logger = logging.getLogger(__name__)

#: Default endpoint: loopback only.
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


def _is_loopback_host(host: str) -> bool:
    """Whether a tcp endpoint host names this machine only (127.0.0.0/8, ::1, localhost, lo)."""
    h = host.strip("[]").lower()
    if h in ("localhost", "lo", "lo0"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, *, allow_wildcard: bool = False, allow_remote: bool | None = None) -> str:
    """Validate a ZeroMQ endpoint string (``tcp://host:port``, ``ipc://path``, ``inproc://name``).

    Binding to all interfaces (``*`` or ``0.0.0.0``) is refused unless
    ``allow_wildcard`` is true, and binding any other address than loopback
    (``127.0.0.1``, ``::1``, ``localhost``) unless ``allow_remote`` is true
    (default: ``allow_wildcard``): ECG is health data and stays on this
    machine by default. Connecting (receivers) passes ``allow_wildcard=True``.
    """
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise ConfigError(
            f"endpoint must look like tcp://127.0.0.1:5555 or ipc:///tmp/ecg, got {endpoint!r}"
        )
    transport, _, address = endpoint.partition("://")
    if transport not in ("tcp", "ipc", "inproc"):
        raise ConfigError(
            f"endpoint transport must be tcp, ipc or inproc, got {transport!r} in {endpoint!r}"
        )
    if not address:
        raise ConfigError(f"endpoint {endpoint!r} has no address")
    if transport == "tcp":
        host, sep, port = address.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"tcp endpoint needs host:port, got {endpoint!r}")
        if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"tcp port must be 1 to 65535 or *, got {port!r} in {endpoint!r}")
        if host in ("*", "0.0.0.0", "[::]", "::") and not allow_wildcard:
            raise ConfigError(
                f"refusing to bind {endpoint!r} on every interface; use 127.0.0.1 "
                "(or pass --bind to expose the stream on purpose)"
            )
        if allow_remote is None:
            allow_remote = allow_wildcard
        if not allow_remote and host not in ("*", "0.0.0.0", "[::]", "::") and not _is_loopback_host(host):
            raise ConfigError(
                f"refusing to bind {endpoint!r}: {host} is not a loopback address; use 127.0.0.1, "
                "or pass --bind (with CURVE keys, --curve-server-key) to expose the stream on purpose"
            )
    return endpoint


@dataclass
class PublishStats:
    """What a replay sent, and how well it kept time.

    Attributes
    ----------
    messages : int
        Messages sent (all kinds).
    sample_messages : int
        ``ecg`` messages sent.
    samples : int
        Samples per channel sent.
    bytes : int
        Bytes sent (all frames).
    elapsed_s : float
        Wall-clock seconds from the first to the last message.
    signal_s : float
        Seconds of signal sent (``samples / fs``).
    max_lag_s : float
        Largest lateness of a message against its scheduled send time
        (paced replays; 0 for ``speed=inf``).
    final_drift_s : float
        Lateness of the last message against its schedule (paced replays).
    """

    messages: int = 0
    sample_messages: int = 0
    samples: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    signal_s: float = 0.0
    max_lag_s: float = 0.0
    final_drift_s: float = 0.0

    @property
    def x_realtime(self) -> float:
        """Signal seconds sent per wall-clock second."""
        return self.signal_s / self.elapsed_s if self.elapsed_s > 0 else math.inf


class Publisher:
    """An XPUB socket speaking the wire protocol, with per-topic ``seq``.

    Parameters
    ----------
    endpoint : str
        Where to bind, e.g. ``tcp://127.0.0.1:5555`` or ``ipc:///tmp/ecg``.
    lossless : bool
        Apply back-pressure instead of dropping messages for slow subscribers
        (``ZMQ_XPUB_NODROP``); use it for ``--speed max``.
    context : zmq.Context, optional
        Context to use (needed for ``inproc://`` endpoints); default: the
        process-wide instance.
    sndhwm : int
        Send high-water mark per subscriber, in messages.
    allow_wildcard : bool
        Allow binding every interface, or any non-loopback address.
    curve_server_key : path, optional
        CURVE secret key file of this server (``NAME.key_secret``, from
        ``ecg-keys``): encrypt the stream; clients need the public key. With
        it a non-loopback address may be bound without ``allow_wildcard``
        (every interface still needs it).
    curve_allow : path, optional
        Directory of the public key files (``*.key``) of the clients allowed
        to subscribe (needs ``curve_server_key``); others are refused.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        lossless: bool = False,
        context: zmq.Context | None = None,
        sndhwm: int = 10_000,
        allow_wildcard: bool = False,
        curve_server_key: str | os.PathLike | None = None,
        curve_allow: str | os.PathLike | None = None,
    ) -> None:
        if curve_allow is not None and curve_server_key is None:
            raise ConfigError("curve_allow (--curve-allow) needs curve_server_key (--curve-server-key)")
        check_endpoint(
            endpoint,
            allow_wildcard=allow_wildcard,
            allow_remote=allow_wildcard or curve_server_key is not None,
        )
        self._curve = None
        if curve_server_key is not None:
            from .keys import CurveServer

            self._curve = CurveServer(curve_server_key, curve_allow)
        elif endpoint.startswith("tcp://") and not _is_loopback_host(endpoint[6:].rpartition(":")[0]):
            logger.warning(
                "binding %s without CURVE keys: anyone on the network can read the stream (see ecg-keys)",
                endpoint,
            )
        self.endpoint = endpoint
        self.lossless = bool(lossless)
        sndhwm = ensure_int("sndhwm", sndhwm)
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.XPUB)
        if self._curve is not None:
            self._curve.apply(self._sock, self._ctx)
        self._sock.setsockopt(zmq.LINGER, 2000)
        self._sock.setsockopt(zmq.SNDHWM, sndhwm)
        # every subscribe and unsubscribe is passed up, so subscribers can be counted
        self._sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        if self.lossless:
            self._sock.setsockopt(zmq.XPUB_NODROP, 1)
            self._sock.setsockopt(zmq.SNDTIMEO, 100)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as err:
            self._sock.close(0)
            if self._curve is not None:
                self._curve.release()
            raise SourceError(f"cannot bind {endpoint}: {err}") from None
        self.last_endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._seq: dict[bytes, int] = {}
        self._encoders: dict[bytes, wire.SampleEncoder] = {}
        self.subscriptions: list[bytes] = []
        self.stats = PublishStats()
        logger.info(
            "publishing on %s (%s)", self.last_endpoint, "lossless" if lossless else "lossy"
        )

    # ------------------------------------------------------------------ subscriptions
    def _drain_subscriptions(self, timeout_ms: int = 0) -> None:
        while self._sock.poll(timeout_ms, zmq.POLLIN):
            msg = self._sock.recv()
            if msg[:1] == b"\x01":
                self.subscriptions.append(msg[1:])
            elif msg[:1] == b"\x00" and msg[1:] in self.subscriptions:
                self.subscriptions.remove(msg[1:])
            timeout_ms = 0

    def subscriber_count(self, stream: str) -> int:
        """Number of live subscriptions that receive ``ecg.<stream>`` messages.

        A subscriber is counted once per matching subscription: ``ecg.<stream>``
        itself, or a prefix of the topic shorter than the stream name
        (``ecg.``, ``""``). Our receivers make exactly one such subscription.
        """
        self._drain_subscriptions()
        t = wire.topic(wire.KIND_SAMPLES, stream)
        # a prefix that ends inside the stream name ("ecg.10" for "ecg.100") is
        # another stream's subscription, not one that wants this stream
        head = len(wire.KIND_SAMPLES) + 1
        return sum(1 for s in self.subscriptions if s == t or (len(s) <= head and t.startswith(s)))

    def wait_for_subscribers(
        self, stream: str, count: int, timeout_s: float | None = None, stop: threading.Event | None = None
    ) -> bool:
        """Block until ``count`` subscriptions receive ``stream``'s samples.

        Returns False on time-out or when ``stop`` is set.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.subscriber_count(stream) < count:
            if stop is not None and stop.is_set():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._drain_subscriptions(50)
        # let the subscription settle in the socket's pipes
        return True

    # ------------------------------------------------------------------ sending
    def _next_seq(self, topic: bytes) -> int:
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        return seq

    def _send(self, frames: list[bytes], stop: threading.Event | None) -> bool:
        while True:
            try:
                self._sock.send_multipart(frames, copy=True)
                break
            except zmq.Again:
                # lossless mode: a subscriber's queue is full; wait, unless stopping
                if stop is not None and stop.is_set():
                    return False
                self._drain_subscriptions()
        self.stats.messages += 1
        self.stats.bytes += sum(len(f) for f in frames)
        return True

    def send_samples(
        self,
        stream: str,
        start: int,
        fs: float,
        channels: list[str] | tuple[str, ...],
        data: np.ndarray,
        stop: threading.Event | None = None,
        **extra,
    ) -> bool:
        """Send one ``ecg`` message; return False if interrupted by ``stop``."""
        t = wire.topic(wire.KIND_SAMPLES, stream)
        seq = self._seq.get(t, 0)
        enc = self._encoders.get(t)
        if enc is None or enc.key != (fs, tuple(channels)):
            enc = wire.SampleEncoder(stream, fs, channels)
            enc.key = (fs, tuple(channels))
            self._encoders[t] = enc
        if extra.keys() <= {"t"}:
            frames = enc.encode(seq, start, data, extra.get("t"))
        else:
            frames = wire.encode_samples(stream, seq, start, fs, channels, data, **extra)
        if not self._send(frames, stop):
            return False
        self._seq[t] = seq + 1
        self.stats.sample_messages += 1
        self.stats.samples += int(np.shape(data)[0])
        return True

    def send_annotations(
        self, stream: str, fs: float, sample, symbol, aux=None, stop: threading.Event | None = None
    ) -> bool:
        """Send one ``ann`` message; return False if interrupted by ``stop``."""
        t = wire.topic(wire.KIND_ANNOTATIONS, stream)
        seq = self._seq.get(t, 0)
        if not self._send(wire.encode_annotations(stream, seq, fs, sample, symbol, aux), stop):
            return False
        self._seq[t] = seq + 1
        return True

    def send_control(self, stream: str, event: str, **extra) -> None:
        """Send one ``ctl`` message (``start`` or ``end``); never blocks for long."""
        t = wire.topic(wire.KIND_CONTROL, stream)
        frames = wire.encode_control(stream, self._seq.get(t, 0), event, **extra)
        deadline = time.monotonic() + 2.0
        while True:
            try:
                self._sock.send_multipart(frames)
                break
            except zmq.Again:
                if time.monotonic() > deadline:
                    logger.warning("could not send %s control message for %s", event, stream)
                    return
        self._seq[t] = self._seq.get(t, 0) + 1
        self.stats.messages += 1

    def close(self, linger_s: float = 2.0) -> None:
        """Close the socket, giving queued messages ``linger_s`` seconds to leave."""
        if not self._sock.closed:
            self._sock.close(int(linger_s * 1000))
            if self._curve is not None:
                self._curve.release()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def replay(
    record: "Record",
    publisher: Publisher,
    *,
    stream: str | None = None,
    speed: float = 1.0,
    chunk_s: float = 0.1,
    loop: bool = False,
    annotations: bool = True,
    stop: threading.Event | None = None,
    max_loops: int | None = None,
) -> PublishStats:
    """Stream a record through ``publisher`` in wire-protocol messages.

    Parameters
    ----------
    record : Record
        The record to send (all its channels, in mV).
    publisher : Publisher
        The socket to send on.
    stream : str, optional
        Stream name; default: the record name.
    speed : float
        1 for real time, N for N times real time, ``math.inf`` for as fast
        as the subscribers take it. Paced replays follow a monotonic clock
        from the start, so errors do not accumulate (no drift).
    chunk_s : float
        Seconds of signal per message (0.001 to 10 s).
    loop : bool
        Start again at the end of the record; stream indices go on
        increasing, so a receiver sees one continuous stream.
    annotations : bool
        Send the record's reference annotations (``ann`` messages), each one
        right after the samples that contain it.
    stop : threading.Event, optional
        Set it to end the replay early; the ``end`` message is still sent.
    max_loops : int, optional
        With ``loop``, stop after this many passes (tests).

    Returns
    -------
    PublishStats
    """
    stream = wire.check_stream_name(stream or record.name)
    check_range("speed", speed, 0, None, low_inclusive=False, unit="x real time", allow_inf=True)
    check_range("chunk_s", chunk_s, 0.001, 10.0, unit="s")
    stop = stop or threading.Event()
    fs = float(record.fs)
    signal = np.ascontiguousarray(record.signal, dtype=np.float32)
    n_total = signal.shape[0]
    if n_total == 0:
        raise SourceError(f"record {record.name} holds no samples")
    chunk = max(1, int(round(chunk_s * fs)))
    channels = list(record.channels)
    ann = record.annotations if annotations else None
    if ann is not None and len(ann.sample) == 0:
        ann = None
    stats = publisher.stats
    publisher.send_control(
        stream,
        wire.EVENT_START,
        fs=fs,
        channels=channels,
        units=wire.UNITS,
        record=record.name,
        n_samples=int(n_total),
        loop=bool(loop),
    )
    t0 = time.monotonic()
    lag_max = 0.0
    offset = 0
    passes = 0
    interrupted = False
    try:
        while not interrupted:
            starts = np.arange(0, n_total, chunk)
            if ann is not None:
                # annotation index ranges per chunk, computed once per pass
                bounds = np.searchsorted(ann.sample, np.append(starts, n_total))
            for i, a in enumerate(starts):
                if stop.is_set():
                    interrupted = True
                    break
                b = min(a + chunk, n_total)
                if math.isfinite(speed):
                    due = t0 + (offset + b) / fs / speed
                    now = time.monotonic()
                    if due > now:
                        if stop.wait(due - now):
                            interrupted = True
                            break
                    else:
                        lag_max = max(lag_max, now - due)
                ok = publisher.send_samples(
                    stream, offset + a, fs, channels, signal[a:b], stop, t=time.time()
                )
                if not ok:
                    interrupted = True
                    break
                if ann is not None and bounds[i + 1] > bounds[i]:
                    lo, hi = bounds[i], bounds[i + 1]
                    publisher.send_annotations(
                        stream,
                        fs,
                        ann.sample[lo:hi] + offset,
                        ann.symbol[lo:hi],
                        ann.aux[lo:hi],
                        stop,
                    )
            passes += 1
            offset += n_total
            if not loop or (max_loops is not None and passes >= max_loops):
                break
    finally:
        elapsed = time.monotonic() - t0
        if math.isfinite(speed) and stats.sample_messages:
            sent_until = offset if not interrupted else None
            if sent_until is not None:
                stats.final_drift_s = max(0.0, elapsed - sent_until / fs / speed)
        stats.max_lag_s = lag_max
        stats.elapsed_s = elapsed
        stats.signal_s = stats.samples / fs
        publisher.send_control(
            stream,
            wire.EVENT_END,
            samples=int(stats.samples),
            interrupted=bool(interrupted),
        )
    logger.info(
        "replayed %s: %d messages, %.1f s of signal in %.3f s (%.0fx real time)",
        stream,
        stats.messages,
        stats.signal_s,
        stats.elapsed_s,
        stats.x_realtime,
    )
    return stats
