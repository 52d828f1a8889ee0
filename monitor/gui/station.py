"""Central station: a grid of compact tiles, one per stream (trace, heart rate, alarm)."""

from __future__ import annotations

import math

from PyQt5 import QtCore, QtWidgets

from . import palette
from .feed import StreamState
from .trace import TraceView


def _hr_text(hr: float | None) -> str:
    return "---" if hr is None or not math.isfinite(hr) else f"{hr:.0f}"


class Tile(QtWidgets.QFrame):
    """One stream in the central station; a click asks to enlarge it."""

    clicked = QtCore.pyqtSignal(str)

    def __init__(self, stream: str, parent=None) -> None:
        super().__init__(parent)
        self.stream = stream
        self.setObjectName("tile")
        self.setFrameShape(QtWidgets.QFrame.Box)
        self.setCursor(QtCore.Qt.PointingHandCursor)
        lay = QtWidgets.QGridLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(2)
        self.name = QtWidgets.QLabel(stream)
        self.name.setStyleSheet(f"color: {palette.FOREGROUND}; font-weight: bold;")
        self.alarm = QtWidgets.QLabel("")
        self.alarm.setAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
        self.trace = TraceView(compact=True)
        self.trace.set_speed(25.0)
        self.trace.setMinimumHeight(50)
        self.hr = QtWidgets.QLabel("---")
        self.hr.setStyleSheet(f"color: {palette.HR}; font-size: 30px; font-weight: bold;")
        self.hr.setAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
        self.hr.setMinimumWidth(64)
        lay.addWidget(self.name, 0, 0)
        lay.addWidget(self.alarm, 0, 1, 1, 2)
        lay.addWidget(self.trace, 1, 0, 1, 2)
        lay.addWidget(self.hr, 1, 2)
        lay.setColumnStretch(0, 1)
        self._style_key = None
        self.set_alarm(None, "", False)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Enlarge on click."""
        self.clicked.emit(self.stream)
        super().mousePressEvent(event)

    def set_alarm(self, priority: str | None, text: str, bright: bool) -> None:
        """Show the most urgent alarm of the stream (``bright``: flash phase)."""
        key = (priority, text, bright)
        if key == self._style_key:
            return
        self._style_key = key
        if priority is None:
            self.alarm.setText("")
            self.alarm.setStyleSheet("")
            self.setStyleSheet(f"#tile {{ border: 1px solid #26303a; background: {palette.BACKGROUND}; }}")
            return
        bg, fg, _ = palette.ALARM_STYLE[priority]
        if bright:
            self.alarm.setStyleSheet(f"background: {bg}; color: {fg}; font-weight: bold; padding: 0 4px;")
            self.setStyleSheet(f"#tile {{ border: 2px solid {bg}; background: {palette.BACKGROUND}; }}")
        else:
            self.alarm.setStyleSheet(f"color: {bg}; font-weight: bold; padding: 0 4px;")
            self.setStyleSheet(f"#tile {{ border: 2px solid #26303a; background: {palette.BACKGROUND}; }}")
        self.alarm.setText(text)

    def update_from(self, monitor, state: StreamState | None) -> None:
        """Redraw trace and heart rate."""
        if monitor is not None:
            self.trace.update_from(monitor, None)
        if state is not None:
            hr = _hr_text(state.hr_bpm)
            if self.hr.text() != hr:
                self.hr.setText(hr)


class StationGrid(QtWidgets.QWidget):
    """Tiles of every stream, in a grid about as wide as tall."""

    tileClicked = QtCore.pyqtSignal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.grid = QtWidgets.QGridLayout(self)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.grid.setSpacing(3)
        self.tiles: dict[str, Tile] = {}

    def add_stream(self, stream: str) -> Tile:
        """Add a tile for ``stream`` (relaying the grid)."""
        tile = Tile(stream)
        tile.clicked.connect(self.tileClicked)
        self.tiles[stream] = tile
        self._relayout()
        return tile

    def _relayout(self) -> None:
        for t in self.tiles.values():
            self.grid.removeWidget(t)
        n = len(self.tiles)
        cols = max(1, math.ceil(math.sqrt(n)))
        if n > 2 and cols * (cols - 1) >= n:
            rows = cols - 1
        else:
            rows = math.ceil(n / cols)
        for i, t in enumerate(self.tiles.values()):
            self.grid.addWidget(t, i // cols, i % cols)
        for r in range(rows):
            self.grid.setRowStretch(r, 1)
        for c in range(cols):
            self.grid.setColumnStretch(c, 1)
