"""Beat inspector: a clicked beat's window, class probabilities and saliency map.

The computation is :mod:`monitor.explain` (integrated gradients, on demand);
this module only draws it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from monitor.explain import beat_inputs, explain_beat

from . import palette
from .feed import Beat

logger = logging.getLogger(__name__)

#: Signal before the beat read from the ring buffer for its RR history and template, in s.
HISTORY_S = 20.0
#: Signal after the beat (post-RR and the window's end), in s.
AFTER_S = 3.0


@dataclass
class Inspection:
    """What the inspector shows for one beat."""

    stream: str
    sample: int
    time_s: float
    label: str
    ref: str | None
    classes: tuple
    probs: np.ndarray | None
    probs_source: str
    t_s: np.ndarray
    window: np.ndarray | None
    saliency: np.ndarray | None
    ecg_t_s: np.ndarray
    ecg_mv: np.ndarray
    note: str = ""


def _event_probs(prob, classes) -> np.ndarray | None:
    """The beat event's probabilities as an array in ``classes`` order (None if absent)."""
    if prob is None:
        return None
    if isinstance(prob, dict):
        return np.array([float(prob.get(c, 0.0)) for c in classes], dtype=np.float32)
    arr = np.asarray(prob, dtype=np.float32).ravel()
    return arr if arr.size == len(classes) else None


def inspect_beat(monitor, beat: Beat, classifier=None, steps: int = 32) -> Inspection:
    """Gather the inspector's data for ``beat`` of ``monitor`` (GUI thread, on demand)."""
    fs = monitor.fs
    rb = monitor.filtered
    end, oldest = rb.end, rb.oldest
    a = max(oldest, beat.sample - int(HISTORY_S * fs))
    b = min(end, beat.sample + int(AFTER_S * fs))
    seg = rb.read(a, b)[:, 0].astype(np.float64) if b > a else np.zeros(0)
    w0 = max(0, beat.sample - int(0.6 * fs) - a)
    w1 = min(seg.size, beat.sample + int(0.6 * fs) - a)
    ecg_t = (np.arange(w0, w1) + a - beat.sample) / fs
    ecg = seg[w0:w1]
    classes = tuple(getattr(classifier, "classes", ())) or ("N", "L", "R", "A", "V", "F", "Q")
    probs = _event_probs(beat.prob, classes)
    source = "live decision" if probs is not None else ""
    note = ""
    t_s = np.zeros(0)
    window = saliency = None
    if classifier is None:
        note = "No classifier loaded: saliency unavailable (start with a model)."
    elif seg.size == 0:
        note = "The beat is no longer in the ring buffer."
    else:
        beats = np.asarray([s for s in list(monitor.beats) if a <= s < b], dtype=np.int64)
        if beat.sample not in set(beats.tolist()):
            beats = np.sort(np.append(beats, beat.sample))
        try:
            inputs = beat_inputs(classifier, seg, a, beats, beat.sample, fs)
            p, saliency = explain_beat(classifier, inputs.window, inputs.rr, steps=steps)
            window, t_s = inputs.window, inputs.t_s
            if probs is None:
                probs, source = p, "recomputed from the held signal"
        except (ValueError, RuntimeError) as err:
            note = f"Saliency unavailable: {err}"
    return Inspection(
        stream=monitor.stream,
        sample=beat.sample,
        time_s=beat.sample / fs,
        label=beat.label,
        ref=beat.ref,
        classes=classes,
        probs=probs,
        probs_source=source,
        t_s=t_s,
        window=window,
        saliency=saliency,
        ecg_t_s=ecg_t,
        ecg_mv=ecg,
        note=note,
    )


