"""Tests of replay.sim: spec grammar, validation, determinism, annotations and speed."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from replay.errors import ConfigError
from replay.sim import SimConfig, is_sim_spec, parse_sim_spec, simulate_record
from replay.wfdb_source import Record


def local_max_ok(x: np.ndarray, samples: np.ndarray, fs: float, window_s: float = 0.05) -> np.ndarray:
    """Return True where |x| at the sample is the maximum of |x| within ±window_s."""
    w = int(round(window_s * fs))
    ax = np.abs(x)
    out = []
    for s in samples:
        lo, hi = max(0, s - w), min(x.size, s + w + 1)
        out.append(ax[s] >= ax[lo:hi].max())
    return np.array(out)


@pytest.fixture(scope="module")
def pvc_record() -> Record:
    """Ten noise-free minutes with 10 % PVCs (shared by several tests)."""
    return simulate_record(SimConfig(hr_bpm=72, ectopic_fraction=0.1, duration_s=600.0, seed=3))


# ---------------------------------------------------------------------------
# Spec grammar
# ---------------------------------------------------------------------------
def test_defaults():
    cfg = parse_sim_spec("sim")
    assert cfg == SimConfig()
    assert (cfg.hr_bpm, cfg.fs, cfg.duration_s, cfg.ectopic_fraction, cfg.noise_mv, cfg.seed) == (
        72.0,
        360.0,
        600.0,
        0.0,
        0.0,
        0,
    )
    assert parse_sim_spec("sim:") == cfg


def test_full_spec():
    cfg = parse_sim_spec("sim:72,ectopic=0.1,noise=0.05,fs=360,duration=600,seed=1")
    assert cfg == SimConfig(hr_bpm=72.0, ectopic_fraction=0.1, noise_mv=0.05, fs=360.0, duration_s=600.0, seed=1)
    assert cfg.baseline_wander_mv == pytest.approx(0.15)  # 3 x noise by default
    assert cfg.name == "sim72"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sim:80", {"hr_bpm": 80.0}),
        ("SIM:62.5", {"hr_bpm": 62.5}),
        ("  sim: 90 , Ectopic = 0.2 ", {"hr_bpm": 90.0, "ectopic_fraction": 0.2}),
        ("sim:hr=100", {"hr_bpm": 100.0}),
        ("sim:ectopic=0.5", {"ectopic_fraction": 0.5}),
        ("sim:60,wander=0,noise=0.1", {"hr_bpm": 60.0, "wander_mv": 0.0, "noise_mv": 0.1}),
        ("sim:60,hrv=0,fs=1000,duration=1", {"hr_bpm": 60.0, "hrv_fraction": 0.0, "fs": 1000.0, "duration_s": 1.0}),
        ("sim:72,seed=12345", {"seed": 12345}),
    ],
)
def test_spec_variants(spec, expected):
    assert parse_sim_spec(spec) == dataclasses.replace(SimConfig(), **expected)


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("sim:abc", ["hr must be a number", "'abc'"]),
        ("sim:72,ectopc=0.1", ["unknown key 'ectopc'", "Did you mean 'ectopic'?", "Valid keys"]),
        ("sim:72,nois=0.1", ["Did you mean 'noise'?"]),
        ("sim:72,colour=red", ["unknown key 'colour'", "Valid keys: hr, ectopic"]),
        ("sim:72,80", ["'80' is not key=value"]),
        ("sim:72,hr=80", ["hr is given twice"]),
        ("sim:72,seed=1,seed=2", ["seed is given twice"]),
        ("sim:300", ["hr must be in 30-200 bpm, got 300 bpm"]),
        ("sim:10", ["hr must be in 30-200 bpm"]),
        ("sim:nan", ["hr must be in"]),
        ("sim:inf", ["hr must be in"]),
        ("sim:72,ectopic=0.6", ["ectopic must be in 0-0.5"]),
        ("sim:72,noise=-0.1", ["noise must be in 0-1 mV"]),
        ("sim:72,fs=50", ["fs must be in 100-1000 Hz"]),
        ("sim:72,duration=0", ["duration must be in 1-3600 s"]),
        ("sim:72,seed=1.5", ["seed must be an integer", "'1.5'"]),
        ("sim:72,seed=-1", ["seed must be in 0"]),
        ("sim:72,,noise=0.1", ["empty item at position 2"]),
        ("sim:72,noise=", ["noise has no value"]),
        ("simulate:72", ["must start with 'sim'"]),
        ("sim72", ["must start with 'sim'"]),
        ("100", ["must start with 'sim'"]),
    ],
)
def test_spec_errors(spec, fragments):
    with pytest.raises(ConfigError) as err:
        parse_sim_spec(spec)
    msg = str(err.value)
    assert "\n" not in msg
    assert repr(spec) in msg or spec in msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


def test_spec_type():
    with pytest.raises(TypeError, match="spec"):
        parse_sim_spec(72)


def test_is_sim_spec():
    assert is_sim_spec("sim") and is_sim_spec("sim:72") and is_sim_spec(" SIM:72,seed=1")
    assert not is_sim_spec("simulate") and not is_sim_spec("100") and not is_sim_spec("./sim/100")


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"hr_bpm": 10.0}, ConfigError),
        ({"ectopic_fraction": 0.7}, ConfigError),
        ({"fs": 5000.0}, ConfigError),
        ({"duration_s": 0.5}, ConfigError),
        ({"wander_mv": -1.0}, ConfigError),
        ({"seed": -1}, ConfigError),
        ({"seed": 1.5}, TypeError),
        ({"seed": True}, TypeError),
        ({"hr_bpm": "72"}, TypeError),
    ],
)
def test_config_validation(kwargs, exc):
    with pytest.raises(exc):
        SimConfig(**kwargs)


# ---------------------------------------------------------------------------
# Generated record
# ---------------------------------------------------------------------------
def test_record_fields():
    rec = simulate_record("sim:72,duration=10")
    assert isinstance(rec, Record)
    assert rec.name == "sim72"
    assert rec.fs == 360.0
    assert rec.channels == ["SIM"] and rec.units == ["mV"]
    assert rec.path is None
    assert rec.signal.dtype == np.float32 and rec.signal.shape == (3600, 1)
    assert rec.duration_s == pytest.approx(10.0)
    ann = rec.annotations
    assert ann.sample.dtype == np.int64
    assert len(ann.symbol) == len(ann.aux) == ann.sample.size
    assert set(ann.symbol) == {"N"} and set(ann.aux) == {""}
    assert np.all(np.diff(ann.sample) > 0)
    assert 0 <= ann.sample.min() and ann.sample.max() < rec.n_samples
    assert np.all(np.isfinite(rec.signal))


def test_simulate_rejects_other_types():
    with pytest.raises(TypeError, match="config"):
        simulate_record(72)


def test_deterministic_by_seed():
    cfg = SimConfig(ectopic_fraction=0.2, noise_mv=0.05, duration_s=60.0, seed=7)
    a, b = simulate_record(cfg), simulate_record(cfg)
    np.testing.assert_array_equal(a.signal, b.signal)
    np.testing.assert_array_equal(a.annotations.sample, b.annotations.sample)
    assert a.annotations.symbol == b.annotations.symbol
    c = simulate_record(dataclasses.replace(cfg, seed=8))
    assert not np.array_equal(a.signal, c.signal)


@pytest.mark.parametrize(
    "spec",
    [
        "sim:72,ectopic=0.3,duration=60",
        "sim:40,ectopic=0.5,duration=60,fs=125",
        "sim:150,ectopic=0.2,duration=60,fs=1000",
        "sim:200,ectopic=0.1,duration=30,fs=250,seed=4",
        "sim:30,ectopic=0.2,duration=60,fs=500,seed=5",
    ],
)
def test_annotations_at_r_maxima(spec):
    rec = simulate_record(spec)
    x = rec.signal[:, 0]
    ann = rec.annotations
    ok = local_max_ok(x, ann.sample, rec.fs, 0.05)
    assert ok.all(), f"{(~ok).sum()} annotations not at the local |max| within ±50 ms"
    r = x[ann.sample[np.array(ann.symbol) == "N"]]
    assert np.median(r) == pytest.approx(1.0, abs=0.1)  # R wave about 1 mV


def test_annotations_survive_noise():
    clean = simulate_record("sim:72,ectopic=0.2,duration=60,seed=2")
    noisy = simulate_record("sim:72,ectopic=0.2,duration=60,seed=2,noise=0.05,wander=0")
    np.testing.assert_array_equal(clean.annotations.sample, noisy.annotations.sample)
    assert clean.annotations.symbol == noisy.annotations.symbol
    resid = noisy.signal[:, 0].astype(float) - clean.signal[:, 0]
    assert resid.std() == pytest.approx(0.05, rel=0.05)
    assert abs(resid.mean()) < 0.005


def test_baseline_wander():
    clean = simulate_record("sim:72,duration=60,seed=2")
    wandering = simulate_record("sim:72,duration=60,seed=2,wander=0.3")
    drift = wandering.signal[:, 0].astype(float) - clean.signal[:, 0]
    assert 0.1 < np.abs(drift).max() <= 0.3 + 1e-6
    # slow: nothing above a few Hz
    assert np.abs(np.diff(drift)).max() < 2 * np.pi * 0.35 * 0.3 / clean.fs * 1.01


def test_heart_rate_respected():
    for hr in (45, 72, 120):
        rec = simulate_record(f"sim:{hr},duration=120,seed=1")
        rr = np.diff(rec.annotations.sample) / rec.fs
        assert 60.0 / np.mean(rr) == pytest.approx(hr, rel=0.03)
        assert 0.01 < np.std(rr) / np.mean(rr) < 0.08  # some HRV, not too much
    flat = simulate_record("sim:72,hrv=0,duration=30")
    rr = np.diff(flat.annotations.sample)
    assert rr.max() - rr.min() <= 2  # constant RR up to rounding


def test_ectopic_fraction(pvc_record):
    sym = np.array(pvc_record.annotations.symbol)
    assert 0.07 < np.mean(sym == "V") < 0.13
    assert not np.any((sym[1:] == "V") & (sym[:-1] == "V")), "two PVCs in a row"
    assert "V" not in simulate_record("sim:72,duration=60").annotations.symbol


def test_bigeminy():
    sym = np.array(simulate_record("sim:72,ectopic=0.5,duration=60").annotations.symbol)
    assert np.mean(sym == "V") > 0.45
    assert not np.any((sym[1:] == "V") & (sym[:-1] == "V"))


def test_pvc_premature_wide_with_compensatory_pause(pvc_record):
    rec = pvc_record
    x = rec.signal[:, 0]
    s = rec.annotations.sample
    sym = np.array(rec.annotations.symbol)
    rr = np.diff(s) / rec.fs
    nn = np.median(rr[(sym[1:] == "N") & (sym[:-1] == "N")])
    idx = np.flatnonzero(sym == "V")
    idx = idx[(idx > 0) & (idx < len(s) - 1) & (sym[np.clip(idx - 1, 0, None)] == "N")]
    before = (s[idx] - s[idx - 1]) / rec.fs
    after = (s[idx + 1] - s[idx]) / rec.fs
    assert np.all(before < 0.8 * nn), "PVC not premature"
    assert np.all(after > 1.1 * nn), "no pause after the PVC"
    np.testing.assert_allclose(before + after, 2 * nn, rtol=0.12)  # full compensatory pause

    def width_s(i):  # time |x| stays above half its peak around the R maximum
        a = np.abs(x[s[i] - int(0.2 * rec.fs) : s[i] + int(0.2 * rec.fs)])
        return np.sum(a > 0.5 * np.abs(x[s[i]])) / rec.fs

    w_v = np.median([width_s(i) for i in idx[:20]])
    w_n = np.median([width_s(i) for i in np.flatnonzero(sym == "N")[5:25]])
    assert w_v > 2.0 * w_n, (w_v, w_n)
    assert np.median(np.abs(x[s[idx]])) > 1.2  # PVCs are taller than the 1 mV normal R


def test_speed():
    t0 = time.perf_counter()
    simulate_record("sim:73,duration=600")  # new heart rate: builds the templates too
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec = simulate_record("sim:73,ectopic=0.1,noise=0.05,duration=600,seed=9")
    warm = time.perf_counter() - t0
    assert rec.n_samples == 216000
    assert cold < 5.0, f"10 min with new templates took {cold:.2f} s"
    assert warm < 2.0, f"10 min took {warm:.2f} s"
