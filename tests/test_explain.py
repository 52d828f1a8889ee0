"""Beat explanations: probabilities, saliency shape, integrated-gradients completeness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from monitor.beats import BeatFeaturizer
from monitor.explain import beat_inputs, explain_beat, integrated_gradients
from monitor.model import Classifier, CnnBiLstm, default_hparams


class Smooth(nn.Module):
    """A small smooth model with the classifier's interface (windows, rr) -> logits."""

    def __init__(self, channels: int = 2, n: int = 64, n_rr: int = 3, classes: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv1d(channels, 4, 5, padding=2)
        self.lin = nn.Linear(4 * n + n_rr, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, w: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(w)).flatten(1)
        return self.lin(torch.cat([h, rr], dim=1))


def tiny_classifier(seed: int = 0) -> Classifier:
    """A real CnnBiLstm, tiny and untrained, wrapped as a Classifier."""
    fz = BeatFeaturizer(360.0)
    torch.manual_seed(seed)
    hp = default_hparams(fz.n_channels, fz.n_window, len(fz.rr_names), 7)
    hp.update(conv_channels=[4, 8, 8], lstm_hidden=8, lstm_layers=1, rr_hidden=4, head_hidden=8)
    meta = {
        "architecture": "cnn-bilstm",
        "hparams": hp,
        "classes": ["N", "L", "R", "A", "V", "F", "Q"],
        "featurizer": fz.settings(),
        "rr_names": list(fz.rr_names),
    }
    return Classifier(CnnBiLstm(**hp).eval(), meta)


def test_probabilities_and_saliency_shape():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 64)).astype(np.float32)
    rr = np.array([0.8, 0.9, 1.1], np.float32)
    probs, sal = explain_beat(Smooth(), w, rr, steps=16)
    assert probs.shape == (4,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert sal.shape == (2, 64)
    assert sal.dtype == np.float32
    assert np.isfinite(sal).all() and np.abs(sal).sum() > 0
    # a 1-D window is taken as one channel
    probs1, sal1 = explain_beat(Smooth(channels=1), w[0], rr)
    assert sal1.shape == (1, 64)


@pytest.mark.parametrize("target", [0, 3])
def test_integrated_gradients_completeness(target):
    rng = np.random.default_rng(2)
    w = rng.normal(size=(2, 64)).astype(np.float32)
    rr = np.array([0.8, 0.9, 1.1], np.float32)
    attr, f_x, f_0 = integrated_gradients(Smooth(), w, rr, target, steps=128)
    assert attr.sum() == pytest.approx(f_x - f_0, abs=2e-3 * max(1.0, abs(f_x - f_0)))
    assert f_x != pytest.approx(f_0)


def test_completeness_on_the_real_architecture():
    clf = tiny_classifier()
    rng = np.random.default_rng(3)
    w = rng.normal(size=clf.input_shape).astype(np.float32)
    rr = np.full(clf.n_rr, 0.9, np.float32)
    attr, f_x, f_0 = integrated_gradients(clf, w, rr, 4, steps=256)
    assert attr.shape == clf.input_shape
    assert attr.sum() == pytest.approx(f_x - f_0, abs=0.02 * max(abs(f_x - f_0), 1e-3) + 1e-4)
    probs, _ = explain_beat(clf, w, rr)
    np.testing.assert_allclose(probs, clf.predict_proba(w[None], rr[None])[0], atol=1e-5)


def test_target_defaults_to_the_most_probable_class_and_is_checked():
    w = np.random.default_rng(4).normal(size=(2, 64)).astype(np.float32)
    rr = np.ones(3, np.float32)
    m = Smooth()
    probs, sal = explain_beat(m, w, rr)
    attr, _, _ = integrated_gradients(m, w, rr, int(np.argmax(probs)), steps=32)
    np.testing.assert_allclose(sal, attr, atol=1e-6)
    with pytest.raises(ValueError, match="target"):
        explain_beat(m, w, rr, target=9)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(m, w, rr, 0, steps=0)
    with pytest.raises(TypeError):
        explain_beat(object(), w, rr)
    assert m.training  # the caller's mode is restored


def test_beat_inputs_rebuilds_the_model_window():
    clf = tiny_classifier()
    fs = 360.0
    x = 0.05 * np.random.default_rng(5).normal(size=int(12 * fs))
    beats = np.arange(200, x.size - 400, 290)
    for b in beats:
        x[b - 3 : b + 4] += np.hanning(7) * 1.5
    start = 5000
    ins = beat_inputs(clf, x, start, beats + start, int(beats[10] + start), fs)
    assert ins.window.shape == clf.input_shape
    assert ins.rr.shape == (clf.n_rr,)
    assert ins.t_s[0] == pytest.approx(-0.5)
    assert ins.rr[0] == pytest.approx(290 / fs, rel=1e-4)  # pre-RR
    # the R peak sits at t = 0 in the window: its largest sample
    assert abs(ins.t_s[int(np.argmax(ins.window[0]))]) < 0.02
    with pytest.raises(ValueError, match="not among"):
        beat_inputs(clf, x, start, beats + start, 3, fs)
