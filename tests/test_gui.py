"""The monitor window (pytest-qt, offscreen): build, replay, labels, alarms, grid, inspector, screenshot."""

from __future__ import annotations

import argparse
import os
import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")
# the session's QApplication is made before the autouse fixtures run: offscreen from the start
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5 import QtCore  # noqa: E402

from monitor.events import EventWriter  # noqa: E402
from monitor.gui import palette  # noqa: E402
from monitor.gui.app import run_window  # noqa: E402
from monitor.gui.feed import Feed  # noqa: E402
from monitor.gui.window import MonitorWindow  # noqa: E402
from monitor.pipeline import StreamMonitor  # noqa: E402
from monitor.runner import MonitorRunner, RunnerConfig  # noqa: E402
from replay.errors import ConfigError  # noqa: E402

FS = 360.0


class FakeRunner:
    """What the window reads of a MonitorRunner, filled by the test itself."""

    def __init__(self, feed: Feed) -> None:
        self.monitors: dict[str, StreamMonitor] = {}
        self.writer = EventWriter(None, sink=feed.sink)
        self.stop_event = threading.Event()
        self.config = RunnerConfig(sources=["test"])


def synthetic_stream(name: str, seconds: float = 12.0, rr_s: float = 0.8, v_from_s: float | None = None):
    """A StreamMonitor whose filtered buffer holds a spiky ECG, and its beat events."""
    mon = StreamMonitor(name, FS, ["MLII"])
    n = int(seconds * FS)
    x = 0.03 * np.sin(np.arange(n) * 2 * np.pi / FS)
    beats, t, events = [], 0.3, []
    while t < seconds - 0.2:
        v = v_from_s is not None and t >= v_from_s
        b = int(t * FS)
        width = 19 if v else 7
        x[b - width // 2 : b - width // 2 + width] += np.hanning(width) * (2.0 if v else 1.2)
        beats.append(b)
        rr = rr_s if not beats[:-1] else (b - beats[-2]) / FS
        events.append({"type": "beat", "stream": name, "sample": b, "time": b / FS, "rr": rr,
                       "hr": 60 / rr, "label": "V" if v else "N", "aami": "V" if v else "N",
                       "ref": "V" if v else "N", "latency": 0.3})  # fmt: skip
        t += 0.4 if v else rr_s
    mon.origin = 0
    mon.filtered.write(0, x)
    mon.raw.write(0, x)
    mon.next_index = n
    mon.beats.extend(beats)
    return mon, events


@pytest.fixture
def window(qtbot):
    feed = Feed()
    runner = FakeRunner(feed)
    win = MonitorWindow(runner, feed, frame_ms=1000)
    win.show()
    yield win, runner, feed
    _dispose(win)


def _dispose(win) -> None:
    """Delete a window's C++ side now (a late garbage collection can crash pyqtgraph)."""
    win.timer.stop()
    win.close()
    win.deleteLater()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)


def test_window_builds(window):
    win, _, _ = window
    win.tick()
    assert win.isVisible()
    assert win.trace.plot_item.getAxis("bottom").labelUnits == "s"
    assert win.trace.plot_item.getAxis("left").labelUnits == "mV"
    assert win.banner.priority is None
    keys = {k for k, _ in __import__("monitor.gui.window", fromlist=["SHORTCUTS"]).SHORTCUTS}
    assert {"Space", "A", "M", "F1"} <= keys


def test_replay_reaches_the_window_and_beats_are_labelled(qtbot, mitdb):
    feed = Feed()
    config = RunnerConfig(sources=["replay:100"], speed=50.0, data_dir=str(mitdb), duration_s=12.0)
    runner = MonitorRunner(config, EventWriter(None, sink=feed.sink))
    win = MonitorWindow(runner, feed, frame_ms=1000)
    win.show()
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    win.tick()
    state = feed.streams["100"]
    assert state.beats_total >= 12
    assert win.current == "100"
    # ONE scatter item holds every label, and it is in the scene with points
    labels = win.trace.labels
    assert labels.scene() is win.trace.scene()
    ys = np.round(labels.data["y"].astype(float), 3)
    rows = sorted(set(ys.tolist()))
    assert len(rows) == 2  # model row + reference row
    assert min(np.sum(ys == r) for r in rows) >= 8  # about 12 beats in 10 s at 72 bpm
    x, y = win.trace.curve.getData()
    assert x is not None and np.isfinite(y).sum() > 3000
    assert "Source: replay:100" in win.status_labels["source"].text()
    _dispose(win)


