"""``ecg-bench``: benchmarks that print their figures.

Subcommands
-----------
``ecg-bench replay``
    Replay a record at ``--speed max`` to one subscriber in another process
    and print messages/s, MB/s and times real time (wire protocol cost).
``ecg-bench alarms``
    Score the alarm engine against the MIT-BIH rhythm annotations
    (:mod:`trainer.alarm_eval`).
``ecg-bench streams``
    Largest number of real-time streams one monitor process sustains
    (:mod:`trainer.bench_streams`).
``ecg-bench gui``
    Frame-time distribution of the window (:mod:`trainer.bench_gui`).
``ecg-bench detect``
    Run the monitor's live path (replay -> ZeroMQ -> receiver -> filter ->
    online detector, the monitor's own code) over MIT-BIH records, score it
    by ANSI/AAMI EC57 (see :mod:`trainer.ec57`), and score established
    detectors (WFDB ``gqrs_detect``, NeuroKit2's default) on the same records.
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from replay import _cli
from replay.errors import ConfigError

from . import ec57
from .alarm_eval import add_alarms_arguments
from .bench_gui import add_gui_arguments, main_gui
from .bench_streams import add_streams_arguments
from .rule_sweep import add_rules_arguments

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- replay
def _receive_in_child(endpoint: str, stream: str, queue) -> None:
    from replay.receiver import Receiver, receive_stream

    with Receiver(endpoint, [stream]) as rx:
        queue.put("ready")
        t0 = time.monotonic()
        got = receive_stream(rx, stream, idle_timeout_s=30.0)
        queue.put(
            {
                "samples": int(got.signal.shape[0]),
                "missing_messages": got.stats.missing_messages,
                "bad": got.stats.bad_messages,
                "eos": got.eos,
                "seconds": time.monotonic() - t0,
            }
        )


def bench_replay(args: argparse.Namespace) -> int:
    """Replay throughput to one subscriber process; prints one table."""
    from replay.publisher import Publisher, replay
    from replay.sources import load_source_record, parse_source

    record = load_source_record(parse_source(args.record), args.data_dir)
    endpoint = args.endpoint or f"ipc:///tmp/ecg-bench-{os.getpid()}"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    rows = []
    for rep in range(args.repeat):
        with Publisher(endpoint, lossless=True) as pub:
            child = ctx.Process(target=_receive_in_child, args=(endpoint, record.name, queue))
            child.start()
            if queue.get(timeout=60) != "ready" or not pub.wait_for_subscribers(record.name, 1, 30):
                raise ConfigError("the subscriber process did not connect")
            stats = replay(record, pub, speed=math.inf, chunk_s=args.chunk)
            rx = queue.get(timeout=120)
            child.join(10)
        rows.append((stats, rx))
        el = stats.elapsed_s
        print(
            f"run {rep + 1}: {stats.messages} messages in {el:.3f} s = {stats.messages / el:,.0f} msg/s, "
            f"{stats.bytes / el / 1e6:.1f} MB/s, {stats.x_realtime:,.0f}x real time; "
            f"subscriber got {rx['samples']} samples, {rx['missing_messages']} missed, eos={rx['eos']}"
        )
    best = max(rows, key=lambda r: r[0].x_realtime)[0]
    print(
        f"record {record.name} ({best.signal_s / 60:.1f} min, chunks of {args.chunk:g} s): "
        f"best {best.elapsed_s:.3f} s = {best.x_realtime:,.0f}x real time "
        f"(target: under 1 s, >= 2000x)"
    )
    return 0


# --------------------------------------------------------------------------- detect
def live_detect(record_name: str, data_dir: str | None, channel=0, fs_target: float | None = None):
    """Detect beats in a record through the monitor's live path.

    See :func:`trainer.live.run_live` (classification off).

    Returns
    -------
    beats : ndarray of int64
        Detected R-peak sample indices.
    ann : Annotations
        The record's reference annotations (at the replayed rate).
    fs : float
        Sampling rate in Hz.
    seconds : float
        Wall-clock seconds of the live run (transport included).
    """
    from replay.wfdb_source import load_record, resample_record

    from .live import run_live

    record = load_record(record_name, data_dir, channels=[channel])
    if fs_target is not None and float(fs_target) != record.fs:
        record = resample_record(record, fs_target)
    beats, seconds = run_live(record)
    return np.array([b["sample"] for b in beats], dtype=np.int64), record.annotations, float(record.fs), seconds


def _score_live(name: str, data_dir: str | None, fs_target: float | None, exclude: float):
    beats, ann, fs, seconds = live_detect(name, data_dir, 0, fs_target)
    ref = ec57.select_beats(ann.symbol, ann.sample)
    n = int(ann.sample.max()) + 1 if len(ann.sample) else 0
    fl = ec57.flutter_intervals(ann.symbol, ann.sample, n_samples=max(n, int(beats.max(initial=0)) + 1))
    full = ec57.score_record(ref, beats, fs, record=name, flutter=fl)
    late = ec57.score_record(ref, beats, fs, record=name, flutter=fl, exclude_first_s=exclude)
    return full, late, seconds, len(ann.sample) and (ann.sample.max() / fs)


def _score_other(method: str, name: str, data_dir: str, exclude: float):
    t0 = time.perf_counter()
    full = ec57.score_detector_on_records([name], data_dir, method=method)[0]
    late = ec57.score_detector_on_records([name], data_dir, method=method, exclude_first_s=exclude)[0]
    return full, late, time.perf_counter() - t0


def _fmt(g) -> str:
    return f"Se {100 * g.se:6.2f} %  +P {100 * g.ppv:6.2f} %  (TP {g.tp}, FN {g.fn}, FP {g.fp})"


def bench_detect(args: argparse.Namespace) -> int:
    """EC57 detection benchmark of the live path and reference detectors."""
    from replay.wfdb_source import resolve_data_dir

    records = ec57.MITDB_RECORDS if args.records == "all" else tuple(args.records.split(","))
    data_dir = str(resolve_data_dir(args.data_dir))
    exclude = 300.0
    print(f"EC57 beat detection, {len(records)} record(s) from {data_dir}, channel 0, 150 ms window")
    if args.fs:
        print(f"records resampled to {args.fs:g} Hz")
    full, late = [], []
    total_s = total_sig = 0.0
    print(f"{'record':>6} {'Se %':>7} {'+P %':>7} {'FN':>5} {'FP':>5} {'offset ms':>9} {'x rt':>7}")
    for name in records:
        f, lt, sec, sig_s = _score_live(name, args.data_dir, args.fs, exclude)
        full.append(f)
        late.append(lt)
        total_s += sec
        total_sig += sig_s
        print(
            f"{name:>6} {100 * f.se:7.2f} {100 * f.ppv:7.2f} {f.fn:5d} {f.fp:5d} "
            f"{f.median_offset_ms:9.1f} {sig_s / sec:7.0f}",
            flush=True,
        )
    g, gl = ec57.gross(full), ec57.gross(late)
    print()
    print(f"ours (live, causal, through ZeroMQ): {_fmt(g)}")
    print(f"ours, first 5 min excluded:           {_fmt(gl)}")
    worst = sorted(full, key=lambda s: min(s.se, s.ppv))[:5]
    print(
        "worst records: "
        + ", ".join(f"{s.record} (Se {100 * s.se:.2f}, +P {100 * s.ppv:.2f})" for s in worst)
    )
    print(f"speed: {total_sig:.0f} s of signal in {total_s:.1f} s = {total_sig / total_s:,.0f}x real time "
          "(one process, transport included)")
    methods = [] if args.compare in ("", "none") else args.compare.split(",")
    for m in methods:
        if m not in ("gqrs", "neurokit"):
            raise ConfigError(f"--compare takes gqrs and/or neurokit, got {m!r}")
        if args.fs:
            print(f"{m}: skipped (comparison runs at the native rate only)")
            continue
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            res = list(ex.map(_score_other, [m] * len(records), records, [data_dir] * len(records),
                              [exclude] * len(records)))
        gm = ec57.gross(r[0] for r in res)
        gml = ec57.gross(r[1] for r in res)
        print(f"{m:>8}: {_fmt(gm)}; first 5 min excluded: Se {100 * gml.se:.2f} +P {100 * gml.ppv:.2f}"
              f"  [{time.perf_counter() - t0:.0f} s]")
        w = sorted((r[0] for r in res), key=lambda s: min(s.se, s.ppv))[:3]
        print("          worst: " + ", ".join(f"{s.record} ({100 * s.se:.1f}/{100 * s.ppv:.1f})" for s in w))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ecg-bench``."""
    p = argparse.ArgumentParser(prog="ecg-bench", description="Benchmarks of the ECG monitor; each prints its figures.")
    _cli.add_common_arguments(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("replay", help="wire-protocol throughput of a --speed max replay")
    r.add_argument("--record", default="100", help="record to replay (default 100)")
    r.add_argument("--chunk", type=_cli.positive_seconds, default=0.1, metavar="SECONDS")
    r.add_argument("--endpoint", default=None, help="endpoint (default: an ipc:// path in /tmp)")
    r.add_argument("--repeat", type=int, default=3, help="runs (the best is reported)")
    r.add_argument("--data-dir", default=None, metavar="DIR")
    r.set_defaults(func=bench_replay)
    d = sub.add_parser("detect", help="EC57 R-peak detection score of the live path vs gqrs and NeuroKit2")
    d.add_argument("--records", default="all", help="'all' or comma-separated names (e.g. 100,203)")
    d.add_argument("--data-dir", default=None, metavar="DIR")
    d.add_argument("--fs", type=float, default=None, help="resample the records to this rate (Hz) first")
    d.add_argument("--compare", default="gqrs,neurokit",
                   help="reference detectors to score too: gqrs,neurokit (default) or none")
    d.add_argument("--jobs", type=int, default=2, help="processes for the reference detectors")
    d.set_defaults(func=bench_detect)
    g = sub.add_parser("gui", help="window smoothness: frame-time distribution for 1 and 16 streams")
    add_gui_arguments(g)
    g.set_defaults(func=main_gui)
    st = sub.add_parser("streams", help="largest number of real-time streams one monitor process sustains")
    add_streams_arguments(st)
    a = sub.add_parser("alarms", help="alarm engine vs MIT-BIH rhythm annotations (episode Se, delay, FA/h)")
    add_alarms_arguments(a)
    ru = sub.add_parser("rules", help="decision rules' settings scored out of fold on DS1 fold networks")
    add_rules_arguments(ru)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ecg-bench``."""
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args.log_level)
    return _cli.run_main("ecg-bench", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
