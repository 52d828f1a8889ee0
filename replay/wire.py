"""The ZeroMQ wire protocol: one module encodes and decodes every message.

The protocol is specified for sensor makers in ``docs/protocol.md``; this
module is its reference implementation. Every message is a ZeroMQ multipart
message of exactly three frames::

    frame 0  topic    ASCII  b"ecg.<stream>" | b"ann.<stream>" | b"ctl.<stream>"
    frame 1  header   UTF-8 JSON object (fields below)
    frame 2  payload  bytes: little-endian float32 samples, n rows x channels,
                      sample-major (ecg); empty (ann, ctl)

Header fields common to every kind: ``v`` (protocol version, int, 1),
``stream`` (the name in the topic), ``seq`` (per-topic message counter from 0,
+1 for each message). Sample messages add ``start`` (stream index of the first
sample), ``n`` (samples per channel), ``fs`` (Hz), ``channels`` (lead names),
``units`` ("mV") and ``dtype`` ("<f4"). Annotation messages add ``fs``,
``sample``, ``symbol`` and ``aux`` (equal-length lists). Control messages add
``event`` ("start" or "end") and, for "end", ``eos`` true.

Decoding never trusts the wire: every field is checked against an allowlist of
types and ranges, and anything wrong raises :class:`WireFormatError`, which
receivers count and log. Unknown extra header fields are allowed (later
versions of the protocol add fields, they never rename or repurpose them).

Examples
--------
>>> import numpy as np
>>> frames = encode_samples("100", seq=0, start=0, fs=360.0, channels=["MLII"],
...                         data=np.zeros((36, 1), np.float32))
>>> msg = decode(frames)
>>> msg.stream, msg.start, msg.data.shape
('100', 0, (36, 1))
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .errors import WireFormatError

#: Protocol version written in every header (``v``). Receivers reject others.
PROTOCOL_VERSION = 1
#: Sample encoding of version 1: little-endian IEEE-754 float32.
DTYPE = "<f4"
#: Physical unit of samples in version 1.
UNITS = "mV"
#: Message kinds, the first part of every topic.
KIND_SAMPLES = "ecg"
KIND_ANNOTATIONS = "ann"
KIND_CONTROL = "ctl"
KINDS = (KIND_SAMPLES, KIND_ANNOTATIONS, KIND_CONTROL)
#: Control events.
EVENT_START = "start"
EVENT_END = "end"
CONTROL_EVENTS = (EVENT_START, EVENT_END)
#: Allowed stream names: letters, digits, ``_`` and ``-``, 1 to 64 characters.
STREAM_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}\Z")
#: Limits that keep a hostile or broken sender from exhausting memory.
MAX_SAMPLES_PER_MESSAGE = 1_000_000
MAX_CHANNELS = 64
MAX_FS_HZ = 100_000.0
MAX_HEADER_BYTES = 1 << 20

_ITEMSIZE = np.dtype(DTYPE).itemsize


@dataclass(frozen=True)
class SampleChunk:
    """A block of samples from one stream (an ``ecg.<stream>`` message).

    Attributes
    ----------
    stream : str
        Stream name.
    seq : int
        Per-topic message counter.
    start : int
        Stream index (in samples at ``fs``) of the first row of ``data``.
    fs : float
        Sampling rate in Hz.
    channels : tuple of str
        Lead names, one per column of ``data``.
    data : ndarray, shape (n, n_channels), float32
        Samples in mV; NaN marks samples the sender lost.
    has_nan : bool
        Whether ``data`` holds any NaN.
    header : dict
        The decoded header, extra fields included.
    """

    stream: str
    seq: int
    start: int
    fs: float
    channels: tuple[str, ...]
    data: np.ndarray
    has_nan: bool
    header: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def n(self) -> int:
        """Number of samples per channel."""
        return int(self.data.shape[0])

    @property
    def stop(self) -> int:
        """Stream index one past the last sample."""
        return self.start + self.n


@dataclass(frozen=True)
class AnnotationBatch:
    """Reference annotations of a replayed record (an ``ann.<stream>`` message).

    ``sample`` holds stream indices at ``fs``; ``symbol`` the WFDB annotation
    codes (``"N"``, ``"V"``, ``"+"`` ...); ``aux`` the auxiliary notes (rhythm
    changes such as ``"(VT"``, ``""`` when none).
    """

    stream: str
    seq: int
    fs: float
    sample: np.ndarray
    symbol: tuple[str, ...]
    aux: tuple[str, ...]
    header: dict = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class Control:
    """Stream start or end (a ``ctl.<stream>`` message)."""

    stream: str
    seq: int
    event: str
    eos: bool
    header: dict = field(repr=False, compare=False, default_factory=dict)


Message = Union[SampleChunk, AnnotationBatch, Control]


def topic(kind: str, stream: str) -> bytes:
    """Return the topic frame for a message kind and stream name."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    check_stream_name(stream)
    return f"{kind}.{stream}".encode("ascii")