def test_vt_raises_the_red_banner_and_silence_stops_flashing(window, monkeypatch):
    win, runner, feed = window
    mon, beats = synthetic_stream("bed1", seconds=14.0, v_from_s=8.0)
    runner.monitors["bed1"] = mon
    feed.sink(beats)
    alarms = mon.alarms.process(beats, mon.filtered.end - 100)
    feed.sink(alarms)
    assert any(a["code"] == "vtach" and a["state"] == "on" for a in alarms)
    win.tick()
    assert win.banner.priority == "high"
    assert "V-Tach" in win.banner.text.text() or "VTach" in win.banner.text.text().replace("-", "")
    assert win.banner.flashing
    # the bright phase shows the IEC red, and it flashes at 2 Hz
    monkeypatch.setattr(win, "_t0", win._t0 - (0.25 - (__import__("time").monotonic() - win._t0) % 0.5))
    win.tick()
    assert palette.ALARM_STYLE["high"][0] in win.banner.styleSheet() or not win.banner.shown[1]
    assert palette.flash_on("high", 0.1) and not palette.flash_on("high", 0.3)
    assert 1.4 <= palette.ALARM_STYLE["high"][2] <= 2.8
    assert 0.4 <= palette.ALARM_STYLE["medium"][2] <= 0.8
    assert win.history.count() >= 1
    assert win.show_strip(win.history.item(win.history.count() - 1).data(QtCore.Qt.UserRole))
    win.silence()
    win.tick()
    act = mon.alarms.active()
    assert act["audible"] is None and act["flash"] is False
    assert act["audio_paused_until_s"] is not None
    assert not win.banner.flashing
    assert "PAUSED" in win.banner.audio.text()
    assert win.banner.priority == "high"  # still listed and shown, steady


def test_acknowledge_writes_off_events(window):
    win, runner, feed = window
    mon, beats = synthetic_stream("bed1", seconds=14.0, v_from_s=8.0)
    runner.monitors["bed1"] = mon
    alarms = mon.alarms.process(beats, mon.filtered.end - 100)
    feed.sink(beats + alarms)
    win.tick()
    win.acknowledge()
    win.tick()
    assert all(a.acknowledged for a in mon.alarms.active_alarms())
    assert not win.banner.flashing


def test_station_grid_for_several_sources(window, qtbot):
    win, runner, feed = window
    for i in range(4):
        mon, beats = synthetic_stream(f"bed{i}", seconds=10.0, rr_s=0.6 + 0.1 * i)
        runner.monitors[mon.stream] = mon
        feed.sink(beats)
    win.tick()
    assert win.grid_mode
    assert set(win.station.tiles) == {"bed0", "bed1", "bed2", "bed3"}
    win.tick()
    tile = win.station.tiles["bed2"]
    assert tile.hr.text() == "75"
    _, y = tile.trace.curve.getData()
    assert np.isfinite(y).sum() > 1000
    qtbot.mouseClick(tile, QtCore.Qt.LeftButton)
    assert not win.grid_mode and win.current == "bed2"
    win.tick()
    assert win.numerics.hr.text() == "75"
    win.show_station()
    assert win.grid_mode


def test_controls_pause_mode_gain_speed(window):
    win, runner, feed = window
    mon, beats = synthetic_stream("bed1")
    runner.monitors["bed1"] = mon
    feed.sink(beats)
    win.tick()
    win.toggle_pause()
    assert win.paused
    before = win.trace.curve.getData()[1].copy()
    mon.filtered.write(mon.filtered.end, np.ones(360))
    win.tick()
    np.testing.assert_array_equal(win.trace.curve.getData()[1], before)
    win.toggle_pause()
    win.toggle_mode()
    win.tick()
    assert win.trace.mode == "scroll"
    x, _ = win.trace.curve.getData()
    assert x[-1] == pytest.approx((mon.filtered.end - 1) / FS)
    win.set_gain(20.0)
    win.set_speed(50.0)
    assert win.trace.window_s == 5.0 and win.trace.span_mv == 2.0
    win.toggle_grid()
    assert not win.trace.show_grid


def test_inspector_shows_probabilities_and_saliency(window):
    from test_explain import tiny_classifier

    win, runner, feed = window
    win.classifier = tiny_classifier()
    mon, beats = synthetic_stream("bed1", seconds=12.0)
    runner.monitors["bed1"] = mon
    feed.sink(beats)
    win.tick()
    target = beats[8]["sample"]
    win.trace.beatClicked.emit(target + 20)  # a click near the beat
    ins = win.inspector.inspection
    assert ins is not None and ins.sample == target
    assert win.inspector.isVisible()
    assert ins.probs.shape == (7,) and ins.probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert ins.saliency.shape == win.classifier.input_shape
    assert ins.window.shape == win.classifier.input_shape
    assert len(win.inspector.prob_bars.opts["width"]) == 7
    assert len(win.inspector.sal_bars.opts["height"]) == ins.t_s.size
    # without a classifier: the window, and a note instead of the saliency
    win.classifier = None
    ins = win.inspect("bed1", target)
    assert ins.saliency is None and "classifier" in ins.note and ins.ecg_mv.size > 300


def test_screenshot_is_a_png(qtbot, mitdb, tmp_path):
    out = tmp_path / "shot.png"
    config = RunnerConfig(sources=["replay:100"], speed=20.0, data_dir=str(mitdb))
    assert run_window(config, argparse.Namespace(screenshot=str(out), duration=3.0, events=None)) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000


def test_no_display_suggests_headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(ConfigError, match="--headless"):
        run_window(RunnerConfig(sources=["sim:72"]), argparse.Namespace())


def test_screenshot_needs_duration():
    with pytest.raises(ConfigError, match="--duration"):
        run_window(RunnerConfig(sources=["sim:72"]), argparse.Namespace(screenshot="x.png", duration=None))
