"""Out-of-fold sweep of the decision rules' settings: ``ecg-bench rules``.

The settings of the decision rules (:mod:`monitor.model`,
:mod:`monitor.post_pause`, :mod:`monitor.early_run`) are chosen on the training patients alone.  A set
of fold networks is trained, each on the DS1 records outside one
patient-wise fold (the folds of ``ecg-train --cv``: :func:`trainer.dataset.val_records`),
for example the four folds of seed 0::

    ecg-train --config docs/train-shipped.toml --protocol inter --seed 0 --no-cv \\
        --epochs 20 --fold-networks --out runs/folds-s0

which writes ``runs/folds-s0/fold-K/model.pt`` (:func:`trainer.train.train_fold_networks`;
the same run as ``--val-fold none --records "OTHERS,...;FOLD,..."`` for each
fold).  Each network's held-out records are read from its weights
(``test_records``), and the sweep refuses networks that were trained on any
record of their own fold (:func:`fold_networks`).

Each network is scored on the fold it did not see, with every rule's
threshold computed from that network's own training records, and the EC57
table (:func:`trainer.evaluate.ec57_table`) is pooled over the folds, once
per seed, and once for the ensemble of the seeds of each fold (the mean of
their probabilities, as :class:`monitor.model.Ensemble` gives).  Each
network runs once; the rules are applied to its outputs for every setting of
the grid (:meth:`monitor.model.Classifier.apply_rules`), which gives what
``ecg-eval`` gives for the same weights and records.

Settings (``--grid NAME=V1,V2,...``; those not given keep the value of the
training settings, ``--config``):

``V_offset``
    Logit offset of class V (``[logit_offsets] V``).
``v_prematurity_quantile``, ``prematurity_quantile``, ``early_beat_quantile``
    The rules' quantiles (0: no rule).
``early_beat_to_v``
    1: the early-beat rule calls an early beat the more probable of S and V;
    0: S (``ecg-train --early-beat-to-v``).
``max_regular``
    The AF rule's ``max_regular`` (``[af_rule]``; ``min_irregular`` is kept).
``max_p_wave``
    The AF rule's ``max_p_wave`` (``[af_rule]``; 0: none, the rhythm alone decides).
``normal_reference``
    1: the S rules judge prematurity against the mean normal interval
    (``pre_normal``, ``prematurity_reference = "normal"``); 0: against the
    long mean (``pre_long``).
``early_run_quantile``
    The early-run rule's own threshold quantile (0: the early-beat threshold).
``early_run_beats``
    The early-run rule's bound in beats (0: no early-run rule).
``post_pause_max_pre_normal``, ``post_pause_min_ratio``
    The post-pause rule's ``max_pre_normal`` (in (0, 1]) and
    ``min_post_ratio`` (1 to 5); 0 for either: no post-pause rule.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from monitor.labels import AAMI_CLASSES, CLASSES, labels_to_aami
from replay.errors import ConfigError

from . import dataset as ds
from .evaluate import ec57_part, ec57_reference, ec57_table

logger = logging.getLogger(__name__)

__all__ = ["SETTINGS", "FoldNetworks", "add_rules_arguments", "fold_networks", "parse_grid", "sweep_rules"]

#: The settings a sweep can vary, in the order they are reported.
SETTINGS: tuple[str, ...] = (
    "V_offset", "v_prematurity_quantile", "prematurity_quantile", "max_regular", "max_p_wave",
    "early_beat_quantile", "early_beat_to_v", "early_run_quantile", "early_run_beats", "normal_reference",
    "post_pause_max_pre_normal", "post_pause_min_ratio",
)  # fmt: skip


@dataclass
class FoldNetworks:
    """The networks trained without one fold, and that fold's records."""

    fold: int
    records: list[str]
    weights: list[Path]
    #: The networks' featurizer settings (one for all: :func:`fold_networks` checks it), or None.
    featurizer: dict[str, Any] | None = None


