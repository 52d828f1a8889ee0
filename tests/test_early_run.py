"""Tests of monitor.early_run: the early-run rule over a stream's beats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.early_run import EarlyRunRule
from monitor.labels import CLASSES
from monitor.model import Classifier, build_model, load_model, save_weights
from replay.errors import ConfigError

N, A, V = CLASSES.index("N"), CLASSES.index("A"), CLASSES.index("V")
N_GROUP = [CLASSES.index(c) for c in ("N", "L", "R")]
LONG, LOCAL = 0, 1  # columns of pre_long and pre_local in these tests' RR features
REGULAR, AF = [0.02, 0.9], [0.3, 0.2]  # rhythm measures: sinus-like, AF-like (by (0.1, 0.5))


def _rule(max_beats: int = 3) -> EarlyRunRule:
    return EarlyRunRule(max_beats, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A])


def _probs(called: str) -> np.ndarray:
    """One probability row per character: N, A (S) or V most probable."""
    rows = []
    for c in called:
        p = np.full(len(CLASSES), 0.02, np.float32)
        p[{"N": N, "A": A, "V": V}[c]] = 0.6
        p[N if c != "N" else CLASSES.index("L")] += 0.1
        rows.append(p / p.sum())
    return np.array(rows, np.float32)


def _beats(pre_long, pre_local, rhythm=None):
    rr = np.stack([np.asarray(pre_long, np.float32), np.asarray(pre_local, np.float32)], axis=1)
    rh = np.array(rhythm if rhythm is not None else [REGULAR] * len(pre_long), np.float32)
    return rr, rh


def test_an_early_beat_called_s_carries_its_label_over_the_run_up_to_max_beats():
    # beat 0: normal; 1: an early beat called S (starts the run); 2-6: called N, still early against
    # the long mean (the local mean has caught up with the run); 7: back to the long rhythm
    called = "NANNNNNN"
    rr, rh = _beats([1.0, 0.6, 0.62, 0.6, 0.61, 0.6, 0.62, 1.1], [1.0, 0.6, 0.9, 0.9, 0.95, 1.0, 1.0, 1.5])
    p0 = _probs(called)
    p = _rule(3).process(p0.copy(), rr, rh)
    moved = [2, 3, 4]  # three beats after the early one, then the run is given up
    assert p.argmax(1).tolist() == [N, A, A, A, A, N, N, N]
    for i in moved:  # the AAMI-N probability goes to A, the rest is kept
        assert p[i, N_GROUP].sum() == 0 and p[i, A] == pytest.approx(p0[i, A] + p0[i, N_GROUP].sum())
        assert p[i].sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(p[[0, 1, 5, 6, 7]], p0[[0, 1, 5, 6, 7]])
    # a larger max_beats follows the run to its end, and not beyond the late beat
    assert _rule(10).process(p0.copy(), rr, rh).argmax(1).tolist() == [N, A, A, A, A, A, A, N]


def test_a_run_ends_at_a_late_beat_a_v_beat_or_af_like_rhythm_and_needs_an_early_start():
    rule = _rule(10)
    # the network calls beat 1 S although it does not come early against the local mean: no run
    rr, rh = _beats([1.0, 0.6, 0.6, 0.6], [1.0, 0.95, 0.95, 1.0])
    assert rule.process(_probs("NANN"), rr, rh).argmax(1).tolist() == [N, A, N, N]
    # a V beat ends the run: the early beats after it stay N
    rr, rh = _beats([1.0, 0.6, 0.6, 0.6, 0.6], [1.0, 0.6, 0.9, 0.95, 1.0])
    assert rule.process(_probs("NANVN"), rr, rh).argmax(1).tolist() == [N, A, A, V, N]
    # so does AF-like rhythm (no S label in AF, as the AF rule), even once it is regular again
    rr, rh = _beats([1.0, 0.6, 0.6, 0.6, 0.6], [1.0, 0.6, 0.9, 0.95, 1.0], [REGULAR, REGULAR, AF, REGULAR, REGULAR])
    assert rule.process(_probs("NANNN"), rr, rh).argmax(1).tolist() == [N, A, N, N, N]
    # and a beat that comes late: the next early beat does not start a run unless early itself
    rr, rh = _beats([1.0, 0.6, 0.6, 1.2, 0.6, 0.6], [1.0, 0.6, 0.9, 1.4, 0.7, 0.9])
    assert rule.process(_probs("NANNNN"), rr, rh).argmax(1).tolist() == [N, A, A, N, N, N]
    # a second early beat called S renews the run's budget
    rule = _rule(2)
    rr, rh = _beats([1.0, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], [1.0, 0.6, 0.9, 0.8, 0.9, 0.95, 1.0, 1.0])
    assert rule.process(_probs("NANANNNN"), rr, rh).argmax(1).tolist() == [N, A, A, A, A, A, N, N]


def test_a_run_may_have_its_own_looser_threshold_for_its_later_beats():
    # beats 2-4 come early against the long mean, but not as early as the early-beat rule's 0.8:
    # they stay in the run only with max_run_pre_long 0.85; the run's first beat still needs 0.8
    called = "NANNNN"
    rr, rh = _beats([1.0, 0.7, 0.82, 0.84, 0.83, 0.86], [1.0, 0.7, 0.95, 1.0, 1.0, 1.0])
    assert _rule(10).process(_probs(called), rr, rh).argmax(1).tolist() == [N, A, N, N, N, N]
    loose = EarlyRunRule(10, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A], max_run_pre_long=0.85)
    assert loose.max_run_pre_long == 0.85 and _rule().max_run_pre_long == 0.8
    assert loose.process(_probs(called), rr, rh).argmax(1).tolist() == [N, A, A, A, A, N]
    # a beat at 0.82 does not start a run, and does not renew the budget of one under way
    loose = EarlyRunRule(2, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A], max_run_pre_long=0.85)
    rr, rh = _beats([1.0, 0.82, 0.82, 0.7, 0.82, 0.82, 0.82, 0.82], [1.0, 0.7, 0.9, 0.7, 0.7, 0.7, 1.0, 1.0])
    assert loose.process(_probs("NANANANN"), rr, rh).argmax(1).tolist() == [N, A, N, A, A, A, N, N]
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="max_run_pre_long must be a positive ratio"):
            EarlyRunRule(5, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A], max_run_pre_long=bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=12))
def test_the_labels_do_not_depend_on_how_the_beats_are_chunked(cuts):
    rng = np.random.default_rng(0)
    n = 60
    called = "".join(rng.choice(list("NNNNAV"), n))
    pre_long = rng.choice([0.6, 0.7, 0.9, 1.1], n)
    pre_local = rng.choice([0.6, 0.8, 1.0], n)
    rhythm = [AF if x < 0.1 else REGULAR for x in rng.random(n)]
    rr, rh = _beats(pre_long, pre_local, rhythm)
    whole = _rule(4).process(_probs(called), rr, rh)
    rule, p, a = _rule(4), _probs(called), 0
    for c in cuts * 20:
        if a >= n:
            break
        rule.process(p[a : a + c], rr[a : a + c], rh[a : a + c])  # views: changed in place
        a += c
    rule.process(p[a:], rr[a:], rh[a:])
    np.testing.assert_array_equal(p, whole)
    assert rule.beats_moved == int((whole.argmax(1) != _probs(called).argmax(1)).sum())


def test_reset_forgets_the_run_and_bad_arguments_are_rejected():
    rule = _rule(5)
    rr, rh = _beats([1.0, 0.6], [1.0, 0.6])
    rule.process(_probs("NA"), rr, rh)
    assert rule.since_early == 0
    rule.reset()
    assert rule.since_early is None and rule.beats_moved == 0
    rr, rh = _beats([0.6], [0.9])
    assert rule.process(_probs("N"), rr, rh).argmax(1).tolist() == [N]
    assert rule.process(np.zeros((0, len(CLASSES)), np.float32), np.zeros((0, 2)), np.zeros((0, 2))).shape == (0, len(CLASSES))
    with pytest.raises(ConfigError, match="rr must have shape"):
        rule.process(_probs("NN"), np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ConfigError, match="rhythm must have shape"):
        rule.process(_probs("NN"), np.zeros((2, 2)), np.zeros((2, 1)))
    for bad, error in ((0, ConfigError), (1001, ConfigError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="max_beats"):
            EarlyRunRule(bad, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A])
    with pytest.raises(ConfigError, match="must be > 0"):
        EarlyRunRule(5, 0.0, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A])
    with pytest.raises(ConfigError, match="disjoint"):
        EarlyRunRule(5, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [N])


def meta_rejected(weights, name: str, file_meta: dict, match: str) -> None:
    """A copy of ``weights`` (named ``name``, beside it) with this metadata gives a ConfigError naming the file, not a traceback."""
    blob = torch.load(weights, weights_only=True)
    blob["meta_json"] = json.dumps(file_meta)
    torch.save(blob, weights.parent / name)
    with pytest.raises(ConfigError, match=f"{name}: metadata {match}"):
        load_model(weights.parent / name)


def _tiny_meta():
    from monitor.beats import BeatFeaturizer
    from monitor.model import ARCHITECTURE, default_hparams

    fz = BeatFeaturizer(360.0, use_post_rr=False, af_context=True)
    return {
        "architecture": ARCHITECTURE,
        "hparams": default_hparams(fz.n_channels, fz.n_window, len(fz.rr_names), len(CLASSES)),
        "classes": list(CLASSES),
        "featurizer": fz.settings(),
        "rr_names": list(fz.rr_names),
        "af_rule": {"min_irregular": 0.1, "max_regular": 0.5},
        "early_beat_rule": {"max_pre_long": 0.8, "max_pre_local": 0.85},
    }


def test_weights_files_hold_the_setting_and_bad_entries_are_rejected(tmp_path):
    meta = _tiny_meta()
    torch.manual_seed(0)
    m = build_model(meta)
    plain = Classifier(*load_model(save_weights(tmp_path / "p.pt", m, meta)))
    assert plain.early_run_beats is None and EarlyRunRule.for_classifier(plain) is None
    ruled = Classifier(*load_model(save_weights(tmp_path / "r.pt", m, {**meta, "early_run_beats": 10})))
    rule = EarlyRunRule.for_classifier(ruled)
    names = meta["rr_names"]
    assert (rule.max_beats, rule.max_pre_long, rule.max_pre_local, rule.af_thresholds) == (10, 0.8, 0.85, (0.1, 0.5))
    assert (rule.pre_long_index, rule.pre_local_index) == (names.index("pre_long"), names.index("pre_local"))
    assert rule.n_group.tolist() == N_GROUP and rule.s_group.tolist() == [A]
    # the file's thresholds, also when the early-beat and AF rules are switched off to measure them
    ruled.early_beat_rule = ruled.af_rule = None
    assert EarlyRunRule.for_classifier(ruled).max_pre_long == 0.8
    assert ruled.early_run_max_pre_long is None and rule.max_run_pre_long == 0.8
    ruled.early_run_beats = None  # ecg-eval --no-early-run-rule
    assert EarlyRunRule.for_classifier(ruled) is None
    # the run's own threshold, when the file has one
    loose = Classifier(*load_model(save_weights(tmp_path / "l.pt", m, {**meta, "early_run_beats": 10, "early_run_max_pre_long": 0.85})))
    assert loose.early_run_max_pre_long == 0.85 and EarlyRunRule.for_classifier(loose).max_run_pre_long == 0.85

    def rejected(name: str, file_meta: dict, match: str) -> None:
        meta_rejected(tmp_path / "r.pt", name, file_meta, match)

    for bad in (0, 1001, 2.5, "10", True):
        rejected("bad.pt", {**meta, "early_run_beats": bad}, "'early_run_beats' must be an integer")
    no_early = {k: v for k, v in meta.items() if k != "early_beat_rule"}
    rejected("noearly.pt", {**no_early, "early_run_beats": 10}, "'early_run_beats' needs 'early_beat_rule'")
    for bad in (0, -0.5, "0.85", True):
        rejected("bad.pt", {**meta, "early_run_beats": 10, "early_run_max_pre_long": bad}, "'early_run_max_pre_long' must be a positive number")
    rejected("norun.pt", {**meta, "early_run_max_pre_long": 0.85}, "'early_run_max_pre_long' needs 'early_run_beats'")


def test_the_stream_monitor_keeps_one_rule_per_stream_and_resets_it(tmp_path):
    from monitor.pipeline import StreamMonitor

    meta = {**_tiny_meta(), "early_run_beats": 10}
    clf = Classifier(*load_model(save_weights(tmp_path / "r.pt", build_model(meta), meta)))
    a = StreamMonitor("a", 360.0, ("MLII",), classifier=clf)
    b = StreamMonitor("b", 360.0, ("MLII",), classifier=clf)
    assert a.early_runs is not b.early_runs and a.early_runs.max_beats == 10
    a.early_runs.since_early = 3
    a.reset()
    assert a.early_runs.since_early is None
    clf.early_run_beats = None
    assert StreamMonitor("c", 360.0, ("MLII",), classifier=clf).early_runs is None


def test_the_normal_reference_reads_pre_normal_from_the_rhythm_instead_of_pre_long():
    rule = EarlyRunRule(3, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A], reference="normal")
    # pre_long says "not early" (0.95); the rhythm's pre_normal (column 3) says early (0.7)
    rr, _ = _beats([0.95, 0.95, 0.95], [0.8, 0.95, 0.95])
    rh = np.array([REGULAR + [0.1, 0.7]] * 3, np.float32)
    assert rule.process(_probs("ANN"), rr, rh).argmax(1).tolist() == [A, A, A]
    plain = _rule()
    assert plain.process(_probs("ANN"), rr, rh).argmax(1).tolist() == [A, N, N]  # pre_long: no run
    with pytest.raises(ConfigError, match="pre_normal"):
        EarlyRunRule(3, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A], reference="normal").process(_probs("A"), rr[:1], rh[:1, :2])
    with pytest.raises(ConfigError, match="Did you mean 'normal'"):
        EarlyRunRule(3, 0.8, 0.85, (0.1, 0.5), LONG, LOCAL, N_GROUP, [A], reference="norml")
