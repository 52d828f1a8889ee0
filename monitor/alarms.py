"""Alarm engine: physiological and technical alarms from beat and status events.

:class:`AlarmEngine` follows one stream.  It takes the stream's ``beat`` and
``status`` events (``docs/events.md``) as they come, optionally the filtered
ECG, and the index up to which the stream has been analysed, and returns the
``alarm`` events that became known.  It holds no GUI code: the window reads
:meth:`AlarmEngine.active` (what to show, what is audible) and calls
:meth:`AlarmEngine.acknowledge` / :meth:`AlarmEngine.silence`.

Rules
-----
Every limit is an :class:`AlarmConfig` field (seconds ``_s``, beats per
minute ``_bpm``, hertz ``_hz``, counts ``_beats`` / ``_cycles``).  Defaults
follow common bedside-monitor settings (adult).

========================  ========  ===========================================
code                      priority  condition (default limits)
========================  ========  ===========================================
``asystole``              high      no beat for ``asystole_s`` (4 s)
``vfib``                  high      ventricular fibrillation / flutter: see below
``vtach``                 high      >= ``vtach_beats`` (5) consecutive V beats at
                                    >= ``vtach_rate_bpm`` (100 bpm)
``brady_extreme``         high      heart rate < ``hr_extreme_low_bpm`` (40) for
                                    ``extreme_persist_s`` (2 s)
``tachy_extreme``         high      heart rate > ``hr_extreme_high_bpm`` (140) for
                                    ``extreme_persist_s``
``brady``                 medium    heart rate < ``hr_low_bpm`` (50) for
                                    ``rate_persist_s`` (5 s)
``tachy``                 medium    heart rate > ``hr_high_bpm`` (120) for
                                    ``rate_persist_s``
``pause``                 medium    no beat for ``pause_s`` (2 s)
``vrun``                  medium    a run of ``vrun_min_beats`` (3) or more V beats
                                    that is not ``vtach`` (shorter, or slower)
``afib``                  medium    irregular RR intervals (see below)
``couplet``               low       exactly 2 consecutive V beats
``bigeminy``              low       ``bigeminy_cycles`` (3) cycles of V N: N V N V N V
``trigeminy``             low       ``trigeminy_cycles`` (3) cycles of V N N
``r_on_t``                low       a V beat after a non-V beat with coupling
                                    interval < ``r_on_t_s`` (0.36 s) or
                                    < ``r_on_t_ratio`` (0.33) x the preceding RR
``pvc_rate``              low       > ``pvc_per_min`` (10) V beats in the last
                                    ``pvc_window_s`` (60 s)
``leads_off``             technical ``lead-off`` status until ``lead-on``
``noisy``                 technical ``noisy`` status until ``clean``
``no_data``               technical ``no-data`` status until ``data``
========================  ========  ===========================================

*Heart rate* is 60 / median of the last ``hr_beats`` (8) RR intervals, in
bpm; an RR interval is never taken across a hole (a beat whose ``rr`` is
null), a technical alarm or a beat out of order.  A beat is *ventricular*
when its ``label`` is ``"V"`` or its ``aami`` class is ``"V"`` (MIT-BIH ``V``
and ``E`` beats); every other beat (``N L R A F Q ?``) counts as non-V.

*R-on-T* uses the interval from the preceding beat (the coupling interval)
as a stand-in for the R-to-T position: the T wave of the preceding beat ends
about one QT after it, and QT is roughly 0.36-0.44 s at normal rates
(Bazett), so a PVC earlier than 0.36 s, or earlier than a third of the
preceding RR at slow rates, is taken as falling on the T wave.

*Ventricular fibrillation / flutter* is found in the filtered ECG when the
``signal`` argument is given (without it the rule never fires): every
``vf_step_s`` (1 s) the last ``vf_window_s`` (4 s) are analysed with a
Hamming-windowed FFT, after Barro et al.'s spectral algorithm [1]_: the
dominant frequency (largest power between 0.5 and 20 Hz) must lie within
``vf_low_hz`` - ``vf_high_hz`` (3 - 8 Hz, 180 - 480 /min), the fraction of
the 0.5 - 30 Hz power within 0.7 - 1.4 times the dominant frequency
(*spectral concentration*) must be at least ``vf_concentration``, the
peak-to-peak amplitude at least ``vf_min_mv``, and the window must contain
at most ``vf_max_normal_beats`` beats labelled N, L, R or A (no reliable
supraventricular QRS).  The alarm turns on when this holds for
``vf_persist_s``.

*Atrial fibrillation* uses the irregularity of the RR intervals between two
consecutive normal beats (``N L R`` or unlabelled ``?``; intervals touching
an ectopic beat are left out): over the last ``afib_window_beats`` such
intervals, the normalised RMSSD (root mean square of successive differences
divided by the mean RR) must exceed ``afib_rmssd`` and the share of intervals
differing by more than 50 ms from the previous one (pNN50 of differences)
must exceed ``afib_pnn50``.  The alarm turns on after ``afib_persist_s``.

States and timing
-----------------
* **On.** An alarm turns on when its condition has held for its persistence
  time (0 unless stated); the event's ``sample`` is when that happened in the
  stream (for example the last beat plus 4 s for asystole), which may be
  before the ``now_sample`` of the call that reports it.
* **Off, medium and low.** A non-latching alarm turns off once its
  condition has been absent for ``hold_s`` (10 s); event-like conditions
  (pause, runs, couplet, R-on-T) are present only at the beat that shows
  them, so they stay on ``hold_s`` after the last occurrence.
* **Off, high (latching).** A high-priority alarm stays on until it has been
  acknowledged *and* its condition is gone (whichever comes last).
* **Technical** alarms follow their status at once (no hold).
* **Suppression.** While ``leads_off`` or ``no_data`` is on, every
  physiological alarm is suppressed; while ``noisy`` is on, every
  physiological alarm but ``vfib`` is.  A suppressed condition is cleared,
  non-latched alarms turn off, beat history (RR, runs, patterns) restarts and
  the asystole / pause clocks start again when the technical alarm ends.
  There is therefore never an asystole alarm from a lead off or missing data,
  nor a tachycardia from noise.
* **Supersession.** Within a family a higher alarm hides a lower one: a
  lower alarm does not turn on, and turns off if it is on, while a higher one
  is present (its condition holds, or it is a non-latched alarm still on):
  see :data:`SUPERSEDES` (for example ``tachy_extreme`` supersedes ``tachy``,
  ``asystole`` supersedes ``pause`` and the bradycardias, and ``vfib``
  supersedes every other physiological alarm).
* **Acknowledge and silence.** :meth:`AlarmEngine.acknowledge` marks alarms
  as seen: they stop sounding and flashing, and latched ones whose condition
  is gone turn off.  :meth:`AlarmEngine.silence` pauses audio and flashing
  of every alarm for ``silence_s`` (120 s) of stream time; alarms are still
  reported and listed.  An alarm that turns on again after turning off is a
  new alarm (not acknowledged).

Alarm event
-----------
``{"type": "alarm", "code", "priority", "state", "stream", "sample", "time",
"message"}``: ``priority`` is ``"high" | "medium" | "low" | "technical"``,
``state`` ``"on" | "off"``, ``sample`` the stream index of the change and
``time`` = ``sample / fs`` in seconds.  ``off`` events may carry ``reason``
(``"cleared"``, ``"acknowledged"``, ``"superseded"``, ``"suppressed"``,
``"end"``).

References
----------
.. [1] S. Barro, R. Ruiz, D. Cabello and J. Mira, "Algorithmic sequential
   decision-making in the frequency domain for life threatening ventricular
   arrhythmias and imitative artefacts: a diagnostic system," J. Biomed.
   Eng., vol. 11, no. 4, pp. 320-328, 1989.
.. [2] A. Amann, R. Tratnig and K. Unterkofler, "Reliability of old and new
   ventricular fibrillation detection algorithms for automated external
   defibrillators," BioMed. Eng. OnLine, vol. 4, 60, 2005.

Examples
--------
>>> engine = AlarmEngine(fs=360.0, stream="demo")
>>> beats = [{"type": "beat", "sample": int(i * 360), "label": "N"} for i in range(5)]
>>> engine.process(beats, now_sample=4 * 360)
[]
>>> [(e["code"], e["state"]) for e in engine.process([], now_sample=10 * 360)]
[('pause', 'on'), ('asystole', 'on'), ('pause', 'off')]
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import logging
import math
import os
import statistics
import tomllib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from replay._validate import check_range
from replay.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "CODES",
    "PRIORITIES",
    "PRIORITY_OF",
    "SUPERSEDES",
    "ActiveAlarm",
    "AlarmConfig",
    "AlarmEngine",
    "vf_spectrum_features",
]

#: Alarm priorities, most urgent first.
PRIORITIES: tuple[str, ...] = ("high", "medium", "low", "technical")

#: Priority of each alarm code.
PRIORITY_OF: dict[str, str] = {
    "asystole": "high", "vfib": "high", "vtach": "high",
    "brady_extreme": "high", "tachy_extreme": "high",
    "brady": "medium", "tachy": "medium", "pause": "medium", "vrun": "medium", "afib": "medium",
    "couplet": "low", "bigeminy": "low", "trigeminy": "low", "r_on_t": "low", "pvc_rate": "low",
    "leads_off": "technical", "noisy": "technical", "no_data": "technical",
}  # fmt: skip

#: Every alarm code, in priority order.
CODES: tuple[str, ...] = tuple(PRIORITY_OF)

_PHYSIOLOGICAL = tuple(c for c in CODES if PRIORITY_OF[c] != "technical")
_ALL_BUT_VF = tuple(c for c in _PHYSIOLOGICAL if c != "vfib")

#: Codes each alarm hides while it is present (condition family).
SUPERSEDES: dict[str, tuple[str, ...]] = {
    "vfib": _ALL_BUT_VF,
    "asystole": ("pause", "brady_extreme", "brady", "tachy", "tachy_extreme", "afib"),
    "vtach": ("vrun", "couplet", "tachy", "r_on_t"),
    "brady_extreme": ("brady",),
    "tachy_extreme": ("tachy",),
    "vrun": ("couplet",),
    "bigeminy": ("pvc_rate",),
    "trigeminy": ("pvc_rate",),
}

#: Physiological codes suppressed by each technical alarm.
SUPPRESSES: dict[str, tuple[str, ...]] = {
    "leads_off": _PHYSIOLOGICAL,
    "no_data": _PHYSIOLOGICAL,
    "noisy": _ALL_BUT_VF,
}

_MESSAGES = {
    "asystole": "Asystole", "vfib": "VFib/VFlutter", "vtach": "VTach",
    "brady_extreme": "Extreme Brady", "tachy_extreme": "Extreme Tachy",
    "brady": "Brady", "tachy": "Tachy", "pause": "Pause", "vrun": "Run PVCs", "afib": "AFib",
    "couplet": "Pair PVCs", "bigeminy": "Vent Bigeminy", "trigeminy": "Vent Trigeminy",
    "r_on_t": "R-on-T PVC", "pvc_rate": "PVCs/min high",
    "leads_off": "Leads Off", "noisy": "Noisy ECG", "no_data": "No Data",
}  # fmt: skip

_STATUS_TO_ALARM = {
    "lead-off": ("leads_off", True), "lead-on": ("leads_off", False),
    "noisy": ("noisy", True), "clean": ("noisy", False),
    "no-data": ("no_data", True), "data": ("no_data", False),
}  # fmt: skip

_UNIT_SUFFIXES = ("_s", "_bpm", "_hz", "_mv", "_beats", "_cycles", "_per_min")


def _field(default: Any, low: float | None, high: float | None, unit: str, doc: str, **kw) -> Any:
    return dataclasses.field(
        default=default, metadata={"low": low, "high": high, "unit": unit, "doc": doc, **kw}
    )


@dataclass(frozen=True)
class AlarmConfig:
    """Limits of the alarm rules, in physical units (see the module docstring).

    Build one with keywords, :meth:`from_mapping`, :meth:`from_toml` or
    :meth:`with_overrides`; every path validates names, types, ranges and the
    relations between limits, and raises :class:`~replay.errors.ConfigError`
    naming the key, the value and the allowed range.  A key may be given
    without its unit suffix (``hr_high`` for ``hr_high_bpm``).

    Attributes
    ----------
    asystole_s : float
        No beat for this long (seconds) is asystole.
    pause_s : float
        No beat for this long (seconds) is a pause; below ``asystole_s``.
    hr_extreme_low_bpm, hr_low_bpm, hr_high_bpm, hr_extreme_high_bpm : float
        Heart-rate limits in bpm, strictly increasing.
    hr_beats : int
        RR intervals whose median gives the heart rate.
    rate_persist_s, extreme_persist_s : float
        Seconds a (extreme) rate condition must last before the alarm.
    vtach_beats : int
        Consecutive V beats making ventricular tachycardia.
    vtach_rate_bpm : float
        Smallest rate of a VT run, in bpm (60 / mean RR within the run).
    vrun_min_beats : int
        Consecutive V beats making a run (below ``vtach_beats``).
    bigeminy_cycles, trigeminy_cycles : int
        Consecutive V-N (V-N-N) cycles making bigeminy (trigeminy).
    r_on_t_s : float
        Coupling interval (seconds) below which a V beat is R-on-T.
    r_on_t_ratio : float
        Coupling interval below this fraction of the preceding RR is R-on-T.
    pvc_per_min : float
        V beats per minute above which ``pvc_rate`` fires.
    pvc_window_s : float
        Window, in seconds, over which V beats are counted.
    afib_window_beats : int
        Normal-to-normal RR intervals analysed for atrial fibrillation.
    afib_rmssd : float
        Normalised RMSSD (RMSSD / mean RR) above which RR is irregular.
    afib_pnn50 : float
        Share (0-1) of successive RR differences above 50 ms required.
    afib_persist_s : float
        Seconds the irregularity must last before the alarm.
    vf_window_s, vf_step_s : float
        Length of the analysed ECG window and time between analyses (s).
    vf_low_hz, vf_high_hz : float
        Allowed band of the dominant frequency for VF / flutter (Hz).
    vf_concentration : float
        Smallest share (0-1) of the power within 0.7-1.4 x the dominant
        frequency.
    vf_min_mv : float
        Smallest peak-to-peak amplitude of the window, in mV.
    vf_max_normal_beats : int
        Largest number of N/L/R/A-labelled beats in the window.
    vf_persist_s : float
        Seconds the VF criterion must hold before the alarm.
    hold_s : float
        A medium or low alarm turns off after its condition has been absent
        this long (seconds).
    silence_s : float
        Default duration of :meth:`AlarmEngine.silence`, in seconds.
    disabled : tuple of str
        Alarm codes never raised.
    """

    asystole_s: float = _field(4.0, 1.0, 15.0, "s", "no beat for this long is asystole")
    pause_s: float = _field(2.0, 1.0, 10.0, "s", "no beat for this long is a pause")
    hr_extreme_low_bpm: float = _field(40.0, 15.0, 100.0, "bpm", "extreme bradycardia below")
    hr_low_bpm: float = _field(50.0, 20.0, 120.0, "bpm", "bradycardia below")
    hr_high_bpm: float = _field(120.0, 60.0, 250.0, "bpm", "tachycardia above")
    hr_extreme_high_bpm: float = _field(140.0, 80.0, 300.0, "bpm", "extreme tachycardia above")
    hr_beats: int = _field(8, 2, 60, "beats", "RR intervals in the heart-rate median")
    rate_persist_s: float = _field(5.0, 0.0, 60.0, "s", "persistence of brady/tachy")
    extreme_persist_s: float = _field(2.0, 0.0, 60.0, "s", "persistence of the extreme rates")
    vtach_beats: int = _field(5, 3, 30, "beats", "consecutive V beats making VT")
    vtach_rate_bpm: float = _field(100.0, 60.0, 250.0, "bpm", "smallest VT rate")
    vrun_min_beats: int = _field(3, 3, 29, "beats", "consecutive V beats making a run")
    bigeminy_cycles: int = _field(3, 2, 20, "cycles", "V-N cycles making bigeminy")
    trigeminy_cycles: int = _field(3, 2, 20, "cycles", "V-N-N cycles making trigeminy")
    r_on_t_s: float = _field(0.36, 0.1, 0.6, "s", "R-on-T coupling interval below")
    r_on_t_ratio: float = _field(0.33, 0.0, 0.8, "", "R-on-T coupling below this x preceding RR")
    pvc_per_min: float = _field(10.0, 1.0, 100.0, "per min", "PVC rate above")
    pvc_window_s: float = _field(60.0, 10.0, 600.0, "s", "PVC counting window")
    afib_window_beats: int = _field(32, 8, 200, "beats", "RR intervals analysed for AF")
    afib_rmssd: float = _field(0.12, 0.0, 1.0, "", "normalised RMSSD above")
    afib_pnn50: float = _field(0.5, 0.0, 1.0, "", "share of RR differences > 50 ms above")
    afib_persist_s: float = _field(15.0, 0.0, 600.0, "s", "persistence of AF")
    vf_window_s: float = _field(4.0, 2.0, 10.0, "s", "VF analysis window")
    vf_step_s: float = _field(1.0, 0.25, 5.0, "s", "time between VF analyses")
    vf_low_hz: float = _field(2.5, 1.0, 10.0, "Hz", "lowest VF dominant frequency")
    vf_high_hz: float = _field(8.0, 2.0, 15.0, "Hz", "highest VF dominant frequency")
    vf_concentration: float = _field(0.6, 0.0, 1.0, "", "smallest spectral concentration")
    vf_min_mv: float = _field(0.15, 0.0, 10.0, "mV", "smallest peak-to-peak amplitude")
    vf_max_normal_beats: int = _field(1, 0, 40, "beats", "largest count of N/L/R/A beats in the window")
    vf_persist_s: float = _field(2.0, 0.0, 30.0, "s", "persistence of VF")
    hold_s: float = _field(10.0, 0.0, 300.0, "s", "medium/low alarms stay on this long after")
    silence_s: float = _field(120.0, 1.0, 3600.0, "s", "default silence duration")
    disabled: tuple[str, ...] = _field((), None, None, "", "alarm codes never raised")

    def __post_init__(self) -> None:
        """Check every value and the relations between limits."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "disabled":
                self._check_disabled(value)
                continue
            _check_number(f, value)
        _order = ("hr_extreme_low_bpm", "hr_low_bpm", "hr_high_bpm", "hr_extreme_high_bpm")
        vals = [getattr(self, k) for k in _order]
        if not all(a < b for a, b in itertools.pairwise(vals)):
            raise ConfigError(
                "alarm limits must satisfy hr_extreme_low_bpm < hr_low_bpm < hr_high_bpm < "
                f"hr_extreme_high_bpm, got {' < '.join(f'{v:g}' for v in vals)} bpm"
            )
        if not self.pause_s < self.asystole_s:
            raise ConfigError(
                f"alarm limits must satisfy pause_s < asystole_s, got {self.pause_s:g} s and "
                f"{self.asystole_s:g} s"
            )
        if not self.vrun_min_beats < self.vtach_beats:
            raise ConfigError(
                f"alarm limits must satisfy vrun_min_beats < vtach_beats, got "
                f"{self.vrun_min_beats} and {self.vtach_beats} beats"
            )
        if not self.vf_low_hz < self.vf_high_hz:
            raise ConfigError(
                f"alarm limits must satisfy vf_low_hz < vf_high_hz, got {self.vf_low_hz:g} Hz "
                f"and {self.vf_high_hz:g} Hz"
            )
        if not self.vf_step_s <= self.vf_window_s:
            raise ConfigError(
                f"alarm limits must satisfy vf_step_s <= vf_window_s, got {self.vf_step_s:g} s "
                f"and {self.vf_window_s:g} s"
            )

    def _check_disabled(self, value: Any) -> None:
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            raise TypeError(
                f"alarm setting disabled must be a list of alarm codes, got "
                f"{type(value).__name__} {value!r}"
            )
        for code in value:
            if code not in PRIORITY_OF:
                msg = f"alarm setting disabled: unknown alarm code {code!r}; codes are {', '.join(CODES)}"
                close = difflib.get_close_matches(str(code), CODES, n=1)
                if close:
                    msg += f". Did you mean {close[0]!r}?"
                raise ConfigError(msg)
        if isinstance(value, list):
            object.__setattr__(self, "disabled", tuple(value))

    # ------------------------------------------------------------ constructors
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Return the names of every setting."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def resolve_key(cls, key: str, where: str = "alarm setting") -> str:
        """Return the setting named ``key`` (the unit suffix may be left out).

        Raises
        ------
        ConfigError
            If there is no such setting; the message suggests the closest.
        """
        names = cls.keys()
        if key in names:
            return key
        if isinstance(key, str):
            bare = [n for n in names if n.startswith(key + "_") and n[len(key):] in _UNIT_SUFFIXES]
            if len(bare) == 1:
                return bare[0]
        msg = f"{where}: unknown key {key!r}"
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
        if close:
            msg += f". Did you mean {close[0]!r}?"
        else:
            msg += f"; keys are {', '.join(names)}"
        raise ConfigError(msg)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], base: AlarmConfig | None = None, where: str = "alarm setting"
    ) -> AlarmConfig:
        """Return a config with ``mapping``'s values over ``base`` (default: the defaults).

        Parameters
        ----------
        mapping : mapping of str to value
            Settings by name (units as in the field names; ints accepted
            for floats).
        base : AlarmConfig, optional
            Values of the keys not given.
        where : str
            Where the values come from, for messages (a file name, a flag).

        Raises
        ------
        ConfigError
            Unknown key, value out of range, or limits out of order.
        TypeError
            A value of the wrong type (for example a string for a number).
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(f"{where}: alarm settings must be a mapping, got {type(mapping).__name__}")
        values = {}
        for key, value in mapping.items():
            values[cls.resolve_key(key, where)] = value
        base = cls() if base is None else base
        try:
            return dataclasses.replace(base, **values)
        except ConfigError as exc:
            if where == "alarm setting":
                raise
            raise ConfigError(f"{where}: {exc}") from None
        except TypeError as exc:
            if where == "alarm setting":
                raise
            raise TypeError(f"{where}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike, base: AlarmConfig | None = None) -> AlarmConfig:
        """Read settings from a TOML file: its ``[alarms]`` table, or its top level.

        Raises
        ------
        ConfigError
            The file is missing, unreadable, not valid TOML, or holds a bad
            setting (wrong types too); the message names the file.
        """
        path = os.fspath(path)
        try:
            with open(path, "rb") as fp:
                data = tomllib.load(fp)
        except FileNotFoundError:
            raise ConfigError(f"{os.path.abspath(path)}: alarm configuration file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{os.path.abspath(path)}: not a valid TOML file ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{os.path.abspath(path)}: cannot read ({exc.strerror})") from None
        table = data.get("alarms", data)
        where = f"{os.path.abspath(path)}" + (" [alarms]" if "alarms" in data else "")
        try:
            return cls.from_mapping(table, base, where=where)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    def with_overrides(self, items: Iterable[str], where: str = "--alarm") -> AlarmConfig:
        """Return a copy with ``KEY=VALUE`` strings applied (``--alarm hr_high=130``).

        Values are parsed as TOML values (``130``, ``0.5``, ``["afib"]``);
        a bare word is taken as a string (``disabled=afib,pvc_rate`` gives a
        list).

        Raises
        ------
        ConfigError
            A malformed item, unknown key, bad value or type.
        """
        values: dict[str, Any] = {}
        for item in items:
            key, sep, text = str(item).partition("=")
            key, text = key.strip(), text.strip()
            if not sep or not key or not text:
                raise ConfigError(f"{where}: expected KEY=VALUE (e.g. hr_high=130), got {item!r}")
            name = self.resolve_key(key, where)
            values[name] = _parse_value(name, text, where)
        try:
            return self.from_mapping(values, self, where=where)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    def to_mapping(self) -> dict[str, Any]:
        """Return the settings as a plain dict (TOML-ready)."""
        d = dataclasses.asdict(self)
        d["disabled"] = list(self.disabled)
        return d


def _check_number(f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    unit = meta["unit"] if meta["unit"] not in ("", "beats", "cycles") else ""
    rng = f"{meta['low']:g} to {meta['high']:g}{' ' + unit if unit else ''}"
    if f.type in (int, "int"):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(
                f"alarm setting {f.name} must be an integer ({rng}), got {type(value).__name__} {value!r}"
            )
    elif isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"alarm setting {f.name} must be a number ({rng}), got {type(value).__name__} {value!r}"
        )
    try:
        check_range(f"alarm setting {f.name}", float(value), meta["low"], meta["high"], unit=unit)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (allowed: {rng})") from None


def _parse_value(name: str, text: str, where: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if name == "disabled":
        return [t.strip() for t in text.split(",") if t.strip()]
    return text  # reported as a type error by the checks


@dataclass(frozen=True)
class ActiveAlarm:
    """An alarm that is on, as the window shows it.

    Attributes
    ----------
    code, priority, message : str
        As in the alarm event.
    since_sample : int
        Stream index at which it turned on.
    since_s : float
        The same in seconds from the stream start.
    present : bool
        Whether its condition still holds (False: latched or held).
    acknowledged : bool
        Whether :meth:`AlarmEngine.acknowledge` was called for it.
    audible : bool
        Whether it should sound now (not acknowledged, not silenced).
    """

    code: str
    priority: str
    message: str
    since_sample: int
    since_s: float
    present: bool
    acknowledged: bool
    audible: bool


class _State:
    """Mutable per-code state (internal)."""

    __slots__ = ("acked", "code", "cond", "cond_since", "last_true", "message", "on", "on_since")

    def __init__(self, code: str) -> None:
        self.code = code
        self.cond = False
        self.cond_since = 0
        self.last_true = -(1 << 62)
        self.on = False
        self.on_since = 0
        self.acked = False
        self.message = _MESSAGES[code]


def vf_spectrum_features(windows: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dominant frequency, spectral concentration and peak-to-peak of ECG windows.

    Parameters
    ----------
    windows : numpy.ndarray, shape (n_windows, n_samples)
        Filtered ECG windows in mV (finite).
    fs : float
        Sampling rate in Hz.

    Returns
    -------
    dominant_hz : numpy.ndarray
        Frequency of largest power between 0.5 and 20 Hz, in Hz.
    concentration : numpy.ndarray
        Share of the 0.5-30 Hz power within 0.7-1.4 x ``dominant_hz``.
    ptp_mv : numpy.ndarray
        Peak-to-peak amplitude of each window, in mV.
    """
    w = np.asarray(windows, dtype=np.float64)
    n = w.shape[-1]
    x = (w - w.mean(axis=-1, keepdims=True)) * np.hamming(n)
    nfft = 1 << max(math.ceil(math.log2(n)), 8)
    p = np.abs(np.fft.rfft(x, nfft, axis=-1)) ** 2
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    band = (f >= 0.5) & (f <= min(30.0, fs / 2))
    search = (f >= 0.5) & (f <= min(20.0, fs / 2))
    ps = np.where(search, p, -1.0)
    dom = f[np.argmax(ps, axis=-1)]
    total = (p * band).sum(axis=-1)
    lo, hi = 0.7 * dom[:, None], 1.4 * dom[:, None]
    near = (f[None, :] >= lo) & (f[None, :] <= hi) & band
    conc = (p * near).sum(axis=-1) / np.maximum(total, 1e-30)
    return dom, conc, np.ptp(w, axis=-1)


