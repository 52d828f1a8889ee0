"""Live classification in the monitor: labelled beat events, batching across streams, ref, confusion."""

import json

import numpy as np
import pytest

from monitor.beats import BeatFeaturizer
from monitor.events import EventWriter
from monitor.labels import CLASS_TO_AAMI, CLASSES
from monitor.model import ARCHITECTURE, build_model, default_hparams, save_weights
from monitor.runner import MonitorRunner, RunnerConfig


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """An untrained model with the current featurizer's inputs (shapes are what matters here)."""
    import torch

    torch.manual_seed(0)
    fz = BeatFeaturizer(360.0, use_post_rr=False)
    hp = default_hparams(fz.n_channels, fz.n_window, len(fz.rr_names), len(CLASSES))
    meta = {
        "architecture": ARCHITECTURE,
        "hparams": hp,
        "classes": list(CLASSES),
        "featurizer": fz.settings(),
        "rr_names": list(fz.rr_names),
    }
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_weights(path, build_model(meta), meta)
    return str(path)


def run(config, **kw):
    events = []
    runner = MonitorRunner(config, EventWriter(None, events.extend), **kw)
    summary = runner.run()
    return events, summary


def test_replayed_record_beats_are_labelled_with_ref_and_confusion(mitdb, tiny_weights):
    events, summary = run(
        RunnerConfig(sources=["replay:208"], speed=float("inf"), data_dir=str(mitdb), duration_s=60,
                     weights=tiny_weights)
    )
    beats = [e for e in events if e["type"] == "beat"]
    assert len(beats) > 60
    for b in beats:
        assert b["label"] in CLASSES
        assert b["aami"] == CLASS_TO_AAMI[b["label"]]
        assert set(b["prob"]) == set(CLASSES)
        assert sum(b["prob"].values()) == pytest.approx(1.0, abs=1e-2)
        assert b["latency"] >= 0
        assert "ref" in b
    refs = [b["ref"] for b in beats]
    assert refs.count("V") > 5 and refs.count("N") > 30  # 208 has many PVCs
    assert [b["sample"] for b in beats] == sorted(b["sample"] for b in beats)
    conf = summary.per_stream["208"]["confusion"]
    assert sum(sum(r.values()) for r in conf.values()) == len(beats)
    json.dumps(events)  # every event is JSON-able
    # the end status comes after the last labelled beat
    end = [i for i, e in enumerate(events) if e.get("status") == "end"][0]
    assert end > max(i for i, e in enumerate(events) if e["type"] == "beat")


def test_many_streams_are_batched_and_equal_to_single_runs(tiny_weights):
    cfg = dict(speed=float("inf"), weights=tiny_weights)
    both, _ = run(RunnerConfig(sources=["sim:70,duration=40,seed=1", "sim:95,duration=40,seed=2,ectopic=0.2"], **cfg))
    one, _ = run(RunnerConfig(sources=["sim:95,duration=40,seed=2,ectopic=0.2"], **cfg))
    pick = lambda evs, s: [(e["sample"], e["label"]) for e in evs if e["type"] == "beat" and e["stream"] == s]  # noqa: E731
    assert pick(both, "sim95") == pick(one, "sim95")
    assert len(pick(both, "sim70")) == pytest.approx(47, abs=4)


def test_no_classify_labels_question_marks_and_bad_weights_error(tmp_path):
    events, _ = run(RunnerConfig(sources=["sim:60,duration=20"], speed=float("inf"), classify=False))
    assert {e["label"] for e in events if e["type"] == "beat"} == {"?"}
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    from replay.errors import ConfigError

    with pytest.raises(ConfigError, match="bad.pt"):
        run(RunnerConfig(sources=["sim:60,duration=5"], weights=str(bad)))


