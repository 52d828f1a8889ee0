"""Simulated ECG source, for a first run without any data.

The simulator builds a single-lead ECG beat by beat. The beat shapes come from
the ECGSYN dynamical model (McSharry et al., 2003) as implemented by
:func:`neurokit2.ecg_simulate`: one short ECGSYN run at the requested heart
rate gives the average normal beat, a second run with a wide QRS complex, no P
wave and a discordant T wave gives the premature ventricular contraction
(PVC). Both templates are computed once per heart rate (about 0.3 s) and
cached; the record is then assembled by placing beats at their R times, which
takes a few tens of ms per simulated minute, instead of the seconds per
minute a full ECGSYN integration would cost.

* Sinus rhythm: RR intervals vary around ``60 / hr`` s with respiratory sinus
  arrhythmia (0.2-0.3 Hz) plus a slow random component, of relative standard
  deviation ``hrv``; R amplitude is modulated by respiration by ±5 %.
* Ectopic beats: a fraction ``ectopic`` of the beats are PVCs. A PVC arrives
  early (coupling interval 55-70 % of the sinus RR), is wide (QRS about
  150 ms) and is followed by a full compensatory pause (the next sinus beat
  comes on time, two sinus intervals after the beat before the PVC). Two PVCs
  never follow each other, so ``ectopic=0.5`` is ventricular bigeminy.
* Noise: white Gaussian noise of standard deviation ``noise`` mV plus
  baseline wander (two sinusoids, respiratory and < 0.1 Hz) of peak amplitude
  ``wander`` mV (default ``3 * noise``).

The reference annotations hold ``'N'`` for each normal beat and ``'V'`` for
each PVC, at the sample where the noise-free ECG has its largest absolute
value within ±25 ms of the beat's nominal R time (the R-wave maximum).

Spec grammar
------------
::

    spec  := "sim" [ ":" items ]
    items := item ( "," item )*
    item  := HR | key "=" value

``HR`` (heart rate in bpm) may only come first; ``hr=HR`` is the same. Keys,
ranges and defaults:

============  ==========================================  ===========  ========
key           meaning                                     range        default
============  ==========================================  ===========  ========
hr            mean heart rate, bpm                        30-200       72
ectopic       fraction of beats that are PVCs             0-0.5        0
noise         white-noise standard deviation, mV          0-1          0
wander        baseline-wander peak amplitude, mV          0-2          3*noise
hrv           relative standard deviation of sinus RR     0-0.2        0.03
fs            sampling frequency, Hz                      100-1000     360
duration      record length, s                            1-3600       600
seed          random seed (integer)                       >= 0         0
============  ==========================================  ===========  ========

Keys are case-insensitive; spaces around items are ignored. Examples:
``sim``, ``sim:72``, ``sim:72,ectopic=0.1,noise=0.05,fs=360,duration=600,seed=1``.

References
----------
.. [1] McSharry, P. E., Clifford, G. D., Tarassenko, L., & Smith, L. A.
   (2003). A dynamical model for generating synthetic electrocardiogram
   signals. IEEE Trans. Biomed. Eng., 50(3), 289-294.

Examples
--------
>>> rec = simulate_record(parse_sim_spec("sim:72,ectopic=0.1,duration=60,seed=1"))
>>> rec.name, rec.fs, rec.channels, rec.signal.shape
('sim72', 360.0, ['SIM'], (21600, 1))
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from ._validate import check_range, check_type, ensure_int
from .errors import ConfigError
from .wfdb_source import Annotations, Record

logger = logging.getLogger(__name__)

__all__ = ["SimConfig", "is_sim_spec", "parse_sim_spec", "simulate_record"]

#: Sampling rate of the ECGSYN beat templates, Hz.
_TEMPLATE_FS = 1000.0
#: R-wave amplitude of the normal beat, mV.
_NORMAL_R_MV = 1.0
#: Peak absolute amplitude of the PVC, mV.
_PVC_PEAK_MV = 1.5
#: Half-width of the search for the R maximum around the nominal R time, s.
_R_SEARCH_S = 0.025

# ECGSYN parameters of a PVC (P, Q, R, S, T): no P wave, wide QRS, discordant T.
_PVC_TI = (-70.0, -30.0, 0.0, 40.0, 110.0)
_PVC_AI = (0.0, -1.0, 7.0, -1.5, -0.7)
_PVC_BI = (0.25, 0.15, 0.25, 0.25, 0.45)

# spec key -> (SimConfig field, low, high, unit)
_KEYS: dict[str, tuple[str, float, float, str]] = {
    "hr": ("hr_bpm", 30.0, 200.0, "bpm"),
    "ectopic": ("ectopic_fraction", 0.0, 0.5, ""),
    "noise": ("noise_mv", 0.0, 1.0, "mV"),
    "wander": ("wander_mv", 0.0, 2.0, "mV"),
    "hrv": ("hrv_fraction", 0.0, 0.2, ""),
    "fs": ("fs", 100.0, 1000.0, "Hz"),
    "duration": ("duration_s", 1.0, 3600.0, "s"),
    "seed": ("seed", 0, math.inf, ""),
}
_GRAMMAR = "sim[:HR][,key=value...], e.g. sim:72,ectopic=0.1,noise=0.05"


@dataclass(frozen=True)
class SimConfig:
    """Settings of the simulated ECG source (see the module docstring).

    Parameters
    ----------
    hr_bpm : float
        Mean sinus heart rate in beats per minute (30-200).
    ectopic_fraction : float
        Fraction of beats that are premature ventricular contractions (0-0.5).
    noise_mv : float
        Standard deviation of the white Gaussian noise in mV (0-1).
    wander_mv : float or None
        Peak amplitude of the baseline wander in mV (0-2); None means
        ``3 * noise_mv``.
    hrv_fraction : float
        Standard deviation of the sinus RR intervals relative to their mean
        (0-0.2).
    fs : float
        Sampling frequency in Hz (100-1000).
    duration_s : float
        Length of the record in s (1-3600).
    seed : int
        Seed of the random generator; equal configs give equal records.

    Raises
    ------
    ConfigError
        A value is out of range.
    TypeError
        A value has the wrong type.
    """

    hr_bpm: float = 72.0
    ectopic_fraction: float = 0.0
    noise_mv: float = 0.0
    wander_mv: float | None = None
    hrv_fraction: float = 0.03
    fs: float = 360.0
    duration_s: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Check every field against its range."""
        for _key, (field_name, low, high, unit) in _KEYS.items():
            value = getattr(self, field_name)
            if field_name == "seed":
                ensure_int("seed", value)
                check_range("seed", value, 0)
            elif field_name == "wander_mv" and value is None:
                continue
            else:
                check_range(field_name, value, low, high, unit=unit)

    @property
    def baseline_wander_mv(self) -> float:
        """Effective baseline-wander amplitude in mV (``3 * noise_mv`` when unset)."""
        return 3.0 * self.noise_mv if self.wander_mv is None else float(self.wander_mv)

    @property
    def name(self) -> str:
        """Record name, e.g. ``'sim72'``."""
        return f"sim{self.hr_bpm:g}"


