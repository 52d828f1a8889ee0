"""End to end: ecg-train on short record stretches, then ecg-eval writes every artefact."""

from __future__ import annotations

import json

import pytest

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
    assert "AAMI" in (tmp_path / "report.md").read_text()
    assert "report:" in capsys.readouterr().out


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


def test_train_cv_chooses_epochs_over_folds(mitdb, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "cv"
    rc = train_cli.main(
        [
            "--protocol", "inter", "--records", "106,119,208;100", "--duration", "60", "--epochs", "2", "--cv",
            "--val-folds", "3", "--data-dir", str(mitdb), "--out", str(out), "--cache", str(cache), "--threads", "1",
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


def test_train_cv_refuses_seed_protocol(capsys):
    rc = train_cli.main(["--protocol", "seed", "--cv", "--no-progress"])
    assert rc == 2
    assert "cv" in capsys.readouterr().err
