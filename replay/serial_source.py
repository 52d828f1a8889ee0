"""Serial ECG sensors (AD8232 boards and the like) as wire-protocol streams.

A board sends ADC counts over a serial port in one of two formats (both
specified in ``docs/protocol.md``, section "Serial sensors"; reference
sketches in ``docs/sensors/``):

``ascii``
    One line per sample: an integer ADC value, or several comma- (or
    space-) separated values, one per channel (``512\\n``, ``498,511\\n``).
    A line (or a field) holding the lead-off marker (``!`` by default, what
    the common AD8232 sketches print when LO+ or LO- is high) is a sample
    whose value is unknown: it becomes NaN, so timing is kept.
``binary``
    Fixed-size frames, one per sample, with a sync word, a 32-bit sample
    counter, a lead-off flag and a Fletcher-16 checksum (for rates above
    about 1 kHz, or links that corrupt bytes)::

        offset  size      field
        0       2         sync        0xA5 0x5A
        2       1         n_channels  uint8, 1 to 16
        3       1         flags       uint8; bit 0: lead-off (values invalid)
        4       4         counter     uint32 little-endian, +1 per sample, wraps
        8       2 x n     samples     int16 little-endian ADC counts, one per channel
        8+2n    2         checksum    Fletcher-16 of bytes 2 .. 8+2n-1, little-endian
                                      (byte 8+2n = sum1, byte 9+2n = sum2)

    A counter that jumps forward by k + 1 means k samples were lost on the
    link (a frame failed its checksum, bytes were dropped): they become NaN
    rows so the stream keeps its timing.

The parsers (:class:`AsciiParser`, :class:`BinaryParser`) turn bytes into
samples in mV, ``(adc - baseline_adc) / gain_adc_per_mv``, counting and
skipping partial lines, garbage bytes and out-of-range values (they never
raise on bad input). :class:`SerialSource` opens the port
(:func:`serial.serial_for_url`, so ``loop://`` and pseudo-terminals work),
stamps samples with stream indices from the declared rate, checks the real
arrival rate, reconnects with back-off when the device goes away (the time
it was away becomes a hole in the stream indices), and publishes chunks
through a :class:`~replay.publisher.Publisher`.

Examples
--------
>>> p = AsciiParser(gain_adc_per_mv=200.0, baseline_adc=512.0)
>>> samples, counters = p.feed(b"\\n712\\n!\\n312\\nxx\\n")
>>> samples.ravel().tolist(), counters.lead_off, counters.garbage
([1.0, nan, -1.0], 1, 1)
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import serial

from . import wire
from ._validate import check_option, check_range, check_type, ensure_int
from .errors import ConfigError, SourceError

logger = logging.getLogger(__name__)

#: Serial data formats.
FORMATS = ("ascii", "binary")
#: Sync word that starts every binary frame.
BINARY_SYNC = b"\xa5\x5a"
#: Bytes of a binary frame before the samples (sync, n_channels, flags, counter).
BINARY_HEADER_BYTES = 8
#: Bytes of the checksum that ends a binary frame.
BINARY_CHECKSUM_BYTES = 2
#: Flag bit of a binary frame: the leads are off, the values are invalid.
BINARY_FLAG_LEAD_OFF = 0x01
#: Most channels a binary frame may carry.
BINARY_MAX_CHANNELS = 16
#: Longest ASCII line accepted, in bytes; longer runs without a newline are garbage.
MAX_LINE_BYTES = 256
#: Largest forward jump of the binary counter filled with NaN; a larger one
#: (or one backwards) is a device restart, counted and not filled.
MAX_COUNTER_GAP = 1 << 20

_SPLIT_RE = re.compile(rb"[,;\s]+")


def binary_frame_bytes(n_channels: int) -> int:
    """Size in bytes of one binary frame carrying ``n_channels`` samples."""
    return BINARY_HEADER_BYTES + 2 * int(n_channels) + BINARY_CHECKSUM_BYTES


def fletcher16(data: np.ndarray) -> np.ndarray:
    """Fletcher-16 checksums of the rows of a uint8 array, as ``sum1 | sum2 << 8``.

    ``sum1`` is the byte sum modulo 255 and ``sum2`` the sum of the running
    ``sum1`` modulo 255 (computed here in closed form, row-vectorised).
    """
    b = np.atleast_2d(np.asarray(data, dtype=np.uint8)).astype(np.int64)
    weights = np.arange(b.shape[1], 0, -1, dtype=np.int64)
    s1 = b.sum(axis=1) % 255
    s2 = (b @ weights) % 255
    return (s1 | (s2 << 8)).astype(np.uint16)


def encode_binary_frames(
    adc: np.ndarray, counter_start: int = 0, lead_off: np.ndarray | None = None
) -> bytes:
    """Encode ADC samples as binary frames (the reference encoder, for tests and bridges).

    Parameters
    ----------
    adc : ndarray, shape (n,) or (n, n_channels)
        ADC counts (int16 range).
    counter_start : int
        Counter of the first frame (wraps at 2**32).
    lead_off : ndarray of bool, shape (n,), optional
        Frames to flag as lead-off.

    Returns
    -------
    bytes
        ``n`` frames of :func:`binary_frame_bytes` bytes each.
    """
    a = np.asarray(adc)
    if a.ndim == 1:
        a = a[:, None]
    n, nch = a.shape
    if not 1 <= nch <= BINARY_MAX_CHANNELS:
        raise ValueError(f"binary frames carry 1 to {BINARY_MAX_CHANNELS} channels, got {nch}")
    size = binary_frame_bytes(nch)
    out = np.zeros((n, size), dtype=np.uint8)
    out[:, 0] = BINARY_SYNC[0]
    out[:, 1] = BINARY_SYNC[1]
    out[:, 2] = nch
    if lead_off is not None:
        out[:, 3] = np.where(np.asarray(lead_off, dtype=bool), BINARY_FLAG_LEAD_OFF, 0)
    counters = (np.arange(n, dtype=np.uint64) + np.uint64(counter_start)) % np.uint64(1 << 32)
    out[:, 4:8] = counters.astype("<u4").view(np.uint8).reshape(n, 4)
    out[:, 8 : 8 + 2 * nch] = np.ascontiguousarray(a, dtype="<i2").view(np.uint8).reshape(n, 2 * nch)
    cs = fletcher16(out[:, 2 : size - 2])
    out[:, size - 2] = cs & 0xFF
    out[:, size - 1] = cs >> 8
    return out.tobytes()


# --------------------------------------------------------------------------- parsers


@dataclass
class ParserCounters:
    """What a parser has seen, cumulative since its creation.

    Attributes
    ----------
    lines : int
        Complete lines (ASCII) or frames with a valid checksum (binary).
    samples : int
        Sample rows produced, NaN rows included.
    lead_off : int
        Rows marked lead-off by the sensor (NaN).
    garbage : int
        Lines that were not samples (ASCII), or byte runs skipped while
        looking for a frame (binary).
    partial : int
        Incomplete lines (too few fields) and bytes left unparsed when the
        port was lost.
    sync_dropped : int
        Line fragments dropped right after the port was (re)opened (the
        port may open in the middle of a line); not an error.
    out_of_range : int
        Values outside the ADC range: the line is skipped (ASCII), the
        sample becomes NaN (binary, whose counter keeps the timing).
    checksum_errors : int
        Binary frames whose checksum did not match.
    missing : int
        Samples lost on the link, found from binary counter jumps (NaN rows).
    counter_resets : int
        Binary counter jumps backwards or too far forwards (device restarts).
    """

    lines: int = 0
    samples: int = 0
    lead_off: int = 0
    garbage: int = 0
    partial: int = 0
    sync_dropped: int = 0
    out_of_range: int = 0
    checksum_errors: int = 0
    missing: int = 0
    counter_resets: int = 0

    @property
    def errors(self) -> int:
        """Everything skipped: garbage, partial, out-of-range and checksum errors."""
        return self.garbage + self.partial + self.out_of_range + self.checksum_errors

    def copy(self) -> ParserCounters:
        """A snapshot of the counters."""
        return dataclasses.replace(self)


class ParseResult(NamedTuple):
    """What :meth:`AsciiParser.feed` / :meth:`BinaryParser.feed` return.

    ``samples`` is (n, n_channels) float32 in mV, NaN for lead-off or lost
    samples; ``counters`` a snapshot of the parser's cumulative counters.
    """

    samples: np.ndarray
    counters: ParserCounters


class _Parser:
    """Shared settings and conversion of the parsers."""

    def __init__(
        self,
        n_channels: int,
        gain_adc_per_mv: float,
        baseline_adc: float,
        adc_range: tuple[int, int],
    ) -> None:
        self.n_channels = ensure_int("n_channels", n_channels)
        check_range("n_channels", self.n_channels, 1, wire.MAX_CHANNELS)
        check_range("gain_adc_per_mv", gain_adc_per_mv, 0, None, low_inclusive=False, unit="ADC/mV")
        check_range("baseline_adc", baseline_adc, unit="ADC")
        lo, hi = (ensure_int("adc_range", v) for v in adc_range)
        if not lo < hi:
            raise ConfigError(f"adc_range must be (low, high) with low < high, got {adc_range!r}")
        self.gain_adc_per_mv = float(gain_adc_per_mv)
        self.baseline_adc = float(baseline_adc)
        self.adc_range = (lo, hi)
        self.reset()

    def reset(self) -> None:
        """Forget buffered bytes and counters."""
        self.counters = ParserCounters()
        #: Rows of the last :meth:`feed` result that the sensor marked lead-off
        #: (other NaN rows are samples lost on the link).
        self.lead_off_mask = np.zeros(0, dtype=bool)

    def _to_mv(self, adc: np.ndarray) -> np.ndarray:
        return ((adc - self.baseline_adc) / self.gain_adc_per_mv).astype(np.float32)

    def _empty(self) -> ParseResult:
        self.lead_off_mask = np.zeros(0, dtype=bool)
        return ParseResult(np.zeros((0, self.n_channels), np.float32), self.counters.copy())


class AsciiParser(_Parser):
    """Parse AD8232-style ASCII lines (one integer per channel and line) into mV.

    Parameters
    ----------
    n_channels : int
        Values per line.
    gain_adc_per_mv : float
        ADC counts per mV at the electrodes (e.g. 341 for an AD8232, gain
        1100, on a 10-bit ADC with a 3.3 V reference).
    baseline_adc : float
        ADC value of 0 mV (the AD8232 reference, mid-scale: 512 on 10 bits).
    lead_off_marker : str
        A line or field equal to this means lead-off: the sample becomes NaN.
    adc_range : tuple of int
        Valid ADC values, inclusive; others are counted and their line skipped.

    Notes
    -----
    After :meth:`reset` or :meth:`resync` (a port just opened) the bytes up
    to the first newline are dropped: the port may have been opened in the
    middle of a line, and ``12`` cut from ``512`` would be a false spike.
    Blank lines are ignored. Fields may be separated by commas, semicolons
    or white space. Line parsing is plain Python, ample at <= 1 kHz.
    """

    def __init__(
        self,
        n_channels: int = 1,
        gain_adc_per_mv: float = 341.0,
        baseline_adc: float = 512.0,
        lead_off_marker: str = "!",
        adc_range: tuple[int, int] = (0, 4095),
    ) -> None:
        check_type("lead_off_marker", lead_off_marker, str)
        marker = lead_off_marker.strip()
        if not marker or _SPLIT_RE.search(marker.encode()) or not marker.isascii() or marker.lstrip("+-").isdigit():
            raise ConfigError(
                f"lead_off_marker must be a short ASCII token without separators or digits "
                f"(e.g. '!'), got {lead_off_marker!r}"
            )
        self.lead_off_marker = marker
        self._marker = marker.encode("ascii")
        super().__init__(n_channels, gain_adc_per_mv, baseline_adc, adc_range)

    def reset(self) -> None:
        """Forget buffered bytes and counters; drop the next line fragment."""
        super().reset()
        self._buf = b""
        self._sync = True

    def resync(self) -> None:
        """Drop buffered bytes (counted as partial) and the next fragment (port reopened)."""
        if self._buf.strip():
            self.counters.partial += 1
        self._buf = b""
        self._sync = True

    def feed(self, data: bytes) -> ParseResult:
        """Parse the bytes that arrived; return the complete samples and the counters."""
        buf = self._buf + bytes(data)
        c = self.counters
        if self._sync:
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > MAX_LINE_BYTES:
                    c.garbage += 1
                    buf = b""
                self._buf = buf
                return self._empty()
            if buf[:i].strip():
                c.sync_dropped += 1
            buf = buf[i + 1 :]
            self._sync = False
        lines = buf.split(b"\n")
        tail = lines.pop()
        if len(tail) > MAX_LINE_BYTES:
            c.garbage += 1
            tail = b""
            self._sync = True
        self._buf = tail
        if not lines:
            return self._empty()
        nch = self.n_channels
        lo, hi = self.adc_range
        out = np.empty((len(lines), nch), dtype=np.float64)
        off_rows = np.zeros(len(lines), dtype=bool)
        k = 0
        marker = self._marker
        for line in lines:
            s = line.strip()
            if not s:
                continue
            c.lines += 1
            if s == marker:
                out[k] = np.nan
                off_rows[k] = True
                c.lead_off += 1
                k += 1
                continue
            fields = _SPLIT_RE.split(s) if nch > 1 or not s.isdigit() else (s,)
            if len(fields) != nch:
                if len(fields) < nch:
                    c.partial += 1
                else:
                    c.garbage += 1
                continue
            row = out[k]
            ok = True
            off = False
            for j, f in enumerate(fields):
                if f == marker:
                    row[j] = np.nan
                    off = True
                    continue
                try:
                    v = int(f)
                except ValueError:
                    c.garbage += 1
                    ok = False
                    break
                if not lo <= v <= hi:
                    c.out_of_range += 1
                    ok = False
                    break
                row[j] = v
            if ok:
                c.lead_off += off
                off_rows[k] = off
                k += 1
        c.samples += k
        self.lead_off_mask = off_rows[:k]
        return ParseResult(self._to_mv(out[:k]), c.copy())


class BinaryParser(_Parser):
    """Parse binary frames (see the module docstring) into mV, checking checksums.

    Parameters
    ----------
    n_channels : int
        Channels per frame; frames with another count are garbage.
    gain_adc_per_mv, baseline_adc : float
        Conversion to mV: ``(adc - baseline_adc) / gain_adc_per_mv``.
    adc_range : tuple of int
        Valid ADC values, inclusive; others become NaN and are counted.

    Notes
    -----
    Frames are validated in vectorised blocks (sync, channel count,
    Fletcher-16); after a bad frame the parser looks for the next sync word.
    Counter jumps are filled with NaN rows (``counters.missing``).
    """

    def __init__(
        self,
        n_channels: int = 1,
        gain_adc_per_mv: float = 341.0,
        baseline_adc: float = 512.0,
        adc_range: tuple[int, int] = (-32768, 32767),
    ) -> None:
        super().__init__(n_channels, gain_adc_per_mv, baseline_adc, adc_range)
        if self.n_channels > BINARY_MAX_CHANNELS:
            raise ConfigError(
                f"binary frames carry 1 to {BINARY_MAX_CHANNELS} channels, got n_channels={n_channels}"
            )
        self.frame_bytes = binary_frame_bytes(self.n_channels)

    def reset(self) -> None:
        """Forget buffered bytes, the counter and the counters."""
        super().reset()
        self._buf = b""
        self._next_counter: int | None = None

    def resync(self) -> None:
        """Drop buffered bytes and forget the counter (port reopened)."""
        if self._buf:
            self.counters.partial += 1
        self._buf = b""
        self._next_counter = None

    def feed(self, data: bytes) -> ParseResult:
        """Parse the bytes that arrived; return the complete samples and the counters."""
        buf = self._buf + bytes(data)
        arr = np.frombuffer(buf, dtype=np.uint8)
        size = self.frame_bytes
        nch = self.n_channels
        c = self.counters
        pos = 0
        blocks: list[np.ndarray] = []
        while len(buf) - pos >= size:
            if buf[pos : pos + 2] != BINARY_SYNC:
                j = buf.find(BINARY_SYNC, pos + 1)
                c.garbage += 1
                if j < 0:
                    pos = len(buf) - 1 if buf[-1:] == BINARY_SYNC[:1] else len(buf)
                    break
                pos = j
                continue
            k = (len(buf) - pos) // size
            block = arr[pos : pos + k * size].reshape(k, size)
            ok = (block[:, 0] == BINARY_SYNC[0]) & (block[:, 1] == BINARY_SYNC[1]) & (block[:, 2] == nch)
            cs = fletcher16(block[:, 2 : size - 2])
            ok &= cs == (block[:, size - 2].astype(np.uint16) | (block[:, size - 1].astype(np.uint16) << 8))
            m = k if ok.all() else int(np.argmin(ok))
            if m:
                blocks.append(block[:m])
                pos += m * size
            if m < k:
                if block[m, 2] == nch:
                    c.checksum_errors += 1
                else:
                    c.garbage += 1
                j = buf.find(BINARY_SYNC, pos + 1)
                if j < 0:
                    pos = len(buf) - 1 if buf[-1:] == BINARY_SYNC[:1] else len(buf)
                    break
                pos = j
        self._buf = buf[pos:]
        if not blocks:
            return self._empty()
        frames = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        return ParseResult(self._decode(frames), c.copy())

    def _decode(self, frames: np.ndarray) -> np.ndarray:
        c = self.counters
        m = frames.shape[0]
        nch = self.n_channels
        c.lines += m
        counter = np.ascontiguousarray(frames[:, 4:8]).view("<u4").ravel().astype(np.int64)
        adc = np.ascontiguousarray(frames[:, 8 : 8 + 2 * nch]).view("<i2").reshape(m, nch).astype(np.float64)
        lo, hi = self.adc_range
        bad = (adc < lo) | (adc > hi)
        if bad.any():
            c.out_of_range += int(bad.sum())
            adc[bad] = np.nan
        off = (frames[:, 3] & BINARY_FLAG_LEAD_OFF).astype(bool)
        if off.any():
            c.lead_off += int(off.sum())
            adc[off] = np.nan
        prev = counter[0] - 1 if self._next_counter is None else self._next_counter - 1
        step = np.diff(counter, prepend=prev) % (1 << 32)
        gaps = step - 1
        reset = (step == 0) | (gaps > MAX_COUNTER_GAP)
        if reset.any():
            c.counter_resets += int(reset.sum())
            gaps[reset] = 0
        self._next_counter = int((counter[-1] + 1) % (1 << 32))
        missing = int(gaps.sum())
        if missing:
            c.missing += missing
            rows = np.full((m + missing, nch), np.nan)
            where = np.arange(m) + np.cumsum(gaps)
            rows[where] = adc
            adc = rows
            mask = np.zeros(m + missing, dtype=bool)
            mask[where] = off
            off = mask
        self.lead_off_mask = off
        c.samples += adc.shape[0]
        return self._to_mv(adc)


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class SerialOptions:
    """How to read a serial sensor.

    Parameters
    ----------
    fs_hz : float
        The sensor's sampling rate in Hz (required: stream indices come from it).
    baud : int
        Serial line speed in bit/s.
    fmt : {"ascii", "binary"}
        Data format (see the module docstring).
    gain_adc_per_mv : float
        ADC counts per mV; default 341 (AD8232, gain 1100, 10-bit ADC, 3.3 V
        reference). An ESP32 (12-bit, 3.3 V): 1365.
    baseline_adc : float
        ADC value of 0 mV; default 512 (mid-scale on 10 bits; 2048 on 12).
    channels : tuple of str
        Lead names, one per value of a line or frame.
    lead_off_marker : str
        ASCII token meaning lead-off.
    adc_range : tuple of int, optional
        Valid ADC values, inclusive; default 0 to 4095 (ascii) or the int16
        range (binary).
    chunk_s : float
        Seconds of signal per published message (also the longest a sample
        waits before it is sent).
    reconnect_min_s, reconnect_max_s : float
        Back-off between attempts to reopen a lost port: it starts at the
        minimum and doubles up to the maximum.
    rate_tolerance : float
        Relative difference between measured and declared rate above which a
        warning is given (0.02 = 2 %).
    rate_window_s : float
        Seconds of arrivals over which the rate is measured.
    stall_s : float
        A silence longer than this (port still open) is a hole: the stream
        index jumps by the elapsed time when samples come back.
    read_timeout_s : float
        Longest a read of the port blocks.
    """

    fs_hz: float
    baud: int = 115200
    fmt: str = "ascii"
    gain_adc_per_mv: float = 341.0
    baseline_adc: float = 512.0
    channels: tuple[str, ...] = ("ECG",)
    lead_off_marker: str = "!"
    adc_range: tuple[int, int] | None = None
    chunk_s: float = 0.1
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 5.0
    rate_tolerance: float = 0.02
    rate_window_s: float = 10.0
    stall_s: float = 1.0
    read_timeout_s: float = 0.02

    def __post_init__(self) -> None:
        check_range("fs_hz", self.fs_hz, 0, wire.MAX_FS_HZ, low_inclusive=False, unit="Hz")
        baud = ensure_int("baud", self.baud)
        check_range("baud", baud, 50, 20_000_000, unit="bit/s")
        check_option("fmt", self.fmt, FORMATS)
        check_type("channels", self.channels, (tuple, list))
        if not 1 <= len(self.channels) <= wire.MAX_CHANNELS:
            raise ConfigError(f"channels must name 1 to {wire.MAX_CHANNELS} leads, got {list(self.channels)}")
        for ch in self.channels:
            check_type("channels", ch, str)
            if not ch or len(ch) > 32:
                raise ConfigError(f"channel names must be 1 to 32 characters, got {ch!r}")
        object.__setattr__(self, "channels", tuple(self.channels))
        check_range("chunk_s", self.chunk_s, 0.001, 10.0, unit="s")
        check_range("reconnect_min_s", self.reconnect_min_s, 0.01, 60.0, unit="s")
        check_range("reconnect_max_s", self.reconnect_max_s, self.reconnect_min_s, 600.0, unit="s")
        check_range("rate_tolerance", self.rate_tolerance, 0, 1, low_inclusive=False)
        check_range("rate_window_s", self.rate_window_s, 0.5, 3600.0, unit="s")
        check_range("stall_s", self.stall_s, 0.1, 60.0, unit="s")
        check_range("read_timeout_s", self.read_timeout_s, 0.001, 1.0, unit="s")
        if self.fmt == "binary" and len(self.channels) > BINARY_MAX_CHANNELS:
            raise ConfigError(f"binary frames carry at most {BINARY_MAX_CHANNELS} channels")
        # parser settings are checked by building one
        self.make_parser()

    def make_parser(self) -> AsciiParser | BinaryParser:
        """A new parser for these options."""
        if self.fmt == "ascii":
            return AsciiParser(
                len(self.channels),
                self.gain_adc_per_mv,
                self.baseline_adc,
                self.lead_off_marker,
                self.adc_range or (0, 4095),
            )
        return BinaryParser(
            len(self.channels),
            self.gain_adc_per_mv,
            self.baseline_adc,
            self.adc_range or (-32768, 32767),
        )

    def describe(self) -> str:
        """The settings in words, for the log."""
        return (
            f"{self.fmt} at {self.baud} bit/s, {self.fs_hz:g} Hz declared, "
            f"{len(self.channels)} channel(s) {', '.join(self.channels)}, "
            f"mV = (ADC - {self.baseline_adc:g}) / {self.gain_adc_per_mv:g}"
        )


@dataclass(frozen=True)
class SerialStatus:
    """A change of a serial source's state, reported to ``on_status``.

    Attributes
    ----------
    stream : str
        Stream name.
    status : str
        ``"connected"``, ``"disconnected"``, ``"reconnected"``, ``"lead-off"``,
        ``"lead-on"``, ``"rate-mismatch"`` or ``"rate-ok"``.
    sample : int
        Stream index where it happened.
    detail : dict
        More about it (``reason``, ``hole_samples``, ``downtime_s``,
        ``measured_fs_hz`` ...), JSON-serialisable.
    """

    stream: str
    status: str
    sample: int
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The status as a JSON-friendly dict (also sent in ``source_events``)."""
        return {"status": self.status, "sample": int(self.sample), **self.detail}


