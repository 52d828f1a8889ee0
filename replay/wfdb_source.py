"""Access to WFDB records (MIT-BIH Arrhythmia Database and any PhysioNet record).

A record is named either by a path (``/data/mitdb/100``, ``/data/mitdb/100.hea``,
``./x/100``) or by a bare record name (``100``) looked up in a data directory.
The data directory is, in this order: the explicit ``data_dir`` argument
(``--data-dir`` on the command line), the environment variable
``ECG_DATA_DIR``, or a per-user cache directory
(:func:`default_data_dir`). Only a miss in the cache directory triggers a
download from PhysioNet; an explicit directory is never written to.

Signals are returned in physical units (mV) as ``float32``, with ``NaN`` where
the record holds no valid sample, exactly as :func:`wfdb.rdrecord` converts
them (digital to physical with each channel's gain and baseline), then scaled
from µV or V to mV where the header says so.

Every failure is reported as one :class:`~replay.errors.RecordError` naming
the file and what is wrong; exceptions raised inside ``wfdb`` are wrapped.

Examples
--------
>>> rec = load_record("100", start_s=60.0, duration_s=10.0)  # doctest: +SKIP
>>> rec.fs, rec.signal.shape, rec.channels  # doctest: +SKIP
(360.0, (3600, 2), ['MLII', 'V5'])
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import wfdb

from ._validate import check_range, check_type
from .errors import ConfigError, RecordError

logger = logging.getLogger(__name__)

__all__ = [
    "Annotations",
    "Record",
    "DATA_DIR_ENV",
    "default_data_dir",
    "resolve_data_dir",
    "load_record",
]

#: Environment variable naming the directory that holds WFDB records.
DATA_DIR_ENV = "ECG_DATA_DIR"

#: Bytes per stored sample of each uncompressed WFDB signal format.
_BYTES_PER_SAMPLE: dict[str, float] = {
    "8": 1,
    "16": 2,
    "24": 3,
    "32": 4,
    "61": 2,
    "80": 1,
    "160": 2,
    "212": 1.5,
    "310": 4 / 3,
    "311": 4 / 3,
}
#: FLAC-compressed formats: readable, but their length cannot be checked from the file size.
_COMPRESSED_FMTS = frozenset({"508", "516", "524"})

#: Scale factor from a voltage unit (lower case) to millivolts.
_TO_MV: dict[str, float] = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}

_MISSING_HINT = "give --data-dir DIR holding the WFDB files, set ECG_DATA_DIR, or try the simulated source sim:72"


@dataclass(frozen=True)
class Annotations:
    """Beat and rhythm annotations of a record.

    Parameters
    ----------
    sample : numpy.ndarray
        ``int64`` sample index of each annotation at the record's ``fs``,
        counted from the first sample of the (possibly cropped) record.
    symbol : list of str
        Annotation code of each annotation (``'N'``, ``'V'``, ``'+'`` ...).
    aux : list of str
        Auxiliary note of each annotation, ``''`` when none (rhythm changes
        such as ``'(VT'`` or ``'(AFIB'``).
    """

    sample: np.ndarray
    symbol: list[str]
    aux: list[str]

    def __len__(self) -> int:
        """Return the number of annotations."""
        return int(self.sample.shape[0])


@dataclass(frozen=True)
class Record:
    """A record held in memory, in physical units.

    Parameters
    ----------
    name : str
        Record name, e.g. ``'100'`` or ``'sim72'``.
    fs : float
        Sampling frequency in Hz.
    signal : numpy.ndarray
        ``float32`` array of shape ``(n_samples, n_channels)`` in mV; ``NaN``
        where the record holds no valid sample.
    channels : list of str
        Lead name of each column, e.g. ``['MLII', 'V5']``.
    units : list of str
        Unit of each column; always ``'mV'``.
    annotations : Annotations or None
        Reference annotations, or None when the record has none.
    path : str or None
        Record path without extension, or None for a simulated record.
    """

    name: str
    fs: float
    signal: np.ndarray
    channels: list[str]
    units: list[str]
    annotations: Annotations | None
    path: str | None

    @property
    def n_samples(self) -> int:
        """Number of samples per channel."""
        return int(self.signal.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        """Duration in seconds (``n_samples / fs``)."""
        return self.n_samples / self.fs


# ---------------------------------------------------------------------------
# Data directory
# ---------------------------------------------------------------------------
def default_data_dir(database: str = "mitdb") -> Path:
    """Return the per-user cache directory for records of ``database``.

    Parameters
    ----------
    database : str
        PhysioNet database slug; the default ``'mitdb'`` is the MIT-BIH
        Arrhythmia Database.

    Returns
    -------
    pathlib.Path
        ``platformdirs.user_cache_path("ecg-monitor") / database``; it may not
        exist yet.
    """
    return platformdirs.user_cache_path("ecg-monitor") / database


def _resolve_with_origin(data_dir: str | os.PathLike | None, database: str) -> tuple[Path, str]:
    """Return the data directory and where it came from (argument, env or cache)."""
    if data_dir is not None:
        check_type("data_dir", data_dir, (str, os.PathLike))
        return Path(data_dir).expanduser(), "argument"
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser(), "env"
    return default_data_dir(database), "cache"


def resolve_data_dir(data_dir: str | os.PathLike | None = None, *, database: str = "mitdb") -> Path:
    """Return the directory in which record names are looked up.

    Parameters
    ----------
    data_dir : str or path-like or None
        Explicit directory (``--data-dir``); used as given when not None.
    database : str
        Database whose cache directory is the fallback.

    Returns
    -------
    pathlib.Path
        ``data_dir`` if given, else ``$ECG_DATA_DIR`` if set and non-empty,
        else :func:`default_data_dir`.
    """
    return _resolve_with_origin(data_dir, database)[0]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    """Describe an exception in one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}"