def check_stream_name(stream: str) -> str:
    """Raise ValueError unless ``stream`` is a valid stream name."""
    if not isinstance(stream, str) or not STREAM_RE.match(stream):
        raise ValueError(
            f"stream name must be 1 to 64 letters, digits, '_' or '-', got {stream!r}"
        )
    return stream


def _dumps(header: dict) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_samples(
    stream: str,
    seq: int,
    start: int,
    fs: float,
    channels: list[str] | tuple[str, ...],
    data: np.ndarray,
    **extra: Any,
) -> list[bytes]:
    """Encode a block of samples as the three frames of an ``ecg`` message.

    Parameters
    ----------
    stream : str
        Stream name.
    seq : int
        Per-topic message counter (0 for the first message).
    start : int
        Stream index of the first sample.
    fs : float
        Sampling rate in Hz.
    channels : sequence of str
        Lead names; ``len(channels)`` must equal ``data.shape[1]``.
    data : ndarray, shape (n, n_channels) or (n,)
        Samples in mV (NaN allowed for lost samples).
    **extra
        Additional header fields (for example ``t``, the send time).

    Returns
    -------
    list of bytes
        ``[topic, header, payload]``.
    """
    arr = np.asarray(data)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(channels):
        raise ValueError(
            f"data must have shape (n, {len(channels)}) for channels {list(channels)}, "
            f"got {arr.shape}"
        )
    arr = np.ascontiguousarray(arr, dtype=DTYPE)
    header = {
        "v": PROTOCOL_VERSION,
        "stream": stream,
        "seq": int(seq),
        "start": int(start),
        "n": int(arr.shape[0]),
        "fs": float(fs),
        "channels": list(channels),
        "units": UNITS,
        "dtype": DTYPE,
    }
    header.update(extra)
    return [topic(KIND_SAMPLES, stream), _dumps(header), arr.tobytes()]


class SampleEncoder:
    """Fast encoder of ``ecg`` messages for one stream with fixed ``fs`` and channels.

    Produces exactly the frames of :func:`encode_samples`, with the constant
    part of the header serialised once (a replay at thousands of times real
    time sends tens of thousands of messages a second).

    Parameters
    ----------
    stream : str
        Stream name.
    fs : float
        Sampling rate in Hz.
    channels : sequence of str
        Lead names.
    """

    def __init__(self, stream: str, fs: float, channels: list[str] | tuple[str, ...]) -> None:
        self.topic = topic(KIND_SAMPLES, stream)
        self.n_channels = len(channels)
        head = _dumps({"v": PROTOCOL_VERSION, "stream": stream})[:-1]
        tail = _dumps(
            {"fs": float(fs), "channels": list(channels), "units": UNITS, "dtype": DTYPE}
        )[1:-1]
        self._head = head.decode() + ',"seq":%d,"start":%d,"n":%d,' + tail.decode()

    def encode(self, seq: int, start: int, data: np.ndarray, t: float | None = None) -> list[bytes]:
        """Return ``[topic, header, payload]`` for ``data`` (n, channels) in mV."""
        arr = np.ascontiguousarray(data, dtype=DTYPE)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != self.n_channels:
            raise ValueError(f"data must have shape (n, {self.n_channels}), got {arr.shape}")
        header = self._head % (seq, start, arr.shape[0])
        if t is not None and math.isfinite(t):
            header += ',"t":%r' % float(t)
        return [self.topic, (header + "}").encode("utf-8"), arr.tobytes()]


