"""Classification metrics: confusion matrices, Se, +P, specificity, F1, ROC-AUC.

All ratios are fractions (0 to 1); NaN where the denominator is zero.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["confusion", "per_class", "roc_auc_ovr", "roc_curve"]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix ``C[true, predicted]`` (int64) of labels in ``0..n_classes-1``."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    c = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(c, (y_true, y_pred), 1)
    return c


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def per_class(c: np.ndarray, names) -> dict[str, dict[str, float]]:
    """Se, +P, specificity, F1 and support of each class of a confusion matrix.

    Parameters
    ----------
    c : numpy.ndarray, shape (k, k)
        ``C[true, predicted]``.
    names : sequence of str
        Class names.

    Returns
    -------
    dict
        ``{name: {"se", "ppv", "spec", "f1", "support", "predicted"}}``.
    """
    total = c.sum()
    out = {}
    for i, name in enumerate(names):
        tp = c[i, i]
        fn = c[i].sum() - tp
        fp = c[:, i].sum() - tp
        tn = total - tp - fn - fp
        se, ppv = _div(tp, tp + fn), _div(tp, tp + fp)
        f1 = _div(2 * tp, 2 * tp + fn + fp)
        out[name] = {
            "se": se,
            "ppv": ppv,
            "spec": _div(tn, tn + fp),
            "f1": f1,
            "support": int(tp + fn),
            "predicted": int(tp + fp),
        }
    return out


def macro_f1(c: np.ndarray) -> float:
    """Mean F1 over the classes present (support > 0)."""
    f1 = []
    for i in range(c.shape[0]):
        if c[i].sum() > 0:
            tp = c[i, i]
            f1.append(_div(2 * tp, c[i].sum() + c[:, i].sum()))
    return float(np.mean(f1)) if f1 else float("nan")


def roc_auc_ovr(y_true: np.ndarray, proba: np.ndarray) -> dict[int, float]:
    """One-vs-rest ROC-AUC of each class present (Mann-Whitney rank formula, ties averaged)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    out = {}
    for k in range(proba.shape[1]):
        pos = y_true == k
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        r = rankdata(proba[:, k])
        out[k] = float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return out


def roc_curve(y_true_bin: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of a binary problem at every threshold."""
    order = np.argsort(-np.asarray(score), kind="stable")
    y = np.asarray(y_true_bin, dtype=bool)[order]
    tp = np.concatenate(([0], np.cumsum(y)))
    fp = np.concatenate(([0], np.cumsum(~y)))
    return fp / max(1, fp[-1]), tp / max(1, tp[-1])
