"""ecg-monitor headless: end to end through ZeroMQ, event stream, errors."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import wfdb

from monitor.cli import main
from trainer.ec57 import match_beats, select_beats

MONITOR = [sys.executable, "-m", "monitor.cli"]
REPLAY = [sys.executable, "-m", "replay.cli"]


def read_events(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_replay_record_headless_events(mitdb, tmp_path, capsys):
    out = tmp_path / "ev.jsonl"
    rc = main(["--source", "replay:100", "--headless", "--speed", "max", "--duration", "120",
               "--data-dir", str(mitdb), "--events", str(out)])
    assert rc == 0
    events = read_events(out.read_text())
    assert events[0]["status"] == "connected" and events[0]["channel"] == "MLII"
    assert events[-1]["type"] == "summary"
    assert events[-2]["status"] == "end"
    summary = events[-1]
    assert summary["gaps"] == 0 and summary["bad_messages"] == 0
    assert summary["signal"] == pytest.approx(120, abs=0.01)
    beats = [e for e in events if e["type"] == "beat"]
    assert summary["beats"] == len(beats)
    ann = wfdb.rdann(str(mitdb / "100"), "atr", sampto=120 * 360)
    ref = select_beats(ann.symbol, ann.sample)
    m = match_beats(ref, np.array([b["sample"] for b in beats]), 360.0)
    assert m.tp >= 0.99 * len(ref) and len(m.test_unmatched) <= 2
    assert "beats" in capsys.readouterr().err


def test_start_and_channel_options(mitdb, capsys):
    rc = main(["--source", "replay:100", "--headless", "--speed", "max", "--start", "60",
               "--duration", "20", "--channel", "V5", "--data-dir", str(mitdb), "--events", "-"])
    assert rc == 0
    events = read_events(capsys.readouterr().out)
    assert events[0]["channel"] == "V5"
    beats = [e for e in events if e["type"] == "beat"]
    assert 15 <= len(beats) <= 35
    assert all(0 <= b["sample"] < 20 * 360 for b in beats)


def test_two_sources_in_one_process(capsys):
    rc = main(["--source", "sim:60,duration=30", "--source", "sim:90,duration=30,seed=2",
               "--headless", "--speed", "max"])
    assert rc == 0
    events = read_events(capsys.readouterr().out)
    per = events[-1]["per_stream"]
    assert set(per) == {"sim60", "sim90"}
    assert per["sim60"]["beats"] == pytest.approx(30, abs=3)
    assert per["sim90"]["beats"] == pytest.approx(45, abs=4)


def test_zmq_source_from_separate_replay(mitdb, ipc_endpoint):
    env = dict(os.environ, ECG_DATA_DIR=str(mitdb))
    mon = subprocess.Popen(
        MONITOR + ["--source", f"zmq:{ipc_endpoint}", "--headless", "--idle-exit", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    time.sleep(1.5)  # let the monitor subscribe; the replay waits for it too
    rep = subprocess.run(
        REPLAY + ["100", "--endpoint", ipc_endpoint, "--speed", "max", "--duration", "60",
                  "--wait-subscribers", "1", "--wait-timeout", "20"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert rep.returncode == 0, rep.stderr
    out, err = mon.communicate(timeout=60)
    assert mon.returncode == 0, err
    events = read_events(out)
    assert events[-1]["type"] == "summary"
    assert events[-1]["gaps"] == 0
    assert 65 <= events[-1]["beats"] <= 80  # record 100 has 74 beats in its first minute


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "replay:999", "--headless"], "999"),
        (["--source", "replay:100", "--headless", "--channel", "V9"], "V9"),
        (["--source", "bogus:1", "--headless"], "unknown source kind"),
        (["--source", "replay:100"], "--headless"),
        (["--source", "sim:72,ectopc=0.1", "--headless"], "ectopic"),
    ],
)
def test_bad_input_is_one_line_exit_2(mitdb, args, message):
    env = dict(os.environ, ECG_DATA_DIR=str(mitdb))
    env.pop("DISPLAY", None)
    env.pop("QT_QPA_PLATFORM", None)
    env.pop("WAYLAND_DISPLAY", None)
    r = subprocess.run(MONITOR + args + ["--duration", "5", "--speed", "max"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ecg-monitor: error:")
    assert message in lines[0]


def test_help_and_version():
    for flag in ("--help", "--version"):
        r = subprocess.run(MONITOR + [flag], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and ("ecg-monitor" in r.stdout)