def parse_grid(items: Sequence[str], base: dict[str, Any]) -> dict[str, list[float]]:
    """Grid of settings from ``NAME=V1,V2,...`` items; every other setting keeps its value in ``base``.

    Raises
    ------
    ConfigError
        On an unknown name, a repeated name, or a value that is not a
        number in the setting's range.
    """
    grid = {name: [base[name]] for name in SETTINGS}
    seen: set[str] = set()
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or name not in SETTINGS:
            raise ConfigError(f"--grid takes NAME=V1,V2,... with NAME one of {', '.join(SETTINGS)}; got {item!r}")
        if name in seen:
            raise ConfigError(f"--grid {name} given twice")
        seen.add(name)
        try:
            vals = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--grid {name}: values must be numbers, got {values!r}") from None
        if not vals or not all(math.isfinite(v) for v in vals):
            raise ConfigError(f"--grid {name}: give one or more finite numbers, got {values!r}")
        for v in vals:
            if name.endswith("_quantile") and not 0 <= v < 0.5:
                raise ConfigError(f"--grid {name}: quantiles must be in [0, 0.5), got {v:g}")
            if name == "max_regular" and not 0 < v <= 1:
                raise ConfigError(f"--grid max_regular: values must be in (0, 1], got {v:g}")
            if name == "max_p_wave" and v < 0:
                raise ConfigError(f"--grid max_p_wave: values must be 0 (none) or more, got {v:g}")
            if name in ("early_beat_to_v", "normal_reference") and v not in (0, 1):
                raise ConfigError(f"--grid {name}: values must be 0 or 1, got {v:g}")
            if name == "post_pause_max_pre_normal" and not 0 <= v <= 1:
                raise ConfigError(f"--grid post_pause_max_pre_normal: values must be 0 (no rule) or in (0, 1], got {v:g}")
            if name == "post_pause_min_ratio" and not (v == 0 or 1 <= v <= 5):
                raise ConfigError(f"--grid post_pause_min_ratio: values must be 0 (no rule) or 1 to 5, got {v:g}")
            if name == "early_run_beats" and (v != int(v) or not 0 <= v <= 1000):
                raise ConfigError(f"--grid early_run_beats: values must be whole numbers from 0 to 1000, got {v:g}")
        grid[name] = vals
    return grid


def fold_networks(pattern: str, folds: int, seeds: Sequence[int]) -> list[FoldNetworks]:
    """The fold networks named by ``pattern`` (with ``{fold}`` and ``{seed}``), and each fold's records.

    A fold's records are its networks' ``test_records`` (what ``ecg-train
    --fold-networks`` or ``--records "OTHERS;FOLD"`` stores in the weights).

    Raises
    ------
    ConfigError
        When a file is missing or unreadable, the networks of one fold were
        held out on different records, two folds share a record, a network
        was trained on other records than those of the other folds (above
        all, on its own fold's), or the networks' featurizer settings
        differ (the sweep builds one set of beats for all of them).
    """
    from monitor.model import load_model

    if "{fold}" not in pattern:
        raise ConfigError(f"--weights must name the fold networks with {{fold}} (and {{seed}}), got {pattern!r}")
    if len(seeds) > 1 and "{seed}" not in pattern:
        raise ConfigError(f"--weights must contain {{seed}} when several seeds are given, got {pattern!r}")
    if not seeds:
        raise ConfigError("give at least one seed (--seeds)")
    out, trained, fz0 = [], {}, None
    for k in range(folds):
        paths = [Path(pattern.format(fold=k, seed=s)) for s in seeds]
        held: list[str] | None = None
        for w in paths:
            meta = load_model(w)[1]
            info = meta.get("training", {})
            test = [str(r) for r in info.get("test_records") or []]
            if not test:
                raise ConfigError(f"{w}: the weights name no held-out (test) records; train fold networks with ecg-train --fold-networks")
            if held is None:
                held = test
            elif sorted(test) != sorted(held):
                raise ConfigError(f"{w}: held out records {' '.join(test)}, but {paths[0]} held out {' '.join(held)} (same fold {k})")
            fz = meta["featurizer"]
            if fz0 is None:
                fz0 = (w, fz)
            elif fz != fz0[1]:
                raise ConfigError(f"{w}: featurizer settings differ from those of {fz0[0]}; the networks of a sweep need the same")
            trained[w] = {str(r) for r in info.get("train_records") or []}
        out.append(FoldNetworks(k, list(held or []), paths, dict(fz0[1])))
    every = [r for f in out for r in f.records]
    dup = sorted({r for r in every if every.count(r) > 1})
    if dup:
        raise ConfigError(f"the folds' held-out records overlap: {' '.join(dup)} (give the networks of distinct folds)")
    for f in out:
        others = set(every) - set(f.records)
        for w in f.weights:
            seen = trained[w] & set(f.records)
            if seen:
                raise ConfigError(f"{w}: trained on {' '.join(sorted(seen))}, records of its own fold {f.fold}: its scores would not be out of fold")
            if trained[w] != others:
                raise ConfigError(f"{w}: trained on {' '.join(sorted(trained[w])) or 'no records'}, not on the other folds' "
                                  f"records {' '.join(sorted(others))}")  # fmt: skip
    return out


