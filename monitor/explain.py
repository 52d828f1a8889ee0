"""Why did the classifier label a beat so: class probabilities and a saliency map.

Pure torch / numpy (no GUI): the window's beat inspector calls it on demand,
and tests call it directly.

Integrated gradients
--------------------
The attribution of input sample :math:`x_i` to the output :math:`f` is
(Sundararajan, Taly & Yan, "Axiomatic attribution for deep networks",
ICML 2017)

.. math:: IG_i(x) = (x_i - x'_i) \\int_0^1
          \\frac{\\partial f(x' + \\alpha (x - x'))}{\\partial x_i} d\\alpha

with a baseline :math:`x'` (here a flat, all-zero window: the normalised
windows are zero-mean, so zero is "no beat"). The integral is a midpoint
Riemann sum over ``steps`` points, all evaluated in one batch. The
attributions satisfy *completeness*: their sum equals
:math:`f(x) - f(x')` up to the quadrature error. ``f`` is the probability
(softmax) of the target class; the RR features are held at their values, so
the map shows which *samples of the window* drove the decision.

>>> import torch
>>> class Tiny(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.lin = torch.nn.Linear(16, 3)
...     def forward(self, w, rr):
...         return self.lin(w.flatten(1))
>>> probs, sal = explain_beat(Tiny(), np.ones((1, 16), np.float32), np.zeros(0, np.float32))
>>> probs.shape, sal.shape
((3,), (1, 16))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from replay.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["BeatInputs", "beat_inputs", "explain_beat", "integrated_gradients"]


def _module_of(model: Any) -> nn.Module:
    """The torch module of a :class:`~monitor.model.Classifier` or of a bare module."""
    module = getattr(model, "model", model)
    if not isinstance(module, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a Classifier, got {type(model).__name__}")
    return module


def integrated_gradients(
    model: Any,
    window: np.ndarray,
    rr: np.ndarray,
    target: int,
    *,
    steps: int = 32,
    baseline: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float]:
    """Integrated-gradients attribution of one beat window to one class probability.

    Parameters
    ----------
    model : torch.nn.Module or Classifier
        ``forward(windows (B, C, n), rr (B, n_rr)) -> logits (B, classes)``.
    window : numpy.ndarray, shape (C, n)
        The beat window as the model takes it.
    rr : numpy.ndarray, shape (n_rr,)
        The beat's RR features (held fixed).
    target : int
        Class index whose probability is explained.
    steps : int
        Points of the midpoint Riemann sum (1 to 1024).
    baseline : numpy.ndarray, optional
        Reference window, shape of ``window`` (default zeros).

    Returns
    -------
    attributions : numpy.ndarray of float32, shape (C, n)
        Contribution of each input sample to ``f(window) - f(baseline)``.
    f_input, f_baseline : float
        The target probability at the window and at the baseline.
    """
    module = _module_of(model)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if not 1 <= steps <= 1024:
        raise ValueError(f"steps must be 1 to 1024, got {steps}")
    x = torch.as_tensor(np.asarray(window, dtype=np.float32))
    if x.ndim != 2:
        raise ConfigError(f"window must have shape (channels, samples), got {tuple(x.shape)}")
    x0 = torch.zeros_like(x) if baseline is None else torch.as_tensor(np.asarray(baseline, np.float32))
    if x0.shape != x.shape:
        raise ConfigError(f"baseline shape {tuple(x0.shape)} differs from the window's {tuple(x.shape)}")
    r = torch.as_tensor(np.asarray(rr, dtype=np.float32)).reshape(1, -1)
    was_training = module.training
    module.eval()
    try:
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        x, x0, r = x.to(device), x0.to(device), r.to(device)
        alphas = (torch.arange(steps, dtype=torch.float32, device=device) + 0.5) / steps
        path = (x0 + alphas[:, None, None] * (x - x0)).requires_grad_(True)
        # cuDNN RNNs refuse backward in eval mode; this runs on small batches anyway
        with torch.backends.cudnn.flags(enabled=False):
            probs = torch.softmax(module(path, r.expand(steps, -1)), dim=1)[:, target]
            (grads,) = torch.autograd.grad(probs.sum(), path)
            with torch.no_grad():
                ends = torch.softmax(module(torch.stack([x, x0]), r.expand(2, -1)), dim=1)[:, target]
        attributions = (x - x0) * grads.mean(dim=0)
    finally:
        module.train(was_training)
    return (
        attributions.detach().cpu().numpy().astype(np.float32),
        float(ends[0]),
        float(ends[1]),
    )


def explain_beat(
    model: Any,
    window: np.ndarray,
    rr_features: np.ndarray,
    target: int | None = None,
    steps: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of one beat and the saliency of each window sample.

    Parameters
    ----------
    model : torch.nn.Module or Classifier
        The beat classifier (``forward(windows, rr) -> logits``).
    window : numpy.ndarray, shape (C, n) or (n,)
        The beat window (featurizer output for one beat).
    rr_features : numpy.ndarray, shape (n_rr,)
        Its RR features.
    target : int, optional
        Class to explain (default: the most probable).
    steps : int
        Integration steps (see :func:`integrated_gradients`).

    Returns
    -------
    probs : numpy.ndarray of float32, shape (classes,)
        Softmax probabilities.
    saliency : numpy.ndarray of float32, shape (C, n)
        Integrated-gradients attributions of the target's probability
        (positive: pushed towards the class).
    """
    module = _module_of(model)
    w = np.asarray(window, dtype=np.float32)
    if w.ndim == 1:
        w = w[None, :]
    rr = np.asarray(rr_features, dtype=np.float32).ravel()
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            logits = module(torch.from_numpy(w[None]).to(device), torch.from_numpy(rr[None]).to(device))
            probs = torch.softmax(logits, dim=1)[0].cpu().numpy().astype(np.float32)
    finally:
        module.train(was_training)
    if target is None:
        target = int(np.argmax(probs))
    if not 0 <= target < probs.size:
        raise ValueError(f"target must be a class index 0 to {probs.size - 1}, got {target}")
    saliency, _, _ = integrated_gradients(module, w, rr, target, steps=steps)
    return probs, saliency


