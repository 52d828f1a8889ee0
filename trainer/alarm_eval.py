"""``ecg-bench alarms``: the alarm engine scored against MIT-BIH rhythm annotations.

Each record is streamed through :class:`monitor.alarms.AlarmEngine` in
``step_s`` (1 s) ticks: the beats of the tick as ``beat`` events, the
filtered ECG of the tick for the VF rule, and ``now_sample`` = the end of the
tick.  Where the beats come from is pluggable (``beat_source``):

* ``"reference"`` (default): the record's reference beat annotations, with
  labels from the MIT-BIH symbols (``V`` and ``E`` -> ``V``, see
  :data:`monitor.labels.SYMBOL_TO_CLASS`; symbols without a class -> ``?``),
  and the first lead band-passed 0.5-40 Hz (causal) for the VF rule;
* a callable ``beat_source(record) -> (samples, labels, signal, fs)`` taking
  a :class:`replay.wfdb_source.Record`, for example the monitor's live
  detections and model labels.  ``signal`` may be None (no VF rule).

Scoring
-------
Reference episodes are the stretches between rhythm-change annotations
(``+`` with aux ``(VT``, ``(VFL``, ``(AFIB``, ``(SBR``, ``(B``, ``(T`` ...);
adjacent episodes of the same rhythm are merged.  For each row of
:data:`TARGETS` (a set of alarm codes against a set of rhythms):

* an episode ``[start, end]`` is **detected** when one of the codes is on at
  some time within ``[start, max(end, start + tolerance_s)]`` (tolerance
  10 s); the **delay** is from ``start`` to the first such time (0 when the
  alarm was already on at ``start``);
* an alarm onset (the start of a stretch where any of the codes is on) is a
  **false alarm** unless it falls within ``[start - tolerance_s,
  max(end, start + tolerance_s)]`` of a target episode or of an *ignored*
  rhythm of the row (for example atrial flutter for the AF alarm);
  **FA/h** divides the false alarms by the hours of signal outside those
  stretches.

Alarms with no reference rhythm in MIT-BIH (asystole, pause, couplet, ...)
are listed with their onsets per hour.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.alarms import CODES, AlarmConfig, AlarmEngine
from monitor.filters import BandpassFilter
from monitor.labels import SYMBOL_TO_CLASS
from replay._validate import check_range
from replay.errors import ConfigError

from .ec57 import BEAT_SYMBOLS

logger = logging.getLogger(__name__)

__all__ = [
    "TARGETS",
    "AlarmTable",
    "Episode",
    "TargetScore",
    "evaluate_alarms",
    "format_table",
    "main_alarms",
    "reference_beats",
    "rhythm_episodes",
    "run_engine",
]

BeatSource = Callable[[object], tuple[np.ndarray, Sequence[str], "np.ndarray | None", float]]


@dataclass(frozen=True)
class Target:
    """One scored row: alarm codes against reference rhythms.

    Attributes
    ----------
    name : str
        Row label.
    codes : tuple of str
        Alarm codes whose union is scored.
    rhythms : tuple of str
        Rhythm aux notes of the episodes to detect.
    ignore : tuple of str
        Rhythms during which onsets are neither true nor false alarms.
    min_v_beats : int
        Only episodes holding at least this many reference V beats count.
    """

    name: str
    codes: tuple[str, ...]
    rhythms: tuple[str, ...]
    ignore: tuple[str, ...] = ()
    min_v_beats: int = 0


#: Scored rows of the table.
TARGETS: tuple[Target, ...] = (
    Target("vfib", ("vfib",), ("(VFL", "(VF")),
    Target("vtach (VT >= 5 V)", ("vtach",), ("(VT",), ignore=("(VFL",), min_v_beats=5),
    Target("vtach|vrun (any VT)", ("vtach", "vrun"), ("(VT",), ignore=("(VFL", "(IVR")),
    Target("afib", ("afib",), ("(AFIB",), ignore=("(AFL",)),
    Target("brady|brady_extreme", ("brady", "brady_extreme"), ("(SBR",)),
    Target("bigeminy", ("bigeminy",), ("(B",)),
    Target("trigeminy", ("trigeminy",), ("(T",)),
)


@dataclass(frozen=True)
class Episode:
    """A reference rhythm episode, in samples of its record."""

    record: str
    rhythm: str
    start: int
    stop: int
    v_beats: int


@dataclass
class TargetScore:
    """Scores of one :class:`Target` over all records (delays in seconds)."""

    target: Target
    episodes: int = 0
    detected: int = 0
    delays_s: list[float] = field(default_factory=list)
    false_alarms: int = 0
    negative_hours: float = 0.0
    fa_records: set[str] = field(default_factory=set)
    missed: list[str] = field(default_factory=list)

    @property
    def sensitivity(self) -> float:
        """Detected / episodes (NaN without episodes)."""
        return self.detected / self.episodes if self.episodes else float("nan")

    @property
    def fa_per_hour(self) -> float:
        """False alarms per hour of signal outside the target rhythm."""
        return self.false_alarms / self.negative_hours if self.negative_hours else float("nan")


@dataclass
class AlarmTable:
    """Result of :func:`evaluate_alarms`."""

    records: tuple[str, ...]
    hours: float
    scores: list[TargetScore]
    onsets: dict[str, int]
    onset_records: dict[str, set[str]]
    beat_source: str
    seconds: float
    config: AlarmConfig


# --------------------------------------------------------------------------- inputs
def reference_beats(record) -> tuple[np.ndarray, list[str], np.ndarray, float]:
    """Beat source from the reference annotations (the default).

    Parameters
    ----------
    record : replay.wfdb_source.Record
        A loaded record with annotations.

    Returns
    -------
    samples : numpy.ndarray of int64
        Reference beat sample indices.
    labels : list of str
        Model class of each beat (``"?"`` for symbols without one).
    signal : numpy.ndarray
        The first lead, band-passed 0.5-40 Hz (causal Butterworth), in mV.
    fs : float
        Sampling rate in Hz.
    """
    ann = record.annotations
    if ann is None:
        raise ConfigError(f"record {record.name} has no annotations")
    keep = [i for i, s in enumerate(ann.symbol) if s in BEAT_SYMBOLS]
    samples = ann.sample[keep].astype(np.int64)
    labels = [SYMBOL_TO_CLASS.get(ann.symbol[i], "?") for i in keep]
    filt = BandpassFilter(record.fs, 0.5, min(40.0, 0.45 * record.fs))
    signal = filt.process(record.signal[:, 0].astype(np.float64))
    return samples, labels, signal, float(record.fs)


def rhythm_episodes(record, n_samples: int) -> list[Episode]:
    """Return the rhythm episodes of ``record`` (adjacent same-rhythm ones merged)."""
    ann = record.annotations
    changes = [
        (int(s), a.strip("\x00").strip())
        for s, sym, a in zip(ann.sample, ann.symbol, ann.aux, strict=True)
        if sym == "+" and a.strip("\x00").strip().startswith("(")
    ]
    is_v = np.array([s in ("V", "E") for s in ann.symbol], dtype=bool)
    v_samples = ann.sample[is_v]
    out: list[Episode] = []
    for i, (start, rhythm) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else n_samples
        if out and out[-1].rhythm == rhythm and out[-1].stop == start:
            prev = out.pop()
            start = prev.start
        nv = int(np.count_nonzero((v_samples >= start) & (v_samples < stop)))
        out.append(Episode(record.name, rhythm, start, stop, nv))
    return out


def run_engine(
    samples: np.ndarray,
    labels: Sequence[str],
    signal: np.ndarray | None,
    fs: float,
    n_samples: int,
    config: AlarmConfig | None = None,
    stream: str = "",
    step_s: float = 1.0,
) -> list[dict]:
    """Stream beats (and ECG) through an :class:`AlarmEngine` in ticks; return its events.

    Parameters
    ----------
    samples, labels : array-like
        Beat sample indices (increasing) and labels.
    signal : numpy.ndarray or None
        Filtered ECG (mV) from sample 0, for the VF rule.
    fs : float
        Sampling rate in Hz.
    n_samples : int
        Length of the stream.
    config : AlarmConfig, optional
        Alarm limits.
    stream : str
        Stream name of the events.
    step_s : float
        Tick length in seconds.
    """
    check_range("step_s", step_s, 0.01, 60.0, unit="s")
    engine = AlarmEngine(fs, stream, config)
    samples = np.asarray(samples, dtype=np.int64)
    step = max(1, round(step_s * fs))
    bounds = np.searchsorted(samples, np.arange(0, n_samples + step, step))
    events: list[dict] = []
    prev = None
    for k, t0 in enumerate(range(0, n_samples, step)):
        t1 = min(t0 + step, n_samples)
        beats = []
        for j in range(bounds[k], bounds[k + 1]):
            s = int(samples[j])
            beats.append({"type": "beat", "stream": stream, "sample": s, "label": labels[j],
                          "rr": None if prev is None else (s - prev) / fs})  # fmt: skip
            prev = s
        chunk = None if signal is None else signal[t0:t1]
        events.extend(engine.process(beats, t1, chunk, t0 if chunk is not None else None))
    events.extend(engine.process([{"type": "status", "status": "end", "sample": n_samples}], n_samples))
    return events


def _on_intervals(events: Iterable[dict], codes: Iterable[str], end: int) -> np.ndarray:
    """Union of the on-stretches of ``codes``, as an (n, 2) array of [start, stop)."""
    codes = set(codes)
    spans = []
    opened: dict[str, int] = {}
    for e in events:
        if e["code"] not in codes:
            continue
        if e["state"] == "on":
            opened[e["code"]] = e["sample"]
        elif e["code"] in opened:
            spans.append((opened.pop(e["code"]), e["sample"]))
    spans += [(s, end) for s in opened.values()]
    spans.sort()
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.array(merged, dtype=np.int64).reshape(-1, 2)


def _score_record(
    score: TargetScore,
    events: list[dict],
    episodes: list[Episode],
    fs: float,
    n: int,
    tol: int,
    record: str,
) -> None:
    t = score.target
    on = _on_intervals(events, t.codes, n)
    targets = [e for e in episodes if e.rhythm in t.rhythms]
    scored = [e for e in targets if e.v_beats >= t.min_v_beats]
    excused = targets + [e for e in episodes if e.rhythm in t.ignore]
    for ep in scored:
        hi = max(ep.stop, ep.start + tol)
        hit = on[(on[:, 0] <= hi) & (on[:, 1] > ep.start)] if on.size else on
        score.episodes += 1
        if hit.shape[0]:
            score.detected += 1
            score.delays_s.append(max(0, int(hit[0, 0]) - ep.start) / fs)
        else:
            score.missed.append(f"{ep.record}@{ep.start / fs:.0f}s")
    windows = np.array(
        [(e.start - tol, max(e.stop, e.start + tol)) for e in excused], dtype=np.int64
    ).reshape(-1, 2)
    covered = np.zeros(n, dtype=bool)
    for a, b in windows:
        covered[max(a, 0) : min(b, n)] = True
    score.negative_hours += float(np.count_nonzero(~covered)) / fs / 3600.0
    for a in on[:, 0]:
        if not ((windows[:, 0] <= a) & (a <= windows[:, 1])).any():
            score.false_alarms += 1
            score.fa_records.add(record)


def evaluate_alarms(
    records: Iterable[str],
    data_dir: str | None = None,
    beat_source: str | BeatSource = "reference",
    *,
    config: AlarmConfig | None = None,
    tolerance_s: float = 10.0,
    step_s: float = 1.0,
    targets: Sequence[Target] = TARGETS,
) -> AlarmTable:
    """Run the alarm engine on MIT-BIH records and score it against rhythm annotations.

    Parameters
    ----------
    records : iterable of str
        Record names (e.g. :data:`trainer.ec57.MITDB_RECORDS`).
    data_dir : str, optional
        Directory of the records (default: the usual lookup).
    beat_source : "reference" or callable
        Where beats come from; a callable takes the loaded
        :class:`~replay.wfdb_source.Record` and returns ``(samples, labels,
        signal, fs)`` (``signal``: filtered mV from sample 0, or None).
    config : AlarmConfig, optional
        Alarm limits (default: the defaults).
    tolerance_s : float
        Detection tolerance after an episode's start, in seconds.
    step_s : float
        Tick length of the streaming, in seconds.
    targets : sequence of Target
        Rows to score.

    Returns
    -------
    AlarmTable
        Print it with :func:`format_table`.
    """
    from replay.wfdb_source import load_record

    check_range("tolerance_s", tolerance_s, 0.0, 600.0, unit="s")
    if isinstance(beat_source, str):
        if beat_source != "reference":
            raise ConfigError(f"beat_source must be 'reference' or a callable, got {beat_source!r}")
        source, source_name = reference_beats, "reference annotations"
    elif callable(beat_source):
        source, source_name = beat_source, getattr(beat_source, "__name__", "custom")
    else:
        raise TypeError(f"beat_source must be 'reference' or a callable, got {type(beat_source).__name__}")
    config = AlarmConfig() if config is None else config
    records = tuple(records)
    scores = [TargetScore(t) for t in targets]
    onsets = {c: 0 for c in CODES}
    onset_records: dict[str, set[str]] = {c: set() for c in CODES}
    hours = 0.0
    t0 = time.perf_counter()
    for name in records:
        record = load_record(name, data_dir, channels=[0])
        samples, labels, signal, fs = source(record)
        n = int(record.signal.shape[0] * fs / record.fs)
        events = run_engine(samples, labels, signal, fs, n, config, name, step_s)
        episodes = rhythm_episodes(record, int(record.signal.shape[0]))
        if fs != record.fs:
            k = fs / record.fs
            episodes = [Episode(e.record, e.rhythm, int(e.start * k), int(e.stop * k), e.v_beats)
                        for e in episodes]  # fmt: skip
        tol = round(tolerance_s * fs)
        for sc in scores:
            _score_record(sc, events, episodes, fs, n, tol, name)
        for e in events:
            if e["state"] == "on":
                onsets[e["code"]] += 1
                onset_records[e["code"]].add(name)
        hours += n / fs / 3600.0
        logger.info("alarms: record %s done (%d events)", name, len(events))
    return AlarmTable(records, hours, scores, onsets, onset_records, source_name,
                      time.perf_counter() - t0, config)  # fmt: skip


def format_table(table: AlarmTable) -> str:
    """Return :func:`evaluate_alarms`' result as a text table."""
    lines = [
        (f"Alarm engine on {len(table.records)} record(s), {table.hours:.1f} h, beats from "
        f"{table.beat_source}; episode detected if the alarm is on within "
        "[start, max(end, start + 10 s)]"),
        (f"{'alarm':<22} {'rhythm':<12} {'episodes':>8} {'detected':>8} {'Se %':>6} "
        f"{'median s':>8} {'worst s':>8} {'FA':>5} {'FA/h':>6}  FA records"),
    ]
    for sc in table.scores:
        d = np.asarray(sc.delays_s)
        med = f"{np.median(d):8.1f}" if d.size else f"{'-':>8}"
        worst = f"{d.max():8.1f}" if d.size else f"{'-':>8}"
        se = f"{100 * sc.sensitivity:6.1f}" if sc.episodes else f"{'-':>6}"
        fa_recs = ",".join(sorted(sc.fa_records)[:6]) + ("..." if len(sc.fa_records) > 6 else "")
        lines.append(
            f"{sc.target.name:<22} {','.join(sc.target.rhythms):<12} {sc.episodes:8d} "
            f"{sc.detected:8d} {se} {med} {worst} {sc.false_alarms:5d} {sc.fa_per_hour:6.2f}  {fa_recs}"
        )
    scored = {c for sc in table.scores for c in sc.target.codes}
    rest = [c for c in CODES if c not in scored]
    lines.append("")
    lines.append("alarms without a reference rhythm in MIT-BIH (onsets; per hour; records):")
    for c in rest:
        recs = sorted(table.onset_records[c])
        lines.append(
            f"  {c:<14} {table.onsets[c]:6d}  {table.onsets[c] / max(table.hours, 1e-9):7.2f}/h  "
            f"{len(recs)} record(s){': ' + ','.join(recs[:8]) if recs else ''}{'...' if len(recs) > 8 else ''}"
        )
    lines.append(f"({table.seconds:.1f} s)")
    return "\n".join(lines)


