"""Tests of trainer.train: a tiny run really learns, resume, configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monitor.labels import CLASSES
from replay.errors import ConfigError
from trainer.augment import time_stretch
from trainer.train import TrainConfig, class_weights, fit, load_config_file


def _toy(n: int, seed: int):
    """Separable toy beats: class 0 a positive bump, class 4 (V) a wide negative one, class 3 (A) early RR."""
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, 64)
    y = rng.choice([0, 3, 4], size=n, p=[0.6, 0.2, 0.2])
    w = np.zeros((n, 2, 64), np.float32)
    rr = np.ones((n, 9), np.float32)
    for i, k in enumerate(y):
        shape = -np.exp(-(t / 0.3) ** 2) if k == 4 else np.exp(-(t / 0.08) ** 2)
        w[i, 0] = shape + 0.1 * rng.standard_normal(64)
        w[i, 1] = np.exp(-(t / 0.08) ** 2)
        if k == 3:
            rr[i, [0, 4, 5]] = 0.6  # premature: pre-RR short against the local and long rhythm
    return w, rr, y.astype(np.int64)


def test_tiny_training_learns(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=32, lr=3e-3, seed=0, progress=False, threads=1, patience=0)
    _model, hist, hp = fit(_toy(600, 0), _toy(200, 1), cfg, tmp_path)
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert hist[-1]["val_accuracy"] > 0.95
    assert hp["n_classes"] == len(CLASSES)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved["epochs"]) == 4
    assert (tmp_path / "checkpoint.pt").exists()


def test_resume_continues_exactly(tmp_path):
    train, val = _toy(200, 0), _toy(60, 1)
    cfg = TrainConfig(epochs=3, batch_size=32, seed=3, progress=False, threads=1, patience=0)
    _, straight, _ = fit(train, val, cfg, tmp_path / "a")
    cfg2 = TrainConfig(epochs=2, batch_size=32, seed=3, progress=False, threads=1, patience=0)
    fit(train, val, cfg2, tmp_path / "b")
    cfg2.epochs = 3
    _, resumed, _ = fit(train, val, cfg2, tmp_path / "b", resume=True)
    assert len(resumed) == 3
    assert resumed[-1]["train_loss"] == pytest.approx(straight[-1]["train_loss"], rel=1e-5)


@pytest.fixture(autouse=True)
def _tmp_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_class_weights():
    w = class_weights(np.array([0] * 90 + [4] * 10), 7)
    assert w[0] == pytest.approx(100 / (2 * 90)) and w[4] == pytest.approx(100 / (2 * 10))
    assert w[1] == 0
    assert class_weights(np.array([0] * 1000 + [1]), 7, max_weight=50)[1] == 50


def test_config_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('epochs = 3\nlr = 0.01\n[featurizer]\nnormalization = "mad"\n')
    d = load_config_file(p)
    assert d["epochs"] == 3 and d["featurizer"]["normalization"] == "mad"
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"batch_size": 16}))
    assert load_config_file(j) == {"batch_size": 16}
    bad = tmp_path / "bad.toml"
    bad.write_text("epocs = 3\n")
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="protocol"):
        TrainConfig(protocol="inter-patient").validate()
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(ConfigError, match="featurizer settings"):
        TrainConfig(featurizer={"normalisation": "mad"}).validate()


def test_ema_and_augmentation_still_learn(tmp_path):
    cfg = TrainConfig(
        epochs=3, batch_size=32, lr=3e-3, seed=0, progress=False, threads=1, patience=0,
        ema_decay=0.9, augment_noise=0.05, augment_shift=3, augment_stretch=0.2,
    )  # fmt: skip
    _, hist, _ = fit(_toy(600, 0), _toy(200, 1), cfg, tmp_path)
    assert hist[-1]["val_accuracy"] > 0.95
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0).validate()
    for bad in (-0.1, 1.0, "x"):
        with pytest.raises(ConfigError, match="augment_stretch"):
            TrainConfig(augment_stretch=bad).validate()


def test_each_augmentation_acts_on_its_own(tmp_path):
    # every augmentation changes training by itself, not only alongside another
    base = dict(epochs=1, batch_size=32, seed=0, progress=False, threads=1, patience=0)
    losses = {}
    for name, extra in (("none", {}), ("shift", {"augment_shift": 3}), ("noise", {"augment_noise": 0.05}), ("stretch", {"augment_stretch": 0.2})):
        _, hist, _ = fit(_toy(300, 0), _toy(100, 1), TrainConfig(**base, **extra), tmp_path / name)
        losses[name] = hist[0]["train_loss"]
    assert len(set(losses.values())) == 4, losses


def test_time_stretch_keeps_the_r_peak_and_scales_widths():
    n, centre = 128, 64.0
    t = torch.arange(n, dtype=torch.float32)
    beat = torch.exp(-0.5 * ((t - centre) / 4.0) ** 2)  # a "QRS" of SD 4 samples at the R peak
    w = torch.stack([beat, beat]).unsqueeze(0).repeat(3, 1, 1)  # beat and template channels
    out = time_stretch(w, torch.tensor([1.0, 1.5, 0.8]), centre)
    assert out.shape == w.shape
    torch.testing.assert_close(out[0], w[0])  # factor 1: unchanged
    assert torch.equal(out[:, 0], out[:, 1])  # template stretched with its beat
    assert (out.argmax(2) == int(centre)).all()  # the R peak stays put
    x = out[:, 0]
    width = ((x * (t - centre) ** 2).sum(1) / x.sum(1)).sqrt()  # RMS width, samples
    torch.testing.assert_close(width / width[0], torch.tensor([1.0, 1.5, 0.8]), atol=0.03, rtol=0)
    with pytest.raises(ValueError, match="> 0"):
        time_stretch(w, torch.tensor([1.0, 0.0, 1.0]), centre)
    with pytest.raises(ValueError, match="factors"):
        time_stretch(w, torch.ones(2), centre)


def test_class_weight_scale_lowers_one_class(tmp_path, caplog):
    # a zero factor takes V out of the loss: the model never learns to call it
    base = dict(epochs=3, batch_size=32, lr=3e-3, seed=0, progress=False, threads=1, patience=0)
    train, val = _toy(600, 0), _toy(200, 1)
    v = CLASSES.index("V")
    called_v = {}
    for name, scale in (("plain", {}), ("no_v", {"V": 0.0})):
        with caplog.at_level("INFO", logger="trainer.train"):
            model, _, _ = fit(train, val, TrainConfig(**base, class_weight_scale=scale), tmp_path / name)
        with torch.no_grad():
            pred = model.eval()(torch.from_numpy(val[0]), torch.from_numpy(val[1])).argmax(1).numpy()
        called_v[name] = (pred[val[2] == v] == v).mean()
    assert called_v["plain"] > 0.9 and called_v["no_v"] < 0.1, called_v
    assert "V 0," in caplog.text  # the weights used are logged
    for bad, match in (({"Z": 1.0}, "unknown class 'Z'"), ({"F": -1}, r"\[0, 100\]"), ({"F": "x"}, "number"), ([1], "map class")):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(class_weight_scale=bad).validate()


def test_logit_offsets_setting():
    assert TrainConfig(logit_offsets={"V": -1.0, "F": 0.5}).validate().logit_offsets == {"V": -1.0, "F": 0.5}
    assert TrainConfig().validate().logit_offsets == {}
    bad_values = (({"Z": 1.0}, "unknown class 'Z'"), ({"V": -11}, "from -10 to 10"), ({"V": True}, "from -10 to 10"),
                  ({"V": "x"}, "from -10 to 10"), ([1], "map class names"))  # fmt: skip
    for bad, match in bad_values:
        with pytest.raises(ConfigError, match=match):
            TrainConfig(logit_offsets=bad).validate()


def test_val_fold_none_setting():
    assert TrainConfig(val_fold="none").validate().val_fold is None  # a config file's spelling
    assert TrainConfig(val_fold=None).validate().val_fold is None
    for bad in (1.5, "two", True):
        with pytest.raises(ConfigError, match="val_fold"):
            TrainConfig(val_fold=bad).validate()


def test_fusion_threshold_is_a_quantile_of_the_training_f_beats():
    from trainer.train import fusion_threshold

    rng = np.random.default_rng(1)
    f = CLASSES.index("F")
    y = np.array([0] * 50 + [f] * 200)
    w = rng.normal(size=(250, 2, 64)).astype(np.float32)
    dist = np.linspace(0.1, 2.0, 200)  # F beat k lies at RMS dist[k] from its template (orthogonal unit noise)
    noise = rng.normal(size=(200, 64))
    noise /= np.sqrt(np.mean(noise**2, axis=1, keepdims=True))
    w[50:, 1] = w[50:, 0] - dist[:, None] * noise
    out = fusion_threshold(w, y, 0.01)
    assert out["f_beats"] == 200 and out["quantile"] == 0.01
    assert out["max_template_rms"] == pytest.approx(np.quantile(dist, 0.01), rel=1e-4)
    with pytest.raises(ConfigError, match="no"):
        fusion_threshold(w[:50], y[:50], 0.01)
    with pytest.raises(ConfigError, match="template channel"):
        fusion_threshold(w[:, :1], y, 0.01)
    for bad in (-0.1, 0.5, "x", True):
        with pytest.raises(ConfigError, match="fusion_quantile"):
            TrainConfig(fusion_quantile=bad).validate()
    with pytest.raises(ConfigError, match="template channel"):
        TrainConfig(fusion_quantile=0.01, featurizer={"template_beats": 0}).validate()


@pytest.mark.parametrize("aami, cls, other, quantile", [("S", "A", "V", 0.05), ("V", "V", "A", 0.07)])
def test_prematurity_threshold_is_a_high_quantile_of_the_training_beats_of_its_class(aami, cls, other, quantile):
    from monitor.beats import BeatFeaturizer
    from trainer.train import prematurity_threshold

    names = BeatFeaturizer(360.0).rr_names
    col = names.index("pre_long")
    k, o = CLASSES.index(cls), CLASSES.index(other)
    y = np.array([0] * 100 + [k] * 200 + [o] * 50)
    rr = np.ones((350, len(names)), np.float32)
    ratio = np.linspace(0.5, 1.2, 200)
    rr[100:300, col] = ratio
    rr[:100, col] = 2.0  # N beats and those of the other class do not count
    rr[300:, col] = 0.1
    out = prematurity_threshold(rr, y, names, quantile, aami=aami)
    other_key = "v_beats" if aami == "S" else "s_beats"
    assert out[f"{aami.lower()}_beats"] == 200 and out["quantile"] == quantile and other_key not in out
    assert out["max_rr_ratio"] == pytest.approx(np.quantile(ratio, 1 - quantile), rel=1e-5)
    rule = "the prematurity rule" if aami == "S" else "the V prematurity rule"
    with pytest.raises(ConfigError, match=f"{rule} needs {aami} beats"):
        prematurity_threshold(rr[:100], y[:100], names, quantile, aami=aami)
    with pytest.raises(ConfigError, match=f"{rule} needs the pre_long"):
        prematurity_threshold(rr, y, [n.replace("pre_long", "x") for n in names], quantile, aami=aami)
    with pytest.raises(ValueError, match="aami must be 'S' or 'V'"):
        prematurity_threshold(rr, y, names, quantile, aami="F")
    name = "prematurity_quantile" if aami == "S" else "v_prematurity_quantile"
    for bad in (-0.1, 0.5, "x", True):
        with pytest.raises(ConfigError, match=name):
            TrainConfig(**{name: bad}).validate()
    assert TrainConfig(**{name: quantile}).adds_rules


def test_early_beat_thresholds_are_low_quantiles_of_the_training_n_beats_outside_af():
    from monitor.beats import BeatFeaturizer
    from trainer.train import early_beat_thresholds

    names = BeatFeaturizer(360.0).rr_names
    g, loc = names.index("pre_long"), names.index("pre_local")
    a, lbbb = CLASSES.index("A"), CLASSES.index("L")
    y = np.array([0] * 150 + [lbbb] * 50 + [a] * 50 + [0] * 40)
    rr = np.ones((290, len(names)), np.float32)
    rr[:200, g] = np.linspace(0.7, 1.3, 200)
    rr[:200, loc] = np.linspace(0.8, 1.2, 200)[::-1]
    rr[200:, [g, loc]] = 0.3  # S beats, and N beats in AF (below), do not count
    rhythm = np.zeros((290, 2), np.float32)
    rhythm[:, 1] = 0.9
    rhythm[250:] = [0.3, 0.2]
    af = {"min_irregular": 0.1, "max_regular": 0.5}
    out = early_beat_thresholds(rr, y, rhythm, names, af, 0.01)
    assert out["n_beats"] == 200 and out["quantile"] == 0.01
    assert out["max_pre_long"] == pytest.approx(np.quantile(rr[:200, g], 0.01), rel=1e-5)
    assert out["max_pre_local"] == pytest.approx(np.quantile(rr[:200, loc], 0.01), rel=1e-5)
    assert out["n_below_both"] == 0  # the two ratios run in opposite directions here
    with pytest.raises(ConfigError, match="N beats outside AF-like rhythm"):
        early_beat_thresholds(rr[250:], y[250:], rhythm[250:], names, af, 0.01)
    with pytest.raises(ConfigError, match="pre_local"):
        early_beat_thresholds(rr, y, rhythm, [n.replace("pre_local", "x") for n in names], af, 0.01)
    for bad in (-0.1, 0.5, "x", True):
        with pytest.raises(ConfigError, match="early_beat_quantile"):
            TrainConfig(early_beat_quantile=bad, af_rule=af).validate()
    with pytest.raises(ConfigError, match="early_beat_quantile needs an af_rule"):
        TrainConfig(early_beat_quantile=0.005).validate()
    assert TrainConfig(early_beat_quantile=0.005, af_rule=af).validate().early_beat_quantile == 0.005
    for bad in (-1, 1001, 2.5, True, "10"):
        with pytest.raises(ConfigError, match="early_run_beats must be an integer from 0 to 1000"):
            TrainConfig(early_run_beats=bad).validate()
    assert TrainConfig(early_run_beats=10).validate().early_run_beats == 10
    for bad in (-0.01, 0.5, True, "0.01"):
        with pytest.raises(ConfigError, match="early_run_quantile must be a number in"):
            TrainConfig(early_run_beats=10, early_run_quantile=bad).validate()
    with pytest.raises(ConfigError, match="early_run_quantile needs early_run_beats"):
        TrainConfig(early_run_quantile=0.01).validate()
    assert TrainConfig(early_run_beats=10, early_run_quantile=0.01).validate().early_run_quantile == 0.01


def test_af_rule_setting_is_validated():
    assert TrainConfig(af_rule={"min_irregular": 0.1, "max_regular": 0.5}).validate().af_rule["max_regular"] == 0.5
    for bad in ({"min_irregular": 0.1}, {"min_irregular": 0.1, "max_regular": 1.5}, "on"):
        with pytest.raises(ConfigError, match="af_rule"):
            TrainConfig(af_rule=bad).validate()