@dataclass
class SerialStats:
    """Counters of a serial source over its lifetime.

    Attributes
    ----------
    samples : int
        Samples per channel published (NaN rows included, holes excluded).
    messages : int
        ``ecg`` messages published.
    disconnects : int
        Times the port was lost.
    reconnects : int
        Times samples came back after a loss.
    hole_samples : int
        Stream indices skipped for lost time (unplugged or stalled device).
    rate_warnings : int
        Rate measurements that differed from ``fs_hz`` by more than the tolerance.
    measured_fs_hz : float or None
        The last measured arrival rate, Hz.
    parser : ParserCounters
        The parser's counters.
    """

    samples: int = 0
    messages: int = 0
    disconnects: int = 0
    reconnects: int = 0
    hole_samples: int = 0
    rate_warnings: int = 0
    measured_fs_hz: float | None = None
    parser: ParserCounters = field(default_factory=ParserCounters)


def stream_name_for_port(port: str) -> str:
    """The default stream name of a port: its base name (``/dev/ttyUSB0`` -> ``ttyUSB0``)."""
    text = str(port)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        text = rest.rstrip("/") or scheme
    base = os.path.basename(text.rstrip("/")) or text
    base = base.split("?")[0]
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in base)[:64].strip("_")
    return wire.check_stream_name(cleaned or "serial")


