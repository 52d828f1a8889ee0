"""Tests of trainer.calibrate: per-class logit offsets fitted on out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.labels import CLASSES
from replay.errors import ConfigError
from trainer.calibrate import fit_logit_bias, score_predictions

N, A, V, F = (CLASSES.index(c) for c in "NAVF")


def _logits(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice([N, A, V], n, p=[0.8, 0.1, 0.1])
    z = rng.normal(size=(n, len(CLASSES)))
    z[np.arange(n), y] += 2.5
    return z, y


def test_offsets_undo_an_over_called_class():
    z, y = _logits()
    z[:, F] += 3.0  # the class weights' effect: F called for many beats
    before = score_predictions(y, z.argmax(1))
    bias, s0, s1 = fit_logit_bias(z, y)
    after = score_predictions(y, (z + bias).argmax(1))
    assert s0 == pytest.approx(before["aami_nsv_f1"]) and s1 == pytest.approx(after["aami_nsv_f1"])
    assert bias[N] == 0 and bias[F] <= -3.0
    assert after["N_se"] > before["N_se"] + 0.3 and s1 > s0 + 0.2


def test_offsets_stay_at_zero_when_nothing_gains():
    # a perfect classifier: every offset that keeps it perfect is 0 (the smallest wins ties)
    y = np.repeat([N, A, V], 50)
    z = np.full((150, len(CLASSES)), -5.0)
    z[np.arange(150), y] = 5.0
    bias, s0, s1 = fit_logit_bias(z, y)
    assert s0 == s1 == 1.0
    assert not bias.any()


def test_offsets_raise_an_under_called_class():
    z, y = _logits(seed=1)
    z[:, A] -= 3.0  # S beats rarely called
    bias, s0, s1 = fit_logit_bias(z, y)
    assert bias[A] >= 2.0 and s1 > s0
    assert score_predictions(y, (z + bias).argmax(1))["S_se"] > score_predictions(y, z.argmax(1))["S_se"] + 0.3


def test_bad_input_is_a_clear_error():
    z, y = _logits(100)
    with pytest.raises(ConfigError, match="shape"):
        fit_logit_bias(z[:50], y)
    with pytest.raises(ConfigError, match="shape"):
        fit_logit_bias(z[:0], y[:0])
    z[3, 2] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        fit_logit_bias(z, y)
    with pytest.raises(ConfigError, match="unknown score 'auc'"):
        fit_logit_bias(np.zeros((3, 7)), np.zeros(3, int), score="auc")
