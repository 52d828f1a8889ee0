"""Tests of monitor.post_pause: an early beat called N that a pause follows is called S, live as in ecg-eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monitor.labels import CLASSES
from monitor.model import Classifier, build_model, load_model, save_weights
from monitor.post_pause import PRE_NORMAL, PostPauseRule
from replay.errors import ConfigError

N, A, V = CLASSES.index("N"), CLASSES.index("A"), CLASSES.index("V")
N_GROUP = [CLASSES.index(c) for c in ("N", "L", "R")]
REGULAR, AF = (0.02, 0.9), (0.3, 0.2)  # af_irregular, af_regular: sinus-like, AF-like (by (0.1, 0.5))


def _rule() -> PostPauseRule:
    return PostPauseRule(0.9, 1.2, (0.1, 0.5), 0, N_GROUP, [A])


def _probs(called: str) -> np.ndarray:
    """One probability row per character: N, A (S) or V most probable."""
    rows = []
    for c in called:
        p = np.full(len(CLASSES), 0.02, np.float32)
        p[{"N": N, "A": A, "V": V}[c]] = 0.6
        rows.append(p / p.sum())
    return np.array(rows, np.float32)


def _beats(pre_rr, pre_normal, rhythm=None):
    rr = np.asarray(pre_rr, np.float32)[:, None]
    rh = np.zeros((len(pre_rr), 4), np.float32)
    rh[:, :2] = rhythm if rhythm is not None else REGULAR
    rh[:, PRE_NORMAL] = pre_normal
    return rr, rh


def test_an_early_beat_called_n_then_a_pause_is_called_s():
    rule = _rule()
    # 1.0 s sinus; a beat 0.7 s after the one before (pre_normal 0.7), then 1.1 s: a pause (1.1 > 1.2 x 0.7)
    rr, rh = _beats([1.0, 0.7, 1.1, 1.0], [1.0, 0.7, 1.1, 1.0])
    out = rule.apply_to_record(_probs("NNNN"), rr, rh)
    assert out.argmax(1).tolist() == [N, A, N, N]
    assert out[1, N] == 0 and out[1, A] == pytest.approx((0.02 + 0.6 + 0.02 + 0.02) / 0.72, rel=1e-4)  # A gets N, L and R
    assert rule.beats_moved == 1
    # no pause after it (the rate rose: the next interval is as short): N
    rr, rh = _beats([1.0, 0.7, 0.72, 0.7], [1.0, 0.7, 0.72, 0.7])
    assert rule.apply_to_record(_probs("NNNN"), rr, rh).argmax(1).tolist() == [N] * 4
    # not early enough (pre_normal 0.95 >= 0.9), in AF-like rhythm, or called V: unchanged
    rr, rh = _beats([1.0, 0.95, 1.3], [1.0, 0.95, 1.3])
    assert rule.apply_to_record(_probs("NNN"), rr, rh).argmax(1).tolist() == [N, N, N]
    rr, rh = _beats([1.0, 0.7, 1.1], [1.0, 0.7, 1.1], [AF] * 3)
    assert rule.apply_to_record(_probs("NNN"), rr, rh).argmax(1).tolist() == [N, N, N]
    rr, rh = _beats([1.0, 0.7, 1.1], [1.0, 0.7, 1.1])
    assert rule.apply_to_record(_probs("NVN"), rr, rh).argmax(1).tolist() == [N, V, N]
    # the last beat of a record has no next interval, nor has a beat whose next one is unknown (NaN)
    rr, rh = _beats([1.0, 0.7], [1.0, 0.7])
    assert rule.apply_to_record(_probs("NN"), rr, rh).argmax(1).tolist() == [N, N]
    assert rule.apply(_probs("NN"), rr, rh, np.array([1.0, np.nan])).argmax(1).tolist() == [N, N]
    assert rule.apply(_probs("NN"), rr, rh, np.array([1.0, np.inf])).argmax(1).tolist() == [N, A]
    # which beats wait live, and for how long
    assert rule.waits(_probs("NNV"), *_beats([1.0, 0.7, 0.6], [1.0, 0.7, 0.6])).tolist() == [False, True, False]
    assert rule.pause_s(rr).tolist() == pytest.approx([1.2, 0.84])


def test_bad_arguments_and_shapes_are_rejected():
    for a, b in ((0.0, 1.2), (1.5, 1.2), (0.9, 0.5), (0.9, 6.0), (float("nan"), 1.2)):
        with pytest.raises(ConfigError, match="max_pre_normal|min_post_ratio"):
            PostPauseRule(a, b, (0.1, 0.5), 0, N_GROUP, [A])
    with pytest.raises(ConfigError, match="disjoint"):
        PostPauseRule(0.9, 1.2, (0.1, 0.5), 0, N_GROUP, [N])
    rule = _rule()
    rr, rh = _beats([1.0, 0.7], [1.0, 0.7])
    with pytest.raises(ConfigError, match="rr must have shape"):
        rule.apply_to_record(_probs("NNN"), rr, rh)
    with pytest.raises(ConfigError, match="rhythm must have shape"):
        rule.apply_to_record(_probs("NN"), rr, rh[:, :2])
    with pytest.raises(ConfigError, match="post_rr_s must have shape"):
        rule.apply(_probs("NN"), rr, rh, np.ones(3))
    empty = rule.apply_to_record(np.zeros((0, len(CLASSES)), np.float32), np.zeros((0, 1)), np.zeros((0, 4)))
    assert empty.shape == (0, len(CLASSES))


def _tiny_meta():
    """A small model's metadata with the AF rule (the early-run tests' without their early-beat rule)."""
    from test_early_run import _tiny_meta as early_run_meta

    return {k: v for k, v in early_run_meta().items() if k != "early_beat_rule"}


def test_weights_files_hold_the_thresholds_and_bad_entries_are_rejected(tmp_path):
    from monitor.pipeline import StreamMonitor

    meta = _tiny_meta()
    torch.manual_seed(0)
    m = build_model(meta)
    plain = Classifier(*load_model(save_weights(tmp_path / "p.pt", m, meta)))
    assert plain.post_pause_rule is None and PostPauseRule.for_classifier(plain) is None
    assert StreamMonitor("p", 360.0, ("MLII",), classifier=plain).post_pause is None
    ruled = Classifier(*load_model(save_weights(tmp_path / "r.pt", m, {**meta, "post_pause_rule": {"max_pre_normal": 0.9, "min_post_ratio": 1.2}})))
    rule = PostPauseRule.for_classifier(ruled)
    assert (rule.max_pre_normal, rule.min_post_ratio, rule.af_thresholds) == (0.9, 1.2, (0.1, 0.5))
    assert rule.pre_rr_index == meta["rr_names"].index("pre_rr_s") and rule.s_group.tolist() == [A]
    ruled.af_rule = None  # ecg-eval --no-af-rule: the rule keeps the file's AF thresholds
    assert PostPauseRule.for_classifier(ruled).af_thresholds == (0.1, 0.5)
    assert StreamMonitor("r", 360.0, ("MLII",), classifier=ruled).post_pause.min_post_ratio == 1.2
    ruled.post_pause_rule = None  # ecg-eval --no-post-pause-rule
    assert PostPauseRule.for_classifier(ruled) is None
    from test_early_run import meta_rejected

    def rejected(name: str, file_meta: dict, match: str) -> None:
        meta_rejected(tmp_path / "r.pt", name, file_meta, match)

    for bad in ({"max_pre_normal": 0.9}, {"max_pre_normal": 1.5, "min_post_ratio": 1.2}, {"max_pre_normal": 0.9, "min_post_ratio": 0.8},
                {"max_pre_normal": "0.9", "min_post_ratio": 1.2}, [0.9, 1.2]):  # fmt: skip
        rejected("bad.pt", {**meta, "post_pause_rule": bad}, "'post_pause_rule' must be")
    no_af = {k: v for k, v in meta.items() if k != "af_rule"}
    rejected("noaf.pt", {**no_af, "post_pause_rule": {"max_pre_normal": 0.9, "min_post_ratio": 1.2}}, "'post_pause_rule' needs 'af_rule'")


def _feed_live(clf, x, fs, chunk, ann=None, alarm_input=None):
    """Feed ``x`` to a StreamMonitor in chunks, classifying after each as the runner does at real time.

    ``ann``: reference annotations to send first; ``alarm_input``: a list that receives every event
    given to the alarm engine. Returns the monitor and (event, stream index when it left) pairs.
    """
    from monitor.pipeline import StreamMonitor
    from replay.wire import AnnotationBatch, Control, SampleChunk

    mon = StreamMonitor("s", fs, ("MLII", "V5"), classifier=clf)
    out = []
    if alarm_input is not None:
        process = mon.alarms.process

        def spy(events, *args, **kw):
            alarm_input.extend(events)
            return process(events, *args, **kw)

        mon.alarms.process = spy
    if ann is not None:
        mon.handle(AnnotationBatch("s", 0, fs, ann.sample, tuple(ann.symbol), tuple(ann.aux_note)))

    def take(events):
        out.extend((e, mon.next_index) for e in events)

    for k, a in enumerate(range(0, len(x), chunk)):
        d = x[a : a + chunk]
        take(mon.handle(SampleChunk("s", k, a, fs, ("MLII", "V5"), d, bool(np.isnan(d).any()))))
        f = mon.take_ready()
        if f is not None:
            take(mon.label_beats(f, clf.predict_proba(f.windows, f.rr, rhythm=f.rhythm)))
    take(mon.handle(Control("s", 0, "end", True, {})))
    f = mon.take_ready()
    if f is not None:
        take(mon.label_beats(f, clf.predict_proba(f.windows, f.rr, rhythm=f.rhythm)))
    take(mon.finish_end())
    return mon, out


def _final_labels(out):
    """Beat events' labels with the relabel events applied: {sample: label}."""
    labels = {e["sample"]: e["label"] for e, _ in out if e["type"] == "beat"}
    for e, _ in out:
        if e["type"] == "relabel":
            labels[e["sample"]] = e["label"]
    return labels


