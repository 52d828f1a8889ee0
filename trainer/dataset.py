"""Beat datasets built through the live monitor's own code, with a cache.

For each record, :func:`record_beats`:

1. loads channel 0 (MLII on 46 of the 48 MIT-BIH records) in mV
   (:func:`replay.wfdb_source.load_record`);
2. runs :func:`monitor.beats.offline_beats` on it: the monitor's causal
   band-pass filter and online R-peak detector, exactly as live;
3. matches each detection to the reference beat annotations within 150 ms
   (:func:`trainer.ec57.match_beats`, one-to-one, nearest first); a matched
   detection takes the reference symbol's class (:mod:`monitor.labels`), an
   unmatched one is labelled :data:`~monitor.labels.NO_REFERENCE` (never
   trained on; counted in evaluation);
4. computes windows and RR features with :class:`monitor.beats.BeatFeaturizer`
   over the detected beats, as the monitor would live.

Reference beats the detector missed are kept (``ref_*`` arrays) so that
evaluation can count them as false negatives.

Results are cached as ``.npz`` files in :func:`cache_dir` (the platformdirs
user cache ``ecg-monitor/datasets``, or ``$ECG_DATASET_CACHE``, or an
explicit directory), under a key that hashes the settings, the record, the
record files' sizes and times and the source code of the modules involved,
so a change to the detector invalidates the cache.

Protocols
---------
``inter``
    de Chazal et al. (2004) inter-patient split: train on DS1, test on DS2
    (22 records each); the paced records 102, 104, 107 and 217 are in
    neither.
``seed``
    The seed project's protocol: the beats annotated N, L, R, A or V of all
    48 records, split at random *by beat* (80 % train, 20 % test).  The
    same patients, and even neighbouring beats, are in training and test,
    so its figures say little about an unseen patient.
``all``
    Every record for training (for a deployed model); "test" figures on it
    are training figures.

Validation (model selection, early stopping) always uses records (or, for
``seed``, beats) of the training side only, never the test side.

References
----------
.. [1] P. de Chazal, M. O'Dwyer and R. B. Reilly, "Automatic classification
   of heartbeats using ECG morphology and heartbeat interval features,"
   IEEE Trans. Biomed. Eng., vol. 51, no. 7, pp. 1196-1206, 2004.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from monitor import beats as beats_mod
from monitor import detector as detector_mod
from monitor import filters as filters_mod
from monitor import labels as labels_mod
from monitor.beats import BeatFeaturizer, featurize_beats, offline_beats
from monitor.labels import SEED_SYMBOLS, symbol_to_label
from replay import __version__
from replay._validate import check_option
from replay.errors import ConfigError
from replay.wfdb_source import load_record, resolve_data_dir

from .ec57 import BEAT_SYMBOLS, MITDB_RECORDS, default_data_dir, match_beats

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_ENV",
    "DEFAULT_FEATURIZER",
    "DS1",
    "DS2",
    "PACED",
    "PROTOCOLS",
    "RecordBeats",
    "Split",
    "build_dataset",
    "cache_dir",
    "protocol_records",
    "record_beats",
    "stack",
]

#: de Chazal (2004) training records (DS1).
DS1: tuple[str, ...] = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)  # fmt: skip
#: de Chazal (2004) test records (DS2).
DS2: tuple[str, ...] = (
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210",
    "212", "213", "214", "219", "221", "222", "228", "231", "232", "233", "234",
)  # fmt: skip
#: Records with paced rhythm (left out of the inter-patient protocol).
PACED: tuple[str, ...] = ("102", "104", "107", "217")
#: Protocol names.
PROTOCOLS: tuple[str, ...] = ("inter", "seed", "all")
#: Environment variable overriding the dataset cache directory.
CACHE_ENV = "ECG_DATASET_CACHE"
#: Bump when the cached arrays change meaning.
DATASET_VERSION = 1

#: Featurizer settings of the shipped model (see :class:`monitor.beats.BeatFeaturizer`).
DEFAULT_FEATURIZER: dict[str, Any] = {
    "model_fs": 128.0,
    "pre_s": 0.5,
    "post_s": 0.5,
    "normalization": "zscore",
    "use_post_rr": False,
    "local_beats": 10,
    "long_beats": 200,
    "template_beats": 16,
}


@dataclass(frozen=True)
class RecordBeats:
    """Detected beats of one record with their features and labels.

    Attributes
    ----------
    record : str
        Record name.
    fs : float
        Sampling rate in Hz.
    sample : numpy.ndarray of int64, shape (n,)
        Detected beat sample indices.
    windows : numpy.ndarray of float32, shape (n, channels, n_window)
        Featurizer windows.
    rr : numpy.ndarray of float32, shape (n, n_rr)
        RR features.
    label : numpy.ndarray of int64, shape (n,)
        Model class index (into :data:`monitor.labels.CLASSES`),
        :data:`~monitor.labels.NO_REFERENCE` or
        :data:`~monitor.labels.UNLABELLED`.
    symbol : numpy.ndarray of str, shape (n,)
        Reference symbol of each detection ('' when none).
    ref_sample : numpy.ndarray of int64
        Every reference beat annotation.
    ref_symbol : numpy.ndarray of str
        Their symbols.
    ref_detected : numpy.ndarray of bool
        Whether each reference beat was matched by a detection.
    rhythm : numpy.ndarray of float32, shape (n, 2)
        The rhythm before each beat (:attr:`monitor.beats.BeatFeatures.rhythm`),
        for the classifier's decision rules.
    """

    record: str
    fs: float
    sample: np.ndarray
    windows: np.ndarray
    rr: np.ndarray
    label: np.ndarray
    symbol: np.ndarray
    ref_sample: np.ndarray
    ref_symbol: np.ndarray
    ref_detected: np.ndarray
    rhythm: np.ndarray

    def __len__(self) -> int:
        """Return the number of detected beats."""
        return int(self.sample.size)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Return the dataset cache directory (argument, ``$ECG_DATASET_CACHE``, or the user cache)."""
    if override is not None:
        return Path(override)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("ecg-monitor")) / "datasets"


