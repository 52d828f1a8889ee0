"""``ecg-train``: train the beat classifier.

Examples
--------
Train the shipped model (inter-patient protocol, DS1) and evaluate it on DS2::

    ecg-train --protocol inter --out runs/inter --weights-out assets/model.pt
    ecg-eval --weights assets/model.pt --protocol inter --out runs/inter/eval

Settings come from, in increasing priority: the defaults of
:class:`trainer.train.TrainConfig`, ``--config FILE`` (TOML or JSON, keys
named as the long options with ``_``), and the command-line flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

from replay import _cli

logger = logging.getLogger(__name__)

#: Flags whose value goes straight into TrainConfig (dest == field name).
_FIELDS = (
    "protocol", "data_dir", "out", "weights_out", "epochs", "batch_size", "lr", "step_size", "gamma",
    "seed", "patience", "val_folds", "val_fold", "threads", "device", "duration_s", "cache",
    "class_weight_power", "weight_decay", "ema_decay", "augment_noise", "augment_shift", "cv",
    "calibrate", "augment_stretch", "ensemble", "fold_networks", "class_weight_scale", "fusion_quantile",
    "prematurity_quantile", "v_prematurity_quantile", "early_beat_quantile", "early_beat_to_v", "early_run_beats", "early_run_quantile", "logit_offsets",
    "prematurity_reference", "post_pause_rule",
)  # fmt: skip


def _fold(text: str) -> int | None:
    """``--val-fold`` value: a fold index or ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fold index (0, 1, ...) or 'none', got {text!r}") from None


