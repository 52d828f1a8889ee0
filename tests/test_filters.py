"""Tests of monitor.filters.BandpassFilter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from monitor.filters import BandpassFilter, finite_runs
from replay.errors import ConfigError

FS = 360.0


def _test_signal(n: int = 3600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    return 1.5 + 0.8 * np.sin(2 * np.pi * 0.3 * t) + np.sin(2 * np.pi * 10 * t) + 0.1 * rng.normal(size=n)


def _chunked(f: BandpassFilter, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    f.reset()
    out, i, k = [], 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        out.append(f.process(x[i : i + n]))
        i += n
        k += 1
    return np.concatenate(out)


@pytest.mark.parametrize("chunk", [1, 7, 360, None])
@pytest.mark.parametrize("notch", [None, 50.0])
def test_chunk_invariance(chunk: int | None, notch: float | None) -> None:
    x = _test_signal()
    x[1000:1100] = np.nan
    f = BandpassFilter(FS, notch_hz=notch)
    whole = f.process(x)
    y = _chunked(f, x, [chunk or x.size])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(whole))
    np.testing.assert_allclose(y, whole, rtol=0, atol=1e-12, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=30))
def test_random_chunking(sizes: list[int]) -> None:
    x = _test_signal(1500, seed=1)
    x[400:420] = np.nan
    f = BandpassFilter(FS)
    whole = f.process(x)
    np.testing.assert_allclose(_chunked(f, x, sizes), whole, rtol=0, atol=1e-12, equal_nan=True)


def test_matches_sosfilt_from_steady_state() -> None:
    x = _test_signal()
    f = BandpassFilter(FS, low_hz=0.5, high_hz=40.0, order=2)
    ref, _ = signal.sosfilt(f.sos, x, zi=signal.sosfilt_zi(f.sos) * x[0])
    np.testing.assert_allclose(f.process(x), ref, atol=1e-12)


def test_nan_hole_restarts_without_ringing() -> None:
    # a constant signal with a large offset jump across the hole: the filter
    # restarts in steady state, so the output stays ~0 after the hole
    x = np.concatenate([np.full(1000, 2.0), np.full(50, np.nan), np.full(1000, -3.0)])
    f = BandpassFilter(FS)
    y = f.process(x)
    assert np.isnan(y[1000:1050]).all()
    assert np.isfinite(y[:1000]).all() and np.isfinite(y[1050:]).all()
    assert np.max(np.abs(y[1050:])) < 1e-9
    assert np.max(np.abs(y[:1000])) < 1e-9


def test_hole_at_chunk_border() -> None:
    x = _test_signal(2000)
    x[500:600] = np.nan
    f = BandpassFilter(FS)
    whole = f.process(x)
    y = _chunked(f, x, [500, 100, 1400])
    np.testing.assert_allclose(y, whole, atol=1e-12, equal_nan=True)


def test_passband_and_stopband() -> None:
    t = np.arange(int(20 * FS)) / FS
    f = BandpassFilter(FS, low_hz=0.5, high_hz=40.0)
    y10 = f.process(np.sin(2 * np.pi * 10 * t))
    f.reset()
    y100 = f.process(np.sin(2 * np.pi * 100 * t))
    half = t.size // 2
    assert 0.9 < np.std(y10[half:]) * np.sqrt(2) < 1.05
    assert np.std(y100[half:]) * np.sqrt(2) < 0.15


def test_notch_removes_mains() -> None:
    t = np.arange(int(20 * FS)) / FS
    f = BandpassFilter(FS, notch_hz=50.0)
    y = f.process(np.sin(2 * np.pi * 50 * t))
    assert np.std(y[t.size // 2 :]) < 0.02


def test_delay() -> None:
    f = BandpassFilter(FS)
    assert 0.0 < f.delay_s < 0.05
    assert "Butterworth" in f.describe()


def test_validation() -> None:
    with pytest.raises(ConfigError):
        BandpassFilter(FS, high_hz=200.0)
    with pytest.raises(ConfigError):
        BandpassFilter(FS, low_hz=40.0, high_hz=20.0)
    with pytest.raises(ConfigError):
        BandpassFilter(-1.0)
    with pytest.raises(TypeError):
        BandpassFilter(FS, order=2.5)
    with pytest.raises(TypeError):
        BandpassFilter("360")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        BandpassFilter(FS).process(np.zeros((3, 2)))


def test_finite_runs() -> None:
    x = np.array([np.nan, 1, 2, np.nan, np.nan, 3, np.nan])
    a, b = finite_runs(x)
    assert a.tolist() == [1, 5] and b.tolist() == [3, 6]
    a, b = finite_runs(np.full(3, np.nan))
    assert a.size == 0 and b.size == 0


def test_all_nan_and_empty() -> None:
    f = BandpassFilter(FS)
    assert f.process(np.zeros(0)).size == 0
    assert np.isnan(f.process(np.full(10, np.nan))).all()
    y = f.process(np.full(10, 4.0))
    assert np.allclose(y, 0.0)
