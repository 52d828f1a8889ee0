"""Causal streaming filters for ECG.

:class:`BandpassFilter` is a Butterworth band-pass (optionally followed by a
notch) run as second-order sections with :func:`scipy.signal.sosfilt`, its
state carried from one chunk to the next, so that the output does not depend
on how the stream is cut into chunks.  NaN samples mark holes (lost samples,
lead-off): the output is NaN there and the filter restarts after the hole in
the steady state of the first valid sample, so a baseline jump across the
hole does not make it ring.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import signal

from replay._validate import check_range, check_type, ensure_int
from replay.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["BandpassFilter", "finite_runs"]


def finite_runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the start and stop indices of the runs of finite samples.

    Parameters
    ----------
    x : numpy.ndarray
        1-D array.

    Returns
    -------
    starts, stops : numpy.ndarray of int64
        ``x[starts[i]:stops[i]]`` are the maximal runs of finite values.
    """
    ok = np.isfinite(x)
    if ok.all():
        return np.array([0], dtype=np.int64), np.array([x.size], dtype=np.int64)
    edges = np.diff(np.concatenate(([False], ok, [False])).astype(np.int8))
    return np.flatnonzero(edges == 1).astype(np.int64), np.flatnonzero(edges == -1).astype(np.int64)


class BandpassFilter:
    """Causal Butterworth band-pass with optional notch, chunk-invariant.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    low_hz : float or None
        High-pass corner in Hz (None: low-pass only).
    high_hz : float or None
        Low-pass corner in Hz, below ``fs / 2`` (None: high-pass only).
    order : int
        Butterworth order of each of the low- and high-pass halves (1 to 8).
    notch_hz : float or None
        Mains frequency to notch out (e.g. 50 or 60 Hz), or None.
    notch_q : float
        Quality factor of the notch (centre frequency / -3 dB bandwidth).

    Notes
    -----
    The filter is an IIR (Butterworth, :func:`scipy.signal.butter` with
    ``output="sos"``), run with :func:`scipy.signal.sosfilt`; it uses no
    future sample.  Its group delay depends on frequency; :attr:`delay_s`
    gives the mean over the 5-20 Hz band where most QRS energy lies.

    Examples
    --------
    >>> import numpy as np
    >>> f = BandpassFilter(fs=360.0, low_hz=0.5, high_hz=40.0)
    >>> y = f.process(np.sin(2 * np.pi * 10 * np.arange(360) / 360.0))
    >>> y.shape
    (360,)
    """

    def __init__(
        self,
        fs: float,
        low_hz: float | None = 0.5,
        high_hz: float | None = 40.0,
        order: int = 2,
        notch_hz: float | None = None,
        notch_q: float = 30.0,
    ) -> None:
        self.fs = float(check_range("fs", fs, 0, low_inclusive=False, unit="Hz"))
        nyq = self.fs / 2.0
        if low_hz is None and high_hz is None and notch_hz is None:
            raise ConfigError("BandpassFilter needs at least one of low_hz, high_hz, notch_hz")
        if low_hz is not None:
            check_range("low_hz", low_hz, 0, nyq, low_inclusive=False, high_inclusive=False, unit="Hz")
        if high_hz is not None:
            check_range("high_hz", high_hz, 0, nyq, low_inclusive=False, high_inclusive=False, unit="Hz")
        if low_hz is not None and high_hz is not None and not low_hz < high_hz:
            raise ConfigError(f"low_hz must be < high_hz, got low_hz={low_hz} Hz, high_hz={high_hz} Hz")
        self.order = ensure_int("order", order)
        check_range("order", self.order, 1, 8)
        if notch_hz is not None:
            check_range("notch_hz", notch_hz, 0, nyq, low_inclusive=False, high_inclusive=False, unit="Hz")
            check_range("notch_q", notch_q, 0, low_inclusive=False)
        check_type("notch_q", notch_q, (int, float))
        self.low_hz = None if low_hz is None else float(low_hz)
        self.high_hz = None if high_hz is None else float(high_hz)
        self.notch_hz = None if notch_hz is None else float(notch_hz)
        self.notch_q = float(notch_q)

        parts = []
        if self.low_hz is not None and self.high_hz is not None:
            parts.append(
                signal.butter(self.order, [self.low_hz, self.high_hz], btype="bandpass", fs=self.fs, output="sos")
            )
        elif self.low_hz is not None:
            parts.append(signal.butter(self.order, self.low_hz, btype="highpass", fs=self.fs, output="sos"))
        elif self.high_hz is not None:
            parts.append(signal.butter(self.order, self.high_hz, btype="lowpass", fs=self.fs, output="sos"))
        if self.notch_hz is not None:
            b, a = signal.iirnotch(self.notch_hz, self.notch_q, fs=self.fs)
            parts.append(signal.tf2sos(b, a))
        self.sos: np.ndarray = np.vstack(parts)
        self._zi_unit: np.ndarray = signal.sosfilt_zi(self.sos)
        self._delay_s = self._compute_delay()
        logger.debug("%s", self.describe())
        self.reset()

    def _compute_delay(self) -> float:
        lo = 5.0 if self.low_hz is None else max(5.0, self.low_hz)
        hi = 20.0 if self.high_hz is None else min(20.0, self.high_hz)
        if hi <= lo:
            lo, hi = (self.low_hz or hi) * 0.9, (self.high_hz or lo) * 1.1
        freqs = np.linspace(lo, min(hi, self.fs / 2 * 0.99), 32)
        if self.notch_hz is not None:
            freqs = freqs[np.abs(freqs - self.notch_hz) > self.notch_hz / self.notch_q * 2] if freqs.size else freqs
        if freqs.size == 0:
            return 0.0
        gd = np.zeros_like(freqs)
        for sec in self.sos:
            _, g = signal.group_delay((sec[:3], sec[3:]), w=freqs, fs=self.fs)
            gd += g
        return float(np.mean(gd) / self.fs)

    def describe(self) -> str:
        """Return a one-line description of the filter in words."""
        if self.low_hz is not None and self.high_hz is not None:
            kind = f"band-pass {self.low_hz:g}-{self.high_hz:g} Hz"
        elif self.low_hz is not None:
            kind = f"high-pass {self.low_hz:g} Hz"
        elif self.high_hz is not None:
            kind = f"low-pass {self.high_hz:g} Hz"
        else:
            kind = "no band limit"
        notch = f", notch {self.notch_hz:g} Hz Q={self.notch_q:g}" if self.notch_hz is not None else ""
        return (
            f"Butterworth {kind}, order {self.order}{notch}, causal, "
            f"delay ~ {self.delay_s * 1000:.0f} ms at fs={self.fs:g} Hz"
        )

    @property
    def delay_s(self) -> float:
        """Approximate group delay in the QRS band (mean over 5-20 Hz), in seconds."""
        return self._delay_s

    def reset(self) -> None:
        """Forget the filter state; the next valid sample restarts it in steady state."""
        self._zi: np.ndarray | None = None

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter one chunk.

        Parameters
        ----------
        x : numpy.ndarray
            1-D chunk in mV; NaN marks lost samples.

        Returns
        -------
        numpy.ndarray of float64
            Filtered chunk in mV, same length, NaN where the input is NaN.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ConfigError(f"x must be 1-D, got shape {x.shape}")
        y = np.full(x.shape, np.nan)
        if x.size == 0:
            return y
        starts, stops = finite_runs(x)
        for a, b in zip(starts.tolist(), stops.tolist()):
            if a > 0 or self._zi is None:
                # start of the stream or first sample after a hole: steady state
                self._zi = self._zi_unit * x[a]
            y[a:b], self._zi = signal.sosfilt(self.sos, x[a:b], zi=self._zi)
        if not np.isfinite(x[-1]):
            self._zi = None  # chunk ends inside a hole
        return y
