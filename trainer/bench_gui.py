"""``ecg-bench gui``: smoothness of the monitor window at real time.

The window is run as the user runs it (the monitor in a background thread
replaying MIT-BIH records in real time, a ~30 Hz refresh timer), but every
frame is painted synchronously so that a frame's time is the whole work of
the frame: draining events, reading the ring buffers, ``setData`` and the
paint itself.  Targets: one stream >= 30 frames per second with no frame
over 50 ms; 16 streams in the central station >= 20 frames per second.

Example::

    QT_QPA_PLATFORM=offscreen ecg-bench gui --streams 1,16 --seconds 20
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np

logger = logging.getLogger(__name__)

#: Records replayed, in order (distinct records for the central station).
DEFAULT_RECORDS = (
    "203", "208", "100", "119", "200", "201", "205", "207",
    "210", "213", "214", "215", "219", "221", "223", "233",
)  # fmt: skip
#: Targets: streams -> (minimum fps, maximum frame time in ms or None).
TARGETS = {1: (30.0, 50.0), 16: (20.0, None)}


def add_gui_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``ecg-bench gui`` to ``parser``."""
    parser.add_argument("--streams", default="1,16", metavar="N[,N...]",
                        help="numbers of streams to measure, comma-separated (default 1,16)")
    parser.add_argument("--seconds", type=float, default=20.0, metavar="S",
                        help="seconds measured per configuration (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, metavar="S",
                        help="seconds run before measuring (default 3)")
    parser.add_argument("--records", default=",".join(DEFAULT_RECORDS), metavar="R[,R...]",
                        help="MIT-BIH records replayed (cycled when there are more streams)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="directory of WFDB records (default: $ECG_DATA_DIR, else the user cache)")
    parser.add_argument("--frame-ms", type=int, default=30, metavar="MS",
                        help="refresh period of the window in ms (default 30)")
    parser.add_argument("--mode", choices=("sweep", "scroll"), default="sweep",
                        help="trace mode (default sweep)")  # fmt: skip
    return parser


def frame_stats(frame_s: np.ndarray, stamps_s: np.ndarray) -> dict:
    """Frame-time distribution (ms) and frames per second from per-frame durations and end times."""
    ms = 1000.0 * np.asarray(frame_s, dtype=np.float64)
    stamps = np.asarray(stamps_s, dtype=np.float64)
    span = stamps[-1] - stamps[0] if stamps.size > 1 else 0.0
    gaps = 1000.0 * np.diff(stamps) if stamps.size > 1 else np.zeros(1)
    return {
        "frames": int(ms.size),
        "fps": (stamps.size - 1) / span if span > 0 else 0.0,
        "mean_ms": float(ms.mean()) if ms.size else 0.0,
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else 0.0,
        "p95_ms": float(np.percentile(ms, 95)) if ms.size else 0.0,
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else 0.0,
        "max_ms": float(ms.max()) if ms.size else 0.0,
        "interval_p99_ms": float(np.percentile(gaps, 99)),
        "interval_max_ms": float(gaps.max()),
    }


def _measure(n_streams: int, args: argparse.Namespace, app) -> dict:
    from PyQt5 import QtCore

    from monitor.events import EventWriter
    from monitor.gui.feed import Feed
    from monitor.gui.window import MonitorWindow
    from monitor.runner import MonitorRunner, RunnerConfig

    records = [r for r in args.records.split(",") if r]
    sources = [f"replay:{records[i % len(records)]}" for i in range(n_streams)]
    total = args.warmup + args.seconds
    config = RunnerConfig(sources=sources, speed=1.0, data_dir=args.data_dir, duration_s=total + 10.0)
    feed = Feed()
    runner = MonitorRunner(config, EventWriter(None, sink=feed.sink))
    win = MonitorWindow(runner, feed, sources=sources, frame_ms=args.frame_ms, sync_paint=True)
    if args.mode == "scroll":
        win.toggle_mode()
    import threading

    thread = threading.Thread(target=runner.run, name="monitor-runner", daemon=True)
    win.show()
    thread.start()
    marks = {}
    QtCore.QTimer.singleShot(int(args.warmup * 1000), lambda: marks.setdefault("start", len(win.frame_times)))
    QtCore.QTimer.singleShot(int(total * 1000), app.quit)
    t0 = time.monotonic()
    app.exec_()
    wall = time.monotonic() - t0
    runner.stop_event.set()
    thread.join(10.0)
    win.timer.stop()
    first = marks.get("start", 0)
    frames = np.array(list(win.frame_times)[first:])
    stamps = np.array(list(win.frame_stamps)[first:])
    stats = frame_stats(frames, stamps)
    stats.update(streams=n_streams, wall_s=wall, beats=sum(s.beats_total for s in feed.streams.values()),
                 grid=win.grid_mode)  # fmt: skip
    win.close()
    win.deleteLater()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)
    return stats


def main_gui(args: argparse.Namespace) -> int:
    """Run ``ecg-bench gui``; print the frame-time distribution; 0 when every target is met."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt5 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    platform = app.platformName()
    try:
        counts = [int(s) for s in str(args.streams).split(",") if s.strip()]
    except ValueError:
        print(f"ecg-bench gui: --streams takes integers like 1,16, got {args.streams!r}", file=sys.stderr)
        return 2
    print(f"ecg-bench gui: Qt platform {platform}, refresh every {args.frame_ms} ms, "
          f"{args.seconds:g} s measured after {args.warmup:g} s, real-time replay, {args.mode} mode, "
          f"{os.cpu_count()} CPU(s)")  # fmt: skip
    print("frame time = events + ring-buffer reads + setData + synchronous paint of the whole window")
    header = f"{'streams':>7} {'frames':>6} {'fps':>6} {'mean':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}  {'gap p99':>7} {'gap max':>7}  target"
    print(header + "\n" + " " * 29 + "(frame time, ms)" + " " * 10 + "(between frames, ms)")
    ok_all = True
    for n in counts:
        s = _measure(n, args, app)
        fps_min, max_ms = TARGETS.get(n, (20.0, None))
        ok = s["fps"] >= fps_min and (max_ms is None or s["max_ms"] <= max_ms)
        ok_all &= ok
        target = f">= {fps_min:g} fps" + (f", max <= {max_ms:g} ms" if max_ms else "")
        print(
            f"{n:>7} {s['frames']:>6} {s['fps']:>6.1f} {s['mean_ms']:>7.2f} {s['p50_ms']:>7.2f} {s['p95_ms']:>7.2f} "
            f"{s['p99_ms']:>7.2f} {s['max_ms']:>7.2f}  {s['interval_p99_ms']:>7.1f} {s['interval_max_ms']:>7.1f}  "
            f"{target}: {'PASS' if ok else 'FAIL'}",
            flush=True,
        )
    return 0 if ok_all else 1


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m trainer.bench_gui``)."""
    parser = add_gui_arguments(argparse.ArgumentParser(prog="ecg-bench gui", description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return main_gui(args)


if __name__ == "__main__":
    sys.exit(main())
