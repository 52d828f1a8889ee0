"""Tests of monitor.model: architecture, weights files, Classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monitor.labels import (
    AAMI_CLASSES,
    CLASS_TO_AAMI,
    CLASSES,
    SYMBOL_TO_CLASS,
    labels_to_aami,
    symbol_to_label,
)
from monitor.model import (
    ARCHITECTURE,
    Classifier,
    build_model,
    default_hparams,
    load_model,
    save_weights,
)
from monitor.resources import asset
from replay.errors import ConfigError


def _meta(n_window=128, in_channels=2):
    from monitor.beats import BeatFeaturizer

    fz = BeatFeaturizer(360.0)
    return {
        "architecture": ARCHITECTURE,
        "hparams": default_hparams(in_channels, n_window, len(fz.rr_names), len(CLASSES)),
        "classes": list(CLASSES),
        "featurizer": fz.settings(),
        "rr_names": list(fz.rr_names),
    }


def test_labels_cover_aami():
    assert set(CLASS_TO_AAMI.values()) == set(AAMI_CLASSES)
    for s in "NLRej":
        assert CLASS_TO_AAMI[SYMBOL_TO_CLASS[s]] == "N"
    for s in "AaJS":
        assert SYMBOL_TO_CLASS[s] == "A"
    assert SYMBOL_TO_CLASS["E"] == "V" and SYMBOL_TO_CLASS["f"] == "Q"
    lab = symbol_to_label(["N", "", "?", "V"])
    assert lab.tolist() == [0, -1, -2, CLASSES.index("V")]
    assert labels_to_aami(lab).tolist() == [0, -1, -2, AAMI_CLASSES.index("V")]


def test_forward_shapes_and_size():
    meta = _meta()
    m = build_model(meta).eval()
    out = m(torch.zeros(4, 2, 128), torch.ones(4, 10))
    assert out.shape == (4, len(CLASSES))
    n_bytes = sum(p.numel() * 4 for p in m.parameters())
    assert n_bytes < 5e6


def test_save_load_roundtrip(tmp_path):
    meta = _meta()
    torch.manual_seed(0)
    m = build_model(meta).eval()
    path = save_weights(tmp_path / "m.pt", m, meta)
    assert path.stat().st_size < 5e6
    blob = torch.load(path, weights_only=True)  # plain tensors and strings only
    assert blob["format"] == "ecg-monitor-classifier"
    m2, meta2 = load_model(path)
    assert meta2["classes"] == list(CLASSES)
    x, r = torch.randn(3, 2, 128), torch.rand(3, 10) + 0.5
    with torch.no_grad():
        torch.testing.assert_close(m(x, r), m2(x, r))
    clf = Classifier(m2, meta2, threads=1)
    p = clf.predict_proba(x.numpy(), r.numpy())
    assert p.shape == (3, len(CLASSES))
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert len(clf.predict(x.numpy(), r.numpy())) == 3
    fz = clf.make_featurizer(250.0)
    assert fz.n_window == 128
    with pytest.raises(ConfigError, match="windows must have shape"):
        clf.predict_proba(np.zeros((2, 1, 128)), np.zeros((2, 9)))
    with pytest.raises(ConfigError, match="rr must have shape"):
        clf.predict_proba(np.zeros((2, 2, 128)), np.zeros((2, 4)))


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such model weights file"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file" * 10)
    with pytest.raises(ConfigError, match="junk.pt: not a readable model weights file"):
        load_model(junk)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(ConfigError, match="other.pt: not an ecg-monitor classifier"):
        load_model(other)
    # same tag, other architecture size: shapes do not fit
    meta = _meta()
    m = build_model(meta)
    path = save_weights(tmp_path / "m.pt", m, meta)
    blob = torch.load(path, weights_only=True)
    import json

    meta_bad = json.loads(blob["meta_json"])
    meta_bad["hparams"]["lstm_hidden"] = 8
    blob["meta_json"] = json.dumps(meta_bad)
    torch.save(blob, tmp_path / "mismatch.pt")
    with pytest.raises(ConfigError, match="mismatch.pt: tensor .* has shape"):
        load_model(tmp_path / "mismatch.pt")
    meta_bad["architecture"] = "transformer"
    blob["meta_json"] = json.dumps(meta_bad)
    torch.save(blob, tmp_path / "arch.pt")
    with pytest.raises(ConfigError, match="unknown architecture 'transformer'"):
        load_model(tmp_path / "arch.pt")
    with pytest.raises(ConfigError, match="lacks 'classes'"):
        save_weights(tmp_path / "x.pt", m, {k: v for k, v in meta.items() if k != "classes"})


def test_logit_bias_shifts_probabilities_and_bad_bias_is_rejected(tmp_path):
    import json

    meta = _meta()
    torch.manual_seed(0)
    m = build_model(meta).eval()
    x, r = torch.randn(4, 2, 128), torch.rand(4, 10) + 0.5
    plain = Classifier(*load_model(save_weights(tmp_path / "plain.pt", m, meta)))
    assert not plain.logit_bias.any()  # files without offsets: none applied
    bias = [0.0, 0.0, 0.0, 1.0, 0.0, -20.0, 0.0]  # favour A, never F
    clf = Classifier(*load_model(save_weights(tmp_path / "b.pt", m, {**meta, "logit_bias": bias})))
    p0, p1 = plain.predict_proba(x.numpy(), r.numpy()), clf.predict_proba(x.numpy(), r.numpy())
    # adding offsets to the logits = multiplying the probabilities by exp(offset), renormalised
    expect = p0 * np.exp(bias)
    np.testing.assert_allclose(p1, expect / expect.sum(1, keepdims=True), rtol=1e-4, atol=1e-7)
    assert (p1[:, CLASSES.index("F")] < 1e-6).all()
    blob = torch.load(tmp_path / "b.pt", weights_only=True)
    for bad in ([0.0] * 3, [0.0, 0.0, 0.0, float("nan"), 0.0, 0.0, 0.0], "high", {"F": -1}):
        blob["meta_json"] = json.dumps({**meta, "logit_bias": bad})
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match="bad.pt: metadata 'logit_bias' must be a list of 7 finite numbers"):
            load_model(tmp_path / "bad.pt")


def test_shipped_model():
    path = asset("model.pt")
    if not path.exists():
        pytest.skip("no shipped model yet")
    assert path.stat().st_size < 5e6
    clf = Classifier.from_file(path)
    fz = clf.make_featurizer(360.0)
    assert clf.classes == CLASSES
    assert fz.rr_names == tuple(clf.meta["rr_names"])


def test_ensemble_averages_member_probabilities_and_round_trips(tmp_path):
    from monitor.model import Ensemble, select_member

    meta = _meta()
    torch.manual_seed(0)
    members = [build_model(meta).eval() for _ in range(3)]
    ens = Ensemble(members).eval()
    x, r = torch.randn(5, 2, 128), torch.rand(5, 10) + 0.5
    with torch.no_grad():
        mean_p = torch.stack([torch.softmax(m(x, r), 1) for m in members]).mean(0)
        torch.testing.assert_close(torch.softmax(ens(x, r), 1), mean_p)
    path = save_weights(tmp_path / "ens.pt", ens, {**meta, "members": 3})
    model, meta2 = load_model(path)
    assert isinstance(model, Ensemble) and len(model.members) == 3 and meta2["members"] == 3
    clf = Classifier(model, meta2)
    assert clf.members == 3
    np.testing.assert_allclose(clf.predict_proba(x.numpy(), r.numpy()), mean_p.numpy(), rtol=1e-5, atol=1e-6)
    # one member alone gives that member's own probabilities
    one, meta1 = select_member(model, meta2, 1)
    assert "members" not in meta1 and meta1["classes"] == meta2["classes"]
    with torch.no_grad():
        np.testing.assert_allclose(
            Classifier(one, meta1).predict_proba(x.numpy(), r.numpy()), torch.softmax(members[1](x, r), 1).numpy(), rtol=1e-5, atol=1e-6
        )
    single, _ = select_member(members[0], meta, 0)  # a single model is its own member 0
    assert single is members[0]
    with pytest.raises(ConfigError, match="member 3 does not exist: this model has 3"):
        select_member(model, meta2, 3)
    # a count that does not match the model is refused when saving
    with pytest.raises(ConfigError, match="metadata says 2 member"):
        save_weights(tmp_path / "x.pt", ens, {**meta, "members": 2})


def test_bad_member_counts_are_rejected(tmp_path):
    import json

    from monitor.model import Ensemble

    meta = _meta()
    ens = Ensemble([build_model(meta) for _ in range(2)])
    path = save_weights(tmp_path / "ens.pt", ens, {**meta, "members": 2})
    blob = torch.load(path, weights_only=True)
    for bad in (0, 17, "two", 2.5, True):
        blob["meta_json"] = json.dumps({**meta, "members": bad})
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match="bad.pt: metadata 'members' must be an integer from 1 to 16"):
            load_model(tmp_path / "bad.pt")
    # the tensors of 2 members under a count of 3: named, not a traceback
    blob["meta_json"] = json.dumps({**meta, "members": 3})
    torch.save(blob, tmp_path / "short.pt")
    with pytest.raises(ConfigError, match="short.pt: tensors do not match .*missing: members.2"):
        load_model(tmp_path / "short.pt")
    # ensemble tensors in a file that claims one model
    blob["meta_json"] = json.dumps(meta)
    torch.save(blob, tmp_path / "one.pt")
    with pytest.raises(ConfigError, match="one.pt: tensors do not match"):
        load_model(tmp_path / "one.pt")


N_GROUP = [i for i, c in enumerate(CLASSES) if CLASS_TO_AAMI[c] == "N"]


def _six_beats(seed: int, rng_seed: int):
    """An untrained model, its metadata and 6 random beats (windows, RR features)."""
    meta = _meta()
    torch.manual_seed(seed)
    m = build_model(meta).eval()
    rng = np.random.default_rng(rng_seed)
    w = rng.normal(size=(6, 2, 128)).astype(np.float32)
    return meta, m, rng, w


def _favouring(cls: str) -> list[float]:
    """Logit offsets that make ``cls`` the most probable class of every beat."""
    bias = [0.0] * len(CLASSES)
    bias[CLASSES.index(cls)] = 8.0
    return bias


def test_fusion_rule_moves_f_to_the_n_group_only_for_template_matches(tmp_path):
    import json

    meta, m, rng, w = _six_beats(0, 0)
    w[:3, 1] = w[:3, 0] + rng.normal(scale=0.05, size=(3, 128))  # beats 0-2 match their template (RMS ~0.05)
    r = (rng.random((6, 10)) + 0.5).astype(np.float32)
    f, n_group = CLASSES.index("F"), N_GROUP
    bias = _favouring("F")
    plain = Classifier(*load_model(save_weights(tmp_path / "p.pt", m, {**meta, "logit_bias": bias})))
    assert plain.fusion_max_template_rms is None
    ruled = Classifier(*load_model(save_weights(tmp_path / "f.pt", m, {**meta, "logit_bias": bias, "fusion_max_template_rms": 0.2})))
    assert ruled.fusion_max_template_rms == 0.2
    p0, p1 = plain.predict_proba(w, r), ruled.predict_proba(w, r)
    assert (p0.argmax(1) == f).all()
    np.testing.assert_array_equal(p1[3:], p0[3:])  # beats unlike their template: untouched
    for i in range(3):
        g = n_group[int(np.argmax(p0[i, n_group]))]
        assert p1[i, f] == 0.0 and p1[i, g] == pytest.approx(p0[i, g] + p0[i, f], rel=1e-6)
        assert p1[i].argmax() == g and CLASS_TO_AAMI[CLASSES[g]] == "N"
        others = [k for k in range(len(CLASSES)) if k not in (f, g)]
        np.testing.assert_array_equal(p1[i, others], p0[i, others])
    np.testing.assert_allclose(p1.sum(1), 1.0, rtol=1e-5)
    # bad values and a model without a template channel are rejected when loading
    blob = torch.load(tmp_path / "f.pt", weights_only=True)
    for bad, match in ((-1.0, "positive number"), ("0.3", "positive number"), (float("inf"), "positive number")):
        blob["meta_json"] = json.dumps({**meta, "fusion_max_template_rms": bad})
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match=f"bad.pt: metadata 'fusion_max_template_rms' must be a {match}"):
            load_model(tmp_path / "bad.pt")
    one = _meta(in_channels=1)
    path = save_weights(tmp_path / "one.pt", build_model(one), {**one, "fusion_max_template_rms": 0.3})
    with pytest.raises(ConfigError, match="needs a template channel"):
        load_model(path)


def test_af_rule_moves_s_to_the_n_group_only_in_af_and_only_when_s_wins(tmp_path):
    import json

    meta, m, rng, w = _six_beats(1, 2)
    r = (rng.random((6, 10)) + 0.5).astype(np.float32)
    a, n_group = CLASSES.index("A"), N_GROUP
    bias = _favouring("A")
    rhythm = np.array([[0.3, 0.2], [0.3, 0.2], [0.05, 0.2], [0.3, 0.8], [0.3, 0.2], [0.02, 0.9]], np.float32)
    rule = {"min_irregular": 0.1, "max_regular": 0.5}
    plain = Classifier(*load_model(save_weights(tmp_path / "p.pt", m, {**meta, "logit_bias": bias})))
    ruled = Classifier(*load_model(save_weights(tmp_path / "a.pt", m, {**meta, "logit_bias": bias, "af_rule": rule})))
    assert plain.af_rule is None and ruled.af_rule == (0.1, 0.5)
    p0 = plain.predict_proba(w, r, rhythm=rhythm)
    p1 = ruled.predict_proba(w, r, rhythm=rhythm)
    assert (p0.argmax(1) == a).all()
    af = [0, 1, 4]  # irregular and few intervals near the median: AF
    for i in range(6):
        if i in af:
            g = n_group[int(np.argmax(p0[i, n_group]))]
            assert p1[i, a] == 0.0 and p1[i, g] == pytest.approx(p0[i, g] + p0[i, a], rel=1e-6) and p1[i].argmax() == g
        else:
            np.testing.assert_array_equal(p1[i], p0[i])  # regular, or a repeating pattern: S kept
    np.testing.assert_array_equal(ruled.predict_proba(w, r), p0)  # no rhythm given: no rule
    # a beat in AF whose most probable class is not S is left alone
    bias_v = _favouring("V")
    v_ruled = Classifier(*load_model(save_weights(tmp_path / "v.pt", m, {**meta, "logit_bias": bias_v, "af_rule": rule})))
    v_plain = Classifier(*load_model(save_weights(tmp_path / "vp.pt", m, {**meta, "logit_bias": bias_v})))
    np.testing.assert_array_equal(v_ruled.predict_proba(w, r, rhythm=rhythm), v_plain.predict_proba(w, r, rhythm=rhythm))
    with pytest.raises(ConfigError, match="rhythm must have shape"):
        ruled.predict_proba(w, r, rhythm=rhythm[:3])
    blob = torch.load(tmp_path / "a.pt", weights_only=True)
    for bad in ({"min_irregular": 0.1}, {"min_irregular": -1, "max_regular": 0.5}, {"min_irregular": 0.1, "max_regular": 2}, [0.1, 0.5]):
        blob["meta_json"] = json.dumps({**meta, "af_rule": bad})
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match="bad.pt: metadata 'af_rule' must be"):
            load_model(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    "key, cls, other, threshold, ratios, seeds",
    [
        ("prematurity_max_rr_ratio", "A", "V", 0.9, [0.6, 0.85, 0.9, 0.95, 1.2, 0.7], (2, 3)),
        ("v_prematurity_max_rr_ratio", "V", "A", 0.98, [0.6, 0.97, 0.98, 1.0, 1.3, 0.7], (4, 5)),
    ],
)
def test_prematurity_rules_move_their_class_to_the_n_group_for_beats_that_do_not_come_early(
    tmp_path, key, cls, other, threshold, ratios, seeds
):
    """The prematurity rule (S) and the V prematurity rule: a beat called ``cls`` at or above the threshold goes to N."""
    import json

    meta, m, rng, w = _six_beats(*seeds)
    r = (rng.random((6, 10)) + 0.5).astype(np.float32)
    col = meta["rr_names"].index("pre_long")
    r[:, col] = ratios  # pre-RR over the long mean RR
    k = CLASSES.index(cls)
    bias = _favouring(cls)
    plain = Classifier(*load_model(save_weights(tmp_path / "p.pt", m, {**meta, "logit_bias": bias})))
    ruled = Classifier(*load_model(save_weights(tmp_path / "s.pt", m, {**meta, "logit_bias": bias, key: threshold})))
    assert getattr(plain, key) is None and getattr(ruled, key) == threshold
    p0, p1 = plain.predict_proba(w, r), ruled.predict_proba(w, r)
    assert (p0.argmax(1) == k).all()
    for i in range(6):
        if r[i, col] >= threshold:  # not premature: the class goes to the most probable N-group class
            g = N_GROUP[int(np.argmax(p0[i, N_GROUP]))]
            assert p1[i, k] == 0.0 and p1[i, g] == pytest.approx(p0[i, g] + p0[i, k], rel=1e-6) and p1[i].argmax() == g
        else:
            np.testing.assert_array_equal(p1[i], p0[i])
    assert [CLASSES[j] for j in p1.argmax(1)].count(cls) == 3
    # a late beat whose most probable class is another is left alone
    bias_o = _favouring(other)
    o_ruled = Classifier(*load_model(save_weights(tmp_path / "o.pt", m, {**meta, "logit_bias": bias_o, key: threshold})))
    o_plain = Classifier(*load_model(save_weights(tmp_path / "op.pt", m, {**meta, "logit_bias": bias_o})))
    np.testing.assert_array_equal(o_ruled.predict_proba(w, r), o_plain.predict_proba(w, r))
    # bad values, and a model without the pre_long feature, are rejected when loading
    blob = torch.load(tmp_path / "s.pt", weights_only=True)
    for bad in (0, -0.5, "0.9", float("nan"), float("inf"), True):
        blob["meta_json"] = json.dumps({**meta, key: bad})
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match=f"bad.pt: metadata '{key}' must be a positive number"):
            load_model(tmp_path / "bad.pt")
    names = [n if n != "pre_long" else "pre_other" for n in meta["rr_names"]]
    blob["meta_json"] = json.dumps({**meta, "rr_names": names, key: threshold})
    torch.save(blob, tmp_path / "nolong.pt")
    with pytest.raises(ConfigError, match="nolong.pt: .*needs the pre_long RR feature"):
        load_model(tmp_path / "nolong.pt")


def test_early_beat_rule_calls_early_beats_s_outside_af_when_n_wins(tmp_path):
    import json

    meta, m, rng, w = _six_beats(3, 4)
    r = (rng.random((6, 10)) + 0.5).astype(np.float32)
    g_col, l_col = meta["rr_names"].index("pre_long"), meta["rr_names"].index("pre_local")
    r[:, g_col] = [0.6, 0.7, 0.9, 0.6, 0.7, 0.5]  # pre-RR over the long mean RR
    r[:, l_col] = [0.7, 0.95, 0.7, 0.6, 0.8, 0.6]  # and over the local mean RR
    rhythm = np.array([[0.02, 0.9], [0.02, 0.9], [0.02, 0.9], [0.3, 0.2], [0.05, 0.8], [0.3, 0.8]], np.float32)
    af = {"min_irregular": 0.1, "max_regular": 0.5}
    rule = {"max_pre_long": 0.8, "max_pre_local": 0.85}
    a, n_group = CLASSES.index("A"), N_GROUP
    bias = _favouring("N")
    plain = Classifier(*load_model(save_weights(tmp_path / "p.pt", m, {**meta, "logit_bias": bias, "af_rule": af})))
    ruled = Classifier(*load_model(save_weights(tmp_path / "e.pt", m, {**meta, "logit_bias": bias, "af_rule": af, "early_beat_rule": rule})))
    assert plain.early_beat_rule is None and ruled.early_beat_rule == (0.8, 0.85)
    p0, p1 = plain.predict_proba(w, r, rhythm=rhythm), ruled.predict_proba(w, r, rhythm=rhythm)
    assert (p0.argmax(1) == CLASSES.index("N")).all()
    early = [0, 4, 5]  # below both ratios and not AF-like (3 is AF-like; 1 and 2 miss one ratio)
    for i in range(6):
        if i in early:  # the AAMI-N probability goes to A, which then wins
            assert p1[i, n_group].sum() == 0.0 and p1[i, a] == pytest.approx(p0[i, a] + p0[i, n_group].sum(), rel=1e-6)
            assert p1[i].argmax() == a and p1[i].sum() == pytest.approx(1.0, rel=1e-6)
        else:
            np.testing.assert_array_equal(p1[i], p0[i])
    np.testing.assert_array_equal(ruled.predict_proba(w, r), plain.predict_proba(w, r))  # no rhythm given: no rule
    # switching the AF rule off keeps the file's AF thresholds for this rule
    ruled.af_rule = None
    np.testing.assert_array_equal(ruled.predict_proba(w, r, rhythm=rhythm).argmax(1), p1.argmax(1))
    # an early beat whose most probable class is V keeps it
    bias_v = _favouring("V")
    v_ruled = Classifier(*load_model(save_weights(tmp_path / "v.pt", m, {**meta, "logit_bias": bias_v, "af_rule": af, "early_beat_rule": rule})))
    assert (v_ruled.predict_proba(w, r, rhythm=rhythm).argmax(1) == CLASSES.index("V")).all()
    # bad entries, and a file without the AF rule or the two features, are rejected when loading
    blob = torch.load(tmp_path / "e.pt", weights_only=True)
    for bad in ({"max_pre_long": 0.8}, {"max_pre_long": 0, "max_pre_local": 0.85}, {"max_pre_long": "0.8", "max_pre_local": 0.85}, [0.8, 0.85]):
        blob["meta_json"] = json.dumps({**meta, "af_rule": af, "early_beat_rule": bad})
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match="bad.pt: metadata 'early_beat_rule' must be"):
            load_model(tmp_path / "bad.pt")
    blob["meta_json"] = json.dumps({**meta, "early_beat_rule": rule})
    torch.save(blob, tmp_path / "noaf.pt")
    with pytest.raises(ConfigError, match="noaf.pt: .*needs 'af_rule'"):
        load_model(tmp_path / "noaf.pt")
    names = [n if n != "pre_local" else "pre_other" for n in meta["rr_names"]]
    blob["meta_json"] = json.dumps({**meta, "rr_names": names, "af_rule": af, "early_beat_rule": rule})
    torch.save(blob, tmp_path / "nolocal.pt")
    with pytest.raises(ConfigError, match="nolocal.pt: .*needs the pre_long and pre_local RR features"):
        load_model(tmp_path / "nolocal.pt")


@pytest.mark.parametrize("second", ["A", "V"])
def test_early_beat_to_v_gives_an_early_beat_the_more_probable_of_s_and_v(tmp_path, second):
    import json

    meta, m, rng, w = _six_beats(3, 4)
    r = (rng.random((6, 10)) + 0.5).astype(np.float32)
    r[:, meta["rr_names"].index("pre_long")] = [0.6, 0.7, 0.9, 0.6, 0.7, 0.5]
    r[:, meta["rr_names"].index("pre_local")] = [0.7, 0.95, 0.7, 0.6, 0.8, 0.6]
    rhythm = np.array([[0.02, 0.9], [0.02, 0.9], [0.02, 0.9], [0.3, 0.2], [0.05, 0.8], [0.3, 0.8]], np.float32)
    af, rule = {"min_irregular": 0.1, "max_regular": 0.5}, {"max_pre_long": 0.8, "max_pre_local": 0.85}
    bias = _favouring("N")
    bias[CLASSES.index(second)] = 4.0  # N first, then `second` well ahead of the other classes
    base = {**meta, "logit_bias": bias, "af_rule": af, "early_beat_rule": rule}
    s_only = Classifier(*load_model(save_weights(tmp_path / "s.pt", m, base)))
    to_v = Classifier(*load_model(save_weights(tmp_path / "v.pt", m, {**base, "early_beat_to_v": True})))
    assert not s_only.early_beat_to_v and to_v.early_beat_to_v
    p_s, p_v = s_only.predict_proba(w, r, rhythm=rhythm), to_v.predict_proba(w, r, rhythm=rhythm)
    early, a, v = [0, 4, 5], CLASSES.index("A"), CLASSES.index("V")
    np.testing.assert_array_equal(p_s.argmax(1)[early], a)  # without the flag: S, whatever the network's V
    np.testing.assert_array_equal(p_v.argmax(1)[early], CLASSES.index(second))  # with it: the more probable of S and V
    np.testing.assert_array_equal(p_v[[1, 2, 3]], p_s[[1, 2, 3]])  # beats that are not early are left alone
    assert p_v[early, :].sum(1) == pytest.approx(1.0, rel=1e-6) and (p_v[np.ix_(early, N_GROUP)] == 0).all()
    to_v.early_beat_to_v = False  # ecg-eval --no-early-beat-to-v
    np.testing.assert_array_equal(to_v.predict_proba(w, r, rhythm=rhythm), p_s)
    # bad entries, or the flag without the early-beat rule, are rejected when loading
    blob = torch.load(tmp_path / "v.pt", weights_only=True)
    for bad, match in [(1, "must be true or false"), ("yes", "must be true or false")]:
        blob["meta_json"] = json.dumps({**base, "early_beat_to_v": bad})
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match=f"bad.pt: metadata 'early_beat_to_v' {match}"):
            load_model(tmp_path / "bad.pt")
    blob["meta_json"] = json.dumps({**meta, "af_rule": af, "early_beat_to_v": True})
    torch.save(blob, tmp_path / "norule.pt")
    with pytest.raises(ConfigError, match="norule.pt: .*'early_beat_to_v' needs 'early_beat_rule'"):
        load_model(tmp_path / "norule.pt")


def test_af_rule_with_max_p_wave_keeps_s_where_the_template_shows_p_waves(tmp_path):
    import json

    meta, m, rng, w = _six_beats(1, 2)
    r = (rng.random((6, 10)) + 0.5).astype(np.float32)
    a = CLASSES.index("A")
    bias = _favouring("A")
    # all six irregularly irregular; the third column is the template's P-wave measure
    rhythm = np.array([[0.3, 0.2, 0.02], [0.3, 0.2, 0.15], [0.3, 0.2, 0.08], [0.3, 0.2, 0.081], [0.3, 0.2, np.nan], [0.3, 0.2, 0.0]], np.float32)
    rule = {"min_irregular": 0.1, "max_regular": 0.5, "max_p_wave": 0.08}
    gated = Classifier(*load_model(save_weights(tmp_path / "g.pt", m, {**meta, "logit_bias": bias, "af_rule": rule})))
    plain = Classifier(*load_model(save_weights(tmp_path / "a.pt", m, {**meta, "logit_bias": bias, "af_rule": {"min_irregular": 0.1, "max_regular": 0.5}})))
    assert gated.af_rule == pytest.approx((0.1, 0.5, 0.08))
    assert plain.predict_proba(w, r, rhythm=rhythm).argmax(1).tolist() != [a] * 6  # AF everywhere: no S
    called = gated.predict_proba(w, r, rhythm=rhythm).argmax(1)
    # P waves above 0.08 (or no measure): not AF, so the S label stays; at or below it: AF, S moved to N
    assert (called == a).tolist() == [False, True, False, True, True, False]
    with pytest.raises(ConfigError, match=r"rhythm must have shape \(6, 3\)"):
        gated.predict_proba(w, r, rhythm=rhythm[:, :2])
    blob = torch.load(tmp_path / "g.pt", weights_only=True)
    for bad in ({**rule, "max_p_wave": 0}, {**rule, "max_p_wave": "x"}, {**rule, "extra": 1}):
        blob["meta_json"] = json.dumps({**meta, "af_rule": bad})
        torch.save(blob, tmp_path / "bad.pt")
        with pytest.raises(ConfigError, match="metadata 'af_rule' must be"):
            load_model(tmp_path / "bad.pt")
    for fz in ({**meta["featurizer"], "template_beats": 0}, {**meta["featurizer"], "pre_s": 0.25}):
        with pytest.raises(ConfigError, match="max_p_wave, which needs the template channel"):
            from monitor.model import af_rule

            af_rule({**meta, "featurizer": fz, "af_rule": rule})


def test_the_normal_prematurity_reference_makes_the_s_rules_read_pre_normal(tmp_path):
    import json

    from monitor.model import prematurity_reference, s_rule_rr

    meta, m, rng, w = _six_beats(3, 4)
    names = meta["rr_names"]
    long_i, local_i = names.index("pre_long"), names.index("pre_local")
    r = (rng.random((6, len(names))) + 0.5).astype(np.float32)
    r[:, long_i] = 0.95  # on time against the long mean ...
    r[:, local_i] = 0.7
    rhythm = np.array([[0.02, 0.9, 0.1, p] for p in (0.6, 0.6, 0.95, 0.95, 0.6, 1.0)], np.float32)  # ... but not all against normal intervals
    af = {"min_irregular": 0.1, "max_regular": 0.5}
    base = {**meta, "af_rule": af, "early_beat_rule": {"max_pre_long": 0.8, "max_pre_local": 0.85}, "prematurity_max_rr_ratio": 0.9}
    n_bias, a_bias = _favouring("N"), _favouring("A")
    a = CLASSES.index("A")
    for ref, early in (("long", []), ("normal", [0, 1, 4])):
        extra = {} if ref == "long" else {"prematurity_reference": ref}
        n_clf = Classifier(*load_model(save_weights(tmp_path / f"n-{ref}.pt", m, {**base, **extra, "logit_bias": n_bias})))
        a_clf = Classifier(*load_model(save_weights(tmp_path / f"a-{ref}.pt", m, {**base, **extra, "logit_bias": a_bias})))
        assert n_clf.prematurity_reference == ref
        # early-beat rule: N -> A for the early beats; prematurity rule: A -> N for the others
        assert np.flatnonzero(n_clf.predict_proba(w, r, rhythm=rhythm).argmax(1) == a).tolist() == early
        assert np.flatnonzero(a_clf.predict_proba(w, r, rhythm=rhythm).argmax(1) == a).tolist() == early
    # without rhythm the normal reference is unknown, so neither S rule acts (the network's A stays)
    assert (a_clf.predict_proba(w, r).argmax(1) == a).all()
    rs = s_rule_rr(r, rhythm, long_i)
    np.testing.assert_array_equal(rs[:, long_i], rhythm[:, 3])
    assert (r[:, long_i] == 0.95).all()  # a copy
    with pytest.raises(ConfigError, match="pre_normal"):
        s_rule_rr(r, rhythm[:, :3], long_i)
    assert prematurity_reference(meta) == "long"
    blob = torch.load(tmp_path / "a-normal.pt", weights_only=True)
    blob["meta_json"] = json.dumps({**base, "prematurity_reference": "mean"})
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="bad.pt: metadata 'prematurity_reference' must be one of long, normal"):
        load_model(tmp_path / "bad.pt")
