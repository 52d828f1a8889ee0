"""Post-pause rule: an early beat of normal shape followed by a pause is premature and atrial.

A premature atrial beat comes early and resets the sinus node, so the
interval after it is longer than the early interval before it (the pause
of a premature beat; for an atrial one usually not fully compensatory).  A
beat that comes early only because the rate rises (sinus arrhythmia, a
change of rate, the irregular rhythm of AF) is followed by another short
interval.  Rule-based Holter analysers use this *post-RR* to tell the two
apart; the network and the other rules see only the intervals before a
beat.

The rule calls S a beat that the network and the classifier's rules call
AAMI N when

* the rhythm before it is not AF-like (the AF rule's thresholds,
  :func:`monitor.model.af_like`),
* its interval from the previous beat over the mean recent normal interval
  (the ``pre_normal`` rhythm measure) is below ``max_pre_normal`` (0.9 for
  the shipped model: at least 10 % early), and
* the interval to the next beat is longer than ``min_post_ratio`` times its
  interval from the previous one (1.2 for the shipped model).

Its AAMI N probability goes to its most probable class of AAMI S, as the
early-beat rule does.  Both thresholds were chosen on DS1 out of fold.

The next interval is known only when the next beat comes.  Live
(:class:`~monitor.pipeline.StreamMonitor`), a beat for which the rule's
first two tests hold (a *waiting* beat, :meth:`PostPauseRule.waits`)
leaves 0.5 s after its R wave as every beat does, with its label so far
and ``provisional: true``; its final label is decided when the detector
reports the next beat, or as soon as ``min_post_ratio`` times its interval
has passed with no beat (then the pause is certain), and a ``relabel``
event carries it when it differs, before the next beat's event (the beats
after it wait behind it, so final labels stay in stream order; the alarm
engine sees final labels only).  A data hole, a lead-off or a detector
restart before the next beat leaves the provisional label final (the
pause cannot be judged), as does the end of the stream.  When the next
beat is already known as the beat is classified (a replay faster than
real time), the beat leaves with its final label at once.  Every other
beat is labelled as before.
Offline (``ecg-eval``, ``ecg-bench rules``) :meth:`PostPauseRule.apply_to_record`
reads the next interval from the next detected beat of the record; the last
beat of a record keeps its label.  The rule runs before the early-run rule
(:mod:`monitor.early_run`), which reads each beat's final label.

A weights file holds the thresholds as ``meta["post_pause_rule"]``
(written by ``ecg-train --post-pause-rule``; see
:func:`monitor.model.post_pause_rule`).

Examples
--------
>>> import numpy as np
>>> rule = PostPauseRule(0.9, 1.2, (0.1, 0.7), pre_rr_index=0, n_group=[0], s_group=[1])
>>> prob = np.array([[0.9, 0.1], [0.8, 0.2], [0.9, 0.1]], np.float32)  # N, S
>>> rr = np.array([[0.8], [0.6], [1.0]], np.float32)  # pre-RR, s
>>> rhythm = np.array([[0, 1, 0, 1.0], [0, 1, 0, 0.75], [0, 1, 0, 1.25]], np.float32)
>>> rule.apply_to_record(prob, rr, rhythm).argmax(axis=1).tolist()  # 0.6 s early, then 1.0 s
[0, 1, 0]
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from replay._validate import check_range, ensure_int
from replay.errors import ConfigError

from .beats import PRE_NORMAL, RHYTHM_NAMES
from .model import Classifier, af_rule

logger = logging.getLogger(__name__)

__all__ = ["PRE_NORMAL", "PostPauseRule"]


class PostPauseRule:
    """Call S the early beats called N that a pause follows (see the module notes).

    Parameters
    ----------
    max_pre_normal : float
        A beat waits for its next interval when its ``pre_normal`` (interval
        over the mean recent normal interval, a ratio) is below this, in (0, 1].
    min_post_ratio : float
        It is called S when the next interval is longer than this many times
        its own (a ratio, 1 to 5).
    af_thresholds : tuple of float
        ``(min_irregular, max_regular[, max_p_wave])`` of the AF rule: no beat
        in AF-like rhythm waits (:func:`monitor.model.af_like`).
    pre_rr_index : int
        Column of ``pre_rr_s`` (the interval from the previous beat, in s)
        in the RR features.
    n_group, s_group : sequence of int
        Class indices of AAMI N and of AAMI S (not empty, disjoint).
    """

    def __init__(
        self,
        max_pre_normal: float,
        min_post_ratio: float,
        af_thresholds: tuple[float, ...],
        pre_rr_index: int,
        n_group: Sequence[int],
        s_group: Sequence[int],
    ) -> None:
        self.max_pre_normal = check_range("max_pre_normal", max_pre_normal, 0.0, 1.0, low_inclusive=False, unit="(ratio)")
        self.min_post_ratio = check_range("min_post_ratio", min_post_ratio, 1.0, 5.0, unit="(ratio)")
        self.af_thresholds = tuple(float(t) for t in af_thresholds)
        self.pre_rr_index = ensure_int("pre_rr_index", pre_rr_index)
        self.n_group = np.asarray(n_group, dtype=np.int64)
        self.s_group = np.asarray(s_group, dtype=np.int64)
        if not self.n_group.size or not self.s_group.size or np.intersect1d(self.n_group, self.s_group).size:
            raise ConfigError("n_group and s_group must be non-empty, disjoint sets of class indices")
        #: Beats called S by the rule so far.
        self.beats_moved = 0

    @classmethod
    def for_classifier(cls, classifier: Classifier) -> PostPauseRule | None:
        """The rule of a classifier's weights file, or None when it has none or it is switched off.

        Its thresholds are :attr:`~monitor.model.Classifier.post_pause_rule`
        (set it to None to switch the rule off); its AF thresholds those of
        the file's AF rule, even where :attr:`~monitor.model.Classifier.af_rule`
        is set to None to measure the model without that rule.
        """
        if classifier.post_pause_rule is None:
            return None
        return cls(
            *classifier.post_pause_rule,
            classifier.early_beat_af_rule or af_rule(classifier.meta),
            list(classifier.meta["rr_names"]).index("pre_rr_s"),
            classifier._n_group,
            classifier._s_group,
        )

    def _check(self, prob: np.ndarray, rr: np.ndarray, rhythm: np.ndarray) -> None:
        k = prob.shape[0]
        if rr.ndim != 2 or rr.shape[0] != k or rr.shape[1] <= self.pre_rr_index:
            raise ConfigError(f"rr must have shape ({k}, n_rr) with the pre_rr_s column, got {rr.shape}")
        if rhythm.ndim != 2 or rhythm.shape[0] != k or rhythm.shape[1] <= PRE_NORMAL:
            raise ConfigError(f"rhythm must have shape ({k}, {len(RHYTHM_NAMES)}) with pre_normal, got {rhythm.shape}")

    def waits(self, prob: np.ndarray, rr: np.ndarray, rhythm: np.ndarray) -> np.ndarray:
        """Which beats the rule may call S once their next interval is known (bool, shape (k,)).

        Beats called AAMI N (by ``prob``, after the classifier's rules),
        outside AF-like rhythm, whose ``pre_normal`` is below ``max_pre_normal``.
        """
        rr, rhythm = np.asarray(rr), np.asarray(rhythm)
        self._check(prob, rr, rhythm)
        called_n = np.isin(prob.argmax(axis=1), self.n_group)
        in_af = Classifier._af_like(rhythm, prob.shape[0], self.af_thresholds)
        return called_n & ~in_af & (rhythm[:, PRE_NORMAL] < self.max_pre_normal)

    def pause_s(self, rr: np.ndarray) -> np.ndarray:
        """Seconds after each beat past which no next beat means a pause: ``min_post_ratio`` x its pre-RR."""
        return self.min_post_ratio * np.asarray(rr, dtype=np.float64)[:, self.pre_rr_index]

    def apply(self, prob: np.ndarray, rr: np.ndarray, rhythm: np.ndarray, post_rr_s: np.ndarray) -> np.ndarray:
        """Apply the rule to beats whose next interval is known (``prob`` is changed in place).

        Parameters
        ----------
        prob : numpy.ndarray, shape (k, n_classes)
            Class probabilities of the beats, after the classifier's rules.
        rr, rhythm : numpy.ndarray
            Their RR features and rhythm measures.
        post_rr_s : numpy.ndarray, shape (k,)
            The interval from each beat to the next, in s; NaN where it is
            not known (the beat keeps its label).

        Returns
        -------
        numpy.ndarray
            ``prob``, with the AAMI N probability of the beats the rule calls
            S given to their most probable class of AAMI S.
        """
        post = np.asarray(post_rr_s, dtype=np.float64)
        if post.shape != (prob.shape[0],):
            raise ConfigError(f"post_rr_s must have shape ({prob.shape[0]},), got {post.shape}")
        wait = self.waits(prob, rr, rhythm)
        with np.errstate(invalid="ignore"):
            pause = post > self.pause_s(rr)  # NaN: False
        rows = np.flatnonzero(wait & pause)
        if rows.size:
            Classifier._move(prob, rows, self.n_group, self.s_group)
            self.beats_moved += int(rows.size)
        return prob

    def apply_to_record(self, prob: np.ndarray, rr: np.ndarray, rhythm: np.ndarray) -> np.ndarray:
        """Apply the rule to every beat of a recording, in order (``prob`` is changed in place).

        The next interval of each beat is the next beat's ``pre_rr_s``; the
        last beat has none and keeps its label.
        """
        rr = np.asarray(rr)
        post = np.full(prob.shape[0], np.nan)
        if prob.shape[0] > 1:
            post[:-1] = rr[1:, self.pre_rr_index]
        return self.apply(prob, rr, rhythm, post)
