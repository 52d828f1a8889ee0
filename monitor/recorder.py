"""Record a monitored stream as a WFDB record, written as it arrives.

:class:`StreamRecorder` writes the samples a monitor received (every channel)
to ``<name>.dat`` (format 16 or 212), keeps ``<name>.hea`` in step with the
data on disk, and writes the monitor's beat labels and alarms to an
annotation file ``<name>.<annotator>`` (MIT format). Every file is readable
by ``wfdb.rdrecord`` / ``wfdb.rdann`` and the WFDB tools at any moment, so a
monitor killed with ``kill -9`` loses at most the last ``flush_s`` seconds
(plus the message in flight). The layout and the annotation codes are
described in ``docs/recording.md``.

How each file stays valid:

* ``.dat`` is only appended to, in whole frames (format 212: whole frames
  whose number of values is even, so no 3-byte group is left half written).
* ``.hea`` is small: after each flush it is rewritten to a temporary file
  and moved over the old one with :func:`os.replace` (atomic), giving the
  number of frames now on disk. It is written after the data, so the header
  never claims more samples than the file holds.
* The annotation file ends with the MIT end-of-file word (two zero bytes).
  New annotations overwrite that word in place and end with a new one, in a
  single ``write``. An annotation older than the last one written (the alarm
  engine may report an alarm before the beats that wait for their label)
  rewrites the tail of the file from its place, so the file stays in time
  order; the tail rewritten is bounded by ``reorder_s``.

Lost samples (NaN) and samples missing between messages are written as the
format's invalid value (``-32768`` in format 16, ``-2048`` in 212), which
WFDB readers return as NaN, so sample times stay exact.

Examples
--------
>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> rec = StreamRecorder(d, "demo", 360.0, ["MLII", "V5"])
>>> rec.write_samples(0, np.zeros((360, 2), np.float32))
>>> rec.write_events([{"type": "beat", "stream": "demo", "sample": 100, "label": "N"}])
>>> rec.close()
>>> rec.frames_written, rec.annotations_written
(360, 1)
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from replay._validate import check_option, check_range, check_type
from replay.errors import ConfigError
from replay.wire import MAX_CHANNELS, MAX_FS_HZ, check_stream_name

logger = logging.getLogger(__name__)

#: Signal formats written: name -> (bits, invalid value, default gain in adu/mV).
FORMATS = {"16": (16, -32768, 1000.0), "212": (12, -2048, 200.0)}
#: Default annotator name (the annotation file's extension).
ANNOTATOR = "ecgm"

#: MIT annotation codes (WFDB ``ecgcodes.h``) of the symbols written.
MIT_CODES = {
    "N": 1, "L": 2, "R": 3, "a": 4, "V": 5, "F": 6, "J": 7, "A": 8, "S": 9, "E": 10,
    "j": 11, "/": 12, "Q": 13, "~": 14, '"': 22, "+": 28, "e": 34, "n": 35, "f": 38,
}  # fmt: skip
#: Model labels -> WFDB beat symbols. ``"?"`` (not classified) -> ``"Q"`` with
#: subtype :data:`SUBTYPE_UNCLASSIFIED`.
LABEL_TO_SYMBOL = {"N": "N", "L": "L", "R": "R", "A": "A", "V": "V", "F": "F", "Q": "Q", "?": "Q"}
#: Subtype of a ``Q`` annotation written for a beat the classifier did not label.
SUBTYPE_UNCLASSIFIED = 1
#: Subtype of a ``Q`` annotation written for a label with no WFDB symbol.
SUBTYPE_UNKNOWN_LABEL = 2
#: Symbol of alarm annotations (a comment; the text is in ``aux_note``).
ALARM_SYMBOL = '"'

# MIT format pseudo-codes (the 6 high bits of a 16-bit word)
_SKIP, _SUB, _AUX = 59, 61, 63
_EOF = b"\x00\x00"
_MAX_AUX_BYTES = 255
#: Seconds between two warnings of the same kind (clipping, overlaps, late notes).
_WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class _Note:
    """One annotation: record sample, MIT code, subtype, aux text (bytes)."""

    sample: int
    code: int
    subtype: int
    aux: bytes


def check_record_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and check that records can be written there.

    Raises
    ------
    ConfigError
        If it cannot be created or is not a writable directory.
    """
    check_type("directory", directory, (str, os.PathLike))
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--record-to {path}: cannot create the directory ({err.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--record-to {path}: the directory is not writable")
    return path


def alarm_note(event: dict) -> str:
    """The ``aux_note`` text of an alarm annotation, e.g. ``"ALARM vtach on high"``.

    ``off`` events end with their reason (``"ALARM vtach off cleared"``).
    """
    words = ["ALARM", str(event.get("code", "?")), str(event.get("state", "?"))]
    extra = event.get("priority") if event.get("state") == "on" else event.get("reason")
    if extra:
        words.append(str(extra))
    return " ".join(words)


def encode_annotations(notes: Sequence[_Note], prev_sample: int) -> tuple[bytes, list[int]]:
    """MIT-format bytes of ``notes`` (sorted), time differences from ``prev_sample``.

    Returns the bytes (without the end-of-file word) and the offset of each
    annotation in them. Differences over 1023 samples use a ``SKIP`` word
    and a 32-bit interval (high 16 bits first, as WFDB writes it).
    """
    out = bytearray()
    offsets = []
    for note in notes:
        offsets.append(len(out))
        diff = note.sample - prev_sample
        if diff < 0:
            raise ValueError(f"annotations out of order: {note.sample} after {prev_sample}")
        while diff > 1023:
            n = min(diff, 0x7FFFFFFF)
            out += struct.pack("<HHH", _SKIP << 10, (n >> 16) & 0xFFFF, n & 0xFFFF)
            diff -= n
        out += struct.pack("<H", (note.code << 10) | diff)
        if note.subtype:
            out += struct.pack("<H", (_SUB << 10) | (note.subtype & 0xFF))
        if note.aux:
            out += struct.pack("<H", (_AUX << 10) | len(note.aux))
            out += note.aux + (b"\x00" if len(note.aux) % 2 else b"")
        prev_sample = note.sample
    return bytes(out), offsets


def _pack_212(values: np.ndarray) -> bytes:
    """Format 212 bytes of an even number of 12-bit values (two values in 3 bytes)."""
    v = (values.astype(np.int32) & 0xFFF).reshape(-1, 2)
    out = np.empty((v.shape[0], 3), np.uint8)
    out[:, 0] = v[:, 0] & 0xFF
    out[:, 1] = ((v[:, 0] >> 8) & 0x0F) | ((v[:, 1] >> 4) & 0xF0)
    out[:, 2] = v[:, 1] & 0xFF
    return out.tobytes()


def _beat_note(label: str) -> _Note:
    """The annotation of a beat labelled ``label`` (its sample set when written)."""
    symbol = LABEL_TO_SYMBOL.get(label)
    if symbol is None:
        return _Note(0, MIT_CODES["Q"], SUBTYPE_UNKNOWN_LABEL, label.encode("ascii", "replace")[:16])
    return _Note(0, MIT_CODES[symbol], SUBTYPE_UNCLASSIFIED if label == "?" else 0, b"")


class StreamRecorder:
    """Write one stream's samples and events as a WFDB record, incrementally.

    Parameters
    ----------
    directory : str or path-like
        Where the record goes (created if missing).
    stream : str
        Stream name; the record is named after it. If a file of that record
        already exists the name gets a suffix ``_2``, ``_3``... (never
        overwritten).
    fs : float
        Sampling rate in Hz.
    channels : sequence of str
        Lead names, one per column of the samples (the signal descriptions).
    flush_s : float
        Wall-clock seconds between writes to disk (0.05 to 10 s). A killed
        monitor loses at most this much signal, plus what it had not yet
        received.
    fmt : {"16", "212"}
        WFDB signal format: ``"16"`` (16-bit) or ``"212"`` (12-bit, MIT-BIH's).
    adc_gain : float, optional
        Digital units per mV; default 1000 for format 16 (1 µV steps, range
        ±32.767 mV) and 200 for format 212 (5 µV, ±10.235 mV). Samples out
        of range are clipped (counted, warned).
    annotator : str
        Extension of the annotation file (letters and digits).
    reorder_s : float
        Seconds of signal (0 to 600) within which a late annotation is still
        put in its place; an older one is written at the oldest place
        allowed (counted, warned).
    max_buffer_s : float
        Seconds of signal held in memory before a write, whatever
        ``flush_s`` (bounds memory when replaying faster than real time).
    fsync : bool
        Also ``fsync`` data and header at every flush, so that a power loss
        (not only a killed process) keeps what was flushed. Slower.

    Attributes
    ----------
    record_name : str
        Record name (the file names without extension).
    path : pathlib.Path
        ``directory / record_name``, the path for ``wfdb.rdrecord``.
    frames_written : int
        Samples per channel on disk (and in the header).
    annotations_written : int
        Annotations in the annotation file.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        stream: str,
        fs: float,
        channels: Sequence[str],
        *,
        flush_s: float = 1.0,
        fmt: str = "16",
        adc_gain: float | None = None,
        annotator: str = ANNOTATOR,
        reorder_s: float = 60.0,
        max_buffer_s: float = 60.0,
        fsync: bool = False,
    ) -> None:
        check_stream_name(stream)
        self.stream = stream
        self.fs = float(check_range("fs", fs, 0.0, MAX_FS_HZ, low_inclusive=False, unit="Hz"))
        check_type("channels", channels, (list, tuple))
        if not 1 <= len(channels) <= MAX_CHANNELS:
            raise ConfigError(f"channels must hold 1 to {MAX_CHANNELS} lead names, got {len(channels)}")
        for name in channels:
            check_type("channels[i]", name, str)
        self.channels = tuple(channels)
        self.flush_s = float(check_range("flush_s", flush_s, 0.05, 10.0, unit="s"))
        check_type("fmt", fmt, (str, int))
        self.fmt = check_option("fmt", str(fmt), FORMATS)
        bits, self.invalid, default_gain = FORMATS[self.fmt]
        self.adc_res = bits
        self.adc_gain = float(
            default_gain if adc_gain is None else check_range("adc_gain", adc_gain, 0.0, 1e6, low_inclusive=False)
        )
        self._dmax = 2 ** (bits - 1) - 1
        check_type("annotator", annotator, str)
        if not (annotator.isascii() and annotator.isalnum() and len(annotator) <= 16):
            raise ConfigError(f"annotator must be 1 to 16 letters or digits, got {annotator!r}")
        self.annotator = annotator
        self.reorder_s = float(check_range("reorder_s", reorder_s, 0.0, 600.0, unit="s"))
        self.max_buffer_s = float(check_range("max_buffer_s", max_buffer_s, 1.0, 3600.0, unit="s"))
        self.fsync = bool(check_type("fsync", fsync, bool))
        self._reorder_samples = round(self.reorder_s * self.fs)
        self._max_buffer_frames = max(1, round(self.max_buffer_s * self.fs))

        self.directory = check_record_dir(directory)
        self._lock = threading.RLock()
        self._open_files()
        self.reset()
        self._write_header()
        logger.info(
            "recording stream %s to %s: WFDB format %s, %g adu/mV (%.3g µV steps), %d channel(s) at %g Hz, "
            "annotations .%s, written every %g s",
            stream, self.path, self.fmt, self.adc_gain, 1000.0 / self.adc_gain, len(self.channels), self.fs,
            self.annotator, self.flush_s,
        )  # fmt: skip

    def reset(self) -> None:
        """Start the (already open, empty) record's bookkeeping afresh."""
        self.origin: int | None = None  # stream index of record sample 0
        self.next_sample: int | None = None  # stream index of the next frame expected
        self.base_time: str | None = None
        self.base_date: str | None = None
        self.frames_written = 0
        self.annotations_written = 0
        self.invalid_frames = 0  # frames filled for gaps between messages
        self.nan_samples = 0
        self.clipped_samples = 0
        self.overlap_frames = 0
        self.late_annotations = 0
        self.flushes = 0
        self.flush_time_s = 0.0
        self._blocks: list[np.ndarray] = []
        self._buffered = 0
        self._pending: list[tuple[int, _Note]] = []  # (stream sample, note) not yet written
        self._provisional: tuple[int, _Note] | None = None  # a beat whose label may still change (relabel)
        self._written: deque[_Note] = deque()  # recent annotations (rewritable tail)
        self._offsets: deque[int] = deque()  # their byte offsets in the annotation file
        self._base_sample = 0  # sample of the annotation before _written[0] (0: none)
        self._ann_end = 0  # offset of the end-of-file word
        self._checksum = np.zeros(len(self.channels), np.int64)
        self._init = np.zeros(len(self.channels), np.int64)
        self._last_flush = time.monotonic()
        self._last_warn: dict[str, float] = {}
        self.closed = False

    # ------------------------------------------------------------ files
    def _open_files(self) -> None:
        """Pick a record name no file uses and create its files exclusively."""
        k = 1
        while True:
            name = self.stream if k == 1 else f"{self.stream}_{k}"
            k += 1
            base = self.directory / name
            paths = [base.with_name(f"{name}.{ext}") for ext in ("hea", "dat", self.annotator)]
            if any(p.exists() for p in paths):
                continue
            try:
                dat = open(paths[1], "xb", buffering=0)  # noqa: SIM115 (closed in close())
            except FileExistsError:
                continue  # taken meanwhile
            try:
                ann = open(paths[2], "xb", buffering=0)  # noqa: SIM115
            except FileExistsError:
                dat.close()
                os.unlink(paths[1])
                continue
            break
        if k > 2:
            logger.warning("record %s exists in %s; recording stream %s as %s", self.stream, self.directory,
                           self.stream, name)  # fmt: skip
        self.record_name = name
        self.path = base
        self.header_path, self.dat_path, self.ann_path = paths
        self._dat = dat
        self._ann = ann
        ann.write(_EOF)

    def _write_header(self) -> None:
        lines = [f"{self.record_name} {len(self.channels)} {self.fs:.12g} {self.frames_written}"]
        if self.base_time is not None:
            lines[0] += f" {self.base_time} {self.base_date}"
        checksum = ((self._checksum + 32768) % 65536) - 32768
        for i, name in enumerate(self.channels):
            desc = " ".join(name.split()) or f"ch{i}"
            lines.append(
                f"{self.dat_path.name} {self.fmt} {self.adc_gain:.12g}(0)/mV {self.adc_res} 0 "
                f"{int(self._init[i])} {int(checksum[i])} 0 {desc}"
            )
        origin = "none yet" if self.origin is None else str(self.origin)
        lines.append(f"# ecg-monitor recording of stream {self.stream}; stream sample of record sample 0: {origin}")
        lines.append(f"# annotations: {self.ann_path.name} (beat labels and alarms, see docs/recording.md)")
        if self.base_time is not None:
            lines.append("# base time: local clock of the monitor when the first sample arrived")
        tmp = self.header_path.with_name(self.header_path.name + ".tmp")
        with open(tmp, "w", encoding="ascii", errors="replace") as f:
            f.write("\n".join(lines) + "\n")
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.header_path)

    def _warn(self, kind: str, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(kind, -math.inf) >= _WARN_EVERY_S:
            self._last_warn[kind] = now
            logger.warning(message, *args)

    # ------------------------------------------------------------ input
    def write_samples(self, start: int, data: np.ndarray) -> None:
        """Add samples beginning at stream index ``start`` (all channels).

        Parameters
        ----------
        start : int
            Stream index of ``data[0]``. Samples missing before it (a gap
            between messages) are written as invalid; samples already
            written (an overlap) are dropped.
        data : numpy.ndarray, shape (n, len(channels))
            Samples in mV; NaN for lost samples.
        """
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise TypeError(f"start must be an integer, got {type(start).__name__} {start!r}")
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != len(self.channels):
            raise ValueError(f"data must have shape (n, {len(self.channels)}), got {data.shape}")
        start = int(start)
        with self._lock:
            if self.closed:
                raise ValueError(f"recorder of stream {self.stream} is closed")
            if self.origin is None:
                self.origin = self.next_sample = start
                now = time.localtime()
                self.base_time = time.strftime("%H:%M:%S", now)
                self.base_date = time.strftime("%d/%m/%Y", now)
            if start < self.next_sample:
                skip = min(self.next_sample - start, data.shape[0])
                self.overlap_frames += skip
                self._warn("overlap", "stream %s: %d samples received twice (at %d) not recorded again",
                           self.stream, skip, start)  # fmt: skip
                data = data[skip:]
                start += skip
            if start > self.next_sample:
                self._fill_invalid(start - self.next_sample)
            if data.shape[0]:
                self._append(self._digitise(data))
            self._maybe_flush()

    def _digitise(self, data: np.ndarray) -> np.ndarray:
        """Digital values (int16) of samples in mV: rounded, clipped, NaN -> invalid."""
        d = np.rint(data.astype(np.float64) * self.adc_gain)
        nan = np.isnan(d)
        over = np.abs(d) > self._dmax
        over &= ~nan
        n_over = int(np.count_nonzero(over))
        if n_over:
            self.clipped_samples += n_over
            self._warn("clip", "stream %s: %d samples beyond ±%.4g mV clipped (format %s, %g adu/mV)",
                       self.stream, n_over, self._dmax / self.adc_gain, self.fmt, self.adc_gain)  # fmt: skip
            np.clip(d, -self._dmax, self._dmax, out=d)
        out = d.astype(np.int16) if not nan.any() else np.where(nan, self.invalid, np.nan_to_num(d)).astype(np.int16)
        self.nan_samples += int(np.count_nonzero(nan))
        return out

    def _fill_invalid(self, n: int) -> None:
        self.invalid_frames += n
        while n > 0:
            k = min(n, self._max_buffer_frames)
            self._append(np.full((k, len(self.channels)), self.invalid, np.int16))
            n -= k

    def _append(self, frames: np.ndarray) -> None:
        self._blocks.append(frames)
        self._buffered += frames.shape[0]
        self.next_sample += frames.shape[0]
        if self._buffered >= self._max_buffer_frames:
            self.flush()

    def write_events(self, events: Sequence[dict]) -> None:
        """Add the ``beat``, ``relabel`` and ``alarm`` events of this stream (docs/events.md).

        Beats become beat annotations with the mapped symbol
        (:data:`LABEL_TO_SYMBOL`); alarms become comment annotations
        (``"``) whose ``aux_note`` is :func:`alarm_note`. A beat with
        ``provisional: true`` is kept back until the stream's next beat event
        (or :meth:`close`), and a ``relabel`` event of it before then gives
        it its final label. Other events and other streams' events are
        ignored. They are written at the next flush.
        """
        notes = []
        for ev in events:
            if ev.get("stream") != self.stream:
                continue
            kind = ev.get("type")
            if kind == "relabel":
                if self._provisional is not None and self._provisional[0] == int(ev["sample"]):
                    self._provisional = (self._provisional[0], _beat_note(str(ev.get("label", "?"))))
                continue
            if kind == "beat":
                note = _beat_note(str(ev.get("label", "?")))
                if self._provisional is not None:
                    notes.append(self._provisional)  # its label is final once the next beat comes
                    self._provisional = None
                if ev.get("provisional"):
                    self._provisional = (int(ev["sample"]), note)
                    continue
            elif kind == "alarm":
                text = alarm_note(ev).encode("ascii", "replace")[:_MAX_AUX_BYTES]
                note = _Note(0, MIT_CODES[ALARM_SYMBOL], 0, text)
            else:
                continue
            notes.append((int(ev["sample"]), note))
        if notes:
            with self._lock:
                if self.closed:
                    raise ValueError(f"recorder of stream {self.stream} is closed")
                self._pending.extend(notes)

    # ------------------------------------------------------------ output
    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def tick(self) -> None:
        """Flush if ``flush_s`` passed since the last flush (call it regularly)."""
        with self._lock:
            if not self.closed:
                self._maybe_flush()

    def flush(self) -> None:
        """Write what is buffered: samples, annotations, then the header."""
        with self._lock:
            if self.closed:
                return
            t0 = time.perf_counter()
            self._last_flush = time.monotonic()
            wrote = self._flush_samples(final=False)
            wrote |= self._flush_annotations()
            if wrote:
                self._write_header()
                self.flushes += 1
                self.flush_time_s += time.perf_counter() - t0

    def _flush_samples(self, final: bool) -> bool:
        if not self._blocks:
            return False
        frames = self._blocks[0] if len(self._blocks) == 1 else np.concatenate(self._blocks)
        self._blocks = []
        self._buffered = 0
        values = frames.ravel()
        if self.fmt == "212" and values.size % 2:
            # the disk holds whole 3-byte groups (pairs of values) only
            if final:
                values = np.concatenate([values, np.zeros(1, np.int16)])  # pad the last group
            else:
                self._blocks = [frames[-1:]]  # an odd number of channels: keep one frame back
                self._buffered = 1
                frames = frames[:-1]
                values = frames.ravel()
        if frames.shape[0] == 0:
            return False
        payload = frames.astype("<i2").tobytes() if self.fmt == "16" else _pack_212(values)
        self._dat.write(payload)
        if self.fsync:
            os.fsync(self._dat.fileno())
        if self.frames_written == 0:
            self._init = frames[0].astype(np.int64)
        self._checksum += frames.sum(axis=0, dtype=np.int64)
        self.frames_written += frames.shape[0]
        return True

    def _flush_annotations(self) -> bool:
        if not self._pending or self.origin is None:
            return False
        pending = sorted(self._pending, key=lambda item: item[0])  # stable: arrival order on ties
        self._pending = []
        notes = []
        for stream_sample, note in pending:
            sample = max(0, stream_sample - self.origin)
            if note.code == MIT_CODES[ALARM_SYMBOL] and sample == 0:
                sample = 1  # wfdb-python reads a comment at sample 0 as a file definition and drops it
            notes.append(_Note(sample, note.code, note.subtype, note.aux))
        written = self._written
        first = notes[0].sample
        i = len(written)
        if written and first < written[-1].sample:
            i = bisect.bisect_right([n.sample for n in written], first)
        floor = self._base_sample if i == 0 else written[i - 1].sample
        late = sum(1 for n in notes if n.sample < floor)
        if late:
            self.late_annotations += late
            self._warn("late", "stream %s: %d annotation(s) more than %g s late written %g s later than their beat",
                       self.stream, late, self.reorder_s, (floor - first) / self.fs)  # fmt: skip
            notes = [n if n.sample >= floor else _Note(floor, n.code, n.subtype, n.aux) for n in notes]
        tail = list(written)[i:]
        offset = self._offsets[i] if i < len(written) else self._ann_end
        if tail:
            merged = sorted(tail + notes, key=lambda n: n.sample)  # stable: those written first stay first
            for _ in range(len(tail)):
                written.pop()
                self._offsets.pop()
        else:
            merged = notes
        body, offsets = encode_annotations(merged, floor)
        old = self._ann_end - offset
        data = body + _EOF
        if len(body) < old:
            # a shorter tail (a SKIP no longer needed): zero words after the end-of-file
            # word are never left behind by a shorter write; close() truncates them
            data += bytes(old - len(body))
        self._ann.seek(offset)
        self._ann.write(data)
        if self.fsync:
            os.fsync(self._ann.fileno())
        self._ann_end = offset + len(body)
        for note, off in zip(merged, offsets):
            written.append(note)
            self._offsets.append(offset + off)
        self.annotations_written += len(notes)
        horizon = written[-1].sample - self._reorder_samples
        while len(written) > 1 and written[0].sample < horizon:
            self._base_sample = written.popleft().sample
            self._offsets.popleft()
        return True

    def close(self) -> None:
        """Write everything buffered, finish the files and close them (idempotent)."""
        with self._lock:
            if self.closed:
                return
            t0 = time.perf_counter()
            try:
                if self._provisional is not None:
                    self._pending.append(self._provisional)
                    self._provisional = None
                self._flush_samples(final=True)
                self._flush_annotations()
                self._ann.truncate(self._ann_end + len(_EOF))
                self._write_header()
                self.flush_time_s += time.perf_counter() - t0
            finally:
                self.closed = True
                self._dat.close()
                self._ann.close()
        logger.info(
            "recorded stream %s to %s: %d samples (%.1f s) x %d channel(s), %d invalid (%d in gaps), "
            "%d clipped, %d annotations (%d late); %d flushes, %.2f ms each",
            self.stream, self.path, self.frames_written, self.frames_written / self.fs, len(self.channels),
            self.nan_samples + self.invalid_frames * len(self.channels), self.invalid_frames, self.clipped_samples,
            self.annotations_written, self.late_annotations, self.flushes,
            1000.0 * self.flush_time_s / max(1, self.flushes),
        )  # fmt: skip

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
