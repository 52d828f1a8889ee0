"""Sources and the wire format of the ECG monitor.

This package is the bottom layer of the project: it reads WFDB records
(MIT-BIH and any other PhysioNet database), simulates ECG, and streams
samples over ZeroMQ in the documented wire protocol (``docs/protocol.md``).
The ``monitor`` package builds on it; it imports nothing from ``monitor`` or
``trainer``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ecg-monitor")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
