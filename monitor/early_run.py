"""Early-run rule: the S label of an early beat carried over the atrial run it starts.

The early-beat rule (:mod:`monitor.model`) calls a beat of normal shape S
when its interval from the previous beat is short against both the mean of
the last ``long_beats`` intervals (``pre_long``) and the mean of the last
``local_beats`` (``pre_local``).  In a run of premature atrial beats the
local mean fills with the run's own short intervals, so from the second or
third beat of the run on ``pre_local`` is near 1 and the run's later beats
are called N again, although they still come as early against the patient's
running rhythm as the first did (MIT-BIH record 232, for instance).

This rule follows the beats of one stream in order.  After a beat called S
that the early-beat test marks early (both ratios below the early-beat
rule's thresholds, the rhythm not AF-like by the AF rule's thresholds), each
of the next beats that is called AAMI N, directly follows a beat called S,
and still comes early against the long mean (``pre_long`` below the
early-beat rule's ``max_pre_long``, rhythm not AF-like) is called S as well
(its AAMI N probability goes to its most probable class of AAMI S, as the
early-beat rule does), for at most ``max_beats`` beats after the last early
beat of the run.  A file may give the run's later beats their own, looser
``pre_long`` threshold (``meta["early_run_max_pre_long"]``, ``ecg-train
--early-run-quantile``): the shipped model's is the 1 % quantile of
``pre_long`` over the DS1 N beats outside AF-like rhythm, where the run's
first beat must be below the 0.25 % quantile.  The shipped model uses
``max_beats = 120``, chosen on DS1 out of fold (no run of DS1 is longer;
``local_beats``, 10, the number of intervals the local mean needs to forget
the rhythm before the run, until then).  The run ends at the first beat that is called V, F or Q, comes
late (the pause after a run), or falls in AF-like rhythm.

A weights file holds the setting as ``meta["early_run_beats"]`` (written by
``ecg-train --early-run-beats``; it needs ``meta["early_beat_rule"]``,
whose thresholds it uses).  Unlike the other rules it depends on the beats
before this one, so it is a streaming object kept per stream
(:class:`~monitor.pipeline.StreamMonitor` holds one;
``ecg-eval`` makes one per record).

Examples
--------
>>> from monitor.model import Classifier  # doctest: +SKIP
>>> clf = Classifier.from_file("assets/model.pt")  # doctest: +SKIP
>>> runs = EarlyRunRule.for_classifier(clf)  # doctest: +SKIP
>>> probs = runs.process(clf.predict_proba(f.windows, f.rr, rhythm=f.rhythm), f.rr, f.rhythm)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from replay._validate import check_option, ensure_int
from replay.errors import ConfigError

from .model import PREMATURITY_REFERENCES, Classifier, af_rule, early_beat_rule, s_rule_rr

logger = logging.getLogger(__name__)

__all__ = ["EarlyRunRule"]


class EarlyRunRule:
    """Carry the S label of an early beat over the run of early beats that follows it (one stream).

    Parameters
    ----------
    max_beats : int
        Most beats, after the last early beat of a run, that the rule may
        call S (1 to 1000).
    max_pre_long, max_pre_local : float
        The early-beat rule's thresholds (ratios, > 0): a beat is early when
        its ``pre_long`` and ``pre_local`` RR features are below them, and
        stays in the run while its ``pre_long`` is below ``max_run_pre_long``.
    af_thresholds : tuple of float
        ``(min_irregular, max_regular[, max_p_wave])`` of the AF rule: no run in AF-like
        rhythm (:func:`monitor.model.af_like`).
    pre_long_index, pre_local_index : int
        Columns of ``pre_long`` and ``pre_local`` in the RR features.
    n_group, s_group : sequence of int
        Class indices of AAMI N and of AAMI S (not empty, disjoint).
    max_run_pre_long : float, optional
        ``pre_long`` threshold (a ratio, > 0) below which the later beats of
        a run stay in it; default ``max_pre_long``.
    reference : {"long", "normal"}
        Whether "``pre_long``" is the RR feature or the rhythm's
        ``pre_normal`` (:func:`monitor.model.prematurity_reference`).
    """

    def __init__(
        self,
        max_beats: int,
        max_pre_long: float,
        max_pre_local: float,
        af_thresholds: tuple[float, ...],
        pre_long_index: int,
        pre_local_index: int,
        n_group: Sequence[int],
        s_group: Sequence[int],
        max_run_pre_long: float | None = None,
        reference: str = "long",
    ) -> None:
        self.max_beats = ensure_int("max_beats", max_beats)
        if not 1 <= self.max_beats <= 1000:
            raise ConfigError(f"max_beats must be 1 to 1000 beats, got {self.max_beats}")
        self.max_pre_long = float(max_pre_long)
        self.max_pre_local = float(max_pre_local)
        if not (self.max_pre_long > 0 and self.max_pre_local > 0):
            raise ConfigError(f"max_pre_long and max_pre_local must be > 0, got {max_pre_long!r} and {max_pre_local!r}")
        self.max_run_pre_long = self.max_pre_long if max_run_pre_long is None else float(max_run_pre_long)
        if not (np.isfinite(self.max_run_pre_long) and self.max_run_pre_long > 0):
            raise ConfigError(f"max_run_pre_long must be a positive ratio, got {max_run_pre_long!r}")
        self.af_thresholds = tuple(float(t) for t in af_thresholds)
        self.reference = check_option("reference", reference, PREMATURITY_REFERENCES)
        self.pre_long_index = ensure_int("pre_long_index", pre_long_index)
        self.pre_local_index = ensure_int("pre_local_index", pre_local_index)
        self.n_group = np.asarray(n_group, dtype=np.int64)
        self.s_group = np.asarray(s_group, dtype=np.int64)
        if not self.n_group.size or not self.s_group.size or np.intersect1d(self.n_group, self.s_group).size:
            raise ConfigError("n_group and s_group must be non-empty, disjoint sets of class indices")
        self.reset()

    @classmethod
    def for_classifier(cls, classifier: Classifier) -> EarlyRunRule | None:
        """The rule of a classifier's weights file, or None when it has none or it is switched off.

        Its thresholds are the classifier's early-beat rule's
        (:attr:`~monitor.model.Classifier.early_beat_rule` and
        ``early_beat_af_rule``, as set on the object), or the file's where
        those are set to None to measure the other rules without them; set
        :attr:`~monitor.model.Classifier.early_run_beats` to None to switch
        this rule off.
        """
        k = classifier.early_run_beats
        if k is None:
            return None
        meta = classifier.meta
        return cls(
            k,
            *(classifier.early_beat_rule or early_beat_rule(meta)),
            classifier.early_beat_af_rule or af_rule(meta),
            classifier._pre_long,
            classifier._pre_local,
            classifier._n_group,
            classifier._s_group,
            classifier.early_run_max_pre_long,
            classifier.prematurity_reference,
        )

    def reset(self) -> None:
        """Forget the stream: no run is under way."""
        #: Beats called S since the last early beat of the run under way (None: no run).
        self.since_early: int | None = None
        self.beats_moved = 0

    def peek(self, prob: np.ndarray, rr: np.ndarray, rhythm: np.ndarray) -> np.ndarray:
        """What :meth:`process` would give the next beats, on a copy of ``prob``, leaving the rule's state as it is.

        For a label given before the beat's final one is known (the
        provisional label of a beat that waits for the post-pause rule,
        :mod:`monitor.post_pause`).
        """
        since, moved = self.since_early, self.beats_moved
        try:
            return self.process(np.array(prob, dtype=np.float32, copy=True), rr, rhythm)
        finally:
            self.since_early, self.beats_moved = since, moved

    def process(self, prob: np.ndarray, rr: np.ndarray, rhythm: np.ndarray) -> np.ndarray:
        """Apply the rule to the next beats of the stream, in order (``prob`` is changed in place).

        Parameters
        ----------
        prob : numpy.ndarray, shape (k, n_classes)
            Class probabilities of the beats, after the classifier's rules
            (:meth:`~monitor.model.Classifier.predict_proba`).
        rr : numpy.ndarray, shape (k, n_rr)
            Their RR features.
        rhythm : numpy.ndarray, shape (k, 3)
            Their rhythm measures (:attr:`~monitor.beats.BeatFeatures.rhythm`).

        Returns
        -------
        numpy.ndarray
            ``prob``, with the AAMI N probability of the beats the rule
            calls S given to their most probable class of AAMI S.
        """
        k = prob.shape[0]
        rr = np.asarray(rr)
        if rr.ndim != 2 or rr.shape[0] != k or rr.shape[1] <= max(self.pre_long_index, self.pre_local_index):
            raise ConfigError(f"rr must have shape ({k}, n_rr) with the pre_long and pre_local columns, got {rr.shape}")
        in_af = Classifier._af_like(rhythm, k, self.af_thresholds)  # checks the shape of rhythm
        if k == 0:
            return prob
        if self.reference == "normal":
            rr = s_rule_rr(rr, rhythm, self.pre_long_index)
        pre_long = rr[:, self.pre_long_index]
        stays = (pre_long < self.max_run_pre_long) & ~in_af
        early = ((pre_long < self.max_pre_long) & (rr[:, self.pre_local_index] < self.max_pre_local) & ~in_af).tolist()
        best = prob.argmax(axis=1)
        called_n = np.isin(best, self.n_group).tolist()
        called_s = np.isin(best, self.s_group).tolist()
        moved = []
        since = self.since_early
        # per beat: each beat's label depends on the one before (a few beats per call live)
        for i, stay in enumerate(stays.tolist()):
            if called_n[i] and stay and since is not None and since < self.max_beats:
                called_s[i] = True
                moved.append(i)
            if not called_s[i]:
                since = None
            elif early[i]:
                since = 0
            elif stay and since is not None:
                since += 1
            else:
                since = None
        self.since_early = since
        if moved:
            Classifier._move(prob, np.asarray(moved, dtype=np.int64), self.n_group, self.s_group)
            self.beats_moved += len(moved)
        return prob
