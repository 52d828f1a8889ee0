"""Beats as the classifier sees them, identical live and offline.

Two pieces are shared by the live monitor and the trainer, so that what the
trainer measures is what the monitor does live:

* :func:`live_front_end` builds the band-pass filter and R-peak detector
  exactly as :class:`monitor.pipeline.StreamMonitor` does, and
  :func:`offline_beats` streams a whole recording through them (the
  ``xqrs_detect`` pattern).
* :class:`BeatFeaturizer` turns the filtered signal and the detected beats,
  in any chunking, into what the classifier takes per beat: the beat window
  resampled to the model's rate and normalised, a median template of the
  patient's previous beats, and RR-interval features that exist at decision
  time.

Decision latency
----------------
A beat's features are complete when (a) ``post_s`` seconds of signal after
its R peak have arrived and (b), with ``use_post_rr=True`` (default), the
next beat has been detected, since the post-RR interval is one of the
features.  The detector reports a beat :attr:`RPeakDetector.delay_s`
(about 0.29 s) after its R wave, so the usual decision comes
``max(post_s, RR_next + detector delay)`` after the R wave, i.e. about one
RR interval plus 0.3 s (1.1 s at 75 bpm).  :attr:`BeatFeaturizer.delay_s`
gives the part that does not depend on the rhythm.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from replay._validate import check_option, check_range, check_type, ensure_int
from replay.errors import ConfigError

from .detector import RPeakDetector
from .filters import BandpassFilter

logger = logging.getLogger(__name__)

__all__ = [
    "NORMALIZATIONS",
    "RHYTHM_NAMES",
    "BeatFeatures",
    "BeatFeaturizer",
    "featurize_beats",
    "live_front_end",
    "template_rms",
    "offline_beats",
    "p_wave_measurable",
    "p_wave_ratio",
]

#: Band of the monitor's display/classification filter, in Hz (high edge capped at 0.45 fs).
FILTER_LOW_HZ = 0.5
FILTER_HIGH_HZ = 40.0


def live_front_end(fs: float, notch_hz: float | None = None) -> tuple[BandpassFilter, RPeakDetector]:
    """Build the live monitor's filter and R-peak detector for one stream.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz.
    notch_hz : float, optional
        Mains frequency to notch out of the filtered signal (50 or 60 Hz).

    Returns
    -------
    filter : BandpassFilter
        Causal Butterworth band-pass 0.5 Hz to ``min(40, 0.45 fs)`` Hz; its
        output is what the classifier sees.
    detector : RPeakDetector
        Online R-peak detector at default settings; it takes the *raw* signal.
    """
    fs = float(check_range("fs", fs, 0, low_inclusive=False, unit="Hz"))
    high = min(FILTER_HIGH_HZ, 0.45 * fs)
    return BandpassFilter(fs, FILTER_LOW_HZ, high, notch_hz=notch_hz), RPeakDetector(fs)


def offline_beats(
    signal_mv: np.ndarray, fs: float, *, chunk_s: float | None = None, notch_hz: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Detect beats and filter a whole recording with the live monitor's code.

    Parameters
    ----------
    signal_mv : numpy.ndarray
        1-D raw ECG in mV (NaN for lost samples).
    fs : float
        Sampling rate in Hz.
    chunk_s : float, optional
        Stream in chunks of this many seconds (default: all at once; the
        result does not depend on it).
    notch_hz : float, optional
        Mains notch, as in the monitor.

    Returns
    -------
    peaks : numpy.ndarray of int64
        R-peak sample indices.
    filtered_mv : numpy.ndarray of float64
        The band-passed signal (NaN where the input is NaN).
    """
    x = np.asarray(signal_mv, dtype=np.float64)
    if x.ndim != 1:
        raise ConfigError(f"signal_mv must be 1-D, got shape {x.shape}")
    filt, det = live_front_end(fs, notch_hz)
    if chunk_s is None:
        n = max(1, x.size)
    else:
        check_range("chunk_s", chunk_s, 0, low_inclusive=False, unit="s")
        n = max(1, round(chunk_s * float(fs)))
    ys, ps = [], []
    for i in range(0, x.size, n):
        ys.append(filt.process(x[i : i + n]))
        ps.append(det.process(x[i : i + n]))
    y = np.concatenate(ys) if ys else np.zeros(0)
    p = np.concatenate(ps).astype(np.int64) if ps else np.zeros(0, dtype=np.int64)
    return p, y