def test_no_pause_or_asystole_while_beats_wait_for_their_label(mitdb, tiny_weights, tmp_path):
    """Beats held for classification (and a lead-off) never make the alarms think the heart stopped."""
    import wfdb

    from monitor.model import Classifier
    from monitor.pipeline import StreamMonitor
    from replay.wire import SampleChunk

    clf = Classifier.from_file(tiny_weights)
    fs = 360.0
    x = wfdb.rdrecord(str(mitdb / "100"), sampto=int(60 * fs)).p_signal.astype(np.float32)
    x[int(20 * fs) : int(23 * fs)] = np.nan
    mon = StreamMonitor("s", fs, ("MLII", "V5"), classifier=clf)
    events = []
    for a in range(0, len(x), 36):
        d = x[a : a + 36]
        events += mon.handle(SampleChunk("s", a // 36, a, fs, ("MLII", "V5"), d, bool(np.isnan(d).any())))
        f = mon.take_ready()
        if f is not None:
            events += mon.label_beats(f, clf.predict_proba(f.windows, f.rr))
    codes = {e["code"] for e in events if e["type"] == "alarm" and e["state"] == "on"}
    assert "pause" not in codes and "asystole" not in codes, codes
    assert "leads_off" in codes


def _offline_labels(clf, rb) -> np.ndarray:
    """ecg-eval's labels of a record's beats: the classifier's rules, then the post-pause and early-run rules in beat order."""
    from monitor.early_run import EarlyRunRule
    from monitor.pipeline import apply_stream_rules
    from monitor.post_pause import PostPauseRule

    prob = clf.predict_proba(rb.windows, rb.rr, rhythm=rb.rhythm)
    return apply_stream_rules(prob, rb.rr, rb.rhythm, PostPauseRule.for_classifier(clf), EarlyRunRule.for_classifier(clf)).argmax(1)


def _live_matches_offline(record: str, clf, mitdb, cache, min_beats: int):
    """Replay 300 s of ``record`` live with the shipped classifier; check its labels are ecg-eval's; return the beats and offline labels."""
    from trainer import dataset as ds

    events, _ = run(RunnerConfig(sources=[f"replay:{record}"], speed=float("inf"), data_dir=str(mitdb), duration_s=300))
    live = {e["sample"]: e["label"] for e in events if e["type"] == "beat"}
    rb = ds.record_beats(record, mitdb, clf.meta["featurizer"], cache=cache, duration_s=300)
    offline = _offline_labels(clf, rb)
    common = [i for i, s in enumerate(rb.sample.tolist()) if s in live]
    assert len(common) > 0.95 * len(rb) > min_beats
    assert [live[int(rb.sample[i])] for i in common] == [CLASSES[offline[i]] for i in common]
    return rb, offline


def test_live_labels_apply_the_shipped_rules_as_the_evaluation_does(mitdb, tmp_path):
    """Record 219 (atrial fibrillation) live: the same labels as ecg-eval's path, rules included."""
    from monitor.model import Classifier, load_model
    from monitor.resources import asset

    clf = Classifier.from_file(asset("model.pt"))
    assert clf.af_rule is not None and clf.fusion_max_template_rms is not None and clf.prematurity_max_rr_ratio is not None
    rb, offline = _live_matches_offline("219", clf, mitdb, tmp_path, 300)
    # the AF rule acts here: without it (and the prematurity rule) many more of these beats would
    # be called A (those kept come before 32 intervals are known, or where the rhythm does not
    # look like AF)
    bare, meta = load_model(asset("model.pt"))
    plain = Classifier(bare, {k: v for k, v in meta.items() if k not in ("af_rule", "prematurity_max_rr_ratio", "early_beat_rule", "early_beat_to_v", "early_run_beats", "early_run_max_pre_long", "post_pause_rule")})
    a = CLASSES.index("A")
    called_a = plain.predict_proba(rb.windows, rb.rr, rhythm=rb.rhythm).argmax(1) == a
    in_af = (rb.rhythm[:, 0] > clf.af_rule[0]) & (rb.rhythm[:, 1] < clf.af_rule[1])
    assert called_a.sum() > 50 and in_af.mean() > 0.5
    assert not (offline == a)[called_a & in_af].any() and (offline == a).sum() < 0.5 * called_a.sum()
    # and so does the prematurity rule: no beat called A here comes late (by the S rules' own ratio,
    # against the mean normal interval for the shipped file), but those the post-pause rule calls A
    # after it (early by its own, looser threshold, and followed by a pause)
    from monitor.post_pause import PostPauseRule

    late = clf.s_rule_rr(rb.rr, rb.rhythm)[:, list(clf.meta["rr_names"]).index("pre_long")] >= clf.prematurity_max_rr_ratio
    prob = clf.predict_proba(rb.windows, rb.rr, rhythm=rb.rhythm)
    paused = PostPauseRule.for_classifier(clf).apply_to_record(prob.copy(), rb.rr, rb.rhythm).argmax(1) != prob.argmax(1)
    assert (called_a & late).any() and not (offline == a)[late & ~paused].any()


def test_live_labels_apply_the_early_beat_rule_as_the_evaluation_does(mitdb, tmp_path):
    """Record 232 (sinus bradycardia, runs of atrial premature beats) live: the early-beat and early-run rules call early beats S."""
    from monitor.model import Classifier
    from monitor.resources import asset

    clf = Classifier.from_file(asset("model.pt"))
    assert clf.early_beat_rule is not None
    rb, offline = _live_matches_offline("232", clf, mitdb, tmp_path, 200)
    # without the early-run rule, some of these A beats (reference 'A'), inside runs of early beats,
    # would be called N; they come early against the long mean, not the local one
    assert clf.early_run_beats is not None
    rule = clf.early_beat_rule
    g, loc = (list(clf.meta["rr_names"]).index(n) for n in ("pre_long", "pre_local"))
    rr_s = clf.s_rule_rr(rb.rr, rb.rhythm)  # the S rules' ratios (pre_long, or pre_normal in its column)
    clf.post_pause_rule = None  # (it finds some of the same beats: measured on its own in test_post_pause)
    offline = _offline_labels(clf, rb)
    clf.early_run_beats = None
    no_runs = _offline_labels(clf, rb)
    a = CLASSES.index("A")
    moved = (no_runs != a) & (offline == a)
    assert moved.sum() > 20 and (rb.symbol[moved] == "A").mean() > 0.9
    run_limit = clf.early_run_max_pre_long or rule[0]  # the run's own threshold, where the file has one
    assert (rr_s[moved, g] < run_limit).all() and (rr_s[moved, loc] >= rule[1]).any()
    assert (offline[np.flatnonzero(moved) - 1] == a).all()  # each follows a beat called S
    # and without the early-beat rule as well, more would be
    clf.early_beat_rule = None
    without = _offline_labels(clf, rb)
    moved = (without != a) & (no_runs == a)
    assert moved.sum() > 20 and (rb.symbol[moved] == "A").mean() > 0.9
    assert (rr_s[moved, g] < rule[0]).all() and (rr_s[moved, loc] < rule[1]).all()
