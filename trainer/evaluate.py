"""``ecg-eval``: evaluate a beat classifier through the live pipeline's beats.

The test records are processed exactly as the live monitor processes them
(:func:`monitor.beats.offline_beats`: the monitor's filter and online
detector, then :class:`monitor.beats.BeatFeaturizer` with the model's own
settings), the classifier labels every detected beat, and the results are
scored against the reference annotations.

Two kinds of figures are written to ``metrics.json``:

``classes`` / ``accuracy`` / ``macro_f1`` / ``roc_auc``
    Beat classification of the detected beats that matched a reference beat
    with a class (the usual "classifier" figures): per model class Se, +P,
    specificity, F1; one-vs-rest ROC-AUC.
``ec57``
    The AAMI table (N, S, V, F, Q: Se, +P) of the whole live chain, in the
    spirit of ANSI/AAMI EC57: a reference beat the detector missed is a
    false negative of its class, and a detection with no reference beat
    within 150 ms that the classifier calls S (or V...) is a false positive
    of that class.  Given with and without record 232 (which holds most DS2
    S beats).  For the ``seed`` protocol (a split by beat) only the
    classification table is meaningful and missed beats are not counted.
``ec57_by_record``
    The same table record by record, and the EC57 *average* statistics (the
    means of the per-record Se and +P), which weigh every patient alike
    where the gross table above weighs every beat alike
    (:func:`ec57_by_record`); ``report.md`` shows both.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from monitor.labels import (
    AAMI_CLASSES,
    CLASS_TO_AAMI,
    CLASSES,
    NO_REFERENCE,
    SYMBOL_TO_CLASS,
    labels_to_aami,
)
from replay import _cli
from replay.errors import ConfigError

from . import dataset as ds
from .metrics import confusion, macro_f1, per_class, roc_auc_ovr, roc_curve

logger = logging.getLogger(__name__)

__all__ = ["ec57_by_record", "ec57_part", "ec57_reference", "ec57_table", "evaluate", "main"]


def ec57_reference(rb: ds.RecordBeats) -> dict[str, Any]:
    """What :func:`ec57_part` needs of a record besides the labels: its classed reference beats and their match.

    Computed once per record; it does not depend on the classifier.
    """
    from .ec57 import match_beats

    # reference beats with a class; each is scored by its matched detection's label, or missed
    has_cls = np.array([s in SYMBOL_TO_CLASS for s in rb.ref_symbol], dtype=bool)
    ref_aami = np.array([AAMI_CLASSES.index(CLASS_TO_AAMI[SYMBOL_TO_CLASS[s]]) for s in rb.ref_symbol[has_cls]], np.int64)
    return {"has_cls": has_cls, "ref_aami": ref_aami, "match": match_beats(rb.ref_sample, rb.sample, rb.fs, 0.15),
            "n_ref": rb.ref_sample.size, "extra": rb.label == NO_REFERENCE}  # fmt: skip


def ec57_part(record: str, rb: ds.RecordBeats, pred_aami: np.ndarray, ref: dict[str, Any] | None = None) -> dict[str, Any]:
    """One record's entry of :func:`ec57_table`.

    Parameters
    ----------
    record : str
        Record name.
    rb : trainer.dataset.RecordBeats
        The record's detected beats and reference annotations.
    pred_aami : numpy.ndarray of int
        AAMI class index given to each detected beat of ``rb`` (every beat,
        in order).
    ref : dict, optional
        :func:`ec57_reference` of ``rb``, when already computed.
    """
    ref = ref if ref is not None else ec57_reference(rb)
    m = ref["match"]
    ref_pred = np.full(ref["n_ref"], -1, np.int64)
    ref_pred[m.ref_matched] = pred_aami[m.test_matched]
    return {"record": record, "ref_aami": ref["ref_aami"], "ref_pred": ref_pred[ref["has_cls"]], "extra_pred": pred_aami[ref["extra"]]}


def ec57_table(parts: list[dict[str, Any]], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """AAMI Se / +P of the live chain over records (see the module notes).

    Parameters
    ----------
    parts : list of dict
        Per record: ``record``, ``ref_aami`` (AAMI index of each reference
        beat with a class), ``ref_pred`` (predicted AAMI index of its matched
        detection, -1 when missed), ``extra_pred`` (predicted AAMI index of
        each detection without a reference beat).
    exclude : tuple of str
        Records left out.
    """
    k = len(AAMI_CLASSES)
    # rows: reference N S V F Q, "none" ; columns: predicted N S V F Q, "missed"
    m = np.zeros((k + 1, k + 1), dtype=np.int64)
    for p in parts:
        if p["record"] in exclude:
            continue
        pred = np.where(p["ref_pred"] < 0, k, p["ref_pred"])
        np.add.at(m, (p["ref_aami"], pred), 1)
        np.add.at(m, (np.full(p["extra_pred"].size, k), p["extra_pred"]), 1)
    out: dict[str, Any] = {"matrix_rows_ref_NSVFQ_none": m.tolist(), "columns": [*AAMI_CLASSES, "missed"]}
    for i, c in enumerate(AAMI_CLASSES):
        tp = m[i, i]
        ref = m[i].sum()
        pred = m[:, i].sum()
        out[c] = {
            "se": float(tp / ref) if ref else float("nan"),
            "ppv": float(tp / pred) if pred else float("nan"),
            "reference_beats": int(ref),
            "detected_as": int(pred),
            "tp": int(tp),
        }
    return out


def ec57_by_record(parts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Record-by-record AAMI Se / +P of the live chain, and their average statistics.

    EC57 reports each record's beat-by-beat comparison as well as the gross
    statistics of :func:`ec57_table` (counts summed over records); the
    *average* statistics are the means of the per-record ratios over the
    records where each is defined, which weigh every patient alike rather
    than every beat (record 232's 1 382 S beats, for example).

    Parameters
    ----------
    parts : list of dict
        :func:`ec57_part` of each record, as for :func:`ec57_table`.

    Returns
    -------
    dict
        ``records``: per record (in the order of ``parts``), per AAMI class:
        ``reference_beats``, ``detected_as`` (detections given the class,
        with or without a reference beat), ``tp``, ``se`` and ``ppv``
        (fractions; nan where the class has no reference beat or no
        detection); and ``missed`` (reference beats with a class that no
        detection matched) and ``extra`` (detections without a reference
        beat).  ``average``: per AAMI class, ``se`` and ``ppv`` (the mean over
        the records where each is defined, nan when none) and ``se_records``
        and ``ppv_records`` (how many records each mean is over).
    """
    records: dict[str, Any] = {}
    for p in parts:
        t = ec57_table([p])
        row: dict[str, Any] = {c: t[c] for c in AAMI_CLASSES}
        row["missed"] = int(np.sum(p["ref_pred"] < 0))
        row["extra"] = int(p["extra_pred"].size)
        records[p["record"]] = row
    average: dict[str, Any] = {}
    for c in AAMI_CLASSES:
        se = [r[c]["se"] for r in records.values() if math.isfinite(r[c]["se"])]
        ppv = [r[c]["ppv"] for r in records.values() if math.isfinite(r[c]["ppv"])]
        average[c] = {"se": float(np.mean(se)) if se else float("nan"), "ppv": float(np.mean(ppv)) if ppv else float("nan"),
                      "se_records": len(se), "ppv_records": len(ppv)}  # fmt: skip
    return {"records": records, "average": average}


