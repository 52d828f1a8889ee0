"""End to end: ecg-train on short record stretches, then ecg-eval writes every artefact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monitor.labels import CLASSES
from monitor.model import Classifier
from trainer import cli as train_cli
from trainer import evaluate


@pytest.fixture(scope="module")
def tiny_run(mitdb, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("dscache")
    rc = train_cli.main(
        [
            "--protocol", "inter", "--records", "106,119,208;100,232", "--duration", "60", "--epochs", "2",
            "--data-dir", str(mitdb), "--out", str(out), "--cache", str(cache), "--threads", "1", "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    return out, cache


def test_train_writes_weights_and_run_record(tiny_run):
    out, _ = tiny_run
    for name in ("model.pt", "run.json", "history.json", "checkpoint.pt"):
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["command"][0] == "ecg-train" and "--epochs" in run["command"]
    assert run["config"]["epochs"] == 2 and run["config"]["batch_size"] == 64
    assert not set(run["records"]["train"]) & set(run["records"]["test"])
    assert not set(run["records"]["val"]) & set(run["records"]["train"])


def test_eval_writes_every_artefact(tiny_run, mitdb, tmp_path, capsys):
    out, cache = tiny_run
    rc = evaluate.main(
        [
            "--weights", str(out / "model.pt"), "--protocol", "inter", "--records", "100,232", "--duration", "60",
            "--data-dir", str(mitdb), "--out", str(tmp_path), "--cache", str(cache), "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    for name in ("metrics.json", "confusion_matrix.png", "roc_curves.png", "example_beats.png", "training_curves.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    m = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "classes", "roc_auc", "ec57", "ec57_without_232", "aami_classification"):
        assert key in m
    assert set(m["ec57"]) >= {"N", "S", "V", "F", "Q"}
    assert m["classes"]["N"]["support"] > 0
    assert 0 <= m["accuracy"] <= 1
    # record by record: the rows add up to the gross table
    by = m["ec57_by_record"]["records"]
    assert list(by) == ["100", "232"]
    for c in ("N", "S", "V", "F", "Q"):
        assert sum(r[c]["reference_beats"] for r in by.values()) == m["ec57"][c]["reference_beats"]
        assert sum(r[c]["detected_as"] for r in by.values()) == m["ec57"][c]["detected_as"]
    report = (tmp_path / "report.md").read_text()
    assert "AAMI" in report and "Average statistics" in report
    assert any(line.startswith("| 232 | ") for line in report.splitlines())
    assert "report:" in capsys.readouterr().out


def _part(record, ref, pred, extra=()):
    return {"record": record, "ref_aami": np.array(ref), "ref_pred": np.array(pred), "extra_pred": np.array(extra, dtype=np.int64)}


def test_ec57_by_record_counts_and_average_statistics():
    # AAMI indices: N 0, S 1, V 2; -1: missed by the detector
    parts = [
        _part("a", [0, 0, 0, 1, 1], [0, 0, 1, 1, -1], extra=[1]),  # S: 1 of 2 found, called S 3 times
        _part("b", [0, 0, 2, 2], [0, 2, 2, 0]),  # no S beat, none called S
        _part("c", [1] * 8, [1] * 8),  # S: 8 of 8, all right
    ]
    t = evaluate.ec57_by_record(parts)
    a, b, c = (t["records"][r] for r in "abc")
    assert a["S"] == {"se": 0.5, "ppv": 1 / 3, "reference_beats": 2, "detected_as": 3, "tp": 1}
    assert a["missed"] == 1 and a["extra"] == 1 and b["missed"] == 0
    assert np.isnan(b["S"]["se"]) and np.isnan(b["S"]["ppv"]) and b["V"]["se"] == b["V"]["ppv"] == 0.5
    # average statistics: every record with the class counts once (gross S Se would be 9 / 10)
    assert t["average"]["S"]["se"] == pytest.approx((0.5 + 1.0) / 2) and t["average"]["S"]["se_records"] == 2
    assert t["average"]["S"]["ppv"] == pytest.approx((1 / 3 + 1.0) / 2) and t["average"]["S"]["ppv_records"] == 2
    assert np.isnan(t["average"]["F"]["se"]) and t["average"]["F"]["se_records"] == 0
    gross = evaluate.ec57_table(parts)
    assert gross["S"]["se"] == pytest.approx(9 / 10)


def test_eval_bad_weights_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights")
    rc = evaluate.main(["--weights", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "bad.pt" in err[0] and "Traceback" not in err[0]


def test_train_bad_config_is_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("epocs = 1\n")
    rc = train_cli.main(["--config", str(cfg), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "epochs" in err[0]


def _eval_record_100(weights, mitdb, cache, ev, *flags) -> dict:
    """ecg-eval of the first minute of record 100; returns metrics.json."""
    rc = evaluate.main(
        ["--weights", str(weights), "--records", "100", "--duration", "60", "--data-dir", str(mitdb),
         "--out", str(ev), "--cache", str(cache), "--no-progress", *flags]
    )  # fmt: skip
    assert rc == 0
    return json.loads((ev / "metrics.json").read_text())


def test_train_cv_chooses_epochs_over_folds_and_calibrates(mitdb, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "cv"
    rc = train_cli.main(
        [
            "--protocol", "inter", "--records", "106,119,208;100", "--duration", "60", "--epochs", "2", "--cv",
            "--calibrate", "--val-folds", "3", "--data-dir", str(mitdb), "--out", str(out), "--cache", str(cache), "--threads", "1",
            "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    run = json.loads((out / "run.json").read_text())
    cv = run["cv"]
    # every training record validates exactly once, and the final model trains on all of them
    assert sorted(r for f in cv["folds"] for r in f["val_records"]) == ["106", "119", "208"]
    assert run["records"]["val"] == [] and sorted(run["records"]["train"]) == ["106", "119", "208"]
    assert all(len(f["val_aami_nsv_f1"]) == 2 for f in cv["folds"])
    means = [m["val_aami_nsv_f1"] for m in cv["mean"]]
    assert cv["best_epoch"] == 1 + max(range(2), key=lambda e: means[e])
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["epochs"]) == cv["best_epoch"] and "val_aami_nsv_f1" in hist["epochs"][0]
    for k in range(3):
        assert (out / f"cv-fold-{k}" / "history.json").exists()
    # out-of-fold logits: what each fold's validation scored, every epoch
    best = cv["best_epoch"]
    cal = cv["calibration"]
    assert cal["epoch"] == best and list(cal["logit_bias"]) == list(CLASSES)
    assert cal["oof_after"]["aami_nsv_f1"] >= cal["oof_before"]["aami_nsv_f1"]
    n_beats, n_right = 0, 0.0
    for k in range(3):
        fold_hist = json.loads((out / f"cv-fold-{k}" / "history.json").read_text())["epochs"]
        for e in (1, 2):
            z = np.load(out / f"cv-fold-{k}" / "val_logits" / f"epoch-{e}.npy")
            assert z.shape[1] == len(CLASSES) and z.shape[0] > 0
        z = np.load(out / f"cv-fold-{k}" / "val_logits" / f"epoch-{best}.npy")
        n_beats += len(z)
        n_right += fold_hist[best - 1]["val_accuracy"] * len(z)
    assert cal["beats"] == n_beats
    # pooled out-of-fold accuracy before the offsets = the folds' validation accuracies, weighted
    assert np.isclose(cal["oof_before"]["accuracy"], n_right / n_beats)
    # the offsets travel in the weights file and the classifier adds them to the logits
    clf = Classifier.from_file(out / "model.pt")
    assert np.allclose(clf.logit_bias.numpy(), [cal["logit_bias"][c] for c in CLASSES])
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, *clf.input_shape)).astype(np.float32)
    r = np.abs(rng.normal(1, 0.2, size=(5, clf.n_rr))).astype(np.float32)
    with torch.no_grad():
        z = clf.model(torch.from_numpy(w), torch.from_numpy(r)) + clf.logit_bias
    assert np.allclose(clf.predict_proba(w, r), torch.softmax(z, 1).numpy(), atol=1e-6)
    # ecg-eval applies them, and --no-logit-bias measures the model without them
    for flag, used in (([], True), (["--no-logit-bias"], False)):
        ev = tmp_path / f"eval{len(flag)}"
        m = _eval_record_100(out / "model.pt", mitdb, cache, ev, *flag)
        assert m["logit_bias_ignored"] is not used
        assert m["logit_bias"] == (cal["logit_bias"] if used else dict.fromkeys(CLASSES, 0.0))
        assert ("ignored: --no-logit-bias" in (ev / "report.md").read_text()) is not used


def test_train_without_validation_runs_every_epoch(mitdb, tmp_path, capsys):
    # --val-fold none: every training record trains for exactly --epochs epochs, the last is saved
    out = tmp_path / "noval"
    rc = train_cli.main(
        [
            "--protocol", "inter", "--records", "106,119,208;100", "--duration", "60", "--epochs", "2", "--no-cv",
            "--val-fold", "none", "--class-weight-scale", "F=0.25,Q=0.5", "--fusion-quantile", "0.01", "--data-dir", str(mitdb), "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--threads", "1", "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    run = json.loads((out / "run.json").read_text())
    assert run["records"]["val"] == [] and sorted(run["records"]["train"]) == ["106", "119", "208"]
    assert run["best_epoch"] == 2 and run["config"]["val_fold"] is None
    assert run["config"]["class_weight_scale"] == {"F": 0.25, "Q": 0.5}
    assert sum(run["class_counts"]["val"].values()) == 0
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == 2
    clf = Classifier.from_file(out / "model.pt")
    assert clf.meta["training"]["selected_on"].startswith("none: the last of 2 epochs")
    # the fusion rule's threshold: the 1 % quantile of the training F beats' template distance
    rule = run["fusion_rule"]
    assert rule["quantile"] == 0.01 and rule["f_beats"] == run["class_counts"]["train"]["F"] > 0
    assert clf.fusion_max_template_rms == rule["max_template_rms"] > 0
    # ecg-eval writes every artefact for it (training curves without validation curves) and says
    # whether the rule was used
    m = _eval_record_100(out / "model.pt", mitdb, tmp_path / "cache", tmp_path / "ev")
    assert m["n_beats_classified"] > 0 and (tmp_path / "ev" / "training_curves.png").stat().st_size > 0
    assert m["fusion_max_template_rms"] == rule["max_template_rms"] and not m["fusion_rule_ignored"]
    assert "fusion rule" in (tmp_path / "ev" / "report.md").read_text()
    assert _eval_record_100(out / "model.pt", mitdb, tmp_path / "cache", tmp_path / "ev2", "--no-fusion-rule")["fusion_rule_ignored"]
    # --add-rules stores the same threshold in a file trained without the rule, and changes nothing else
    bare = tmp_path / "bare.pt"
    from monitor.model import load_model, save_weights

    model, meta = load_model(out / "model.pt")
    save_weights(bare, model, {k: v for k, v in meta.items() if k != "fusion_max_template_rms"})
    assert Classifier.from_file(bare).fusion_max_template_rms is None
    common = ["--protocol", "inter", "--records", "106,119,208;100", "--duration", "60", "--data-dir", str(mitdb),
              "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    assert train_cli.main(["--add-rules", str(bare), "--fusion-quantile", "0.01", "--weights-out", str(tmp_path / "ruled.pt"), *common]) == 0
    ruled_model, ruled_meta = load_model(tmp_path / "ruled.pt")
    assert ruled_meta["fusion_max_template_rms"] == rule["max_template_rms"]
    assert ruled_meta["training"]["fusion_rule"]["records"] == ["106", "119", "208"]
    assert all(torch.equal(a, b) for a, b in zip(ruled_model.state_dict().values(), model.state_dict().values()))
    assert train_cli.main(["--add-rules", str(bare), *common]) == 2
    assert "needs a rule to add" in capsys.readouterr().err
    # the AF rule from a config file's [af_rule] table; ecg-eval reports it and can ignore it
    cfg = tmp_path / "af.toml"
    cfg.write_text("[af_rule]\nmin_irregular = 0.1\nmax_regular = 0.5\n")
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--config", str(cfg), *common]) == 0
    both = Classifier.from_file(tmp_path / "ruled.pt")
    assert both.af_rule == (0.1, 0.5) and both.fusion_max_template_rms == rule["max_template_rms"]  # the fusion rule kept
    m = _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev3")
    assert m["af_rule"] == {"min_irregular": 0.1, "max_regular": 0.5} and not m["af_rule_ignored"]
    assert "AF rule (no S label" in (tmp_path / "ev3" / "report.md").read_text()
    assert _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev4", "--no-af-rule")["af_rule_ignored"]
    # the prematurity rule: its threshold from the training records' S beats (the first minute of
    # 106, 119 and 208 has none: a clear error), the other rules kept
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--prematurity-quantile", "0.05", *common]) == 2
    assert "needs S beats in the training records" in capsys.readouterr().err
    s_rich = [*common[:2], "--records", "118;100", "--duration", "300", *common[6:]]
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--prematurity-quantile", "0.05", *s_rich]) == 0
    three = Classifier.from_file(tmp_path / "ruled.pt")
    prem = three.meta["training"]["prematurity_rule"]
    assert prem["quantile"] == 0.05 and prem["records"] == ["118"] and prem["s_beats"] >= 5
    assert 0 < three.prematurity_max_rr_ratio == prem["max_rr_ratio"] < 2
    assert three.af_rule == (0.1, 0.5) and three.fusion_max_template_rms == rule["max_template_rms"]
    m = _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev5")
    assert m["prematurity_max_rr_ratio"] == prem["max_rr_ratio"] and not m["prematurity_rule_ignored"]
    assert "prematurity rule" in (tmp_path / "ev5" / "report.md").read_text()
    assert _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev6", "--no-prematurity-rule")["prematurity_rule_ignored"]
    # the V prematurity rule (into a copy): its threshold from the training records' V beats (119's
    # bigeminy), the other rules kept
    v_rich = [*common[:2], "--records", "119;100", "--duration", "300", *common[6:]]
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--v-prematurity-quantile", "0.07", "--weights-out", str(tmp_path / "vruled.pt"), *v_rich]) == 0
    vr = Classifier.from_file(tmp_path / "vruled.pt")
    vprem = vr.meta["training"]["v_prematurity_rule"]
    assert vprem["quantile"] == 0.07 and vprem["records"] == ["119"] and vprem["v_beats"] >= 20
    assert 0.5 < vr.v_prematurity_max_rr_ratio == vprem["max_rr_ratio"] < 2 and vr.prematurity_max_rr_ratio == prem["max_rr_ratio"]
    mv = _eval_record_100(tmp_path / "vruled.pt", mitdb, tmp_path / "cache", tmp_path / "evv")
    assert mv["v_prematurity_max_rr_ratio"] == vprem["max_rr_ratio"] and not mv["v_prematurity_rule_ignored"]
    assert "V prematurity rule" in (tmp_path / "evv" / "report.md").read_text()
    assert _eval_record_100(tmp_path / "vruled.pt", mitdb, tmp_path / "cache", tmp_path / "evv2", "--no-v-prematurity-rule")["v_prematurity_rule_ignored"]
    # the early-beat rule: its thresholds from the training records' N beats outside AF-like rhythm,
    # which needs the AF rule's thresholds (from the config file)
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--early-beat-quantile", "0.005", *s_rich]) == 2
    assert "early_beat_quantile needs an af_rule" in capsys.readouterr().err
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--early-beat-quantile", "0.005", "--config", str(cfg), *s_rich]) == 0
    four = Classifier.from_file(tmp_path / "ruled.pt")
    early = four.meta["training"]["early_beat_rule"]
    assert early["quantile"] == 0.005 and early["records"] == ["118"] and early["n_beats"] > 100
    assert four.early_beat_rule == (early["max_pre_long"], early["max_pre_local"]) and 0.5 < early["max_pre_long"] < 1
    assert four.prematurity_max_rr_ratio == prem["max_rr_ratio"] and four.af_rule == (0.1, 0.5)
    m = _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev7")
    assert m["early_beat_rule"] == {"max_pre_long": early["max_pre_long"], "max_pre_local": early["max_pre_local"]}
    assert not m["early_beat_rule_ignored"] and "early-beat rule" in (tmp_path / "ev7" / "report.md").read_text()
    m8 = _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev8", "--no-early-beat-rule")
    assert m8["early_beat_rule_ignored"] and "ignored: --no-early-beat-rule" in (tmp_path / "ev8" / "report.md").read_text()
    # early_beat_to_v: as given; it needs the early-beat rule (the bare file has none)
    assert train_cli.main(["--add-rules", str(bare), "--early-beat-to-v", *common]) == 2
    assert "early_beat_to_v needs the early-beat rule" in capsys.readouterr().err
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--early-beat-to-v", "--weights-out", str(tmp_path / "tov.pt"), *common]) == 0
    tov = Classifier.from_file(tmp_path / "tov.pt")
    assert tov.early_beat_to_v and tov.meta["training"]["early_beat_to_v"] and tov.early_beat_rule == four.early_beat_rule
    assert not four.early_beat_to_v
    mt = _eval_record_100(tmp_path / "tov.pt", mitdb, tmp_path / "cache", tmp_path / "evt")
    assert mt["early_beat_to_v"] and not mt["early_beat_to_v_ignored"] and "or V where" in (tmp_path / "evt" / "report.md").read_text()
    mt2 = _eval_record_100(tmp_path / "tov.pt", mitdb, tmp_path / "cache", tmp_path / "evt2", "--no-early-beat-to-v")
    assert mt2["early_beat_to_v_ignored"] and "--no-early-beat-to-v" in (tmp_path / "evt2" / "report.md").read_text()
    assert mt2["ec57"] == m["ec57"]  # without it, the file scores as the one without the flag
    # the early-run rule: its setting as given; it needs the early-beat rule (the bare file has none)
    assert train_cli.main(["--add-rules", str(bare), "--early-run-beats", "10", *common]) == 2
    assert "early_run_beats needs the early-beat rule" in capsys.readouterr().err
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--early-run-beats", "10", *common]) == 0
    five = Classifier.from_file(tmp_path / "ruled.pt")
    assert five.early_run_beats == 10 == five.meta["training"]["early_run_beats"] and five.early_beat_rule == four.early_beat_rule
    m9 = _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev9")
    assert m9["early_run_beats"] == 10 and not m9["early_run_rule_ignored"]
    assert "early-run rule" in (tmp_path / "ev9" / "report.md").read_text()
    m10 = _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev10", "--no-early-run-rule")
    assert m10["early_run_rule_ignored"] and "ignored: --no-early-run-rule" in (tmp_path / "ev10" / "report.md").read_text()
    assert m9["early_run_max_pre_long"] is None and five.early_run_max_pre_long is None
    # its own threshold for a run's later beats: a quantile of the same N beats as the early-beat rule's
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--early-run-beats", "10", "--early-run-quantile", "0.02", *s_rich]) == 0
    six = Classifier.from_file(tmp_path / "ruled.pt")
    run_rule = six.meta["training"]["early_run_rule"]
    assert run_rule["quantile"] == 0.02 and run_rule["n_beats"] == early["n_beats"] and run_rule["records"] == ["118"]
    assert six.early_run_max_pre_long == run_rule["max_pre_long"] and early["max_pre_long"] < run_rule["max_pre_long"] < 1
    assert six.early_beat_rule == four.early_beat_rule
    m11 = _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev11")
    assert m11["early_run_max_pre_long"] == run_rule["max_pre_long"]
    # a decision offset for one class, as given; the other classes' offsets (here none) are kept
    assert not any(m11["logit_bias"].values())
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--logit-offset", "V=-1.0", *common]) == 0
    seven = Classifier.from_file(tmp_path / "ruled.pt")
    assert seven.meta["logit_bias"] == [-1.0 if c == "V" else 0.0 for c in seven.classes]
    assert seven.meta["training"]["logit_offsets"] == {"V": -1.0} and seven.early_run_max_pre_long == run_rule["max_pre_long"]
    m12 = _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev12")
    assert m12["logit_bias"]["V"] == -1.0 and not m12["logit_bias_ignored"] and "V -1.00" in (tmp_path / "ev12" / "report.md").read_text()
    assert _eval_record_100(tmp_path / "ruled.pt", mitdb, tmp_path / "cache", tmp_path / "ev13", "--no-logit-bias")["logit_bias_ignored"]
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--logit-offset", "X=1", *common]) == 2
    assert "unknown class 'X'" in capsys.readouterr().err
    assert f"below {run_rule['max_pre_long']:.3f} times the S rules' reference" in (tmp_path / "ev11" / "report.md").read_text()
    # the normal-interval reference: every S rule in the file must get its threshold again, as a
    # quantile of pre_normal over the same beats
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--prematurity-reference", "normal", *s_rich]) == 2
    err = capsys.readouterr().err
    assert "--prematurity-quantile, --early-beat-quantile, --early-run-quantile" in err and "Traceback" not in err
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--prematurity-reference", "normal", "--prematurity-quantile", "0.05",
                           "--early-beat-quantile", "0.005", "--early-run-beats", "10", "--early-run-quantile", "0.02", "--config", str(cfg),
                           "--weights-out", str(tmp_path / "normal.pt"), *s_rich]) == 0  # fmt: skip
    nr = Classifier.from_file(tmp_path / "normal.pt")
    assert nr.prematurity_reference == "normal" == nr.meta["training"]["prematurity_reference"]
    assert nr.meta["training"]["early_beat_rule"]["n_beats"] == early["n_beats"]  # the same N beats, another ratio
    assert nr.early_beat_rule[1] == four.early_beat_rule[1] and nr.early_beat_rule[0] != four.early_beat_rule[0]
    assert nr.prematurity_max_rr_ratio != prem["max_rr_ratio"] and nr.v_prematurity_max_rr_ratio is None
    m14 = _eval_record_100(tmp_path / "normal.pt", mitdb, tmp_path / "cache", tmp_path / "ev14")
    assert m14["prematurity_reference"] == "normal" and m11["prematurity_reference"] == "long"
    assert "mean of the recent normal intervals" in (tmp_path / "ev14" / "report.md").read_text()
    # the post-pause rule: as given; it needs the AF rule (the bare file has none)
    assert train_cli.main(["--add-rules", str(bare), "--post-pause-rule", "0.9,1.2", *common]) == 2
    assert "post_pause_rule needs the AF rule" in capsys.readouterr().err
    assert train_cli.main(["--add-rules", str(tmp_path / "ruled.pt"), "--post-pause-rule", "0.9,1.2", "--weights-out", str(tmp_path / "pp.pt"), *common]) == 0
    pp = Classifier.from_file(tmp_path / "pp.pt")
    table = {"max_pre_normal": 0.9, "min_post_ratio": 1.2}
    assert pp.post_pause_rule == (0.9, 1.2) and pp.meta["training"]["post_pause_rule"] == table
    assert pp.early_beat_rule == seven.early_beat_rule and pp.meta["logit_bias"] == seven.meta["logit_bias"]  # the other rules kept
    m15 = _eval_record_100(tmp_path / "pp.pt", mitdb, tmp_path / "cache", tmp_path / "ev15")
    assert m15["post_pause_rule"] == table and not m15["post_pause_rule_ignored"] and m12["post_pause_rule"] is None
    assert "post-pause rule (beats called N" in (tmp_path / "ev15" / "report.md").read_text()
    m16 = _eval_record_100(tmp_path / "pp.pt", mitdb, tmp_path / "cache", tmp_path / "ev16", "--no-post-pause-rule")
    assert m16["post_pause_rule_ignored"] and m16["ec57"] == m12["ec57"]  # without it, the file scores as the one without the rule
    # a rule added to a file with the normal reference keeps it (the reference is the file's unless one is asked for)
    assert train_cli.main(["--add-rules", str(tmp_path / "normal.pt"), "--post-pause-rule", "0.9,1.2", "--weights-out", str(tmp_path / "npp.pt"), *common]) == 0
    npp = Classifier.from_file(tmp_path / "npp.pt")
    assert npp.prematurity_reference == "normal" and npp.post_pause_rule == (0.9, 1.2) and npp.early_beat_rule == nr.early_beat_rule
    assert train_cli.main(["--add-rules", str(tmp_path / "normal.pt"), "--prematurity-reference", "long", *common]) == 2
    assert "--prematurity-reference long changes the ratio" in capsys.readouterr().err
    # a bad value is one line on stderr, exit 2
    for flag, value in (("--val-fold", "last"), ("--class-weight-scale", "F"), ("--logit-offset", "V"), ("--post-pause-rule", "0.9")):
        with pytest.raises(SystemExit) as exit_:
            train_cli.main([flag, value, "--no-progress"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert "Traceback" not in "".join(err) and flag in err[-1]


def test_train_stores_the_early_beat_rule_that_add_rules_would(mitdb, tmp_path, capsys):
    # training with --early-beat-quantile (and the AF rule it needs) stores the thresholds that
    # --add-rules computes for the same training records
    cfg = tmp_path / "af.toml"
    cfg.write_text("[af_rule]\nmin_irregular = 0.1\nmax_regular = 0.5\n")
    common = ["--protocol", "inter", "--records", "118,119;100", "--duration", "60", "--data-dir", str(mitdb),
              "--cache", str(tmp_path / "cache"), "--config", str(cfg), "--early-beat-quantile", "0.005", "--no-progress"]  # fmt: skip
    out = tmp_path / "early"
    quick = ["--epochs", "1", "--no-cv", "--val-fold", "none", "--threads", "1", "--out", str(out)]
    # the early-run rule needs the early-beat rule: refused before any training
    no_early = [c for c in common if c not in ("--early-beat-quantile", "0.005")]
    assert train_cli.main([*no_early, *quick, "--early-run-beats", "10"]) == 2 and not (out / "model.pt").exists()
    assert "early_run_beats needs the early-beat rule" in capsys.readouterr().err
    assert train_cli.main([*no_early, *quick, "--early-beat-to-v"]) == 2 and not (out / "model.pt").exists()
    assert "early_beat_to_v needs the early-beat rule" in capsys.readouterr().err
    assert train_cli.main([*common, *quick, "--early-run-beats", "10", "--logit-offset", "V=-0.5"]) == 0
    run = json.loads((out / "run.json").read_text())
    clf = Classifier.from_file(out / "model.pt")
    rule = run["early_beat_rule"]
    assert rule["quantile"] == 0.005 and rule["n_beats"] > 100 and 0 <= rule["n_below_both"] < rule["n_beats"]
    assert clf.early_beat_rule == (rule["max_pre_long"], rule["max_pre_local"]) and clf.af_rule == (0.1, 0.5)
    assert clf.early_run_beats == 10 and run["config"]["early_run_beats"] == 10
    assert run["early_run_rule"] is None and clf.early_run_max_pre_long is None
    assert clf.meta["logit_bias"] == [-0.5 if c == "V" else 0.0 for c in clf.classes] and run["config"]["logit_offsets"] == {"V": -0.5}
    from monitor.model import load_model, save_weights

    model, meta = load_model(out / "model.pt")
    bare = save_weights(tmp_path / "bare.pt", model, {k: v for k, v in meta.items() if k not in ("early_beat_rule", "early_run_beats")})
    assert train_cli.main(["--add-rules", str(bare), *common]) == 0
    assert Classifier.from_file(bare).early_beat_rule == clf.early_beat_rule


def test_calibrate_needs_cv(capsys):
    rc = train_cli.main(["--calibrate", "--no-cv", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "calibrate needs cv" in err and "Traceback" not in err


def test_train_cv_refuses_seed_protocol(capsys):
    rc = train_cli.main(["--protocol", "seed", "--cv", "--no-progress"])
    assert rc == 2
    assert "cv" in capsys.readouterr().err


def test_train_cv_ensemble_ships_final_and_fold_models(mitdb, tmp_path):
    from monitor.model import Ensemble

    cache = tmp_path / "cache"
    out = tmp_path / "ens"
    args = [
        "--protocol", "inter", "--records", "106,119,208;100", "--duration", "60", "--epochs", "2", "--cv", "--ensemble",
        "--val-folds", "3", "--data-dir", str(mitdb), "--out", str(out), "--cache", str(cache), "--threads", "1", "--no-progress",
    ]  # fmt: skip
    assert train_cli.main(args) == 0
    run = json.loads((out / "run.json").read_text())
    best = run["cv"]["best_epoch"]
    clf = Classifier.from_file(out / "model.pt")
    assert isinstance(clf.model, Ensemble) and clf.members == 4
    assert "fold models" in clf.meta["training"]["ensemble"]
    # members 1..3 are the fold models' weights after the chosen number of epochs
    for k in range(3):
        assert (out / f"cv-fold-{k}" / "states" / "epoch-1.pt").exists()
        state = torch.load(out / f"cv-fold-{k}" / "states" / f"epoch-{best}.pt", weights_only=True)
        for name, v in clf.model.members[k + 1].state_dict().items():
            assert torch.equal(v, state[name])
    # member 0 is the final model: the same weights as a plain --cv run of the same seed
    plain = tmp_path / "plain"
    assert train_cli.main([a if a != str(out) else str(plain) for a in args if a != "--ensemble"]) == 0
    single = Classifier.from_file(plain / "model.pt")
    for name, v in single.model.state_dict().items():
        assert torch.equal(v, clf.model.members[0].state_dict()[name])
    # ecg-eval scores the ensemble, or one member with --member
    results = {}
    for flag in ([], ["--member", "0"]):
        results[len(flag)] = _eval_record_100(out / "model.pt", mitdb, cache, tmp_path / f"eval{len(flag)}", *flag)
        assert results[len(flag)]["members_in_file"] == 4
    assert results[0]["member_evaluated"] is None and "an ensemble of 4" in (tmp_path / "eval0" / "report.md").read_text()
    assert results[2]["member_evaluated"] == 0 and "member 0 alone" in (tmp_path / "eval2" / "report.md").read_text()
    assert _eval_record_100(plain / "model.pt", mitdb, cache, tmp_path / "eval-plain")["ec57"] == results[2]["ec57"]
    # a missing fold state is a one-line error, not a traceback
    (out / "cv-fold-1" / "states" / f"epoch-{best}.pt").unlink()
    assert train_cli.main([*args, "--resume"]) == 2


def test_ensemble_needs_cv(capsys):
    rc = train_cli.main(["--ensemble", "--no-cv", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "ensemble needs cv" in err and "Traceback" not in err
