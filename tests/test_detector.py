"""Tests of monitor.detector.RPeakDetector and detect_rpeaks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detector import STATES, RPeakDetector, detect_rpeaks
from replay.errors import ConfigError

FS = 360.0


def synth_ecg(
    duration_s: float, fs: float = FS, seed: int = 0, amp_mv: float = 1.2, noise_mv: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic ECG (P, QRS, T Gaussians, baseline wander, noise); returns (x_mv, r_peaks)."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * fs)
    t = np.arange(n) / fs
    beats = []
    tb = 0.4
    while tb < duration_s - 0.5:
        beats.append(tb)
        tb += 0.8 + 0.1 * np.sin(tb / 3.0) + 0.03 * rng.normal()
    beats_a = np.array(beats)
    x = 0.3 * np.sin(2 * np.pi * 0.25 * t) + noise_mv * rng.normal(size=n)
    waves = [(-0.16, 0.15, 0.025), (-0.025, -0.12, 0.008), (0.0, amp_mv, 0.011), (0.03, -0.25, 0.009), (0.28, 0.3, 0.045)]
    for b in beats_a:
        lo, hi = int((b - 0.4) * fs), int((b + 0.6) * fs)
        lo, hi = max(lo, 0), min(hi, n)
        tt = t[lo:hi] - b
        for dt, a, sd in waves:
            x[lo:hi] += a * np.exp(-0.5 * ((tt - dt) / sd) ** 2)
    return x, np.round(beats_a * fs).astype(np.int64)


def stream(det: RPeakDetector, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    det.reset()
    out, i, k = [], 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        out.append(det.process(x[i : i + n]))
        i += n
        k += 1
    return np.concatenate(out)


def n_matched(ref: np.ndarray, det: np.ndarray, fs: float, tol_s: float = 0.05) -> tuple[int, int]:
    """Return (matched reference beats, false detections) with a tolerance."""
    if det.size == 0:
        return 0, 0
    d = np.abs(det[:, None] - ref[None, :])
    hit_ref = (d <= tol_s * fs).any(axis=0)
    hit_det = (d <= tol_s * fs).any(axis=1)
    return int(hit_ref.sum()), int((~hit_det).sum())


# ---------------------------------------------------------------------------


def test_synthetic_all_beats_exact_fiducial() -> None:
    x, ref = synth_ecg(60.0)
    det = detect_rpeaks(x, FS)
    assert det.dtype == np.int64
    assert np.all(np.diff(det) > 0)
    assert det.size == ref.size
    assert np.max(np.abs(det - ref)) <= 2  # R maximum, within 2 samples (5.6 ms)


@pytest.mark.parametrize("chunk", [1, 7, 360, None])
def test_chunk_invariance(chunk: int | None) -> None:
    x, _ = synth_ecg(20.0, seed=3, noise_mv=0.05)
    x[3000:3300] = np.nan
    det = RPeakDetector(FS)
    whole = det.process(x)
    got = stream(det, x, [chunk or x.size])
    np.testing.assert_array_equal(got, whole)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=900), min_size=1, max_size=20))
def test_random_chunking(sizes: list[int]) -> None:
    x, _ = synth_ecg(12.0, seed=5, noise_mv=0.05)
    x[2000:2100] = np.nan
    det = RPeakDetector(FS)
    whole = det.process(x)
    np.testing.assert_array_equal(stream(det, x, sizes), whole)


def test_each_beat_once_and_delay() -> None:
    x, ref = synth_ecg(30.0)
    det = RPeakDetector(FS)
    assert 0.15 <= det.delay_s <= 0.3
    assert det.max_delay_s >= det.delay_s
    seen = []
    for i in range(0, x.size, 36):  # 100 ms chunks
        got = det.process(x[i : i + 36])
        now = det.n_samples
        for p in got.tolist():
            if p > 3 * FS:  # after learning: decided within delay_s + one chunk
                assert now - p <= (det.delay_s + 0.1) * FS + 2
        seen.extend(got.tolist())
    assert len(seen) == len(set(seen)) == ref.size
    assert seen == sorted(seen)


@pytest.mark.parametrize("fs", [125.0, 128.0, 250.0, 500.0, 1000.0])
def test_sampling_rates(fs: float) -> None:
    x, ref = synth_ecg(40.0, fs=fs, seed=2)
    det = detect_rpeaks(x, fs)
    hit, fp = n_matched(ref, det, fs, tol_s=0.015)
    assert hit == ref.size and fp == 0


def test_polarity_inversion() -> None:
    x, ref = synth_ecg(40.0, seed=4)
    det = detect_rpeaks(-x, FS)
    assert det.size == ref.size
    assert np.max(np.abs(det - ref)) <= 2


def test_nan_hole_no_false_beats_and_recovery() -> None:
    x, ref = synth_ecg(40.0, seed=6)
    a, b = int(15 * FS), int(18 * FS)  # 3-s hole (longer than relearn_after_s)
    x[a:b] = np.nan
    det = RPeakDetector(FS)
    states = []
    out = []
    for i in range(0, x.size, 90):
        out.append(det.process(x[i : i + 90]))
        states.append((det.n_samples, det.state))
    got = np.concatenate(out)
    assert not np.any((got >= a) & (got < b))
    _, fp = n_matched(ref, got, FS)
    assert fp == 0
    assert any(s == "hole" for n, s in states if a < n <= b)
    # every beat more than 2 s after the hole is found
    later = ref[ref > b + 2 * FS]
    hit, _ = n_matched(later, got[got > b + 2 * FS - 10], FS)
    assert hit == later.size
    assert states[-1][1] == "ok"


def test_short_holes_keep_detecting() -> None:
    x, ref = synth_ecg(40.0, seed=7)
    rng = np.random.default_rng(0)
    for s in rng.integers(int(5 * FS), int(35 * FS), 10):
        x[s : s + 5] = np.nan  # lost packets
    got = detect_rpeaks(x, FS)
    hit, fp = n_matched(ref, got, FS)
    assert fp == 0
    assert hit >= ref.size - 12  # at most the beats next to a hole are lost


def test_flat_line() -> None:
    x, ref = synth_ecg(40.0, seed=8)
    a, b = int(12 * FS), int(24 * FS)
    x[a:b] = x[a - 1] + 0.005 * np.random.default_rng(1).normal(size=b - a)  # lead-off, tiny noise
    det = RPeakDetector(FS)
    out, st_flat = [], []
    for i in range(0, x.size, 180):
        out.append(det.process(x[i : i + 180]))
        if a + 2 * FS < det.n_samples <= b:
            st_flat.append(det.state)
    got = np.concatenate(out)
    assert not np.any((got > a + 0.1 * FS) & (got < b))
    assert st_flat and all(s == "flat" for s in st_flat)
    later = ref[ref > b + 2 * FS]
    hit, _ = n_matched(later, got[got > b], FS)
    assert hit == later.size
    _, fp = n_matched(ref[ref > b], got[got > b], FS)
    assert fp == 0


def test_saturation() -> None:
    x, ref = synth_ecg(40.0, seed=9)
    a, b = int(10 * FS), int(16 * FS)
    x[a:b] = 5.0  # clipped at the rail (a big step in and out)
    det = RPeakDetector(FS)
    out, st_sat = [], []
    for i in range(0, x.size, 360):
        out.append(det.process(x[i : i + 360]))
        if a + FS < det.n_samples <= b:
            st_sat.append(det.state)
    got = np.concatenate(out)
    _, fp = n_matched(ref, got, FS)
    assert fp == 0
    assert not np.any((got >= a) & (got < b))
    assert st_sat and all(s == "flat" for s in st_sat)
    later = ref[ref > b + 2 * FS]
    hit, _ = n_matched(later, got, FS)
    assert hit == later.size


@pytest.mark.parametrize("factor", [0.2, 5.0])
def test_amplitude_change_is_followed(factor: float) -> None:
    x, ref = synth_ecg(60.0, seed=12)
    a = int(20 * FS)
    x[a:] *= factor
    got = detect_rpeaks(x, FS)
    _, fp = n_matched(ref, got, FS)
    assert fp == 0
    later = ref[ref > a + 12 * FS]
    hit, _ = n_matched(later, got, FS)
    assert hit == later.size


@pytest.mark.parametrize("fs", [128.0, 360.0, 1000.0])
def test_pure_noise(fs: float) -> None:
    x = np.random.default_rng(11).normal(0.0, 0.2, int(60 * fs))
    det = RPeakDetector(fs)
    n = 0
    states = []
    for i in range(0, x.size, int(fs)):
        n += det.process(x[i : i + int(fs)]).size
        states.append(det.state)
    assert n <= 12  # a clean ECG would give ~60-80; detectors without a noise rule ~130
    assert states[-1] == "noisy"
    assert states[10:].count("noisy") >= 0.9 * len(states[10:])


def test_zeros_learning_then_flat() -> None:
    det = RPeakDetector(FS)
    assert det.state == "learning"
    assert det.process(np.zeros(int(5 * FS))).size == 0
    assert det.state == "flat"
    assert det.state in STATES
    det.reset()
    assert det.n_samples == 0 and det.state == "learning"


def test_validation() -> None:
    with pytest.raises(ConfigError):
        RPeakDetector(FS, refractory_s=2.0)
    with pytest.raises(ConfigError):
        RPeakDetector(FS, qrs_low_hz=20.0, qrs_high_hz=10.0)
    with pytest.raises(TypeError):
        RPeakDetector("360")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        RPeakDetector(FS).process(np.zeros((2, 2)))
    assert RPeakDetector(FS).process(np.zeros(0)).size == 0


# ---------------------------------------------------------------------------
# MIT-BIH


def _mitdb_dir() -> Path:
    env = os.environ.get("ECG_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "mitdb"


MITDB = _mitdb_dir()
needs_mitdb = pytest.mark.skipif(
    not (MITDB / "100.hea").exists(),
    reason=f"MIT-BIH records not found in {MITDB} (set ECG_DATA_DIR)",
)


@needs_mitdb
@pytest.mark.parametrize(
    ("record", "se_min", "ppv_min"),
    [("100", 0.999, 0.999), ("105", 0.98, 0.98), ("203", 0.975, 0.99), ("208", 0.98, 0.995)],
)
def test_ec57_floor(record: str, se_min: float, ppv_min: float) -> None:
    from trainer.ec57 import score_detector_on_records

    (s,) = score_detector_on_records([record], str(MITDB))
    assert s.se >= se_min and s.ppv >= ppv_min, s
    assert abs(s.median_offset_ms) <= 10.0  # fiducial at the R wave


@needs_mitdb
@pytest.mark.parametrize("record", ["100", "119", "203"])
def test_resampled_records(record: str) -> None:
    from trainer.ec57 import score_detector_on_records

    (base,) = score_detector_on_records([record], str(MITDB))
    for fs in (128.0, 250.0, 500.0):
        (s,) = score_detector_on_records([record], str(MITDB), fs_target=fs)
        assert abs(s.se - base.se) <= 0.003, (fs, s, base)
        assert abs(s.ppv - base.ppv) <= 0.003, (fs, s, base)
