"""Per-class logit offsets fitted on out-of-fold predictions.

Class-weighted training shifts the classifier's priors: a rare class with a
large weight (F, fusion beats, weight up to 50) is called far more often
than it occurs, and each such call is usually a normal beat lost.  Adding a
constant offset ``b_c`` to each class's logit (equivalently, multiplying its
prior by ``exp(b_c)``) moves the decision boundaries back without touching
the model.

The offsets must not be fitted on the test records, nor on beats the model
was trained on (there it is right almost everywhere, so nothing would move).
With cross-validation (``ecg-train --cv``) every training beat gets an
*out-of-fold* prediction, from the fold model that did not see its patient,
at the epoch count the cross-validation chose.  :func:`fit_logit_bias` then
maximises the same validation score that chose the epochs (mean F1 of the
AAMI classes N, S and V) over those predictions by coordinate ascent over a
grid.  There is one offset per *AAMI* class, shared by the model classes
that map to it (N, L and R share AAMI N's, which is the reference, 0): the
score only sees AAMI classes, and separate offsets for N, L and R would let
one of them (say R) grab beats of other classes and stay "right" for AAMI
while the 7-class label says right bundle branch block on normal beats.
Offsets that do not change the score stay at 0.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.choice([0, 3, 4], 3000)           # N, A and V beats
>>> logits = rng.normal(size=(3000, 7)); logits[np.arange(3000), y] += 2.0
>>> logits[:, 5] += 3.0                       # an over-called class (F)
>>> bias, before, after = fit_logit_bias(logits, y)
>>> bool(bias[5] < -2 and after > before + 0.3)
True
"""

from __future__ import annotations

import numpy as np

from monitor.labels import AAMI_CLASSES, CLASSES, labels_to_aami
from replay.errors import ConfigError

from .metrics import confusion, macro_f1, per_class

__all__ = ["DEFAULT_GRID", "fit_logit_bias", "score_predictions"]

#: Offsets tried for each class (logit units), ordered by distance from 0 so
#: that among equal scores the smallest offset wins.
DEFAULT_GRID = np.round(np.arange(-6.0, 6.0001, 0.25), 2)


def score_predictions(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and AAMI N/S/V figures of predicted class indices.

    Parameters
    ----------
    y, pred : numpy.ndarray of int, shape (n,)
        True and predicted indices into :data:`monitor.labels.CLASSES`.

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1`` (over the model's classes present),
        ``aami_nsv_f1`` (mean F1 of AAMI N, S and V over those present) and
        ``N_se``, ``N_ppv``, ``S_se``... as fractions (NaN when undefined).
    """
    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    c = confusion(y, pred, len(CLASSES))
    ca = confusion(labels_to_aami(y), labels_to_aami(pred), len(AAMI_CLASSES))
    pa = per_class(ca, AAMI_CLASSES)
    nsv = [pa[k]["f1"] for k in ("N", "S", "V") if pa[k]["support"] > 0]
    out = {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": macro_f1(c),
        "aami_nsv_f1": float(np.nanmean(nsv)) if nsv else float("nan"),
    }
    for k in ("N", "S", "V"):
        out[f"{k}_se"], out[f"{k}_ppv"] = pa[k]["se"], pa[k]["ppv"]
    return out


def fit_logit_bias(
    logits: np.ndarray,
    y: np.ndarray,
    *,
    score: str = "aami_nsv_f1",
    grid: np.ndarray | None = None,
    sweeps: int = 4,
    min_gain: float = 1e-4,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float]:
    """Per-class logit offsets that maximise a score of ``argmax(logits + bias)``.

    Parameters
    ----------
    logits : numpy.ndarray, shape (n, n_classes)
        Out-of-fold logits (or log-probabilities) of labelled beats.
    y : numpy.ndarray of int, shape (n,)
        Their true class indices.
    score : str
        Key of :func:`score_predictions` to maximise (higher is better).
    grid : numpy.ndarray, optional
        Offsets tried per class (default :data:`DEFAULT_GRID`, -6 to 6 in
        steps of 0.25).
    sweeps : int
        Passes over the classes (stops early when a pass changes nothing).
    min_gain : float
        Smallest score gain that moves an offset away from its value.
    groups : numpy.ndarray of int, shape (n_classes,), optional
        Classes with the same group number share one offset; the first
        class's group is the reference (offset 0).  Default: the AAMI class
        of each of :data:`~monitor.labels.CLASSES`.

    Returns
    -------
    bias : numpy.ndarray of float64, shape (n_classes,)
        The offset of each class (0 for the reference group).
    before, after : float
        The score without and with the offsets.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if logits.ndim != 2 or logits.shape[0] != y.shape[0] or logits.shape[0] == 0:
        raise ConfigError(f"logits must have shape (n, n_classes) with n = len(y) > 0, got {logits.shape} and {y.shape}")
    if not np.isfinite(logits).all():
        raise ConfigError("logits contain NaN or infinite values")
    probe = score_predictions(y[:1], y[:1])
    if score not in probe:
        raise ConfigError(f"unknown score {score!r}; choose from {', '.join(probe)}")
    grid = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    grid = grid[np.argsort(np.abs(grid), kind="stable")]
    if groups is None:
        if logits.shape[1] != len(CLASSES):
            raise ConfigError(f"logits have {logits.shape[1]} classes; give groups for other than the {len(CLASSES)} model classes")
        groups = labels_to_aami(np.arange(len(CLASSES)))
    groups = np.asarray(groups)
    if groups.shape != (logits.shape[1],):
        raise ConfigError(f"groups must give one group per class ({logits.shape[1]}), got shape {groups.shape}")
    names, member = np.unique(groups, return_inverse=True)
    ref = member[0]

    def value(g: np.ndarray) -> float:
        v = score_predictions(y, (logits + g[member]).argmax(1))[score]
        return v if np.isfinite(v) else -np.inf

    off = np.zeros(len(names))
    before = best = value(off)
    for _ in range(sweeps):
        moved = False
        for k in range(len(names)):
            if k == ref:
                continue
            trial = off.copy()
            for b in grid:
                trial[k] = b
                v = value(trial)
                if v > best + min_gain:
                    best, off, moved = v, trial.copy(), True
        if not moved:
            break
    return off[member], float(before), float(best)