def _thresholds(data, train_recs: list[str], rr_names, min_irregular: float, grid: dict[str, list[float]], fusion_q: float):
    """Every rule threshold the grid needs, from the training records' beats."""
    from monitor.model import s_rule_rr

    from .train import early_beat_thresholds, fusion_threshold, prematurity_threshold

    split = ds.make_split("inter", data, seed=0, val_fold=None, train_records=train_recs, test_records=())
    wt, rt, yt, _ = ds.stack(data, split.train)
    ht = ds.stack_rhythm(data, split.train)
    th: dict[Any, Any] = {"fusion": fusion_threshold(wt, yt, fusion_q)["max_template_rms"] if fusion_q else None}
    for q in grid["v_prematurity_quantile"]:
        th["V", q] = prematurity_threshold(rt, yt, rr_names, q, aami="V")["max_rr_ratio"] if q else None
    for nr in grid["normal_reference"]:  # the S rules' thresholds are quantiles of their own ratio
        rt_s = s_rule_rr(rt, ht, list(rr_names).index("pre_long")) if nr else rt
        for q in grid["prematurity_quantile"]:
            th["S", nr, q] = prematurity_threshold(rt_s, yt, rr_names, q)["max_rr_ratio"] if q else None
        for mr, mp in itertools.product(grid["max_regular"], grid["max_p_wave"]):
            af = {"min_irregular": min_irregular, "max_regular": mr, "max_p_wave": mp}
            for q in set(grid["early_beat_quantile"]) | set(grid["early_run_quantile"]):
                if q:
                    t = early_beat_thresholds(rt_s, yt, ht, rr_names, af, q)
                    th["early", nr, mr, mp, q] = (t["max_pre_long"], t["max_pre_local"])
    return th


