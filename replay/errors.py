"""Exception hierarchy shared by every package of the project."""


class EcgMonitorError(Exception):
    """Base class of every error the project raises on purpose.

    Command-line tools catch it, print its message in one line and exit
    with status 2.
    """


class ConfigError(EcgMonitorError, ValueError):
    """A parameter or configuration value is invalid."""


class SourceError(EcgMonitorError):
    """A source (record, simulator, serial port, network endpoint) failed."""


class RecordError(SourceError):
    """A WFDB record is missing, unreadable or inconsistent.

    Parameters
    ----------
    path : str
        The file (or record name) concerned.
    problem : str
        What is wrong, in words.
    hint : str, optional
        What the user may do about it.
    """

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        msg = f"{self.path}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class WireFormatError(EcgMonitorError):
    """A ZeroMQ message does not follow the wire protocol (docs/protocol.md)."""
