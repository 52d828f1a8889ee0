"""The monitor window: a thin PyQt5 / pyqtgraph view over the running monitor.

Nothing here processes the signal: the window reads the ring buffers and the
events of :class:`monitor.runner.MonitorRunner` (see ``docs/gui.md``).
:func:`monitor.gui.app.run_window` is the entry point of ``ecg-monitor``
without ``--headless``.
"""