def test_live_labels_are_ecg_evals_and_a_waiting_beat_is_relabelled_before_the_next_beat(mitdb, tmp_path):
    """Record 232 (atrial premature beats, long pauses), the shipped classifier.

    Every beat event leaves 0.5 s after its R peak, as without the rule; a beat that waits for its
    next interval leaves with ``provisional: true``, and a ``relabel`` event follows when the rule
    calls it S: once the next beat is detected or, before a long pause, once the pause is certain.
    With the relabels applied, the labels are ecg-eval's.
    """
    import wfdb

    from monitor.early_run import EarlyRunRule
    from monitor.resources import asset
    from trainer import dataset as ds

    clf = Classifier.from_file(asset("model.pt"))
    assert clf.post_pause_rule is not None
    fs = 360.0
    x = wfdb.rdrecord(str(mitdb / "232"), sampto=int(300 * fs)).p_signal.astype(np.float32)
    seen = []
    mon, out = _feed_live(clf, x, fs, 36, wfdb.rdann(str(mitdb / "232"), "atr", sampto=int(300 * fs)), seen)
    beats = [(e, at) for e, at in out if e["type"] == "beat"]
    samples = [e["sample"] for e, _ in beats]
    assert samples == sorted(samples) and len(set(samples)) == len(samples)
    assert out[-1][0]["status"] == "end" and not mon._held and not mon._unlabelled and mon._provisional is None
    json.dumps([e for e, _ in out])  # nothing private is written
    # the labels of ecg-eval's path: the classifier's rules, the post-pause rule, then the early-run rule
    rb = ds.record_beats("232", mitdb, clf.meta["featurizer"], cache=tmp_path, duration_s=300)
    assert rb.sample.tolist() == samples
    prob = clf.predict_proba(rb.windows, rb.rr, rhythm=rb.rhythm)
    pauses = PostPauseRule.for_classifier(clf)
    waits = pauses.waits(prob, rb.rr, rb.rhythm)
    offline = EarlyRunRule.for_classifier(clf).process(pauses.apply_to_record(prob.copy(), rb.rr, rb.rhythm), rb.rr, rb.rhythm).argmax(1)
    final = _final_labels(out)
    assert [final[s] for s in samples] == [CLASSES[k] for k in offline]
    # the alarm engine gets every beat once, in order, with its final label only
    given = [e for e in seen if e["type"] == "beat"]
    assert [e["sample"] for e in given] == samples and [e["label"] for e in given] == [final[s] for s in samples]
    assert not any(e.get("provisional") for e in given) and not any(e["type"] == "relabel" for e in seen)
    # the rule acts here, and on atrial beats; each change is a relabel of a provisional beat to S,
    # written before the next beat's event
    clf.post_pause_rule = None
    without = EarlyRunRule.for_classifier(clf).process(prob.copy(), rb.rr, rb.rhythm).argmax(1)
    moved = (offline == A) & (without != A)
    assert moved.sum() >= 3 and (rb.symbol[moved] == "A").mean() >= 0.75
    assert [e["label"] for e, _ in beats] == [CLASSES[k] for k in np.where(moved, without, offline)]
    provisional = [e["sample"] for e, _ in beats if e.get("provisional")]
    relabels = [(i, e) for i, (e, _) in enumerate(out) if e["type"] == "relabel"]
    assert [e["sample"] for _, e in relabels] == rb.sample[moved].tolist()
    assert set(provisional) == set(rb.sample[waits[:-1].nonzero()[0]].tolist()) | ({samples[-1]} if waits[-1] else set())
    pos = {e["sample"]: i for i, (e, _) in enumerate(out) if e["type"] == "beat"}
    for i, e in relabels:
        assert e["was"] == "N" and e["aami"] == "S" and e["rule"] == "post-pause" and e["latency"] >= 0
        later = [s for s in samples if s > e["sample"]]
        assert pos[e["sample"]] < i < pos[later[0]]
    # when each event left (stream index): every beat event when it leaves without the rule (0.5 s
    # after its R peak, most of them), but for the beats right behind a waiting one
    left = np.array([at for _, at in beats])
    _, plain = _feed_live(clf, x, fs, 36)  # clf.post_pause_rule is None here
    assert not any(e["type"] == "relabel" or e.get("provisional") for e, _ in plain)
    left_plain = np.array([at for e, at in plain if e["type"] == "beat"])
    behind = np.r_[False, waits[:-1]]
    chunk = 36
    assert (left[~behind] == left_plain[~behind]).all() and behind.sum() < 0.2 * len(samples)
    assert (np.median(left_plain - rb.sample) - 0.5 * fs) <= chunk
    # a relabel: once the next beat is detected, or once its pause is certain, whichever is first
    at = {e["sample"]: a for e, a in out if e["type"] == "relabel"}
    m = np.flatnonzero(moved)
    nxt = rb.sample[m + 1]
    pause_end = rb.sample[m] + pauses.pause_s(rb.rr)[m] * fs
    delay = mon.detector.delay_s * fs
    left_r = np.array([at[int(rb.sample[i])] for i in m])
    assert (left_r <= np.minimum(nxt, pause_end) + delay + 2 * chunk).all()
    long_pause = nxt > pause_end + delay + 0.5 * fs  # the pause is certain well before the next beat
    assert long_pause.sum() >= 2 and (left_r[long_pause] < nxt[long_pause]).all()
    # the live confusion (reference against label) counts the final labels
    assert sum(v for row in mon.confusion.values() for v in row.values()) == len(samples)
    assert sum(row.get("S", 0) for row in mon.confusion.values()) == int((offline == A).sum())
    assert mon.confusion["S"]["S"] == sum(e["ref"] == "A" and final[e["sample"]] == "A" for e, _ in beats)


