"""Tests of trainer.dataset: labels from annotations, cache, protocol splits."""

from __future__ import annotations

import functools
import operator

import numpy as np
import pytest

from monitor.labels import CLASSES, NO_REFERENCE, SYMBOL_TO_CLASS
from trainer import dataset as ds
from trainer.ec57 import MITDB_RECORDS


def test_protocol_records_disjoint():
    assert len(ds.DS1) == len(ds.DS2) == 22
    assert not set(ds.DS1) & set(ds.DS2)
    assert not (set(ds.DS1) | set(ds.DS2)) & set(ds.PACED)
    assert set(ds.DS1) | set(ds.DS2) | set(ds.PACED) == set(MITDB_RECORDS)
    tr, te = ds.protocol_records("inter")
    assert (tr, te) == (ds.DS1, ds.DS2)


def _fake(record: str, n: int, rng) -> ds.RecordBeats:
    label = rng.integers(-1, len(CLASSES), size=n)
    sym = np.array([CLASSES[k] if k >= 0 else "" for k in label], dtype="<U1")
    return ds.RecordBeats(
        record=record, fs=360.0, sample=np.arange(n, dtype=np.int64) * 300,
        windows=np.zeros((n, 2, 8), np.float32), rr=np.ones((n, 9), np.float32), label=label, symbol=sym,
        ref_sample=np.zeros(0, np.int64), ref_symbol=np.zeros(0, "<U1"), ref_detected=np.zeros(0, bool),
        rhythm=np.ones((n, 2), np.float32),
    )  # fmt: skip


@pytest.mark.parametrize("fold", range(5))
def test_inter_split_is_patient_disjoint(fold):
    rng = np.random.default_rng(1)
    data = {r: _fake(r, 50, rng) for r in MITDB_RECORDS}
    sp = ds.make_split("inter", data, val_folds=5, val_fold=fold)
    tr, va, te = set(sp.records("train")), set(sp.records("val")), set(sp.records("test"))
    assert not tr & va and not tr & te and not va & te
    assert tr | va == set(ds.DS1) and te == set(ds.DS2)
    for part in (sp.train, sp.val):
        for r, ix in part.items():
            assert (data[r].label[ix] >= 0).all()  # no "no reference" beat is trained on


def test_all_protocol_uses_every_record_and_says_so():
    rng = np.random.default_rng(4)
    data = {r: _fake(r, 40, rng) for r in MITDB_RECORDS}
    sp = ds.make_split("all", data, val_folds=5, val_fold=0)
    tr, va = set(sp.records("train")), set(sp.records("val"))
    assert tr | va == set(MITDB_RECORDS) and not tr & va
    assert "not an independent test" in sp.description
    # no validation part: every record trains (the final run of ecg-train --cv)
    full = ds.make_split("all", data, val_fold=None)
    assert set(full.records("train")) == set(MITDB_RECORDS) and full.records("val") == []
    assert "no validation records" in full.description


def test_val_folds_cover_training_records():
    rng = np.random.default_rng(2)
    data = {r: _fake(r, 30, rng) for r in ds.DS1}
    folds = [ds.val_records(ds.DS1, data, 5, k) for k in range(5)]
    assert sorted(functools.reduce(operator.iadd, folds, [])) == sorted(ds.DS1)


def test_seed_split_is_beat_disjoint_and_seeded():
    rng = np.random.default_rng(3)
    data = {r: _fake(r, 200, rng) for r in MITDB_RECORDS}
    a = ds.make_split("seed", data, seed=7)
    b = ds.make_split("seed", data, seed=7)
    for r in MITDB_RECORDS:
        tr, va, te = set(a.train[r]), set(a.val[r]), set(a.test[r])
        assert not tr & va and not tr & te and not va & te
        np.testing.assert_array_equal(a.test[r], b.test[r])
        assert np.isin(data[r].symbol[a.test[r]], ["N", "L", "R", "A", "V"]).all()
    assert "same patients" in a.description


def test_record_labels_agree_with_annotations(mitdb, tmp_path):
    from replay.wfdb_source import load_record

    rb = ds.record_beats("119", mitdb, duration_s=60.0, cache=tmp_path)
    rec = load_record("119", mitdb, channels=[0], duration_s=60.0, download=False)
    ann_s = np.asarray(rec.annotations.sample)
    ann_y = np.array(rec.annotations.symbol)
    assert len(rb) > 50 and rb.windows.shape == (len(rb), 2, 128)
    for s, sym, lab in zip(rb.sample, rb.symbol, rb.label):
        near = np.abs(ann_s - s) <= 0.15 * 360
        if lab == NO_REFERENCE:
            assert sym == ""
            continue
        assert sym in ann_y[near]
        assert CLASSES[lab] == SYMBOL_TO_CLASS[sym]
    assert {"N", "V"} <= set(rb.symbol)
    assert rb.ref_detected.mean() > 0.95
    # second call: from the cache, identical
    again = ds.record_beats("119", mitdb, duration_s=60.0, cache=tmp_path)
    assert len(list(tmp_path.glob("119-*.npz"))) == 1
    np.testing.assert_array_equal(again.windows, rb.windows)
    np.testing.assert_array_equal(again.symbol, rb.symbol)
    other = ds.record_beats("119", mitdb, {**ds.DEFAULT_FEATURIZER, "normalization": "mad"}, duration_s=60.0, cache=tmp_path)
    assert len(list(tmp_path.glob("119-*.npz"))) == 2  # settings are part of the key
    assert not np.array_equal(other.windows, rb.windows)