def _open_error(port: str, err: BaseException) -> SourceError:
    """One clear line for a port that cannot be opened."""
    code = getattr(err, "errno", None)
    if code is None and isinstance(err.__context__, OSError):
        code = err.__context__.errno
    if code is None:
        m = re.search(r"\[Errno (\d+)\]", str(err))
        code = int(m.group(1)) if m else None
    if code == errno.ENOENT:
        reason = "no such device"
        hint = " (is the sensor plugged in? list ports with: python -m serial.tools.list_ports)"
    elif code in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
        hint = " (on Linux, add yourself to the 'dialout' group and log in again)"
    elif code == errno.EBUSY:
        reason = "the port is busy"
        hint = " (is another program using it?)"
    else:
        reason = (getattr(err, "strerror", None) or str(err) or type(err).__name__).splitlines()[0]
        hint = ""
    return SourceError(f"cannot open serial port {port}: {reason}{hint}")


class SerialSource:
    """Read a serial ECG sensor and publish it in the wire protocol.

    Parameters
    ----------
    port : str
        Device path (``/dev/ttyUSB0``, ``COM3``) or a pyserial URL (``loop://``).
    options : SerialOptions
        Format, rate, conversion and timing settings.
    stream : str, optional
        Stream name; default: the port's base name.
    on_status : callable, optional
        Called with a :class:`SerialStatus` on every state change (from the
        thread that runs :meth:`run`).

    Attributes
    ----------
    stats : SerialStats
        Counters (samples, reconnects, holes, rate warnings, parser errors).
    measured_fs_hz : float or None
        The last measured arrival rate in Hz.
    rate_mismatch : bool
        Whether the last measured rate differs from ``options.fs_hz`` by more
        than ``options.rate_tolerance``.
    next_index : int
        Stream index of the next sample.

    Notes
    -----
    Sample indices come from the declared rate: a sample's index is its rank
    in the stream, not its arrival time. Arrival times are used for two
    things only: the rate check (a warning when the sensor runs more than
    ``rate_tolerance`` off ``fs_hz``) and holes: when the port was lost (or
    silent longer than ``stall_s``), the index jumps by the elapsed time x
    ``fs_hz``, so the samples after it keep their place in time and
    receivers see a gap (``start`` jumps; ``seq`` does not).

    Status changes also travel in the wire protocol, additively: the first
    ``ecg`` message after a change carries them in a ``source_events``
    header field (a list of ``{"status", "sample", ...}``), and the ``end``
    control message carries the counters.
    """

    def __init__(
        self,
        port: str,
        options: SerialOptions,
        *,
        stream: str | None = None,
        on_status: Callable[[SerialStatus], None] | None = None,
    ) -> None:
        check_type("port", port, str)
        if not port.strip():
            raise ConfigError("port must not be empty (e.g. /dev/ttyUSB0 or COM3)")
        check_type("options", options, SerialOptions)
        self.port = port
        self.options = options
        self.stream = wire.check_stream_name(stream) if stream else stream_name_for_port(port)
        self.on_status = on_status
        self._serial = None
        self._parser = options.make_parser()
        self.reset()

    def reset(self) -> None:
        """Forget the stream: counters, index, rate measurement."""
        self._parser.reset()
        self.stats = SerialStats()
        self.next_index = 0
        self.measured_fs_hz: float | None = None
        self.rate_mismatch = False
        self._lead_off = False
        self._lead_off_count = 0
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._events: list[dict] = []
        self._last_data_t: float | None = None
        self._lost_at: float | None = None
        self._rate_t0: float | None = None
        self._rate_n = 0
        self._rate_logged_t = -math.inf

    # ------------------------------------------------------------------ port
    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._serial is not None

    def open(self) -> None:
        """Open the port.

        Raises
        ------
        SourceError
            If the port does not exist or cannot be opened (one line, with a hint).
        """
        self.close()
        try:
            ser = serial.serial_for_url(
                self.port,
                baudrate=self.options.baud,
                timeout=self.options.read_timeout_s,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise _open_error(self.port, err) from None
        try:
            ser.reset_input_buffer()
        except (serial.SerialException, OSError):
            pass  # not every port (or URL handler) supports flushing
        self._serial = ser
        self._parser.resync()

    def close(self) -> None:
        """Close the port (if open)."""
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # a vanished device may fail to close; it is gone
                logger.debug("closing %s failed", self.port, exc_info=True)

    def _read(self) -> bytes:
        ser = self._serial
        return ser.read(ser.in_waiting or 1)

    # ------------------------------------------------------------------ status
    def _status(self, status: str, sample: int, **detail) -> None:
        st = SerialStatus(self.stream, status, int(sample), detail)
        self._events.append(st.as_dict())
        if self.on_status is not None:
            self.on_status(st)

    def _check_rate(self, now: float, n_rows: int) -> None:
        opts = self.options
        if self._rate_t0 is None:
            self._rate_t0 = now  # rows of this read arrived before the window opens
            self._rate_n = 0
            return
        self._rate_n += n_rows
        span = now - self._rate_t0
        if span < opts.rate_window_s:
            return
        fs = self._rate_n / span
        self.measured_fs_hz = self.stats.measured_fs_hz = fs
        self._rate_t0, self._rate_n = now, 0
        off = abs(fs / opts.fs_hz - 1.0)
        if off > opts.rate_tolerance:
            self.stats.rate_warnings += 1
            if not self.rate_mismatch:
                self.rate_mismatch = True
                self._status("rate-mismatch", self.next_index, measured_fs_hz=round(fs, 2),
                             declared_fs_hz=opts.fs_hz)
            if now - self._rate_logged_t >= 60.0:
                self._rate_logged_t = now
                logger.warning(
                    "serial %s: samples arrive at %.1f Hz, %.1f %% off the declared %g Hz "
                    "(check --fs; %d warning(s) so far)",
                    self.port, fs, 100 * (fs / opts.fs_hz - 1), opts.fs_hz, self.stats.rate_warnings,
                )
        elif self.rate_mismatch:
            self.rate_mismatch = False
            self._status("rate-ok", self.next_index, measured_fs_hz=round(fs, 2))

    def _lead_edges(self, off: np.ndarray, start: int) -> None:
        """Report lead-off / lead-on at the edges of the sensor's lead-off rows."""
        if not off.any() and not self._lead_off:
            return
        flips = np.flatnonzero(np.diff(off.astype(np.int8), prepend=np.int8(self._lead_off)))
        for i in flips.tolist():
            self._lead_off = bool(off[i])
            if self._lead_off:
                self._lead_off_count += 1
                if self._lead_off_count <= 3 or self._lead_off_count % 100 == 0:
                    logger.warning("serial %s: lead-off at sample %d (%d time(s) so far)",
                                   self.port, start + i, self._lead_off_count)
                self._status("lead-off", start + i)
            else:
                self._status("lead-on", start + i)

    # ------------------------------------------------------------------ publishing
    def _flush(self, publisher, stop: threading.Event | None) -> None:
        if not self._pending_n:
            return
        data = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        start = self.next_index - data.shape[0]
        extra = {"t": time.time()}
        if self._events:
            extra["source_events"] = self._events
            self._events = []
        publisher.send_samples(self.stream, start, self.options.fs_hz, self.options.channels,
                               data, stop, **extra)
        self.stats.messages += 1
        self.stats.samples += data.shape[0]
        self._pending, self._pending_n = [], 0

    def _accept(self, rows: np.ndarray, now: float, lead_off: np.ndarray) -> None:
        """Place parsed rows in the stream, opening a hole first if time was lost."""
        opts = self.options
        last = self._last_data_t
        lost = self._lost_at is not None
        if last is not None and (lost or now - last > opts.stall_s):
            hole = max(0, round((now - last) * opts.fs_hz) - rows.shape[0])
            self.next_index += hole
            self.stats.hole_samples += hole
            if lost:
                self.stats.reconnects += 1
                self._status("reconnected", self.next_index, hole_samples=hole,
                             downtime_s=round(now - self._lost_at, 3))
                logger.warning("serial %s: data again after %.1f s; %d samples marked missing",
                               self.port, now - self._lost_at, hole)
            else:
                logger.warning("serial %s: no data for %.1f s; %d samples marked missing",
                               self.port, now - last, hole)
            self._rate_t0 = None
        elif lost:
            self.stats.reconnects += 1
            self._status("reconnected", self.next_index, hole_samples=0,
                         downtime_s=round(now - self._lost_at, 3))
        self._lost_at = None
        self._check_rate(now, rows.shape[0])
        self._lead_edges(lead_off, self.next_index)
        self._pending.append(rows)
        self._pending_n += rows.shape[0]
        self.next_index += rows.shape[0]
        self._last_data_t = now

    def _reconnect(self, stop: threading.Event) -> bool:
        """Reopen the port with back-off until it works or ``stop`` is set."""
        delay = self.options.reconnect_min_s
        while not stop.wait(delay):
            try:
                self.open()
            except SourceError as err:
                logger.debug("serial %s: still gone (%s); next try in %.1f s", self.port, err, delay)
                delay = min(2 * delay, self.options.reconnect_max_s)
                continue
            logger.info("serial %s: port open again", self.port)
            return True
        return False

    def run(
        self,
        publisher,
        stop: threading.Event | None = None,
        *,
        duration_s: float | None = None,
    ) -> SerialStats:
        """Read the port and publish its samples until ``stop`` is set.

        Parameters
        ----------
        publisher : Publisher
            Where to send (``ctl`` start, ``ecg`` chunks, ``ctl`` end).
        stop : threading.Event, optional
            Set it to end; the ``end`` message is still sent.
        duration_s : float, optional
            Stop after this many seconds of wall-clock time.

        Returns
        -------
        SerialStats

        Raises
        ------
        SourceError
            If the port cannot be opened at the start (later losses are
            reconnected, never raised).
        """
        stop = stop or threading.Event()
        opts = self.options
        if not self.is_open:
            self.open()
        logger.info("serial %s as stream %s: %s", self.port, self.stream, opts.describe())
        publisher.send_control(
            self.stream, wire.EVENT_START, fs=opts.fs_hz, channels=list(opts.channels),
            units=wire.UNITS, source="serial", port=self.port, format=opts.fmt, baud=opts.baud,
        )
        chunk_n = max(1, round(opts.chunk_s * opts.fs_hz))
        t_end = None if duration_s is None else time.monotonic() + duration_s
        last_flush = time.monotonic()
        self._status("connected", self.next_index, port=self.port)
        interrupted = True
        try:
            while not stop.is_set():
                now = time.monotonic()
                if t_end is not None and now >= t_end:
                    interrupted = False
                    break
                try:
                    data = self._read()
                except (serial.SerialException, OSError) as err:
                    # the device went away (unplugged, powered off, driver gone)
                    self._lost(err, publisher, stop)
                    if not self._reconnect(stop):
                        break
                    continue
                now = time.monotonic()
                if data:
                    rows, _ = self._parser.feed(data)
                    if rows.shape[0]:
                        self._accept(rows, now, self._parser.lead_off_mask)
                if self._pending_n >= chunk_n or (self._pending_n and now - last_flush >= opts.chunk_s):
                    self._flush(publisher, stop)
                    last_flush = now
        finally:
            self._flush(publisher, None)
            self.stats.parser = self._parser.counters.copy()
            c = self.stats.parser
            publisher.send_control(
                self.stream, wire.EVENT_END, samples=int(self.stats.samples),
                interrupted=bool(interrupted), reconnects=self.stats.reconnects,
                hole_samples=self.stats.hole_samples, rate_warnings=self.stats.rate_warnings,
                parse_errors=dataclasses.asdict(c),
            )
            self.close()
        if c.errors:
            logger.warning(
                "serial %s: skipped %d garbage, %d partial, %d out-of-range, %d bad-checksum",
                self.port, c.garbage, c.partial, c.out_of_range, c.checksum_errors,
            )
        return self.stats

    def _lost(self, err: BaseException, publisher, stop) -> None:
        self._flush(publisher, stop)
        self.close()
        self.stats.disconnects += 1
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        if self._last_data_t is None:
            self._last_data_t = self._lost_at
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        logger.warning("serial %s: device lost (%s); reconnecting", self.port, reason)
        self._status("disconnected", self.next_index, reason=reason)


# --------------------------------------------------------------------------- threads


class SerialPublisherThread(threading.Thread):
    """A thread that runs a :class:`SerialSource` into its own :class:`Publisher`.

    Made by :func:`start_serial_publisher`. After it ends, ``error`` holds
    the exception that stopped it (None when it ended normally) and
    ``stats`` the source's counters.
    """

    def __init__(self, source: SerialSource, publisher, stop: threading.Event, *,
                 wait_subscribers: int, wait_timeout_s: float, duration_s: float | None) -> None:
        super().__init__(name=f"serial-{source.stream}", daemon=True)
        self.source = source
        self.publisher = publisher
        self.stop_event = stop
        self.error: BaseException | None = None
        self.stats: SerialStats | None = None
        self._wait = wait_subscribers
        self._wait_timeout_s = wait_timeout_s
        self._duration_s = duration_s

    @property
    def stream(self) -> str:
        """The stream name."""
        return self.source.stream

    def run(self) -> None:
        """Wait for subscribers, then read and publish until stopped."""
        try:
            if self._wait and not self.publisher.wait_for_subscribers(
                self.stream, self._wait, self._wait_timeout_s, self.stop_event
            ):
                if not self.stop_event.is_set():
                    raise SourceError(
                        f"no subscriber for serial stream {self.stream} within {self._wait_timeout_s} s"
                    )
                return
            self.stats = self.source.run(self.publisher, self.stop_event, duration_s=self._duration_s)
        except BaseException as err:  # noqa: BLE001  handed to whoever joins the thread
            self.error = err
        finally:
            self.source.close()
            self.publisher.close(linger_s=1.0)


def start_serial_publisher(
    port: str,
    options: SerialOptions,
    endpoint: str,
    *,
    context=None,
    stop: threading.Event | None = None,
    stream: str | None = None,
    on_status: Callable[[SerialStatus], None] | None = None,
    wait_subscribers: int = 1,
    wait_timeout_s: float = 10.0,
    duration_s: float | None = None,
    **publisher_kwargs,
) -> SerialPublisherThread:
    """Open a serial sensor and publish it on ``endpoint`` from a new thread.

    The port is opened and the publisher bound before this returns, so a
    missing port raises :class:`SourceError` here, in the caller's thread.

    Parameters
    ----------
    port : str
        Device path or pyserial URL.
    options : SerialOptions
        How to read it.
    endpoint : str
        Where to bind the publisher (``inproc://...`` for a monitor in this
        process, ``tcp://127.0.0.1:5555`` for a bridge).
    context : zmq.Context, optional
        Needed for ``inproc://`` endpoints.
    stop : threading.Event, optional
        Set it to stop the thread.
    stream : str, optional
        Stream name (default: the port's base name).
    on_status : callable, optional
        Called with each :class:`SerialStatus` (from the thread).
    wait_subscribers : int
        Wait for this many subscribers before reading (0: read at once).
    wait_timeout_s : float
        How long to wait for them; the thread ends with a SourceError after.
    duration_s : float, optional
        Stop after this many seconds.
    **publisher_kwargs
        More :class:`~replay.publisher.Publisher` settings (``curve_server_key``, ...).

    Returns
    -------
    SerialPublisherThread
        Already started; check ``error`` after joining it.
    """
    from .publisher import Publisher

    source = SerialSource(port, options, stream=stream, on_status=on_status)
    source.open()
    try:
        publisher = Publisher(endpoint, context=context, **publisher_kwargs)
    except BaseException:
        source.close()
        raise
    thread = SerialPublisherThread(
        source, publisher, stop or threading.Event(), wait_subscribers=ensure_int("wait_subscribers", wait_subscribers),
        wait_timeout_s=wait_timeout_s, duration_s=duration_s,
    )
    thread.start()
    return thread


# --------------------------------------------------------------------------- command line


def _adc_range(text: str) -> tuple[int, int]:
    import argparse

    lo, sep, hi = text.replace(",", ":").partition(":")
    try:
        if not sep:
            raise ValueError
        return int(lo), int(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH ADC values (e.g. 0:4095), got {text!r}") from None


#: Destinations of the serial command-line options (None when not given).
SERIAL_ARGUMENTS = ("baud", "fs", "format", "gain", "baseline", "channels", "lead_off_marker", "adc_range")


def add_serial_arguments(parser) -> None:
    """Add the options of ``serial:`` sources (``--baud``, ``--fs``, ``--format`` ...) to a parser.

    Every option defaults to None, so a command can tell whether it was
    given; :func:`serial_options_from_args` applies the defaults.
    """
    g = parser.add_argument_group(
        "serial sources (serial:PORT)",
        "AD8232-style sensors on a serial port; formats in docs/protocol.md, sketches in docs/sensors/",
    )
    g.add_argument("--baud", type=int, default=None, metavar="BIT/S", help="line speed (default 115200)")
    g.add_argument("--fs", type=float, default=None, metavar="HZ",
                   help="the sensor's sampling rate in Hz (required for serial sources)")
    g.add_argument("--format", default=None, choices=FORMATS, help="data format (default ascii)")
    g.add_argument("--gain", type=float, default=None, metavar="ADC_PER_MV",
                   help="ADC counts per mV (default 341: AD8232 on a 10-bit 3.3 V ADC; ESP32: 1365)")
    g.add_argument("--baseline", type=float, default=None, metavar="ADC",
                   help="ADC value of 0 mV (default 512; ESP32: 2048)")
    g.add_argument("--channels", default=None, metavar="NAME[,NAME...]",
                   help="lead names, one per value of a line (default ECG)")
    g.add_argument("--lead-off-marker", default=None, metavar="TOKEN",
                   help="ASCII token the sensor sends for lead-off (default '!')")
    g.add_argument("--adc-range", type=_adc_range, default=None, metavar="LOW:HIGH",
                   help="valid ADC values; others are counted and skipped (default 0:4095 ascii, int16 binary)")


def serial_options_from_args(args, *, chunk_s: float = 0.1) -> SerialOptions:
    """Build :class:`SerialOptions` from options added by :func:`add_serial_arguments`.

    Raises
    ------
    ConfigError
        When ``--fs`` is missing or a value is invalid.
    """
    if args.fs is None:
        raise ConfigError("serial sources need --fs HZ, the sensor's sampling rate (e.g. --fs 250)")
    kw: dict = {"fs_hz": args.fs, "chunk_s": chunk_s}
    if args.baud is not None:
        kw["baud"] = args.baud
    if args.format is not None:
        kw["fmt"] = args.format
    if args.gain is not None:
        kw["gain_adc_per_mv"] = args.gain
    if args.baseline is not None:
        kw["baseline_adc"] = args.baseline
    if args.channels is not None:
        kw["channels"] = tuple(c.strip() for c in args.channels.split(","))
    if args.lead_off_marker is not None:
        kw["lead_off_marker"] = args.lead_off_marker
    if args.adc_range is not None:
        kw["adc_range"] = args.adc_range
    return SerialOptions(**kw)


def given_serial_arguments(args) -> list[str]:
    """The serial options given on the command line (to refuse them for other sources)."""
    return ["--" + name.replace("_", "-") for name in SERIAL_ARGUMENTS if getattr(args, name, None) is not None]