class AlarmEngine:
    """Streaming alarm engine of one stream (rules in the module docstring).

    Parameters
    ----------
    fs : float
        Sampling rate of the stream in Hz.
    stream : str
        Stream name, copied into the events.
    config : AlarmConfig, optional
        Limits (default: :class:`AlarmConfig` defaults).

    Attributes
    ----------
    audio_paused_until_s : float or None
        Stream time (s) until which :meth:`silence` pauses audio and
        flashing; None when not silenced.
    now_sample : int or None
        The latest ``now_sample`` given to :meth:`process`.
    """

    def __init__(self, fs: float, stream: str = "", config: AlarmConfig | None = None) -> None:
        check_range("fs", fs, 1.0, None, low_inclusive=True, unit="Hz")
        if config is not None and not isinstance(config, AlarmConfig):
            raise TypeError(f"config must be an AlarmConfig, got {type(config).__name__}")
        self.fs = float(fs)
        self.stream = str(stream)
        self.config = AlarmConfig() if config is None else config
        c, fs = self.config, self.fs
        # settings in samples, converted once
        self._asystole = round(c.asystole_s * fs)
        self._pause = round(c.pause_s * fs)
        self._hold = round(c.hold_s * fs)
        self._vf_window = round(c.vf_window_s * fs)
        self._vf_step = max(1, round(c.vf_step_s * fs))
        self._pvc_window = round(c.pvc_window_s * fs)
        self._persist = {code: 0 for code in CODES}
        for code in ("brady", "tachy"):
            self._persist[code] = round(c.rate_persist_s * fs)
        for code in ("brady_extreme", "tachy_extreme"):
            self._persist[code] = round(c.extreme_persist_s * fs)
        self._persist["afib"] = round(c.afib_persist_s * fs)
        self._persist["vfib"] = round(c.vf_persist_s * fs)
        self._superseded_by: dict[str, tuple[str, ...]] = {
            code: tuple(h for h, lows in SUPERSEDES.items() if code in lows) for code in CODES
        }
        logger.debug("alarm engine for stream %r at %g Hz: %s", stream, fs, c)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (a new start of the stream); no events are emitted."""
        self.now_sample: int | None = None
        self.audio_paused_until_s: float | None = None
        self._states = {code: _State(code) for code in CODES}
        self._out: list[dict] = []
        self._t = 0  # sample of the event being handled
        self._adv_t = -(1 << 62)  # time-driven changes are applied up to here
        self._ref: int | None = None  # asystole / pause clock origin (last beat or resume)
        self._last_beat: int | None = None
        self._tech = {"leads_off": False, "noisy": False, "no_data": False}
        self._reset_beats()
        self._sig = np.empty(0, dtype=np.float64)
        self._sig_start = 0  # absolute index of self._sig[0]
        self._sig_end: int | None = None
        self._next_vf: int | None = None  # next VF analysis end sample
        self._normal_beats: deque[int] = deque()  # N/L/R/A beat samples (for VF)

    def _reset_beats(self) -> None:
        """Restart beat history (after a technical alarm or a hole)."""
        c = self.config
        self._prev: tuple[int, bool, str] | None = None  # (sample, is_v, label) of last beat
        self._prev_rr: float | None = None
        self._rr: deque[float] = deque(maxlen=c.hr_beats)
        self._run: list[int] = []  # samples of the current run of V beats
        self._pattern = ""  # 'V'/'N' of recent beats
        self._v_times: deque[int] = deque()
        self._af_rr: deque[float] = deque(maxlen=c.afib_window_beats)
        self._prev_normal = False
        for code in ("brady", "tachy", "brady_extreme", "tachy_extreme", "afib", "bigeminy",
                     "trigeminy", "pvc_rate", "vtach"):  # fmt: skip
            self._cond(code, False, self._t)

    # ------------------------------------------------------------ primitives
    def _event(self, code: str, state: str, sample: int, **extra) -> None:
        st = self._states[code]
        ev = {
            "type": "alarm",
            "code": code,
            "priority": PRIORITY_OF[code],
            "state": state,
            "stream": self.stream,
            "sample": int(sample),
            "time": round(sample / self.fs, 4),
            "message": st.message,
        }
        ev.update(extra)
        self._out.append(ev)

    def _suppressed(self, code: str) -> bool:
        return any(on and code in SUPPRESSES[t] for t, on in self._tech.items())

    def _blocked(self, code: str, at: int) -> bool:
        """Whether a higher alarm of the family is present at sample ``at``."""
        for h in self._superseded_by[code]:
            hs = self._states[h]
            if (hs.cond and hs.cond_since <= at) or (hs.on and (hs.cond or PRIORITY_OF[h] != "high")):
                return True
        return False

    def _allowed(self, code: str, at: int) -> bool:
        return (
            code not in self.config.disabled
            and not self._suppressed(code)
            and not self._blocked(code, at)
        )

    def _turn_on(self, code: str, sample: int) -> None:
        st = self._states[code]
        st.on, st.on_since, st.acked = True, int(sample), False
        self._event(code, "on", sample)
        for low in SUPERSEDES.get(code, ()):
            if self._states[low].on:
                self._turn_off(low, sample, "superseded")

    def _turn_off(self, code: str, sample: int, reason: str) -> None:
        st = self._states[code]
        st.on = False
        self._event(code, "off", sample, reason=reason)

    def _cond(self, code: str, present: bool, sample: int, message: str | None = None) -> None:
        """Set whether a lasting condition holds from ``sample`` on."""
        st = self._states[code]
        if message is not None and present:
            st.message = message
        if present and not st.cond:
            st.cond, st.cond_since = True, int(sample)
        elif not present and st.cond:
            st.cond, st.last_true = False, int(sample)
            if st.on and PRIORITY_OF[code] == "high" and st.acked or st.on and PRIORITY_OF[code] == "technical":
                self._turn_off(code, sample, "cleared")

    def _pulse(self, code: str, sample: int, message: str) -> None:
        """An event-like condition occurred at ``sample`` (on now, held ``hold_s``)."""
        st = self._states[code]
        st.message = message
        st.last_true = int(sample)
        if not st.on and self._allowed(code, sample):
            self._turn_on(code, sample)

    def _advance(self, t: int) -> None:
        """Apply time-driven changes up to sample ``t`` (clocks, persistence, holds), in time order."""
        if self._ref is not None and not self._suppressed("asystole"):
            gap = t - self._ref
            if gap >= self._pause:
                self._cond("pause", True, self._ref + self._pause,
                           f"Pause: no beat for {self.config.pause_s:g} s")  # fmt: skip
            if gap >= self._asystole:
                self._cond("asystole", True, self._ref + self._asystole,
                           f"Asystole: no beat for {self.config.asystole_s:g} s")  # fmt: skip
        floor = self._adv_t
        while True:
            best: tuple[int, int, str] | None = None
            for i, code in enumerate(CODES):
                st = self._states[code]
                if st.cond and not st.on:
                    when = max(st.cond_since + self._persist[code], floor)
                    if when <= t and self._allowed(code, when) and (best is None or when < best[0]):
                        best = (when, 0, code)
                elif st.on and not st.cond and PRIORITY_OF[code] in ("medium", "low"):
                    when = max(st.last_true + self._hold, floor)
                    if when <= t and (best is None or when < best[0]):
                        best = (when, 1, code)
            if best is None:
                break
            when, off, code = best
            floor = when
            if off:
                self._turn_off(code, when, "cleared")
            else:
                self._turn_on(code, when)
        self._adv_t = max(self._adv_t, t)

    # ------------------------------------------------------------------ input
    def process(
        self,
        events: Sequence[dict],
        now_sample: int,
        signal: np.ndarray | None = None,
        signal_start: int | None = None,
    ) -> list[dict]:
        """Take one stream's new events (and ECG); return the alarm events that became known.

        Parameters
        ----------
        events : sequence of dict
            ``beat`` and ``status`` events of this stream (other types are
            ignored), in any order; beats need ``sample`` and ``label`` (or
            ``aami``), and ``rr`` null marks a beat after a hole.
        now_sample : int
            Stream index up to which beats are known (the detector's decided
            horizon): time-driven rules (asystole, pause, holds) fire up to
            here even when no beat comes.
        signal : numpy.ndarray, optional
            New filtered ECG samples of the monitored lead, in mV (NaN in
            holes), for the VF rule.
        signal_start : int, optional
            Stream index of ``signal[0]``; default: right after the previous
            signal (or ``now_sample - len(signal)`` the first time).

        Returns
        -------
        list of dict
            Alarm events (see the module docstring), in stream order.
        """
        now = int(now_sample)
        if self.now_sample is None and self._ref is None:
            self._ref = now if not events else min(int(e["sample"]) for e in events if "sample" in e)
        items: list[tuple[int, int, Any]] = []
        for ev in events:
            kind = ev.get("type")
            if kind == "beat":
                items.append((int(ev["sample"]), 1, ev))
            elif kind == "status" and ev.get("status") in _STATUS_TO_ALARM:
                items.append((int(ev["sample"]), 0, ev))
            elif kind == "status" and ev.get("status") == "end":
                items.append((int(ev["sample"]), 3, ev))
        if signal is not None:
            items.extend((s, 2, info) for s, info in self._vf_analyse(signal, signal_start, now))
        items.sort(key=lambda it: (it[0], it[1]))
        for sample, kind, payload in items:
            self._t = sample
            # time-driven rules never run past now_sample: the VF analysis and
            # status changes may lie ahead of the beats decided so far
            self._advance(min(sample, now))
            if kind == 0:
                self._on_status(payload, sample)
            elif kind == 1:
                self._on_beat(payload, sample)
            elif kind == 2:
                self._on_vf(payload, sample)
            else:
                self._on_end(sample)
        self._t = max(now, self._t)
        self._advance(now)
        self.now_sample = now if self.now_sample is None else max(self.now_sample, now)
        out, self._out = self._out, []
        out.sort(key=lambda e: e["sample"])
        return out

    def _on_status(self, ev: dict, sample: int) -> None:
        code, present = _STATUS_TO_ALARM[ev["status"]]
        if self._tech[code] == present:
            return
        self._tech[code] = present
        if present:
            if code not in self.config.disabled:
                self._cond(code, True, sample)
                self._advance(sample)
            for phys in SUPPRESSES[code]:
                st = self._states[phys]
                self._cond(phys, False, sample)
                if st.on and PRIORITY_OF[phys] != "high":
                    self._turn_off(phys, sample, "suppressed")
            self._reset_beats()
            if code != "noisy":
                self._ref = None
        else:
            self._cond(code, False, sample)
            if self._states[code].on:
                self._turn_off(code, sample, "cleared")
            if not self._suppressed("asystole"):
                self._ref = sample if self._ref is None else max(self._ref, sample)
            self._reset_beats()

    def _on_end(self, sample: int) -> None:
        for code in CODES:
            st = self._states[code]
            st.cond = False
            if st.on:
                self._turn_off(code, sample, "end")
        self._ref = None

    def _on_beat(self, ev: dict, sample: int) -> None:
        if self._last_beat is not None and sample <= self._last_beat:
            return  # duplicate or out of order
        label = str(ev.get("label", "?"))
        is_v = label == "V" or ev.get("aami") == "V"
        if label in ("N", "L", "R", "A") and not is_v:
            self._normal_beats.append(sample)
        self._last_beat = sample
        # the asystole / pause clocks restart
        self._cond("asystole", False, sample)
        self._cond("pause", False, sample)
        if any(self._tech[t] for t in ("leads_off", "no_data")):
            return
        self._ref = sample
        if self._tech["noisy"]:
            return
        if ev.get("rr", 0) is None:
            self._reset_beats()
        c = self.config
        prev = self._prev
        rr = None if prev is None else (sample - prev[0]) / self.fs
        # heart rate
        if rr is not None:
            self._rr.append(rr)
        if len(self._rr) >= min(c.hr_beats, 4):
            hr = 60.0 / statistics.median(self._rr)  # plain Python: a few values per beat
            msg = f"HR {hr:.0f} bpm"
            self._cond("tachy_extreme", hr > c.hr_extreme_high_bpm, sample, f"Extreme Tachy: {msg}")
            self._cond("tachy", hr > c.hr_high_bpm, sample, f"Tachy: {msg}")
            self._cond("brady_extreme", hr < c.hr_extreme_low_bpm, sample, f"Extreme Brady: {msg}")
            self._cond("brady", hr < c.hr_low_bpm, sample, f"Brady: {msg}")
        # ventricular runs
        if is_v:
            self._run.append(sample)
            n = len(self._run)
            run_rate = 60.0 * (n - 1) * self.fs / (self._run[-1] - self._run[0]) if n > 1 else 0.0
            if n >= c.vtach_beats and run_rate >= c.vtach_rate_bpm:
                self._cond("vtach", True, sample, f"VTach: {n} V beats at {run_rate:.0f} bpm")
                self._states["vtach"].message = f"VTach: {n} V beats at {run_rate:.0f} bpm"
            elif n >= c.vrun_min_beats:
                self._pulse("vrun", sample, f"Run PVCs: {n} V beats at {run_rate:.0f} bpm")
        else:
            if len(self._run) == 2:
                self._pulse("couplet", sample, "Pair PVCs")
            self._run = []
            self._cond("vtach", False, sample)
        # R-on-T
        if is_v and prev is not None and not prev[1] and rr is not None:
            limit = max(c.r_on_t_s, c.r_on_t_ratio * self._prev_rr) if self._prev_rr else c.r_on_t_s
            if rr < limit:
                self._pulse("r_on_t", sample, f"R-on-T PVC: coupling {rr:.2f} s")
        # bigeminy / trigeminy
        self._pattern = (self._pattern + ("V" if is_v else "N"))[-32:]
        self._check_pattern("bigeminy", "NV", c.bigeminy_cycles, sample)
        self._check_pattern("trigeminy", "NNV", c.trigeminy_cycles, sample)
        # PVC rate
        if is_v:
            self._v_times.append(sample)
        while self._v_times and self._v_times[0] <= sample - self._pvc_window:
            self._v_times.popleft()
        per_min = len(self._v_times) * 60.0 / c.pvc_window_s
        self._cond("pvc_rate", per_min > c.pvc_per_min, sample, f"PVCs {per_min:.0f}/min")
        # atrial fibrillation
        normal = label in ("N", "L", "R", "?") and not is_v
        if normal and self._prev_normal and rr is not None:
            self._af_rr.append(rr)
            self._check_afib(sample)
        self._prev_normal = normal
        self._prev = (sample, is_v, label)
        self._prev_rr = rr

    def _check_pattern(self, code: str, unit: str, cycles: int, sample: int) -> None:
        st = self._states[code]
        p = self._pattern
        if not st.cond:
            if p.endswith(unit * cycles):
                self._cond(code, True, sample)
        else:
            # the rhythm goes on while each beat continues the pattern
            k = len(unit)
            if p[-k:] not in {unit[i:] + unit[:i] for i in range(k)}:
                self._cond(code, False, sample)

    def _check_afib(self, sample: int) -> None:
        c = self.config
        if len(self._af_rr) < c.afib_window_beats:
            return
        rr = list(self._af_rr)  # plain Python: numpy's call overhead dominates on a few dozen values
        d = [b - a for a, b in itertools.pairwise(rr)]
        mean_rr = math.fsum(rr) / len(rr)
        nrmssd = math.sqrt(math.fsum(x * x for x in d) / len(d)) / mean_rr
        pnn50 = sum(abs(x) > 0.05 for x in d) / len(d)
        hr = 60.0 / mean_rr
        self._cond(
            "afib",
            nrmssd > c.afib_rmssd and pnn50 > c.afib_pnn50,
            sample,
            f"AFib: irregular RR (nRMSSD {nrmssd:.2f}), HR {hr:.0f} bpm",
        )

    # -------------------------------------------------------------------- VF
    def _vf_analyse(self, signal: np.ndarray, start: int | None, now: int) -> list[tuple[int, Any]]:
        """Append new ECG samples; return (window end sample, features) of due analyses."""
        x = np.asarray(signal, dtype=np.float64).ravel()
        if start is None:
            start = self._sig_end if self._sig_end is not None else now - x.size
        start = int(start)
        if self._sig_end is None or start != self._sig_end:
            # first chunk, or a jump: restart the buffer
            self._sig = x.copy()
            self._sig_start = start
        else:
            self._sig = np.concatenate((self._sig, x))
        self._sig_end = start + x.size
        if self._next_vf is None:
            first = self._sig_start + self._vf_window
            self._next_vf = -(-first // self._vf_step) * self._vf_step
        ends = np.arange(max(self._next_vf, self._sig_start + self._vf_window), self._sig_end + 1,
                         self._vf_step, dtype=np.int64)  # fmt: skip
        out: list[tuple[int, Any]] = []
        if ends.size:
            self._next_vf = int(ends[-1]) + self._vf_step
            rel = ends - self._sig_start
            idx = rel[:, None] + np.arange(-self._vf_window, 0)[None, :]
            win = self._sig[idx]
            finite = np.isfinite(win).all(axis=1)
            dom = np.zeros(ends.size)
            conc = np.zeros(ends.size)
            ptp = np.zeros(ends.size)
            if finite.any():
                dom[finite], conc[finite], ptp[finite] = vf_spectrum_features(win[finite], self.fs)
            out = [(int(e), (bool(ok), float(d), float(cc), float(pp)))
                   for e, ok, d, cc, pp in zip(ends, finite, dom, conc, ptp, strict=True)]  # fmt: skip
        # keep only what the next window needs
        cut = self._next_vf - self._vf_window - self._sig_start
        if cut > 0:
            self._sig = self._sig[cut:]
            self._sig_start += cut
        return out

    def _on_vf(self, info: tuple[bool, float, float, float], sample: int) -> None:
        c = self.config
        ok, dom, conc, ptp = info
        while self._normal_beats and self._normal_beats[0] < sample - self._vf_window:
            self._normal_beats.popleft()
        vf = (
            ok
            and c.vf_low_hz <= dom <= c.vf_high_hz
            and conc >= c.vf_concentration
            and ptp >= c.vf_min_mv
            and len(self._normal_beats) <= c.vf_max_normal_beats
            and not self._suppressed("vfib")
        )
        self._cond("vfib", vf, sample, f"VFib/VFlutter: {dom:.1f} Hz ({60 * dom:.0f}/min)")

    # ------------------------------------------------------- operator actions
    def acknowledge(self, code: str | None = None) -> list[dict]:
        """Acknowledge one alarm (``code``) or every alarm that is on.

        Acknowledged alarms stop sounding and flashing; a latched
        high-priority alarm whose condition is gone turns off now.

        Returns
        -------
        list of dict
            The ``off`` events this caused (``reason`` ``"acknowledged"``).
        """
        if code is not None and code not in PRIORITY_OF:
            msg = f"unknown alarm code {code!r}"
            close = difflib.get_close_matches(str(code), CODES, n=1)
            raise ConfigError(msg + (f". Did you mean {close[0]!r}?" if close else ""))
        t = self.now_sample if self.now_sample is not None else 0
        for st in self._states.values():
            if not st.on or (code is not None and st.code != code):
                continue
            st.acked = True
            if PRIORITY_OF[st.code] == "high" and not st.cond:
                self._turn_off(st.code, t, "acknowledged")
        out, self._out = self._out, []
        return out

    def silence(self, seconds: float | None = None) -> float:
        """Pause audio and flashing of every alarm for ``seconds`` (default ``silence_s``).

        The pause runs in stream time from the latest ``now_sample``.
        Alarms are still reported and listed.

        Returns
        -------
        float
            :attr:`audio_paused_until_s`.
        """
        seconds = self.config.silence_s if seconds is None else seconds
        check_range("seconds", seconds, 0.0, 3600.0, unit="s")
        now_s = (self.now_sample or 0) / self.fs
        self.audio_paused_until_s = now_s + float(seconds)
        return self.audio_paused_until_s

    @property
    def silenced(self) -> bool:
        """Whether audio is paused by :meth:`silence` at the latest ``now_sample``."""
        if self.audio_paused_until_s is None:
            return False
        return (self.now_sample or 0) / self.fs < self.audio_paused_until_s

    def active_alarms(self) -> list[ActiveAlarm]:
        """Return the alarms that are on, most urgent first (then oldest first)."""
        silenced = self.silenced
        out = [
            ActiveAlarm(
                code=st.code,
                priority=PRIORITY_OF[st.code],
                message=st.message,
                since_sample=st.on_since,
                since_s=round(st.on_since / self.fs, 4),
                present=st.cond or (PRIORITY_OF[st.code] in ("medium", "low")
                                    and st.last_true + self._hold > (self.now_sample or 0)),
                acknowledged=st.acked,
                audible=not st.acked and not silenced,
            )
            for st in self._states.values()
            if st.on
        ]  # fmt: skip
        out.sort(key=lambda a: (PRIORITIES.index(a.priority), a.since_sample))
        return out

    def active(self) -> dict[str, Any]:
        """Summary for the window.

        Returns
        -------
        dict
            ``alarms`` (list of :class:`ActiveAlarm`), ``highest`` (priority
            of the most urgent alarm on, or None), ``audible`` (priority of
            the most urgent alarm to sound now, or None), ``flash`` (True
            when an unacknowledged alarm is on and audio is not paused) and
            ``audio_paused_until_s``.
        """
        alarms = self.active_alarms()
        audible = [a for a in alarms if a.audible]
        return {
            "alarms": alarms,
            "highest": alarms[0].priority if alarms else None,
            "audible": audible[0].priority if audible else None,
            "flash": bool(audible),
            "audio_paused_until_s": self.audio_paused_until_s if self.silenced else None,
        }
