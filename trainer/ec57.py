"""Beat-detection scoring after ANSI/AAMI EC57 (QRS detection part).

Rules implemented
-----------------
* **Reference beats** are the annotations whose symbol is one of the MIT-BIH
  beat codes :data:`BEAT_SYMBOLS` (``N L R B A a J S V r F e j n E / f Q ?``).
  Rhythm changes, noise, artefact and comment annotations (``+ ~ | " x [ ]``
  and others) are not beats and are never scored.
* **Matching window.** A detection matches a reference beat when they are at
  most ``window_s`` apart (150 ms in EC57).  Matching is one-to-one and
  greedy-nearest: all (reference, detection) pairs within the window are
  sorted by distance (ties: earlier reference first) and accepted when
  neither member is already used.  This is what
  :func:`wfdb.processing.compare_annotations` aims at, without its
  order-dependent shortcuts.
* **Counts.** TP = matched reference beats, FN = unmatched reference beats,
  FP = unmatched detections.  Se = TP / (TP + FN), +P = TP / (TP + FP).
* **Ventricular flutter / fibrillation.** EC57 does not score QRS detection
  inside VF episodes.  An episode runs from a ``[`` annotation to the next
  ``]`` (an unclosed ``[`` runs to the end of the record).  Unmatched
  detections inside an episode are not false positives; reference beats
  inside an episode (there are normally none) are scored as usual.  Rhythm
  annotations with aux ``(VFL`` are *not* used by default: in the MIT-BIH
  Arrhythmia database every ``(VFL`` episode (record 207) is bracketed by
  ``[`` / ``]`` already; pass ``use_vfl_rhythm=True`` to add them anyway.
* **Start exclusion.** EC57 allows the first 5 minutes to be used for
  learning (``exclude_first_s=300``): reference beats and detections before
  that time are then dropped before matching (a tolerance of ``window_s``
  is kept at the border so a beat just after it is not counted as missed
  because its detection fell just before).
* **Gross statistics** (:func:`gross`) sum TP, FN and FP over records before
  dividing; the *average* statistics are the means of the per-record ratios.

All times are sample indices at the record's sampling rate ``fs`` (Hz).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.labels import BEAT_SYMBOLS as _BEAT_SYMBOLS
from replay._validate import check_range, check_type
from replay.errors import ConfigError, RecordError

logger = logging.getLogger(__name__)

#: MIT-BIH beat annotation codes scored by EC57.
BEAT_SYMBOLS: frozenset[str] = _BEAT_SYMBOLS

#: Names of the 48 MIT-BIH Arrhythmia Database records.
MITDB_RECORDS: tuple[str, ...] = (
    "100", "101", "102", "103", "104", "105", "106", "107", "108", "109",
    "111", "112", "113", "114", "115", "116", "117", "118", "119", "121",
    "122", "123", "124", "200", "201", "202", "203", "205", "207", "208",
    "209", "210", "212", "213", "214", "215", "217", "219", "220", "221",
    "222", "223", "228", "230", "231", "232", "233", "234",
)  # fmt: skip


@dataclass(frozen=True)
class MatchResult:
    """One-to-one matching of reference beats and detections.

    Attributes
    ----------
    ref_matched : numpy.ndarray of int64
        Indices (into the reference array) of matched reference beats.
    test_matched : numpy.ndarray of int64
        Indices (into the test array) of the detections they matched,
        pairwise with ``ref_matched``.
    ref_unmatched : numpy.ndarray of int64
        Indices of reference beats without a detection (false negatives).
    test_unmatched : numpy.ndarray of int64
        Indices of detections without a reference beat (false positives,
        before any flutter exclusion).
    """

    ref_matched: np.ndarray
    test_matched: np.ndarray
    ref_unmatched: np.ndarray
    test_unmatched: np.ndarray

    @property
    def tp(self) -> int:
        """Number of matched pairs."""
        return int(self.ref_matched.size)


@dataclass(frozen=True)
class RecordScore:
    """EC57 beat-detection counts for one record.

    Attributes
    ----------
    record : str
        Record name.
    tp, fn, fp : int
        True positives, false negatives, false positives.
    median_offset_ms : float
        Median of ``detection - reference`` over matched beats, in ms
        (NaN when nothing matched).
    median_abs_offset_ms : float
        Median of ``|detection - reference|`` over matched beats, in ms.
    """

    record: str
    tp: int
    fn: int
    fp: int
    median_offset_ms: float = float("nan")
    median_abs_offset_ms: float = float("nan")

    @property
    def se(self) -> float:
        """Sensitivity TP / (TP + FN), as a fraction (NaN if no reference beat)."""
        n = self.tp + self.fn
        return self.tp / n if n else float("nan")

    @property
    def ppv(self) -> float:
        """Positive predictivity TP / (TP + FP), as a fraction (NaN if no detection)."""
        n = self.tp + self.fp
        return self.tp / n if n else float("nan")


@dataclass(frozen=True)
class GrossScore:
    """Counts and ratios summed over several records.

    Attributes
    ----------
    n_records : int
        Number of records aggregated.
    tp, fn, fp : int
        Summed counts.
    se, ppv : float
        Gross sensitivity and positive predictivity (fractions).
    mean_se, mean_ppv : float
        Averages of the per-record ratios (fractions).
    """

    n_records: int
    tp: int
    fn: int
    fp: int
    se: float
    ppv: float
    mean_se: float
    mean_ppv: float


def select_beats(symbols: Sequence[str], samples: np.ndarray) -> np.ndarray:
    """Return the sample indices of beat annotations.

    Parameters
    ----------
    symbols : sequence of str
        Annotation symbols (``wfdb.Annotation.symbol``).
    samples : numpy.ndarray of int
        Annotation sample indices (``wfdb.Annotation.sample``), same length.

    Returns
    -------
    numpy.ndarray of int64
        Sorted sample indices whose symbol is in :data:`BEAT_SYMBOLS`.
    """
    samples = np.asarray(samples, dtype=np.int64)
    if len(symbols) != samples.size:
        raise ConfigError(
            f"symbols and samples must have the same length, got {len(symbols)} and {samples.size}"
        )
    mask = np.fromiter((s in BEAT_SYMBOLS for s in symbols), dtype=bool, count=samples.size)
    return np.sort(samples[mask])


def flutter_intervals(
    symbols: Sequence[str],
    samples: np.ndarray,
    aux_notes: Sequence[str] | None = None,
    *,
    n_samples: int | None = None,
    use_vfl_rhythm: bool = False,
) -> np.ndarray:
    """Return ventricular flutter/fibrillation episodes as ``[start, end)`` pairs.

    Parameters
    ----------
    symbols : sequence of str
        Annotation symbols.
    samples : numpy.ndarray of int
        Annotation sample indices.
    aux_notes : sequence of str, optional
        Annotation aux strings; only needed with ``use_vfl_rhythm``.
    n_samples : int, optional
        Record length in samples, used to close an episode left open at the
        end.  Defaults to the last annotation + 1.
    use_vfl_rhythm : bool
        Also treat rhythm annotations ``(VFL`` / ``(VF`` up to the next rhythm
        change as episodes.

    Returns
    -------
    numpy.ndarray of int64, shape (n, 2)
        Episode start (inclusive) and end (exclusive) sample indices.
    """
    samples = np.asarray(samples, dtype=np.int64)
    end_default = int(n_samples) if n_samples is not None else (int(samples.max()) + 1 if samples.size else 0)
    out: list[tuple[int, int]] = []
    start: int | None = None
    for sym, t in zip(symbols, samples.tolist()):
        if sym == "[" and start is None:
            start = t
        elif sym == "]" and start is not None:
            out.append((start, t + 1))
            start = None
    if start is not None:
        out.append((start, end_default))
    if use_vfl_rhythm:
        if aux_notes is None:
            raise ConfigError("use_vfl_rhythm=True needs aux_notes")
        start = None
        for sym, t, aux in zip(symbols, samples.tolist(), aux_notes):
            if sym != "+":
                continue
            rhythm = (aux or "").strip("\x00").strip()
            if start is not None:
                out.append((start, t))
                start = None
            if rhythm in ("(VFL", "(VF"):
                start = t
        if start is not None:
            out.append((start, end_default))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    return np.asarray(sorted(out), dtype=np.int64)


def match_beats(ref: np.ndarray, test: np.ndarray, fs: float, window_s: float = 0.15) -> MatchResult:
    """Match detections to reference beats one-to-one, nearest first.

    Parameters
    ----------
    ref : numpy.ndarray of int
        Reference beat sample indices.
    test : numpy.ndarray of int
        Detected beat sample indices.
    fs : float
        Sampling rate in Hz.
    window_s : float
        Largest allowed distance between matched beats, in seconds
        (EC57: 0.15 s).

    Returns
    -------
    MatchResult
        Matched and unmatched indices into ``ref`` and ``test``.
    """
    check_range("fs", fs, 0, low_inclusive=False, unit="Hz")
    check_range("window_s", window_s, 0, low_inclusive=False, unit="s")
    ref = np.asarray(ref, dtype=np.int64).ravel()
    test = np.asarray(test, dtype=np.int64).ravel()
    win = window_s * fs
    r_order = np.argsort(ref, kind="stable")
    t_order = np.argsort(test, kind="stable")
    rs = ref[r_order]
    ts = test[t_order]
    # Candidate pairs: every detection within the window of each reference beat.
    lo = np.searchsorted(ts, rs - win, side="left")
    hi = np.searchsorted(ts, rs + win, side="right")
    counts = hi - lo
    ri = np.repeat(np.arange(rs.size), counts)
    ti = np.zeros(0, dtype=np.int64)
    if ri.size:
        offs = np.arange(ri.size) - np.repeat(np.cumsum(counts) - counts, counts)
        ti = np.repeat(lo, counts) + offs
        dist = np.abs(ts[ti] - rs[ri])
        order = np.lexsort((ti, ri, dist))
        ri, ti = ri[order], ti[order]
    r_used = np.zeros(rs.size, dtype=bool)
    t_used = np.zeros(ts.size, dtype=bool)
    pr: list[int] = []
    pt: list[int] = []
    for a, b in zip(ri.tolist(), ti.tolist()):
        if not r_used[a] and not t_used[b]:
            r_used[a] = True
            t_used[b] = True
            pr.append(a)
            pt.append(b)
    pr_a = np.asarray(pr, dtype=np.int64)
    pt_a = np.asarray(pt, dtype=np.int64)
    srt = np.argsort(pr_a, kind="stable")
    return MatchResult(
        ref_matched=r_order[pr_a[srt]].astype(np.int64),
        test_matched=t_order[pt_a[srt]].astype(np.int64),
        ref_unmatched=np.sort(r_order[~r_used]).astype(np.int64),
        test_unmatched=np.sort(t_order[~t_used]).astype(np.int64),
    )


def score_record(
    ref: np.ndarray,
    test: np.ndarray,
    fs: float,
    *,
    record: str = "",
    window_s: float = 0.15,
    flutter: np.ndarray | None = None,
    exclude_first_s: float = 0.0,
) -> RecordScore:
    """Score detections against reference beats of one record (EC57 rules).

    Parameters
    ----------
    ref : numpy.ndarray of int
        Reference beat sample indices (see :func:`select_beats`).
    test : numpy.ndarray of int
        Detected beat sample indices.
    fs : float
        Sampling rate in Hz.
    record : str
        Record name stored in the result.
    window_s : float
        Matching window in seconds (EC57: 0.15 s).
    flutter : numpy.ndarray of int, shape (n, 2), optional
        Ventricular flutter episodes ``[start, end)`` (see
        :func:`flutter_intervals`); unmatched detections inside them are not
        false positives.
    exclude_first_s : float
        Learning period excluded from scoring, in seconds (EC57 allows 300).

    Returns
    -------
    RecordScore
        Counts and fiducial offsets.
    """
    check_range("exclude_first_s", exclude_first_s, 0, unit="s")
    ref = np.sort(np.asarray(ref, dtype=np.int64).ravel())
    test = np.sort(np.asarray(test, dtype=np.int64).ravel())
    if exclude_first_s > 0:
        t0 = exclude_first_s * fs
        ref = ref[ref >= t0]
        test = test[test >= t0 - window_s * fs]
    m = match_beats(ref, test, fs, window_s)
    fp_idx = m.test_unmatched
    fp_t = test[fp_idx]
    if exclude_first_s > 0:
        fp_t = fp_t[fp_t >= exclude_first_s * fs]
    if flutter is not None and len(flutter) and fp_t.size:
        fl = np.asarray(flutter, dtype=np.int64).reshape(-1, 2)
        inside = np.zeros(fp_t.size, dtype=bool)
        for a, b in fl:
            inside |= (fp_t >= a) & (fp_t < b)
        fp_t = fp_t[~inside]
    if m.tp:
        d = (test[m.test_matched] - ref[m.ref_matched]) * 1000.0 / fs
        med = float(np.median(d))
        mabs = float(np.median(np.abs(d)))
    else:
        med = mabs = float("nan")
    return RecordScore(
        record=record,
        tp=m.tp,
        fn=int(m.ref_unmatched.size),
        fp=int(fp_t.size),
        median_offset_ms=med,
        median_abs_offset_ms=mabs,
    )


def gross(scores: Iterable[RecordScore]) -> GrossScore:
    """Aggregate per-record scores into gross and average statistics.

    Parameters
    ----------
    scores : iterable of RecordScore
        Per-record results.

    Returns
    -------
    GrossScore
        Summed counts, gross Se/+P and mean per-record Se/+P (fractions).
    """
    scores = list(scores)
    tp = sum(s.tp for s in scores)
    fn = sum(s.fn for s in scores)
    fp = sum(s.fp for s in scores)
    se_l = [s.se for s in scores if not np.isnan(s.se)]
    pp_l = [s.ppv for s in scores if not np.isnan(s.ppv)]
    return GrossScore(
        n_records=len(scores),
        tp=tp,
        fn=fn,
        fp=fp,
        se=tp / (tp + fn) if tp + fn else float("nan"),
        ppv=tp / (tp + fp) if tp + fp else float("nan"),
        mean_se=float(np.mean(se_l)) if se_l else float("nan"),
        mean_ppv=float(np.mean(pp_l)) if pp_l else float("nan"),
    )


# ---------------------------------------------------------------------------
# Evaluation of detectors on WFDB records
# ---------------------------------------------------------------------------


def default_data_dir() -> str:
    """Return the MIT-BIH directory: ``$ECG_DATA_DIR`` or ``../shared/mitdb`` from the repo root."""
    env = os.environ.get("ECG_DATA_DIR")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.normpath(os.path.join(root, "..", "shared", "mitdb"))


def load_record(
    record: str, data_dir: str, channel: int = 0, fs_target: float | None = None
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Read one record's signal and scoring annotations.

    Parameters
    ----------
    record : str
        Record name (e.g. ``"100"``).
    data_dir : str
        Directory holding ``record.hea/.dat/.atr``.
    channel : int
        Signal channel (0 = MLII in most MIT-BIH records).
    fs_target : float, optional
        Resample to this rate (Hz) with :func:`scipy.signal.resample_poly`;
        annotation samples are rescaled and rounded.

    Returns
    -------
    signal_mv : numpy.ndarray of float64
        Signal in mV.
    fs : float
        Sampling rate of ``signal_mv`` in Hz.
    ref : numpy.ndarray of int64
        Reference beat sample indices.
    flutter : numpy.ndarray of int64, shape (n, 2)
        Flutter episodes.
    """
    from replay.wfdb_source import load_record as _load, resample_record

    rec = _load(record, data_dir, channels=[channel])
    if fs_target is not None and float(fs_target) != rec.fs:
        check_range("fs_target", fs_target, 1.0, unit="Hz")
        rec = resample_record(rec, fs_target)
    x = rec.signal[:, 0].astype(np.float64)
    ann = rec.annotations
    if ann is None:
        raise RecordError(rec.path or record, "has no reference annotations (.atr) to score against")
    ref = select_beats(ann.symbol, ann.sample)
    fl = flutter_intervals(ann.symbol, ann.sample, n_samples=x.size)
    return x, rec.fs, ref, fl


def _detect_ours(x: np.ndarray, fs: float, **kw: Any) -> np.ndarray:
    from monitor.detector import detect_rpeaks

    return detect_rpeaks(x, fs, **kw)


def _detect_gqrs(x: np.ndarray, fs: float, **kw: Any) -> np.ndarray:
    from wfdb.processing import gqrs_detect

    return np.asarray(gqrs_detect(sig=x, fs=fs, **kw), dtype=np.int64)


def _detect_neurokit(x: np.ndarray, fs: float, **kw: Any) -> np.ndarray:
    import neurokit2 as nk

    _, info = nk.ecg_peaks(x, sampling_rate=round(fs), **kw)
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


_DETECTORS: dict[str, Callable[..., np.ndarray]] = {
    "ours": _detect_ours,
    "gqrs": _detect_gqrs,
    "neurokit": _detect_neurokit,
}


def score_detector_on_records(
    records: Iterable[str],
    data_dir: str,
    channel: int = 0,
    fs_target: float | None = None,
    *,
    method: str = "ours",
    window_s: float = 0.15,
    exclude_first_s: float = 0.0,
    detector_kw: dict[str, Any] | None = None,
) -> list[RecordScore]:
    """Run a detector on WFDB records and score each with EC57 rules.

    Parameters
    ----------
    records : iterable of str
        Record names (e.g. :data:`MITDB_RECORDS`).
    data_dir : str
        Directory with the records.
    channel : int
        Signal channel.
    fs_target : float, optional
        Resample each record to this rate in Hz first.
    method : {"ours", "gqrs", "neurokit"}
        ``"ours"`` is :func:`monitor.detector.detect_rpeaks` (causal,
        streaming); ``"gqrs"`` is :func:`wfdb.processing.gqrs_detect`;
        ``"neurokit"`` is :func:`neurokit2.ecg_peaks` (offline, non-causal).
    window_s : float
        Matching window in seconds.
    exclude_first_s : float
        Learning period excluded from scoring, in seconds.
    detector_kw : dict, optional
        Extra keyword arguments for the detector.

    Returns
    -------
    list of RecordScore
        One score per record, in the order given.
    """
    from replay._validate import check_option

    check_option("method", method, list(_DETECTORS))
    check_type("data_dir", data_dir, (str, os.PathLike))
    fn = _DETECTORS[method]
    kw = dict(detector_kw or {})
    out = []
    for r in records:
        x, fs, ref, fl = load_record(r, str(data_dir), channel, fs_target)
        det = fn(x, fs, **kw)
        s = score_record(
            ref, det, fs, record=r, window_s=window_s, flutter=fl, exclude_first_s=exclude_first_s
        )
        logger.debug("record %s: TP=%d FN=%d FP=%d", r, s.tp, s.fn, s.fp)
        out.append(s)
    return out