def live_beats(record, weights: str | None = None) -> tuple[np.ndarray, list[str], np.ndarray, float]:
    """Beat source from the monitor's live path: detections and model labels.

    The record is replayed through ZeroMQ into :class:`monitor.runner.MonitorRunner`
    at ``--speed max`` with classification on (the shipped model, or
    ``weights``), exactly as ``ecg-monitor --headless`` runs it; the signal for
    the VF rule is the monitor's own filtered lead.

    Returns
    -------
    samples, labels, signal, fs
        As :func:`reference_beats`.
    """
    from monitor.beats import live_front_end

    from .live import run_live

    beats, _ = run_live(record, classify=True, weights=weights)
    samples = np.array([b["sample"] for b in beats], dtype=np.int64)
    labels = [b["label"] for b in beats]
    filt, _ = live_front_end(record.fs)
    return samples, labels, filt.process(record.signal[:, 0].astype(np.float64)), float(record.fs)


def main_alarms(args) -> int:
    """``ecg-bench alarms``: print the alarm table.

    Parameters
    ----------
    args : argparse.Namespace
        ``records`` ("all" or comma-separated names), ``data_dir``,
        ``alarm_config`` (TOML path or None), ``alarm`` (list of
        ``KEY=VALUE`` overrides), ``tolerance`` (s), ``weights`` (the
        classifier of ``--beats live``; None: the shipped model).
    """
    from replay.wfdb_source import resolve_data_dir

    from .ec57 import MITDB_RECORDS

    records = MITDB_RECORDS if args.records == "all" else tuple(args.records.split(","))
    config = AlarmConfig()
    if getattr(args, "alarm_config", None):
        config = AlarmConfig.from_toml(args.alarm_config)
    config = config.with_overrides(getattr(args, "alarm", None) or [])
    print(f"records from {resolve_data_dir(args.data_dir)}")
    weights = getattr(args, "weights", None)
    live = getattr(args, "beats", "reference") == "live"
    if weights is not None:
        if not live:
            raise ConfigError("--weights needs --beats live (reference beats carry the annotations' labels)")
        from monitor.model import load_model

        load_model(weights)  # a bad file is a one-line error before any record is run
    source: str | BeatSource = "reference"
    if live:
        source = functools.partial(live_beats, weights=weights)
        source.__name__ = "live_beats" + (f" (weights {weights})" if weights else "")
    table = evaluate_alarms(
        records, args.data_dir, source, config=config, tolerance_s=getattr(args, "tolerance", 10.0)
    )
    print(format_table(table))
    return 0


def add_alarms_arguments(parser) -> None:
    """Add the options of ``ecg-bench alarms`` to an argparse (sub)parser."""
    parser.add_argument("--records", default="all", help="'all' or comma-separated names (e.g. 207,203)")
    parser.add_argument("--data-dir", default=None, metavar="DIR")
    parser.add_argument("--alarm-config", default=None, metavar="TOML", help="alarm limits file")
    parser.add_argument("--alarm", action="append", default=[], metavar="KEY=VALUE",
                        help="override one alarm limit (repeatable), e.g. --alarm hr_high=130")  # fmt: skip
    parser.add_argument("--beats", choices=("reference", "live"), default="reference",
                        help="beats from the reference annotations, or from the monitor's live detector "
                             "and classifier (default reference)")  # fmt: skip
    parser.add_argument("--weights", default=None, metavar="FILE",
                        help="with --beats live: classifier weights (default: the shipped model)")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=10.0, metavar="SECONDS",
                        help="detection tolerance after an episode's start (default 10 s)")  # fmt: skip
    parser.set_defaults(func=main_alarms)
