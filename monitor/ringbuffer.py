"""Fixed-memory ring buffer of one stream, addressed by absolute sample index."""

from __future__ import annotations

import logging

import numpy as np

from replay._validate import check_range, ensure_int

logger = logging.getLogger(__name__)


class RingBuffer:
    """The last ``capacity_s`` seconds of a stream, with holes marked.

    Samples are addressed by their absolute index in the stream (0 = first
    sample the source sent). Samples that never arrived (missed messages,
    NaN runs from the sensor) read as NaN and are listed in :attr:`holes`;
    they are never closed up, so an index always means the same instant.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    capacity_s : float
        Seconds kept (1 to 3600 s); older samples are overwritten.
    n_channels : int
        Columns per sample.

    Examples
    --------
    >>> rb = RingBuffer(fs=360.0, capacity_s=60.0)
    >>> rb.write(0, np.zeros(360, np.float32))
    >>> rb.write(720, np.ones(360, np.float32))      # samples 360-719 never came
    >>> rb.holes
    [(360, 720)]
    >>> float(np.isnan(rb.read(300, 400)).sum())
    40.0
    """

    def __init__(self, fs: float, capacity_s: float = 60.0, n_channels: int = 1) -> None:
        self.fs = float(check_range("fs", fs, 0, None, low_inclusive=False, unit="Hz"))
        check_range("capacity_s", capacity_s, 1.0, 3600.0, unit="s")
        self.n_channels = ensure_int("n_channels", n_channels)
        if self.n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        self.capacity = int(np.ceil(capacity_s * self.fs))
        self._data = np.empty((self.capacity, self.n_channels), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget every sample; the next write may start at any index."""
        self._data.fill(np.nan)
        #: Absolute index one past the newest sample written (or hole marked).
        self.end = 0
        #: Absolute index of the first sample ever written.
        self.first = None
        #: Hole intervals ``(start, stop)`` (absolute, stop exclusive) still in the buffer.
        self.holes: list[tuple[int, int]] = []
        self.samples_written = 0
        self.samples_missing = 0

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        if self.first is None:
            return 0
        return max(self.first, self.end - self.capacity)

    def _put(self, start: int, block: np.ndarray) -> None:
        n = block.shape[0]
        if n > self.capacity:
            block = block[-self.capacity :]
            start += n - self.capacity
            n = self.capacity
        i = start % self.capacity
        k = min(n, self.capacity - i)
        self._data[i : i + k] = block[:k]
        if k < n:
            self._data[: n - k] = block[k:]

    def _add_hole(self, start: int, stop: int) -> None:
        if self.holes and self.holes[-1][1] == start:
            self.holes[-1] = (self.holes[-1][0], stop)
        else:
            self.holes.append((start, stop))

    def write(self, start: int, data: np.ndarray) -> None:
        """Store samples ``data`` (n,) or (n, channels) beginning at index ``start``.

        A ``start`` beyond :attr:`end` leaves a hole of NaN in between; NaN
        inside ``data`` are holes too. ``start`` before :attr:`end` (overlap)
        raises ValueError: the receiver rejects such messages before.
        """
        start = ensure_int("start", start)
        block = np.asarray(data, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        if block.ndim != 2 or block.shape[1] != self.n_channels:
            raise ValueError(f"data must have shape (n, {self.n_channels}), got {block.shape}")
        if self.first is None:
            self.first = start
            self.end = start
        if start < self.end:
            raise ValueError(f"write at {start} overlaps data up to {self.end}")
        if start > self.end:
            missing = start - self.end
            self.samples_missing += missing
            gap = min(missing, self.capacity)
            self._put(start - gap, np.full((gap, self.n_channels), np.nan, np.float32))
            self._add_hole(self.end, start)
        n = block.shape[0]
        if n:
            self._put(start, block)
            nan = np.isnan(block).any(axis=1)
            if nan.any():
                # runs of NaN rows -> hole intervals, vectorised
                edges = np.diff(np.concatenate(([0], nan.view(np.int8), [0])))
                for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                    self._add_hole(start + int(a), start + int(b))
        self.end = start + n
        self.samples_written += n
        oldest = self.oldest
        while self.holes and self.holes[0][1] <= oldest:
            self.holes.pop(0)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Return samples ``[start, stop)`` as (n, channels) float32 (a copy).

        Indices not yet received or already overwritten raise ValueError.
        """
        if start < self.oldest or stop > self.end or stop < start:
            raise ValueError(
                f"samples [{start}, {stop}) are not in the buffer (it holds [{self.oldest}, {self.end}))"
            )
        n = stop - start
        i = start % self.capacity
        k = min(n, self.capacity - i)
        out = np.empty((n, self.n_channels), dtype=np.float32)
        out[:k] = self._data[i : i + k]
        if k < n:
            out[k:] = self._data[: n - k]
        return out

    def latest(self, seconds: float) -> tuple[int, np.ndarray]:
        """Return ``(start, samples)`` of the last ``seconds`` held."""
        n = min(int(round(seconds * self.fs)), self.end - self.oldest)
        return self.end - n, self.read(self.end - n, self.end)