def encode_annotations(
    stream: str,
    seq: int,
    fs: float,
    sample: np.ndarray | list[int],
    symbol: list[str] | tuple[str, ...],
    aux: list[str] | tuple[str, ...] | None = None,
    **extra: Any,
) -> list[bytes]:
    """Encode reference annotations as the three frames of an ``ann`` message.

    ``sample`` holds stream indices at ``fs`` (Hz); ``aux`` defaults to empty
    strings.
    """
    sample = [int(s) for s in np.asarray(sample, dtype=np.int64).ravel()]
    symbol = [str(s) for s in symbol]
    aux = [""] * len(sample) if aux is None else [str(a) for a in aux]
    if not len(sample) == len(symbol) == len(aux):
        raise ValueError("sample, symbol and aux must have the same length")
    header = {
        "v": PROTOCOL_VERSION,
        "stream": stream,
        "seq": int(seq),
        "fs": float(fs),
        "sample": sample,
        "symbol": symbol,
        "aux": aux,
    }
    header.update(extra)
    return [topic(KIND_ANNOTATIONS, stream), _dumps(header), b""]


def encode_control(stream: str, seq: int, event: str, **extra: Any) -> list[bytes]:
    """Encode a control message (``event`` is ``"start"`` or ``"end"``).

    An ``"end"`` message carries ``eos: true``; a ``"start"`` message usually
    carries ``fs``, ``channels`` and ``units`` of the stream to come.
    """
    if event not in CONTROL_EVENTS:
        raise ValueError(f"event must be one of {CONTROL_EVENTS}, got {event!r}")
    header = {"v": PROTOCOL_VERSION, "stream": stream, "seq": int(seq), "event": event}
    if event == EVENT_END:
        header["eos"] = True
    header.update(extra)
    return [topic(KIND_CONTROL, stream), _dumps(header), b""]


# --------------------------------------------------------------------------- decoding


def _field(header: dict, name: str, types: tuple[type, ...], what: str) -> Any:
    if name not in header:
        raise WireFormatError(f"header lacks required field {name!r}")
    value = header[name]
    if isinstance(value, bool) and bool not in types:
        raise WireFormatError(f"header field {name!r} must be {what}, got {value!r}")
    if not isinstance(value, types):
        raise WireFormatError(f"header field {name!r} must be {what}, got {value!r}")
    return value


def _int_field(header: dict, name: str, low: int = 0) -> int:
    value = _field(header, name, (int,), "an integer")
    if value < low:
        raise WireFormatError(f"header field {name!r} must be >= {low}, got {value}")
    return value


def _fs_field(header: dict) -> float:
    fs = float(str(_field(header, "fs", (int, float), "a number (Hz)")))  # str(): huge int -> inf
    if not (math.isfinite(fs) and 0 < fs <= MAX_FS_HZ):
        raise WireFormatError(f"header field 'fs' must be in (0, {MAX_FS_HZ:g}] Hz, got {fs}")
    return fs


def _str_list(header: dict, name: str, max_len: int | None = None) -> tuple[str, ...]:
    value = _field(header, name, (list,), "a list of strings")
    if max_len is not None and len(value) > max_len:
        raise WireFormatError(f"header field {name!r} has {len(value)} entries, at most {max_len}")
    if not all(isinstance(v, str) for v in value):
        raise WireFormatError(f"header field {name!r} must be a list of strings")
    return tuple(value)


#: Topics already validated, to skip re-parsing them (bounded).
_TOPICS: dict[bytes, tuple[str, str]] = {}
_TOPICS_MAX = 4096


def _parse_topic(raw_topic: bytes) -> tuple[str, str]:
    try:
        topic_str = raw_topic.decode("ascii")
    except UnicodeDecodeError:
        raise WireFormatError("topic is not ASCII") from None
    kind, dot, stream = topic_str.partition(".")
    if not dot or kind not in KINDS or not STREAM_RE.match(stream):
        raise WireFormatError(
            f"topic must be 'ecg.<stream>', 'ann.<stream>' or 'ctl.<stream>', got {topic_str[:80]!r}"
        )
    if len(_TOPICS) < _TOPICS_MAX:
        _TOPICS[raw_topic] = (kind, stream)
    return kind, stream


