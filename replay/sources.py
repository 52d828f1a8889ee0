"""Source specifications given on the command line.

A source is written ``KIND:ARGUMENT``:

``replay:RECORD``
    A WFDB record replayed over ZeroMQ: a name looked up in the data
    directory (``replay:100``) or a path (``replay:/data/mitdb/100``).
``sim:SPEC``
    The ECG simulator (``sim:72``, ``sim:72,ectopic=0.1,noise=0.05``); see
    :mod:`replay.sim`.
``zmq:ENDPOINT``
    Any publisher speaking ``docs/protocol.md`` (``zmq:tcp://127.0.0.1:5555``).
``serial:PORT``
    A serial ECG sensor (``serial:/dev/ttyUSB0``).

A bare record name or path (``100``) means ``replay:100``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

SOURCE_KINDS = ("replay", "sim", "zmq", "serial")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: its kind and the text after the colon."""

    kind: str
    argument: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.argument}"


def parse_source(text: str) -> SourceSpec:
    """Parse a ``KIND:ARGUMENT`` source specification.

    Raises
    ------
    ConfigError
        On an empty argument or an unknown kind (with a suggestion).
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("source must not be empty; try replay:100 or sim:72")
    text = text.strip()
    kind, sep, arg = text.partition(":")
    if not sep or kind not in SOURCE_KINDS:
        # a bare record name or a path (which may itself hold ':' on Windows)
        if sep and kind.isalpha() and len(kind) > 1:
            import difflib

            close = difflib.get_close_matches(kind, SOURCE_KINDS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown source kind {kind!r} in {text!r}; use one of "
                f"{', '.join(k + ':' for k in SOURCE_KINDS)}.{hint}"
            )
        return SourceSpec("replay", text)
    if not arg:
        raise ConfigError(f"source {text!r} lacks its argument after ':' (e.g. {kind}:...)")
    return SourceSpec(kind, arg)


def load_source_record(
    spec: SourceSpec,
    data_dir: str | None = None,
    *,
    channels=None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    annotations: bool = True,
):
    """Return the :class:`~replay.wfdb_source.Record` behind a replay or sim source.

    Parameters
    ----------
    spec : SourceSpec
        A ``replay`` or ``sim`` source.
    data_dir : str, optional
        Data directory for record names (see :func:`replay.wfdb_source.resolve_data_dir`).
    channels : str, int or list, optional
        Channels to keep (names or indices); default all.
    start_s, duration_s : float
        Part of the record to keep, in seconds.
    annotations : bool
        Load reference annotations when the record has them.
    """
    from .wfdb_source import load_record

    if spec.kind == "replay":
        return load_record(
            spec.argument,
            data_dir,
            channels=channels,
            annotations=annotations,
            start_s=start_s,
            duration_s=duration_s,
        )
    if spec.kind == "sim":
        from .sim import parse_sim_spec, simulate_record

        cfg = parse_sim_spec(f"sim:{spec.argument}")
        if duration_s is not None:
            total = start_s + duration_s
            if total > cfg.duration_s:
                import dataclasses

                cfg = dataclasses.replace(cfg, duration_s=float(np.ceil(total)))
        record = simulate_record(cfg)
        return crop_record(record, start_s, duration_s, annotations=annotations)
    raise ConfigError(f"source {spec} is not a record or simulator (use replay: or sim:)")


def crop_record(record, start_s: float = 0.0, duration_s: float | None = None, *, annotations=True):
    """Return ``record`` cut to ``[start_s, start_s + duration_s)``, annotations re-based."""
    import dataclasses

    a = int(round(start_s * record.fs))
    n = record.signal.shape[0]
    if a >= n:
        raise ConfigError(
            f"--start {start_s} s is beyond the end of {record.name} ({n / record.fs:.1f} s)"
        )
    b = n if duration_s is None else min(n, a + int(round(duration_s * record.fs)))
    ann = record.annotations if annotations else None
    if ann is not None:
        keep = (ann.sample >= a) & (ann.sample < b)
        idx = np.flatnonzero(keep)
        ann = dataclasses.replace(
            ann,
            sample=ann.sample[idx] - a,
            symbol=[ann.symbol[i] for i in idx],
            aux=[ann.aux[i] for i in idx],
        )
    return dataclasses.replace(record, signal=record.signal[a:b], annotations=ann)