class InspectorDialog(QtWidgets.QDialog):
    """Non-modal window showing one :class:`Inspection`."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Beat inspector")
        self.resize(760, 560)
        self.setStyleSheet(f"background: {palette.PANEL}; color: {palette.FOREGROUND};")
        lay = QtWidgets.QVBoxLayout(self)
        self.title = QtWidgets.QLabel("")
        self.title.setStyleSheet("font-size: 15px; font-weight: bold;")
        lay.addWidget(self.title)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground(palette.BACKGROUND)
        lay.addWidget(self.plots, 1)
        self.note = QtWidgets.QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet(f"color: {palette.DIM};")
        lay.addWidget(self.note)
        self.ecg_plot = self.plots.addPlot(row=0, col=0, colspan=2)
        self.ecg_plot.setLabel("left", "ECG", units="mV")
        self.ecg_plot.setLabel("bottom", "Time from R peak", units="s")
        self.ecg_plot.getAxis("left").enableAutoSIPrefix(False)
        self.ecg_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.ecg_curve = self.ecg_plot.plot(pen=pg.mkPen(palette.TRACE, width=1.6), connect="finite")
        self.sal_plot = self.plots.addPlot(row=1, col=0)
        self.sal_plot.setLabel("left", "Model input", units="z")
        self.sal_plot.setLabel("bottom", "Time from R peak", units="s")
        self.sal_plot.getAxis("left").enableAutoSIPrefix(False)
        self.sal_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.sal_bars = pg.BarGraphItem(x=[], height=[], width=0.005, brushes=[])
        self.sal_plot.addItem(self.sal_bars)
        self.win_curve = self.sal_plot.plot(pen=pg.mkPen(palette.TRACE, width=1.6))
        self.tpl_curve = self.sal_plot.plot(pen=pg.mkPen(palette.DIM, width=1, style=QtCore.Qt.DashLine))
        self.prob_plot = self.plots.addPlot(row=1, col=1)
        self.prob_plot.setLabel("bottom", "Probability")
        self.prob_plot.setXRange(0, 1, padding=0.02)
        self.prob_bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brushes=[])
        self.prob_plot.addItem(self.prob_bars)
        self.plots.ci.layout.setColumnStretchFactor(0, 3)
        self.plots.ci.layout.setColumnStretchFactor(1, 1)
        self.inspection: Inspection | None = None

    def show_inspection(self, ins: Inspection) -> None:
        """Draw ``ins``."""
        self.inspection = ins
        ref = f", reference {ins.ref}" if ins.ref else ""
        self.title.setText(f"Stream {ins.stream} — beat at {ins.time_s:.2f} s: {ins.label}{ref}")
        self.ecg_curve.setData(ins.ecg_t_s, ins.ecg_mv)
        if ins.window is not None and ins.saliency is not None:
            w = ins.window
            self.win_curve.setData(ins.t_s, w[0])
            if w.shape[0] > 1:
                self.tpl_curve.setData(ins.t_s, w[1])
            else:
                self.tpl_curve.setData([], [])
            sal = ins.saliency.sum(axis=0)
            peak = float(np.abs(sal).max()) or 1.0
            scale = float(np.abs(w[0]).max() or 1.0) / peak
            brushes = [pg.mkBrush("#e69f00" if v >= 0 else "#0072b2") for v in sal]
            dt = float(ins.t_s[1] - ins.t_s[0]) if ins.t_s.size > 1 else 0.01
            self.sal_bars.setOpts(x=ins.t_s, height=sal * scale, width=dt * 0.9, brushes=brushes)
            self.sal_plot.setTitle("Saliency (integrated gradients): orange for, blue against the class")
        else:
            self.win_curve.setData([], [])
            self.tpl_curve.setData([], [])
            self.sal_bars.setOpts(x=[], height=[], width=0.005, brushes=[])
            self.sal_plot.setTitle("Saliency unavailable")
        if ins.probs is not None:
            n = len(ins.classes)
            brushes = [pg.mkBrush(palette.AAMI_COLOURS[palette.aami_of(c)]) for c in ins.classes]
            self.prob_bars.setOpts(x0=np.zeros(n), y=np.arange(n), width=ins.probs, height=0.7, brushes=brushes)
            ax = self.prob_plot.getAxis("left")
            ax.setTicks([[(i, f"{c} {p:.2f}") for i, (c, p) in enumerate(zip(ins.classes, ins.probs))]])
            self.prob_plot.setTitle(f"Class probabilities ({ins.probs_source})")
        else:
            self.prob_bars.setOpts(x0=[], y=[], width=[], height=0.7, brushes=[])
            self.prob_plot.setTitle("No probabilities")
        self.note.setText(ins.note)