def _post_pause(text: str) -> dict[str, float]:
    """``--post-pause-rule`` value: ``MAX_PRE_NORMAL,MIN_POST_RATIO``."""
    parts = [t.strip() for t in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        return {"max_pre_normal": float(parts[0]), "min_post_ratio": float(parts[1])}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two ratios MAX_PRE_NORMAL,MIN_POST_RATIO such as 0.9,1.2, got {text!r}") from None


def _scales(text: str, example: str = "CLASS=FACTOR pairs such as F=0.25") -> dict[str, float]:
    """``--class-weight-scale`` value: ``C=X`` pairs separated by commas."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, eq, value = item.partition("=")
        try:
            if not eq:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {example}, got {item!r}") from None
    return out


def _offsets(text: str) -> dict[str, float]:
    """``--logit-offset`` value: ``C=X`` pairs separated by commas (logit units)."""
    return _scales(text, "CLASS=OFFSET pairs such as V=-1.0")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``ecg-train`` argument parser."""
    p = argparse.ArgumentParser(
        prog="ecg-train",
        description="Train the CNN-BiLSTM beat classifier on MIT-BIH beats found by the live monitor's detector.",
        epilog="Defaults are those of the seed project: Adam, class-weighted cross-entropy, StepLR, 50 epochs, batch 64.",
    )
    _cli.add_common_arguments(p)
    d = argparse.SUPPRESS  # unset flags do not override the config file
    p.add_argument("--protocol", choices=("inter", "seed", "all"), default=d,
                   help="inter: train DS1, test DS2 (de Chazal 2004; default); seed: random by-beat split of N/A/V/L/R beats "
                   "(same patients in train and test); all: every record")
    p.add_argument("--data-dir", default=d, help="directory of the MIT-BIH WFDB files (default: $ECG_DATA_DIR, ../shared/mitdb beside the repository, or the user cache)")
    p.add_argument("--out", default=d, help="output directory (default runs/default)")
    p.add_argument("--weights-out", default=d, help="weights file (default OUT/model.pt)")
    p.add_argument("--epochs", type=int, default=d, help="number of epochs (default 50)")
    p.add_argument("--batch-size", type=int, default=d, help="beats per batch (default 64)")
    p.add_argument("--lr", type=float, default=d, help="Adam learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=d, help="Adam weight decay (default 1e-4)")
    p.add_argument("--step-size", type=int, default=d, help="StepLR period in epochs (default 15)")
    p.add_argument("--gamma", type=float, default=d, help="StepLR factor (default 0.5)")
    p.add_argument("--class-weight-power", type=float, default=d, help="class weights (n/(k n_c))**power (default 1)")
    p.add_argument("--class-weight-scale", type=_scales, default=d, metavar="C=X[,C=X]",
                   help="multiply the weight of model class C by X, e.g. F=0.25 (default: none)")
    p.add_argument("--fusion-quantile", type=float, default=d, metavar="Q",
                   help="store the fusion rule: beats closer to their template than the Q quantile of the training F beats "
                        "(e.g. 0.01) are not called F (default 0: no rule)")
    p.add_argument("--prematurity-quantile", type=float, default=d, metavar="Q",
                   help="store the prematurity rule: beats whose pre-RR over the long mean RR (the pre_long "
                        "feature) is at or above the 1-Q quantile of the training S beats' (e.g. 0.05) are not "
                        "called S (default 0: no rule)")
    p.add_argument("--v-prematurity-quantile", type=float, default=d, metavar="Q",
                   help="store the V prematurity rule: beats whose pre-RR over the long mean RR is at or above the 1-Q "
                        "quantile of the training V beats' (e.g. 0.07) are not called V (default 0: no rule)")
    p.add_argument("--early-beat-quantile", type=float, default=d, metavar="Q",
                   help="store the early-beat rule (needs af_rule): beats called N whose pre-RR over the long and "
                        "the local mean RR are both below the Q quantiles of the training N beats' outside AF "
                        "(e.g. 0.005) are called S when the rhythm is not AF-like (default 0: no rule)")
    p.add_argument("--early-beat-to-v", action=argparse.BooleanOptionalAction, default=d,
                   help="with the early-beat rule: an early beat called N becomes the more probable of S and V "
                        "(the network's own probabilities decide) instead of S (default: S)")
    p.add_argument("--prematurity-reference", choices=("long", "normal"), default=d,
                   help="interval ratio of the S rules (prematurity, early-beat, early-run) and of their thresholds: "
                        "long, the pre-RR over the mean of the last long_beats intervals, or normal, over the "
                        "mean of the recent normal intervals (premature ones and the pause after each left out) "
                        "(default: long; with --add-rules, the weights file's own)")
    p.add_argument("--early-run-beats", type=int, default=d, metavar="K",
                   help="store the early-run rule (needs the early-beat rule): after an early beat called S, up to K "
                        "following beats called N that still come early against the long mean RR are called S "
                        "(e.g. 10, the local mean's beats; default 0: no rule)")
    p.add_argument("--early-run-quantile", type=float, default=d, metavar="Q",
                   help="with --early-run-beats: the later beats of a run stay in it while their pre-RR over the long mean "
                        "RR is below the Q quantile of the training N beats' outside AF (e.g. 0.01; default 0: the "
                        "early-beat rule's threshold)")
    p.add_argument("--post-pause-rule", type=_post_pause, default=d, metavar="A,B",
                   help="store the post-pause rule (needs af_rule): a beat called N outside AF-like rhythm whose pre-RR "
                        "is below A times the mean recent normal interval and whose next interval is longer than B times "
                        "its own is called S; live, such a beat's label is provisional until the next beat (e.g. 0.9,1.2; "
                        "default: no rule)")
    p.add_argument("--logit-offset", dest="logit_offsets", type=_offsets, default=d, metavar="C=X[,C=X]",
                   help="store a decision offset X (logit units, -10 to 10) for model class C in the weights, added to "
                        "its logit before the softmax, e.g. V=-1.0 to call V less often (default: none; with --calibrate, "
                        "replaces the fitted offset of C)")
    p.add_argument("--ema-decay", type=float, default=d, help="moving average of the weights per batch, e.g. 0.999 (default 0: off)")
    p.add_argument("--augment-noise", type=float, default=d, help="Gaussian noise added to normalised training windows (default 0)")
    p.add_argument("--augment-shift", type=int, default=d, help="random time shift of training batches, samples (default 0)")
    p.add_argument("--augment-stretch", type=float, default=d,
                   help="stretch each training beat in time about its R peak by up to this fraction, e.g. 0.15 (default 0: off)")
    p.add_argument("--seed", type=int, default=d, help="random seed (default 0)")
    p.add_argument("--patience", type=int, default=d, help="early stopping patience in epochs, 0 = off (default 12)")
    p.add_argument("--val-folds", type=int, default=d, help="patient-wise validation folds of the training records (default 5)")
    p.add_argument("--val-fold", type=_fold, default=d, metavar="K|none",
                   help="which fold validates (default 4: keeps the S-richest records 209, 207, 201, 118 for training); "
                        "none: no validation, train on every training record for exactly --epochs epochs")
    p.add_argument("--cv", action=argparse.BooleanOptionalAction, default=d,
                   help="choose the number of epochs by VAL_FOLDS-fold patient-wise cross-validation, then train on every "
                   "training record (VAL_FOLDS + 1 trainings)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=d,
                   help="with --cv: fit one logit offset per class on the out-of-fold predictions (undoes the over-calling of "
                   "rare classes that class weights cause) and store them in the weights")
    p.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=d,
                   help="with --cv: ship the VAL_FOLDS fold models and the final model as one ensemble (mean of their "
                   "probabilities; about VAL_FOLDS + 1 times the classification cost)")
    p.add_argument("--fold-networks", action=argparse.BooleanOptionalAction, default=d,
                   help="train the fold networks of ecg-bench rules instead of one model: for each of VAL_FOLDS patient-wise "
                   "folds of the training records, a network on the other folds' records for exactly --epochs epochs, no "
                   "validation, in OUT/fold-K/model.pt (needs --no-cv)")
    p.add_argument("--threads", type=int, default=d, help="torch CPU threads (default: half the CPU cores, 1 to 4)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d, help="training device (default auto: GPU if present)")
    p.add_argument("--duration", dest="duration_s", type=float, default=d, help="use only the first SECONDS of each record (quick runs)")
    p.add_argument("--cache", default=d, help="dataset cache directory (default: user cache ecg-monitor/datasets)")
    p.add_argument("--config", help="TOML or JSON file of settings (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--add-rules", metavar="WEIGHTS", default=None,
                   help="do not train: store the decision rules of the settings (--fusion-quantile, "
                        "--prematurity-quantile, --v-prematurity-quantile and --early-beat-quantile, from the protocol's training records; --early-beat-to-v, --early-run-beats and --early-run-quantile; --post-pause-rule; --logit-offset; "
                        "af_rule of --config) in the existing weights file WEIGHTS (or --weights-out)")
    p.add_argument("--combine", metavar="WEIGHTS", nargs="+", default=None,
                   help="do not train: join these weights files (two or more, of one architecture and featurizer) into "
                        "one ensemble at --weights-out (default OUT/model.pt), the mean of their probabilities; with "
                        "rules in the settings (as for --add-rules), store them in it too")
    p.add_argument("--records", default=None, help=argparse.SUPPRESS)  # train,records;test,records for quick runs
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ecg-train``."""
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args.log_level)

    def body() -> int:
        from .train import TrainConfig, load_config_file, train

        values = load_config_file(args.config) if args.config else {}
        for name in _FIELDS:
            if hasattr(args, name):
                values[name] = getattr(args, name)
        if args.records:
            tr, _, te = args.records.partition(";")
            values["train_records"] = [r for r in tr.split(",") if r]
            values["test_records"] = [r for r in te.split(",") if r]
        if args.no_progress:
            values["progress"] = False
        cfg = TrainConfig(**values)
        if args.add_rules and args.combine:
            from replay.errors import ConfigError

            raise ConfigError("--add-rules and --combine do not go together: --combine stores the settings' rules itself")
        if cfg.fold_networks and (args.combine or args.add_rules):
            from replay.errors import ConfigError

            raise ConfigError("--fold-networks trains networks; it does not go with --add-rules or --combine")
        if cfg.fold_networks:
            from .train import train_fold_networks

            command = ["ecg-train", *(sys.argv[1:] if argv is None else argv)]
            for w in train_fold_networks(cfg, argv=command, resume=args.resume):
                print(f"weights: {w}")
            print(f"fold networks: {cfg.out}/fold-{{fold}}/model.pt (for ecg-bench rules --weights; {cfg.out}/folds.json)")
            return 0
        if args.combine:
            from pathlib import Path

            from .combine import combine_weights
            from .train import add_rules

            target = Path(cfg.weights_out) if cfg.weights_out else Path(cfg.out) / "model.pt"
            command = ["ecg-train", *(sys.argv[1:] if argv is None else argv)]
            weights = combine_weights(args.combine, target, command=command)
            if cfg.adds_rules:
                weights = add_rules(weights, replace(cfg, weights_out=None))
            print(f"weights: {weights}")
            return 0
        if args.add_rules:
            from .train import add_rules

            print(f"weights: {add_rules(args.add_rules, cfg)}")
            return 0
        weights = train(cfg, argv=["ecg-train", *(sys.argv[1:] if argv is None else argv)], resume=args.resume)
        print(f"weights: {weights}")
        return 0

    return _cli.run_main("ecg-train", body)


if __name__ == "__main__":
    sys.exit(main())
