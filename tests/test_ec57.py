"""Tests of trainer.ec57 (EC57 beat-detection scoring)."""

from __future__ import annotations

import numpy as np
import pytest

from replay.errors import ConfigError
from trainer.ec57 import (
    BEAT_SYMBOLS,
    flutter_intervals,
    gross,
    match_beats,
    score_record,
    select_beats,
)

FS = 360.0
W = int(0.15 * FS)  # 54 samples


def test_beat_symbols() -> None:
    assert set("NLRBAaJSVrFejnE/fQ?") == BEAT_SYMBOLS
    for s in "+~|\"x[]!":
        assert s not in BEAT_SYMBOLS


def test_select_beats() -> None:
    sym = ["+", "N", "V", "~", "|", "A", "[", "!", "]", "Q"]
    smp = np.arange(10) * 100
    assert select_beats(sym, smp).tolist() == [100, 200, 500, 900]
    with pytest.raises(ConfigError):
        select_beats(sym, smp[:3])


def test_perfect_match() -> None:
    ref = np.array([100, 500, 900])
    s = score_record(ref, ref + 3, FS)
    assert (s.tp, s.fn, s.fp) == (3, 0, 0)
    assert s.se == 1.0 and s.ppv == 1.0
    assert s.median_offset_ms == pytest.approx(3 * 1000 / FS)


def test_window_edges() -> None:
    ref = np.array([1000])
    assert score_record(ref, np.array([1000 + W]), FS).tp == 1  # exactly 150 ms
    s = score_record(ref, np.array([1000 + W + 1]), FS)
    assert (s.tp, s.fn, s.fp) == (0, 1, 1)


def test_one_to_one_nearest() -> None:
    # two detections near one beat: the nearer matches, the other is an FP
    ref = np.array([1000])
    m = match_beats(ref, np.array([990, 1002]), FS)
    assert m.test_matched.tolist() == [1] and m.test_unmatched.tolist() == [0]
    # one detection between two beats: matched to the nearer only
    m = match_beats(np.array([1000, 1060]), np.array([1040]), FS)
    assert m.ref_matched.tolist() == [1] and m.ref_unmatched.tolist() == [0]
    # greedy by distance, not by order: ref 1000 must not steal 1030 from ref 1040
    m = match_beats(np.array([1000, 1040]), np.array([1030, 960]), FS)
    assert m.tp == 2
    pairs = dict(zip(m.ref_matched.tolist(), m.test_matched.tolist()))
    assert pairs == {0: 1, 1: 0}


def test_known_counts() -> None:
    ref = np.arange(10) * 300 + 1000
    test = np.concatenate([ref[:7] + 5, [ref[8] + 200, 50]])  # 7 hits, 3 misses, 2 FPs
    s = score_record(ref, test, FS)
    assert (s.tp, s.fn, s.fp) == (7, 3, 2)
    assert s.se == pytest.approx(0.7)
    assert s.ppv == pytest.approx(7 / 9)


def test_flutter_exclusion() -> None:
    sym = ["N", "[", "!", "!", "]", "N", "["]
    smp = np.array([100, 1000, 1200, 1400, 2000, 2500, 3000])
    fl = flutter_intervals(sym, smp, n_samples=4000)
    assert fl.tolist() == [[1000, 2001], [3000, 4000]]
    ref = select_beats(sym, smp)
    test = np.array([100, 1500, 2500, 3500, 2800])
    s = score_record(ref, test, FS, flutter=fl)
    assert (s.tp, s.fn, s.fp) == (2, 0, 1)  # only 2800 counts


def test_vfl_rhythm_option() -> None:
    sym = ["+", "N", "+", "N"]
    smp = np.array([0, 100, 1000, 1100])
    aux = ["(VFL", "", "(N", ""]
    assert flutter_intervals(sym, smp, aux).shape == (0, 2)
    assert flutter_intervals(sym, smp, aux, use_vfl_rhythm=True).tolist() == [[0, 1000]]


def test_exclude_first() -> None:
    fs = 100.0
    ref = np.array([100, 200, 30_010, 30_100])
    test = np.array([100, 29_995, 30_100, 50])
    s = score_record(ref, test, fs, exclude_first_s=300)
    # beats before 300 s dropped; 29995 is within the border tolerance and matches 30010
    assert (s.tp, s.fn, s.fp) == (2, 0, 0)


def test_gross() -> None:
    a = score_record(np.array([100, 500]), np.array([100, 500, 900]), FS, record="a")
    b = score_record(np.array([100, 500]), np.array([100]), FS, record="b")
    g = gross([a, b])
    assert (g.tp, g.fn, g.fp, g.n_records) == (3, 1, 1, 2)
    assert g.se == pytest.approx(0.75) and g.ppv == pytest.approx(0.75)
    assert g.mean_se == pytest.approx(0.75) and g.mean_ppv == pytest.approx((2 / 3 + 1) / 2)


def test_empty_inputs() -> None:
    s = score_record(np.array([], dtype=int), np.array([], dtype=int), FS)
    assert (s.tp, s.fn, s.fp) == (0, 0, 0)
    assert np.isnan(s.se) and np.isnan(s.ppv)
    s = score_record(np.array([10]), np.array([], dtype=int), FS)
    assert s.fn == 1 and s.se == 0.0
