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
    "V_offset": -0.25, "v_prematurity_quantile": 0.07, "prematurity_quantile": 0.1, "max_regular": 0.6,
    "early_beat_quantile": 0.005, "early_run_quantile": 0.01, "early_run_beats": 10,
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
    grid = parse_grid(["prematurity_quantile=0.05,0.1", "early_run_beats=0,10"], BASE)
    rows = sweep_rules(folds, grid, data=data, fusion_quantile=0.0, progress=False)
    assert len(rows) == 4 and rows == sorted(rows, key=lambda r: -r["f1"])
    row = next(r for r in rows if r["prematurity_quantile"] == 0.1 and r["early_run_beats"] == 10)
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
                    "--early-run-quantile", "0.01", "--logit-offset", "V=-0.25", "--weights-out", str(ruled),
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
    # the V criterion and N Se come from the same tables
    v_rows = sweep_rules(folds, parse_grid([], BASE), data=data, fusion_quantile=0.0, criterion="V", progress=False)
    assert len(v_rows) == 1 and 0 < v_rows[0]["f1"] <= 1
    one = sweep_rules([FoldNetworks(k, h, nets[:1]) for k, h in FOLDS.items()], parse_grid([], BASE), data=data,
                      fusion_quantile=0.0, progress=False)[0]  # fmt: skip
    assert one["N_se"] == pytest.approx(n_se0, abs=1e-12)


def test_grid_and_fold_arguments_are_checked(tmp_path):
    grid = parse_grid(["max_regular=0.5, 0.7", "early_run_beats=10,120"], BASE)
    assert grid["max_regular"] == [0.5, 0.7] and grid["early_run_beats"] == [10.0, 120.0]
    assert grid["prematurity_quantile"] == [0.1]  # the base value
    for bad, match in [
        ("nonsense=1", "NAME one of"), ("max_regular", "NAME one of"), ("max_regular=x", "must be numbers"),
        ("max_regular=", "one or more"), ("prematurity_quantile=0.6", r"\[0, 0.5\)"), ("max_regular=1.5", r"\(0, 1\]"),
        ("early_run_beats=2.5", "whole numbers"), ("max_regular=nan", "finite"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            parse_grid([bad], BASE)
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["max_regular=0.5", "max_regular=0.6"], BASE)
    with pytest.raises(ConfigError, match=r"\{fold\}"):
        fold_networks("runs/model.pt", 4, [0], {})
    with pytest.raises(ConfigError, match=r"\{seed\}"):
        fold_networks("runs/f{fold}.pt", 4, [0, 1], {})
    with pytest.raises(ConfigError, match="criterion"):
        sweep_rules([FoldNetworks(0, ["100"], [tmp_path / "x.pt"])], parse_grid([], BASE), data={}, criterion="Q")


def test_bench_rules_cli_reports_bad_input_in_one_line(mitdb, tmp_path, capsys):
    args = ["rules", "--weights", str(tmp_path / "f{fold}s{seed}.pt"), "--data-dir", str(mitdb), "--no-progress"]
    assert bench.main([*args, "--grid", "bogus=1"]) == 2
    assert bench.main(args) == 2  # no such weights file
    err = capsys.readouterr().err
    assert "NAME one of" in err and "no such model weights file" in err and "Traceback" not in err