def decode(frames: list[bytes] | tuple[bytes, ...]) -> Message:
    """Decode and validate one multipart message.

    Parameters
    ----------
    frames : list of bytes
        The frames as received (``socket.recv_multipart()``).

    Returns
    -------
    SampleChunk or AnnotationBatch or Control

    Raises
    ------
    WireFormatError
        If the message breaks the protocol in any way: frame count, topic,
        JSON, version, a missing or mistyped field, or a payload size that is
        not ``n * len(channels) * 4`` bytes.
    """
    if not isinstance(frames, (list, tuple)) or len(frames) != 3:
        n = len(frames) if isinstance(frames, (list, tuple)) else "?"
        raise WireFormatError(f"expected 3 frames [topic, header, payload], got {n}")
    try:
        raw_topic, raw_header, payload = (bytes(f) for f in frames)
    except TypeError:
        raise WireFormatError("frames must be bytes") from None
    parsed = _TOPICS.get(raw_topic)
    if parsed is None:
        parsed = _parse_topic(raw_topic)
    kind, stream = parsed
    if len(raw_header) > MAX_HEADER_BYTES:
        raise WireFormatError(f"header is {len(raw_header)} bytes, at most {MAX_HEADER_BYTES}")
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise WireFormatError(f"header is not valid UTF-8 JSON: {err}") from None
    if not isinstance(header, dict):
        raise WireFormatError("header must be a JSON object")
    version = _field(header, "v", (int,), "an integer")
    if version != PROTOCOL_VERSION:
        raise WireFormatError(
            f"unknown protocol version {version} (this receiver speaks {PROTOCOL_VERSION})"
        )
    if _field(header, "stream", (str,), "a string") != stream:
        raise WireFormatError(
            f"header stream {header['stream']!r} differs from topic stream {stream!r}"
        )
    seq = _int_field(header, "seq")

    if kind == KIND_SAMPLES:
        return _decode_samples(header, stream, seq, payload)
    if payload:
        raise WireFormatError(f"{kind} messages carry an empty payload, got {len(payload)} bytes")
    if kind == KIND_ANNOTATIONS:
        fs = _fs_field(header)
        sample = _field(header, "sample", (list,), "a list of integers")
        if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in sample):
            raise WireFormatError("header field 'sample' must be a list of integers >= 0")
        symbol = _str_list(header, "symbol")
        aux = _str_list(header, "aux")
        if not len(sample) == len(symbol) == len(aux):
            raise WireFormatError(
                f"annotation lists differ in length: sample {len(sample)}, "
                f"symbol {len(symbol)}, aux {len(aux)}"
            )
        return AnnotationBatch(
            stream, seq, fs, np.asarray(sample, dtype=np.int64), symbol, aux, header
        )
    event = _field(header, "event", (str,), "a string")
    if event not in CONTROL_EVENTS:
        raise WireFormatError(f"control event must be one of {CONTROL_EVENTS}, got {event!r}")
    eos = header.get("eos", False)
    if not isinstance(eos, bool):
        raise WireFormatError(f"header field 'eos' must be true or false, got {eos!r}")
    if event == EVENT_END and not eos:
        raise WireFormatError("an 'end' control message must carry eos: true")
    return Control(stream, seq, event, eos, header)


