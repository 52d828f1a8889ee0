"""Start the window: the monitor in a background thread, the GUI in the main thread.

``ecg-monitor`` (without ``--headless``) calls :func:`run_window`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time

from replay.errors import ConfigError

from ..events import EventWriter, open_events
from ..resources import asset
from ..runner import MonitorRunner, RunnerConfig
from .feed import Feed

logger = logging.getLogger(__name__)

#: Replay speed used for ``--screenshot`` when ``--speed max`` is asked (the
#: frame must be caught before the replay ends).
SCREENSHOT_MAX_SPEED = 50.0
#: Signal played past ``--duration`` in screenshot mode, so that the stream
#: has not ended (and its alarms are still on) when the frame is taken, in s.
SCREENSHOT_TAIL_S = 10.0


def display_available() -> bool:
    """Whether Qt can open a window here (a display, or the offscreen platform)."""
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc"):
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def load_classifier(args: argparse.Namespace, runner: MonitorRunner | None = None):
    """The classifier the inspector uses: the stream's, ``--model``, or the shipped weights.

    Returns None when none is available (the inspector then shows no saliency).
    """
    if runner is not None:
        if getattr(runner, "classifier", None) is not None:
            return runner.classifier
        for mon in list(runner.monitors.values()):
            clf = getattr(mon, "classifier", None)
            if clf is not None:
                return clf
    path = getattr(args, "model", None)
    if path is None and asset("model.pt").is_file():
        path = asset("model.pt")
    if path is None:
        return None
    from ..model import Classifier

    return Classifier.from_file(path)


def run_window(config: RunnerConfig, args: argparse.Namespace) -> int:
    """Run the monitor with its window until the window is closed; return the exit status.

    Parameters
    ----------
    config : RunnerConfig
        What to monitor (as for ``--headless``).
    args : argparse.Namespace
        ``ecg-monitor``'s options; used here: ``events`` (also write the
        events to FILE or ``-``), ``screenshot`` (save the window to this PNG
        after ``duration`` seconds of signal and exit), ``duration``,
        ``model`` (weights for the beat inspector; default the shipped
        ``assets/model.pt`` if present), ``frame_ms``.  Missing attributes
        mean "not given".

    Raises
    ------
    ConfigError
        No display (suggests ``--headless``), or ``--screenshot`` without
        ``--duration``.
    """
    if not display_available():
        raise ConfigError(
            "no display found (DISPLAY is not set); run with --headless, "
            "or set QT_QPA_PLATFORM=offscreen with --screenshot"
        )
    screenshot = getattr(args, "screenshot", None)
    duration = getattr(args, "duration", None)
    if screenshot is not None:
        if duration is None:
            raise ConfigError("--screenshot needs --duration S (seconds of signal to play before the picture)")
        speed = config.speed
        if math.isinf(speed):
            logger.warning("--screenshot with --speed max: playing at %gx to catch the frame", SCREENSHOT_MAX_SPEED)
            speed = SCREENSHOT_MAX_SPEED
        config = dataclasses.replace(config, duration_s=duration + SCREENSHOT_TAIL_S, speed=speed)

    from PyQt5 import QtCore, QtWidgets  # the GUI only loads Qt when a window is asked for

    from .window import MonitorWindow

    fp, close = open_events(getattr(args, "events", None), default_stdout=False)
    feed = Feed()
    writer = EventWriter(fp, sink=feed.sink)
    runner = MonitorRunner(config, writer)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("ecg-monitor")
    win = MonitorWindow(runner, feed, classifier=load_classifier(args, runner), sources=config.sources,
                        frame_ms=int(getattr(args, "frame_ms", 0) or 30))  # fmt: skip
    errors: list[BaseException] = []

    def body() -> None:
        try:
            summary = runner.run()
            writer.write(summary.event())
        except BaseException as err:  # reported in the main thread
            errors.append(err)

    thread = threading.Thread(target=body, name="monitor-runner", daemon=True)
    win.show()
    thread.start()

    # Ctrl+C / SIGTERM close the window; a timer lets Python run its signal handlers
    def _quit(*_):
        app.quit()

    old = {s: signal.signal(s, _quit) for s in (signal.SIGINT, signal.SIGTERM)}
    keepalive = QtCore.QTimer()
    keepalive.timeout.connect(lambda: None)
    keepalive.start(200)

    shot = {"done": False, "ok": False}
    if screenshot is not None:
        deadline = time.monotonic() + (duration + SCREENSHOT_TAIL_S) / config.speed + 60.0

        def check() -> None:
            if shot["done"]:
                return
            ready = win.stream_time_s() >= duration
            if errors or not thread.is_alive() or ready or time.monotonic() > deadline:
                shot["done"] = True
                win.tick()  # the frame of the moment, then the picture
                shot["ok"] = win.capture(screenshot)
                app.quit()

        poll = QtCore.QTimer()
        poll.timeout.connect(check)
        poll.start(20)

    watcher = QtCore.QTimer()
    watcher.timeout.connect(lambda: app.quit() if errors else None)
    watcher.start(100)
    try:
        app.exec_()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        runner.stop_event.set()
        thread.join(timeout=10.0)
        win.timer.stop()
        win.close()
        # delete the window's C++ side now, not whenever Python collects the wrapper
        # (a late collection can delete pyqtgraph items under another window's paint)
        win.deleteLater()
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)
        if close:
            fp.close()
    if errors:
        raise errors[0]
    if screenshot is not None:
        if not shot["ok"]:
            raise ConfigError(f"could not write the screenshot {screenshot}")
        print(f"ecg-monitor: window saved to {screenshot}", file=sys.stderr)
    s = runner.summary
    print(
        f"ecg-monitor: {s.streams} stream(s), {s.beats} beats, {s.alarms} alarms, {s.gaps} gaps, "
        f"{s.signal_s:.1f} s of signal",
        file=sys.stderr,
    )
    return 0
