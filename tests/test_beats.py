"""Tests of monitor.beats: live front end, offline beats, BeatFeaturizer."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.beats import (
    RHYTHM_NAMES,
    BeatFeatures,
    BeatFeaturizer,
    featurize_beats,
    live_front_end,
    offline_beats,
)
from monitor.detector import detect_rpeaks
from monitor.filters import BandpassFilter
from replay.errors import ConfigError


def _synthetic(fs: float, seconds: float = 20.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spiky 'ECG' with irregular RR and its beat indices."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    beats_s = np.cumsum(rng.uniform(0.5, 1.1, size=int(seconds)))
    beats_s = beats_s[beats_s < seconds - 0.1]
    x = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    for b in beats_s:
        x += np.exp(-0.5 * ((t - b) / 0.012) ** 2) - 0.2 * np.exp(-0.5 * ((t - b - 0.25) / 0.04) ** 2)
    return x, np.round(beats_s * fs).astype(np.int64)


def test_front_end_is_the_monitors():
    filt, _det = live_front_end(360.0)
    assert (filt.low_hz, filt.high_hz) == (0.5, 40.0)
    filt, _ = live_front_end(80.0)
    assert filt.high_hz == pytest.approx(36.0)


def test_offline_beats_same_as_detector_and_filter():
    x, _ = _synthetic(360.0)
    peaks, y = offline_beats(x, 360.0)
    np.testing.assert_array_equal(peaks, detect_rpeaks(x, 360.0))
    np.testing.assert_allclose(y, BandpassFilter(360.0, 0.5, 40.0).process(x))
    p2, y2 = offline_beats(x, 360.0, chunk_s=0.37)
    np.testing.assert_array_equal(peaks, p2)
    np.testing.assert_allclose(y, y2, atol=1e-12)


def _stream(fz: BeatFeaturizer, y: np.ndarray, beats: np.ndarray, chunk: int, lag: int) -> BeatFeatures:
    """Feed chunks; each beat is given ``lag`` samples after it (like the detector)."""
    parts, j = [], 0
    for a in range(0, y.size, chunk):
        b = min(y.size, a + chunk)
        k = j
        while k < beats.size and beats[k] + lag < b:
            k += 1
        parts.append(fz.process(y[a:b], beats[j:k]))
        j = k
    parts.append(fz.process(np.zeros(0), beats[j:]))
    parts.append(fz.flush())
    return BeatFeatures.concatenate(parts, fz.n_channels, fz.n_window, len(fz.rr_names))


@pytest.mark.parametrize("chunk", [1, 7, 360, None])
@pytest.mark.parametrize(("post_rr", "context"), [(True, False), (False, False), (False, True)])
def test_featurizer_chunk_invariance(chunk, post_rr, context):
    x, beats = _synthetic(360.0, 12.0)
    y = BandpassFilter(360.0, 0.5, 40.0).process(x)
    y[1500:1600] = np.nan  # a hole
    beats = beats[(beats < 1500) | (beats > 1700)]
    ref = featurize_beats(y, beats, 360.0, use_post_rr=post_rr, rr_context=context)
    fz = BeatFeaturizer(360.0, use_post_rr=post_rr, rr_context=context)
    got = _stream(fz, y, beats, y.size if chunk is None else chunk, lag=105)
    np.testing.assert_array_equal(got.sample, ref.sample)
    np.testing.assert_array_equal(got.windows, ref.windows)
    np.testing.assert_array_equal(got.rr, ref.rr)
    assert len(ref) == beats.size


def test_rr_features_are_causal():
    x, beats = _synthetic(360.0, 20.0)
    y = BandpassFilter(360.0, 0.5, 40.0).process(x)
    full = featurize_beats(y, beats, 360.0)
    m = beats.size // 2
    # change everything after beat m: beats before m-1 must not change (m-1 uses beat m as post-RR)
    y2 = y.copy()
    y2[beats[m] + 200 :] = 0.0
    part = featurize_beats(y2, np.concatenate([beats[: m + 1], beats[m + 1 :] + 37]), 360.0)
    np.testing.assert_array_equal(full.rr[:m], part.rr[:m])
    np.testing.assert_array_equal(full.windows[: m - 1], part.windows[: m - 1])
    # pre-RR is the interval to the previous beat, in seconds
    names = BeatFeaturizer(360.0).rr_names
    pre = full.rr[1:, names.index("pre_rr_s")]
    np.testing.assert_allclose(pre, np.diff(beats) / 360.0, rtol=1e-6)
    post = full.rr[:-1, names.index("post_rr_s")]
    np.testing.assert_allclose(post, np.diff(beats) / 360.0, rtol=1e-6)


def test_rr_context_features():
    # a steady 1 s rhythm, one premature beat (0.6 s) and its compensatory pause (1.4 s)
    beats = [360, 720, 1080, 1440, 1800, 2016, 2520, 2880, 3240]
    fz = BeatFeaturizer(360.0, template_beats=0, use_post_rr=False, rr_context=True, local_beats=4)
    assert fz.rr_names[-2:] == ("pre_prev", "pre_median")
    assert "rr_context" in fz.settings()
    out = BeatFeatures.concatenate([fz.process(np.zeros(360 * 10), beats), fz.flush()], 1, fz.n_window, len(fz.rr_names))
    pre_prev = out.rr[:, fz.rr_names.index("pre_prev")]
    pre_median = out.rr[:, fz.rr_names.index("pre_median")]
    np.testing.assert_allclose(pre_prev[2:], [1.0, 1.0, 1.0, 0.6, 1.4 / 0.6, 1.0 / 1.4, 1.0], rtol=1e-5)
    # the median of the last 4 intervals (this one included) ignores one short or long interval
    np.testing.assert_allclose(pre_median[5:], [0.6, 1.4, 1.0, 1.0], rtol=1e-5)
    # without rr_context the feature set of older weights is unchanged
    assert len(BeatFeaturizer(360.0, use_post_rr=False).rr_names) == 7


def test_template_distance_feature():
    x, beats = _synthetic(360.0, 12.0)
    y = BandpassFilter(360.0, 0.5, 40.0).process(x)
    out = featurize_beats(y, beats, 360.0, template_distance=True)
    names = BeatFeaturizer(360.0, template_distance=True).rr_names
    assert names[-1] == "template_rms"
    d = out.rr[:, -1]
    ref = np.sqrt(np.mean((out.windows[:, 0] - out.windows[:, 1]) ** 2, axis=1))
    np.testing.assert_allclose(d, ref, rtol=1e-5, atol=1e-6)
    assert d[0] == 0.0  # the first beat is its own template
    # an inverted (ectopic-looking) beat is far from the template of the others
    y2 = y.copy()
    b = beats[8]
    y2[b - 100 : b + 100] *= -1
    d2 = featurize_beats(y2, beats, 360.0, template_distance=True).rr[:, -1]
    assert d2[8] > 5 * np.median(d2[2:8])
    with pytest.raises(ConfigError, match="template_distance"):
        BeatFeaturizer(360.0, template_distance=True, template_beats=0)


def test_hole_invalidates_rr():
    fz = BeatFeaturizer(360.0, template_beats=0)
    y = np.zeros(360 * 10)
    y[1000:1010] = np.nan
    out = BeatFeatures.concatenate([fz.process(y, [360, 720, 1080, 1440, 1800]), fz.flush()], 1, fz.n_window, len(fz.rr_names))
    pre = out.rr[:, fz.rr_names.index("pre_rr_s")]
    assert pre[1] == pytest.approx(1.0)
    assert pre[2] == pytest.approx(1.0)  # interval over the hole replaced by the local mean (1.0 s)
    assert pre[3] == pytest.approx(1.0)


@pytest.mark.parametrize("normalization", ["zscore", "minmax", "mad"])
def test_normalisation(normalization):
    x, beats = _synthetic(360.0, 10.0)
    out = featurize_beats(3.0 * x + 1.0, beats, 360.0, normalization=normalization)
    ref = featurize_beats(x, beats, 360.0, normalization=normalization)
    np.testing.assert_allclose(out.windows, ref.windows, atol=2e-4)  # amplitude and offset invariant
    w = ref.windows[2:-2, 0]
    if normalization == "zscore":
        np.testing.assert_allclose(w.mean(1), 0, atol=1e-4)
        np.testing.assert_allclose(w.std(1), 1, atol=1e-3)
    elif normalization == "minmax":
        np.testing.assert_allclose(w.min(1), 0, atol=1e-5)
        np.testing.assert_allclose(w.max(1), 1, atol=1e-5)


@pytest.mark.parametrize("fs", [125.0, 250.0, 500.0, 1000.0])
def test_resampling_any_rate(fs):
    x360, b360 = _synthetic(360.0, 10.0)
    t = np.arange(int(10 * fs)) / fs
    x = np.interp(t, np.arange(x360.size) / 360.0, x360)
    b = np.round(b360 / 360.0 * fs).astype(np.int64)
    ref = featurize_beats(x360, b360, 360.0, template_beats=0)
    got = featurize_beats(x, b, fs, template_beats=0)
    assert got.windows.shape == ref.windows.shape == (b.size, 1, 128)
    inner = slice(1, -1)
    assert np.abs(got.windows[inner] - ref.windows[inner]).mean() < 0.15


def test_bad_settings():
    with pytest.raises(ConfigError, match="Did you mean 'zscore'"):
        BeatFeaturizer(360.0, normalization="zscores")
    with pytest.raises(ConfigError, match="local_beats"):
        BeatFeaturizer(360.0, local_beats=300, long_beats=200)
    with pytest.raises(TypeError):
        BeatFeaturizer(360.0, use_post_rr=1)
    fz = BeatFeaturizer(360.0)
    fz.process(np.zeros(1000), [500])
    with pytest.raises(ConfigError, match="increasing"):
        fz.process(np.zeros(10), [400])


def test_af_context_features():
    # 40 beats at a steady 0.8 s, then 40 irregular intervals (0.5 to 1.1 s), then steady again
    rng = np.random.default_rng(3)
    rr = np.r_[np.full(40, 0.8), rng.uniform(0.5, 1.1, 40), np.full(40, 0.8)]
    beats = (360 + np.cumsum(np.round(rr * 360))).astype(np.int64)
    fz = BeatFeaturizer(360.0, template_beats=0, use_post_rr=False, af_context=True)
    assert fz.rr_names[-2:] == ("af_pnn50", "af_rmssd") and fz.settings()["af_beats"] == 32
    out = BeatFeatures.concatenate([fz.process(np.zeros(beats[-1] + 720), beats), fz.flush()], 1, fz.n_window, len(fz.rr_names))
    pnn = out.rr[:, fz.rr_names.index("af_pnn50")]
    rmssd = out.rr[:, fz.rr_names.index("af_rmssd")]
    intervals = np.diff(beats) / 360.0
    for j in (5, 39, 60, 79, 100, 119):  # beat j's intervals: up to and including its own pre-RR
        recent = intervals[max(0, j - 33) : j]
        d = np.diff(recent)
        assert pnn[j] == pytest.approx(((np.abs(d) > 0.05).sum() + 0.5) / (d.size + 1), rel=1e-5)
        assert rmssd[j] == pytest.approx(np.sqrt(np.mean(d**2)) / recent.mean() if d.size else 0.0, rel=1e-4, abs=1e-7)
    assert pnn[0] == pytest.approx(0.5) and rmssd[0] == 0.0  # nothing known yet: neutral share
    assert pnn[39] < 0.05 and rmssd[39] < 0.01  # regular
    assert pnn[79] > 0.7 and rmssd[79] > 0.2  # irregular
    assert pnn[119] < 0.05  # regular again once the irregular stretch left the 32 intervals
    # chunk invariance, with a hole
    y = np.zeros(beats[-1] + 720)
    y[20000:20100] = np.nan
    keep = beats[(beats < 19900) | (beats > 20300)]
    ref = featurize_beats(y, keep, 360.0, template_beats=0, use_post_rr=False, af_context=True)
    got = _stream(BeatFeaturizer(360.0, template_beats=0, use_post_rr=False, af_context=True), y, keep, 97, lag=105)
    np.testing.assert_array_equal(got.rr, ref.rr)
    # off by default: the feature set of older weights is unchanged
    assert "af_pnn50" not in BeatFeaturizer(360.0).rr_names
    with pytest.raises(ConfigError, match="af_beats"):
        BeatFeaturizer(360.0, af_context=True, af_beats=1)


def test_af_robust_features_tell_af_from_frequent_ectopy():
    # three stretches of 64 beats: AF-like random intervals, then a 1.0 s sinus rhythm with an
    # early beat (0.6 s + 1.4 s compensatory pause) every 8th cycle, then the sinus rhythm alone
    rng = np.random.default_rng(5)
    sinus = np.full(64, 1.0)
    ectopy = sinus.copy()
    ectopy[6::8], ectopy[7::8] = 0.6, 1.4
    rr = np.r_[rng.uniform(0.45, 1.15, 64), ectopy, sinus]
    beats = (360 + np.cumsum(np.round(rr * 360))).astype(np.int64)
    kw = dict(template_beats=0, use_post_rr=False, af_context=True, af_robust=True)
    fz = BeatFeaturizer(360.0, **kw)
    assert fz.rr_names[-4:] == ("af_pnn50", "af_rmssd", "af_madsd", "af_regular") and fz.settings()["af_robust"]
    out = featurize_beats(np.zeros(beats[-1] + 720), beats, 360.0, **kw)
    col = {n: out.rr[:, fz.rr_names.index(n)] for n in ("af_pnn50", "af_madsd", "af_regular")}
    intervals = np.diff(beats) / 360.0
    for j in (1, 2, 20, 63, 100, 127, 180):  # against numpy, on beat j's last 33 intervals
        recent = intervals[max(0, j - 33) : j]
        med = np.median(recent)
        assert col["af_madsd"][j] == pytest.approx(np.median(np.abs(np.diff(recent))) / med if recent.size > 1 else 0.0, rel=1e-5, abs=1e-7)
        assert col["af_regular"][j] == pytest.approx(np.mean(np.abs(recent - med) <= 0.1 * med), rel=1e-6)
    assert col["af_regular"][0] == 1.0 and col["af_madsd"][0] == 0.0  # nothing known yet
    af, ect = 63, 127
    # pNN50 calls the ectopic stretch nearly as irregular as AF; the robust measures do not
    assert col["af_pnn50"][ect] > 0.3
    assert col["af_madsd"][af] > 0.1 and col["af_madsd"][ect] < 0.02
    assert col["af_regular"][af] < 0.4 and col["af_regular"][ect] > 0.6
    assert col["af_regular"][180] == 1.0
    # independent of af_context, chunk invariant with a hole, off by default
    y = np.zeros(beats[-1] + 720)
    y[30000:30100] = np.nan
    keep = beats[(beats < 29900) | (beats > 30300)]  # in the ectopic stretch
    kw = dict(template_beats=0, use_post_rr=False, af_robust=True)
    ref = featurize_beats(y, keep, 360.0, **kw)
    assert ref.rr.shape[1] == len(BeatFeaturizer(360.0, **kw).rr_names) == 9
    got = _stream(BeatFeaturizer(360.0, **kw), y, keep, 97, lag=105)
    np.testing.assert_array_equal(got.rr, ref.rr)
    assert "af_madsd" not in BeatFeaturizer(360.0, af_context=True).rr_names


def test_normal_context_feeds_pre_normal_to_the_model():
    # sinus 1.0 s with an atrial premature beat (0.6 s, then a 1.1 s pause, not compensatory)
    # every 5th cycle: the mean of all intervals (pre_long's) is 0.94 s, the normal mean 1.0 s
    rr = np.tile([1.0, 1.0, 1.0, 0.6, 1.1], 24)
    beats = (360 + np.cumsum(np.round(rr * 360))).astype(np.int64)
    kw = dict(template_beats=0, use_post_rr=False, normal_context=True)
    fz = BeatFeaturizer(360.0, **kw)
    assert fz.rr_names[-1] == "pre_normal" and fz.settings()["normal_context"] is True
    y = np.zeros(beats[-1] + 720)
    out = featurize_beats(y, beats, 360.0, **kw)
    col = out.rr[:, -1]
    np.testing.assert_array_equal(col, out.rhythm[:, RHYTHM_NAMES.index("pre_normal")])
    j = beats.size - 2  # the last early beat
    assert col[j] == pytest.approx(0.6, abs=0.01)  # its interval over the 1.0 s normal mean
    assert out.rr[j, fz.rr_names.index("pre_long")] == pytest.approx(0.6 / 0.94, abs=0.01)  # ectopy shortens the mean
    # the other features are those without the option; streaming in chunks gives the same
    plain = featurize_beats(y, beats, 360.0, template_beats=0, use_post_rr=False)
    np.testing.assert_array_equal(out.rr[:, :-1], plain.rr)
    np.testing.assert_array_equal(_stream(BeatFeaturizer(360.0, **kw), y, beats, 97, lag=105).rr, out.rr)
    # off by default (older weights keep their inputs); a bool only
    assert "pre_normal" not in BeatFeaturizer(360.0).rr_names and BeatFeaturizer(360.0).settings()["normal_context"] is False
    with pytest.raises(TypeError, match="normal_context"):
        BeatFeaturizer(360.0, normal_context="yes")


def test_rhythm_columns_tell_af_from_bigeminy_and_ectopy():
    # BeatFeatures.rhythm: always there, whatever the settings, and not a model input
    rng = np.random.default_rng(7)
    stretches = {
        "af": rng.uniform(0.45, 1.15, 64),
        "bigeminy": np.tile([0.6, 1.1], 32),  # atrial bigeminy: regular at lag 2
        "trigeminy": np.tile([1.0, 0.6, 1.3], 22)[:64],  # regular at lag 3
        "ectopy": np.where(np.arange(64) % 8 == 6, 0.6, np.where(np.arange(64) % 8 == 7, 1.4, 1.0)),
        "sinus": np.full(64, 0.9),
    }
    rr = np.concatenate(list(stretches.values()))
    beats = (360 + np.cumsum(np.round(rr * 360))).astype(np.int64)
    fz = BeatFeaturizer(360.0, template_beats=0, use_post_rr=False)
    out = featurize_beats(np.zeros(beats[-1] + 720), beats, 360.0, template_beats=0, use_post_rr=False)
    assert out.rhythm.shape == (beats.size, len(RHYTHM_NAMES)) and len(fz.rr_names) == out.rr.shape[1] == 7
    irregular, regular, p_wave, _ = out.rhythm.T
    assert np.isnan(p_wave).all()  # no template channel: no P-wave measure
    intervals = np.diff(beats) / 360.0
    for j in (1, 2, 3, 5, 40, 63, 127, 191, 255, 319):  # against numpy on beat j's last 33 intervals
        recent = intervals[max(0, j - 33) : j]
        med = np.median(recent)
        lags = [np.median(np.abs(recent[k:] - recent[:-k])) / med for k in (1, 2, 3) if recent.size > k]
        assert irregular[j] == pytest.approx(min(lags) if lags else 0.0, rel=1e-5, abs=1e-7)
        assert regular[j] == pytest.approx(np.mean(np.abs(recent - med) <= 0.1 * med), rel=1e-6)
    end = {name: 64 * (i + 1) - 1 for i, name in enumerate(stretches)}  # last beat of each stretch
    assert irregular[end["af"]] > 0.1 and regular[end["af"]] < 0.5
    for name in ("bigeminy", "trigeminy", "ectopy", "sinus"):
        assert irregular[end[name]] < 0.02, name
    # chunk invariant with a hole, like the RR features
    y = np.zeros(beats[-1] + 720)
    y[30000:30100] = np.nan
    keep = beats[(beats < 29900) | (beats > 30300)]
    ref = featurize_beats(y, keep, 360.0, template_beats=0, use_post_rr=False)
    got = _stream(BeatFeaturizer(360.0, template_beats=0, use_post_rr=False), y, keep, 97, lag=105)
    np.testing.assert_array_equal(got.sample, ref.sample)
    np.testing.assert_array_equal(got.rhythm, ref.rhythm)


def test_p_wave_ratio_measures_the_p_wave_of_the_template_and_the_featurizer_reports_it():
    from monitor.beats import p_wave_ratio

    t = np.arange(128) / 128.0 - 0.5
    qrs = np.exp(-((t / 0.02) ** 2))
    p = np.exp(-(((t + 0.2) / 0.04) ** 2))
    assert p_wave_ratio(qrs + 0.15 * p, 128.0, 0.5) == pytest.approx(0.149, abs=0.002)
    assert p_wave_ratio(qrs, 128.0, 0.5) < 1e-6
    # scale and offset free, any leading shape
    both = np.stack([qrs + 0.15 * p, 3.0 * (qrs + 0.15 * p) - 2.0])
    np.testing.assert_allclose(p_wave_ratio(both, 128.0, 0.5), 0.149, atol=0.002)
    assert np.isnan(p_wave_ratio(np.zeros(128), 128.0, 0.5))  # flat: no QRS to scale by
    with pytest.raises(ConfigError, match="do not cover"):
        p_wave_ratio(qrs[40:], 128.0, 0.5 - 40 / 128)
    # a stream of beats with P waves, then the same QRS complexes without them (as in AF)
    fs = 360.0
    beats = np.arange(1, 121) * 288  # 0.8 s apart
    x = np.zeros(beats[-1] + 720)
    n = np.arange(x.size) / fs
    for i, b in enumerate(beats):
        x += np.exp(-(((n - b / fs) / 0.02) ** 2))
        if i < 60:
            x += 0.15 * np.exp(-(((n - b / fs + 0.2) / 0.04) ** 2))
    out = featurize_beats(x, beats, fs, use_post_rr=False)
    assert out.rhythm.shape == (beats.size, len(RHYTHM_NAMES)) and RHYTHM_NAMES[2] == "p_wave"
    pw = out.rhythm[:, 2]
    assert (pw[20:60] > 0.12).all() and (pw[90:] < 0.02).all()  # the template of the previous 16 beats
    np.testing.assert_allclose(pw, p_wave_ratio(out.windows[:, 1], 128.0, 0.5), rtol=1e-5, atol=1e-6)


def test_pre_normal_judges_premature_beats_against_the_normal_intervals_only():
    from monitor.beats import NORMAL_RR_MIN_RATIO

    fs = 360.0
    # 60 beats of sinus rhythm at 0.8 s, then trigeminy: two sinus beats, a premature beat 0.5 s after
    # the last, and a 1.1 s pause, as with frequent premature atrial beats
    rr = np.r_[np.full(60, 0.8), np.tile([0.8, 0.8, 0.5, 1.1], 60)]
    beats = (360 + np.cumsum(np.round(rr * fs))).astype(np.int64)
    out = featurize_beats(np.zeros(beats[-1] + 720), beats, fs, use_post_rr=False)
    fz = BeatFeaturizer(fs, use_post_rr=False)
    pre_long = out.rr[:, fz.rr_names.index("pre_long")]
    pre_normal = out.rhythm[:, RHYTHM_NAMES.index("pre_normal")]
    np.testing.assert_allclose(pre_normal[2:60], 1.0, atol=1e-3)
    premature = np.flatnonzero(np.isclose(out.rr[:, 0], 0.5, atol=0.01))
    late = premature[premature > 200]
    # the long mean is (0.8 + 0.8 + 0.5 + 1.1) / 4 = 0.8 as well here, but the normal mean leaves out the
    # short interval and the pause after it: 0.5 / 0.8
    np.testing.assert_allclose(pre_normal[late], 0.5 / 0.8, atol=2e-3)
    np.testing.assert_allclose(pre_long[late], 0.5 / 0.8, atol=2e-3)
    # runs of premature beats (fewer than half the beats, so that the median interval stays a normal
    # one): the long mean falls with them, the normal mean does not
    rr = np.r_[np.full(200, 0.8), np.tile(np.r_[np.full(20, 0.55), 0.9, np.full(30, 0.8)], 8)]
    beats = (360 + np.cumsum(np.round(rr * fs))).astype(np.int64)
    out = featurize_beats(np.zeros(beats[-1] + 720), beats, fs, use_post_rr=False)
    in_run = np.flatnonzero(np.isclose(out.rr[:, 0], 0.55, atol=0.01))[-20:]
    pre_long = out.rr[in_run, fz.rr_names.index("pre_long")]
    pre_normal = out.rhythm[in_run, RHYTHM_NAMES.index("pre_normal")]
    assert 0.55 / 0.8 < NORMAL_RR_MIN_RATIO
    np.testing.assert_allclose(pre_normal, 0.55 / 0.8, atol=2e-3)
    assert (pre_long > pre_normal + 0.05).all()
