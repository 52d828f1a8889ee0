"""Ensembles of separately trained weights files (``ecg-train --combine``).

Networks trained with different seeds make different mistakes on patients
they have not seen; the mean of their probabilities
(:class:`monitor.model.Ensemble`) is steadier than any one of them.  The
networks can be trained one by one, or side by side in separate processes
(one CPU core each), and then joined here into one weights file that the
monitor loads like any other.

Examples
--------
Three networks of the shipped recipe, joined and given the shipped rules::

    for s in 0 1 2; do
        ecg-train --config docs/train-shipped.toml --seed $s --no-cv --val-fold none --out runs/seed$s
    done
    ecg-train --combine runs/seed0/model.pt runs/seed1/model.pt runs/seed2/model.pt \\
        --config docs/train-shipped.toml --weights-out assets/model.pt
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from replay.errors import ConfigError
from monitor.model import MAX_MEMBERS, Ensemble, load_model, save_weights

logger = logging.getLogger(__name__)

#: Metadata every member must share: the network's shape, its classes and its inputs.
SHARED_KEYS: tuple[str, ...] = ("architecture", "hparams", "classes", "featurizer", "rr_names")
#: Metadata of the decision rules and offsets, taken from the first file.
RULE_KEYS: tuple[str, ...] = (
    "logit_bias", "fusion_max_template_rms", "af_rule", "prematurity_max_rr_ratio", "v_prematurity_max_rr_ratio",
    "early_beat_rule", "early_beat_to_v", "early_run_beats", "early_run_max_pre_long", "prematurity_reference",
    "post_pause_rule",
)  # fmt: skip


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def combine_weights(
    paths: Sequence[str | os.PathLike],
    weights_out: str | os.PathLike,
    *,
    command: Sequence[str] | None = None,
) -> Path:
    """Write one ensemble weights file whose members are the models of ``paths``.

    Parameters
    ----------
    paths : sequence of path-like
        At least two weights files (:func:`monitor.model.save_weights`) of
        the same architecture, hyper-parameters, classes, featurizer settings
        and RR features.  A file that already holds an ensemble adds all its
        members; at most :data:`monitor.model.MAX_MEMBERS` in all.
    weights_out : path-like
        The file to write (atomically; it may be one of ``paths``).
    command : sequence of str, optional
        The command line, recorded in the ``.run.json`` written beside it.

    Returns
    -------
    pathlib.Path
        The file written.  Its decision rules and offsets (:data:`RULE_KEYS`)
        are the first file's; a later file whose rules differ is reported
        in the log, since ``ecg-train --combine ... --config`` then sets them
        for the ensemble as a whole.  ``meta["training"]`` is the first
        file's, plus ``ensemble`` (a description) and ``member_files``
        (name, SHA-256, seed and epochs of each source).

    Raises
    ------
    ConfigError
        Fewer than two files, an unreadable file, members that do not share
        :data:`SHARED_KEYS`, or too many members.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ConfigError(f"--combine needs at least two weights files, got {len(paths)}")
    members, sources = [], []
    meta0: dict[str, Any] | None = None
    for path in paths:
        model, meta = load_model(path)
        if meta0 is None:
            meta0 = meta
        else:
            for key in SHARED_KEYS:
                if meta.get(key) != meta0.get(key):
                    raise ConfigError(
                        f"{path}: its {key!r} differs from {paths[0]}'s; only networks of one architecture, "
                        "class set and featurizer can be combined"
                    )
            differ = [k for k in RULE_KEYS if meta.get(k) != meta0.get(k)]
            if differ:
                logger.warning("%s: %s differ from %s's; the ensemble keeps the first file's", path, ", ".join(differ), paths[0])
        own = list(model.members) if isinstance(model, Ensemble) else [model]
        members += own
        training = meta.get("training", {})
        sources.append({
            "file": str(path), "sha256": _sha256(path), "members": len(own),
            "seed": training.get("seed"), "best_epoch": training.get("best_epoch"),
        })  # fmt: skip
        if len(members) > MAX_MEMBERS:
            raise ConfigError(f"the files hold more than {MAX_MEMBERS} members in all; combine fewer")
    assert meta0 is not None
    meta = {k: v for k, v in meta0.items() if k != "members"}
    meta["members"] = len(members)
    meta["training"] = dict(meta0.get("training", {}))
    meta["training"]["ensemble"] = (
        f"{len(members)} members from {len(paths)} separately trained files (ecg-train --combine), in order: "
        + "; ".join(f"{s['file']} (seed {s['seed']}, {s['best_epoch']} epochs)" for s in sources)
    )
    meta["training"]["member_files"] = sources
    out = save_weights(weights_out, Ensemble(members), meta)
    _write_side_files(out, paths, sources, command)
    logger.info("ensemble of %d members written to %s", len(members), out)
    return out


def _write_side_files(out: Path, paths: list[Path], sources: list[dict[str, Any]], command: Sequence[str] | None) -> None:
    """``<stem>.run.json`` (command and sources) and ``<stem>.history.json`` (the members' training curves) beside ``out``."""
    run = {"command": list(command) if command is not None else None, "combined_from": [str(p.resolve()) for p in paths], "members": sources}
    out.with_name(out.stem + ".run.json").write_text(json.dumps(run, indent=1))
    histories = []
    for p in paths:
        for cand in (p.with_name(p.stem + ".history.json"), p.parent / "history.json"):
            if cand.exists() and cand.resolve() != out.with_name(out.stem + ".history.json").resolve():
                try:
                    histories.append(json.loads(cand.read_text()))
                except (OSError, ValueError):
                    logger.warning("%s: unreadable training history, left out", cand)
                    histories.append(None)
                break
        else:
            histories.append(None)
    first = histories[0]
    if first is not None and "epochs" in first:
        hist = dict(first)
        hist["note"] = "epochs: the first member's curves; member_epochs: every member's (null where no history was found)"
        hist["member_epochs"] = [h.get("epochs") if h else None for h in histories]
        out.with_name(out.stem + ".history.json").write_text(json.dumps(hist, indent=1))
