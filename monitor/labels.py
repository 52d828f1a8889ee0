"""Beat classes of the classifier and their AAMI (ANSI/AAMI EC57) groups.

The model predicts seven classes.  Five of them are the MIT-BIH classes of
the seed project (N, L, R, A, V); F and Q complete the AAMI grouping so that
every MIT-BIH beat annotation has a class:

=====  ======================================  ==========
class  MIT-BIH beat symbols                    AAMI class
=====  ======================================  ==========
N      ``N`` normal, ``e`` atrial escape,      N
       ``j`` nodal (junctional) escape
L      ``L`` left bundle branch block          N
R      ``R`` right bundle branch block         N
A      ``A`` atrial premature, ``a`` aberrated S
       atrial premature, ``J`` nodal
       premature, ``S`` supraventricular
       premature
V      ``V`` premature ventricular             V
       contraction, ``E`` ventricular escape
F      ``F`` fusion of ventricular and normal  F
Q      ``/`` paced, ``f`` fusion of paced and  Q
       normal, ``Q`` unclassifiable
=====  ======================================  ==========

Other annotation codes (``B``, ``r``, ``n``, ``?`` and every non-beat code)
have no class: such beats are left out of training and of the per-class
figures.  Detections with no reference beat within 150 ms (EC57 matching)
are labelled :data:`NO_REFERENCE`; they are never used for training, and
evaluation counts them in a column of their own ("no reference"): a
detection with no reference that is classified S or V is a false positive of
that AAMI class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "AAMI_CLASSES",
    "BEAT_SYMBOLS",
    "CLASSES",
    "CLASS_TO_AAMI",
    "NO_REFERENCE",
    "SEED_SYMBOLS",
    "SYMBOL_TO_CLASS",
    "UNLABELLED",
    "labels_to_aami",
    "symbol_to_label",
]

#: MIT-BIH annotation codes that mark a beat (EC57 scores exactly these).
BEAT_SYMBOLS: frozenset[str] = frozenset("NLRBAaJSVrFejnE/fQ?")

#: Classes predicted by the model, in output order.
CLASSES: tuple[str, ...] = ("N", "L", "R", "A", "V", "F", "Q")

#: AAMI beat classes (EC57), in the order used in tables.
AAMI_CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")

#: AAMI class of each model class.
CLASS_TO_AAMI: dict[str, str] = {"N": "N", "L": "N", "R": "N", "A": "S", "V": "V", "F": "F", "Q": "Q"}

#: Model class of each MIT-BIH beat symbol that has one.
SYMBOL_TO_CLASS: dict[str, str] = {
    "N": "N", "e": "N", "j": "N",
    "L": "L",
    "R": "R",
    "A": "A", "a": "A", "J": "A", "S": "A",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}  # fmt: skip

#: Label of a detection that matched no reference beat (not trained on).
NO_REFERENCE = -1
#: Label of a reference beat whose symbol has no class (``B r n ?``; not trained on).
UNLABELLED = -2

#: The seed project's five MIT-BIH beat symbols (its "seed" protocol keeps only these).
SEED_SYMBOLS: tuple[str, ...] = ("N", "L", "R", "A", "V")


def symbol_to_label(symbols: Sequence[str]) -> np.ndarray:
    """Return the model class index of each MIT-BIH beat symbol.

    Parameters
    ----------
    symbols : sequence of str
        Annotation symbols; ``""`` (or None) marks a detection without a
        reference beat.

    Returns
    -------
    numpy.ndarray of int64
        Index into :data:`CLASSES`, :data:`NO_REFERENCE` for ``""``, or
        :data:`UNLABELLED` for a symbol without a class.
    """
    index = {c: i for i, c in enumerate(CLASSES)}
    out = np.empty(len(symbols), dtype=np.int64)
    for i, s in enumerate(symbols):
        if not s:
            out[i] = NO_REFERENCE
        else:
            cls = SYMBOL_TO_CLASS.get(s)
            out[i] = UNLABELLED if cls is None else index[cls]
    return out


def labels_to_aami(labels: np.ndarray, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Map model class indices to AAMI class indices (into :data:`AAMI_CLASSES`).

    Negative labels (:data:`NO_REFERENCE`, :data:`UNLABELLED`) are kept as they are.
    """
    labels = np.asarray(labels, dtype=np.int64)
    lut = np.array([AAMI_CLASSES.index(CLASS_TO_AAMI[c]) for c in classes], dtype=np.int64)
    out = labels.copy()
    ok = labels >= 0
    out[ok] = lut[labels[ok]]
    return out