def _code_hash() -> str:
    h = hashlib.sha256()
    for mod in (beats_mod, detector_mod, filters_mod, labels_mod):
        h.update(inspect.getsource(mod).encode())
    h.update(f"{__version__}/{DATASET_VERSION}".encode())
    return h.hexdigest()[:16]


def _key(record: str, files: list[Path], settings: dict[str, Any], extra: dict[str, Any]) -> str:
    stamp = [(f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in files if f.exists()]
    text = json.dumps({"record": record, "files": stamp, "settings": settings, "extra": extra, "code": _code_hash()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def resolve_mitdb(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the MIT-BIH directory: ``data_dir``, ``$ECG_DATA_DIR``, ``../shared/mitdb`` beside the repository, or the user cache."""
    if data_dir is None and not os.environ.get("ECG_DATA_DIR"):
        guess = Path(default_data_dir())
        if (guess / "100.hea").exists():
            return guess
    return resolve_data_dir(data_dir)


def record_beats(
    record: str,
    data_dir: str | os.PathLike | None = None,
    featurizer: dict[str, Any] | None = None,
    *,
    channel: int = 0,
    window_s: float = 0.15,
    start_s: float = 0.0,
    duration_s: float | None = None,
    cache: str | os.PathLike | None | bool = None,
) -> RecordBeats:
    """Detect, label and featurize the beats of one record (cached).

    Parameters
    ----------
    record : str
        Record name (e.g. ``"100"``).
    data_dir : str or path-like, optional
        Directory of the WFDB records (default: as
        :func:`replay.wfdb_source.resolve_data_dir`).
    featurizer : dict, optional
        :class:`monitor.beats.BeatFeaturizer` settings (default
        :data:`DEFAULT_FEATURIZER`).
    channel : int
        Signal column (0: MLII on MIT-BIH).
    window_s : float
        Matching window for labels, in seconds (EC57: 0.15).
    start_s, duration_s : float
        Part of the record to use, in seconds (default: all of it).
    cache : path-like, None or False
        Cache directory (None: :func:`cache_dir`; False: no cache).

    Returns
    -------
    RecordBeats
    """
    # canonical form (every setting, defaults filled in) so equal settings share a cache entry
    settings = BeatFeaturizer(360.0, **(DEFAULT_FEATURIZER if featurizer is None else featurizer)).settings()
    data = resolve_mitdb(data_dir)
    extra = {"channel": channel, "window_s": window_s, "start_s": start_s, "duration_s": duration_s}
    path = None
    if cache is not False:
        files = [data / f"{record}.{ext}" for ext in ("hea", "dat", "atr")]
        path = cache_dir(None if cache is None else cache) / f"{record}-{_key(record, files, settings, extra)}.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return RecordBeats(**{f.name: (str(z[f.name]) if f.name == "record" else float(z[f.name]) if f.name == "fs" else z[f.name]) for f in fields(RecordBeats)})
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("dataset cache %s unreadable (%s); rebuilding", path, exc)
    rec = load_record(record, data, channels=[channel], start_s=start_s, duration_s=duration_s, download=False)
    if rec.annotations is None:
        raise ConfigError(f"record {record} has no reference annotations; it cannot be labelled")
    x = rec.signal[:, 0].astype(np.float64)
    peaks, filtered = offline_beats(x, rec.fs)
    ann = rec.annotations
    is_beat = np.fromiter((s in BEAT_SYMBOLS for s in ann.symbol), dtype=bool, count=len(ann))
    ref_sample = np.asarray(ann.sample, dtype=np.int64)[is_beat]
    ref_symbol = np.array([s for s, b in zip(ann.symbol, is_beat) if b], dtype="<U1")
    m = match_beats(ref_sample, peaks, rec.fs, window_s)
    symbol = np.full(peaks.size, "", dtype="<U1")
    symbol[m.test_matched] = ref_symbol[m.ref_matched]
    label = symbol_to_label(symbol.tolist())
    detected = np.zeros(ref_sample.size, dtype=bool)
    detected[m.ref_matched] = True
    feats = featurize_beats(filtered, peaks, rec.fs, **settings)
    out = RecordBeats(
        record=str(record),
        fs=float(rec.fs),
        sample=feats.sample,
        windows=feats.windows,
        rr=feats.rr,
        label=label,
        symbol=symbol,
        ref_sample=ref_sample,
        ref_symbol=ref_symbol,
        ref_detected=detected,
        rhythm=feats.rhythm,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **{f.name: getattr(out, f.name) for f in fields(RecordBeats)})
        os.replace(tmp, path)
    return out


def build_dataset(
    records,
    data_dir: str | os.PathLike | None = None,
    featurizer: dict[str, Any] | None = None,
    *,
    cache: str | os.PathLike | None | bool = None,
    progress: bool = True,
    **kwargs: Any,
) -> dict[str, RecordBeats]:
    """Run :func:`record_beats` over records with a tqdm progress bar.

    Returns
    -------
    dict of str to RecordBeats
        In the order given.
    """
    from tqdm import tqdm

    out: dict[str, RecordBeats] = {}
    bar = tqdm(list(records), desc="records", unit="rec", disable=not progress, leave=False)
    for r in bar:
        bar.set_postfix_str(r)
        out[r] = record_beats(r, data_dir, featurizer, cache=cache, **kwargs)
    return out


def protocol_records(protocol: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the (training, test) records of a protocol.

    For ``seed`` both are every record (the split is by beat, see :class:`Split`).
    """
    check_option("protocol", protocol, PROTOCOLS)
    if protocol == "inter":
        return DS1, DS2
    return MITDB_RECORDS, MITDB_RECORDS


@dataclass(frozen=True)
class Split:
    """Beats selected for training, validation and test: ``(record, index)`` pairs per part.

    Attributes
    ----------
    train, val, test : dict of str to numpy.ndarray of int64
        For each record, indices of its detected beats in that part.
    description : str
        How the split was made, in words.
    """

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    description: str

    def records(self, part: str) -> list[str]:
        """Records with at least one beat in ``part``."""
        return [r for r, ix in getattr(self, part).items() if ix.size]


def _trainable(rb: RecordBeats, seed_symbols: bool) -> np.ndarray:
    ok = rb.label >= 0
    if seed_symbols:
        ok &= np.isin(rb.symbol, list(SEED_SYMBOLS))
    return np.flatnonzero(ok)


def val_records(train_records, data: dict[str, RecordBeats], folds: int, fold: int) -> list[str]:
    """Patient-wise validation fold of the training records.

    Records are sorted by their number of S (then V) beats and dealt to
    ``folds`` folds in snake order, so every fold holds some S- and V-rich
    records; fold ``fold`` is returned.
    """
    if folds < 2:
        raise ConfigError(f"val_folds must be >= 2, got {folds}")
    if not 0 <= fold < folds:
        raise ConfigError(f"val_fold must be in 0..{folds - 1}, got {fold}")
    s_idx, v_idx = labels_mod.CLASSES.index("A"), labels_mod.CLASSES.index("V")
    recs = sorted(train_records, key=lambda r: (-(data[r].label == s_idx).sum(), -(data[r].label == v_idx).sum(), r))
    out = []
    for i, r in enumerate(recs):
        k = i % (2 * folds)
        k = k if k < folds else 2 * folds - 1 - k
        if k == fold:
            out.append(r)
    return out


def make_split(
    protocol: str,
    data: dict[str, RecordBeats],
    *,
    seed: int = 0,
    val_folds: int = 5,
    val_fold: int | None = 4,
    test_fraction: float = 0.2,
    train_records=None,
    test_records=None,
) -> Split:
    """Split the beats of ``data`` by protocol (see the module notes).

    Parameters
    ----------
    protocol : {"inter", "seed", "all"}
        Protocol.
    data : dict of str to RecordBeats
        Every record the protocol uses.
    seed : int
        Seed of the random beat split (``seed`` protocol).
    val_folds, val_fold : int
        Validation: fold ``val_fold`` of ``val_folds`` patient-wise folds of
        the training records (``inter``, ``all``); for ``seed``, a random
        ``1 / val_folds`` of the training beats.  ``val_fold=None``: no
        validation part (every training beat trains).
    test_fraction : float
        Share of beats in the test part (``seed`` protocol).
    train_records, test_records : sequence of str, optional
        Replace the protocol's record lists (quick runs, tests).
    """
    check_option("protocol", protocol, PROTOCOLS)
    train_recs, test_recs = protocol_records(protocol)
    if train_records is not None:
        train_recs = tuple(str(r) for r in train_records)
    if test_records is not None:
        test_recs = tuple(str(r) for r in test_records)
    missing = [r for r in set(train_recs) | set(test_recs) if r not in data]
    if missing:
        raise ConfigError(f"dataset lacks records {', '.join(sorted(missing))} needed by protocol {protocol!r}")
    empty = np.zeros(0, dtype=np.int64)
    if protocol == "seed":
        rng = np.random.default_rng(seed)
        train, val, test = {}, {}, {}
        for r in train_recs:
            ix = _trainable(data[r], True)
            u = rng.random(ix.size)
            test[r] = ix[u < test_fraction]
            rest = ix[u >= test_fraction]
            v = rng.random(rest.size) < (0.0 if val_fold is None else 1.0 / val_folds)
            val[r], train[r] = rest[v], rest[~v]
        desc = (
            f"seed protocol: beats annotated {'/'.join(SEED_SYMBOLS)} of all {len(train_recs)} records, "
            f"random by-beat split ({1 - test_fraction:.0%} train+val, {test_fraction:.0%} test, seed {seed}); "
            "the same patients are in training and test"
        )
        return Split(train, val, test, desc)
    if val_fold is None:
        vrecs = []
    elif len(train_recs) >= val_folds:
        vrecs = val_records(train_recs, data, val_folds, val_fold)
    else:
        vrecs = [train_recs[-1]]
    if len(vrecs) >= len(train_recs):
        raise ConfigError("the validation fold would take every training record; give more training records")
    train = {r: (empty if r in vrecs else _trainable(data[r], False)) for r in train_recs}
    val = {r: _trainable(data[r], False) for r in vrecs}
    test = {r: np.flatnonzero(data[r].label != labels_mod.UNLABELLED) for r in test_recs}
    validation = (
        "no validation records" if val_fold is None
        else f"validate on records {' '.join(vrecs)} (fold {val_fold} of {val_folds}, patient-wise)"
    )  # fmt: skip
    desc = f"{protocol} protocol: train on {len(train_recs) - len(vrecs)} records, {validation}, test on {len(test_recs)} records"
    if protocol == "all":
        desc += " (the test records are the training records: not an independent test)"
    return Split(train, val, test, desc)


def stack(data: dict[str, RecordBeats], part: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the selected beats: (windows, rr, label, record index into ``list(part)``)."""
    ws, rs, ls, ids = [], [], [], []
    for i, (r, ix) in enumerate(part.items()):
        if not ix.size:
            continue
        rb = data[r]
        ws.append(rb.windows[ix])
        rs.append(rb.rr[ix])
        ls.append(rb.label[ix])
        ids.append(np.full(ix.size, i, dtype=np.int64))
    if not ws:
        raise ConfigError("no beats selected")
    return np.concatenate(ws), np.concatenate(rs), np.concatenate(ls), np.concatenate(ids)


def stack_rhythm(data: dict[str, RecordBeats], part: dict[str, np.ndarray]) -> np.ndarray:
    """The :attr:`RecordBeats.rhythm` rows of the selected beats, in the order of :func:`stack`; shape (n, 2)."""
    rows = [data[r].rhythm[ix] for r, ix in part.items() if ix.size]
    if not rows:
        raise ConfigError("no beats selected")
    return np.concatenate(rows)