def _decode_samples(header: dict, stream: str, seq: int, payload: bytes) -> SampleChunk:
    # fast path: a well-formed header, checked with plain type tests
    h = header
    start, n, fs, channels = h.get("start"), h.get("n"), h.get("fs"), h.get("channels")
    if (
        type(start) is int
        and type(n) is int
        and type(fs) is float
        and type(channels) is list
        and 0 <= start
        and 0 <= n <= MAX_SAMPLES_PER_MESSAGE
        and 0.0 < fs <= MAX_FS_HZ
        and 0 < len(channels) <= MAX_CHANNELS
        and h.get("units") == UNITS
        and h.get("dtype") == DTYPE
        and all(type(c) is str for c in channels)
        and len(payload) == n * len(channels) * _ITEMSIZE
    ):
        data = np.frombuffer(payload, dtype=DTYPE).reshape(n, len(channels))
        has_nan = False
        if not np.isfinite(data).all():
            if np.isinf(data).any():
                raise WireFormatError(
                    "payload holds infinite values (NaN is the only allowed gap marker)"
                )
            has_nan = True
        return SampleChunk(stream, seq, start, fs, tuple(channels), data, has_nan, header)
    # slow path: find what is wrong and say it
    start = _int_field(header, "start")
    n = _int_field(header, "n")
    if n > MAX_SAMPLES_PER_MESSAGE:
        raise WireFormatError(f"n = {n} samples exceeds the limit {MAX_SAMPLES_PER_MESSAGE}")
    fs = _fs_field(header)
    channels = _str_list(header, "channels", MAX_CHANNELS)
    if not channels:
        raise WireFormatError("header field 'channels' must name at least one channel")
    units = _field(header, "units", (str,), "a string")
    if units != UNITS:
        raise WireFormatError(f"units must be {UNITS!r} in protocol v{PROTOCOL_VERSION}, got {units!r}")
    dtype = _field(header, "dtype", (str,), "a string")
    if dtype != DTYPE:
        raise WireFormatError(f"dtype must be {DTYPE!r} in protocol v{PROTOCOL_VERSION}, got {dtype!r}")
    expected = n * len(channels) * _ITEMSIZE
    if len(payload) != expected:
        raise WireFormatError(
            f"payload is {len(payload)} bytes, expected n x channels x 4 = "
            f"{n} x {len(channels)} x 4 = {expected}"
        )
    data = np.frombuffer(payload, dtype=DTYPE).reshape(n, len(channels))
    has_nan = False
    if not np.isfinite(data).all():
        if np.isinf(data).any():
            raise WireFormatError("payload holds infinite values (NaN is the only allowed gap marker)")
        has_nan = True
    return SampleChunk(stream, seq, start, fs, channels, data, has_nan, header)


# --------------------------------------------------------------------------- continuity


@dataclass(frozen=True)
class Gap:
    """Messages missed on one topic, found from ``seq`` (and ``start``).

    Attributes
    ----------
    stream : str
        Stream name.
    kind : str
        ``"ecg"``, ``"ann"`` or ``"ctl"``.
    missing_messages : int
        Messages lost between the last one received and this one.
    missing_samples : int
        Samples per channel lost (sample messages only; 0 otherwise).
    start : int
        Stream index of the first missing sample (sample messages), else -1.
    """

    stream: str
    kind: str
    missing_messages: int
    missing_samples: int
    start: int = -1


class StreamTracker:
    """Follow ``seq`` and ``start`` per topic and report what was missed.

    A receiver feeds every decoded message to :meth:`check`, which returns a
    :class:`Gap` when messages were lost, ``None`` otherwise, and raises
    :class:`WireFormatError` when a sample message goes backwards in ``start``
    (overlap or replay of old data) or repeats an old ``seq``. A ``start``
    control message resets the topics of its stream (the sender restarted).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every stream."""
        self._seq: dict[tuple[str, str], int] = {}
        self._next_start: dict[str, int] = {}

    def check(self, msg: Message) -> Gap | None:
        """Check one message's continuity; see the class docstring."""
        kind = (
            KIND_SAMPLES
            if isinstance(msg, SampleChunk)
            else KIND_ANNOTATIONS if isinstance(msg, AnnotationBatch) else KIND_CONTROL
        )
        if isinstance(msg, Control) and msg.event == EVENT_START:
            for k in KINDS:
                self._seq.pop((k, msg.stream), None)
            self._next_start.pop(msg.stream, None)
        key = (kind, msg.stream)
        last = self._seq.get(key)
        gap_msgs = 0
        if last is not None:
            if msg.seq <= last:
                raise WireFormatError(
                    f"{kind}.{msg.stream}: seq {msg.seq} repeats or goes back (last {last})"
                )
            gap_msgs = msg.seq - last - 1
        gap_samples = 0
        gap_start = -1
        if isinstance(msg, SampleChunk):
            expected = self._next_start.get(msg.stream)
            if expected is not None:
                if msg.start < expected:
                    raise WireFormatError(
                        f"ecg.{msg.stream}: start {msg.start} goes backwards "
                        f"(expected {expected} or later)"
                    )
                gap_samples = msg.start - expected
                gap_start = expected
            self._next_start[msg.stream] = msg.stop
        self._seq[key] = msg.seq
        if gap_msgs or gap_samples:
            return Gap(msg.stream, kind, gap_msgs, gap_samples, gap_start)
        return None
