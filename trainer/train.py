"""Training of the beat classifier (:mod:`monitor.model`) on MIT-BIH beats.

The recipe is the seed project's: Adam, class-weighted cross-entropy,
``StepLR``, 50 epochs, batches of 64.  Added for honest figures:

* beats come from the live monitor's own detector and featurizer
  (:mod:`trainer.dataset`);
* model selection and early stopping use a patient-wise validation fold of
  the *training* records (:func:`trainer.dataset.make_split`), never the test
  records; with ``cv=True`` the number of epochs is instead chosen by
  cross-validation over every fold (:func:`cross_validate`), and the final
  model is trained on all the training records;
* every source of randomness is seeded from ``seed``
  (:func:`numpy.random.default_rng`, :func:`torch.manual_seed` and a
  :class:`torch.Generator` that orders the batches), and a checkpoint is
  written after each epoch so a run can be resumed (``resume=True``) and
  continues exactly as if it had not stopped.

Outputs in ``out``: the weights (``model.pt``, see
:func:`monitor.model.save_weights`), ``run.json`` (command line, full
configuration, split, class counts, timings), ``history.json`` (per-epoch
loss and validation metrics) and ``checkpoint.pt``.

With ``fold_networks=True`` (:func:`train_fold_networks`), one network per
patient-wise fold of the training records, each trained without its fold,
for the out-of-fold choice of the decision rules' settings
(``ecg-bench rules``, :mod:`trainer.rule_sweep`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from monitor.beats import BeatFeaturizer, template_rms
from monitor.labels import CLASS_TO_AAMI, CLASSES
from monitor.model import ARCHITECTURE, Ensemble, build_model, default_hparams, load_model, save_weights
from monitor.model import af_like, af_thresholds, logit_bias
from monitor.model import PREMATURITY_REFERENCES, s_rule_rr
from monitor.model import af_rule as af_rule_thresholds
from monitor.model import post_pause_thresholds
from replay import __version__
from replay._validate import check_option
from replay.errors import ConfigError

from . import dataset as ds
from .augment import time_stretch
from .calibrate import fit_logit_bias, score_predictions

logger = logging.getLogger(__name__)

__all__ = [
    "TrainConfig", "add_rules", "class_weights", "cross_validate", "default_threads", "evaluate_arrays", "fit", "fusion_threshold",
    "early_beat_thresholds", "load_config_file", "prematurity_threshold", "train", "train_fold_networks",
]  # fmt: skip


@dataclass
class TrainConfig:
    """Every setting of a training run (saved in ``run.json``).

    Attributes
    ----------
    protocol : {"inter", "seed", "all"}
        Data protocol (see :mod:`trainer.dataset`).
    data_dir : str or None
        MIT-BIH directory.
    out : str
        Output directory.
    weights_out : str or None
        Weights file (default ``out/model.pt``).
    epochs, batch_size : int
        Number of epochs and beats per batch.
    lr, weight_decay : float
        Adam learning rate and L2 weight decay.
    step_size, gamma : int, float
        ``StepLR``: multiply the learning rate by ``gamma`` every ``step_size`` epochs.
    ema_decay : float
        Exponential moving average of the weights, per batch (0: off); the
        averaged model is the one validated and saved.
    augment_noise : float
        Standard deviation of Gaussian noise added to the normalised
        training windows (0: off).
    augment_shift : int
        Largest random time shift of a training batch, in samples at the
        model rate (0: off).
    augment_stretch : float
        Largest relative change of the time scale: each training beat and
        its template are stretched about the R peak by a factor drawn
        log-uniformly from ``[1 / (1 + a), 1 + a]``
        (:func:`trainer.augment.time_stretch`; 0: off).
    class_weight_power : float
        Class weights are ``(n / (k * n_c)) ** power`` (1: "balanced", 0: none).
    max_class_weight : float
        Upper bound of a class weight.
    class_weight_scale : dict of str to float
        Extra factor on the weight of some model classes, applied after the
        cap, e.g. ``{"F": 0.25}`` (``--class-weight-scale F=0.25``): lowers
        the pull of a rare class that the model over-calls (default: none).
    fusion_quantile : float
        Store the fusion rule (:mod:`monitor.model`) in the weights file:
        its threshold is this quantile of the RMS distance between window
        and template over the training set's F beats, e.g. 0.01, so that
        the rule leaves 99 % of them alone (0: no rule; default).  Needs the
        template channel (``featurizer.template_beats > 0``).
    af_rule : dict
        Store the AF rule (:mod:`monitor.model`) in the weights file with
        these thresholds, e.g. ``{"min_irregular": 0.1, "max_regular": 0.5}``
        (a ``[af_rule]`` table in a config file): no S label while the
        rhythm before the beat looks like atrial fibrillation (default:
        empty, no rule).  An optional ``max_p_wave`` also requires the
        template of the recent beats to show no clear P wave
        (:func:`monitor.beats.p_wave_ratio` at most that).
    prematurity_quantile : float
        Store the prematurity rule (:mod:`monitor.model`) in the weights
        file: a beat is not called S unless its interval from the previous
        beat over the mean of the last ``long_beats`` intervals (the
        ``pre_long`` RR feature) is below the ``1 - prematurity_quantile``
        quantile of that ratio over the training set's S beats, e.g. 0.05,
        so that the rule leaves 95 % of them alone (0: no rule; default).
    v_prematurity_quantile : float
        Store the V prematurity rule (:mod:`monitor.model`): a beat is not
        called V unless its ``pre_long`` ratio is below the ``1 -
        v_prematurity_quantile`` quantile of that ratio over the training
        set's V beats, e.g. 0.07 (0: no rule; default).
    early_beat_quantile : float
        Store the early-beat rule (:mod:`monitor.model`) in the weights
        file: a beat called AAMI N whose ``pre_long`` and ``pre_local`` RR
        features are both below this quantile of their values over the
        training set's N beats outside AF-like rhythm (by ``af_rule``), e.g.
        0.005, and whose rhythm is not AF-like, is called S (0: no rule;
        default).  Needs ``af_rule``.
    early_beat_to_v : bool
        Store ``early_beat_to_v`` with the early-beat rule
        (:func:`monitor.model.early_beat_to_v`): an early beat called AAMI N
        becomes the more probable of its AAMI S and V classes instead of S
        (default False: S, as files without it).  Needs the early-beat rule
        (``early_beat_quantile``; with ``--add-rules``, a weights file that
        has it).
    early_run_beats : int
        Store the early-run rule (:mod:`monitor.early_run`) in the weights
        file: after an early beat called S, up to this many following beats
        called AAMI N that still come early against the long mean RR (below
        the early-beat rule's ``max_pre_long``) are called S, e.g. 10 (the
        featurizer's ``local_beats``: the beats the local mean needs to
        forget the rhythm before a run) (0: no rule; default).  Needs the
        early-beat rule (``early_beat_quantile``; with ``--add-rules``, a
        weights file that has it).
    early_run_quantile : float
        Give the early-run rule its own ``pre_long`` threshold: the later
        beats of a run stay in it while their ``pre_long`` is below this
        quantile of its values over the training set's N beats outside
        AF-like rhythm, e.g. 0.01 (0: the early-beat rule's ``max_pre_long``;
        default).  Needs ``early_run_beats`` and ``af_rule``.
    post_pause_rule : dict
        Store the post-pause rule (:mod:`monitor.post_pause`): a table of
        ``max_pre_normal`` (in (0, 1]) and ``min_post_ratio`` (1 to 5), e.g.
        ``{"max_pre_normal": 0.9, "min_post_ratio": 1.2}`` (a
        ``[post_pause_rule]`` table in a config file, or ``--post-pause-rule
        0.9,1.2``): a beat called AAMI N outside AF-like rhythm whose
        ``pre_normal`` is below the first and whose next interval is longer
        than the second times its own is called S; live, such a beat's label
        is provisional until the next beat (a ``relabel`` event gives the
        final one) (default: empty, no rule).  Needs ``af_rule``
        (with ``--add-rules``, a weights file that has it).
    prematurity_reference : {"long", "normal"} or None
        The interval ratio by which the S rules (prematurity, early-beat,
        early-run) judge how early a beat comes, and whose quantiles their
        thresholds are: ``"long"``, the ``pre_long`` RR feature, or
        ``"normal"``, the rhythm's ``pre_normal`` (the interval over the
        mean of the recent normal intervals, see
        :func:`monitor.model.prematurity_reference`).  Stored in the
        weights file when not ``"long"``.  Default None: ``"long"`` when
        training, and with ``--add-rules`` the weights file's own (so
        adding another rule to a file keeps its reference).
    logit_offsets : dict
        Decision offsets to store in the weights file, in logit units
        (-10 to 10) by model class name, e.g. ``{"V": -1.0}``: added to that
        class's logit before the softmax (``meta["logit_bias"]``, see
        :func:`monitor.model.logit_bias`), so a negative offset calls the
        class less often.  With ``calibrate``, they replace the fitted
        offsets of the classes named (default: empty, none).
    seed : int
        Seed of every random choice.
    patience : int
        Stop after this many epochs without a better validation score (0: never).
    val_folds, val_fold : int
        Patient-wise validation fold of the training records.  ``val_fold``
        None (``--val-fold none``): no validation; every training record
        trains for exactly ``epochs`` epochs and the last epoch's model is
        saved (for example with the epoch count a cross-validation chose,
        or to compare recipes at a fixed epoch count without the
        ``val_folds + 1`` trainings of ``cv``).
    cv : bool
        Choose the number of epochs by patient-wise cross-validation: one
        run per fold of ``val_folds`` (each validated on its held-out
        records, ``epochs`` epochs, no early stopping), the validation score
        averaged over the folds per epoch, then a final run on every training
        record for the epoch count with the best mean.  Costs ``val_folds + 1``
        trainings; ``val_fold`` and ``patience`` are then unused.
    calibrate : bool
        With ``cv``: fit one logit offset per class on the out-of-fold
        predictions of the cross-validation (every training beat predicted
        by the fold model that did not see its patient, at the chosen epoch
        count) so as to maximise the same validation score
        (:func:`trainer.calibrate.fit_logit_bias`), and store the offsets in
        the weights file; the monitor adds them to the logits.  Undoes the
        over-calling of rare classes that class weights cause.
    ensemble : bool
        With ``cv``: ship the cross-validation's fold models with the final
        model as one ensemble (its probabilities are the mean of the
        members'): the final model (every training record) and the
        ``val_folds`` fold models (each trained without one fold of
        patients), all after the chosen number of epochs.  Each fold run
        keeps its weights after every epoch (``cv-fold-K/states/``) for that.
    fold_networks : bool
        Train the fold networks of ``ecg-bench rules``
        (:mod:`trainer.rule_sweep`) instead of one model: for each of the
        ``val_folds`` patient-wise folds of the training records
        (:func:`trainer.dataset.val_records`, the folds of ``cv``), one
        network on the records of the other folds, for exactly ``epochs``
        epochs with no validation (the last epoch's weights kept, so no
        choice is made on the held-out records), in ``out/fold-K/``, with
        the decision rules' thresholds from its own training records.  Each
        network's ``test_records`` are its fold's.  Needs ``cv`` off;
        ``val_fold``, ``patience`` and ``weights_out`` are unused.
    threads : int or None
        ``torch.set_num_threads`` (default :func:`default_threads`: half the
        CPU cores, at most 4, so 1 on a 2-core machine).
    device : {"auto", "cpu", "cuda"}
        Where to train.
    featurizer : dict
        :class:`monitor.beats.BeatFeaturizer` settings.
    hparams : dict
        Architecture overrides (see :func:`monitor.model.default_hparams`).
    train_records, test_records : list of str or None
        Replace the protocol's record lists (quick runs, tests).
    duration_s : float or None
        Use only the first ``duration_s`` seconds of each record (quick runs, tests).
    cache : str or None
        Dataset cache directory (default: the user cache).
    progress : bool
        Show tqdm progress bars.
    """

    protocol: str = "inter"
    data_dir: str | None = None
    out: str = "runs/default"
    weights_out: str | None = None
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    step_size: int = 15
    gamma: float = 0.5
    ema_decay: float = 0.0
    augment_noise: float = 0.0
    augment_shift: int = 0
    augment_stretch: float = 0.0
    class_weight_power: float = 1.0
    max_class_weight: float = 50.0
    class_weight_scale: dict = field(default_factory=dict)
    fusion_quantile: float = 0.0
    af_rule: dict = field(default_factory=dict)
    prematurity_quantile: float = 0.0
    v_prematurity_quantile: float = 0.0
    early_beat_quantile: float = 0.0
    early_beat_to_v: bool = False
    early_run_beats: int = 0
    early_run_quantile: float = 0.0
    prematurity_reference: str | None = None
    post_pause_rule: dict = field(default_factory=dict)
    logit_offsets: dict = field(default_factory=dict)
    seed: int = 0
    patience: int = 12
    val_folds: int = 5
    val_fold: int | None = 4
    cv: bool = False
    calibrate: bool = False
    ensemble: bool = False
    fold_networks: bool = False
    threads: int | None = None
    device: str = "auto"
    featurizer: dict = field(default_factory=lambda: dict(ds.DEFAULT_FEATURIZER))
    hparams: dict = field(default_factory=dict)
    train_records: list | None = None
    test_records: list | None = None
    duration_s: float | None = None
    cache: str | None = None
    progress: bool = True

    def validate(self) -> TrainConfig:
        """Check values; return self."""
        check_option("protocol", self.protocol, ds.PROTOCOLS)
        check_option("device", self.device, ("auto", "cpu", "cuda"))
        for name in ("epochs", "batch_size", "val_folds"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.step_size < 1:
            raise ConfigError(f"step_size must be >= 1 epoch, got {self.step_size!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.augment_noise < 0 or self.augment_shift < 0:
            raise ConfigError("augment_noise and augment_shift must be >= 0")
        if not (isinstance(self.augment_stretch, (int, float)) and 0 <= self.augment_stretch < 1):
            raise ConfigError(f"augment_stretch must be in [0, 1), got {self.augment_stretch!r}")
        if not isinstance(self.cv, bool):
            raise ConfigError(f"cv must be true or false, got {self.cv!r}")
        if self.cv and self.protocol == "seed":
            raise ConfigError("cv (cross-validation over patients) needs the inter or all protocol; the seed protocol splits by beat")
        if not isinstance(self.calibrate, bool):
            raise ConfigError(f"calibrate must be true or false, got {self.calibrate!r}")
        if self.calibrate and not self.cv:
            raise ConfigError("calibrate needs cv: the logit offsets are fitted on the out-of-fold predictions of the cross-validation")
        if not isinstance(self.ensemble, bool):
            raise ConfigError(f"ensemble must be true or false, got {self.ensemble!r}")
        if self.ensemble and not self.cv:
            raise ConfigError("ensemble needs cv: its members are the cross-validation's fold models and the final model")
        if self.cv and self.val_folds < 2:
            raise ConfigError(f"cv needs val_folds >= 2, got {self.val_folds}")
        if not isinstance(self.fold_networks, bool):
            raise ConfigError(f"fold_networks must be true or false, got {self.fold_networks!r}")
        if self.fold_networks:
            if self.protocol == "seed":
                raise ConfigError("fold_networks (patient-wise folds) needs the inter or all protocol; the seed protocol splits by beat")
            if self.cv:
                raise ConfigError("fold_networks trains each fold network for exactly `epochs` epochs, with no epoch "
                                  "chosen on its held-out records; turn cv off (--no-cv)")  # fmt: skip
            if self.val_folds < 2:
                raise ConfigError(f"fold_networks needs val_folds >= 2, got {self.val_folds}")
            if self.weights_out:
                raise ConfigError("fold_networks writes one weights file per fold (OUT/fold-K/model.pt); leave weights_out unset")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0 epochs, got {self.patience!r}")
        _check_class_table("class_weight_scale", self.class_weight_scale, "factors", 0, 100, "in [0, 100]")
        for name in ("fusion_quantile", "prematurity_quantile", "v_prematurity_quantile", "early_beat_quantile", "early_run_quantile"):
            q = getattr(self, name)
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q < 0.5:
                raise ConfigError(f"{name} must be a number in [0, 0.5), got {q!r}")
        if not isinstance(self.early_beat_to_v, bool):
            raise ConfigError(f"early_beat_to_v must be true or false, got {self.early_beat_to_v!r}")
        if isinstance(self.early_run_beats, bool) or not isinstance(self.early_run_beats, int) or not 0 <= self.early_run_beats <= 1000:
            raise ConfigError(f"early_run_beats must be an integer from 0 to 1000 beats, got {self.early_run_beats!r}")
        _check_class_table("logit_offsets", self.logit_offsets, "offsets", -10, 10, "from -10 to 10 (logit units)")
        if self.prematurity_reference is not None:
            check_option("prematurity_reference", self.prematurity_reference, PREMATURITY_REFERENCES)
        if self.early_run_quantile and not self.early_run_beats:
            raise ConfigError("early_run_quantile needs early_run_beats > 0 (it is the early-run rule's threshold), e.g. 10")
        if not isinstance(self.af_rule, dict):
            raise ConfigError(f"af_rule must be a table of min_irregular, max_regular and optionally max_p_wave, got {self.af_rule!r}")
        if self.af_rule:
            af_rule_thresholds({"af_rule": self.af_rule, "classes": list(CLASSES), "featurizer": dict(self.featurizer)})
        if not isinstance(self.post_pause_rule, dict):
            raise ConfigError(f"post_pause_rule must be a table of max_pre_normal and min_post_ratio, got {self.post_pause_rule!r}")
        if self.post_pause_rule:
            post_pause_thresholds(self.post_pause_rule)
        if isinstance(self.val_fold, str) and self.val_fold.strip().lower() == "none":
            self.val_fold = None  # a config file's val_fold = "none" (TOML has no null)
        if self.val_fold is not None and (not isinstance(self.val_fold, int) or isinstance(self.val_fold, bool)):
            raise ConfigError(f"val_fold must be an integer fold index or none, got {self.val_fold!r}")
        try:
            fz = BeatFeaturizer(360.0, **self.featurizer)  # raises ConfigError on bad values
        except TypeError as exc:
            raise ConfigError(f"featurizer settings: {exc}") from None
        if self.fusion_quantile and fz.template_beats == 0:
            raise ConfigError("fusion_quantile needs the template channel (featurizer template_beats > 0)")
        for name in ("prematurity_quantile", "v_prematurity_quantile"):
            if getattr(self, name) and "pre_long" not in fz.rr_names:
                raise ConfigError(f"{name} needs the pre_long RR feature, which these featurizer settings do not give")
        if self.early_beat_quantile and not {"pre_long", "pre_local"} <= set(fz.rr_names):
            raise ConfigError("early_beat_quantile needs the pre_long and pre_local RR features, which these featurizer settings do not give")
        if self.early_beat_quantile and not self.af_rule:
            raise ConfigError("early_beat_quantile needs an af_rule table (the rule acts only outside AF-like rhythm)")
        if self.post_pause_rule and "pre_rr_s" not in fz.rr_names:
            raise ConfigError("post_pause_rule needs the pre_rr_s RR feature, which these featurizer settings do not give")
        if self.early_run_quantile and "pre_long" not in fz.rr_names:
            raise ConfigError("early_run_quantile needs the pre_long RR feature, which these featurizer settings do not give")
        return self

    @property
    def adds_rules(self) -> bool:
        """Whether any decision rule or offset is asked for (what ``--add-rules`` can store)."""
        return bool(
            self.fusion_quantile or self.af_rule or self.prematurity_quantile or self.v_prematurity_quantile or self.early_beat_quantile
            or self.early_beat_to_v or self.early_run_beats or self.logit_offsets or self.prematurity_reference is not None
            or self.post_pause_rule
        )  # fmt: skip

    @property
    def needs_rhythm(self) -> bool:
        """Whether a rule asked for takes its thresholds from the training beats' rhythm measures."""
        return bool(self.early_beat_quantile or self.early_run_quantile or (self.prematurity_reference == "normal" and self.prematurity_quantile))


def _check_class_table(name: str, table: Any, values: str, low: float, high: float, bounds: str) -> None:
    """Check a setting that maps model class names to numbers from ``low`` to ``high`` (ConfigError if not)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{name} must map class names to {values}, got {table!r}")
    for cls, value in table.items():
        if cls not in CLASSES:
            raise ConfigError(f"{name}: unknown class {cls!r}; the classes are {', '.join(CLASSES)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigError(f"{name}[{cls!r}] must be a number {bounds}, got {value!r}")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict of :class:`TrainConfig` fields."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            import tomllib

            data = tomllib.loads(raw.decode())
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a table/object of settings")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}" + (f". Did you mean {hint[0]!r}?" if hint else "")
        )
    return data


def class_weights(labels: np.ndarray, n_classes: int, power: float = 1.0, max_weight: float = 50.0) -> np.ndarray:
    """Cross-entropy class weights ``(n / (k n_c)) ** power``, capped; 0 for absent classes."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    return np.minimum(w, max_weight)


def fusion_threshold(windows: np.ndarray, labels: np.ndarray, quantile: float) -> dict[str, Any]:
    """Threshold of the fusion rule from training beats (see :mod:`monitor.model`).

    Parameters
    ----------
    windows : numpy.ndarray, shape (n, 2, n_window)
        Normalised beat windows with their template channel.
    labels : numpy.ndarray of int, shape (n,)
        Their class indices (into :data:`monitor.labels.CLASSES`).
    quantile : float
        Share of the F beats allowed below the threshold (e.g. 0.01).

    Returns
    -------
    dict
        ``max_template_rms`` (the threshold), ``quantile`` and ``f_beats``
        (how many F beats it was taken from).

    Raises
    ------
    ConfigError
        When there is no template channel or no F beat.
    """
    if windows.ndim != 3 or windows.shape[1] < 2:
        raise ConfigError("the fusion rule needs the template channel (featurizer template_beats > 0)")
    w = windows[labels == CLASSES.index("F")]
    if not len(w):
        raise ConfigError("the fusion rule needs F beats in the training records; there are none")
    d = template_rms(w)
    return {"max_template_rms": float(np.quantile(d, quantile)), "quantile": float(quantile), "f_beats": int(len(w))}


def prematurity_threshold(
    rr: np.ndarray, labels: np.ndarray, rr_names: list[str] | tuple[str, ...], quantile: float, aami: str = "S"
) -> dict[str, Any]:
    """Threshold of the prematurity rule (S) or the V prematurity rule from training beats (see :mod:`monitor.model`).

    Parameters
    ----------
    rr : numpy.ndarray, shape (n, n_rr)
        RR features of the training beats (:class:`monitor.beats.BeatFeaturizer`).
    labels : numpy.ndarray of int, shape (n,)
        Their class indices (into :data:`monitor.labels.CLASSES`).
    rr_names : sequence of str
        Names of the RR features; must include ``pre_long`` (pre-RR over the
        mean of the last ``long_beats`` intervals, a ratio).
    quantile : float
        Share of the beats of class ``aami`` allowed at or above the
        threshold (e.g. 0.05).
    aami : {"S", "V"}
        The AAMI class whose beats the threshold is taken from.

    Returns
    -------
    dict
        ``max_rr_ratio`` (the threshold: the ``1 - quantile`` quantile of
        ``pre_long`` over those beats), ``quantile`` and ``s_beats`` (or
        ``v_beats``: how many beats it was taken from).

    Raises
    ------
    ConfigError
        When there is no ``pre_long`` feature or no beat of that class.
    """
    if aami not in ("S", "V"):
        raise ValueError(f"aami must be 'S' or 'V', got {aami!r}")
    names = list(rr_names)
    rule = "the prematurity rule" if aami == "S" else "the V prematurity rule"
    if "pre_long" not in names:
        raise ConfigError(f"{rule} needs the pre_long RR feature")
    classes = [i for i, c in enumerate(CLASSES) if CLASS_TO_AAMI[c] == aami]
    ratio = rr[np.isin(labels, classes), names.index("pre_long")]
    if not ratio.size:
        raise ConfigError(f"{rule} needs {aami} beats in the training records; there are none")
    return {"max_rr_ratio": float(np.quantile(ratio, 1.0 - quantile)), "quantile": float(quantile), f"{aami.lower()}_beats": int(ratio.size)}


def early_beat_thresholds(
    rr: np.ndarray,
    labels: np.ndarray,
    rhythm: np.ndarray,
    rr_names: list[str] | tuple[str, ...],
    af: dict[str, float],
    quantile: float,
) -> dict[str, Any]:
    """Thresholds of the early-beat rule from training beats (see :mod:`monitor.model`).

    Parameters
    ----------
    rr : numpy.ndarray, shape (n, n_rr)
        RR features of the training beats (:class:`monitor.beats.BeatFeaturizer`).
    labels : numpy.ndarray of int, shape (n,)
        Their class indices (into :data:`monitor.labels.CLASSES`).
    rhythm : numpy.ndarray, shape (n, 3)
        Their :attr:`monitor.beats.BeatFeatures.rhythm` (``af_irregular``,
        ``af_regular``, ``p_wave``).
    rr_names : sequence of str
        Names of the RR features; must include ``pre_long`` and
        ``pre_local`` (ratios of the pre-RR to the long and local mean RR).
    af : dict
        The AF rule's ``min_irregular``, ``max_regular`` and optional
        ``max_p_wave``: beats after an AF-like rhythm are left out, as the
        rule leaves them alone.
    quantile : float
        Share of those N beats allowed below each threshold (e.g. 0.005).

    Returns
    -------
    dict
        ``max_pre_long`` and ``max_pre_local`` (the ``quantile`` quantiles of
        the two ratios over the AAMI N beats outside AF-like rhythm),
        ``quantile``, ``n_beats`` (how many N beats they were taken from) and
        ``n_below_both`` (how many of those the rule would call S).

    Raises
    ------
    ConfigError
        When a feature is missing or there is no N beat outside AF-like rhythm.
    """
    names = list(rr_names)
    if not {"pre_long", "pre_local"} <= set(names):
        raise ConfigError("the early-beat rule needs the pre_long and pre_local RR features")
    n_classes = [i for i, c in enumerate(CLASSES) if CLASS_TO_AAMI[c] == "N"]
    sel = np.isin(labels, n_classes) & ~af_like(rhythm, af_thresholds(af))
    g, loc = rr[sel, names.index("pre_long")], rr[sel, names.index("pre_local")]
    if not g.size:
        raise ConfigError("the early-beat rule needs N beats outside AF-like rhythm in the training records; there are none")
    tg, tl = float(np.quantile(g, quantile)), float(np.quantile(loc, quantile))
    return {"max_pre_long": tg, "max_pre_local": tl, "quantile": float(quantile), "n_beats": int(g.size),
            "n_below_both": int(((g < tg) & (loc < tl)).sum())}


def add_rules(weights: str | os.PathLike, cfg: TrainConfig) -> Path:
    """Store the decision rules of ``cfg`` in an existing weights file, without training.

    The fusion rule (``cfg.fusion_quantile`` > 0): its threshold
    (:func:`fusion_threshold`) is taken from the training records of
    ``cfg.protocol`` (every one: no validation fold), with the file's own
    featurizer settings, so it is the value ``ecg-train --fusion-quantile``
    would have stored when training the model on them (the rule does not
    change training); likewise the prematurity rule's
    (``cfg.prematurity_quantile`` > 0, :func:`prematurity_threshold`), the
    V prematurity rule's (``cfg.v_prematurity_quantile`` > 0) and
    the early-beat rule's (``cfg.early_beat_quantile`` > 0,
    :func:`early_beat_thresholds`).  The early-run rule
    (``cfg.early_run_beats``): its setting as given, and its own
    threshold (``cfg.early_run_quantile`` > 0) from the training records
    like the early-beat rule's.  The
    AF rule (``cfg.af_rule``): its thresholds as given.  Rules not asked for
    are left as they are in the file.

    Parameters
    ----------
    weights : str or path-like
        The weights file.
    cfg : TrainConfig
        ``fusion_quantile``, ``af_rule``, ``prematurity_quantile``, ``early_beat_quantile``, ``early_run_beats``,
        ``early_run_quantile``, ``protocol``, ``data_dir``,
        ``cache``, ``weights_out`` (default: ``weights`` itself, rewritten
        atomically), and the quick-run ``train_records`` / ``duration_s``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    if not cfg.adds_rules:
        raise ConfigError(
            "--add-rules needs a rule to add: --fusion-quantile > 0 (e.g. 0.01), --prematurity-quantile > 0 (e.g. 0.05), "
            "--v-prematurity-quantile > 0 (e.g. 0.07), "
            "--early-beat-quantile > 0 (e.g. 0.005), --early-beat-to-v, --early-run-beats > 0 (e.g. 10), --post-pause-rule (e.g. 0.9,1.2), "
            "--logit-offset (e.g. V=-1.0) "
            "or an af_rule table in --config"
        )
    model, meta = load_model(weights)
    # the file's own reference unless one is asked for
    cfg = replace(cfg, prematurity_reference=cfg.prematurity_reference or meta.get("prematurity_reference", "long"))
    if cfg.early_beat_to_v and not cfg.early_beat_quantile and meta.get("early_beat_rule") is None:
        raise ConfigError(f"{weights}: early_beat_to_v needs the early-beat rule: the file has none, so add --early-beat-quantile (e.g. 0.005)")
    if cfg.early_run_beats and not cfg.early_beat_quantile and meta.get("early_beat_rule") is None:
        raise ConfigError(f"{weights}: early_run_beats needs the early-beat rule: the file has none, so add --early-beat-quantile (e.g. 0.005)")
    if cfg.early_run_quantile and not (cfg.af_rule or meta.get("af_rule")):
        raise ConfigError(f"{weights}: early_run_quantile needs the AF rule: the file has none, so add an af_rule table to --config")
    if cfg.post_pause_rule and not (cfg.af_rule or meta.get("af_rule")):
        raise ConfigError(f"{weights}: post_pause_rule needs the AF rule: the file has none, so add an af_rule table to --config")
    if cfg.prematurity_reference != meta.get("prematurity_reference", "long"):
        stale = [name for key, q, name in (
            ("prematurity_max_rr_ratio", cfg.prematurity_quantile, "--prematurity-quantile"),
            ("early_beat_rule", cfg.early_beat_quantile, "--early-beat-quantile"),
            ("early_run_max_pre_long", cfg.early_run_quantile, "--early-run-quantile"),
        ) if meta.get(key) is not None and not q]  # fmt: skip
        if stale:
            raise ConfigError(f"{weights}: --prematurity-reference {cfg.prematurity_reference} changes the ratio of the S rules, "
                              f"whose thresholds the file holds for the other one: give {', '.join(stale)} too")
    fz = dict(meta["featurizer"])
    data_cfg = replace(cfg, featurizer=fz, val_fold=None).validate()
    meta["training"] = dict(meta.get("training", {}))
    wt = rt = yt = ht = records = None
    if cfg.fusion_quantile or cfg.prematurity_quantile or cfg.v_prematurity_quantile or cfg.early_beat_quantile or cfg.early_run_quantile:
        train_recs, _ = _records(data_cfg)
        data = ds.build_dataset(train_recs, data_cfg.data_dir, fz, cache=data_cfg.cache, progress=data_cfg.progress, duration_s=data_cfg.duration_s)
        split = ds.make_split(data_cfg.protocol, data, seed=data_cfg.seed, val_fold=None, train_records=train_recs, test_records=())
        wt, rt, yt, _ = ds.stack(data, split.train)
        ht = ds.stack_rhythm(data, split.train) if cfg.needs_rhythm else None
        records = list(split.records("train"))
    for info in _store_rules(meta, data_cfg, wt, rt, yt, ht).values():
        if info is not None:
            info["records"] = records
    out = save_weights(cfg.weights_out or weights, model, meta)
    logger.info("rules written to %s", out)
    return out


def _records(cfg: TrainConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The training and test records: the protocol's, or ``cfg.train_records`` / ``test_records``."""
    train_recs, test_recs = ds.protocol_records(cfg.protocol)
    if cfg.train_records is not None:
        train_recs = tuple(str(r) for r in cfg.train_records)
    if cfg.test_records is not None:
        test_recs = tuple(str(r) for r in cfg.test_records)
    return train_recs, test_recs


def _store_rules(
    meta: dict[str, Any],
    cfg: TrainConfig,
    wt: np.ndarray | None,
    rt: np.ndarray | None,
    yt: np.ndarray | None,
    ht: np.ndarray | None,
) -> dict[str, dict[str, Any] | None]:
    """Put the decision rules that ``cfg`` asks for into weights metadata (in place).

    The AF rule's thresholds as given; the fusion rule's threshold from the
    training windows ``wt`` and labels ``yt`` (:func:`fusion_threshold`) and
    the prematurity rule's from their RR features ``rt``
    (:func:`prematurity_threshold`), and the early-beat rule's from those
    and their rhythm measures ``ht`` (:func:`early_beat_thresholds`), each
    also recorded in ``meta["training"]`` and returned as ``fusion_rule``,
    ``prematurity_rule`` and ``early_beat_rule`` (None for a rule not asked
    for); the early-run rule's setting as given (``meta`` must then hold the
    early-beat rule) and its own threshold, the ``cfg.early_run_quantile``
    quantile of ``pre_long`` over the same N beats as the early-beat rule's,
    returned as ``early_run_rule``; the decision offsets ``cfg.logit_offsets``
    as given, into ``meta["logit_bias"]`` (other classes' offsets kept).
    """
    if cfg.af_rule:
        meta["af_rule"] = dict(cfg.af_rule)
        meta["training"]["af_rule"] = dict(cfg.af_rule)
    reference = cfg.prematurity_reference or meta.get("prematurity_reference", "long")
    if reference != "long" or "prematurity_reference" in meta:
        meta["prematurity_reference"] = reference
        meta["training"]["prematurity_reference"] = reference
    # the S rules' thresholds are quantiles of their own interval ratio (pre_long, or pre_normal in its column)
    rt_s = rt
    if reference == "normal" and rt is not None and ht is not None:
        rt_s = s_rule_rr(rt, ht, list(meta["rr_names"]).index("pre_long"))
    fusion = prem = vprem = early = run = None
    if cfg.logit_offsets:
        classes = list(meta["classes"])
        unknown = sorted(set(cfg.logit_offsets) - set(classes))
        if unknown:
            raise ConfigError(f"logit_offsets: the model has no class {', '.join(unknown)}; its classes are {', '.join(classes)}")
        bias = [float(v) for v in logit_bias(meta)]
        for name, offset in cfg.logit_offsets.items():
            bias[classes.index(name)] = float(offset)
        meta["logit_bias"] = bias
        meta["training"]["logit_offsets"] = {k: float(v) for k, v in cfg.logit_offsets.items()}
        logger.info("decision offsets (logit units): %s", ", ".join(f"{k} {v:+.2f}" for k, v in cfg.logit_offsets.items()))
    if cfg.fusion_quantile:
        fusion = fusion_threshold(wt, yt, cfg.fusion_quantile)
        meta["fusion_max_template_rms"] = fusion["max_template_rms"]
        meta["training"]["fusion_rule"] = fusion
        logger.info("fusion rule: F moved to N below template RMS %.3f (%g quantile of %d training F beats)",
                    fusion["max_template_rms"], cfg.fusion_quantile, fusion["f_beats"])
    if cfg.prematurity_quantile:
        prem = prematurity_threshold(rt_s, yt, meta["rr_names"], cfg.prematurity_quantile)
        meta["prematurity_max_rr_ratio"] = prem["max_rr_ratio"]
        meta["training"]["prematurity_rule"] = prem
        logger.info("prematurity rule: S moved to N at pre-RR / long mean RR >= %.3f (%g of %d training S beats above)",
                    prem["max_rr_ratio"], cfg.prematurity_quantile, prem["s_beats"])
    if cfg.v_prematurity_quantile:
        vprem = prematurity_threshold(rt, yt, meta["rr_names"], cfg.v_prematurity_quantile, aami="V")
        meta["v_prematurity_max_rr_ratio"] = vprem["max_rr_ratio"]
        meta["training"]["v_prematurity_rule"] = vprem
        logger.info("V prematurity rule: V moved to N at pre-RR / long mean RR >= %.3f (%g of %d training V beats above)",
                    vprem["max_rr_ratio"], cfg.v_prematurity_quantile, vprem["v_beats"])
    if cfg.early_beat_quantile:
        early = early_beat_thresholds(rt_s, yt, ht, meta["rr_names"], meta["af_rule"], cfg.early_beat_quantile)
        meta["early_beat_rule"] = {"max_pre_long": early["max_pre_long"], "max_pre_local": early["max_pre_local"]}
        meta["training"]["early_beat_rule"] = early
        logger.info("early-beat rule: N moved to S below pre-RR / long mean RR %.3f and pre-RR / local mean RR %.3f "
                    "outside AF (%g quantiles of %d training N beats)",
                    early["max_pre_long"], early["max_pre_local"], cfg.early_beat_quantile, early["n_beats"])
    if cfg.early_beat_to_v:  # train() and add_rules() have checked that the early-beat rule is there
        meta["early_beat_to_v"] = True
        meta["training"]["early_beat_to_v"] = True
        logger.info("early-beat rule: an early beat called N becomes the more probable of S and V")
    if cfg.post_pause_rule:
        meta["post_pause_rule"] = {k: float(v) for k, v in cfg.post_pause_rule.items()}
        meta["training"]["post_pause_rule"] = dict(meta["post_pause_rule"])
        logger.info("post-pause rule: N moved to S below pre-RR / mean normal RR %g when the next interval exceeds %g x "
                    "the beat's own, outside AF", cfg.post_pause_rule["max_pre_normal"], cfg.post_pause_rule["min_post_ratio"])
    if cfg.early_run_beats:
        meta["early_run_beats"] = int(cfg.early_run_beats)
        meta["training"]["early_run_beats"] = int(cfg.early_run_beats)
        logger.info("early-run rule: S carried over up to %d early beats after an early beat", cfg.early_run_beats)
    if cfg.early_run_quantile:
        ratios = early_beat_thresholds(rt_s, yt, ht, meta["rr_names"], meta["af_rule"], cfg.early_run_quantile)
        run = {"max_pre_long": ratios["max_pre_long"], "quantile": ratios["quantile"], "n_beats": ratios["n_beats"]}
        meta["early_run_max_pre_long"] = run["max_pre_long"]
        meta["training"]["early_run_rule"] = run
        logger.info("early-run rule: later beats of a run stay in it below pre-RR / long mean RR %.3f (%g quantile of %d training N beats)",
                    run["max_pre_long"], cfg.early_run_quantile, run["n_beats"])
    return {"fusion_rule": fusion, "prematurity_rule": prem, "v_prematurity_rule": vprem, "early_beat_rule": early, "early_run_rule": run}


def default_threads() -> int:
    """Torch threads for training and evaluation: half the CPU cores, 1 to 4.

    This model's operations are small; on a busy 2-core machine two threads
    measured up to 10 times slower than one (threads spin waiting for each
    other), so one core is left to data handling and other work.
    """
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def evaluate_arrays(
    model: nn.Module,
    w: np.ndarray,
    r: np.ndarray,
    y: np.ndarray,
    device: torch.device,
    loss_fn=None,
    batch: int = 2048,
    *,
    return_logits: bool = False,
) -> dict[str, Any]:
    """Loss, accuracy, macro-F1 and AAMI N/S/V Se, +P of a model on labelled beats (y >= 0).

    With ``return_logits`` the result also holds ``logits`` (float32 array,
    shape (n, n_classes)).
    """
    model.eval()
    chunks, losses = [], 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            wb = torch.from_numpy(w[i : i + batch]).to(device)
            rb = torch.from_numpy(r[i : i + batch]).to(device)
            logits = model(wb, rb)
            if loss_fn is not None:
                losses += float(loss_fn(logits, torch.from_numpy(y[i : i + batch]).to(device))) * len(wb)
            chunks.append(logits.float().cpu().numpy())
    z = np.concatenate(chunks) if chunks else np.zeros((0, len(CLASSES)), np.float32)
    out: dict[str, Any] = {"loss": losses / max(1, len(y)), **score_predictions(y, z.argmax(1))}
    if return_logits:
        out["logits"] = z
    return out


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it (no half-written file after a crash)."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fit(
    train_data: tuple[np.ndarray, np.ndarray, np.ndarray],
    val_data: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    select_on: str = "aami_nsv_f1",
    resume: bool = False,
    keep_val_logits: bool = False,
    keep_states: bool = False,
) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """Train a model on arrays; return (best model, history, hparams).

    Parameters
    ----------
    train_data, val_data : tuple of numpy.ndarray
        ``(windows (n, C, L) float32, rr (n, F) float32, labels (n,) int64)``,
        labels in ``0..len(CLASSES)-1``.  ``val_data=None``: no validation,
        every epoch is run and the last one's model is returned.
    cfg : TrainConfig
        Settings (epochs, batch size, optimiser, seed...).
    out_dir : pathlib.Path
        Where ``checkpoint.pt`` and ``history.json`` are written.
    select_on : str
        Validation metric (higher is better) for model selection and early stopping.
    resume : bool
        Continue from ``out_dir/checkpoint.pt``.
    keep_val_logits : bool
        Save the validation logits of every epoch K as
        ``out_dir/val_logits/epoch-K.npy`` (float32, shape (n_val, n_classes)).
    keep_states : bool
        Save the weights of every epoch K (of the moving average when
        ``ema_decay`` is on: the model that is validated) as
        ``out_dir/states/epoch-K.pt`` (a ``state_dict``, loadable with
        ``weights_only=True``).
    """
    from tqdm import tqdm

    wt, rt, yt = train_data
    wv, rv, yv = val_data if val_data is not None else (wt[:0], rt[:0], yt[:0])
    if (yt < 0).any() or (yv < 0).any():
        raise ConfigError("training and validation labels must be class indices >= 0")
    device = _device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    hp = default_hparams(wt.shape[1], wt.shape[2], rt.shape[1], len(CLASSES))
    hp.update(cfg.hparams)
    model = build_model({"architecture": ARCHITECTURE, "hparams": hp}).to(device)
    cw = class_weights(yt, len(CLASSES), cfg.class_weight_power, cfg.max_class_weight)
    for name, factor in cfg.class_weight_scale.items():
        cw[CLASSES.index(name)] *= factor
    logger.info("class weights: %s", ", ".join(f"{c} {w:.3g}" for c, w in zip(CLASSES, cw)))
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(cw, dtype=torch.float32, device=device))
    val_loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    ema = None
    if cfg.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    history: list[dict[str, Any]] = []
    best = {"score": -np.inf, "epoch": -1, "state": None}
    start_epoch = 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    if resume:
        if not ckpt_path.exists():
            raise ConfigError(f"{ckpt_path.resolve()}: no checkpoint to resume from")
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        history = json.loads(ck["history_json"])
        best = {"score": ck["best_score"], "epoch": ck["best_epoch"], "state": ck["best_state"]}
        start_epoch = int(ck["epoch"]) + 1
        logger.info("resuming at epoch %d (best so far %.4f at epoch %d)", start_epoch + 1, best["score"], best["epoch"] + 1)
    wt_t, rt_t, yt_t = torch.from_numpy(wt), torch.from_numpy(rt), torch.from_numpy(yt)
    n = len(yt)
    if cfg.augment_stretch:
        fz = BeatFeaturizer(360.0, **cfg.featurizer)
        r_centre = fz.pre_s * fz.model_fs  # the R peak's index in a window
    logger.info(
        "training %d beats, validating on %d; class weights %s; %d parameters; device %s, %d threads",
        n, len(yv), dict(zip(CLASSES, np.round(cw, 2).tolist())), sum(p.numel() for p in model.parameters()),
        device, torch.get_num_threads(),
    )  # fmt: skip
    for epoch in range(start_epoch, cfg.epochs):
        if val_data is not None and best["epoch"] >= 0 and cfg.patience and epoch - best["epoch"] > cfg.patience:
            logger.info("early stop: no better %s for %d epochs", select_on, cfg.patience)
            break
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        bar = tqdm(range(0, n, cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not cfg.progress, unit="batch")
        for i in bar:
            idx = perm[i : i + cfg.batch_size]
            if idx.numel() < 2:
                continue  # BatchNorm needs two beats
            wb, rb, yb = wt_t[idx], rt_t[idx], yt_t[idx]
            if cfg.augment_stretch:
                u = torch.rand(idx.numel(), generator=gen) * 2 - 1
                wb = time_stretch(wb, torch.exp(u * np.log1p(cfg.augment_stretch)), r_centre)
            if cfg.augment_shift:
                k = int(torch.randint(-cfg.augment_shift, cfg.augment_shift + 1, (1,), generator=gen))
                wb = torch.roll(wb, k, dims=2)
            if cfg.augment_noise:
                wb = wb + cfg.augment_noise * torch.randn(wb.shape, generator=gen)
            wb, rb, yb = wb.to(device), rb.to(device), yb.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(wb, rb), yb)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            total += loss.item() * idx.numel()
            if (i // cfg.batch_size) % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        sched.step()
        train_s = time.perf_counter() - t0
        net = model if ema is None else ema.module
        rec = {"epoch": epoch + 1, "train_loss": total / n, "lr": opt.param_groups[0]["lr"], "train_s": train_s}
        if keep_states:
            (out_dir / "states").mkdir(exist_ok=True)
            state_path = out_dir / "states" / f"epoch-{epoch + 1}.pt"
            _save_atomic({k: v.detach().cpu() for k, v in net.state_dict().items()}, state_path)
        if val_data is None:  # no selection: the last epoch is the model (see below the loop)
            history.append(rec)
            msg = f"epoch {epoch + 1}/{cfg.epochs}: loss {rec['train_loss']:.4f} ({train_s:.1f} s)"
        else:
            vm = evaluate_arrays(net, wv, rv, yv, device, val_loss_fn, return_logits=keep_val_logits)
            if keep_val_logits:
                (out_dir / "val_logits").mkdir(exist_ok=True)
                np.save(out_dir / "val_logits" / f"epoch-{epoch + 1}.npy", vm.pop("logits"))
            rec.update({f"val_{k}": v for k, v in vm.items()})
            history.append(rec)
            score = vm[select_on]
            if np.isfinite(score) and score > best["score"]:
                best = {"score": float(score), "epoch": epoch, "state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
            msg = (
                f"epoch {epoch + 1}/{cfg.epochs}: loss {rec['train_loss']:.4f}, val loss {vm['loss']:.4f}, "
                f"acc {vm['accuracy']:.4f}, {select_on} {score:.4f}, S Se/+P {vm['S_se']:.3f}/{vm['S_ppv']:.3f}, "
                f"V Se/+P {vm['V_se']:.3f}/{vm['V_ppv']:.3f} ({train_s:.1f} s)"
            )
        if cfg.progress:
            tqdm.write(msg, file=sys.stderr)
        logger.info(msg)
        _save_atomic(
            {
                "model": model.state_dict(),
                "ema": {} if ema is None else ema.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history_json": json.dumps(history),
                "best_score": best["score"],
                "best_epoch": best["epoch"],
                "best_state": best["state"],
                "epoch": epoch,
            },
            ckpt_path,
        )
        (out_dir / "history.json").write_text(json.dumps({"select_on": select_on, "best_epoch": best["epoch"] + 1, "epochs": history}, indent=1))
    if val_data is None:
        if ema is not None:
            model.load_state_dict(ema.module.state_dict())
    elif best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return model.cpu(), history, hp


def train(cfg: TrainConfig, *, argv: list[str] | None = None, resume: bool = False) -> Path:
    """Build the dataset, train, and write weights, ``run.json`` and ``history.json``.

    Returns
    -------
    pathlib.Path
        The weights file.
    """
    cfg.validate()
    if cfg.early_run_beats and not cfg.early_beat_quantile:
        raise ConfigError("early_run_beats needs the early-beat rule (early_beat_quantile > 0, e.g. 0.005), whose thresholds it uses")
    if cfg.early_beat_to_v and not cfg.early_beat_quantile:
        raise ConfigError("early_beat_to_v needs the early-beat rule (early_beat_quantile > 0, e.g. 0.005)")
    if cfg.post_pause_rule and not cfg.af_rule:
        raise ConfigError("post_pause_rule needs an af_rule table (the rule acts only outside AF-like rhythm)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or default_threads())
    train_recs, test_recs = _records(cfg)
    records = list(dict.fromkeys(list(train_recs) + list(test_recs)))
    t0 = time.perf_counter()
    data = ds.build_dataset(
        records, cfg.data_dir, cfg.featurizer, cache=cfg.cache, progress=cfg.progress, duration_s=cfg.duration_s
    )
    build_s = time.perf_counter() - t0
    select_on = "macro_f1" if cfg.protocol == "seed" else "aami_nsv_f1"
    t1 = time.perf_counter()
    cv_info = None
    if cfg.cv:
        cv_info = cross_validate(cfg, data, out, select_on=select_on, resume=resume)
        split = _split(cfg, data, val_fold=None)
        wt, rt, yt, _ = ds.stack(data, split.train)
        yv = yt[:0]
        final = replace(cfg, epochs=cv_info["best_epoch"], patience=0)
        logger.info("final run on every training record for %d epochs (best mean over %d folds)", final.epochs, cfg.val_folds)
        model, history, hp = fit((wt, rt, yt), None, final, out, select_on=select_on, resume=resume)
        for h, mean in zip(history, cv_info["mean"]):  # the curves show the cross-validated mean
            h.update({k: v for k, v in mean.items() if k.startswith("val_")})
        (out / "history.json").write_text(
            json.dumps({"select_on": select_on, "best_epoch": final.epochs, "validation": cv_info["description"], "cv": cv_info, "epochs": history}, indent=1)
        )
        best_epoch = final.epochs
        if cfg.ensemble:
            model = _ensemble(out, model, hp, cfg.val_folds, best_epoch)
            logger.info("ensemble of %d: the final model and the %d fold models after %d epochs", len(model.members), cfg.val_folds, best_epoch)
    else:
        split = _split(cfg, data)
        wt, rt, yt, _ = ds.stack(data, split.train)
        if cfg.val_fold is None:  # no validation: exactly cfg.epochs epochs, the last one saved
            yv = yt[:0]
            model, history, hp = fit((wt, rt, yt), None, cfg, out, select_on=select_on, resume=resume)
            best_epoch = len(history)
        else:
            wv, rv, yv, _ = ds.stack(data, split.val)
            model, history, hp = fit((wt, rt, yt), (wv, rv, yv), cfg, out, select_on=select_on, resume=resume)
            best_epoch = int(np.argmax([h[f"val_{select_on}"] if np.isfinite(h[f"val_{select_on}"]) else -1 for h in history])) + 1 if history else 0
    logger.info("%s", split.description)
    train_s = time.perf_counter() - t1
    fz = BeatFeaturizer(360.0, **cfg.featurizer)
    meta = {
        "architecture": ARCHITECTURE,
        "hparams": hp,
        "classes": list(CLASSES),
        "featurizer": fz.settings(),
        "rr_names": list(fz.rr_names),
        "training": {
            "protocol": cfg.protocol,
            "train_records": split.records("train"),
            "val_records": split.records("val"),
            "test_records": list(test_recs),
            "split": split.description,
            "seed": cfg.seed,
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "selected_on": (
                f"mean val_{select_on} of {cfg.val_folds}-fold cross-validation" if cfg.cv
                else f"none: the last of {cfg.epochs} epochs (no validation)" if cfg.val_fold is None
                else f"val_{select_on}"
            ),
            "version": __version__,
        },
    }
    if isinstance(model, Ensemble):
        meta["members"] = len(model.members)
        meta["training"]["ensemble"] = (
            f"member 0: the final model (every training record, {best_epoch} epochs); members 1 to {cfg.val_folds}: "
            f"the cross-validation's fold models 0 to {cfg.val_folds - 1} (each without its fold's records) after {best_epoch} epochs"
        )
    if cv_info is not None and "calibration" in cv_info:
        meta["logit_bias"] = [cv_info["calibration"]["logit_bias"][c] for c in CLASSES]
    rules = _store_rules(meta, cfg, wt, rt, yt, ds.stack_rhythm(data, split.train) if cfg.needs_rhythm else None)
    weights = Path(cfg.weights_out) if cfg.weights_out else out / "model.pt"
    save_weights(weights, model, meta)
    counts = {part: dict(zip(CLASSES, np.bincount(y, minlength=len(CLASSES)).tolist())) for part, y in (("train", yt), ("val", yv))}
    run = {
        "command": argv if argv is not None else sys.argv,
        "config": asdict(cfg),
        "weights": str(weights.resolve()),
        "weights_bytes": weights.stat().st_size,
        "split": split.description,
        "records": {"train": split.records("train"), "val": split.records("val"), "test": list(test_recs)},
        "class_counts": counts,
        "timing": {
            "dataset_s": round(build_s, 2),
            "train_s": round(train_s, 2),
            "mean_epoch_s": round(float(np.mean([h["train_s"] for h in history])), 2) if history else None,
            "threads": torch.get_num_threads(),
            "device": str(_device(cfg.device)),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "best_epoch": best_epoch,
        "cv": cv_info,
        "fusion_rule": rules["fusion_rule"],
        "prematurity_rule": rules["prematurity_rule"],
        "v_prematurity_rule": rules["v_prematurity_rule"],
        "early_beat_rule": rules["early_beat_rule"],
        "early_run_rule": rules["early_run_rule"],
        "torch": torch.__version__,
    }
    (out / "run.json").write_text(json.dumps(run, indent=1, default=str))
    if weights.parent.resolve() != out.resolve():
        (weights.parent / (weights.stem + ".run.json")).write_text(json.dumps(run, indent=1, default=str))
        (weights.parent / (weights.stem + ".history.json")).write_text((out / "history.json").read_text())
    logger.info("weights written to %s (%d bytes)", weights, weights.stat().st_size)
    return weights


def train_fold_networks(cfg: TrainConfig, *, argv: list[str] | None = None, resume: bool = False) -> list[Path]:
    """Train the fold networks of ``ecg-bench rules`` (``cfg.fold_networks``); return their weights files.

    Network K is :func:`train` on the training records outside fold K of
    ``cfg.val_folds`` (:func:`trainer.dataset.val_records`, in the order of
    the protocol's list), with fold K as its ``test_records``, no
    validation and exactly ``cfg.epochs`` epochs, in ``cfg.out/fold-K``.
    It is the same run as ``ecg-train --no-cv --val-fold none --records
    "OTHERS;FOLD"``.  ``cfg.out/folds.json`` lists each fold's records and
    weights.  With ``resume``, a fold whose weights exist is kept, and an
    interrupted fold continues from its checkpoint.

    Examples
    --------
    Three seeds of the four DS1 folds, then the sweep (shell)::

        for s in 0 1 2; do
          ecg-train --config docs/train-shipped.toml --no-cv --epochs 20 --fold-networks --seed $s --out runs/folds-s$s
        done
        ecg-bench rules --weights 'runs/folds-s{seed}/fold-{fold}/model.pt' --seeds 0,1,2 --config docs/train-shipped.toml
    """
    cfg.validate()
    if not cfg.fold_networks:
        raise ConfigError("train_fold_networks needs fold_networks = true")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_recs, _ = _records(cfg)
    # the folds deal records by their S and V beats: built with the run's own settings (and cached for the runs)
    data = ds.build_dataset(train_recs, cfg.data_dir, cfg.featurizer, cache=cfg.cache, progress=cfg.progress, duration_s=cfg.duration_s)
    rows, weights = [], []
    for k in range(cfg.val_folds):
        held = ds.val_records(train_recs, data, cfg.val_folds, k)
        others = [r for r in train_recs if r not in held]
        if not held or not others:
            raise ConfigError(f"fold {k} of {cfg.val_folds}: too few training records ({len(train_recs)}) for that many folds")
        fold_dir = out / f"fold-{k}"
        w = fold_dir / "model.pt"
        sub = replace(cfg, fold_networks=False, val_fold=None, weights_out=None, out=str(fold_dir), train_records=others, test_records=held)
        if resume and w.is_file() and (fold_dir / "run.json").is_file():
            logger.info("fold network %d/%d: kept %s", k + 1, cfg.val_folds, w)
        else:
            logger.info("fold network %d/%d: %d records, without %s", k + 1, cfg.val_folds, len(others), " ".join(held))
            w = train(sub, argv=argv, resume=resume and (fold_dir / "checkpoint.pt").is_file())
        weights.append(w)
        rows.append({"fold": k, "held_out": held, "train_records": others, "weights": str(w)})
    (out / "folds.json").write_text(json.dumps({"command": argv if argv is not None else sys.argv, "seed": cfg.seed,
                                                "epochs": cfg.epochs, "folds": rows}, indent=1))  # fmt: skip
    return weights


def _split(cfg: TrainConfig, data, *, val_fold: int | None | str = "config") -> ds.Split:
    return ds.make_split(
        cfg.protocol,
        data,
        seed=cfg.seed,
        val_folds=cfg.val_folds,
        val_fold=cfg.val_fold if val_fold == "config" else val_fold,
        train_records=cfg.train_records,
        test_records=cfg.test_records,
    )


def cross_validate(cfg: TrainConfig, data, out: Path, *, select_on: str = "aami_nsv_f1", resume: bool = False) -> dict[str, Any]:
    """Choose the number of epochs by patient-wise k-fold cross-validation.

    One run per fold of ``cfg.val_folds`` (in ``out/cv-fold-K``), each for
    ``cfg.epochs`` epochs without early stopping and validated on its
    held-out training records; the validation metrics are averaged over the
    folds per epoch.

    Returns
    -------
    dict
        ``best_epoch`` (1-based epoch count with the best mean
        ``select_on``), ``mean`` (per epoch, the fold-averaged ``val_*``
        metrics), ``folds`` (per fold: validation records and per-epoch
        ``val_{select_on}``) and ``description``.
    """
    runs, folds, fold_labels = [], [], []
    for k in range(cfg.val_folds):
        split = _split(cfg, data, val_fold=k)
        logger.info("cross-validation fold %d/%d: %s", k + 1, cfg.val_folds, split.description)
        wt, rt, yt, _ = ds.stack(data, split.train)
        wv, rv, yv, _ = ds.stack(data, split.val)
        fold_dir = out / f"cv-fold-{k}"
        fold_cfg = replace(cfg, patience=0)
        _, hist, _ = fit(
            (wt, rt, yt), (wv, rv, yv), fold_cfg, fold_dir, select_on=select_on,
            resume=resume and (fold_dir / "checkpoint.pt").exists(), keep_val_logits=cfg.calibrate,
            keep_states=cfg.ensemble,
        )  # fmt: skip
        runs.append(hist)
        fold_labels.append(yv)
        folds.append({"val_records": split.records("val"), f"val_{select_on}": [h[f"val_{select_on}"] for h in hist]})
    n_ep = min(len(h) for h in runs)
    keys = [k for k in runs[0][0] if k.startswith("val_")]

    def _mean(values: list[float]) -> float:  # over the folds where the metric exists
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    mean = [{"epoch": e + 1, **{k: _mean([h[e][k] for h in runs]) for k in keys}} for e in range(n_ep)]
    scores = np.array([m[f"val_{select_on}"] for m in mean])
    best = int(np.nanargmax(scores)) + 1
    desc = (
        f"{cfg.val_folds}-fold patient-wise cross-validation over the training records: best mean val_{select_on} "
        f"{scores[best - 1]:.4f} after {best} epochs"
    )
    logger.info("%s", desc)
    info = {"best_epoch": best, "mean": mean, "folds": folds, "description": desc}
    if cfg.calibrate:
        info["calibration"] = _calibrate(out, best, fold_labels, select_on)
    return info


def _ensemble(out: Path, final: nn.Module, hp: dict[str, Any], folds: int, epoch: int) -> Ensemble:
    """The final model and the fold models' weights after ``epoch`` epochs, as one :class:`~monitor.model.Ensemble`."""
    members = [final.eval()]
    for k in range(folds):
        f = out / f"cv-fold-{k}" / "states" / f"epoch-{epoch}.pt"
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"{f}: fold weights missing or unreadable ({exc}); rerun the cross-validation with ensemble on") from None
        m = build_model({"architecture": ARCHITECTURE, "hparams": hp})
        try:
            m.load_state_dict(state)
        except (RuntimeError, KeyError) as exc:
            raise ConfigError(f"{f}: fold weights do not fit the model ({str(exc).splitlines()[0][:200]})") from None
        members.append(m.eval())
    return Ensemble(members)


def _calibrate(out: Path, epoch: int, fold_labels: list[np.ndarray], select_on: str) -> dict[str, Any]:
    """Fit logit offsets on the folds' out-of-fold logits after ``epoch`` epochs."""
    parts = []
    for k, yv in enumerate(fold_labels):
        f = out / f"cv-fold-{k}" / "val_logits" / f"epoch-{epoch}.npy"
        try:
            z = np.load(f)
        except OSError as exc:
            raise ConfigError(f"{f}: out-of-fold logits missing ({exc}); rerun the cross-validation with calibrate on") from None
        if z.shape != (len(yv), len(CLASSES)):
            raise ConfigError(f"{f}: shape {z.shape} does not match the fold's {len(yv)} validation beats")
        parts.append(z)
    z, y = np.concatenate(parts), np.concatenate(fold_labels)
    bias, _, _ = fit_logit_bias(z, y, score=select_on)
    before, after = score_predictions(y, z.argmax(1)), score_predictions(y, (z + bias).argmax(1))
    logger.info(
        "out-of-fold (%d beats): %s %.4f -> %.4f with logit offsets %s",
        len(y), select_on, before[select_on], after[select_on], dict(zip(CLASSES, bias.round(2).tolist())),
    )  # fmt: skip
    return {
        "logit_bias": dict(zip(CLASSES, bias.tolist())),
        "epoch": epoch,
        "beats": len(y),
        "oof_before": before,
        "oof_after": after,
    }