@contextlib.contextmanager
def _wfdb_errors(path: str | Path, what: str, hint: str = "") -> Iterator[None]:
    """Turn any exception raised by wfdb inside the block into one RecordError.

    ``wfdb`` raises a wide variety of exception types (ValueError, KeyError,
    IndexError, OSError, its own HeaderSyntaxError ...) for damaged files, so
    everything except our own errors is wrapped.
    """
    try:
        yield
    except RecordError:
        raise
    except Exception as exc:  # noqa: BLE001 - wfdb raises many unrelated types
        raise RecordError(str(path), f"{what} ({_one_line(exc)})", hint) from exc


def _is_path_spec(spec: str) -> bool:
    """Return True when ``spec`` names a file rather than a bare record name."""
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(s in spec for s in seps) or spec.lower().endswith(".hea")


def _strip_hea(path: Path) -> Path:
    return path.with_suffix("") if path.suffix.lower() == ".hea" else path


def _resolve_channels(channels: int | str | Sequence[int | str] | None, names: list[str], where: str) -> list[int]:
    """Map channel names or indices to column indices of the record."""
    available = ", ".join(f"{i}={n!r}" for i, n in enumerate(names))
    if channels is None:
        return list(range(len(names)))
    if isinstance(channels, (str, int)) and not isinstance(channels, bool):
        wanted: list[int | str] = [channels]
    elif isinstance(channels, (list, tuple)):
        wanted = list(channels)
        if not wanted:
            raise ConfigError("channels must name at least one channel, got an empty list")
    else:
        raise TypeError(
            f"channels must be None, str, int or a list of them, got {type(channels).__name__} {channels!r}"
        )
    out: list[int] = []
    for ch in wanted:
        check_type("channel", ch, (str, int))
        if isinstance(ch, str) and ch.strip().isdigit():
            ch = int(ch.strip())
        if isinstance(ch, int):
            if not 0 <= ch < len(names):
                raise RecordError(
                    where,
                    f"no channel index {ch}; the record has {len(names)} channel(s): {available}",
                    "pick a channel by name or index",
                )
            out.append(ch)
            continue
        key = ch.strip()
        if key in names:
            out.append(names.index(key))
            continue
        folded = [n.lower() for n in names]
        if folded.count(key.lower()) == 1:
            out.append(folded.index(key.lower()))
            continue
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "pick a channel by name or index"
        raise RecordError(where, f"no channel {key!r}; available channels: {available}", hint)
    return out