def is_sim_spec(spec: str) -> bool:
    """Return True when ``spec`` names the simulated source (``sim`` or ``sim:...``).

    Parameters
    ----------
    spec : str
        Source specification as given on the command line.

    Returns
    -------
    bool
        Whether :func:`parse_sim_spec` should handle ``spec``.
    """
    s = spec.strip().lower()
    return s == "sim" or s.startswith("sim:")


def _number(spec: str, key: str, text: str) -> float | int:
    """Parse ``text`` as the value of ``key``; seeds must be integers."""
    try:
        if key == "seed":
            return int(text)
        value = float(text)
    except ValueError:
        kind = "an integer" if key == "seed" else "a number"
        raise ConfigError(f"bad simulated-source spec {spec!r}: {key} must be {kind}, got {text!r}") from None
    return value


def parse_sim_spec(spec: str) -> SimConfig:
    """Parse a simulated-source spec such as ``'sim:72,ectopic=0.1,seed=1'``.

    Parameters
    ----------
    spec : str
        ``sim[:HR][,key=value...]``; see the module docstring for the keys,
        their ranges and defaults.

    Returns
    -------
    SimConfig
        The validated settings.

    Raises
    ------
    ConfigError
        The spec does not follow the grammar, names an unknown key (with a
        "Did you mean" suggestion), repeats a key, or gives a value out of
        range.
    TypeError
        ``spec`` is not a string.
    """
    check_type("spec", spec, str)
    text = spec.strip()
    if not is_sim_spec(text):
        raise ConfigError(f"bad simulated-source spec {spec!r}: it must start with 'sim' ({_GRAMMAR})")
    body = text[4:].strip()  # after "sim:" (empty for plain "sim")
    values: dict[str, float | int] = {}
    if body:
        items = [item.strip() for item in body.split(",")]
        for pos, item in enumerate(items):
            if not item:
                raise ConfigError(f"bad simulated-source spec {spec!r}: empty item at position {pos + 1} ({_GRAMMAR})")
            if "=" in item:
                key, _, raw = item.partition("=")
                key, raw = key.strip().lower(), raw.strip()
            elif pos == 0:
                key, raw = "hr", item
            else:
                raise ConfigError(
                    f"bad simulated-source spec {spec!r}: {item!r} is not key=value; only the heart rate "
                    f"may come without a key, and first ({_GRAMMAR})"
                )
            if key not in _KEYS:
                msg = f"bad simulated-source spec {spec!r}: unknown key {key!r}"
                close = difflib.get_close_matches(key, list(_KEYS), n=1)
                if close:
                    msg += f". Did you mean {close[0]!r}?"
                raise ConfigError(msg + f" Valid keys: {', '.join(_KEYS)}")
            if key in values:
                raise ConfigError(f"bad simulated-source spec {spec!r}: {key} is given twice")
            if not raw:
                raise ConfigError(f"bad simulated-source spec {spec!r}: {key} has no value")
            values[key] = _number(spec, key, raw)
    kwargs: dict[str, float | int] = {}
    for key, value in values.items():
        field_name, low, high, unit = _KEYS[key]
        if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
            u = f" {unit}" if unit else ""
            upper = "" if math.isinf(high) else f"-{high:g}"
            raise ConfigError(
                f"bad simulated-source spec {spec!r}: {key} must be in {low:g}{upper}{u}, got {value:g}{u}"
            )
        kwargs[field_name] = value
    return SimConfig(**kwargs)