def _history_for(weights: Path) -> Path | None:
    for cand in (weights.parent / (weights.stem + ".history.json"), weights.parent / "history.json"):
        if cand.exists():
            return cand
    return None


def evaluate(
    weights: str | Path,
    protocol: str,
    out: str | Path,
    *,
    data_dir: str | None = None,
    records: list[str] | None = None,
    duration_s: float | None = None,
    cache: str | None = None,
    threads: int | None = None,
    progress: bool = True,
    use_logit_bias: bool = True,
    member: int | None = None,
    use_fusion_rule: bool = True,
    use_af_rule: bool = True,
    use_prematurity_rule: bool = True,
    use_v_prematurity_rule: bool = True,
    use_early_beat_rule: bool = True,
    use_early_beat_to_v: bool = True,
    use_early_run_rule: bool = True,
    use_post_pause_rule: bool = True,
) -> dict[str, Any]:
    """Evaluate a weights file on a protocol's test records; write the artefacts to ``out``.

    ``use_logit_bias=False`` ignores the weights' per-class logit offsets
    (``ecg-train --calibrate``), to measure what they change.  ``member=K``
    evaluates member K of an ensemble alone (``ecg-train --ensemble``
    stores the final model as member 0), to measure what the ensemble adds.
    The ``use_*_rule=False`` options ignore one of the file's decision
    rules (:mod:`monitor.model`, :mod:`monitor.post_pause`,
    :mod:`monitor.early_run`), to measure it.  The post-pause and early-run
    rules follow each record's beats in order, as the live monitor does: with the seed protocol it runs over every detected beat of
    a record before the test beats are picked.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from monitor.early_run import EarlyRunRule
    from monitor.model import Classifier, load_model, member_count, select_member
    from monitor.pipeline import apply_stream_rules
    from monitor.post_pause import PostPauseRule

    from .train import default_threads

    model, meta = load_model(weights)
    n_members = member_count(meta)
    if member is not None:
        model, meta = select_member(model, meta, member)
    clf = Classifier(model, meta, threads=threads or default_threads())
    if not use_logit_bias:
        clf.logit_bias.zero_()
    fusion_rms = clf.fusion_max_template_rms
    if not use_fusion_rule:
        clf.fusion_max_template_rms = None
    af_thresholds = clf.af_rule
    if not use_af_rule:
        clf.af_rule = None
    prem_ratio = clf.prematurity_max_rr_ratio
    if not use_prematurity_rule:
        clf.prematurity_max_rr_ratio = None
    v_prem_ratio = clf.v_prematurity_max_rr_ratio
    if not use_v_prematurity_rule:
        clf.v_prematurity_max_rr_ratio = None
    early = clf.early_beat_rule
    if not use_early_beat_rule:
        clf.early_beat_rule = None
    to_v = clf.early_beat_to_v
    if not use_early_beat_to_v:
        clf.early_beat_to_v = False
    run_beats = clf.early_run_beats
    run_pre_long = clf.early_run_max_pre_long
    if not use_early_run_rule:
        clf.early_run_beats = None
    post_pause = clf.post_pause_rule
    if not use_post_pause_rule:
        clf.post_pause_rule = None
    weights = Path(weights)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fz_settings = dict(clf.meta["featurizer"])
    train_info = clf.meta.get("training", {})
    _, test_recs = ds.protocol_records(protocol)
    if records is not None:
        test_recs = tuple(records)
    data = ds.build_dataset(test_recs, data_dir, fz_settings, cache=cache, progress=progress, duration_s=duration_s)
    overlap = sorted(set(train_info.get("train_records", [])) & set(test_recs)) if protocol != "seed" else []
    if overlap and protocol == "inter":
        logger.warning("records %s were used in training", " ".join(overlap))
    if protocol == "seed":
        split = ds.make_split("seed", data, seed=int(train_info.get("seed", 0)), train_records=test_recs, test_records=test_recs)
        sel = split.test
        desc = split.description
    else:
        sel = {r: np.arange(len(data[r])) for r in test_recs}
        desc = f"{protocol} protocol: every detected beat of records {' '.join(test_recs)}"
    if tuple(clf.classes) != CLASSES:
        raise ConfigError(f"{weights}: model classes {clf.classes} differ from {CLASSES}")
    ys, ps, parts, recs_of = [], [], [], []
    examples: dict[int, list[np.ndarray]] = {i: [] for i in range(len(CLASSES))}
    runs = EarlyRunRule.for_classifier(clf)
    pauses = PostPauseRule.for_classifier(clf)
    for r in test_recs:
        rb = data[r]
        ix = sel[r]
        if not ix.size:
            prob = np.zeros((0, len(CLASSES)), np.float32)
        elif runs is None and pauses is None:
            prob = clf.predict_proba(rb.windows[ix], rb.rr[ix], rhythm=rb.rhythm[ix])
        else:  # in stream order over every beat, as live (each record a stream of its own)
            prob = apply_stream_rules(clf.predict_proba(rb.windows, rb.rr, rhythm=rb.rhythm), rb.rr, rb.rhythm, pauses, runs)[ix]
        lab = rb.label[ix]
        ys.append(lab)
        ps.append(prob)
        recs_of.append(np.full(ix.size, r))
        pred_aami = labels_to_aami(prob.argmax(1)) if ix.size else np.zeros(0, np.int64)
        for i in range(len(CLASSES)):
            if len(examples[i]) < 6:
                hit = ix[lab == i][: 6 - len(examples[i])]
                examples[i].extend(rb.windows[h, 0] for h in hit)
        if protocol != "seed":
            parts.append(ec57_part(r, rb, pred_aami))
    y = np.concatenate(ys)
    p = np.concatenate(ps)
    rec_all = np.concatenate(recs_of)
    ok = y >= 0
    yl, pl = y[ok], p[ok]
    pred = pl.argmax(1)
    c = confusion(yl, pred, len(CLASSES))
    ca = confusion(labels_to_aami(yl), labels_to_aami(pred), len(AAMI_CLASSES))
    auc = roc_auc_ovr(yl, pl)
    metrics: dict[str, Any] = {
        "weights": str(weights.resolve()),
        "protocol": protocol,
        "description": desc,
        "records": list(test_recs),
        "n_beats_classified": int(ok.sum()),
        "n_detections_without_reference": int((y == NO_REFERENCE).sum()),
        "accuracy": float((pred == yl).mean()) if yl.size else float("nan"),
        "macro_f1": macro_f1(c),
        "classes": per_class(c, CLASSES),
        "roc_auc": {CLASSES[k]: v for k, v in auc.items()},
        "roc_auc_macro": float(np.mean(list(auc.values()))) if auc else float("nan"),
        "confusion": {"classes": list(CLASSES), "rows_true_cols_pred": c.tolist()},
        "aami_classification": per_class(ca, AAMI_CLASSES),
        "aami_confusion": ca.tolist(),
        "featurizer": fz_settings,
        "training": train_info,
        "logit_bias": dict(zip(CLASSES, clf.logit_bias.cpu().tolist())),
        "logit_bias_ignored": not use_logit_bias and "logit_bias" in clf.meta,
        "fusion_max_template_rms": fusion_rms,
        "fusion_rule_ignored": not use_fusion_rule and fusion_rms is not None,
        "af_rule": None if af_thresholds is None else dict(zip(("min_irregular", "max_regular", "max_p_wave"), af_thresholds)),
        "af_rule_ignored": not use_af_rule and af_thresholds is not None,
        "prematurity_reference": clf.prematurity_reference,
        "prematurity_max_rr_ratio": prem_ratio,
        "prematurity_rule_ignored": not use_prematurity_rule and prem_ratio is not None,
        "v_prematurity_max_rr_ratio": v_prem_ratio,
        "v_prematurity_rule_ignored": not use_v_prematurity_rule and v_prem_ratio is not None,
        "early_beat_rule": None if early is None else {"max_pre_long": early[0], "max_pre_local": early[1]},
        "early_beat_rule_ignored": not use_early_beat_rule and early is not None,
        "early_beat_to_v": to_v,
        "early_beat_to_v_ignored": not use_early_beat_to_v and to_v,
        "early_run_beats": run_beats,
        "early_run_max_pre_long": run_pre_long,
        "early_run_rule_ignored": not use_early_run_rule and run_beats is not None,
        "post_pause_rule": None if post_pause is None else {"max_pre_normal": post_pause[0], "min_post_ratio": post_pause[1]},
        "post_pause_rule_ignored": not use_post_pause_rule and post_pause is not None,
        "members_in_file": n_members,
        "member_evaluated": member,
    }
    no232 = rec_all[ok] != "232"
    if (~no232).any():
        c2 = confusion(labels_to_aami(yl[no232]), labels_to_aami(pred[no232]), len(AAMI_CLASSES))
        metrics["aami_classification_without_232"] = per_class(c2, AAMI_CLASSES)
        metrics["accuracy_without_232"] = float((pred[no232] == yl[no232]).mean())
    if parts:
        metrics["ec57"] = ec57_table(parts)
        metrics["ec57_by_record"] = ec57_by_record(parts)
        if any(pp["record"] == "232" for pp in parts):
            metrics["ec57_without_232"] = ec57_table(parts, exclude=("232",))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    _figures(out, c, ca, yl, pl, examples, _history_for(weights))
    _report(out, metrics, weights)
    return metrics


def _figures(out: Path, c, ca, y, p, examples, history: Path | None) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, mat, names, title in ((axes[0], c, CLASSES, "model classes"), (axes[1], ca, AAMI_CLASSES, "AAMI classes")):
        rown = mat / np.maximum(1, mat.sum(1, keepdims=True))
        ax.imshow(rown, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, str(mat[i, j]), ha="center", va="center", fontsize=8, color="black" if rown[i, j] < 0.6 else "white")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(f"Confusion ({title}; colour = row fraction)")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    for k, name in enumerate(CLASSES):
        pos = y == k
        if pos.any() and (~pos).any():
            fpr, tpr = roc_curve(pos, p[:, k])
            ax.plot(fpr, tpr, label=f"{name} (n={int(pos.sum())})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (Se)")
    ax.set_title("One-vs-rest ROC curves")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "roc_curves.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(CLASSES), figsize=(2.2 * len(CLASSES), 2.6), sharey=True)
    for k, ax in enumerate(axes):
        for w in examples[k]:
            ax.plot(w, lw=0.8)
        ax.set_title(f"{CLASSES[k]} ({len(examples[k])})")
        ax.set_xlabel("sample (model rate)")
    axes[0].set_ylabel("normalised amplitude")
    fig.suptitle("Example test beats per reference class (model input, channel 0)")
    fig.tight_layout()
    fig.savefig(out / "example_beats.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if history is not None:
        h = json.loads(history.read_text())["epochs"]
        ep = [e["epoch"] for e in h]
        axes[0].plot(ep, [e["train_loss"] for e in h], label="train (weighted CE)")
        validated = any("val_loss" in e for e in h)  # not with --val-fold none
        if validated:
            axes[0].plot(ep, [e.get("val_loss", np.nan) for e in h], label="validation (plain CE)")
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("loss")
        axes[0].legend()
        if validated:
            for key in ("val_accuracy", "val_macro_f1", "val_aami_nsv_f1", "val_S_se", "val_S_ppv", "val_V_se", "val_V_ppv"):
                axes[1].plot(ep, [e.get(key, np.nan) for e in h], label=key[4:])
            axes[1].set_xlabel("epoch")
            axes[1].set_ylim(0, 1.02)
            axes[1].legend(fontsize=7)
            axes[1].set_title("validation (held-out training records)")
        else:
            axes[1].text(0.5, 0.5, "trained without validation records\n(every epoch run, the last one saved)", ha="center", va="center")
            axes[1].set_axis_off()
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no training history next to the weights", ha="center", va="center")
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=100)
    plt.close(fig)


def _pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def _f3(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _models_scored(m: dict[str, Any]) -> str:
    """What ``metrics.json`` scored: one model, an ensemble, or one member of it."""
    if m.get("member_evaluated") is not None:
        return f"member {m['member_evaluated']} alone of an ensemble of {m['members_in_file']} (--member)"
    if m.get("members_in_file", 1) > 1:
        return f"an ensemble of {m['members_in_file']} (mean of their probabilities)"
    return "one"


def _report(out: Path, m: dict[str, Any], weights: Path) -> None:
    lines = [
        f"# Evaluation of `{weights.name}` ({m['protocol']} protocol)",
        "",
        m["description"] + ".",
        "",
        ("Beats come from the live monitor's own filter, online detector and featurizer "
        "(`monitor.beats.offline_beats`, `BeatFeaturizer`)."),
        "",
        f"* classified beats (matched to a reference beat with a class): {m['n_beats_classified']}",
        f"* detections without a reference beat within 150 ms: {m['n_detections_without_reference']}",
        f"* accuracy {_pct(m['accuracy'])} %, macro-F1 {m['macro_f1']:.3f}, macro one-vs-rest ROC-AUC {m['roc_auc_macro']:.3f}",
        "* logit offsets added before the softmax: "
        + (", ".join(f"{c} {b:+.2f}" for c, b in m["logit_bias"].items()) if any(m["logit_bias"].values()) else "none")
        + (" (the file's offsets were ignored: --no-logit-bias)" if m["logit_bias_ignored"] else ""),
        "* fusion rule (beats closer to their template than this RMS are not called F): "
        + ("none" if m["fusion_max_template_rms"] is None else f"{m['fusion_max_template_rms']:.3f}")
        + (" (ignored: --no-fusion-rule)" if m["fusion_rule_ignored"] else ""),
        "* AF rule (no S label while the rhythm looks like atrial fibrillation): "
        + ("none" if m["af_rule"] is None else f"irregularity (median difference of intervals 1 to 3 apart, smallest lag) > {m['af_rule']['min_irregular']:g} of the median interval "
           f"and under {m['af_rule']['max_regular']:.0%} of intervals within 10 % of it"
           + (f", and the P wave of the recent beats' template at most {m['af_rule']['max_p_wave']:g} of their QRS range" if "max_p_wave" in m["af_rule"] else ""))
        + (" (ignored: --no-af-rule)" if m["af_rule_ignored"] else ""),
        "* reference of the S rules' ratios (prematurity, early-beat, early-run): "
        + ("the mean of the recent normal intervals (pre_normal; premature ones and the pause after each left out)"
           if m.get("prematurity_reference") == "normal" else "the long mean RR (pre_long)"),
        "* prematurity rule (beats whose pre-RR over the S rules' reference is at or above this ratio are not called S): "
        + ("none" if m["prematurity_max_rr_ratio"] is None else f"{m['prematurity_max_rr_ratio']:.3f}")
        + (" (ignored: --no-prematurity-rule)" if m["prematurity_rule_ignored"] else ""),
        "* V prematurity rule (beats whose pre-RR over the long mean RR is at or above this ratio are not called V): "
        + ("none" if m.get("v_prematurity_max_rr_ratio") is None else f"{m['v_prematurity_max_rr_ratio']:.3f}")
        + (" (ignored: --no-v-prematurity-rule)" if m.get("v_prematurity_rule_ignored") else ""),
        "* early-beat rule (beats called N whose pre-RR is below both ratios of the S rules' reference and the local mean RR, "
        "outside AF-like rhythm, are called S" + (", or V where the network gives V more than S" if m.get("early_beat_to_v") else "")
        + "): "
        + ("none" if m["early_beat_rule"] is None
           else f"{m['early_beat_rule']['max_pre_long']:.3f} and {m['early_beat_rule']['max_pre_local']:.3f}")
        + (" (ignored: --no-early-beat-rule)" if m["early_beat_rule_ignored"] else "")
        + (" (called S only: --no-early-beat-to-v)" if m.get("early_beat_to_v_ignored") else ""),
        "* early-run rule (after an early beat called S, the following beats called N that still come early against "
        "the S rules' reference are called S, for at most this many beats): "
        + ("none" if m.get("early_run_beats") is None else f"{m['early_run_beats']} beats")
        + ("" if m.get("early_run_max_pre_long") is None
           else f", later beats of a run below {m['early_run_max_pre_long']:.3f} times the S rules' reference")
        + (" (ignored: --no-early-run-rule)" if m.get("early_run_rule_ignored") else ""),
        "* post-pause rule (beats called N outside AF-like rhythm whose pre-RR is below the first ratio of the mean "
        "recent normal interval and whose next interval is longer than the second ratio times their own are called S; "
        "live, such a beat's label is provisional until the next beat): "
        + ("none" if m.get("post_pause_rule") is None
           else f"{m['post_pause_rule']['max_pre_normal']:g} and {m['post_pause_rule']['min_post_ratio']:g}")
        + (" (ignored: --no-post-pause-rule)" if m.get("post_pause_rule_ignored") else ""),
        "* models: " + _models_scored(m),
        "",
        "## Per model class",
        "",
        "| class | n | Se % | +P % | Spec % | F1 | ROC-AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, v in m["classes"].items():
        auc = m["roc_auc"].get(c)
        lines.append(
            f"| {c} | {v['support']} | {_pct(v['se'])} | {_pct(v['ppv'])} | {_pct(v['spec'])} | "
            f"{_f3(v['f1'])} | {_f3(auc)} |"
        )
    if "ec57" in m:
        lines += ["", "## AAMI classes, whole live chain (EC57-style: missed beats are FN, beats without reference are FP)", ""]
        lines += ["| AAMI | ref beats | Se % | +P % | Se % w/o 232 | +P % w/o 232 |", "|---|---|---|---|---|---|"]
        for c in AAMI_CLASSES:
            a = m["ec57"][c]
            b = m.get("ec57_without_232", {}).get(c, {"se": float("nan"), "ppv": float("nan")})
            lines.append(f"| {c} | {a['reference_beats']} | {_pct(a['se'])} | {_pct(a['ppv'])} | {_pct(b['se'])} | {_pct(b['ppv'])} |")
    if "ec57_by_record" in m:
        lines += _by_record_lines(m["ec57_by_record"])
    lines += ["", "## AAMI classes, classified beats only", "", "| AAMI | n | Se % | +P % | F1 |", "|---|---|---|---|---|"]
    for c, v in m["aami_classification"].items():
        lines.append(f"| {c} | {v['support']} | {_pct(v['se'])} | {_pct(v['ppv'])} | {_f3(v['f1'])} |")
    lines += [
        "",
        "## Figures",
        "",
        "* `confusion_matrix.png`: confusion matrices (model and AAMI classes)",
        "* `roc_curves.png`: one-vs-rest ROC curves",
        "* `example_beats.png`: example test beats per class, as the model sees them",
        "* `training_curves.png`: loss and validation metrics per epoch (from the history saved with the weights)",
        "",
        "![confusion](confusion_matrix.png)",
        "",
        "![roc](roc_curves.png)",
        "",
        "![examples](example_beats.png)",
        "",
        "![training](training_curves.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))


def _by_record_lines(t: dict[str, Any]) -> list[str]:
    """report.md section of :func:`ec57_by_record`: average statistics, then one row per record."""
    lines = ["", "### Average statistics (means of the per-record Se and +P, EC57; each patient counts once)", "",
             "| AAMI | Se % | records | +P % | records |", "|---|---|---|---|---|"]  # fmt: skip
    for c in AAMI_CLASSES:
        a = t["average"][c]
        lines.append(f"| {c} | {_pct(a['se'])} | {a['se_records']} | {_pct(a['ppv'])} | {a['ppv_records']} |")
    classes = AAMI_CLASSES[:4]  # Q: a handful of beats, in metrics.json
    lines += ["", "### Record by record (reference beats, Se % / +P %; a dash: no beat of the class, or none called it)", "",
              "| record | " + " | ".join(f"{c} ref | {c} Se / +P" for c in classes) + " | missed | extra |",
              "|---" * (2 * len(classes) + 3) + "|"]  # fmt: skip
    for rec, row in t["records"].items():
        cells = []
        for c in classes:
            v = row[c]
            cells += [str(v["reference_beats"]), f"{_pct(v['se'])} / {_pct(v['ppv'])}"]
        lines.append(f"| {rec} | " + " | ".join(cells) + f" | {row['missed']} | {row['extra']} |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """Return the ``ecg-eval`` argument parser."""
    p = argparse.ArgumentParser(
        prog="ecg-eval",
        description="Evaluate a beat classifier on a protocol's test records through the live monitor's beats.",
    )
    _cli.add_common_arguments(p)
    p.add_argument("--weights", required=True, help="weights file written by ecg-train")
    p.add_argument("--protocol", choices=ds.PROTOCOLS, default="inter", help="inter: DS2 (default); seed: the seed's held-out beats; all: every record")
    p.add_argument("--out", required=True, help="output directory (metrics.json, report.md, figures)")
    p.add_argument("--data-dir", default=None, help="directory of the MIT-BIH WFDB files")
    p.add_argument("--records", default=None, help="comma-separated test records replacing the protocol's")
    p.add_argument("--duration", type=float, default=None, help="use only the first SECONDS of each record (quick runs)")
    p.add_argument("--cache", default=None, help="dataset cache directory")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-logit-bias", action="store_true",
                   help="ignore the per-class logit offsets stored in the weights (ecg-train --calibrate), to measure their effect")
    p.add_argument("--no-fusion-rule", action="store_true",
                   help="ignore the fusion rule stored in the weights (ecg-train --fusion-quantile), to measure its effect")
    p.add_argument("--no-af-rule", action="store_true",
                   help="ignore the AF rule stored in the weights (af_rule), to measure its effect")
    p.add_argument("--no-prematurity-rule", action="store_true",
                   help="ignore the prematurity rule stored in the weights (ecg-train --prematurity-quantile), to measure its effect")
    p.add_argument("--no-v-prematurity-rule", action="store_true",
                   help="ignore the V prematurity rule stored in the weights (ecg-train --v-prematurity-quantile), to measure its effect")
    p.add_argument("--no-early-beat-rule", action="store_true",
                   help="ignore the early-beat rule stored in the weights (ecg-train --early-beat-quantile), to measure its effect")
    p.add_argument("--no-early-beat-to-v", action="store_true",
                   help="let the early-beat rule call beats S only, ignoring early_beat_to_v stored in the weights "
                        "(ecg-train --early-beat-to-v), to measure its effect")
    p.add_argument("--no-early-run-rule", action="store_true",
                   help="ignore the early-run rule stored in the weights (ecg-train --early-run-beats), to measure its effect")
    p.add_argument("--no-post-pause-rule", action="store_true",
                   help="ignore the post-pause rule stored in the weights (ecg-train --post-pause-rule), to measure its effect")
    p.add_argument("--member", type=int, default=None,
                   help="evaluate only member K (0-based) of an ensemble weights file (ecg-train --ensemble: 0 is the final model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ecg-eval``."""
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args.log_level)

    def body() -> int:
        recs = [r for r in args.records.split(",") if r] if args.records else None
        m = evaluate(
            args.weights, args.protocol, args.out, data_dir=args.data_dir, records=recs, duration_s=args.duration,
            cache=args.cache, threads=args.threads, progress=not args.no_progress, use_logit_bias=not args.no_logit_bias,
            member=args.member, use_fusion_rule=not args.no_fusion_rule, use_af_rule=not args.no_af_rule,
            use_prematurity_rule=not args.no_prematurity_rule, use_v_prematurity_rule=not args.no_v_prematurity_rule,
            use_early_beat_rule=not args.no_early_beat_rule, use_early_beat_to_v=not args.no_early_beat_to_v,
            use_early_run_rule=not args.no_early_run_rule, use_post_pause_rule=not args.no_post_pause_rule,
        )  # fmt: skip
        print(f"accuracy {_pct(m['accuracy'])} %, macro-F1 {m['macro_f1']:.3f}, ROC-AUC {m['roc_auc_macro']:.3f}")
        if "ec57" in m:
            print("AAMI (live chain)  " + "  ".join(f"{c}: Se {_pct(m['ec57'][c]['se'])} +P {_pct(m['ec57'][c]['ppv'])}" for c in AAMI_CLASSES))
        print(f"report: {Path(args.out) / 'report.md'}")
        return 0

    return _cli.run_main("ecg-eval", body)


if __name__ == "__main__":
    sys.exit(main())