def test_the_runners_live_confusion_counts_the_final_labels(mitdb):
    from monitor.events import EventWriter
    from monitor.runner import MonitorRunner, RunnerConfig

    events = []
    runner = MonitorRunner(RunnerConfig(sources=["replay:232"], speed=float("inf"), data_dir=str(mitdb), duration_s=300),
                           EventWriter(None, events.extend))  # fmt: skip
    summary = runner.run()
    relabels = [e for e in events if e["type"] == "relabel"]  # (few or none: as fast as possible, the next beat is often known)
    assert all(e["stream"] == "232" for e in relabels)
    final = {e["sample"]: e["aami"] for e in events if e["type"] == "beat"}
    final.update({e["sample"]: e["aami"] for e in relabels})
    conf = summary.per_stream["232"]["confusion"]
    assert sum(sum(r.values()) for r in conf.values()) == len(final)
    assert sum(r.get("S", 0) for r in conf.values()) == sum(a == "S" for a in final.values())


def test_a_hole_after_a_waiting_beat_leaves_its_label_as_it_was(mitdb):
    """Lost samples after an early beat: no pause is inferred from them, and nothing is held for ever."""
    import wfdb

    from monitor.early_run import EarlyRunRule
    from monitor.resources import asset
    from trainer import dataset as ds

    clf = Classifier.from_file(asset("model.pt"))
    fs = 360.0
    x = wfdb.rdrecord(str(mitdb / "232"), sampto=int(120 * fs)).p_signal.astype(np.float32)
    # the waiting beats of these two minutes, and the beat in the middle whose pause a hole replaces
    rb = ds.record_beats("232", mitdb, clf.meta["featurizer"], cache=None, duration_s=120)
    prob = clf.predict_proba(rb.windows, rb.rr, rhythm=rb.rhythm)
    rule = PostPauseRule.for_classifier(clf)
    with_rule = EarlyRunRule.for_classifier(clf).process(rule.apply_to_record(prob.copy(), rb.rr, rb.rhythm), rb.rr, rb.rhythm)
    without = EarlyRunRule.for_classifier(clf).process(prob.copy(), rb.rr, rb.rhythm)
    moved = np.flatnonzero((with_rule.argmax(1) == A) & (without.argmax(1) != A))
    assert moved.size >= 2
    i = moved[len(moved) // 2]
    s = int(rb.sample[i])
    x[s + int(0.6 * fs) : s + int(6 * fs)] = np.nan  # from after its window to well past its pause
    _, out = _feed_live(clf, x, fs, 36)
    got = {e["sample"]: e for e, _ in out if e["type"] == "beat"}
    assert s in got and got[s]["aami"] == "N" and got[s]["provisional"]
    assert _final_labels(out)[s] == "N"  # the pause was not seen: no relabel
    assert out[-1][0]["status"] == "end"
    # without the hole the same beat is relabelled S (its pause is seen)
    x[s + int(0.6 * fs) : s + int(6 * fs)] = wfdb.rdrecord(str(mitdb / "232"), sampfrom=s + int(0.6 * fs), sampto=s + int(6 * fs)).p_signal
    _, out = _feed_live(clf, x, fs, 36)
    assert _final_labels(out)[s] == "A"


def test_the_window_and_the_recorder_keep_the_final_label(tmp_path):
    """A provisional beat and its relabel: the window redraws it, the WFDB recording holds the final symbol."""
    import wfdb

    from monitor.gui.feed import StreamState
    from monitor.recorder import StreamRecorder

    def beat(sample, label, aami, **extra):
        return {"type": "beat", "stream": "s", "sample": sample, "time": sample / 360, "label": label, "aami": aami, **extra}

    relabel = {"type": "relabel", "stream": "s", "sample": 700, "time": 700 / 360, "label": "A", "aami": "S",
               "prob": {"N": 0.0, "A": 1.0}, "was": "N", "rule": "post-pause", "latency": 1.1}  # fmt: skip
    events = [beat(360, "N", "N"), beat(700, "N", "N", provisional=True), relabel, beat(1150, "N", "N"),
              beat(1500, "N", "N", provisional=True), beat(1860, "V", "V")]  # fmt: skip
    st = StreamState("s", fs=360.0)
    for ev in events:
        st.add(ev)
    assert [(b.sample, b.label, b.aami) for b in st.beats] == [(360, "N", "N"), (700, "A", "S"), (1150, "N", "N"),
                                                              (1500, "N", "N"), (1860, "V", "V")]  # fmt: skip
    assert st.counts["S"] == 1 and st.counts["N"] == 3 and st.counts["V"] == 1 and st.beats_total == 5
    st.add({**relabel, "sample": 5})  # a beat no longer kept: nothing changes
    assert st.counts["S"] == 1
    # the recorder keeps a provisional beat back until the next beat event, and writes the final label
    x = np.zeros((2200, 1), np.float32)
    with StreamRecorder(tmp_path, "s", 360.0, ["MLII"]) as r:
        r.write_samples(0, x)
        r.write_events(events[:2])
        r.flush()
        r.write_events(events[2:3])
        r.flush()
        r.write_events(events[3:5])  # the last provisional beat is written when the recording closes
    ann = wfdb.rdann(str(tmp_path / "s"), "ecgm")
    assert ann.sample.tolist() == [360, 700, 1150, 1500] and ann.symbol == ["N", "A", "N", "N"]
