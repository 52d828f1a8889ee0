"""WFDB recording of monitored streams (monitor/recorder.py, ecg-monitor --record-to)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import wfdb

from monitor.events import EventWriter
from monitor.labels import CLASSES
from monitor.recorder import (
    LABEL_TO_SYMBOL,
    SUBTYPE_UNCLASSIFIED,
    StreamRecorder,
    alarm_note,
)
from monitor.runner import MonitorRunner, RunnerConfig
from replay.errors import ConfigError
from replay.wfdb_source import load_record

FS = 360.0


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """An untrained model with the current featurizer's inputs (its labels vary, which is what matters)."""
    import torch

    from monitor.beats import BeatFeaturizer
    from monitor.model import ARCHITECTURE, build_model, default_hparams, save_weights

    torch.manual_seed(0)
    fz = BeatFeaturizer(FS, use_post_rr=False)
    meta = {
        "architecture": ARCHITECTURE,
        "hparams": default_hparams(fz.n_channels, fz.n_window, len(fz.rr_names), len(CLASSES)),
        "classes": list(CLASSES),
        "featurizer": fz.settings(),
        "rr_names": list(fz.rr_names),
    }
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_weights(path, build_model(meta), meta)
    return str(path)


def beat(sample, label="N", stream="s"):
    return {"type": "beat", "stream": stream, "sample": sample, "label": label}


def as_nan(x, fill=np.inf):
    return np.where(np.isnan(x), fill, x)


def test_round_trip_through_the_runner(mitdb, tmp_path, tiny_weights):
    rec = load_record("100", str(mitdb), duration_s=60)
    sig = rec.signal.copy()
    sig[20 * 360 : 23 * 360, :] = np.nan  # a hole in both leads
    sig[40 * 360 : 40 * 360 + 180, 1] = np.nan  # lead V5 only
    rec = dataclasses.replace(rec, signal=sig)
    events: list[dict] = []
    config = RunnerConfig(sources=[], speed=float("inf"), weights=tiny_weights, record_to=str(tmp_path))
    MonitorRunner(config, EventWriter(None, events.extend), records=[rec]).run()

    got = wfdb.rdrecord(str(tmp_path / "100"))
    assert got.sig_name == ["MLII", "V5"] and got.fs == FS and got.sig_len == 60 * 360
    assert got.fmt == ["16", "16"] and got.adc_gain == [1000.0, 1000.0]
    np.testing.assert_array_equal(np.isnan(got.p_signal), np.isnan(sig))
    np.testing.assert_allclose(as_nan(got.p_signal), as_nan(sig), rtol=0, atol=0.5e-3 + 1e-6)  # 1 µV steps

    ann = wfdb.rdann(str(tmp_path / "100"), "ecgm")
    beats = [e for e in events if e["type"] == "beat"]
    alarms = [e for e in events if e["type"] == "alarm"]
    assert len(beats) > 60 and alarms  # the 3-s hole raises pause/asystole alarms
    assert {b["label"] for b in beats} <= set(CLASSES)
    notes = sorted([(b["sample"], LABEL_TO_SYMBOL[b["label"]], "") for b in beats]
                   + [(max(a["sample"], 1), '"', alarm_note(a)) for a in alarms])  # fmt: skip
    assert sorted(zip(ann.sample.tolist(), ann.symbol, ann.aux_note)) == notes
    assert list(ann.sample) == sorted(ann.sample)
    assert any(n.startswith("ALARM ") and " on " in n + " " for n in ann.aux_note)


def test_gap_and_nan_become_invalid_samples(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (1000, 2)).astype(np.float32)
    x[100:110, 0] = np.nan
    x[5, 1] = 40.0  # beyond ±32.767 mV: clipped
    with StreamRecorder(tmp_path, "s", FS, ["I", "II"]) as r:
        r.write_samples(7, x[:400])  # the record starts at stream sample 7
        r.write_samples(7 + 400 + 50, x[400:])  # 50 samples lost between messages
        r.write_events([beat(7 + 300, "V"), beat(7 + 120, "?"), beat(7 + 900, "Q")])
    got = wfdb.rdrecord(str(tmp_path / "s"))
    expected = np.concatenate([x[:400], np.full((50, 2), np.nan), x[400:]])
    expected[5, 1] = 32.767
    assert got.sig_len == 1050
    np.testing.assert_array_equal(np.isnan(got.p_signal), np.isnan(expected))
    np.testing.assert_allclose(as_nan(got.p_signal), as_nan(expected), rtol=0, atol=0.5e-3 + 1e-6)
    assert wfdb.rdrecord(str(tmp_path / "s"), physical=False).d_signal[100, 0] == -32768
    ann = wfdb.rdann(str(tmp_path / "s"), "ecgm")
    assert ann.sample.tolist() == [120, 300, 900]  # record samples, in time order
    assert ann.symbol == ["Q", "V", "Q"]
    assert ann.subtype.tolist() == [SUBTYPE_UNCLASSIFIED, 0, 0]
    assert r.clipped_samples == 1 and r.invalid_frames == 50 and r.nan_samples == 10