def _unit_scale(unit: str | None, channel: str, where: str) -> float:
    """Return the factor that converts ``unit`` to mV."""
    key = (unit or "mV").strip().lower()
    if key in _TO_MV:
        return _TO_MV[key]
    raise RecordError(
        where,
        f"channel {channel!r} is in unsupported unit {unit!r} (only voltage units mV, uV, V are read)",
        "select ECG channels only with --channels",
    )


def _expected_frames(header: wfdb.Record, record_dir: Path) -> None:
    """Check that each signal file exists and holds ``sig_len`` samples.

    Raises
    ------
    RecordError
        When a signal file is missing or shorter than the header says.
    """
    by_file: dict[str, list[int]] = {}
    for i, fname in enumerate(header.file_name or []):
        by_file.setdefault(fname, []).append(i)
    for fname, idx in by_file.items():
        if fname in ("~", ""):  # no signal file (e.g. empty segment)
            continue
        fpath = record_dir / fname
        if not fpath.is_file():
            raise RecordError(
                str(fpath),
                f"signal file missing (the header {header.record_name}.hea refers to it)",
                "copy the complete record (.hea, .dat and .atr) into the data directory",
            )
        fmts = {header.fmt[i] for i in idx}
        if len(fmts) != 1:
            raise RecordError(str(fpath), f"mixed signal formats {sorted(fmts)} in one file are not supported")
        fmt = fmts.pop()
        if fmt in _COMPRESSED_FMTS or not header.sig_len:
            continue
        spf = [(header.samps_per_frame[i] or 1) if header.samps_per_frame else 1 for i in idx]
        frame_bytes = sum(spf) * _BYTES_PER_SAMPLE[fmt]
        offsets = header.byte_offset or []
        offset = (offsets[idx[0]] or 0) if offsets else 0
        need = offset + math.ceil(header.sig_len * frame_bytes)
        size = fpath.stat().st_size
        if size < need:
            found = max(0, int((size - offset) // frame_bytes))
            raise RecordError(
                str(fpath),
                f"signal file truncated: expected {header.sig_len} samples, found {found}",
                "the file is damaged or was not completely copied or downloaded",
            )


def _read_header(record_path: Path) -> wfdb.Record:
    """Read and sanity-check the header ``<record_path>.hea``."""
    hea = f"{record_path}.hea"
    with _wfdb_errors(hea, "corrupt or unparseable header"):
        header = wfdb.rdheader(str(record_path))
    if isinstance(header, wfdb.MultiRecord):
        return header
    if header.fs is None or not math.isfinite(header.fs) or header.fs <= 0:
        raise RecordError(hea, f"corrupt header: invalid sampling frequency {header.fs!r}")
    if not header.n_sig:
        raise RecordError(hea, "header declares no signals")
    described = len(header.file_name or [])
    if described != header.n_sig:
        raise RecordError(hea, f"corrupt header: declares {header.n_sig} signal(s) but describes {described}")
    bad = sorted({f for f in header.fmt if f not in _BYTES_PER_SAMPLE and f not in _COMPRESSED_FMTS})
    if bad:
        raise RecordError(
            hea,
            f"unsupported signal format {', '.join(bad)}",
            f"readable formats are {', '.join(sorted(_BYTES_PER_SAMPLE, key=int))} and FLAC 508/516/524",
        )
    return header


def _check_segments(header: wfdb.MultiRecord, record_dir: Path) -> tuple[list[str], list[str]]:
    """Check every segment of a multi-segment record; return its channel names and units.

    The names and units come from the layout segment (variable layout) or the
    first segment (fixed layout).
    """
    names: list[str] = []
    units: list[str] = []
    for seg, seg_len in zip(header.seg_name or [], header.seg_len or [], strict=False):
        if seg == "~":  # a gap: no data
            continue
        if seg_len:
            seg_header = _read_header(record_dir / seg)
        else:  # layout segment of a variable-layout record: names only, no signal file
            with _wfdb_errors(f"{record_dir / seg}.hea", "corrupt or unparseable header"):
                seg_header = wfdb.rdheader(str(record_dir / seg))
        if isinstance(seg_header, wfdb.MultiRecord):
            raise RecordError(f"{record_dir / seg}.hea", "nested multi-segment records are not supported")
        if not names:
            names = [str(n) for n in seg_header.sig_name or []]
            units = [str(u) for u in seg_header.units or []]
        if seg_len:
            _expected_frames(seg_header, record_dir)
    if not names:
        raise RecordError(f"{record_dir / header.record_name}.hea", "multi-segment record has no readable segment")
    return names, units


def _download(name: str, database: str, dl_dir: Path) -> None:
    """Fetch record ``name`` (header, signal and ``atr`` annotations) from PhysioNet."""
    logger.info("Record %s is not in %s; downloading it from PhysioNet (%s) ...", name, dl_dir, database)
    chatter = io.StringIO()
    try:
        dl_dir.mkdir(parents=True, exist_ok=True)
        # wfdb prints its progress; route it to the log instead of stdout.
        with contextlib.redirect_stdout(chatter):
            wfdb.dl_database(database, str(dl_dir), records=[name], annotators=["atr"])
    except Exception as exc:  # noqa: BLE001 - network, HTTP, OS and wfdb errors alike
        raise RecordError(
            name,
            f"record not found in {dl_dir} and could not be downloaded from PhysioNet "
            f"database {database!r} ({_one_line(exc)})",
            _MISSING_HINT,
        ) from exc
    finally:
        for line in chatter.getvalue().splitlines():
            logger.debug("wfdb: %s", line)
    logger.info("Downloaded record %s into %s", name, dl_dir)


def _locate(spec: str, data_dir: str | os.PathLike | None, database: str, download: bool) -> Path:
    """Return the record path (without extension) named by ``spec``, downloading if allowed."""
    check_type("spec", spec, str)
    spec = spec.strip()
    if not spec:
        raise ConfigError("record spec must be a record name or path, got an empty string")
    if _is_path_spec(spec):
        path = _strip_hea(Path(spec).expanduser()).absolute()
        if not Path(f"{path}.hea").is_file():
            raise RecordError(
                f"{path}.hea", "record not found (no such header file)", "check the path, or " + _MISSING_HINT
            )
        return path

    directory, origin = _resolve_with_origin(data_dir, database)
    path = directory.absolute() / spec
    hea, dat = Path(f"{path}.hea"), Path(f"{path}.dat")
    if origin == "cache":
        if (not hea.is_file() or not dat.is_file()) and download:
            _download(spec, database, directory)
        if not hea.is_file():
            why = "not downloaded (download=False)" if not download else "missing after download"
            raise RecordError(str(hea), f"record {spec!r} not found in the cache directory ({why})", _MISSING_HINT)
        return path
    where = "given with --data-dir" if origin == "argument" else f"from ${DATA_DIR_ENV}"
    if not directory.is_dir():
        raise RecordError(str(directory), f"data directory ({where}) does not exist", _MISSING_HINT)
    if not hea.is_file():
        raise RecordError(str(hea), f"record {spec!r} not found in the data directory ({where})", _MISSING_HINT)
    return path


def _read_annotations(record_path: Path, fs: float, sampfrom: int, sampto: int) -> Annotations | None:
    """Read ``<record>.atr`` and keep annotations in ``[sampfrom, sampto)``, shifted to start at 0."""
    atr = Path(f"{record_path}.atr")
    if not atr.is_file():
        logger.debug("No annotation file %s", atr)
        return None
    with _wfdb_errors(atr, "corrupt or unreadable annotation file"):
        ann = wfdb.rdann(str(record_path), "atr")
        sample = np.asarray(ann.sample, dtype=np.int64)
        if ann.fs and not math.isclose(float(ann.fs), fs):
            sample = np.round(sample * (fs / float(ann.fs))).astype(np.int64)
        symbols = list(ann.symbol)
        aux_all = list(ann.aux_note) if ann.aux_note is not None else [""] * len(symbols)
    keep = np.flatnonzero((sample >= sampfrom) & (sample < sampto))
    return Annotations(
        sample=sample[keep] - sampfrom,
        symbol=[symbols[i] for i in keep],
        aux=[(aux_all[i] or "").rstrip("\x00") for i in keep],
    )


def _sample_range(start_s: float, duration_s: float | None, fs: float, sig_len: int, where: str) -> tuple[int, int]:
    """Convert the requested time window to ``[sampfrom, sampto)``."""
    total_s = sig_len / fs
    sampfrom = int(round(start_s * fs))
    if sampfrom >= sig_len:
        raise RecordError(
            where,
            f"start_s={start_s:g} s is at or beyond the end of the record ({total_s:.3f} s, {sig_len} samples)",
            f"choose a start below {total_s:.3f} s",
        )
    if duration_s is None:
        return sampfrom, sig_len
    n = int(round(duration_s * fs))
    if n < 1:
        raise RecordError(where, f"duration_s={duration_s:g} s is shorter than one sample at {fs:g} Hz")
    sampto = sampfrom + n
    if sampto > sig_len:
        raise RecordError(
            where,
            f"start_s + duration_s = {start_s + duration_s:g} s goes beyond the end of the record "
            f"({total_s:.3f} s, {sig_len} samples)",
            f"at most {total_s - sampfrom / fs:.3f} s are available from start_s={start_s:g} s",
        )
    return sampfrom, sampto


# ---------------------------------------------------------------------------
# Public loader
# ---------------------------------------------------------------------------
def load_record(
    spec: str,
    data_dir: str | os.PathLike | None = None,
    *,
    channels: int | str | Sequence[int | str] | None = None,
    annotations: bool = True,
    start_s: float = 0.0,
    duration_s: float | None = None,
    download: bool = True,
    database: str = "mitdb",
) -> Record:
    """Load a WFDB record (or a time window of it) in mV.

    Parameters
    ----------
    spec : str
        Record path (``/data/mitdb/100``, ``/data/mitdb/100.hea``,
        ``./x/100``; anything containing a path separator or ending in
        ``.hea``) or bare record name (``'100'``) looked up in the data
        directory.
    data_dir : str or path-like or None
        Directory holding the records (``--data-dir``); None falls back to
        ``$ECG_DATA_DIR`` and then to :func:`default_data_dir`. Ignored when
        ``spec`` is a path.
    channels : int, str, sequence of int or str, or None
        Channels to keep, by name (``'MLII'``) or index (``0`` or ``'0'``);
        None keeps all, in record order.
    annotations : bool
        Read reference annotations from ``<record>.atr`` when present.
    start_s : float
        Start of the window to load, in s from the record's start (>= 0).
    duration_s : float or None
        Length of the window in s (> 0); None loads up to the end.
    download : bool
        Download a record missing from the cache directory from PhysioNet.
        Never applies to an explicit ``data_dir`` or ``$ECG_DATA_DIR``.
    database : str
        PhysioNet database slug used for the cache directory and downloads.

    Returns
    -------
    Record
        Signal as ``float32`` mV, shape ``(n_samples, n_channels)``;
        annotation samples count from the first loaded sample.

    Raises
    ------
    RecordError
        Missing record or signal file, corrupt header, truncated signal
        file, unknown channel, unsupported format or unit, window beyond the
        end of the record, or a failed download.
    ConfigError
        Negative ``start_s``, non-positive ``duration_s``, empty spec.
    TypeError
        An argument of the wrong type.
    """
    check_type("annotations", annotations, bool)
    check_type("download", download, bool)
    check_type("database", database, str)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*", database):
        raise ConfigError(f"database must be a PhysioNet database slug such as 'mitdb', got {database!r}")
    check_range("start_s", start_s, 0.0, unit="s")
    if duration_s is not None:
        check_range("duration_s", duration_s, 0.0, low_inclusive=False, unit="s")

    record_path = _locate(spec, data_dir, database, download)
    where = str(record_path)
    header = _read_header(record_path)
    names = [str(n) for n in header.sig_name] if header.sig_name else []
    header_units = list(getattr(header, "units", None) or [])
    if isinstance(header, wfdb.MultiRecord):
        names, header_units = _check_segments(header, record_path.parent)
        sig_len = int(header.sig_len or 0)
    else:
        _expected_frames(header, record_path.parent)
        if not names:
            names = [f"ch{i}" for i in range(header.n_sig)]
        sig_len = header.sig_len
        if not sig_len:  # header omits the length: wfdb infers it from the file size
            with _wfdb_errors(where, "cannot read signal"):
                sig_len = int(wfdb.rdrecord(str(record_path), physical=False, channels=[0]).sig_len)
    if not sig_len:
        raise RecordError(where, "record holds no samples")
    fs = float(header.fs)
    cols = _resolve_channels(channels, names, where)
    header_units = header_units or ["mV"] * len(names)
    scales = [_unit_scale(header_units[c], names[c], where) for c in cols]
    sampfrom, sampto = _sample_range(float(start_s), duration_s and float(duration_s), fs, int(sig_len), where)

    with _wfdb_errors(where, "cannot read signal"):
        rec = wfdb.rdrecord(str(record_path), sampfrom=sampfrom, sampto=sampto, channels=cols, physical=True)
        p = rec.p_signal
    if p is None or p.ndim != 2 or p.shape[1] != len(cols):
        raise RecordError(where, "cannot read signal (wfdb returned no physical signal)")
    if p.shape[0] != sampto - sampfrom:
        raise RecordError(
            where,
            f"signal file truncated: expected {sampto - sampfrom} samples, found {p.shape[0]}",
            "the file is damaged or was not completely copied or downloaded",
        )
    signal = np.empty(p.shape, dtype=np.float32)
    for j, scale in enumerate(scales):
        signal[:, j] = p[:, j] * scale

    ann = _read_annotations(record_path, fs, sampfrom, sampto) if annotations else None
    name = str(getattr(header, "record_name", None) or record_path.name)
    out = Record(
        name=name,
        fs=fs,
        signal=signal,
        channels=[names[c] for c in cols],
        units=["mV"] * len(cols),
        annotations=ann,
        path=str(record_path),
    )
    logger.debug(
        "Loaded record %s: %d channel(s) %s at %g Hz, samples %d-%d (%.1f s), %s annotations",
        name,
        out.n_channels,
        out.channels,
        fs,
        sampfrom,
        sampto,
        out.duration_s,
        "no" if ann is None else len(ann),
    )
    return out


def resample_record(record: Record, fs: float) -> Record:
    """Return ``record`` resampled to ``fs`` Hz, its annotations moved to the new rate.

    Polyphase resampling (:func:`scipy.signal.resample_poly`, ratio as a
    fraction with denominator at most 1000); annotation samples are scaled
    and rounded.

    Parameters
    ----------
    record : Record
        The record.
    fs : float
        New sampling rate in Hz.

    Returns
    -------
    Record
        A new record (the same one when ``fs`` equals its rate).
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    fs = float(check_range("fs", fs, 1.0, 100_000.0, unit="Hz"))
    if fs == record.fs:
        return record
    frac = Fraction(fs / record.fs).limit_denominator(1000)
    sig = resample_poly(record.signal.astype(np.float64), frac.numerator, frac.denominator, axis=0)
    ann = record.annotations
    if ann is not None:
        scale = fs / record.fs
        ann = dataclasses.replace(ann, sample=np.round(ann.sample * scale).astype(np.int64))
    return dataclasses.replace(record, fs=fs, signal=sig.astype(np.float32), annotations=ann)
