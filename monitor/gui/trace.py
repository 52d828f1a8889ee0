"""The ECG trace: bedside sweep (or scrolling) view of one stream's filtered lead.

:class:`TraceView` reads the last ``window_s`` seconds of a
:class:`~monitor.ringbuffer.RingBuffer` at every frame into preallocated
arrays and hands them to one curve (``connect="finite"``: NaN holes, lead-off
and the sweep's erase bar break the line).  Beat labels are drawn by a single
:class:`pyqtgraph.ScatterPlotItem` whose symbols are the class letters
(``QPainterPath`` glyphs), one row for the classifier and, on annotated
replays, a second row for the reference annotation; a label that disagrees
with the reference gets a red outline and a red box.

Paper speed and gain are given as on an ECG printout: 25 mm/s shows 10 s on
a 250 mm trace, 10 mm/mV shows 4 mV over a 40 mm trace.
"""

from __future__ import annotations

import logging

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui

from . import palette
from .feed import MATCH_S, StreamState, match_reference, reference_between

logger = logging.getLogger(__name__)

#: Paper speeds offered (mm/s) and the seconds each shows on a 250 mm trace.
SPEEDS_MM_S = (50.0, 25.0, 12.5)
TRACE_WIDTH_MM = 250.0
#: Gains offered (mm/mV) and the trace height they refer to.
GAINS_MM_MV = (5.0, 10.0, 20.0, 40.0)
TRACE_HEIGHT_MM = 40.0
#: Width of the sweep's erase bar, in seconds.
ERASE_S = 0.3
MODES = ("sweep", "scroll")

_glyphs: dict[str, QtGui.QPainterPath] = {}
_brushes: dict[str, QtGui.QBrush] = {}
_pens: dict[str, QtGui.QPen] = {}


def _brush(colour: str) -> QtGui.QBrush:
    """One shared brush per colour: the scatter's symbol atlas keys on the brush object."""
    b = _brushes.get(colour)
    if b is None:
        b = _brushes[colour] = pg.mkBrush(colour)
    return b


def _pen(colour: str | None, width: float = 1.0) -> QtGui.QPen:
    """One shared pen per (colour, width) (see :func:`_brush`)."""
    key = f"{colour}/{width}"
    p = _pens.get(key)
    if p is None:
        p = _pens[key] = pg.mkPen(colour, width=width) if colour else pg.mkPen(None)
    return p


def letter_symbol(text: str) -> QtGui.QPainterPath:
    """A ``QPainterPath`` of ``text`` centred on (0, 0), about 1 unit tall (a scatter symbol)."""
    path = _glyphs.get(text)
    if path is None:
        font = QtGui.QFont("DejaVu Sans", 10)
        font.setBold(True)
        raw = QtGui.QPainterPath()
        raw.addText(0, 0, font, text)
        br = raw.boundingRect()
        metrics_h = QtGui.QFontMetricsF(font).capHeight() or br.height()
        scale = 1.0 / max(metrics_h, 1e-6)
        tr = QtGui.QTransform()
        tr.scale(scale, scale)
        tr.translate(-br.x() - br.width() / 2.0, -br.y() - br.height() / 2.0)
        path = _glyphs[text] = tr.map(raw)
    return path


