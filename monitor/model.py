"""The beat classifier: a small CNN-BiLSTM with an RR-feature branch.

Architecture (the seed project's, sized for real time on a CPU core)
---------------------------------------------------------------------
* **Morphology**: three convolution blocks (``Conv1d`` + ``BatchNorm1d`` +
  ``ReLU`` + ``MaxPool1d(2)``) over the beat window (and the template
  channel, see :class:`monitor.beats.BeatFeaturizer`), then a 2-layer
  bidirectional LSTM over the resulting feature sequence, summarised by the
  mean and the maximum over time.
* **Rhythm**: the RR features (all positive: seconds and ratios) go through
  ``log``, a ``BatchNorm1d`` and a small MLP.
* **Head**: the two summaries concatenated, a fully-connected layer with
  ReLU and dropout, and a linear layer giving one logit per class
  (softmax gives the probabilities).

Ensembles
---------
A weights file may hold several members of the same architecture
(``meta["members"]``, written by ``ecg-train --cv --ensemble`` or
``ecg-train --combine``).  The module
is then an :class:`Ensemble` whose output is the logarithm of the members'
*mean probability*, so that its softmax (what :class:`Classifier` returns)
is the average of the members' softmax outputs.  Files without the entry
hold one model, as before.

Fusion rule
-----------
A fusion beat (MIT-BIH ``F``) is a merge of a ventricular ectopic beat and a
conducted one, so its shape differs from the patient's usual beat.  A weights
file may hold ``meta["fusion_max_template_rms"]`` (written by ``ecg-train
--fusion-quantile``): for a beat whose normalised window lies closer than
that to its template channel (root-mean-square difference, in units of the
beat's normalisation, see :class:`monitor.beats.BeatFeaturizer`), the
classifier moves the ``F`` probability to the most probable class of AAMI N
(N, L or R), which is then the most probable class whenever ``F`` was.  The
threshold is a low quantile of that distance over the training set's ``F``
beats (1 % for the shipped model), so almost no training fusion beat is
touched; on patients whose normal beats are wide (left bundle branch block
unlike the training patients') it stops those beats being called F.  See
:func:`fusion_max_template_rms`.

AF rule
-------
Bedside monitors do not count premature atrial beats during atrial
fibrillation: the rhythm is irregular throughout, so a short interval does
not make a beat premature.  A weights file may hold ``meta["af_rule"]``
(``{"min_irregular": 0.1, "max_regular": 0.7}`` for the shipped model, written by ``ecg-train`` with
an ``af_rule`` setting): when the rhythm before a beat looks like AF by the
measures of :attr:`monitor.beats.BeatFeatures.rhythm` (``af_irregular``,
the median difference of intervals 1, 2 or 3 apart over the median interval,
whichever lag is smallest, above ``min_irregular``, and ``af_regular``, the share
of intervals within 10 % of the median, below ``max_regular``)
and the beat's most probable class is of AAMI S (A), the classifier moves
the S probability to the beat's most probable class of AAMI N, which then
becomes the most probable class.  Isolated ectopic beats, or runs of them with
pauses, keep those measures low, so premature beats in a sinus rhythm keep
their label, and so do atrial bigeminy and trigeminy, which are regular
at their period.  The table may also hold ``max_p_wave``: the rhythm then
looks like AF only while, in addition, the template of the recent beats
shows no clear P wave (its ``p_wave`` measure, :func:`monitor.beats.p_wave_ratio`,
at most ``max_p_wave``), so that sinus rhythm made irregular by frequent
ectopic beats, sinus arrhythmia or pauses, whose P waves stay, is not taken
for atrial fibrillation, whose fibrillatory waves cancel out in the median
template.  See :func:`af_rule`.

Prematurity rule
----------------
A premature atrial beat (AAMI S) comes early: its interval from the previous
beat is shorter than the patient's usual one.  A weights file may hold
``meta["prematurity_max_rr_ratio"]`` (written by ``ecg-train
--prematurity-quantile``): when a beat's most probable class is of AAMI S
and its ``pre_long`` RR feature (the interval from the previous beat over
the mean of the last ``long_beats`` intervals, see
:class:`monitor.beats.BeatFeaturizer`) is at or above that ratio, the
classifier moves the S probability to the beat's most probable class of
AAMI N, which then becomes the most probable class.  The threshold is a high
quantile of that ratio over the training set's S beats (87.5 % for the
shipped model, chosen on DS1 out of fold: 0.832, so a beat must come about
17 % early to be called S; the usual clinical definition of prematurity is
10 % early).  See :func:`prematurity_max_rr_ratio`.

V prematurity rule
------------------
A premature ventricular beat (AAMI V) comes early too.  A wide beat that
arrives when the patient's next beat is due is more often a conducted beat
of unusual shape (bundle branch block unlike the training patients') than
a ventricular one.  A weights file may hold
``meta["v_prematurity_max_rr_ratio"]`` (written by ``ecg-train
--v-prematurity-quantile``): when a beat's most probable class is of AAMI V
and its ``pre_long`` ratio is at or above that value, the classifier moves
the V probability to the beat's most probable class of AAMI N.  The
threshold is a high quantile of the ratio over the training set's V beats
(93 % for the shipped model: 0.981, so 7 % of the training V beats, those
that do not come early, are given up).  Ventricular escape beats and
accelerated idioventricular rhythm come late or on time and so lose their V
label.  See :func:`v_prematurity_max_rr_ratio`.

Early-beat rule
---------------
The converse: a beat of normal shape that comes clearly early outside
atrial fibrillation is a premature supraventricular beat, whatever the
network thinks, which is how rule-based Holter and bedside analysers label
them.  A weights file may hold ``meta["early_beat_rule"]``
(``{"max_pre_long": 0.822, "max_pre_local": 0.875}``, written by ``ecg-train
--early-beat-quantile``; it needs ``meta["af_rule"]``): when a beat's most
probable class is of AAMI N, its ``pre_long`` RR feature (interval from the
previous beat over the mean of the last ``long_beats`` intervals) is below
``max_pre_long``, its ``pre_local`` (the same over the mean of the last
``local_beats``) below ``max_pre_local``, and the rhythm before it does not
look like AF by the AF rule's thresholds, the classifier moves the AAMI N
probability to the beat's most probable class of AAMI S, which then becomes
the most probable class.  Beats the network calls V, F or Q keep their
label: an abnormal shape is not supraventricular.  The thresholds are low
quantiles of those ratios over the training set's N beats outside AF-like
rhythm (0.25 % for the shipped model: each ratio alone is below its
threshold for 0.25 % of those beats, both for 0.1 %).  See
:func:`early_beat_rule`.  With ``meta["early_beat_to_v"]`` true (``ecg-train
--early-beat-to-v``; the shipped model has it), the AAMI N probability of
such a beat moves instead to its most probable class of AAMI S *or V*: a
premature beat is supraventricular or ventricular, and the network, though
it gave N the most, decides which of the two by their probabilities (so a
premature ventricular beat that the network took for N is called V, not
S).  See :func:`early_beat_to_v`.

Early-run rule
--------------
In a run of premature atrial beats the local mean fills with the run's own
short intervals, so the early-beat rule catches the run's first beats only.
``meta["early_run_beats"]`` (``ecg-train --early-run-beats``; it needs the
early-beat rule) carries the S label of an early beat over the beats that
follow it while they still come early against the long mean, for at most
that many beats.  It depends on the beats before this one, so it is not
part of :meth:`Classifier.predict_proba` but a streaming object per stream:
:class:`monitor.early_run.EarlyRunRule` (see :func:`early_run_beats`).
A run's later beats stay in it while their ``pre_long`` is below the
early-beat rule's ``max_pre_long``, or below
``meta["early_run_max_pre_long"]`` where the file has it (``ecg-train
--early-run-quantile``: a quantile of ``pre_long`` over the training set's
N beats outside AF-like rhythm, like the early-beat rule's thresholds; see
:func:`early_run_max_pre_long`).

Prematurity reference
---------------------
The S rules above (prematurity, early-beat and early-run) judge how early a
beat comes by ``pre_long``, its interval over the mean of the last
``long_beats`` intervals.  Frequent premature beats, and runs of them,
shorten that mean, so the premature beats of such a patient look less
early than they are.  With ``meta["prematurity_reference"] = "normal"``
(``ecg-train --prematurity-reference normal``) the S rules use instead the
``pre_normal`` measure of :attr:`monitor.beats.BeatFeatures.rhythm`: the
interval over the mean of the recent *normal* intervals, leaving out those
shorter than :data:`monitor.beats.NORMAL_RR_MIN_RATIO` of their running
median and the interval after each, as Holter analysers take their
reference from normal-to-normal intervals.  Their thresholds are then
quantiles of ``pre_normal`` (and, for the early-beat rule, ``pre_local``)
over the training beats.  The V prematurity rule keeps ``pre_long``.  The
network's inputs do not change.  See :func:`prematurity_reference`.

Post-pause rule
---------------
A premature atrial beat comes early *and is followed by a pause*: it resets
the sinus node, so the next interval is longer than the early one, while a
beat that is early only because the rate rises (sinus arrhythmia, a change
of rate) is followed by another short interval.  ``meta["post_pause_rule"]``
(``{"max_pre_normal": 0.9, "min_post_ratio": 1.2}``, ``ecg-train
--post-pause-rule``; it needs ``meta["af_rule"]``) calls S a beat that the
network and the rules above call AAMI N, outside AF-like rhythm, whose
``pre_normal`` is below ``max_pre_normal`` and whose *next* interval is
longer than ``min_post_ratio`` times its own.  The next interval is known
only when the next beat comes, so live such a beat leaves with a
provisional label, and a ``relabel`` event follows when the rule calls it S
(once the next beat is detected or ``min_post_ratio`` times its interval has
passed without one; docs/events.md); every other beat is labelled as
before.  It is applied per stream, before the early-run
rule: :class:`monitor.post_pause.PostPauseRule` (see :func:`post_pause_rule`).

Weights files
-------------
:func:`save_weights` writes a plain dict with a format tag, the metadata as
a JSON string and the ``state_dict`` (tensors only), loadable with
``torch.load(path, weights_only=True)``: no pickled code, so a weights file
cannot run anything when loaded.  :func:`load_model` checks the tag, the
architecture and every tensor's name and shape, and raises a
:class:`~replay.errors.ConfigError` naming the file and the problem.

Per beat, live
--------------
>>> clf = Classifier.from_file(asset("model.pt"))  # doctest: +SKIP
>>> fz = clf.make_featurizer(fs=360.0)  # doctest: +SKIP
>>> feats = fz.process(filtered_chunk, new_beats)  # doctest: +SKIP
>>> probs = clf.predict_proba(feats.windows, feats.rr)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from replay._validate import ensure_int
from replay.errors import ConfigError

from .beats import P_WAVE_S, PRE_NORMAL, QRS_S, BeatFeaturizer, p_wave_measurable, template_rms
from .labels import CLASS_TO_AAMI

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURE",
    "FORMAT",
    "MAX_MEMBERS",
    "Classifier",
    "CnnBiLstm",
    "Ensemble",
    "af_rule",
    "af_thresholds",
    "build_model",
    "prematurity_reference",
    "s_rule_rr",
    "af_like",
    "default_hparams",
    "early_beat_rule",
    "early_beat_to_v",
    "early_run_beats",
    "early_run_max_pre_long",
    "fusion_max_template_rms",
    "load_model",
    "logit_bias",
    "member_count",
    "post_pause_rule",
    "post_pause_thresholds",
    "prematurity_max_rr_ratio",
    "save_weights",
    "v_prematurity_max_rr_ratio",
    "select_member",
]

#: Tag of the weights files written by :func:`save_weights`.
FORMAT = "ecg-monitor-classifier"
#: Version of that file layout.
FORMAT_VERSION = 1
#: Name of the only architecture so far.
ARCHITECTURE = "cnn-bilstm"
#: Largest number of ensemble members a weights file may hold.
MAX_MEMBERS = 16


def default_hparams(in_channels: int, n_window: int, n_rr: int, n_classes: int) -> dict[str, Any]:
    """Return the default architecture hyper-parameters for the given input shapes."""
    return {
        "in_channels": int(in_channels),
        "n_window": int(n_window),
        "n_rr": int(n_rr),
        "n_classes": int(n_classes),
        "conv_channels": [16, 32, 32],
        "kernel_sizes": [7, 5, 5],
        "lstm_hidden": 32,
        "lstm_layers": 2,
        "rr_hidden": 16,
        "head_hidden": 64,
        "dropout": 0.3,
    }


class CnnBiLstm(nn.Module):
    """CNN-BiLSTM beat classifier with an RR branch.

    Parameters
    ----------
    in_channels : int
        Channels of the beat window (1, or 2 with the template).
    n_window : int
        Samples per window (at the model's rate).
    n_rr : int
        Number of RR features.
    n_classes : int
        Number of output classes.
    conv_channels, kernel_sizes : sequence of int
        Output channels and kernel size of each of the three conv blocks.
    lstm_hidden, lstm_layers : int
        Hidden units per direction and number of BiLSTM layers.
    rr_hidden : int
        Width of the RR MLP.
    head_hidden : int
        Width of the fully-connected head.
    dropout : float
        Dropout probability in the head.
    """

    def __init__(
        self,
        in_channels: int,
        n_window: int,
        n_rr: int,
        n_classes: int,
        conv_channels: Sequence[int] = (16, 32, 32),
        kernel_sizes: Sequence[int] = (7, 5, 5),
        lstm_hidden: int = 32,
        lstm_layers: int = 2,
        rr_hidden: int = 16,
        head_hidden: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if len(conv_channels) != 3 or len(kernel_sizes) != 3:
            raise ConfigError(
                f"conv_channels and kernel_sizes need 3 entries (three conv blocks), got {list(conv_channels)} and {list(kernel_sizes)}"
            )
        if n_window // 8 < 2:
            raise ConfigError(f"n_window must be at least 16 samples, got {n_window}")
        blocks: list[nn.Module] = []
        c_in = in_channels
        for c_out, k in zip(conv_channels, kernel_sizes):
            blocks += [
                nn.Conv1d(c_in, c_out, k, padding=k // 2, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2),
            ]
            c_in = c_out
        self.conv = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(c_in, lstm_hidden, num_layers=lstm_layers, batch_first=True, bidirectional=True)
        self.n_rr = n_rr
        if n_rr:
            self.rr_norm = nn.BatchNorm1d(n_rr)
            self.rr_mlp = nn.Sequential(nn.Linear(n_rr, rr_hidden), nn.ReLU(inplace=True), nn.Linear(rr_hidden, rr_hidden), nn.ReLU(inplace=True))
        head_in = 4 * lstm_hidden + (rr_hidden if n_rr else 0)
        self.head = nn.Sequential(
            nn.Linear(head_in, head_hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(head_hidden, n_classes)
        )

    def forward(self, windows: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        """Return logits (batch, n_classes) for windows (batch, C, n) and RR features (batch, n_rr)."""
        h = self.conv(windows).transpose(1, 2)  # (B, T, C)
        h, _ = self.lstm(h)
        z = torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=1)
        if self.n_rr:
            r = self.rr_mlp(self.rr_norm(torch.log(rr.clamp_min(1e-3))))
            z = torch.cat([z, r], dim=1)
        return self.head(z)


class Ensemble(nn.Module):
    """Several models of one architecture whose probabilities are averaged.

    Parameters
    ----------
    members : sequence of torch.nn.Module
        Models mapping ``(windows, rr)`` to logits of the same classes.

    Notes
    -----
    :meth:`forward` returns ``log(mean_k softmax(z_k))`` (a log-probability,
    computed with ``logsumexp``), so ``softmax(forward(x))`` is the mean of
    the members' probabilities and ``argmax`` picks the class of highest
    mean probability.  Adding per-class offsets to it (see
    :func:`logit_bias`) reweights the mean probabilities by ``exp(offset)``,
    the same prior correction as for one model.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, windows: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        """Return log mean probabilities (batch, n_classes) of the members."""
        logp = torch.stack([torch.log_softmax(m(windows, rr), dim=1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - float(np.log(len(self.members)))


_BUILDERS = {ARCHITECTURE: CnnBiLstm}


def member_count(meta: dict[str, Any]) -> int:
    """Number of models in a weights file's metadata (``members``; 1 when absent).

    Raises
    ------
    ConfigError
        When ``members`` is not an integer from 1 to :data:`MAX_MEMBERS`.
    """
    raw = meta.get("members", 1)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_MEMBERS:
        raise ConfigError(f"metadata 'members' must be an integer from 1 to {MAX_MEMBERS}, got {raw!r:.40}")
    return raw


def build_model(meta: dict[str, Any]) -> nn.Module:
    """Build an untrained model from metadata (``architecture``, ``hparams`` and optional ``members``).

    Returns one model, or an :class:`Ensemble` of ``meta["members"]`` models
    when that is more than 1.
    """
    arch = meta.get("architecture")
    if arch not in _BUILDERS:
        raise ConfigError(f"unknown architecture {arch!r}; this version knows {', '.join(_BUILDERS)}")
    k = member_count(meta)
    try:
        models = [_BUILDERS[arch](**meta["hparams"]) for _ in range(k)]
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"bad hyper-parameters for {arch}: {exc}") from None
    return models[0] if k == 1 else Ensemble(models)


def select_member(model: nn.Module, meta: dict[str, Any], index: int) -> tuple[nn.Module, dict[str, Any]]:
    """One member of an ensemble as a model of its own, with matching metadata.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`load_model` (an :class:`Ensemble` or one model).
    meta : dict
        Its metadata.
    index : int
        Member index, 0-based (``ecg-train --ensemble`` stores the final
        model first, then the fold models in fold order).  A single model
        is its own member 0.

    Returns
    -------
    model, meta
        The member (in eval mode) and a copy of the metadata without
        ``members`` (other entries, such as ``logit_bias``, unchanged).
    """
    index = ensure_int("member", index)
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    if not 0 <= index < len(members):
        raise ConfigError(f"member {index} does not exist: this model has {len(members)} (0 to {len(members) - 1})")
    sub = {k: v for k, v in meta.items() if k != "members"}
    return members[index].eval(), sub


def save_weights(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write model weights and metadata to ``path`` (written atomically).

    Parameters
    ----------
    path : str or path-like
        Output file (``.pt``).
    model : torch.nn.Module
        The model; its ``state_dict`` is stored (moved to the CPU).
    meta : dict
        JSON-able metadata: at least ``architecture``, ``hparams``,
        ``classes``, ``featurizer`` (settings of
        :class:`~monitor.beats.BeatFeaturizer`) and ``rr_names``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    for key in ("architecture", "hparams", "classes", "featurizer", "rr_names"):
        if key not in meta:
            raise ConfigError(f"model metadata lacks {key!r}")
    k, n = member_count(meta), len(model.members) if isinstance(model, Ensemble) else 1
    if k != n:
        raise ConfigError(f"metadata says {k} member(s), the model has {n}")
    try:
        text = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise ConfigError(f"model metadata is not JSON-able: {exc}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "meta_json": text, "state_dict": state}, tmp)
    os.replace(tmp, path)
    return path


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Load a weights file written by :func:`save_weights`.

    Parameters
    ----------
    path : str or path-like
        The weights file.

    Returns
    -------
    model : torch.nn.Module
        The model, in eval mode, on the CPU.
    meta : dict
        Its metadata.

    Raises
    ------
    ConfigError
        When the file is missing, not a weights file, of another format
        version or architecture, or its tensors do not fit the architecture.
    """
    path = Path(path)
    where = str(path.resolve()) if path.exists() else str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: no such model weights file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where}: not a readable model weights file ({msg[:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ConfigError(f"{where}: not an ecg-monitor classifier weights file (no {FORMAT!r} tag)")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{where}: weights file format version {blob.get('format_version')!r}, this version reads {FORMAT_VERSION}"
        )
    try:
        meta = json.loads(blob["meta_json"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: metadata missing or not JSON ({exc})") from None
    for key in ("architecture", "hparams", "classes", "featurizer", "rr_names"):
        if key not in meta:
            raise ConfigError(f"{where}: metadata lacks {key!r}")
    try:
        model = build_model(meta)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise ConfigError(f"{where}: no state_dict")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ConfigError(
            f"{where}: tensors do not match architecture {meta['architecture']!r} "
            f"(missing: {', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(extra[:5]) or 'none'})"
        )
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(own[k].shape):
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ConfigError(f"{where}: tensor {k} has shape {shape}, the architecture needs {tuple(own[k].shape)}")
    model.load_state_dict(state)
    hp = meta["hparams"]
    if hp.get("n_classes") != len(meta["classes"]) or hp.get("n_rr") != len(meta["rr_names"]):
        raise ConfigError(f"{where}: metadata inconsistent (classes or RR features do not match hparams)")
    try:
        logit_bias(meta)
        fusion_max_template_rms(meta)
        af_rule(meta)
        prematurity_max_rr_ratio(meta)
        v_prematurity_max_rr_ratio(meta)
        early_beat_rule(meta)
        early_beat_to_v(meta)
        early_run_beats(meta)
        early_run_max_pre_long(meta)
        prematurity_reference(meta)
        post_pause_rule(meta)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    model.eval()
    return model, meta


def _number_pair(raw: Any, keys: tuple[str, ...]) -> list[float] | None:
    """The values of ``raw``, a table of exactly ``keys`` holding finite numbers; None when it is not one."""
    if not isinstance(raw, dict) or set(raw) != set(keys):
        return None
    vals = [raw[k] for k in keys]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in vals):
        return None
    return [float(v) for v in vals]


def af_like(rhythm: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """Which beats follow an AF-like rhythm, by the AF rule's ``(min_irregular, max_regular[, max_p_wave])``.

    Parameters
    ----------
    rhythm : numpy.ndarray, shape (k, 2) or (k, 3)
        :attr:`monitor.beats.BeatFeatures.rhythm` of the beats (``af_irregular``, ``af_regular``,
        ``p_wave``; the third column is needed only with ``max_p_wave``).
    thresholds : tuple of float
        See :func:`af_rule`.

    Returns
    -------
    numpy.ndarray of bool, shape (k,)
        ``af_irregular > min_irregular`` and ``af_regular < max_regular``
        (and ``p_wave <= max_p_wave`` when it is given).
    """
    out = (rhythm[:, 0] > thresholds[0]) & (rhythm[:, 1] < thresholds[1])
    if len(thresholds) > 2:
        out &= rhythm[:, 2] <= thresholds[2]
    return out


def af_thresholds(table: dict[str, Any]) -> tuple[float, ...]:
    """``(min_irregular, max_regular[, max_p_wave])`` of an AF rule table, for :func:`af_like`.

    ``max_p_wave`` is left out when the table has none or gives 0 (no P-wave test).
    """
    out = (float(table["min_irregular"]), float(table["max_regular"]))
    return out + ((float(table["max_p_wave"]),) if table.get("max_p_wave") else ())


def af_rule(meta: dict[str, Any]) -> tuple[float, ...] | None:
    """The AF rule's thresholds in a model's metadata: ``(min_irregular, max_regular[, max_p_wave])``, or None.

    ``max_p_wave`` (optional, > 0) is returned only when the table has it;
    it needs the featurizer's template channel, and windows from at least
    0.30 s before to 0.06 s after the R peak (:func:`monitor.beats.p_wave_ratio`).

    Raises
    ------
    ConfigError
        When ``meta["af_rule"]`` is not a table of ``min_irregular`` (> 0),
        ``max_regular`` (in (0, 1]) and optionally ``max_p_wave`` (> 0), the
        model has no S class (A), or ``max_p_wave`` is given for a featurizer
        without what the P-wave measure needs.
    """
    raw = meta.get("af_rule")
    if raw is None:
        return None
    keys = ("min_irregular", "max_regular", "max_p_wave") if isinstance(raw, dict) and "max_p_wave" in raw else ("min_irregular", "max_regular")
    vals = _number_pair(raw, keys)
    if vals is None or not (vals[0] > 0 and 0 < vals[1] <= 1 and all(v > 0 for v in vals[2:])):
        raise ConfigError(
            f"metadata 'af_rule' must be {{\"min_irregular\": > 0, \"max_regular\": 0 to 1[, \"max_p_wave\": > 0]}}, got {raw!r:.80}"
        )
    if "S" not in (CLASS_TO_AAMI.get(c) for c in meta["classes"]):
        raise ConfigError("metadata 'af_rule' needs a class of AAMI S")
    if len(vals) > 2:
        fz = meta.get("featurizer") or {}
        if not p_wave_measurable(int(fz.get("template_beats", 16)), float(fz.get("pre_s", 0.5)), float(fz.get("post_s", 0.5))):
            raise ConfigError(
                "metadata 'af_rule' has max_p_wave, which needs the template channel (template_beats > 0) and windows "
                f"from at least {-P_WAVE_S[0]:g} s before to {QRS_S[1]:g} s after the R peak"
            )
    return af_thresholds(raw)


def _positive_entry(meta: dict[str, Any], key: str) -> float | None:
    """``meta[key]`` as a float (None when absent); a ConfigError unless it is a positive finite number."""
    raw = meta.get(key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not np.isfinite(raw) or raw <= 0:
        raise ConfigError(f"metadata {key!r} must be a positive number, got {raw!r:.40}")
    return float(raw)


def prematurity_max_rr_ratio(meta: dict[str, Any]) -> float | None:
    """The prematurity rule's threshold in a model's metadata (None when it has none).

    ``meta["prematurity_max_rr_ratio"]`` is a positive ratio of the interval
    from the previous beat to the mean of the last ``long_beats`` intervals
    (the ``pre_long`` RR feature): a beat at or above it is not called S (see
    the module notes).  It needs the ``pre_long`` feature and a class of
    AAMI S.

    Raises
    ------
    ConfigError
        When the entry is not a positive finite number, or the model has no
        ``pre_long`` RR feature or no class of AAMI S.
    """
    return _pre_long_threshold(meta, "prematurity_max_rr_ratio", {"S"}, "a class of AAMI S")


def _pre_long_threshold(meta: dict[str, Any], key: str, groups: set[str], needs: str) -> float | None:
    """A positive threshold on the ``pre_long`` ratio, for a model with that feature and classes of ``groups``."""
    raw = _positive_entry(meta, key)
    if raw is None:
        return None
    if "pre_long" not in meta["rr_names"] or not groups <= {CLASS_TO_AAMI.get(c) for c in meta["classes"]}:
        raise ConfigError(f"metadata '{key}' needs the pre_long RR feature and {needs}")
    return float(raw)


def v_prematurity_max_rr_ratio(meta: dict[str, Any]) -> float | None:
    """The V prematurity rule's threshold in a model's metadata (None when it has none).

    ``meta["v_prematurity_max_rr_ratio"]`` is a positive ratio of the
    interval from the previous beat to the mean of the last ``long_beats``
    intervals (the ``pre_long`` RR feature): a beat at or above it is not
    called V (see the module notes).  It needs the ``pre_long`` feature, a
    class of AAMI V and one of AAMI N.

    Raises
    ------
    ConfigError
        When the entry is not a positive finite number, or the model lacks
        the ``pre_long`` RR feature or a class of AAMI V or N.
    """
    return _pre_long_threshold(meta, "v_prematurity_max_rr_ratio", {"V", "N"}, "classes of AAMI V and N")


def early_beat_rule(meta: dict[str, Any]) -> tuple[float, float] | None:
    """The early-beat rule's thresholds in a model's metadata: ``(max_pre_long, max_pre_local)``, or None.

    ``meta["early_beat_rule"]`` holds two positive ratios of the interval
    from the previous beat to the mean of the last ``long_beats`` and
    ``local_beats`` intervals (the ``pre_long`` and ``pre_local`` RR
    features): a beat called AAMI N below both, in a rhythm that does not
    look like AF, is called S (see the module notes).  It needs both
    features, a class of AAMI S and of AAMI N, and ``meta["af_rule"]`` (the
    AF thresholds it uses).

    Raises
    ------
    ConfigError
        When the entry is not a table of two positive finite numbers, or the
        model lacks what the rule needs.
    """
    raw = meta.get("early_beat_rule")
    if raw is None:
        return None
    vals = _number_pair(raw, ("max_pre_long", "max_pre_local"))
    if vals is None or min(vals) <= 0:
        raise ConfigError(f"metadata 'early_beat_rule' must be {{\"max_pre_long\": > 0, \"max_pre_local\": > 0}}, got {raw!r:.80}")
    groups = {CLASS_TO_AAMI.get(c) for c in meta["classes"]}
    if not {"pre_long", "pre_local"} <= set(meta["rr_names"]) or not {"N", "S"} <= groups:
        raise ConfigError("metadata 'early_beat_rule' needs the pre_long and pre_local RR features and classes of AAMI N and S")
    if meta.get("af_rule") is None:
        raise ConfigError("metadata 'early_beat_rule' needs 'af_rule' (the rule acts only outside AF-like rhythm)")
    return float(vals[0]), float(vals[1])


def early_beat_to_v(meta: dict[str, Any]) -> bool:
    """Whether the early-beat rule may call a beat V: ``meta["early_beat_to_v"]`` (default False).

    When true, an early beat called AAMI N (see :func:`early_beat_rule`) has
    its AAMI N probability moved to its most probable class of AAMI S or V
    instead of S alone (see the module notes).  It needs
    ``meta["early_beat_rule"]`` and a class of AAMI V.

    Raises
    ------
    ConfigError
        When the entry is not true or false, or the file has no early-beat
        rule or no class of AAMI V.
    """
    raw = meta.get("early_beat_to_v", False)
    if not isinstance(raw, bool):
        raise ConfigError(f"metadata 'early_beat_to_v' must be true or false, got {raw!r:.80}")
    if raw and meta.get("early_beat_rule") is None:
        raise ConfigError("metadata 'early_beat_to_v' needs 'early_beat_rule' (it changes what that rule calls an early beat)")
    if raw and "V" not in {CLASS_TO_AAMI.get(c) for c in meta["classes"]}:
        raise ConfigError("metadata 'early_beat_to_v' needs a class of AAMI V")
    return raw


def early_run_beats(meta: dict[str, Any]) -> int | None:
    """The early-run rule's setting in a model's metadata: ``meta["early_run_beats"]``, or None.

    The most beats, after the last early beat of a run of early beats, that
    the rule (:mod:`monitor.early_run`) may call S: an integer from 1 to
    1000.  It needs ``meta["early_beat_rule"]``, whose thresholds it uses.

    Raises
    ------
    ConfigError
        When the entry is not such an integer, or the file has no early-beat rule.
    """
    raw = meta.get("early_run_beats")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 1000:
        raise ConfigError(f"metadata 'early_run_beats' must be an integer from 1 to 1000, got {raw!r:.80}")
    if meta.get("early_beat_rule") is None:
        raise ConfigError("metadata 'early_run_beats' needs 'early_beat_rule' (the run rule uses its thresholds)")
    return int(raw)


#: Values of ``meta["prematurity_reference"]``: the S rules' interval ratio (see the module notes).
PREMATURITY_REFERENCES: tuple[str, ...] = ("long", "normal")


def prematurity_reference(meta: dict[str, Any]) -> str:
    """Which interval ratio the S rules judge prematurity by: ``"long"`` (``pre_long``, default) or ``"normal"``.

    ``"normal"`` is the ``pre_normal`` column of
    :attr:`monitor.beats.BeatFeatures.rhythm` (see the module notes).

    Raises
    ------
    ConfigError
        When the entry is neither, or is ``"normal"`` for a model without
        the ``pre_long`` RR feature (whose column the rules replace).
    """
    value = meta.get("prematurity_reference", "long")
    if value not in PREMATURITY_REFERENCES:
        raise ConfigError(f"metadata 'prematurity_reference' must be one of {', '.join(PREMATURITY_REFERENCES)}, got {value!r:.40}")
    if value == "normal" and "pre_long" not in meta["rr_names"]:
        raise ConfigError("metadata 'prematurity_reference' = 'normal' needs the pre_long RR feature")
    return value


def s_rule_rr(rr: np.ndarray, rhythm: np.ndarray, pre_long_index: int) -> np.ndarray:
    """RR features for the S rules with the ``normal`` reference: ``pre_long`` replaced by ``pre_normal``.

    Parameters
    ----------
    rr : numpy.ndarray, shape (k, n_rr)
        RR features of the beats.
    rhythm : numpy.ndarray, shape (k, 4)
        Their :attr:`monitor.beats.BeatFeatures.rhythm` (``pre_normal`` in column 3).
    pre_long_index : int
        Column of ``pre_long`` in ``rr``.

    Returns
    -------
    numpy.ndarray
        A copy of ``rr`` (the input is not changed).
    """
    rhythm = np.asarray(rhythm)
    if rhythm.ndim != 2 or rhythm.shape[0] != rr.shape[0] or rhythm.shape[1] <= PRE_NORMAL:
        raise ConfigError(f"rhythm must have shape ({rr.shape[0]}, {PRE_NORMAL + 1}) with pre_normal for the normal prematurity reference, got {rhythm.shape}")
    out = np.array(rr, dtype=np.float32, copy=True)
    out[:, pre_long_index] = rhythm[:, PRE_NORMAL]
    return out


def early_run_max_pre_long(meta: dict[str, Any]) -> float | None:
    """The early-run rule's own ``pre_long`` threshold in a model's metadata, or None.

    A beat stays in a run of early beats (:mod:`monitor.early_run`) while
    its interval from the previous beat over the mean of the last
    ``long_beats`` intervals (``pre_long``, a ratio) is below this value;
    without the entry, below the early-beat rule's ``max_pre_long``.

    Raises
    ------
    ConfigError
        When the entry is not a positive number, or the file has no early-run rule.
    """
    value = _positive_entry(meta, "early_run_max_pre_long")
    if value is not None and meta.get("early_run_beats") is None:
        raise ConfigError("metadata 'early_run_max_pre_long' needs 'early_run_beats' (it is the early-run rule's threshold)")
    return value


def post_pause_rule(meta: dict[str, Any]) -> tuple[float, float] | None:
    """The post-pause rule's thresholds in a model's metadata: ``(max_pre_normal, min_post_ratio)``, or None.

    ``meta["post_pause_rule"]`` holds ``max_pre_normal``, a ratio in (0, 1]
    (the beat's interval over the mean recent normal interval, the
    ``pre_normal`` rhythm measure, must be below it) and
    ``min_post_ratio``, a ratio from 1 to 5 (the next interval must be
    longer than that many times the beat's own): such a beat called AAMI N
    outside AF-like rhythm is called S (see the module notes).  It needs the
    ``pre_rr_s`` RR feature, classes of AAMI N and S and ``meta["af_rule"]``.

    Raises
    ------
    ConfigError
        When the entry is not such a table, or the model lacks what the rule needs.
    """
    raw = meta.get("post_pause_rule")
    if raw is None:
        return None
    vals = post_pause_thresholds(raw)
    groups = {CLASS_TO_AAMI.get(c) for c in meta["classes"]}
    if "pre_rr_s" not in meta["rr_names"] or not {"N", "S"} <= groups:
        raise ConfigError("metadata 'post_pause_rule' needs the pre_rr_s RR feature and classes of AAMI N and S")
    if meta.get("af_rule") is None:
        raise ConfigError("metadata 'post_pause_rule' needs 'af_rule' (the rule acts only outside AF-like rhythm)")
    return vals


def post_pause_thresholds(table: Any) -> tuple[float, float]:
    """``(max_pre_normal, min_post_ratio)`` of a post-pause rule table (see :func:`post_pause_rule`).

    Raises
    ------
    ConfigError
        Unless ``table`` holds exactly ``max_pre_normal`` in (0, 1] and ``min_post_ratio`` from 1 to 5.
    """
    vals = _number_pair(table, ("max_pre_normal", "min_post_ratio"))
    if vals is None or not (0 < vals[0] <= 1 and 1 <= vals[1] <= 5):
        raise ConfigError("metadata 'post_pause_rule' must be {\"max_pre_normal\": in (0, 1], \"min_post_ratio\": 1 to 5}, "
                          f"got {table!r:.80}")
    return float(vals[0]), float(vals[1])


def fusion_max_template_rms(meta: dict[str, Any]) -> float | None:
    """The fusion rule's threshold in a model's metadata (None when it has none).

    ``meta["fusion_max_template_rms"]`` is a positive RMS distance between a
    beat's normalised window and its template channel (see the module notes);
    it needs the template channel (``hparams["in_channels"] == 2``) and an
    ``F`` class.

    Raises
    ------
    ConfigError
        When the entry is not a positive finite number, or the model has no
        template channel or no F class.
    """
    raw = _positive_entry(meta, "fusion_max_template_rms")
    if raw is None:
        return None
    if int(meta["hparams"].get("in_channels", 1)) < 2 or "F" not in meta["classes"]:
        raise ConfigError("metadata 'fusion_max_template_rms' needs a template channel and an F class")
    return float(raw)


def logit_bias(meta: dict[str, Any]) -> np.ndarray:
    """The per-class logit offsets of a model's metadata (zeros when it has none).

    ``meta["logit_bias"]``, written by ``ecg-train --calibrate``, holds one
    finite offset per class (in the order of ``meta["classes"]``) added to
    the logits before the softmax: a prior correction fitted on
    out-of-fold predictions (see :mod:`trainer.calibrate`).

    Raises
    ------
    ConfigError
        When the entry is not a list of one finite number per class.
    """
    n = len(meta["classes"])
    raw = meta.get("logit_bias")
    if raw is None:
        return np.zeros(n, np.float32)
    try:
        b = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        b = None
    if b is None or b.shape != (n,) or not np.isfinite(b).all():
        raise ConfigError(f"metadata 'logit_bias' must be a list of {n} finite numbers (one per class), got {raw!r:.80}")
    return b.astype(np.float32)


class Classifier:
    """Beat classifier for inference: windows + RR features in, class probabilities out.

    Parameters
    ----------
    model : torch.nn.Module
        A trained model (see :func:`load_model`).
    meta : dict
        Its metadata.
    threads : int, optional
        ``torch.set_num_threads`` value (process-wide; default: leave as is).
    device : str
        Torch device ("cpu" or "cuda").
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], *, threads: int | None = None, device: str = "cpu") -> None:
        if threads is not None:
            threads = ensure_int("threads", threads)
            if threads < 1:
                raise ConfigError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.aami: tuple[str, ...] = tuple(CLASS_TO_AAMI.get(c, "Q") for c in self.classes)
        hp = meta["hparams"]
        self.input_shape = (int(hp["in_channels"]), int(hp["n_window"]))
        self.n_rr = int(hp["n_rr"])
        self.members = member_count(meta)
        self.logit_bias = torch.from_numpy(logit_bias(meta)).to(self.device)
        #: Threshold of the fusion rule (see the module notes); None: no rule.  Set it to
        #: None to measure the model without the rule (``ecg-eval --no-fusion-rule``).
        self.fusion_max_template_rms: float | None = fusion_max_template_rms(meta)
        self._f = self.classes.index("F") if "F" in self.classes else None
        self._n_group = np.array([i for i, a in enumerate(self.aami) if a == "N"], dtype=np.int64)
        #: Thresholds of the AF rule, ``(min_irregular, max_regular)`` (see the module notes); None: no
        #: rule.  Set it to None to measure the model without the rule (``ecg-eval --no-af-rule``).
        self.af_rule: tuple[float, ...] | None = af_rule(meta)
        self._s_group = np.array([i for i, a in enumerate(self.aami) if a == "S"], dtype=np.int64)
        #: Threshold of the prematurity rule (see the module notes); None: no rule.  Set it to None
        #: to measure the model without the rule (``ecg-eval --no-prematurity-rule``).
        self.prematurity_max_rr_ratio: float | None = prematurity_max_rr_ratio(meta)
        self._pre_long = list(meta["rr_names"]).index("pre_long") if "pre_long" in meta["rr_names"] else None
        #: Threshold of the V prematurity rule (see the module notes); None: no rule.  Set it to None
        #: to measure the model without the rule (``ecg-eval --no-v-prematurity-rule``).
        self.v_prematurity_max_rr_ratio: float | None = v_prematurity_max_rr_ratio(meta)
        self._v_group = np.array([i for i, a in enumerate(self.aami) if a == "V"], dtype=np.int64)
        #: Thresholds of the early-beat rule, ``(max_pre_long, max_pre_local)`` (see the module notes); None:
        #: no rule.  Set it to None to measure the model without it (``ecg-eval --no-early-beat-rule``).
        #: It keeps using the file's AF thresholds when :attr:`af_rule` is set to None.
        self.early_beat_rule: tuple[float, float] | None = early_beat_rule(meta)
        #: The AF thresholds by which the early-beat rule skips AF-like rhythm (the file's; kept when
        #: :attr:`af_rule` is set to None).
        self.early_beat_af_rule: tuple[float, ...] | None = self.af_rule
        #: Whether the early-beat rule moves an early beat's N probability to its most probable class
        #: of AAMI S or V (True) or of S alone (False: files without ``early_beat_to_v``).  Set it to
        #: False to measure what it adds (``ecg-eval --no-early-beat-to-v``).
        self.early_beat_to_v: bool = early_beat_to_v(meta)
        #: Setting of the early-run rule (:mod:`monitor.early_run`, applied per stream after
        #: :meth:`predict_proba`); None: no rule.  Set it to None to measure the model without it
        #: (``ecg-eval --no-early-run-rule``).
        self.early_run_beats: int | None = early_run_beats(meta)
        #: The early-run rule's ``pre_long`` threshold for the beats of a run after its first
        #: (:func:`early_run_max_pre_long`); None: the early-beat rule's ``max_pre_long``.
        self.early_run_max_pre_long: float | None = early_run_max_pre_long(meta)
        self._pre_local = list(meta["rr_names"]).index("pre_local") if "pre_local" in meta["rr_names"] else None
        #: The S rules' interval ratio, ``"long"`` or ``"normal"`` (:func:`prematurity_reference`), the
        #: one their thresholds in the file are quantiles of.
        self.prematurity_reference: str = prematurity_reference(meta)
        #: Thresholds of the post-pause rule, ``(max_pre_normal, min_post_ratio)``
        #: (:mod:`monitor.post_pause`, applied per stream after :meth:`predict_proba`); None: no
        #: rule.  Set it to None to measure the model without it (``ecg-eval --no-post-pause-rule``).
        self.post_pause_rule: tuple[float, float] | None = post_pause_rule(meta)

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, threads: int | None = None, device: str = "cpu") -> Classifier:
        """Load a weights file (see :func:`load_model`)."""
        model, meta = load_model(path)
        return cls(model, meta, threads=threads, device=device)

    def make_featurizer(self, fs: float, **overrides: Any) -> BeatFeaturizer:
        """Return a :class:`~monitor.beats.BeatFeaturizer` for a stream at ``fs`` Hz with this model's settings."""
        settings = dict(self.meta["featurizer"])
        settings.update(overrides)
        fz = BeatFeaturizer(fs, **settings)
        if (fz.n_channels, fz.n_window) != self.input_shape or tuple(fz.rr_names) != tuple(self.meta["rr_names"]):
            raise ConfigError("featurizer settings do not give the inputs this model was trained on")
        return fz

    def predict_proba(
        self, windows: np.ndarray, rr: np.ndarray, batch_size: int = 1024, *, rhythm: np.ndarray | None = None
    ) -> np.ndarray:
        """Class probabilities of a batch of beats.

        Parameters
        ----------
        windows : numpy.ndarray, shape (k, channels, n_window)
            Beat windows from the featurizer.
        rr : numpy.ndarray, shape (k, n_rr)
            RR features from the featurizer.
        batch_size : int
            Beats per forward pass.
        rhythm : numpy.ndarray, shape (k, 3), optional
            :attr:`~monitor.beats.BeatFeatures.rhythm` of the beats, for the
            AF rule (:attr:`af_rule`); without it that rule is not applied.

        Returns
        -------
        numpy.ndarray of float32, shape (k, n_classes)
            Probabilities, in the order of :attr:`classes`: the softmax of
            the logits plus the model's :func:`logit_bias` offsets, then the
            fusion rule (:attr:`fusion_max_template_rms`), the AF rule
            (:attr:`af_rule`), the prematurity rule
            (:attr:`prematurity_max_rr_ratio`), the V prematurity rule
            (:attr:`v_prematurity_max_rr_ratio`) and the early-beat rule
            (:attr:`early_beat_rule`, which also needs ``rhythm``) applied
            in that order (see the module notes).
        """
        windows = np.asarray(windows, dtype=np.float32)
        rr = np.asarray(rr, dtype=np.float32)
        return self.apply_rules(self.network_proba(windows, rr, batch_size), windows, rr, rhythm)

    def network_proba(self, windows: np.ndarray, rr: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """The network's probabilities: the softmax of the logits plus :attr:`logit_bias`, before any rule.

        Shapes as for :meth:`predict_proba`, which is this followed by
        :meth:`apply_rules`.
        """
        windows = np.asarray(windows, dtype=np.float32)
        rr = np.asarray(rr, dtype=np.float32)
        if windows.ndim != 3 or windows.shape[1:] != self.input_shape:
            raise ConfigError(f"windows must have shape (k, {self.input_shape[0]}, {self.input_shape[1]}), got {windows.shape}")
        if rr.shape != (windows.shape[0], self.n_rr):
            raise ConfigError(f"rr must have shape ({windows.shape[0]}, {self.n_rr}), got {rr.shape}")
        out = np.zeros((windows.shape[0], len(self.classes)), np.float32)
        self.model.eval()
        with torch.no_grad():
            for i in range(0, windows.shape[0], batch_size):
                w = torch.from_numpy(windows[i : i + batch_size]).to(self.device)
                r = torch.from_numpy(rr[i : i + batch_size]).to(self.device)
                out[i : i + batch_size] = torch.softmax(self.model(w, r) + self.logit_bias, dim=1).cpu().numpy()
        return out

    def apply_rules(self, prob: np.ndarray, windows: np.ndarray, rr: np.ndarray, rhythm: np.ndarray | None = None) -> np.ndarray:
        """Apply the decision rules to probabilities of the network (in place; returned).

        What :meth:`predict_proba` does after the network: the fusion, AF,
        prematurity, V prematurity and early-beat rules, in that order, with
        the thresholds held in this object's attributes at the time of the
        call (so that other thresholds can be tried on the same network
        outputs, as ``ecg-bench rules`` does).

        Parameters
        ----------
        prob : numpy.ndarray of float32, shape (k, n_classes)
            Softmax probabilities (with the logit offsets), changed in place.
        windows, rr, rhythm : numpy.ndarray
            The beats' featurizer outputs, as for :meth:`predict_proba`.
        """
        out = prob
        if self.fusion_max_template_rms is not None and self._f is not None and windows.shape[1] > 1:
            self._fusion_rule(windows, out)
        if self.af_rule is not None and rhythm is not None:
            self._af_rule(rhythm, out)
        rr_s = self.s_rule_rr(rr, rhythm)  # None: the S rules' ratio is not known without rhythm
        if self.prematurity_max_rr_ratio is not None and self._pre_long is not None and rr_s is not None:
            self._prematurity_rule(rr_s, out)
        if self.v_prematurity_max_rr_ratio is not None and self._pre_long is not None:
            self._v_prematurity_rule(rr, out)
        if self.early_beat_rule is not None and rhythm is not None:
            self._early_beat_rule(rr_s, rhythm, out)
        return out

    def s_rule_rr(self, rr: np.ndarray, rhythm: np.ndarray | None) -> np.ndarray | None:
        """The RR features the S rules read: ``rr`` itself, or with the ``normal`` reference :func:`s_rule_rr` (None without ``rhythm``)."""
        if self.prematurity_reference == "long" or self._pre_long is None:
            return rr
        return None if rhythm is None else s_rule_rr(rr, rhythm, self._pre_long)

    @staticmethod
    def _move(prob: np.ndarray, rows: np.ndarray, cols: np.ndarray, group: np.ndarray) -> None:
        """Give the probability of classes ``cols`` of beats ``rows`` to each beat's most probable class of ``group`` (in place)."""
        if rows.size and group.size and cols.size:
            best = group[prob[np.ix_(rows, group)].argmax(axis=1)]
            prob[rows, best] += prob[np.ix_(rows, cols)].sum(axis=1)
            prob[np.ix_(rows, cols)] = 0.0

    def _move_to_n(self, prob: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        """Give the probability of classes ``cols`` of beats ``rows`` to each beat's most probable AAMI-N class (in place)."""
        self._move(prob, rows, cols, self._n_group)

    def _move_called_to_n(self, prob: np.ndarray, where: np.ndarray, group: np.ndarray) -> None:
        """Give the ``group`` probability of the beats called a class of ``group`` where ``where`` is true to their most probable AAMI-N class (in place)."""
        called = np.isin(prob.argmax(axis=1), group)
        self._move_to_n(prob, np.flatnonzero(called & where), group)

    def _fusion_rule(self, windows: np.ndarray, prob: np.ndarray) -> None:
        """Move the F probability of beats that match their template to their most probable AAMI-N class (in place)."""
        match = np.flatnonzero(template_rms(windows) < self.fusion_max_template_rms)
        self._move_to_n(prob, match, np.array([self._f]))

    @staticmethod
    def _af_like(rhythm: np.ndarray, n: int, thresholds: tuple[float, ...]) -> np.ndarray:
        """:func:`af_like` of ``n`` beats, after checking the shape of ``rhythm``."""
        rhythm = np.asarray(rhythm, dtype=np.float32)
        cols = 3 if len(thresholds) > 2 else 2
        if rhythm.ndim != 2 or rhythm.shape[0] != n or rhythm.shape[1] < cols:
            raise ConfigError(f"rhythm must have shape ({n}, {cols}) or more columns, got {rhythm.shape}")
        return af_like(rhythm, thresholds)

    def _af_rule(self, rhythm: np.ndarray, prob: np.ndarray) -> None:
        """Move the S probability of beats called S in an AF-like rhythm to their most probable AAMI-N class (in place)."""
        self._move_called_to_n(prob, self._af_like(rhythm, prob.shape[0], self.af_rule), self._s_group)

    def _early_beat_rule(self, rr: np.ndarray, rhythm: np.ndarray, prob: np.ndarray) -> None:
        """Move the AAMI-N probability of early beats called N outside AF-like rhythm to their most probable S (or V) class (in place)."""
        early = (rr[:, self._pre_long] < self.early_beat_rule[0]) & (rr[:, self._pre_local] < self.early_beat_rule[1])
        called_n = np.isin(prob.argmax(axis=1), self._n_group)
        rows = np.flatnonzero(called_n & early & ~self._af_like(rhythm, prob.shape[0], self.early_beat_af_rule))
        to = np.concatenate([self._s_group, self._v_group]) if self.early_beat_to_v else self._s_group
        self._move(prob, rows, self._n_group, to)

    def _prematurity_rule(self, rr: np.ndarray, prob: np.ndarray) -> None:
        """Move the S probability of beats called S that do not come early to their most probable AAMI-N class (in place)."""
        self._move_called_to_n(prob, rr[:, self._pre_long] >= self.prematurity_max_rr_ratio, self._s_group)

    def _v_prematurity_rule(self, rr: np.ndarray, prob: np.ndarray) -> None:
        """Move the V probability of beats called V that do not come early to their most probable AAMI-N class (in place)."""
        self._move_called_to_n(prob, rr[:, self._pre_long] >= self.v_prematurity_max_rr_ratio, self._v_group)

    def predict(self, windows: np.ndarray, rr: np.ndarray) -> list[str]:
        """Return the most probable class name of each beat."""
        p = self.predict_proba(windows, rr)
        return [self.classes[i] for i in p.argmax(axis=1)]
