"""ecg-bench rules: the decision rules' settings scored out of fold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from replay.errors import ConfigError
from trainer import bench
from trainer import cli as train_cli
from trainer import dataset as ds
from trainer import evaluate
from trainer.combine import RULE_KEYS
from trainer.rule_sweep import SETTINGS, FoldNetworks, fold_networks, parse_grid, sweep_rules

FOLDS = {0: ["209", "119"], 1: ["118", "208"]}
DURATION = "300"
BASE = {
    "V_offset": -0.25, "v_prematurity_quantile": 0.07, "prematurity_quantile": 0.1, "max_regular": 0.6, "max_p_wave": 0.0,
    "early_beat_quantile": 0.005, "early_beat_to_v": 0, "early_run_quantile": 0.01, "early_run_beats": 10,
    "normal_reference": 0, "post_pause_max_pre_normal": 0.0, "post_pause_min_ratio": 0.0,
}  # fmt: skip


def _networks(tmp_path):
    """Two networks without decision rules: the shipped one and a perturbed copy."""
    from monitor.model import load_model, save_weights
    from monitor.resources import asset

    model, meta = load_model(asset("model.pt"))
    bare = {k: v for k, v in meta.items() if k not in RULE_KEYS}
    paths = [save_weights(tmp_path / "s0.pt", model, bare)]
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    paths.append(save_weights(tmp_path / "s1.pt", model, bare))
    return paths


def _pooled(mats):
    """S and V Se / +P of summed EC57 matrices (rows N S V F Q, columns N S V F Q missed)."""
    m = np.sum(mats, axis=0)
    out = {}
    for i, c in ((1, "S"), (2, "V"), (0, "N")):
        out[c] = (m[i, i] / m[i].sum(), m[i, i] / m[:, i].sum())
    return out


def test_sweep_gives_what_add_rules_and_ecg_eval_give_out_of_fold(mitdb, tmp_path):
    cache = tmp_path / "cache"
    nets = _networks(tmp_path)
    fz = json.loads(torch.load(nets[0], weights_only=True)["meta_json"])["featurizer"]
    recs = [r for f in FOLDS.values() for r in f]
    data = ds.build_dataset(recs, mitdb, fz, cache=cache, progress=False, duration_s=float(DURATION))
    folds = [FoldNetworks(k, held, nets) for k, held in FOLDS.items()]
    grid = parse_grid(["prematurity_quantile=0.05,0.1", "early_run_beats=0,10", "early_beat_to_v=0,1", "post_pause_max_pre_normal=0,0.9",
                       "post_pause_min_ratio=1.2"], BASE)
    rows = sweep_rules(folds, grid, data=data, fusion_quantile=0.0, progress=False)
    assert len(rows) == 16 and rows == sorted(rows, key=lambda r: -r["f1"])
    pick = lambda pp: next(r for r in rows if r["prematurity_quantile"] == 0.1 and r["early_run_beats"] == 10  # noqa: E731
                           and r["early_beat_to_v"] == 1 and r["post_pause_max_pre_normal"] == pp)  # fmt: skip
    row = pick(0.9)
    assert pick(0.0)["se"] < row["se"]  # the post-pause rule finds more S beats here
    assert {*SETTINGS} <= set(row) and 0 < row["f1"] <= 1 and 0 < row["ensemble_f1"] <= 1

    # the same setting through the trainer: each network given the rules of the other fold's records,
    # then ecg-eval on its own fold; confusions pooled over the folds, F1 averaged over the networks
    cfg = tmp_path / "af.toml"
    cfg.write_text("[af_rule]\nmin_irregular = 0.1\nmax_regular = 0.6\n")
    f1s = []
    for i, w in enumerate(nets):
        mats = []
        for k, held in FOLDS.items():
            train = [r for r in recs if r not in held]
            ruled = tmp_path / f"ruled{i}{k}.pt"
            args = ["--add-rules", str(w), "--config", str(cfg), "--prematurity-quantile", "0.1",
                    "--v-prematurity-quantile", "0.07", "--early-beat-quantile", "0.005", "--early-run-beats", "10",
                    "--early-run-quantile", "0.01", "--early-beat-to-v", "--logit-offset", "V=-0.25", "--post-pause-rule", "0.9,1.2",
                    "--weights-out", str(ruled),
                    "--protocol", "inter", "--records", f"{','.join(train)};{','.join(held)}", "--duration", DURATION,
                    "--data-dir", str(mitdb), "--cache", str(cache), "--no-progress"]  # fmt: skip
            assert train_cli.main(args) == 0
            ev = tmp_path / f"ev{i}{k}"
            assert evaluate.main(["--weights", str(ruled), "--records", ",".join(held), "--duration", DURATION,
                                  "--data-dir", str(mitdb), "--out", str(ev), "--cache", str(cache), "--no-progress"]) == 0
            mats.append(json.loads((ev / "metrics.json").read_text())["ec57"]["matrix_rows_ref_NSVFQ_none"])
        se, ppv = _pooled(mats)["S"]
        f1s.append(2 * se * ppv / (se + ppv))
        if i == 0:
            n_se0 = _pooled(mats)["N"][0]
    assert row["f1"] == pytest.approx(np.mean(f1s), abs=1e-9)
    assert row["f1_seeds"] == pytest.approx(f1s, abs=1e-9) and row["f1_sd"] == pytest.approx(np.std(f1s, ddof=1), abs=1e-9)
    # the V criterion and N Se come from the same tables
    v_rows = sweep_rules(folds, parse_grid([], BASE), data=data, fusion_quantile=0.0, criterion="V", progress=False)
    assert len(v_rows) == 1 and 0 < v_rows[0]["f1"] <= 1
    one = sweep_rules([FoldNetworks(k, h, nets[:1]) for k, h in FOLDS.items()], parse_grid(["post_pause_max_pre_normal=0.9", "post_pause_min_ratio=1.2"], BASE), data=data,
                      fusion_quantile=0.0, progress=False)[0]  # fmt: skip
    assert one["N_se"] == pytest.approx(n_se0, abs=1e-12)


def test_grid_and_fold_arguments_are_checked(tmp_path):
    grid = parse_grid(["max_regular=0.5, 0.7", "early_run_beats=10,120"], BASE)
    assert grid["max_regular"] == [0.5, 0.7] and grid["early_run_beats"] == [10.0, 120.0]
    assert grid["prematurity_quantile"] == [0.1]  # the base value
    for bad, match in [
        ("nonsense=1", "NAME one of"), ("max_regular", "NAME one of"), ("max_regular=x", "must be numbers"),
        ("max_regular=", "one or more"), ("prematurity_quantile=0.6", r"\[0, 0.5\)"), ("max_regular=1.5", r"\(0, 1\]"),
        ("early_run_beats=2.5", "whole numbers"), ("max_p_wave=-0.1", r"0 \(none\)"), ("max_regular=nan", "finite"), ("early_beat_to_v=0.5", "0 or 1"),
        ("post_pause_max_pre_normal=1.5", r"\(0, 1\]"), ("post_pause_min_ratio=0.5", "1 to 5"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            parse_grid([bad], BASE)
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["max_regular=0.5", "max_regular=0.6"], BASE)
    with pytest.raises(ConfigError, match=r"\{fold\}"):
        fold_networks("runs/model.pt", 4, [0])
    with pytest.raises(ConfigError, match=r"\{seed\}"):
        fold_networks("runs/f{fold}.pt", 4, [0, 1])
    with pytest.raises(ConfigError, match="criterion"):
        sweep_rules([FoldNetworks(0, ["100"], [tmp_path / "x.pt"])], parse_grid([], BASE), data={}, criterion="Q")


def test_bench_rules_cli_reports_bad_input_in_one_line(mitdb, tmp_path, capsys):
    args = ["rules", "--weights", str(tmp_path / "f{fold}s{seed}.pt"), "--data-dir", str(mitdb), "--no-progress"]
    assert bench.main([*args, "--grid", "bogus=1"]) == 2
    assert bench.main(args) == 2  # no such weights file
    err = capsys.readouterr().err
    assert "NAME one of" in err and "no such model weights file" in err and "Traceback" not in err


def _fold_net(tmp_path, name, train, test, **fz):
    """A copy of the shipped network whose metadata says it was trained on ``train`` and held out ``test``."""
    from monitor.model import load_model, save_weights
    from monitor.resources import asset

    model, meta = load_model(asset("model.pt"))
    meta = {**meta, "training": {**meta["training"], "train_records": train, "test_records": test}}
    meta["featurizer"] = {**meta["featurizer"], **fz}
    return save_weights(tmp_path / f"{name}.pt", model, meta)


def test_fold_networks_refuse_networks_that_saw_their_fold(tmp_path):
    a, b = ["209", "119"], ["118", "208"]
    _fold_net(tmp_path, "f0s0", b, a)
    _fold_net(tmp_path, "f1s0", a, b)
    folds = fold_networks(str(tmp_path / "f{fold}s{seed}.pt"), 2, [0])
    assert [(f.fold, f.records) for f in folds] == [(0, a), (1, b)]
    cases = {
        "own fold": (a + b, b),  # fold 1's network trained on every record
        "not on the other folds": (a[:1], b),  # ... or on fewer than the other folds' records
        "overlap": (a, a),  # two folds hold out the same records
    }
    for match, (train, test) in cases.items():
        _fold_net(tmp_path, "f1s0", train, test)
        with pytest.raises(ConfigError, match=match):
            fold_networks(str(tmp_path / "f{fold}s{seed}.pt"), 2, [0])
    _fold_net(tmp_path, "f1s0", a, b)
    _fold_net(tmp_path, "f0s1", b, a[:1])
    _fold_net(tmp_path, "f1s1", a, b)
    with pytest.raises(ConfigError, match="same fold 0"):
        fold_networks(str(tmp_path / "f{fold}s{seed}.pt"), 2, [0, 1])
    _fold_net(tmp_path, "f0s1", b, a, template_beats=8)
    with pytest.raises(ConfigError, match="featurizer settings differ"):
        fold_networks(str(tmp_path / "f{fold}s{seed}.pt"), 2, [0, 1])
    with pytest.raises(ConfigError, match="no such model weights file"):
        fold_networks(str(tmp_path / "f{fold}s{seed}.pt"), 3, [0])


def test_ecg_train_fold_networks_trains_each_fold_without_its_records(mitdb, tmp_path):
    from monitor.model import load_model
    from trainer.train import TrainConfig

    recs = ["118", "119", "208", "209"]
    common = ["--protocol", "inter", "--duration", DURATION, "--epochs", "1", "--val-folds", "2", "--seed", "3",
              "--data-dir", str(mitdb), "--cache", str(tmp_path / "cache"), "--threads", "1", "--no-progress"]  # fmt: skip
    out = tmp_path / "folds"
    assert train_cli.main([*common, "--records", ",".join(recs) + ";100", "--fold-networks", "--out", str(out)]) == 0
    info = json.loads((out / "folds.json").read_text())
    held = [f["held_out"] for f in info["folds"]]
    assert sorted(r for h in held for r in h) == recs and all(h for h in held)
    data = ds.build_dataset(recs, mitdb, TrainConfig().featurizer, cache=tmp_path / "cache", progress=False, duration_s=float(DURATION))
    assert held == [ds.val_records(recs, data, 2, k) for k in range(2)]  # the folds of --cv
    folds = fold_networks(str(out / "fold-{fold}" / "model.pt"), 2, [0])
    assert [f.records for f in folds] == held
    for f in folds:
        meta = load_model(f.weights[0])[1]["training"]
        assert set(meta["train_records"]) == set(recs) - set(f.records) and meta["test_records"] == f.records
        assert meta["best_epoch"] == 1 and meta["val_records"] == []  # no validation, no epoch chosen
    # fold 0 is the same run as --val-fold none --records "OTHERS;FOLD"
    others = [r for r in recs if r not in held[0]]
    by_hand = tmp_path / "by-hand"
    assert train_cli.main([*common, "--val-fold", "none", "--records", f"{','.join(others)};{','.join(held[0])}",
                           "--out", str(by_hand)]) == 0  # fmt: skip
    a = load_model(out / "fold-0" / "model.pt")[0].state_dict()
    b = load_model(by_hand / "model.pt")[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # ecg-bench rules on them gives what sweep_rules gives
    rows = sweep_rules(folds, parse_grid(["early_run_beats=0,10"], BASE), data=data, fusion_quantile=0.0, progress=False)
    cfg = tmp_path / "rules.toml"
    cfg.write_text("".join(f"{k} = {v}\n" for k, v in BASE.items() if k not in ("V_offset", "max_regular", "max_p_wave", "early_beat_to_v", "normal_reference",
                                                                              "post_pause_max_pre_normal", "post_pause_min_ratio"))
                   + "[logit_offsets]\nV = -0.25\n[af_rule]\nmin_irregular = 0.1\nmax_regular = 0.6\n")
    js = tmp_path / "rows.json"
    assert bench.main(["rules", "--weights", str(out / "fold-{fold}" / "model.pt"), "--folds", "2", "--config", str(cfg),
                       "--grid", "early_run_beats=0,10", "--duration", DURATION, "--data-dir", str(mitdb),
                       "--cache", str(tmp_path / "cache"), "--out", str(js), "--no-progress"]) == 0  # fmt: skip
    assert json.loads(js.read_text()) == json.loads(json.dumps(rows))
    # --resume keeps finished folds
    before = (out / "fold-1" / "model.pt").stat().st_mtime_ns
    assert train_cli.main([*common, "--records", ",".join(recs) + ";100", "--fold-networks", "--out", str(out), "--resume"]) == 0
    assert (out / "fold-1" / "model.pt").stat().st_mtime_ns == before


def test_fold_networks_setting_is_checked(tmp_path, capsys):
    from trainer.train import TrainConfig

    for kw, match in [
        ({"cv": True}, "--no-cv"), ({"protocol": "seed"}, "seed protocol"), ({"val_folds": 1}, "val_folds >= 2"),
        ({"weights_out": "x.pt"}, "weights_out"), ({"fold_networks": "yes"}, "true or false"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            TrainConfig(fold_networks=kw.pop("fold_networks", True), **kw).validate()
    assert train_cli.main(["--fold-networks", "--cv", "--out", str(tmp_path)]) == 2
    assert train_cli.main(["--fold-networks", "--add-rules", str(tmp_path / "w.pt"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--no-cv" in err and "does not go with --add-rules" in err and "Traceback" not in err