@dataclass(frozen=True)
class BeatInputs:
    """The classifier's inputs for one beat, rebuilt from a stretch of signal.

    Attributes
    ----------
    sample : int
        Absolute index of the beat's R peak.
    window : numpy.ndarray, shape (C, n)
        Model window (channel 0 the beat, channel 1 the template if any).
    rr : numpy.ndarray, shape (n_rr,)
        RR features.
    t_s : numpy.ndarray, shape (n,)
        Time of each window sample relative to the R peak, in seconds.
    """

    sample: int
    window: np.ndarray
    rr: np.ndarray
    t_s: np.ndarray


def beat_inputs(
    classifier: Any,
    filtered_mv: np.ndarray,
    start: int,
    beats: np.ndarray,
    sample: int,
    fs: float,
) -> BeatInputs:
    """Rebuild one beat's classifier inputs from a held stretch of filtered ECG.

    The stretch is streamed through the classifier's own featurizer
    (:meth:`~monitor.model.Classifier.make_featurizer`), so the window is the
    one the model sees; RR averages and the template only know the beats
    inside the stretch.

    Parameters
    ----------
    classifier : Classifier
        Provides ``make_featurizer(fs)``.
    filtered_mv : numpy.ndarray
        Filtered ECG in mV (NaN for holes) beginning at ``start``.
    start : int
        Absolute index of ``filtered_mv[0]``.
    beats : numpy.ndarray of int
        Increasing absolute beat indices inside the stretch.
    sample : int
        The beat to rebuild (one of ``beats``).
    fs : float
        Sampling rate in Hz.

    Returns
    -------
    BeatInputs
    """
    beats = np.asarray(beats, dtype=np.int64)
    if sample not in set(beats.tolist()):
        raise ValueError(f"beat {sample} is not among the beats given")
    fz = classifier.make_featurizer(fs)
    parts = [fz.process(np.asarray(filtered_mv, np.float64), beats, start=start), fz.flush()]
    for p in parts:
        hit = np.flatnonzero(p.sample == sample)
        if hit.size:
            j = int(hit[0])
            t = -fz.pre_s + np.arange(fz.n_window) / fz.model_fs
            return BeatInputs(int(sample), p.windows[j], p.rr[j], t)
    raise ValueError(f"beat {sample} could not be featurized")
