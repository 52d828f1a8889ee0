"""ecg-train --combine: separately trained weights files joined into one ensemble."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from monitor.beats import BeatFeaturizer
from monitor.labels import CLASSES
from monitor.model import ARCHITECTURE, Classifier, Ensemble, build_model, default_hparams, load_model, save_weights
from replay.errors import ConfigError
from trainer import cli as train_cli
from trainer.combine import combine_weights


def _meta(seed: int, **extra) -> dict:
    fz = BeatFeaturizer(360.0)
    return {
        "architecture": ARCHITECTURE,
        "hparams": default_hparams(2, 128, len(fz.rr_names), len(CLASSES)),
        "classes": list(CLASSES),
        "featurizer": fz.settings(),
        "rr_names": list(fz.rr_names),
        "training": {"seed": seed, "best_epoch": 20 + seed},
        **extra,
    }


def _save(path, seed: int, members: int = 1, **extra):
    """An untrained model (or ensemble) of seed ``seed`` written to ``path``; returns its member modules."""
    meta = _meta(seed, **extra)
    torch.manual_seed(seed)
    models = [build_model(meta).eval() for _ in range(members)]
    model = models[0] if members == 1 else Ensemble(models)
    save_weights(path, model, {**meta, **({"members": members} if members > 1 else {})})
    return models


def _inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(7, 2, 128)).astype(np.float32), (rng.random((7, 10)) + 0.5).astype(np.float32)


def test_combine_averages_every_member_and_records_the_sources(tmp_path, caplog):
    a = _save(tmp_path / "a.pt", 0, logit_bias=[0, 0, 0, 0, -1.0, 0, 0])
    b = _save(tmp_path / "b.pt", 1, members=2)  # an ensemble adds all its members
    (tmp_path / "a.history.json").write_text(json.dumps({"epochs": [{"epoch": 1, "train_loss": 1.0}]}))
    with caplog.at_level(logging.WARNING, logger="trainer.combine"):
        out = combine_weights([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "ens.pt", command=["ecg-train", "--combine"])
    assert "logit_bias differ" in caplog.text  # b has no offsets: reported, the first file's kept
    model, meta = load_model(out)
    assert isinstance(model, Ensemble) and meta["members"] == 3
    assert meta["logit_bias"] == [0, 0, 0, 0, -1.0, 0, 0]
    files = meta["training"]["member_files"]
    assert [f["seed"] for f in files] == [0, 1] and [f["members"] for f in files] == [1, 2]
    assert all(len(f["sha256"]) == 64 for f in files)
    assert "3 members from 2 separately trained files" in meta["training"]["ensemble"]
    # the probabilities are the mean over the three networks, with the first file's V offset
    w, r = _inputs()
    bias = torch.tensor(meta["logit_bias"], dtype=torch.float32)
    with torch.no_grad():
        mean_p = torch.stack([torch.softmax(m(torch.from_numpy(w), torch.from_numpy(r)), 1) for m in [*a, *b]]).mean(0)
        want = torch.softmax(torch.log(mean_p) + bias, 1).numpy()
    np.testing.assert_allclose(Classifier(model, meta).predict_proba(w, r), want, rtol=1e-4, atol=1e-6)
    run = json.loads((tmp_path / "ens.run.json").read_text())
    assert run["command"] == ["ecg-train", "--combine"] and len(run["combined_from"]) == 2
    hist = json.loads((tmp_path / "ens.history.json").read_text())
    assert hist["epochs"][0]["train_loss"] == 1.0 and hist["member_epochs"][1] is None


def test_combine_refuses_what_cannot_be_one_ensemble(tmp_path):
    _save(tmp_path / "a.pt", 0)
    with pytest.raises(ConfigError, match="at least two weights files, got 1"):
        combine_weights([tmp_path / "a.pt"], tmp_path / "ens.pt")
    other = _meta(1)
    other["featurizer"] = {**other["featurizer"], "pre_s": 0.4}
    save_weights(tmp_path / "b.pt", build_model(other), other)
    with pytest.raises(ConfigError, match="b.pt: its 'featurizer' differs from .*a.pt"):
        combine_weights([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "ens.pt")
    _save(tmp_path / "big.pt", 2, members=16)
    with pytest.raises(ConfigError, match="more than 16 members"):
        combine_weights([tmp_path / "a.pt", tmp_path / "big.pt"], tmp_path / "ens.pt")
    with pytest.raises(ConfigError, match="no such model weights file"):
        combine_weights([tmp_path / "a.pt", tmp_path / "missing.pt"], tmp_path / "ens.pt")
    assert not (tmp_path / "ens.pt").exists()


def test_combine_cli_stores_the_settings_rules(tmp_path, capsys):
    _save(tmp_path / "a.pt", 0)
    _save(tmp_path / "b.pt", 1)
    out = tmp_path / "ens.pt"
    args = ["--combine", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--weights-out", str(out), "--logit-offset", "V=-1.5"]
    assert train_cli.main([*args, "--no-progress"]) == 0
    assert f"weights: {out}" in capsys.readouterr().out
    clf = Classifier.from_file(out)
    assert clf.members == 2 and clf.meta["logit_bias"][CLASSES.index("V")] == -1.5
    # with --add-rules, or with a missing file: one line, exit 2
    assert train_cli.main([*args, "--add-rules", str(out)]) == 2
    assert "--add-rules and --combine do not go together" in capsys.readouterr().err
    assert train_cli.main(["--combine", str(tmp_path / "a.pt"), str(tmp_path / "nope.pt"), "--weights-out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nope.pt: no such model weights file" in err and "Traceback" not in err