# ---------------------------------------------------------------------------
# Beat templates
# ---------------------------------------------------------------------------
def _extract_template(ecg: np.ndarray, rr_samples: float) -> np.ndarray:
    """Average the beats of a constant-rate ECGSYN run into one zero-baseline beat.

    The template spans one RR interval centred on the R time and is tapered
    to zero at both ends so that beats can be summed.
    """
    from scipy.signal import find_peaks

    half = int(rr_samples // 2)
    peaks, _ = find_peaks(ecg, distance=int(0.7 * rr_samples))
    # keep the peaks that are R waves (the highest of each cycle) and skip the start-up transient
    peaks = peaks[ecg[peaks] > ecg.min() + 0.5 * (ecg.max() - ecg.min())]
    peaks = peaks[(peaks - half >= 0) & (peaks + half < ecg.size)][2:]
    if peaks.size < 3:
        raise ConfigError("internal error: ECGSYN produced too few beats to build a template")
    beats = np.stack([ecg[p - half : p + half + 1] for p in peaks])
    tpl = beats.mean(axis=0)
    edge = max(3, int(0.03 * tpl.size))
    left, right = tpl[:edge].mean(), tpl[-edge:].mean()
    tpl = tpl - np.linspace(left, right, tpl.size)
    taper = max(2, int(0.1 * tpl.size))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, taper))
    tpl[:taper] *= ramp
    tpl[-taper:] *= ramp[::-1]
    return tpl