def _with_offsets(p: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probabilities ``p`` with logit offsets ``bias`` added (what the weights' ``logit_bias`` does)."""
    from scipy.special import softmax

    return softmax(np.log(np.maximum(p, 1e-12)) + bias, axis=1).astype(np.float32)


def sweep_rules(
    folds: list[FoldNetworks],
    grid: dict[str, list[float]],
    *,
    data: dict[str, ds.RecordBeats],
    min_irregular: float = 0.1,
    fusion_quantile: float = 0.01,
    criterion: str = "S",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Score every setting of ``grid`` out of fold; one row per setting, best ``criterion`` F1 first.

    Parameters
    ----------
    folds : list of FoldNetworks
        The held-out records of each fold and the networks trained without
        them (the same number of networks, one per seed, for each fold).
    grid : dict
        Values of each setting of :data:`SETTINGS` (:func:`parse_grid`).
    data : dict
        Built beats (:func:`trainer.dataset.build_dataset`) of every record
        of the folds, with the networks' featurizer settings.
    min_irregular : float
        The AF rule's ``min_irregular``.
    fusion_quantile : float
        Quantile of the fusion rule (0: none).
    criterion : {"N", "S", "V", "F"}
        AAMI class whose EC57 F1 orders the rows.

    Returns
    -------
    list of dict
        Per setting: the settings, then for the mean of the seeds' single
        networks and for the ensembles: the criterion's F1, Se and +P, and
        N Se (fractions); and each seed's F1 (``f1_seeds``) and their
        standard deviation (``f1_sd``, nan for one seed).
    """
    from tqdm import tqdm

    from monitor.early_run import EarlyRunRule
    from monitor.model import Classifier, af_thresholds, load_model
    from monitor.pipeline import apply_stream_rules
    from monitor.post_pause import PostPauseRule

    if criterion not in AAMI_CLASSES[:4]:
        raise ConfigError(f"criterion must be one of N, S, V, F, got {criterion!r}")
    n_seeds = {len(f.weights) for f in folds}
    if len(n_seeds) != 1 or not n_seeds.pop():
        raise ConfigError("every fold needs the same number (at least one) of networks")
    all_recs = [r for f in folds for r in f.records]
    settings = list(itertools.product(*(grid[name] for name in SETTINGS)))
    parts: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    v = CLASSES.index("V")
    for fold in tqdm(folds, desc="folds", unit="fold", disable=not progress):
        train_recs = [r for r in all_recs if r not in fold.records]
        clfs = []
        for w in fold.weights:
            model, meta = load_model(w)
            if tuple(meta["classes"]) != CLASSES:
                raise ConfigError(f"{w}: model classes {meta['classes']} differ from {CLASSES}")
            if not {"pre_long", "pre_local"} <= set(meta["rr_names"]):
                raise ConfigError(f"{w}: the rules need the pre_long and pre_local RR features")
            clfs.append(Classifier(model, meta))
        c = clfs[0]
        th = _thresholds(data, train_recs, list(c.meta["rr_names"]), min_irregular, grid, fusion_quantile)
        base_bias = c.logit_bias.cpu().numpy().astype(np.float64)  # the other classes' offsets are kept
        for clf in clfs:
            clf.logit_bias.zero_()  # the offsets are applied below, per setting
        for r in fold.records:
            rb = data[r]
            raw = [clf.network_proba(rb.windows, rb.rr) for clf in clfs]  # no offset, no rule
            ref = ec57_reference(rb)
            members = [(f"s{i}", p) for i, p in enumerate(raw)] + [("ensemble", np.mean(raw, axis=0))]
            for setting in settings:
                s = dict(zip(SETTINGS, setting))
                bias = base_bias.copy()
                bias[v] = s["V_offset"]
                c.fusion_max_template_rms = th["fusion"]
                mp = s["max_p_wave"]
                c.af_rule = c.early_beat_af_rule = af_thresholds({"min_irregular": min_irregular, "max_regular": s["max_regular"], "max_p_wave": mp})
                nr = s["normal_reference"]
                c.prematurity_reference = "normal" if nr else "long"
                c.prematurity_max_rr_ratio = th["S", nr, s["prematurity_quantile"]]
                c.v_prematurity_max_rr_ratio = th["V", s["v_prematurity_quantile"]]
                eq = s["early_beat_quantile"]
                c.early_beat_rule = th["early", nr, s["max_regular"], mp, eq] if eq else None
                c.early_beat_to_v = bool(s["early_beat_to_v"])
                k = int(s["early_run_beats"])
                c.early_run_beats = k if (k and eq) else None
                rq = s["early_run_quantile"]
                c.early_run_max_pre_long = th["early", nr, s["max_regular"], mp, rq][0] if rq else None
                runs = EarlyRunRule.for_classifier(c)
                pa, pb = s["post_pause_max_pre_normal"], s["post_pause_min_ratio"]
                c.post_pause_rule = (pa, pb) if pa and pb else None
                pauses = PostPauseRule.for_classifier(c)
                for who, p0 in members:
                    p = c.apply_rules(_with_offsets(p0, bias), rb.windows, rb.rr, rb.rhythm)
                    p = apply_stream_rules(p, rb.rr, rb.rhythm, pauses, runs)
                    parts.setdefault((setting, who), []).append(ec57_part(r, rb, labels_to_aami(p.argmax(1)), ref))
    rows = []
    seeds = [f"s{i}" for i in range(len(folds[0].weights))]
    for setting in settings:
        singles = [ec57_table(parts[setting, who]) for who in seeds]
        ens = ec57_table(parts[setting, "ensemble"])
        row: dict[str, Any] = dict(zip(SETTINGS, setting))
        row["early_run_beats"] = int(row["early_run_beats"])
        row["early_beat_to_v"] = int(row["early_beat_to_v"])
        row["normal_reference"] = int(row["normal_reference"])
        f1s = [_f1(t[criterion]) for t in singles]
        row.update({
            "f1": float(np.mean(f1s)),
            "f1_seeds": f1s, "f1_sd": float(np.std(f1s, ddof=1)) if len(f1s) > 1 else float("nan"),
            "se": float(np.mean([t[criterion]["se"] for t in singles])),
            "ppv": float(np.mean([t[criterion]["ppv"] for t in singles])),
            "N_se": float(np.mean([t["N"]["se"] for t in singles])),
            "ensemble_f1": _f1(ens[criterion]), "ensemble_se": ens[criterion]["se"],
            "ensemble_ppv": ens[criterion]["ppv"], "ensemble_N_se": ens["N"]["se"],
        })  # fmt: skip
        rows.append(row)
    rows.sort(key=lambda x: -x["f1"] if math.isfinite(x["f1"]) else math.inf)
    return rows


def _f1(cls: dict[str, Any]) -> float:
    """F1 of Se and +P (nan where either is undefined, 0 where both are 0)."""
    se, ppv = cls["se"], cls["ppv"]
    if not (math.isfinite(se) and math.isfinite(ppv)):
        return float("nan")
    return 2 * se * ppv / (se + ppv) if se + ppv else 0.0


def main_rules(args: argparse.Namespace) -> int:
    """``ecg-bench rules``: print the best settings and write every row to ``--out``."""
    from .train import TrainConfig, load_config_file

    cfg = TrainConfig(**load_config_file(args.config)).validate() if args.config else TrainConfig().validate()
    af = dict(cfg.af_rule) or {"min_irregular": 0.1, "max_regular": 0.6}
    base = {
        "V_offset": float(cfg.logit_offsets.get("V", 0.0)), "v_prematurity_quantile": cfg.v_prematurity_quantile,
        "prematurity_quantile": cfg.prematurity_quantile, "max_regular": float(af["max_regular"]),
        "max_p_wave": float(af.get("max_p_wave", 0.0)),
        "early_beat_quantile": cfg.early_beat_quantile, "early_beat_to_v": float(cfg.early_beat_to_v),
        "early_run_quantile": cfg.early_run_quantile,
        "early_run_beats": cfg.early_run_beats,
        "normal_reference": float(cfg.prematurity_reference == "normal"),
        "post_pause_max_pre_normal": float(cfg.post_pause_rule.get("max_pre_normal", 0.0)),
        "post_pause_min_ratio": float(cfg.post_pause_rule.get("min_post_ratio", 0.0)),
    }  # fmt: skip
    grid = parse_grid(args.grid or [], base)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    folds = fold_networks(args.weights, args.folds, seeds)
    fz = folds[0].featurizer
    records = [r for f in folds for r in f.records]
    data = ds.build_dataset(records, args.data_dir, fz, cache=args.cache, progress=not args.no_progress, duration_s=args.duration)
    n = math.prod(len(v) for v in grid.values())
    print(f"{n} setting(s) x {len(folds)} folds x {len(seeds)} seed(s); criterion: EC57 {args.criterion} F1 "
          f"out of fold, pooled over the {len(records)} records (mean and SD over the seeds; ensemble)")
    rows = sweep_rules(folds, grid, data=data, min_irregular=float(af["min_irregular"]),
                       fusion_quantile=cfg.fusion_quantile, criterion=args.criterion, progress=not args.no_progress)
    head = " ".join(f"{name:>22}" for name in SETTINGS)
    c = args.criterion
    print(f"{head} {c + ' F1':>7} {'SD':>6} {c + ' Se':>6} {c + ' +P':>6} {'N Se':>6} {'ens F1':>7}")
    for row in rows[: args.top]:
        vals = " ".join(f"{row[name]:>22g}" for name in SETTINGS)
        print(f"{vals} {row['f1']:7.4f} {row['f1_sd']:6.4f} {100 * row['se']:6.1f} {100 * row['ppv']:6.1f} {100 * row['N_se']:6.2f} {row['ensemble_f1']:7.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
        print(f"every setting: {args.out}")
    return 0


def add_rules_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``ecg-bench rules``."""
    parser.add_argument("--weights", required=True, metavar="PATTERN",
                        help="fold networks, e.g. 'runs/folds-s{seed}/fold-{fold}/model.pt' (ecg-train --fold-networks: "
                        "each trained without fold {fold}, whose records it names)")
    parser.add_argument("--folds", type=int, default=4, help="number of folds, {fold} = 0 to FOLDS-1, as ecg-train --val-folds (default 4)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of the pattern (default 0)")
    parser.add_argument("--config", default=None, help="training settings whose rule settings are the defaults "
                        "(e.g. docs/train-shipped.toml)")
    parser.add_argument("--grid", action="append", metavar="NAME=V1,V2,...",
                        help=f"values to try for one setting (repeatable): {', '.join(SETTINGS)}")
    parser.add_argument("--criterion", default="S", choices=("N", "S", "V", "F"),
                        help="AAMI class whose EC57 F1 is maximised (default S)")
    parser.add_argument("--top", type=int, default=10, help="rows printed (default 10)")
    parser.add_argument("--out", default=None, metavar="FILE", help="write every setting's row as JSON")
    parser.add_argument("--data-dir", default=None, metavar="DIR")
    parser.add_argument("--cache", default=None, help="dataset cache directory")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="use only the first SECONDS of each record (quick runs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=main_rules)