# --------------------------------------------------------------------------- normalisation
def _norm_minmax(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not np.isnan(w).any():  # fast path, same values
        lo, hi = w.min(axis=-1, keepdims=True), w.max(axis=-1, keepdims=True)
    else:
        lo = np.nanmin(w, axis=-1, keepdims=True)
        hi = np.nanmax(w, axis=-1, keepdims=True)
    return lo, hi - lo


def _norm_zscore(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not np.isnan(w).any():  # fast path (nanmean/nanstd copy the window)
        return w.mean(axis=-1, keepdims=True), w.std(axis=-1, keepdims=True)
    return np.nanmean(w, axis=-1, keepdims=True), np.nanstd(w, axis=-1, keepdims=True)


def _norm_mad(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    med = np.nanmedian(w, axis=-1, keepdims=True)
    mad = 1.4826 * np.nanmedian(np.abs(w - med), axis=-1, keepdims=True)
    return med, mad


#: Per-beat normalisations: name -> function returning (offset, scale) of each window.
NORMALIZATIONS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "minmax": _norm_minmax,
    "zscore": _norm_zscore,
    "mad": _norm_mad,
}

_EPS_MV = 1e-3  # smallest scale, in mV, so a flat window does not blow up


def template_rms(windows: np.ndarray) -> np.ndarray:
    """Root-mean-square difference between each normalised beat and its template channel.

    Parameters
    ----------
    windows : numpy.ndarray, shape (k, 2, n_window)
        :attr:`BeatFeatures.windows` with the template channel.

    Returns
    -------
    numpy.ndarray of float64, shape (k,)
        In units of the beat's normalisation: 0 for a beat identical to the
        patient's recent ones, large for an ectopic shape.
    """
    return np.sqrt(np.mean((windows[:, 0].astype(np.float64) - windows[:, 1]) ** 2, axis=1))


#: Parts of a beat window used by :func:`p_wave_ratio`, in seconds from the R peak, [start, stop).
P_WAVE_S: tuple[float, float] = (-0.30, -0.10)
#: The PR segment, the baseline of the P wave (see :data:`P_WAVE_S`).
PR_SEGMENT_S: tuple[float, float] = (-0.10, -0.05)
#: The QRS complex, whose range scales the P wave (see :data:`P_WAVE_S`).
QRS_S: tuple[float, float] = (-0.06, 0.06)


def p_wave_measurable(template_beats: int, pre_s: float, post_s: float) -> bool:
    """Whether featurizer settings give :func:`p_wave_ratio` what it needs: the template channel and windows from 0.30 s before to 0.06 s after the R peak."""
    return template_beats > 0 and pre_s >= -P_WAVE_S[0] and post_s >= QRS_S[1]


def p_wave_ratio(windows: np.ndarray, model_fs: float, pre_s: float) -> np.ndarray:
    """How clearly a P wave stands out in beat windows: its amplitude over the QRS complex's range.

    The largest deviation of the window from the median of its PR segment
    (0.10 to 0.05 s before the R peak) between 0.30 and 0.10 s before the R
    peak, over the range of the window from 0.06 s before to 0.06 s after
    it.  On the median template of a patient's recent beats (channel 1 of
    :attr:`BeatFeatures.windows`) it is about 0.1 or more in sinus rhythm on
    MIT-BIH lead MLII and about 0.05 or less in atrial fibrillation, whose
    fibrillatory waves, unlike P waves, do not line up from beat to beat and
    cancel out in the median (atrial flutter's regular waves do not).  The
    ratio does not depend on the window's offset or scale, so the normalised
    windows give the same value as the signal in mV.

    Parameters
    ----------
    windows : numpy.ndarray, shape (..., n_window)
        Windows at ``model_fs`` Hz starting ``pre_s`` seconds before the R peak.
    model_fs : float
        Their sampling rate, in Hz.
    pre_s : float
        Seconds of each window before the R peak (0.30 at least).

    Returns
    -------
    numpy.ndarray of float64, shape (...)
        The ratio (dimensionless, >= 0; NaN for a flat QRS part).

    Raises
    ------
    ConfigError
        When the windows do not cover 0.30 s before to 0.06 s after the R peak.

    Examples
    --------
    >>> t = np.arange(128) / 128.0 - 0.5
    >>> beat = np.exp(-(t / 0.02) ** 2) + 0.15 * np.exp(-((t + 0.2) / 0.04) ** 2)
    >>> round(float(p_wave_ratio(beat, 128.0, 0.5)), 2)
    0.15
    """
    w = np.asarray(windows, dtype=np.float64)

    def part(span: tuple[float, float]) -> np.ndarray:
        i, j = (round((t + pre_s) * model_fs) for t in span)
        if i < 0 or j > w.shape[-1] or j <= i:
            raise ConfigError(
                f"windows of {w.shape[-1]} samples at {model_fs:g} Hz from {pre_s:g} s before the R peak do not cover "
                f"{P_WAVE_S[0]:g} to {QRS_S[1]:g} s from it, which the P-wave measure needs"
            )
        return w[..., i:j]

    base = np.median(part(PR_SEGMENT_S), axis=-1)
    qrs = part(QRS_S)
    rng = qrs.max(axis=-1) - qrs.min(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(part(P_WAVE_S) - base[..., None]).max(axis=-1) / np.where(rng > 0, rng, np.nan)


#: Columns of :attr:`BeatFeatures.rhythm`.
RHYTHM_NAMES: tuple[str, ...] = ("af_irregular", "af_regular", "p_wave", "pre_normal")
#: Column of ``pre_normal`` in :attr:`BeatFeatures.rhythm`.
PRE_NORMAL: int = RHYTHM_NAMES.index("pre_normal")
#: An interval shorter than this share of the median of the last ``long_beats`` intervals is
#: premature, and neither it nor the interval after it (the pause that may follow a premature
#: beat) counts as normal for ``pre_normal`` (see :attr:`BeatFeatures.rhythm`).
NORMAL_RR_MIN_RATIO = 0.8


@dataclass(frozen=True)
class BeatFeatures:
    """Classifier inputs of the beats whose features became complete.

    Attributes
    ----------
    sample : numpy.ndarray of int64, shape (k,)
        Absolute sample index of each beat (at the stream's rate).
    windows : numpy.ndarray of float32, shape (k, channels, n_window)
        Channel 0: the beat window at the model's rate, normalised per beat.
        Channel 1 (when templates are on): the median of the previous beats'
        windows, normalised with the *same* offset and scale as the beat, so
        that it shows the patient's usual beat relative to this one.
    rr : numpy.ndarray of float32, shape (k, n_rr)
        RR features, in the order of :attr:`BeatFeaturizer.rr_names`.
    rhythm : numpy.ndarray of float32, shape (k, 4), optional
        The rhythm before each beat, for decision rules rather than as a
        model input (:data:`RHYTHM_NAMES`), over the last ``af_beats``
        intervals of :class:`BeatFeaturizer` whatever its settings:
        ``af_irregular``, the smallest over lags 1, 2 and 3 of the median
        ``|RR_i - RR_(i-lag)|`` over the median interval (low for a regular
        rhythm, for isolated ectopic beats, and for repeating patterns such
        as bigeminy and trigeminy; high only when the rhythm is irregularly
        irregular, as in atrial fibrillation), ``af_regular``, the share
        of intervals within 10 % of their median (as with ``af_robust``),
        ``p_wave``, :func:`p_wave_ratio` of the beat's template (the
        median of the previous ``template_beats`` beats): how clearly P
        waves precede the recent beats (NaN without the template channel),
        and ``pre_normal``, the beat's interval from the previous beat over
        the mean *normal* interval of the last ``long_beats``: like the
        ``pre_long`` RR feature, but leaving out of the mean the intervals
        shorter than :data:`NORMAL_RR_MIN_RATIO` of their running median
        and the interval after each, so that frequent or running premature
        beats do not shorten the reference they are judged against (the
        median of the intervals when none is normal).
    """

    sample: np.ndarray
    windows: np.ndarray
    rr: np.ndarray
    rhythm: np.ndarray | None = None

    def __len__(self) -> int:
        """Return the number of beats."""
        return int(self.sample.size)

    @staticmethod
    def concatenate(parts: list[BeatFeatures], n_channels: int, n_window: int, n_rr: int) -> BeatFeatures:
        """Join several results in order (empty input gives an empty result)."""
        if not parts:
            return BeatFeatures(
                np.zeros(0, np.int64),
                np.zeros((0, n_channels, n_window), np.float32),
                np.zeros((0, n_rr), np.float32),
                np.zeros((0, len(RHYTHM_NAMES)), np.float32),
            )
        rhythm = [p.rhythm for p in parts]
        return BeatFeatures(
            np.concatenate([p.sample for p in parts]),
            np.concatenate([p.windows for p in parts]),
            np.concatenate([p.rr for p in parts]),
            None if any(r is None for r in rhythm) else np.concatenate(rhythm),
        )


class BeatFeaturizer:
    """Streaming beat windows and RR features for the classifier (chunk-invariant).

    Parameters
    ----------
    fs : float
        Sampling rate of the filtered signal, in Hz (125 to 1000 Hz).
    model_fs : float
        Rate of the windows given to the model, in Hz.
    pre_s, post_s : float
        Window extent before and after the R peak, in seconds.
    normalization : {"zscore", "minmax", "mad"}
        Per-beat normalisation: ``(x - mean) / std``, the seed's
        ``(x - min) / (max - min)``, or ``(x - median) / (1.4826 MAD)``.
    use_post_rr : bool
        Use the RR interval to the *next* beat (the decision then waits for
        that beat; see the module notes).
    rr_context : bool
        Add two features of the beat's place in the recent rhythm:
        ``pre_prev`` (pre-RR over the previous beat's pre-RR) and
        ``pre_median`` (pre-RR over the median of the last ``local_beats``
        intervals, which a pause or a blocked beat does not drag as it does
        the mean).  Off by default so that weights trained without them keep
        loading.
    template_distance : bool
        Add ``template_rms``: the root-mean-square difference between the
        normalised beat and the template channel (0 for a beat identical to
        the patient's recent ones; large for an ectopic shape).  Needs
        ``template_beats > 0``; off by default, as ``rr_context``.
    af_context : bool
        Add two measures of how irregular the rhythm before the beat is, the
        ones the alarm engine's atrial-fibrillation rule uses
        (:mod:`monitor.alarms`), over the last ``af_beats`` RR intervals
        whatever the beats' kind (intervals across a hole or longer than
        ``max_rr_s`` are left out, as from the averages): ``af_pnn50``, the share of successive differences over
        50 ms (smoothed, ``(count + 0.5) / (m + 1)`` for ``m`` differences,
        so 0.5 before any), and ``af_rmssd``, their root mean square over
        the mean interval.  In atrial fibrillation both are high and a short
        interval does not make a beat premature; frequent ectopic beats in
        an otherwise regular rhythm keep ``af_pnn50`` lower (runs of
        ectopic beats are regular).  Off by default, as ``rr_context``.
    af_robust : bool
        Add two measures of the same ``af_beats`` intervals that isolated
        ectopic beats hardly move, unlike pNN50 and RMSSD: ``af_madsd``, the
        median absolute successive difference over the median interval, and
        ``af_regular``, the share of intervals within 10 % of their median
        (1 before any interval).  In atrial fibrillation most successive
        differences are large and few intervals sit near the median; in a
        sinus rhythm with isolated premature beats (each moves three
        differences, so up to about one beat in seven), or with runs of
        ectopic beats and pauses (MIT-BIH record 232), most differences stay
        small, so rhythms that pNN50 confuses with AF are told apart.  Off by
        default, as ``rr_context``.
    normal_context : bool
        Add ``pre_normal`` (the rhythm measure of :attr:`BeatFeatures.rhythm`:
        the beat's interval over the mean *normal* interval of the last
        ``long_beats``, which leaves out premature intervals and the pause
        after each) as a model input, so that the network judges
        prematurity against the reference the S rules use rather than only
        against ``pre_long``, which frequent premature beats and pauses
        move.  Off by default, as ``rr_context``.
    af_beats : int
        Number of RR intervals of ``af_context`` and ``af_robust`` (32, as the
        alarm engine).
    local_beats : int
        Number of RR intervals in the local average.
    long_beats : int
        Number of RR intervals in the long average (the patient's running
        rhythm; 200 beats is about 3 minutes at 70 bpm).
    template_beats : int
        Number of previous beats whose median window is the template channel
        (0: no template channel).
    max_rr_s : float
        RR intervals longer than this (pauses, missed beats) are not added to
        the averages; RR features are clipped to it.
    default_rr_s : float
        RR value, in seconds, used before any interval is known.
    buffer_s : float
        Seconds of filtered signal kept (must exceed ``pre_s`` plus the
        detector's worst-case delay).

    Notes
    -----
    **Resampling.** Each window is read by linear interpolation
    (:func:`numpy.interp`) of the filtered signal on a grid of
    ``round((pre_s + post_s) * model_fs)`` points starting ``pre_s`` before
    the R peak, spaced ``1 / model_fs``.  The signal is low-passed at
    ``min(40, 0.45 fs)`` Hz first, so for any source rate from 125 to
    1000 Hz and ``model_fs >= 100`` Hz there is no aliasing, and the window
    depends only on samples, never on how they were chunked.

    **RR features** (seconds and ratios): ``pre_rr_s`` (to the previous
    beat), ``post_rr_s`` (to the next beat), ``local_rr_s`` and ``long_rr_s``
    (means of the last ``local_beats`` / ``long_beats`` intervals up to and
    including this beat's pre-RR), ``pre_local``, ``pre_long``,
    ``local_long``, ``post_local``, ``post_pre`` and ``local_irregularity``
    (mean absolute difference of successive intervals among the last
    ``local_beats + 1``, over the local mean: high in atrial fibrillation,
    where a short interval does not mean a premature beat), and with
    ``rr_context`` also ``pre_prev`` and ``pre_median`` (with
    ``template_distance``, ``template_rms`` follows them in the same array).  An interval spanning a
    hole (NaN samples) is unknown; unknown intervals are replaced by the
    local average (or ``default_rr_s`` before any).  At :meth:`flush` the
    last beat's post-RR is unknown and replaced the same way.

    **Template.** The median of the last ``template_beats`` windows (before
    normalisation), previous beats only.

    Examples
    --------
    >>> import numpy as np
    >>> fz = BeatFeaturizer(fs=360.0, model_fs=128.0)
    >>> x = np.zeros(3600)
    >>> out = fz.process(x, [360, 648, 936, 1224])
    >>> out.windows.shape, len(fz.rr_names)
    ((3, 2, 128), 10)
    """

    def __init__(
        self,
        fs: float,
        *,
        model_fs: float = 128.0,
        pre_s: float = 0.5,
        post_s: float = 0.5,
        normalization: str = "zscore",
        use_post_rr: bool = True,
        rr_context: bool = False,
        template_distance: bool = False,
        af_context: bool = False,
        af_robust: bool = False,
        normal_context: bool = False,
        af_beats: int = 32,
        local_beats: int = 10,
        long_beats: int = 200,
        template_beats: int = 16,
        max_rr_s: float = 3.0,
        default_rr_s: float = 0.8,
        buffer_s: float = 30.0,
    ) -> None:
        self.fs = float(check_range("fs", fs, 50.0, 2000.0, unit="Hz"))
        self.model_fs = float(check_range("model_fs", model_fs, 50.0, 2000.0, unit="Hz"))
        self.pre_s = float(check_range("pre_s", pre_s, 0.05, 2.0, unit="s"))
        self.post_s = float(check_range("post_s", post_s, 0.05, 2.0, unit="s"))
        self.normalization = check_option("normalization", normalization, list(NORMALIZATIONS))
        self.use_post_rr = bool(check_type("use_post_rr", use_post_rr, bool))
        self.rr_context = bool(check_type("rr_context", rr_context, bool))
        self.template_distance = bool(check_type("template_distance", template_distance, bool))
        self.af_context = bool(check_type("af_context", af_context, bool))
        self.af_robust = bool(check_type("af_robust", af_robust, bool))
        self.normal_context = bool(check_type("normal_context", normal_context, bool))
        self.af_beats = ensure_int("af_beats", af_beats)
        check_range("af_beats", self.af_beats, 2, 1000)
        self.local_beats = ensure_int("local_beats", local_beats)
        self.long_beats = ensure_int("long_beats", long_beats)
        self.template_beats = ensure_int("template_beats", template_beats)
        check_range("local_beats", self.local_beats, 1, 10000)
        check_range("long_beats", self.long_beats, 1, 10000)
        check_range("template_beats", self.template_beats, 0, 1000)
        if self.template_distance and self.template_beats == 0:
            raise ConfigError("template_distance needs the template channel (template_beats > 0)")
        if self.local_beats > self.long_beats:
            raise ConfigError(f"local_beats must be <= long_beats, got {self.local_beats} > {self.long_beats}")
        self.max_rr_s = float(check_range("max_rr_s", max_rr_s, 0.5, 20.0, unit="s"))
        self.default_rr_s = float(check_range("default_rr_s", default_rr_s, 0.2, self.max_rr_s, unit="s"))
        self.buffer_s = float(check_range("buffer_s", buffer_s, 2 * (self.pre_s + self.post_s), 3600.0, unit="s"))
        # samples: one place
        self.n_window = round((self.pre_s + self.post_s) * self.model_fs)
        self._offsets = -self.pre_s * self.fs + np.arange(self.n_window) * (self.fs / self.model_fs)
        self._lo = int(np.floor(self._offsets[0]))
        self._hi = int(np.ceil(self._offsets[-1])) + 1  # window needs samples [b + lo, b + hi)
        self._keep = round(self.buffer_s * self.fs)
        self.n_channels = 2 if self.template_beats > 0 else 1
        self.rr_names: tuple[str, ...] = (
            ("pre_rr_s", "post_rr_s", "local_rr_s", "long_rr_s", "pre_local", "pre_long", "local_long", "post_local", "post_pre", "local_irregularity")
            if self.use_post_rr
            else ("pre_rr_s", "local_rr_s", "long_rr_s", "pre_local", "pre_long", "local_long", "local_irregularity")
        )
        if self.rr_context:
            self.rr_names += ("pre_prev", "pre_median")
        if self.template_distance:
            self.rr_names += ("template_rms",)
        if self.af_context:
            self.rr_names += ("af_pnn50", "af_rmssd")
        if self.af_robust:
            self.rr_names += ("af_madsd", "af_regular")
        if self.normal_context:
            self.rr_names += ("pre_normal",)
        logger.debug(
            "beat featurizer: %g Hz -> %g Hz, window -%g..+%g s (%d samples), %s, post-RR %s, template %d beats",
            self.fs, self.model_fs, self.pre_s, self.post_s, self.n_window, self.normalization,
            "on" if self.use_post_rr else "off", self.template_beats,
        )  # fmt: skip
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the stream (samples, beats, RR history, templates)."""
        self._buf = np.zeros(max(1024, 2 * self._keep))
        self._buf_start = 0  # absolute index of _buf[0]
        self._n = 0  # valid samples in _buf
        self._started = False
        self._last_beat: int | None = None
        self._rr_hist: deque[float] = deque(maxlen=self.long_beats)
        # whether each interval of _rr_hist counts as normal (see NORMAL_RR_MIN_RATIO), and whether the last was short
        self._rr_normal: deque[bool] = deque(maxlen=self.long_beats)
        self._last_short = False
        # [sample, pre, local, long, post or None, irregularity, previous pre, median local, pnn50, rmssd, madsd, regular, lagged,
        #  pre over the mean normal interval]
        self._pending: deque[list] = deque()
        self._prev_pre: float | None = None
        self._templates: deque[np.ndarray] = deque(maxlen=max(1, self.template_beats))
        self.beats_in = 0
        self.beats_out = 0

    @property
    def delay_s(self) -> float:
        """Rhythm-independent part of the decision delay after the beat is reported, in s.

        ``post_s`` of signal must follow the R peak; with ``use_post_rr`` the
        next beat must also have been reported (about one RR interval plus
        the detector's delay).
        """
        return self.post_s

    @property
    def end(self) -> int:
        """Absolute index one past the last sample received."""
        return self._buf_start + self._n

    def settings(self) -> dict:
        """Return the settings as a JSON-able dict (stored with model weights)."""
        return {
            "model_fs": self.model_fs,
            "pre_s": self.pre_s,
            "post_s": self.post_s,
            "normalization": self.normalization,
            "use_post_rr": self.use_post_rr,
            "rr_context": self.rr_context,
            "template_distance": self.template_distance,
            "af_context": self.af_context,
            "af_robust": self.af_robust,
            "normal_context": self.normal_context,
            "af_beats": self.af_beats,
            "local_beats": self.local_beats,
            "long_beats": self.long_beats,
            "template_beats": self.template_beats,
            "max_rr_s": self.max_rr_s,
            "default_rr_s": self.default_rr_s,
        }

    # ------------------------------------------------------------------ input
    def _append(self, x: np.ndarray, start: int) -> None:
        if not self._started:
            self._buf_start = start
            self._started = True
        if start < self.end:
            raise ConfigError(f"samples starting at {start} overlap those already received (up to {self.end})")
        if start > self.end:  # hole
            self._append_raw(np.full(start - self.end, np.nan))
        if x.size:
            self._append_raw(x)

    def _append_raw(self, x: np.ndarray) -> None:
        # drop what no pending or future beat can need
        need_from = self.end - self._keep
        if self._pending:
            need_from = min(need_from, self._pending[0][0] + self._lo - 1)
        drop = min(max(0, need_from - self._buf_start), self._n)
        if drop and self._n + x.size > self._buf.size:
            self._buf[: self._n - drop] = self._buf[drop : self._n]
            self._n -= drop
            self._buf_start += drop
        if self._n + x.size > self._buf.size:
            grown = np.zeros(max(2 * self._buf.size, self._n + x.size))
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : self._n + x.size] = x
        self._n += x.size

    def _hole_between(self, a: int, b: int) -> bool:
        # the buffer always holds the last buffer_s before the newest chunk,
        # so looking back at most buffer_s / 2 is independent of the chunking
        lo = max(a, b - self._keep // 2, self._buf_start)
        hi = min(b, self.end)
        if hi <= lo:
            return False
        return bool(np.isnan(self._buf[lo - self._buf_start : hi - self._buf_start]).any())

    def _recent_rr(self, count: int) -> list[float]:
        """The last ``count`` intervals of the RR history (fewer at the start), oldest first."""
        h = self._rr_hist
        return [h[i] for i in range(-min(count, len(h)), 0)]

    def _rr_fallback(self) -> float:
        if self._rr_hist:
            return math.fsum(self._recent_rr(self.local_beats)) / min(self.local_beats, len(self._rr_hist))
        return self.default_rr_s

    def _add_beat(self, b: int) -> None:
        # plain Python on these short lists: numpy's per-call overhead dominated here
        pre = None
        if self._last_beat is not None:
            if b <= self._last_beat:
                raise ConfigError(f"beats must be increasing, got {b} after {self._last_beat}")
            if not self._hole_between(self._last_beat, b):
                pre = (b - self._last_beat) / self.fs
            if self._pending and self._pending[-1][0] == self._last_beat:
                self._pending[-1][4] = pre if pre is not None else -1.0
        if pre is not None and pre <= self.max_rr_s:
            self._rr_hist.append(pre)
            short = pre < NORMAL_RR_MIN_RATIO * statistics.median(self._rr_hist)
            self._rr_normal.append(not (short or self._last_short))
            self._last_short = short
        elif pre is None:
            self._last_short = False  # a gap: the next interval does not follow a short one
        if pre is None:
            pre = self._rr_fallback()
        if self._rr_hist:
            recent = self._recent_rr(self.local_beats + 1)
            last = recent[-self.local_beats :]
            local = math.fsum(last) / len(last)
            long_ = math.fsum(self._rr_hist) / len(self._rr_hist)
            median = statistics.median(last) if self.rr_context else local
        else:
            recent, local, long_, median = [], pre, pre, pre
        if len(recent) > 2:
            irregular = math.fsum(abs(y - x) for x, y in itertools.pairwise(recent)) / (len(recent) - 1) / local
        else:
            irregular = 0.0
        pnn50, rmssd, madsd, regular, lagged = self._af_measures()  # lagged, regular: BeatFeatures.rhythm, always
        pre = min(pre, self.max_rr_s)
        prev = pre if self._prev_pre is None else self._prev_pre
        normal = list(itertools.compress(self._rr_hist, self._rr_normal))
        ref = math.fsum(normal) / len(normal) if normal else (statistics.median(self._rr_hist) if self._rr_hist else pre)
        self._pending.append([b, pre, local, long_, None, irregular, prev, median, pnn50, rmssd, madsd, regular, lagged, pre / ref])
        self._prev_pre = pre
        self._last_beat = b
        self.beats_in += 1

    def _af_measures(self) -> tuple[float, float, float, float, float]:
        """(smoothed pNN50, RMSSD / mean RR, median |successive difference| / median RR,
        share of intervals within 10 % of the median, the smallest over lags 1 to 3
        of median |RR_i - RR_(i-lag)| / median RR) of the last ``af_beats``
        intervals (see ``af_context``, ``af_robust`` and :attr:`BeatFeatures.rhythm`);
        pNN50 and RMSSD are 0 without ``af_context``."""
        recent = self._recent_rr(self.af_beats + 1)
        n = len(recent)
        pnn50 = rmssd = 0.0
        if self.af_context:  # only a model input: not computed for nothing on every beat
            diffs = [y - x for x, y in itertools.pairwise(recent)]
            pnn50 = (sum(abs(d) > 0.05 for d in diffs) + 0.5) / max(n, 1)  # (count + 0.5) / (m + 1), m = n - 1 differences
            rmssd = math.sqrt(math.fsum(d * d for d in diffs) / len(diffs)) / (math.fsum(recent) / n) if n > 1 else 0.0
        if n < 2:
            return pnn50, rmssd, 0.0, 1.0, 0.0
        med = statistics.median(recent)
        regular = sum(abs(x - med) <= 0.1 * med for x in recent) / n
        # median |RR_i - RR_(i-lag)| / median RR for lags 1 to 3: lag 1 is af_madsd, and a
        # repeating pattern (bigeminy, trigeminy) is regular at its period
        lags = [statistics.median(abs(a - b) for a, b in zip(recent[lag:], recent)) / med for lag in (1, 2, 3) if n > lag]
        return pnn50, rmssd, lags[0], regular, min(lags)

    # ------------------------------------------------------------------ output
    def _windows(self, beats: np.ndarray) -> np.ndarray:
        """Windows of several beats at the model rate, by linear interpolation (NaN outside the buffer)."""
        pos = (beats[:, None] - self._buf_start) + self._offsets[None, :]  # fractional buffer indices
        i0 = np.floor(pos).astype(np.int64)
        frac = pos - i0

        def read(i: np.ndarray) -> np.ndarray:  # buffer values, NaN outside what was received
            inside = (i >= 0) & (i < self._n)
            return np.where(inside, self._buf[np.clip(i, 0, max(self._n - 1, 0))], np.nan)

        y0, y1 = read(i0), read(i0 + 1)
        with np.errstate(invalid="ignore"):
            w = y0 + (y1 - y0) * frac
        exact = frac == 0.0
        w[exact] = y0[exact]  # a sample on the grid needs no neighbour
        return w

    def _emit(self, items: list[list]) -> BeatFeatures:
        k = len(items)
        wins = np.zeros((k, self.n_channels, self.n_window), np.float32)
        if not k:
            empty = np.zeros((0, len(RHYTHM_NAMES)), np.float32)
            return BeatFeatures(np.zeros(0, np.int64), wins, np.zeros((0, len(self.rr_names)), np.float32), empty)
        cols = np.array([it[1:4] + it[5:14] for it in items], dtype=np.float64)  # pre local long irregular prev median pnn50 rmssd madsd regular lagged pre_normal
        pre, local, long_, irregular, prev, median, pnn50, rmssd, madsd, regular, lagged, pre_normal = cols.T
        samples = np.array([it[0] for it in items], dtype=np.int64)
        w = self._windows(samples)
        if self.template_beats:
            tpl = self._template_of(w)
            block = np.stack([w, tpl], axis=1)
        else:
            block = w[:, None, :]
        # per-beat offset and scale from the beat's own window (channel 0)
        all_nan = np.isnan(w).all(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "empty slice" of all-NaN windows, handled below
            o, sc = NORMALIZATIONS[self.normalization](w)
        off = np.where(all_nan[:, None], 0.0, o)
        scale = np.where(all_nan[:, None], 1.0, np.maximum(np.nan_to_num(sc, nan=_EPS_MV), _EPS_MV))
        block = (block - off[:, None, :]) / scale[:, None, :]
        wins[:] = np.nan_to_num(block, nan=0.0)
        if self.use_post_rr:
            post = np.array([local[j] if (it[4] is None or it[4] < 0) else it[4] for j, it in enumerate(items)], dtype=np.float64)
            post = np.minimum(post, self.max_rr_s)
            feats = [pre, post, local, long_, pre / local, pre / long_, local / long_, post / local, post / pre, irregular]
        else:
            feats = [pre, local, long_, pre / local, pre / long_, local / long_, irregular]
        if self.rr_context:
            feats += [pre / prev, pre / median]
        if self.template_distance:
            feats.append(template_rms(wins))
        if self.af_context:
            feats += [pnn50, rmssd]
        if self.af_robust:
            feats += [madsd, regular]
        if self.normal_context:
            feats.append(pre_normal)
        rr = np.stack(feats, axis=1).astype(np.float32)
        self.beats_out += k
        if p_wave_measurable(self.template_beats, self.pre_s, self.post_s):
            p_wave = p_wave_ratio(wins[:, 1], self.model_fs, self.pre_s)
        else:
            p_wave = np.full(k, np.nan)
        return BeatFeatures(samples, wins, rr, np.stack([lagged, regular, p_wave, pre_normal], axis=1).astype(np.float32))

    def _template_of(self, w: np.ndarray) -> np.ndarray:
        """Median of the previous ``template_beats`` windows of each beat (its own window for the first beat)."""
        k = w.shape[0]
        hist = list(self._templates)
        m, t = len(hist), self.template_beats
        allw = np.concatenate([np.stack(hist), w]) if m else w
        tpl = np.empty_like(w)
        j0 = max(0, t - m)  # beats from j0 on have a full history of t windows
        for j in range(min(j0, k)):
            tpl[j] = np.median(allw[: m + j], axis=0) if m + j else w[j]
        if j0 < k:
            view = np.lib.stride_tricks.sliding_window_view(allw, t, axis=0)  # (rows - t + 1, n_window, t)
            tpl[j0:] = np.median(view[m + j0 - t : m + k - t], axis=-1)
        self._templates.extend(w[-t:])  # the deque keeps the last t
        return tpl

    def _ready(self, final: bool) -> BeatFeatures:
        out = []
        while self._pending:
            item = self._pending[0]
            if not final:
                if self.end < item[0] + self._hi:
                    break
                if self.use_post_rr and item[4] is None:
                    if self.end <= item[0] + self.max_rr_s * self.fs:
                        break
                    # no next beat within max_rr_s: the post-RR feature is clipped to
                    # max_rr_s anyway, so release the beat now (a monitor must not wait
                    # forever for the beat after the last one before an asystole)
                    item[4] = -1.0 if self._hole_between(item[0], self.end) else self.max_rr_s
            out.append(self._pending.popleft())
        return self._emit(out)

    def process(self, filtered_mv: np.ndarray, beats=(), start: int | None = None) -> BeatFeatures:
        """Take the next chunk of filtered signal and the beats detected; return complete beats.

        Parameters
        ----------
        filtered_mv : numpy.ndarray
            1-D filtered samples in mV (NaN for holes) following those
            already received.
        beats : array-like of int
            Absolute sample indices of newly detected beats, increasing and
            later than every beat given before; they may lie anywhere in the
            signal received so far (or in this chunk).
        start : int, optional
            Absolute index of ``filtered_mv[0]`` (default: right after the
            previous chunk; 0 for the first).  A jump forward is a hole.

        Returns
        -------
        BeatFeatures
            The beats whose features became complete with this call, in order.
        """
        x = np.asarray(filtered_mv, dtype=np.float64)
        if x.ndim != 1:
            raise ConfigError(f"filtered_mv must be 1-D, got shape {x.shape}")
        start = (self.end if self._started else 0) if start is None else ensure_int("start", start)
        self._append(x, start)
        for b in np.asarray(beats, dtype=np.int64).ravel().tolist():
            self._add_beat(int(b))
        return self._ready(final=False)

    def flush(self) -> BeatFeatures:
        """The stream ended: return the beats still waiting (incomplete windows zero-padded)."""
        return self._ready(final=True)


def featurize_beats(filtered_mv: np.ndarray, beats: np.ndarray, fs: float, **settings) -> BeatFeatures:
    """Features of every beat of a whole recording (one :class:`BeatFeaturizer` pass).

    Parameters
    ----------
    filtered_mv : numpy.ndarray
        The filtered recording (see :func:`offline_beats`), in mV.
    beats : numpy.ndarray of int
        Increasing beat sample indices.
    fs : float
        Sampling rate in Hz.
    **settings
        :class:`BeatFeaturizer` settings.

    Returns
    -------
    BeatFeatures
        One entry per beat, in order.
    """
    fz = BeatFeaturizer(fs, **settings)
    parts = [fz.process(filtered_mv, beats), fz.flush()]
    return BeatFeatures.concatenate(parts, fz.n_channels, fz.n_window, len(fz.rr_names))