@pytest.mark.parametrize("fmt, n_channels", [("16", 1), ("212", 1), ("212", 2), ("212", 3)])
def test_every_flush_leaves_readable_files(tmp_path, fmt, n_channels):
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (3000, n_channels)).astype(np.float32)
    r = StreamRecorder(tmp_path, "s", FS, [f"c{i}" for i in range(n_channels)], fmt=fmt)
    gain = r.adc_gain
    written = 0
    for k, start in enumerate(range(0, 3000, 333)):
        r.write_samples(start, x[start : start + 333])
        # beats, an alarm, and a beat older than the last one written (re-sorted in place)
        r.write_events([beat(start + 200 + 1500 * (k % 2)), beat(start + 10, "V")])
        r.write_events([{"type": "alarm", "stream": "s", "sample": start, "code": "vtach", "state": "on",
                         "priority": "high"}])  # fmt: skip
        r.flush()
        got = wfdb.rdrecord(str(r.path))  # what a reader sees after a kill at this point
        assert got.sig_len >= written and got.sig_len >= min(start + 333, 3000) - 1
        written = got.sig_len
        np.testing.assert_allclose(got.p_signal, x[:written], rtol=0, atol=0.5 / gain + 1e-6)
        ann = wfdb.rdann(str(r.path), "ecgm")
        assert list(ann.sample) == sorted(ann.sample) and len(ann.sample) == 3 * (k + 1)
        assert ann.aux_note[0] == "ALARM vtach on high" and ann.sample[0] == 1  # moved off sample 0
    r.close()
    assert wfdb.rdrecord(str(r.path)).sig_len == 3000
    assert os.path.getsize(r.ann_path) == r._ann_end + 2


def test_existing_record_is_not_overwritten(tmp_path):
    (tmp_path / "100.hea").write_text("100 1 360 0\n")
    first = StreamRecorder(tmp_path, "100", FS, ["MLII"])
    second = StreamRecorder(tmp_path, "100", FS, ["MLII"])
    assert (first.record_name, second.record_name) == ("100_2", "100_3")
    first.close()
    second.close()
    assert (tmp_path / "100.hea").read_text() == "100 1 360 0\n"


def test_parameters_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean '212'"):
        StreamRecorder(tmp_path, "s", FS, ["I"], fmt="2120")
    with pytest.raises(ConfigError, match="flush_s"):
        StreamRecorder(tmp_path, "s", FS, ["I"], flush_s=0)
    with pytest.raises(TypeError, match="fs"):
        StreamRecorder(tmp_path, "s", True, ["I"])
    with pytest.raises(ValueError, match="stream name"):
        StreamRecorder(tmp_path, "../s", FS, ["I"])
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot create"):
        StreamRecorder(tmp_path / "file" / "d", "s", FS, ["I"])
    r = StreamRecorder(tmp_path, "s", FS, ["I"])
    with pytest.raises(ValueError, match="shape"):
        r.write_samples(0, np.zeros((5, 2)))
    r.close()
    assert not list(tmp_path.glob("*.tmp"))


def test_kill_9_keeps_a_readable_record(mitdb, tmp_path):
    out = tmp_path / "rec"
    cmd = [sys.executable, "-m", "monitor.cli", "--source", "replay:100", "--headless", "--speed", "1",
           "--no-classify", "--data-dir", str(mitdb), "--record-to", str(out), "--events", str(tmp_path / "ev")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (out / "100.hea").exists():  # the first samples arrived
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the monitor did not start recording"
            time.sleep(0.02)
        t0 = time.monotonic()
        time.sleep(4.0)
        os.kill(proc.pid, signal.SIGKILL)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    got = wfdb.rdrecord(str(out / "100"))
    assert got.sig_len / FS >= elapsed - 2.0
    ann = wfdb.rdann(str(out / "100"), "ecgm")
    beats = [json.loads(line) for line in (tmp_path / "ev").read_text().splitlines()[:-1]]
    beats = [e["sample"] for e in beats if e.get("type") == "beat"]
    assert len(ann.sample) >= 1 and set(ann.sample) <= set(beats)
    reference = load_record("100", str(mitdb), duration_s=10).signal[: got.sig_len]
    np.testing.assert_allclose(got.p_signal, reference, rtol=0, atol=0.5e-3 + 1e-6)