def collapse_gaps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep one NaN per run of NaN in ``y`` (the line breaks the same way, drawn far faster).

    pyqtgraph's ``connect="finite"`` path splits the curve at every non-finite
    point, so a long hole (the sweep's erase bar, a lead-off, the empty part of
    the first sweep) would cost one sub-path per missing sample.
    """
    finite = np.isfinite(y)
    if finite.all():
        return x, y
    keep = finite.copy()
    keep[1:] |= finite[:-1]  # the first NaN after a finite sample
    keep[0] = True
    return x[keep], y[keep]


class TraceView(pg.PlotWidget):
    """One stream's ECG trace with beat labels.

    Parameters
    ----------
    compact : bool
        A central-station tile: no axes, no labels rows.
    parent : QWidget, optional
    """

    #: Emitted with the absolute sample of the beat nearest a click.
    beatClicked = QtCore.pyqtSignal(int)

    def __init__(self, compact: bool = False, parent=None) -> None:
        super().__init__(parent=parent, background=palette.BACKGROUND)
        self.compact = compact
        self.mode = "sweep"
        self.speed_mm_s = 25.0
        self.gain_mm_mv = 10.0
        self.show_grid = not compact
        self.show_labels = not compact
        self.fs: float | None = None
        self._n = 0
        self._end = 0
        self._start = 0
        self._label_key = None
        self._grid_key = None
        pi = self.getPlotItem()
        self.plot_item = pi
        pi.setMenuEnabled(False)
        pi.hideButtons()
        pi.setMouseEnabled(x=False, y=False)
        pi.setDownsampling(auto=True, mode="peak")
        pi.setClipToView(True)
        vb = pi.getViewBox()
        vb.setDefaultPadding(0.0)
        if compact:
            pi.hideAxis("left")
            pi.hideAxis("bottom")
        else:
            axis_pen = pg.mkPen(palette.DIM)
            for name in ("left", "bottom"):
                ax = pi.getAxis(name)
                ax.setPen(axis_pen)
                ax.setTextPen(pg.mkPen(palette.DIM))
            pi.setLabel("left", "ECG", units="mV", color=palette.DIM)
            pi.setLabel("bottom", "Time", units="s", color=palette.DIM)
            pi.getAxis("left").enableAutoSIPrefix(False)
            pi.getAxis("bottom").enableAutoSIPrefix(False)
        self.grid_minor = pg.PlotCurveItem(pen=pg.mkPen(palette.GRID_MINOR, width=1), connect="pairs")
        self.grid_major = pg.PlotCurveItem(pen=pg.mkPen(palette.GRID_MAJOR, width=1), connect="pairs")
        for item in (self.grid_minor, self.grid_major):
            item.setZValue(-10)
            pi.addItem(item)
        if compact:
            # tiles: a bare curve with a 1-pixel pen (wide pens take the slow stroker)
            self.curve = pg.PlotCurveItem(pen=pg.mkPen(palette.TRACE, width=1), connect="finite", skipFiniteCheck=True)
            pi.addItem(self.curve)
        else:
            self.curve = pi.plot(pen=pg.mkPen(palette.TRACE, width=1.8), connect="finite", skipFiniteCheck=True)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen(palette.CURSOR, width=2))
        pi.addItem(self.cursor)
        self.cursor.setVisible(not compact)
        # every beat label of the view, classifier row and reference row: ONE item
        self.labels = pg.ScatterPlotItem(pxMode=True, size=15, hoverable=False)
        self.labels.setZValue(10)
        # boxes around labels that disagree with the reference
        self.marks = pg.ScatterPlotItem(pxMode=True, size=22, symbol="s", brush=None,
                                        pen=pg.mkPen(palette.DISAGREE, width=1.5))  # fmt: skip
        self.marks.setZValue(9)
        pi.addItem(self.marks)
        pi.addItem(self.labels)
        if compact:
            for item in (self.marks, self.labels, self.grid_minor, self.grid_major):
                item.setVisible(False)
        # row captions, small, above the rows' left end (clear of the letters)
        self.ref_caption = pg.TextItem("reference", color=palette.DIM, anchor=(0, 1.25))
        self.model_caption = pg.TextItem("classifier", color=palette.DIM, anchor=(0, 1.25))
        small = QtGui.QFont()
        small.setPointSize(7)
        for cap in (self.ref_caption, self.model_caption):
            cap.setFont(small)
            cap.setZValue(10)
            pi.addItem(cap)
            cap.setVisible(False)
        self.message = pg.TextItem("", color=palette.FOREGROUND, anchor=(0.5, 0.5))
        font = QtGui.QFont()
        font.setPointSize(14 if not compact else 10)
        self.message.setFont(font)
        pi.addItem(self.message)
        self.scene().sigMouseClicked.connect(self._clicked)
        self._apply_ranges()

    # ------------------------------------------------------------ settings
    @property
    def window_s(self) -> float:
        """Seconds shown (the paper speed over a 250 mm trace)."""
        return TRACE_WIDTH_MM / self.speed_mm_s

    @property
    def span_mv(self) -> float:
        """Millivolts over the trace height at the current gain."""
        return TRACE_HEIGHT_MM / self.gain_mm_mv

    def set_mode(self, mode: str) -> None:
        """``"sweep"`` (fixed paper, moving erase bar) or ``"scroll"`` (moving paper)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self._reset_view()

    def set_speed(self, mm_s: float) -> None:
        """Paper speed in mm/s (one of :data:`SPEEDS_MM_S`)."""
        if mm_s not in SPEEDS_MM_S:
            raise ValueError(f"speed must be one of {SPEEDS_MM_S} mm/s, got {mm_s}")
        self.speed_mm_s = float(mm_s)
        self._reset_view()

    def set_gain(self, mm_mv: float) -> None:
        """Gain in mm/mV (one of :data:`GAINS_MM_MV`)."""
        if mm_mv not in GAINS_MM_MV:
            raise ValueError(f"gain must be one of {GAINS_MM_MV} mm/mV, got {mm_mv}")
        self.gain_mm_mv = float(mm_mv)
        self._reset_view()

    def set_grid(self, on: bool) -> None:
        """Show or hide the ECG-paper grid."""
        self.show_grid = bool(on)
        self.grid_minor.setVisible(self.show_grid)
        self.grid_major.setVisible(self.show_grid)
        self._grid_key = None

    def _reset_view(self) -> None:
        self._n = 0
        self._label_key = None
        self._grid_key = None
        self._apply_ranges()

    def _y_range(self) -> tuple[float, float, float, float]:
        """(low, high, model label row, reference row) in mV."""
        span = self.span_mv
        low, high = -0.45 * span, 0.55 * span
        if self.show_labels:
            row = high + 0.12 * span
            ref = high + 0.27 * span
            return low, high + 0.34 * span, row, ref
        return low, high, high, high

    def _apply_ranges(self) -> None:
        low, high, _, _ = self._y_range()
        self.plot_item.setYRange(low, high, padding=0)
        if self.mode == "sweep" or self.fs is None:
            self.plot_item.setXRange(0, self.window_s, padding=0)

    # ------------------------------------------------------------ drawing
    def _allocate(self, fs: float) -> None:
        self.fs = float(fs)
        self._n = max(2, int(round(self.window_s * self.fs)))
        self._ar = np.arange(self._n, dtype=np.float64)
        self._x = self._ar / self.fs
        self._y = np.full(self._n, np.nan, dtype=np.float64)
        self._label_key = None
        self._grid_key = None
        self._apply_ranges()

    def clear_trace(self, text: str = "") -> None:
        """Blank the trace (no stream yet) and show ``text`` in the middle."""
        self.curve.setData([], [])
        self.labels.setData([])
        self.marks.setData([])
        self.cursor.setVisible(False)
        self.show_message(text)

    def show_message(self, text: str) -> None:
        """A line of text over the middle of the trace ("" hides it)."""
        self.message.setText(text)
        self.message.setVisible(bool(text))
        if text:
            x0, x1 = self.plot_item.getViewBox().viewRange()[0]
            low, high, _, _ = self._y_range()
            self.message.setPos((x0 + x1) / 2, (low + high) / 2)

    def update_from(self, monitor, state: StreamState | None = None) -> bool:
        """Redraw from ``monitor.filtered`` (and ``state``'s beats); False if nothing to draw.

        ``monitor`` is a :class:`~monitor.pipeline.StreamMonitor` filled by
        the runner thread; only its ring buffer (and reference lists) are read.
        """
        rb = monitor.filtered
        if self.fs != monitor.fs or self._n == 0:
            self._allocate(monitor.fs)
        n_all = self._n
        end = rb.end
        if rb.first is None:
            return False
        start = max(end - n_all, rb.oldest)
        try:
            data = rb.read(start, end)[:, 0]
        except ValueError:  # the writer moved on between end and read: next frame
            return False
        start = end - data.shape[0]
        self._start, self._end = start, end
        fs = self.fs
        if self.mode == "sweep":
            y = self._y
            y.fill(np.nan)
            k = end % n_all
            if data.shape[0] == n_all:
                # samples [end - n, end) land on positions (s mod n): two slices
                y[k:] = data[: n_all - k]
                y[:k] = data[n_all - k :]
            else:
                pos = np.arange(start, end) % n_all
                y[pos] = data
            erase = int(ERASE_S * fs)
            e1 = k + erase
            y[k:e1] = np.nan
            if e1 > n_all:
                y[: e1 - n_all] = np.nan
            self.curve.setData(*collapse_gaps(self._x, y), connect="finite", skipFiniteCheck=True)
            if not self.compact:  # tiles: the erase bar alone shows the sweep
                self.cursor.setVisible(True)
                self.cursor.setPos(k / fs)
        else:
            m = data.shape[0]
            x = self._x[:m]
            np.add(self._ar[:m], start, out=x)
            x /= fs
            self._y[:m] = data
            self.curve.setData(*collapse_gaps(x, self._y[:m]), connect="finite", skipFiniteCheck=True)
            self.cursor.setVisible(False)
            t1 = end / fs
            self.plot_item.setXRange(t1 - self.window_s, t1, padding=0)
            # the absolute x of the scroll mode rebuilds the grid every frame
        if self.show_grid:
            self._draw_grid()
        if self.show_labels and state is not None:
            self._draw_labels(monitor, state)
        return True

    def _x_of(self, samples: np.ndarray) -> np.ndarray:
        if self.mode == "sweep":
            return (samples % self._n) / self.fs
        return samples / self.fs

    def _draw_grid(self) -> None:
        low, high, _, _ = self._y_range()
        if self.mode == "sweep":
            x0, x1 = 0.0, self.window_s
        else:
            x1 = self._end / self.fs
            x0 = x1 - self.window_s
        key = (round(x0 / 0.04), self.mode, self.speed_mm_s, self.gain_mm_mv)
        if key == self._grid_key:
            return
        self._grid_key = key
        # 1 mm = 0.04 s at 25 mm/s and 0.1 mV at 10 mm/mV; a major box is 5 mm
        sec_per_mm = 1.0 / self.speed_mm_s
        mv_per_mm = 1.0 / self.gain_mm_mv
        for item, step_mm in ((self.grid_minor, 1.0), (self.grid_major, 5.0)):
            dx, dy = step_mm * sec_per_mm, step_mm * mv_per_mm
            xs = np.arange(np.ceil(x0 / dx), np.floor(x1 / dx) + 1) * dx
            ys = np.arange(np.ceil(low / dy), np.floor(high / dy) + 1) * dy
            vx = np.repeat(xs, 2)
            vy = np.tile([low, high], xs.size)
            hx = np.tile([x0, x1], ys.size)
            hy = np.repeat(ys, 2)
            item.setData(np.concatenate([vx, hx]), np.concatenate([vy, hy]), connect="pairs")

    def _draw_labels(self, monitor, state: StreamState) -> None:
        start, end = self._start, self._end
        if self.mode == "sweep":
            start = max(start, end - self._n + int(ERASE_S * self.fs))
        beats = state.beats_between(start, end)
        ref_s, ref_sym = reference_between(monitor.ref_sample, monitor.ref_symbol, start, end)
        key = (
            self.mode,
            self.speed_mm_s,
            self.gain_mm_mv,
            start if self.mode == "sweep" and beats and beats[0].sample < start + self.fs else None,
            tuple(b.sample for b in beats[:1]) + tuple(b.sample for b in beats[-1:]),
            len(beats),
            int(ref_s.size),
            tuple(b.label for b in beats[-1:]),
        )
        if key == self._label_key:
            return
        self._label_key = key
        _, _, row, ref_row = self._y_range()
        tol = int(MATCH_S * self.fs)
        xs, ys, syms, brushes, pens, data = [], [], [], [], [], []
        mark_x = []
        no_pen = _pen(None)
        red_pen = _pen(palette.DISAGREE, 1.2)
        bx = self._x_of(np.asarray([b.sample for b in beats], dtype=np.int64)) if beats else []
        for b, x in zip(beats, bx):
            ref = b.ref or match_reference(b.sample, ref_s, ref_sym, tol)
            ref_aami = palette.aami_of(ref)
            wrong = ref_aami != "?" and b.label != "?" and ref_aami != b.aami
            xs.append(x)
            ys.append(row)
            syms.append(letter_symbol(b.label))
            brushes.append(_brush(palette.AAMI_COLOURS.get(b.aami, palette.AAMI_COLOURS["?"])))
            pens.append(red_pen if wrong else no_pen)
            data.append(b.sample)
            if wrong:
                mark_x.append(x)
        if ref_s.size:
            rx = self._x_of(ref_s)
            for x, sym in zip(rx, ref_sym):
                xs.append(x)
                ys.append(ref_row)
                syms.append(letter_symbol(sym))
                brushes.append(_brush(palette.AAMI_COLOURS[palette.aami_of(sym)]))
                pens.append(no_pen)
                data.append(-1)
        self.labels.setData(x=xs, y=ys, symbol=syms, brush=brushes, pen=pens, data=data, size=15)
        self.marks.setData(x=mark_x, y=[row] * len(mark_x))
        has_ref = bool(ref_s.size) or any(b.ref for b in beats)
        x0 = 0.0 if self.mode == "sweep" else (self._end / self.fs - self.window_s)
        self.model_caption.setVisible(bool(beats) and has_ref)
        self.ref_caption.setVisible(has_ref)
        self.model_caption.setPos(x0, row)
        self.ref_caption.setPos(x0, ref_row)

    # ------------------------------------------------------------ clicks
    def sample_at(self, x_s: float) -> int | None:
        """Absolute sample index shown at view x ``x_s`` (None before any data)."""
        if self.fs is None or self._end == 0:
            return None
        if self.mode == "scroll":
            return int(round(x_s * self.fs))
        p = int(round(x_s * self.fs)) % self._n
        base = self._end - self._n
        return base + ((p - base) % self._n)

    def _clicked(self, event) -> None:
        if event.button() != QtCore.Qt.LeftButton or self.compact:
            return
        vb = self.plot_item.getViewBox()
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        x = vb.mapSceneToView(event.scenePos()).x()
        sample = self.sample_at(x)
        if sample is not None:
            self.beatClicked.emit(sample)