@functools.lru_cache(maxsize=16)
def _templates(hr_bpm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(t_s, normal_mv, pvc_mv)``: the beat templates at ``_TEMPLATE_FS``, R at ``t_s == 0``."""
    import neurokit2 as nk

    rr_samples = 60.0 / hr_bpm * _TEMPLATE_FS
    common = dict(
        duration=12 * 60.0 / hr_bpm,
        sampling_rate=int(_TEMPLATE_FS),
        heart_rate=hr_bpm,
        heart_rate_std=0,
        noise=0,
        method="ecgsyn",
        random_state=0,
    )
    normal = _extract_template(np.asarray(nk.ecg_simulate(**common), dtype=float), rr_samples)
    pvc = _extract_template(
        np.asarray(nk.ecg_simulate(**common, ti=_PVC_TI, ai=_PVC_AI, bi=_PVC_BI), dtype=float), rr_samples
    )
    normal *= _NORMAL_R_MV / normal.max()
    pvc *= _PVC_PEAK_MV / np.abs(pvc).max()
    t_s = (np.arange(normal.size) - normal.size // 2) / _TEMPLATE_FS
    return t_s, normal, pvc


# ---------------------------------------------------------------------------
# Record assembly
# ---------------------------------------------------------------------------
def _sinus_times(config: SimConfig, rng: np.random.Generator, f_resp: float) -> np.ndarray:
    """Return the sinus R times in s covering the record (and a beat beyond)."""
    rr0 = 60.0 / config.hr_bpm
    n = int(math.ceil(config.duration_s / rr0 * 1.3)) + 4
    phase = rng.uniform(0, 2 * np.pi)
    # slow random component: AR(1) with unit variance
    ar = np.empty(n)
    ar[0] = rng.standard_normal()
    rho = 0.9
    for i in range(1, n):
        ar[i] = rho * ar[i - 1] + math.sqrt(1 - rho**2) * rng.standard_normal()
    times = np.empty(n)
    t = rng.uniform(0.2, 0.2 + rr0)
    for i in range(n):
        times[i] = t
        var = 0.6 * math.sqrt(2) * math.sin(2 * np.pi * f_resp * t + phase) + 0.8 * ar[i]
        t += rr0 * min(1.5, max(0.5, 1.0 + config.hrv_fraction * var))
    return times[times < config.duration_s + rr0]


def _beat_kinds(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Return True for PVCs: a Markov chain with no two PVCs in a row, stationary PVC share ``fraction``."""
    is_pvc = np.zeros(n, dtype=bool)
    if fraction <= 0:
        return is_pvc
    q = fraction / (1.0 - fraction)  # P(PVC | previous normal)
    draws = rng.uniform(size=n)
    for i in range(2, n - 1):
        if not is_pvc[i - 1] and draws[i] < q:
            is_pvc[i] = True
    return is_pvc


def simulate_record(config: SimConfig | str) -> Record:
    """Generate a simulated single-lead ECG record with reference annotations.

    Parameters
    ----------
    config : SimConfig or str
        Settings, or a spec string for :func:`parse_sim_spec`.

    Returns
    -------
    Record
        Name ``'sim<HR>'``, one channel ``'SIM'`` in mV (``float32``),
        ``path=None``; annotations ``'N'`` / ``'V'`` at the R-wave maxima of
        the noise-free signal.

    Raises
    ------
    ConfigError
        A bad spec string.
    TypeError
        ``config`` is neither a SimConfig nor a string.
    """
    if isinstance(config, str):
        config = parse_sim_spec(config)
    check_type("config", config, SimConfig)
    t0 = time.perf_counter()
    fs = float(config.fs)
    n = int(round(config.duration_s * fs))
    rng = np.random.default_rng(config.seed)
    f_resp = rng.uniform(0.2, 0.3)

    t_tpl, normal, pvc = _templates(float(config.hr_bpm))
    half_s = -t_tpl[0]
    pvc_offset_s = t_tpl[int(np.argmax(np.abs(pvc)))]

    sinus = _sinus_times(config, rng, f_resp)
    kinds = _beat_kinds(sinus.size, config.ectopic_fraction, rng)
    coupling = rng.uniform(0.55, 0.65)
    beat_t = sinus.copy()
    for i in np.flatnonzero(kinds):
        jitter = rng.uniform(-0.03, 0.03)
        beat_t[i] = sinus[i - 1] + (coupling + jitter) * (sinus[i] - sinus[i - 1])
    amp_phase = rng.uniform(0, 2 * np.pi)
    gains = 1.0 + 0.05 * np.sin(2 * np.pi * f_resp * beat_t + amp_phase)

    clean = np.zeros(n)
    for t_b, is_pvc, gain in zip(beat_t, kinds, gains, strict=True):
        lo = max(0, int(math.ceil((t_b - half_s) * fs)))
        hi = min(n, int(math.floor((t_b + half_s) * fs)) + 1)
        if hi <= lo:
            continue
        tt = np.arange(lo, hi) / fs - t_b
        clean[lo:hi] += gain * np.interp(tt, t_tpl, pvc if is_pvc else normal, left=0.0, right=0.0)

    # reference annotations at the R-wave maxima of the clean signal
    search = max(1, int(round(_R_SEARCH_S * fs)))
    samples: list[int] = []
    symbols: list[str] = []
    for t_b, is_pvc in zip(beat_t, kinds, strict=True):
        nominal = int(round((t_b + (pvc_offset_s if is_pvc else 0.0)) * fs))
        if not 0 <= nominal < n:
            continue
        lo, hi = max(0, nominal - search), min(n, nominal + search + 1)
        samples.append(lo + int(np.argmax(np.abs(clean[lo:hi]))))
        symbols.append("V" if is_pvc else "N")

    signal = clean
    wander = config.baseline_wander_mv
    if config.noise_mv > 0 or wander > 0:
        t = np.arange(n) / fs
        f_slow = rng.uniform(0.03, 0.08)
        p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
        drift = 0.6 * np.sin(2 * np.pi * f_resp * t + p1) + 0.4 * np.sin(2 * np.pi * f_slow * t + p2)
        signal = clean + wander * drift
        if config.noise_mv > 0:
            signal += rng.normal(0.0, config.noise_mv, size=n)

    ann = Annotations(sample=np.asarray(samples, dtype=np.int64), symbol=symbols, aux=[""] * len(samples))
    record = Record(
        name=config.name,
        fs=fs,
        signal=signal.astype(np.float32)[:, None],
        channels=["SIM"],
        units=["mV"],
        annotations=ann,
        path=None,
    )
    logger.debug(
        "Simulated %s: %.0f s at %g Hz, %d beats (%d PVC), noise %.3g mV, wander %.3g mV, in %.2f s",
        record.name,
        config.duration_s,
        fs,
        len(symbols),
        symbols.count("V"),
        config.noise_mv,
        wander,
        time.perf_counter() - t0,
    )
    return record
