"""The monitor window: bedside view, central station, alarms, inspector.

:class:`MonitorWindow` is a thin view over a running
:class:`~monitor.runner.MonitorRunner`: a ~30 Hz :class:`QtCore.QTimer`
drains the event queue (:class:`~monitor.gui.feed.Feed`, filled by the
runner thread through the event writer's sink) and redraws the traces from
the streams' ring buffers.  Operator actions (acknowledge, silence) call the
stream's :class:`~monitor.alarms.AlarmEngine` from the GUI thread; the
``alarm`` events they cause are written to the event stream like any other.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui, QtWidgets

from . import palette
from .feed import Feed, StreamState
from .inspector import InspectorDialog, inspect_beat
from .station import StationGrid
from .trace import GAINS_MM_MV, SPEEDS_MM_S, TraceView

logger = logging.getLogger(__name__)

#: Frame period of the refresh timer, in ms (about 30 frames per second).
FRAME_MS = 30
#: Seconds of ECG shown around an alarm picked in the history (before, after).
STRIP_S = (6.0, 4.0)
#: Frame times remembered for the FPS counter and the benchmark.
FRAMES_KEPT = 100000

#: Keyboard shortcuts: (key, what it does); also the Help text.
SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Space", "Pause / resume the traces (freeze)"),
    ("S", "Sweep (erase bar) / scrolling trace"),
    ("G", "ECG-paper grid on / off"),
    ("+ / -", "Gain up / down (5, 10, 20, 40 mm/mV)"),
    ("] / [", "Paper speed up / down (12.5, 25, 50 mm/s)"),
    ("A", "Acknowledge the alarms of the bed shown (every bed in the station view)"),
    ("M", "Silence alarm audio and flashing for 2 min"),
    ("I", "Inspect the last beat (or click a beat on the trace)"),
    ("Esc", "Back to the central station (several streams)"),
    ("N / P", "Next / previous bed"),
    ("F1", "This help"),
    ("Ctrl+Q", "Quit"),
)

_STYLE = f"""
QMainWindow, QWidget {{ background: {palette.BACKGROUND}; color: {palette.FOREGROUND}; }}
QToolBar {{ background: {palette.PANEL}; border: 0; spacing: 4px; }}
QToolButton {{ color: {palette.FOREGROUND}; padding: 3px 8px; border: 1px solid #26303a; border-radius: 3px; }}
QToolButton:checked {{ background: #24415c; }}
QComboBox {{ background: {palette.PANEL}; color: {palette.FOREGROUND}; border: 1px solid #26303a; padding: 1px 6px; }}
QStatusBar {{ background: {palette.PANEL}; color: {palette.DIM}; }}
QStatusBar QLabel {{ color: {palette.DIM}; padding: 0 8px; }}
QListWidget {{ background: {palette.PANEL}; border: 1px solid #1c232b; }}
QMenuBar {{ background: {palette.PANEL}; color: {palette.FOREGROUND}; }}
QMenu {{ background: {palette.PANEL}; color: {palette.FOREGROUND}; }}
"""


def _fmt_time(t_s: float) -> str:
    t = max(0, int(t_s))
    return f"{t // 3600:d}:{t // 60 % 60:02d}:{t % 60:02d}" if t >= 3600 else f"{t // 60:02d}:{t % 60:02d}"


class AlarmBanner(QtWidgets.QFrame):
    """The alarm banner: IEC 60601-1-8 colours, flashing, acknowledge and silence buttons."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setFixedHeight(46)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(10, 2, 6, 2)
        self.text = QtWidgets.QLabel("No alarm")
        self.text.setObjectName("bannerText")
        self.audio = QtWidgets.QLabel("")
        self.audio.setObjectName("bannerAudio")
        self.ack = QtWidgets.QPushButton("Acknowledge (A)")
        self.silence = QtWidgets.QPushButton("Silence 2 min (M)")
        for b in (self.ack, self.silence):
            b.setFocusPolicy(QtCore.Qt.NoFocus)
            b.setStyleSheet(
                "QPushButton { background: #1b222a; color: #e8e8e8; border: 1px solid #3a4550;"
                " padding: 4px 10px; border-radius: 3px; font-weight: bold; }"
            )
        lay.addWidget(self.text, 1)
        lay.addWidget(self.audio)
        lay.addWidget(self.ack)
        lay.addWidget(self.silence)
        #: What is shown: (priority or None, bright phase, text)
        self.shown: tuple = ()
        self.priority: str | None = None
        self.flashing = False
        self.show_state(None, False, "No alarm", "")

    def show_state(self, priority: str | None, bright: bool, text: str, audio: str) -> None:
        """Draw: ``priority`` colour (None: no alarm), flash phase ``bright``, texts."""
        key = (priority, bright, text, audio)
        if key == self.shown:
            return
        self.shown = key
        self.priority = priority
        if priority is None:
            bg, fg = palette.PANEL, palette.DIM
        else:
            colour, ink, _ = palette.ALARM_STYLE[priority]
            bg, fg = (colour, ink) if bright else (palette.BACKGROUND, colour)
        border = palette.ALARM_STYLE[priority][0] if priority else "#1c232b"
        self.setStyleSheet(f"#banner {{ background: {bg}; border: 2px solid {border}; }}")
        self.text.setStyleSheet(f"color: {fg}; font-size: 20px; font-weight: bold; background: transparent;")
        self.audio.setStyleSheet(f"color: {fg}; font-size: 13px; background: transparent;")
        self.text.setText(text)
        self.audio.setText(audio)


class Numerics(QtWidgets.QFrame):
    """Heart rate, PVCs per minute, beats per class and signal quality of one stream."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFixedWidth(250)
        self.setStyleSheet(f"background: {palette.BACKGROUND};")
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(2)
        head = QtWidgets.QHBoxLayout()
        self.hr_caption = QtWidgets.QLabel("HR")
        self.hr_caption.setStyleSheet(f"color: {palette.HR}; font-size: 18px; font-weight: bold;")
        self.unit = QtWidgets.QLabel("bpm")
        self.unit.setStyleSheet(f"color: {palette.HR}; font-size: 14px;")
        self.unit.setAlignment(QtCore.Qt.AlignRight)
        head.addWidget(self.hr_caption)
        head.addStretch(1)
        head.addWidget(self.unit)
        lay.addLayout(head)
        self.hr = QtWidgets.QLabel("---")
        self.hr.setAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
        self.hr.setStyleSheet(f"color: {palette.HR}; font-size: 96px; font-weight: bold;")
        lay.addWidget(self.hr)
        self.pvc = QtWidgets.QLabel("PVC/min  0")
        self.pvc.setStyleSheet(f"color: {palette.AAMI_COLOURS['V']}; font-size: 18px; font-weight: bold;")
        lay.addWidget(self.pvc)
        self.counts = QtWidgets.QLabel("")
        self.counts.setTextFormat(QtCore.Qt.RichText)
        self.counts.setStyleSheet("font-size: 14px;")
        lay.addWidget(self.counts)
        lay.addStretch(1)
        self.quality = QtWidgets.QLabel("Waiting for data")
        self.quality.setWordWrap(True)
        lay.addWidget(self.quality)
        self.lead = QtWidgets.QLabel("")
        self.lead.setStyleSheet(f"color: {palette.DIM};")
        lay.addWidget(self.lead)
        self._key = None

    def update_from(self, state: StreamState | None, now_sample: int | None) -> None:
        """Show ``state``."""
        if state is None:
            key = None
        else:
            key = (
                state.hr_bpm, state.beats_total, state.quality, state.channel,
                round(state.pvc_per_min(now_sample)), now_sample is None,
            )  # fmt: skip
        if key == self._key:
            return
        self._key = key
        if state is None:
            self.hr.setText("---")
            return
        hr = state.hr_bpm
        self.hr.setText("---" if hr is None or not math.isfinite(hr) else f"{hr:.0f}")
        self.pvc.setText(f"PVC/min  {state.pvc_per_min(now_sample):.0f}")
        rows = []
        for cls, name in (("N", "Normal"), ("S", "SVEB"), ("V", "VEB"), ("F", "Fusion"), ("Q", "Unknown/paced"), ("?", "Unclassified")):
            n = state.counts.get(cls, 0)
            if cls == "?" and n == 0:
                continue
            colour = palette.AAMI_COLOURS[cls]
            rows.append(
                f"<tr><td style='color:{colour}; font-weight:bold; padding-right:8px'>{cls}</td>"
                f"<td style='color:{palette.DIM}; padding-right:10px'>{name}</td>"
                f"<td align='right' style='color:{colour}'>{n}</td></tr>"
            )
        self.counts.setText("<table>" + "".join(rows) + "</table>")
        colour = ("#39ff6a", "#f6d32d", "#ff5050")[min(2, state.quality_level)]
        self.quality.setText(f"Signal: {state.quality}")
        self.quality.setStyleSheet(f"color: {colour}; font-size: 15px; font-weight: bold;")
        lead = f"Lead {state.channel}" if state.channel else ""
        self.lead.setText(f"{lead}   {state.fs:g} Hz" if state.fs else lead)


class MonitorWindow(QtWidgets.QMainWindow):
    """The monitor window over a :class:`~monitor.runner.MonitorRunner`.

    Parameters
    ----------
    runner : MonitorRunner
        The running monitor (its :attr:`monitors` are read, never written).
    feed : Feed
        Event queue whose :meth:`Feed.sink` is the runner writer's sink.
    classifier : Classifier, optional
        Used by the beat inspector for probabilities and saliency.
    sources : list of str, optional
        Source specifications, for the status bar.
    frame_ms : int
        Refresh period in ms.
    sync_paint : bool
        Paint synchronously at every frame (the benchmark measures the paint).
    """

    def __init__(
        self,
        runner,
        feed: Feed,
        classifier=None,
        sources: list[str] | None = None,
        frame_ms: int = FRAME_MS,
        sync_paint: bool = False,
    ) -> None:
        super().__init__()
        self.runner = runner
        self.feed = feed
        self.classifier = classifier
        self.sources = list(sources or getattr(getattr(runner, "config", None), "sources", []) or [])
        self.sync_paint = sync_paint
        self.paused = False
        self.current: str | None = None
        self.grid_mode = False
        self.frame_times: deque[float] = deque(maxlen=FRAMES_KEPT)
        self.frame_stamps: deque[float] = deque(maxlen=FRAMES_KEPT)
        self._t0 = time.monotonic()
        self.setWindowTitle("ECG monitor")
        self.setStyleSheet(_STYLE)
        self.resize(1280, 760)
        self._build()
        self.inspector = InspectorDialog(self)
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.PreciseTimer)
        self.timer.timeout.connect(self.tick)
        self.timer.start(frame_ms)

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        central = QtWidgets.QWidget()
        root = QtWidgets.QVBoxLayout(central)
        root.setContentsMargins(4, 4, 4, 0)
        root.setSpacing(4)
        self.banner = AlarmBanner()
        self.banner.ack.clicked.connect(self.acknowledge)
        self.banner.silence.clicked.connect(self.silence)
        root.addWidget(self.banner)
        self.stack = QtWidgets.QStackedWidget()
        root.addWidget(self.stack, 1)
        # page 0: bedside
        bed = QtWidgets.QWidget()
        bl = QtWidgets.QVBoxLayout(bed)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.setSpacing(4)
        top = QtWidgets.QHBoxLayout()
        self.bed_title = QtWidgets.QLabel("")
        self.bed_title.setStyleSheet(f"color: {palette.FOREGROUND}; font-size: 15px; font-weight: bold;")
        top.addWidget(self.bed_title)
        top.addStretch(1)
        self.clock = QtWidgets.QLabel("")
        self.clock.setStyleSheet(f"color: {palette.DIM}; font-size: 15px;")
        top.addWidget(self.clock)
        bl.addLayout(top)
        mid = QtWidgets.QHBoxLayout()
        self.trace = TraceView()
        self.trace.beatClicked.connect(self._beat_clicked)
        mid.addWidget(self.trace, 1)
        self.numerics = Numerics()
        mid.addWidget(self.numerics)
        bl.addLayout(mid, 3)
        bottom = QtWidgets.QHBoxLayout()
        hist_box = QtWidgets.QVBoxLayout()
        cap = QtWidgets.QLabel("Alarm history (click for the ECG strip)")
        cap.setStyleSheet(f"color: {palette.DIM};")
        hist_box.addWidget(cap)
        self.history = QtWidgets.QListWidget()
        self.history.setFocusPolicy(QtCore.Qt.NoFocus)
        self.history.itemClicked.connect(self._history_clicked)
        hist_box.addWidget(self.history, 1)
        bottom.addLayout(hist_box, 2)
        strip_box = QtWidgets.QVBoxLayout()
        self.strip_caption = QtWidgets.QLabel("Alarm strip: the latest alarm, or the one picked in the history")
        self.strip_caption.setStyleSheet(f"color: {palette.DIM};")
        strip_box.addWidget(self.strip_caption)
        self.strip = pg.PlotWidget(background=palette.BACKGROUND)
        self.strip.setMenuEnabled(False)
        self.strip.hideButtons()
        self.strip.setLabel("left", "ECG", units="mV")
        self.strip.setLabel("bottom", "Stream time", units="s")
        self.strip.getAxis("left").enableAutoSIPrefix(False)
        self.strip.getAxis("bottom").enableAutoSIPrefix(False)
        self.strip_curve = self.strip.plot(pen=pg.mkPen(palette.TRACE, width=1.3), connect="finite")
        self.strip_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#e01b24", width=1.5, style=QtCore.Qt.DashLine))
        self.strip.addItem(self.strip_line)
        self.strip_line.setVisible(False)
        strip_box.addWidget(self.strip, 1)
        bottom.addLayout(strip_box, 3)
        bl.addLayout(bottom, 1)
        self.stack.addWidget(bed)
        # page 1: central station
        self.station = StationGrid()
        self.station.tileClicked.connect(self.show_bed)
        self.stack.addWidget(self.station)
        self.setCentralWidget(central)
        self._build_status()
        self._build_actions()

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.status_labels = {}
        for key in ("source", "rate", "lost", "latency", "fps", "state"):
            lab = QtWidgets.QLabel("")
            sb.addPermanentWidget(lab) if key != "source" else sb.addWidget(lab, 1)
            self.status_labels[key] = lab

    def _action(self, text: str, key: str | QtGui.QKeySequence, slot, checkable: bool = False) -> QtWidgets.QAction:
        act = QtWidgets.QAction(text, self)
        act.setShortcut(QtGui.QKeySequence(key))
        act.setShortcutContext(QtCore.Qt.ApplicationShortcut)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        self.addAction(act)
        return act

    def _build_actions(self) -> None:
        tb = self.addToolBar("Controls")
        tb.setMovable(False)
        self.act_pause = self._action("Pause", "Space", self.toggle_pause, checkable=True)
        self.act_scroll = self._action("Scroll", "S", self.toggle_mode, checkable=True)
        self.act_grid = self._action("Grid", "G", self.toggle_grid, checkable=True)
        self.act_grid.setChecked(True)
        self.act_station = self._action("All beds", "Esc", self.show_station)
        self.act_inspect = self._action("Inspect", "I", self.inspect_last)
        for act in (self.act_pause, self.act_scroll, self.act_grid, self.act_station, self.act_inspect):
            tb.addAction(act)
        tb.addSeparator()
        tb.addWidget(QtWidgets.QLabel(" Speed "))
        self.speed_box = QtWidgets.QComboBox()
        for s in SPEEDS_MM_S:
            self.speed_box.addItem(f"{s:g} mm/s ({250 / s:g} s)", s)
        self.speed_box.setCurrentIndex(SPEEDS_MM_S.index(25.0))
        self.speed_box.currentIndexChanged.connect(lambda i: self.set_speed(SPEEDS_MM_S[i]))
        self.speed_box.setFocusPolicy(QtCore.Qt.NoFocus)
        tb.addWidget(self.speed_box)
        tb.addWidget(QtWidgets.QLabel(" Gain "))
        self.gain_box = QtWidgets.QComboBox()
        for g in GAINS_MM_MV:
            self.gain_box.addItem(f"{g:g} mm/mV", g)
        self.gain_box.setCurrentIndex(GAINS_MM_MV.index(10.0))
        self.gain_box.currentIndexChanged.connect(lambda i: self.set_gain(GAINS_MM_MV[i]))
        self.gain_box.setFocusPolicy(QtCore.Qt.NoFocus)
        tb.addWidget(self.gain_box)
        self._action("Gain up", "+", lambda: self._step_gain(+1))
        self._action("Gain up", "=", lambda: self._step_gain(+1))
        self._action("Gain down", "-", lambda: self._step_gain(-1))
        self._action("Faster paper", "]", lambda: self._step_speed(+1))
        self._action("Slower paper", "[", lambda: self._step_speed(-1))
        self._action("Acknowledge", "A", self.acknowledge)
        self._action("Silence", "M", self.silence)
        self._action("Next bed", "N", lambda: self._step_bed(+1))
        self._action("Previous bed", "P", lambda: self._step_bed(-1))
        self._action("Quit", "Ctrl+Q", self.close)
        menu = self.menuBar().addMenu("&Help")
        help_act = self._action("Keyboard shortcuts", "F1", self.show_help)
        menu.addAction(help_act)

    # ------------------------------------------------------------ controls
    def toggle_pause(self, checked: bool | None = None) -> None:
        """Freeze / resume the traces (monitoring and alarms go on)."""
        self.paused = not self.paused if checked is None else bool(checked)
        self.act_pause.setChecked(self.paused)

    def toggle_mode(self, checked: bool | None = None) -> None:
        """Switch between sweep and scrolling traces."""
        scroll = (self.trace.mode == "sweep") if checked is None else bool(checked)
        mode = "scroll" if scroll else "sweep"
        self.act_scroll.setChecked(scroll)
        self.trace.set_mode(mode)
        for tile in self.station.tiles.values():
            tile.trace.set_mode(mode)

    def toggle_grid(self, checked: bool | None = None) -> None:
        """ECG-paper grid on the bedside trace."""
        on = (not self.trace.show_grid) if checked is None else bool(checked)
        self.act_grid.setChecked(on)
        self.trace.set_grid(on)

    def set_speed(self, mm_s: float) -> None:
        """Paper speed of every trace, in mm/s."""
        self.trace.set_speed(mm_s)
        for tile in self.station.tiles.values():
            tile.trace.set_speed(mm_s)
        i = SPEEDS_MM_S.index(mm_s)
        if self.speed_box.currentIndex() != i:
            self.speed_box.setCurrentIndex(i)

    def set_gain(self, mm_mv: float) -> None:
        """Gain of every trace, in mm/mV."""
        self.trace.set_gain(mm_mv)
        for tile in self.station.tiles.values():
            tile.trace.set_gain(mm_mv)
        i = GAINS_MM_MV.index(mm_mv)
        if self.gain_box.currentIndex() != i:
            self.gain_box.setCurrentIndex(i)

    def _step_gain(self, d: int) -> None:
        i = min(len(GAINS_MM_MV) - 1, max(0, GAINS_MM_MV.index(self.trace.gain_mm_mv) + d))
        self.set_gain(GAINS_MM_MV[i])

    def _step_speed(self, d: int) -> None:
        order = sorted(SPEEDS_MM_S)
        i = min(len(order) - 1, max(0, order.index(self.trace.speed_mm_s) + d))
        self.set_speed(order[i])

    def _step_bed(self, d: int) -> None:
        names = list(self.station.tiles)
        if not names:
            return
        i = names.index(self.current) if self.current in names else 0
        self.show_bed(names[(i + d) % len(names)])

    def show_help(self) -> None:
        """The keyboard shortcuts."""
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in SHORTCUTS)
        box = QtWidgets.QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setTextFormat(QtCore.Qt.RichText)
        box.setText(f"<table>{rows}</table>")
        box.setModal(False)
        box.show()
        self.help_box = box

    def show_bed(self, stream: str) -> None:
        """Enlarge ``stream``: the bedside view."""
        self.current = stream
        self.grid_mode = False
        self.stack.setCurrentIndex(0)
        self.trace._reset_view()
        self.bed_title.setText(f"Bed {stream}")

    def show_station(self) -> None:
        """The central station (only with several streams)."""
        if len(self.station.tiles) > 1:
            self.grid_mode = True
            self.stack.setCurrentIndex(1)

    def _engines(self) -> list:
        mons = dict(self.runner.monitors)
        if self.grid_mode:
            return [m.alarms for m in mons.values()]
        m = mons.get(self.current)
        return [m.alarms] if m is not None else []

    def acknowledge(self) -> None:
        """Acknowledge the alarms of the bed shown (of every bed in the station view)."""
        for engine in self._engines():
            events = engine.acknowledge()
            if events:
                self.runner.writer.write_many(events)

    def silence(self) -> None:
        """Pause alarm audio and flashing for the configured time (2 min)."""
        for engine in self._engines():
            engine.silence()

    # ------------------------------------------------------------ inspector
    def inspect(self, stream: str, sample: int):
        """Open the inspector on the beat of ``stream`` nearest ``sample``; return the Inspection."""
        mon = self.runner.monitors.get(stream)
        state = self.feed.streams.get(stream)
        if mon is None or state is None:
            return None
        beat = state.nearest_beat(sample, int(0.35 * mon.fs))
        if beat is None:
            return None
        try:
            ins = inspect_beat(mon, beat, self.classifier)
        except ValueError as err:  # the beat left the ring buffer meanwhile
            self.statusBar().showMessage(f"cannot inspect this beat: {err}", 5000)
            return None
        self.inspector.show_inspection(ins)
        self.inspector.show()
        self.inspector.raise_()
        return ins

    def inspect_last(self) -> None:
        """Inspect the last beat of the bed shown."""
        state = self.feed.streams.get(self.current or "")
        if state and state.beats:
            self.inspect(self.current, state.beats[-1].sample)

    def _beat_clicked(self, sample: int) -> None:
        if self.current is not None:
            self.inspect(self.current, sample)

    # ------------------------------------------------------------ history
    def _add_history(self, ev: dict) -> None:
        pri = ev.get("priority", "low")
        on = ev.get("state") == "on"
        t = float(ev.get("time") or 0.0)
        text = f"{_fmt_time(t)}  {ev.get('stream')}  {pri.upper():9s} {'ON ' if on else 'off'}  {ev.get('message') or ev.get('code')}"
        if not on and ev.get("reason"):
            text += f"  ({ev['reason']})"
        item = QtWidgets.QListWidgetItem(text)
        item.setData(QtCore.Qt.UserRole, ev)
        colour = palette.ALARM_STYLE.get(pri, palette.ALARM_STYLE["low"])[0] if on else palette.DIM
        item.setForeground(QtGui.QBrush(QtGui.QColor(colour)))
        self.history.insertItem(0, item)
        while self.history.count() > 500:
            self.history.takeItem(self.history.count() - 1)

    def _history_clicked(self, item: QtWidgets.QListWidgetItem) -> None:
        self._strip_picked = True
        self.show_strip(item.data(QtCore.Qt.UserRole))

    def show_strip(self, ev: dict) -> bool:
        """Show the ECG around alarm event ``ev``; False (and a note) if no longer held."""
        mon = self.runner.monitors.get(ev.get("stream"))
        title = f"{ev.get('stream')} at {_fmt_time(float(ev.get('time') or 0))}: {ev.get('message') or ev.get('code')}"
        if mon is None:
            self.strip_caption.setText(f"{title} — stream not available")
            return False
        rb = mon.filtered
        s = int(ev["sample"])
        a = s - int(STRIP_S[0] * mon.fs)
        b = min(rb.end, s + int(STRIP_S[1] * mon.fs))
        if a < rb.oldest or b <= a:
            self.strip_curve.setData([], [])
            self.strip_line.setVisible(False)
            self.strip_caption.setText(
                f"{title} — no longer in the ring buffer (it keeps the last {mon.buffer_s:g} s)"
            )
            return False
        try:
            y = rb.read(a, b)[:, 0]
        except ValueError:
            self.strip_caption.setText(f"{title} — no longer in the ring buffer")
            return False
        x = np.arange(a, b) / mon.fs
        self.strip_curve.setData(x, y)
        self.strip.setXRange(x[0], x[-1], padding=0)
        self.strip.setYRange(-0.45 * self.trace.span_mv, 0.55 * self.trace.span_mv, padding=0)
        self.strip_line.setPos(s / mon.fs)
        self.strip_line.setVisible(True)
        self.strip_caption.setText(title)
        return True

    # ------------------------------------------------------------ frames
    def stream_time_s(self) -> float:
        """Seconds of signal received, the least of every stream (0 before any)."""
        mons = list(self.runner.monitors.values())
        if not mons:
            return 0.0
        return min((m.filtered.end - (m.origin or 0)) / m.fs for m in mons)

    def _sync_streams(self, mons: dict) -> None:
        for name in mons:
            if name not in self.station.tiles:
                self.station.add_stream(name)
                if self.current is None:
                    self.show_bed(name)
                if len(self.station.tiles) == 2 and not self.grid_mode and self._auto_station:
                    self._auto_station = False
                    self.show_station()

    _auto_station = True
    _strip_picked = False
    _strip_pending: dict | None = None

    def tick(self) -> None:
        """One frame: events, traces, numerics, banner, status bar."""
        t0 = time.perf_counter()
        for ev in self.feed.drain():
            self._add_history(ev)
            if ev.get("state") == "on" and not self._strip_picked:
                self._strip_pending = ev  # shown once the signal after it has arrived
        if self._strip_pending is not None:
            ev = self._strip_pending
            mon = self.runner.monitors.get(ev.get("stream"))
            if mon is not None and (mon.ended or mon.filtered.end >= int(ev["sample"]) + int(STRIP_S[1] * mon.fs)):
                self._strip_pending = None
                self.show_strip(ev)
        try:
            mons = dict(self.runner.monitors)
        except RuntimeError:  # the runner added a stream while copying
            return
        self._sync_streams(mons)
        now = time.monotonic() - self._t0
        if self.grid_mode:
            for name, tile in self.station.tiles.items():
                mon = mons.get(name)
                if not self.paused:
                    tile.update_from(mon, self.feed.streams.get(name))
                if mon is not None:
                    act = mon.alarms.active()
                    top = act["alarms"][0] if act["alarms"] else None
                    bright = palette.flash_on(act["audible"], now) if act["flash"] else True
                    tile.set_alarm(act["highest"], top.message if top else "", bright)
        mon = mons.get(self.current) if self.current else None
        state = self.feed.streams.get(self.current) if self.current else None
        if not self.grid_mode:
            if mon is None:
                self.trace.clear_trace("Waiting for data…")
            elif not self.paused:
                drawn = self.trace.update_from(mon, state)
                msg = ""
                if state is not None and state.quality_level >= 2:
                    msg = state.quality
                self.trace.show_message(msg if drawn else "Waiting for data…")
            self.numerics.update_from(state, None if mon is None else mon.filtered.end)
            if mon is not None:
                self.clock.setText(f"{_fmt_time((mon.filtered.end - (mon.origin or 0)) / mon.fs)}")
        self._update_banner(mons, now)
        self._update_status(mons, mon, state)
        if self.sync_paint:
            self.repaint()
        t1 = time.perf_counter()
        self.frame_times.append(t1 - t0)
        self.frame_stamps.append(t1)

    def _update_banner(self, mons: dict, now: float) -> None:
        if self.grid_mode:
            engines = [(name, m.alarms) for name, m in mons.items()]
        else:
            m = mons.get(self.current)
            engines = [(self.current, m.alarms)] if m is not None else []
        best = None
        n_alarms = 0
        for name, engine in engines:
            act = engine.active()
            n_alarms += len(act["alarms"])
            if act["alarms"]:
                rank = palette.PRIORITIES.index(act["highest"])
                if best is None or rank < best[0]:
                    best = (rank, name, act, engine)
        if best is None:
            self.banner.show_state(None, False, "No alarm", "")
            self.banner.flashing = False
            return
        _, name, act, engine = best
        top = act["alarms"][0]
        more = f"   +{n_alarms - 1} more" if n_alarms > 1 else ""
        where = f"{name}: " if self.grid_mode or len(mons) > 1 else ""
        ack = "  (acknowledged)" if top.acknowledged else ""
        text = f"{top.priority.upper()}  {where}{top.message}{ack}{more}"
        flashing = bool(act["flash"]) and palette.ALARM_STYLE[act["audible"] or top.priority][2] > 0
        bright = palette.flash_on(act["audible"], now) if flashing else True
        self.banner.flashing = flashing
        if act["audio_paused_until_s"] is not None:
            left = act["audio_paused_until_s"] - (engine.now_sample or 0) / engine.fs
            audio = f"AUDIO PAUSED {int(left) // 60}:{int(left) % 60:02d}"
        elif act["audible"]:
            audio = f"AUDIO ON ({act['audible']})"
        else:
            audio = "audio off (acknowledged)"
        self.banner.show_state(top.priority, bright, text, audio)

    def _update_status(self, mons: dict, mon, state) -> None:
        lab = self.status_labels
        src = ", ".join(self.sources) if self.sources else ", ".join(mons)
        lab["source"].setText(f"Source: {src}")
        lab["rate"].setText(f"{mon.fs:g} Hz" if mon is not None else "")
        lost = sum(s.lost_messages for s in self.feed.streams.values())
        lab["lost"].setText(f"lost messages: {lost}")
        lat = [s.latency_s for s in self.feed.streams.values() if s.latency_s is not None]
        lab["latency"].setText(f"latency: {1000 * max(lat):.0f} ms" if lat else "latency: —")
        lab["fps"].setText(f"{self.fps():.0f} fps")
        if self.paused:
            st = "PAUSED"
        elif mons and all(m.ended for m in mons.values()):
            st = "ended"
        else:
            st = "live"
        lab["state"].setText(st)

    def fps(self, seconds: float = 2.0) -> float:
        """Frames per second over the last ``seconds``."""
        stamps = self.frame_stamps
        if len(stamps) < 2:
            return 0.0
        t_end = stamps[-1]
        n = 0
        for t in reversed(stamps):
            if t_end - t > seconds:
                break
            n += 1
        span = t_end - stamps[-n] if n > 1 else 0.0
        return (n - 1) / span if span > 0 else 0.0

    def capture(self, path: str) -> bool:
        """Save the window as a PNG."""
        return bool(self.grab().save(str(path), "PNG"))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Stop the monitor with the window."""
        self.timer.stop()
        self.runner.stop_event.set()
        self.inspector.close()
        super().closeEvent(event)
